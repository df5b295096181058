/* runner_api: URL building, the count/runner/error parsers from tables, then the client against a
 * loopback HTTP server (headers, 429 + Retry-After, size limit, token kept out of messages). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runner_api.h"
#include "loopback_server.h"

/* ---- init and URLs ------------------------------------------------------------------------ */

static void test_init_base_url(void **state)
{
	struct runner_api api;

	(void)state;
	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(runner_api_init(&api, NULL, NULL, "tok"), 0);
	assert_string_equal(api.base_url, RUNNER_API_DEFAULT_URL);
	assert_false(api.explicit_base);
	assert_int_equal(runner_api_init(&api, NULL, "", "tok"), 0);
	assert_string_equal(api.base_url, RUNNER_API_DEFAULT_URL);
	assert_false(api.explicit_base);

	assert_int_equal(runner_api_init(&api, NULL, "https://circleci.example.com//", "tok"), 0);
	assert_string_equal(api.base_url, "https://circleci.example.com");
	assert_true(api.explicit_base);
	assert_string_equal(api.token, "tok");

	/* the agent's own variable wins over config */
	setenv("CIRCLECI_RUNNER_API_URL", "http://10.0.0.5:8080/", 1);
	assert_int_equal(runner_api_init(&api, NULL, "https://circleci.example.com", "tok"), 0);
	assert_string_equal(api.base_url, "http://10.0.0.5:8080");
	assert_true(api.explicit_base);
	setenv("CIRCLECI_RUNNER_API_URL", "", 1); /* empty counts as unset */
	assert_int_equal(runner_api_init(&api, NULL, "https://a.example", "tok"), 0);
	assert_string_equal(api.base_url, "https://a.example");
	unsetenv("CIRCLECI_RUNNER_API_URL");

	assert_int_equal(runner_api_init(&api, NULL, "ftp://x", "tok"), -EINVAL);
	assert_int_equal(runner_api_init(&api, NULL, "runner.circleci.com", "tok"), -EINVAL);
	assert_int_equal(runner_api_init(&api, NULL, "https://", "tok"), -EINVAL);
}

static void test_init_too_long(void **state)
{
	char url[700];
	struct runner_api api;

	(void)state;
	unsetenv("CIRCLECI_RUNNER_API_URL");
	memcpy(url, "https://", 8);
	memset(url + 8, 'a', sizeof(url) - 9);
	url[sizeof(url) - 1] = '\0';
	assert_int_equal(runner_api_init(&api, NULL, url, "tok"), -ENAMETOOLONG);
}

struct url_case {
	const char *path;
	const char *rc;
	int r;
	const char *url;
};

static const struct url_case url_cases[] = {
        {"/runner/tasks", "myorg/linux large", 0,
         "https://runner.circleci.com/api/v3/runner/tasks?resource-class=myorg%2Flinux%20large"},
        {"/runner/tasks/running", "ns/rc-1_x.y~z", 0,
         "https://runner.circleci.com/api/v3/runner/tasks/running?resource-class=ns%2Frc-1_x.y~z"},
        {"/runner", "a+b:c&d=e?#", 0,
         "https://runner.circleci.com/api/v3/runner?resource-class=a%2Bb%3Ac%26d%3De%3F%23"},
        {"/runner", "\xc3\xa9\n", 0,
         "https://runner.circleci.com/api/v3/runner?resource-class=%C3%A9%0A"},
        {"/runner", "", -EINVAL, NULL},
        {"/runner", NULL, -EINVAL, NULL},
        {"runner", "a/b", -EINVAL, NULL},
        {NULL, "a/b", -EINVAL, NULL},
};

static void test_url_table(void **state)
{
	struct runner_api api;
	char out[256];

	(void)state;
	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(runner_api_init(&api, NULL, NULL, "tok"), 0);
	for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
		const struct url_case *c = &url_cases[i];
		int r = runner_api_url(&api, c->path, c->rc, out, sizeof(out));

		if (r != c->r)
			fail_msg("case %zu: got %d, want %d", i, r, c->r);
		if (c->url)
			assert_string_equal(out, c->url);
	}
}

