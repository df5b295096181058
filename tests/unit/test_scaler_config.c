/* scaler.conf: defaults, every key, environment overrides, cross-key validation (from tables),
 * the printed effective config re-parsing to itself, and the listen address parser. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scaler_config.h"
#include "util.h"

#define POOL "[pool a]\nresource_class = org/a\nasg = asg-a\nmax = 5\n"
#define CCI  "[circleci]\ntoken_source = env\n"

static int load(const char *text, struct scaler_config *c, char **errors)
{
	return scaler_config_load_string(text, "t.conf", c, errors);
}

static void test_defaults(void **state)
{
	struct scaler_config c;
	char *errors = NULL;

	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(load(CCI POOL, &c, &errors), 0);
	assert_null(errors);
	assert_int_equal(c.scaler->interval_ms, 10000);
	assert_int_equal(c.scaler->request_timeout_ms, 10000);
	assert_null(c.scaler->metrics);
	assert_true(!c.scaler->listen || !c.scaler->listen[0]);
	assert_int_equal(c.scaler->log_format, SCALER_LOG_TEXT);
	assert_string_equal(c.circleci->api_url, "https://runner.circleci.com");
	assert_int_equal(c.circleci->token_source, TOKEN_ENV);
	assert_string_equal(scaler_token_env_name(c.circleci), "CIRCLE_TOKEN");
	assert_int_equal(c.npools, 1);
	assert_string_equal(c.pools[0]->name, "a");
	assert_string_equal(c.pools[0]->resource_class, "org/a");
	assert_string_equal(c.pools[0]->asg, "asg-a");
	assert_true(!c.pools[0]->region || !c.pools[0]->region[0]);
	assert_int_equal(c.pools[0]->min, 0);
	assert_int_equal(c.pools[0]->max, 5);
	assert_int_equal(c.pools[0]->headroom, 0);
	assert_int_equal(c.pools[0]->max_step, 0);
	assert_int_equal(c.pools[0]->launch_failures, 3);
	assert_int_equal(c.pools[0]->warm_pool, -1); /* not managed */
	assert_int_equal(c.election->mode, ELECTION_MODE_NONE);
	assert_string_equal(c.election->name, "runner-scaler");
	assert_int_equal(c.election->lease_ms, 15000);
	scaler_config_free(&c);
}

static void test_every_key(void **state)
{
	static const char text[] = "[scaler]\n"
	                           "interval = 2s\n"
	                           "metrics = /var/lib/node/runnerd.prom\n"
	                           "request_timeout = 1500ms\n"
	                           "listen = 127.0.0.1:9464\n"
	                           "log_format = json\n"
	                           "[circleci]\n"
	                           "api_url = https://circleci.example.com\n"
	                           "token_source = secretsmanager\n"
	                           "token_id = cci-secrets\n"
	                           "token_key = circle_token\n"
	                           "[pool linux-large]\n"
	                           "resource_class = myorg/linux-large\n"
	                           "asg = cci-asg\n"
	                           "region = eu-west-1\n"
	                           "min = 1\n"
	                           "max = 20\n"
	                           "headroom = 2\n"
	                           "max_step = 4\n"
	                           "launch_failures = 0\n"
	                           "warm_pool = 4\n"
	                           "[pool arm]\n"
	                           "resource_class = myorg/arm\n"
	                           "asg = cci-arm\n"
	                           "max = 3\n"
	                           "[election]\n"
	                           "mode = dynamodb\n"
	                           "table = runnerd-leases\n"
	                           "name = scaler-prod\n"
	                           "lease = 3s\n";
	struct scaler_config c;
	char *errors = NULL;

	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(load(text, &c, &errors), 0);
	assert_int_equal(c.scaler->interval_ms, 2000);
	assert_string_equal(c.scaler->metrics, "/var/lib/node/runnerd.prom");
	assert_int_equal(c.scaler->request_timeout_ms, 1500);
	assert_string_equal(c.scaler->listen, "127.0.0.1:9464");
	assert_int_equal(c.scaler->log_format, SCALER_LOG_JSON);
	assert_string_equal(c.circleci->api_url, "https://circleci.example.com");
	assert_int_equal(c.circleci->token_source, TOKEN_SECRETSMANAGER);
	assert_string_equal(c.circleci->token_id, "cci-secrets");
	assert_string_equal(c.circleci->token_key, "circle_token");
	assert_int_equal(c.npools, 2);
	assert_string_equal(c.pools[0]->name, "linux-large");
	assert_string_equal(c.pools[0]->region, "eu-west-1");
	assert_int_equal(c.pools[0]->min, 1);
	assert_int_equal(c.pools[0]->max, 20);
	assert_int_equal(c.pools[0]->headroom, 2);
	assert_int_equal(c.pools[0]->max_step, 4);
	assert_int_equal(c.pools[0]->launch_failures, 0); /* detection off */
	assert_int_equal(c.pools[1]->launch_failures, 3);
	assert_int_equal(c.pools[0]->warm_pool, 4);
	assert_int_equal(c.pools[1]->warm_pool, -1);
	assert_string_equal(c.pools[1]->name, "arm");
	assert_int_equal(c.election->mode, ELECTION_MODE_DYNAMODB);
	assert_string_equal(c.election->table, "runnerd-leases");
	assert_string_equal(c.election->name, "scaler-prod");
	assert_int_equal(c.election->lease_ms, 3000);
	scaler_config_free(&c);
}

