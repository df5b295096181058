/* The scaling policy (see policy.h). Pure: no clock, no I/O, tested from a table. */
#include "policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define POLICY_SANE_MAX ((int64_t)1 << 40) /* counts beyond this are not data, they are bugs */

const char *policy_action_name(enum policy_action a)
{
	switch (a) {
	case POLICY_NOOP:
		return "noop";
	case POLICY_SET:
		return "set";
	case POLICY_HOLD:
		return "hold";
	}
	return "?";
}

static void hold(struct policy_output *out, int64_t current, const char *why)
{
	out->action = POLICY_HOLD;
	out->desired = current;
	snprintf(out->reason, sizeof(out->reason), "%s", why);
}

static bool sane(int64_t v)
{
	return v >= 0 && v <= POLICY_SANE_MAX;
}

/* Launches keep failing (launches.h): no raise, not even to min, until the back-off ends. Not
 * raising is not enough: an instance that fails without lowering desired (an image that never
 * boots, a runner that powers off without leaving) is replaced by the group itself, at its
 * full width. So desired goes down to what must stay, max(lower, the runners that connected
 * and the instances not known to be failing): runners are protected from scale-in, so a lower
 * desired ends none of them, it only stops the replacements. wanted is the decision without
 * the back-off (max_step applied); lower is max(pool min, ASG MinSize) within MaxSize; why,
 * the usual reason. */
static void backoff(const struct policy_input *in, struct policy_output *out, int64_t wanted,
                    int64_t lower, const char *why)
{
	int64_t cur = in->asg_desired, keep, target, left_s, c = in->launch_connected;
	int64_t u = in->launch_unknown;
	bool stepped = false;
	char conn[128], what[96];

	left_s = in->launch_backoff_ms / 1000 + (in->launch_backoff_ms % 1000 != 0);
	keep = c + u > lower ? c + u : lower;
	target = wanted < cur ? wanted : cur;
	/* Without scale-in protection the group picks what a lower value ends: maybe a busy
	 * runner, not a failing instance. Nothing below the usual decision then. */
	if (in->launch_unprotected && keep < target)
		keep = target;
	if (target > keep) {
		target = keep;
		/* max_step paces the way down, never past the usual decision (the bounds) */
		if (in->max_step > 0 && cur - target > in->max_step) {
			target = cur - in->max_step < wanted ? cur - in->max_step : wanted;
			stepped = true;
		}
	}
	out->desired = target;
	out->action = target != cur ? POLICY_SET : POLICY_NOOP;
	str_printf(conn, sizeof(conn), "%" PRId64 " runner%s connected", c, c == 1 ? "" : "s");
	if (u > 0)
		str_printf(conn + strlen(conn), sizeof(conn) - strlen(conn),
		           ", %" PRId64 " instance%s not judged", u, u == 1 ? "" : "s");
	if (in->launch_unprotected)
		str_printf(conn + strlen(conn), sizeof(conn) - strlen(conn),
		           ", not protected from scale-in");
	if (target == wanted) {
		/* The back-off changed nothing: the decision as usual. */
		str_printf(out->reason, sizeof(out->reason),
		           "%s%s (launch back-off: %" PRId64 " s left, %s)",
		           target == cur ? "unchanged: " : "", why, left_s, conn);
		return;
	}
	if (wanted > cur && target < cur)
		str_printf(what, sizeof(what),
		           "not raised to %" PRId64 ", lowered to %" PRId64 "%s", wanted, target,
		           stepped ? " by max_step" : "");
	else if (wanted > cur)
		str_printf(what, sizeof(what), "not raised to %" PRId64, wanted);
	else
		str_printf(what, sizeof(what), "lowered to %" PRId64 "%s", target,
		           stepped ? " by max_step" : "");
	str_printf(out->reason, sizeof(out->reason),
	           "launch back-off: %" PRId64 " failed launches in a row, %" PRId64
	           " s left: %s (%s)",
	           in->failed_launches, left_s, what, conn);
}

void policy_decide(const struct policy_input *in, struct policy_output *out)
{
	int64_t demand, lower, upper, target, cur = in->asg_desired;
	const char *why, *lower_why;

	memset(out, 0, sizeof(*out));
	if (!in->asg_ok) {
		hold(out, -1, "ASG not read");
		return;
	}
	if (!sane(in->asg_min) || !sane(in->asg_max) || !sane(cur) || in->asg_min > in->asg_max ||
	    cur < in->asg_min || cur > in->asg_max) {
		hold(out, -1, "ASG sizes inconsistent");
		return;
	}
	if (!in->counts_ok) {
		hold(out, cur, "task counts not read");
		return;
	}
	if (!sane(in->unclaimed) || !sane(in->running)) {
		hold(out, cur, "task counts implausible");
		return;
	}
	if (!sane(in->pool_min) || !sane(in->pool_max) || !sane(in->headroom) ||
	    !sane(in->max_step) || in->pool_min > in->pool_max || in->launch_backoff_ms < 0 ||
	    in->failed_launches < 0 || !sane(in->launch_connected) || !sane(in->launch_unknown)) {
		hold(out, cur, "pool config inconsistent");
		return;
	}

	upper = in->pool_max < in->asg_max ? in->pool_max : in->asg_max;
	lower = in->pool_min > in->asg_min ? in->pool_min : in->asg_min;
	/* Nothing satisfies both "never below MinSize" and "never above pool max": AWS would
	 * refuse the write anyway; say so instead of writing. */
	if (in->asg_min > upper) {
		hold(out, cur, "ASG MinSize above pool max");
		return;
	}
	lower_why = in->pool_min >= in->asg_min ? "raised to pool min" : "raised to ASG MinSize";
	if (lower > upper) {
		lower = upper; /* pool min above ASG MaxSize: MaxSize wins */
		lower_why = "pool min above ASG MaxSize: held at MaxSize";
	}

	demand = in->unclaimed + in->running;
	if (demand > 0)
		demand += in->headroom; /* headroom only while work exists: idle pools go to min */

	target = demand;
	why = "demand";
	if (target > upper) {
		target = upper;
		why = upper == in->asg_max && in->asg_max < in->pool_max ? "capped at ASG MaxSize"
		                                                         : "capped at pool max";
	} else if (target < lower) {
		target = lower;
		why = lower_why;
	}

	if (in->max_step > 0 && target != cur) {
		int64_t step = target > cur ? target - cur : cur - target;

		if (step > in->max_step) {
			target = target > cur ? cur + in->max_step : cur - in->max_step;
			why = "limited by max_step";
			/* cur may sit outside the pool's bounds (set by hand): the bounds win. */
			if (target > upper) {
				target = upper;
				why = "capped at max";
			} else if (target < lower) {
				target = lower;
				why = "raised to min";
			}
		}
	}

	if (in->launch_backoff_ms > 0) {
		backoff(in, out, target, lower, why);
		return;
	}

	out->desired = target;
	if (target == cur) {
		out->action = POLICY_NOOP;
		snprintf(out->reason, sizeof(out->reason), "unchanged (%s)", why);
	} else {
		out->action = POLICY_SET;
		snprintf(out->reason, sizeof(out->reason), "%s", why);
	}
}