static void test_url_too_long(void **state)
{
	struct runner_api api;
	char out[80];
	const char *want = "https://runner.circleci.com/api/v3/runner?resource-class=a%2Fb";

	(void)state;
	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(runner_api_init(&api, NULL, NULL, "tok"), 0);
	/* exactly fitting, then one byte short: an escape is never cut in half */
	assert_int_equal(runner_api_url(&api, "/runner", "a/b", out, strlen(want) + 1), 0);
	assert_string_equal(out, want);
	assert_int_equal(runner_api_url(&api, "/runner", "a/b", out, strlen(want)), -ENAMETOOLONG);
	assert_int_equal(runner_api_url(&api, "/runner", "a/b", out, 20), -ENAMETOOLONG);
}

/* ---- parsers ------------------------------------------------------------------------------ */

struct count_case {
	const char *json;
	const char *field;
	int r;
	int64_t count;
};

static const struct count_case count_cases[] = {
        {"{\"unclaimed_task_count\": 42}", "unclaimed_task_count", 0, 42},
        {"{\"unclaimed_task_count\":0}", "unclaimed_task_count", 0, 0},
        {" {\"running_runner_tasks\":7}\n", "running_runner_tasks", 0, 7},
        {"{\"running_runner_tasks\":7,\"unclaimed_task_count\":3}", "unclaimed_task_count", 0, 3},
        {"{\"unclaimed_task_count\":9007199254740992}", "unclaimed_task_count", 0,
         9007199254740992LL},
        {"{\"unclaimed_task_count\":1e2}", "unclaimed_task_count", 0, 100},
        {"{\"unclaimed_task_count\":1.5}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":-1}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":\"3\"}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":null}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":true}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":[1]}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":99999999999999999999}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":1e400}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"running_runner_tasks\":3}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"Unclaimed_Task_Count\":3}", "unclaimed_task_count", -EBADMSG, 0},
        {"{}", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":4", "unclaimed_task_count", -EBADMSG, 0},
        {"{\"unclaimed_task_count\":4}}", "unclaimed_task_count", -EBADMSG, 0},
        {"[{\"unclaimed_task_count\":4}]", "unclaimed_task_count", -EBADMSG, 0},
        {"4", "unclaimed_task_count", -EBADMSG, 0},
        {"<html>502 Bad Gateway</html>", "unclaimed_task_count", -EBADMSG, 0},
        {"", "unclaimed_task_count", -EBADMSG, 0},
};

static void test_parse_count_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(count_cases) / sizeof(count_cases[0]); i++) {
		const struct count_case *c = &count_cases[i];
		int64_t n = -7;
		int r = runner_api_parse_count(c->json, strlen(c->json), c->field, &n);

		if (r != c->r)
			fail_msg("case %zu (%s): got %d, want %d", i, c->json, r, c->r);
		assert_int_equal(n, c->r == 0 ? c->count : -7); /* untouched on error */
	}
}

struct runners_case {
	const char *json;
	int r;
	int64_t count;
};

static const struct runners_case runners_cases[] = {
        {"{\"items\":[]}", 0, 0},
        {"{\"items\":[{\"resource_class\":\"ns/rc\",\"hostname\":\"bobby\",\"name\":\"bobby-sue\","
         "\"first_connected\":\"2020-05-15T00:00:00Z\",\"last_connected\":\"2020-05-16T00:00:00Z\","
         "\"last_used\":\"2020-05-17T00:00:00Z\",\"version\":\"5.4.3.2.1\"},{\"name\":\"b\"}]}",
         0, 2},
        {"{\"items\":[1,2]}", -EBADMSG, 0},
        {"{\"items\":{}}", -EBADMSG, 0},
        {"{\"items\":null}", -EBADMSG, 0},
        {"{}", -EBADMSG, 0},
        {"{\"items\":[{}]", -EBADMSG, 0},
        {"[]", -EBADMSG, 0},
        {"", -EBADMSG, 0},
};

static void test_parse_runners_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(runners_cases) / sizeof(runners_cases[0]); i++) {
		const struct runners_case *c = &runners_cases[i];
		int64_t n = -7;
		int r = runner_api_parse_runners(c->json, strlen(c->json), &n);

		if (r != c->r)
			fail_msg("case %zu (%s): got %d, want %d", i, c->json, r, c->r);
		assert_int_equal(n, c->r == 0 ? c->count : -7);
	}
}

static int collect_name(void *ctx, const char *name)
{
	char *out = ctx;

	strcat(out, name);
	strcat(out, ";");
	return strcmp(name, "stop") == 0 ? -ECANCELED : 0;
}

