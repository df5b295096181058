/* Unit tests: form encoding, endpoints, error parsing (Query XML and JSON), the retry table,
 * credential expiry; then aws_query/aws_json against a scripted loopback server: headers,
 * bodies, retries, Retry-After, deadlines, credential refresh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws.h"
#include "http.h"
#include "loopback_server.h"
#include "util.h"

/* ---- pure helpers ------------------------------------------------------------------------- */

static void test_form_append(void **state)
{
	static const struct {
		const char *name, *value, *want;
	} cases[] = {
	        {"AutoScalingGroupName", "my-asg", "AutoScalingGroupName=my-asg"},
	        {"Filters.member.1.Name", "tag:cluster", "Filters.member.1.Name=tag%3Acluster"},
	        {"Filters.member.1.Values.member.1", "a b", "Filters.member.1.Values.member.1=a+b"},
	        {"K", "A-Z_a.z~09", "K=A-Z_a.z~09"},
	        {"K", "&=+/?#%", "K=%26%3D%2B%2F%3F%23%25"},
	        {"K", "caf\xC3\xA9", "K=caf%C3%A9"},
	        {"K", "\n\t", "K=%0A%09"},
	        {"K", "", "K="},
	        {"a b", "c", "a+b=c"},
	};
	struct buf b;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		buf_init(&b, 0);
		assert_int_equal(aws_form_append(&b, cases[i].name, cases[i].value), 0);
		if (strcmp(b.data, cases[i].want) != 0)
			fail_msg("case %zu: '%s' want '%s'", i, b.data, cases[i].want);
		buf_free(&b);
	}
	/* Pairs are '&'-separated. */
	buf_init(&b, 0);
	assert_int_equal(aws_form_append(&b, "AutoScalingGroupName", "my-asg"), 0);
	assert_int_equal(aws_form_append(&b, "DesiredCapacity", "4"), 0);
	assert_int_equal(aws_form_append(&b, "HonorCooldown", "false"), 0);
	assert_string_equal(b.data,
	                    "AutoScalingGroupName=my-asg&DesiredCapacity=4&HonorCooldown=false");
	buf_free(&b);
	/* Bounded. */
	buf_init(&b, 8);
	assert_int_equal(aws_form_append(&b, "Name", "toolongvalue"), -EFBIG);
	buf_free(&b);
	buf_init(&b, 0);
	assert_int_equal(aws_form_append(&b, "K", NULL), -EINVAL);
	buf_free(&b);
}

static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
	const char *const *p;

	for (p = fake_env; p && p[0]; p += 2)
		if (strcmp(p[0], name) == 0)
			return p[1];
	return NULL;
}

static void test_endpoint(void **state)
{
	static const char *const none[] = {NULL};
	static const char *const generic[] = {"AWS_ENDPOINT_URL", "http://127.0.0.1:4566/", NULL};
	static const char *const specific[] = {
	        "AWS_ENDPOINT_URL",
	        "http://127.0.0.1:4566",
	        "AWS_ENDPOINT_URL_AUTO_SCALING",
	        "http://asg.local:1",
	        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
	        "http://sm.local:2",
	        "AWS_ENDPOINT_URL_SSM",
	        "http://ssm.local:3",
	        "AWS_ENDPOINT_URL_DYNAMODB",
	        "http://ddb.local:4",
	        NULL,
	};
	static const char *const empty_specific[] = {"AWS_ENDPOINT_URL_SSM", "", "AWS_ENDPOINT_URL",
	                                             "http://g:9", NULL};
	static const struct {
		const char *const *env;
		enum aws_service svc;
		const char *region;
		int want_r;
		const char *want;
		bool want_explicit;
	} cases[] = {
	        {none, AWS_AUTOSCALING, "us-east-1", 0,
	         "https://autoscaling.us-east-1.amazonaws.com", false},
	        {none, AWS_SECRETSMANAGER, "eu-west-2", 0,
	         "https://secretsmanager.eu-west-2.amazonaws.com", false},
	        {none, AWS_SSM, "ap-south-1", 0, "https://ssm.ap-south-1.amazonaws.com", false},
	        {none, AWS_DYNAMODB, "us-west-2", 0, "https://dynamodb.us-west-2.amazonaws.com",
	         false},
	        {none, AWS_AUTOSCALING, "cn-north-1", 0,
	         "https://autoscaling.cn-north-1.amazonaws.com.cn", false},
	        {none, AWS_DYNAMODB, "cn-northwest-1", 0,
	         "https://dynamodb.cn-northwest-1.amazonaws.com.cn", false},
	        {generic, AWS_SSM, "us-east-1", 0, "http://127.0.0.1:4566", true},
	        {generic, AWS_AUTOSCALING, "us-east-1", 0, "http://127.0.0.1:4566", true},
	        {specific, AWS_AUTOSCALING, "us-east-1", 0, "http://asg.local:1", true},
	        {specific, AWS_SECRETSMANAGER, "us-east-1", 0, "http://sm.local:2", true},
	        {specific, AWS_SSM, "us-east-1", 0, "http://ssm.local:3", true},
	        {specific, AWS_DYNAMODB, "us-east-1", 0, "http://ddb.local:4", true},
	        {empty_specific, AWS_SSM, "us-east-1", 0, "http://g:9", true},
	        {none, AWS_SSM, "", -EINVAL, NULL, false},
	        {none, AWS_SSM, NULL, -EINVAL, NULL, false},
	        {none, AWS_SSM, "us-east-1.evil.com/x", -EINVAL, NULL, false},
	        {none, AWS_SSM, "US-EAST-1", -EINVAL, NULL, false},
	        {none, AWS_SSM, "us east", -EINVAL, NULL, false},
	        {generic, AWS_SSM, "us:east", -EINVAL, NULL, false},
	        {none, (enum aws_service)42, "us-east-1", -EINVAL, NULL, false},
	};
	char out[128];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		bool expl = !cases[i].want_explicit;
		int r;

		fake_env = cases[i].env;
		r = aws_endpoint(cases[i].svc, cases[i].region, out, sizeof(out), &expl,
		                 fake_getenv);
		if (r != cases[i].want_r)
			fail_msg("case %zu: r=%d want %d", i, r, cases[i].want_r);
		if (r == 0 && strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: '%s' want '%s'", i, out, cases[i].want);
		if (r == 0 && expl != cases[i].want_explicit)
			fail_msg("case %zu: explicit %d", i, expl);
	}
	fake_env = none;
	assert_int_equal(aws_endpoint(AWS_AUTOSCALING, "us-east-1", out, 20, NULL, fake_getenv),
	                 -ENAMETOOLONG);
	assert_string_equal(aws_signing_name(AWS_AUTOSCALING), "autoscaling");
	assert_string_equal(aws_signing_name(AWS_SECRETSMANAGER), "secretsmanager");
	assert_string_equal(aws_signing_name(AWS_SSM), "ssm");
	assert_string_equal(aws_signing_name(AWS_DYNAMODB), "dynamodb");
}

