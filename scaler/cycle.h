/* One scaling cycle for every pool at once, on one curl multi handle inside the scaler's epoll
 * loop:
 *   fetch:  Runner API unclaimed + running per pool, DescribeAutoScalingGroups per region in
 *           batches of up to 50 — all concurrent, at most CYCLE_MAX_INFLIGHT at a time over
 *           reused connections. Every group in an answer lists all its instances, so each
 *           describe's response limit is sized to what its groups may hold (learned from the
 *           last read), batches are cut to fit the ceiling, and an answer that is too large
 *           anyway splits its batch in two and is retried within the phase (one group alone
 *           finally at the ceiling); describes in flight share a memory budget;
 *           A group that holds an instance whose runner was not listed yet (launches.h) has
 *           its class's runner list read right behind its describe, in the same phase, so
 *           that the decision knows which launches failed;
 *   decide: policy_decide() per pool, with its launch back-off;
 *   write:  SetDesiredCapacity(HonorCooldown=false) where the value changes, concurrently,
 *           each one checked against the election deadline right before it is sent; beside
 *           them, once per pool, the runner list of a class that shows no work (to warn when
 *           the class looks unknown), unless this cycle read it already;
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
#include "aws_services.h"
#include "buf.h"
#include "election.h"
#include "evloop.h"
#include "http.h"
#include "launches.h"
#include "metrics.h"
#include "policy.h"
#include "runner_api.h"
#include "scaler_config.h"
#include "warm_pool.h"

#define CYCLE_MAX_INFLIGHT   128
#define CYCLE_DESCRIBE_BATCH 50
#define CYCLE_ERR_MAX        192
/* After a SuspendProcesses refused (or failed otherwise for good), the next try: an hour, a
 * missing permission is not fixed in seconds, and the scaling does not wait on it. A passing
 * failure is tried again from the next cycle and said at most once in this time. */
#define CYCLE_AZ_RETRY_MS (60 * 60 * 1000ULL)
/* A batch's groups may add up to this many bytes of answer (ASG_DESCRIBE_MAX_BYTES). */
#define CYCLE_BATCH_BYTES ASG_DESCRIBE_MAX_BYTES
/* The response limits of the describes in flight add up to at most this (one always runs). */
#define CYCLE_DESCRIBE_BUDGET ((size_t)64 * 1024 * 1024)
/* A too-large describe is retried smaller only with this much of the phase left. */
#define CYCLE_RETRY_MIN_LEFT_MS 500
/* The runner list of a class (GET /api/v3/runner): a runner as the Runner API lists it takes
 * about 300 bytes; room for 1 KiB each, for the runners of what the group may hold four times
 * over (the API keeps a runner listed for a while after it disconnected), on top of 1 MiB
 * (about 3,000 runners); at most 16 MiB. */
#define CYCLE_RUNNER_LIST_BASE_BYTES ((size_t)1024 * 1024)
#define CYCLE_RUNNER_BYTES           ((size_t)1024)
#define CYCLE_RUNNER_LIST_MAX_BYTES  ((size_t)16 * 1024 * 1024)
/* The response limits of the runner lists in flight add up to at most this (one always runs). */
#define CYCLE_RUNNER_LIST_BUDGET ((size_t)64 * 1024 * 1024)

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
	/* what the group listed at its last read (-1: never read), and its desired capacity then
	 * or as this scaler wrote it since: they size the next describe */
	int64_t seen_instances, seen_desired;
	/* launch failures (launches.h): the instances seen, whether their runner was listed, the
	 * back-off; launch_failures_total survives a reload that turns detection off */
	struct launch_tracker launches;
	uint64_t launch_failures_total;
	bool list_too_large; /* said once until a runner list fits again */
	/* zone rebalancing: suspended as the last describe showed (or as this scaler made it);
	 * after a failed SuspendProcesses, not before az_next_try; a lasting failure said once
	 * (az_warned), passing ones (az_failures in a row) at most hourly (az_said_ms) */
	bool az_rebalance_suspended, az_warned;
	uint64_t az_next_try;
	unsigned az_failures;
	uint64_t az_said_ms; /* monotonic ms of the last warning of a passing failure; 0 never */
	/* this cycle */
	bool due;
	bool have_unclaimed, have_running, asg_ok, failed, auth_failed;
	int64_t unclaimed, running, asg_desired, asg_min, asg_max;
	bool asg_protect_new; /* the describe: NewInstancesProtectedFromScaleIn */
	long retry_after_s;
	bool observed;      /* launches_observe() ran on this cycle's describe */
	bool tracked;       /* and succeeded: the tracker shows this cycle's group */
	bool have_list;     /* the runner list was read this cycle (for launches) */
	long list_status;   /* its HTTP status (200, 404) */
	int64_t list_count; /* and how many runners it listed */
	char err[CYCLE_ERR_MAX];
	struct policy_output decision;
	enum write_result write;
	/* the last finished cycle's outcome, for metrics */
	enum policy_action final_action;
	char final_reason[CYCLE_ERR_MAX + 224];
	struct metrics_pool m;
	struct warm_pool_state warm; /* [pool NAME] warm_pool (warm_pool.h) */
};

