/* Launch failures (DESIGN.md, runner-scaler): an instance that leaves its group without a
 * runner whose name contains its instance id ever having been listed by the Runner API
 * (GET /api/v3/runner?resource-class=RC) is a failed launch; after [pool NAME] launch_failures
 * of them in a row the pool stops raising its desired capacity for a back-off of 1 minute,
 * doubling up to 30; a runner that connects resets the count and ends the back-off.
 *
 * The bookkeeping of one pool, pure (no clock: now is passed in; no I/O), memory bounded:
 *
 *   launches_observe()  after every read of the group: instances listed alive are tracked,
 *                       unconfirmed until their runner is listed; one that is no longer listed,
 *                       or listed Terminating* / Terminated, while unconfirmed has "left" and
 *                       waits for its verdict. Instances first seen already leaving are never
 *                       tracked (no history: nothing counted until seen alive); Detaching /
 *                       Detached ones are forgotten (an operator took them out).
 *   launches_need_list() whether a runner list read is needed: some instance is unconfirmed or
 *                       waits for its verdict.
 *   launches_runner()   for every runner the list names, once the whole answer was read and
 *                       validated (a read that fails judges nothing, either way);
 *   launches_judge()    then: instances whose runner was listed are confirmed (a success: it
 *                       resets the count and ends a back-off); those that left without one are
 *                       failed launches. The list read must have started after the observation
 *                       that saw them leave: the daemon queues it behind the describe.
 *
 * Instances that were never seen InService count like the others: a bad AMI or subnet leaves
 * instances that never get past Pending. In a group without scale-in protection, an instance
 * that leaves after the scaler lowered desired capacity during its life (or just before its
 * first sighting) may be a scale-in victim: it is forgotten, not judged. */
#ifndef RUNNERD_LAUNCHES_H
#define RUNNERD_LAUNCHES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws_services.h"

#define LAUNCH_ID_MAX 20 /* "i-" + up to 17 hex digits + NUL */
/* Instances tracked per pool at most: the largest group a describe reads (about 20,000) and
 * those waiting for a verdict. Beyond it new instances are not tracked (never judged). */
#define LAUNCH_TRACK_MAX        25000
#define LAUNCH_BACKOFF_FIRST_MS ((uint64_t)60 * 1000)
#define LAUNCH_BACKOFF_MAX_MS   ((uint64_t)30 * 60 * 1000)
/* An instance that left and found no readable runner list this long is forgotten unjudged. */
#define LAUNCH_VERDICT_MAX_AGE_MS ((uint64_t)15 * 60 * 1000)
/* Instance ids of failed launches kept for the warning. */
#define LAUNCH_IDS_KEPT 8
/* [pool NAME] launch_failures: default and range (0 turns detection off). */
#define LAUNCH_FAILURES_DEFAULT 3
#define LAUNCH_FAILURES_MAX     100

enum launch_state {
	LAUNCH_UNCONFIRMED, /* listed alive, its runner not listed yet */
	LAUNCH_CONNECTED,   /* its runner has been listed */
	LAUNCH_LEFT,        /* left while unconfirmed: the next list read judges it */
};

struct launch_inst {
	char id[LAUNCH_ID_MAX];
	uint8_t state;       /* enum launch_state */
	bool unprotected;    /* not protected from scale-in at its last sighting */
	bool matched;        /* named by the runner list being read */
	uint64_t first_seen; /* observation number */
	uint64_t left_ms;    /* when its leave was observed */
};

