/* agent/tarball: header parsing, names and pax records from tables; extraction of one member from
 * archives built here, hostile ones included (links, devices, traversal, duplicates, lies about
 * sizes, bombs, truncation). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tar_builder.h"
#include "tarball.h"
#include "util.h"

static void test_parse_header(void **state)
{
	unsigned char h[512];
	struct tar_header th;

	tarb_header(h, "circleci-runner", '0', 12345, NULL, 0, 0);
	assert_int_equal(tar_parse_header(h, &th), 0);
	assert_string_equal(th.name, "circleci-runner");
	assert_int_equal(th.size, 12345);
	assert_int_equal(th.kind, TAR_REGULAR);

	/* GNU base-256 size (8 GiB and more). */
	tarb_header(h, "big", '0', (uint64_t)9 << 30, NULL, 1, 0);
	assert_int_equal(tar_parse_header(h, &th), 0);
	assert_int_equal(th.size, (uint64_t)9 << 30);

	/* A bad checksum. */
	tarb_header(h, "x", '0', 1, NULL, 0, 0);
	h[0] ^= 1;
	assert_int_equal(tar_parse_header(h, &th), -EBADMSG);

	/* The end block. */
	memset(h, 0, sizeof(h));
	assert_int_equal(tar_parse_header(h, &th), 1);

	/* A POSIX prefix joins the name. */
	{
		char longname[200];

		snprintf(longname, sizeof(longname), "%0120d/circleci-runner", 0);
		tarb_header(h, longname, '0', 1, NULL, 0, 1);
		assert_int_equal(tar_parse_header(h, &th), 0);
		assert_string_equal(th.name, longname);
	}

	/* The longest ustar name: a 155-byte prefix and a 100-byte name, 256 bytes joined. */
	{
		char longest[300];

		memset(longest, 'p', 155);
		longest[155] = '/';
		memset(longest + 156, 'n', 100);
		longest[256] = '\0';
		tarb_header(h, longest, '0', 7, NULL, 0, 1);
		assert_int_equal(tar_parse_header(h, &th), 0);
		assert_string_equal(th.name, longest);
		assert_int_equal(th.size, 7);
	}

	/* Links carry no data whatever their size field says. */
	tarb_header(h, "l", '2', 999, "target", 0, 0);
	assert_int_equal(tar_parse_header(h, &th), 0);
	assert_int_equal(th.kind, TAR_SYMLINK);
	assert_int_equal(th.size, 0);

	/* Non-octal digits in the size field. */
	tarb_header(h, "x", '0', 1, NULL, 0, 0);
	memcpy(h + 124, "0000000009x", 11);
	{
		unsigned sum = 0;

		memset(h + 148, ' ', 8);
		for (int i = 0; i < 512; i++)
			sum += h[i];
		snprintf((char *)h + 148, 8, "%06o", sum);
	}
	assert_int_equal(tar_parse_header(h, &th), -EBADMSG);
}

static void test_normalize_name(void **state)
{
	static const struct {
		const char *in, *out;
		int r;
	} cases[] = {
	        {"circleci-runner", "circleci-runner", 0},
	        {"./circleci-runner", "circleci-runner", 0},
	        {"././circleci-runner", "circleci-runner", 0},
	        {"dir/./x", "dir/x", 0},
	        {"dir//x/", "dir/x", 0},
	        {"/etc/passwd", NULL, -EPERM},
	        {"../circleci-runner", NULL, -EPERM},
	        {"a/../../b", NULL, -EPERM},
	        {"a/..", NULL, -EPERM},
	        {"..", NULL, -EPERM},
	        {"...", "...", 0},
	        {"..x", "..x", 0},
	        {"", NULL, -EINVAL},
	        {"./", NULL, -EINVAL},
	        {".", NULL, -EINVAL},
	};
	char out[64];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = tar_normalize_name(cases[i].in, out, sizeof(out));

		if (r != cases[i].r)
			fail_msg("normalize(%s) = %d, want %d", cases[i].in, r, cases[i].r);
		if (r == 0)
			assert_string_equal(out, cases[i].out);
	}
	assert_int_equal(tar_normalize_name("abcdefgh", out, 4), -ENAMETOOLONG);
	/* A ".." past any length limit still refuses. */
	{
		char name[600];

		memset(name, 'a', 500);
		strcpy(name + 500, "/../../etc/evil");
		assert_int_equal(tar_normalize_name(name, out, sizeof(out)), -EPERM);
	}
}

