/* The lifecycle table (runnerd(8) describes the same flow in words). Entries name a target,
 * which is either a phase or one of a few rules resolved from the context: "the next boot
 * step", "the exit path", "stop during boot". Everything not in the table is ignored. */
#include "machine.h"

#include <stddef.h>

enum target {
	TO_IGNORE = 0, /* zero-initialised entries: the event means nothing here */
	TO_SAME,
	TO_BOOT_NEXT, /* the next boot phase (the order depends on MC_WARM, MC_HOOK, MC_USED) */
	TO_EXIT,      /* the exit path: leaving-asg, powering-off or exited per ctx */
	TO_STOP,      /* stop during boot: quietly when a warm instance is being stopped */
	TO_PHASE,     /* TO_PHASE + p: phase p */
};

struct tr {
	unsigned char to;
	unsigned act;
};

#define P(p) ((unsigned char)(TO_PHASE + (p)))

/* Rows shared by every boot step. A boot step can be dropped at any time: the worker may be
 * stuck in the network or apt, so leaving abandons it instead of waiting. */
#define BOOT_ROW                                                                                   \
	[EV_STEP_OK] = {TO_BOOT_NEXT, 0}, [EV_STEP_FAILED] = {P(PHASE_FAILED), ACT_PROCEED},       \
	[EV_SIGTERM] = {TO_STOP, ACT_ABANDON_WORKER},                                              \
	[EV_DRAIN_REQUEST] = {TO_EXIT, ACT_ABANDON_WORKER},                                        \
	[EV_NOTICE_AWS_TERMINATING] = {TO_EXIT, ACT_ABANDON_WORKER},                               \
	[EV_BOOT_DEADLINE] = {P(PHASE_FAILED), ACT_ABANDON_WORKER | ACT_PROCEED}

static const struct tr table[PHASE_COUNT][EV_COUNT] = {
        [PHASE_STARTING] =
                {
                        [EV_START] = {P(PHASE_METADATA), ACT_RUN_STEP | ACT_ARM_BOOT_DEADLINE},
                        [EV_SIGTERM] = {TO_EXIT, 0},
                        [EV_DRAIN_REQUEST] = {TO_EXIT, 0},
                },
        [PHASE_METADATA] =
                {
                        BOOT_ROW,
                        /* boot_deadline counts from InService for a warm-pool instance. The
                         * credentials are for the launch hook. */
                        [EV_WARM] = {P(PHASE_CREDENTIALS), ACT_RUN_STEP | ACT_DISARM_BOOT_DEADLINE},
                        /* Never a second agent on one instance: the exit path at once. */
                        [EV_USED] = {TO_EXIT, 0},
                },
        [PHASE_CREDENTIALS] = {BOOT_ROW},
        [PHASE_LAUNCH_HOOK] = {BOOT_ROW},
        [PHASE_TOKEN] = {BOOT_ROW},
        [PHASE_PACKAGES] = {BOOT_ROW},
        [PHASE_AGENT_INSTALL] = {BOOT_ROW},
        [PHASE_AGENT_CONFIG] = {BOOT_ROW},
        [PHASE_WARM_WAIT] =
                {
                        [EV_IN_SERVICE] = {P(PHASE_CREDENTIALS),
                                           ACT_RUN_STEP | ACT_ARM_BOOT_DEADLINE},
                        [EV_STEP_FAILED] = {P(PHASE_FAILED), ACT_PROCEED},
                        /* The ASG stops a warmed instance with a plain shutdown: not our ending. */
                        [EV_SIGTERM] = {TO_STOP, ACT_ABANDON_WORKER},
                        [EV_DRAIN_REQUEST] = {TO_EXIT, ACT_ABANDON_WORKER},
                        [EV_NOTICE_AWS_TERMINATING] = {TO_EXIT, ACT_ABANDON_WORKER},
                },
        [PHASE_RUNNING] =
                {
                        [EV_AGENT_EXIT] = {TO_EXIT, 0},
                        [EV_SIGTERM] = {P(PHASE_DRAINING), ACT_TERM_AGENT | ACT_ARM_DRAIN},
                        [EV_DRAIN_REQUEST] = {P(PHASE_DRAINING), ACT_TERM_AGENT | ACT_ARM_DRAIN},
                        [EV_NOTICE_AWS_TERMINATING] = {P(PHASE_DRAINING),
                                                       ACT_TERM_AGENT | ACT_ARM_DRAIN},
                        [EV_RUN_WATCHDOG] = {TO_SAME, ACT_KILL_AGENT},
                        /* The agent could not be started (fork failed). */
                        [EV_STEP_FAILED] = {P(PHASE_FAILED), ACT_PROCEED},
                },
        [PHASE_DRAINING] =
                {
                        [EV_AGENT_EXIT] = {TO_EXIT, 0},
                        /* A second TERM ends the agent's own drain (circleci.md §2.2). */
                        [EV_SIGTERM] = {TO_SAME, ACT_TERM_AGENT},
                        [EV_DRAIN_REQUEST] = {TO_SAME, 0},
                        [EV_NOTICE_AWS_TERMINATING] = {TO_SAME, 0},
                        [EV_DRAIN_TIMEOUT] = {TO_SAME, ACT_KILL_AGENT},
                        [EV_RUN_WATCHDOG] = {TO_SAME, ACT_KILL_AGENT},
                },
        [PHASE_FAILED] =
                {
                        [EV_PROCEED] = {TO_EXIT, 0},
                },
        [PHASE_LEAVING_ASG] =
                {
                        [EV_LEFT_ASG] = {P(PHASE_POWERING_OFF), ACT_RUN_STEP},
                },
        [PHASE_POWERING_OFF] =
                {
                        [EV_STEP_OK] = {TO_SAME, ACT_QUIT},
                        [EV_STEP_FAILED] = {TO_SAME, ACT_QUIT},
                },
};

