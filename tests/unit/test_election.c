/* The election's state machine without DynamoDB: the local deadline, renew timing, losses,
 * errors, answers that arrive too late, and a leader that was stopped past its lease; then
 * election_tick against a scripted loopback DynamoDB: its calls go out whatever deadline an
 * earlier call on the same context had. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "election.h"
#include "http.h"
#include "loopback_server.h"
#include "util.h"

static struct election fresh(uint64_t lease_ms)
{
	struct election e;

	assert_int_equal(
	        election_init(&e, "t", "runner-scaler", "host:1", "us-east-1", lease_ms, 10000), 0);
	return e;
}

/* A reload whose election cannot be set up fences: never act, never send, until set up. */
static void test_fenced(void **state)
{
	struct election e;
	struct aws_ctx ctx;

	election_init_fenced(&e);
	assert_true(e.enabled);
	assert_false(election_may_act(&e, 0));
	assert_false(election_may_act(&e, UINT64_MAX));
	memset(&ctx, 0, sizeof(ctx)); /* no http: a call would fail with -EINVAL, not be skipped */
	assert_int_equal(election_tick(&e, &ctx, 123456), ELECTION_NONE);
	assert_int_equal(e.last_rc, 0);
	assert_int_equal(e.failures, 0);
	/* A good set-up lifts it. */
	assert_int_equal(
	        election_init(&e, "tbl", "runner-scaler", "host:1", "us-east-1", 15000, 10000), 0);
	assert_false(e.fenced);
}

