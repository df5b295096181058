/* runner-scaler simulate: the trace parser from tables (broken input included), the boot- and
 * resume-time specs, the warm pool's bookkeeping from tables, tiny traces whose figures were
 * worked out by hand (warm pools included), and the simulator's invariants over random traces,
 * seeds, both policies and warm pools. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "sim_warm.h"
#include "simulate.h"
#include "util.h"

#define S(x) ((int64_t)(x)*1000)

/* ---- the trace parser --------------------------------------------------------------------- */

struct good {
	const char *name, *text;
	size_t n, nclasses;
	int64_t first_submit, first_duration, last_submit;
	uint32_t first_line;
};

static const struct good goods[] = {
        {"one line", "0,10\n", 1, 1, 0, S(10), 0, 1},
        {"no final newline", "0,10", 1, 1, 0, S(10), 0, 1},
        {"header", "submit_s,duration_s\n0,10\n5,1.5\n", 2, 1, 0, S(10), S(5), 2},
        {"header with class", "submit_s,duration_s,resource_class\n0,10,acme/linux\n1,2,acme/arm\n",
         2, 2, 0, S(10), S(1), 2},
        {"CRLF", "submit_s,duration_s\r\n0,10\r\n1,20\r\n", 2, 1, 0, S(10), S(1), 2},
        {"comments, blanks, spaces", "# a trace\n\n 3 , 4 \n\t\n", 1, 1, S(3), S(4), S(3), 3},
        {"unsorted is sorted", "10,1\n5,2\n7,3\n", 3, 1, S(5), S(2), S(10), 2},
        {"ties keep line order", "5,1\n5,2\n", 2, 1, S(5), S(1), S(5), 1},
        {"decimals round half up", "0.0005,1.2345\n", 1, 1, 1, 1235, 1, 1},
        {"many decimals", "1.99949999,0.1\n", 1, 1, 1999, 100, 1999, 1},
        {"zero duration", "0,0\n", 1, 1, 0, 0, 0, 1},
        {"mixed columns", "0,1\n1,1,acme/x\n", 2, 2, 0, S(1), S(1), 1},
        {"class characters", "0,1,my-org_2/linux.large:v1+gpu\n", 1, 1, 0, S(1), 0, 1},
        {"largest values", "31622400,604800\n", 1, 1, S(31622400), S(604800), S(31622400), 1},
};

static void test_trace_good(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(goods); i++) {
		const struct good *g = &goods[i];
		struct sim_trace t;
		char err[256] = "";
		int r = sim_trace_parse(g->text, strlen(g->text), &t, err, sizeof(err));

		if (r != 0 || t.n != g->n || t.nclasses != g->nclasses ||
		    t.jobs[0].submit_ms != g->first_submit ||
		    t.jobs[0].duration_ms != g->first_duration ||
		    t.jobs[t.n - 1].submit_ms != g->last_submit ||
		    t.jobs[0].line != g->first_line) {
			print_error("'%s': r=%d err='%s' n=%zu classes=%zu first=%lld/%lld line %u "
			            "last=%lld\n",
			            g->name, r, err, r ? 0 : t.n, r ? 0 : t.nclasses,
			            r ? 0LL : (long long)t.jobs[0].submit_ms,
			            r ? 0LL : (long long)t.jobs[0].duration_ms,
			            r ? 0U : t.jobs[0].line,
			            r ? 0LL : (long long)t.jobs[t.n - 1].submit_ms);
			fail();
		}
		sim_trace_free(&t);
	}
}

struct bad {
	const char *name, *text;
	size_t len; /* 0: strlen */
	int rc;
	const char *err; /* substring */
};

static const struct bad bads[] = {
        {"empty", "", 0, -EINVAL, "no jobs"},
        {"only header", "submit_s,duration_s\n", 0, -EINVAL, "no jobs"},
        {"only comments", "# x\n\n", 0, -EINVAL, "no jobs"},
        {"word", "abc,10\n", 0, -EINVAL, "line 1: submit_s: not a number of seconds: \"abc\""},
        {"second line short", "0,10\n1\n", 0, -EINVAL, "line 2: expected 2 or 3"},
        {"truncated field", "0,10\n3,", 0, -EINVAL, "line 2: duration_s: empty"},
        {"empty submit", ",10\n", 0, -EINVAL, "line 1: submit_s: empty"},
        {"four fields", "0,10,a/b,extra\n", 0, -EINVAL,
         "line 1: expected 2 or 3 comma-separated "
         "fields (submit_s,duration_s[,resource_"
         "class]), got 4"},
        {"many fields", "0,1,2,3,4,5,6,7\n", 0, -EINVAL, "got 8"},
        {"negative submit", "0,1\n-1,10\n", 0, -EINVAL, "line 2: submit_s: negative"},
        {"negative duration", "0,-5\n", 0, -EINVAL, "line 1: duration_s: negative"},
        {"exponent", "1e3,10\n", 0, -EINVAL, "line 1: submit_s: not a number"},
        {"inf", "inf,1\n", 0, -EINVAL, "not a number"},
        {"nan", "1,nan\n", 0, -EINVAL, "line 1: duration_s: not a number"},
        {"hex", "0x10,1\n", 0, -EINVAL, "not a number"},
        {"plus sign", "+1,1\n", 0, -EINVAL, "not a number"},
        {"dot only", "1.,2\n", 0, -EINVAL, "not a number"},
        {"trailing junk", "12abc,2\n", 0, -EINVAL, "line 1: submit_s: not a number"},
        {"inner space", "1 2,2\n", 0, -EINVAL, "not a number"},
        {"too many digits", "0,99999999999999\n", 0, -EINVAL, "line 1: duration_s: out of range"},
        {"over a week", "0,604800.5\n", 0, -EINVAL, "duration_s: out of range"},
        {"over a year", "31622401,1\n", 0, -EINVAL, "submit_s: out of range"},
        {"header twice", "submit_s,duration_s\nsubmit_s,duration_s\n", 0, -EINVAL,
         "line 2: submit_s: not a number"},
        {"header after data", "0,1\nsubmit_s,duration_s\n", 0, -EINVAL, "line 2"},
        {"wrong header", "submit,duration\n0,1\n", 0, -EINVAL, "line 1: submit_s: not a number"},
        {"empty class", "0,10,\n", 0, -EINVAL, "line 1: resource_class: empty"},
        {"space in class", "0,10,a b\n", 0, -EINVAL, "line 1: resource_class: invalid character"},
        {"quoted class", "0,10,\"acme/x\"\n", 0, -EINVAL, "resource_class: invalid character"},
        {"control char", "0,1\n0,1,a\x01\n", 0, -EINVAL, "line 2: resource_class: invalid"},
        {"NUL byte", "0,1\n0\0,1\n", 9, -EINVAL, "line 2: contains a NUL byte"},
};

