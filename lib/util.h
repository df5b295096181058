/* Small shared helpers. */
#ifndef RUNNERD_UTIL_H
#define RUNNERD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic and wall clocks in milliseconds. */
uint64_t now_mono_ms(void);
uint64_t now_wall_ms(void);
/* strlcpy semantics: returns strlen(src); truncates; dst always NUL-terminated when n > 0. */
size_t str_copy(char *dst, const char *src, size_t n);
/* snprintf that may truncate, on purpose: texts for log lines and messages; dst NULL or n 0:
 * nothing (an optional reason buffer). */
void str_printf(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Parse an RFC 3339 / ISO 8601 UTC time such as 2024-01-01T06:00:00Z (fraction allowed). */
int parse_iso8601(const char *s, time_t *out);
/* Uniform random 32 bits from getrandom(); never fails (falls back to a xorshift seed). */
uint32_t random_u32(void);
/* AWS full jitter: uniform in [0, min(cap_ms, base_ms << attempt)]; attempt starts at 0. */
uint64_t backoff_full_jitter_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, uint32_t rnd);
/* Sleep, restarting on EINTR, until the duration passed. */
void sleep_ms(uint64_t ms);

#endif
