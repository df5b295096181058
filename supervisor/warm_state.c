/* state_dir's record (see warm_state.h and runnerd.conf(5), state_dir). */
#include "warm_state.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent.h"
#include "boot.h"
#include "util.h"

static int parse_u64(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;

	if (n == 0 || n > 19)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EBADMSG;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/* A value copied whole into dst, or -EBADMSG: a truncated instance id would name another. */
static int parse_str(const char *v, size_t n, char *dst, size_t size, bool hex)
{
	if (n >= size)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (hex ? !isxdigit(c) : (!isalnum(c) && c != '-'))
			return -EBADMSG;
	}
	memcpy(dst, v, n);
	dst[n] = '\0';
	return 0;
}

static int parse_line(const char *k, size_t kn, const char *v, size_t vn, struct warm_state *st)
{
	uint64_t version;

#define KEY(name) (kn == sizeof(name) - 1 && memcmp(k, name, kn) == 0)
	if (KEY("version")) {
		if (parse_u64(v, vn, &version) < 0 || version < 1 || version > WARM_STATE_VERSION)
			return -EBADMSG;
		return 0;
	}
	if (KEY("instance_id"))
		return parse_str(v, vn, st->instance_id, sizeof(st->instance_id), false);
	if (KEY("bake"))
		return vn == 0 ? (st->bake[0] = '\0', 0)
		               : parse_str(v, vn, st->bake, sizeof(st->bake), true);
	if (KEY("prepared_ms"))
		return parse_u64(v, vn, &st->prepared_ms);
	if (KEY("packages_ms"))
		return parse_u64(v, vn, &st->packages_ms);
	if (KEY("agent_install_ms"))
		return parse_u64(v, vn, &st->agent_install_ms);
	if (KEY("agent_started_ms"))
		return parse_u64(v, vn, &st->agent_started_ms);
#undef KEY
	return 0; /* a newer runnerd's key: not ours to judge */
}

int warm_state_parse(const char *text, size_t len, struct warm_state *out)
{
	const char *p = text, *end = text + len;
	bool have_version = false;
	int r;

	memset(out, 0, sizeof(*out));
	if (len > WARM_STATE_MAX || memchr(text, '\0', len))
		return -EBADMSG;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		const char *eq;

		if (eol > p && eol[-1] == '\r')
			eol--;
		if (p < eol && *p != '#') {
			eq = memchr(p, '=', (size_t)(eol - p));
			if (!eq || eq == p)
				return -EBADMSG;
			if ((size_t)(eq - p) == 7 && memcmp(p, "version", 7) == 0)
				have_version = true;
			r = parse_line(p, (size_t)(eq - p), eq + 1, (size_t)(eol - eq - 1), out);
			if (r < 0)
				return r;
		}
		p = nl ? nl + 1 : end;
	}
	/* No version, no instance: not a record runnerd wrote. */
	if (!have_version || !out->instance_id[0])
		return -EBADMSG;
	return 0;
}

int warm_state_format(const struct warm_state *st, char *out, size_t n)
{
	int w = snprintf(out, n,
	                 "# runnerd: what survives a stop and start of this instance "
	                 "(runnerd.conf(5), state_dir)\n"
	                 "version=%d\n"
	                 "instance_id=%s\n"
	                 "bake=%s\n"
	                 "prepared_ms=%" PRIu64 "\n"
	                 "packages_ms=%" PRIu64 "\n"
	                 "agent_install_ms=%" PRIu64 "\n"
	                 "agent_started_ms=%" PRIu64 "\n",
	                 WARM_STATE_VERSION, st->instance_id, st->bake, st->prepared_ms,
	                 st->packages_ms, st->agent_install_ms, st->agent_started_ms);

	return w < 0 || (size_t)w >= n ? -ENOSPC : 0;
}

struct warm_judgement warm_state_judge(const struct warm_state *st, const char *instance_id,
                                       const char *bake)
{
	struct warm_judgement j = {false, false};

	if (!st || !instance_id || !instance_id[0] || strcmp(st->instance_id, instance_id) != 0)
		return j;
	j.used = st->agent_started_ms != 0;
	j.prepared = st->prepared_ms != 0 && bake && strcmp(st->bake, bake) == 0;
	return j;
}