static void test_pax_size_and_printable(void **state)
{
	uint64_t size = 0;
	char out[64];

	assert_int_equal(tar_pax_size("16 size=1234567\n", 16, &size), 1);
	assert_int_equal(size, 1234567);
	assert_int_equal(tar_pax_size("20 mtime=1700000000\n", 20, &size), 0);
	assert_int_equal(tar_pax_size("9 size=x\n", 9, &size), -EBADMSG);
	assert_int_equal(tar_pax_size("8 size=\n", 8, &size), -EBADMSG);
	assert_int_equal(tar_pax_size("30 size=99999999999999999999\n", 30, &size), -EBADMSG);

	tar_printable("ok name", out, sizeof(out));
	assert_string_equal(out, "ok name");
	tar_printable("\x1b[2J\nFAKE\\", out, sizeof(out));
	assert_string_equal(out, "\\x1b[2J\\x0aFAKE\\x5c");
	tar_printable("\x1b\x1b\x1b", out, 9);
	assert_string_equal(out, "\\x1b\\x1b");
}

static void test_pax_path(void **state)
{
	static const struct {
		const char *rec;
		int r;
		const char *path;
	} cases[] = {
	        {"24 path=circleci-runner\n", 1, "circleci-runner"},
	        {"20 mtime=1700000000\n24 path=circleci-runner\n", 1, "circleci-runner"},
	        {"20 mtime=1700000000\n", 0, NULL},
	        {"", 0, NULL},
	        {"99 path=x\n", -EBADMSG, NULL}, /* length past the end */
	        {"10 path=xy", -EBADMSG, NULL},  /* no newline */
	        {"x path=y\n", -EBADMSG, NULL},  /* no length */
	        {"9 nokeyx\n", -EBADMSG, NULL},  /* no '=' */
	        {"3 \n", -EBADMSG, NULL},        /* too short for a record */
	        {"13 path=../x\n", 1, "../x"},   /* found; the name check refuses it later */
	        {"99999999999999999999 p=x\n", -EBADMSG, NULL},
	};
	char out[64];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = tar_pax_path(cases[i].rec, strlen(cases[i].rec), out, sizeof(out));

		if (r != cases[i].r)
			fail_msg("pax(%s) = %d, want %d", cases[i].rec, r, cases[i].r);
		if (r == 1)
			assert_string_equal(out, cases[i].path);
	}
}

/* ---- extraction ---- */

static const struct tar_limits LIM = {
        .max_member = 1 << 20, .max_unpacked = 8 << 20, .max_entries = 100};

/* Run tarball_extract on the gzip of t; the member's bytes in *got (malloc'd). */
static int extract(struct tarb *t, const char *member, const struct tar_limits *lim, char **got,
                   size_t *got_len, char *why, size_t n)
{
	unsigned char *gz;
	size_t gzlen = tarb_gzip(t, &gz);
	int in = memfd_create("in", MFD_CLOEXEC), out = memfd_create("out", MFD_CLOEXEC), r;
	off_t len;

	assert_true(in >= 0 && out >= 0);
	assert_int_equal(write(in, gz, gzlen), (ssize_t)gzlen);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	r = tarball_extract(in, member, out, lim, why, n);
	len = lseek(out, 0, SEEK_END);
	*got = calloc(1, (size_t)len + 1);
	assert_non_null(*got);
	assert_int_equal(pread(out, *got, (size_t)len, 0), len);
	*got_len = (size_t)len;
	close(in);
	close(out);
	free(gz);
	free(t->data);
	memset(t, 0, sizeof(*t));
	return r;
}