static void test_call_timeout(void **state)
{
	static const struct {
		uint64_t lease;
		long request, want;
	} cases[] = {
	        {15000, 10000, 5000}, {15000, 2000, 2000}, {15000, 0, 5000},
	        {3000, 10000, 1000},  {3000, -1, 1000},    {60000, 10000, 10000},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(election_call_timeout_ms(cases[i].lease, cases[i].request),
		                 cases[i].want);
}

static void test_skew(void **state)
{
	assert_int_equal(election_skew_ms(3000), 600);
	assert_int_equal(election_skew_ms(15000), 3000);
	assert_int_equal(election_skew_ms(2000), 500);
	assert_int_equal(election_skew_ms(1000), 500);
}

static void test_disabled(void **state)
{
	struct election e;

	election_init_disabled(&e);
	assert_true(election_may_act(&e, 0));
	assert_true(election_may_act(&e, UINT64_MAX));
	assert_int_equal(election_apply(&e, 0, 1, 2), ELECTION_NONE);
}

static void test_init(void **state)
{
	struct election e;
	char long_owner[400];

	assert_int_equal(election_init(&e, "", "x", "o", "r", 3000, 0), -EINVAL);
	assert_int_equal(election_init(&e, "t", "x", "o", "r", 900, 0), -EINVAL);
	memset(long_owner, 'o', sizeof(long_owner) - 1);
	long_owner[sizeof(long_owner) - 1] = '\0';
	assert_int_equal(election_init(&e, "t", "x", long_owner, "r", 3000, 0), -ENAMETOOLONG);
	e = fresh(3000);
	assert_int_equal(e.call_timeout_ms, 1000); /* lease/3 beats a longer request_timeout */
	assert_false(election_may_act(&e, 0));
	assert_int_equal(e.next_due, 0); /* contend at once */
}

static void test_win_renew_deadline(void **state)
{
	struct election e = fresh(3000);

	/* Won with a request sent at t=1000 and answered at 1010. */
	assert_int_equal(election_apply(&e, 0, 1000, 1010), ELECTION_GAINED);
	assert_int_equal(e.valid_until, 1000 + 3000 - 600);
	assert_int_equal(e.next_due, 2000); /* renew every lease/3 */
	assert_true(election_may_act(&e, 1010));
	assert_true(election_may_act(&e, 3399));
	assert_false(election_may_act(&e, 3400)); /* before the lease ends, by the margin */
	/* A renew sent at 2000 extends from its send time. */
	assert_int_equal(election_apply(&e, 0, 2000, 2005), ELECTION_NONE);
	assert_int_equal(e.valid_until, 4400);
	assert_true(election_may_act(&e, 4399));
}

static void test_lost(void **state)
{
	struct election e = fresh(3000);

	assert_int_equal(election_apply(&e, 1, 0, 5), ELECTION_NONE); /* held by another */
	assert_false(e.leader);
	assert_int_equal(e.next_due, 1005);
	assert_int_equal(election_apply(&e, 0, 1005, 1006), ELECTION_GAINED);
	assert_int_equal(election_apply(&e, 1, 2005, 2010), ELECTION_LOST);
	assert_false(election_may_act(&e, 2010));
}

static void test_errors_keep_until_deadline(void **state)
{
	struct election e = fresh(3000);

	assert_int_equal(election_apply(&e, 0, 0, 1), ELECTION_GAINED);
	/* Renew fails: still leader until the local deadline, retried sooner than lease/3. */
	assert_int_equal(election_apply(&e, -ETIMEDOUT, 1000, 2000), ELECTION_NONE);
	assert_true(e.leader);
	assert_int_equal(e.next_due, 2300);
	assert_true(election_may_act(&e, 2300));
	assert_int_equal(election_apply(&e, -ECONNREFUSED, 2300, 2400), ELECTION_LOST);
	assert_false(election_may_act(&e, 2400)); /* 2400 == valid_until */
	assert_int_equal(e.failures, 2);
	/* A follower's errors retry at the contention pace. */
	assert_int_equal(election_apply(&e, -EIO, 2400, 2500), ELECTION_NONE);
	assert_int_equal(e.next_due, 3500);
}

static void test_answer_too_late(void **state)
{
	struct election e = fresh(3000);

	/* The win came back after the margin: useless, act on nothing, ask again now. */
	assert_int_equal(election_apply(&e, 0, 0, 2500), ELECTION_NONE);
	assert_false(election_may_act(&e, 2500));
	assert_int_equal(e.next_due, 2500);
}

static void test_stopped_leader(void **state)
{
	struct election e = fresh(3000);

	assert_int_equal(election_apply(&e, 0, 10000, 10001), ELECTION_GAINED);
	/* SIGSTOP at 10500, SIGCONT at 60000: whatever it was doing, it may not write. */
	assert_true(election_may_act(&e, 10500));
	assert_false(election_may_act(&e, 60000));
	assert_int_equal(election_expire(&e, 60000), ELECTION_LOST);
	assert_false(e.leader);
	assert_int_equal(e.next_due, 60000);
	assert_int_equal(election_expire(&e, 60001), ELECTION_NONE);
}

static void test_owner_id(void **state)
{
	char out[64], want[64];

	assert_int_equal(election_owner_id("i-0123456789abcdef0", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "i-0123456789abcdef0:%ld", (long)getpid());
	assert_string_equal(out, want);
	assert_int_equal(election_owner_id(NULL, out, sizeof(out)), 0);
	snprintf(want, sizeof(want), ":%ld", (long)getpid());
	assert_non_null(strstr(out, want));
	assert_int_equal(election_owner_id("i-0123456789abcdef0", out, 8), -ENAMETOOLONG);
}

/* Issue 10: the scaler's token fetch bounded its calls with an absolute deadline in the shared
 * aws_ctx, and election_tick kept that deadline once it had passed: every later acquire and
 * renew failed locally with "timeout", nothing was sent, and the lease lapsed for good. */
static void test_tick_after_an_earlier_deadline(void **state)
{
	static const struct ls_response script[] = {
	        {LS_STALL, 0, NULL, NULL, 0},   /* the token fetch hangs to its deadline */
	        {LS_REPLY, 200, NULL, "{}", 0}, /* acquire: GetItem, no item */
	        {LS_REPLY, 200, NULL, "{}", 0}, /* acquire: PutItem won */
	        {LS_REPLY, 200, NULL,
	         "{\"Attributes\":{\"lease_id\":{\"S\":\"runner-scaler\"},"
	         "\"owner\":{\"S\":\"host:1\"},\"expiry\":{\"N\":\"99999999999999\"},"
	         "\"version\":{\"N\":\"2\"}}}",
	         0}, /* renew: UpdateItem */
	};
	struct loopback_server srv;
	struct http_client *http;
	struct aws_ctx ctx;
	struct aws_error err;
	struct election e;
	struct buf out;
	enum election_event ev;

	assert_int_equal(ls_start(&srv, script, ARRAY_SIZE(script)), 0);
	assert_int_equal(http_client_new(&http), 0);
	setenv("AWS_ENDPOINT_URL", srv.url, 1);
	memset(&ctx, 0, sizeof(ctx));
	ctx.http = http;
	str_copy(ctx.creds.akid, "AKIDTEST", sizeof(ctx.creds.akid));
	str_copy(ctx.creds.secret, "secret", sizeof(ctx.creds.secret));
	/* runner-scaler bounds its token fetch (a hang here ends at that bound, before the
	 * attempt's own timeout). */
	ctx.timeout_ms = 2000;
	ctx.max_attempts = 1;
	ctx.call_budget_ms = 300;
	buf_init(&out, 0);
	assert_int_equal(aws_json(&ctx, AWS_SSM, "us-east-1", "GetParameter", "{}", &out, &err),
	                 -ETIMEDOUT);
	buf_free(&out);

	assert_int_equal(election_init(&e, "t", "runner-scaler", "host:1", "us-east-1", 3000, 300),
	                 0);
	ev = election_tick(&e, &ctx, now_mono_ms());
	if (ev != ELECTION_GAINED)
		fail_msg("acquire after the token call's deadline: event %d, rc %d (%s: %s), "
		         "%zu requests reached DynamoDB",
		         (int)ev, e.last_rc, e.last_error.code, e.last_error.message,
		         srv.nreqs - 1);
	/* Renew, due lease/3 later, as the election timer would call it. */
	ev = election_tick(&e, &ctx, e.next_due);
	if (ev != ELECTION_NONE || e.last_rc != 0 || !e.leader)
		fail_msg("renew: event %d, rc %d (%s: %s)", (int)ev, e.last_rc, e.last_error.code,
		         e.last_error.message);
	assert_int_equal(e.lease.version, 2);
	/* The tick's bounds ended with it. */
	assert_int_equal(ctx.cap_mono_ms, 0);
	assert_int_equal(ctx.call_budget_ms, 300);
	assert_int_equal(ctx.timeout_ms, 2000);
	ls_stop(&srv);
	unsetenv("AWS_ENDPOINT_URL");
	http_client_free(http);
	assert_int_equal(srv.nreqs, 4);
	assert_string_equal(ls_header(&srv.reqs[1], "X-Amz-Target"), "DynamoDB_20120810.GetItem");
	assert_string_equal(ls_header(&srv.reqs[2], "X-Amz-Target"), "DynamoDB_20120810.PutItem");
	assert_string_equal(ls_header(&srv.reqs[3], "X-Amz-Target"),
	                    "DynamoDB_20120810.UpdateItem");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_skew),
	        cmocka_unit_test(test_fenced),
	        cmocka_unit_test(test_call_timeout),
	        cmocka_unit_test(test_disabled),
	        cmocka_unit_test(test_init),
	        cmocka_unit_test(test_win_renew_deadline),
	        cmocka_unit_test(test_lost),
	        cmocka_unit_test(test_errors_keep_until_deadline),
	        cmocka_unit_test(test_answer_too_late),
	        cmocka_unit_test(test_stopped_leader),
	        cmocka_unit_test(test_owner_id),
	        cmocka_unit_test(test_tick_after_an_earlier_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
