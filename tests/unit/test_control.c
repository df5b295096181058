/* control: request parsing and the peer rule from tables; then the real socket in-process,
 * driven through control_server_pollfds/dispatch with poll() and deadlines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

#define REAL_DEADLINE_MS 5000 /* generous bound for anything that should be prompt */

static const struct {
	const char *line;
	int want;
	enum control_command cmd;
} requests[] = {
        {"{\"version\":1,\"command\":\"status\"}\n", 0, CONTROL_STATUS},
        {"{\"version\":1,\"command\":\"drain\"}", 0, CONTROL_DRAIN},
        {"  {\"command\":\"status\",\"version\":1}  \r\n", 0, CONTROL_STATUS},
        {"{\"command\":\"status\"}\n", 0, CONTROL_STATUS}, /* version defaults to 1 */
        {"{\"version\":1,\"command\":\"status\",\"extra\":[1,2]}", 0, CONTROL_STATUS},
        {"{\"version\":1,\"command\":\"stat", -EBADMSG, 0}, /* truncated */
        {"not json", -EBADMSG, 0},
        {"", -EBADMSG, 0},
        {"\n", -EBADMSG, 0},
        {"{\"version\":1}", -EBADMSG, 0},               /* missing command */
        {"{\"version\":1,\"command\":7}", -EBADMSG, 0}, /* wrong type */
        {"{\"version\":1,\"command\":null}", -EBADMSG, 0},
        {"{\"version\":\"1\",\"command\":\"status\"}", -EBADMSG, 0},
        {"[\"status\"]", -EBADMSG, 0}, /* not an object */
        {"\"status\"", -EBADMSG, 0},
        {"{\"version\":1,\"command\":\"status\"} {}", -EBADMSG, 0}, /* trailing garbage */
        {"{\"version\":2,\"command\":\"status\"}", -EPROTO, 0},
        {"{\"version\":1.5,\"command\":\"status\"}", -EPROTO, 0},
        {"{\"version\":0,\"command\":\"drain\"}", -EPROTO, 0},
        {"{\"version\":1,\"command\":\"reboot\"}", -EINVAL, 0},
        {"{\"version\":1,\"command\":\"STATUS\"}", -EINVAL, 0},
        {"{\"version\":1,\"command\":\"\"}", -EINVAL, 0},
};

static void test_parse_request(void **state)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(requests); i++) {
		enum control_command cmd = (enum control_command) - 1;
		int r = control_parse_request(requests[i].line, strlen(requests[i].line), &cmd);

		if (r != requests[i].want)
			fail_msg("case %zu '%s': %d != %d", i, requests[i].line, r,
			         requests[i].want);
		if (r == 0)
			assert_int_equal(cmd, requests[i].cmd);
	}
}

static void test_parse_request_bounds(void **state)
{
	static const char ok[] = "{\"version\":1,\"command\":\"status\"}";
	char *big = malloc(CONTROL_REQUEST_MAX + 2);
	enum control_command cmd;
	size_t n;

	assert_non_null(big);
	/* A valid request padded with spaces up to exactly the limit is fine; one byte more is not.
	 */
	memset(big, ' ', CONTROL_REQUEST_MAX + 1);
	memcpy(big, ok, strlen(ok));
	assert_int_equal(control_parse_request(big, CONTROL_REQUEST_MAX, &cmd), 0);
	assert_int_equal(control_parse_request(big, CONTROL_REQUEST_MAX + 1, &cmd), -EMSGSIZE);
	/* Embedded NUL; length without NUL termination is respected. */
	n = strlen(ok);
	memcpy(big, ok, n);
	big[5] = '\0';
	assert_int_equal(control_parse_request(big, n, &cmd), -EBADMSG);
	memcpy(big, ok, n);
	big[n] = '}'; /* past len: must not be looked at */
	assert_int_equal(control_parse_request(big, n, &cmd), 0);
	assert_int_equal(control_parse_request(big, n - 1, &cmd), -EBADMSG);
	assert_int_equal(control_parse_request(NULL, 0, &cmd), -EBADMSG);
	free(big);
}

