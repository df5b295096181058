/* runnerd's observable state: the phases of the boot flow and exit path, and what runnerctl
 * shows. Shared by the supervisor (writer) and the control socket (reader, same thread). */
#ifndef RUNNERD_STATUS_H
#define RUNNERD_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

enum phase {
	PHASE_STARTING,
	PHASE_METADATA,
	PHASE_CREDENTIALS,
	PHASE_LAUNCH_HOOK, /* CompleteLifecycleAction of [lifecycle] launch_hook */
	PHASE_TOKEN,
	PHASE_PACKAGES,
	PHASE_AGENT_INSTALL,
	PHASE_WARM_WAIT,
	PHASE_AGENT_CONFIG,
	PHASE_RUNNING,
	PHASE_DRAINING,
	PHASE_LEAVING_ASG,
	PHASE_POWERING_OFF,
	PHASE_FAILED,
	PHASE_EXITED, /* on_exit = exit: the exit path ran without power-off */
	PHASE_COUNT,
};

/* "metadata", "agent-install", "warm-wait", "leaving-asg", ... as in DESIGN.md. */
const char *phase_name(enum phase p);

/* Warm pools: which path this boot took, and the bake work an earlier boot did in the pool. */
enum warm_path {
	WARM_NONE,      /* a cold boot (or no warm pool at all) */
	WARM_PREPARE,   /* this boot is in the pool: bake work, then warm-wait */
	WARM_SAME_BOOT, /* in the pool, then InService without a stop (Warmed:Running) */
	WARM_RESUMED,   /* in service after an earlier boot prepared in the pool */
	WARM_USED,      /* an agent already ran on this instance: no second one */
};

struct warm_status {
	enum warm_path path;
	uint64_t prepared_ms; /* epoch ms the bake work was done in the pool; 0: not */
	uint64_t packages_ms; /* how long packages and agent-install took there */
	uint64_t agent_install_ms;
	char hook[16]; /* the last launch-hook completion: CONTINUE, ABANDON, no-action,
	                  not-in-group, failed; "" when none */
};

const char *warm_path_name(enum warm_path p);

struct runnerd_status {
	enum phase phase;
	uint64_t phase_since_ms;        /* wall clock, epoch ms */
	uint64_t phase_ms[PHASE_COUNT]; /* time spent in each finished phase (0 = not visited) */
	bool phase_visited[PHASE_COUNT];
	uint64_t started_ms; /* runnerd start, epoch ms */
	char instance_id[32];
	char region[32];
	char flavour[32];          /* "circleci-runner" | "launch-agent" */
	char lifecycle_state[40];  /* last target-lifecycle-state seen */
	pid_t agent_pid;           /* 0 when not started */
	uint64_t agent_started_ms; /* epoch ms, 0 when not started */
	int agent_exit_status;     /* -1 while running or never run; else 0..255 or 128+sig */
	char notice[128];     /* "spot: terminate at ...", "target-lifecycle-state: Terminated",
	                         "drain requested", "" */
	char last_error[256]; /* "" = none */
	struct warm_status warm;
};

/* Enter a phase: account time of the previous one. now_ms = wall clock epoch ms. */
void status_enter(struct runnerd_status *st, enum phase p, uint64_t now_ms);
/* Versioned JSON (version 1): {"version":1,"phase":..,"phase_seconds":..,"phases":{name:secs},
 * "instance_id":..,"region":..,"lifecycle_state":..,"notice":..|null,"last_error":..|null,
 * "uptime_seconds":..,"agent":{"flavour":..,"pid":..|null,"started":ISO|null,
 * "uptime_seconds":..|null,"exit_status":..|null},"warm":null|{"path":..,"prepared":ISO|null,
 * "prepare_seconds":..|null,"launch_hook":..|null}}. exit_status is null while the agent runs;
 * warm is null on a cold boot. */
int status_to_json(const struct runnerd_status *st, uint64_t now_ms, struct buf *out);

#endif