static void test_region_from_env(void **state)
{
	char out[32];

	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
	assert_int_equal(aws_region_from_env(out, sizeof(out)), -ENOENT);
	setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
	assert_int_equal(aws_region_from_env(out, sizeof(out)), 0);
	assert_string_equal(out, "eu-west-1");
	setenv("AWS_REGION", "us-east-2", 1);
	assert_int_equal(aws_region_from_env(out, sizeof(out)), 0);
	assert_string_equal(out, "us-east-2");
	assert_int_equal(aws_region_from_env(out, 4), -ENAMETOOLONG);
	setenv("AWS_REGION", "", 1);
	assert_int_equal(aws_region_from_env(out, sizeof(out)), 0);
	assert_string_equal(out, "eu-west-1");
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
}

static void test_parse_query_error(void **state)
{
	static const struct {
		const char *body;
		int want_r;
		const char *code, *message, *rid;
	} cases[] = {
	        {"<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\n"
	         "  <Error><Type>Sender</Type><Code>ScalingActivityInProgress</Code>"
	         "<Message>Scaling activity 1 is in progress</Message></Error>\n"
	         "  <RequestId>9f1e1b2c-aaaa</RequestId>\n</ErrorResponse>",
	         0, "ScalingActivityInProgress", "Scaling activity 1 is in progress",
	         "9f1e1b2c-aaaa"},
	        {"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message>"
	         "</Error><RequestId>r1</RequestId></ErrorResponse>",
	         0, "Throttling", "Rate exceeded", "r1"},
	        {"<ErrorResponse><Error><Code>ValidationError</Code><Message>Instance Id not found "
	         "- No managed instance found for instance ID: i-1 &amp; &lt;x&gt;</Message>"
	         "</Error></ErrorResponse>",
	         0, "ValidationError",
	         "Instance Id not found - No managed instance found for instance ID: i-1 & <x>",
	         ""},
	        {"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>m</Message>"
	         "</Error></Errors><RequestID>ec2-rid</RequestID></Response>",
	         0, "RequestLimitExceeded", "m", "ec2-rid"},
	        {"<ErrorResponse><Error><Code>X</Code></Error></ErrorResponse>", 0, "X", "", ""},
	        /* Line breaks in AWS text would forge log lines: flattened. */
	        {"<ErrorResponse><Error><Code>X</Code><Message>a\nb&#13;c</Message></Error>"
	         "</ErrorResponse>",
	         0, "X", "a b c", ""},
	        {"<ErrorResponse><Error><Message>no code</Message></Error></ErrorResponse>",
	         -EBADMSG, NULL, NULL, NULL},
	        {"<ErrorResponse><Error><Code></Code></Error></ErrorResponse>", -EBADMSG, NULL,
	         NULL, NULL},
	        {"<Other><Error><Code>X</Code></Error></Other>", -EBADMSG, NULL, NULL, NULL},
	        {"<ErrorResponse><Error><Code>X</Code>", -EBADMSG, NULL, NULL, NULL},
	        {"<html><body>502 Bad Gateway</body></html>", -EBADMSG, NULL, NULL, NULL},
	        {"{\"__type\":\"X\"}", -EBADMSG, NULL, NULL, NULL},
	        {"", -EBADMSG, NULL, NULL, NULL},
	};
	struct aws_error err;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int r;

		memset(&err, 0, sizeof(err));
		r = aws_parse_query_error(cases[i].body, strlen(cases[i].body), &err);
		if (r != cases[i].want_r)
			fail_msg("case %zu: r=%d", i, r);
		if (r < 0)
			continue;
		assert_string_equal(err.code, cases[i].code);
		assert_string_equal(err.message, cases[i].message);
		assert_string_equal(err.request_id, cases[i].rid);
	}
	assert_int_equal(aws_parse_query_error(NULL, 0, &err), -EBADMSG);
}