static void check_bad(const char *name, const char *text, size_t len, int rc, const char *want)
{
	struct sim_trace t;
	char err[512] = "";
	int r = sim_trace_parse(text, len, &t, err, sizeof(err));

	if (r != rc || !strstr(err, want) || t.jobs != NULL || t.n != 0) {
		print_error("'%s': r=%d err='%s', want %d '%s'\n", name, r, err, rc, want);
		fail();
	}
}

static void test_trace_bad(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bads); i++)
		check_bad(bads[i].name, bads[i].text,
		          bads[i].len ? bads[i].len : strlen(bads[i].text), bads[i].rc,
		          bads[i].err);
}

static void test_trace_oversized(void **state)
{
	struct buf b;

	/* A line over the limit, after good ones. */
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "0,1\n1,2\n"), 0);
	for (int i = 0; i < SIM_LINE_MAX; i++)
		assert_int_equal(buf_append_str(&b, "1"), 0);
	assert_int_equal(buf_append_str(&b, ",1\n"), 0);
	check_bad("long line", b.data, b.len, -EINVAL, "line 3: longer than 4096 bytes");
	buf_free(&b);

	/* A class too long to be one. */
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "0,1,"), 0);
	for (int i = 0; i < SIM_CLASS_MAX; i++)
		assert_int_equal(buf_append_str(&b, "a"), 0);
	check_bad("long class", b.data, b.len, -EINVAL, "line 1: resource_class: longer than");
	buf_free(&b);

	/* One class more than the limit: the line that brings it is named. */
	buf_init(&b, 0);
	for (int i = 0; i <= SIM_CLASSES_MAX; i++)
		assert_int_equal(buf_printf(&b, "%d,1,org/c%d\n", i, i), 0);
	check_bad("too many classes", b.data, b.len, -E2BIG, "line 65: more than 64 resource");
	buf_free(&b);
}

