/* The IMDS guard: endpoint parsing and the nft scripts from tables, and the run of `nft -f -`
 * against a stand-in nft in PATH (which also covers spawn_run's stdin). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "imds_guard.h"
#include "subproc.h"
#include "util.h"

static void test_endpoint(void **state)
{
	static const struct {
		const char *url;
		int r, family;
		const char *addr;
		unsigned port;
	} t[] = {
	        {"http://127.0.0.1:1234", 0, 4, "127.0.0.1", 1234},
	        {"http://127.0.0.1", 0, 4, "127.0.0.1", 0},
	        {"http://127.0.0.1/", 0, 4, "127.0.0.1", 0},
	        {"HTTPS://10.1.2.3:443/latest/", 0, 4, "10.1.2.3", 443},
	        {"http://169.254.169.254", 0, 4, "169.254.169.254", 0},
	        {"http://[fd00:ec2::254]", 0, 6, "fd00:ec2::254", 0},
	        {"http://[fd00:ec2::254]:8080/", 0, 6, "fd00:ec2::254", 8080},
	        {"http://[::1]:80", 0, 6, "::1", 80},
	        /* host names cannot be matched by an address rule */
	        {"http://localhost:1234", -ENOENT, 0, NULL, 0},
	        {"http://metadata.internal", -ENOENT, 0, NULL, 0},
	        {"http://999.1.1.1", -ENOENT, 0, NULL, 0},
	        /* broken */
	        {"", -EINVAL, 0, NULL, 0},
	        {"169.254.169.254", -EINVAL, 0, NULL, 0},
	        {"ftp://1.2.3.4", -EINVAL, 0, NULL, 0},
	        {"http://", -EINVAL, 0, NULL, 0},
	        {"http://[::1", -EINVAL, 0, NULL, 0},
	        {"http://[::1]x", -EINVAL, 0, NULL, 0},
	        {"http://[nothex]:80", -EINVAL, 0, NULL, 0},
	        {"http://1.2.3.4:", -EINVAL, 0, NULL, 0},
	        {"http://1.2.3.4:0", -EINVAL, 0, NULL, 0},
	        {"http://1.2.3.4:65536", -EINVAL, 0, NULL, 0},
	        {"http://1.2.3.4:12ab", -EINVAL, 0, NULL, 0},
	        {"http://1.2.3.4:-1", -EINVAL, 0, NULL, 0},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		char addr[64] = "";
		unsigned port = 99;
		int family = 99;
		int r = imds_guard_endpoint(t[i].url, &family, addr, sizeof(addr), &port);

		if (r != t[i].r)
			fail_msg("%s: %d, want %d", t[i].url, r, t[i].r);
		if (r == 0) {
			assert_int_equal(family, t[i].family);
			assert_string_equal(addr, t[i].addr);
			assert_int_equal(port, t[i].port);
		}
	}
	{
		int family;
		unsigned port;
		char small[4];

		assert_int_equal(imds_guard_endpoint(NULL, &family, small, sizeof(small), &port),
		                 -EINVAL);
		assert_int_equal(imds_guard_endpoint("http://127.0.0.1", &family, small,
		                                     sizeof(small), &port),
		                 -ENAMETOOLONG);
	}
}

#define HEAD                                                                                       \
	"add table inet runnerd\n"                                                                 \
	"delete table inet runnerd\n"                                                              \
	"table inet runnerd {\n"                                                                   \
	"\tchain imds_guard {\n"                                                                   \
	"\t\ttype filter hook output priority filter; policy accept;\n"                            \
	"\t\tmeta skuid 1001 ip daddr 169.254.169.254 reject\n"                                    \
	"\t\tmeta skuid 1001 ip6 daddr fd00:ec2::254 reject\n"
#define TAIL "\t}\n}\n"

static void test_ruleset(void **state)
{
	static const struct {
		const char *endpoint;
		const char *want;
	} t[] = {
	        {NULL, HEAD TAIL},
	        {"", HEAD TAIL},
	        {"http://localhost:1234", HEAD TAIL},
	        {"not a url", HEAD TAIL},
	        /* the real addresses are covered on every port already: no second rule */
	        {"http://169.254.169.254:80", HEAD TAIL},
	        {"http://[FD00:EC2::254]", HEAD TAIL},
	        {"http://127.0.0.1:4321/",
	         HEAD "\t\tmeta skuid 1001 ip daddr 127.0.0.1 tcp dport 4321 reject\n" TAIL},
	        {"http://10.9.8.7", HEAD "\t\tmeta skuid 1001 ip daddr 10.9.8.7 reject\n" TAIL},
	        {"http://[fd00::1]:80",
	         HEAD "\t\tmeta skuid 1001 ip6 daddr fd00::1 tcp dport 80 reject\n" TAIL},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		struct buf b;

		buf_init(&b, 4096);
		assert_int_equal(imds_guard_ruleset(1001, t[i].endpoint, &b), 0);
		assert_string_equal(b.data, t[i].want);
		buf_free(&b);
	}
}

