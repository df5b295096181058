/* Files the agent needs on disk: its config (atomic, 0600) and its binary (download + SHA-256). */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "http.h"

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
static bool url_is_tarball(const char *url)
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

static int sha256(const char *data, size_t len, unsigned char digest[32])
{
	unsigned int dlen = 0;

	if (EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
		return -EIO;
	return 0;
}

int agent_download(struct http_client *http, const char *url, bool explicit_url,
                   const char *sha256_hex, const char *dest, uint64_t max_bytes, long timeout_ms)
{
	struct http_request req = {0};
	struct http_response resp;
	unsigned char digest[32];
	int r;

	if (!http || !url || !dest || !sha256_hex_valid(sha256_hex))
		return -EINVAL;
	if (url_is_tarball(url))
		return -ENOTSUP;
	req.method = "GET";
	req.url = url;
	req.timeout_ms = timeout_ms;
	req.max_body = max_bytes > SIZE_MAX ? SIZE_MAX : (size_t)max_bytes;
	req.explicit_endpoint = explicit_url;
	r = http_perform(http, &req, &resp);
	if (r < 0)
		goto out;
	if (resp.status != 200) {
		r = resp.status == 404 || resp.status == 410   ? -ENOENT
		    : resp.status == 401 || resp.status == 403 ? -EACCES
		                                               : -EPROTO;
		goto out;
	}
	/* Verify before anything reaches the disk: an unverified binary never exists at any path,
	 * not even the temp one. */
	r = sha256(resp.body.data ? resp.body.data : "", resp.body.len, digest);
	if (r < 0)
		goto out;
	if (!agent_sha256_matches(digest, sha256_hex)) {
		r = -EBADMSG;
		goto out;
	}
	/* 0700 while being written (nobody can execute a half-written file), 0755 once whole. */
	r = write_atomic(dest, resp.body.data, resp.body.len, 0700, 0755, (uid_t)-1, (gid_t)-1);
out:
	http_response_free(&resp);
	return r;
}