static void test_extract_good(void **state)
{
	struct tarb t = {0};
	char *got, why[256];
	size_t len;

	/* CircleCI's layout: the binary at the top level, among other files. */
	tarb_file(&t, "README.md", "readme");
	tarb_file(&t, "./circleci-runner", "#!/bin/sh\necho agent\n");
	tarb_file(&t, "LICENSE", "license");
	tarb_end(&t);
	assert_int_equal(extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why)), 0);
	assert_string_equal(got, "#!/bin/sh\necho agent\n");
	free(got);

	/* No end blocks: the stream ending on a block boundary is an end too. */
	tarb_file(&t, "circleci-runner", "x");
	assert_int_equal(extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why)), 0);
	assert_string_equal(got, "x");
	free(got);

	/* A GNU long name, and a pax path, naming the member. */
	tarb_entry(&t, "././@LongLink", 'L', "circleci-runner", 16, 16, NULL);
	tarb_file(&t, "truncated-name", "gnu");
	tarb_end(&t);
	assert_int_equal(extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why)), 0);
	assert_string_equal(got, "gnu");
	free(got);
	tarb_entry(&t, "PaxHeaders/x", 'x', "24 path=circleci-runner\n", 24, 24, NULL);
	tarb_file(&t, "whatever", "pax");
	tarb_end(&t);
	assert_int_equal(extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why)), 0);
	assert_string_equal(got, "pax");
	free(got);

	/* A pax size record overrides the header's size. */
	tarb_entry(&t, "PaxHeaders/x", 'x', "10 size=3\n", 10, 10, NULL);
	tarb_entry(&t, "circleci-runner", '0', "abc", 3, 999, NULL);
	tarb_end(&t);
	assert_int_equal(extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why)), 0);
	assert_string_equal(got, "abc");
	free(got);

	/* An empty member is a member. */
	tarb_file(&t, "circleci-runner", "");
	tarb_end(&t);
	assert_int_equal(extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why)), 0);
	assert_int_equal(len, 0);
	free(got);
}

static void test_extract_refused(void **state)
{
	static const struct {
		const char *what;
		int r;
		const char *says;
	} expect[] = {
	        {"symlink", -EPERM, "symbolic link"},
	        {"hardlink", -EPERM, "hard link"},
	        {"device", -EPERM, "a device"},
	        {"directory", -EPERM, "a directory"},
	        {"fifo", -EPERM, "FIFO"},
	        {"traversal elsewhere", -EPERM, "unsafe member name"},
	        {"absolute", -EPERM, "unsafe member name"},
	        {"traversal by pax", -EPERM, "unsafe member name"},
	        {"twice", -EPERM, "appears twice"},
	        {"missing", -ENOENT, "no member"},
	        {"oversize header", -EFBIG, "more than the limit"},
	        {"trailing slash", -EPERM, "a directory"},
	        {"control characters", -EPERM, "\\x1b"},
	        {"truncated", -EBADMSG, "ends inside"},
	        {"too many", -EFBIG, "entries"},
	        {"bomb", -EFBIG, "unpacks to more"},
	};
	char *got, why[256];
	struct tarb t = {0};
	size_t len;

	for (size_t i = 0; i < ARRAY_SIZE(expect); i++) {
		const char *w = expect[i].what;
		int r;

		if (!strcmp(w, "symlink"))
			tarb_entry(&t, "circleci-runner", '2', NULL, 0, 0, "/bin/sh");
		else if (!strcmp(w, "hardlink"))
			tarb_entry(&t, "circleci-runner", '1', NULL, 0, 0, "/etc/shadow");
		else if (!strcmp(w, "device"))
			tarb_entry(&t, "circleci-runner", '3', NULL, 0, 0, NULL);
		else if (!strcmp(w, "directory"))
			tarb_entry(&t, "circleci-runner", '5', NULL, 0, 0, NULL);
		else if (!strcmp(w, "fifo"))
			tarb_entry(&t, "circleci-runner", '6', NULL, 0, 0, NULL);
		else if (!strcmp(w, "traversal elsewhere")) {
			tarb_file(&t, "circleci-runner", "ok");
			tarb_file(&t, "../../etc/cron.d/x", "evil");
		} else if (!strcmp(w, "absolute"))
			tarb_file(&t, "/usr/bin/circleci-runner", "evil");
		else if (!strcmp(w, "traversal by pax")) {
			tarb_entry(&t, "PaxHeaders/x", 'x', "27 path=../circleci-runner\n", 27, 27,
			           NULL);
			tarb_file(&t, "innocent", "evil");
		} else if (!strcmp(w, "twice")) {
			tarb_file(&t, "circleci-runner", "first");
			tarb_file(&t, "./circleci-runner", "second");
		} else if (!strcmp(w, "missing"))
			tarb_file(&t, "circleci-runner-other", "x");
		else if (!strcmp(w, "trailing slash"))
			tarb_file(&t, "circleci-runner/", "");
		else if (!strcmp(w, "control characters"))
			tarb_file(&t, "../\x1b[2J\nFAKE LOG LINE", "x");
		else if (!strcmp(w, "oversize header"))
			/* Says 2 MiB; the limit is 1 MiB: refused before a byte is read. */
			tarb_entry(&t, "circleci-runner", '0', NULL, 0, 2 << 20, NULL);
		else if (!strcmp(w, "truncated"))
			/* Says 1000 bytes, has 10 and no more. */
			tarb_entry(&t, "circleci-runner", '0', "0123456789", 10, 1000, NULL);
		else if (!strcmp(w, "too many"))
			for (int k = 0; k < 101; k++)
				tarb_file(&t, "f", "");
		else if (!strcmp(w, "bomb")) {
			/* 9 MiB of zeros in another member (a few KiB gzip'd): over max_unpacked.
			 */
			char *big = calloc(1, 9 << 20);

			assert_non_null(big);
			tarb_entry(&t, "z", '0', big, 9 << 20, 9 << 20, NULL);
			free(big);
		}
		if (strcmp(w, "truncated"))
			tarb_end(&t);
		why[0] = '\0';
		r = extract(&t, "circleci-runner", &LIM, &got, &len, why, sizeof(why));
		if (r != expect[i].r || !strstr(why, expect[i].says))
			fail_msg("%s: %d (%s), want %d (%s)", w, r, why, expect[i].r,
			         expect[i].says);
		free(got);
	}
}

