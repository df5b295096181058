/* runner-scaler simulate: the discrete-event model of the groups, their instances and the
 * policies (see simulate.h for the model and the sources of its parameters). Pure: no clock,
 * no I/O; the seed is the only randomness. */
#include "simulate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launches.h"
#include "policy.h"
#include "sim_internal.h"
#include "sim_warm.h"
#include "util.h"

/* ---- the model ---------------------------------------------------------------------------- */

const char *sim_policy_name(enum sim_policy p)
{
	return p == SIM_POLICY_TUTORIAL ? "tutorial" : "runnerd";
}

void sim_model_defaults(struct sim_model *m, enum sim_policy policy)
{
	memset(m, 0, sizeof(*m));
	m->policy = policy;
	m->boot_min_ms = (int64_t)SIM_BOOT_MIN_S * SIM_MS_PER_S;
	m->boot_max_ms = (int64_t)SIM_BOOT_MAX_S * SIM_MS_PER_S;
	m->interval_ms = (int64_t)(policy == SIM_POLICY_TUTORIAL ? SIM_TUTORIAL_INTERVAL_S
	                                                         : SIM_RUNNERD_INTERVAL_S) *
	                 SIM_MS_PER_S;
	m->claim_interval_ms = (int64_t)SIM_CLAIM_INTERVAL_S * SIM_MS_PER_S;
	m->idle_timeout_ms = (int64_t)SIM_IDLE_TIMEOUT_S * SIM_MS_PER_S;
	m->replace_delay_ms = (int64_t)SIM_REPLACE_DELAY_S * SIM_MS_PER_S;
	m->resume_min_ms = (int64_t)SIM_RESUME_MIN_S * SIM_MS_PER_S;
	m->resume_max_ms = (int64_t)SIM_RESUME_MAX_S * SIM_MS_PER_S;
	m->warm_stop_ms = (int64_t)SIM_WARM_STOP_S * SIM_MS_PER_S;
	m->seed = 1;
}

enum inst_state {
	I_BOOTING,
	I_IDLE,
	I_BUSY,
	I_STOPPED, /* tutorial: shut down, still held by the group until the health check */
	I_GONE,
	I_WARMING, /* a warm pool refill: launched into the pool, booting, preparing, stopping */
	I_POOLED,  /* prepared and stopped in the warm pool, ready to be taken */
};

/* Event kinds; at equal times they run in this order, so a poll sees everything that happened
 * at its instant. */
enum ev_type {
	EV_SUBMIT,
	EV_DONE,
	EV_BOOT,
	EV_CLAIM,
	EV_IDLE,
	EV_REPLACE,
	EV_WARMED, /* a warm pool refill is prepared and stopped */
	EV_POLL,
};

struct inst {
	int64_t launched_ms;
	size_t job;
	size_t slot; /* in its pool's members, while it is one */
	uint32_t pool;
	uint32_t epoch; /* bumped when the instance's pending claim/timeout events go stale */
	uint8_t state;
	bool fails;     /* launched while launches fail: its boot fails */
	bool connected; /* its agent started: the Runner API lists its runner */
};

struct pool_rt {
	int64_t desired, in_group, up, busy, running;
	struct sim_fifo queue; /* unclaimed jobs, oldest first */
	struct sim_fifo idle;  /* idle instances, for claim_interval 0 (lazily pruned) */
	struct sim_warm warm;
	struct sim_fifo pooled; /* the warm pool's stopped instances, first stopped first taken */
	bool dirty;
	/* launch-failure detection (runnerd, launch_failures > 0): the daemon's own bookkeeping
	 * (launches.c), fed what its reads would show: the group's instances (members) and the
	 * runners of the class (members whose agent started, and those of instances that left
	 * since the last poll) */
	bool detect;
	struct launch_tracker launches;
	struct sim_ilist members, gone;
};

