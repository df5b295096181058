/* The cycle's pure parts: error classification, backoff, decision lines, describe batching and
 * the Auto Scaling form bodies. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cycle.h"
#include "util.h"

static void test_classify(void **state)
{
	static const struct {
		int rc;
		long status;
		const char *code;
		enum api_error_kind kind;
	} cases[] = {
	        {-ETIMEDOUT, 0, NULL, API_ERR_TIMEOUT},
	        {-ECONNREFUSED, 0, NULL, API_ERR_CONNECT},
	        {-EHOSTUNREACH, 0, NULL, API_ERR_CONNECT},
	        {-EFBIG, 0, NULL, API_ERR_MALFORMED},
	        {-EBADMSG, 200, NULL, API_ERR_MALFORMED},
	        {-EPROTO, 0, NULL, API_ERR_OTHER},
	        {0, 429, NULL, API_ERR_THROTTLED},
	        {0, 401, NULL, API_ERR_AUTH},
	        {0, 403, NULL, API_ERR_AUTH},
	        {0, 404, NULL, API_ERR_HTTP_4XX},
	        {0, 400, NULL, API_ERR_HTTP_4XX},
	        {0, 500, NULL, API_ERR_HTTP_5XX},
	        {0, 503, NULL, API_ERR_HTTP_5XX},
	        {0, 400, "Throttling", API_ERR_THROTTLED},
	        {0, 400, "ThrottlingException", API_ERR_THROTTLED},
	        {0, 403, "InvalidClientTokenId", API_ERR_AUTH},
	        {0, 400, "ExpiredToken", API_ERR_AUTH},
	        {0, 400, "ValidationError", API_ERR_HTTP_4XX},
	        {0, 500, "InternalFailure", API_ERR_HTTP_5XX},
	        {0, 302, NULL, API_ERR_OTHER},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (cycle_classify(cases[i].rc, cases[i].status, cases[i].code) != cases[i].kind) {
			print_error("case %zu\n", i);
			fail();
		}
	assert_string_equal(api_error_kind_name(API_ERR_THROTTLED), "throttled");
	assert_string_equal(api_error_kind_name(API_ERR_KINDS), "other");
}

/* A failed SuspendProcesses: passing failures again from the next cycle, a refusal or another
 * lasting error in an hour. */
