/* Unit tests: completing the LAUNCHING lifecycle hook over scripted answers and a fake clock:
 * the group found first, "No active Lifecycle Action" retried for HOOK_WINDOW_MS then left,
 * a lost reply followed by "no action" counted as done, transient errors retried a bounded
 * number of times, anything else failing; never a call after a success. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "aws_warm.h"
#include "launch_hook.h"
#include "util.h"

struct answer {
	int r;
	long http;
	const char *code;
	const char *message;
};

/* clang-format off */
#define OK       {0, 200, "", ""}
#define NOACTION {-EREMOTEIO, 400, "ValidationError", \
	"No active Lifecycle Action found with instance ID i-0fa4e0000000000001"}
#define NOHOOK   {-EREMOTEIO, 400, "ValidationError", \
	"No Lifecycle Hook found with name runner-launch"}
#define UNAVAIL  {-EREMOTEIO, 503, "ServiceUnavailable", "try later"}
#define THROTTLE {-EREMOTEIO, 400, "Throttling", "Rate exceeded"}
/* botocore: ResourceContentionFault, HTTP 500 with senderFault: refused, not carried out. */
#define CONTEND  {-EREMOTEIO, 500, "ResourceContention", \
	"You already have a pending update to an Auto Scaling resource"}
#define DENIED   {-EREMOTEIO, 403, "AccessDenied", "not authorized"}
#define TIMEOUT  {-ETIMEDOUT, 0, "timeout", ""}
#define GONE     {-ENOENT, 0, "", ""}
/* clang-format on */

struct script {
	const struct answer *group, *complete;
	size_t ngroup, ncomplete, gnext, cnext;
	bool abandon_seen;
	uint64_t now, slept;
	uint32_t rnd;
};

static void answer(const struct answer *a, struct aws_error *err)
{
	err->http_status = a->http;
	str_copy(err->code, a->code, sizeof(err->code));
	str_copy(err->message, a->message, sizeof(err->message));
}

static int s_group(void *user, char *group, size_t n, struct aws_error *err)
{
	struct script *s = user;
	const struct answer *a;

	assert_true(s->ngroup > 0); /* a call the script did not expect */
	/* Past the script's end its last answer repeats. */
	a = &s->group[s->gnext < s->ngroup ? s->gnext : s->ngroup - 1];
	s->gnext++;
	answer(a, err);
	if (a->r == 0)
		str_copy(group, "cci-runner-asg", n);
	return a->r;
}

static int s_complete(void *user, const char *group, bool abandon, struct aws_error *err)
{
	struct script *s = user;
	const struct answer *a;

	assert_string_equal(group, "cci-runner-asg");
	assert_true(s->ncomplete > 0); /* a call the script did not expect */
	/* Past the script's end its last answer repeats. */
	a = &s->complete[s->cnext < s->ncomplete ? s->cnext : s->ncomplete - 1];
	s->cnext++;
	s->abandon_seen = abandon;
	s->now += 50; /* a call takes a while */
	answer(a, err);
	return a->r;
}

static uint64_t s_now(void *user)
{
	return ((struct script *)user)->now;
}

static void s_sleep(void *user, uint64_t ms)
{
	struct script *s = user;

	s->now += ms;
	s->slept += ms;
}

static uint32_t s_random(void *user)
{
	return ((struct script *)user)->rnd;
}

struct tcase {
	const char *what;
	struct answer group[6];
	size_t ngroup;
	struct answer complete[8];
	size_t ncomplete;
	uint64_t deadline; /* 0: none */
	uint32_t rnd;
	int want_r;
	enum hook_outcome want;
	unsigned calls, no_action;
};

