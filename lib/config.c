/* Typed INI configuration on inih (see config.h).
 *
 * How inih is driven: its handler gets no line numbers and is never called for a section header
 * that has no keys, so our reader (cfg_reader) does the line work itself. It counts lines, rejects
 * overlong lines and NUL bytes, parses [section] headers, and hands only "key = value" lines to
 * inih, which splits them and strips inline comments. Every other line reaches inih as a blank
 * line. A key line for which inih never calls the handler had no '=' (or ':'): a syntax error.
 *
 * Syntax decisions (for runnerd.conf(5)):
 * - Comments: ';' or '#' at the start of a line; ';' after whitespace inline. An inline '#' is
 *   part of the value (URLs keep their fragments).
 * - No continuation lines: inih's multi-line mode is off, so indentation never matters, and an
 *   indented line that is not "key = value" is a syntax error rather than a silent append.
 * - A value cannot keep leading/trailing whitespace nor " ;" (an inline comment), so printing
 *   such a value (reachable only through the environment) does not re-parse to the same value.
 * - Sizes: K, KB and KiB (any case) all mean 1024; M, G, T likewise binary.
 * - Durations: units d h m s ms, largest first, each at most once; a bare number is seconds;
 *   no fractions, no signs, no spaces.
 * - Integers are decimal only. Enum choices and keys are case-sensitive.
 * - An empty environment variable counts as unset.
 * - A singleton section may appear once; a required string or list set empty in the file is an
 *   error too.
 * - inih's options are process globals: they are set on every load; loading is not thread-safe. */
#include "config.h"

#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CFG_LINE_MAX   4096            /* bytes in one line, newline excluded */
#define CFG_FILE_MAX   BUF_MAX_DEFAULT /* a config file larger than 1 MiB is refused (-EFBIG) */
#define CFG_ERRORS_MAX 100             /* error lines kept; a garbage file must not flood stderr */
#define CFG_SHOW_MAX   64              /* bytes of a bad value or name quoted in a message */
#define CFG_NAMED_MAX  1024            /* max_instances == 0 */
#define CFG_WHY_MAX    512
#define REDACTED       "<redacted>"

enum cfg_src { SRC_UNSET, SRC_FILE, SRC_ENV, SRC_DEFAULT };

struct cfg_inst {
	const struct cfg_section *sec;
	void *data;
	unsigned *lines;    /* per key: line set on (SRC_FILE), else 0 */
	unsigned char *src; /* per key: enum cfg_src */
	unsigned line;      /* header line; 0 for a singleton absent from the file */
};

struct cfg {
	const struct cfg_section *schema;
	size_t nsections;
	char *path;
	struct cfg_inst *insts; /* singletons first (schema order), then named ones in file order */
	size_t ninsts, cap;
};

enum load_state { ST_NONE, ST_SKIP, ST_OK };

struct load {
	struct cfg *c;
	const char *text;
	size_t len, pos;
	unsigned lineno;
	unsigned pending; /* a key line inih has not answered for yet, or 0 */
	enum load_state state;
	size_t cur; /* index into c->insts when state == ST_OK */
	struct buf errs;
	unsigned nerr;
	bool oom;
};

union cfg_val {
	char *s;
	bool b;
	int64_t i;
	uint64_t u;
	struct cfg_list l;
	int e;
};

/* ---- pure value parsers ---- */

static const struct {
	const char *name;
	uint64_t ms;
} dur_units[] = {
        {"d", 86400000ULL}, {"h", 3600000ULL}, {"m", 60000ULL}, {"s", 1000ULL}, {"ms", 1ULL},
};

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Digits at *p into *v; false on overflow (the digits are consumed either way). */
static bool scan_u64(const char **p, uint64_t *v)
{
	bool ok = true;

	*v = 0;
	for (; is_digit(**p); (*p)++) {
		unsigned d = (unsigned)(**p - '0');

		if (*v > (UINT64_MAX - d) / 10)
			ok = false;
		else
			*v = *v * 10 + d;
	}
	return ok;
}

