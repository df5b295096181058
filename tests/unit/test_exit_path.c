/* Unit tests: leaving the ASG (decrement, MinSize fallback, not-found, retries bounded by
 * attempts and deadline, never twice after success) over scripted Terminate answers; and the
 * pure helpers of the boot steps (target lifecycle states, token trimming). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "boot.h"
#include "exit_path.h"
#include "util.h"

/* clang-format off */
#define MIN_SIZE_MSG "Currently, desiredSize equals minSize (1). Terminating instance without " \
	"replacement will violate group's min size constraint. Either set " \
	"shouldDecrementDesiredCapacity flag to false or lower group's min size."
#define NOT_FOUND_MSG "Instance Id not found - No managed instance found for instance ID i-1"

struct answer {
	int r;
	long http;
	const char *code;
	const char *message;
};

#define OK {0, 200, "", ""}
#define MINSIZE {-EREMOTEIO, 400, "ValidationError", MIN_SIZE_MSG}
#define NOTFOUND {-EREMOTEIO, 400, "ValidationError", NOT_FOUND_MSG}
#define UNAVAIL {-EREMOTEIO, 503, "ServiceUnavailable", "try later"}
#define THROTTLE {-EREMOTEIO, 400, "Throttling", "Rate exceeded"}
#define DENIED {-EREMOTEIO, 403, "AccessDenied", "not authorized"}
#define TIMEOUT {-ETIMEDOUT, 0, "timeout", ""}
#define NOKEY {-ENOKEY, 0, "credentials", "no credentials"}
/* clang-format on */

struct script {
	const struct answer *answers;
	size_t n, next;
	bool decrements[16];
	uint64_t now;
	uint64_t slept;
	unsigned sleeps;
};

static int s_terminate(void *user, bool decrement, struct aws_error *err)
{
	struct script *s = user;
	const struct answer *a;

	assert_true(s->next < s->n); /* a call the script did not expect */
	a = &s->answers[s->next];
	s->decrements[s->next++] = decrement;
	err->http_status = a->http;
	str_copy(err->code, a->code, sizeof(err->code));
	str_copy(err->message, a->message, sizeof(err->message));
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
	s->sleeps++;
}

static uint32_t s_random(void *user)
{
	return UINT32_MAX; /* the longest jitter: the deadline tests are then exact */
}

struct tcase {
	const char *what;
	struct answer answers[8];
	size_t n;
	uint64_t deadline;
	int want_r;
	enum leave_outcome want;
	unsigned calls;
	const char *decrements; /* "tf": the flag of each call */
	bool decremented;
};

/* clang-format off */
static const struct tcase cases[] = {
	{"success", {OK}, 1, 60000, 0, LEAVE_DONE, 1, "t", true},
	{"min size, then without decrement", {MINSIZE, OK}, 2, 60000,
	 0, LEAVE_DONE, 2, "tf", false},
	{"min size twice: the fallback happens once", {MINSIZE, MINSIZE}, 2, 60000,
	 -EREMOTEIO, LEAVE_FAILED, 2, "tf", false},
	{"not found is done", {NOTFOUND}, 1, 60000,
	 0, LEAVE_NOT_FOUND, 1, "t", false},
	{"lost reply, then not found: done", {TIMEOUT, NOTFOUND}, 2, 60000,
	 0, LEAVE_NOT_FOUND, 2, "tt", false},
	{"5xx retried", {UNAVAIL, UNAVAIL, OK}, 3, 60000,
	 0, LEAVE_DONE, 3, "ttt", true},
	{"min size after a 5xx", {UNAVAIL, MINSIZE, OK}, 3, 60000,
	 0, LEAVE_DONE, 3, "ttf", false},
	{"throttled until attempts run out", {THROTTLE, THROTTLE, THROTTLE, THROTTLE, THROTTLE}, 5,
	 600000, -EREMOTEIO, LEAVE_FAILED, 5, "ttttt", false},
	/* the first backoff is 500 ms (jitter at its max): past a 400 ms deadline, no retry */
	{"deadline stops retries", {UNAVAIL, OK}, 1, 400,
	 -EREMOTEIO, LEAVE_FAILED, 1, "t", false},
	{"access denied is final", {DENIED}, 1, 60000,
	 -EREMOTEIO, LEAVE_FAILED, 1, "t", false},
	{"no credentials is final", {NOKEY}, 1, 60000,
	 -ENOKEY, LEAVE_FAILED, 1, "t", false},
};
/* clang-format on */

