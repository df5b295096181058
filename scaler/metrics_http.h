/* A tiny non-blocking HTTP/1.0 responder for GET /metrics, run inside the scaler's epoll loop.
 * Bounded: at most MHTTP_MAX_CLIENTS connections, requests up to 4 KiB, each connection closed
 * MHTTP_CLIENT_TIMEOUT_MS after it opened whatever it does. */
#ifndef RUNNERD_METRICS_HTTP_H
#define RUNNERD_METRICS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define MHTTP_MAX_CLIENTS       16
#define MHTTP_CLIENT_TIMEOUT_MS 5000

struct mhttp;

/* Listen on host (numeric, "" = any) and port; register with epfd. 0 or -errno. */
int mhttp_open(int epfd, const char *host, uint16_t port, struct mhttp **out);
/* Close and free at once: only outside an epoll batch (at exit). NULL: nothing. */
void mhttp_close(struct mhttp *h);
/* Stop serving from inside an epoll batch (a reload): the listener and every connection are
 * closed and out of epfd at once, but h stays allocated, because events of the current batch
 * may still point into it (they are ignored now). h goes onto *graveyard; mhttp_reap frees
 * the graveyard after the batch. NULL h: nothing. */
void mhttp_retire(struct mhttp *h, struct mhttp **graveyard);
void mhttp_reap(struct mhttp **graveyard);
/* Replace the body served from now on (copied; clients already answering keep theirs). */
int mhttp_set_body(struct mhttp *h, const char *text, size_t len);
/* Close connections past their deadline; returns the next deadline (monotonic ms), 0 = none. */
uint64_t mhttp_sweep(struct mhttp *h, uint64_t now_ms);
/* The bound port (for port 0 in tests). */
uint16_t mhttp_port(const struct mhttp *h);

/* Pure: classify a request head. 200 for GET/HEAD /metrics, 404 other paths, 405 other methods,
 * 400 malformed, 0 when the head is not complete yet. */
int mhttp_route(const char *req, size_t len, int *is_head);

#endif