static void test_peer_allowed(void **state)
{
	const gid_t groups[] = {27, 4, 1000};
	const gid_t none[] = {100};

	assert_true(control_peer_allowed(0, 0, NULL, 0, 4));            /* root */
	assert_true(control_peer_allowed(0, 1000, none, 1, 4));         /* root, any group */
	assert_true(control_peer_allowed(1000, 4, NULL, 0, 4));         /* primary gid */
	assert_true(control_peer_allowed(1000, 1000, groups, 3, 4));    /* supplementary */
	assert_true(control_peer_allowed(1000, 1000, groups, 3, 1000)); /* primary also listed */
	assert_false(control_peer_allowed(1000, 1000, none, 1, 4));     /* not a member */
	assert_false(control_peer_allowed(1000, 1000, NULL, 0, 4));     /* no groups known */
	assert_false(control_peer_allowed(1000, 1000, groups, 1, 4));   /* only ngroups count */
	assert_false(control_peer_allowed(65534, 65534, groups, 0, 0)); /* root's group, not root */
	assert_true(control_peer_allowed(65534, 65534, (gid_t[]){0}, 1, 0));
}

/* ---- the real socket ---- */

struct fx {
	char dir[64];
	char path[128];
	struct control_server *s;
	struct runnerd_status st;
	uint64_t mono; /* the server's clock; tests move it to expire clients without waiting */
	bool real_clock;
	bool drain;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_control.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	/* A missing parent directory is created. */
	snprintf(f->path, sizeof(f->path), "%s/run/control.sock", f->dir);
	assert_int_equal(control_server_open(f->path, NULL, &f->s), 0);
	f->st.started_ms = now_wall_ms() - 5000;
	f->st.agent_exit_status = -1;
	status_enter(&f->st, PHASE_RUNNING, now_wall_ms() - 1000);
	strcpy(f->st.instance_id, "i-0abc");
	strcpy(f->st.last_error, "oops \"quoted\"\n");
	f->mono = 1000000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char sub[160];

	control_server_close(f->s);
	snprintf(sub, sizeof(sub), "%s/run", f->dir);
	rmdir(sub);
	rmdir(f->dir);
	free(f);
	return 0;
}

static uint64_t server_now(const struct fx *f)
{
	return f->real_clock ? now_mono_ms() : f->mono;
}

/* One round of the supervisor's loop: poll the server's fds plus extra (the test's side), then
 * dispatch. Returns poll's result for the extra fd's revents. */
static short turn(struct fx *f, int extra, short extra_events, int max_wait_ms)
{
	struct pollfd pfd[CONTROL_MAX_CLIENTS + 2];
	size_t n = control_server_pollfds(f->s, pfd, CONTROL_MAX_CLIENTS + 1);
	int t = control_server_timeout_ms(f->s, server_now(f));

	assert_true(n >= 1 && n <= CONTROL_MAX_CLIENTS + 1);
	if (t < 0 || t > max_wait_ms || !f->real_clock)
		t = max_wait_ms;
	pfd[n] = (struct pollfd){.fd = extra, .events = extra_events};
	assert_true(poll(pfd, n + 1, t) >= 0);
	control_server_dispatch(f->s, pfd, n, &f->st, server_now(f), now_wall_ms(), &f->drain);
	return pfd[n].revents;
}

static int client_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void client_send(int fd, const char *s, size_t n)
{
	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Drive the server until the client sees end of stream (the server closes after a reply or
 * when it drops the client); the reply text goes to out. Fails at the real deadline. */
static void until_closed(struct fx *f, int fd, char *out, size_t max)
{
	uint64_t deadline = now_mono_ms() + REAL_DEADLINE_MS;
	size_t len = 0;

	out[0] = '\0';
	while (now_mono_ms() < deadline) {
		short rev = turn(f, fd, POLLIN, 100);
		ssize_t n;

		if (!rev)
			continue;
		n = recv(fd, out + len, max - 1 - len, MSG_DONTWAIT);
		if (n > 0) {
			len += (size_t)n;
			out[len] = '\0';
			assert_true(len < max - 1);
			continue;
		}
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return;
		assert_true(errno == EAGAIN);
	}
	fail_msg("client not closed within %d ms; got '%s'", REAL_DEADLINE_MS, out);
}

static cJSON *reply_json(const char *reply)
{
	size_t len = strlen(reply);
	cJSON *j;

	assert_true(len > 0);
	assert_int_equal(reply[len - 1], '\n');
	assert_null(memchr(reply, '\n', len - 1)); /* exactly one line */
	j = cJSON_ParseWithLength(reply, len);
	assert_non_null(j);
	assert_int_equal(cJSON_GetObjectItem(j, "version")->valueint, 1);
	return j;
}

static void assert_error_reply(const char *reply, const char *msg)
{
	cJSON *j = reply_json(reply);
	const cJSON *e = cJSON_GetObjectItem(j, "error");

	assert_true(cJSON_IsString(e));
	assert_string_equal(e->valuestring, msg);
	cJSON_Delete(j);
}

static void test_socket_mode(void **state)
{
	struct fx *f = *state;
	struct stat st;

	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, 0);
}

