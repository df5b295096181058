/* Unit tests: IMDS parsers (spot action, role credentials) from tables, good and broken; then
 * the IMDSv2 flow against a scripted loopback server: token PUT, token reuse, 401 -> new token,
 * 404/403 mapping, region fallback, role credentials, disabled. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "imds.h"
#include "loopback_server.h"
#include "util.h"

static void test_parse_spot_action(void **state)
{
	static const struct {
		const char *json;
		int want_r;
		const char *action;
		time_t time;
	} cases[] = {
	        {"{\"action\":\"terminate\",\"time\":\"2017-09-18T08:22:00Z\"}", 0, "terminate",
	         1505722920},
	        {"{\"action\": \"stop\", \"time\": \"2017-09-18T08:22:00Z\"}", 0, "stop",
	         1505722920},
	        {"{\"time\":\"2017-09-18T08:22:00.123Z\",\"action\":\"hibernate\"}", 0, "hibernate",
	         1505722920},
	        {"{\"action\":\"reboot\",\"time\":\"2017-09-18T08:22:00Z\"}", -EBADMSG, NULL, 0},
	        {"{\"action\":\"terminate\"}", -EBADMSG, NULL, 0},
	        {"{\"time\":\"2017-09-18T08:22:00Z\"}", -EBADMSG, NULL, 0},
	        {"{\"action\":\"terminate\",\"time\":\"yesterday\"}", -EBADMSG, NULL, 0},
	        {"{\"action\":\"terminate\",\"time\":1505722920}", -EBADMSG, NULL, 0},
	        {"{\"action\":1,\"time\":\"2017-09-18T08:22:00Z\"}", -EBADMSG, NULL, 0},
	        {"[\"terminate\"]", -EBADMSG, NULL, 0},
	        {"{\"action\":\"terminate\",\"time\":\"2017-09-18T08:2", -EBADMSG, NULL, 0},
	        {"<html>404</html>", -EBADMSG, NULL, 0},
	        {"", -EBADMSG, NULL, 0},
	};
	struct spot_action sa;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int r;

		memset(&sa, 0, sizeof(sa));
		r = imds_parse_spot_action(cases[i].json, strlen(cases[i].json), &sa);
		if (r != cases[i].want_r)
			fail_msg("case %zu: r=%d want %d", i, r, cases[i].want_r);
		if (r == 0) {
			assert_string_equal(sa.action, cases[i].action);
			assert_int_equal(sa.time, cases[i].time);
		}
	}
	assert_int_equal(imds_parse_spot_action(NULL, 0, &sa), -EBADMSG);
}

#define CREDS_OK                                                                                   \
	"{\"Code\":\"Success\",\"LastUpdated\":\"2024-01-01T00:00:00Z\",\"Type\":\"AWS-HMAC\","    \
	"\"AccessKeyId\":\"ASIAEXAMPLE\",\"SecretAccessKey\":\"wJalrXUtnFEMI/K7MDENG\","           \
	"\"Token\":\"IQoJb3JpZ2luX2VjEXAMPLE==\",\"Expiration\":\"2024-01-01T06:00:00Z\"}"

static void test_parse_credentials(void **state)
{
	static char long_token[4096];
	static const struct {
		const char *json;
		int want_r;
	} cases[] = {
	        {CREDS_OK, 0},
	        /* Code absent: accepted when every field is there (botocore does the same). */
	        {"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\","
	         "\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         0},
	        {"{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"EC2 cannot assume the "
	         "role\",\"LastUpdated\":\"2024-01-01T00:00:00Z\"}",
	         -EACCES},
	        {"{\"Code\":42,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\","
	         "\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         -EACCES},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\","
	         "\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         -EBADMSG},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"Token\":\"T\","
	         "\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         -EBADMSG},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":\"\",\"SecretAccessKey\":\"S\","
	         "\"Token\":\"T\",\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         -EBADMSG},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\","
	         "\"Token\":\"T\"}",
	         -EBADMSG},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\","
	         "\"Token\":\"T\",\"Expiration\":\"soon\"}",
	         -EBADMSG},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":7,\"SecretAccessKey\":\"S\","
	         "\"Token\":\"T\",\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         -EBADMSG},
	        {"{\"Code\":\"Success\",\"AccessKeyId\":\"A\"", -EBADMSG},
	        {"\"Success\"", -EBADMSG},
	        {"", -EBADMSG},
	        {long_token, -EBADMSG},
	};
	struct aws_creds c;
	size_t i;
	int n;

	n = snprintf(long_token, sizeof(long_token),
	             "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":"
	             "\"2024-01-01T06:00:00Z\",\"Token\":\"");
	memset(long_token + n, 'x', 2100);
	strcpy(long_token + n + 2100, "\"}");

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int r;

		memset(&c, 0x5a, sizeof(c));
		r = imds_parse_credentials(cases[i].json, strlen(cases[i].json), &c);
		if (r != cases[i].want_r)
			fail_msg("case %zu: r=%d want %d", i, r, cases[i].want_r);
	}
	memset(&c, 0, sizeof(c));
	assert_int_equal(imds_parse_credentials(CREDS_OK, strlen(CREDS_OK), &c), 0);
	assert_string_equal(c.akid, "ASIAEXAMPLE");
	assert_string_equal(c.secret, "wJalrXUtnFEMI/K7MDENG");
	assert_string_equal(c.token, "IQoJb3JpZ2luX2VjEXAMPLE==");
	assert_int_equal(c.expiration, 1704088800);
	assert_true(c.from_imds);
	/* A failure leaves out untouched. */
	assert_int_equal(imds_parse_credentials("{}", 2, &c), -EBADMSG);
	assert_string_equal(c.akid, "ASIAEXAMPLE");
}

