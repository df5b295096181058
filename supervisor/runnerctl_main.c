/* runnerctl: runnerd's control client. One request over the control socket, one reply; every
 * wait bounded. Exit codes (sysexits.h) are listed in runnerctl(8). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

#define DEFAULT_SOCKET     "/run/runnerd/control.sock"
#define CONNECT_TIMEOUT_MS 5000
#define REPLY_TIMEOUT_MS   5000
#define REPLY_MAX          ((size_t)64 * 1024)

#define EXIT_USAGE       64 /* EX_USAGE */
#define EXIT_UNAVAILABLE 69 /* EX_UNAVAILABLE: cannot reach runnerd */
#define EXIT_SOFTWARE    70 /* EX_SOFTWARE: a reply we cannot understand */
#define EXIT_NOPERM      77 /* EX_NOPERM: runnerd refused us */

#define USAGE_LINES                                                                                \
	"usage: runnerctl [-s SOCKET] status [--json]\n"                                           \
	"       runnerctl [-s SOCKET] drain [--json]\n"                                            \
	"       runnerctl --version | --help\n"

static const char usage_text[] = USAGE_LINES
        "\n"
        "  status        show runnerd's phase, timings, agent and last error\n"
        "  drain         stop taking work: SIGTERM the agent, then leave the ASG and power off\n"
        "  --json        print runnerd's JSON reply as is (one line)\n"
        "  -s, --socket  control socket (default " DEFAULT_SOCKET ",\n"
        "                or $RUNNERD_CONTROL_SOCKET)\n"
        "\n"
        "exit status: 0 ok, 64 usage, 69 runnerd unreachable, 70 bad reply, 77 permission denied\n";

struct opts {
	const char *socket;
	const char *command;
	bool json;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "runnerctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n" USAGE_LINES, stderr);
	return EXIT_USAGE;
}

/* Returns -1 to go on, else an exit code. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	bool only_args = false;
	int i;

	o->socket = getenv("RUNNERD_CONTROL_SOCKET");
	if (!o->socket || !*o->socket)
		o->socket = DEFAULT_SOCKET;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (only_args || a[0] != '-' || a[1] == '\0') {
			if (o->command)
				return usage_error("unexpected argument '%s'", a);
			o->command = a;
		} else if (strcmp(a, "--") == 0) {
			only_args = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			printf("runnerctl %s\n", RUNNERD_VERSION);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			o->json = true;
		} else if (strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0) {
			if (++i >= argc)
				return usage_error("%s needs a path", a);
			o->socket = argv[i];
		} else if (strncmp(a, "--socket=", 9) == 0) {
			o->socket = a + 9;
		} else if (strncmp(a, "-s", 2) == 0) {
			o->socket = a + 2;
		} else {
			return usage_error("unknown option '%s'", a);
		}
	}
	if (!o->command)
		return usage_error("%s", "missing command");
	if (strcmp(o->command, "status") != 0 && strcmp(o->command, "drain") != 0)
		return usage_error("unknown command '%s'", o->command);
	if (!*o->socket)
		return usage_error("%s", "empty socket path");
	return -1;
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = now_mono_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

/* Blocking connect bounded by SO_SNDTIMEO (for AF_UNIX it bounds the wait on a full backlog),
 * then non-blocking I/O under poll deadlines. Returns fd or -errno. */
static int connect_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_MS / 1000,
	                     .tv_usec = (CONNECT_TIMEOUT_MS % 1000) * 1000};
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		goto fail;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINPROGRESS)
			errno = ETIMEDOUT;
		goto fail;
	}
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

static const char *connect_hint(int err)
{
	switch (err) {
	case -ENOENT:
		return "no such socket: is runnerd running?";
	case -ECONNREFUSED:
		return "connection refused: runnerd is not running (stale socket)";
	case -EACCES:
	case -EPERM:
		return "permission denied: run as root or as a member of the socket's group "
		       "([control] group, default adm), e.g. with sudo";
	case -ETIMEDOUT:
		return "timed out: runnerd is running but not answering";
	case -ENAMETOOLONG:
		return "path too long for a Unix socket";
	default:
		return NULL;
	}
}

/* Send the request line and read the reply until end of stream or newline, within a deadline.
 * 0, -ETIMEDOUT, -EFBIG, -errno. */
static int exchange(int fd, const char *req, struct buf *reply)
{
	uint64_t deadline = now_mono_ms() + REPLY_TIMEOUT_MS;
	size_t off = 0, len = strlen(req);

	while (off < len) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t n;

		if (poll(&p, 1, remaining_ms(deadline)) == 0)
			return -ETIMEDOUT;
		n = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			/* runnerd may answer (e.g. permission denied) and close before reading. */
			if (errno == EPIPE || errno == ECONNRESET)
				break;
			return -errno;
		}
		if (n > 0)
			off += (size_t)n;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char chunk[4096];
		ssize_t n;
		int r;

		if (memchr(reply->data ? reply->data : "", '\n', reply->len))
			return 0;
		if (poll(&p, 1, remaining_ms(deadline)) == 0)
			return -ETIMEDOUT;
		n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
		if (n == 0)
			return 0;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return reply->len ? 0 : -errno; /* reset after the reply: keep the reply */
		r = buf_append(reply, chunk, (size_t)n);
		if (r < 0)
			return r;
	}
}

