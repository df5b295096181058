/* Bounded growable byte buffer: every buffer fed from the network has a ceiling. */
#ifndef RUNNERD_BUF_H
#define RUNNERD_BUF_H

#include <stddef.h>

#define BUF_MAX_DEFAULT ((size_t)1024 * 1024) /* 1 MiB: DESIGN.md's default read limit */

struct buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max; /* appends that would exceed this fail with -EFBIG; 0 = BUF_MAX_DEFAULT */
};

void buf_init(struct buf *b, size_t max);
/* 0, -EFBIG over the limit (buffer unchanged), -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append the whole file at path (bounded by b->max). 0; -EFBIG when larger; -errno from
 * open/read. The read chunk is wiped: token files pass through here. */
int buf_read_file(struct buf *b, const char *path);
void buf_reset(struct buf *b); /* len = 0, keeps memory */
void buf_free(struct buf *b);
/* explicit_bzero the whole allocation, then free: for buffers that held secrets. */
void buf_wipe(struct buf *b);

#endif