static void test_parse_json_error(void **state)
{
	static const struct {
		const char *body;
		int want_r;
		const char *code, *message;
	} cases[] = {
	        {"{\"__type\":\"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException\","
	         "\"message\":\"The conditional request failed\"}",
	         0, "ConditionalCheckFailedException", "The conditional request failed"},
	        {"{\"__type\":\"ResourceNotFoundException\",\"Message\":\"Secrets Manager can't "
	         "find "
	         "the specified secret.\"}",
	         0, "ResourceNotFoundException",
	         "Secrets Manager can't find the specified secret."},
	        {"{\"__type\":\"ParameterNotFound\"}", 0, "ParameterNotFound", ""},
	        {"{\"__type\":\"ThrottlingException:http://internal.amazon.com/coral/x/\","
	         "\"message\":\"Rate exceeded\"}",
	         0, "ThrottlingException", "Rate exceeded"},
	        {"{\"__type\":\"aws.protocoltests#FooError:http://internal.amazon.com/coral/"
	         "com.amazon.coral.validate/\"}",
	         0, "FooError", ""},
	        {"{\"__type\":\"a#b#LastOne\"}", 0, "LastOne", ""},
	        {"{\"__type\":\"X\",\"message\":\"lower\",\"Message\":\"upper\"}", 0, "X", "lower"},
	        {"{\"__type\":\"X\",\"message\":5,\"Message\":\"upper\"}", 0, "X", "upper"},
	        {"{\"__type\":\"X\",\"message\":\"line\\nbreak\"}", 0, "X", "line break"},
	        {"{\"__type\":\"ns#\"}", -EBADMSG, NULL, NULL},
	        {"{\"__type\":\":suffix\"}", -EBADMSG, NULL, NULL},
	        {"{\"__type\":\"\"}", -EBADMSG, NULL, NULL},
	        {"{\"__type\":42}", -EBADMSG, NULL, NULL},
	        {"{\"message\":\"no type\"}", -EBADMSG, NULL, NULL},
	        {"[\"__type\"]", -EBADMSG, NULL, NULL},
	        {"{\"__type\":\"X\"", -EBADMSG, NULL, NULL},
	        {"<html>500</html>", -EBADMSG, NULL, NULL},
	        {"", -EBADMSG, NULL, NULL},
	};
	struct aws_error err;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int r;

		memset(&err, 0, sizeof(err));
		r = aws_parse_json_error(cases[i].body, strlen(cases[i].body), &err);
		if (r != cases[i].want_r)
			fail_msg("case %zu: r=%d", i, r);
		if (r < 0)
			continue;
		assert_string_equal(err.code, cases[i].code);
		assert_string_equal(err.message, cases[i].message);
	}
	assert_int_equal(aws_parse_json_error(NULL, 0, &err), -EBADMSG);
}

static void test_retryable(void **state)
{
	static const struct {
		const char *code;
		long status;
		bool want;
	} cases[] = {
	        {"Throttling", 400, true},
	        {"ThrottlingException", 400, true},
	        {"ThrottledException", 400, true},
	        {"RequestThrottledException", 400, true},
	        {"TooManyRequestsException", 400, true},
	        {"ProvisionedThroughputExceededException", 400, true},
	        {"TransactionInProgressException", 400, true},
	        {"RequestLimitExceeded", 400, true},
	        {"BandwidthLimitExceeded", 400, true},
	        {"LimitExceededException", 400, true},
	        {"RequestThrottled", 400, true},
	        {"SlowDown", 503, true},
	        {"PriorRequestNotComplete", 400, true},
	        {"EC2ThrottledException", 400, true},
	        {"RequestTimeout", 400, true},
	        {"RequestTimeoutException", 400, true},
	        {"ResourceContention", 500, true},
	        {"ScalingActivityInProgress", 400, true},
	        {"InternalFailure", 500, true},
	        {"ServiceUnavailable", 503, true},
	        {"http-502", 502, true},
	        {"http-504", 504, true},
	        {"http-429", 429, true},
	        {"timeout", 0, true},
	        {"refused", 0, true},
	        {"unreachable", 0, true},
	        {"transport", 0, true},
	        {"too-large", 200, false},
	        {"malformed", 200, false},
	        {"ConditionalCheckFailedException", 400, false},
	        {"ValidationError", 400, false},
	        {"LimitExceeded", 400, false}, /* Auto Scaling quota, not a throttle */
	        {"ResourceNotFoundException", 400, false},
	        {"AccessDeniedException", 400, false},
	        {"SignatureDoesNotMatch", 403, false},
	        {"InvalidClientTokenId", 403, false},
	        {"ExpiredToken", 400, false},
	        {"http-404", 404, false},
	        {"http-501", 501, false},
	};
	struct aws_error err;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		memset(&err, 0, sizeof(err));
		str_copy(err.code, cases[i].code, sizeof(err.code));
		err.http_status = cases[i].status;
		if (aws_error_retryable(&err) != cases[i].want)
			fail_msg("%s/%ld: want %d", cases[i].code, cases[i].status, cases[i].want);
	}
	assert_false(aws_error_retryable(NULL));
}

