/* The cycle's pure parts: error classification, backoff, decision lines, describe batching and
 * the Auto Scaling form bodies. */
#include <errno.h>
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
	size_t n = 0, total = 0;

	for (size_t i = 0; i < N; i++) {
		regions[i] = i % 3 == 0 ? "eu-west-1" : "us-east-1";
		take[i] = i != 7;
	}
	assert_int_equal(cycle_plan_chunks(regions, take, N, &cs, &n), 0);
	for (size_t c = 0; c < n; c++) {
		assert_true(cs[c].n >= 1 && cs[c].n <= CYCLE_DESCRIBE_BATCH);
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

	assert_int_equal(cycle_plan_chunks(regions, NULL, 0, &cs, &n), 0);
	assert_int_equal(n, 0);
	free(cs);
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
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_classify),      cmocka_unit_test(test_backoff),
	        cmocka_unit_test(test_decision_text), cmocka_unit_test(test_decision_json),
	        cmocka_unit_test(test_chunks),        cmocka_unit_test(test_forms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
