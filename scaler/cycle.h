/* One scaling cycle for every pool at once, on one curl multi handle inside the scaler's epoll
 * loop:
 *   fetch:  Runner API unclaimed + running per pool, DescribeAutoScalingGroups per region in
 *           batches of 50 — all concurrent, at most CYCLE_MAX_INFLIGHT at a time over reused
 *           connections;
 *   decide: policy_decide() per pool;
 *   write:  SetDesiredCapacity(HonorCooldown=false) where the value changes, concurrently,
 *           each one checked against the election deadline right before it is sent; beside
 *           them, once per pool, the runner list of a class that shows no work (to warn when
 *           the class looks unknown);
 *   report: one decision line per pool, per-pool backoff with full jitter (Retry-After wins).
 * Every request of a phase ends by the phase deadline (request_timeout after the phase began,
 * or the caller's hard deadline), so a cycle is bounded whatever the upstreams do. */
#ifndef RUNNERD_CYCLE_H
#define RUNNERD_CYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "aws.h"
#include "buf.h"
#include "election.h"
#include "evloop.h"
#include "http.h"
#include "metrics.h"
#include "policy.h"
#include "runner_api.h"
#include "scaler_config.h"

#define CYCLE_MAX_INFLIGHT   128
#define CYCLE_DESCRIBE_BATCH 50
#define CYCLE_ERR_MAX        192

enum write_result {
	WRITE_NONE,
	WRITE_OK,
	WRITE_FAILED,
	WRITE_FENCED, /* not the leader any more when it was about to go out */
	WRITE_DRY,
};

struct pool_state {
	const struct pool_section *cfg; /* into scaler.cfg */
	const char *region;             /* cfg->region or the default region */
	/* kept across cycles and reloads */
	unsigned failures;
	uint64_t next_try; /* monotonic ms; 0 = due */
	bool listed;       /* the class check was done (or was not needed) */
	uint64_t holds;
	uint64_t api_errors[API_ERR_KINDS];
	/* this cycle */
	bool due;
	bool have_unclaimed, have_running, asg_ok, failed, auth_failed;
	int64_t unclaimed, running, asg_desired, asg_min, asg_max;
	long retry_after_s;
	char err[CYCLE_ERR_MAX];
	struct policy_output decision;
	enum write_result write;
	/* the last finished cycle's outcome, for metrics */
	enum policy_action final_action;
	char final_reason[CYCLE_ERR_MAX + 160];
	struct metrics_pool m;
};

enum xfer_kind {
	XFER_UNCLAIMED,
	XFER_RUNNING,
	XFER_RUNNERS,
	XFER_DESCRIBE,
	XFER_SET,
};

struct job {
	uint32_t kind;
	uint32_t index; /* pool, or chunk for XFER_DESCRIBE */
};

struct chunk {
	const char *region;
	size_t pools[CYCLE_DESCRIBE_BATCH];
	size_t n;
	char next_token[2048];
	unsigned pages;
};

struct scaler;
struct curl_sock;

struct slot {
	struct scaler *s;
	bool busy, fenced;
	CURL *h;
	struct curl_slist *hdrs;
	struct http_response resp;
	struct buf body;
	struct job job;
};

enum cycle_phase {
	PHASE_IDLE,
	PHASE_FETCH,
	PHASE_WRITE,
};

struct scaler {
	/* set by the caller */
	struct scaler_config cfg; /* owned */
	bool dry_run;
	int log_format;         /* enum scaler_log_format */
	struct aws_ctx *aws;    /* credentials for signing; not owned */
	struct runner_api *api; /* base URL and token; not owned */
	const struct election *election;
	char default_region[64];
	uint64_t hard_deadline;  /* monotonic ms, 0 = none (--once sets it) */
	char token_problem[160]; /* non-empty: no usable token, counts fail with this */
	char creds_problem[160]; /* non-empty: no AWS credentials, ASG reads fail */
	/* Where decision lines and warnings go (the daemon logs them); NULL = nowhere. */
	void (*report)(int priority, const char *line);

	/* state */
	struct pool_state *pools;
	size_t npools;
	int epfd;
	CURLM *multi;
	struct ev_source timer;
	struct curl_sock *graveyard; /* removed sockets, freed after the epoll batch */
	struct slot slots[CYCLE_MAX_INFLIGHT];
	size_t inflight;
	struct job *queue;
	size_t qhead, qlen, qcap;
	struct chunk *chunks;
	size_t nchunks;
	enum cycle_phase phase;
	uint64_t cycle_start, phase_deadline;
	/* results, read by the caller once finished is set */
	bool finished;
	bool token_rejected; /* the Runner API said 401/403 this cycle */
	size_t held;
	double last_duration_s;
	uint64_t cycles;
};

/* epfd: the loop's epoll; the multi's sockets and timer register there. 0 or -errno. */
int scaler_init(struct scaler *s, int epfd);
void scaler_free(struct scaler *s);
/* Take ownership of cfg (also on error). Pools keep their state when name, resource class,
 * ASG and region are unchanged. Only while idle. 0 or -errno. */
int scaler_apply_config(struct scaler *s, struct scaler_config *cfg);
/* Start a cycle (no-op while one runs: -EBUSY). */
int scaler_cycle_start(struct scaler *s, uint64_t now_mono);
bool scaler_busy(const struct scaler *s);
/* Free what the last epoll batch retired; call after dispatching each batch. */
void scaler_reap(struct scaler *s);
/* Metrics for every pool, valid until the next cycle or reload; caller frees the array. */
int scaler_metrics(const struct scaler *s, bool leader, struct metrics_snapshot *snap);

/* ---- pure helpers, unit-tested ---- */

/* A failed call's kind: rc from http_finish (< 0: transport), else the HTTP status. For AWS,
 * code is the error code (or NULL). */
enum api_error_kind cycle_classify(int rc, long status, const char *aws_code);
/* Backoff after the failures-th consecutive failed cycle (failures >= 1). */
uint64_t cycle_backoff_ms(unsigned failures, uint64_t interval_ms, long retry_after_s,
                          uint32_t rnd);

struct decision_line {
	const char *pool, *resource_class;
	int64_t unclaimed, running, current, desired; /* < 0: unknown */
	const char *action, *reason;
};
/* The decision line in text ("pool=... action=set reason=\"...\"") or JSON. 0 or -ENOSPC. */
int cycle_format_decision(const struct decision_line *d, int format, char *out, size_t n);

/* Group pools into DescribeAutoScalingGroups batches: same region, at most 50 each, in pool
 * order. regions[i] is pool i's region; take[i] false skips it. *out (caller frees). */
int cycle_plan_chunks(const char *const *regions, const bool *take, size_t n, struct chunk **out,
                      size_t *nout);

/* The Auto Scaling form bodies this cycle sends (Action, Version, ...): 0 or -errno. */
int cycle_describe_form(const char *const *names, size_t n, const char *next_token,
                        struct buf *out);
int cycle_set_form(const char *asg, int64_t desired, struct buf *out);

#endif