static void test_creds_expiring(void **state)
{
	struct aws_creds c;
	time_t now = 1700000000;

	memset(&c, 0, sizeof(c));
	assert_true(aws_creds_expiring(&c, now)); /* nothing to sign with */
	str_copy(c.akid, "AKID", sizeof(c.akid));
	assert_false(aws_creds_expiring(&c, now)); /* long-term keys never expire */
	c.expiration = now + 3600;
	assert_false(aws_creds_expiring(&c, now));
	c.expiration = now + 301;
	assert_false(aws_creds_expiring(&c, now));
	c.expiration = now + 300;
	assert_true(aws_creds_expiring(&c, now));
	c.expiration = now + 10;
	assert_true(aws_creds_expiring(&c, now));
	c.expiration = now - 10;
	assert_true(aws_creds_expiring(&c, now));
}

static void test_call_deadline(void **state)
{
	static const struct {
		uint64_t budget, cap, now, want;
	} cases[] = {
	        {0, 0, 1000, 0},                 /* nothing: attempts and timeouts bound it */
	        {300, 0, 1000, 1300},            /* the budget counts from the call's start */
	        {300, 0, 50000, 50300},          /* ... whenever that is */
	        {300, 1200, 1000, 1200},         /* a cap earlier than the budget wins */
	        {300, 9000, 1000, 1300},         /* a later one does not */
	        {0, 9000, 1000, 9000},           /* a cap alone */
	        {0, 500, 1000, 500},             /* a cap already past: the call will not start */
	        {UINT64_MAX, 0, 10, UINT64_MAX}, /* no overflow */
	};
	struct aws_ctx ctx;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t got;

		memset(&ctx, 0, sizeof(ctx));
		ctx.call_budget_ms = cases[i].budget;
		ctx.cap_mono_ms = cases[i].cap;
		got = aws_call_deadline(&ctx, cases[i].now);
		if (got != cases[i].want)
			fail_msg("case %zu: %llu want %llu", i, (unsigned long long)got,
			         (unsigned long long)cases[i].want);
	}
	/* A cap scope keeps an earlier cap and restores what was there. */
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(aws_cap_begin(&ctx, 5000), 0);
	assert_int_equal(ctx.cap_mono_ms, 5000);
	assert_int_equal(aws_cap_begin(&ctx, 7000), 5000);
	assert_int_equal(ctx.cap_mono_ms, 5000);
	aws_cap_end(&ctx, 5000);
	assert_int_equal(aws_cap_begin(&ctx, 3000), 5000);
	assert_int_equal(ctx.cap_mono_ms, 3000);
	aws_cap_end(&ctx, 5000);
	assert_int_equal(ctx.cap_mono_ms, 5000);
	assert_int_equal(aws_cap_begin(&ctx, 0), 5000); /* none added */
	assert_int_equal(ctx.cap_mono_ms, 5000);
	aws_cap_end(&ctx, 0);
	assert_int_equal(ctx.cap_mono_ms, 0);
}

/* ---- against a loopback server ------------------------------------------------------------ */

struct fixture {
	struct loopback_server srv;
	struct http_client *http;
	struct aws_ctx ctx;
	struct aws_error err;
	struct buf out;
};

static void fixture_start(struct fixture *f, const struct ls_response *script, size_t n)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(ls_start(&f->srv, script, n), 0);
	assert_int_equal(http_client_new(&f->http), 0);
	unsetenv("AWS_ENDPOINT_URL_AUTO_SCALING");
	unsetenv("AWS_ENDPOINT_URL_SECRETS_MANAGER");
	unsetenv("AWS_ENDPOINT_URL_SSM");
	unsetenv("AWS_ENDPOINT_URL_DYNAMODB");
	setenv("AWS_ENDPOINT_URL", f->srv.url, 1);
	f->ctx.http = f->http;
	f->ctx.backoff_base_ms = 1;
	f->ctx.backoff_cap_ms = 5;
	f->ctx.timeout_ms = 3000;
	str_copy(f->ctx.creds.akid, "AKIDTEST", sizeof(f->ctx.creds.akid));
	str_copy(f->ctx.creds.secret, "very-secret-key", sizeof(f->ctx.creds.secret));
	buf_init(&f->out, 0);
}