/* clang-format off */
static const struct tcase cases[] = {
	{"completed at once", {OK}, 1, {OK}, 1, 0, UINT32_MAX, 0, HOOK_DONE, 1, 0},
	{"no action right after the transition, then done", {OK}, 1,
	 {NOACTION, NOACTION, OK}, 3, 0, UINT32_MAX, 0, HOOK_DONE, 3, 2},
	/* The longest backoffs (1, 2, 4, 8, 10, 10, ... s): the window ends the retries about
	 * 60 s after the first call, with a last call at its end. */
	{"no action for the whole window", {OK}, 1, {NOACTION}, 1, 0, UINT32_MAX,
	 0, HOOK_NO_ACTION, 10, 10},
	{"the deadline cuts the window short", {OK}, 1, {NOACTION}, 1, 5000,
	 UINT32_MAX, 0, HOOK_NO_ACTION, 3, 3},
	{"a lost reply, then no action: that call did it", {OK}, 1, {TIMEOUT, NOACTION}, 2,
	 0, UINT32_MAX, 0, HOOK_DONE, 2, 0},
	{"a 503, then no action: that call may have done it", {OK}, 1, {UNAVAIL, NOACTION}, 2,
	 0, UINT32_MAX, 0, HOOK_DONE, 2, 0},
	{"throttled, then no action: a throttled call did nothing", {OK}, 1,
	 {THROTTLE, NOACTION, OK}, 3, 0, UINT32_MAX, 0, HOOK_DONE, 3, 1},
	{"contention (500), then no action: a refused call did nothing", {OK}, 1,
	 {CONTEND, NOACTION, OK}, 3, 0, UINT32_MAX, 0, HOOK_DONE, 3, 1},
	{"transient errors until the attempts run out", {OK}, 1,
	 {UNAVAIL, UNAVAIL, UNAVAIL, UNAVAIL, UNAVAIL}, 5, 0, UINT32_MAX,
	 -EREMOTEIO, HOOK_FAILED, 5, 0},
	{"access denied fails at once", {OK}, 1, {DENIED}, 1, 0, UINT32_MAX,
	 -EREMOTEIO, HOOK_FAILED, 1, 0},
	{"no such hook fails at once", {OK}, 1, {NOHOOK}, 1, 0, UINT32_MAX,
	 -EREMOTEIO, HOOK_FAILED, 1, 0},
	/* The longest backoffs: about 60 s of describes, then not in a group. */
	{"not in a group: nothing to complete", {GONE}, 1, {OK}, 0, 0, UINT32_MAX,
	 0, HOOK_NOT_IN_GROUP, 0, 0},
	{"not listed yet right after the launch, then listed", {GONE, GONE, OK}, 3, {OK}, 1, 0,
	 UINT32_MAX, 0, HOOK_DONE, 1, 0},
	{"not listed, the deadline first", {GONE}, 1, {OK}, 0, 5000, UINT32_MAX,
	 0, HOOK_NOT_IN_GROUP, 0, 0},
	{"the group read retried", {TIMEOUT, THROTTLE, OK}, 3, {OK}, 1, 0, UINT32_MAX,
	 0, HOOK_DONE, 1, 0},
	{"the group read denied", {DENIED}, 1, {OK}, 0, 0, UINT32_MAX,
	 -EREMOTEIO, HOOK_FAILED, 0, 0},
	{"the group read times out for good", {TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT}, 5,
	 {OK}, 0, 0, UINT32_MAX, -ETIMEDOUT, HOOK_FAILED, 0, 0},
	/* Jitter that draws 0 still pauses HOOK_BACKOFF_MIN_MS (a call every 300 ms here) and
	 * ends with the window. */
	{"zero jitter: bounded by the window", {OK}, 1, {NOACTION}, 1, 0, 0,
	 0, HOOK_NO_ACTION, 201, 201},
};
/* clang-format on */

static void test_cases(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct tcase *c = &cases[i];
		struct script s = {.group = c->group,
		                   .complete = c->complete,
		                   .ngroup = c->ngroup,
		                   .ncomplete = c->ncomplete,
		                   .now = 1000,
		                   .rnd = c->rnd};
		struct hook_ops ops = {s_group, s_complete, s_now, s_sleep, s_random, &s};
		struct hook_report rep;
		bool abandon = i % 2 == 1;
		int r;

		r = hook_complete_run(&ops, abandon, c->deadline ? 1000 + c->deadline : 0, &rep);
		if (r != c->want_r || rep.outcome != c->want || rep.calls != c->calls ||
		    rep.no_action != c->no_action) {
			print_error(
			        "case %zu (%s): r %d outcome %s calls %u no_action %u; want r %d "
			        "outcome %s calls %u no_action %u\n",
			        i, c->what, r, hook_outcome_name(rep.outcome), rep.calls,
			        rep.no_action, c->want_r, hook_outcome_name(c->want), c->calls,
			        c->no_action);
			fail();
		}
		/* Every answer the script holds was used, or the run ended for a reason. */
		if (rep.calls)
			assert_int_equal(s.abandon_seen, abandon);
		/* Never sleeps past the window (60 s from the first call) or the deadline. */
		assert_true(s.now <= 1000 + HOOK_WINDOW_MS + 2000 + 50 * (uint64_t)rep.calls);
		if (c->deadline)
			assert_true(s.now <= 1000 + c->deadline + 50);
		assert_int_equal(s.cnext, rep.calls);
		/* An unlisted instance is described again until the window's end. */
		if (c->want == HOOK_NOT_IN_GROUP && !c->deadline)
			assert_true(s.now >= 1000 + HOOK_WINDOW_MS && s.gnext > 5);
	}
}

static void test_no_active_action(void **state)
{
	struct aws_error e;

	memset(&e, 0, sizeof(e));
	str_copy(e.code, "ValidationError", sizeof(e.code));
	str_copy(e.message, "No active Lifecycle Action found with instance ID i-1",
	         sizeof(e.message));
	assert_true(asg_error_is_no_active_action(&e));
	str_copy(e.message, "No active Lifecycle Action found with token 0b7-...",
	         sizeof(e.message));
	assert_true(asg_error_is_no_active_action(&e));
	str_copy(e.message, "No Lifecycle Hook found with name h", sizeof(e.message));
	assert_false(asg_error_is_no_active_action(&e));
	str_copy(e.code, "Throttling", sizeof(e.code));
	str_copy(e.message, "No active Lifecycle Action", sizeof(e.message));
	assert_false(asg_error_is_no_active_action(&e));
	assert_false(asg_error_is_no_active_action(NULL));
	assert_string_equal(hook_outcome_name(HOOK_NO_ACTION), "no-action");
	assert_string_equal(hook_outcome_name((enum hook_outcome)42), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_cases),
	        cmocka_unit_test(test_no_active_action),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
