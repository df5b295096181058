/* supervisor/apt: the source line runnerd writes, the key's format, and the drop-in that keeps
 * the vendor's unit from starting (on a scratch root). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apt.h"
#include "util.h"

static void test_source_line(void **state)
{
	static const struct {
		const char *source, *keyring, *line;
		int r;
	} cases[] = {
	        {"https://packagecloud.io/circleci/runner/any any main", "/etc/apt/keyrings/k.asc",
	         "deb [signed-by=/etc/apt/keyrings/k.asc] "
	         "https://packagecloud.io/circleci/runner/any any main\n",
	         0},
	        /* What apt would read as syntax: options, a comment, another line. */
	        {"https://r/d any main [arch=amd64]", "/k", NULL, -EINVAL},
	        {"https://r/d any main # comment", "/k", NULL, -EINVAL},
	        {"https://r/d any main\ndeb https://evil/ any main", "/k", NULL, -EINVAL},
	        {"https://r/d\tany main", "/k", NULL, -EINVAL},
	        {"https://r/d any main\x7f", "/k", NULL, -EINVAL},
	        {"https://r/d any main", "/my keys/k", NULL, -EINVAL},
	        {"https://r/d any main", "/k]", NULL, -EINVAL},
	        {"", "/k", NULL, -EINVAL},
	        {"https://r/d any main", "", NULL, -EINVAL},
	        {NULL, "/k", NULL, -EINVAL},
	};
	char out[256];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = apt_source_line(cases[i].source, cases[i].keyring, out, sizeof(out));

		if (r != cases[i].r)
			fail_msg("case %zu: %d", i, r);
		if (r == 0)
			assert_string_equal(out, cases[i].line);
	}
	assert_int_equal(apt_source_line("https://r/d any main", "/k", out, 20), -ENAMETOOLONG);
}

static void test_key_is_armored(void **state)
{
	static const char armored[] = "\n  -----BEGIN PGP PUBLIC KEY BLOCK-----\nxyz\n";
	static const char binary[] = "\x99\x01\x0d\x04";

	assert_true(apt_key_is_armored(armored, strlen(armored)));
	assert_false(apt_key_is_armored(binary, sizeof(binary) - 1));
	assert_false(apt_key_is_armored("-----BEGIN PGP", 14)); /* cut short */
	assert_false(apt_key_is_armored("", 0));
	assert_false(apt_key_is_armored("   ", 3));
}

static char root[64];