struct launch_tracker {
	struct launch_inst *v; /* sorted by id */
	size_t n, cap;
	uint64_t observations; /* launches_observe calls so far */
	uint64_t observed_ms;  /* when the latest was */
	uint64_t lowered_at; /* observation after which the scaler last lowered desired; 0 never */
	unsigned streak;     /* failed launches in a row */
	unsigned level;      /* back-offs since the last runner connected: the next one's length */
	uint64_t backoff_until; /* monotonic ms; 0: none yet */
	uint64_t failed_total;
	/* instances dropped unjudged (a gap, a scale-in, no verdict), each counted once */
	uint64_t forgotten;
	/* instances the latest read listed alive but not tracked (LAUNCH_TRACK_MAX, or an id it
	 * cannot take): recounted at each read, since nothing remembers which they were */
	size_t untracked_now;
	/* live instances the latest read listed (tracked or not) that are not protected from
	 * scale-in: a lower desired capacity may end any of them, the group picks which */
	size_t unprotected_now;
	/* the latest failures of the streak, oldest first, for the warning */
	char ids[LAUNCH_IDS_KEPT][LAUNCH_ID_MAX];
	size_t nids;
};

/* What one list read decided. */
struct launch_verdict {
	unsigned failed;    /* failed launches judged by this read */
	unsigned connected; /* instances whose runner appeared */
	bool backoff_started, backoff_ended;
	uint64_t backoff_ms; /* the length of the back-off that started */
	char failed_ids[LAUNCH_IDS_KEPT][LAUNCH_ID_MAX]; /* the first of them */
	size_t nfailed_ids;
	char connected_id[LAUNCH_ID_MAX]; /* one of them */
};

void launches_init(struct launch_tracker *t);
/* Forget everything (and free); the tracker stays usable. */
void launches_reset(struct launch_tracker *t);
/* Forget the instances (nothing of them is judged), keep the count and the back-off: after a
 * time without reads (a scaler that was not the leader, or was stopped, saw nothing), like a
 * restart. */
void launches_forget_instances(struct launch_tracker *t);

/* True when s is an instance id: "i-" and 8 or 17 lower-case hex digits. */
bool launches_valid_id(const char *s);

/* One read of the group: its instances as listed. When the previous read is more than
 * max_gap_ms old (0: no limit), what happened in between was not watched: the instances are
 * forgotten first (launches_forget_instances) and 1 is returned. Else 0, or -ENOMEM (nothing
 * changed). */
int launches_observe(struct launch_tracker *t, const struct asg_instance *inst, size_t n,
                     uint64_t now_ms, uint64_t max_gap_ms);
bool launches_need_list(const struct launch_tracker *t);
/* Instances tracked in each state (for tests and messages). */
size_t launches_count(const struct launch_tracker *t, enum launch_state st);
/* The scaler lowered the group's desired capacity after the latest observation. */
void launches_lowered(struct launch_tracker *t);
/* The live instances a launch back-off cannot tell from runners (policy.h, launch_unknown),
 * as of the latest observation: those listed but not tracked (untracked_now: nothing is known
 * of them) and, unless list_read (a runner list was read and judged after that observation),
 * those not confirmed yet, whose runner may have connected since the previous list read. The
 * connected ones are launches_count(t, LAUNCH_CONNECTED). */
size_t launches_unknown(const struct launch_tracker *t, bool list_read);

/* The instance ids a runner name contains: at each "i-", the 8 and, when there are that many,
 * the 17 hex digits that follow. Up to max into ids; returns how many were found. */
size_t launches_ids_in_name(const char *name, char (*ids)[LAUNCH_ID_MAX], size_t max);
/* A runner of the pool's class is listed under this name. */
void launches_runner(struct launch_tracker *t, const char *name);
/* The list read is complete: judge (see above). threshold is launch_failures (>= 1). */
void launches_judge(struct launch_tracker *t, unsigned threshold, uint64_t now_ms,
                    struct launch_verdict *v);

/* The length of the back-off after level earlier ones: 1 min doubling, at most 30 min. */
uint64_t launches_backoff_ms(unsigned level);
/* Milliseconds of back-off left at now (0: none). */
uint64_t launches_backoff_left_ms(const struct launch_tracker *t, uint64_t now_ms);
/* "i-1, i-2 and 3 more": ids[0..n) of total. Always NUL-terminated; truncates. */
void launches_format_ids(const char (*ids)[LAUNCH_ID_MAX], size_t n, uint64_t total, char *out,
                         size_t len);

#endif
