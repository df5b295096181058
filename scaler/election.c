/* DynamoDB lease election; see election.h for the rules. */
#include "election.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define SKEW_MIN_MS  500
#define RETRY_MIN_MS 100

long election_call_timeout_ms(uint64_t lease_ms, long request_timeout_ms)
{
	/* A call may not outlast the renew period: a renew that hangs longer would eat the margin
	 * the next one needs. */
	long t = (long)(lease_ms / 3);

	return request_timeout_ms > 0 && request_timeout_ms < t ? request_timeout_ms : t;
}

uint64_t election_skew_ms(uint64_t lease_ms)
{
	uint64_t s = lease_ms / 5;

	return s < SKEW_MIN_MS ? SKEW_MIN_MS : s;
}

void election_init_disabled(struct election *e)
{
	memset(e, 0, sizeof(*e));
	e->last_error.retry_after_s = -1;
}

int election_init(struct election *e, const char *table, const char *lease_id, const char *owner,
                  const char *region, uint64_t lease_ms, long request_timeout_ms)
{

	election_init_disabled(e);
	if (!table || !lease_id || !owner || !region || !table[0] || !lease_id[0] || !owner[0] ||
	    lease_ms < 2 * SKEW_MIN_MS)
		return -EINVAL;
	if (str_copy(e->table, table, sizeof(e->table)) >= sizeof(e->table) ||
	    str_copy(e->lease_id, lease_id, sizeof(e->lease_id)) >= sizeof(e->lease_id) ||
	    str_copy(e->owner, owner, sizeof(e->owner)) >= sizeof(e->owner) ||
	    str_copy(e->region, region, sizeof(e->region)) >= sizeof(e->region))
		return -ENAMETOOLONG;
	e->enabled = true;
	e->lease_ms = lease_ms;
	e->skew_ms = election_skew_ms(lease_ms);
	e->call_timeout_ms = election_call_timeout_ms(lease_ms, request_timeout_ms);
	e->next_due = 0;
	return 0;
}

void election_init_fenced(struct election *e)
{
	election_init_disabled(e);
	e->enabled = true;
	e->fenced = true;
}

bool election_may_act(const struct election *e, uint64_t now_mono)
{
	if (!e->enabled)
		return true;
	if (e->fenced)
		return false;
	return e->leader && now_mono < e->valid_until;
}

enum election_event election_expire(struct election *e, uint64_t now_mono)
{
	if (!e->enabled || !e->leader || now_mono < e->valid_until)
		return ELECTION_NONE;
	e->leader = false;
	e->valid_until = 0;
	e->next_due = now_mono; /* try to get it back (or learn who has it) at once */
	return ELECTION_LOST;
}

enum election_event election_apply(struct election *e, int rc, uint64_t sent_mono,
                                   uint64_t now_mono)
{
	bool was = e->leader;
	uint64_t retry;

	if (!e->enabled)
		return ELECTION_NONE;
	if (rc == 0) {
		e->failures = 0;
		e->leader = true;
		e->valid_until = sent_mono + e->lease_ms - e->skew_ms;
		e->next_due = sent_mono + e->lease_ms / 3;
		if (now_mono >= e->valid_until) {
			/* The answer came too late to be of use: act on nothing, ask again. */
			e->leader = false;
			e->valid_until = 0;
			e->next_due = now_mono;
			return was ? ELECTION_LOST : ELECTION_NONE;
		}
		return was ? ELECTION_NONE : ELECTION_GAINED;
	}
	if (rc == 1) {
		e->failures = 0;
		e->leader = false;
		e->valid_until = 0;
		e->next_due = now_mono + e->lease_ms / 3;
		return was ? ELECTION_LOST : ELECTION_NONE;
	}
	/* An error: a leader retries soon, so one lost packet does not cost the lease. */
	e->failures++;
	retry = e->leader ? e->lease_ms / 10 : e->lease_ms / 3;
	if (retry < RETRY_MIN_MS)
		retry = RETRY_MIN_MS;
	e->next_due = now_mono + retry;
	return election_expire(e, now_mono);
}

