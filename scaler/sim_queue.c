/* runner-scaler simulate: the containers of the model (see sim_internal.h): the event heap, a
 * FIFO and a list of indices. Pure. */
#include "sim_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool ev_less(const struct sim_ev *a, const struct sim_ev *b)
{
	if (a->t != b->t)
		return a->t < b->t;
	if (a->type != b->type)
		return a->type < b->type;
	return a->seq < b->seq;
}

int sim_heap_push(struct sim_heap *h, int64_t t, uint8_t type, size_t idx, uint32_t epoch)
{
	struct sim_ev e = {.t = t, .seq = h->seq++, .idx = idx, .epoch = epoch, .type = type};
	size_t i;

	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 256;
		struct sim_ev *nv = realloc(h->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		h->v = nv;
		h->cap = ncap;
	}
	i = h->n++;
	while (i > 0 && ev_less(&e, &h->v[(i - 1) / 2])) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = e;
	return 0;
}

struct sim_ev sim_heap_pop(struct sim_heap *h)
{
	struct sim_ev top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && ev_less(&h->v[c + 1], &h->v[c]))
			c++;
		if (!ev_less(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

bool sim_fifo_push(struct sim_fifo *f, size_t v)
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

size_t sim_fifo_pop(struct sim_fifo *f)
{
	size_t v = f->v[f->head++];

	f->len--;
	if (!f->len)
		f->head = 0;
	return v;
}

bool sim_ilist_push(struct sim_ilist *l, size_t v)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		size_t *nv = realloc(l->v, ncap * sizeof(*nv));

		if (!nv)
			return false;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = v;
	return true;
}