static void test_boot_spec(void **state)
{
	static const struct {
		const char *s;
		int rc;
		int64_t lo, hi;
	} rows[] = {
	        {"45-60", 0, S(45), S(60)}, {"50", 0, S(50), S(50)},    {"0", 0, 0, 0},
	        {"0.5-1.5", 0, 500, 1500},  {"60-60", 0, S(60), S(60)}, {"", -EINVAL, 0, 0},
	        {"-", -EINVAL, 0, 0},       {"60-45", -EINVAL, 0, 0},   {"a", -EINVAL, 0, 0},
	        {"45-", -EINVAL, 0, 0},     {"-60", -EINVAL, 0, 0},     {"45-60-70", -EINVAL, 0, 0},
	        {"3601", -EINVAL, 0, 0},    {"45 - 60", -EINVAL, 0, 0}, {"1e2", -EINVAL, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		int64_t lo = -7, hi = -7;
		int r = sim_parse_boot(rows[i].s, &lo, &hi);

		if (r != rows[i].rc || (r == 0 && (lo != rows[i].lo || hi != rows[i].hi))) {
			print_error("'%s': r=%d %lld-%lld\n", rows[i].s, r, (long long)lo,
			            (long long)hi);
			fail();
		}
	}
}

static void test_resume_spec(void **state)
{
	static const struct {
		const char *s;
		int rc;
		int64_t lo, hi;
	} rows[] = {
	        {"30-40", 0, S(30), S(40)},
	        {"36", 0, S(36), S(36)},
	        {"0", 0, 0, 0},
	        {"35.5-36.25", 0, 35500, 36250},
	        {"3600", 0, S(3600), S(3600)},
	        {"40-30", -EINVAL, 0, 0},
	        {"", -EINVAL, 0, 0},
	        {"-", -EINVAL, 0, 0},
	        {"30-", -EINVAL, 0, 0},
	        {"-40", -EINVAL, 0, 0},
	        {"30-40-50", -EINVAL, 0, 0},
	        {"3601", -EINVAL, 0, 0},
	        {"30 - 40", -EINVAL, 0, 0},
	        {"36s", -EINVAL, 0, 0},
	        {"1e1", -EINVAL, 0, 0},
	        {"abc", -EINVAL, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		int64_t lo = -7, hi = -7;
		int r = sim_parse_resume(rows[i].s, &lo, &hi);

		if (r != rows[i].rc || (r == 0 && (lo != rows[i].lo || hi != rows[i].hi)))
			fail_msg("'%s': r=%d %lld-%lld", rows[i].s, r, (long long)lo,
			         (long long)hi);
	}
	assert_int_equal(sim_parse_resume(NULL, NULL, NULL), -EINVAL);
}

static void test_fail_window_spec(void **state)
{
	static const struct {
		const char *s;
		int rc;
		int64_t from, to;
	} rows[] = {
	        {"600-1800", 0, S(600), S(1800)},
	        {"0-0.5", 0, 0, 500},
	        {"0-31622400", 0, 0, S(31622400)},
	        {"1800-600", -EINVAL, 0, 0},
	        {"600-600", -EINVAL, 0, 0},
	        {"600", -EINVAL, 0, 0},
	        {"600-", -EINVAL, 0, 0},
	        {"-600", -EINVAL, 0, 0},
	        {"", -EINVAL, 0, 0},
	        {"0-31622401", -EINVAL, 0, 0},
	        {"a-b", -EINVAL, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		int64_t from = -7, to = -7;
		int r = sim_parse_window(rows[i].s, &from, &to);

		if (r != rows[i].rc || (r == 0 && (from != rows[i].from || to != rows[i].to)))
			fail_msg("'%s': r=%d %lld-%lld", rows[i].s, r, (long long)from,
			         (long long)to);
	}
}

/* ---- the warm pool's bookkeeping ---------------------------------------------------------- */

enum warm_op {
	W_END,
	W_TAKE,    /* at t: expect the result in arg (1 taken, 0 cold) */
	W_STOPPED, /* at t: the refill launched at arg is stopped */
	W_FINISH,  /* at t */
};

struct warm_step {
	enum warm_op op;
	int64_t t, arg;
};

/* Each row: a pool of size N from t = 0, the steps, then what it must hold. The figures were
 * worked out by hand from the rules in sim_warm.h (stopped-instance time is the number stopped
 * integrated over time; a refill runs from its launch, the take, until it is stopped). */
static const struct {
	const char *name;
	int64_t size;
	struct warm_step steps[10];
	int64_t stopped, warming, stopped_ms, running_ms;
	uint64_t taken, refills;
} warm_rows[] = {
        {"no pool: every take is cold",
         0,
         {{W_TAKE, 5, 0}, {W_TAKE, 6, 0}, {W_FINISH, 100, 0}},
         0,
         0,
         0,
         0,
         0,
         0},
        {"a negative size is no pool", -3, {{W_TAKE, 5, 0}, {W_FINISH, 100, 0}}, 0, 0, 0, 0, 0, 0},
        {"an idle pool is stopped time only", 2, {{W_FINISH, 100, 0}}, 2, 0, 200, 0, 0, 0},
        {"take, then cold while the refill warms, then stopped",
         1,
         {{W_TAKE, 10, 1}, {W_TAKE, 20, 0}, {W_STOPPED, 80, 10}, {W_FINISH, 100, 0}},
         1,
         0,
         10 + 20,
         70,
         1,
         1},
        {"a refill still warming at the end runs until then",
         1,
         {{W_TAKE, 10, 1}, {W_FINISH, 50, 0}},
         0,
         1,
         10,
         40,
         1,
         1},
        {"finishing twice counts nothing twice",
         1,
         {{W_TAKE, 10, 1}, {W_FINISH, 50, 0}, {W_FINISH, 50, 0}},
         0,
         1,
         10,
         40,
         1,
         1},
        {"finishing later counts the time between",
         1,
         {{W_TAKE, 10, 1}, {W_FINISH, 50, 0}, {W_FINISH, 60, 0}},
         0,
         1,
         10,
         50,
         1,
         1},
        {"two takes and a third from a refill",
         2,
         {{W_TAKE, 10, 1},
          {W_TAKE, 30, 1},
          {W_TAKE, 40, 0},
          {W_STOPPED, 70, 10},
          {W_TAKE, 90, 1},
          {W_STOPPED, 100, 30},
          {W_FINISH, 200, 0}},
         /* stopped: 2 x 10 + 1 x 20 + 0 x 40 + 1 x 20 + 0 x 10 + 1 x 100 */
         1,
         1,
         160,
         60 + 70 + 110,
         3,
         3},
        {"a stop with nothing warming is ignored",
         1,
         {{W_STOPPED, 10, 0}, {W_FINISH, 20, 0}},
         1,
         0,
         20,
         0,
         0,
         0},
        {"the pool never holds more than N",
         1,
         {{W_TAKE, 0, 1},
          {W_STOPPED, 5, 0},
          {W_STOPPED, 6, 0},
          {W_TAKE, 7, 1},
          {W_TAKE, 8, 0},
          {W_FINISH, 10, 0}},
         0,
         1,
         2,
         5 + 3,
         2,
         2},
};

static void test_warm_pool_bookkeeping(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(warm_rows); i++) {
		struct sim_warm w;

		sim_warm_init(&w, warm_rows[i].size, 0);
		for (const struct warm_step *st = warm_rows[i].steps; st->op != W_END; st++) {
			switch (st->op) {
			case W_TAKE:
				if (sim_warm_take(&w, st->t) != (st->arg != 0))
					fail_msg("'%s': take at %lld: want %s", warm_rows[i].name,
					         (long long)st->t, st->arg ? "taken" : "cold");
				break;
			case W_STOPPED:
				sim_warm_stopped(&w, st->t, st->arg);
				break;
			case W_FINISH:
				sim_warm_finish(&w, st->t);
				break;
			case W_END:
				break;
			}
			/* Never more than N, stopped and warming together. */
			assert_true(w.stopped + w.warming <= w.size);
			assert_true(w.stopped >= 0 && w.warming >= 0);
		}
		if (w.stopped != warm_rows[i].stopped || w.warming != warm_rows[i].warming ||
		    w.stopped_ms != warm_rows[i].stopped_ms ||
		    w.running_ms != warm_rows[i].running_ms || w.taken != warm_rows[i].taken ||
		    w.refills != warm_rows[i].refills)
			fail_msg("'%s': stopped %lld warming %lld stopped_ms %lld running_ms %lld "
			         "taken %llu refills %llu",
			         warm_rows[i].name, (long long)w.stopped, (long long)w.warming,
			         (long long)w.stopped_ms, (long long)w.running_ms,
			         (unsigned long long)w.taken, (unsigned long long)w.refills);
	}
}

/* ---- the simulator ------------------------------------------------------------------------ */

static uint64_t lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 33;
}

/* A random trace: n jobs over span_s seconds, bursts included, in nclasses classes. */
static void random_trace(uint64_t seed, size_t n, unsigned span_s, unsigned nclasses,
                         struct sim_trace *t)
{
	struct buf b;
	char err[256];
	uint64_t s = seed;

	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "submit_s,duration_s,resource_class\n"), 0);
	for (size_t i = 0; i < n; i++) {
		/* A third of the jobs come in a burst at one instant. */
		unsigned at = lcg(&s) % 3 == 0 ? span_s / 2 : (unsigned)(lcg(&s) % span_s);

		assert_int_equal(buf_printf(&b, "%u.%u,%u,org/c%u\n", at, (unsigned)(lcg(&s) % 10),
		                            (unsigned)(lcg(&s) % 600),
		                            (unsigned)(lcg(&s) % nclasses)),
		                 0);
	}
	assert_int_equal(sim_trace_parse(b.data, b.len, t, err, sizeof(err)), 0);
	buf_free(&b);
}

static void pools_for(const struct sim_trace *t, int64_t max, struct sim_pool *p)
{
	memset(p, 0, sizeof(*p) * t->nclasses);
	for (size_t i = 0; i < t->nclasses; i++) {
		snprintf(p[i].name, sizeof(p[i].name), "p%zu", i);
		str_copy(p[i].resource_class, t->classes[i], sizeof(p[i].resource_class));
		p[i].max = max;
	}
}

static void run_ok(const struct sim_model *m, const struct sim_pool *p, size_t np,
                   const struct sim_trace *t, bool rec, struct sim_result *r)
{
	char err[256] = "";
	int rc = sim_run(m, p, np, t, rec, r, err, sizeof(err));

	if (rc != 0) {
		print_error("sim_run: %d %s\n", rc, err);
		fail();
	}
}

/* Every job runs exactly once, after it was submitted, for its duration; never more instances
 * in a group than its max, at any time (the series shows every change). */
