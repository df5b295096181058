/* runner-scaler simulate: the warm pool's counts and costs (see sim_warm.h). Pure. */
#include "sim_warm.h"

#include <string.h>

/* The stopped-instance integral up to now: every change of stopped goes through here first. */
static void settle(struct sim_warm *w, int64_t now_ms)
{
	if (now_ms > w->since_ms) {
		w->stopped_ms += w->stopped * (now_ms - w->since_ms);
		w->since_ms = now_ms;
	}
}

void sim_warm_init(struct sim_warm *w, int64_t size, int64_t now_ms)
{
	memset(w, 0, sizeof(*w));
	w->size = size > 0 ? size : 0;
	w->stopped = w->size;
	w->since_ms = now_ms;
}

bool sim_warm_take(struct sim_warm *w, int64_t now_ms)
{
	if (w->stopped <= 0)
		return false;
	settle(w, now_ms);
	w->stopped--;
	w->taken++;
	/* The pool is kept at N: a refill is launched into it at once. */
	w->warming++;
	w->warming_sum_ms += now_ms;
	w->refills++;
	return true;
}

void sim_warm_stopped(struct sim_warm *w, int64_t now_ms, int64_t launched_ms)
{
	if (w->warming <= 0)
		return;
	settle(w, now_ms);
	w->warming--;
	w->warming_sum_ms -= launched_ms;
	w->running_ms += now_ms - launched_ms;
	w->stopped++;
}

void sim_warm_finish(struct sim_warm *w, int64_t now_ms)
{
	settle(w, now_ms);
	w->running_ms += w->warming * now_ms - w->warming_sum_ms;
	w->warming_sum_ms = w->warming * now_ms; /* counted: a second finish adds nothing */
}
