/* Leader election on one DynamoDB lease item ([election] mode = dynamodb).
 *
 * The holder renews every lease/3. Its right to act ends at a local deadline on the monotonic
 * clock: the moment the winning request was *sent*, plus the lease, minus a skew margin
 * (lease/5, at least 500 ms). Every write checks that deadline just before it goes out, so a
 * leader that was stopped (SIGSTOP, or a VM pause during which CLOCK_MONOTONIC runs on, as it
 * does on EC2) and continues writes nothing once its lease would have ended, whatever it
 * believed before. A suspend that stops CLOCK_MONOTONIC is not covered: scalers run on servers
 * that do not suspend. Non-leaders only contend. */
#ifndef RUNNERD_ELECTION_H
#define RUNNERD_ELECTION_H

#include <stdbool.h>
#include <stdint.h>

#include "aws.h"
#include "aws_services.h"

#define ELECTION_OWNER_MAX 256

enum election_event {
	ELECTION_NONE,   /* nothing changed */
	ELECTION_GAINED, /* we hold the lease now */
	ELECTION_LOST,   /* we held it and no longer may act */
};

struct election {
	bool enabled; /* false: mode = none; may_act is always true */
	/* election is on but could not be set up (a reload): never act, never contend, until a
	 * good reload. Failing open (acting unelected) is what this prevents. */
	bool fenced;
	char table[256];
	char lease_id[256];
	char owner[ELECTION_OWNER_MAX];
	char region[64];
	uint64_t lease_ms, skew_ms;
	long call_timeout_ms;

	bool leader; /* we won the last acquire/renew and have not lost since */
	struct ddb_lease lease;
	uint64_t valid_until; /* monotonic ms: act only before this */
	uint64_t next_due;    /* monotonic ms of the next acquire or renew */
	unsigned failures;    /* consecutive call errors (not losses) */
	struct aws_error last_error;
	int last_rc;
};

/* Pure: the timeout of one lease call: request_timeout, at most a third of the lease. */
long election_call_timeout_ms(uint64_t lease_ms, long request_timeout_ms);
/* Pure: the skew margin for a lease. */
uint64_t election_skew_ms(uint64_t lease_ms);

void election_init_disabled(struct election *e);
/* Election on, but unusable: may_act is false and nothing is sent, until election_init. */
void election_init_fenced(struct election *e);
/* table, lease_id, owner, region are copied; -ENAMETOOLONG / -EINVAL. */
int election_init(struct election *e, const char *table, const char *lease_id, const char *owner,
                  const char *region, uint64_t lease_ms, long request_timeout_ms);

/* May this process write now? Checked before every write. */
bool election_may_act(const struct election *e, uint64_t now_mono);

/* Pure state transition after an acquire/renew sent at sent_mono returned rc (0 won, 1 lost,
 * < 0 error) and the clock now reads now_mono. Used by election_tick; unit-tested. */
enum election_event election_apply(struct election *e, int rc, uint64_t sent_mono,
                                   uint64_t now_mono);
/* Expire leadership whose local deadline passed (no call). */
enum election_event election_expire(struct election *e, uint64_t now_mono);

/* If due, renew (leader) or acquire (everyone else); blocking: each DynamoDB call is bounded
 * by call_timeout_ms (one attempt) and the whole tick by twice that, counted from the tick's
 * start (and never past a cap already on ctx). ctx is used for the calls; its timeout,
 * attempts, call budget and cap are set for the tick and restored. */
enum election_event election_tick(struct election *e, struct aws_ctx *ctx, uint64_t now_mono);
/* Give the lease up (at exit) so another scaler takes over at once; best effort. */
void election_release(struct election *e, struct aws_ctx *ctx);

/* The owner id: "INSTANCE_OR_HOST:PID". id may be NULL/empty (then the hostname is used). */
int election_owner_id(const char *instance_id, char *out, size_t n);

#endif