struct sim {
	const struct sim_model *m;
	const struct sim_pool *pools;
	size_t npools;
	const struct sim_trace *t;
	struct sim_result *res;
	struct sim_heap q; /* the events to come */
	struct inst *inst;
	size_t ninst, icap;
	struct pool_rt *p;
	uint32_t *job_pool;
	uint32_t *dirty; /* pools changed since the last sample, each once */
	size_t ndirty;
	uint64_t rng;
	size_t done, next_submit;
	int64_t now, last_done_ms, last_progress_ms;
	int64_t in_group, peak_in_group; /* all pools together */
	uint64_t describes;
	bool record, oom;
	struct asg_instance *scratch; /* a group as a describe lists it */
	size_t scratch_cap;
};

static void push_ev(struct sim *s, int64_t t, uint8_t type, size_t idx, uint32_t epoch)
{
	if (sim_heap_push(&s->q, t, type, idx, epoch) < 0)
		s->oom = true;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL); /* splitmix64: the same stream everywhere */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The instance id the model gives instance ii: "i-" and 17 hex digits. */
static void inst_id(size_t ii, char *out, size_t n)
{
	snprintf(out, n, "i-%017" PRIx64, (uint64_t)ii + 1);
}

static void mark(struct sim *s, uint32_t pool)
{
	if (!s->p[pool].dirty) {
		s->p[pool].dirty = true;
		s->dirty[s->ndirty++] = pool;
	}
}

/* A sample per changed pool, after each event. */
static void record(struct sim *s)
{
	for (size_t d = 0; d < s->ndirty; d++) {
		uint32_t i = s->dirty[d];
		struct pool_rt *p = &s->p[i];
		struct sim_series *ser = &s->res->series[i];
		struct sim_sample smp = {.t_ms = s->now,
		                         .queued = (int32_t)p->queue.len,
		                         .desired = (int32_t)p->desired,
		                         .up = (int32_t)p->up,
		                         .busy = (int32_t)p->busy,
		                         .warm = (int32_t)p->warm.stopped};

		p->dirty = false;
		if (!s->record)
			continue;
		if (ser->n) {
			struct sim_sample *last = &ser->s[ser->n - 1];

			if (last->queued == smp.queued && last->desired == smp.desired &&
			    last->up == smp.up && last->busy == smp.busy && last->warm == smp.warm)
				continue;
			if (last->t_ms == smp.t_ms) {
				*last = smp; /* a step at one instant: keep where it ended */
				continue;
			}
		}
		if (ser->n == ser->cap) {
			size_t ncap = ser->cap ? ser->cap * 2 : 1024;
			struct sim_sample *ns;

			if (ncap > SIM_SERIES_MAX || !(ns = realloc(ser->s, ncap * sizeof(*ns)))) {
				ser->truncated = true;
				continue;
			}
			ser->s = ns;
			ser->cap = ncap;
		}
		ser->s[ser->n++] = smp;
	}
	s->ndirty = 0;
}

/* A new instance's record, launched now, or SIZE_MAX out of memory. */
static size_t new_inst(struct sim *s, uint32_t pool, uint8_t state)
{
	struct inst *in;

	if (s->ninst == s->icap) {
		size_t ncap = s->icap ? s->icap * 2 : 256;
		struct inst *ni = realloc(s->inst, ncap * sizeof(*ni));

		if (!ni) {
			s->oom = true;
			return SIZE_MAX;
		}
		s->inst = ni;
		s->icap = ncap;
	}
	in = &s->inst[s->ninst];
	memset(in, 0, sizeof(*in));
	in->launched_ms = s->now;
	in->pool = pool;
	in->state = state;
	return s->ninst++;
}

/* A time uniform in [lo, hi] ms. */
static int64_t draw(struct sim *s, int64_t lo, int64_t hi)
{
	if (hi > lo)
		lo += (int64_t)(rng_next(&s->rng) % (uint64_t)(hi - lo + 1));
	return lo;
}

/* A refill launched into the warm pool: it boots, prepares, completes the hook and is
 * stopped (EV_WARMED). */
static void refill(struct sim *s, uint32_t pool)
{
	const struct sim_model *m = s->m;
	size_t ii = new_inst(s, pool, I_WARMING);

	if (ii == SIZE_MAX)
		return;
	mark(s, pool);
	push_ev(s, s->now + draw(s, m->boot_min_ms, m->boot_max_ms) + m->warm_stop_ms, EV_WARMED,
	        ii, 0);
}