/* 3m12s, 1h02m03s, 2d04h: compact and unambiguous. */
static void fmt_duration(char *out, size_t n, double seconds)
{
	unsigned long s = seconds > 0 ? (unsigned long)seconds : 0;

	if (s < 60)
		snprintf(out, n, "%lus", s);
	else if (s < 3600)
		snprintf(out, n, "%lum%02lus", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, n, "%luh%02lum%02lus", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(out, n, "%lud%02luh%02lum", s / 86400, s / 3600 % 24, s / 60 % 60);
}

static const char *str_or(const cJSON *o, const char *key, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) && v->valuestring && *v->valuestring ? v->valuestring : dflt;
}

static bool num(const cJSON *o, const char *key, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v))
		return false;
	*out = v->valuedouble;
	return true;
}

/* Print a value that came from the network without letting it move the cursor or clear the
 * screen: C0, DEL and (UTF-8 encoded) C1 control characters become '?'. */
static void put_safe_to(FILE *f, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	for (; *u; u++) {
		if (u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f) {
			fputc('?', f);
			u++;
		} else {
			fputc(*u < 0x20 || *u == 0x7f ? '?' : *u, f);
		}
	}
}

static void put_safe(const char *s)
{
	put_safe_to(stdout, s);
}

static void print_field(const char *label, const char *value)
{
	printf("%-15s", label);
	put_safe(value);
	putchar('\n');
}

/* Warm pools: the path this boot took, and the bake work done in the pool before. Absent or
 * null on a cold boot. */
static void print_warm(const cJSON *w)
{
	static const struct {
		const char *path, *text;
	} paths[] = {
	        {"prepare", "in the warm pool: bake work, then waiting to be stopped"},
	        {"same-boot", "in the warm pool, then in service without a stop"},
	        {"resumed", "resumed from the warm pool"},
	        {"used", "an agent already ran on this instance: not starting another"},
	};
	const char *path = str_or(w, "path", NULL), *text = NULL, *hook;
	char line[512];
	size_t off;
	double v;

	if (!cJSON_IsObject(w) || !path)
		return;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strcmp(paths[i].path, path) == 0)
			text = paths[i].text;
	off = (size_t)snprintf(line, sizeof(line), "%s", text ? text : path);
	if (num(w, "prepare_seconds", &v) && off < sizeof(line))
		off += (size_t)snprintf(line + off, sizeof(line) - off,
		                        "; bake work done there in %.2fs", v);
	if (str_or(w, "prepared", NULL) && off < sizeof(line))
		off += (size_t)snprintf(line + off, sizeof(line) - off, " (%s)",
		                        str_or(w, "prepared", ""));
	hook = str_or(w, "launch_hook", NULL);
	if (hook && off < sizeof(line))
		snprintf(line + off, sizeof(line) - off, "; launch hook %s", hook);
	print_field("warm pool:", line);
}