/* The names, in order, only from an answer valid as a whole: a bad item anywhere names none. */
static void test_parse_runner_names_table(void **state)
{
	static const struct {
		const char *json;
		int r;
		int64_t count;
		const char *names;
	} cases[] = {
	        {"{\"items\":[]}", 0, 0, ""},
	        {"{\"items\":[{\"resource_class\":\"ns/rc\",\"hostname\":\"ip-10-0-3-17\","
	         "\"name\":\"ip-10-0-3-17-i-0123456789abcdef0\",\"ip\":\"10.0.3.17\"},"
	         "{\"name\":\"b\"}]}",
	         0, 2, "ip-10-0-3-17-i-0123456789abcdef0;b;"},
	        {"{\"items\":[{\"name\":\"a\"},{\"hostname\":\"no-name\"}]}", -EBADMSG, 0, ""},
	        {"{\"items\":[{\"name\":\"a\"},{\"name\":7}]}", -EBADMSG, 0, ""},
	        {"{\"items\":[{\"name\":\"a\"},{\"name\":null}]}", -EBADMSG, 0, ""},
	        {"{\"items\":[{\"name\":\"a\"},3]}", -EBADMSG, 0, ""},
	        {"{\"items\":[{\"name\":\"a\"}]", -EBADMSG, 0, ""},
	        {"{\"items\":{}}", -EBADMSG, 0, ""},
	        {"{}", -EBADMSG, 0, ""},
	        {"", -EBADMSG, 0, ""},
	        {"{\"items\":[{\"name\":\"a\"},{\"name\":\"stop\"},{\"name\":\"c\"}]}", -ECANCELED,
	         -7, "a;stop;"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char names[256] = "";
		int64_t n = -7;
		int r = runner_api_parse_runner_names(cases[i].json, strlen(cases[i].json),
		                                      collect_name, names, &n);

		if (r != cases[i].r || strcmp(names, cases[i].names) != 0)
			fail_msg("case %zu (%s): got %d '%s', want %d '%s'", i, cases[i].json, r,
			         names, cases[i].r, cases[i].names);
		assert_int_equal(n, cases[i].r == 0 ? cases[i].count : -7);
	}
}

struct error_case {
	long status;
	const char *body;
	long retry_after;
	const char *message;
	long want_retry;
};

static const struct error_case error_cases[] = {
        {401, "{\"message\":\"Permission denied\"}", -1, "Permission denied", -1},
        {404, "{\"message\":\"not found\"}", -1, "not found", -1},
        {429, "{\"message\":\"Rate limit exceeded\"}", 30, "Rate limit exceeded", 30},
        {429, "", 5, "HTTP 429", 5},
        {500, "  upstream exploded\r\n", -5, "upstream exploded", -1},
        {502, "<html>\n<b>bad\tgateway</b></html>", -1, "<html>?<b>bad?gateway</b></html>", -1},
        {400, "{\"message\":42}", -1, "{\"message\":42}", -1},
        {400, "{\"message\":\"\"}", -1, "{\"message\":\"\"}", -1},
        {400, "{\"message\":\"line1\\nline2\\u0007\"}", -1, "line1?line2?", -1},
        {403, "{\"error\":\"x\"}", -1, "{\"error\":\"x\"}", -1},
        {503, "\xff\xfe", -1, "??", -1},
        {500, NULL, -1, "HTTP 500", -1},
};

static void test_parse_error_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct runner_api_error e;

		memset(&e, 0x5a, sizeof(e));
		runner_api_parse_error(c->status, c->body, c->body ? strlen(c->body) : 0,
		                       c->retry_after, &e);
		assert_int_equal(e.http_status, c->status);
		assert_int_equal(e.retry_after_s, c->want_retry);
		if (strcmp(e.message, c->message) != 0)
			fail_msg("case %zu: message '%s', want '%s'", i, e.message, c->message);
	}
}

static void test_parse_error_snippet_bounded(void **state)
{
	char body[4096];
	struct runner_api_error e;

	(void)state;
	memset(body, 'x', sizeof(body));
	runner_api_parse_error(500, body, sizeof(body), -1, &e);
	assert_int_equal(strlen(e.message), 200);
	/* a long JSON message is cut to the field, still terminated */
	memcpy(body, "{\"message\":\"", 12);
	memcpy(body + sizeof(body) - 2, "\"}", 2);
	runner_api_parse_error(400, body, sizeof(body), -1, &e);
	assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
}

