/* Unit tests: which URLs may be used, Retry-After parsing, and http_perform against a scripted
 * loopback server (methods, bodies, header capture, size limit, timeout, refused connection). */
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
#include "loopback_server.h"
#include "util.h"

static void test_url_allowed(void **state)
{
	static const struct {
		const char *url;
		bool explicit_endpoint;
		bool ok;
	} cases[] = {
	        {"https://autoscaling.us-east-1.amazonaws.com/", false, true},
	        {"https://10.0.0.1:8443/x", false, true},
	        {"HTTPS://example.com", false, true},
	        {"http://127.0.0.1:8080/", false, true},
	        {"http://127.1.2.3/", false, true},
	        {"http://[::1]:9000/", false, true},
	        {"http://localhost:9000/latest", false, true},
	        {"http://LOCALHOST/", false, true},
	        {"http://10.0.0.1/", false, false},
	        {"http://10.0.0.1/", true, true},
	        /* IMDS at its own addresses, port 80, with no endpoint variable (as on EC2). */
	        {"http://169.254.169.254", false, true},
	        {"http://169.254.169.254/latest/api/token", false, true},
	        {"http://169.254.169.254:80/latest/meta-data/", false, true},
	        {"http://[fd00:ec2::254]/latest/api/token", false, true},
	        {"http://[FD00:EC2::254]/latest/", false, true},
	        {"http://[fd00:ec2:0:0:0:0:0:254]/", false, true},
	        {"http://2852039166/latest/", false,
	         true}, /* 169.254.169.254 as curl normalises it */
	        {"http://169.254.169.254:8080/", false, false},
	        {"http://169.254.169.253/", false, false},
	        {"http://169.254.170.2/v2/credentials", false, false},
	        {"http://[fd00:ec2::253]/", false, false},
	        {"http://169.254.169.254.evil.example/", false, false},
	        {"http://169.254.169.254@evil.example/", false, false},
	        {"http://169.254.169.254", true, true},
	        {"http://169.254.169.254:8080/", true, true},
	        {"http://128.0.0.1/", false, false},
	        {"http://127.0.0.1.evil.example/", false, false},
	        {"http://127.0.0.1@evil.example/", false, false},
	        {"http://[::2]/", false, false},
	        {"http://localhost.evil.example/", false, false},
	        {"ftp://127.0.0.1/", false, false},
	        {"ftp://127.0.0.1/", true, false},
	        {"file:///etc/passwd", true, false},
	        {"gopher://127.0.0.1/", true, false},
	        {"garbage", false, false},
	        {"garbage", true, false},
	        {"", true, false},
	        {"https://", false, false},
	        {"http:/10.0.0.1", false, false},
	        {"http://", true, false},
	        {"http://2130706433/", false, true}, /* 127.0.0.1 as curl normalises it */
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		bool got = http_url_allowed(cases[i].url, cases[i].explicit_endpoint);

		if (got != cases[i].ok)
			fail_msg("http_url_allowed(%s, %d) = %d", cases[i].url,
			         cases[i].explicit_endpoint, got);
	}
	assert_false(http_url_allowed(NULL, true));
}