/* ---- against a loopback server ------------------------------------------------------------ */

struct fixture {
	struct loopback_server srv;
	struct http_client *http;
	struct imds m;
};

static void fixture_start(struct fixture *f, const struct ls_response *script, size_t n)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(ls_start(&f->srv, script, n), 0);
	assert_int_equal(http_client_new(&f->http), 0);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f->srv.url, 1);
	assert_int_equal(imds_init(&f->m, f->http), 0);
	assert_true(f->m.explicit_base);
	assert_false(f->m.disabled);
}

static void fixture_stop(struct fixture *f)
{
	imds_clear(&f->m);
	http_client_free(f->http);
	ls_stop(&f->srv);
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
}

static void test_init_env(void **state)
{
	struct imds m;

	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	unsetenv("AWS_EC2_METADATA_DISABLED");
	assert_int_equal(imds_init(&m, NULL), 0);
	assert_string_equal(m.base, "http://169.254.169.254");
	assert_false(m.explicit_base);
	assert_false(m.disabled);
	assert_int_equal(m.timeout_ms, 2000);
	assert_int_equal(m.token_ttl_s, 21600);

	setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]/", 1);
	assert_int_equal(imds_init(&m, NULL), 0);
	assert_true(m.disabled);
	assert_true(m.explicit_base);
	assert_string_equal(m.base, "http://[fd00:ec2::254]");
	setenv("AWS_EC2_METADATA_DISABLED", "false", 1);
	assert_int_equal(imds_init(&m, NULL), 0);
	assert_false(m.disabled);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
}

/* AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE picks the built-in address (not an explicit endpoint:
 * the URL check must admit it on its own); an endpoint variable wins over the mode. */
static void test_init_endpoint_mode(void **state)
{
	static const struct {
		const char *mode, *endpoint, *base;
		bool disabled, explicit_base;
	} cases[] = {
	        {"IPv6", NULL, "http://[fd00:ec2::254]", false, false},
	        {"ipv6", NULL, "http://[fd00:ec2::254]", false, false},
	        {"IPv4", NULL, "http://169.254.169.254", false, false},
	        {"", NULL, "http://169.254.169.254", false, false},
	        {"IPv5", NULL, "http://169.254.169.254", true, false},
	        {"IPv6", "http://127.0.0.1:1234", "http://127.0.0.1:1234", false, true},
	};
	struct imds m;

	unsetenv("AWS_EC2_METADATA_DISABLED");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", cases[i].mode, 1);
		if (cases[i].endpoint)
			setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", cases[i].endpoint, 1);
		else
			unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
		assert_int_equal(imds_init(&m, NULL), 0);
		assert_string_equal(m.base, cases[i].base);
		assert_int_equal(m.disabled, cases[i].disabled);
		assert_int_equal(m.explicit_base, cases[i].explicit_base);
		/* A disabled IMDS says which variable did it. */
		if (cases[i].disabled)
			assert_non_null(strstr(m.disabled_reason, "ENDPOINT_MODE=IPv5"));
		if (!cases[i].disabled)
			assert_true(http_url_allowed(m.base, m.explicit_base));
	}
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
}

