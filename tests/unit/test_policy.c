/* The scaling policy, from a table: every row is one cycle's inputs and the decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "util.h"

#define BIG ((int64_t)1 << 50)

struct row {
	const char *name;
	struct policy_input in;
	enum policy_action action;
	int64_t desired;
	const char *reason; /* substring */
};

/* in: counts_ok, unclaimed, running, asg_ok, asg_desired, asg_min, asg_max,
 *     pool_min, pool_max, headroom, max_step */
#define IN(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step)                                     \
	INB(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, 0, 0)

/* the same, and the launch back-off: ms left, failed launches in a row (no runner connected) */
#define INB(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf)                            \
	INC(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, 0)

/* the same, and the live instances whose runner connected */
#define INC(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, c)                         \
	INU(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, c, 0)

/* the same, and those not judged (the runner list unread) */
#define INU(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, c, nj)                     \
	INP(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, c, nj, 0)

/* the same, and whether the group may end instances not protected from scale-in */
#define INP(cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, c, nj, unp)                \
	{                                                                                          \
		cok, u, r, aok, d, amin, amax, pmin, pmax, h, step, bo, nf, c, nj, unp             \
	}

static const struct row rows[] = {
        /* the formula */
        {"demand", IN(1, 3, 2, 1, 1, 0, 20, 0, 10, 0, 0), POLICY_SET, 5, "demand"},
        {"idle goes to pool min", IN(1, 0, 0, 1, 4, 0, 20, 1, 10, 0, 0), POLICY_SET, 1, "pool min"},
        {"idle at zero", IN(1, 0, 0, 1, 3, 0, 20, 0, 10, 0, 0), POLICY_SET, 0, "demand"},
        {"running counts", IN(1, 0, 4, 1, 4, 0, 20, 0, 10, 0, 0), POLICY_NOOP, 4, "unchanged"},
        {"headroom while work", IN(1, 1, 1, 1, 0, 0, 20, 0, 10, 2, 0), POLICY_SET, 4, "demand"},
        {"no headroom when idle", IN(1, 0, 0, 1, 0, 0, 20, 0, 10, 2, 0), POLICY_NOOP, 0,
         "unchanged"},
        {"headroom only running", IN(1, 0, 3, 1, 3, 0, 20, 0, 10, 1, 0), POLICY_SET, 4, "demand"},
        /* caps */
        {"cap at pool max", IN(1, 50, 0, 1, 2, 0, 100, 0, 10, 0, 0), POLICY_SET, 10, "pool max"},
        {"cap at ASG MaxSize", IN(1, 50, 0, 1, 2, 0, 6, 0, 10, 0, 0), POLICY_SET, 6, "ASG MaxSize"},
        {"headroom capped", IN(1, 9, 0, 1, 2, 0, 20, 0, 10, 5, 0), POLICY_SET, 10, "pool max"},
        {"equal caps", IN(1, 50, 0, 1, 8, 0, 8, 0, 8, 0, 0), POLICY_NOOP, 8, "unchanged"},
        {"already at cap", IN(1, 50, 0, 1, 10, 0, 20, 0, 10, 0, 0), POLICY_NOOP, 10, "unchanged"},
        /* floors */
        {"ASG MinSize floor", IN(1, 0, 0, 1, 3, 2, 20, 0, 10, 0, 0), POLICY_SET, 2, "MinSize"},
        {"pool min above ASG MaxSize", IN(1, 0, 0, 1, 3, 0, 3, 5, 10, 0, 0), POLICY_NOOP, 3,
         "held at MaxSize"},
        {"pool min above ASG MaxSize, set", IN(1, 0, 0, 1, 1, 0, 3, 5, 10, 0, 0), POLICY_SET, 3,
         "held at MaxSize"},
        {"ASG MinSize above pool max", IN(1, 9, 0, 1, 5, 5, 20, 0, 3, 0, 0), POLICY_HOLD, 5,
         "MinSize above pool max"},
        /* no write when equal */
        {"equal: noop", IN(1, 2, 1, 1, 3, 0, 20, 0, 10, 0, 0), POLICY_NOOP, 3, "unchanged"},
        /* max_step */
        {"step up", IN(1, 10, 0, 1, 1, 0, 20, 0, 20, 0, 2), POLICY_SET, 3, "max_step"},
        {"step down", IN(1, 0, 0, 1, 10, 0, 20, 0, 20, 0, 3), POLICY_SET, 7, "max_step"},
        {"within step", IN(1, 3, 0, 1, 1, 0, 20, 0, 20, 0, 2), POLICY_SET, 3, "demand"},
        {"step 0 unlimited", IN(1, 15, 0, 1, 0, 0, 20, 0, 20, 0, 0), POLICY_SET, 15, "demand"},
        {"bounds beat step", IN(1, 0, 0, 1, 15, 0, 20, 0, 10, 0, 2), POLICY_SET, 10, "max"},
        {"step never under MinSize", IN(1, 0, 0, 1, 9, 8, 20, 0, 20, 0, 5), POLICY_SET, 8,
         "MinSize"},
        /* hold on anything missing or bad */
        {"counts missing", IN(0, 0, 0, 1, 4, 0, 20, 0, 10, 0, 0), POLICY_HOLD, 4, "counts"},
        {"counts missing, data says 0", IN(0, 0, 0, 1, 4, 0, 20, 0, 10, 0, 0), POLICY_HOLD, 4,
         "not read"},
        {"ASG missing", IN(1, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0), POLICY_HOLD, -1, "ASG not read"},
        {"negative unclaimed", IN(1, -1, 0, 1, 4, 0, 20, 0, 10, 0, 0), POLICY_HOLD, 4,
         "implausible"},
        {"negative running", IN(1, 0, -3, 1, 4, 0, 20, 0, 10, 0, 0), POLICY_HOLD, 4, "implausible"},
        {"absurd count", IN(1, BIG, 0, 1, 4, 0, 20, 0, 10, 0, 0), POLICY_HOLD, 4, "implausible"},
        {"ASG min > max", IN(1, 1, 0, 1, 4, 5, 3, 0, 10, 0, 0), POLICY_HOLD, -1, "inconsistent"},
        {"ASG desired > max", IN(1, 1, 0, 1, 9, 0, 3, 0, 10, 0, 0), POLICY_HOLD, -1,
         "inconsistent"},
        {"ASG desired < min", IN(1, 1, 0, 1, 1, 2, 3, 0, 10, 0, 0), POLICY_HOLD, -1,
         "inconsistent"},
        {"ASG negative", IN(1, 1, 0, 1, -1, 0, 3, 0, 10, 0, 0), POLICY_HOLD, -1, "inconsistent"},
        {"pool min > max", IN(1, 1, 0, 1, 1, 0, 3, 5, 2, 0, 0), POLICY_HOLD, 1, "pool config"},
        {"negative headroom", IN(1, 1, 0, 1, 1, 0, 3, 0, 2, -1, 0), POLICY_HOLD, 1, "pool config"},
        /* the launch back-off: never raised; lowered as usual, and further down to what must
         * stay: max(ASG MinSize, pool min, the runners that connected) */
        {"back-off: no raise", INB(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 30000, 3), POLICY_NOOP, 0,
         "launch back-off: 3 failed launches in a row, 30 s left: not raised to 5 (0 runners "
         "connected)"},
        {"back-off: no raise from 2, both connected",
         INC(1, 5, 0, 1, 2, 0, 20, 0, 10, 0, 0, 30000, 4, 2), POLICY_NOOP, 2,
         "30 s left: not raised to 5 (2 runners connected)"},
        {"back-off: no raise from 2, none connected: lowered",
         INB(1, 5, 0, 1, 2, 0, 20, 0, 10, 0, 0, 30000, 4), POLICY_SET, 0,
         "30 s left: not raised to 5, lowered to 0 (0 runners connected)"},
        {"back-off: not even to pool min", INB(1, 0, 0, 1, 0, 0, 20, 2, 10, 0, 0, 5000, 3),
         POLICY_NOOP, 0, "not raised to 2 (0 runners connected)"},
        {"back-off: headroom no raise", INC(1, 0, 1, 1, 1, 0, 20, 0, 10, 1, 0, 5000, 3, 1),
         POLICY_NOOP, 1, "not raised to 2 (1 runner connected)"},
        {"back-off: lowered", INB(1, 0, 0, 1, 4, 0, 20, 0, 10, 0, 0, 30000, 3), POLICY_SET, 0,
         "demand (launch back-off: 30 s left, 0 runners connected)"},
        {"back-off: demand below the connected",
         INC(1, 0, 0, 1, 4, 0, 20, 0, 10, 0, 0, 30000, 3, 2), POLICY_SET, 0,
         "demand (launch back-off: 30 s left, 2 runners connected)"},
        {"back-off: lowered by max_step", INB(1, 0, 0, 1, 9, 0, 20, 0, 10, 0, 3, 30000, 3),
         POLICY_SET, 6, "limited by max_step (launch back-off"},
        {"back-off: capped at pool max", INC(1, 50, 0, 1, 15, 0, 20, 0, 10, 0, 0, 30000, 3, 12),
         POLICY_SET, 10, "capped at pool max (launch back-off: 30 s left, 12 runners connected)"},
        {"back-off: capped at pool max, fewer connected",
         INC(1, 50, 0, 1, 15, 0, 20, 0, 10, 0, 0, 30000, 3, 4), POLICY_SET, 4,
         "30 s left: lowered to 4 (4 runners connected)"},
        {"back-off: unchanged", INC(1, 2, 0, 1, 2, 0, 20, 0, 10, 0, 0, 30000, 3, 2), POLICY_NOOP, 2,
         "unchanged: demand (launch back-off: 30 s left, 2 runners connected)"},
        /* the pending-mode loop: demand equals current, nothing connected */
        {"back-off: the failing ones are not replaced",
         INB(1, 4, 0, 1, 4, 0, 4, 0, 4, 0, 0, 60000, 4), POLICY_SET, 0,
         "launch back-off: 4 failed launches in a row, 60 s left: lowered to 0 (0 runners "
         "connected)"},
        {"back-off: the connected stay", INC(1, 2, 2, 1, 4, 0, 6, 0, 6, 0, 0, 60000, 3, 2),
         POLICY_SET, 2, "lowered to 2 (2 runners connected)"},
        {"back-off: connected above current", INC(1, 6, 0, 1, 2, 0, 20, 0, 10, 0, 0, 30000, 3, 5),
         POLICY_NOOP, 2, "not raised to 6 (5 runners connected)"},
        {"back-off: kept at pool min", INB(1, 4, 0, 1, 4, 0, 20, 2, 10, 0, 0, 30000, 3), POLICY_SET,
         2, "lowered to 2 (0 runners connected)"},
        {"back-off: kept at ASG MinSize", INB(1, 4, 0, 1, 4, 3, 20, 0, 10, 0, 0, 30000, 3),
         POLICY_SET, 3, "lowered to 3 (0 runners connected)"},
        {"back-off: at MinSize already", INB(1, 4, 0, 1, 3, 3, 20, 0, 10, 0, 0, 30000, 3),
         POLICY_NOOP, 3, "not raised to 4 (0 runners connected)"},
        {"back-off: pool min above MaxSize", INB(1, 0, 0, 1, 3, 0, 3, 5, 10, 0, 0, 30000, 3),
         POLICY_NOOP, 3, "held at MaxSize (launch back-off"},
        {"back-off: lowering paced by max_step", INB(1, 9, 0, 1, 9, 0, 20, 0, 10, 0, 3, 30000, 3),
         POLICY_SET, 6, "lowered to 6 by max_step (0 runners connected)"},
        {"back-off: raise blocked, lowering paced by max_step",
         INC(1, 12, 0, 1, 9, 0, 20, 0, 20, 0, 3, 30000, 3, 1), POLICY_SET, 6,
         "not raised to 12, lowered to 6 by max_step (1 runner connected)"},
        {"back-off: max_step wider than the way down",
         INC(1, 9, 0, 1, 9, 0, 20, 0, 10, 0, 30, 30000, 3, 1), POLICY_SET, 1,
         "lowered to 1 (1 runner connected)"},
        /* instances not judged (the runner list could not be read) stay like runners: no
         * scale-in on data the scaler could not read */
        {"back-off: none judged, none lowered",
         INU(1, 4, 0, 1, 4, 0, 4, 0, 4, 0, 0, 60000, 4, 0, 4), POLICY_NOOP, 4,
         "unchanged: demand (launch back-off: 60 s left, 0 runners connected, 4 instances not "
         "judged)"},
        {"back-off: not judged and connected add up",
         INU(1, 6, 0, 1, 5, 0, 6, 0, 6, 0, 0, 60000, 3, 2, 1), POLICY_SET, 3,
         "not raised to 6, lowered to 3 (2 runners connected, 1 instance not judged)"},
        {"back-off: not judged above current", INU(1, 6, 0, 1, 2, 0, 6, 0, 6, 0, 0, 60000, 3, 0, 3),
         POLICY_NOOP, 2, "not raised to 6 (0 runners connected, 3 instances not judged)"},
        /* without scale-in protection the group picks the victims (maybe a busy runner):
         * nothing below the usual decision, no raise either */
        {"back-off: unprotected, not lowered to the connected",
         INP(1, 2, 2, 1, 4, 0, 6, 0, 6, 0, 0, 60000, 3, 2, 0, 1), POLICY_NOOP, 4,
         "unchanged: demand (launch back-off: 60 s left, 2 runners connected, not protected "
         "from scale-in)"},
        {"back-off: unprotected, not raised",
         INP(1, 5, 2, 1, 4, 0, 9, 0, 9, 0, 0, 60000, 3, 2, 0, 1), POLICY_NOOP, 4,
         "not raised to 7 (2 runners connected, not protected from scale-in)"},
        {"back-off: unprotected, the usual lowering goes through",
         INP(1, 0, 1, 1, 4, 0, 6, 0, 6, 0, 0, 60000, 3, 1, 0, 1), POLICY_SET, 1, "demand"},
        {"back-off: seconds round up", INB(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 1, 3), POLICY_NOOP, 0,
         ", 1 s left"},
        {"back-off: seconds round up at 1001 ms", INB(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 1001, 3),
         POLICY_NOOP, 0, ", 2 s left"},
        {"back-off over", INB(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, 3), POLICY_SET, 5, "demand"},
        {"back-off: a hold still holds", INB(0, 0, 0, 1, 4, 0, 20, 0, 10, 0, 0, 30000, 3),
         POLICY_HOLD, 4, "counts not read"},
        {"back-off: ASG not read", INB(1, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 30000, 3), POLICY_HOLD, -1,
         "ASG not read"},
        {"back-off negative", INB(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, -1, 3), POLICY_HOLD, 0,
         "pool config"},
        {"failed launches negative", INB(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, -1), POLICY_HOLD, 0,
         "pool config"},
        {"connected negative", INC(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, 3, -1), POLICY_HOLD, 0,
         "pool config"},
        {"connected ignored outside a back-off", INC(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, 3, 2),
         POLICY_SET, 5, "demand"},
        {"connected implausible", INC(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, 3, BIG), POLICY_HOLD, 0,
         "pool config"},
        {"not judged negative", INU(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, 3, 0, -1), POLICY_HOLD, 0,
         "pool config"},
        {"not judged implausible", INU(1, 5, 0, 1, 0, 0, 20, 0, 10, 0, 0, 0, 3, 0, BIG),
         POLICY_HOLD, 0, "pool config"},
};

