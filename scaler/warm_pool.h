/* runner-scaler's warm pools: [pool NAME] warm_pool = N keeps the group's warm pool at N
 * prepared, stopped instances that are never reused on scale-in (DESIGN.md; warm-pools.md).
 * Each cycle reads DescribeWarmPool beside the group's describe and, in the write phase, sends
 * PutWarmPool only when what it read differs, only as the leader, fenced at the last moment
 * like SetDesiredCapacity. None of it touches the scaling decision: the pool's instances are
 * outside the group's desired capacity, and a failed DescribeWarmPool (or PutWarmPool) is
 * reported, counted and retried next cycle, never a hold of the pool.
 *
 * cycle.c calls the hooks below at its phases; the decision and the lines are pure functions
 * (unit-tested). */
#ifndef RUNNERD_WARM_POOL_H
#define RUNNERD_WARM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws_warm.h"
#include "buf.h"

#define WARM_POOL_MAX_PAGES 20 /* 50 instances a page: 1,000 pool instances */
#define WARM_POOL_ERR_MAX   192

enum warm_pool_plan {
	WARM_POOL_UNKNOWN,  /* not read (failed, or not due): nothing to decide */
	WARM_POOL_KEEP,     /* it is the pool wanted */
	WARM_POOL_PUT,      /* PutWarmPool */
	WARM_POOL_DELETING, /* PendingDelete: PutWarmPool would be refused; wait */
};

enum warm_pool_write {
	WARM_WRITE_NONE,
	WARM_WRITE_OK,
	WARM_WRITE_FAILED,
	WARM_WRITE_FENCED, /* not the leader (any more) */
	WARM_WRITE_DRY,
};

struct warm_pool_state {
	/* this cycle */
	bool asked;  /* DescribeWarmPool queued */
	bool read;   /* every page of it read */
	bool failed; /* it failed */
	unsigned pages;
	struct asg_warm_pool seen;
	enum warm_pool_plan plan;
	enum warm_pool_write write;
	char why[128]; /* what differs (plan PUT) */
	char err[WARM_POOL_ERR_MAX];
	/* kept across cycles, for metrics */
	bool have_size;
	int64_t size; /* pool instances at the last read (those terminating not counted) */
	uint64_t writes;
};

/* Pure: what to do with a pool that should hold want instances (< 0: not managed) after a
 * read (read false: failed or not done). why gets the difference for PUT. */
enum warm_pool_plan warm_pool_decide(int64_t want, bool read, const struct asg_warm_pool *seen,
                                     char *why, size_t n);

/* Pure: the line runner-scaler logs for a pool's warm pool this cycle, text or JSON
 * (log_format as scaler.conf's); "" (0) when there is nothing to say (read, and as wanted).
 * 0, or -ENOSPC. */
int warm_pool_format(const char *pool, int64_t want, const struct warm_pool_state *w, bool json,
                     char *out, size_t n);

/* ---- the cycle's hooks (cycle.c) ---- */

struct scaler;
struct slot;
struct job;

/* A new cycle: this cycle's fields cleared. */
void warm_pool_reset(struct warm_pool_state *w);
/* The body of a warm-pool transfer of job's pool (XFER_WARM: a page of DescribeWarmPool;
 * XFER_WARM_PUT: PutWarmPool). 0 or -errno. */
int warm_pool_form(const struct scaler *s, const struct job *job, struct buf *body);
/* A DescribeWarmPool page came back (rc as http_finish). true: read the next page. */
bool warm_pool_on_describe(struct scaler *s, struct slot *sl, int rc);
void warm_pool_on_put(struct scaler *s, struct slot *sl, int rc);
/* A warm-pool transfer that never got a response. */
void warm_pool_job_failed(struct scaler *s, const struct job *job, int rc);
/* The write phase: decide for pool i; true when PutWarmPool should go out (the leader, not a
 * dry run: those are decided here and reported). */
bool warm_pool_begin_write(struct scaler *s, size_t i, uint64_t now);
/* The cycle ended: report the pool's line, fill its metrics. */
void warm_pool_finalize(struct scaler *s, size_t i);

#endif
