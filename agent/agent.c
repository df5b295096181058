/* The agent's config (YAML rendering), its name, its argv and environment: pure functions. */
#include "agent.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Decode one UTF-8 sequence strictly (no overlongs, no surrogates, nothing above U+10FFFF).
 * Returns its length, or 0 when the bytes are not valid UTF-8. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
	size_t len, i;
	uint32_t c, min;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	} else if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		c = p[0] & 0x1f;
		min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		c = p[0] & 0x0f;
		min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		c = p[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	/* A NUL terminator is not a continuation byte, so this never reads past the string. */
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Code points that must not appear raw inside a one-line double-quoted scalar: YAML's
 * non-printable set, plus what YAML 1.1 parsers take as line breaks (NEL, LS, PS) and the BOM. */
static bool yaml_needs_unicode_escape(uint32_t c)
{
	return (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029 || c == 0xfeff ||
	       c == 0xfffe || c == 0xffff;
}

/* Append s as a double-quoted YAML scalar. Every line break and control character is escaped, so
 * the scalar stays on one line and ends at the closing quote whatever s holds. -EINVAL when s is
 * not valid UTF-8 (escaping bytes would silently change the value). */
static int yaml_append_quoted(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char esc[16];
	uint32_t c;
	size_t len;
	int r;

	r = buf_append(out, "\"", 1);
	while (r == 0 && *p) {
		len = utf8_decode(p, &c);
		if (len == 0)
			return -EINVAL;
		if (c == '"')
			r = buf_append(out, "\\\"", 2);
		else if (c == '\\')
			r = buf_append(out, "\\\\", 2);
		else if (c == '\n')
			r = buf_append(out, "\\n", 2);
		else if (c == '\r')
			r = buf_append(out, "\\r", 2);
		else if (c == '\t')
			r = buf_append(out, "\\t", 2);
		else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02" PRIX32, c);
			r = buf_append_str(out, esc);
		} else if (yaml_needs_unicode_escape(c)) {
			snprintf(esc, sizeof(esc), "\\u%04" PRIX32, c);
			r = buf_append_str(out, esc);
		} else {
			r = buf_append(out, p, len);
		}
		p += len;
	}
	if (r == 0)
		r = buf_append(out, "\"", 1);
	return r;
}

/* "  key: " + quoted value + newline. */
static int yaml_append_kv(struct buf *out, const char *key, const char *value)
{
	int r;

	r = buf_printf(out, "  %s: ", key);
	if (r == 0)
		r = yaml_append_quoted(out, value);
	if (r == 0)
		r = buf_append(out, "\n", 1);
	return r;
}

void agent_format_go_duration(uint64_t ms, char *out, size_t n)
{
	uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, rest = ms % 1000;
	size_t used = 0;
	int w;

	if (n == 0)
		return;
	out[0] = '\0';
	if (ms == 0) {
		str_copy(out, "0s", n);
		return;
	}
	/* Components largest first, zeros left out: "5h15m", "1m30s", "1s500ms". Go's
	 * time.ParseDuration accepts any sequence of number+unit. */
#define PUT(v, unit)                                                                               \
	do {                                                                                       \
		if ((v) && used < n) {                                                             \
			w = snprintf(out + used, n - used, "%" PRIu64 unit, (v));                  \
			used = w < 0 ? n : used + (size_t)w;                                       \
		}                                                                                  \
	} while (0)
	PUT(h, "h");
	PUT(m, "m");
	PUT(s, "s");
	PUT(rest, "ms");
#undef PUT
}

int agent_working_directory(const struct agent_settings *s, char *out, size_t n)
{
	const char *wd = s->working_directory;
	size_t len;
	int w;

	if (!wd || !wd[0])
		return -EINVAL;
	len = strlen(wd);
	if (s->flavour == AGENT_LAUNCH_AGENT && !strstr(wd, "%s"))
		/* The launch-agent substitutes %s with a per-task directory; without it every task
		 * would share (and clean up) one directory. Avoid "//%s" for a trailing slash. */
		w = snprintf(out, n, "%s%s%%s", wd, wd[len - 1] == '/' ? "" : "/");
	else
		w = snprintf(out, n, "%s", wd);
	if (w < 0)
		return -EINVAL;
	if ((size_t)w >= n)
		return -ENAMETOOLONG;
	return 0;
}

static int render(const struct agent_settings *s, const char *token, struct buf *out)
{
	static const char *const prefix[] = {"sudo", "-niHu", NULL, "--"};
	char wd[4096], dur[64];
	size_t i;
	int r;

	r = agent_working_directory(s, wd, sizeof(wd));
	if (r < 0)
		return r;

	r = buf_append_str(out, "# Written by runnerd at boot; changes are overwritten.\napi:\n");
	if (r == 0)
		r = yaml_append_kv(out, "auth_token", token);
	if (r == 0 && s->api_url && s->api_url[0])
		r = yaml_append_kv(out, "url", s->api_url);

	if (r == 0)
		r = buf_append_str(out, "runner:\n");
	if (r == 0)
		r = yaml_append_kv(out, "name", s->name);
	if (r == 0)
		r = yaml_append_kv(out, "mode", s->mode);
	if (r == 0 && s->idle_timeout_ms > 0) {
		agent_format_go_duration(s->idle_timeout_ms, dur, sizeof(dur));
		r = yaml_append_kv(out, "idle_timeout", dur);
	}
	if (r == 0) {
		agent_format_go_duration(s->max_run_time_ms, dur, sizeof(dur));
		r = yaml_append_kv(out, "max_run_time", dur);
	}
	if (r == 0)
		r = yaml_append_kv(out, "working_directory", wd);
	if (r == 0)
		r = buf_printf(out, "  cleanup_working_directory: %s\n",
		               s->cleanup_working_directory ? "true" : "false");
	/* Jobs step down from root to the job user, so neither the config nor the token is
	 * readable by them (DESIGN.md "Who runs what"). */
	if (r == 0)
		r = buf_append_str(out, "  command_prefix: [");
	for (i = 0; r == 0 && i < ARRAY_SIZE(prefix); i++) {
		if (i > 0)
			r = buf_append(out, ", ", 2);
		if (r == 0)
			r = yaml_append_quoted(out, prefix[i] ? prefix[i] : s->user);
	}
	if (r == 0)
		r = buf_append_str(out, "]\n");
	/* Machine runner 3 puts its task agent under the runner's home by default, /root here
	 * (0700): the job user, who runs it through command_prefix, could not reach it. */
	if (r == 0 && s->flavour == AGENT_CIRCLECI_RUNNER)
		r = yaml_append_kv(out, "task_agent_directory", s->task_agent_directory);
	/* The launch-agent would replace the binary whose SHA-256 runnerd verified. */
	if (r == 0 && s->flavour == AGENT_LAUNCH_AGENT)
		r = buf_append_str(out, "  disable_auto_update: true\n");
	if (r == 0 && s->ssh_advertise_addr && s->ssh_advertise_addr[0]) {
		r = buf_append_str(out, "  ssh:\n  ");
		if (r == 0)
			r = yaml_append_kv(out, "advertise_addr", s->ssh_advertise_addr);
	}

	/* Machine runner 3 defaults to coloured output (format "color"); ask for plain text on
	 * stderr so runnerd's journal gets readable lines. The launch-agent logs to stderr already
	 * and has no format key. */
	if (r == 0 && s->flavour == AGENT_CIRCLECI_RUNNER) {
		r = buf_append_str(out, "logging:\n");
		if (r == 0)
			r = yaml_append_kv(out, "file", "-");
		if (r == 0)
			r = yaml_append_kv(out, "format", "text");
	}
	/* The launch-agent has no logging.level (CircleCI documents logging.file alone). */
	if (r == 0 && s->flavour == AGENT_CIRCLECI_RUNNER && s->log_level && s->log_level[0])
		r = yaml_append_kv(out, "level", s->log_level);
	return r;
}

int agent_render_config(const struct agent_settings *s, const char *token, struct buf *out)
{
	size_t start = out->len;
	int r;

	if (!token || !token[0] || !s->name || !s->user || !s->user[0] || !s->mode ||
	    (s->flavour != AGENT_CIRCLECI_RUNNER && s->flavour != AGENT_LAUNCH_AGENT) ||
	    (s->flavour == AGENT_CIRCLECI_RUNNER &&
	     (!s->task_agent_directory || s->task_agent_directory[0] != '/')))
		return -EINVAL;
	r = render(s, token, out);
	if (r < 0 && out->data) {
		/* Leave out as it was, and no partial token in memory. */
		explicit_bzero(out->data + start, out->len - start);
		out->len = start;
		out->data[start] = '\0';
	}
	return r;
}

int agent_expand_advertise(const char *pattern, const char *private_ip, const char *public_ip,
                           char *out, size_t n)
{
	size_t used = 0, add, len;
	const char *p, *piece, *host_end;
	char one[2] = "";
	bool port = false;

	if (!pattern || !pattern[0] || !out || !n)
		return -EINVAL;
	for (p = pattern; *p; p++) {
		if (*p == '%') {
			p++;
			if (*p == 'I')
				piece = private_ip;
			else if (*p == 'P')
				piece = public_ip;
			else if (*p == '%')
				piece = "%";
			else
				return -EINVAL;
			if (!piece || !piece[0])
				return -ENOENT; /* no such address on this instance */
		} else {
			/* A host[:port]: no spaces, quotes or controls. */
			if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' ||
			    (unsigned char)*p >= 0x7f)
				return -EINVAL;
			one[0] = *p;
			piece = one;
		}
		add = strlen(piece);
		if (used + add >= n)
			return -ENAMETOOLONG;
		memcpy(out + used, piece, add);
		used += add;
	}
	out[used] = '\0';
	/* A port? After a bracketed IPv6 literal, or after the host's one colon. */
	len = used;
	host_end = out[0] == '[' ? strchr(out, ']') : NULL;
	if (out[0] == '[' && !host_end)
		return -EINVAL;
	if (host_end)
		port = host_end[1] == ':';
	else if (strchr(out, ':'))
		port = strchr(out, ':') == strrchr(out, ':');
	if (port) {
		/* 1..65535, digits only. */
		const char *d = (host_end ? host_end + 1 : strchr(out, ':')) + 1;
		unsigned long v = 0;

		if (!*d || strspn(d, "0123456789") != strlen(d) || strlen(d) > 5)
			return -EINVAL;
		v = strtoul(d, NULL, 10);
		if (v == 0 || v > 65535)
			return -EINVAL;
	} else {
		if (!host_end && strchr(out, ':'))
			return -EINVAL; /* a bare IPv6 address: ambiguous, want [addr]:port */
		if (len + sizeof(":" AGENT_SSH_PORT) > n)
			return -ENAMETOOLONG;
		memcpy(out + len, ":" AGENT_SSH_PORT, sizeof(":" AGENT_SSH_PORT));
	}
	return 0;
}

