/* Launch-failure bookkeeping of one pool (see launches.h). Pure: no clock, no I/O. */
#include "launches.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void launches_init(struct launch_tracker *t)
{
	memset(t, 0, sizeof(*t));
}

void launches_reset(struct launch_tracker *t)
{
	free(t->v);
	launches_init(t);
}

void launches_forget_instances(struct launch_tracker *t)
{
	/* the connected ones were judged already (a success) */
	t->forgotten += t->n - launches_count(t, LAUNCH_CONNECTED);
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool launches_valid_id(const char *s)
{
	size_t n = 0;

	if (!s || s[0] != 'i' || s[1] != '-')
		return false;
	for (s += 2; s[n]; n++)
		if (!is_hex(s[n]) || n >= 17)
			return false;
	return n == 8 || n == 17;
}

static bool leaving_state(const char *s)
{
	return strncmp(s, "Terminat", 8) ==
	       0; /* Terminating, Terminating:Wait|Proceed, Terminated */
}

static bool detached_state(const char *s)
{
	return strncmp(s, "Detach", 6) == 0; /* Detaching, Detached */
}

static int cmp_obs(const void *a, const void *b)
{
	const struct asg_instance *x = *(const struct asg_instance *const *)a;
	const struct asg_instance *y = *(const struct asg_instance *const *)b;

	return strcmp(x->id, y->id);
}

/* e is no longer alive in the group: true to keep it (waiting for its verdict). */
static bool on_leave(struct launch_tracker *t, struct launch_inst *e, uint64_t now_ms)
{
	switch (e->state) {
	case LAUNCH_UNCONFIRMED:
		/* A scale-in may have picked it: not judged. */
		if (e->unprotected && t->lowered_at && t->lowered_at + 1 >= e->first_seen) {
			t->forgotten++;
			return false;
		}
		e->state = LAUNCH_LEFT;
		e->left_ms = now_ms;
		return true;
	case LAUNCH_LEFT:
		if (now_ms >= e->left_ms && now_ms - e->left_ms > LAUNCH_VERDICT_MAX_AGE_MS) {
			t->forgotten++;
			return false;
		}
		return true;
	case LAUNCH_CONNECTED:
	default:
		return false;
	}
}

int launches_observe(struct launch_tracker *t, const struct asg_instance *inst, size_t n,
                     uint64_t now_ms, uint64_t max_gap_ms)
{
	const struct asg_instance **obs = NULL;
	struct launch_inst *nv = NULL;
	size_t no = 0, room, alloc, i = 0, j = 0, k = 0, added = 0, untracked = 0;
	size_t unprotected = 0;
	int gap = 0;

	if (max_gap_ms && t->observations && now_ms > t->observed_ms &&
	    now_ms - t->observed_ms > max_gap_ms) {
		launches_forget_instances(t);
		gap = 1;
	}

	if (n) {
		obs = malloc(n * sizeof(*obs));
		if (!obs)
			return -ENOMEM;
	}
	for (size_t x = 0; x < n; x++) {
		bool alive = !leaving_state(inst[x].lifecycle_state) &&
		             !detached_state(inst[x].lifecycle_state);

		if (alive && !inst[x].protected_from_scale_in)
			unprotected++;
		if (launches_valid_id(inst[x].id))
			obs[no++] = &inst[x];
		else if (alive)
			untracked++; /* nothing can be known of it: like one over the bound */
	}
	if (no > 1)
		qsort(obs, no, sizeof(*obs), cmp_obs);
	room = LAUNCH_TRACK_MAX > t->n ? LAUNCH_TRACK_MAX - t->n : 0;
	alloc = t->n + (no < room ? no : room);
	if (alloc) {
		nv = malloc(alloc * sizeof(*nv));
		if (!nv) {
			free(obs);
			return -ENOMEM;
		}
	}
	t->observations++;
	while (i < t->n || j < no) {
		const struct asg_instance *o = NULL;
		struct launch_inst e;
		int c;

		if (j < no && j > 0 && strcmp(obs[j]->id, obs[j - 1]->id) == 0) {
			j++; /* listed twice: once is enough */
			continue;
		}
		if (i >= t->n)
			c = 1;
		else if (j >= no)
			c = -1;
		else
			c = strcmp(t->v[i].id, obs[j]->id);
		if (c > 0) {
			/* Listed for the first time: tracked when alive, and while there is room.
			 */
			o = obs[j++];
			if (leaving_state(o->lifecycle_state) || detached_state(o->lifecycle_state))
				continue;
			if (added >= room) {
				/* Counted per read, not added up: the same instances come back
				 * listed at every read while the tracker stays full. */
				untracked++;
				continue;
			}
			memset(&e, 0, sizeof(e));
			str_copy(e.id, o->id, sizeof(e.id));
			e.state = LAUNCH_UNCONFIRMED;
			e.unprotected = !o->protected_from_scale_in;
			e.first_seen = t->observations;
			nv[k++] = e;
			added++;
			continue;
		}
		e = t->v[i++];
		e.matched = false;
		if (c == 0)
			o = obs[j++];
		if (!o || leaving_state(o->lifecycle_state)) {
			if (on_leave(t, &e, now_ms))
				nv[k++] = e;
			continue;
		}
		if (detached_state(o->lifecycle_state)) {
			if (e.state == LAUNCH_LEFT && on_leave(t, &e, now_ms))
				nv[k++] = e;
			continue;
		}
		if (e.state == LAUNCH_LEFT)
			e.state = LAUNCH_UNCONFIRMED; /* listed alive again: not gone after all */
		e.unprotected = !o->protected_from_scale_in;
		nv[k++] = e;
	}
	free(obs);
	free(t->v);
	t->v = nv;
	t->n = k;
	t->cap = alloc;
	t->observed_ms = now_ms;
	t->untracked_now = untracked;
	t->unprotected_now = unprotected;
	return gap;
}

bool launches_need_list(const struct launch_tracker *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].state != LAUNCH_CONNECTED)
			return true;
	return false;
}

