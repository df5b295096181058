/* The LAUNCHING lifecycle hook (see launch_hook.h and runnerd(8), WARM POOLS). */
#include "launch_hook.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "aws_warm.h"
#include "creds.h"
#include "log.h"
#include "util.h"

const char *hook_outcome_name(enum hook_outcome o)
{
	switch (o) {
	case HOOK_DONE:
		return "done";
	case HOOK_NO_ACTION:
		return "no-action";
	case HOOK_NOT_IN_GROUP:
		return "not-in-group";
	case HOOK_FAILED:
		return "failed";
	}
	return "unknown";
}

static bool transport(int r)
{
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -EPROTO ||
	       r == -ECONNRESET || r == -EBADMSG;
}

static bool retryable(int r, const struct aws_error *err)
{
	return transport(r) || (r == -EREMOTEIO && aws_error_retryable(err));
}

/* Sleep a full-jitter backoff before attempt+1: false, without sleeping, when that would reach
 * the deadline (0 = none) or when the window (0 = none) is over; a sleep that would pass the
 * window's end is cut to it, for one last call there. */
static bool pause(const struct hook_ops *ops, unsigned attempt, uint64_t window, uint64_t deadline)
{
	uint64_t d = backoff_full_jitter_ms(attempt, HOOK_BACKOFF_BASE_MS, HOOK_BACKOFF_CAP_MS,
	                                    ops->random(ops->user));
	uint64_t now = ops->now_ms(ops->user);

	if (d < HOOK_BACKOFF_MIN_MS)
		d = HOOK_BACKOFF_MIN_MS;
	if (window && now >= window)
		return false;
	if (window && now + d > window)
		d = window - now;
	if (deadline && now + d >= deadline)
		return false;
	ops->sleep_ms(ops->user, d);
	return true;
}

int hook_complete_run(const struct hook_ops *ops, bool abandon, uint64_t deadline_ms,
                      struct hook_report *rep)
{
	unsigned errors = 0, unlisted = 0;
	bool maybe_done = false;
	uint64_t window = 0;
	int r;

	memset(rep, 0, sizeof(*rep));
	rep->outcome = HOOK_FAILED;
	for (;;) {
		memset(&rep->last, 0, sizeof(rep->last));
		r = ops->group(ops->user, rep->group, sizeof(rep->group), &rep->last);
		rep->last_r = r;
		if (r == 0)
			break;
		if (r == -ENOENT) {
			/* Not listed yet: the describe may lag a launch as CompleteLifecycleAction
			 * does; giving up at once would leave the hook to its heartbeat timeout
			 * (ABANDON: the instance lost). The same window, then not in a group. */
			if (!window)
				window = ops->now_ms(ops->user) + HOOK_WINDOW_MS;
			if (!pause(ops, unlisted++, window, deadline_ms)) {
				rep->outcome = HOOK_NOT_IN_GROUP;
				return 0;
			}
			continue;
		}
		if (!retryable(r, &rep->last) || ++errors >= HOOK_MAX_ERRORS ||
		    !pause(ops, errors - 1, 0, deadline_ms))
			return r;
	}
	errors = 0;
	window = 0;
	for (;;) {
		memset(&rep->last, 0, sizeof(rep->last));
		r = ops->complete(ops->user, rep->group, abandon, &rep->last);
		rep->calls++;
		rep->last_r = r;
		if (!window)
			window = ops->now_ms(ops->user) + HOOK_WINDOW_MS;
		if (r == 0) {
			rep->outcome = HOOK_DONE;
			return 0;
		}
		if (r == -EREMOTEIO && asg_error_is_no_active_action(&rep->last)) {
			/* A retry after a lost reply finds the action completed by that call. */
			if (maybe_done) {
				rep->outcome = HOOK_DONE;
				return 0;
			}
			rep->no_action++;
			if (!pause(ops, rep->no_action - 1, window, deadline_ms)) {
				rep->outcome = HOOK_NO_ACTION;
				return 0;
			}
			continue;
		}
		if (!retryable(r, &rep->last) || ++errors >= HOOK_MAX_ERRORS)
			return r;
		/* No reply, or a server error: the call may have been carried out. Not
		 * ResourceContention (HTTP 500 too, but a refusal): a "no action" after it means
		 * no action yet, and taking it as done would leave the hook to its heartbeat
		 * timeout. */
		if (r != -EREMOTEIO || (rep->last.http_status >= 500 &&
		                        strcmp(rep->last.code, "ResourceContention") != 0))
			maybe_done = true;
		if (!pause(ops, errors - 1, 0, deadline_ms))
			return r;
	}
}

