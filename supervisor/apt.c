/* Debian's package tools as runnerd drives them (apt.h). */
#include "apt.h"

#include <errno.h>
#include <fcntl.h>
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

/* systemd 252 has no always-false condition (ConditionNull= is gone), and a mask would fail a
 * strict postinst's enable: the condition is "runnerd is not installed", on runnerd's own path. */
static const char hold_head[] =
        "# Written by runnerd: runnerd runs the CircleCI agent itself (runnerd(8)), and this\n"
        "# unit would run a second one under the same runner name. It starts only where\n"
        "# runnerd is not installed; to hand the agent back to this unit, delete this file\n"
        "# and run `systemctl daemon-reload`.\n"
        "[Unit]\n"
        "ConditionPathExists=!";

int apt_hold_text(const char *unless_path, char *out, size_t n)
{
	int w;

	if (!unless_path || unless_path[0] != '/' || strpbrk(unless_path, " \t\n\\%"))
		return -EINVAL;
	w = snprintf(out, n, "%s%s\n", hold_head, unless_path);
	if (w < 0)
		return -EINVAL;
	return (size_t)w >= n ? -ENAMETOOLONG : 0;
}

bool apt_unit_held_by_package(const char *root, const char *unit)
{
	/* dpkg installs it under /lib; on a merged-/usr system both names are one directory. */
	static const char *const dirs[] = {"/lib/systemd/system", "/usr/lib/systemd/system"};
	char path[PATH_MAX];
	struct stat st;

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		int w = snprintf(path, sizeof(path), "%s%s/%s.d/50-runnerd.conf", root ? root : "",
		                 dirs[i], unit);

		if (w > 0 && (size_t)w < sizeof(path) && stat(path, &st) == 0 &&
		    S_ISREG(st.st_mode))
			return true;
	}
	return false;
}

int apt_hold_unit(const char *root, const char *unit, const char *unless_path)
{
	char base[PATH_MAX], dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
	char text[sizeof(hold_head) + PATH_MAX + 2], have[sizeof(text)];
	size_t tlen;
	const char *r = root ? root : "";
	ssize_t got = -1;
	int fd, w, e;

	if (!unit || !unit[0] || strchr(unit, '/'))
		return -EINVAL;
	w = apt_hold_text(unless_path, text, sizeof(text));
	if (w < 0)
		return w;
	tlen = strlen(text);
	w = snprintf(base, sizeof(base), "%s/etc/systemd/system", r);
	if (w < 0 || (size_t)w >= sizeof(base))
		return -ENAMETOOLONG;
	w = snprintf(dir, sizeof(dir), "%s/%s.d", base, unit);
	if (w < 0 || (size_t)w >= sizeof(dir))
		return -ENAMETOOLONG;
	w = snprintf(path, sizeof(path), "%s/50-runnerd.conf", dir);
	if (w < 0 || (size_t)w >= sizeof(path))
		return -ENAMETOOLONG;
	w = snprintf(tmp, sizeof(tmp), "%s/.50-runnerd.conf.new", dir);
	if (w < 0 || (size_t)w >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		got = read(fd, have, sizeof(have));
		close(fd);
		if (got == (ssize_t)tlen && memcmp(have, text, tlen) == 0)
			return 0;
	}
	/* /etc/systemd/system exists on every systemd host; a root without it gets it. */
	for (char *p = base + strlen(r) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		w = mkdir(base, 0755) < 0 && errno != EEXIST ? -errno : 0;
		*p = '/';
		if (w < 0)
			return w;
	}
	if ((mkdir(base, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0755) < 0 && errno != EEXIST))
		return -errno;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	errno = 0;
	e = write(fd, text, tlen) == (ssize_t)tlen ? 0 : (errno ? -errno : -EIO);
	if (e == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
		e = -errno;
	close(fd);
	if (e == 0 && rename(tmp, path) < 0)
		e = -errno;
	if (e < 0) {
		(void)unlink(tmp);
		return e;
	}
	return 1;
}

bool apt_unit_installed(const char *root, const char *unit)
{
	static const char *const dirs[] = {"/etc/systemd/system", "/usr/lib/systemd/system",
	                                   "/lib/systemd/system"};
	char path[PATH_MAX];
	struct stat st;

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		int w = snprintf(path, sizeof(path), "%s%s/%s", root ? root : "", dirs[i], unit);

		if (w > 0 && (size_t)w < sizeof(path) && lstat(path, &st) == 0)
			return true;
	}
	return false;
}
