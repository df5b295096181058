/* GET /metrics inside the scaler's loop. One shared, reference-counted body per render, so a
 * slow client costs a pointer, not a copy. */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evloop.h"
#include "util.h"

#define REQ_MAX  4096
#define HEAD_MAX 256

struct body {
	unsigned refs;
	size_t len;
	char data[];
};

struct client {
	struct ev_source src;
	struct mhttp *owner;
	bool used;
	uint64_t deadline;
	char req[REQ_MAX];
	size_t req_len;
	char head[HEAD_MAX];
	size_t head_len, head_off;
	struct body *body; /* NULL when not sending one */
	size_t body_off;
	bool writing;
};

struct mhttp {
	int epfd;
	struct ev_source listen;
	uint16_t port;
	bool retired; /* closed; events still pointing here are ignored */
	struct mhttp *next_retired;
	struct body *current;
	struct client clients[MHTTP_MAX_CLIENTS];
};

static void body_put(struct body *b)
{
	if (b && --b->refs == 0)
		free(b);
}

int mhttp_route(const char *req, size_t len, int *is_head)
{
	const char *eol, *sp1, *sp2, *path;
	size_t plen;

	*is_head = 0;
	if (!memmem(req, len, "\r\n\r\n", 4) && !memmem(req, len, "\n\n", 2))
		return len >= REQ_MAX ? 400 : 0;
	eol = memchr(req, '\n', len);
	sp1 = memchr(req, ' ', (size_t)(eol - req));
	if (!sp1)
		return 400;
	path = sp1 + 1;
	sp2 = memchr(path, ' ', (size_t)(eol - path));
	if (!sp2 || (size_t)(eol - sp2) < 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return 400;
	plen = (size_t)(sp2 - path);
	if (!((sp1 - req == 3 && memcmp(req, "GET", 3) == 0) ||
	      (sp1 - req == 4 && memcmp(req, "HEAD", 4) == 0)))
		return 405;
	*is_head = sp1 - req == 4;
	/* /metrics, optionally with a query string (Prometheus sends none, curl users might). */
	if ((plen == 8 || (plen > 8 && path[8] == '?')) && memcmp(path, "/metrics", 8) == 0)
		return 200;
	return 404;
}

static void client_close(struct client *c)
{
	if (!c->used)
		return;
	(void)epoll_ctl(c->owner->epfd, EPOLL_CTL_DEL, c->src.fd, NULL);
	close(c->src.fd);
	body_put(c->body);
	c->body = NULL;
	c->used = false;
}

static void client_respond(struct client *c, int status, bool is_head)
{
	const char *text = status == 200   ? "OK"
	                   : status == 404 ? "Not Found"
	                   : status == 405 ? "Method Not Allowed"
	                                   : "Bad Request";
	struct body *b = status == 200 ? c->owner->current : NULL;
	size_t blen = b ? b->len : 0;
	int n;

	n = snprintf(c->head, sizeof(c->head),
	             "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n",
	             status, text,
	             status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
	             blen);
	c->head_len = n > 0 && (size_t)n < sizeof(c->head) ? (size_t)n : 0;
	c->head_off = 0;
	if (b && !is_head) {
		b->refs++;
		c->body = b;
		c->body_off = 0;
	}
	c->writing = true;
	(void)ev_ctl(c->owner->epfd, EPOLL_CTL_MOD, &c->src, EPOLLOUT);
}

static void client_write(struct client *c)
{
	while (c->head_off < c->head_len) {
		ssize_t w = send(c->src.fd, c->head + c->head_off, c->head_len - c->head_off,
		                 MSG_NOSIGNAL);

		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				client_close(c);
			return;
		}
		c->head_off += (size_t)w;
	}
	while (c->body && c->body_off < c->body->len) {
		ssize_t w = send(c->src.fd, c->body->data + c->body_off, c->body->len - c->body_off,
		                 MSG_NOSIGNAL);

		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				client_close(c);
			return;
		}
		c->body_off += (size_t)w;
	}
	client_close(c);
}

static void client_event(struct ev_source *src, uint32_t events)
{
	struct client *c = (struct client *)src;
	int status, is_head;

	if (!c->used)
		return; /* closed earlier in this epoll batch (its server retired, say) */
	if (c->writing) {
		if (events & (EPOLLERR | EPOLLHUP))
			client_close(c);
		else
			client_write(c);
		return;
	}
	for (;;) {
		ssize_t n = recv(src->fd, c->req + c->req_len, sizeof(c->req) - c->req_len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				client_close(c);
			return;
		}
		if (n == 0) {
			client_close(c);
			return;
		}
		c->req_len += (size_t)n;
		status = mhttp_route(c->req, c->req_len, &is_head);
		if (status) {
			client_respond(c, status, is_head);
			client_write(c);
			return;
		}
		if (c->req_len == sizeof(c->req)) {
			client_respond(c, 400, false);
			client_write(c);
			return;
		}
	}
}

