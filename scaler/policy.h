/* The scaling policy: a pure function from what one cycle read to what it should write.
 *
 *   desired = clamp(unclaimed + running (+ headroom while any task exists),
 *                   max(pool min, ASG MinSize), min(pool max, ASG MaxSize))
 *   max_step > 0 limits the move from the ASG's current desired per cycle (the bounds win);
 *   anything missing or implausible -> hold: never scale in on data it could not read;
 *   during a launch back-off (launches.h) the result is never above the current value, and
 *   at most max(ASG MinSize, pool min, the live instances whose runner connected or may have),
 *   max_step still pacing the move: the failing launches are not replaced, while every runner
 *   that connected is counted (runners are protected from scale-in: a lower desired ends none;
 *   in a group whose instances are not all protected, nothing below the usual value);
 *   set only when the result differs from the ASG's current DesiredCapacity. */
#ifndef RUNNERD_POLICY_H
#define RUNNERD_POLICY_H

#include <stdbool.h>
#include <stdint.h>

enum policy_action {
	POLICY_NOOP,
	POLICY_SET,
	POLICY_HOLD,
};

struct policy_input {
	bool counts_ok; /* both counts were read and parsed this cycle */
	int64_t unclaimed, running;
	bool asg_ok; /* the group was described this cycle */
	int64_t asg_desired, asg_min, asg_max;
	int64_t pool_min, pool_max, headroom, max_step;
	/* launch back-off: ms left (> 0 while it lasts) and the failed launches in a row */
	int64_t launch_backoff_ms, failed_launches;
	/* during one: the live instances whose runner connected, and those the caller could not
	 * tell apart from them (a runner list it could not read): desired is not lowered below
	 * the two together */
	int64_t launch_connected, launch_unknown;
	/* and whether the group may end an instance that is not protected from scale-in (one
	 * listed unprotected, or new ones launched so): it picks what a lower value ends, a busy
	 * runner as soon as a failing one, so the back-off lowers nothing below the usual value */
	bool launch_unprotected;
};

struct policy_output {
	enum policy_action action;
	int64_t desired; /* the value to hold at: for hold and noop the current value */
	char reason[192];
};

void policy_decide(const struct policy_input *in, struct policy_output *out);
const char *policy_action_name(enum policy_action a);

#endif