static void test_env_override(void **state)
{
	struct scaler_config c;
	char *errors = NULL;

	setenv("CIRCLECI_RUNNER_API_URL", "http://127.0.0.1:9/", 1);
	assert_int_equal(load(CCI "api_url = https://from-file.example\n" POOL, &c, &errors), 0);
	assert_string_equal(c.circleci->api_url, "http://127.0.0.1:9/");
	scaler_config_free(&c);
	setenv("CIRCLECI_RUNNER_API_URL", "", 1); /* empty: as if unset */
	assert_int_equal(load(CCI "api_url = https://from-file.example\n" POOL, &c, &errors), 0);
	assert_string_equal(c.circleci->api_url, "https://from-file.example");
	scaler_config_free(&c);
	unsetenv("CIRCLECI_RUNNER_API_URL");
}

struct bad {
	const char *text;
	const char *want; /* substring of the errors */
};

static const struct bad bads[] = {
        {CCI "[pool a]\nresource_class = org/a\nasg = x\nmin = 6\nmax = 5\n", "t.conf:6: min:"},
        {CCI "[pool a]\nasg = x\nmax = 5\n", "resource_class"},
        {CCI "[pool a]\nresource_class = org/a\nmax = 5\n", "asg"},
        {CCI "[pool a]\nresource_class = org/a\nasg = x\n", "max"},
        {CCI "[pool a]\nresource_class = org/a\nasg = x\nmax = -1\n", "max"},
        {CCI "[pool a]\nresource_class = org/a\nasg = x\nmax = 5\nheadroom = -2\n", "headroom"},
        {CCI "[pool a]\nresource_class = org/a\nasg = x\nmax = 5\nmax_step = x\n", "max_step"},
        {CCI POOL "launch_failures = -1\n", "launch_failures"},
        {CCI POOL "launch_failures = 101\n", "launch_failures"},
        {CCI POOL "launch_failures = some\n", "launch_failures"},
        {CCI POOL "warm_pool = -1\n", "warm_pool: want a number of instances"},
        {CCI POOL "warm_pool = two\n", "warm_pool"},
        {CCI POOL "warm_pool = 100001\n", "warm_pool"},
        {CCI POOL "warm_pool = 99999999999999999999999\n", "warm_pool"},
        {CCI POOL "warm_pool = 1 \t# x\n", "warm_pool"},
        {CCI "[pool a]\nresource_class = nonamespace\nasg = x\nmax = 5\n", "NAMESPACE/NAME"},
        {CCI POOL "bogus = 1\n", "bogus"},
        {CCI POOL "[nosuch]\n", "nosuch"},
        {CCI, "no pools"},
        {CCI POOL "[pool b]\nresource_class = org/b\nasg = asg-a\nmax = 5\n",
         "asg: already used by pool 'a'"},
        {CCI POOL "[pool b]\nresource_class = org/a\nasg = asg-b\nmax = 5\n",
         "resource_class: already used by pool 'a'"},
        {"[circleci]\ntoken_source = vault\n" POOL, "token_source"},
        {"[circleci]\ntoken_source = ssm\n" POOL, "token_id: required with token_source = ssm"},
        {"[circleci]\ntoken_source = secretsmanager\n" POOL, "token_id: required"},
        {"[circleci]\ntoken_source = file\ntoken_id = relative/path\n" POOL, "absolute path"},
        {"[circleci]\ntoken_source = ssm\ntoken_id = /p\ntoken_key = k\n" POOL,
         "token_key: only used with token_source = secretsmanager"},
        {"[circleci]\ntoken_source = env\napi_url = ftp://x\n" POOL, "api_url"},
        {CCI POOL "[election]\nmode = dynamodb\n", "table: required with mode = dynamodb"},
        {CCI POOL "[election]\nmode = zookeeper\n", "mode"},
        {CCI POOL "[election]\nmode = dynamodb\ntable = t\nlease = 1s\n", "lease"},
        {CCI POOL "[election]\nmode = dynamodb\ntable = t\nname =\n", "name"},
        {CCI POOL "[election]\nmode = dynamodb\ntable = ab\n", "a DynamoDB table name"},
        {CCI POOL "[election]\nmode = dynamodb\ntable = lease table\n", "a DynamoDB table name"},
        {CCI POOL "[election]\nmode = dynamodb\ntable = leases\nname = "
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxxxxxxxxxxxx\n",
         "longer than 255"},
        {"[scaler]\ninterval = 0\n" CCI POOL, "interval"},
        {"[scaler]\ninterval = soon\n" CCI POOL, "interval"},
        {"[scaler]\nrequest_timeout = 5m\n" CCI POOL, "request_timeout"},
        {"[scaler]\nmetrics = relative.prom\n" CCI POOL, "metrics: must be an absolute path"},
        {"[scaler]\nlisten = 9464\n" CCI POOL, "listen"},
        {"[scaler]\nlisten = example.com:9464\n" CCI POOL, "listen"},
        {"[scaler]\nlog_format = xml\n" CCI POOL, "log_format"},
};