int cfg_parse_duration(const char *s, uint64_t *ms)
{
	const char *p = s;
	uint64_t total = 0;
	bool range = false;
	int last = -1;

	if (!s || !*s)
		return -EINVAL;
	while (*p) {
		uint64_t n;
		int u = -1;

		if (!is_digit(*p))
			return -EINVAL;
		if (!scan_u64(&p, &n))
			range = true;
		if (!*p && last < 0) {
			u = 3; /* a bare number is seconds */
		} else {
			/* "ms" before "m", so try the longest unit name first */
			if (p[0] == 'm' && p[1] == 's')
				u = 4;
			else if (*p == 'd')
				u = 0;
			else if (*p == 'h')
				u = 1;
			else if (*p == 'm')
				u = 2;
			else if (*p == 's')
				u = 3;
			else
				return -EINVAL;
			p += strlen(dur_units[u].name);
		}
		if (u <= last) /* largest unit first, each once: "1m1h" is likely a typo */
			return -EINVAL;
		last = u;
		if (n > UINT64_MAX / dur_units[u].ms || total > UINT64_MAX - n * dur_units[u].ms)
			range = true;
		else
			total += n * dur_units[u].ms;
	}
	if (range)
		return -ERANGE;
	*ms = total;
	return 0;
}

void cfg_format_duration(uint64_t ms, char *out, size_t n)
{
	size_t off = 0, i;

	if (!out || !n)
		return;
	if (ms == 0) {
		snprintf(out, n, "0s");
		return;
	}
	out[0] = '\0';
	for (i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++) {
		uint64_t q = ms / dur_units[i].ms;
		int w;

		ms %= dur_units[i].ms;
		if (!q)
			continue;
		w = snprintf(out + off, n - off, "%" PRIu64 "%s", q, dur_units[i].name);
		if (w < 0 || (size_t)w >= n - off)
			return; /* truncated, still NUL-terminated */
		off += (size_t)w;
	}
}

int cfg_parse_size(const char *s, uint64_t *bytes)
{
	const char *p = s;
	unsigned shift = 0;
	uint64_t n;
	bool ok;

	if (!s || !is_digit(*s))
		return -EINVAL;
	ok = scan_u64(&p, &n);
	switch (tolower((unsigned char)*p)) {
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	}
	if (shift) {
		p++;
		if (tolower((unsigned char)*p) == 'i' && tolower((unsigned char)p[1]) == 'b')
			p += 2;
		else if (tolower((unsigned char)*p) == 'b')
			p++;
	} else if (tolower((unsigned char)*p) == 'b') {
		p++;
	}
	if (*p)
		return -EINVAL;
	if (!ok || (shift && n > (UINT64_MAX >> shift)))
		return -ERANGE;
	*bytes = n << shift;
	return 0;
}

int cfg_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	size_t i;

	if (!s)
		return -EINVAL;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int cfg_parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	/* strtoll skips leading space; a value with space is not a number here */
	if (!s || !*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*out = v;
	return 0;
}

/* "1MiB" when exact in a binary unit, else plain bytes: re-parses to the same value. */
static void format_size(uint64_t b, char *out, size_t n)
{
	static const struct {
		unsigned shift;
		const char *name;
	} units[] = {{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}};
	size_t i;

	for (i = 0; b && i < sizeof(units) / sizeof(units[0]); i++) {
		if (b % (1ULL << units[i].shift) == 0) {
			snprintf(out, n, "%" PRIu64 "%s", b >> units[i].shift, units[i].name);
			return;
		}
	}
	snprintf(out, n, "%" PRIu64, b);
}

/* ---- helpers ---- */

/* A bounded, printable copy of s for messages: control bytes become '?', long text "...". */
static const char *show(const char *s, char *tmp, size_t n)
{
	size_t i, lim = n - 1;
	bool cut = false;

	if (lim > CFG_SHOW_MAX)
		lim = CFG_SHOW_MAX;
	for (i = 0; s[i]; i++) {
		if (i == lim) {
			cut = true;
			break;
		}
		tmp[i] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
	}
	tmp[i] = '\0';
	if (cut && i >= 3)
		memcpy(tmp + i - 3, "...", 3);
	return tmp;
}