static void test_invariants(void **state)
{
	static const int64_t maxes[] = {1, 3, 50};

	for (uint64_t seed = 1; seed <= 6; seed++) {
		struct sim_trace t;

		random_trace(seed, 150, 3600, 1 + (unsigned)(seed % 3), &t);
		for (size_t mi = 0; mi < ARRAY_SIZE(maxes); mi++) {
			for (int pol = 0; pol < 4; pol++) {
				int64_t warm = pol >= 2 ? (int64_t)seed : 0; /* a pool of 1..6 */
				struct sim_pool pools[SIM_CLASSES_MAX];
				struct sim_model m;
				struct sim_result r;

				sim_model_defaults(&m, pol % 2 ? SIM_POLICY_TUTORIAL
				                               : SIM_POLICY_RUNNERD);
				m.seed = seed;
				m.warm_report = warm > 0;
				pools_for(&t, maxes[mi], pools);
				for (size_t i = 0; i < t.nclasses; i++)
					pools[i].warm_pool = warm;
				run_ok(&m, pools, t.nclasses, &t, true, &r);
				assert_int_equal(r.total.jobs, t.n);
				for (size_t j = 0; j < t.n; j++) {
					assert_int_equal(r.jobs[j].runs, 1);
					assert_true(r.jobs[j].claimed_ms >= t.jobs[j].submit_ms);
					assert_int_equal(r.jobs[j].done_ms,
					                 r.jobs[j].claimed_ms +
					                         t.jobs[j].duration_ms);
				}
				for (size_t p = 0; p < r.npools; p++) {
					assert_true(r.pools[p].peak_in_group <= maxes[mi]);
					/* Never reused: every instance taken was refilled,
					 * the pool never above N, stopped time bounded by it. */
					assert_int_equal(r.pools[p].warm_taken,
					                 r.pools[p].warm_refills);
					assert_true(r.pools[p].warm_taken <= r.pools[p].launches);
					assert_true(r.pools[p].warm_stopped_ms <= warm * r.end_ms);
					for (size_t k = 0; k < r.series[p].n; k++) {
						assert_true(r.series[p].s[k].warm <= warm);
						assert_true(r.series[p].s[k].up <= maxes[mi]);
						assert_true(r.series[p].s[k].desired <= maxes[mi]);
						assert_true(r.series[p].s[k].busy <=
						            r.series[p].s[k].up);
					}
				}
				assert_true(r.total.busy_ms + r.total.boot_ms + r.total.warm_ms <=
				            r.total.instance_ms);
				sim_result_free(&r);
			}
		}
		sim_trace_free(&t);
	}
}

/* No boot time, no poll interval, no claim backoff: nothing ever waits, with either policy. */
static void test_zero_latency_zero_wait(void **state)
{
	for (uint64_t seed = 1; seed <= 4; seed++) {
		struct sim_trace t;

		random_trace(seed, 200, 1800, 2, &t);
		for (int pol = 0; pol < 2; pol++) {
			struct sim_pool pools[SIM_CLASSES_MAX];
			struct sim_model m;
			struct sim_result r;

			sim_model_defaults(&m, pol ? SIM_POLICY_TUTORIAL : SIM_POLICY_RUNNERD);
			m.boot_min_ms = m.boot_max_ms = 0;
			m.interval_ms = 0;
			m.claim_interval_ms = 0;
			pools_for(&t, 1000, pools);
			run_ok(&m, pools, t.nclasses, &t, false, &r);
			for (size_t j = 0; j < t.n; j++)
				assert_int_equal(r.jobs[j].claimed_ms, t.jobs[j].submit_ms);
			assert_int_equal(r.total.wait_max_ms, 0);
			assert_int_equal(r.total.wait_p95_ms, 0);
			sim_result_free(&r);
		}
		sim_trace_free(&t);
	}
}

static char *json_of(const struct sim_model *m, const struct sim_pool *p, size_t np,
                     const struct sim_trace *t)
{
	struct sim_result r;
	struct buf b;

	run_ok(m, p, np, t, false, &r);
	buf_init(&b, 0);
	assert_int_equal(sim_render_json(m, p, &r, NULL, &b), 0);
	sim_result_free(&r);
	return b.data;
}

/* The seed is the only randomness: the same seed gives the same report, another seed (with a
 * boot-time range to draw from) another one. */
static void test_same_seed_same_output(void **state)
{
	struct sim_trace t;
	struct sim_pool pools[SIM_CLASSES_MAX];
	struct sim_model m;
	char *a, *b, *c;

	random_trace(42, 300, 7200, 2, &t);
	pools_for(&t, 8, pools);
	for (int pol = 0; pol < 2; pol++) {
		sim_model_defaults(&m, pol ? SIM_POLICY_TUTORIAL : SIM_POLICY_RUNNERD);
		m.seed = 7;
		a = json_of(&m, pools, t.nclasses, &t);
		b = json_of(&m, pools, t.nclasses, &t);
		m.seed = 8;
		c = json_of(&m, pools, t.nclasses, &t);
		assert_string_equal(a, b);
		assert_string_not_equal(strstr(a, "\"jobs\""), strstr(c, "\"jobs\""));
		free(a);
		free(b);
		free(c);
	}
	sim_trace_free(&t);
}

static void one_job(struct sim_trace *t)
{
	char err[128];

	assert_int_equal(sim_trace_parse("0,100\n", 6, t, err, sizeof(err)), 0);
}

/* runnerd: the poll at t=0 raises desired to 1, the instance boots 50 s, runs 100 s, leaves
 * with a decrement: one launch, one write, no idle. */
static void test_one_job_runnerd(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5};
	struct sim_model m;
	struct sim_result r;

	one_job(&t);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.boot_min_ms = m.boot_max_ms = S(50);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.jobs[0].claimed_ms, S(50));
	assert_int_equal(r.total.launches, 1);
	assert_int_equal(r.total.replacements, 0);
	assert_int_equal(r.total.instance_ms, S(150));
	assert_int_equal(r.total.boot_ms, S(50));
	assert_int_equal(r.total.busy_ms, S(100));
	assert_int_equal(r.total.writes, 1); /* the decrement put desired back to 0 itself */
	assert_int_equal(r.end_ms, S(150));
	sim_result_free(&r);
	sim_trace_free(&t);
}

/* tutorial: the same job, but the stopped instance is replaced while desired still says 1
 * (until the poll at 180 s); the replacement boots and idles out: 110 s wasted. */