static void test_parse_retry_after(void **state)
{
	/* 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT */
	static const struct {
		const char *v;
		long now;
		long want;
	} cases[] = {
	        {"120", 0, 120},
	        {" 5 ", 0, 5},
	        {"0", 0, 0},
	        {"-1", 0, -1},
	        {"12abc", 0, -1},
	        {"abc", 0, -1},
	        {"", 0, -1},
	        {"1.5", 0, -1},
	        {"99999999999999999999999", 0, -1},
	        {"Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 30, 30},
	        {"Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 100, 0},
	        {"Wed, 21 Oct 2015 07:28:00 UTC", 0, -1},
	        {"Xyz, 21 Oct 2015 07:28:00 GMT", 0, -1},
	        {"Wed, 21 Foo 2015 07:28:00 GMT", 0, -1},
	        {"Wed, 21 Oct 2015 25:28:00 GMT", 0, -1},
	        {"Wed, 21 Oct 2015 07:28:00 GMT trailing", 0, -1},
	        {"Wed, 21 Oct 2015", 0, -1},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		long got = http_parse_retry_after(cases[i].v, cases[i].now);

		if (got != cases[i].want)
			fail_msg("retry-after '%s': got %ld want %ld", cases[i].v, got,
			         cases[i].want);
	}
	assert_int_equal(http_parse_retry_after(NULL, 0), -1);
}

static void test_get_captures_headers(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200,
	         "Retry-After: 7\r\nContent-Type: text/xml\r\nx-amzn-RequestId: req-123\r\n",
	         "<ok/>", 0},
	};
	struct loopback_server s;
	struct http_client *c;
	struct http_request req = {.method = "GET"};
	struct http_response resp;
	char url[128];

	assert_int_equal(ls_start(&s, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&c), 0);
	snprintf(url, sizeof(url), "%s/latest/meta-data/instance-id", s.url);
	req.url = url;
	assert_int_equal(http_perform(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body.data, "<ok/>");
	assert_int_equal(resp.retry_after_s, 7);
	assert_string_equal(resp.content_type, "text/xml");
	assert_string_equal(resp.request_id, "req-123");
	http_response_free(&resp);
	http_client_free(c);
	ls_stop(&s);
	assert_int_equal(s.nreqs, 1);
	assert_string_equal(s.reqs[0].method, "GET");
	assert_string_equal(s.reqs[0].path, "/latest/meta-data/instance-id");
	assert_null(ls_header(&s.reqs[0], "Content-Length"));
}

static void test_methods_and_fresh_state(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, "x-amz-request-id: s3-style\r\n", "tok", 0},
	        {LS_REPLY, 201, NULL, "posted", 0},
	        {LS_REPLY, 404, NULL, "<html>nope</html>", 0},
	};
	static const char *const put_hdrs[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
	static const char *const post_hdrs[] = {"Content-Type: application/x-amz-json-1.0",
	                                        "X-Amz-Target: DynamoDB_20120810.GetItem", NULL};
	struct loopback_server s;
	struct http_client *c;
	struct http_request req;
	struct http_response resp;

	assert_int_equal(ls_start(&s, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&c), 0);

	/* PUT with no body: the IMDS token request. */
	memset(&req, 0, sizeof(req));
	req.method = "PUT";
	req.url = s.url;
	req.headers = put_hdrs;
	assert_int_equal(http_perform(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body.data, "tok");
	assert_string_equal(resp.request_id, "s3-style");
	assert_int_equal(resp.retry_after_s, -1);
	http_response_free(&resp);

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = s.url;
	req.headers = post_hdrs;
	req.body = "{\"a\":1}";
	req.body_len = 7;
	assert_int_equal(http_perform(c, &req, &resp), 0);
	assert_int_equal(resp.status, 201);
	http_response_free(&resp);

	/* A GET after a POST on the same client: no body, no leftover headers. */
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = s.url;
	assert_int_equal(http_perform(c, &req, &resp), 0);
	assert_int_equal(resp.status, 404);
	assert_string_equal(resp.body.data, "<html>nope</html>");
	http_response_free(&resp);

	http_client_free(c);
	ls_stop(&s);
	assert_int_equal(s.nreqs, 3);
	assert_string_equal(s.reqs[0].method, "PUT");
	assert_string_equal(ls_header(&s.reqs[0], "Content-Length"), "0");
	assert_string_equal(ls_header(&s.reqs[0], "X-aws-ec2-metadata-token-ttl-seconds"), "21600");
	assert_string_equal(s.reqs[1].method, "POST");
	assert_string_equal(s.reqs[1].body, "{\"a\":1}");
	assert_string_equal(ls_header(&s.reqs[1], "X-Amz-Target"), "DynamoDB_20120810.GetItem");
	assert_string_equal(ls_header(&s.reqs[1], "Content-Type"), "application/x-amz-json-1.0");
	assert_null(ls_header(&s.reqs[1], "Expect"));
	assert_string_equal(s.reqs[2].method, "GET");
	assert_int_equal(s.reqs[2].body_len, 0);
	assert_null(ls_header(&s.reqs[2], "X-Amz-Target"));
	assert_null(ls_header(&s.reqs[2], "Content-Length"));
}

static void test_sigv4_header(void **state)
{
	static const struct ls_response script[] = {{LS_REPLY, 200, NULL, "ok", 0}};
	static const char *const hdrs[] = {
	        "Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL};
	struct loopback_server s;
	struct http_client *c;
	struct http_request req;
	struct http_response resp;
	const char *auth;
	char url[128];

	assert_int_equal(ls_start(&s, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&c), 0);
	snprintf(url, sizeof(url), "%s/", s.url);
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = url;
	req.headers = hdrs;
	req.body = "Action=SetDesiredCapacity&Version=2011-01-01";
	req.body_len = strlen(req.body);
	req.sigv4 = "aws:amz:us-east-1:autoscaling";
	req.userpwd = "AKIDEXAMPLE:secret";
	assert_int_equal(http_perform(c, &req, &resp), 0);
	http_response_free(&resp);
	http_client_free(c);
	ls_stop(&s);
	assert_int_equal(s.nreqs, 1);
	auth = ls_header(&s.reqs[0], "Authorization");
	assert_non_null(auth);
	assert_non_null(strstr(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
	assert_non_null(strstr(auth, "/us-east-1/autoscaling/aws4_request"));
	assert_non_null(strstr(auth, "SignedHeaders=content-type;host;x-amz-date,"));
	assert_null(strstr(auth, "secret"));
	assert_non_null(ls_header(&s.reqs[0], "X-Amz-Date"));
	/* sigv4 without credentials is a caller bug, refused before any I/O. */
	req.userpwd = NULL;
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_perform(c, &req, &resp), -EINVAL);
	http_response_free(&resp);
	http_client_free(c);
}

static void test_body_limit(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "0123456789abcdefX", 0},
	        {LS_NO_LENGTH, 200, NULL, "0123456789abcdefX", 0},
	        {LS_REPLY, 200, NULL, "0123456789abcdef", 0},
	};
	struct loopback_server s;
	struct http_client *c;
	struct http_request req = {.method = "GET", .max_body = 16};
	struct http_response resp;
	int i;

	assert_int_equal(ls_start(&s, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&c), 0);
	req.url = s.url;
	/* Announced too large, then too large with no length (caught while reading). */
	for (i = 0; i < 2; i++) {
		assert_int_equal(http_perform(c, &req, &resp), -EFBIG);
		assert_true(resp.body.len <= 16);
		http_response_free(&resp);
	}
	assert_int_equal(http_perform(c, &req, &resp), 0);
	assert_int_equal(resp.body.len, 16);
	http_response_free(&resp);
	http_client_free(c);
	ls_stop(&s);
	assert_int_equal(s.nreqs, 3);
}

static void test_timeout_and_close(void **state)
{
	static const struct ls_response script[] = {
	        {LS_STALL, 0, NULL, NULL, 0},
	        {LS_CLOSE, 0, NULL, NULL, 0},
	};
	struct loopback_server s;
	struct http_client *c;
	struct http_request req = {.method = "GET", .timeout_ms = 300};
	struct http_response resp;
	uint64_t t0;

	assert_int_equal(ls_start(&s, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&c), 0);
	req.url = s.url;
	t0 = now_mono_ms();
	assert_int_equal(http_perform(c, &req, &resp), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 5000);
	assert_int_equal(resp.status, 0);
	http_response_free(&resp);
	/* Connection closed without a byte of answer. */
	assert_int_equal(http_perform(c, &req, &resp), -EPROTO);
	http_response_free(&resp);
	http_client_free(c);
	ls_stop(&s);
	assert_int_equal(s.nreqs, 2);
}

static void test_refused_and_denied(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	struct http_client *c;
	struct http_request req = {.method = "GET"};
	struct http_response resp;
	char url[64];
	int fd;

	/* A port that was just free: bind, learn it, close. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(a.sin_port));

	assert_int_equal(http_client_new(&c), 0);
	req.url = url;
	assert_int_equal(http_perform(c, &req, &resp), -ECONNREFUSED);
	http_response_free(&resp);

	req.url = "http://10.0.0.1/";
	assert_int_equal(http_perform(c, &req, &resp), -EPERM);
	assert_int_equal(resp.status, 0);
	assert_int_equal(resp.retry_after_s, -1);
	http_response_free(&resp);

	req.url = url;
	req.method = "DELETE";
	assert_int_equal(http_perform(c, &req, &resp), -EINVAL);
	http_response_free(&resp);
	http_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_url_allowed),
	        cmocka_unit_test(test_parse_retry_after),
	        cmocka_unit_test(test_get_captures_headers),
	        cmocka_unit_test(test_methods_and_fresh_state),
	        cmocka_unit_test(test_sigv4_header),
	        cmocka_unit_test(test_body_limit),
	        cmocka_unit_test(test_timeout_and_close),
	        cmocka_unit_test(test_refused_and_denied),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
