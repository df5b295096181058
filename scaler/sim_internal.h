/* What the parts of runner-scaler simulate share and nobody else needs. */
#ifndef RUNNERD_SIM_INTERNAL_H
#define RUNNERD_SIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MS_PER_S 1000

/* vsnprintf into err (n bytes), when there is one: the messages of the -EINVAL returns. */
void sim_set_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- sim_queue.c: the containers of the model ------------------------------------------- */

/* An event: at t, of a type (at equal times, lower types first, then the order pushed). */
struct sim_ev {
	int64_t t;
	uint64_t seq;
	size_t idx;
	uint32_t epoch;
	uint8_t type;
};

/* The events to come: a binary min-heap. */
struct sim_heap {
	struct sim_ev *v;
	size_t n, cap;
	uint64_t seq; /* pushes so far */
};

/* 0 or -ENOMEM. */
int sim_heap_push(struct sim_heap *h, int64_t t, uint8_t type, size_t idx, uint32_t epoch);
/* The first event; h->n must be above 0. */
struct sim_ev sim_heap_pop(struct sim_heap *h);

/* A first-in first-out queue of indices. */
struct sim_fifo {
	size_t *v;
	size_t head, len, cap;
};

bool sim_fifo_push(struct sim_fifo *f, size_t v); /* false: out of memory */
size_t sim_fifo_pop(struct sim_fifo *f);          /* f->len must be above 0 */

/* A growable list of indices. */
struct sim_ilist {
	size_t *v;
	size_t n, cap;
};

bool sim_ilist_push(struct sim_ilist *l, size_t v); /* false: out of memory */

#endif