static void add_error(struct load *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_error(struct load *l, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	l->nerr++;
	if (l->nerr > CFG_ERRORS_MAX + 1)
		return;
	if (l->nerr == CFG_ERRORS_MAX + 1) {
		snprintf(line, sizeof(line), "%s: too many errors, the rest are not shown",
		         l->c->path);
	} else {
		va_start(ap, fmt);
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
	}
	if (buf_append_str(&l->errs, line) < 0 || buf_append(&l->errs, "\n", 1) < 0)
		l->oom = true;
}

static const struct cfg_key *key_at(const struct cfg_inst *in, size_t k)
{
	return &in->sec->keys[k];
}

static void *slot(const struct cfg_inst *in, size_t k)
{
	return (char *)in->data + key_at(in, k)->offset;
}

static char **name_slot(const struct cfg_inst *in)
{
	return (char **)(void *)((char *)in->data + in->sec->name_offset);
}

/* "agent" or "pool linux-large", for messages and printing. */
static const char *sect_label(const struct cfg_inst *in, char *tmp, size_t n)
{
	if (!in->sec->named)
		return in->sec->name;
	snprintf(tmp, n, "%s %s", in->sec->name, *name_slot(in) ? *name_slot(in) : "");
	return tmp;
}

static void wipe_str(char *s, bool secret)
{
	if (s && secret)
		explicit_bzero(s, strlen(s));
	free(s);
}

static void free_list(struct cfg_list *l, bool secret)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		wipe_str(l->items[i], secret);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static void free_value(const struct cfg_key *k, void *p)
{
	bool secret = k->flags & CFG_SECRET;

	if (k->type == CFG_STRING) {
		wipe_str(*(char **)p, secret);
		*(char **)p = NULL;
	} else if (k->type == CFG_LIST) {
		free_list(p, secret);
	}
}

static bool is_list_sep(char ch)
{
	return ch == ',' || isspace((unsigned char)ch);
}

static int split_list(const char *v, struct cfg_list *out)
{
	const char *p;
	size_t n = 0, i = 0;

	out->items = NULL;
	out->n = 0;
	for (p = v; *p;) {
		while (*p && is_list_sep(*p))
			p++;
		if (!*p)
			break;
		n++;
		while (*p && !is_list_sep(*p))
			p++;
	}
	if (!n)
		return 0;
	out->items = calloc(n, sizeof(char *));
	if (!out->items)
		return -ENOMEM;
	for (p = v; i < n;) {
		const char *w;

		while (is_list_sep(*p))
			p++;
		w = p;
		while (*p && !is_list_sep(*p))
			p++;
		out->items[i] = strndup(w, (size_t)(p - w));
		if (!out->items[i]) {
			out->n = i;
			free_list(out, false);
			return -ENOMEM;
		}
		i++;
	}
	out->n = n;
	return 0;
}

/* Bounds are active unless min == max == 0; a max below min means "no upper bound". */
static bool has_bounds(const struct cfg_key *k)
{
	return k->min != 0 || k->max != 0;
}

static void range_why(const struct cfg_key *k, char *why, size_t n)
{
	char lo[64], hi[64];

	if (k->type == CFG_INT) {
		snprintf(lo, sizeof(lo), "%" PRId64, k->min);
		snprintf(hi, sizeof(hi), "%" PRId64, k->max);
	} else if (k->type == CFG_DURATION) {
		cfg_format_duration(k->min > 0 ? (uint64_t)k->min : 0, lo, sizeof(lo));
		cfg_format_duration(k->max > 0 ? (uint64_t)k->max : 0, hi, sizeof(hi));
	} else {
		format_size(k->min > 0 ? (uint64_t)k->min : 0, lo, sizeof(lo));
		format_size(k->max > 0 ? (uint64_t)k->max : 0, hi, sizeof(hi));
	}
	if (k->max < k->min)
		snprintf(why, n, "must be at least %s", lo);
	else
		snprintf(why, n, "out of range %s..%s", lo, hi);
}

static bool u64_in_range(const struct cfg_key *k, uint64_t v)
{
	uint64_t lo = k->min > 0 ? (uint64_t)k->min : 0;

	if (!has_bounds(k))
		return true;
	if (v < lo)
		return false;
	return k->max < k->min || v <= (uint64_t)(k->max > 0 ? k->max : 0);
}

/* Parse v for key k into *out. 0; -EINVAL with why filled; -ENOMEM. */
static int parse_value(const struct cfg_key *k, const char *v, union cfg_val *out, char *why,
                       size_t n)
{
	char tmp[CFG_SHOW_MAX + 1];
	const char *shown = (k->flags & CFG_SECRET) ? REDACTED : show(v, tmp, sizeof(tmp));
	size_t i;
	int r;

	memset(out, 0, sizeof(*out));
	switch (k->type) {
	case CFG_STRING:
		out->s = strdup(v);
		return out->s ? 0 : -ENOMEM;
	case CFG_LIST:
		return split_list(v, &out->l);
	case CFG_BOOL:
		if (cfg_parse_bool(v, &out->b) < 0) {
			snprintf(why, n, "invalid boolean '%s' (use true or false)", shown);
			return -EINVAL;
		}
		return 0;
	case CFG_INT:
		r = cfg_parse_int(v, &out->i);
		if (r == -ERANGE) {
			snprintf(why, n, "integer '%s' too large", shown);
			return -EINVAL;
		}
		if (r < 0) {
			snprintf(why, n, "invalid integer '%s'", shown);
			return -EINVAL;
		}
		if (has_bounds(k) && (out->i < k->min || (k->max >= k->min && out->i > k->max))) {
			range_why(k, why, n);
			return -EINVAL;
		}
		return 0;
	case CFG_DURATION:
	case CFG_SIZE:
		if (k->type == CFG_DURATION)
			r = cfg_parse_duration(v, &out->u);
		else
			r = cfg_parse_size(v, &out->u);
		if (r == -ERANGE) {
			snprintf(why, n, "%s '%s' too large",
			         k->type == CFG_DURATION ? "duration" : "size", shown);
			return -EINVAL;
		}
		if (r < 0 && k->type == CFG_DURATION) {
			snprintf(why, n, "invalid duration '%s' (use 10s, 1m, 5h15m)", shown);
			return -EINVAL;
		}
		if (r < 0) {
			snprintf(why, n, "invalid size '%s' (use 512, 64K, 1M, 2G)", shown);
			return -EINVAL;
		}
		if (!u64_in_range(k, out->u)) {
			range_why(k, why, n);
			return -EINVAL;
		}
		return 0;
	case CFG_ENUM:
		for (i = 0; k->choices && k->choices[i]; i++) {
			if (!strcmp(v, k->choices[i])) {
				out->e = (int)i;
				return 0;
			}
		}
		r = snprintf(why, n, "must be one of:");
		for (i = 0; k->choices && k->choices[i] && r >= 0 && (size_t)r < n; i++)
			r += snprintf(why + r, n - (size_t)r, "%s %s", i ? " |" : "",
			              k->choices[i]);
		return -EINVAL;
	}
	snprintf(why, n, "unsupported key type");
	return -EINVAL;
}

/* Parse and store, replacing (and freeing) what the slot held before. */
static int set_value(struct cfg_inst *in, size_t k, const char *v, char *why, size_t n)
{
	const struct cfg_key *key = key_at(in, k);
	void *p = slot(in, k);
	union cfg_val val;
	int r;

	r = parse_value(key, v, &val, why, n);
	if (r < 0)
		return r;
	free_value(key, p);
	switch (key->type) {
	case CFG_STRING:
		*(char **)p = val.s;
		break;
	case CFG_LIST:
		*(struct cfg_list *)p = val.l;
		break;
	case CFG_BOOL:
		*(bool *)p = val.b;
		break;
	case CFG_INT:
		*(int64_t *)p = val.i;
		break;
	case CFG_DURATION:
	case CFG_SIZE:
		*(uint64_t *)p = val.u;
		break;
	case CFG_ENUM:
		*(int *)p = val.e;
		break;
	}
	return 0;
}

static void inst_free(struct cfg_inst *in)
{
	size_t k;

	if (in->data) {
		for (k = 0; k < in->sec->nkeys; k++)
			free_value(key_at(in, k), slot(in, k));
		if (in->sec->named)
			free(*name_slot(in));
	}
	free(in->data);
	free(in->lines);
	free(in->src);
}

/* Append a zeroed instance; returns its index or -ENOMEM. */
static int inst_add(struct cfg *c, const struct cfg_section *sec)
{
	struct cfg_inst *in;

	if (c->ninsts == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		struct cfg_inst *p = reallocarray(c->insts, cap, sizeof(*p));

		if (!p)
			return -ENOMEM;
		c->insts = p;
		c->cap = cap;
	}
	in = &c->insts[c->ninsts];
	memset(in, 0, sizeof(*in));
	in->sec = sec;
	in->data = calloc(1, sec->size ? sec->size : 1);
	in->lines = calloc(sec->nkeys + 1, sizeof(*in->lines));
	in->src = calloc(sec->nkeys + 1, 1);
	if (!in->data || !in->lines || !in->src) {
		inst_free(in);
		return -ENOMEM;
	}
	return (int)c->ninsts++;
}

static const struct cfg_section *find_section(const struct cfg *c, const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < c->nsections; i++) {
		if (strlen(c->schema[i].name) == n && !memcmp(c->schema[i].name, name, n))
			return &c->schema[i];
	}
	return NULL;
}

