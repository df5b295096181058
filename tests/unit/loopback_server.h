/* A scripted HTTP/1.1 server on 127.0.0.1 for unit tests: one thread, one request per
 * connection ("Connection: close"), each answered from a script and recorded for assertions.
 * Header-only (static functions) so any tests/unit/test_*.c can include it. Synchronisation is
 * by accept/recv and pthread_join, never by sleeping. */
#ifndef RUNNERD_TEST_LOOPBACK_SERVER_H
#define RUNNERD_TEST_LOOPBACK_SERVER_H

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define LS_MAX_REQUESTS      16
#define LS_SAFETY_TIMEOUT_MS 10000

enum ls_action {
	LS_REPLY,     /* answer with status/headers/body */
	LS_CLOSE,     /* read the request, then close without answering */
	LS_STALL,     /* read the request, answer nothing, wait for the client to give up */
	LS_NO_LENGTH, /* answer without Content-Length: body runs until close */
};

struct ls_response {
	enum ls_action action;
	int status;
	const char *headers; /* extra lines, each ending in "\r\n", or NULL */
	const char *body;    /* NULL = empty */
	size_t body_len;     /* 0 = strlen(body) */
};

struct ls_request {
	char method[16];
	char path[512];
	char headers[8192]; /* raw header block, lines "\r\n"-separated */
	char body[16384];
	size_t body_len;
};

struct loopback_server {
	int fd;
	int stop_pipe[2];
	int port;
	pthread_t thread;
	const struct ls_response *script;
	size_t nscript;
	struct ls_request reqs[LS_MAX_REQUESTS];
	size_t nreqs;
	char url[64]; /* "http://127.0.0.1:PORT" */
};

static inline int ls_read_request(int c, struct ls_request *rq)
{
	static char raw[sizeof(rq->headers) + sizeof(rq->body) + 1024];
	size_t len = 0, hlen, clen = 0, have;
	char *end, *line, *p;
	ssize_t n;
	struct pollfd pfd = {.fd = c, .events = POLLIN};

	for (;;) {
		if (poll(&pfd, 1, LS_SAFETY_TIMEOUT_MS) <= 0)
			return -1;
		n = recv(c, raw + len, sizeof(raw) - 1 - len, 0);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		raw[len] = '\0';
		end = strstr(raw, "\r\n\r\n");
		if (end)
			break;
		if (len >= sizeof(raw) - 1)
			return -1;
	}
	hlen = (size_t)(end - raw) + 4;
	if (sscanf(raw, "%15s %511s", rq->method, rq->path) != 2)
		return -1;
	line = strstr(raw, "\r\n") + 2;
	snprintf(rq->headers, sizeof(rq->headers), "%.*s", (int)(end - line), line);
	for (p = rq->headers; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL)
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			clen = strtoul(p + 15, NULL, 10);
	if (clen >= sizeof(rq->body))
		return -1;
	have = len - hlen;
	memcpy(rq->body, raw + hlen, have);
	while (have < clen) {
		if (poll(&pfd, 1, LS_SAFETY_TIMEOUT_MS) <= 0)
			return -1;
		n = recv(c, rq->body + have, clen - have, 0);
		if (n <= 0)
			return -1;
		have += (size_t)n;
	}
	rq->body[clen] = '\0';
	rq->body_len = clen;
	return 0;
}

static inline void ls_send_all(int c, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = send(c, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static inline void ls_answer(int c, const struct ls_response *r)
{
	char head[4096];
	const char *body = r->body ? r->body : "";
	size_t blen = r->body_len ? r->body_len : strlen(body);
	struct pollfd pfd = {.fd = c, .events = POLLIN};
	char sink[256];
	int n;

	switch (r->action) {
	case LS_CLOSE:
		return;
	case LS_STALL:
		/* The client closes when its timeout fires; recv then returns 0. */
		while (poll(&pfd, 1, LS_SAFETY_TIMEOUT_MS) > 0 &&
		       recv(c, sink, sizeof(sink), 0) > 0)
			;
		return;
	case LS_NO_LENGTH:
		n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nConnection: close\r\n%s\r\n",
		             r->status, r->headers ? r->headers : "");
		break;
	case LS_REPLY:
	default:
		n = snprintf(head, sizeof(head),
		             "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
		             r->status, blen, r->headers ? r->headers : "");
		break;
	}
	ls_send_all(c, head, (size_t)n);
	ls_send_all(c, body, blen);
}

static inline void *ls_thread(void *arg)
{
	struct loopback_server *s = arg;
	struct pollfd pfd[2];
	size_t i;
	int c;

	for (i = 0; i < s->nscript; i++) {
		pfd[0] = (struct pollfd){.fd = s->fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
		if (poll(pfd, 2, LS_SAFETY_TIMEOUT_MS) <= 0 || (pfd[1].revents & POLLIN))
			break;
		c = accept(s->fd, NULL, NULL);
		if (c < 0)
			break;
		if (s->nreqs < LS_MAX_REQUESTS && ls_read_request(c, &s->reqs[s->nreqs]) == 0) {
			s->nreqs++;
			ls_answer(c, &s->script[i]);
		}
		close(c);
	}
	return NULL;
}

/* Listen on an ephemeral loopback port and serve script[0..n-1], one per connection. */
static inline int ls_start(struct loopback_server *s, const struct ls_response *script, size_t n)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->script = script;
	s->nscript = n;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(s->fd, 8) < 0 || getsockname(s->fd, (struct sockaddr *)&a, &alen) < 0 ||
	    pipe(s->stop_pipe) < 0)
		return -1;
	s->port = ntohs(a.sin_port);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
	return pthread_create(&s->thread, NULL, ls_thread, s) == 0 ? 0 : -1;
}

/* Stop serving (when the script was not used up) and join; s->reqs is then safe to read. */
static inline void ls_stop(struct loopback_server *s)
{
	(void)!write(s->stop_pipe[1], "x", 1);
	pthread_join(s->thread, NULL);
	close(s->fd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
}

/* Value of header name in a recorded request, or NULL (static storage, one at a time). */
static inline const char *ls_header(const struct ls_request *rq, const char *name)
{
	static char v[4096];
	size_t nlen = strlen(name);
	const char *p = rq->headers, *eol;

	while (p && *p) {
		eol = strstr(p, "\r\n");
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			p += nlen + 1;
			while (*p == ' ')
				p++;
			snprintf(v, sizeof(v), "%.*s", eol ? (int)(eol - p) : (int)strlen(p), p);
			return v;
		}
		p = eol ? eol + 2 : NULL;
	}
	return NULL;
}

#endif
