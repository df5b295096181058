/* Completing the group's EC2_INSTANCE_LAUNCHING lifecycle hook ([lifecycle] launch_hook): in
 * the warm pool once the bake work is done (CONTINUE: AWS may stop the instance now), on every
 * boot into service before the agent starts (the hook fires again on the way out of the pool),
 * and ABANDON for an instance that must not be used again. The decisions are a function over
 * injectable operations (unit-tested, like the exit path's); the real operations are
 * DescribeAutoScalingInstances and CompleteLifecycleAction with the instance role. */
#ifndef RUNNERD_LAUNCH_HOOK_H
#define RUNNERD_LAUNCH_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws.h"
#include "boot.h"

/* Right after a transition CompleteLifecycleAction may answer "No active Lifecycle Action"
 * for a while (warm-pools.md): retried this long from the first call, then logged and left. */
#define HOOK_WINDOW_MS       60000
#define HOOK_BACKOFF_MIN_MS  250 /* full jitter may draw 0: never a tight loop */
#define HOOK_BACKOFF_BASE_MS 1000
#define HOOK_BACKOFF_CAP_MS  10000
#define HOOK_MAX_ERRORS      5 /* transport errors, 5xx, throttling: attempts of each call */

enum hook_outcome {
	HOOK_DONE,         /* completed (or an earlier attempt whose reply was lost did) */
	HOOK_NO_ACTION,    /* "No active Lifecycle Action" for the whole window */
	HOOK_NOT_IN_GROUP, /* DescribeAutoScalingInstances did not list the instance, for the
	                    * whole window */
	HOOK_FAILED,
};

struct hook_ops {
	/* DescribeAutoScalingInstances: the group's name; -ENOENT when not in a group. Returns
	 * like asg_instance_group. */
	int (*group)(void *user, char *group, size_t n, struct aws_error *err);
	/* One CompleteLifecycleAction: returns like asg_complete_lifecycle_action. */
	int (*complete)(void *user, const char *group, bool abandon, struct aws_error *err);
	uint64_t (*now_ms)(void *user);
	void (*sleep_ms)(void *user, uint64_t ms);
	uint32_t (*random)(void *user);
	void *user;
};

struct hook_report {
	enum hook_outcome outcome;
	unsigned calls;     /* CompleteLifecycleAction calls made */
	unsigned no_action; /* of them answered "No active Lifecycle Action" */
	int last_r;
	struct aws_error last;
	char group[256];
};

/* The group first (transient errors retried, up to HOOK_MAX_ERRORS; not listed retried with
 * the backoff for HOOK_WINDOW_MS, then HOOK_NOT_IN_GROUP), then
 * CompleteLifecycleAction: "No active Lifecycle Action" retried with a full-jitter backoff until
 * HOOK_WINDOW_MS after the first call (HOOK_NO_ACTION), unless an earlier attempt may have got
 * through (no reply, or 5xx): then it is done; transport errors, 5xx and throttling retried up
 * to HOOK_MAX_ERRORS; anything else (access denied, no such hook) fails. Nothing sleeps past
 * deadline_ms (in ops' clock; 0 = none). 0 unless HOOK_FAILED (the last error then). */
int hook_complete_run(const struct hook_ops *ops, bool abandon, uint64_t deadline_ms,
                      struct hook_report *rep);

const char *hook_outcome_name(enum hook_outcome o);

/* The real thing with b's credentials, instance id and region, for [lifecycle] launch_hook.
 * Logs what it does and the outcome. 0, or -errno with b->err set (HOOK_FAILED). */
int boot_launch_hook(struct boot_ctx *b, bool abandon, struct hook_report *rep);

#endif
