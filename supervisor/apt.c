/* Debian's package tools as runnerd drives them (apt.h). */
#include "apt.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "subproc.h"

#define DPKG_QUERY_TIMEOUT_MS 60000L

extern char **environ;

void apt_env(char **envp, size_t max)
{
	static char frontend[] = "DEBIAN_FRONTEND=noninteractive";
	size_t n = 0;
	char **e;

	for (e = environ; *e && n + 2 < max; e++) {
		if (strncmp(*e, "DEBIAN_FRONTEND=", 16) == 0 ||
		    strncmp(*e, "AWS_SECRET", 10) == 0 ||
		    strncmp(*e, "AWS_SESSION_TOKEN=", 18) == 0 ||
		    strncmp(*e, "AWS_ACCESS_KEY_ID=", 18) == 0)
			continue;
		envp[n++] = *e;
	}
	envp[n++] = frontend;
	envp[n] = NULL;
}

bool apt_pkg_installed(const char *pkg, char **envp)
{
	const char *argv[] = {"dpkg-query", "-W", "-f=${Status}", pkg, NULL};
	struct spawn_opts o = {
	        .envp = envp, .search_path = true, .timeout_ms = DPKG_QUERY_TIMEOUT_MS};
	struct buf out;
	bool yes;
	int st, r;

	buf_init(&out, 4096);
	o.capture = &out;
	r = spawn_run(argv, &o, &st);
	yes = r == 0 && st == 0 && out.data && strcmp(out.data, "install ok installed") == 0;
	buf_free(&out);
	return yes;
}

int apt_run(const char *const *argv, char **envp)
{
	struct spawn_opts o = {.envp = envp, .search_path = true, .stdout_to_stderr = true};
	int st, r;

	r = spawn_run(argv, &o, &st);
	if (r < 0)
		return r;
	return st;
}

int apt_source_line(const char *source, const char *keyring, char *out, size_t n)
{
	const char *p;
	int w;

	if (!source || !keyring || !source[0] || !keyring[0])
		return -EINVAL;
	for (p = source; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == '[' || *p == ']' || *p == '#' || *p == 0x7f)
			return -EINVAL;
	for (p = keyring; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == '[' || *p == ']' || *p == 0x7f)
			return -EINVAL;
	w = snprintf(out, n, "deb [signed-by=%s] %s\n", keyring, source);
	if (w < 0)
		return -EINVAL;
	return (size_t)w >= n ? -ENAMETOOLONG : 0;
}

bool apt_key_is_armored(const char *data, size_t len)
{
	static const char mark[] = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
	size_t i = 0;

	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;
	return len - i >= sizeof(mark) - 1 && memcmp(data + i, mark, sizeof(mark) - 1) == 0;
}

int apt_mask_unit(const char *root, const char *unit)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX], target[16];
	const char *r = root ? root : "";
	ssize_t len;
	int w;

	if (!unit || !unit[0] || strchr(unit, '/'))
		return -EINVAL;
	w = snprintf(dir, sizeof(dir), "%s/etc/systemd/system", r);
	if (w < 0 || (size_t)w >= sizeof(dir))
		return -ENAMETOOLONG;
	w = snprintf(path, sizeof(path), "%s/%s", dir, unit);
	if (w < 0 || (size_t)w >= sizeof(path))
		return -ENAMETOOLONG;
	w = snprintf(tmp, sizeof(tmp), "%s/.%s.runnerd-mask", dir, unit);
	if (w < 0 || (size_t)w >= sizeof(tmp))
		return -ENAMETOOLONG;
	len = readlink(path, target, sizeof(target) - 1);
	if (len == 9 && memcmp(target, "/dev/null", 9) == 0)
		return 0;
	/* /etc/systemd/system exists on every systemd host; a root without it gets it. */
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	(void)unlink(tmp);
	if (symlink("/dev/null", tmp) < 0)
		return -errno;
	if (rename(tmp, path) < 0) {
		w = -errno;
		(void)unlink(tmp);
		return w;
	}
	return 0;
}
