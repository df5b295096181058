/* The task agent's directory, made ready or refused (task_dir.h). */
#include "task_dir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Is the component at fd (named path, for messages) one runnerd may walk through or use? last:
 * it is dir itself. */
static int judge(int fd, const char *path, bool last, char *why, size_t n)
{
	struct stat st;
	mode_t mode;

	if (fstat(fd, &st) < 0) {
		int r = -errno;

		str_printf(why, n, "%s: %s", path, strerror(errno));
		return r;
	}
	mode = st.st_mode & 07777;
	if (!S_ISDIR(st.st_mode)) {
		str_printf(why, n, "%s is not a directory", path);
		return -ENOTDIR;
	}
	/* root's, or runnerd's own when it runs as another user (a test, a rootless setup). */
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		str_printf(why, n,
		           "%s belongs to uid %u, not root: that user could replace the task agent "
		           "(chown root, or name a directory of root's)",
		           path, (unsigned)st.st_uid);
		return -EPERM;
	}
	if ((mode & (S_IWGRP | S_IWOTH)) && (last || !(mode & S_ISVTX))) {
		str_printf(why, n,
		           "%s is writable by %s (mode %04o): another user could replace the task "
		           "agent "
		           "(chmod 0755 it)",
		           path, last ? "group or others" : "others than its owner",
		           (unsigned)mode);
		return -EPERM;
	}
	if (!last && !(mode & S_IXOTH)) {
		str_printf(why, n,
		           "%s is not searchable by all users (mode %04o): the job user could not "
		           "reach "
		           "the task agent",
		           path, (unsigned)mode);
		return -EACCES;
	}
	return 0;
}

int task_dir_prepare(const char *dir, char *why, size_t n)
{
	char path[PATH_MAX];
	size_t len = dir ? strlen(dir) : 0, at = 0;
	struct statvfs vfs;
	struct stat st;
	int fd, r = 0;

	if (why && n)
		why[0] = '\0';
	if (!dir || dir[0] != '/')
		return -EINVAL;
	if (len >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = judge(fd, "/", len == 1, why, n);
	/* One component at a time from /, never following a link: each is judged before the
	 * next is opened through it, so a component cannot be swapped between check and use. */
	while (r == 0 && at < len) {
		char comp[NAME_MAX + 1];
		const char *name;
		size_t clen;
		bool last;
		int next;

		while (dir[at] == '/')
			at++;
		if (!dir[at])
			break;
		name = dir + at;
		clen = strcspn(name, "/");
		at += clen;
		memcpy(path, dir, at);
		path[at] = '\0';
		last = dir[at + strspn(dir + at, "/")] == '\0';
		if (clen > NAME_MAX) {
			r = -ENAMETOOLONG;
			break;
		}
		memcpy(comp, name, clen);
		comp[clen] = '\0';
		if (mkdirat(fd, comp, 0755) == 0) {
			/* Ours: exactly 0755 whatever the umask (fchmodat follows no link
			 * here: the name was just made a directory by us, in a directory
			 * only root can write). */
			if (fchmodat(fd, comp, 0755, 0) < 0) {
				r = -errno;
				str_printf(why, n, "%s: chmod: %s", path, strerror(errno));
				break;
			}
		} else if (errno != EEXIST) {
			r = -errno;
			str_printf(why, n, "%s: mkdir: %s", path, strerror(errno));
			break;
		}
		next = openat(fd, comp,
		              (last ? O_RDONLY : O_PATH) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			r = -errno;
			if (errno == ELOOP ||
			    (errno == ENOTDIR && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			     S_ISLNK(st.st_mode))) {
				r = -ELOOP;
				str_printf(why, n, "%s is a symbolic link: name the real path",
				           path);
			} else {
				str_printf(why, n, "%s: %s", path, strerror(-r));
			}
			break;
		}
		close(fd);
		fd = next;
		r = judge(fd, path, last, why, n);
	}
	if (r == 0 && fstat(fd, &st) == 0 && (st.st_mode & 0555) != 0555 &&
	    fchmod(fd, (st.st_mode & 07777) | 0555) < 0) {
		r = -errno;
		str_printf(why, n, "%s: chmod: %s", dir, strerror(errno));
	}
	if (r == 0 && fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_NOEXEC)) {
		r = -ENOEXEC;
		str_printf(why, n,
		           "%s is on a file system mounted noexec: the job user could not run the "
		           "task agent",
		           dir);
	}
	close(fd);
	return r;
}
