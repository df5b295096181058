/* Unit tests: bounded buffers, secret redaction in the log, time parsing, backoff. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "log.h"
#include "util.h"

static void test_buf_limit(void **state)
{
	struct buf b;

	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "12345", 5), 0);
	assert_int_equal(buf_append(&b, "678", 3), 0);
	assert_int_equal(buf_append(&b, "9", 1), -EFBIG);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "12345678");
	buf_reset(&b);
	assert_int_equal(buf_printf(&b, "%d-%s", 42, "ab"), 0);
	assert_string_equal(b.data, "42-ab");
	assert_int_equal(buf_printf(&b, "%s", "too long now"), -EFBIG);
	assert_string_equal(b.data, "42-ab");
	buf_wipe(&b);
	assert_null(b.data);
}

static void test_buf_default_limit(void **state)
{
	struct buf b;
	char *big = malloc(BUF_MAX_DEFAULT + 1);

	assert_non_null(big);
	memset(big, 'x', BUF_MAX_DEFAULT + 1);
	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, big, BUF_MAX_DEFAULT), 0);
	assert_int_equal(buf_append(&b, big, 1), -EFBIG);
	buf_free(&b);
	free(big);
}

static void test_buf_read_file(void **state)
{
	char path[] = "/tmp/runnerd-test-util-XXXXXX";
	int fd = mkstemp(path);
	struct buf b;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	buf_init(&b, 10);
	assert_int_equal(buf_read_file(&b, path), 0);
	assert_string_equal(b.data, "0123456789");
	buf_free(&b);
	buf_init(&b, 9);
	assert_int_equal(buf_read_file(&b, path), -EFBIG);
	buf_free(&b);
	unlink(path);
	buf_init(&b, 0);
	assert_int_equal(buf_read_file(&b, path), -ENOENT);
	buf_free(&b);
}

static void test_log_redact(void **state)
{
	char line[64];

	assert_int_equal(log_add_secret("s3cr3t-token"), 0);
	assert_int_equal(log_add_secret("abc"), 0); /* too short: ignored */
	snprintf(line, sizeof(line), "token=s3cr3t-token and again s3cr3t-token, abc");
	log_redact(line, sizeof(line));
	assert_string_equal(line, "token=<redacted> and again <redacted>, abc");

	/* A secret longer than the line's remaining room still disappears. */
	snprintf(line, sizeof(line), "%.50s s3cr3t-token",
	         "0123456789012345678901234567890123456789012345678");
	log_redact(line, sizeof(line));
	assert_null(strstr(line, "s3cr3t"));
	log_forget_secrets();
	snprintf(line, sizeof(line), "s3cr3t-token");
	log_redact(line, sizeof(line));
	assert_string_equal(line, "s3cr3t-token");
}

static void test_iso8601(void **state)
{
	static const struct {
		const char *in;
		int r;
		time_t t;
	} cases[] = {
	        {"1970-01-01T00:00:00Z", 0, 0},
	        {"2024-01-01T06:00:00Z", 0, 1704088800},
	        {"2017-09-18T08:22:00.123Z", 0, 1505722920},
	        {"2017-09-18T08:22:00+00:00", 0, 1505722920},
	        {"2017-09-18T08:22:00", -EINVAL, 0},
	        {"2017-13-18T08:22:00Z", -EINVAL, 0},
	        {"2017-09-18 08:22:00Z", -EINVAL, 0},
	        {"", -EINVAL, 0},
	        {"2017-09-18T08:22:00.Z", -EINVAL, 0},
	        {"2017-09-18T08:22:00Zjunk", -EINVAL, 0},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		time_t t = 0;
		int r = parse_iso8601(cases[i].in, &t);

		assert_int_equal(r, cases[i].r);
		if (r == 0)
			assert_int_equal(t, cases[i].t);
	}
}

static void test_backoff(void **state)
{
	/* Full jitter: never above min(cap, base * 2^attempt); the top of rnd reaches the ceiling.
	 */
	assert_int_equal(backoff_full_jitter_ms(0, 100, 20000, UINT32_MAX), 100);
	assert_int_equal(backoff_full_jitter_ms(3, 100, 20000, UINT32_MAX), 800);
	assert_int_equal(backoff_full_jitter_ms(30, 100, 20000, UINT32_MAX), 20000);
	assert_int_equal(backoff_full_jitter_ms(5, 100, 20000, 0), 0);
	assert_true(backoff_full_jitter_ms(2, 100, 20000, UINT32_MAX / 2) <= 200);
}

static void test_str_copy(void **state)
{
	char small[4];

	assert_int_equal(str_copy(small, "abcdef", sizeof(small)), 6);
	assert_string_equal(small, "abc");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_buf_limit),     cmocka_unit_test(test_buf_default_limit),
	        cmocka_unit_test(test_buf_read_file), cmocka_unit_test(test_log_redact),
	        cmocka_unit_test(test_iso8601),       cmocka_unit_test(test_backoff),
	        cmocka_unit_test(test_str_copy),
	};
	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