static void test_one_job_tutorial_replacement(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5};
	struct sim_model m;
	struct sim_result r;

	one_job(&t);
	sim_model_defaults(&m, SIM_POLICY_TUTORIAL);
	m.boot_min_ms = m.boot_max_ms = S(50);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.jobs[0].claimed_ms, S(50));
	assert_int_equal(r.total.launches, 2);
	assert_int_equal(r.total.replacements, 1);
	assert_int_equal(r.total.instance_ms, S(150) + S(50) + S(60));
	assert_int_equal(r.total.instance_ms - r.total.busy_ms - r.total.boot_ms, S(60));
	assert_int_equal(r.end_ms, S(260));
	/* With a slow health check the poll at 180 s comes first: no replacement. */
	m.replace_delay_ms = S(40);
	sim_result_free(&r);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.total.launches, 1);
	sim_result_free(&r);
	sim_trace_free(&t);
}

static void steady_trace(struct sim_trace *t);

/* The fixed times of the warm pool tests: boot 50 s, resume 35 s, a refill 50 + 17 = 67 s. */
static void warm_model(struct sim_model *m, enum sim_policy pol)
{
	sim_model_defaults(m, pol);
	m->boot_min_ms = m->boot_max_ms = S(50);
	m->resume_min_ms = m->resume_max_ms = S(35);
	m->warm_report = true;
	assert_int_equal(m->warm_stop_ms, S(17)); /* the default the figures below assume */
}

/* runnerd, one job, a pool of 1: the poll at 0 takes the stopped instance, which resumes in
 * 35 s and runs the job until 135; its refill, launched at 0, runs 67 s and is stopped at 67;
 * the run ends at 135 with it stopped 68 s. With a pool of 3 the two never taken are stopped
 * all along: 2 x 135 s more. */
static void test_warm_one_job(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5, .warm_pool = 1};
	struct sim_model m;
	struct sim_result r;

	one_job(&t);
	warm_model(&m, SIM_POLICY_RUNNERD);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.jobs[0].claimed_ms, S(35));
	assert_int_equal(r.end_ms, S(135));
	assert_int_equal(r.total.launches, 1);
	assert_int_equal(r.total.warm_taken, 1);
	assert_int_equal(r.total.warm_refills, 1);
	assert_int_equal(r.total.warm_pool, 1);
	assert_int_equal(r.total.busy_ms, S(100));
	assert_int_equal(r.total.boot_ms, S(35));
	assert_int_equal(r.total.warm_ms, S(67));
	assert_int_equal(r.total.instance_ms, S(135) + S(67));
	assert_int_equal(r.total.warm_stopped_ms, S(135 - 67));
	sim_result_free(&r);

	/* A 10 s job ends at 45, before its refill is stopped at 67: the run waits for the
	 * refill, whose whole warm-up is counted. */
	sim_trace_free(&t);
	assert_int_equal(sim_trace_parse("0,10\n", 5, &t, NULL, 0), 0);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.end_ms, S(67));
	assert_int_equal(r.total.warm_ms, S(67));
	assert_int_equal(r.total.instance_ms, S(45) + S(67));
	assert_int_equal(r.total.warm_stopped_ms, 0);
	sim_result_free(&r);
	sim_trace_free(&t);

	one_job(&t);
	p.warm_pool = 3;
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.jobs[0].claimed_ms, S(35));
	assert_int_equal(r.total.warm_taken, 1);
	assert_int_equal(r.total.instance_ms, S(135) + S(67));
	assert_int_equal(r.total.warm_stopped_ms, S(135 - 67) + 2 * S(135));
	sim_result_free(&r);
	sim_trace_free(&t);
}

/* runnerd, a pool of 1, jobs at 0, 10 and 70 s, 100 s each:
 *   0   job 0; the poll takes the stopped instance A (resumes until 35); refill R launched
 *  10   job 1; desired 2; the pool has nothing stopped (R warms): a cold launch C (until 60)
 *  35   A claims job 0 (wait 35);  60: C claims job 1 (wait 50)
 *  67   R stopped;  70: job 2, desired 3: R taken (stopped 3 s), resumes until 105; refill R2
 * 105   R claims job 2 (wait 35);  135, 160, 205: the jobs end, each instance leaves
 * 137   R2 stopped, until the end at 205 (68 s)
 * Running: A 135, C 150, R 135 (from its resume), warm-ups 67 + 67. */
static void test_warm_pool_empties_and_refills(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5, .warm_pool = 1};
	struct sim_model m;
	struct sim_result r;
	char err[128];
	const char *text = "0,100\n10,100\n70,100\n";

	assert_int_equal(sim_trace_parse(text, strlen(text), &t, err, sizeof(err)), 0);
	warm_model(&m, SIM_POLICY_RUNNERD);
	run_ok(&m, &p, 1, &t, true, &r);
	assert_int_equal(r.jobs[0].claimed_ms, S(35));
	assert_int_equal(r.jobs[1].claimed_ms, S(60));
	assert_int_equal(r.jobs[2].claimed_ms, S(105));
	assert_int_equal(r.end_ms, S(205));
	assert_int_equal(r.total.launches, 3);
	assert_int_equal(r.total.warm_taken, 2);
	assert_int_equal(r.total.warm_refills, 2);
	assert_int_equal(r.total.busy_ms, S(300));
	assert_int_equal(r.total.boot_ms, S(35) + S(50) + S(35));
	assert_int_equal(r.total.warm_ms, S(67) + S(67));
	assert_int_equal(r.total.instance_ms, S(135) + S(150) + S(135) + S(134));
	assert_int_equal(r.total.warm_stopped_ms, S(3) + S(68));
	assert_int_equal(r.total.wait_max_ms, S(50));
	/* The plot's series (a step at one instant kept where it ended): none stopped from 0
	 * while R warms, 1 from 67 s, none again from 70 s until R2 is stopped at 137. */
	for (size_t k = 0; k < r.series[0].n; k++) {
		const struct sim_sample *x = &r.series[0].s[k];

		assert_int_equal(x->warm, x->t_ms >= S(67) && x->t_ms < S(70) ? 1
		                          : x->t_ms >= S(137)                 ? 1
		                                                              : 0);
	}
	assert_true(r.series[0].n >= 4);
	sim_result_free(&r);
	sim_trace_free(&t);
}

/* The tutorial with a pool of 1: the stopped instance is replaced (the health check at once)
 * while desired still says 1, and the replacement comes from the pool too: R, stopped at 67,
 * is taken at 135, resumes until 170 and idles out at 230; R2 (launched at 135) is stopped
 * at 202. Running: 135 + 95 + 67 + 67; idle 60; stopped 68 + 28. */
