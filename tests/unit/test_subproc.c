/* supervisor/subproc: the environment every child of runnerd gets (systemd's hand-over left
 * out), and spawn_run's status and capture. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "subproc.h"

static void test_child_env(void **state)
{
	char *src[] = {"PATH=/usr/bin:/bin",
	               "NOTIFY_SOCKET=/run/systemd/notify",
	               "WATCHDOG_USEC=30000000",
	               "WATCHDOG_PID=42",
	               "LISTEN_FDS=1",
	               "LISTEN_PID=42",
	               "LISTEN_FDNAMES=x",
	               "NOTIFY_SOCKETX=kept: only the exact names go",
	               "INVOCATION_ID=abc",
	               "LANG=C.UTF-8",
	               NULL};
	char *out[16];

	spawn_child_env(src, out, 16);
	assert_string_equal(out[0], "PATH=/usr/bin:/bin");
	assert_string_equal(out[1], "NOTIFY_SOCKETX=kept: only the exact names go");
	assert_string_equal(out[2], "INVOCATION_ID=abc");
	assert_string_equal(out[3], "LANG=C.UTF-8");
	assert_null(out[4]);
	/* Bounded: max slots, the last one the terminator. */
	spawn_child_env(src, out, 2);
	assert_string_equal(out[0], "PATH=/usr/bin:/bin");
	assert_null(out[1]);
	spawn_child_env(NULL, out, 4);
	assert_null(out[0]);
}

static void test_children_do_not_see_notify_socket(void **state)
{
	const char *argv[] = {"/bin/sh", "-c", "echo \"${NOTIFY_SOCKET-unset} ${KEEP-unset}\"",
	                      NULL};
	struct buf out;
	struct spawn_opts o = {0};
	int st;

	setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
	setenv("KEEP", "kept", 1);
	buf_init(&out, 4096);
	o.capture = &out;
	o.timeout_ms = 10000;
	assert_int_equal(spawn_run(argv, &o, &st), 0);
	assert_int_equal(st, 0);
	assert_string_equal(out.data, "unset kept\n");
	buf_free(&out);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("KEEP");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_child_env),
	        cmocka_unit_test(test_children_do_not_see_notify_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