static int find_key(const struct cfg_section *sec, const char *name)
{
	size_t k;

	for (k = 0; k < sec->nkeys; k++) {
		if (!strcmp(sec->keys[k].name, name))
			return (int)k;
	}
	return -1;
}

static const struct cfg_inst *find_inst(const struct cfg *c, const void *data)
{
	size_t i;

	for (i = 0; c && i < c->ninsts; i++) {
		if (c->insts[i].data == data)
			return &c->insts[i];
	}
	return NULL;
}

/* ---- the reader: lines, section headers ---- */

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Pool names end up in metrics labels, lease ids and log lines: keep them plain. */
static bool valid_name(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && !strchr("._-:@/+", s[i]))
			return false;
	}
	return n > 0;
}

static void section_line(struct load *l, const char *p, const char *e)
{
	struct cfg *c = l->c;
	const struct cfg_section *sec;
	const char *q, *a, *b, *t, *name;
	char txt[1024], tmp[CFG_SHOW_MAX + 1];
	size_t tlen, i, count = 0, max;
	int idx;

	l->state = ST_SKIP; /* until the header proves good: no cascade of key errors */
	q = memchr(p, ']', (size_t)(e - p));
	if (!q) {
		snprintf(txt, sizeof(txt), "%.*s", (int)(e - p), p);
		add_error(l, "%s:%u: %s: missing ']' in section header", c->path, l->lineno,
		          show(txt, tmp, sizeof(tmp)));
		return;
	}
	for (a = p + 1; a < q && is_blank(*a); a++)
		;
	for (b = q; b > a && is_blank(b[-1]); b--)
		;
	snprintf(txt, sizeof(txt), "%.*s", (int)(b - a), a);
	show(txt, tmp, sizeof(tmp));
	for (t = q + 1; t < e && is_blank(*t); t++)
		;
	if (t < e && !(*t == ';' && t > q + 1)) {
		add_error(l, "%s:%u: [%s]: unexpected text after ']'", c->path, l->lineno, tmp);
		return;
	}
	if (a == b) {
		add_error(l, "%s:%u: []: empty section name", c->path, l->lineno);
		return;
	}
	for (t = a; t < b && !is_blank(*t); t++)
		;
	tlen = (size_t)(t - a);
	for (name = t; name < b && is_blank(*name); name++)
		;
	sec = find_section(c, a, tlen);
	if (!sec) {
		add_error(l, "%s:%u: [%s]: unknown section", c->path, l->lineno, tmp);
		return;
	}
	if (!sec->named) {
		if (name < b) {
			add_error(l, "%s:%u: [%s]: section [%s] takes no name", c->path, l->lineno,
			          tmp, sec->name);
			return;
		}
		for (i = 0; i < c->ninsts; i++) {
			if (c->insts[i].sec == sec)
				break;
		}
		if (c->insts[i].line) {
			add_error(l, "%s:%u: [%s]: duplicate section (first on line %u)", c->path,
			          l->lineno, tmp, c->insts[i].line);
			return;
		}
		c->insts[i].line = l->lineno;
		l->cur = i;
		l->state = ST_OK;
		return;
	}
	if (name == b) {
		add_error(l, "%s:%u: [%s]: missing name, use [%s NAME]", c->path, l->lineno, tmp,
		          sec->name);
		return;
	}
	if (!valid_name(name, (size_t)(b - name))) {
		add_error(l, "%s:%u: [%s]: invalid name (letters, digits and . _ - : @ / + only)",
		          c->path, l->lineno, tmp);
		return;
	}
	for (i = 0; i < c->ninsts; i++) {
		const char *other;

		if (c->insts[i].sec != sec)
			continue;
		count++;
		other = *name_slot(&c->insts[i]);
		if (strlen(other) == (size_t)(b - name) &&
		    !memcmp(other, name, (size_t)(b - name))) {
			add_error(l, "%s:%u: [%s]: duplicate %s name (first on line %u)", c->path,
			          l->lineno, tmp, sec->name, c->insts[i].line);
			return;
		}
	}
	max = sec->max_instances ? sec->max_instances : CFG_NAMED_MAX;
	if (count >= max) {
		add_error(l, "%s:%u: [%s]: too many [%s] sections (at most %zu)", c->path,
		          l->lineno, tmp, sec->name, max);
		return;
	}
	idx = inst_add(c, sec);
	if (idx < 0) {
		l->oom = true;
		return;
	}
	*name_slot(&c->insts[idx]) = strndup(name, (size_t)(b - name));
	if (!*name_slot(&c->insts[idx])) {
		l->oom = true;
		return;
	}
	c->insts[idx].line = l->lineno;
	l->cur = (size_t)idx;
	l->state = ST_OK;
}