/* One more instance in the group: a stopped one from the warm pool when there is one (it
 * resumes, and a refill takes its place in the pool), else a cold launch. */
static void launch(struct sim *s, uint32_t pool, bool replacement)
{
	const struct sim_model *m = s->m;
	struct pool_rt *p = &s->p[pool];
	bool warm = sim_warm_take(&p->warm, s->now);
	int64_t boot;
	struct inst *in;
	size_t ii;

	if (warm) {
		ii = sim_fifo_pop(&p->pooled);
		boot = draw(s, m->resume_min_ms, m->resume_max_ms);
	} else {
		ii = new_inst(s, pool, I_BOOTING);
		if (ii == SIZE_MAX)
			return;
		boot = draw(s, m->boot_min_ms, m->boot_max_ms);
	}
	in = &s->inst[ii];
	in->launched_ms = s->now; /* running (billed) from its launch or its resume */
	in->state = I_BOOTING;
	in->fails = s->now >= m->fail_from_ms && s->now < m->fail_to_ms;
	if (in->fails)
		s->res->pools[pool].failed_launches++;
	if (p->detect) {
		in->slot = p->members.n;
		if (!sim_ilist_push(&p->members, ii))
			s->oom = true;
	}
	p->in_group++;
	p->up++;
	mark(s, pool);
	s->res->pools[pool].launches++;
	if (replacement)
		s->res->pools[pool].replacements++;
	if (p->in_group > s->res->pools[pool].peak_in_group)
		s->res->pools[pool].peak_in_group = p->in_group;
	if (++s->in_group > s->peak_in_group)
		s->peak_in_group = s->in_group;
	push_ev(s, s->now + boot, EV_BOOT, ii, 0);
	if (warm)
		refill(s, pool); /* last: it may move s->inst */
}

/* The group: launch while desired exceeds what it holds. Scale-in protection is on, so a
 * lower desired terminates nothing. */
static void reconcile(struct sim *s, uint32_t pool, bool replacement)
{
	while (!s->oom && s->p[pool].in_group < s->p[pool].desired)
		launch(s, pool, replacement);
}

static void claim(struct sim *s, size_t ii)
{
	struct inst *in = &s->inst[ii];
	struct pool_rt *p = &s->p[in->pool];
	size_t j = sim_fifo_pop(&p->queue);
	struct sim_job_result *jr = &s->res->jobs[j];

	jr->claimed_ms = s->now;
	jr->runs++;
	in->job = j;
	in->state = I_BUSY;
	in->epoch++;
	p->busy++;
	p->running++;
	mark(s, in->pool);
	s->last_progress_ms = s->now;
	push_ev(s, s->now + s->t->jobs[j].duration_ms, EV_DONE, ii, in->epoch);
}

static void become_idle(struct sim *s, size_t ii)
{
	struct inst *in = &s->inst[ii];
	struct pool_rt *p = &s->p[in->pool];

	in->state = I_IDLE;
	if (p->queue.len) {
		claim(s, ii);
		return;
	}
	if (s->m->claim_interval_ms > 0)
		push_ev(s, s->now + s->m->claim_interval_ms, EV_CLAIM, ii, in->epoch);
	else if (!sim_fifo_push(&p->idle, ii))
		s->oom = true;
	push_ev(s, s->now + s->m->idle_timeout_ms, EV_IDLE, ii, in->epoch);
}