static void listen_event(struct ev_source *src, uint32_t events)
{
	struct mhttp *h = (struct mhttp *)((char *)src - offsetof(struct mhttp, listen));

	if (h->retired)
		return; /* its fd is closed (and its number maybe someone else's now) */
	for (;;) {
		struct client *c = NULL;
		int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return; /* EAGAIN, or a transient error: the next event retries */
		for (size_t i = 0; i < MHTTP_MAX_CLIENTS; i++) {
			if (!h->clients[i].used) {
				c = &h->clients[i];
				break;
			}
		}
		if (!c) {
			close(fd); /* full: the scraper retries; the loop stays bounded */
			continue;
		}
		memset(c, 0, sizeof(*c));
		c->used = true;
		c->owner = h;
		c->src.fd = fd;
		c->src.fn = client_event;
		c->deadline = now_mono_ms() + MHTTP_CLIENT_TIMEOUT_MS;
		if (ev_ctl(h->epfd, EPOLL_CTL_ADD, &c->src, EPOLLIN) < 0) {
			close(fd);
			c->used = false;
		}
	}
}

int mhttp_open(int epfd, const char *host, uint16_t port, struct mhttp **out)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	struct mhttp *h;
	int fd = -1, one = 1, r;

	*out = NULL;
	memset(&ss, 0, sizeof(ss));
	if (!host || !host[0] || strcmp(host, "localhost") == 0) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(host && host[0] ? INADDR_LOOPBACK : INADDR_ANY);
		slen = sizeof(*a);
	} else if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		slen = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		slen = sizeof(*a);
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->epfd = epfd;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, 16) < 0) {
		r = -errno;
		goto out;
	}
	slen = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0)
		h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                         : ((struct sockaddr_in *)&ss)->sin_port);
	h->listen.fd = fd;
	h->listen.fn = listen_event;
	r = ev_ctl(epfd, EPOLL_CTL_ADD, &h->listen, EPOLLIN);
	if (r < 0)
		goto out;
	r = mhttp_set_body(h, "", 0);
	if (r < 0)
		goto out;
	*out = h;
	h = NULL;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(h);
	return r;
}

static void mhttp_stop(struct mhttp *h)
{
	if (h->retired)
		return;
	for (size_t i = 0; i < MHTTP_MAX_CLIENTS; i++)
		client_close(&h->clients[i]);
	(void)epoll_ctl(h->epfd, EPOLL_CTL_DEL, h->listen.fd, NULL);
	close(h->listen.fd);
	h->retired = true;
}

void mhttp_close(struct mhttp *h)
{
	if (!h)
		return;
	mhttp_stop(h);
	body_put(h->current);
	free(h);
}

void mhttp_retire(struct mhttp *h, struct mhttp **graveyard)
{
	if (!h)
		return;
	mhttp_stop(h);
	h->next_retired = *graveyard;
	*graveyard = h;
}

void mhttp_reap(struct mhttp **graveyard)
{
	while (*graveyard) {
		struct mhttp *h = *graveyard;

		*graveyard = h->next_retired;
		mhttp_close(h);
	}
}

int mhttp_set_body(struct mhttp *h, const char *text, size_t len)
{
	struct body *b = malloc(sizeof(*b) + len + 1);

	if (!b)
		return -ENOMEM;
	b->refs = 1;
	b->len = len;
	memcpy(b->data, text, len);
	b->data[len] = '\0';
	body_put(h->current);
	h->current = b;
	return 0;
}

uint64_t mhttp_sweep(struct mhttp *h, uint64_t now_ms)
{
	uint64_t next = 0;

	if (!h)
		return 0;
	for (size_t i = 0; i < MHTTP_MAX_CLIENTS; i++) {
		struct client *c = &h->clients[i];

		if (!c->used)
			continue;
		if (c->deadline <= now_ms) {
			client_close(c);
			continue;
		}
		if (!next || c->deadline < next)
			next = c->deadline;
	}
	return next;
}

uint16_t mhttp_port(const struct mhttp *h)
{
	return h->port;
}