static void test_warm_tutorial_replacement_from_pool(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5, .warm_pool = 1};
	struct sim_model m;
	struct sim_result r;

	one_job(&t);
	warm_model(&m, SIM_POLICY_TUTORIAL);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.jobs[0].claimed_ms, S(35));
	assert_int_equal(r.end_ms, S(230));
	assert_int_equal(r.total.launches, 2);
	assert_int_equal(r.total.replacements, 1);
	assert_int_equal(r.total.warm_taken, 2);
	assert_int_equal(r.total.instance_ms, S(135) + S(95) + S(134));
	assert_int_equal(r.total.instance_ms - r.total.busy_ms - r.total.boot_ms - r.total.warm_ms,
	                 S(60));
	assert_int_equal(r.total.warm_stopped_ms, S(68) + S(28));
	sim_result_free(&r);
	sim_trace_free(&t);
}

/* A pool of 0 is no pool: the same claims and figures, whatever the seed. */
static void test_warm_pool_zero_changes_nothing(void **state)
{
	for (uint64_t seed = 1; seed <= 3; seed++) {
		struct sim_trace t;
		struct sim_pool pools[SIM_CLASSES_MAX];
		struct sim_model m;
		struct sim_result a, b;

		random_trace(seed, 150, 3600, 2, &t);
		for (int pol = 0; pol < 2; pol++) {
			sim_model_defaults(&m, pol ? SIM_POLICY_TUTORIAL : SIM_POLICY_RUNNERD);
			m.seed = seed;
			pools_for(&t, 5, pools);
			run_ok(&m, pools, t.nclasses, &t, false, &a);
			m.warm_report = true; /* --warm-pool 0 */
			run_ok(&m, pools, t.nclasses, &t, false, &b);
			for (size_t j = 0; j < t.n; j++)
				assert_int_equal(a.jobs[j].claimed_ms, b.jobs[j].claimed_ms);
			assert_int_equal(a.total.instance_ms, b.total.instance_ms);
			assert_int_equal(a.total.launches, b.total.launches);
			assert_int_equal(a.end_ms, b.end_ms);
			assert_int_equal(b.total.warm_stopped_ms, 0);
			assert_int_equal(b.total.warm_taken, 0);
			sim_result_free(&a);
			sim_result_free(&b);
		}
		sim_trace_free(&t);
	}
}

/* Launches failing with a warm pool: instances resumed in the window fail; every job still
 * runs once, and the back-off still bounds the failures. */
static void test_warm_pool_failing_launches(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 10, .launch_failures = 3, .warm_pool = 4};
	struct sim_model m;
	struct sim_result r;

	steady_trace(&t);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.warm_report = true;
	m.fail_from_ms = S(600);
	m.fail_to_ms = S(3000);
	run_ok(&m, &p, 1, &t, false, &r);
	for (size_t j = 0; j < t.n; j++)
		assert_int_equal(r.jobs[j].runs, 1);
	assert_true(r.total.failed_launches >= 3);
	assert_true(r.total.backoffs >= 1);
	assert_true(r.total.warm_taken <= r.total.launches);
	assert_int_equal(r.total.launches, r.total.failed_launches + t.n);
	sim_result_free(&r);
	sim_trace_free(&t);
}

static void test_warm_pool_bad_input(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5, .warm_pool = -1};
	struct sim_model m;
	struct sim_result r;
	char err[128] = "";

	one_job(&t);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "pool a: need 0 <= warm_pool <= 10000"));
	p.warm_pool = SIM_WARM_POOL_MAX + 1;
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);
	p.warm_pool = 1;
	m.resume_min_ms = S(40);
	m.resume_max_ms = S(30);
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.warm_stop_ms = -1;
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);
	sim_trace_free(&t);
}

/* The daemon's policy is the one deciding: headroom launches spare instances that idle, and
 * max_step slows the ramp. */
static void test_policy_knobs_reach_the_model(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 20};
	struct sim_model m;
	struct sim_result r;
	char err[128];
	const char *five = "0,100\n0,100\n0,100\n0,100\n0,100\n";

	assert_int_equal(sim_trace_parse(five, strlen(five), &t, err, sizeof(err)), 0);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.boot_min_ms = m.boot_max_ms = S(50);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.total.launches, 5);
	assert_int_equal(r.total.wait_max_ms, S(50));
	sim_result_free(&r);

	p.headroom = 2; /* the spares idle out, and come back while the jobs run */
	run_ok(&m, &p, 1, &t, false, &r);
	assert_true(r.total.launches >= 7);
	assert_true(r.total.instance_ms - r.total.busy_ms - r.total.boot_ms > 0);
	sim_result_free(&r);

	p.headroom = 0;
	p.max_step = 1; /* one more instance per 10 s poll */
	run_ok(&m, &p, 1, &t, false, &r);
	assert_int_equal(r.total.wait_max_ms, S(40) + S(50));
	sim_result_free(&r);
	sim_trace_free(&t);
}

static void test_run_errors(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .resource_class = "org/other", .max = 3};
	struct sim_model m;
	struct sim_result r;
	char err[256] = "";
	const char *text = "0,1,org/x\n5,1,org/y\n";

	assert_int_equal(sim_trace_parse(text, strlen(text), &t, err, sizeof(err)), 0);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 1: resource class \"org/x\" has no pool"));
	str_copy(p.resource_class, "org/x", sizeof(p.resource_class));
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 2: resource class \"org/y\""));
	sim_trace_free(&t);

	/* max 0: the work can never run, and the simulation says so instead of looping. */
	one_job(&t);
	p.max = 0;
	for (int pol = 0; pol < 2; pol++) {
		sim_model_defaults(&m, pol ? SIM_POLICY_TUTORIAL : SIM_POLICY_RUNNERD);
		assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EDEADLK);
		assert_non_null(strstr(err, "never ran"));
		m.interval_ms = 0;
		assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EDEADLK);
	}
	p.max = 2;
	p.min = 3;
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -EINVAL);

	/* Nothing takes time and a standing instance idles out at once: churn at one instant,
	 * bounded instead of looping forever. */
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.boot_min_ms = m.boot_max_ms = m.interval_ms = m.claim_interval_ms = m.idle_timeout_ms = 0;
	m.max_events = 10000;
	p.min = 1;
	assert_int_equal(sim_run(&m, &p, 1, &t, false, &r, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "did not settle within 10000 events"));
	sim_trace_free(&t);
}

/* A pool min above 0 never empties: the run ends SIM_DRAIN_S after the last job, with the
 * standing instance billed until then. */