struct machine_step machine_exit_path(unsigned ctx)
{
	struct machine_step s = {.handled = true};

	if (ctx & MC_NO_POWEROFF) {
		s.next = PHASE_EXITED;
		s.actions = ACT_QUIT;
	} else if ((ctx & (MC_AWS_ENDING | MC_NO_LEAVE)) ||
	           (ctx & (MC_WARM | MC_HOOK)) == MC_WARM) {
		/* In the pool without a hook there is nothing to leave by: AWS refuses to terminate
		 * pool instances through the group. */
		s.next = PHASE_POWERING_OFF;
		s.actions = ACT_RUN_STEP;
	} else {
		s.next = PHASE_LEAVING_ASG;
		s.actions = ACT_RUN_STEP;
	}
	return s;
}

/* The boot order. In service: metadata, credentials, [launch-hook], token, packages,
 * agent-install, agent-config, running. In the warm pool: metadata, credentials, packages,
 * agent-install, [launch-hook CONTINUE], warm-wait; an instance that ran an agent before goes
 * metadata, credentials, [launch-hook ABANDON] and exits. Packages and agent-install skip
 * themselves when state_dir records them done for these inputs. */
static enum phase boot_next(enum phase cur, unsigned ctx)
{
	bool warm = ctx & MC_WARM, hook = ctx & MC_HOOK, used = ctx & MC_USED;

	switch (cur) {
	case PHASE_METADATA:
		return PHASE_CREDENTIALS;
	case PHASE_CREDENTIALS:
		if (warm && used)
			return hook ? PHASE_LAUNCH_HOOK : PHASE_EXITED;
		if (warm)
			return PHASE_PACKAGES;
		return hook ? PHASE_LAUNCH_HOOK : PHASE_TOKEN;
	case PHASE_LAUNCH_HOOK:
		if (warm)
			return used ? PHASE_EXITED : PHASE_WARM_WAIT;
		return PHASE_TOKEN;
	case PHASE_TOKEN:
		return PHASE_PACKAGES;
	case PHASE_PACKAGES:
		return PHASE_AGENT_INSTALL;
	case PHASE_AGENT_INSTALL:
		if (warm)
			return hook ? PHASE_LAUNCH_HOOK : PHASE_WARM_WAIT;
		return PHASE_AGENT_CONFIG;
	case PHASE_AGENT_CONFIG:
		return PHASE_RUNNING;
	default:
		return PHASE_FAILED;
	}
}

static unsigned enter_actions(enum phase p)
{
	switch (p) {
	case PHASE_RUNNING:
		return ACT_START_AGENT | ACT_DISARM_BOOT_DEADLINE;
	case PHASE_WARM_WAIT:
		return 0;
	case PHASE_EXITED:
		/* A used instance in the pool, its hook abandoned: AWS terminates it. */
		return ACT_QUIT | ACT_QUIET;
	case PHASE_FAILED:
		return ACT_PROCEED;
	default:
		return ACT_RUN_STEP;
	}
}

struct machine_step machine_next(enum phase cur, enum machine_event ev, unsigned ctx)
{
	struct machine_step s = {.next = cur, .actions = 0, .handled = false};
	struct machine_step e;
	struct tr t;

	if ((unsigned)cur >= PHASE_COUNT || (unsigned)ev >= EV_COUNT)
		return s;
	t = table[cur][ev];
	if (t.to == TO_IGNORE)
		return s;
	/* The notice is the fact itself, whatever the caller's context says yet. */
	if (ev == EV_NOTICE_AWS_TERMINATING)
		ctx |= MC_AWS_ENDING;
	s.handled = true;
	s.actions = t.act;
	switch (t.to) {
	case TO_SAME:
		break;
	case TO_BOOT_NEXT:
		s.next = boot_next(cur, ctx);
		s.actions |= enter_actions(s.next);
		break;
	case TO_STOP:
		/* In the pool a stop is AWS stopping the instance (after the hook, or its heartbeat
		 * timeout): not an ending of ours. */
		if (ctx & MC_WARM) {
			s.next = PHASE_EXITED;
			s.actions |= ACT_QUIT | ACT_QUIET;
			break;
		}
		/* fall through */
	case TO_EXIT:
		e = machine_exit_path(ctx);
		s.next = e.next;
		s.actions |= e.actions;
		break;
	default:
		s.next = (enum phase)(t.to - TO_PHASE);
		break;
	}
	return s;
}

const char *machine_event_name(enum machine_event ev)
{
	static const char *const names[EV_COUNT] = {
	        [EV_START] = "start",
	        [EV_STEP_OK] = "step-ok",
	        [EV_STEP_FAILED] = "step-failed",
	        [EV_WARM] = "warm",
	        [EV_USED] = "used",
	        [EV_IN_SERVICE] = "in-service",
	        [EV_AGENT_EXIT] = "agent-exit",
	        [EV_SIGTERM] = "sigterm",
	        [EV_DRAIN_REQUEST] = "drain-request",
	        [EV_NOTICE_AWS_TERMINATING] = "aws-terminating",
	        [EV_BOOT_DEADLINE] = "boot-deadline",
	        [EV_DRAIN_TIMEOUT] = "drain-timeout",
	        [EV_RUN_WATCHDOG] = "run-watchdog",
	        [EV_LEFT_ASG] = "left-asg",
	        [EV_PROCEED] = "proceed",
	};

	if ((unsigned)ev >= EV_COUNT || !names[ev])
		return "unknown";
	return names[ev];
}
