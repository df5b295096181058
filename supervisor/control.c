#include "control.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define REPLY_MAX    ((size_t)64 * 1024)
#define NSS_BUF_MAX  ((size_t)1024 * 1024)
#define ACCEPT_BURST (2 * CONTROL_MAX_CLIENTS) /* per dispatch: the loop must not starve */

struct control_client {
	int fd; /* -1: free slot */
	bool writing;
	uint64_t deadline_ms; /* monotonic */
	size_t req_len;
	char req[CONTROL_REQUEST_MAX];
	struct buf reply;
	size_t reply_off;
};

struct control_server {
	int fd;
	gid_t gid;
	dev_t dev; /* what we bound, so close never unlinks a successor's socket */
	ino_t ino;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct control_client clients[CONTROL_MAX_CLIENTS];
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int control_parse_request(const char *line, size_t len, enum control_command *cmd)
{
	const cJSON *version, *command;
	const char *end = NULL;
	cJSON *root = NULL;
	int r = -EBADMSG;

	if (len > CONTROL_REQUEST_MAX)
		return -EMSGSIZE;
	if (!line || len == 0 || memchr(line, '\0', len))
		return -EBADMSG;
	root = cJSON_ParseWithLengthOpts(line, len, &end, false);
	if (!root || !cJSON_IsObject(root))
		goto out;
	/* One value per line: trailing garbage means a confused client. */
	for (; end && end < line + len; end++)
		if (!is_space(*end))
			goto out;
	version = cJSON_GetObjectItemCaseSensitive(root, "version");
	command = cJSON_GetObjectItemCaseSensitive(root, "command");
	/* A missing version is version 1, so `echo '{"command":"status"}' | socat` works. */
	if (version && !cJSON_IsNumber(version))
		goto out;
	if (!cJSON_IsString(command) || !command->valuestring)
		goto out;
	if (version && version->valuedouble != CONTROL_PROTOCOL_VERSION) {
		r = -EPROTO;
		goto out;
	}
	r = 0;
	if (strcmp(command->valuestring, "status") == 0)
		*cmd = CONTROL_STATUS;
	else if (strcmp(command->valuestring, "drain") == 0)
		*cmd = CONTROL_DRAIN;
	else
		r = -EINVAL;
out:
	cJSON_Delete(root);
	return r;
}

bool control_peer_allowed(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups, gid_t sock_gid)
{
	size_t i;

	if (uid == 0 || gid == sock_gid)
		return true;
	for (i = 0; groups && i < ngroups; i++)
		if (groups[i] == sock_gid)
			return true;
	return false;
}

/* getgrnam_r with a growing, bounded buffer. A purely numeric name is taken as a gid. */
static int resolve_group(const char *name, gid_t *gid)
{
	struct group grp, *res = NULL;
	long hint = sysconf(_SC_GETGR_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	char *mem = NULL, *endp;
	unsigned long num;
	int r, e;

	*gid = 0;
	if (!name || !*name)
		return 0;
	for (;;) {
		char *p = realloc(mem, size);

		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		mem = p;
		e = getgrnam_r(name, &grp, mem, size, &res);
		if (e != ERANGE || size >= NSS_BUF_MAX)
			break;
		size *= 2;
	}
	if (e == 0 && res) {
		*gid = res->gr_gid;
		r = 0;
		goto out;
	}
	if (e != 0 && e != ENOENT && e != ESRCH && e != EBADF && e != EPERM) {
		r = -e;
		goto out;
	}
	errno = 0;
	num = strtoul(name, &endp, 10);
	if (name[0] >= '0' && name[0] <= '9' && *endp == '\0' && errno == 0 &&
	    num < (unsigned long)(gid_t)-1) {
		*gid = (gid_t)num;
		r = 0;
		goto out;
	}
	r = -ENOENT;
out:
	free(mem);
	return r;
}

/* mkdir -p of the socket's directory, 0755. */
static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash, *p;

	if (strlen(path) >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, strlen(path) + 1);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (p = dir + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		if (last)
			break;
		*p = '/';
	}
	return 0;
}

/* Unlink a leftover socket of a previous run; never a live one, never a non-socket. */
static int remove_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (r == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		return -EADDRINUSE;
	}
	close(fd);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int control_server_open(const char *path, const char *group, struct control_server **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct control_server *s = NULL;
	bool bound = false;
	struct stat st;
	gid_t gid = 0;
	int fd = -1, r;
	size_t i;

	*out = NULL;
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	r = resolve_group(group, &gid);
	if (r < 0)
		goto out;
	r = make_parent(path);
	if (r < 0)
		goto out;
	r = remove_stale(path, &sa);
	if (r < 0)
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		goto out;
	}
	bound = true;
	/* Permissions before listen(): nobody can connect in between. */
	if (chmod(path, 0660) < 0 || stat(path, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_gid != gid && chown(path, (uid_t)-1, gid) < 0) {
		r = -errno;
		goto out;
	}
	if (listen(fd, 2 * CONTROL_MAX_CLIENTS) < 0) {
		r = -errno;
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	s->fd = fd;
	s->gid = gid;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	memcpy(s->path, path, strlen(path) + 1);
	for (i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		s->clients[i].fd = -1;
		buf_init(&s->clients[i].reply, REPLY_MAX);
	}
	*out = s;
	r = 0;
out:
	if (r < 0) {
		int saved = errno;

		if (fd >= 0)
			close(fd);
		if (bound)
			unlink(path);
		errno = saved;
	}
	return r;
}

static void client_drop(struct control_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->writing = false;
	c->req_len = 0;
	c->reply_off = 0;
	buf_free(&c->reply);
}

void control_server_close(struct control_server *s)
{
	struct stat st;
	size_t i;

	if (!s)
		return;
	for (i = 0; i < CONTROL_MAX_CLIENTS; i++)
		client_drop(&s->clients[i]);
	if (s->fd >= 0)
		close(s->fd);
	if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	free(s);
}

size_t control_server_pollfds(struct control_server *s, struct pollfd *fds, size_t max)
{
	size_t n = 0, i;

	if (max == 0)
		return 0;
	fds[n++] = (struct pollfd){.fd = s->fd, .events = POLLIN};
	for (i = 0; i < CONTROL_MAX_CLIENTS && n < max; i++) {
		const struct control_client *c = &s->clients[i];

		if (c->fd < 0)
			continue;
		fds[n++] = (struct pollfd){.fd = c->fd, .events = c->writing ? POLLOUT : POLLIN};
	}
	return n;
}

int control_server_timeout_ms(const struct control_server *s, uint64_t now_mono_ms)
{
	int best = -1;
	size_t i;

	for (i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		const struct control_client *c = &s->clients[i];
		uint64_t left;

		if (c->fd < 0)
			continue;
		left = c->deadline_ms > now_mono_ms ? c->deadline_ms - now_mono_ms : 0;
		if (left > INT_MAX)
			left = INT_MAX;
		if (best < 0 || (int)left < best)
			best = (int)left;
	}
	return best;
}

/* Queue a constant reply; client_flush() sends it. */
static void client_reply(struct control_client *c, const char *text)
{
	buf_reset(&c->reply);
	if (buf_append_str(&c->reply, text) < 0)
		c->reply.len = 0; /* cannot happen for our short constants; close silently */
	c->reply_off = 0;
	c->writing = true;
}

/* One non-blocking send of what is left; false when the client is done or broken. */
static bool client_flush(struct control_client *c)
{
	while (c->reply_off < c->reply.len) {
		ssize_t n = send(c->fd, c->reply.data + c->reply_off, c->reply.len - c->reply_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		c->reply_off += (size_t)n;
	}
	return false;
}

static const char *request_error(int r)
{
	switch (r) {
	case -EPROTO:
		return "{\"version\":1,\"error\":\"unsupported version\"}\n";
	case -EINVAL:
		return "{\"version\":1,\"error\":\"unknown command\"}\n";
	case -EMSGSIZE:
		return "{\"version\":1,\"error\":\"request too large\"}\n";
	default:
		return "{\"version\":1,\"error\":\"bad request\"}\n";
	}
}

static void client_answer(struct control_client *c, const struct runnerd_status *st,
                          uint64_t now_wall_ms, bool *drain)
{
	enum control_command cmd = CONTROL_STATUS;
	int r = control_parse_request(c->req, c->req_len, &cmd);

	if (r < 0) {
		client_reply(c, request_error(r));
		return;
	}
	buf_reset(&c->reply);
	c->reply_off = 0;
	c->writing = true;
	if (cmd == CONTROL_DRAIN) {
		/* Phase names are plain ASCII: no escaping needed. */
		r = buf_printf(&c->reply, "{\"version\":1,\"ok\":true,\"phase\":\"%s\"}\n",
		               phase_name(st->phase));
		if (drain)
			*drain = true;
	} else {
		r = status_to_json(st, now_wall_ms, &c->reply);
		if (r == 0)
			r = buf_append_str(&c->reply, "\n");
	}
	if (r < 0)
		client_reply(c, "{\"version\":1,\"error\":\"internal error\"}\n");
}

/* Read what is there; answer once a full line (or EOF after some bytes) arrived. Returns false
 * when the client should be dropped. */
static bool client_read(struct control_client *c, const struct runnerd_status *st,
                        uint64_t now_wall_ms, bool *drain)
{
	for (;;) {
		ssize_t n;
		char *nl;

		if (c->req_len == sizeof(c->req)) {
			client_reply(c, request_error(-EMSGSIZE));
			return client_flush(c);
		}
		n = recv(c->fd, c->req + c->req_len, sizeof(c->req) - c->req_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		if (n == 0) {
			/* A client that half-closed without a newline still gets its answer. */
			if (c->req_len == 0)
				return false;
			client_answer(c, st, now_wall_ms, drain);
			return client_flush(c);
		}
		nl = memchr(c->req + c->req_len, '\n', (size_t)n);
		c->req_len += (size_t)n;
		if (nl) {
			c->req_len = (size_t)(nl - c->req); /* bytes after the line are ignored */
			client_answer(c, st, now_wall_ms, drain);
			return client_flush(c);
		}
	}
}

/* The peer's supplementary groups as of connect(): SO_PEERGROUPS (Linux 4.13), which cannot race
 * with pid reuse the way /proc/<pid>/status can; getgrouplist() for older kernels. */
static int peer_groups(int fd, uid_t uid, gid_t gid, gid_t **groups, size_t *n)
{
	socklen_t len = 64 * sizeof(gid_t);
	struct passwd pw, *res = NULL;
	char *mem = NULL;
	gid_t *g = NULL;
	int r, ng;

	*groups = NULL;
	*n = 0;
	for (;;) {
		gid_t *p = realloc(g, len ? len : sizeof(gid_t));

		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		g = p;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
			*groups = g;
			*n = len / sizeof(gid_t);
			return 0;
		}
		if (errno != ERANGE || len > NGROUPS_MAX * sizeof(gid_t))
			break;
	}
	if (errno != ENOPROTOOPT) {
		r = -errno;
		goto out;
	}
	mem = malloc(16384);
	if (!mem) {
		r = -ENOMEM;
		goto out;
	}
	r = getpwuid_r(uid, &pw, mem, 16384, &res);
	if (r != 0 || !res) {
		r = r ? -r : -ENOENT;
		goto out;
	}
	ng = 64;
	for (;;) {
		gid_t *p = realloc(g, (size_t)ng * sizeof(gid_t));
		int want = ng;

		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		g = p;
		if (getgrouplist(res->pw_name, gid, g, &want) >= 0) {
			*groups = g;
			*n = (size_t)want;
			g = NULL;
			r = 0;
			goto out;
		}
		if (want <= ng || want > NGROUPS_MAX) {
			r = -E2BIG;
			goto out;
		}
		ng = want;
	}
out:
	free(mem);
	free(g);
	return r;
}

static bool peer_ok(int fd, gid_t sock_gid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t *groups = NULL;
	size_t n = 0;
	bool ok;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
		return false;
	if (control_peer_allowed(cred.uid, cred.gid, NULL, 0, sock_gid))
		return true;
	/* Cannot learn the groups: not allowed. */
	if (peer_groups(fd, cred.uid, cred.gid, &groups, &n) < 0)
		return false;
	ok = control_peer_allowed(cred.uid, cred.gid, groups, n, sock_gid);
	free(groups);
	return ok;
}

static void accept_clients(struct control_server *s, uint64_t now_mono_ms)
{
	int burst;

	for (burst = 0; burst < ACCEPT_BURST; burst++) {
		struct control_client *c = NULL;
		size_t i;
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return; /* EAGAIN, or EMFILE & co: try again on the next dispatch */
		}
		for (i = 0; i < CONTROL_MAX_CLIENTS && !c; i++)
			if (s->clients[i].fd < 0)
				c = &s->clients[i];
		if (!c) {
			close(fd); /* full: refuse rather than queue behind slow clients */
			continue;
		}
		c->fd = fd;
		c->writing = false;
		c->req_len = 0;
		c->reply_off = 0;
		buf_init(&c->reply, REPLY_MAX);
		c->deadline_ms = now_mono_ms + CONTROL_CLIENT_TIMEOUT_MS;
		if (!peer_ok(fd, s->gid)) {
			client_reply(c, "{\"version\":1,\"error\":\"permission denied\"}\n");
			if (!client_flush(c))
				client_drop(c);
		}
	}
}

void control_server_dispatch(struct control_server *s, const struct pollfd *fds, size_t n,
                             const struct runnerd_status *st, uint64_t now_mono_ms,
                             uint64_t now_wall_ms, bool *drain)
{
	bool listener_ready = false;
	size_t i, j;

	/* Clients first, the listener last: a descriptor closed here and reused by accept4() must
	 * not be matched to a stale pollfd entry. */
	for (j = 0; j < n; j++) {
		if (fds[j].fd == s->fd) {
			listener_ready = fds[j].revents != 0;
			continue;
		}
		if (fds[j].revents == 0 || fds[j].fd < 0)
			continue;
		for (i = 0; i < CONTROL_MAX_CLIENTS; i++) {
			struct control_client *c = &s->clients[i];
			bool keep;

			if (c->fd != fds[j].fd)
				continue;
			if (fds[j].revents & POLLNVAL)
				keep = false;
			else if (c->writing)
				keep = client_flush(c);
			else
				keep = client_read(c, st, now_wall_ms, drain);
			if (!keep)
				client_drop(c);
			break;
		}
	}
	for (i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (s->clients[i].fd >= 0 && s->clients[i].deadline_ms <= now_mono_ms)
			client_drop(&s->clients[i]);
	if (listener_ready)
		accept_clients(s, now_mono_ms);
}
