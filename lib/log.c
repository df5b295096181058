#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_LINE_MAX 4096
#define LOG_SECRETS_MAX 8

static const char *log_ident = "runnerd";
static int log_max_priority = LOG_INFO;
static int log_journal = -1; /* -1: not yet decided */
static char *log_secrets[LOG_SECRETS_MAX];

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

	if (!secret || strlen(secret) < 4)
		return 0;
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (log_secrets[i] && strcmp(log_secrets[i], secret) == 0)
			return 0;
	}
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (!log_secrets[i]) {
			log_secrets[i] = strdup(secret);
			return log_secrets[i] ? 0 : -ENOMEM;
		}
	}
	return -ENOSPC;
}

void log_forget_secrets(void)
{
	size_t i;

	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (log_secrets[i]) {
			explicit_bzero(log_secrets[i], strlen(log_secrets[i]));
			free(log_secrets[i]);
			log_secrets[i] = NULL;
		}
	}
}

void log_redact(char *s, size_t cap)
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
	log_redact(line, sizeof(line));
	if (log_journal)
		fprintf(stderr, "<%d>%s\n", priority, line);
	else
		fprintf(stderr, "%s: %s\n", log_ident, line);
	errno = saved;
}