/* CircleCI's rule for runner names: letters, digits and .()-_ ; anything else becomes '-'. */
static bool name_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '(' || c == ')' || c == '-' || c == '_';
}

/* Append one character of src (a whole UTF-8 sequence counts as one) to out, sanitised.
 * Returns bytes consumed from src, or 0 when out is full. */
static size_t name_put(const char *src, size_t srclen, char *out, size_t n, size_t *used)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t k = 1;

	if (*used + 1 >= n)
		return 0;
	if (name_char_ok(p[0])) {
		out[(*used)++] = src[0];
		return 1;
	}
	/* One '-' per code point, not per byte: "é" is one character. */
	if (p[0] >= 0xc0)
		while (k < srclen && k < 4 && (p[k] & 0xc0) == 0x80)
			k++;
	out[(*used)++] = '-';
	return k;
}

static int name_put_str(const char *s, size_t len, char *out, size_t n, size_t *used)
{
	size_t i = 0, k;

	while (i < len) {
		k = name_put(s + i, len - i, out, n, used);
		if (k == 0)
			return -ENAMETOOLONG;
		i += k;
	}
	return 0;
}

int agent_expand_name(const char *pattern, const char *hostname, const char *instance_id, char *out,
                      size_t n)
{
	const char *p, *v;
	size_t used = 0, vlen;
	int r = 0;

	if (!pattern || n == 0)
		return -EINVAL;
	p = pattern;
	while (*p && r == 0) {
		if (*p != '%') {
			vlen = strcspn(p, "%");
			r = name_put_str(p, vlen, out, n, &used);
			p += vlen;
			continue;
		}
		switch (p[1]) {
		case 'H':
			v = hostname;
			vlen = v ? strcspn(v, ".") : 0;
			break;
		case 'i':
			v = instance_id;
			vlen = v ? strlen(v) : 0;
			break;
		case '%':
			v = "%";
			vlen = 1;
			break;
		default: /* unknown, or a lone '%' at the end */
			r = -EINVAL;
			goto out;
		}
		if (!v || vlen == 0) {
			r = -EINVAL;
			goto out;
		}
		r = name_put_str(v, vlen, out, n, &used);
		p += 2;
	}
	/* An empty name would let the agent pick one we do not know. */
	if (r == 0 && used == 0)
		r = -EINVAL;
out:
	out[r == 0 ? used : 0] = '\0';
	return r;
}

