/* Unit tests: runner-scaler's warm-pool decision (write only when DescribeWarmPool shows
 * otherwise; never without a read; wait while the pool is being deleted) and the lines it
 * logs, text and JSON, from tables. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"
#include "warm_pool.h"

struct dcase {
	const char *what;
	int64_t want;
	bool read, exists;
	int64_t min, max;
	const char *state, *status;
	bool reuse;
	enum warm_pool_plan plan;
	const char *why;
};

/* clang-format off */
static const struct dcase dcases[] = {
	{"not managed", -1, true, false, 0, -1, "", "", false, WARM_POOL_UNKNOWN, ""},
	{"not read (a failed DescribeWarmPool): nothing decided", 2, false, false, 0, -1, "", "",
	 false, WARM_POOL_UNKNOWN, ""},
	{"no pool yet", 2, true, false, 0, -1, "", "", false, WARM_POOL_PUT, "no warm pool"},
	{"as wanted", 2, true, true, 2, 2, "Stopped", "", false, WARM_POOL_KEEP, ""},
	{"another size", 3, true, true, 2, 2, "Stopped", "", false, WARM_POOL_PUT,
	 "MinSize 2, want 3"},
	{"sized by MaxSize - desired", 2, true, true, 2, -1, "Stopped", "", false, WARM_POOL_PUT,
	 "MaxGroupPreparedCapacity unset: -1, want 2"},
	{"running instances", 2, true, true, 2, 2, "Running", "", false, WARM_POOL_PUT,
	 "PoolState Running, want Stopped"},
	{"reused on scale-in", 2, true, true, 2, 2, "Stopped", "", true, WARM_POOL_PUT,
	 "ReuseOnScaleIn true, want false"},
	{"being deleted", 2, true, true, 0, -1, "Stopped", "PendingDelete", false,
	 WARM_POOL_DELETING, ""},
	{"a pool of none", 0, true, true, 0, 0, "Stopped", "", false, WARM_POOL_KEEP, ""},
};
/* clang-format on */

static void seen_of(const struct dcase *c, struct asg_warm_pool *p)
{
	memset(p, 0, sizeof(*p));
	p->exists = c->exists;
	p->min_size = c->min;
	p->max_prepared = c->max;
	str_copy(p->pool_state, c->state, sizeof(p->pool_state));
	str_copy(p->status, c->status, sizeof(p->status));
	p->reuse_on_scale_in = c->reuse;
}

static void test_decide(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(dcases); i++) {
		const struct dcase *c = &dcases[i];
		struct asg_warm_pool p;
		char why[128];
		enum warm_pool_plan plan;

		seen_of(c, &p);
		plan = warm_pool_decide(c->want, c->read, &p, why, sizeof(why));
		if (plan != c->plan || strcmp(why, c->why) != 0) {
			print_error("case %zu (%s): plan %d why \"%s\"\n", i, c->what, plan, why);
			fail();
		}
	}
}

struct fcase {
	const char *what;
	struct warm_pool_state w;
	int64_t want;
	bool json;
	const char *line; /* "" = nothing said */
};

static void test_format(void **state)
{
	/* clang-format off */
	static const struct fcase cases[] = {
		{"as wanted: silent", {.asked = true, .read = true, .plan = WARM_POOL_KEEP}, 2, false,
		 ""},
		{"not managed: silent", {.asked = false}, -1, false, ""},
		{"written", {.asked = true, .read = true, .plan = WARM_POOL_PUT,
		             .write = WARM_WRITE_OK, .why = "no warm pool"}, 2, false,
		 "pool=linux warm_pool=2 action=put reason=\"no warm pool: "
		 "MinSize=MaxGroupPreparedCapacity=2 PoolState=Stopped ReuseOnScaleIn=false\""},
		{"dry run", {.asked = true, .read = true, .plan = WARM_POOL_PUT,
		             .write = WARM_WRITE_DRY, .why = "MinSize 1, want 2"}, 2, false,
		 "pool=linux warm_pool=2 action=put (dry run: not written) reason=\"MinSize 1, want "
		 "2: MinSize=MaxGroupPreparedCapacity=2 PoolState=Stopped ReuseOnScaleIn=false\""},
		{"not the leader", {.asked = true, .read = true, .plan = WARM_POOL_PUT,
		                    .write = WARM_WRITE_FENCED, .why = "no warm pool"}, 2, false,
		 "pool=linux warm_pool=2 action=hold (not the leader) reason=\"no warm pool: "
		 "MinSize=MaxGroupPreparedCapacity=2 PoolState=Stopped ReuseOnScaleIn=false\""},
		{"read failed", {.asked = true, .failed = true,
		                 .err = "autoscaling:DescribeWarmPool: Throttling: Rate exceeded"},
		 2, false,
		 "pool=linux warm_pool=2 action=hold reason=\"autoscaling:DescribeWarmPool: "
		 "Throttling: Rate exceeded\""},
		{"write failed", {.asked = true, .read = true, .plan = WARM_POOL_PUT,
		                  .write = WARM_WRITE_FAILED, .why = "no warm pool",
		                  .err = "autoscaling:PutWarmPool: LimitExceeded: too many"}, 2, false,
		 "pool=linux warm_pool=2 action=hold reason=\"no warm pool; autoscaling:PutWarmPool: "
		 "LimitExceeded: too many\""},
		{"deleting", {.asked = true, .read = true, .plan = WARM_POOL_DELETING}, 2, false,
		 "pool=linux warm_pool=2 action=wait reason=\"the warm pool is being deleted "
		 "(PendingDelete): PutWarmPool after it is gone\""},
		{"json", {.asked = true, .read = true, .plan = WARM_POOL_PUT, .write = WARM_WRITE_OK,
		          .why = "no warm pool", .seen = {.instances = 0}}, 2, true,
		 "{\"pool\":\"linux\",\"warm_pool\":2,\"warm_pool_size\":0,\"action\":\"put\","
		 "\"reason\":\"no warm pool: MinSize=MaxGroupPreparedCapacity=2 PoolState=Stopped "
		 "ReuseOnScaleIn=false\"}"},
	};
	/* clang-format on */
	char line[1024];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(warm_pool_format("linux", cases[i].want, &cases[i].w,
		                                  cases[i].json, line, sizeof(line)),
		                 0);
		if (strcmp(line, cases[i].line) != 0) {
			print_error("case %zu (%s):\n got %s\nwant %s\n", i, cases[i].what, line,
			            cases[i].line);
			fail();
		}
	}
	assert_int_equal(warm_pool_format("linux", 2, &cases[2].w, false, line, 20), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_decide),
	        cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
