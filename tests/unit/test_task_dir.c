/* supervisor/task_dir: the task agent's directory made ready or refused, on a scratch tree
 * under /tmp (root runs the unit tests: ownership is real). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "task_dir.h"
#include "util.h"

#define NOBODY 65534

static char root[64];

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/test_task_dir.XXXXXX");
	if (!mkdtemp(root) || chmod(root, 0755) < 0)
		return -1;
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static int teardown(void **state)
{
	return nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[1024], full[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "set -e; cd %s; %s", root, cmd);
	if (system(full) != 0)
		fail_msg("setup failed: %s", cmd);
}

static mode_t mode_of(const char *rel)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	assert_int_equal(lstat(p, &st), 0);
	return st.st_mode & 07777;
}

/* Each case: a setup in the scratch root, the directory asked for (relative to it), the result
 * and a substring of the reason. */
static void test_table(void **state)
{
	static const struct {
		const char *setup, *dir;
		int r;
		const char *says;
	} cases[] = {
	        /* Made: every missing component root's and 0755 whatever the umask. */
	        {"umask 077", "a/b/task-agent", 0, NULL},
	        /* Root's own, lacking read and search bits: they are added. */
	        {"mkdir -m 0700 t", "t", 0, NULL},
	        {"mkdir -m 0711 t", "t", 0, NULL},
	        /* A sticky parent writable by all (/tmp's shape) is fine. */
	        {"mkdir -m 1777 s", "s/t", 0, NULL},
	        /* Refused: someone else could change it, or the job user could not reach it. */
	        {"mkdir t && chown 65534 t", "t", -EPERM, "belongs to uid 65534, not root"},
	        {"mkdir -m 0775 t", "t", -EPERM, "writable by group or others (mode 0775)"},
	        {"mkdir -m 1777 t", "t", -EPERM, "writable by group or others (mode 1777)"},
	        {"mkdir p && chown 65534 p", "p/t", -EPERM, "/p belongs to uid 65534"},
	        {"mkdir -m 0777 p", "p/t", -EPERM, "/p is writable by others than its owner"},
	        {"mkdir -m 0700 p", "p/t", -EACCES,
	         "/p is not searchable by all users (mode 0700)"},
	        {"mkdir -m 0750 p", "p/t", -EACCES, "not searchable by all users"},
	        {"mkdir real && ln -s real link", "link/t", -ELOOP, "/link is a symbolic link"},
	        {"mkdir real && ln -s real link", "link", -ELOOP, "/link is a symbolic link"},
	        {"ln -s /nonexistent dangling", "dangling", -ELOOP, "is a symbolic link"},
	        {"touch f", "f", -ENOTDIR, NULL},
	        {"touch f", "f/t", -ENOTDIR, NULL},
	};
	char dir[256], why[512];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r;

		sh("rm -rf ./* && %s", cases[i].setup);
		snprintf(dir, sizeof(dir), "%s/%s", root, cases[i].dir);
		why[0] = '\0';
		{
			mode_t old = umask(077); /* what runnerd's own umask might be */

			r = task_dir_prepare(dir, why, sizeof(why));
			umask(old);
		}
		if (r != cases[i].r || (cases[i].says && !strstr(why, cases[i].says)))
			fail_msg("case %zu (%s, %s): r=%d why=\"%s\"", i, cases[i].setup,
			         cases[i].dir, r, why);
		if (r == 0)
			assert_int_equal(mode_of(cases[i].dir) & 0555, 0555);
		if (r < 0)
			assert_true(why[0] != '\0');
	}
	/* The made components are exactly 0755. */
	sh("rm -rf ./*");
	snprintf(dir, sizeof(dir), "%s/a/b/task-agent", root);
	{
		mode_t old = umask(077);

		assert_int_equal(task_dir_prepare(dir, why, sizeof(why)), 0);
		umask(old);
	}
	assert_int_equal(mode_of("a"), 0755);
	assert_int_equal(mode_of("a/b"), 0755);
	assert_int_equal(mode_of("a/b/task-agent"), 0755);
	/* A refused one is left as it was: never taken over. */
	sh("rm -rf ./* && mkdir t && chown 65534 t && chmod 0700 t");
	snprintf(dir, sizeof(dir), "%s/t", root);
	assert_int_equal(task_dir_prepare(dir, why, sizeof(why)), -EPERM);
	assert_int_equal(mode_of("t"), 0700);
	/* Not absolute. */
	assert_int_equal(task_dir_prepare("rel/dir", why, sizeof(why)), -EINVAL);
	assert_int_equal(task_dir_prepare(NULL, why, sizeof(why)), -EINVAL);
}

/* A noexec mount: the job user could not run the task agent from it. */
static void test_noexec(void **state)
{
	char mnt[256], dir[300], why[512];

	snprintf(mnt, sizeof(mnt), "%s/noexec", root);
	assert_int_equal(mkdir(mnt, 0755), 0);
	/* In a mount namespace of this test's own: nothing shows on the host, even on failure. */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		skip();
	if (mount("tmpfs", mnt, "tmpfs", MS_NOEXEC | MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		skip(); /* not root, or no mount namespace rights */
	snprintf(dir, sizeof(dir), "%s/task-agent", mnt);
	assert_int_equal(task_dir_prepare(dir, why, sizeof(why)), -ENOEXEC);
	assert_non_null(strstr(why, "mounted noexec"));
	assert_int_equal(umount(mnt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_noexec, setup, teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_task_dir: needs root (ownership checks); skipped\n");
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