static void test_suspend_retry(void **state)
{
	static const struct {
		int rc;
		long status;
		const char *code;
		enum suspend_retry how;
	} cases[] = {
	        {-ETIMEDOUT, 0, NULL, SUSPEND_RETRY_SOON},
	        {-ECONNREFUSED, 0, NULL, SUSPEND_RETRY_SOON},
	        {-ECONNRESET, 0, NULL, SUSPEND_RETRY_SOON},
	        {-ENOMEM, 0, NULL, SUSPEND_RETRY_SOON},
	        {0, 400, "Throttling", SUSPEND_RETRY_SOON},
	        {0, 429, NULL, SUSPEND_RETRY_SOON},
	        {0, 500, "InternalFailure", SUSPEND_RETRY_SOON},
	        {0, 500, "ResourceContention", SUSPEND_RETRY_SOON},
	        {0, 503, "ServiceUnavailable", SUSPEND_RETRY_SOON},
	        {0, 502, NULL, SUSPEND_RETRY_SOON},
	        {0, 400, "ExpiredToken", SUSPEND_RETRY_SOON},
	        /* SuspendProcesses' modeled faults are ResourceContention (500) and ResourceInUse
	         * (400): both a group busy with something else for now */
	        {0, 400, "ResourceInUse", SUSPEND_RETRY_SOON},
	        {0, 400, "ScalingActivityInProgress", SUSPEND_RETRY_SOON},
	        {0, 400, "RequestTimeout", SUSPEND_RETRY_SOON},
	        {0, 400, "PriorRequestNotComplete", SUSPEND_RETRY_SOON},
	        {0, 403, "AccessDenied", SUSPEND_RETRY_PERMISSION},
	        {0, 400, "AccessDeniedException", SUSPEND_RETRY_PERMISSION},
	        {0, 403, "UnauthorizedOperation", SUSPEND_RETRY_PERMISSION},
	        {0, 403, NULL, SUSPEND_RETRY_PERMISSION},
	        {0, 400, "ValidationError", SUSPEND_RETRY_LATER},
	        {0, 403, "InvalidClientTokenId", SUSPEND_RETRY_LATER},
	        {0, 403, "SignatureDoesNotMatch", SUSPEND_RETRY_LATER},
	        {0, 404, NULL, SUSPEND_RETRY_LATER},
	        {0, 400, "", SUSPEND_RETRY_LATER},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (cycle_suspend_retry(cases[i].rc, cases[i].status, cases[i].code) !=
		    cases[i].how) {
			print_error("case %zu\n", i);
			fail();
		}
}

static void test_backoff(void **state)
{
	/* Full jitter: uniform in [0, min(cap, interval << (failures - 1))]. */
	assert_int_equal(cycle_backoff_ms(1, 10000, -1, 0), 0);
	assert_int_equal(cycle_backoff_ms(1, 10000, -1, UINT32_MAX), 10000);
	assert_int_equal(cycle_backoff_ms(2, 10000, -1, UINT32_MAX), 20000);
	assert_int_equal(cycle_backoff_ms(3, 10000, -1, UINT32_MAX / 2), 19999); /* floor */
	/* Capped at 5 minutes (or one interval when that is longer). */
	assert_int_equal(cycle_backoff_ms(30, 10000, -1, UINT32_MAX), 300000);
	assert_int_equal(cycle_backoff_ms(30, 600000, -1, UINT32_MAX), 600000);
	/* Retry-After wins when longer, and is capped at an hour. */
	assert_int_equal(cycle_backoff_ms(1, 10000, 42, 0), 42000);
	assert_int_equal(cycle_backoff_ms(1, 10000, 3, UINT32_MAX), 10000);
	assert_int_equal(cycle_backoff_ms(1, 10000, 999999, 0), 3600000);
	assert_int_equal(cycle_backoff_ms(1, 10000, 0, 0), 0);
	for (uint32_t r = 0; r < 1000; r++) {
		uint64_t d = cycle_backoff_ms(4, 1000, -1, random_u32());

		assert_true(d <= 8000);
	}
}

static void test_decision_text(void **state)
{
	struct decision_line d = {"linux-large", "myorg/linux-large", 3, 2, 1, 5, "set", "demand"};
	char out[512];

	assert_int_equal(cycle_format_decision(&d, SCALER_LOG_TEXT, out, sizeof(out)), 0);
	assert_string_equal(out, "pool=linux-large resource_class=myorg/linux-large unclaimed=3 "
	                         "running=2 current=1 desired=5 action=set reason=demand");
	d.unclaimed = d.running = d.desired = -1;
	d.action = "hold";
	d.reason = "task counts not read: Runner API unclaimed: HTTP 503: \"bad\"";
	assert_int_equal(cycle_format_decision(&d, SCALER_LOG_TEXT, out, sizeof(out)), 0);
	assert_string_equal(out, "pool=linux-large resource_class=myorg/linux-large unclaimed=- "
	                         "running=- current=1 desired=- action=hold reason=\"task counts "
	                         "not read: Runner API unclaimed: HTTP 503: \\\"bad\\\"\"");
	/* A line break in a reason cannot start a forged log line. */
	d.reason = "a\nb";
	assert_int_equal(cycle_format_decision(&d, SCALER_LOG_TEXT, out, sizeof(out)), 0);
	assert_null(strchr(out, '\n'));
	/* Too small: an error, not a truncated line. */
	assert_int_equal(cycle_format_decision(&d, SCALER_LOG_TEXT, out, 20), -ENOSPC);
}

static void test_decision_json(void **state)
{
	struct decision_line d = {"p\"1", "org/rc", 0, 4, -1, -1, "hold", "ASG not read"};
	char out[512];

	assert_int_equal(cycle_format_decision(&d, SCALER_LOG_JSON, out, sizeof(out)), 0);
	assert_string_equal(out, "{\"pool\":\"p\\\"1\",\"resource_class\":\"org/rc\","
	                         "\"unclaimed\":0,\"running\":4,\"current\":null,\"desired\":null,"
	                         "\"action\":\"hold\",\"reason\":\"ASG not read\"}");
	assert_int_equal(cycle_format_decision(&d, SCALER_LOG_JSON, out, 30), -ENOSPC);
}

static void test_chunks(void **state)
{
	enum { N = 130 };
	const char *regions[N];
	bool take[N];
	struct chunk *cs = NULL;
	size_t n = 0, total = 0, cap = 0;

	for (size_t i = 0; i < N; i++) {
		regions[i] = i % 3 == 0 ? "eu-west-1" : "us-east-1";
		take[i] = i != 7;
	}
	assert_int_equal(cycle_plan_chunks(regions, NULL, take, N, &cs, &n, &cap), 0);
	assert_true(cap >= n);
	for (size_t c = 0; c < n; c++) {
		assert_true(cs[c].n >= 1 && cs[c].n <= CYCLE_DESCRIBE_BATCH);
		assert_int_equal(cs[c].cap, cycle_chunk_cap(&cs[c], NULL));
		for (size_t j = 0; j < cs[c].n; j++) {
			assert_string_equal(regions[cs[c].pools[j]], cs[c].region);
			assert_int_not_equal(cs[c].pools[j], 7);
			if (j)
				assert_true(cs[c].pools[j] > cs[c].pools[j - 1]);
		}
		total += cs[c].n;
	}
	assert_int_equal(total, N - 1);
	/* 44 in eu-west-1 (one batch), 85 in us-east-1 (two): three batches. */
	assert_int_equal(n, 3);
	free(cs);

	assert_int_equal(cycle_plan_chunks(regions, NULL, NULL, 0, &cs, &n, NULL), 0);
	assert_int_equal(n, 0);
	free(cs);
}

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)

