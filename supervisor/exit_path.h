/* The exit path, the same for every ending: leave the Auto Scaling group, then power off.
 * The decision logic of leaving is a function over injectable operations (unit-tested); the
 * real operations are TerminateInstanceInAutoScalingGroup, logind over sd-bus, /bin/sh. */
#ifndef RUNNERD_EXIT_PATH_H
#define RUNNERD_EXIT_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws.h"
#include "boot.h"

#define LEAVE_MAX_ATTEMPTS 5     /* transport/5xx/throttling attempts */
#define LEAVE_TIMEOUT_MS   60000 /* the whole leave step */

enum leave_outcome {
	LEAVE_DONE,      /* terminated (decremented or not) */
	LEAVE_NOT_FOUND, /* "Instance Id not found": gone already, counts as done */
	LEAVE_FAILED,
	LEAVE_SKIPPED, /* no instance id, no credentials, no region */
};

struct leave_ops {
	/* One TerminateInstanceInAutoScalingGroup: returns like asg_terminate_instance. */
	int (*terminate)(void *user, bool decrement, struct aws_error *err);
	uint64_t (*now_ms)(void *user);
	void (*sleep_ms)(void *user, uint64_t ms);
	uint32_t (*random)(void *user);
	void *user;
};

struct leave_report {
	enum leave_outcome outcome;
	unsigned calls;        /* Terminate calls made */
	bool decremented;      /* the successful call had ShouldDecrementDesiredCapacity=true */
	int last_r;            /* last return of terminate */
	struct aws_error last; /* last error seen */
};

/* Decrement first; at MinSize once more without; not-found is done; transport errors, 5xx and
 * throttling retried with full jitter up to max_attempts and never past deadline_ms (in the
 * clock of ops->now_ms). Never calls again after a success. 0 (done or not found) or the last
 * error. */
int leave_asg_run(const struct leave_ops *ops, uint64_t deadline_ms, unsigned max_attempts,
                  struct leave_report *rep);

/* The real thing with b's credentials (resolved once here when boot never got them), instance
 * id and region. Logs what it does. 0 or -errno; rep filled. */
int exit_leave_asg(struct boot_ctx *b, uint64_t deadline_mono_ms, struct leave_report *rep);

/* poweroff_command through /bin/sh -c (its status logged; a non-zero status is not an error),
 * else logind PowerOff(false) over the system bus, else `systemctl poweroff`. 0 when the power
 * off was asked for; -errno when nothing worked. Logs. */
int exit_power_off(const char *poweroff_command);

#endif