static void test_pool_min_drains(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .min = 1, .max = 3};
	struct sim_model m;
	struct sim_result r;

	one_job(&t);
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.boot_min_ms = m.boot_max_ms = S(50);
	run_ok(&m, &p, 1, &t, false, &r);
	assert_true(r.end_ms >= S(150) + S(SIM_DRAIN_S));
	assert_true(r.total.launches > 2); /* the standing instance idles out and comes back */
	assert_true(r.total.instance_ms >= S(SIM_DRAIN_S));
	sim_result_free(&r);
	sim_trace_free(&t);
}

/* A steady load: a job every 20 s for 4000 s, 100 s each (about 5 at once). */
static void steady_trace(struct sim_trace *t)
{
	struct buf b;
	char err[256];

	buf_init(&b, 0);
	for (int k = 0; k < 200; k++)
		assert_int_equal(buf_printf(&b, "%d,100\n", k * 20), 0);
	assert_int_equal(sim_trace_parse(b.data, b.len, t, err, sizeof(err)), 0);
	buf_free(&b);
}

/* Launches fail from 600 s to 3000 s: with the back-off the failed launches are a few waves
 * of at most the group's max each, without it a loop; either way every job runs once, after
 * the window. */
static void test_failing_launches_are_bounded(void **state)
{
	struct sim_trace t;

	steady_trace(&t);
	for (uint64_t seed = 1; seed <= 4; seed++) {
		struct sim_pool with = {.name = "a", .max = 10, .launch_failures = 3},
		                without = with;
		struct sim_model m;
		struct sim_result a, b;

		without.launch_failures = 0;
		sim_model_defaults(&m, SIM_POLICY_RUNNERD);
		m.seed = seed;
		m.fail_from_ms = S(600);
		m.fail_to_ms = S(3000);
		run_ok(&m, &with, 1, &t, false, &a);
		run_ok(&m, &without, 1, &t, false, &b);
		for (size_t j = 0; j < t.n; j++) {
			assert_int_equal(a.jobs[j].runs, 1);
			assert_int_equal(b.jobs[j].runs, 1);
			if (t.jobs[j].submit_ms >= S(600) && t.jobs[j].submit_ms < S(2900)) {
				assert_true(a.jobs[j].claimed_ms >= S(3000));
				assert_true(b.jobs[j].claimed_ms >= S(3000));
			}
		}
		/* Back-offs of 1, 2, 4, 8, 16 min fit in 40 min: six waves at most. */
		assert_true(a.total.failed_launches >= 3);
		assert_true(a.total.failed_launches <= 6 * (uint64_t)with.max + 10);
		assert_true(a.total.backoffs >= 3 && a.total.backoffs <= 6);
		assert_int_equal(b.total.backoffs, 0);
		assert_true(b.total.failed_launches >= 5 * a.total.failed_launches);
		assert_true(b.total.launches > a.total.launches);
		/* launches = failed + those that ran a job (each job one instance here) */
		assert_int_equal(a.total.launches, a.total.failed_launches + t.n);
		sim_result_free(&a);
		sim_result_free(&b);
	}
	sim_trace_free(&t);
}

/* Without failing launches the back-off changes nothing but the runner list reads it makes
 * (API calls) while instances boot. And the tutorial never reads it. */
static void test_detection_alone_changes_nothing(void **state)
{
	for (uint64_t seed = 1; seed <= 4; seed++) {
		struct sim_trace t;
		struct sim_pool on[SIM_CLASSES_MAX], off[SIM_CLASSES_MAX];
		struct sim_model m;
		struct sim_result a, b;

		random_trace(seed, 150, 3600, 2, &t);
		pools_for(&t, 5, on);
		pools_for(&t, 5, off);
		for (size_t i = 0; i < t.nclasses; i++)
			on[i].launch_failures = 1; /* the most sensitive */
		sim_model_defaults(&m, SIM_POLICY_RUNNERD);
		m.seed = seed;
		run_ok(&m, on, t.nclasses, &t, false, &a);
		run_ok(&m, off, t.nclasses, &t, false, &b);
		for (size_t j = 0; j < t.n; j++)
			assert_int_equal(a.jobs[j].claimed_ms, b.jobs[j].claimed_ms);
		assert_int_equal(a.total.launches, b.total.launches);
		assert_int_equal(a.total.writes, b.total.writes);
		assert_int_equal(a.total.failed_launches, 0);
		assert_int_equal(a.total.backoffs, 0);
		assert_true(a.total.api_calls > b.total.api_calls);
		sim_result_free(&a);
		sim_result_free(&b);
		sim_model_defaults(&m, SIM_POLICY_TUTORIAL);
		run_ok(&m, on, t.nclasses, &t, false, &a);
		run_ok(&m, off, t.nclasses, &t, false, &b);
		assert_int_equal(a.total.api_calls, b.total.api_calls);
		sim_result_free(&a);
		sim_result_free(&b);
		sim_trace_free(&t);
	}
}

static void test_renderers_failing_launches(void **state)
{
	struct sim_trace t;
	struct sim_pool with = {.name = "a", .max = 10, .launch_failures = 3}, without = with;
	struct sim_model m;
	struct sim_result a, b;
	struct buf out;

	steady_trace(&t);
	without.launch_failures = 0;
	sim_model_defaults(&m, SIM_POLICY_RUNNERD);
	m.fail_from_ms = S(600);
	m.fail_to_ms = S(3000);
	run_ok(&m, &with, 1, &t, false, &a);
	run_ok(&m, &without, 1, &t, false, &b);
	buf_init(&out, 0);
	assert_int_equal(sim_render_json(&m, &with, &a, &b, &out), 0);
	for (const char *const *k =
	             (const char *const[]){
	                     "\"fail_launches_s\":[600.000,3000.000]",
	                     "\"failed_launches\":", "\"backoffs\":", "\"launch_failures\":3,",
	                     ",\"without_backoff\":{\"jobs\":200,", NULL};
	     *k; k++)
		assert_non_null(strstr(out.data, *k));
	buf_reset(&out);
	assert_int_equal(sim_render_text(&m, &with, &a, &b, &out), 0);
	assert_non_null(
	        strstr(out.data, "instances launched from 600 s to 3000 s fail their boot"));
	assert_non_null(strstr(out.data, "launch back-off after 3 failed launches in a row"));
	assert_non_null(strstr(out.data, "launches failed their boot;"));
	assert_non_null(strstr(out.data, "without the launch back-off: "));
	buf_reset(&out);
	assert_int_equal(sim_render_json(&m, &with, &a, NULL, &out), 0);
	assert_null(strstr(out.data, "without_backoff"));
	buf_free(&out);
	sim_result_free(&a);
	sim_result_free(&b);
	sim_trace_free(&t);
}