/* Batches by size: one region, pools of the given bytes; want: the batch sizes in order. */
static void test_chunks_by_bytes(void **state)
{
	static const struct {
		size_t n;
		size_t bytes[8];
		size_t want[8]; /* pools per batch, 0-terminated */
	} cases[] = {
	        /* small groups: one batch */
	        {4, {200 * KIB, 200 * KIB, 200 * KIB, 200 * KIB}, {4}},
	        /* exactly the batch limit fits; one byte more starts the next batch */
	        {2, {8 * MIB, 8 * MIB}, {2}},
	        {3, {8 * MIB, 8 * MIB, 1}, {2, 1}},
	        /* a group at the ceiling goes alone, and so does the next when it does not fit */
	        {3, {16 * MIB, 100 * KIB, 100 * KIB}, {1, 2}},
	        {3, {100 * KIB, 16 * MIB, 100 * KIB}, {1, 1, 1}},
	        /* broken estimates: over the ceiling (saturated), zero */
	        {3, {SIZE_MAX, 0, SIZE_MAX}, {1, 1, 1}},
	        {3, {0, 0, 0}, {3}},
	        /* next fit, in pool order: 6 + 6 + 6 MiB -> 2 + 1 */
	        {3, {6 * MIB, 6 * MIB, 6 * MIB}, {2, 1}},
	        {5, {10 * MIB, 7 * MIB, 1 * MIB, 9 * MIB, 7 * MIB}, {1, 2, 2}},
	};
	const char *regions[8];
	struct chunk *cs = NULL;
	size_t n = 0;

	for (size_t i = 0; i < 8; i++)
		regions[i] = "us-east-1";
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t next = 0;

		assert_int_equal(
		        cycle_plan_chunks(regions, cases[i].bytes, NULL, cases[i].n, &cs, &n, NULL),
		        0);
		for (size_t c = 0; c < n; c++) {
			if (cases[i].want[c] != cs[c].n)
				fail_msg("case %zu batch %zu: %zu pools, want %zu", i, c, cs[c].n,
				         cases[i].want[c]);
			for (size_t j = 0; j < cs[c].n; j++)
				assert_int_equal(cs[c].pools[j], next++);
			assert_int_equal(cs[c].cap, cycle_chunk_cap(&cs[c], cases[i].bytes));
			assert_true(cs[c].cap <= ASG_DESCRIBE_MAX_BYTES);
		}
		if (n >= ARRAY_SIZE(cases[i].want) || cases[i].want[n] != 0)
			fail_msg("case %zu: %zu batches", i, n);
		free(cs);
	}
}

static void test_chunk_cap(void **state)
{
	static const size_t bytes[] = {0, 1, 128 * KIB, 8 * MIB, 16 * MIB, SIZE_MAX};
	static const struct {
		size_t n;
		size_t pools[4];
		size_t want;
	} cases[] = {
	        {0, {0}, ASG_DESCRIBE_BASE_BYTES},
	        {1, {0}, ASG_DESCRIBE_BASE_BYTES},
	        {2, {1, 2}, ASG_DESCRIBE_BASE_BYTES + 1 + 128 * KIB},
	        {1, {3}, ASG_DESCRIBE_BASE_BYTES + 8 * MIB},
	        {2, {3, 3}, ASG_DESCRIBE_MAX_BYTES},
	        {1, {4}, ASG_DESCRIBE_MAX_BYTES},
	        {2, {5, 5}, ASG_DESCRIBE_MAX_BYTES}, /* no overflow */
	        {3, {0, 5, 1}, ASG_DESCRIBE_MAX_BYTES},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct chunk c;

		memset(&c, 0, sizeof(c));
		c.n = cases[i].n;
		memcpy(c.pools, cases[i].pools, sizeof(cases[i].pools));
		if (cycle_chunk_cap(&c, bytes) != cases[i].want)
			fail_msg("case %zu: %zu, want %zu", i, cycle_chunk_cap(&c, bytes),
			         cases[i].want);
	}
}

