/* runner-scaler simulate: the job trace (CSV) and the time options, parsed with every
 * bound a file fed from outside needs (see simulate.h). Pure. */
#include "simulate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"
#include "util.h"

/* ---- small helpers ------------------------------------------------------------------------ */

void sim_set_err(char *err, size_t n, const char *fmt, ...)
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
	*ms = whole * SIM_MS_PER_S + frac + (round_up ? 1 : 0);
	if (*ms > max_s * SIM_MS_PER_S)
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
		sim_set_err(why, n,
		            "expected 2 or 3 comma-separated fields "
		            "(submit_s,duration_s[,resource_class]), got %zu",
		            nf);
		return -EINVAL;
	}
	for (size_t i = 0; i < 2; i++) {
		shown(f[i], fl[i], q, sizeof(q));
		if (fl[i] == 0) {
			sim_set_err(why, n, "%s: empty", names[i]);
			return -EINVAL;
		}
		if (f[i][0] == '-') {
			sim_set_err(why, n, "%s: negative: \"%s\"", names[i], q);
			return -EINVAL;
		}
		r = parse_seconds(f[i], fl[i], maxes[i], dst[i]);
		if (r == -ERANGE) {
			sim_set_err(why, n, "%s: out of range (at most %" PRId64 " s): \"%s\"",
			            names[i], maxes[i], q);
			return -EINVAL;
		}
		if (r < 0) {
			sim_set_err(why, n, "%s: not a number of seconds: \"%s\"", names[i], q);
			return -EINVAL;
		}
	}
	if (nf == 3) {
		shown(f[2], fl[2], q, sizeof(q));
		if (fl[2] == 0) {
			sim_set_err(why, n, "resource_class: empty (leave out the column instead)");
			return -EINVAL;
		}
		if (fl[2] >= SIM_CLASS_MAX) {
			sim_set_err(why, n, "resource_class: longer than %d characters",
			            SIM_CLASS_MAX - 1);
			return -EINVAL;
		}
		for (size_t i = 0; i < fl[2]; i++) {
			if (!class_char(f[2][i])) {
				sim_set_err(why, n, "resource_class: invalid character in \"%s\"",
				            q);
				return -EINVAL;
			}
		}
		r = class_index(t, f[2], fl[2], &job->cls);
	} else {
		r = class_index(t, "", 0, &job->cls);
	}
	if (r < 0) {
		sim_set_err(why, n, "more than %d resource classes", SIM_CLASSES_MAX);
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
			sim_set_err(err, errlen, "line %" PRIu32 ": longer than %d bytes", line,
			            SIM_LINE_MAX);
			r = -EINVAL;
			goto out;
		}
		if (n && s[n - 1] == '\r')
			n--;
		if (memchr(s, '\0', n)) {
			sim_set_err(err, errlen, "line %" PRIu32 ": contains a NUL byte", line);
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
				sim_set_err(err, errlen, "line %" PRIu32 ": more than %d jobs",
				            line, SIM_JOBS_MAX);
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
			sim_set_err(err, errlen, "line %" PRIu32 ": %s", line, why);
			goto out;
		}
		out->n++;
	}
	if (out->n == 0) {
		sim_set_err(err, errlen, "no jobs in the trace (%" PRIu32 " lines)", line);
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

/* "MIN-MAX" or "S": seconds (decimals allowed) up to an hour, MIN <= MAX, into ms. */
static int parse_range(const char *s, int64_t *lo_ms, int64_t *hi_ms)
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

int sim_parse_boot(const char *s, int64_t *lo_ms, int64_t *hi_ms)
{
	return parse_range(s, lo_ms, hi_ms);
}

int sim_parse_resume(const char *s, int64_t *lo_ms, int64_t *hi_ms)
{
	return parse_range(s, lo_ms, hi_ms);
}

int sim_parse_window(const char *s, int64_t *from_ms, int64_t *to_ms)
{
	const char *dash;
	int64_t lo, hi;

	if (!s || !(dash = strchr(s, '-')))
		return -EINVAL;
	if (parse_seconds(s, (size_t)(dash - s), SIM_SUBMIT_MAX_S, &lo) < 0 ||
	    parse_seconds(dash + 1, strlen(dash + 1), SIM_SUBMIT_MAX_S, &hi) < 0 || hi <= lo)
		return -EINVAL;
	*from_ms = lo;
	*to_ms = hi;
	return 0;
}