static void fixture_stop(struct fixture *f)
{
	buf_wipe(&f->out);
	http_client_free(f->http);
	ls_stop(&f->srv);
	unsetenv("AWS_ENDPOINT_URL");
}

static void test_query_success(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, "Content-Type: text/xml\r\n",
	         "<SetDesiredCapacityResponse><ResponseMetadata><RequestId>r</RequestId>"
	         "</ResponseMetadata></SetDesiredCapacityResponse>",
	         0},
	};
	struct fixture f;
	const struct ls_request *rq;
	const char *auth;

	fixture_start(&f, script, ARRAY_SIZE(script));
	str_copy(f.ctx.creds.token, "FwoGZXIvYXdzEXAMPLETOKEN", sizeof(f.ctx.creds.token));
	assert_int_equal(
	        aws_query(&f.ctx, "us-east-1", "SetDesiredCapacity",
	                  "AutoScalingGroupName=my-asg&DesiredCapacity=4&HonorCooldown=false",
	                  &f.out, &f.err),
	        0);
	assert_non_null(strstr(f.out.data, "<SetDesiredCapacityResponse>"));
	assert_string_equal(f.err.call, "autoscaling:SetDesiredCapacity");
	fixture_stop(&f);

	assert_int_equal(f.srv.nreqs, 1);
	rq = &f.srv.reqs[0];
	assert_string_equal(rq->method, "POST");
	assert_string_equal(rq->path, "/");
	assert_string_equal(rq->body, "Action=SetDesiredCapacity&Version=2011-01-01&"
	                              "AutoScalingGroupName=my-asg&DesiredCapacity=4&"
	                              "HonorCooldown=false");
	assert_string_equal(ls_header(rq, "Content-Type"),
	                    "application/x-www-form-urlencoded; charset=utf-8");
	assert_string_equal(ls_header(rq, "X-Amz-Security-Token"), "FwoGZXIvYXdzEXAMPLETOKEN");
	assert_null(ls_header(rq, "X-Amz-Target"));
	assert_null(ls_header(rq, "Expect"));
	auth = ls_header(rq, "Authorization");
	assert_non_null(auth);
	assert_non_null(strstr(auth, "Credential=AKIDTEST/"));
	assert_non_null(strstr(auth, "/us-east-1/autoscaling/aws4_request"));
	assert_non_null(
	        strstr(auth, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
	assert_null(strstr(rq->headers, "very-secret-key"));
}

static void test_query_retry_then_ok(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 400, "x-amzn-RequestId: hdr-rid\r\n",
	         "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message>"
	         "</Error><RequestId>body-rid</RequestId></ErrorResponse>",
	         0},
	        {LS_REPLY, 503, NULL, "<html>Service Unavailable</html>", 0},
	        {LS_REPLY, 200, NULL, "<OkResponse/>", 0},
	};
	struct fixture f;

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(
	        aws_query(&f.ctx, "us-east-1", "DescribeAutoScalingGroups", "", &f.out, &f.err), 0);
	assert_string_equal(f.out.data, "<OkResponse/>");
	/* The throttle of the first attempt is not reported after the success. */
	assert_string_equal(f.err.code, "");
	assert_int_equal(f.err.http_status, 200);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 3);
	/* An empty form leaves no trailing '&'; every attempt is the same request. */
	assert_string_equal(f.srv.reqs[0].body,
	                    "Action=DescribeAutoScalingGroups&Version=2011-01-01");
	assert_string_equal(f.srv.reqs[2].body, f.srv.reqs[0].body);
}

static void test_query_not_retried(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 400, NULL,
	         "<ErrorResponse><Error><Code>ValidationError</Code><Message>Instance Id not found"
	         "</Message></Error><RequestId>body-rid</RequestId></ErrorResponse>",
	         0},
	};
	struct fixture f;

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(aws_query(&f.ctx, "us-east-1", "TerminateInstanceInAutoScalingGroup",
	                           "InstanceId=i-1&ShouldDecrementDesiredCapacity=true", &f.out,
	                           &f.err),
	                 -EREMOTEIO);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 1);
	assert_int_equal(f.err.http_status, 400);
	assert_string_equal(f.err.code, "ValidationError");
	assert_string_equal(f.err.message, "Instance Id not found");
	assert_string_equal(f.err.request_id, "body-rid");
	assert_string_equal(f.err.call, "autoscaling:TerminateInstanceInAutoScalingGroup");
	assert_int_equal(f.err.retry_after_s, -1);
}

static void test_query_gives_up(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 500, "x-amzn-RequestId: rid-1\r\n", "<html>oops</html>", 0},
	        {LS_REPLY, 500, NULL, "", 0},
	        {LS_REPLY, 500, "x-amzn-RequestId: rid-3\r\n", "<html>oops</html>", 0},
	        {LS_REPLY, 200, NULL, "never reached", 0},
	};
	struct fixture f;

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(
	        aws_query(&f.ctx, "us-east-1", "SetDesiredCapacity", "A=1", &f.out, &f.err),
	        -EREMOTEIO);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 3); /* the default max_attempts */
	assert_string_equal(f.err.code, "http-500");
	assert_int_equal(f.err.http_status, 500);
	assert_string_equal(f.err.request_id, "rid-3");
	assert_true(aws_error_retryable(&f.err));
}

