/* Files the agent needs on disk: its config (atomic, 0600) and its binary (download, SHA-256, and
 * for CircleCI's release tarball the one member taken out of it). */
#include "agent.h"

#include <errno.h>
#include <strings.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "http.h"
#include "tarball.h"
#include "util.h"

#define AGENT_CONNECT_TIMEOUT_MS 10000L

/* mkdir -p for the directory part of path (everything before the last '/'). Directories this
 * creates get exactly 0755 whatever the umask; existing ones are left alone. */
static int mkdir_parents(const char *path)
{
	char dir[PATH_MAX];
	char *slash, *p, saved;
	size_t len;

	len = strlen(path);
	if (len >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, len + 1);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0; /* relative name in cwd, or a file in "/" */
	*slash = '\0';
	for (p = dir + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		saved = *p;
		*p = '\0';
		if (mkdir(dir, 0755) == 0) {
			if (chmod(dir, 0755) < 0)
				return -errno;
		} else if (errno != EEXIST) {
			return -errno;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = write(fd, data, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

static int fsync_parent_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t len;
	int fd, r = 0;

	if (!slash) {
		memcpy(dir, ".", 2);
	} else {
		len = slash == path ? 1 : (size_t)(slash - path);
		if (len >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, len);
		dir[len] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* The shared core: temp file ".NAME.XXXXXX" next to path, created with mode_writing, owned by
 * uid:gid, data written and fsynced, then mode_final, rename, fsync of the directory. The temp
 * file is never left behind. */
static int write_atomic(const char *path, const char *data, size_t len, mode_t mode_writing,
                        mode_t mode_final, uid_t uid, gid_t gid)
{
	char tmp[PATH_MAX];
	const char *base;
	int fd = -1, r, w;

	if (!path || !path[0] || (!data && len > 0))
		return -EINVAL;
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (!base[0] || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return -EINVAL;
	w = snprintf(tmp, sizeof(tmp), "%.*s.%s.XXXXXX", (int)(base - path), path, base);
	if (w < 0 || (size_t)w >= sizeof(tmp))
		return -ENAMETOOLONG;

	r = mkdir_parents(path);
	if (r < 0)
		return r;
	/* mkostemp creates with O_EXCL and 0600: nobody else can open the file before the
	 * fchmod/fchown below, and it never follows a planted symlink. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode_writing) < 0)
		goto fail_errno;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
		goto fail_errno;
	r = write_all(fd, data, len);
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0)
		goto fail_errno;
	/* fchown may clear set-id bits but never changes the permission bits set here. */
	if (mode_final != mode_writing && fchmod(fd, mode_final) < 0)
		goto fail_errno;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_errno;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail_errno;
	/* Renamed: the file is in place, only durability of the rename is left to check. */
	return fsync_parent_dir(path);

fail_errno:
	r = -errno;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

int agent_write_file_atomic(const char *path, const char *data, size_t len, uid_t uid, gid_t gid)
{
	return write_atomic(path, data, len, 0600, 0600, uid, gid);
}

int agent_write_file(const char *path, const char *data, size_t len, unsigned mode)
{
	return write_atomic(path, data, len, 0600, (mode_t)mode & 07777, (uid_t)-1, (gid_t)-1);
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool sha256_hex_valid(const char *hex)
{
	size_t i;

	if (!hex)
		return false;
	for (i = 0; i < 64; i++)
		if (hex_nibble(hex[i]) < 0)
			return false;
	return hex[64] == '\0';
}

bool agent_sha256_matches(const unsigned char digest[32], const char *hex)
{
	unsigned diff = 0;
	size_t i;

	if (!sha256_hex_valid(hex))
		return false;
	for (i = 0; i < 32; i++)
		diff |= digest[i] ^
		        (unsigned)(hex_nibble(hex[2 * i]) << 4 | hex_nibble(hex[2 * i + 1]));
	return diff == 0;
}

/* Does the URL's path (query and fragment aside) name a tarball? */
bool agent_fetch_retryable(int r)
{
	/* The network or the server, which may do better in a moment; never what a retry would
	 * only repeat (a digest, a refused archive, a missing file, a denied request). */
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -EPROTO ||
	       r == -EAGAIN;
}

bool agent_url_is_tarball(const char *url)
{
	size_t len = strcspn(url, "?#");
	static const char *const suffixes[] = {".tar.gz", ".tgz"};
	size_t i, sl;

	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		sl = strlen(suffixes[i]);
		if (len >= sl && strncasecmp(url + len - sl, suffixes[i], sl) == 0)
			return true;
	}
	return false;
}

int agent_expand_url(const char *pattern, const char *arch, char *out, size_t n)
{
	size_t used = 0, add;
	const char *p, *piece;
	char one[2] = "";

	if (!pattern || !out || !n)
		return -EINVAL;
	for (p = pattern; *p; p++) {
		/* %a is the architecture unless a hex digit follows: then it is the URL's own
		 * percent-encoding ("%a0"), kept as it is, like every other '%'. */
		if (p[0] == '%' && p[1] == 'a' && hex_nibble(p[2]) < 0) {
			if (!arch || !arch[0])
				return -EINVAL;
			piece = arch;
			p++;
		} else {
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
	return 0;
}

bool agent_url_has_arch(const char *pattern)
{
	for (const char *p = pattern; p && (p = strchr(p, '%')); p++)
		if (p[1] == 'a' && hex_nibble(p[2]) < 0)
			return true;
	return false;
}

int agent_file_sha256_matches(const char *path, const char *hex, uint64_t max)
{
	unsigned char digest[EVP_MAX_MD_SIZE], chunk[16384];
	unsigned int dlen = 0;
	uint64_t total = 0;
	EVP_MD_CTX *md;
	ssize_t got;
	int fd, r = 0;

	if (!sha256_hex_valid(hex))
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		r = -ENOMEM;
		goto out;
	}
	while ((got = read(fd, chunk, sizeof(chunk))) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		total += (uint64_t)got;
		if (total > max) {
			r = -EFBIG;
			goto out;
		}
		if (EVP_DigestUpdate(md, chunk, (size_t)got) != 1) {
			r = -EIO;
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 32)
		r = -EIO;
	else if (!agent_sha256_matches(digest, hex))
		r = -EBADMSG;
out:
	EVP_MD_CTX_free(md);
	close(fd);
	return r;
}

/* CircleCI's architecture names (its platforms: linux/amd64, arm64, s390x, ppc64le): the
 * name's index, -1 for another. */
static int known_arch(const char *name, size_t len)
{
	static const char *const names[] = {"amd64", "arm64", "s390x", "ppc64le"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncmp(name, names[i], len) == 0)
			return (int)i;
	return -1;
}

int agent_pick_sha256(const char *value, const char *arch, char out[65])
{
	const char *p = value;
	bool found = false;
	size_t entries = 0;
	unsigned seen = 0;

	if (!value)
		return -EINVAL;
	out[0] = '\0';
	if (strlen(value) == 64 && sha256_hex_valid(value)) {
		memcpy(out, value, 65);
		return 0;
	}
	/* "ARCH:HEX" entries separated by commas and/or blanks. */
	for (;;) {
		size_t al, hl;
		const char *colon;
		int which;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		colon = strchr(p, ':');
		al = colon ? (size_t)(colon - p) : 0;
		which = colon ? known_arch(p, al) : -1;
		if (which < 0 || (seen & (1u << which)))
			return -EINVAL; /* not CircleCI's name for an architecture, or one twice */
		seen |= 1u << which;
		hl = strcspn(colon + 1, " \t,");
		if (hl != 64)
			return -EINVAL;
		for (size_t i = 0; i < 64; i++)
			if (hex_nibble(colon[1 + i]) < 0)
				return -EINVAL;
		if (arch && strlen(arch) == al && strncmp(p, arch, al) == 0) {
			memcpy(out, colon + 1, 64);
			out[64] = '\0';
			found = true;
		}
		p = colon + 1 + 64;
		entries++;
	}
	if (!entries)
		return -EINVAL;
	return found ? 0 : -ENOENT;
}

const char *agent_arch_name(const char *machine)
{
	static const struct {
		const char *machine, *arch;
	} map[] = {
	        {"x86_64", "amd64"}, {"amd64", "amd64"}, {"aarch64", "arm64"}, {"arm64", "arm64"}};

	for (size_t i = 0; machine && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(machine, map[i].machine) == 0)
			return map[i].arch;
	return NULL;
}

/* What the download streams into: the temp file and the digest; its first two bytes say
 * whether it is gzip'd. */
struct fetch_sink {
	int fd;
	EVP_MD_CTX *md;
	unsigned char head[2];
	size_t head_len;
};

static int fetch_write(void *user, const char *data, size_t len)
{
	struct fetch_sink *f = user;

	for (size_t i = 0; i < len && f->head_len < sizeof(f->head); i++)
		f->head[f->head_len++] = (unsigned char)data[i];
	if (EVP_DigestUpdate(f->md, data, len) != 1)
		return -EIO;
	return write_all(f->fd, data, len);
}

/* Remove the temp files (".BASE.download.XXXXXX", ".BASE.new.XXXXXX") that an attempt killed
 * mid-download (a crash, a power cut) left beside dest: each can be as large as the download. */
static void remove_leftovers(const char *dest)
{
	char dir[PATH_MAX], p1[NAME_MAX + 1], p2[NAME_MAX + 1];
	const char *base = strrchr(dest, '/');
	struct dirent *e;
	size_t dl, l1, l2;
	DIR *d;
	int dfd;

	if (!base)
		return;
	dl = base == dest ? 1 : (size_t)(base - dest); /* "/x" lives in "/" */
	if (dl >= sizeof(dir))
		return;
	memcpy(dir, dest, dl);
	dir[dl] = '\0';
	base++;
	if (snprintf(p1, sizeof(p1), ".%s.download.", base) >= (int)sizeof(p1) ||
	    snprintf(p2, sizeof(p2), ".%s.new.", base) >= (int)sizeof(p2))
		return;
	l1 = strlen(p1);
	l2 = strlen(p2);
	d = opendir(dir);
	if (!d)
		return;
	dfd = dirfd(d);
	while ((e = readdir(d))) {
		size_t nl = strlen(e->d_name);

		/* mkostemp's six characters after the prefix, exactly. */
		if ((nl == l1 + 6 && strncmp(e->d_name, p1, l1) == 0) ||
		    (nl == l2 + 6 && strncmp(e->d_name, p2, l2) == 0))
			(void)unlinkat(dfd, e->d_name, 0);
	}
	closedir(d);
}

/* A temp file "dir/.base.what.XXXXXX", mode 0600 (mkostemp), its name in tmp. */
static int temp_beside(const char *dest, const char *what, char *tmp, size_t n)
{
	const char *base = strrchr(dest, '/');
	int w, fd;

	base = base ? base + 1 : dest;
	w = snprintf(tmp, n, "%.*s.%s.%s.XXXXXX", (int)(base - dest), dest, base, what);
	if (w < 0 || (size_t)w >= n)
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = '\0';
}

int agent_fetch(struct http_client *http, const struct agent_fetch *f, char *why, size_t n)
{
	struct http_request req = {0};
	struct http_response resp;
	struct fetch_sink sink = {.fd = -1, .md = NULL};
	char dl_tmp[PATH_MAX] = "", bin_tmp[PATH_MAX] = "", got[65];
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	const char *member;
	bool tarball;
	int bin_fd = -1, r;

	if (why && n)
		why[0] = '\0';
	if (f && f->retry_after_s)
		*f->retry_after_s = -1;
	if (!http || !f || !f->url || !f->dest || !f->dest[0] || !sha256_hex_valid(f->sha256_hex))
		return -EINVAL;
	tarball = !f->raw && agent_url_is_tarball(f->url);
	member = strrchr(f->dest, '/');
	member = member ? member + 1 : f->dest;

	r = mkdir_parents(f->dest);
	if (r < 0) {
		str_printf(why, n, "cannot create the directory of %s: %s", f->dest, strerror(-r));
		return r;
	}
	remove_leftovers(f->dest);
	sink.md = EVP_MD_CTX_new();
	if (!sink.md || EVP_DigestInit_ex(sink.md, EVP_sha256(), NULL) != 1) {
		r = -ENOMEM;
		goto out;
	}
	/* The download goes to a 0600 temp file beside the binary: nobody can run or read it
	 * before it is verified, and the rename at the end is atomic on one file system. */
	r = temp_beside(f->dest, "download", dl_tmp, sizeof(dl_tmp));
	if (r < 0) {
		str_printf(why, n, "cannot create a temporary file beside %s: %s", f->dest,
		           strerror(-r));
		dl_tmp[0] = '\0';
		goto out;
	}
	sink.fd = r;
	req.method = "GET";
	req.url = f->url;
	req.timeout_ms = f->timeout_ms;
	/* A download host across the internet, early in a boot: more than IMDS's couple of
	 * seconds to connect (and the caller retries). */
	req.connect_timeout_ms = AGENT_CONNECT_TIMEOUT_MS;
	req.max_body = f->max_download > SIZE_MAX ? SIZE_MAX : (size_t)f->max_download;
	req.explicit_endpoint = f->explicit_url;
	/* GitHub releases, CDNs and mirrors answer with a redirect; the digest decides. */
	req.follow_redirects = true;
	req.sink = fetch_write;
	req.sink_user = &sink;
	r = http_perform(http, &req, &resp);
	if (r == 0 && resp.status != 200) {
		r = resp.status == 404 || resp.status == 410   ? -ENOENT
		    : resp.status == 401 || resp.status == 403 ? -EACCES
		    : resp.status == 429 || resp.status >= 500 ? -EAGAIN
		                                               : -EBADR;
		if (r == -EAGAIN && f->retry_after_s)
			*f->retry_after_s = resp.retry_after_s;
		str_printf(why, n, "HTTP status %ld", resp.status);
	} else if (r == -EFBIG) {
		str_printf(why, n, "larger than %llu bytes", (unsigned long long)f->max_download);
	} else if (r < 0) {
		str_printf(why, n, "%s",
		           r == -EKEYREJECTED ? "TLS certificate verification failed"
		           : r == -EPROTONOSUPPORT
		                   ? "redirected to a URL that is not https (not followed)"
		                   : strerror(-r));
	}
	http_response_free(&resp);
	if (r < 0)
		goto out;
	if (EVP_DigestFinal_ex(sink.md, digest, &dlen) != 1 || dlen != 32) {
		r = -EIO;
		goto out;
	}
	if (!agent_sha256_matches(digest, f->sha256_hex)) {
		hex(digest, 32, got);
		str_printf(why, n, "SHA-256 of the download is %s, not the %s configured", got,
		           f->sha256_hex);
		r = -EBADMSG;
		goto out;
	}
	/* A release tarball at a URL that does not say so (a presigned or redirecting link):
	 * an agent binary never starts with gzip's magic. */
	if (!f->raw && sink.head_len == 2 && sink.head[0] == 0x1f && sink.head[1] == 0x8b)
		tarball = true;
	if (!tarball) {
		/* The download is the file: whole and verified, it may become executable. */
		if (fsync(sink.fd) < 0 || fchmod(sink.fd, f->mode ? (mode_t)f->mode : 0755) < 0) {
			r = -errno;
			goto out;
		}
		if (rename(dl_tmp, f->dest) < 0) {
			r = -errno;
			str_printf(why, n, "cannot rename into %s: %s", f->dest, strerror(-r));
			goto out;
		}
		dl_tmp[0] = '\0';
		r = fsync_parent_dir(f->dest);
		goto out;
	}
	/* Verified: now, and only now, take the one member out of it. 0700 while written. */
	if (lseek(sink.fd, 0, SEEK_SET) < 0) {
		r = -errno;
		goto out;
	}
	r = temp_beside(f->dest, "new", bin_tmp, sizeof(bin_tmp));
	if (r < 0) {
		bin_tmp[0] = '\0';
		goto out;
	}
	bin_fd = r;
	if (fchmod(bin_fd, 0700) < 0) {
		r = -errno;
		goto out;
	}
	r = tarball_extract(sink.fd, member, bin_fd, &f->tar, why, n);
	if (r < 0)
		goto out;
	if (fsync(bin_fd) < 0 || fchmod(bin_fd, 0755) < 0) {
		r = -errno;
		goto out;
	}
	if (rename(bin_tmp, f->dest) < 0) {
		r = -errno;
		str_printf(why, n, "cannot rename into %s: %s", f->dest, strerror(-r));
		goto out;
	}
	bin_tmp[0] = '\0';
	r = fsync_parent_dir(f->dest);
out:
	if (why && n && !why[0] && r < 0)
		str_printf(why, n, "%s", strerror(-r));
	if (sink.fd >= 0)
		close(sink.fd);
	if (bin_fd >= 0)
		close(bin_fd);
	if (dl_tmp[0])
		unlink(dl_tmp);
	if (bin_tmp[0])
		unlink(bin_tmp);
	EVP_MD_CTX_free(sink.md);
	return r;
}