enum xfer_kind {
	XFER_UNCLAIMED,
	XFER_RUNNING,
	XFER_RUNNERS,  /* the class check */
	XFER_LAUNCHES, /* the runner list behind a describe, for launch failures */
	XFER_DESCRIBE,
	XFER_SET,
	XFER_SUSPEND,  /* SuspendProcesses AZRebalance */
	XFER_WARM,     /* DescribeWarmPool (warm_pool.h) */
	XFER_WARM_PUT, /* PutWarmPool */
};

struct job {
	uint32_t kind;
	uint32_t index; /* pool, or chunk for XFER_DESCRIBE */
};

struct chunk {
	const char *region;
	size_t pools[CYCLE_DESCRIBE_BATCH];
	size_t n;
	size_t cap; /* response limit of its describes, bytes */
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
	size_t reserved;      /* a describe's share of CYCLE_DESCRIBE_BUDGET while it runs */
	size_t list_reserved; /* a runner list's share of CYCLE_RUNNER_LIST_BUDGET */
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
	size_t nchunks, chunks_cap;
	/* per pool this cycle: what its group may take in a describe answer (bytes) */
	size_t *pool_bytes;
	size_t describe_reserved; /* response limits of the describes in flight */
	uint32_t *deferred;       /* describes (chunk indices) waiting for budget; chunks_cap */
	size_t ndeferred;
	size_t list_reserved;      /* response limits of the runner lists in flight */
	struct job *lists_waiting; /* runner lists waiting for budget; npools entries */
	size_t nlists_waiting;
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
enum suspend_retry {
	SUSPEND_RETRY_SOON,       /* throttling, 5xx, no answer: from the next cycle, backing off */
	SUSPEND_RETRY_PERMISSION, /* AccessDenied, UnauthorizedOperation: an hour; grant it */
	SUSPEND_RETRY_LATER,      /* any other error: an hour, the error named */
};
/* When a failed SuspendProcesses is tried again: rc from http_finish (< 0: no answer), else
 * the HTTP status and the AWS error code (or NULL). */
enum suspend_retry cycle_suspend_retry(int rc, long status, const char *aws_code);

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

/* How many instances a pool's group may list at its next read: the most of what it listed and
 * its desired capacity at the last read (or what this scaler wrote since), plus a quarter and
 * 16 for instances in transit (Terminating beside their replacements, rebalancing above
 * MaxSize). Before the first read (both < 0) the pool's max stands for them. */
int64_t cycle_expected_instances(int64_t pool_max, int64_t seen_instances, int64_t seen_desired);

/* The response limit of a class's runner list when its group may hold expected instances
 * (cycle_expected_instances): CYCLE_RUNNER_LIST_BASE_BYTES + 4 x CYCLE_RUNNER_BYTES each, at
 * most CYCLE_RUNNER_LIST_MAX_BYTES. */
size_t cycle_runner_list_bytes(int64_t expected_instances);

/* Group pools into DescribeAutoScalingGroups batches, in pool order: same region, at most 50
 * names, and their bytes[i] (what pool i's group may take in an answer; NULL: the least a
 * group takes) adding up to at most CYCLE_BATCH_BYTES, or one pool alone. regions[i] is pool
 * i's region; take[i] false skips it. Each batch's cap is cycle_chunk_cap. *out (caller frees)
 * has *cap_out entries allocated, *nout used. */
int cycle_plan_chunks(const char *const *regions, const size_t *bytes, const bool *take, size_t n,
                      struct chunk **out, size_t *nout, size_t *cap_out);
/* The response limit of a batch: ASG_DESCRIBE_BASE_BYTES plus its pools' bytes (NULL: the
 * least), at most ASG_DESCRIBE_MAX_BYTES. */
size_t cycle_chunk_cap(const struct chunk *c, const size_t *bytes);

enum describe_retry {
	DESCRIBE_GIVE_UP, /* the batch's pools hold */
	DESCRIBE_SPLIT,   /* each half of the batch its own describe */
	DESCRIBE_ALONE,   /* the one group again at ASG_DESCRIBE_MAX_BYTES */
};
/* A describe of npools groups with response limit cap came back too large (over the limit, or
 * over the XML node limit), with left_ms of the phase left: two or more groups split; one
 * group below the ceiling goes once more at the ceiling; otherwise, or with less than
 * CYCLE_RETRY_MIN_LEFT_MS left, give up. */
enum describe_retry cycle_describe_retry(size_t npools, size_t cap, uint64_t left_ms);
/* c's pools in two halves, the first ceil(n/2) in *a and the rest in *b, each from its first
 * page with its own cap (cycle_chunk_cap). c may be a or b. -EINVAL when c has fewer than 2. */
int cycle_split_chunk(const struct chunk *c, const size_t *bytes, struct chunk *a, struct chunk *b);

/* The Auto Scaling form bodies this cycle sends (Action, Version, ...): 0 or -errno. */
int cycle_describe_form(const char *const *names, size_t n, const char *next_token,
                        struct buf *out);
int cycle_set_form(const char *asg, int64_t desired, struct buf *out);
/* The SuspendProcesses form that suspends AZRebalance on asg. 0, -EINVAL, -ENOMEM/-EFBIG. */
int cycle_suspend_form(const char *asg, struct buf *out);

#endif
