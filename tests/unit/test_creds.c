/* Unit tests: the credentials chain (environment, then the IMDS role), refresh wiring, wiping. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "creds.h"
#include "http.h"
#include "imds.h"
#include "loopback_server.h"
#include "util.h"

static void clear_env(void)
{
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_EC2_METADATA_DISABLED");
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
}

static void test_from_env(void **state)
{
	struct aws_creds c;
	char big[200];

	clear_env();
	memset(&c, 0, sizeof(c));
	assert_int_equal(creds_from_env(&c), -ENOENT);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	assert_int_equal(creds_from_env(&c), -EINVAL);
	unsetenv("AWS_ACCESS_KEY_ID");
	setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
	assert_int_equal(creds_from_env(&c), -EINVAL);
	setenv("AWS_ACCESS_KEY_ID", "", 1);
	assert_int_equal(creds_from_env(&c), -EINVAL);

	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	assert_int_equal(creds_from_env(&c), 0);
	assert_string_equal(c.akid, "AKIDENV");
	assert_string_equal(c.secret, "s");
	assert_string_equal(c.token, "");
	assert_int_equal(c.expiration, 0);
	assert_false(c.from_imds);
	setenv("AWS_SESSION_TOKEN", "SESSION", 1);
	assert_int_equal(creds_from_env(&c), 0);
	assert_string_equal(c.token, "SESSION");

	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	setenv("AWS_SECRET_ACCESS_KEY", big, 1);
	assert_int_equal(creds_from_env(&c), -EINVAL);
	assert_string_equal(c.secret, "s"); /* untouched on failure */

	creds_wipe(&c);
	assert_string_equal(c.akid, "");
	assert_string_equal(c.secret, "");
	creds_wipe(NULL);
	clear_env();
}

static void test_resolve_env_wins(void **state)
{
	struct aws_ctx ctx;
	struct imds m;

	clear_env();
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	assert_int_equal(imds_init(&m, NULL), 0);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(creds_resolve(&ctx, &m), -ENODEV); /* nothing anywhere */
	assert_null(ctx.refresh);

	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	assert_int_equal(creds_resolve(&ctx, &m), -EINVAL); /* half a pair is reported */
	setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
	assert_int_equal(creds_resolve(&ctx, &m), 0);
	assert_string_equal(ctx.creds.akid, "AKIDENV");
	assert_null(ctx.refresh);
	creds_wipe(&ctx.creds);
	clear_env();
}

static void test_resolve_imds(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, "T", 0},
	        {LS_REPLY, 200, NULL, "role\n", 0},
	        {LS_REPLY, 200, NULL,
	         "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIA1\",\"SecretAccessKey\":\"S1\","
	         "\"Token\":\"T1\",\"Expiration\":\"2024-01-01T06:00:00Z\"}",
	         0},
	        {LS_REPLY, 200, NULL, "role\n", 0},
	        {LS_REPLY, 200, NULL,
	         "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIA2\",\"SecretAccessKey\":\"S2\","
	         "\"Token\":\"T2\",\"Expiration\":\"2024-01-01T12:00:00Z\"}",
	         0},
	        {LS_REPLY, 500, NULL, "", 0},
	};
	struct loopback_server s;
	struct http_client *http;
	struct aws_ctx ctx;
	struct imds m;

	clear_env();
	assert_int_equal(ls_start(&s, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&http), 0);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", s.url, 1);
	assert_int_equal(imds_init(&m, http), 0);
	memset(&ctx, 0, sizeof(ctx));
	ctx.http = http;

	assert_int_equal(creds_resolve(&ctx, &m), 0);
	assert_string_equal(ctx.creds.akid, "ASIA1");
	assert_string_equal(ctx.creds.token, "T1");
	assert_true(ctx.creds.from_imds);
	assert_ptr_equal(ctx.refresh, creds_refresh_imds);
	assert_ptr_equal(ctx.refresh_user, &m);

	assert_int_equal(ctx.refresh(ctx.refresh_user, &ctx.creds), 0);
	assert_string_equal(ctx.creds.akid, "ASIA2");
	assert_string_equal(ctx.creds.secret, "S2");
	assert_int_equal(ctx.creds.expiration, 1704110400);
	/* A failed refresh keeps what we had. */
	assert_int_equal(ctx.refresh(ctx.refresh_user, &ctx.creds), -EPROTO);
	assert_string_equal(ctx.creds.akid, "ASIA2");

	creds_wipe(&ctx.creds);
	imds_clear(&m);
	http_client_free(http);
	ls_stop(&s);
	assert_int_equal(s.nreqs, 6);
	clear_env();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_from_env),
	        cmocka_unit_test(test_resolve_env_wins),
	        cmocka_unit_test(test_resolve_imds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