static void test_ruleset_refuses_root(void **state)
{
	struct buf b;

	/* A rule for uid 0 would cut runnerd itself off from IMDS. */
	buf_init(&b, 4096);
	assert_int_equal(imds_guard_ruleset(0, NULL, &b), -EINVAL);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	/* Too small a buffer is an error, never a truncated script. */
	buf_init(&b, 64);
	assert_int_equal(imds_guard_ruleset(1001, NULL, &b), -EFBIG);
	buf_free(&b);
}

static void test_removal(void **state)
{
	assert_string_equal(imds_guard_removal(),
	                    "add table inet runnerd\ndelete table inet runnerd\n");
}

/* ---- the run of nft, with a stand-in in PATH ---- */

static char dir[] = "/tmp/test_imds_guard.XXXXXX";
static char *saved_path;

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static char *read_all(const char *path)
{
	static char text[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static int setup_nft(void **state)
{
	char path[256], script[512];

	if (!mkdtemp(dir))
		return -1;
	/* Records its arguments and stdin; the exit status comes from a file. */
	snprintf(script, sizeof(script),
	         "#!/bin/sh\necho \"$*\" > %s/args\ncat > %s/stdin\nexit $(cat %s/status)\n", dir,
	         dir, dir);
	snprintf(path, sizeof(path), "%s/nft", dir);
	write_file(path, script, 0755);
	saved_path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	snprintf(script, sizeof(script), "%s:%s", dir, saved_path);
	setenv("PATH", script, 1);
	return 0;
}

static int teardown_nft(void **state)
{
	const char *files[] = {"nft", "args", "stdin", "status"};
	char path[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	setenv("PATH", saved_path, 1);
	free(saved_path);
	return 0;
}

static void set_status(const char *s)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/status", dir);
	write_file(path, s, 0644);
}

static void test_install_and_remove(void **state)
{
	char path[256];
	struct buf want;
	int st = -2;

	set_status("0\n");
	assert_int_equal(imds_guard_install(1001, "http://127.0.0.1:4321", &st), 0);
	assert_int_equal(st, 0);
	snprintf(path, sizeof(path), "%s/args", dir);
	assert_string_equal(read_all(path), "-f -\n");
	buf_init(&want, 4096);
	assert_int_equal(imds_guard_ruleset(1001, "http://127.0.0.1:4321", &want), 0);
	snprintf(path, sizeof(path), "%s/stdin", dir);
	assert_string_equal(read_all(path), want.data);
	buf_free(&want);

	assert_int_equal(imds_guard_remove(&st), 0);
	assert_string_equal(read_all(path), imds_guard_removal());

	set_status("1\n");
	assert_int_equal(imds_guard_install(1001, NULL, &st), -EIO);
	assert_int_equal(st, 1);
	assert_int_equal(imds_guard_remove(&st), -EIO);
	/* uid 0 never reaches nft */
	unlink(path);
	assert_int_equal(imds_guard_install(0, NULL, &st), -EINVAL);
	assert_null(read_all(path));
}

static void test_no_nft(void **state)
{
	char *path = strdup(getenv("PATH"));
	int st;

	setenv("PATH", "/nonexistent", 1);
	assert_int_equal(imds_guard_install(1001, NULL, &st), -ENOENT);
	assert_int_equal(imds_guard_remove(&st), -ENOENT);
	setenv("PATH", path, 1);
	free(path);
}

static void test_spawn_input_bounds(void **state)
{
	const char *argv[] = {"/bin/sh", "-c", "exit 0", NULL};
	char big[PIPE_BUF + 1];
	struct spawn_opts o = {.input = big, .input_len = sizeof(big)};
	int st;

	memset(big, 'x', sizeof(big));
	assert_int_equal(spawn_run(argv, &o, &st), -E2BIG);
	/* The child sees exactly the input, then EOF. */
	{
		const char *wc[] = {"/bin/sh", "-c", "test \"$(wc -c)\" -eq 4096", NULL};

		o.input_len = PIPE_BUF;
		assert_int_equal(spawn_run(wc, &o, &st), 0);
		assert_int_equal(st, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_endpoint),
	        cmocka_unit_test(test_ruleset),
	        cmocka_unit_test(test_ruleset_refuses_root),
	        cmocka_unit_test(test_removal),
	        cmocka_unit_test_setup_teardown(test_install_and_remove, setup_nft, teardown_nft),
	        cmocka_unit_test(test_no_nft),
	        cmocka_unit_test(test_spawn_input_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
