/* runner-scaler simulate: the warm pool of one Auto Scaling group, as AWS keeps it with
 * runnerd's settings (DESIGN.md, [pool NAME] warm_pool = N; notes/warm-pools.md): PutWarmPool
 * MinSize = MaxGroupPreparedCapacity = N, PoolState Stopped, ReuseOnScaleIn false.
 *
 *   - N instances, each either prepared and stopped (Warmed:Stopped) or a refill warming up
 *     (Warmed:Pending: it boots, does the bake work, completes the LAUNCHING hook and is
 *     stopped). The pool starts full: N stopped.
 *   - A scale-out takes a stopped instance first (it resumes into the group); with none stopped
 *     the group launches cold. A refill still warming is not taken (assumed: AWS documents no
 *     hand-over from Warmed:Pending, so the model does not count on one).
 *   - Every instance taken is replaced at once by a refill launched into the pool: the pool
 *     stays at N, stopped + warming.
 *   - Instances leave the group for good (ReuseOnScaleIn false): nothing comes back to the pool.
 *
 * The bookkeeping here is the counts and the accounting only; which instance is which, the
 * draws of resume and warm-up times and the events are the model's (sim_model.c). Costs kept
 * apart: a stopped instance pays for its EBS volume only (stopped_ms, integrated over time);
 * a refill is a running instance from its launch until it is stopped (running_ms), instance
 * time spent on no job. Pure: no clock (now is passed in, never decreasing), no I/O. */
#ifndef RUNNERD_SIM_WARM_H
#define RUNNERD_SIM_WARM_H

#include <stdbool.h>
#include <stdint.h>

struct sim_warm {
	int64_t size;           /* N */
	int64_t stopped;        /* prepared, stopped, ready to be taken */
	int64_t warming;        /* refills launched into the pool, not yet stopped */
	int64_t since_ms;       /* when stopped last changed */
	int64_t stopped_ms;     /* stopped-instance ms (EBS only), up to since_ms */
	int64_t running_ms;     /* refills' running ms, of those stopped (and at finish, all) */
	int64_t warming_sum_ms; /* the launch times of the refills warming, summed */
	uint64_t taken;         /* instances the group took from the pool */
	uint64_t refills;       /* refills launched into the pool */
};

/* A pool of size N (0: no pool), full: N instances stopped since now_ms. */
void sim_warm_init(struct sim_warm *w, int64_t size, int64_t now_ms);

/* The group wants one more instance at now_ms. true: a stopped instance was taken (the caller
 * resumes it) and a refill launched into the pool in its place (the caller schedules its
 * sim_warm_stopped(), with this now_ms as its launch time); false: none is stopped, the caller
 * launches cold. */
bool sim_warm_take(struct sim_warm *w, int64_t now_ms);

/* A refill launched at launched_ms is prepared and stopped at now_ms: its running time is
 * counted, and it is ready to be taken. */
void sim_warm_stopped(struct sim_warm *w, int64_t now_ms, int64_t launched_ms);

/* The run ends at now_ms: stopped-instance time up to now, and the running time of refills
 * still warming (launched, not stopped) up to now. */
void sim_warm_finish(struct sim_warm *w, int64_t now_ms);

#endif