static void test_retry_after_over_cap_stops(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 503, "Retry-After: 120\r\n",
	         "{\"__type\":\"ThrottlingException\",\"message\":\"slow down\"}", 0},
	        {LS_REPLY, 200, NULL, "{}", 0},
	};
	struct fixture f;

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(
	        aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &f.out, &f.err),
	        -EREMOTEIO);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 1);
	assert_string_equal(f.err.code, "ThrottlingException");
	assert_int_equal(f.err.retry_after_s, 120);
}

static void test_retry_after_honoured(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 429, "Retry-After: 1\r\n", "{\"__type\":\"TooManyRequestsException\"}",
	         0},
	        {LS_REPLY, 200, NULL, "{\"ok\":true}", 0},
	};
	struct fixture f;
	uint64_t t0;

	fixture_start(&f, script, ARRAY_SIZE(script));
	f.ctx.backoff_cap_ms = 2000;
	t0 = now_mono_ms();
	assert_int_equal(
	        aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &f.out, &f.err), 0);
	/* Backoff alone would be at most a few ms; Retry-After asked for a second. */
	assert_true(now_mono_ms() - t0 >= 1000);
	assert_string_equal(f.out.data, "{\"ok\":true}");
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 2);
}

static void test_deadline(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 500, "Retry-After: 5\r\n", "", 0},
	        {LS_REPLY, 200, NULL, "{}", 0},
	};
	struct fixture f;

	/* A cap already past: no attempt at all. */
	fixture_start(&f, script, ARRAY_SIZE(script));
	f.ctx.cap_mono_ms = 1;
	assert_int_equal(
	        aws_json(&f.ctx, AWS_DYNAMODB, "us-east-1", "GetItem", "{}", &f.out, &f.err),
	        -ETIMEDOUT);
	assert_string_equal(f.err.code, "timeout");
	assert_string_equal(f.err.call, "dynamodb:GetItem");

	/* A retry sleep that would cross the deadline is not taken (Retry-After makes it 5 s). */
	f.ctx.backoff_cap_ms = 60000;
	f.ctx.cap_mono_ms = 0;
	f.ctx.call_budget_ms = 2000;
	assert_int_equal(
	        aws_json(&f.ctx, AWS_DYNAMODB, "us-east-1", "GetItem", "{}", &f.out, &f.err),
	        -EREMOTEIO);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 1);
	assert_string_equal(f.err.code, "http-500");
}

/* A deadline bounds the call it was set for and ends with it: a call made after an earlier
 * call's deadline passed still goes out (issue 10: the scaler's lease renewals all failed
 * locally with "timeout" once 2 x request_timeout had passed since start-up). */
static void test_deadline_per_call(void **state)
{
	static const struct ls_response script[] = {
	        {LS_STALL, 0, NULL, NULL, 0},
	        {LS_REPLY, 200, NULL, "{}", 0},
	        {LS_REPLY, 200, NULL, "{}", 0},
	};
	struct fixture f;
	uint64_t t0;

	fixture_start(&f, script, ARRAY_SIZE(script));
	f.ctx.max_attempts = 1;
	f.ctx.call_budget_ms = 300;
	/* The first call hangs: it ends at its deadline (well before the 3 s attempt timeout). */
	t0 = now_mono_ms();
	assert_int_equal(
	        aws_json(&f.ctx, AWS_DYNAMODB, "us-east-1", "GetItem", "{}", &f.out, &f.err),
	        -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 2000);
	/* Its deadline has passed now; the next calls have their own. */
	if (aws_json(&f.ctx, AWS_DYNAMODB, "us-east-1", "PutItem", "{}", &f.out, &f.err) != 0)
		fail_msg("a call after the previous call's deadline did not go out: %s: %s",
		         f.err.code, f.err.message);
	assert_int_equal(
	        aws_json(&f.ctx, AWS_DYNAMODB, "us-east-1", "UpdateItem", "{}", &f.out, &f.err), 0);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 3);
	assert_string_equal(ls_header(&f.srv.reqs[1], "X-Amz-Target"), "DynamoDB_20120810.PutItem");
	assert_string_equal(ls_header(&f.srv.reqs[2], "X-Amz-Target"),
	                    "DynamoDB_20120810.UpdateItem");
}