size_t launches_count(const struct launch_tracker *t, enum launch_state st)
{
	size_t c = 0;

	for (size_t i = 0; i < t->n; i++)
		c += t->v[i].state == st;
	return c;
}

void launches_lowered(struct launch_tracker *t)
{
	t->lowered_at = t->observations;
}

size_t launches_unknown(const struct launch_tracker *t, bool list_read)
{
	return t->untracked_now + (list_read ? 0 : launches_count(t, LAUNCH_UNCONFIRMED));
}

size_t launches_ids_in_name(const char *name, char (*ids)[LAUNCH_ID_MAX], size_t max)
{
	size_t found = 0;

	for (const char *p = name; p && (p = strstr(p, "i-")) != NULL; p++) {
		size_t h = 0;

		while (h < 17 && is_hex(p[2 + h]))
			h++;
		if (h >= 8 && found < max) {
			memcpy(ids[found], p, 10);
			ids[found++][10] = '\0';
		}
		if (h == 17 && found < max) {
			memcpy(ids[found], p, 19);
			ids[found++][19] = '\0';
		}
	}
	return found;
}

static struct launch_inst *find(struct launch_tracker *t, const char *id)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->v[mid].id, id);

		if (c == 0)
			return &t->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void launches_runner(struct launch_tracker *t, const char *name)
{
	char ids[8][LAUNCH_ID_MAX];
	size_t n = launches_ids_in_name(name, ids, ARRAY_SIZE(ids));

	for (size_t i = 0; i < n; i++) {
		struct launch_inst *e = find(t, ids[i]);

		if (e)
			e->matched = true;
	}
}

static void keep_id(struct launch_tracker *t, const char *id)
{
	if (t->nids == LAUNCH_IDS_KEPT) {
		memmove(t->ids[0], t->ids[1], (LAUNCH_IDS_KEPT - 1) * sizeof(t->ids[0]));
		t->nids--;
	}
	str_copy(t->ids[t->nids++], id, sizeof(t->ids[0]));
}

void launches_judge(struct launch_tracker *t, unsigned threshold, uint64_t now_ms,
                    struct launch_verdict *v)
{
	size_t k = 0;

	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < t->n; i++) {
		struct launch_inst *e = &t->v[i];

		if (e->matched) {
			e->matched = false;
			if (e->state != LAUNCH_CONNECTED) {
				if (!v->connected++)
					str_copy(v->connected_id, e->id, sizeof(v->connected_id));
			}
			if (e->state == LAUNCH_LEFT)
				continue; /* its runner was there after all: judged, a success */
			e->state = LAUNCH_CONNECTED;
		} else if (e->state == LAUNCH_LEFT) {
			if (v->nfailed_ids < LAUNCH_IDS_KEPT)
				str_copy(v->failed_ids[v->nfailed_ids++], e->id,
				         sizeof(v->failed_ids[0]));
			keep_id(t, e->id);
			v->failed++;
			continue; /* judged: a failed launch */
		}
		t->v[k++] = *e;
	}
	t->n = k;
	t->failed_total += v->failed;
	t->streak = t->streak > UINT32_MAX - v->failed ? UINT32_MAX : t->streak + v->failed;
	if (v->connected) {
		/* A runner connected: the launches work (at least some): reset. */
		v->backoff_ended = t->backoff_until > now_ms;
		t->streak = 0;
		t->level = 0;
		t->backoff_until = 0;
		t->nids = 0;
		return;
	}
	if (v->failed && threshold && t->streak >= threshold && now_ms >= t->backoff_until) {
		v->backoff_ms = launches_backoff_ms(t->level);
		v->backoff_started = true;
		t->backoff_until = now_ms + v->backoff_ms;
		if (t->level < 16)
			t->level++;
	}
}

uint64_t launches_backoff_ms(unsigned level)
{
	if (level >= 16)
		return LAUNCH_BACKOFF_MAX_MS;
	return LAUNCH_BACKOFF_FIRST_MS << level < LAUNCH_BACKOFF_MAX_MS
	               ? LAUNCH_BACKOFF_FIRST_MS << level
	               : LAUNCH_BACKOFF_MAX_MS;
}

uint64_t launches_backoff_left_ms(const struct launch_tracker *t, uint64_t now_ms)
{
	return t->backoff_until > now_ms ? t->backoff_until - now_ms : 0;
}

void launches_format_ids(const char (*ids)[LAUNCH_ID_MAX], size_t n, uint64_t total, char *out,
                         size_t len)
{
	size_t o = 0;

	if (len == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < n && o < len; i++) {
		int w = snprintf(out + o, len - o, "%s%s", i ? ", " : "", ids[i]);

		if (w < 0)
			break;
		o += (size_t)w;
	}
	if (total > n && o < len)
		(void)snprintf(out + o, len - o, " and %" PRIu64 " more", total - n);
}