static void test_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		const struct row *r = &rows[i];
		struct policy_output out;

		policy_decide(&r->in, &out);
		if (out.action != r->action || out.desired != r->desired ||
		    !strstr(out.reason, r->reason)) {
			print_error("row '%s': got %s %lld '%s', want %s %lld '%s'\n", r->name,
			            policy_action_name(out.action), (long long)out.desired,
			            out.reason, policy_action_name(r->action),
			            (long long)r->desired, r->reason);
			fail();
		}
	}
}

static void check_invariants(const struct policy_input *in)
{
	struct policy_output o;

	policy_decide(in, &o);
	if (!in->counts_ok) {
		assert_int_equal(o.action, POLICY_HOLD);
		assert_int_equal(o.desired, in->asg_desired);
		return;
	}
	if (o.action == POLICY_HOLD)
		return;
	assert_true(o.desired <= in->pool_max);
	assert_true(o.desired <= in->asg_max);
	assert_true(o.desired >= in->asg_min);
	assert_int_equal(o.action == POLICY_SET, o.desired != in->asg_desired);
	if (in->launch_backoff_ms > 0) {
		struct policy_input plain = *in;
		struct policy_output usual;
		int64_t lower = in->pool_min > in->asg_min ? in->pool_min : in->asg_min;
		int64_t held = in->launch_connected + in->launch_unknown;
		int64_t keep = held > lower ? held : lower;
		int64_t floor;

		assert_true(o.desired <= in->asg_desired); /* never raised in a back-off */
		/* never below both the usual decision and what must stay (the connected runners,
		 * the mins), max_step pacing the way down */
		plain.launch_backoff_ms = 0;
		policy_decide(&plain, &usual);
		if (in->launch_unprotected && keep < usual.desired)
			keep = usual.desired; /* the group picks the victims: the usual value */
		floor = usual.desired < keep ? usual.desired : keep;
		if (floor > in->asg_desired)
			floor = in->asg_desired;
		if (in->max_step > 0) {
			int64_t paced = in->asg_desired - in->max_step;

			if (paced > usual.desired)
				paced = usual.desired;
			if (paced > floor)
				floor = paced;
		}
		assert_true(o.desired >= floor);
		/* and no higher than it must be: the failing launches are not replaced */
		if (o.desired < in->asg_desired)
			assert_true(o.desired <= (usual.desired > keep ? usual.desired : keep));
	}
}

