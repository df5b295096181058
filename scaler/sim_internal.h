/* What the parts of runner-scaler simulate share and nobody else needs. */
#ifndef RUNNERD_SIM_INTERNAL_H
#define RUNNERD_SIM_INTERNAL_H

#include <stddef.h>

#define SIM_MS_PER_S 1000

/* vsnprintf into err (n bytes), when there is one: the messages of the -EINVAL returns. */
void sim_set_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