/* What the lease calls change on the shared context, to put back afterwards. */
struct call_bounds {
	long timeout_ms;
	unsigned max_attempts;
	uint64_t budget_ms, cap;
};

static void bounds_set(struct aws_ctx *ctx, long call_timeout_ms, uint64_t cap,
                       struct call_bounds *saved)
{
	saved->timeout_ms = ctx->timeout_ms;
	saved->max_attempts = ctx->max_attempts;
	saved->budget_ms = ctx->call_budget_ms;
	ctx->timeout_ms = call_timeout_ms;
	ctx->max_attempts = 1;
	ctx->call_budget_ms = (uint64_t)call_timeout_ms;
	saved->cap = aws_cap_begin(ctx, cap);
}

static void bounds_restore(struct aws_ctx *ctx, const struct call_bounds *saved)
{
	ctx->timeout_ms = saved->timeout_ms;
	ctx->max_attempts = saved->max_attempts;
	ctx->call_budget_ms = saved->budget_ms;
	aws_cap_end(ctx, saved->cap);
}

enum election_event election_tick(struct election *e, struct aws_ctx *ctx, uint64_t now_mono)
{
	enum election_event ev, ev2;
	struct call_bounds saved;
	uint64_t sent;
	int rc;

	ev = election_expire(e, now_mono);
	if (!e->enabled || e->fenced || now_mono < e->next_due)
		return ev;
	sent = now_mono_ms();
	/* Each call gets call_timeout (one attempt: the next tick is the retry), and the whole
	 * tick (a renew, or the two calls of an acquire) two of them. Both end with the tick. */
	bounds_set(ctx, e->call_timeout_ms, sent + 2 * (uint64_t)e->call_timeout_ms, &saved);

	if (e->leader) {
		rc = ddb_lease_renew(ctx, e->region, e->table, e->lease_id, e->owner,
		                     (int64_t)now_wall_ms(), (int64_t)e->lease_ms, &e->lease,
		                     &e->last_error);
		if (rc == 1) {
			/* Lost the renew race: maybe our own earlier renew landed and only its
			 * answer was lost (the version moved on). Acquire knows whether it is
			 * still ours. */
			sent = now_mono_ms();
			rc = ddb_lease_acquire(ctx, e->region, e->table, e->lease_id, e->owner,
			                       (int64_t)now_wall_ms(), (int64_t)e->lease_ms,
			                       &e->lease, &e->last_error);
		}
	} else {
		rc = ddb_lease_acquire(ctx, e->region, e->table, e->lease_id, e->owner,
		                       (int64_t)now_wall_ms(), (int64_t)e->lease_ms, &e->lease,
		                       &e->last_error);
	}
	bounds_restore(ctx, &saved);
	e->last_rc = rc;
	ev2 = election_apply(e, rc, sent, now_mono_ms());
	return ev2 != ELECTION_NONE ? ev2 : ev;
}

void election_release(struct election *e, struct aws_ctx *ctx)
{
	struct call_bounds saved;

	if (!e->enabled || !e->lease.exists || !e->leader)
		return;
	bounds_set(ctx, e->call_timeout_ms, 0, &saved);
	/* Stop acting first: from here on nothing may write, whatever the call says. */
	e->leader = false;
	e->valid_until = 0;
	(void)ddb_lease_release(ctx, e->region, e->table, e->lease_id, e->owner, &e->lease,
	                        &e->last_error);
	bounds_restore(ctx, &saved);
}

int election_owner_id(const char *instance_id, char *out, size_t n)
{
	char host[256];
	int w;

	if (instance_id && instance_id[0]) {
		w = snprintf(out, n, "%s:%ld", instance_id, (long)getpid());
	} else {
		if (gethostname(host, sizeof(host)) < 0 || !host[0])
			str_copy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		w = snprintf(out, n, "%s:%ld", host, (long)getpid());
	}
	return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}
