#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_LINE_MAX    4096
#define LOG_SECRETS_MAX 8

static const char *log_ident = "runnerd";
static int log_max_priority = LOG_INFO;
static int log_journal = -1; /* -1: not yet decided */
static char *log_secrets[LOG_SECRETS_MAX];
/* runnerd's boot worker registers the token while the main thread may be logging. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *ident)
{
	log_ident = ident;
	/* journald sets JOURNAL_STREAM for units whose stderr goes to it: use <N> prefixes then. */
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(int max_priority)
{
	log_max_priority = max_priority;
}

int log_add_secret(const char *secret)
{
	size_t i;
	int r = -ENOSPC;

	if (!secret || strlen(secret) < 4)
		return 0;
	pthread_mutex_lock(&log_lock);
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (log_secrets[i] && strcmp(log_secrets[i], secret) == 0) {
			r = 0;
			goto out;
		}
	}
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (!log_secrets[i]) {
			log_secrets[i] = strdup(secret);
			r = log_secrets[i] ? 0 : -ENOMEM;
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&log_lock);
	return r;
}

void log_forget_secrets(void)
{
	size_t i;

	pthread_mutex_lock(&log_lock);
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (log_secrets[i]) {
			explicit_bzero(log_secrets[i], strlen(log_secrets[i]));
			free(log_secrets[i]);
			log_secrets[i] = NULL;
		}
	}
	pthread_mutex_unlock(&log_lock);
}

static void log_redact_locked(char *s, size_t cap)
{
	static const char mark[] = "<redacted>";
	size_t i;

	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		const char *sec = log_secrets[i];
		size_t sl;
		char *p;

		if (!sec)
			continue;
		sl = strlen(sec);
		while ((p = strstr(s, sec)) != NULL) {
			size_t tail = strlen(p + sl);
			size_t ml = sizeof(mark) - 1;
			size_t room = cap - (size_t)(p - s) - 1;

			if (ml > room)
				ml = room;
			if (ml + tail > room)
				tail = room - ml;
			memmove(p + ml, p + sl, tail);
			memcpy(p, mark, ml);
			p[ml + tail] = '\0';
		}
	}
}

void log_redact(char *s, size_t cap)
{
	pthread_mutex_lock(&log_lock);
	log_redact_locked(s, cap);
	pthread_mutex_unlock(&log_lock);
}

void log_msg(int priority, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	int saved = errno;
	va_list ap;

	if (priority > log_max_priority)
		return;
	if (log_journal < 0)
		log_journal = getenv("JOURNAL_STREAM") != NULL;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	log_redact_locked(line, sizeof(line));
	if (log_journal)
		fprintf(stderr, "<%d>%s\n", priority, line);
	else
		fprintf(stderr, "%s: %s\n", log_ident, line);
	pthread_mutex_unlock(&log_lock);
	errno = saved;
}