static void test_status_round_trip(void **state)
{
	struct fx *f = *state;
	static const char req[] = "{\"version\":1,\"command\":\"status\"}\n";
	char reply[16384];
	const cJSON *agent;
	cJSON *j;
	int fd = client_connect(f->path);

	client_send(fd, req, strlen(req));
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	j = reply_json(reply);
	assert_string_equal(cJSON_GetObjectItem(j, "phase")->valuestring, "running");
	assert_string_equal(cJSON_GetObjectItem(j, "instance_id")->valuestring, "i-0abc");
	assert_string_equal(cJSON_GetObjectItem(j, "last_error")->valuestring, "oops \"quoted\"\n");
	assert_true(cJSON_GetObjectItem(j, "phase_seconds")->valuedouble >= 1.0);
	agent = cJSON_GetObjectItem(j, "agent");
	assert_true(cJSON_IsObject(agent));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(agent, "pid")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(agent, "exit_status")));
	cJSON_Delete(j);
	assert_false(f->drain);
	assert_int_equal(control_server_timeout_ms(f->s, server_now(f)), -1); /* slot freed */
}

static void test_request_in_pieces(void **state)
{
	struct fx *f = *state;
	char reply[16384];
	int fd = client_connect(f->path);
	int i;

	/* A request split across writes, and one that half-closes without a newline. */
	client_send(fd, "{\"version\":1,", 13);
	for (i = 0; i < 3; i++)
		turn(f, fd, POLLIN, 10);
	client_send(fd, "\"command\":\"status\"}", 20);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	cJSON_Delete(reply_json(reply));
}

static void test_drain(void **state)
{
	struct fx *f = *state;
	static const char req[] = "{\"version\":1,\"command\":\"drain\"}\n";
	char reply[1024];
	cJSON *j;
	int fd = client_connect(f->path);

	client_send(fd, req, strlen(req));
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	j = reply_json(reply);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
	assert_string_equal(cJSON_GetObjectItem(j, "phase")->valuestring, "running");
	cJSON_Delete(j);
	assert_true(f->drain);
}

static void test_bad_requests(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *req;
		const char *err;
	} cases[] = {
	        {"{\"version\":1,\"command\":\"status\"\n", "bad request"},
	        {"hello\n", "bad request"},
	        {"{\"version\":2,\"command\":\"status\"}\n", "unsupported version"},
	        {"{\"version\":1,\"command\":\"reboot\"}\n", "unknown command"},
	};
	char reply[1024];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int fd = client_connect(f->path);

		client_send(fd, cases[i].req, strlen(cases[i].req));
		until_closed(f, fd, reply, sizeof(reply));
		close(fd);
		assert_error_reply(reply, cases[i].err);
	}
	assert_false(f->drain);
}

static void test_oversized_request(void **state)
{
	struct fx *f = *state;
	char *big = malloc(CONTROL_REQUEST_MAX + 100);
	char reply[1024];
	int fd = client_connect(f->path);

	assert_non_null(big);
	memset(big, ' ', CONTROL_REQUEST_MAX + 100);
	memcpy(big, "{\"version\":1,\"command\":\"drain\"}", 31);
	client_send(fd, big, CONTROL_REQUEST_MAX + 100);
	free(big);
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	assert_error_reply(reply, "request too large");
	assert_false(f->drain);
}

static void test_silent_client_dropped(void **state)
{
	struct fx *f = *state;
	char reply[64];
	int fd = client_connect(f->path);

	/* Accepted, then nothing happens until its deadline. */
	turn(f, fd, POLLIN, 100);
	assert_int_equal(control_server_timeout_ms(f->s, f->mono), CONTROL_CLIENT_TIMEOUT_MS);
	assert_int_equal(control_server_timeout_ms(f->s, f->mono + 500),
	                 CONTROL_CLIENT_TIMEOUT_MS - 500);
	f->mono += CONTROL_CLIENT_TIMEOUT_MS - 1;
	assert_int_equal(turn(f, fd, POLLIN, 0), 0);
	assert_int_equal(control_server_timeout_ms(f->s, f->mono), 1);
	f->mono += 1;
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	assert_string_equal(reply, "");
	assert_int_equal(control_server_timeout_ms(f->s, f->mono), -1);
}

