/* runnerd's one worker thread: it runs the blocking steps (network, apt, power-off) one at a
 * time, each on its own boot_ctx, and posts a fixed-size result into a pipe the main loop
 * polls. The main loop owns every decision and the status; the worker owns the token and the
 * AWS credentials. A worker stuck in a step is abandoned (detached; its generation's results
 * ignored) and a fresh one started: a blocked thread is never joined. */
#ifndef RUNNERD_WORKER_H
#define RUNNERD_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "runnerd_config.h"

enum job_kind {
	JOB_METADATA,
	JOB_CREDENTIALS,
	JOB_TOKEN,
	JOB_PACKAGES,
	JOB_AGENT_INSTALL,
	JOB_AGENT_CONFIG,
	JOB_LAUNCH_HOOK, /* CompleteLifecycleAction of [lifecycle] launch_hook */
	JOB_POLL_WARM,   /* warm-wait: target lifecycle state */
	JOB_POLL_NOTICE, /* running: spot instance-action and target lifecycle state */
	JOB_LEAVE_ASG,
	JOB_POWEROFF,
	JOB_COUNT,
};

struct job {
	enum job_kind kind;
	uint64_t deadline_mono_ms; /* 0 = none */
	/* warm pools: state_dir is read and written (the instance has a target lifecycle state) */
	bool stateful;
	bool warm;    /* in the pool: record the bake work once done; leave = ABANDON the hook */
	bool abandon; /* JOB_LAUNCH_HOOK: ABANDON rather than CONTINUE */
};

/* Written with one write() (smaller than PIPE_BUF, so atomic with several writers). */
struct job_result {
	unsigned gen;
	enum job_kind kind;
	int r; /* 0 or -errno */
	char instance_id[32];
	char region[32];
	char lifecycle_state[40];
	bool state_known; /* lifecycle_state was read */
	bool spot;        /* a spot instance-action is pending */
	char spot_action[16];
	long long spot_time;
	int leave_outcome; /* enum leave_outcome */
	unsigned leave_calls;
	/* metadata: state_dir's record for this instance (all false/0 without one) */
	bool used;            /* an agent already ran here */
	bool prepared;        /* the bake work is done for these inputs */
	uint64_t prepared_ms; /* when (epoch ms) */
	uint64_t packages_ms; /* how long packages and agent-install took then */
	uint64_t agent_install_ms;
	bool skipped;     /* packages, agent-install: done before (state_dir), not run again */
	int hook_outcome; /* JOB_LAUNCH_HOOK, JOB_LEAVE_ASG in the pool: enum hook_outcome */
	unsigned hook_calls;
	char err[256];
};

struct worker {
	pthread_t thread;
	int job_fd; /* write end of the job pipe; -1 when no worker */
	unsigned gen;
	unsigned inflight; /* jobs submitted, results not yet seen */
};

/* Start a worker of generation gen that posts results to result_fd. instance_id/region: what is
 * known already (a replacement worker needs them for the exit path). 0 or -errno. */
int worker_start(struct worker *w, unsigned gen, int result_fd, const struct runnerd_config *conf,
                 const char *instance_id, const char *region);
int worker_submit(struct worker *w, const struct job *j);
/* Close the job pipe. join = true: wait for the thread (only when it is idle); false: detach
 * it, it ends after its current step and its results are ignored (stale generation). */
void worker_release(struct worker *w, bool join);

const char *job_kind_name(enum job_kind k);

#endif