static void test_bad(void **state)
{
	unsetenv("CIRCLECI_RUNNER_API_URL");
	for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
		struct scaler_config c;
		char *errors = NULL;
		int r = load(bads[i].text, &c, &errors);

		if (r != -EINVAL || !errors || !strstr(errors, bads[i].want)) {
			print_error("case %zu: r=%d errors=%s want '%s'\n", i, r,
			            errors ? errors : "(null)", bads[i].want);
			fail();
		}
		free(errors);
	}
}

static char *print_to_string(const struct scaler_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	assert_int_equal(scaler_config_print(c, f), 0);
	fclose(f);
	return text;
}

static void test_print_reparses(void **state)
{
	struct scaler_config c, d;
	char *errors = NULL, *one, *two;

	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(
	        load("[scaler]\ninterval = 90s\nlisten = [::1]:9464\n"
	             "[circleci]\ntoken_source = file\ntoken_id = /etc/tok\n" POOL
	             "[pool b.x@1]\nresource_class = org/b\nasg = b\nmax = 2\nwarm_pool = 0\n"
	             "[election]\nmode = dynamodb\ntable = tbl\n",
	             &c, &errors),
	        0);
	one = print_to_string(&c);
	assert_non_null(strstr(one, "interval = 1m30s"));
	assert_non_null(strstr(one, "resource_class = org/a"));
	/* Unset stays unset (not managed), 0 stays a pool of none. */
	assert_non_null(strstr(one, "[pool a]\n"));
	assert_non_null(strstr(one, "warm_pool =\n"));
	assert_non_null(strstr(one, "warm_pool = 0\n"));
	assert_int_equal(load(one, &d, &errors), 0);
	two = print_to_string(&d);
	assert_string_equal(one, two);
	free(one);
	free(two);
	scaler_config_free(&c);
	scaler_config_free(&d);
}

struct listen_case {
	const char *in;
	int r;
	const char *host;
	uint16_t port;
};

static const struct listen_case listens[] = {
        {"127.0.0.1:9464", 0, "127.0.0.1", 9464},
        {":9464", 0, "", 9464},
        {"0.0.0.0:1", 0, "0.0.0.0", 1},
        {"[::1]:65535", 0, "::1", 65535},
        {"localhost:80", 0, "localhost", 80},
        {"127.0.0.1:0", -EINVAL, NULL, 0},
        {"127.0.0.1:65536", -EINVAL, NULL, 0},
        {"127.0.0.1:", -EINVAL, NULL, 0},
        {"127.0.0.1:80x", -EINVAL, NULL, 0},
        {"127.0.0.1:-1", -EINVAL, NULL, 0},
        {"127.0.0.1", -EINVAL, NULL, 0},
        {"::1:80", -EINVAL, NULL, 0},
        {"[::1]80", -EINVAL, NULL, 0},
        {"[127.0.0.1]:80", -EINVAL, NULL, 0},
        {"host.example:80", -EINVAL, NULL, 0},
        {"", -EINVAL, NULL, 0},
        {"[aaaa:bbbb:cccc:dddd:eeee:ffff:1111:2222:3333:4444]:80", -EINVAL, NULL, 0},
};

static void test_listen(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(listens); i++) {
		char host[64] = "untouched";
		uint16_t port = 0;
		int r = scaler_parse_listen(listens[i].in, host, sizeof(host), &port);

		if (r != listens[i].r) {
			print_error("'%s': r=%d\n", listens[i].in, r);
			fail();
		}
		if (r == 0) {
			assert_string_equal(host, listens[i].host);
			assert_int_equal(port, listens[i].port);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_every_key),
	        cmocka_unit_test(test_env_override),   cmocka_unit_test(test_bad),
	        cmocka_unit_test(test_print_reparses), cmocka_unit_test(test_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