/* The warm pool figures are in every report with warm_report, in none without it. */
static void test_renderers_warm_pool(void **state)
{
	struct sim_trace t;
	struct sim_pool p = {.name = "a", .max = 5, .warm_pool = 1};
	struct sim_model m;
	struct sim_result r;
	struct buf b;

	one_job(&t);
	warm_model(&m, SIM_POLICY_RUNNERD);
	run_ok(&m, &p, 1, &t, true, &r);
	buf_init(&b, 0);
	assert_int_equal(sim_render_json(&m, &p, &r, NULL, &b), 0);
	for (const char *const *k =
	             (const char *const[]){
	                     "\"resume_min_s\":35.000,\"resume_max_s\":35.000,\"warm_stop_s\":17."
	                     "000,",
	                     "\"instance_seconds\":202.000,", "\"idle_instance_seconds\":0.000,",
	                     "\"overhead_seconds_per_job\":102.000,", "\"warm_pool\":1,",
	                     "\"warm_pool_launches\":1,", "\"warm_pool_refills\":1,",
	                     "\"warm_pool_running_seconds\":67.000,",
	                     "\"warm_pool_stopped_seconds\":68.000,",
	                     "\"warm_pool_stopped_seconds_per_job\":68.000", NULL};
	     *k; k++)
		if (!strstr(b.data, *k))
			fail_msg("no %s in %s", *k, b.data);
	buf_reset(&b);
	assert_int_equal(sim_render_text(&m, &p, &r, NULL, &b), 0);
	for (const char *const *k =
	             (const char *const[]){
	                     "warm pool of 1, stopped; resume 35-35 s",
	                     "idle 0, warm-up 67; per job: idle 0.0, boot + idle + warm-up 102.0",
	                     "warm pool 1: 1 launches from it, 1 refills running 67 s (67.0 per "
	                     "job); stopped 68 instance-seconds (EBS only; 68.0 per job)",
	                     NULL};
	     *k; k++)
		if (!strstr(b.data, *k))
			fail_msg("no %s in %s", *k, b.data);
	buf_reset(&b);
	assert_int_equal(sim_render_svg(&m, &p, &r, NULL, &b), 0);
	assert_non_null(strstr(b.data, ">warm pool</text>"));
	assert_non_null(strstr(b.data, "warm pool 1: 68.0 stopped instance-s per job"));
	buf_reset(&b);
	m.warm_report = false;
	assert_int_equal(sim_render_json(&m, &p, &r, NULL, &b), 0);
	assert_null(strstr(b.data, "warm"));
	assert_null(strstr(b.data, "resume"));
	buf_reset(&b);
	assert_int_equal(sim_render_text(&m, &p, &r, NULL, &b), 0);
	assert_null(strstr(b.data, "warm"));
	buf_reset(&b);
	assert_int_equal(sim_render_svg(&m, &p, &r, NULL, &b), 0);
	assert_null(strstr(b.data, "warm"));
	buf_free(&b);
	sim_result_free(&r);
	sim_trace_free(&t);
}

static void test_renderers(void **state)
{
	struct sim_trace t;
	struct sim_pool pools[SIM_CLASSES_MAX];
	struct sim_model m;
	struct sim_result r;
	struct buf b;

	random_trace(3, 50, 600, 2, &t);
	pools_for(&t, 4, pools);
	sim_model_defaults(&m, SIM_POLICY_TUTORIAL);
	run_ok(&m, pools, t.nclasses, &t, true, &r);
	buf_init(&b, 0);
	assert_int_equal(sim_render_json(&m, pools, &r, NULL, &b), 0);
	for (const char *const *k =
	             (const char *const[]){"\"jobs\":50,",
	                                   "\"wait_p50_s\":", "\"wait_p95_s\":", "\"wait_max_s\":",
	                                   "\"instance_seconds\":", "\"idle_instance_seconds\":",
	                                   "\"api_calls\":", "\"pools\":[{", NULL};
	     *k; k++)
		assert_non_null(strstr(b.data, *k));
	buf_reset(&b);
	assert_int_equal(sim_render_text(&m, pools, &r, NULL, &b), 0);
	assert_non_null(strstr(b.data, "policy: tutorial"));
	assert_non_null(strstr(b.data, "pool p1"));
	buf_reset(&b);
	assert_int_equal(sim_render_svg(&m, pools, &r, "t<1>", &b), 0);
	assert_memory_equal(b.data, "<svg ", 5);
	assert_non_null(strstr(b.data, "t&lt;1&gt;"));
	assert_non_null(strstr(b.data, "<path"));
	assert_non_null(strstr(b.data, "</svg>\n"));
	buf_free(&b);
	sim_result_free(&r);
	sim_trace_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_trace_good),
	        cmocka_unit_test(test_trace_bad),
	        cmocka_unit_test(test_trace_oversized),
	        cmocka_unit_test(test_boot_spec),
	        cmocka_unit_test(test_fail_window_spec),
	        cmocka_unit_test(test_resume_spec),
	        cmocka_unit_test(test_warm_pool_bookkeeping),
	        cmocka_unit_test(test_invariants),
	        cmocka_unit_test(test_zero_latency_zero_wait),
	        cmocka_unit_test(test_same_seed_same_output),
	        cmocka_unit_test(test_one_job_runnerd),
	        cmocka_unit_test(test_one_job_tutorial_replacement),
	        cmocka_unit_test(test_policy_knobs_reach_the_model),
	        cmocka_unit_test(test_run_errors),
	        cmocka_unit_test(test_pool_min_drains),
	        cmocka_unit_test(test_renderers),
	        cmocka_unit_test(test_failing_launches_are_bounded),
	        cmocka_unit_test(test_detection_alone_changes_nothing),
	        cmocka_unit_test(test_renderers_failing_launches),
	        cmocka_unit_test(test_warm_one_job),
	        cmocka_unit_test(test_warm_pool_empties_and_refills),
	        cmocka_unit_test(test_warm_tutorial_replacement_from_pool),
	        cmocka_unit_test(test_warm_pool_zero_changes_nothing),
	        cmocka_unit_test(test_warm_pool_failing_launches),
	        cmocka_unit_test(test_warm_pool_bad_input),
	        cmocka_unit_test(test_renderers_warm_pool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