static void test_disabled(void **state)
{
	struct imds m;
	struct buf b;
	char v[64];

	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	assert_int_equal(imds_init(&m, NULL), 0);
	buf_init(&b, 0);
	assert_int_equal(imds_get(&m, "meta-data/instance-id", &b), -ENODEV);
	assert_int_equal(imds_instance_id(&m, v, sizeof(v)), -ENODEV);
	buf_free(&b);
	unsetenv("AWS_EC2_METADATA_DISABLED");
}

static void test_token_flow(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n", "TOKEN-1\n", 0},
	        {LS_REPLY, 200, NULL, "i-0123456789abcdef0", 0},
	        {LS_REPLY, 200, NULL, "InService\n", 0},
	        {LS_REPLY, 401, NULL, "", 0},
	        {LS_REPLY, 200, NULL, "TOKEN-2", 0},
	        {LS_REPLY, 404, NULL, "<html>Not Found</html>", 0},
	        {LS_REPLY, 403, NULL, "", 0},
	};
	struct fixture f;
	struct spot_action sa;
	char v[64];

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(imds_instance_id(&f.m, v, sizeof(v)), 0);
	assert_string_equal(v, "i-0123456789abcdef0");
	assert_string_equal(f.m.token, "TOKEN-1");
	/* Token reused; whitespace stripped. */
	assert_int_equal(imds_target_lifecycle_state(&f.m, v, sizeof(v)), 0);
	assert_string_equal(v, "InService");
	/* 401: new token, then the retry says 404: no spot notice. */
	assert_int_equal(imds_spot_action(&f.m, &sa), -ENOENT);
	assert_string_equal(f.m.token, "TOKEN-2");
	assert_int_equal(imds_instance_id(&f.m, v, sizeof(v)), -EACCES);
	fixture_stop(&f);

	assert_int_equal(f.srv.nreqs, 7);
	assert_string_equal(f.srv.reqs[0].method, "PUT");
	assert_string_equal(f.srv.reqs[0].path, "/latest/api/token");
	assert_string_equal(ls_header(&f.srv.reqs[0], "X-aws-ec2-metadata-token-ttl-seconds"),
	                    "21600");
	assert_string_equal(f.srv.reqs[1].method, "GET");
	assert_string_equal(f.srv.reqs[1].path, "/latest/meta-data/instance-id");
	assert_string_equal(ls_header(&f.srv.reqs[1], "X-aws-ec2-metadata-token"), "TOKEN-1");
	assert_string_equal(f.srv.reqs[2].path,
	                    "/latest/meta-data/autoscaling/target-lifecycle-state");
	assert_string_equal(ls_header(&f.srv.reqs[2], "X-aws-ec2-metadata-token"), "TOKEN-1");
	assert_string_equal(f.srv.reqs[3].path, "/latest/meta-data/spot/instance-action");
	assert_string_equal(f.srv.reqs[4].method, "PUT");
	assert_string_equal(f.srv.reqs[5].path, "/latest/meta-data/spot/instance-action");
	assert_string_equal(ls_header(&f.srv.reqs[5], "X-aws-ec2-metadata-token"), "TOKEN-2");
}

static void test_401_twice(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "T1", 0},    {LS_REPLY, 401, NULL, "", 0},
	        {LS_REPLY, 200, NULL, "T2", 0},    {LS_REPLY, 401, NULL, "", 0},
	        {LS_REPLY, 200, NULL, "never", 0},
	};
	struct fixture f;
	char v[64];

	fixture_start(&f, script, ARRAY_SIZE(script));
	/* Retried once only. */
	assert_int_equal(imds_instance_id(&f.m, v, sizeof(v)), -EPROTO);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 4);
}

static void test_bad_tokens(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "bad\r\nX-Injected: 1", 0},
	        {LS_REPLY, 200, NULL, "", 0},
	        {LS_REPLY, 403, NULL, "", 0},
	        {LS_REPLY, 405, NULL, "", 0},
	};
	struct fixture f;
	struct buf b;

	fixture_start(&f, script, ARRAY_SIZE(script));
	buf_init(&b, 0);
	assert_int_equal(imds_get(&f.m, "meta-data/instance-id", &b), -EBADMSG);
	assert_int_equal(imds_get(&f.m, "meta-data/instance-id", &b), -EBADMSG);
	assert_int_equal(imds_get(&f.m, "meta-data/instance-id", &b), -EACCES);
	assert_int_equal(imds_get(&f.m, "meta-data/instance-id", &b), -EPROTO);
	/* Paths that would bend the URL never leave the process. */
	assert_int_equal(imds_get(&f.m, "../secret", &b), -EINVAL);
	assert_int_equal(imds_get(&f.m, "meta-data/x?y", &b), -EINVAL);
	assert_int_equal(imds_get(&f.m, "/meta-data", &b), -EINVAL);
	assert_int_equal(imds_get(&f.m, "", &b), -EINVAL);
	buf_free(&b);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 4);
	assert_null(f.m.token[0] ? f.m.token : NULL);
}

