/* Metrics: the exposition text (names, HELP/TYPE, labels escaped, unknown values left out), the
 * atomic file write, the /metrics request router, and a server retired in the middle of an
 * epoll batch (a reload). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "metrics.h"
#include "evloop.h"
#include "metrics_http.h"
#include "util.h"

static void test_escape(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	        {"plain", "plain"},          {"a\"b", "a\\\"b"}, {"back\\slash", "back\\\\slash"},
	        {"new\nline", "new\\nline"}, {"", ""},           {"utf8-é", "utf8-é"},
	};
	char out[64];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(metrics_escape_label(cases[i].in, out, sizeof(out)), 0);
		assert_string_equal(out, cases[i].out);
	}
	assert_int_equal(metrics_escape_label("abcdef", out, 6), -ENOSPC);
	assert_int_equal(metrics_escape_label("abcd\"", out, 6), -ENOSPC);
	assert_int_equal(metrics_escape_label("abcde", out, 6), 0);
}

static void test_render(void **state)
{
	struct metrics_pool pools[2];
	struct metrics_snapshot s;
	struct buf b;

	memset(pools, 0, sizeof(pools));
	pools[0].name = "linux-large";
	pools[0].have_counts = true;
	pools[0].unclaimed = 3;
	pools[0].running = 2;
	pools[0].have_current = true;
	pools[0].current = 1;
	pools[0].have_desired = true;
	pools[0].desired = 5;
	pools[0].holds = 7;
	pools[0].api_errors[API_ERR_THROTTLED] = 4;
	pools[0].launch_failures = 6;
	pools[0].backoff_s = 118;
	pools[0].have_warm = true;
	pools[0].warm_size = 2;
	pools[1].name = "we\"ird\\name";
	pools[1].holds = 1;
	memset(&s, 0, sizeof(s));
	s.pools = pools;
	s.npools = 2;
	s.cycle_duration_s = 0.25;
	s.leader = true;
	s.cycles = 9;

	buf_init(&b, 0);
	assert_int_equal(metrics_render(&s, &b), 0);
	/* Every family announced once, before its samples. */
	static const char *const families[] = {
	        "runner_scaler_unclaimed_tasks gauge",
	        "runner_scaler_running_tasks gauge",
	        "runner_scaler_desired_capacity gauge",
	        "runner_scaler_current_capacity gauge",
	        "runner_scaler_holds_total counter",
	        "runner_scaler_launch_failures_total counter",
	        "runner_scaler_pool_backoff_seconds gauge",
	        "runner_scaler_warm_pool_size gauge",
	        "runner_scaler_api_errors_total counter",
	        "runner_scaler_cycle_duration_seconds gauge",
	        "runner_scaler_leader gauge",
	};
	for (size_t i = 0; i < ARRAY_SIZE(families); i++) {
		char want[128];
		const char *p;

		snprintf(want, sizeof(want), "# TYPE %s\n", families[i]);
		p = strstr(b.data, want);
		assert_non_null(p);
		assert_null(strstr(p + 1, want));
	}
	assert_non_null(
	        strstr(b.data, "\nrunner_scaler_unclaimed_tasks{pool=\"linux-large\"} 3\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_running_tasks{pool=\"linux-large\"} 2\n"));
	assert_non_null(
	        strstr(b.data, "\nrunner_scaler_desired_capacity{pool=\"linux-large\"} 5\n"));
	assert_non_null(
	        strstr(b.data, "\nrunner_scaler_current_capacity{pool=\"linux-large\"} 1\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_holds_total{pool=\"linux-large\"} 7\n"));
	assert_non_null(
	        strstr(b.data, "\nrunner_scaler_launch_failures_total{pool=\"linux-large\"} 6\n"));
	assert_non_null(
	        strstr(b.data, "\nrunner_scaler_pool_backoff_seconds{pool=\"linux-large\"} 118\n"));
	/* Only for a pool whose warm pool is managed and was read. */
	assert_non_null(strstr(b.data, "\nrunner_scaler_warm_pool_size{pool=\"linux-large\"} 2\n"));
	assert_null(strstr(b.data, "runner_scaler_warm_pool_size{pool=\"we"));
	/* Both for every pool: 0 when nothing failed and no back-off runs. */
	assert_non_null(strstr(
	        b.data, "\nrunner_scaler_launch_failures_total{pool=\"we\\\"ird\\\\name\"} 0\n"));
	assert_non_null(strstr(
	        b.data, "\nrunner_scaler_pool_backoff_seconds{pool=\"we\\\"ird\\\\name\"} 0\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_api_errors_total{pool=\"linux-large\","
	                               "kind=\"throttled\"} 4\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_api_errors_total{pool=\"linux-large\","
	                               "kind=\"timeout\"} 0\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_cycle_duration_seconds 0.250000\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_leader 1\n"));
	assert_non_null(strstr(b.data, "\nrunner_scaler_cycles_total 9\n"));
	/* The second pool: unknown values are left out, not written as 0; its name escaped. */
	assert_non_null(
	        strstr(b.data, "runner_scaler_holds_total{pool=\"we\\\"ird\\\\name\"} 1\n"));
	assert_null(strstr(b.data, "runner_scaler_unclaimed_tasks{pool=\"we"));
	assert_null(strstr(b.data, "runner_scaler_desired_capacity{pool=\"we"));
	/* Every line is a comment or "name{...} value" / "name value". */
	for (char *line = b.data; *line;) {
		char *nl = strchr(line, '\n');

		assert_non_null(nl);
		assert_true(line[0] == '#' || strncmp(line, "runner_scaler_", 14) == 0);
		line = nl + 1;
	}
	buf_free(&b);

	/* No finished cycle yet: no duration sample; a follower says leader 0. */
	s.cycle_duration_s = -1;
	s.leader = false;
	buf_init(&b, 0);
	assert_int_equal(metrics_render(&s, &b), 0);
	assert_null(strstr(b.data, "runner_scaler_cycle_duration_seconds "));
	assert_non_null(strstr(b.data, "\nrunner_scaler_leader 0\n"));
	buf_free(&b);

	/* Bounded: a tiny buffer fails cleanly. */
	buf_init(&b, 64);
	assert_int_equal(metrics_render(&s, &b), -EFBIG);
	buf_free(&b);
}