/* The agent exited (its job done, or idle too long): the two designs part here. */
static void agent_exit(struct sim *s, size_t ii)
{
	struct inst *in = &s->inst[ii];
	struct pool_rt *p = &s->p[in->pool];
	struct sim_stats *st = &s->res->pools[in->pool];

	if (in->state == I_BUSY)
		p->busy--;
	p->up--;
	mark(s, in->pool);
	st->instance_ms += s->now - in->launched_ms;
	in->epoch++;
	if (s->m->policy == SIM_POLICY_RUNNERD) {
		/* TerminateInstanceInAutoScalingGroup, decrement; at MinSize without. */
		st->api_calls++;
		if (p->desired > s->pools[in->pool].min)
			p->desired--;
		if (p->detect) {
			/* out of the group; its runner, if it had one, is still listed */
			size_t last = p->members.v[--p->members.n];

			p->members.v[in->slot] = last;
			s->inst[last].slot = in->slot;
			if (in->connected && !sim_ilist_push(&p->gone, ii))
				s->oom = true;
		}
		in->state = I_GONE;
		p->in_group--;
		s->in_group--;
		reconcile(s, in->pool, false);
	} else {
		in->state = I_STOPPED;
		push_ev(s, s->now + s->m->replace_delay_ms, EV_REPLACE, ii, in->epoch);
	}
}

/* What one cycle of the daemon does for launches before it decides: observe the group, read
 * the runner list while an instance is unconfirmed (one API call), judge. */
static void detect_launches(struct sim *s, uint32_t pool, struct policy_input *in)
{
	struct pool_rt *p = &s->p[pool];
	struct sim_stats *st = &s->res->pools[pool];
	struct launch_verdict v;
	char id[LAUNCH_ID_MAX];
	size_t n = p->members.n;

	if (n > s->scratch_cap) {
		struct asg_instance *ns = realloc(s->scratch, n * sizeof(*ns));

		if (!ns) {
			s->oom = true;
			return;
		}
		s->scratch = ns;
		s->scratch_cap = n;
	}
	for (size_t k = 0; k < n; k++) {
		struct asg_instance *a = &s->scratch[k];

		memset(a, 0, sizeof(*a));
		inst_id(p->members.v[k], a->id, sizeof(a->id));
		str_copy(a->lifecycle_state, "InService", sizeof(a->lifecycle_state));
		a->protected_from_scale_in = true;
	}
	if (launches_observe(&p->launches, s->scratch, n, (uint64_t)s->now, 0) < 0) {
		s->oom = true;
		return;
	}
	if (launches_need_list(&p->launches)) {
		st->api_calls++; /* GET /api/v3/runner */
		for (size_t k = 0; k < n; k++) {
			if (!s->inst[p->members.v[k]].connected)
				continue;
			inst_id(p->members.v[k], id, sizeof(id));
			launches_runner(&p->launches, id);
		}
		for (size_t k = 0; k < p->gone.n; k++) {
			inst_id(p->gone.v[k], id, sizeof(id));
			launches_runner(&p->launches, id);
		}
		launches_judge(&p->launches, (unsigned)s->pools[pool].launch_failures,
		               (uint64_t)s->now, &v);
		st->backoffs += v.backoff_started;
	}
	p->gone.n = 0;
	in->launch_backoff_ms = (int64_t)launches_backoff_left_ms(&p->launches, (uint64_t)s->now);
	in->failed_launches = p->launches.streak;
	/* The list was read whenever an instance was unconfirmed: what is still unconfirmed had
	 * no runner, as the daemon sees it right behind its describe. */
	in->launch_connected = (int64_t)launches_count(&p->launches, LAUNCH_CONNECTED);
	in->launch_unknown = (int64_t)launches_unknown(&p->launches, true);
}

static void decide(struct sim *s, uint32_t pool)
{
	const struct sim_pool *cfg = &s->pools[pool];
	struct pool_rt *p = &s->p[pool];
	struct sim_stats *st = &s->res->pools[pool];
	int64_t unclaimed = (int64_t)p->queue.len, before = p->desired;

	if (s->m->policy == SIM_POLICY_RUNNERD) {
		struct policy_input in = {
		        .counts_ok = true,
		        .unclaimed = unclaimed,
		        .running = p->running,
		        .asg_ok = true,
		        .asg_desired = p->desired,
		        .asg_min = cfg->min,
		        .asg_max = cfg->max,
		        .pool_min = cfg->min,
		        .pool_max = cfg->max,
		        .headroom = cfg->headroom,
		        .max_step = cfg->max_step,
		};
		struct policy_output out;

		if (p->detect)
			detect_launches(s, pool, &in);
		policy_decide(&in, &out); /* the daemon's own decision, not a copy */
		st->api_calls += 2;       /* GET tasks, GET tasks/running */
		if (out.action == POLICY_SET) {
			st->api_calls++;
			st->writes++;
			p->desired = out.desired;
		}
	} else {
		/* The tutorial's lambda: min(unclaimed + running, max), written every time. */
		int64_t want = unclaimed + p->running;

		p->desired = want < cfg->max ? want : cfg->max;
		st->api_calls += 4; /* GetSecretValue, two counts, UpdateAutoScalingGroup */
		st->writes++;
	}
	if (p->desired != before)
		mark(s, pool);
	reconcile(s, pool, false);
}