static void test_silent_client_real_clock(void **state)
{
	struct fx *f = *state;
	uint64_t t0 = now_mono_ms();
	char reply[64];
	int fd = client_connect(f->path);

	/* The real thing, once: the loop's poll timeout comes from control_server_timeout_ms. */
	f->real_clock = true;
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	assert_string_equal(reply, "");
	assert_true(now_mono_ms() - t0 >= CONTROL_CLIENT_TIMEOUT_MS - 10);
}

static void test_too_many_clients(void **state)
{
	struct fx *f = *state;
	static const char req[] = "{\"version\":1,\"command\":\"status\"}\n";
	int idle[CONTROL_MAX_CLIENTS];
	char reply[16384];
	cJSON *j;
	int fd, i;

	for (i = 0; i < CONTROL_MAX_CLIENTS; i++)
		idle[i] = client_connect(f->path);
	/* One more: refused at once (closed without a reply), not queued behind the idle ones. */
	fd = client_connect(f->path);
	client_send(fd, req, strlen(req));
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	assert_string_equal(reply, "");
	/* The idle ones are still held, and dropped at their deadline. */
	assert_int_equal(control_server_timeout_ms(f->s, f->mono), CONTROL_CLIENT_TIMEOUT_MS);
	f->mono += CONTROL_CLIENT_TIMEOUT_MS;
	for (i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		until_closed(f, idle[i], reply, sizeof(reply));
		close(idle[i]);
		assert_string_equal(reply, "");
	}
	/* With slots free again, a client is served. */
	fd = client_connect(f->path);
	client_send(fd, req, strlen(req));
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	j = reply_json(reply);
	assert_string_equal(cJSON_GetObjectItem(j, "phase")->valuestring, "running");
	cJSON_Delete(j);
}

static void test_busy_slots_dont_block_answers(void **state)
{
	struct fx *f = *state;
	static const char req[] = "{\"version\":1,\"command\":\"status\"}\n";
	int idle[CONTROL_MAX_CLIENTS - 1];
	char reply[16384];
	int fd, i;

	/* All but one slot held by silent clients: the last one is still answered promptly. */
	for (i = 0; i < CONTROL_MAX_CLIENTS - 1; i++)
		idle[i] = client_connect(f->path);
	fd = client_connect(f->path);
	client_send(fd, req, strlen(req));
	until_closed(f, fd, reply, sizeof(reply));
	close(fd);
	cJSON_Delete(reply_json(reply));
	for (i = 0; i < CONTROL_MAX_CLIENTS - 1; i++)
		close(idle[i]);
	/* Their hang-ups free the slots without waiting for the deadline. */
	for (i = 0; i < 5 && control_server_timeout_ms(f->s, f->mono) >= 0; i++)
		turn(f, -1, 0, 50);
	assert_int_equal(control_server_timeout_ms(f->s, f->mono), -1);
}

static void test_pollfds_bounded(void **state)
{
	struct fx *f = *state;
	struct pollfd pfd[3];
	int fds[4], i;

	for (i = 0; i < 4; i++)
		fds[i] = client_connect(f->path);
	turn(f, -1, 0, 100);
	assert_int_equal(control_server_pollfds(f->s, pfd, 0), 0);
	assert_int_equal(control_server_pollfds(f->s, pfd, 3), 3);
	for (i = 0; i < 3; i++)
		assert_true(pfd[i].fd >= 0 && pfd[i].events == POLLIN);
	for (i = 0; i < 4; i++)
		close(fds[i]);
}

/* ---- open/close: stale sockets, live sockets, groups ---- */

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct control_server *s2 = NULL;
	char path[160];
	int fd;

	/* A live socket is never stolen. */
	assert_int_equal(control_server_open(f->path, NULL, &s2), -EADDRINUSE);
	assert_null(s2);
	/* Unknown group. */
	snprintf(path, sizeof(path), "%s/other.sock", f->dir);
	assert_int_equal(control_server_open(path, "no-such-group-runnerd", &s2), -ENOENT);
	assert_int_equal(access(path, F_OK), -1);
	/* A regular file in the way is not removed. */
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(control_server_open(path, NULL, &s2), -EEXIST);
	assert_int_equal(unlink(path), 0);
	/* Too long for sun_path. */
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(control_server_open(path, NULL, &s2), -ENAMETOOLONG);
}

