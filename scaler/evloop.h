/* The scaler's one event loop is epoll; every registered fd carries one of these, so the loop
 * only dispatches. */
#ifndef RUNNERD_EVLOOP_H
#define RUNNERD_EVLOOP_H

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>

struct ev_source {
	int fd;
	void (*fn)(struct ev_source *src, uint32_t events);
};

static inline int ev_ctl(int epfd, int op, struct ev_source *src, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};

	return epoll_ctl(epfd, op, src->fd, &ev) < 0 ? -errno : 0;
}

#endif