static void print_status(const cJSON *j)
{
	const cJSON *agent = cJSON_GetObjectItemCaseSensitive(j, "agent");
	const cJSON *phases = cJSON_GetObjectItemCaseSensitive(j, "phases"), *it;
	char line[512], dur[32];
	size_t off;
	double v;

	if (num(j, "phase_seconds", &v)) {
		fmt_duration(dur, sizeof(dur), v);
		snprintf(line, sizeof(line), "%s (for %s)", str_or(j, "phase", "?"), dur);
	} else {
		snprintf(line, sizeof(line), "%s", str_or(j, "phase", "?"));
	}
	print_field("phase:", line);
	if (str_or(j, "region", NULL))
		snprintf(line, sizeof(line), "%s (%s)", str_or(j, "instance_id", "-"),
		         str_or(j, "region", "-"));
	else
		snprintf(line, sizeof(line), "%s", str_or(j, "instance_id", "-"));
	print_field("instance:", line);
	print_field("lifecycle:", str_or(j, "lifecycle_state", "-"));
	if (num(j, "uptime_seconds", &v)) {
		fmt_duration(dur, sizeof(dur), v);
		print_field("runnerd up:", dur);
	}

	off = (size_t)snprintf(line, sizeof(line), "%s", str_or(agent, "flavour", "-"));
	if (num(agent, "pid", &v))
		off += (size_t)snprintf(line + off, sizeof(line) - off, ", pid %.0f", v);
	else
		off += (size_t)snprintf(line + off, sizeof(line) - off, ", not started");
	if (num(agent, "uptime_seconds", &v) && off < sizeof(line)) {
		fmt_duration(dur, sizeof(dur), v);
		snprintf(line + off, sizeof(line) - off, ", up %s", dur);
	}
	print_field("agent:", line);
	if (num(agent, "exit_status", &v)) {
		int st = (int)v;

		/* runnerd reports a death by signal N as 128+N, the shell's convention. */
		if (st > 128 && st < 128 + 65) {
			const char *abbrev = sigabbrev_np(st - 128);

			snprintf(line, sizeof(line), "killed by signal %d%s%s%s", st - 128,
			         abbrev ? " (SIG" : "", abbrev ? abbrev : "", abbrev ? ")" : "");
		} else {
			snprintf(line, sizeof(line), "exited %d", st);
		}
		print_field("agent exit:", line);
	} else {
		print_field("agent exit:", "-");
	}
	print_field("notice:", str_or(j, "notice", "-"));
	print_field("last error:", str_or(j, "last_error", "-"));
	print_warm(cJSON_GetObjectItemCaseSensitive(j, "warm"));

	off = 0;
	line[0] = '\0';
	cJSON_ArrayForEach(it, phases)
	{
		if (!cJSON_IsNumber(it) || !it->string || off >= sizeof(line))
			continue;
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s %.2fs",
		                        off ? ", " : "", it->string, it->valuedouble);
	}
	print_field("phases:", off ? line : "-");
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	struct buf reply;
	cJSON *j = NULL;
	const cJSON *err;
	char req[128];
	int fd = -1, r, rc;
	double version;

	rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	buf_init(&reply, REPLY_MAX);
	snprintf(req, sizeof(req), "{\"version\":1,\"command\":\"%s\"}\n", o.command);

	fd = connect_socket(o.socket);
	if (fd < 0) {
		const char *hint = connect_hint(fd);

		fprintf(stderr, "runnerctl: cannot connect to %s: %s\n", o.socket,
		        hint ? hint : strerror(-fd));
		rc = EXIT_UNAVAILABLE;
		goto out;
	}
	r = exchange(fd, req, &reply);
	if (r == -ECONNRESET || r == -EPIPE)
		r = 0; /* closed on us without a reply: reported just below */
	if (r < 0) {
		fprintf(stderr, "runnerctl: %s: %s\n", o.socket,
		        r == -ETIMEDOUT ? "runnerd did not answer in time"
		        : r == -EFBIG   ? "reply too large"
		                        : strerror(-r));
		rc = r == -EFBIG ? EXIT_SOFTWARE : EXIT_UNAVAILABLE;
		goto out;
	}
	/* One line of JSON; anything after the newline is not ours to print. */
	if (reply.len && memchr(reply.data, '\n', reply.len))
		reply.len = (size_t)((char *)memchr(reply.data, '\n', reply.len) - reply.data);
	if (reply.len == 0) {
		fprintf(stderr,
		        "runnerctl: %s: runnerd closed the connection without a reply "
		        "(too many clients?)\n",
		        o.socket);
		rc = EXIT_UNAVAILABLE;
		goto out;
	}
	j = cJSON_ParseWithLength(reply.data, reply.len);
	if (!cJSON_IsObject(j) || !num(j, "version", &version) || version < 1) {
		fprintf(stderr, "runnerctl: %s: malformed reply from runnerd\n", o.socket);
		rc = EXIT_SOFTWARE;
		goto out;
	}
	err = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (err) {
		const char *msg = cJSON_IsString(err) ? err->valuestring : "unknown error";

		rc = strcmp(msg, "permission denied") == 0 ? EXIT_NOPERM : EXIT_SOFTWARE;
		if (o.json)
			printf("%.*s\n", (int)reply.len, reply.data);
		fprintf(stderr, "runnerctl: runnerd: ");
		put_safe_to(stderr, msg);
		fputs(rc == EXIT_NOPERM ? " (run as root or as a member of the socket's group)\n"
		                        : "\n",
		      stderr);
		goto out;
	}
	if (o.json) {
		printf("%.*s\n", (int)reply.len, reply.data);
		rc = 0;
		goto out;
	}
	if (strcmp(o.command, "drain") == 0) {
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"))) {
			fprintf(stderr, "runnerctl: %s: malformed reply from runnerd\n", o.socket);
			rc = EXIT_SOFTWARE;
			goto out;
		}
		printf("drain requested (phase was ");
		put_safe(str_or(j, "phase", "?"));
		printf(")\n");
		rc = 0;
		goto out;
	}
	if (!str_or(j, "phase", NULL)) {
		fprintf(stderr, "runnerctl: %s: malformed reply from runnerd\n", o.socket);
		rc = EXIT_SOFTWARE;
		goto out;
	}
	print_status(j);
	rc = 0;
out:
	if (fflush(stdout) != 0 && rc == 0)
		rc = EXIT_SOFTWARE; /* e.g. stdout is a closed pipe: do not claim success */
	cJSON_Delete(j);
	buf_free(&reply);
	if (fd >= 0)
		close(fd);
	return rc;
}