static void test_expected_instances(void **state)
{
	static const struct {
		int64_t pool_max, seen_instances, seen_desired, want;
	} cases[] = {
	        /* never read: the pool's max stands for the group */
	        {20, -1, -1, 20 + 5 + 16},
	        {0, -1, -1, 16},
	        {-3, -1, -1, 16},
	        {8000, -1, -1, 8000 + 2000 + 16},
	        /* read: what it listed or its desired (or what was written), whichever is more */
	        {20, 3000, 10, 3000 + 750 + 16},
	        {20, 100, 130, 130 + 32 + 16},
	        {20, 0, 0, 16},
	        {20, 0, -1, 16},
	        {20, -1, 7, 7 + 1 + 16},
	        /* broken: saturates */
	        {INT64_MAX, -1, -1, INT64_MAX},
	        {0, INT64_MAX, 0, INT64_MAX},
	        {0, INT64_MAX / 2, 0, INT64_MAX / 2 + INT64_MAX / 8 + 16},
	        {INT64_MIN, INT64_MIN, INT64_MIN, 16},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int64_t got = cycle_expected_instances(cases[i].pool_max, cases[i].seen_instances,
		                                       cases[i].seen_desired);

		if (got != cases[i].want)
			fail_msg("case %zu: %" PRId64 ", want %" PRId64, i, got, cases[i].want);
	}
}

static void test_runner_list_bytes(void **state)
{
	static const struct {
		int64_t expected;
		size_t want;
	} cases[] = {
	        {-1, (size_t)1 << 20},
	        {0, (size_t)1 << 20},
	        {16, ((size_t)1 << 20) + 16 * 4096},
	        {41, ((size_t)1 << 20) + 41 * 4096}, /* max 20: the default pool */
	        {1000, ((size_t)1 << 20) + 1000 * 4096},
	        {3839, ((size_t)1 << 20) + 3839 * 4096},
	        {3840, (size_t)16 << 20}, /* the ceiling */
	        {20016, (size_t)16 << 20},
	        {INT64_MAX, (size_t)16 << 20},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (cycle_runner_list_bytes(cases[i].expected) != cases[i].want)
			fail_msg("case %zu: %zu, want %zu", i,
			         cycle_runner_list_bytes(cases[i].expected), cases[i].want);
}

static void test_describe_retry(void **state)
{
	static const struct {
		size_t npools, cap;
		uint64_t left_ms;
		enum describe_retry want;
	} cases[] = {
	        {50, 8 * MIB, 10000, DESCRIBE_SPLIT},
	        {2, 300 * KIB, CYCLE_RETRY_MIN_LEFT_MS, DESCRIBE_SPLIT},
	        {2, ASG_DESCRIBE_MAX_BYTES, 10000, DESCRIBE_SPLIT},
	        {1, 200 * KIB, 10000, DESCRIBE_ALONE},
	        {1, ASG_DESCRIBE_MAX_BYTES - 1, 10000, DESCRIBE_ALONE},
	        {1, ASG_DESCRIBE_MAX_BYTES, 10000, DESCRIBE_GIVE_UP}, /* nothing left to try */
	        {1, SIZE_MAX, 10000, DESCRIBE_GIVE_UP},
	        {50, 8 * MIB, CYCLE_RETRY_MIN_LEFT_MS - 1, DESCRIBE_GIVE_UP}, /* no time */
	        {1, 200 * KIB, 0, DESCRIBE_GIVE_UP},
	        {0, 0, 10000, DESCRIBE_GIVE_UP},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (cycle_describe_retry(cases[i].npools, cases[i].cap, cases[i].left_ms) !=
		    cases[i].want)
			fail_msg("case %zu", i);
}

static void test_split_chunk(void **state)
{
	static const size_t bytes[] = {100 * KIB, 200 * KIB, 300 * KIB, 400 * KIB, 500 * KIB};
	static const struct {
		size_t n;
		size_t first, second; /* pools in each half */
	} cases[] = {
	        {2, 1, 1}, {3, 2, 1}, {4, 2, 2}, {5, 3, 2}, {CYCLE_DESCRIBE_BATCH, 25, 25},
	};
	struct chunk c, a, b;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		memset(&c, 0, sizeof(c));
		c.region = "eu-west-1";
		c.n = cases[i].n;
		for (size_t j = 0; j < c.n; j++)
			c.pools[j] = j % 5;
		c.cap = 1;
		snprintf(c.next_token, sizeof(c.next_token), "page-2");
		c.pages = 1;
		assert_int_equal(cycle_split_chunk(&c, bytes, &a, &b), 0);
		assert_int_equal(a.n, cases[i].first);
		assert_int_equal(b.n, cases[i].second);
		assert_string_equal(a.region, "eu-west-1");
		assert_string_equal(b.region, "eu-west-1");
		assert_memory_equal(a.pools, c.pools, a.n * sizeof(c.pools[0]));
		assert_memory_equal(b.pools, c.pools + a.n, b.n * sizeof(c.pools[0]));
		/* each half from its first page, with a limit of its own */
		assert_string_equal(a.next_token, "");
		assert_int_equal(a.pages + b.pages, 0);
		assert_int_equal(a.cap, cycle_chunk_cap(&a, bytes));
		assert_int_equal(b.cap, cycle_chunk_cap(&b, bytes));
	}
	/* In place: the first half may overwrite the batch itself. */
	memset(&c, 0, sizeof(c));
	c.region = "r";
	c.n = 3;
	c.pools[0] = 4;
	c.pools[1] = 0;
	c.pools[2] = 2;
	assert_int_equal(cycle_split_chunk(&c, bytes, &c, &b), 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.pools[0], 4);
	assert_int_equal(c.pools[1], 0);
	assert_int_equal(c.cap, ASG_DESCRIBE_BASE_BYTES + 600 * KIB);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.pools[0], 2);
	assert_int_equal(b.cap, ASG_DESCRIBE_BASE_BYTES + 300 * KIB);
	/* Nothing to split. */
	c.n = 1;
	assert_int_equal(cycle_split_chunk(&c, bytes, &a, &b), -EINVAL);
	c.n = 0;
	assert_int_equal(cycle_split_chunk(&c, bytes, &a, &b), -EINVAL);
	c.n = CYCLE_DESCRIBE_BATCH + 1;
	assert_int_equal(cycle_split_chunk(&c, bytes, &a, &b), -EINVAL);
}