/* ---- the client against a loopback server ------------------------------------------------- */

#define TOKEN "cci-secret-token-0123456789"

struct net {
	struct loopback_server srv;
	struct http_client *http;
	struct runner_api api;
	struct runner_api_error err;
};

static void net_start(struct net *n, const struct ls_response *script, size_t len)
{
	memset(n, 0, sizeof(*n));
	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(ls_start(&n->srv, script, len), 0);
	assert_int_equal(http_client_new(&n->http), 0);
	assert_int_equal(runner_api_init(&n->api, n->http, n->srv.url, TOKEN), 0);
	n->api.timeout_ms = 5000;
}

static void net_stop(struct net *n)
{
	ls_stop(&n->srv);
	http_client_free(n->http);
}

#define REPLY(status, headers, body)                                                               \
	{                                                                                          \
		LS_REPLY, status, headers, body, 0                                                 \
	}

static void test_client_counts(void **state)
{
	static const struct ls_response script[] = {
	        REPLY(200, "Content-Type: application/json\r\n", "{\"unclaimed_task_count\":5}"),
	        REPLY(200, NULL, "{\"running_runner_tasks\":2}"),
	        REPLY(200, NULL,
	              "{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}]}"),
	};
	struct net n;
	int64_t c = -1;

	(void)state;
	net_start(&n, script, 3);
	assert_int_equal(runner_api_unclaimed(&n.api, "myorg/linux large", &c, &n.err), 0);
	assert_int_equal(c, 5);
	assert_int_equal(n.err.http_status, 200);
	assert_int_equal(runner_api_running(&n.api, "myorg/linux large", &c, &n.err), 0);
	assert_int_equal(c, 2);
	assert_int_equal(runner_api_list_runners(&n.api, "myorg/linux large", &c, &n.err), 0);
	assert_int_equal(c, 3);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 3);
	assert_string_equal(n.srv.reqs[0].method, "GET");
	assert_string_equal(n.srv.reqs[0].path,
	                    "/api/v3/runner/tasks?resource-class=myorg%2Flinux%20large");
	assert_string_equal(n.srv.reqs[1].path,
	                    "/api/v3/runner/tasks/running?resource-class=myorg%2Flinux%20large");
	assert_string_equal(n.srv.reqs[2].path,
	                    "/api/v3/runner?resource-class=myorg%2Flinux%20large");
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(ls_header(&n.srv.reqs[i], "Circle-Token"), TOKEN);
		assert_string_equal(ls_header(&n.srv.reqs[i], "Accept"), "application/json");
		assert_null(ls_header(&n.srv.reqs[i], "Authorization"));
	}
}

static void test_client_errors(void **state)
{
	static const struct ls_response script[] = {
	        REPLY(429, "Retry-After: 7\r\n", "{\"message\":\"Rate limit exceeded\"}"),
	        REPLY(401, NULL, "{\"message\":\"token " TOKEN " rejected\"}"),
	        REPLY(500, NULL, "bad " TOKEN),
	        REPLY(404, NULL, "{\"message\":\"not found\"}"),
	        REPLY(200, NULL, "{\"unclaimed_task_count\":-3}"),
	        REPLY(200, NULL, "{\"unclaimed_task_count\":\"3\"}"),
	        REPLY(200, NULL, "<html>maintenance</html>"),
	};
	struct net n;
	int64_t c = 99;

	(void)state;
	net_start(&n, script, 7);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EREMOTEIO);
	assert_int_equal(n.err.http_status, 429);
	assert_int_equal(n.err.retry_after_s, 7);
	assert_string_equal(n.err.message, "Rate limit exceeded");
	/* a server echoing the token does not get it into a message */
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EREMOTEIO);
	assert_int_equal(n.err.http_status, 401);
	assert_int_equal(n.err.retry_after_s, -1);
	assert_string_equal(n.err.message, "token <redacted> rejected");
	assert_int_equal(runner_api_running(&n.api, "ns/rc", &c, &n.err), -EREMOTEIO);
	assert_int_equal(n.err.http_status, 500);
	assert_string_equal(n.err.message, "bad <redacted>");
	assert_int_equal(runner_api_list_runners(&n.api, "ns/rc", &c, &n.err), -EREMOTEIO);
	assert_int_equal(n.err.http_status, 404);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EBADMSG);
	assert_int_equal(n.err.http_status, 200);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EBADMSG);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EBADMSG);
	assert_null(strstr(n.err.message, TOKEN));
	assert_int_equal(c, 99); /* never set from a bad answer */
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 7);
}