static void test_json_headers_and_errors(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 400, "x-amzn-RequestId: ddb-rid\r\n",
	         "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException\","
	         "\"message\":\"The conditional request failed\"}",
	         0},
	        {LS_REPLY, 200, NULL, "{\"SecretString\":\"s\"}", 0},
	};
	static const char ddb_body[] = "{\"TableName\":\"leases\"}";
	struct fixture f;

	fixture_start(&f, script, ARRAY_SIZE(script));
	assert_int_equal(
	        aws_json(&f.ctx, AWS_DYNAMODB, "us-west-2", "PutItem", ddb_body, &f.out, &f.err),
	        -EREMOTEIO);
	assert_string_equal(f.err.code, "ConditionalCheckFailedException");
	assert_string_equal(f.err.request_id, "ddb-rid");
	assert_string_equal(f.err.call, "dynamodb:PutItem");
	assert_int_equal(aws_json(&f.ctx, AWS_SECRETSMANAGER, "us-west-2", "GetSecretValue",
	                          "{\"SecretId\":\"x\"}", &f.out, &f.err),
	                 0);
	assert_string_equal(f.out.data, "{\"SecretString\":\"s\"}");
	fixture_stop(&f);

	assert_int_equal(f.srv.nreqs, 2); /* the conditional failure was not retried */
	assert_string_equal(f.srv.reqs[0].body, ddb_body);
	assert_string_equal(ls_header(&f.srv.reqs[0], "Content-Type"),
	                    "application/x-amz-json-1.0");
	assert_string_equal(ls_header(&f.srv.reqs[0], "X-Amz-Target"), "DynamoDB_20120810.PutItem");
	assert_null(ls_header(&f.srv.reqs[0], "X-Amz-Security-Token"));
	assert_non_null(strstr(ls_header(&f.srv.reqs[0], "Authorization"),
	                       "/us-west-2/dynamodb/aws4_request, SignedHeaders=content-type;host;"
	                       "x-amz-date;x-amz-target,"));
	assert_string_equal(ls_header(&f.srv.reqs[1], "Content-Type"),
	                    "application/x-amz-json-1.1");
	assert_string_equal(ls_header(&f.srv.reqs[1], "X-Amz-Target"),
	                    "secretsmanager.GetSecretValue");
}

static void test_ssm_target_and_transport(void **state)
{
	static const struct ls_response script[] = {
	        {LS_CLOSE, 0, NULL, NULL, 0},
	        {LS_REPLY, 200, NULL, "{\"Parameter\":{}}", 0},
	        {LS_REPLY, 200, NULL, "0123456789", 0},
	};
	struct fixture f;
	struct buf big;

	fixture_start(&f, script, ARRAY_SIZE(script));
	/* A dropped connection is a transport error: retried. */
	assert_int_equal(aws_json(&f.ctx, AWS_SSM, "eu-central-1", "GetParameter",
	                          "{\"Name\":\"/x\"}", &f.out, &f.err),
	                 0);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 2);
	assert_string_equal(ls_header(&f.srv.reqs[1], "X-Amz-Target"), "AmazonSSM.GetParameter");

	/* Too large is not retried, and says so. */
	buf_init(&big, 2 * 1024 * 1024);
	assert_int_equal(buf_printf(&big, "%*s", (int)(BUF_MAX_DEFAULT + 1), "x"), 0);
	{
		struct ls_response s2[] = {
		        {LS_REPLY, 200, NULL, big.data, big.len},
		        {LS_REPLY, 200, NULL, "{}", 0},
		};

		fixture_start(&f, s2, ARRAY_SIZE(s2));
		assert_int_equal(aws_json(&f.ctx, AWS_SSM, "eu-central-1", "GetParameter", "{}",
		                          &f.out, &f.err),
		                 -EFBIG);
		assert_string_equal(f.err.code, "too-large");
		fixture_stop(&f);
		assert_int_equal(f.srv.nreqs, 1);
	}
	buf_free(&big);
}

static void test_refusals(void **state)
{
	struct http_client *http;
	struct aws_ctx ctx;
	struct aws_error err;
	struct buf out;

	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(http_client_new(&http), 0);
	ctx.http = http;
	str_copy(ctx.creds.akid, "AKID", sizeof(ctx.creds.akid));
	buf_init(&out, 0);
	/* An endpoint variable without a usable URL scheme: refused, not retried. */
	setenv("AWS_ENDPOINT_URL", "ftp://127.0.0.1:1", 1);
	assert_int_equal(aws_json(&ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &out, &err),
	                 -EPERM);
	assert_string_equal(err.code, "transport");
	unsetenv("AWS_ENDPOINT_URL");
	/* Bad arguments. */
	assert_int_equal(aws_json(&ctx, AWS_AUTOSCALING, "us-east-1", "X", "{}", &out, &err),
	                 -EINVAL);
	assert_int_equal(aws_query(&ctx, "bad region", "X", "", &out, &err), -EINVAL);
	/* No credentials and nothing to refresh them with. */
	memset(&ctx.creds, 0, sizeof(ctx.creds));
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
	assert_int_equal(aws_query(&ctx, "us-east-1", "X", "", &out, &err), -ENOKEY);
	assert_string_equal(err.code, "credentials");
	/* A token with a line break would inject a header: refused before any I/O. */
	str_copy(ctx.creds.akid, "AKID", sizeof(ctx.creds.akid));
	str_copy(ctx.creds.secret, "s", sizeof(ctx.creds.secret));
	str_copy(ctx.creds.token, "tok\r\nX-Evil: 1", sizeof(ctx.creds.token));
	assert_int_equal(aws_query(&ctx, "us-east-1", "X", "", &out, &err), -EINVAL);
	assert_string_equal(err.code, "credentials");
	str_copy(ctx.creds.token, "", sizeof(ctx.creds.token));
	str_copy(ctx.creds.akid, "AK:ID", sizeof(ctx.creds.akid));
	assert_int_equal(aws_query(&ctx, "us-east-1", "X", "", &out, &err), -EINVAL);
	unsetenv("AWS_ENDPOINT_URL");
	buf_free(&out);
	http_client_free(http);
}