static void poll_all(struct sim *s)
{
	for (uint32_t i = 0; i < s->npools; i++)
		decide(s, i);
	if (s->m->policy == SIM_POLICY_RUNNERD)
		s->describes += (s->npools + SIM_DESCRIBE_BATCH - 1) / SIM_DESCRIBE_BATCH;
}

static void handle(struct sim *s, const struct sim_ev *e)
{
	struct inst *in = e->type == EV_SUBMIT || e->type == EV_POLL ? NULL : &s->inst[e->idx];

	switch (e->type) {
	case EV_SUBMIT: {
		uint32_t pool = s->job_pool[e->idx];
		struct pool_rt *p = &s->p[pool];

		if (!sim_fifo_push(&p->queue, e->idx)) {
			s->oom = true;
			return;
		}
		mark(s, pool);
		s->last_progress_ms = s->now;
		/* With no claim backoff an idle agent takes it at once. */
		while (s->m->claim_interval_ms == 0 && p->queue.len && p->idle.len) {
			size_t ii = sim_fifo_pop(&p->idle);

			if (s->inst[ii].state == I_IDLE)
				claim(s, ii);
		}
		break;
	}
	case EV_BOOT:
		s->res->pools[in->pool].boot_ms += s->now - in->launched_ms;
		if (in->fails) {
			/* The boot fails (the token, the agent's download, ...): no agent, and the
			 * same exit as an agent's: runnerd leaves, the tutorial's instance stops.
			 */
			agent_exit(s, e->idx);
			break;
		}
		in->connected = true; /* the agent asks for work at once: its runner is listed */
		become_idle(s, e->idx);
		break;
	case EV_CLAIM:
		if (in->state != I_IDLE || in->epoch != e->epoch)
			break;
		if (s->p[in->pool].queue.len)
			claim(s, e->idx);
		else
			push_ev(s, s->now + s->m->claim_interval_ms, EV_CLAIM, e->idx, in->epoch);
		break;
	case EV_IDLE:
		if (in->state == I_IDLE && in->epoch == e->epoch)
			agent_exit(s, e->idx);
		break;
	case EV_DONE: {
		struct sim_job_result *jr = &s->res->jobs[in->job];

		jr->done_ms = s->now;
		s->p[in->pool].running--;
		s->res->pools[in->pool].busy_ms += s->t->jobs[in->job].duration_ms;
		s->done++;
		s->last_done_ms = s->now;
		s->last_progress_ms = s->now;
		agent_exit(s, e->idx);
		break;
	}
	case EV_REPLACE:
		/* The health check found the stopped instance: terminate it, refill to desired. */
		in->state = I_GONE;
		s->p[in->pool].in_group--;
		s->in_group--;
		mark(s, in->pool);
		reconcile(s, in->pool, true);
		break;
	case EV_WARMED: {
		struct pool_rt *p = &s->p[in->pool];

		in->state = I_POOLED;
		if (!sim_fifo_push(&p->pooled, e->idx)) {
			s->oom = true;
			return;
		}
		sim_warm_stopped(&p->warm, s->now, in->launched_ms);
		mark(s, in->pool);
		break;
	}
	case EV_POLL:
		poll_all(s);
		push_ev(s, s->now + s->m->interval_ms, EV_POLL, 0, 0);
		break;
	}
}