static void test_region(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "T", 0},
	        {LS_REPLY, 200, NULL, "eu-west-1", 0},
	        {LS_REPLY, 404, NULL, "", 0},
	        {LS_REPLY, 200, NULL, "us-east-2c\n", 0},
	        {LS_REPLY, 200, NULL, "not a region", 0},
	};
	struct fixture f;
	char v[32];

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(imds_region(&f.m, v, sizeof(v)), 0);
	assert_string_equal(v, "eu-west-1");
	/* Older IMDS: the AZ minus its letter. */
	assert_int_equal(imds_region(&f.m, v, sizeof(v)), 0);
	assert_string_equal(v, "us-east-2");
	assert_int_equal(imds_region(&f.m, v, sizeof(v)), -EBADMSG);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 5);
	assert_string_equal(f.srv.reqs[2].path, "/latest/meta-data/placement/region");
	assert_string_equal(f.srv.reqs[3].path, "/latest/meta-data/placement/availability-zone");
}

static void test_role_credentials(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "T", 0},
	        {LS_REPLY, 200, NULL, "my-runner-role\nsecond-role\n", 0},
	        {LS_REPLY, 200, NULL, CREDS_OK, 0},
	        {LS_REPLY, 404, NULL, "", 0},
	        {LS_REPLY, 200, NULL, "bad role/../x", 0},
	        {LS_REPLY, 200, NULL, "role", 0},
	        {LS_REPLY, 200, NULL, "{\"Code\":\"AssumeRoleUnauthorizedAccess\"}", 0},
	        {LS_REPLY, 200, NULL, "{\"spot\":", 0},
	        {LS_REPLY, 200, NULL, "{\"noticeTime\":\"2020-10-27T08:22:00Z\"}", 0},
	};
	struct fixture f;
	struct aws_creds c;
	time_t notice = 0;

	fixture_start(&f, script, ARRAY_SIZE(script));
	memset(&c, 0, sizeof(c));
	assert_int_equal(imds_role_credentials(&f.m, &c), 0);
	assert_string_equal(c.akid, "ASIAEXAMPLE");
	assert_true(c.from_imds);
	assert_int_equal(c.expiration, 1704088800);
	assert_int_equal(imds_role_credentials(&f.m, &c), -ENOENT);
	assert_int_equal(imds_role_credentials(&f.m, &c), -EBADMSG);
	assert_int_equal(imds_role_credentials(&f.m, &c), -EACCES);
	assert_int_equal(imds_rebalance(&f.m, &notice), -EBADMSG);
	assert_int_equal(imds_rebalance(&f.m, &notice), 0);
	assert_int_equal(notice, 1603786920);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 9);
	assert_string_equal(f.srv.reqs[1].path, "/latest/meta-data/iam/security-credentials/");
	assert_string_equal(f.srv.reqs[2].path,
	                    "/latest/meta-data/iam/security-credentials/my-runner-role");
	assert_string_equal(f.srv.reqs[8].path,
	                    "/latest/meta-data/events/recommendations/rebalance");
}

static void test_oversize_and_timeout(void **state)
{
	static char big[64 * 1024 + 2];
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "T", 0},
	        {LS_REPLY, 200, NULL, big, 0},
	        {LS_STALL, 0, NULL, NULL, 0},
	};
	struct fixture f;
	struct buf b;
	uint64_t t0;

	memset(big, 'x', sizeof(big) - 1);
	fixture_start(&f, script, ARRAY_SIZE(script));
	buf_init(&b, 0);
	assert_int_equal(imds_get(&f.m, "user-data", &b), -EFBIG);
	f.m.timeout_ms = 200;
	t0 = now_mono_ms();
	assert_int_equal(imds_get(&f.m, "user-data", &b), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 5000);
	buf_free(&b);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_spot_action),
	        cmocka_unit_test(test_parse_credentials),
	        cmocka_unit_test(test_init_env),
	        cmocka_unit_test(test_init_endpoint_mode),
	        cmocka_unit_test(test_disabled),
	        cmocka_unit_test(test_token_flow),
	        cmocka_unit_test(test_401_twice),
	        cmocka_unit_test(test_bad_tokens),
	        cmocka_unit_test(test_region),
	        cmocka_unit_test(test_role_credentials),
	        cmocka_unit_test(test_oversize_and_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