struct refresher {
	int calls;
	int fail;
};

static int fake_refresh(void *user, struct aws_creds *c)
{
	struct refresher *r = user;

	r->calls++;
	if (r->fail)
		return -EIO;
	str_copy(c->akid, "ASIANEW", sizeof(c->akid));
	str_copy(c->secret, "new-secret", sizeof(c->secret));
	str_copy(c->token, "NEWTOKEN", sizeof(c->token));
	c->expiration = time(NULL) + 6 * 3600;
	c->from_imds = true;
	return 0;
}

static void test_refresh(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "{}", 0},
	        {LS_REPLY, 200, NULL, "{}", 0},
	        {LS_REPLY, 400, NULL, "{\"__type\":\"ExpiredTokenException\"}", 0},
	        {LS_REPLY, 200, NULL, "{}", 0},
	};
	struct fixture f;
	struct refresher rf = {0, 0};

	fixture_start(&f, script, ARRAY_SIZE(script));
	f.ctx.refresh = fake_refresh;
	f.ctx.refresh_user = &rf;
	/* Expiring in two minutes: refreshed before the request. */
	str_copy(f.ctx.creds.token, "OLDTOKEN", sizeof(f.ctx.creds.token));
	f.ctx.creds.expiration = time(NULL) + 120;
	assert_int_equal(
	        aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &f.out, &f.err), 0);
	assert_int_equal(rf.calls, 1);
	assert_string_equal(f.ctx.creds.akid, "ASIANEW");
	/* Fresh now: no refresh. */
	assert_int_equal(
	        aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &f.out, &f.err), 0);
	assert_int_equal(rf.calls, 1);
	/* AWS says the token expired anyway (rotated early): refresh once and go again. */
	assert_int_equal(
	        aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &f.out, &f.err), 0);
	assert_int_equal(rf.calls, 2);
	fixture_stop(&f);
	assert_int_equal(f.srv.nreqs, 4);
	assert_string_equal(ls_header(&f.srv.reqs[0], "X-Amz-Security-Token"), "NEWTOKEN");
	assert_non_null(strstr(ls_header(&f.srv.reqs[0], "Authorization"), "Credential=ASIANEW/"));

	/* Refresh fails while the old credentials are still valid: carry on with them. */
	{
		static const struct ls_response s2[] = {{LS_REPLY, 200, NULL, "{}", 0}};

		fixture_start(&f, s2, ARRAY_SIZE(s2));
		rf.fail = 1;
		rf.calls = 0;
		f.ctx.refresh = fake_refresh;
		f.ctx.refresh_user = &rf;
		f.ctx.creds.expiration = time(NULL) + 60;
		assert_int_equal(aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}",
		                          &f.out, &f.err),
		                 0);
		assert_int_equal(rf.calls, 1);
		/* Already expired and refresh fails: no request at all. */
		f.ctx.creds.expiration = time(NULL) - 1;
		assert_int_equal(aws_json(&f.ctx, AWS_SSM, "us-east-1", "GetParameter", "{}",
		                          &f.out, &f.err),
		                 -EIO);
		assert_string_equal(f.err.code, "credentials");
		fixture_stop(&f);
		assert_int_equal(f.srv.nreqs, 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_form_append),
	        cmocka_unit_test(test_endpoint),
	        cmocka_unit_test(test_region_from_env),
	        cmocka_unit_test(test_parse_query_error),
	        cmocka_unit_test(test_parse_json_error),
	        cmocka_unit_test(test_retryable),
	        cmocka_unit_test(test_creds_expiring),
	        cmocka_unit_test(test_call_deadline),
	        cmocka_unit_test(test_query_success),
	        cmocka_unit_test(test_query_retry_then_ok),
	        cmocka_unit_test(test_query_not_retried),
	        cmocka_unit_test(test_query_gives_up),
	        cmocka_unit_test(test_retry_after_over_cap_stops),
	        cmocka_unit_test(test_retry_after_honoured),
	        cmocka_unit_test(test_deadline),
	        cmocka_unit_test(test_deadline_per_call),
	        cmocka_unit_test(test_json_headers_and_errors),
	        cmocka_unit_test(test_ssm_target_and_transport),
	        cmocka_unit_test(test_refusals),
	        cmocka_unit_test(test_refresh),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