void agent_argv(enum agent_flavour f, const char *binary, const char *config_path,
                const char *argv[6])
{
	size_t i = 0;

	argv[i++] = binary;
	if (f == AGENT_LAUNCH_AGENT) {
		argv[i++] = "--config";
	} else {
		argv[i++] = "machine";
		argv[i++] = "-c";
	}
	argv[i++] = config_path;
	while (i < 6)
		argv[i++] = NULL;
}

/* Variables passed through from runnerd's environment when set (an allowlist: the AWS
 * credentials, the token variables and everything else stay behind). */
static const char *const env_passthrough[] = {
        "TZ", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
};

static const char *env_lookup(char *const *env, const char *name)
{
	size_t len = strlen(name);

	for (; env && *env; env++)
		if (strncmp(*env, name, len) == 0 && (*env)[len] == '=')
			return *env;
	return NULL;
}

struct env_out {
	char *storage;
	size_t storage_len, storage_used;
	char **envp;
	size_t max, count;
};

static int env_add(struct env_out *e, const char *entry)
{
	size_t len = strlen(entry) + 1;

	/* Keep one envp slot for the terminating NULL. */
	if (e->count + 1 >= e->max || len > e->storage_len - e->storage_used)
		return -E2BIG;
	memcpy(e->storage + e->storage_used, entry, len);
	e->envp[e->count++] = e->storage + e->storage_used;
	e->storage_used += len;
	return 0;
}

int agent_child_env(char *const *parent_env, char *storage, size_t storage_len, char **envp,
                    size_t max)
{
	struct env_out e = {storage, storage_len, 0, envp, max, 0};
	const char *v;
	size_t i;
	int r;

	if (max == 0)
		return -E2BIG;
	envp[0] = NULL;
	v = env_lookup(parent_env, "PATH");
	r = env_add(&e,
	            v ? v : "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	if (r == 0)
		r = env_add(&e, "LANG=C.UTF-8");
	if (r == 0)
		r = env_add(&e, "HOME=/root");
	for (i = 0; r == 0 && i < ARRAY_SIZE(env_passthrough); i++) {
		v = env_lookup(parent_env, env_passthrough[i]);
		if (v)
			r = env_add(&e, v);
	}
	envp[r == 0 ? e.count : 0] = NULL;
	return r;
}
