/* runner-scaler simulate: the trace parser, the discrete-event model, the reports (see
 * simulate.h for the model and the sources of its parameters). */
#include "simulate.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "policy.h"
#include "scaler_config.h"
#include "util.h"

#define MS_PER_S       1000
#define TRACE_FILE_MAX ((size_t)256 * 1024 * 1024)
#define REPORT_MAX     ((size_t)64 * 1024 * 1024)

/* ---- small helpers ------------------------------------------------------------------------ */

static void set_err(char *err, size_t n, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (!err || !n)
		return;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

/* A field of the input, fit to be quoted in a message: bounded, printable. */
static void shown(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < outlen; i++)
		out[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (i < n && o + 4 <= outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static const char *trim(const char *s, size_t *n)
{
	while (*n && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		(*n)--;
	}
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

static bool field_is(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* Decimal seconds ("12", "12.5", "0.001") into ms, rounded half up; no sign, no exponent. */
static int parse_seconds(const char *s, size_t n, int64_t max_s, int64_t *ms)
{
	int64_t whole = 0, frac = 0, scale = 100;
	size_t i = 0, digits = 0;
	bool round_up = false;

	while (i < n && s[i] >= '0' && s[i] <= '9') {
		if (++digits > 12)
			return -ERANGE;
		whole = whole * 10 + (s[i] - '0');
		i++;
	}
	if (i < n && s[i] == '.') {
		size_t fd = 0;

		i++;
		while (i < n && s[i] >= '0' && s[i] <= '9') {
			if (fd < 3)
				frac += (s[i] - '0') * scale;
			else if (fd == 3)
				round_up = s[i] >= '5';
			scale /= 10;
			fd++;
			i++;
		}
		if (fd == 0)
			return -EINVAL; /* "12." */
	}
	if (digits == 0 || i != n)
		return -EINVAL;
	if (whole > max_s)
		return -ERANGE;
	*ms = whole * MS_PER_S + frac + (round_up ? 1 : 0);
	if (*ms > max_s * MS_PER_S)
		return -ERANGE;
	return 0;
}

static bool class_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == ':' || c == '+' || c == '/';
}

/* ---- the trace ---------------------------------------------------------------------------- */

void sim_trace_free(struct sim_trace *t)
{
	if (!t)
		return;
	free(t->jobs);
	t->jobs = NULL;
	t->n = 0;
	t->nclasses = 0;
}

static int job_cmp(const void *a, const void *b)
{
	const struct sim_job *x = a, *y = b;

	if (x->submit_ms != y->submit_ms)
		return x->submit_ms < y->submit_ms ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

static int class_index(struct sim_trace *t, const char *s, size_t n, uint16_t *idx)
{
	for (size_t i = 0; i < t->nclasses; i++) {
		if (strlen(t->classes[i]) == n && memcmp(t->classes[i], s, n) == 0) {
			*idx = (uint16_t)i;
			return 0;
		}
	}
	if (t->nclasses >= SIM_CLASSES_MAX)
		return -E2BIG;
	memcpy(t->classes[t->nclasses], s, n);
	t->classes[t->nclasses][n] = '\0';
	*idx = (uint16_t)t->nclasses++;
	return 0;
}

/* One data line, already split: fills job or says what is wrong. */
static int parse_fields(struct sim_trace *t, const char *const *f, const size_t *fl, size_t nf,
                        struct sim_job *job, char *why, size_t n)
{
	static const char *const names[] = {"submit_s", "duration_s"};
	static const int64_t maxes[] = {SIM_SUBMIT_MAX_S, SIM_DURATION_MAX_S};
	int64_t *dst[] = {&job->submit_ms, &job->duration_ms};
	char q[48];
	int r;

	if (nf < 2 || nf > 3) {
		set_err(why, n,
		        "expected 2 or 3 comma-separated fields "
		        "(submit_s,duration_s[,resource_class]), got %zu",
		        nf);
		return -EINVAL;
	}
	for (size_t i = 0; i < 2; i++) {
		shown(f[i], fl[i], q, sizeof(q));
		if (fl[i] == 0) {
			set_err(why, n, "%s: empty", names[i]);
			return -EINVAL;
		}
		if (f[i][0] == '-') {
			set_err(why, n, "%s: negative: \"%s\"", names[i], q);
			return -EINVAL;
		}
		r = parse_seconds(f[i], fl[i], maxes[i], dst[i]);
		if (r == -ERANGE) {
			set_err(why, n, "%s: out of range (at most %" PRId64 " s): \"%s\"",
			        names[i], maxes[i], q);
			return -EINVAL;
		}
		if (r < 0) {
			set_err(why, n, "%s: not a number of seconds: \"%s\"", names[i], q);
			return -EINVAL;
		}
	}
	if (nf == 3) {
		shown(f[2], fl[2], q, sizeof(q));
		if (fl[2] == 0) {
			set_err(why, n, "resource_class: empty (leave out the column instead)");
			return -EINVAL;
		}
		if (fl[2] >= SIM_CLASS_MAX) {
			set_err(why, n, "resource_class: longer than %d characters",
			        SIM_CLASS_MAX - 1);
			return -EINVAL;
		}
		for (size_t i = 0; i < fl[2]; i++) {
			if (!class_char(f[2][i])) {
				set_err(why, n, "resource_class: invalid character in \"%s\"", q);
				return -EINVAL;
			}
		}
		r = class_index(t, f[2], fl[2], &job->cls);
	} else {
		r = class_index(t, "", 0, &job->cls);
	}
	if (r < 0) {
		set_err(why, n, "more than %d resource classes", SIM_CLASSES_MAX);
		return -E2BIG;
	}
	return 0;
}

int sim_trace_parse(const char *text, size_t len, struct sim_trace *out, char *err, size_t errlen)
{
	size_t pos = 0, cap = 0;
	uint32_t line = 0;
	bool seen_data = false;
	char why[200];
	int r = 0;

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos, nf = 0;
		const char *f[4];
		size_t fl[4];

		pos += n + (nl ? 1 : 0);
		line++;
		if (n > SIM_LINE_MAX) {
			set_err(err, errlen, "line %" PRIu32 ": longer than %d bytes", line,
			        SIM_LINE_MAX);
			r = -EINVAL;
			goto out;
		}
		if (n && s[n - 1] == '\r')
			n--;
		if (memchr(s, '\0', n)) {
			set_err(err, errlen, "line %" PRIu32 ": contains a NUL byte", line);
			r = -EINVAL;
			goto out;
		}
		s = trim(s, &n);
		if (n == 0 || s[0] == '#')
			continue;
		/* Split on commas: at most 4 fields are kept, more only counted. */
		for (size_t a = 0;;) {
			const char *c = memchr(s + a, ',', n - a);
			size_t e = c ? (size_t)(c - s) : n;

			if (nf < 4) {
				fl[nf] = e - a;
				f[nf] = trim(s + a, &fl[nf]);
			}
			nf++;
			if (!c)
				break;
			a = e + 1;
		}
		if (!seen_data) {
			seen_data = true;
			/* The optional header: exactly the column names. */
			if (nf >= 2 && nf <= 3 && field_is(f[0], fl[0], "submit_s") &&
			    field_is(f[1], fl[1], "duration_s") &&
			    (nf == 2 || field_is(f[2], fl[2], "resource_class")))
				continue;
		}
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			struct sim_job *nj;

			if (out->n >= SIM_JOBS_MAX) {
				set_err(err, errlen, "line %" PRIu32 ": more than %d jobs", line,
				        SIM_JOBS_MAX);
				r = -E2BIG;
				goto out;
			}
			nj = realloc(out->jobs, ncap * sizeof(*nj));
			if (!nj) {
				r = -ENOMEM;
				goto out;
			}
			out->jobs = nj;
			cap = ncap;
		}
		memset(&out->jobs[out->n], 0, sizeof(out->jobs[0]));
		out->jobs[out->n].line = line;
		r = parse_fields(out, f, fl, nf, &out->jobs[out->n], why, sizeof(why));
		if (r < 0) {
			set_err(err, errlen, "line %" PRIu32 ": %s", line, why);
			goto out;
		}
		out->n++;
	}
	if (out->n == 0) {
		set_err(err, errlen, "no jobs in the trace (%" PRIu32 " lines)", line);
		r = -EINVAL;
		goto out;
	}
	/* Exports are not always in order; the simulation replays by submit time. */
	qsort(out->jobs, out->n, sizeof(out->jobs[0]), job_cmp);
out:
	if (r < 0)
		sim_trace_free(out);
	return r;
}

int sim_parse_boot(const char *s, int64_t *lo_ms, int64_t *hi_ms)
{
	const char *dash;
	int64_t lo, hi;

	if (!s || !*s)
		return -EINVAL;
	dash = strchr(s, '-');
	if (!dash) {
		if (parse_seconds(s, strlen(s), 3600, &lo) < 0)
			return -EINVAL;
		*lo_ms = *hi_ms = lo;
		return 0;
	}
	if (parse_seconds(s, (size_t)(dash - s), 3600, &lo) < 0 ||
	    parse_seconds(dash + 1, strlen(dash + 1), 3600, &hi) < 0 || hi < lo)
		return -EINVAL;
	*lo_ms = lo;
	*hi_ms = hi;
	return 0;
}

/* ---- the model ---------------------------------------------------------------------------- */

const char *sim_policy_name(enum sim_policy p)
{
	return p == SIM_POLICY_TUTORIAL ? "tutorial" : "runnerd";
}

void sim_model_defaults(struct sim_model *m, enum sim_policy policy)
{
	memset(m, 0, sizeof(*m));
	m->policy = policy;
	m->boot_min_ms = (int64_t)SIM_BOOT_MIN_S * MS_PER_S;
	m->boot_max_ms = (int64_t)SIM_BOOT_MAX_S * MS_PER_S;
	m->interval_ms = (int64_t)(policy == SIM_POLICY_TUTORIAL ? SIM_TUTORIAL_INTERVAL_S
	                                                         : SIM_RUNNERD_INTERVAL_S) *
	                 MS_PER_S;
	m->claim_interval_ms = (int64_t)SIM_CLAIM_INTERVAL_S * MS_PER_S;
	m->idle_timeout_ms = (int64_t)SIM_IDLE_TIMEOUT_S * MS_PER_S;
	m->replace_delay_ms = (int64_t)SIM_REPLACE_DELAY_S * MS_PER_S;
	m->seed = 1;
}

enum inst_state {
	I_BOOTING,
	I_IDLE,
	I_BUSY,
	I_STOPPED, /* tutorial: shut down, still held by the group until the health check */
	I_GONE,
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
	EV_POLL,
};

struct ev {
	int64_t t;
	uint64_t seq;
	size_t idx;
	uint32_t epoch;
	uint8_t type;
};

struct inst {
	int64_t launched_ms;
	size_t job;
	uint32_t pool;
	uint32_t epoch; /* bumped when the instance's pending claim/timeout events go stale */
	uint8_t state;
};

struct fifo {
	size_t *v;
	size_t head, len, cap;
};

struct pool_rt {
	int64_t desired, in_group, up, busy, running;
	struct fifo queue; /* unclaimed jobs, oldest first */
	struct fifo idle;  /* idle instances, for claim_interval 0 (lazily pruned) */
	bool dirty;
};

struct sim {
	const struct sim_model *m;
	const struct sim_pool *pools;
	size_t npools;
	const struct sim_trace *t;
	struct sim_result *res;
	struct ev *heap;
	size_t hn, hcap;
	uint64_t seq;
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
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL); /* splitmix64: the same stream everywhere */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static bool ev_less(const struct ev *a, const struct ev *b)
{
	if (a->t != b->t)
		return a->t < b->t;
	if (a->type != b->type)
		return a->type < b->type;
	return a->seq < b->seq;
}

static void push_ev(struct sim *s, int64_t t, uint8_t type, size_t idx, uint32_t epoch)
{
	struct ev e = {.t = t, .seq = s->seq++, .idx = idx, .epoch = epoch, .type = type};
	size_t i;

	if (s->hn == s->hcap) {
		size_t ncap = s->hcap ? s->hcap * 2 : 256;
		struct ev *nh = realloc(s->heap, ncap * sizeof(*nh));

		if (!nh) {
			s->oom = true;
			return;
		}
		s->heap = nh;
		s->hcap = ncap;
	}
	i = s->hn++;
	while (i > 0 && ev_less(&e, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = e;
}

static struct ev pop_ev(struct sim *s)
{
	struct ev top = s->heap[0], last = s->heap[--s->hn];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->hn)
			break;
		if (c + 1 < s->hn && ev_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_less(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->hn)
		s->heap[i] = last;
	return top;
}

static bool fifo_push(struct fifo *f, size_t v)
{
	if (f->head + f->len == f->cap) {
		if (f->head > f->cap / 2) {
			memmove(f->v, f->v + f->head, f->len * sizeof(*f->v));
			f->head = 0;
		} else {
			size_t ncap = f->cap ? f->cap * 2 : 64;
			size_t *nv = realloc(f->v, ncap * sizeof(*nv));

			if (!nv)
				return false;
			f->v = nv;
			f->cap = ncap;
		}
	}
	f->v[f->head + f->len++] = v;
	return true;
}

static size_t fifo_pop(struct fifo *f)
{
	size_t v = f->v[f->head++];

	f->len--;
	if (!f->len)
		f->head = 0;
	return v;
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
		                         .busy = (int32_t)p->busy};

		p->dirty = false;
		if (!s->record)
			continue;
		if (ser->n) {
			struct sim_sample *last = &ser->s[ser->n - 1];

			if (last->queued == smp.queued && last->desired == smp.desired &&
			    last->up == smp.up && last->busy == smp.busy)
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

static void launch(struct sim *s, uint32_t pool, bool replacement)
{
	const struct sim_model *m = s->m;
	struct pool_rt *p = &s->p[pool];
	int64_t boot = m->boot_min_ms;
	struct inst *in;

	if (s->ninst == s->icap) {
		size_t ncap = s->icap ? s->icap * 2 : 256;
		struct inst *ni = realloc(s->inst, ncap * sizeof(*ni));

		if (!ni) {
			s->oom = true;
			return;
		}
		s->inst = ni;
		s->icap = ncap;
	}
	if (m->boot_max_ms > m->boot_min_ms)
		boot += (int64_t)(rng_next(&s->rng) %
		                  (uint64_t)(m->boot_max_ms - m->boot_min_ms + 1));
	in = &s->inst[s->ninst];
	memset(in, 0, sizeof(*in));
	in->launched_ms = s->now;
	in->pool = pool;
	in->state = I_BOOTING;
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
	push_ev(s, s->now + boot, EV_BOOT, s->ninst, 0);
	s->ninst++;
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
	size_t j = fifo_pop(&p->queue);
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
	else if (!fifo_push(&p->idle, ii))
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
		in->state = I_GONE;
		p->in_group--;
		s->in_group--;
		reconcile(s, in->pool, false);
	} else {
		in->state = I_STOPPED;
		push_ev(s, s->now + s->m->replace_delay_ms, EV_REPLACE, ii, in->epoch);
	}
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

static void handle(struct sim *s, const struct ev *e)
{
	struct inst *in = e->type == EV_SUBMIT || e->type == EV_POLL ? NULL : &s->inst[e->idx];

	switch (e->type) {
	case EV_SUBMIT: {
		uint32_t pool = s->job_pool[e->idx];
		struct pool_rt *p = &s->p[pool];

		if (!fifo_push(&p->queue, e->idx)) {
			s->oom = true;
			return;
		}
		mark(s, pool);
		s->last_progress_ms = s->now;
		/* With no claim backoff an idle agent takes it at once. */
		while (s->m->claim_interval_ms == 0 && p->queue.len && p->idle.len) {
			size_t ii = fifo_pop(&p->idle);

			if (s->inst[ii].state == I_IDLE)
				claim(s, ii);
		}
		break;
	}
	case EV_BOOT:
		s->res->pools[in->pool].boot_ms += s->now - in->launched_ms;
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

static bool all_empty(const struct sim *s)
{
	for (size_t i = 0; i < s->npools; i++)
		if (s->p[i].in_group)
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
		r->total.replacements += st->replacements;
		r->total.api_calls += st->api_calls;
		r->total.writes += st->writes;
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
			set_err(err, errlen, "line %" PRIu32 ": resource class \"%s\" has no pool",
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
	    m->replace_delay_ms < 0) {
		set_err(err, errlen, "invalid model or empty input");
		return -EINVAL;
	}
	for (size_t i = 0; i < npools; i++) {
		if (pools[i].max < 0 || pools[i].min < 0 || pools[i].min > pools[i].max) {
			set_err(err, errlen, "pool %s: need 0 <= min <= max", pools[i].name);
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

	/* The group starts at its MinSize, its instances launched at t = 0. */
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
	while (s.hn && !s.oom) {
		struct ev e = pop_ev(&s);

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
		    (all_empty(&s) || s.now >= s.last_done_ms + (int64_t)SIM_DRAIN_S * MS_PER_S))
			break;
		if (s.now - s.last_progress_ms > (int64_t)SIM_STALL_S * MS_PER_S &&
		    work_waits(&s)) {
			set_err(err, errlen,
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
			set_err(err, errlen,
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
		set_err(err, errlen, "%zu of %zu jobs never ran", t->n - s.done, t->n);
		r = -EDEADLK;
		goto out;
	}
	res->end_ms = s.now;
	r = finish_stats(&s);
out:
	for (size_t i = 0; s.p && i < npools; i++) {
		free(s.p[i].queue.v);
		free(s.p[i].idle.v);
	}
	free(s.p);
	free(s.job_pool);
	free(s.dirty);
	free(s.heap);
	free(s.inst);
	if (r < 0)
		sim_result_free(res);
	return r;
}

/* ---- reports ------------------------------------------------------------------------------ */

static double secs(int64_t ms)
{
	return (double)ms / MS_PER_S;
}

static double per_job(int64_t ms, size_t jobs)
{
	return jobs ? secs(ms) / (double)jobs : 0;
}

static void fmt_dur(int64_t ms, char *out, size_t n)
{
	cfg_format_duration((uint64_t)(ms < 0 ? 0 : ms), out, n);
}

static int model_line(const struct sim_model *m, struct buf *out)
{
	char iv[32], cl[32], it[32], rd[32];
	int bad = 0;

	fmt_dur(m->interval_ms, iv, sizeof(iv));
	fmt_dur(m->claim_interval_ms, cl, sizeof(cl));
	fmt_dur(m->idle_timeout_ms, it, sizeof(it));
	fmt_dur(m->replace_delay_ms, rd, sizeof(rd));
	if (m->boot_min_ms == m->boot_max_ms)
		bad |= buf_printf(out, "model:  boot %.3g s", secs(m->boot_min_ms)) < 0;
	else
		bad |= buf_printf(out, "model:  boot %.3g-%.3g s (uniform)", secs(m->boot_min_ms),
		                  secs(m->boot_max_ms)) < 0;
	bad |= buf_printf(out, ", poll every %s, claim every %s, idle timeout %s;\n",
	                  m->interval_ms ? iv : "event", m->claim_interval_ms ? cl : "event",
	                  it) < 0;
	if (m->policy == SIM_POLICY_RUNNERD)
		bad |= buf_printf(out, "        an agent that exits leaves the group with a "
		                       "decrement\n") < 0;
	else
		bad |= buf_printf(out,
		                  "        an agent that exits stops its instance; the group "
		                  "replaces it after %s while desired counts it\n",
		                  rd) < 0;
	return bad ? -EFBIG : 0;
}

static int64_t idle_ms(const struct sim_stats *st)
{
	return st->instance_ms - st->busy_ms - st->boot_ms;
}

static int stats_text(const char *label, const struct sim_stats *st, struct buf *out)
{
	int bad = 0;

	bad |= buf_printf(out,
	                  "%s%zu jobs; wait p50 %.1f s, p95 %.1f s, max %.1f s (mean %.1f s)\n",
	                  label, st->jobs, secs(st->wait_p50_ms), secs(st->wait_p95_ms),
	                  secs(st->wait_max_ms), st->wait_mean_ms / MS_PER_S) < 0;
	bad |= buf_printf(out,
	                  "        instance-seconds %.0f: busy %.0f, boot %.0f, idle %.0f; per job:"
	                  " idle %.1f, boot + idle %.1f\n"
	                  "        %" PRIu64 " launches (%" PRIu64
	                  " replacements), at most %" PRId64 " in the group at once, %" PRIu64
	                  " API calls (%" PRIu64 " capacity writes)\n",
	                  secs(st->instance_ms), secs(st->busy_ms), secs(st->boot_ms),
	                  secs(idle_ms(st)), per_job(idle_ms(st), st->jobs),
	                  per_job(st->instance_ms - st->busy_ms, st->jobs), st->launches,
	                  st->replacements, st->peak_in_group, st->api_calls, st->writes) < 0;
	return bad ? -EFBIG : 0;
}

int sim_render_text(const struct sim_model *m, const struct sim_pool *pools,
                    const struct sim_result *r, struct buf *out)
{
	char end[32];
	int bad = 0;

	fmt_dur((r->end_ms + MS_PER_S / 2) / MS_PER_S * MS_PER_S, end, sizeof(end));
	bad |= buf_printf(out, "policy: %s, seed %" PRIu64 ", %zu pool%s, %s simulated\n",
	                  sim_policy_name(m->policy), m->seed, r->npools, r->npools == 1 ? "" : "s",
	                  end) < 0;
	bad |= model_line(m, out) < 0;
	bad |= stats_text("total:  ", &r->total, out) < 0;
	for (size_t i = 0; r->npools > 1 && i < r->npools; i++) {
		char label[256];

		if (!r->pools[i].jobs && !r->pools[i].launches)
			continue; /* a pool of the config the trace does not use */
		snprintf(label, sizeof(label), "pool %s (%s, max %" PRId64 "): ", pools[i].name,
		         pools[i].resource_class[0] ? pools[i].resource_class : "-", pools[i].max);
		bad |= stats_text(label, &r->pools[i], out) < 0;
	}
	return bad ? -EFBIG : 0;
}

static int json_str(struct buf *out, const char *s)
{
	int rc = buf_append_str(out, "\"");

	for (; rc == 0 && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			rc = buf_printf(out, "\\%c", c);
		else if (c < 0x20)
			rc = buf_printf(out, "\\u%04x", c);
		else
			rc = buf_append(out, s, 1);
	}
	return rc ? rc : buf_append_str(out, "\"");
}

static int stats_json(const struct sim_stats *st, struct buf *out)
{
	int64_t idle = idle_ms(st);

	return buf_printf(
	        out,
	        "\"jobs\":%zu,\"wait_p50_s\":%.3f,\"wait_p95_s\":%.3f,\"wait_max_s\":%.3f,"
	        "\"wait_mean_s\":%.3f,\"instance_seconds\":%.3f,\"busy_seconds\":%.3f,"
	        "\"boot_seconds\":%.3f,\"idle_instance_seconds\":%.3f,"
	        "\"idle_instance_seconds_per_job\":%.3f,\"overhead_seconds_per_job\":%.3f,"
	        "\"launches\":%" PRIu64 ",\"replacements\":%" PRIu64 ",\"peak_instances\":%" PRId64
	        ",\"api_calls\":%" PRIu64 ",\"capacity_writes\":%" PRIu64,
	        st->jobs, secs(st->wait_p50_ms), secs(st->wait_p95_ms), secs(st->wait_max_ms),
	        st->wait_mean_ms / MS_PER_S, secs(st->instance_ms), secs(st->busy_ms),
	        secs(st->boot_ms), secs(idle), per_job(idle, st->jobs),
	        per_job(st->instance_ms - st->busy_ms, st->jobs), st->launches, st->replacements,
	        st->peak_in_group, st->api_calls, st->writes);
}

int sim_render_json(const struct sim_model *m, const struct sim_pool *pools,
                    const struct sim_result *r, struct buf *out)
{
	int bad = 0;

	bad |= buf_printf(out, "{\"policy\":\"%s\",\"seed\":%" PRIu64 ",",
	                  sim_policy_name(m->policy), m->seed) < 0;
	bad |= buf_printf(out,
	                  "\"model\":{\"boot_min_s\":%.3f,\"boot_max_s\":%.3f,\"interval_s\":%.3f,"
	                  "\"claim_interval_s\":%.3f,\"idle_timeout_s\":%.3f,"
	                  "\"replace_delay_s\":%.3f},",
	                  secs(m->boot_min_ms), secs(m->boot_max_ms), secs(m->interval_ms),
	                  secs(m->claim_interval_ms), secs(m->idle_timeout_ms),
	                  secs(m->replace_delay_ms)) < 0;
	bad |= buf_printf(out, "\"simulated_seconds\":%.3f,", secs(r->end_ms)) < 0;
	bad |= stats_json(&r->total, out) < 0;
	bad |= buf_append_str(out, ",\"pools\":[") < 0;
	for (size_t i = 0; i < r->npools; i++) {
		bad |= buf_append_str(out, i ? ",{\"name\":" : "{\"name\":") < 0;
		bad |= json_str(out, pools[i].name) < 0;
		bad |= buf_append_str(out, ",\"resource_class\":") < 0;
		bad |= json_str(out, pools[i].resource_class) < 0;
		bad |= buf_printf(out, ",\"min\":%" PRId64 ",\"max\":%" PRId64 ",", pools[i].min,
		                  pools[i].max) < 0;
		bad |= stats_json(&r->pools[i], out) < 0;
		bad |= buf_append_str(out, "}") < 0;
	}
	bad |= buf_append_str(out, "]}\n") < 0;
	return bad ? -EFBIG : 0;
}

/* ---- the plot ----------------------------------------------------------------------------- */

#define SVG_W       960
#define SVG_PANEL_H 250
#define SVG_LEFT    56
#define SVG_RIGHT   16
#define SVG_TOP     44
#define SVG_BOTTOM  36
#define SVG_COLS    (SVG_W - SVG_LEFT - SVG_RIGHT)

static const struct {
	const char *name, *color, *dash;
	double width;
} svg_lines[] = {
        {"queued jobs", "#d62728", "", 1.6},
        {"desired", "#1f77b4", "5,3", 1.4},
        {"instances up", "#2ca02c", "", 1.6},
        {"busy", "#7f7f7f", "2,2", 1.0},
};

static int32_t sample_val(const struct sim_sample *s, size_t k)
{
	switch (k) {
	case 0:
		return s->queued;
	case 1:
		return s->desired;
	case 2:
		return s->up;
	default:
		return s->busy;
	}
}

static int64_t nice_step(int64_t span, int64_t target_ticks)
{
	static const int64_t steps[] = {1,   2,   5,    10,   20,   25,    50,    100,   200,
	                                250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};

	for (size_t i = 0; i < ARRAY_SIZE(steps); i++)
		if (span / steps[i] <= target_ticks)
			return steps[i];
	return span / target_ticks + 1;
}

/* One panel: per pixel column, the highest value each series reached in it (a step plot). */
static int svg_panel(const struct sim_series *ser, int64_t end_ms, const char *label, int y0,
                     struct buf *out)
{
	int32_t col[ARRAY_SIZE(svg_lines)][SVG_COLS];
	int64_t ymax = 1, ystep, tstep_min, span_min;
	int ph = SVG_PANEL_H - SVG_TOP - SVG_BOTTOM, rc = 0;
	double yscale;

	if (end_ms <= 0)
		end_ms = 1;
	for (size_t k = 0; k < ARRAY_SIZE(svg_lines); k++)
		for (size_t c = 0; c < SVG_COLS; c++)
			col[k][c] = -1;
	for (size_t i = 0; i < ser->n; i++) {
		int64_t t1 = i + 1 < ser->n ? ser->s[i + 1].t_ms : end_ms;
		size_t c0 = (size_t)(ser->s[i].t_ms * (SVG_COLS - 1) / end_ms);
		size_t c1 = (size_t)(t1 * (SVG_COLS - 1) / end_ms);

		if (c1 > c0 && t1 * (SVG_COLS - 1) % end_ms == 0)
			c1--; /* the next sample owns the column it starts in */
		for (size_t c = c0; c <= c1 && c < SVG_COLS; c++)
			for (size_t k = 0; k < ARRAY_SIZE(svg_lines); k++)
				if (sample_val(&ser->s[i], k) > col[k][c])
					col[k][c] = sample_val(&ser->s[i], k);
	}
	for (size_t k = 0; k < ARRAY_SIZE(svg_lines); k++)
		for (size_t c = 0; c < SVG_COLS; c++)
			if (col[k][c] > ymax)
				ymax = col[k][c];
	ystep = nice_step(ymax, 5);
	ymax = (ymax + ystep - 1) / ystep * ystep;
	yscale = (double)ph / (double)ymax;

	buf_printf(out, "<g transform=\"translate(0,%d)\">\n", y0);
	buf_printf(out, "<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">", SVG_LEFT,
	           SVG_TOP - 22);
	for (const char *p = label; *p; p++) {
		if (*p == '<')
			buf_append_str(out, "&lt;");
		else if (*p == '&')
			buf_append_str(out, "&amp;");
		else if (*p == '>')
			buf_append_str(out, "&gt;");
		else
			buf_append(out, p, 1);
	}
	buf_append_str(out, "</text>\n");
	/* Axes and grid. */
	for (int64_t v = 0; v <= ymax; v += ystep) {
		double y = SVG_TOP + ph - (double)v * yscale;

		buf_printf(out,
		           "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
		           "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%" PRId64
		           "</text>\n",
		           SVG_LEFT, y, SVG_LEFT + SVG_COLS, y, SVG_LEFT - 6, y + 4, v);
	}
	span_min = (end_ms + 59999) / 60000;
	tstep_min = nice_step(span_min, 10);
	for (int64_t mnt = 0; mnt * 60000 <= end_ms; mnt += tstep_min) {
		double x = SVG_LEFT + (double)(mnt * 60000) * (SVG_COLS - 1) / (double)end_ms;

		buf_printf(
		        out,
		        "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#999\"/>"
		        "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%" PRId64
		        "</text>\n",
		        x, SVG_TOP + ph, x, SVG_TOP + ph + 4, x, SVG_TOP + ph + 16, mnt);
	}
	buf_printf(out,
	           "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">minutes</text>\n"
	           "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
	           "stroke=\"#333\"/>\n",
	           SVG_LEFT + SVG_COLS, SVG_TOP + ph + 30, SVG_LEFT, SVG_TOP, SVG_COLS, ph);
	for (size_t k = 0; k < ARRAY_SIZE(svg_lines); k++) {
		bool pen = false;
		int32_t prev = -1;

		buf_printf(out,
		           "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\"%s%s%s d=\"",
		           svg_lines[k].color, svg_lines[k].width,
		           svg_lines[k].dash[0] ? " stroke-dasharray=\"" : "", svg_lines[k].dash,
		           svg_lines[k].dash[0] ? "\"" : "");
		for (size_t c = 0; c < SVG_COLS; c++) {
			int32_t v = col[k][c];
			double y = SVG_TOP + ph - (double)v * yscale;

			if (v < 0) {
				if (pen)
					buf_printf(out, "H%zu", SVG_LEFT + c);
				pen = false;
			} else if (!pen) {
				buf_printf(out, "M%zu %.1f", SVG_LEFT + c, y);
				pen = true;
			} else if (v != prev) {
				buf_printf(out, "H%zuV%.1f", SVG_LEFT + c, y);
			}
			prev = v;
		}
		if (pen)
			buf_printf(out, "H%d", SVG_LEFT + SVG_COLS);
		buf_append_str(out, "\"/>\n");
	}
	/* The legend, top right. */
	for (size_t k = 0; k < ARRAY_SIZE(svg_lines); k++) {
		int x = SVG_LEFT + SVG_COLS - 470 + (int)k * 118;

		buf_printf(out,
		           "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
		           "stroke-width=\"2\"%s%s%s/><text x=\"%d\" y=\"%d\" "
		           "font-size=\"11\">%s</text>\n",
		           x, SVG_TOP - 8, x + 22, SVG_TOP - 8, svg_lines[k].color,
		           svg_lines[k].dash[0] ? " stroke-dasharray=\"" : "", svg_lines[k].dash,
		           svg_lines[k].dash[0] ? "\"" : "", x + 26, SVG_TOP - 4,
		           svg_lines[k].name);
	}
	rc = buf_append_str(out, "</g>\n");
	return rc;
}

int sim_render_svg(const struct sim_model *m, const struct sim_pool *pools,
                   const struct sim_result *r, const char *title, struct buf *out)
{
	int h, panels = 0, y = 0;

	if (!r->series)
		return -EINVAL;
	/* A panel per pool the trace used (a config may list many more). */
	for (size_t i = 0; i < r->npools; i++)
		panels += r->pools[i].jobs || r->pools[i].launches;
	h = panels * SVG_PANEL_H + 30;
	buf_printf(out,
	           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	           "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
	           "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
	           SVG_W, h, SVG_W, h);
	for (size_t i = 0; i < r->npools; i++) {
		char label[512];
		const struct sim_stats *st = &r->pools[i];

		if (!st->jobs && !st->launches)
			continue;
		snprintf(label, sizeof(label),
		         "%s%s%s: pool %s, max %" PRId64 ": %zu jobs, wait p95 %.0f s, %.1f idle "
		         "instance-s per job",
		         title && title[0] ? title : "", title && title[0] ? ": " : "",
		         sim_policy_name(m->policy), pools[i].name, pools[i].max, st->jobs,
		         secs(st->wait_p95_ms), per_job(idle_ms(st), st->jobs));
		svg_panel(&r->series[i], r->end_ms, label, y, out);
		y += SVG_PANEL_H;
	}
	return buf_append_str(out, "</svg>\n");
}

/* ---- the command -------------------------------------------------------------------------- */

static int read_file(const char *path, struct buf *out, FILE *err)
{
	int r = buf_read_file(out, path);

	if (r == -EFBIG)
		fprintf(err, "runner-scaler simulate: %s: larger than %zu bytes\n", path, out->max);
	else if (r < 0)
		fprintf(err, "runner-scaler simulate: %s: %s\n", path, strerror(-r));
	return r;
}

static int write_file(const char *path, const struct buf *b, FILE *err)
{
	char tmp[4096];
	FILE *f;
	int r = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp)) {
		fprintf(err, "runner-scaler simulate: %s: path too long\n", path);
		return -ENAMETOOLONG;
	}
	f = fopen(tmp, "we");
	if (!f) {
		fprintf(err, "runner-scaler simulate: %s: %s\n", tmp, strerror(errno));
		return -errno;
	}
	if (fwrite(b->data ? b->data : "", 1, b->len, f) != b->len)
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -EIO;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		fprintf(err, "runner-scaler simulate: cannot write %s: %s\n", path, strerror(-r));
		unlink(tmp);
	}
	return r;
}

static void sim_usage(FILE *f)
{
	fprintf(f,
	        "usage: runner-scaler simulate --trace FILE [--policy runnerd|tutorial]\n"
	        "         [--boot-time SECONDS[-SECONDS]] [-c scaler.conf] [--max N] [--seed N]\n"
	        "         [--interval DURATION] [--idle-timeout DURATION] [--claim-interval "
	        "DURATION]\n"
	        "         [--replace-delay DURATION] [--json] [--plot FILE.svg]\n"
	        "The trace is CSV: submit_s,duration_s[,resource_class], an optional header.\n"
	        "Model defaults (sources in scaler/simulate.h): boot %d-%d s uniform; poll every\n"
	        "%d s (runnerd without -c; with it [scaler] interval) or %d s (tutorial); claim\n"
	        "every %d s; agent idle timeout %d s; tutorial replacement after %d s; pools\n"
	        "from the trace with max %d unless -c or --max say otherwise.\n",
	        SIM_BOOT_MIN_S, SIM_BOOT_MAX_S, SIM_RUNNERD_INTERVAL_S, SIM_TUTORIAL_INTERVAL_S,
	        SIM_CLAIM_INTERVAL_S, SIM_IDLE_TIMEOUT_S, SIM_REPLACE_DELAY_S, SIM_DEFAULT_MAX);
}

static int opt_duration(const char *name, const char *v, int64_t *ms, FILE *err)
{
	uint64_t u;

	if (cfg_parse_duration(v, &u) < 0 || u > (uint64_t)SIM_STALL_S * MS_PER_S) {
		fprintf(err,
		        "runner-scaler simulate: --%s: invalid duration '%s' (use 10s, 1m, 0)\n",
		        name, v);
		return -EINVAL;
	}
	*ms = (int64_t)u;
	return 0;
}

static int opt_u64(const char *name, const char *v, uint64_t lim, uint64_t *out, FILE *err)
{
	char *end;
	unsigned long long u;

	errno = 0;
	u = strtoull(v, &end, 10);
	if (!*v || *v == '-' || *end || errno || u > lim) {
		fprintf(err,
		        "runner-scaler simulate: --%s: want a number up to %" PRIu64 ", not '%s'\n",
		        name, lim, v);
		return -EINVAL;
	}
	*out = u;
	return 0;
}

struct sim_opts {
	const char *trace, *config, *plot, *boot;
	const char *interval, *idle, *claim, *replace;
	bool json, have_max;
	uint64_t max, seed;
	enum sim_policy policy;
};

static int parse_sim_args(int argc, char **argv, struct sim_opts *o, FILE *out, FILE *err)
{
	static const struct option opts[] = {
	        {"trace", required_argument, NULL, 't'},
	        {"policy", required_argument, NULL, 'p'},
	        {"boot-time", required_argument, NULL, 'b'},
	        {"config", required_argument, NULL, 'c'},
	        {"json", no_argument, NULL, 'j'},
	        {"plot", required_argument, NULL, 'P'},
	        {"seed", required_argument, NULL, 's'},
	        {"max", required_argument, NULL, 'm'},
	        {"interval", required_argument, NULL, 'i'},
	        {"idle-timeout", required_argument, NULL, 'I'},
	        {"claim-interval", required_argument, NULL, 'C'},
	        {"replace-delay", required_argument, NULL, 'R'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->seed = 1;
	optind = 0; /* glibc: a full re-initialisation */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			o->trace = optarg;
			break;
		case 'p':
			if (strcmp(optarg, "runnerd") == 0) {
				o->policy = SIM_POLICY_RUNNERD;
			} else if (strcmp(optarg, "tutorial") == 0) {
				o->policy = SIM_POLICY_TUTORIAL;
			} else {
				fprintf(err,
				        "runner-scaler simulate: --policy: want runnerd or "
				        "tutorial, not '%s'\n",
				        optarg);
				return EX_USAGE;
			}
			break;
		case 'b':
			o->boot = optarg;
			break;
		case 'c':
			o->config = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'P':
			o->plot = optarg;
			break;
		case 's':
			if (opt_u64("seed", optarg, UINT64_MAX, &o->seed, err) < 0)
				return EX_USAGE;
			break;
		case 'm':
			if (opt_u64("max", optarg, 100000, &o->max, err) < 0)
				return EX_USAGE;
			o->have_max = true;
			break;
		case 'i':
			o->interval = optarg;
			break;
		case 'I':
			o->idle = optarg;
			break;
		case 'C':
			o->claim = optarg;
			break;
		case 'R':
			o->replace = optarg;
			break;
		case 'h':
			sim_usage(out);
			return EX_OK;
		case ':':
			fprintf(err, "runner-scaler simulate: %s needs a value\n",
			        argv[optind - 1]);
			sim_usage(err);
			return EX_USAGE;
		default:
			fprintf(err, "runner-scaler simulate: unknown option '%s'\n",
			        argv[optind - 1]);
			sim_usage(err);
			return EX_USAGE;
		}
	}
	/* The only operand is the word "simulate" itself (options may come on either side). */
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "simulate") != 0) {
			fprintf(err, "runner-scaler simulate: unexpected argument '%s'\n", argv[i]);
			return EX_USAGE;
		}
	}
	if (!o->trace) {
		fprintf(err, "runner-scaler simulate: --trace FILE is required\n");
		sim_usage(err);
		return EX_USAGE;
	}
	return -1;
}

static int build_model(const struct sim_opts *o, const struct scaler_config *cfg,
                       struct sim_model *m, FILE *err)
{
	sim_model_defaults(m, o->policy);
	m->seed = o->seed;
	if (cfg && o->policy == SIM_POLICY_RUNNERD)
		m->interval_ms = (int64_t)cfg->scaler->interval_ms;
	if (o->boot && sim_parse_boot(o->boot, &m->boot_min_ms, &m->boot_max_ms) < 0) {
		fprintf(err,
		        "runner-scaler simulate: --boot-time: want SECONDS or MIN-MAX (\"45-60\", "
		        "\"50\"), not '%s'\n",
		        o->boot);
		return -EINVAL;
	}
	if ((o->interval && opt_duration("interval", o->interval, &m->interval_ms, err) < 0) ||
	    (o->idle && opt_duration("idle-timeout", o->idle, &m->idle_timeout_ms, err) < 0) ||
	    (o->claim &&
	     opt_duration("claim-interval", o->claim, &m->claim_interval_ms, err) < 0) ||
	    (o->replace &&
	     opt_duration("replace-delay", o->replace, &m->replace_delay_ms, err) < 0))
		return -EINVAL;
	return 0;
}

/* Pools: from scaler.conf, or one per resource class of the trace. */
static int build_pools(const struct sim_opts *o, const struct scaler_config *cfg,
                       const struct sim_trace *t, struct sim_pool **pools, size_t *npools,
                       FILE *err)
{
	size_t n = cfg ? cfg->npools : t->nclasses;
	struct sim_pool *p = calloc(n ? n : 1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (cfg) {
			const struct pool_section *ps = cfg->pools[i];

			if (strlen(ps->resource_class) >= sizeof(p[i].resource_class)) {
				fprintf(err,
				        "runner-scaler simulate: pool %s: resource_class too "
				        "long\n",
				        ps->name);
				free(p);
				return -EINVAL;
			}
			str_copy(p[i].name, ps->name, sizeof(p[i].name));
			str_copy(p[i].resource_class, ps->resource_class,
			         sizeof(p[i].resource_class));
			p[i].min = ps->min;
			p[i].max = ps->max;
			p[i].headroom = ps->headroom;
			p[i].max_step = ps->max_step;
		} else {
			str_copy(p[i].name, t->classes[i][0] ? t->classes[i] : "default",
			         sizeof(p[i].name));
			str_copy(p[i].resource_class, t->classes[i], sizeof(p[i].resource_class));
			p[i].max = SIM_DEFAULT_MAX;
		}
		if (o->have_max)
			p[i].max = (int64_t)o->max;
		if (p[i].min > p[i].max)
			p[i].min = p[i].max;
		if (o->policy == SIM_POLICY_TUTORIAL) {
			/* The tutorial's function knows only max (it sets MinSize 0). */
			p[i].min = p[i].headroom = p[i].max_step = 0;
		}
	}
	*pools = p;
	*npools = n;
	return 0;
}

int simulate_main(int argc, char **argv, FILE *out, FILE *err)
{
	struct sim_opts o;
	struct scaler_config cfg;
	bool have_cfg = false;
	struct sim_model m;
	struct sim_trace t;
	struct sim_result res;
	struct sim_pool *pools = NULL;
	size_t npools = 0;
	struct buf text, report;
	char why[512] = "", *errors = NULL;
	int rc, r;

	memset(&t, 0, sizeof(t));
	memset(&res, 0, sizeof(res));
	buf_init(&text, TRACE_FILE_MAX);
	buf_init(&report, REPORT_MAX);
	rc = parse_sim_args(argc, argv, &o, out, err);
	if (rc >= 0)
		goto out;
	rc = EX_CONFIG;
	if (o.config) {
		r = scaler_config_load(o.config, &cfg, &errors);
		if (r < 0) {
			if (errors && errors[0])
				fprintf(err, "%s", errors);
			else
				fprintf(err, "%s: cannot load: %s\n", o.config, strerror(-r));
			goto out;
		}
		have_cfg = true;
	}
	rc = EX_USAGE;
	if (build_model(&o, have_cfg ? &cfg : NULL, &m, err) < 0)
		goto out;
	rc = EX_NOINPUT;
	if (read_file(o.trace, &text, err) < 0)
		goto out;
	rc = EX_DATAERR;
	r = sim_trace_parse(text.data ? text.data : "", text.len, &t, why, sizeof(why));
	if (r < 0) {
		fprintf(err, "runner-scaler simulate: %s: %s\n", o.trace,
		        r == -ENOMEM ? "out of memory" : why);
		goto out;
	}
	r = build_pools(&o, have_cfg ? &cfg : NULL, &t, &pools, &npools, err);
	if (r < 0)
		goto out;
	r = sim_run(&m, pools, npools, &t, o.plot != NULL, &res, why, sizeof(why));
	if (r == -ENOMEM) {
		rc = EX_SOFTWARE;
		fprintf(err, "runner-scaler simulate: out of memory\n");
		goto out;
	}
	if (r < 0) {
		fprintf(err, "runner-scaler simulate: %s: %s\n", o.trace, why);
		goto out;
	}
	rc = EX_SOFTWARE;
	if (o.plot) {
		const char *dot = strrchr(o.plot, '.');

		if (!dot || strcmp(dot, ".svg") != 0) {
			fprintf(err,
			        "runner-scaler simulate: --plot: only SVG is written (FILE.svg)\n");
			rc = EX_USAGE;
			goto out;
		}
		if (sim_render_svg(&m, pools, &res, NULL, &report) < 0 ||
		    write_file(o.plot, &report, err) < 0) {
			rc = EX_CANTCREAT;
			goto out;
		}
		buf_reset(&report);
	}
	r = o.json ? sim_render_json(&m, pools, &res, &report)
	           : sim_render_text(&m, pools, &res, &report);
	if (r < 0)
		goto out;
	if (fwrite(report.data, 1, report.len, out) != report.len || fflush(out) != 0) {
		rc = EX_IOERR;
		goto out;
	}
	rc = EX_OK;
out:
	if (have_cfg)
		scaler_config_free(&cfg);
	free(errors);
	free(pools);
	sim_result_free(&res);
	sim_trace_free(&t);
	buf_free(&text);
	buf_free(&report);
	return rc;
}