/* Invariants over a grid: never above pool max or ASG MaxSize, never below ASG MinSize, a set
 * only when the value changes, no scale-in without data, and in a back-off never raised, never
 * below both the usual decision and the connected runners (or the mins). */
static void test_invariants(void **state)
{
	/* unclaimed 0..5, current 0..7, MinSize 0..2, MaxSize 3/5/7, pool max 0/3/6, step 0..2,
	 * counts read or not, in a launch back-off or not, 0..6 runners connected, 0..1 not
	 * judged: one index walks the whole grid. */
	for (int i = 0; i < 6 * 8 * 3 * 3 * 3 * 3 * 2 * 2 * 4 * 2 * 2; i++) {
		int k = i;
		struct policy_input in;

		memset(&in, 0, sizeof(in));
		in.unclaimed = k % 6;
		k /= 6;
		in.asg_desired = k % 8;
		k /= 8;
		in.asg_min = k % 3;
		k /= 3;
		in.asg_max = 3 + 2 * (k % 3);
		k /= 3;
		in.pool_max = 3 * (k % 3);
		k /= 3;
		in.max_step = k % 3;
		k /= 3;
		in.counts_ok = k % 2;
		k /= 2;
		in.launch_backoff_ms = (k % 2) * 5000;
		in.failed_launches = 3;
		in.pool_min = k % 2; /* a min the back-off does not raise to */
		k /= 2;
		in.launch_connected = 2 * (k % 4); /* 0, 2, 4, 6 runners connected */
		k /= 4;
		in.launch_unknown = k % 2; /* and one instance not judged, or none */
		k /= 2;
		in.launch_unprotected = k % 2; /* the group's instances protected or not */
		in.running = 1;
		in.asg_ok = true;
		in.headroom = 1;
		if (in.asg_desired < in.asg_min || in.asg_desired > in.asg_max)
			continue;
		check_invariants(&in);
	}
}

static void test_action_names(void **state)
{
	assert_string_equal(policy_action_name(POLICY_SET), "set");
	assert_string_equal(policy_action_name(POLICY_HOLD), "hold");
	assert_string_equal(policy_action_name(POLICY_NOOP), "noop");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_table),
	        cmocka_unit_test(test_invariants),
	        cmocka_unit_test(test_action_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