static void test_forms(void **state)
{
	const char *names[] = {"asg a", "b/c&d"};
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(cycle_describe_form(names, 2, NULL, &b), 0);
	assert_string_equal(b.data, "Action=DescribeAutoScalingGroups&Version=2011-01-01&"
	                            "AutoScalingGroupNames.member.1=asg+a&"
	                            "AutoScalingGroupNames.member.2=b%2Fc%26d&MaxRecords=100");
	buf_reset(&b);
	assert_int_equal(cycle_describe_form(names, 1, "tok=", &b), 0);
	assert_non_null(strstr(b.data, "&NextToken=tok%3D"));
	assert_int_equal(cycle_describe_form(names, 0, NULL, &b), -EINVAL);
	assert_int_equal(cycle_describe_form(names, CYCLE_DESCRIBE_BATCH + 1, NULL, &b), -EINVAL);
	buf_reset(&b);
	assert_int_equal(cycle_set_form("my-asg", 4, &b), 0);
	assert_string_equal(b.data,
	                    "Action=SetDesiredCapacity&Version=2011-01-01&"
	                    "AutoScalingGroupName=my-asg&DesiredCapacity=4&HonorCooldown=false");
	assert_int_equal(cycle_set_form("my-asg", -1, &b), -EINVAL);
	assert_int_equal(cycle_set_form("", 1, &b), -EINVAL);
	buf_reset(&b);
	assert_int_equal(cycle_suspend_form("my asg", &b), 0);
	assert_string_equal(b.data, "Action=SuspendProcesses&Version=2011-01-01&"
	                            "AutoScalingGroupName=my+asg&"
	                            "ScalingProcesses.member.1=AZRebalance");
	assert_int_equal(cycle_suspend_form("", &b), -EINVAL);
	assert_int_equal(cycle_suspend_form(NULL, &b), -EINVAL);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_classify),
	        cmocka_unit_test(test_suspend_retry),
	        cmocka_unit_test(test_backoff),
	        cmocka_unit_test(test_decision_text),
	        cmocka_unit_test(test_decision_json),
	        cmocka_unit_test(test_chunks),
	        cmocka_unit_test(test_chunks_by_bytes),
	        cmocka_unit_test(test_chunk_cap),
	        cmocka_unit_test(test_expected_instances),
	        cmocka_unit_test(test_runner_list_bytes),
	        cmocka_unit_test(test_describe_retry),
	        cmocka_unit_test(test_split_chunk),
	        cmocka_unit_test(test_forms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
