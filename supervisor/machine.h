/* runnerd's lifecycle as a pure function: (phase, event, context) -> (next phase, actions).
 * Written out as a table, actions[phase][event], after s6-supervise. The main loop feeds events
 * and carries out the actions; nothing here touches the world. */
#ifndef RUNNERD_MACHINE_H
#define RUNNERD_MACHINE_H

#include <stdbool.h>

#include "status.h"

enum machine_event {
	EV_START,                  /* the main loop is up */
	EV_STEP_OK,                /* the step of the current phase finished */
	EV_STEP_FAILED,            /* ... failed for good (any fatal error) */
	EV_WARM,                   /* metadata: target lifecycle state Warmed:* */
	EV_USED,                   /* metadata: in service, but an agent already ran here */
	EV_IN_SERVICE,             /* warm-wait: the target state became InService */
	EV_AGENT_EXIT,             /* the agent was reaped */
	EV_SIGTERM,                /* SIGTERM, SIGINT or SIGQUIT to runnerd */
	EV_DRAIN_REQUEST,          /* runnerctl drain */
	EV_NOTICE_AWS_TERMINATING, /* spot instance-action, or target state Terminated */
	EV_BOOT_DEADLINE,          /* boot_deadline passed before running */
	EV_DRAIN_TIMEOUT,          /* the agent outlived drain_timeout */
	EV_RUN_WATCHDOG,           /* the agent outlived its longest legitimate run */
	EV_LEFT_ASG,               /* the leave step ended (done or given up) */
	EV_PROCEED,                /* leave a transient phase (failed) */
	EV_COUNT,
};

/* Context the main loop keeps and passes in (facts, not phases). */
#define MC_WARM        0x1u  /* in a warm pool (until InService): prepare, then warm-wait */
#define MC_AWS_ENDING  0x2u  /* AWS itself is ending the instance: do not leave the ASG */
#define MC_NO_LEAVE    0x4u  /* leave_asg = false, or no instance id */
#define MC_NO_POWEROFF 0x8u  /* on_exit = exit: skip leaving the ASG and power-off */
#define MC_HOOK        0x10u /* [lifecycle] launch_hook is set: complete it */
#define MC_USED        0x20u /* state_dir: an agent already ran on this instance */

/* Actions, in the order the main loop performs them. */
#define ACT_ABANDON_WORKER       0x001u /* the step in flight no longer matters: detach it */
#define ACT_ARM_BOOT_DEADLINE    0x002u
#define ACT_DISARM_BOOT_DEADLINE 0x004u
#define ACT_RUN_STEP             0x008u /* start the step of the new phase (in the worker) */
#define ACT_START_AGENT          0x010u /* fork/exec the agent; then READY=1 */
#define ACT_TERM_AGENT           0x020u /* SIGTERM to the agent */
#define ACT_ARM_DRAIN            0x040u /* start drain_timeout */
#define ACT_KILL_AGENT           0x080u /* SIGKILL to the agent */
#define ACT_PROCEED              0x100u /* transient phase: feed EV_PROCEED at once */
#define ACT_QUIT                 0x200u /* leave the loop and exit */
#define ACT_QUIET                0x400u /* exit 0, no exit path (the ASG stops a warm instance) */
/* In the warm pool (MC_WARM) the leave step abandons the launch hook instead: AWS terminates
 * the instance; TerminateInstanceInAutoScalingGroup is refused for pool instances. */

struct machine_step {
	enum phase next;  /* == current phase when the event changes no phase */
	unsigned actions; /* ACT_* */
	bool handled;     /* false: the event means nothing in this phase (ignored) */
};

struct machine_step machine_next(enum phase cur, enum machine_event ev, unsigned ctx);

/* Where the exit path starts for ctx: leaving-asg, powering-off, or exited (with its actions). */
struct machine_step machine_exit_path(unsigned ctx);

const char *machine_event_name(enum machine_event ev);

#endif