/* ---- the real operations ---- */

static int real_group(void *user, char *group, size_t n, struct aws_error *err)
{
	struct boot_ctx *b = user;
	char state[48];
	int r;

	if (b->group[0]) {
		str_copy(group, b->group, n);
		return 0;
	}
	r = asg_instance_group(&b->aws, b->region, b->instance_id, group, n, state, sizeof(state),
	                       err);
	if (r == 0) {
		str_copy(b->group, group, sizeof(b->group));
		log_info("launch-hook: %s is in group %s (%s)", b->instance_id, group, state);
	}
	return r;
}

static int real_complete(void *user, const char *group, bool abandon, struct aws_error *err)
{
	struct boot_ctx *b = user;

	log_info("launch-hook: CompleteLifecycleAction %s group %s instance %s %s",
	         b->conf->lifecycle->launch_hook, group, b->instance_id,
	         abandon ? "ABANDON" : "CONTINUE");
	return asg_complete_lifecycle_action(&b->aws, b->region, b->conf->lifecycle->launch_hook,
	                                     group, b->instance_id, abandon, err);
}

static uint64_t real_now(void *user)
{
	return now_mono_ms();
}

static void real_sleep(void *user, uint64_t ms)
{
	sleep_ms(ms);
}

static uint32_t real_random(void *user)
{
	return random_u32();
}

static const char *why(const struct hook_report *rep, char *out, size_t n)
{
	snprintf(out, n, "%.90s%s%.150s",
	         rep->last.code[0] ? rep->last.code : strerror(-rep->last_r),
	         rep->last.message[0] ? ": " : "", rep->last.message);
	return out;
}

int boot_launch_hook(struct boot_ctx *b, bool abandon, struct hook_report *rep)
{
	const struct hook_ops ops = {real_group, real_complete, real_now,
	                             real_sleep, real_random,   b};
	const char *hook = b->conf->lifecycle->launch_hook;
	char text[300];
	uint64_t cap;
	int r;

	memset(rep, 0, sizeof(*rep));
	rep->outcome = HOOK_FAILED;
	if (!b->instance_id[0]) {
		log_warn("launch-hook: no instance id (IMDS disabled): %s not completed", hook);
		rep->outcome = HOOK_NOT_IN_GROUP;
		return 0;
	}
	if (!b->have_creds) {
		r = creds_resolve(&b->aws, b->imds.disabled ? NULL : &b->imds);
		if (r < 0) {
			snprintf(b->err, sizeof(b->err),
			         "launch-hook: no AWS credentials to complete %s: %s", hook,
			         strerror(-r));
			return r;
		}
		b->have_creds = true;
	}
	/* The boot deadline (in service) bounds these calls; in the pool nothing else does but
	 * the window and the attempts. */
	cap = aws_cap_begin(&b->aws, b->deadline_mono_ms);
	r = hook_complete_run(&ops, abandon, b->deadline_mono_ms, rep);
	aws_cap_end(&b->aws, cap);
	switch (rep->outcome) {
	case HOOK_DONE:
		log_info("launch-hook: %s completed with %s (%u call%s)", hook,
		         abandon ? "ABANDON" : "CONTINUE", rep->calls, rep->calls == 1 ? "" : "s");
		return 0;
	case HOOK_NO_ACTION:
		log_warn("launch-hook: %s: no lifecycle action of %s waits for an answer (%u "
		         "call%s over %d s: %s); going on without completing it",
		         hook, b->instance_id, rep->calls, rep->calls == 1 ? "" : "s",
		         HOOK_WINDOW_MS / 1000, why(rep, text, sizeof(text)));
		return 0;
	case HOOK_NOT_IN_GROUP:
		log_warn("launch-hook: autoscaling:DescribeAutoScalingInstances lists no group for "
		         "%s: %s not completed",
		         b->instance_id, hook);
		return 0;
	default:
		str_printf(b->err, sizeof(b->err), "launch-hook: %s %.60s: %s",
		           rep->last.call[0]
		                   ? rep->last.call
		                   : (rep->group[0] ? "autoscaling:CompleteLifecycleAction"
		                                    : "autoscaling:DescribeAutoScalingInstances"),
		           hook, why(rep, text, sizeof(text)));
		return r < 0 ? r : -EIO;
	}
}