static void test_write_file(void **state)
{
	char dir[] = "/tmp/test_metrics.XXXXXX", path[128], text[64];
	struct stat st;
	FILE *f;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/runnerd.prom", dir);
	assert_int_equal(metrics_write_file(path, "a 1\n", 4), 0);
	assert_int_equal(metrics_write_file(path, "b 2\n", 4), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	assert_string_equal(text, "b 2\n");
	assert_int_equal(stat(path, &st), 0);
	assert_true((st.st_mode & 0444) == 0444);
	/* No temp file left behind. */
	snprintf(path, sizeof(path), "%s/runnerd.prom.tmp.%ld", dir, (long)getpid());
	assert_int_equal(access(path, F_OK), -1);
	/* A missing directory is an error, not a crash. */
	snprintf(path, sizeof(path), "%s/nodir/x.prom", dir);
	assert_int_equal(metrics_write_file(path, "x", 1), -ENOENT);
	snprintf(path, sizeof(path), "%s/runnerd.prom", dir);
	unlink(path);
	rmdir(dir);
}

static void test_route(void **state)
{
	static const struct {
		const char *req;
		int status, head;
	} cases[] = {
	        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, 0},
	        {"GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200, 0},
	        {"HEAD /metrics HTTP/1.1\r\n\r\n", 200, 1},
	        {"GET /metricsx HTTP/1.1\r\n\r\n", 404, 0},
	        {"GET / HTTP/1.1\r\n\r\n", 404, 0},
	        {"POST /metrics HTTP/1.1\r\n\r\n", 405, 0},
	        {"GET /metrics\r\n\r\n", 400, 0},
	        {"GET /metrics SPDY/3\r\n\r\n", 400, 0},
	        {"garbage\r\n\r\n", 400, 0},
	        {"GET /metrics HTTP/1.1\r\nHost: x\r\n", 0, 0}, /* not complete yet */
	        {"GET /metr", 0, 0},
	        {"GET /metrics HTTP/1.1\n\n", 200, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int head = -1;
		int st = mhttp_route(cases[i].req, strlen(cases[i].req), &head);

		if (st != cases[i].status || (st == 200 && head != cases[i].head)) {
			print_error("case %zu: %d\n", i, st);
			fail();
		}
	}
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static bool closed_unanswered(int fd, char *buf, size_t n)
{
	ssize_t r = recv(fd, buf, n, 0);

	return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void dispatch(struct epoll_event *ev)
{
	struct ev_source *src = ev->data.ptr;

	src->fn(src, ev->events);
}

/* Issue 10: a reload retires the server while the current epoll batch still holds events of
 * its connections. Those events are dispatched after the retirement and must find the memory
 * alive (under ASan a free here is a heap-use-after-free) and do nothing: the client gets the
 * connection closed, no answer. The server is freed by mhttp_reap after the batch. */
static void test_retire_mid_batch(void **state)
{
	struct mhttp *h = NULL, *graveyard = NULL;
	struct epoll_event evs[8];
	char buf[64];
	int epfd = epoll_create1(EPOLL_CLOEXEC), c1, c2, n;

	assert_true(epfd >= 0);
	assert_int_equal(mhttp_open(epfd, "127.0.0.1", 0, &h), 0);
	c1 = connect_to(mhttp_port(h));
	c2 = connect_to(mhttp_port(h));
	/* One listener event accepts both. */
	assert_int_equal(epoll_wait(epfd, evs, 8, 5000), 1);
	dispatch(&evs[0]);
	assert_int_equal(send(c1, "GET /metrics HTTP/1.0\r\n\r\n", 25, 0), 25);
	assert_int_equal(send(c2, "GET /metrics HTTP/1.0\r\n\r\n", 25, 0), 25);
	n = epoll_wait(epfd, evs, 8, 5000);
	if (n == 1) /* the second request landed a moment later */
		n += epoll_wait(epfd, evs + 1, 7, 5000);
	assert_int_equal(n, 2);
	/* A reload earlier in this batch retired the server... */
	mhttp_retire(h, &graveyard);
	assert_ptr_equal(graveyard, h);
	/* ...and the batch goes on with its events. */
	dispatch(&evs[0]);
	dispatch(&evs[1]);
	/* Closed unanswered: a reset, as the request was never read (or an EOF). */
	assert_true(closed_unanswered(c1, buf, sizeof(buf)));
	assert_true(closed_unanswered(c2, buf, sizeof(buf)));
	assert_int_equal(epoll_wait(epfd, evs, 8, 0), 0); /* nothing of it is registered */
	mhttp_retire(NULL, &graveyard);                   /* no server: nothing */
	mhttp_reap(&graveyard);
	assert_null(graveyard);
	close(c1);
	close(c2);
	close(epfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_escape),           cmocka_unit_test(test_render),
	        cmocka_unit_test(test_write_file),       cmocka_unit_test(test_route),
	        cmocka_unit_test(test_retire_mid_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