static void test_client_token_at_snippet_edge(void **state)
{
	char body[256];
	struct ls_response script[1];
	struct net n;
	int64_t c = 0;

	(void)state;
	/* the 200-byte snippet ends inside the token: no prefix of it may survive */
	memset(body, 'x', 195);
	snprintf(body + 195, sizeof(body) - 195, "%s", TOKEN);
	script[0] = (struct ls_response){LS_REPLY, 503, NULL, body, 0};
	net_start(&n, script, 1);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EREMOTEIO);
	assert_int_equal(n.err.http_status, 503);
	assert_null(strstr(n.err.message, "cci-"));
	assert_int_equal(strlen(n.err.message), 200);
	net_stop(&n);
}

static void test_client_size_limit(void **state)
{
	struct ls_response script[1];
	size_t big = BUF_MAX_DEFAULT + 64;
	char *body = malloc(big + 1);
	struct net n;
	int64_t c = 0;

	(void)state;
	assert_non_null(body);
	memset(body, ' ', big);
	memcpy(body, "{\"unclaimed_task_count\":1}", 26);
	body[big] = '\0';
	script[0] = (struct ls_response){LS_REPLY, 200, NULL, body, big};
	net_start(&n, script, 1);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EFBIG);
	assert_string_equal(n.err.message, "too-large");
	net_stop(&n);
	free(body);
}

static void test_client_env_and_token(void **state)
{
	static const struct ls_response script[] = {
	        REPLY(200, NULL, "{\"unclaimed_task_count\":0}"),
	};
	struct net n;
	int64_t c = 5;

	(void)state;
	net_start(&n, script, 1);
	/* the variable beats the config value */
	setenv("CIRCLECI_RUNNER_API_URL", n.srv.url, 1);
	assert_int_equal(runner_api_init(&n.api, n.http, "https://runner.invalid", "bad\r\nX: y"),
	                 0);
	unsetenv("CIRCLECI_RUNNER_API_URL");
	/* a token that would inject a header is refused before any request */
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EINVAL);
	n.api.token = NULL;
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), -EINVAL);
	n.api.token = TOKEN;
	assert_int_equal(runner_api_unclaimed(&n.api, "", &c, &n.err), -EINVAL);
	assert_int_equal(runner_api_unclaimed(&n.api, "ns/rc", &c, &n.err), 0);
	assert_int_equal(c, 0);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 1);
}

static void test_client_refused(void **state)
{
	struct loopback_server dead;
	struct http_client *http;
	struct runner_api api;
	struct runner_api_error err;
	char url[64];
	int64_t c = 3;

	(void)state;
	/* a port that was just listening and is closed now */
	assert_int_equal(ls_start(&dead, NULL, 0), 0);
	snprintf(url, sizeof(url), "%s", dead.url);
	ls_stop(&dead);
	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(http_client_new(&http), 0);
	assert_int_equal(runner_api_init(&api, http, url, TOKEN), 0);
	assert_int_equal(runner_api_unclaimed(&api, "ns/rc", &c, &err), -ECONNREFUSED);
	assert_int_equal(err.http_status, 0);
	assert_string_equal(err.message, "refused");
	assert_int_equal(c, 3);
	http_client_free(http);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_init_base_url),
	        cmocka_unit_test(test_init_too_long),
	        cmocka_unit_test(test_url_table),
	        cmocka_unit_test(test_url_too_long),
	        cmocka_unit_test(test_parse_count_table),
	        cmocka_unit_test(test_parse_runners_table),
	        cmocka_unit_test(test_parse_runner_names_table),
	        cmocka_unit_test(test_parse_error_table),
	        cmocka_unit_test(test_parse_error_snippet_bounded),
	        cmocka_unit_test(test_client_counts),
	        cmocka_unit_test(test_client_errors),
	        cmocka_unit_test(test_client_token_at_snippet_edge),
	        cmocka_unit_test(test_client_size_limit),
	        cmocka_unit_test(test_client_env_and_token),
	        cmocka_unit_test(test_client_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