/* gzip members one after another are one stream (gzip -d and tar read them so): a member
 * split across them comes out whole, and a second copy in a later member is a duplicate. */
static void test_extract_concatenated_gzip(void **state)
{
	struct tarb a = {0}, b = {0};
	unsigned char *ga, *gb;
	size_t la, lb;
	char why[256], got[64] = "";
	int in, out;

	tarb_file(&a, "circleci-runner", "whole across members\n");
	tarb_end(&a);
	/* Split the tar stream in the middle of the member's data. */
	b.data = malloc(a.len - 520);
	memcpy(b.data, a.data + 520, a.len - 520);
	b.len = b.cap = a.len - 520;
	a.len = 520;
	la = tarb_gzip(&a, &ga);
	lb = tarb_gzip(&b, &gb);
	in = memfd_create("in", MFD_CLOEXEC);
	out = memfd_create("out", MFD_CLOEXEC);
	assert_int_equal(write(in, ga, la), (ssize_t)la);
	assert_int_equal(write(in, gb, lb), (ssize_t)lb);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(tarball_extract(in, "circleci-runner", out, &LIM, why, sizeof(why)), 0);
	assert_int_equal(pread(out, got, sizeof(got) - 1, 0), 21);
	assert_string_equal(got, "whole across members\n");
	close(in);
	close(out);
	free(a.data);
	free(b.data);
	free(ga);
	free(gb);

	/* A second copy in a second member. */
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	tarb_file(&a, "circleci-runner", "first");
	tarb_file(&b, "circleci-runner", "second");
	tarb_end(&b);
	la = tarb_gzip(&a, &ga);
	lb = tarb_gzip(&b, &gb);
	in = memfd_create("in", MFD_CLOEXEC);
	out = memfd_create("out", MFD_CLOEXEC);
	assert_int_equal(write(in, ga, la), (ssize_t)la);
	assert_int_equal(write(in, gb, lb), (ssize_t)lb);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(tarball_extract(in, "circleci-runner", out, &LIM, why, sizeof(why)),
	                 -EPERM);
	assert_non_null(strstr(why, "appears twice"));
	close(in);
	close(out);
	free(a.data);
	free(b.data);
	free(ga);
	free(gb);
}

static void test_extract_not_gzip(void **state)
{
	static const char junk[] = "this is not gzip at all";
	int in = memfd_create("in", MFD_CLOEXEC), out = memfd_create("out", MFD_CLOEXEC);
	char why[256];

	assert_int_equal(write(in, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(tarball_extract(in, "circleci-runner", out, &LIM, why, sizeof(why)),
	                 -EBADMSG);
	assert_non_null(strstr(why, "gzip"));
	assert_int_equal(lseek(out, 0, SEEK_END), 0);
	/* Empty input. */
	assert_int_equal(ftruncate(in, 0), 0);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(tarball_extract(in, "circleci-runner", out, &LIM, why, sizeof(why)),
	                 -EBADMSG);
	close(in);
	close(out);
	assert_int_equal(tarball_extract(-1, "../x", -1, &LIM, why, sizeof(why)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_header),
	        cmocka_unit_test(test_normalize_name),
	        cmocka_unit_test(test_pax_path),
	        cmocka_unit_test(test_extract_good),
	        cmocka_unit_test(test_pax_size_and_printable),
	        cmocka_unit_test(test_extract_concatenated_gzip),
	        cmocka_unit_test(test_extract_refused),
	        cmocka_unit_test(test_extract_not_gzip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