/* Jobs queued: with no progress for SIM_STALL_S, nothing will ever take them. */
static bool work_waits(const struct sim *s)
{
	for (size_t i = 0; i < s->npools; i++)
		if (s->p[i].queue.len)
			return true;
	return false;
}

/* Every group empty, and no warm pool refill still on its way to being stopped. */
static bool all_empty(const struct sim *s)
{
	for (size_t i = 0; i < s->npools; i++)
		if (s->p[i].in_group || s->p[i].warm.warming)
			return false;
	return true;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least pct % of the sample at or below it. */
static int64_t rank(const int64_t *v, size_t n, unsigned pct)
{
	size_t k = (n * pct + 99) / 100;

	return n ? v[k ? k - 1 : 0] : 0;
}

static void wait_stats(struct sim_stats *st, int64_t *w, size_t n)
{
	double sum = 0;

	qsort(w, n, sizeof(*w), cmp_i64);
	for (size_t i = 0; i < n; i++)
		sum += (double)w[i];
	st->jobs = n;
	st->wait_p50_ms = rank(w, n, 50);
	st->wait_p95_ms = rank(w, n, 95);
	st->wait_max_ms = n ? w[n - 1] : 0;
	st->wait_mean_ms = n ? sum / (double)n : 0;
}

static int finish_stats(struct sim *s)
{
	struct sim_result *r = s->res;
	size_t n = s->t->n, *off = calloc(s->npools + 1, sizeof(*off));
	int64_t *w = malloc(n * sizeof(*w));

	if (!w || !off) {
		free(w);
		free(off);
		return -ENOMEM;
	}
	/* Instances still up at the end (a pool min above 0) are billed until then. */
	for (size_t i = 0; i < s->ninst; i++) {
		if (s->inst[i].state > I_BUSY)
			continue;
		r->pools[s->inst[i].pool].instance_ms += s->now - s->inst[i].launched_ms;
		if (s->inst[i].state == I_BOOTING)
			r->pools[s->inst[i].pool].boot_ms += s->now - s->inst[i].launched_ms;
	}
	/* The warm pools: stopped instances until the end, refills' running time (instance time,
	 * on no job). */
	for (size_t i = 0; i < s->npools; i++) {
		struct sim_warm *wp = &s->p[i].warm;
		struct sim_stats *st = &r->pools[i];

		sim_warm_finish(wp, s->now);
		st->warm_pool = wp->size;
		st->warm_taken = wp->taken;
		st->warm_refills = wp->refills;
		st->warm_ms = wp->running_ms;
		st->warm_stopped_ms = wp->stopped_ms;
		st->instance_ms += wp->running_ms;
	}
	/* The waits of each pool side by side (a counting sort by pool), then each sorted. */
	for (size_t j = 0; j < n; j++)
		off[s->job_pool[j] + 1]++;
	for (size_t i = 0; i < s->npools; i++)
		off[i + 1] += off[i];
	for (size_t j = 0; j < n; j++)
		w[off[s->job_pool[j]]++] = r->jobs[j].claimed_ms - s->t->jobs[j].submit_ms;
	memset(&r->total, 0, sizeof(r->total));
	r->total.api_calls = s->describes;
	r->total.peak_in_group = s->peak_in_group;
	for (size_t i = 0, start = 0; i < s->npools; i++) {
		struct sim_stats *st = &r->pools[i];

		/* off[i] now ends pool i's segment */
		wait_stats(st, w + start, off[i] - start);
		start = off[i];
		r->total.instance_ms += st->instance_ms;
		r->total.busy_ms += st->busy_ms;
		r->total.boot_ms += st->boot_ms;
		r->total.launches += st->launches;
		r->total.failed_launches += st->failed_launches;
		r->total.backoffs += st->backoffs;
		r->total.replacements += st->replacements;
		r->total.api_calls += st->api_calls;
		r->total.writes += st->writes;
		r->total.warm_pool += st->warm_pool;
		r->total.warm_taken += st->warm_taken;
		r->total.warm_refills += st->warm_refills;
		r->total.warm_ms += st->warm_ms;
		r->total.warm_stopped_ms += st->warm_stopped_ms;
	}
	wait_stats(&r->total, w, n);
	free(w);
	free(off);
	return 0;
}

void sim_result_free(struct sim_result *r)
{
	if (!r)
		return;
	if (r->series)
		for (size_t i = 0; i < r->npools; i++)
			free(r->series[i].s);
	free(r->series);
	free(r->pools);
	free(r->jobs);
	memset(r, 0, sizeof(*r));
}

static int map_pools(struct sim *s, char *err, size_t errlen)
{
	int32_t map[SIM_CLASSES_MAX];

	for (size_t c = 0; c < SIM_CLASSES_MAX; c++)
		map[c] = -1;
	for (size_t c = 0; c < s->t->nclasses; c++) {
		if (s->t->classes[c][0] == '\0') {
			map[c] = 0; /* no class column: the first pool */
			continue;
		}
		for (size_t i = 0; i < s->npools; i++)
			if (strcmp(s->pools[i].resource_class, s->t->classes[c]) == 0) {
				map[c] = (int32_t)i;
				break;
			}
	}
	for (size_t j = 0; j < s->t->n; j++) {
		int32_t pi = map[s->t->jobs[j].cls];

		if (pi < 0) {
			sim_set_err(err, errlen,
			            "line %" PRIu32 ": resource class \"%s\" has no pool",
			            s->t->jobs[j].line, s->t->classes[s->t->jobs[j].cls]);
			return -EINVAL;
		}
		s->job_pool[j] = (uint32_t)pi;
	}
	return 0;
}

int sim_run(const struct sim_model *m, const struct sim_pool *pools, size_t npools,
            const struct sim_trace *t, bool record_series, struct sim_result *res, char *err,
            size_t errlen)
{
	struct sim s;
	int r = 0;

	memset(res, 0, sizeof(*res));
	memset(&s, 0, sizeof(s));
	if (!npools || !t->n || m->boot_min_ms < 0 || m->boot_max_ms < m->boot_min_ms ||
	    m->interval_ms < 0 || m->claim_interval_ms < 0 || m->idle_timeout_ms < 0 ||
	    m->replace_delay_ms < 0 || m->fail_from_ms < 0 || m->fail_to_ms < 0 ||
	    m->resume_min_ms < 0 || m->resume_max_ms < m->resume_min_ms || m->warm_stop_ms < 0) {
		sim_set_err(err, errlen, "invalid model or empty input");
		return -EINVAL;
	}
	for (size_t i = 0; i < npools; i++) {
		if (pools[i].max < 0 || pools[i].min < 0 || pools[i].min > pools[i].max) {
			sim_set_err(err, errlen, "pool %s: need 0 <= min <= max", pools[i].name);
			return -EINVAL;
		}
		if (pools[i].launch_failures < 0 ||
		    pools[i].launch_failures > LAUNCH_FAILURES_MAX) {
			sim_set_err(err, errlen, "pool %s: need 0 <= launch_failures <= %d",
			            pools[i].name, LAUNCH_FAILURES_MAX);
			return -EINVAL;
		}
		if (pools[i].warm_pool < 0 || pools[i].warm_pool > SIM_WARM_POOL_MAX) {
			sim_set_err(err, errlen, "pool %s: need 0 <= warm_pool <= %d",
			            pools[i].name, SIM_WARM_POOL_MAX);
			return -EINVAL;
		}
	}
	s.m = m;
	s.pools = pools;
	s.npools = npools;
	s.t = t;
	s.res = res;
	s.rng = m->seed;
	s.record = record_series;
	res->npools = npools;
	res->njobs = t->n;
	res->pools = calloc(npools, sizeof(*res->pools));
	res->jobs = calloc(t->n, sizeof(*res->jobs));
	s.p = calloc(npools, sizeof(*s.p));
	s.job_pool = calloc(t->n, sizeof(*s.job_pool));
	s.dirty = calloc(npools, sizeof(*s.dirty));
	if (record_series)
		res->series = calloc(npools, sizeof(*res->series));
	if (!res->pools || !res->jobs || !s.p || !s.job_pool || !s.dirty ||
	    (record_series && !res->series)) {
		r = -ENOMEM;
		goto out;
	}
	r = map_pools(&s, err, errlen);
	if (r < 0)
		goto out;
	for (size_t j = 0; j < t->n; j++) {
		res->jobs[j].claimed_ms = res->jobs[j].done_ms = -1;
		res->jobs[j].pool = s.job_pool[j];
	}

	for (uint32_t i = 0; i < npools; i++)
		s.p[i].detect = m->policy == SIM_POLICY_RUNNERD && pools[i].launch_failures > 0;
	/* The warm pools start full: N instances prepared and stopped before t = 0. */
	for (uint32_t i = 0; i < npools; i++) {
		sim_warm_init(&s.p[i].warm, pools[i].warm_pool, 0);
		for (int64_t k = 0; k < pools[i].warm_pool && !s.oom; k++) {
			size_t ii = new_inst(&s, i, I_POOLED);

			if (ii != SIZE_MAX && !sim_fifo_push(&s.p[i].pooled, ii))
				s.oom = true;
		}
	}
	/* The group starts at its MinSize, its instances launched at t = 0 (from the warm pool
	 * first). */
	for (uint32_t i = 0; i < npools; i++) {
		s.p[i].desired = pools[i].min;
		mark(&s, i);
		reconcile(&s, i, false);
	}
	/* Submits are fed from the sorted trace one at a time, so the heap stays small. */
	push_ev(&s, t->jobs[0].submit_ms, EV_SUBMIT, 0, 0);
	s.next_submit = 1;
	if (m->interval_ms > 0)
		push_ev(&s, 0, EV_POLL, 0, 0);
	while (s.q.n && !s.oom) {
		struct sim_ev e = sim_heap_pop(&s.q);

		s.now = e.t;
		res->events++;
		if (e.type == EV_SUBMIT && s.next_submit < t->n) {
			push_ev(&s, t->jobs[s.next_submit].submit_ms, EV_SUBMIT, s.next_submit, 0);
			s.next_submit++;
		}
		handle(&s, &e);
		if (m->interval_ms == 0 && e.type != EV_POLL)
			poll_all(&s); /* a zero interval: the policy sees every change at once */
		record(&s);
		if (s.done == t->n &&
		    (all_empty(&s) ||
		     s.now >= s.last_done_ms + (int64_t)SIM_DRAIN_S * SIM_MS_PER_S))
			break;
		if (s.now - s.last_progress_ms > (int64_t)SIM_STALL_S * SIM_MS_PER_S &&
		    work_waits(&s)) {
			sim_set_err(err, errlen,
			            "%zu of %zu jobs never ran within %d s of simulated time: is a "
			            "pool's "
			            "max 0?",
			            t->n - s.done, t->n, SIM_STALL_S);
			r = -EDEADLK;
			goto out;
		}
		/* Zero boot, idle timeout and interval with a pool min would churn forever at
		 * one instant: a bound on the work, whatever the model. */
		if (res->events > (m->max_events ? m->max_events : SIM_EVENTS_MAX)) {
			sim_set_err(err, errlen,
			            "the simulation did not settle within %" PRIu64 " events",
			            res->events - 1);
			r = -E2BIG;
			goto out;
		}
	}
	if (s.oom) {
		r = -ENOMEM;
		goto out;
	}
	if (s.done != t->n) {
		sim_set_err(err, errlen, "%zu of %zu jobs never ran", t->n - s.done, t->n);
		r = -EDEADLK;
		goto out;
	}
	res->end_ms = s.now;
	r = finish_stats(&s);
out:
	for (size_t i = 0; s.p && i < npools; i++) {
		free(s.p[i].queue.v);
		free(s.p[i].idle.v);
		free(s.p[i].pooled.v);
		free(s.p[i].members.v);
		free(s.p[i].gone.v);
		launches_reset(&s.p[i].launches);
	}
	free(s.scratch);
	free(s.p);
	free(s.job_pool);
	free(s.dirty);
	free(s.q.v);
	free(s.inst);
	if (r < 0)
		sim_result_free(res);
	return r;
}
