/* One member out of a gzip-compressed tar archive (CircleCI's release tarball holds the agent
 * binary at its top level), streamed: nothing but that member's bytes is ever written, and
 * only once every header before it (and the member's own) has been checked. */
#ifndef RUNNERD_TARBALL_H
#define RUNNERD_TARBALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAR_BLOCK 512

struct tar_limits {
	uint64_t max_member;   /* the member's size */
	uint64_t max_unpacked; /* every byte the archive inflates to (a gzip bomb stops here) */
	unsigned max_entries;  /* headers, long-name and pax records included */
};

/* What one 512-byte header says. */
enum tar_kind {
	TAR_REGULAR,   /* '0' or NUL */
	TAR_HARDLINK,  /* '1' */
	TAR_SYMLINK,   /* '2' */
	TAR_DEVICE,    /* '3' char, '4' block */
	TAR_DIRECTORY, /* '5' */
	TAR_FIFO,      /* '6' */
	TAR_LONGNAME,  /* GNU 'L': the next entry's name is this entry's data */
	TAR_PAX,       /* 'x': records for the next entry (path=, size=) */
	TAR_PAX_GLOBAL,
	TAR_OTHER, /* contiguous files, GNU sparse, vendor types: never the member we take */
};

struct tar_header {
	char name[257]; /* prefix (155) "/" name (100) for ustar; NUL-terminated */
	uint64_t size;
	enum tar_kind kind;
};

/* Pure: parse one header block. 0; 1 for an all-zero block (the end); -EBADMSG for a bad
 * checksum, an unterminated or non-numeric field, or a size that does not fit 64 bits. */
int tar_parse_header(const unsigned char block[TAR_BLOCK], struct tar_header *h);

/* Pure: the member name as it will be compared ("./x" -> "x"); -EPERM when the name is absolute
 * or has a ".." component (the whole archive is refused then), -EINVAL when empty. */
int tar_normalize_name(const char *name, char *out, size_t n);

/* Pure: the value of "path" in a pax extended header's records ("LEN path=VALUE\n" ...), if
 * any: 1 found, 0 none, -EBADMSG malformed records. */
int tar_pax_path(const char *records, size_t len, char *out, size_t n);
/* Pure: the "size" record (which overrides the next header's size): 1 found (*size set), 0
 * none, -EBADMSG malformed (records, or a size that is not a decimal number). */
int tar_pax_size(const char *records, size_t len, uint64_t *size);

/* Pure: text fit for a log line: printable ASCII as it is, everything else as \xNN. */
void tar_printable(const char *in, char *out, size_t n);

/* Stream the gzip'd tar from in_fd and write the regular-file member named `member` (compared
 * after normalising: a leading "./" is dropped) to out_fd. Returns 0; otherwise a negative errno
 * with why (n bytes) saying what was wrong, for the log:
 *   -ENOENT   no such member;
 *   -EPERM    an absolute or ".." name anywhere in the archive, the member is a link, device,
 *             directory or other non-regular entry, or it appears twice;
 *   -EFBIG    the member, or the whole archive unpacked, is over a limit, or too many entries;
 *   -EBADMSG  not gzip, a corrupt stream, a bad header, or the archive ends inside an entry;
 *   -EIO and others from read(2)/write(2). */
int tarball_extract(int in_fd, const char *member, int out_fd, const struct tar_limits *lim,
                    char *why, size_t n);

#endif