static void test_open_stale_and_group(void **state)
{
	struct fx *f = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct control_server *s2 = NULL;
	struct stat st;
	int fd;

	/* A socket nobody listens on (a previous run's) is replaced. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", f->dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	/* A numeric group is taken as a gid. Changing a file's group needs root or membership. */
	if (geteuid() == 0) {
		assert_int_equal(control_server_open(sa.sun_path, "4242", &s2), 0);
		assert_int_equal(lstat(sa.sun_path, &st), 0);
		assert_int_equal(st.st_gid, 4242);
	} else {
		assert_int_equal(control_server_open(sa.sun_path, "", &s2), 0);
		assert_int_equal(lstat(sa.sun_path, &st), 0);
	}
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	control_server_close(s2);
	/* Close removes the socket it made. */
	assert_int_equal(lstat(sa.sun_path, &st), -1);
	assert_int_equal(errno, ENOENT);
	control_server_close(NULL);
}

/* ---- the peer check, for real: a child that drops root and connects ---- */

/* Returns false when the child could not drop privileges (no CAP_SETUID here): skip. */
static bool run_as(struct fx *f, gid_t gid, const gid_t *groups, size_t ngroups, char *reply,
                   size_t max)
{
	static const char req[] = "{\"version\":1,\"command\":\"drain\"}\n";
	uint64_t deadline = now_mono_ms() + REAL_DEADLINE_MS;
	size_t len = 0;
	int pipefd[2];
	pid_t pid;
	int status;

	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		struct timeval tv = {.tv_sec = 5};
		char buf[1024];
		ssize_t n;
		int fd;

		close(pipefd[0]);
		if (setgroups(ngroups, groups) < 0 || setgid(gid) < 0 || setuid(65534) < 0)
			_exit(2);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		strcpy(sa.sun_path, f->path);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(3);
		/* A refused peer may find the socket closed already: the reply is still queued. */
		(void)send(fd, req, strlen(req), MSG_NOSIGNAL);
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			if (write(pipefd[1], buf, (size_t)n) != n)
				_exit(5);
		_exit(0);
	}
	close(pipefd[1]);
	while (now_mono_ms() < deadline) {
		short rev = turn(f, pipefd[0], POLLIN, 100);
		ssize_t n;

		if (!rev)
			continue;
		n = read(pipefd[0], reply + len, max - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	reply[len] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 2)
		return false;
	assert_int_equal(WEXITSTATUS(status), 0);
	return true;
}

static void test_peer_check_real(void **state)
{
	struct fx *f = *state;
	const gid_t member[] = {65534, 4242};
	const gid_t other[] = {65534};
	char reply[1024];
	cJSON *j;

	if (geteuid() != 0)
		skip();
	/* Let anyone reach the socket file, so the SO_PEERCRED check is what decides. */
	control_server_close(f->s);
	assert_int_equal(control_server_open(f->path, "4242", &f->s), 0);
	assert_int_equal(chmod(f->path, 0666), 0);
	assert_int_equal(chmod(f->dir, 0755), 0);

	if (!run_as(f, 65534, other, ARRAY_SIZE(other), reply, sizeof(reply)))
		skip();
	assert_error_reply(reply, "permission denied");
	assert_false(f->drain);

	/* supplementary */
	assert_true(run_as(f, 65534, member, ARRAY_SIZE(member), reply, sizeof(reply)));
	j = reply_json(reply);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
	cJSON_Delete(j);
	assert_true(f->drain);

	f->drain = false;
	/* primary */
	assert_true(run_as(f, 4242, other, ARRAY_SIZE(other), reply, sizeof(reply)));
	j = reply_json(reply);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
	cJSON_Delete(j);
	assert_true(f->drain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_request),
	        cmocka_unit_test(test_parse_request_bounds),
	        cmocka_unit_test(test_peer_allowed),
	        cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_status_round_trip, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_request_in_pieces, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_oversized_request, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_silent_client_dropped, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_silent_client_real_clock, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_too_many_clients, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_busy_slots_dont_block_answers, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_pollfds_bounded, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_stale_and_group, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_peer_check_real, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
