/* The one logging header. Daemons log; library code returns 0 or -errno and never logs. */
#ifndef RUNNERD_LOG_H
#define RUNNERD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/* ident goes first on every line when stderr is not the journal. Lines carry a "<N>" priority
 * prefix when JOURNAL_STREAM is set (systemd-journald reads it), so priorities survive. */
void log_init(const char *ident);
void log_set_level(int max_priority); /* LOG_DEBUG shows everything; default LOG_INFO */
/* Register a secret: from now on every occurrence in a logged line prints as <redacted>.
 * The log module keeps its own copy and wipes it on log_forget_secrets(). Strings shorter
 * than 4 bytes are ignored (they would redact ordinary words). */
int log_add_secret(const char *secret);
void log_forget_secrets(void);

void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)  log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)    log_msg(LOG_ERR, __VA_ARGS__)

/* Replace every registered secret in s (in place, NUL-terminated, cap bytes) — exposed for tests.
 */
void log_redact(char *s, size_t cap);

#endif