static int setup_root(void **state)
{
	snprintf(root, sizeof(root), "/tmp/test_apt.XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static int teardown_root(void **state)
{
	return nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t slurp(const char *path, char *out, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	assert_true(fd >= 0);
	got = read(fd, out, n - 1);
	close(fd);
	assert_true(got >= 0);
	out[got] = '\0';
	return (size_t)got;
}

static void test_hold_unit(void **state)
{
	char path[256], text[1024];
	struct stat st;

	snprintf(path, sizeof(path),
	         "%s/etc/systemd/system/circleci-runner.service.d/50-runnerd.conf", root);
	/* Written on a root without /etc/systemd/system, before the unit exists. */
	assert_false(apt_unit_installed(root, "circleci-runner.service"));
	assert_int_equal(apt_hold_unit(root, "circleci-runner.service", "/usr/sbin/runnerd"), 1);
	slurp(path, text, sizeof(text));
	assert_non_null(strstr(text, "[Unit]\nConditionPathExists=!/usr/sbin/runnerd\n"));
	assert_non_null(strstr(text, "# Written by runnerd"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	/* Again: already there, untouched. */
	assert_int_equal(apt_hold_unit(root, "circleci-runner.service", "/usr/sbin/runnerd"), 0);
	/* Edited by someone: written back. */
	{
		int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "[Unit]\n", 7), 7);
		close(fd);
	}
	assert_int_equal(apt_hold_unit(root, "circleci-runner.service", "/usr/sbin/runnerd"), 1);
	slurp(path, text, sizeof(text));
	assert_non_null(strstr(text, "ConditionPathExists=!/usr/sbin/runnerd"));
	/* No temp file left beside it. */
	snprintf(path, sizeof(path),
	         "%s/etc/systemd/system/circleci-runner.service.d/"
	         ".50-runnerd.conf.new",
	         root);
	assert_int_equal(access(path, F_OK), -1);
	/* Unit names are names. */
	assert_int_equal(apt_hold_unit(root, "../x.service", "/usr/sbin/runnerd"), -EINVAL);
	assert_int_equal(apt_hold_unit(root, "", "/usr/sbin/runnerd"), -EINVAL);
	assert_int_equal(apt_hold_unit(root, NULL, "/usr/sbin/runnerd"), -EINVAL);
	/* Another executable path is another drop-in: written again. */
	assert_int_equal(apt_hold_unit(root, "circleci-runner.service", "/usr/local/sbin/runnerd"),
	                 1);
	snprintf(path, sizeof(path),
	         "%s/etc/systemd/system/circleci-runner.service.d/50-runnerd.conf", root);
	slurp(path, text, sizeof(text));
	assert_non_null(strstr(text, "ConditionPathExists=!/usr/local/sbin/runnerd\n"));
	assert_false(apt_unit_held_by_package(root, "circleci-runner.service"));

	/* Where a package puts its unit, or where an operator does. */
	snprintf(path, sizeof(path), "%s/usr", root);
	(void)mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/usr/lib", root);
	(void)mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/usr/lib/systemd", root);
	(void)mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/usr/lib/systemd/system", root);
	(void)mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/usr/lib/systemd/system/circleci-runner.service", root);
	{
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		assert_true(fd >= 0);
		close(fd);
	}
	assert_true(apt_unit_installed(root, "circleci-runner.service"));
	assert_false(apt_unit_installed(root, "other.service"));
}

static void test_hold_text(void **state)
{
	static const struct {
		const char *path;
		int r;
	} cases[] = {
	        {"/usr/sbin/runnerd", 0},
	        {"/opt/runnerd bin/runnerd", -EINVAL}, /* systemd would split it */
	        {"/x\ny", -EINVAL},
	        {"/a%b", -EINVAL}, /* a specifier */
	        {"/a\\b", -EINVAL},
	        {"relative", -EINVAL},
	        {"", -EINVAL},
	        {NULL, -EINVAL},
	};
	char out[1024];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(apt_hold_text(cases[i].path, out, sizeof(out)), cases[i].r);
	assert_int_equal(apt_hold_text("/usr/sbin/runnerd", out, 40), -ENAMETOOLONG);
}

/* The drop-ins runnerd's package ships are exactly what runnerd writes for /usr/sbin/runnerd. */
static void test_packaged_dropins(void **state)
{
	static const char *const units[] = {"circleci-runner.service", "circleci.service"};
	char want[1024], path[256], text[1024];

	assert_int_equal(apt_hold_text("/usr/sbin/runnerd", want, sizeof(want)), 0);
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		snprintf(path, sizeof(path), "packaging/systemd/%s.d/50-runnerd.conf", units[i]);
		slurp(path, text, sizeof(text));
		assert_string_equal(text, want);
	}
}

static void test_held_by_package(void **state)
{
	char path[256];
	int fd;

	assert_false(apt_unit_held_by_package(root, "circleci.service"));
	snprintf(path, sizeof(path), "mkdir -p %s/lib/systemd/system/circleci.service.d", root);
	assert_int_equal(system(path), 0);
	snprintf(path, sizeof(path), "%s/lib/systemd/system/circleci.service.d/50-runnerd.conf",
	         root);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_true(apt_unit_held_by_package(root, "circleci.service"));
	assert_false(apt_unit_held_by_package(root, "circleci-runner.service"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_source_line),
	        cmocka_unit_test(test_key_is_armored),
	        cmocka_unit_test_setup_teardown(test_hold_unit, setup_root, teardown_root),
	        cmocka_unit_test(test_hold_text),
	        cmocka_unit_test(test_packaged_dropins),
	        cmocka_unit_test_setup_teardown(test_held_by_package, setup_root, teardown_root),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