static void test_leave(void **state)
{
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct tcase *c = &cases[i];
		struct script s = {c->answers, c->n, 0, {0}, 0, 0, 0};
		const struct leave_ops ops = {s_terminate, s_now, s_sleep, s_random, &s};
		struct leave_report rep;
		int r;

		s.now = 0;
		r = leave_asg_run(&ops, c->deadline, LEAVE_MAX_ATTEMPTS, &rep);
		if (r != c->want_r || rep.outcome != c->want || rep.calls != c->calls ||
		    s.next != c->calls ||
		    (c->want == LEAVE_DONE && rep.decremented != c->decremented)) {
			print_error("case %zu (%s): r=%d outcome=%d calls=%u (script %zu)\n", i,
			            c->what, r, rep.outcome, rep.calls, s.next);
			fail();
		}
		for (k = 0; k < c->calls; k++)
			assert_int_equal(s.decrements[k], c->decrements[k] == 't');
		/* No retry sleep ever crosses the deadline. */
		assert_true(s.now <= c->deadline);
	}
}

static void test_backoff_grows(void **state)
{
	const struct answer answers[] = {UNAVAIL, UNAVAIL, UNAVAIL, UNAVAIL, OK};
	struct script s = {answers, ARRAY_SIZE(answers), 0, {0}, 0, 0, 0};
	const struct leave_ops ops = {s_terminate, s_now, s_sleep, s_random, &s};
	struct leave_report rep;

	assert_int_equal(leave_asg_run(&ops, 600000, LEAVE_MAX_ATTEMPTS, &rep), 0);
	assert_int_equal(rep.calls, 5);
	assert_int_equal(s.sleeps, 4);
	/* full jitter at its maximum: 500, 1000, 2000, 4000 */
	assert_int_equal(s.slept, 7500);
}

static void test_classify_state(void **state)
{
	assert_int_equal(boot_classify_state(""), LC_IN_SERVICE);
	assert_int_equal(boot_classify_state(NULL), LC_IN_SERVICE);
	assert_int_equal(boot_classify_state("InService"), LC_IN_SERVICE);
	assert_int_equal(boot_classify_state("Warmed:Stopped"), LC_WARMED);
	assert_int_equal(boot_classify_state("Warmed:Running"), LC_WARMED);
	assert_int_equal(boot_classify_state("Warmed:Hibernated"), LC_WARMED);
	assert_int_equal(boot_classify_state("Warmed:Terminated"), LC_TERMINATED);
	assert_int_equal(boot_classify_state("Terminated"), LC_TERMINATED);
	assert_int_equal(boot_classify_state("Detached"), LC_OTHER);
	assert_int_equal(boot_classify_state("Standby"), LC_OTHER);
	assert_int_equal(boot_classify_state("terminated"), LC_OTHER); /* case matters */
}

static void test_token_trim(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		int r;
		const char *out;
	} t[] = {
	        {"abc", 3, 0, "abc"},           {"  abc \n", 7, 0, "abc"},
	        {"\n\tab c\r\n", 8, 0, "ab c"}, {"", 0, -EINVAL, NULL},
	        {" \n\t ", 4, -EINVAL, NULL},   {"ab\0cd", 5, -EINVAL, NULL},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		struct buf b;

		buf_init(&b, 64);
		assert_int_equal(buf_append(&b, t[i].in, t[i].len), 0);
		if (!b.data) /* an empty append allocates nothing */
			assert_int_equal(buf_append_str(&b, ""), 0);
		assert_int_equal(boot_token_trim(&b), t[i].r);
		if (t[i].out) {
			assert_string_equal(b.data, t[i].out);
			assert_int_equal(b.len, strlen(t[i].out));
		}
		buf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_leave),
	        cmocka_unit_test(test_backoff_grows),
	        cmocka_unit_test(test_classify_state),
	        cmocka_unit_test(test_token_trim),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