/* One field of the fingerprint's input: its name, its value, a NUL (so "ab","c" differs from
 * "a","bc"). */
static void feed(EVP_MD_CTX *md, const char *name, const char *value)
{
	(void)EVP_DigestUpdate(md, name, strlen(name) + 1);
	(void)EVP_DigestUpdate(md, value ? value : "", strlen(value ? value : "") + 1);
}

void warm_bake_fingerprint(const struct runnerd_config *c, char out[WARM_BAKE_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	const struct rd_agent_conf *a = c->agent;
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dn = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	memset(d, 0, sizeof(d));
	if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
		for (size_t i = 0; i < c->packages->install.n; i++)
			feed(md, "package", c->packages->install.items[i]);
		feed(md, "binary", a->binary);
		feed(md, "download_url", a->download_url);
		feed(md, "sha256", a->sha256);
		feed(md, "agent_package", a->package);
		feed(md, "apt_source", a->apt_source);
		(void)EVP_DigestFinal_ex(md, d, &dn);
	}
	EVP_MD_CTX_free(md);
	for (size_t i = 0; i < WARM_BAKE_HEX / 2; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[WARM_BAKE_HEX] = '\0';
}

static int state_path(const char *dir, char *out, size_t n)
{
	int w = snprintf(out, n, "%s/%s", dir, WARM_STATE_FILE);

	return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

int warm_state_load(const char *dir, struct warm_state *out)
{
	char path[4096], text[WARM_STATE_MAX + 1];
	size_t len = 0;
	ssize_t got;
	int fd, r;

	memset(out, 0, sizeof(*out));
	r = state_path(dir, path, sizeof(path));
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return -errno;
	for (;;) {
		got = read(fd, text + len, sizeof(text) - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		if (got == 0)
			break;
		len += (size_t)got;
		if (len == sizeof(text)) {
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	return warm_state_parse(text, len, out);
}

int warm_state_save(const char *dir, const struct warm_state *st)
{
	char path[4096], text[WARM_STATE_MAX];
	int r;

	r = state_path(dir, path, sizeof(path));
	if (r == 0)
		r = warm_state_format(st, text, sizeof(text));
	if (r < 0)
		return r;
	/* The parents as anyone's, the directory itself runnerd's alone (systemd's
	 * StateDirectory= makes it so on a packaged install already). */
	r = boot_mkdir_parent(dir, 0755);
	if (r < 0)
		return r;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return agent_write_file_atomic(path, text, strlen(text), (uid_t)-1, (gid_t)-1);
}

/* The record as it stands for instance_id: its own, or a fresh one. */
static void current(const char *dir, const char *instance_id, struct warm_state *st)
{
	if (warm_state_load(dir, st) < 0 || strcmp(st->instance_id, instance_id) != 0) {
		memset(st, 0, sizeof(*st));
		str_copy(st->instance_id, instance_id, sizeof(st->instance_id));
	}
}

int warm_state_mark_prepared(const char *dir, const char *instance_id, const char *bake,
                             uint64_t now_ms, uint64_t packages_ms, uint64_t agent_install_ms)
{
	struct warm_state st;

	if (!instance_id || !instance_id[0] || strlen(instance_id) >= sizeof(st.instance_id))
		return -EINVAL;
	current(dir, instance_id, &st);
	str_copy(st.bake, bake, sizeof(st.bake));
	st.prepared_ms = now_ms;
	st.packages_ms = packages_ms;
	st.agent_install_ms = agent_install_ms;
	return warm_state_save(dir, &st);
}

int warm_state_mark_agent(const char *dir, const char *instance_id, uint64_t now_ms)
{
	struct warm_state st;

	if (!instance_id || !instance_id[0] || strlen(instance_id) >= sizeof(st.instance_id))
		return -EINVAL;
	current(dir, instance_id, &st);
	st.agent_started_ms = now_ms ? now_ms : 1;
	return warm_state_save(dir, &st);
}