static void check_pending(struct load *l)
{
	if (!l->pending)
		return;
	add_error(l, "%s:%u: syntax error, expected 'key = value', '[section]' or a comment",
	          l->c->path, l->pending);
	l->pending = 0;
}

/* fgets-style: one line per call. Lines inih must not see come back blank. */
static char *cfg_reader(char *str, int num, void *stream)
{
	struct load *l = stream;
	const char *line, *nl, *p, *e;
	size_t n;

	check_pending(l);
	if (l->pos >= l->len || num < 2)
		return NULL;
	line = l->text + l->pos;
	nl = memchr(line, '\n', l->len - l->pos);
	n = nl ? (size_t)(nl - line) : l->len - l->pos;
	l->pos += n + (nl ? 1 : 0);
	l->lineno++;
	str[0] = '\n';
	str[1] = '\0';
	if (l->lineno == 1 && n >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
		line += 3;
		n -= 3;
	}
	if (memchr(line, '\0', n)) {
		add_error(l, "%s:%u: NUL byte in line", l->c->path, l->lineno);
		return str;
	}
	if (n > CFG_LINE_MAX || n + 2 > (size_t)num) {
		add_error(l, "%s:%u: line too long (more than %d bytes)", l->c->path, l->lineno,
		          CFG_LINE_MAX);
		return str;
	}
	for (p = line, e = line + n; p < e && is_blank(*p); p++)
		;
	while (e > p && is_blank(e[-1]))
		e--;
	if (p == e || *p == ';' || *p == '#')
		return str;
	if (*p == '[') {
		section_line(l, p, e);
		return str;
	}
	memcpy(str, line, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	l->pending = l->lineno;
	return str;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct load *l = user;
	struct cfg *c = l->c;
	struct cfg_inst *in;
	char why[CFG_WHY_MAX], tmp[CFG_SHOW_MAX + 1], lab[256];
	int k, r;

	(void)section; /* ours comes from section_line */
	l->pending = 0;
	if (l->state == ST_SKIP)
		return 1;
	if (!*name) {
		add_error(l, "%s:%u: missing key name before '='", c->path, l->lineno);
		return 1;
	}
	show(name, tmp, sizeof(tmp));
	if (l->state == ST_NONE) {
		add_error(l, "%s:%u: %s: key outside of any [section]", c->path, l->lineno, tmp);
		return 1;
	}
	in = &c->insts[l->cur];
	k = find_key(in->sec, name);
	if (k < 0) {
		add_error(l, "%s:%u: %s: unknown key in [%s]", c->path, l->lineno, tmp,
		          sect_label(in, lab, sizeof(lab)));
		return 1;
	}
	if (in->src[k] == SRC_FILE) {
		add_error(l, "%s:%u: %s: duplicate key (first set on line %u)", c->path, l->lineno,
		          tmp, in->lines[k]);
		return 1;
	}
	in->src[k] = SRC_FILE;
	in->lines[k] = l->lineno;
	r = set_value(in, (size_t)k, value, why, sizeof(why));
	if (r == -EINVAL)
		add_error(l, "%s:%u: %s: %s", c->path, l->lineno, tmp, why);
	else if (r < 0)
		l->oom = true;
	return 1;
}

static void inih_setup(void)
{
	static char start_prefixes[] = ";#";
	static char inline_prefixes[] = ";";

	ini_allow_multiline = false;
	ini_allow_bom = false; /* the reader strips it */
	ini_start_comment_prefixes = start_prefixes;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_prefixes;
	ini_use_stack = true;
	ini_max_line = CFG_LINE_MAX + 3; /* '\r', '\n', NUL */
	ini_allow_realloc = false;
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;
}

/* ---- after parsing: environment, defaults, required ---- */

static void apply_env(struct load *l)
{
	struct cfg *c = l->c;
	char why[CFG_WHY_MAX];
	size_t i, k;

	for (i = 0; i < c->ninsts; i++) {
		struct cfg_inst *in = &c->insts[i];

		if (in->sec->named)
			continue;
		for (k = 0; k < in->sec->nkeys; k++) {
			const struct cfg_key *key = key_at(in, k);
			const char *v = key->env ? getenv(key->env) : NULL;
			int r;

			if (!v || !*v)
				continue;
			in->src[k] = SRC_ENV;
			in->lines[k] = 0;
			if (strlen(v) > CFG_LINE_MAX) {
				add_error(l, "ENV:%s: %s: value too long (more than %d bytes)",
				          key->env, key->name, CFG_LINE_MAX);
				continue;
			}
			if (strpbrk(v, "\r\n")) { /* would break the printed INI */
				add_error(l, "ENV:%s: %s: value contains a newline", key->env,
				          key->name);
				continue;
			}
			r = set_value(in, k, v, why, sizeof(why));
			if (r == -EINVAL)
				add_error(l, "ENV:%s: %s: %s", key->env, key->name, why);
			else if (r < 0)
				l->oom = true;
		}
	}
}

static bool value_empty(const struct cfg_key *k, const void *p)
{
	if (k->type == CFG_STRING)
		return !*(char *const *)p || !**(char *const *)p;
	if (k->type == CFG_LIST)
		return ((const struct cfg_list *)p)->n == 0;
	return false;
}

static void apply_defaults(struct load *l)
{
	struct cfg *c = l->c;
	char why[CFG_WHY_MAX], lab[256];
	size_t i, k;

	for (i = 0; i < c->ninsts; i++) {
		struct cfg_inst *in = &c->insts[i];

		for (k = 0; k < in->sec->nkeys; k++) {
			const struct cfg_key *key = key_at(in, k);
			int r;

			if (in->src[k] == SRC_UNSET && key->def) {
				r = set_value(in, k, key->def, why, sizeof(why));
				if (r == -EINVAL)
					add_error(l, "%s: [%s] %s: bad default: %s", c->path,
					          sect_label(in, lab, sizeof(lab)), key->name, why);
				else if (r < 0)
					l->oom = true;
				in->src[k] = SRC_DEFAULT;
			}
			if (!(key->flags & CFG_REQUIRED))
				continue;
			if (in->src[k] == SRC_FILE && value_empty(key, slot(in, k)))
				add_error(l, "%s:%u: %s: required, must not be empty", c->path,
				          in->lines[k], key->name);
			else if (in->src[k] == SRC_UNSET ||
			         (in->src[k] == SRC_DEFAULT && value_empty(key, slot(in, k))))
				add_error(l, "%s: [%s] %s: required", c->path,
				          sect_label(in, lab, sizeof(lab)), key->name);
		}
	}
}

/* ---- public ---- */

static int load_text(const struct cfg_section *schema, size_t nsections, const char *text,
                     size_t len, const char *name, struct cfg **out, char **errors)
{
	struct load l;
	struct cfg *c;
	size_t i;
	int r;

	memset(&l, 0, sizeof(l));
	buf_init(&l.errs, 0);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	l.c = c;
	c->schema = schema;
	c->nsections = nsections;
	c->path = strdup(name);
	r = -ENOMEM;
	if (!c->path)
		goto out;
	for (i = 0; i < nsections; i++) {
		if (!schema[i].named && inst_add(c, &schema[i]) < 0)
			goto out;
	}
	l.text = text;
	l.len = len;
	inih_setup();
	r = ini_parse_stream(cfg_reader, &l, cfg_handler, &l);
	check_pending(&l); /* the last line */
	if (r < -1 || l.oom) {
		r = -ENOMEM;
		goto out;
	}
	apply_env(&l);
	apply_defaults(&l);
	if (l.oom) {
		r = -ENOMEM;
		goto out;
	}
	if (l.nerr) {
		r = -EINVAL;
		if (errors) {
			*errors = l.errs.data;
			l.errs.data = NULL;
		}
		goto out;
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	buf_wipe(&l.errs);
	cfg_free(c);
	return r;
}

static int read_all(const char *path, struct buf *b)
{
	char tmp[8192];
	ssize_t n;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		r = buf_append(b, tmp, (size_t)n);
		if (r < 0)
			goto out;
	}
out:
	explicit_bzero(tmp, sizeof(tmp)); /* may hold a secret */
	close(fd);
	return r;
}

int cfg_load_file(const struct cfg_section *schema, size_t nsections, const char *path,
                  struct cfg **out, char **errors)
{
	struct buf b;
	int r;

	if (errors)
		*errors = NULL;
	if (!schema || !path || !out)
		return -EINVAL;
	buf_init(&b, CFG_FILE_MAX);
	r = read_all(path, &b);
	if (r < 0)
		goto out;
	r = load_text(schema, nsections, b.data ? b.data : "", b.len, path, out, errors);
out:
	buf_wipe(&b);
	return r;
}

int cfg_load_string(const struct cfg_section *schema, size_t nsections, const char *text,
                    const char *display_name, struct cfg **out, char **errors)
{
	if (errors)
		*errors = NULL;
	if (!schema || !text || !out)
		return -EINVAL;
	return load_text(schema, nsections, text, strlen(text),
	                 display_name ? display_name : "<string>", out, errors);
}

void *cfg_get(const struct cfg *c, const char *section)
{
	size_t i;

	for (i = 0; c && section && i < c->ninsts; i++) {
		if (!c->insts[i].sec->named && !strcmp(c->insts[i].sec->name, section))
			return c->insts[i].data;
	}
	return NULL;
}

size_t cfg_count(const struct cfg *c, const char *type)
{
	size_t i, n = 0;

	for (i = 0; c && type && i < c->ninsts; i++) {
		if (c->insts[i].sec->named && !strcmp(c->insts[i].sec->name, type))
			n++;
	}
	return n;
}

void *cfg_get_named(const struct cfg *c, const char *type, size_t idx)
{
	size_t i, n = 0;

	for (i = 0; c && type && i < c->ninsts; i++) {
		if (!c->insts[i].sec->named || strcmp(c->insts[i].sec->name, type))
			continue;
		if (n++ == idx)
			return c->insts[i].data;
	}
	return NULL;
}

unsigned cfg_line(const struct cfg *c, const void *data, const char *key)
{
	const struct cfg_inst *in = find_inst(c, data);
	int k;

	if (!in || !key)
		return 0;
	k = find_key(in->sec, key);
	if (k < 0 || in->src[k] != SRC_FILE)
		return 0;
	return in->lines[k];
}

const char *cfg_path(const struct cfg *c)
{
	return c ? c->path : NULL;
}

static int format_value(const struct cfg_key *k, const void *p, struct buf *b)
{
	char tmp[64];
	size_t i;
	int r = 0;

	if ((k->flags & CFG_SECRET) && !value_empty(k, p))
		return buf_append_str(b, REDACTED);
	switch (k->type) {
	case CFG_STRING:
		if (*(char *const *)p)
			r = buf_append_str(b, *(char *const *)p);
		break;
	case CFG_LIST:
		for (i = 0; r == 0 && i < ((const struct cfg_list *)p)->n; i++) {
			const char *item = ((const struct cfg_list *)p)->items[i];

			/* " ;x" would start a comment: a comma separates such an item. */
			r = buf_printf(b, "%s%s", i ? (item[0] == ';' ? "," : " ") : "", item);
		}
		break;
	case CFG_BOOL:
		r = buf_append_str(b, *(const bool *)p ? "true" : "false");
		break;
	case CFG_INT:
		r = buf_printf(b, "%" PRId64, *(const int64_t *)p);
		break;
	case CFG_DURATION:
		cfg_format_duration(*(const uint64_t *)p, tmp, sizeof(tmp));
		r = buf_append_str(b, tmp);
		break;
	case CFG_SIZE:
		format_size(*(const uint64_t *)p, tmp, sizeof(tmp));
		r = buf_append_str(b, tmp);
		break;
	case CFG_ENUM:
		for (i = 0; k->choices && k->choices[i]; i++) {
			if ((int)i == *(const int *)p)
				return buf_append_str(b, k->choices[i]);
		}
		break;
	}
	return r;
}

int cfg_print(const struct cfg *c, FILE *out)
{
	struct buf b;
	size_t s, i, k;
	bool first = true;
	int r = 0;

	if (!c || !out)
		return -EINVAL;
	buf_init(&b, 0);
	/* schema order; named instances of one type in file order */
	for (s = 0; s < c->nsections; s++) {
		for (i = 0; i < c->ninsts; i++) {
			const struct cfg_inst *in = &c->insts[i];

			if (in->sec != &c->schema[s])
				continue;
			fprintf(out, "%s[%s%s%s]\n", first ? "" : "\n", in->sec->name,
			        in->sec->named ? " " : "", in->sec->named ? *name_slot(in) : "");
			first = false;
			for (k = 0; k < in->sec->nkeys; k++) {
				buf_reset(&b);
				r = format_value(key_at(in, k), slot(in, k), &b);
				if (r < 0)
					goto out;
				/* "key =;x" holds ";x"; "key = ;x" would be a comment. */
				fprintf(out, "%s =%s%s\n", key_at(in, k)->name,
				        b.len && b.data[0] != ';' ? " " : "", b.len ? b.data : "");
			}
		}
	}
	if (fflush(out) != 0 || ferror(out))
		r = -EIO;
out:
	buf_wipe(&b);
	return r;
}

void cfg_free(struct cfg *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->ninsts; i++)
		inst_free(&c->insts[i]);
	free(c->insts);
	free(c->path);
	free(c);
}
