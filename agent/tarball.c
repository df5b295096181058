/* One member out of a .tar.gz, streamed through zlib (see tarball.h). */
#include "tarball.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#define LONGNAME_MAX 4096
#define PAX_MAX      (64 * 1024)
#define IN_CHUNK     (64 * 1024)

/* ---- pure parsing -------------------------------------------------------------------------- */

/* An octal field: spaces or NULs around the digits; base-256 when the top bit is set (GNU, for
 * sizes of 8 GiB and more). */
static int parse_number(const unsigned char *f, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	if (len && (f[0] & 0x80)) {
		if (f[0] & 0x40)
			return -EBADMSG; /* negative */
		v = f[0] & 0x3f;
		for (i = 1; i < len; i++) {
			if (v > (UINT64_MAX >> 8))
				return -EBADMSG;
			v = (v << 8) | f[i];
		}
		*out = v;
		return 0;
	}
	while (i < len && (f[i] == ' ' || f[i] == '\0'))
		i++;
	if (i == len) {
		*out = 0;
		return 0;
	}
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v > (UINT64_MAX >> 3))
			return -EBADMSG;
		v = (v << 3) | (uint64_t)(f[i] - '0');
	}
	for (; i < len; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return -EBADMSG;
	*out = v;
	return 0;
}

static size_t field_len(const unsigned char *f, size_t max)
{
	const unsigned char *z = memchr(f, '\0', max);

	return z ? (size_t)(z - f) : max;
}

int tar_parse_header(const unsigned char block[TAR_BLOCK], struct tar_header *h)
{
	uint64_t want, sum_u = 0;
	int64_t sum_s = 0;
	size_t i, nlen, plen;
	bool posix;

	for (i = 0; i < TAR_BLOCK && !block[i]; i++)
		;
	if (i == TAR_BLOCK)
		return 1;
	if (parse_number(block + 148, 8, &want) < 0)
		return -EBADMSG;
	for (i = 0; i < TAR_BLOCK; i++) {
		unsigned char c = (i >= 148 && i < 156) ? ' ' : block[i];

		sum_u += c;
		sum_s += (signed char)c;
	}
	if (want != sum_u && (int64_t)want != sum_s)
		return -EBADMSG;
	memset(h, 0, sizeof(*h));
	if (parse_number(block + 124, 12, &h->size) < 0)
		return -EBADMSG;
	/* POSIX ustar ("ustar\0" "00") keeps a name prefix; GNU's "ustar  \0" uses those bytes
	 * for other things. */
	posix = memcmp(block + 257, "ustar\0", 6) == 0;
	nlen = field_len(block, 100);
	plen = posix ? field_len(block + 345, 155) : 0;
	if (plen) {
		memcpy(h->name, block + 345, plen);
		h->name[plen] = '/';
		memcpy(h->name + plen + 1, block, nlen);
		h->name[plen + 1 + nlen] = '\0';
	} else {
		memcpy(h->name, block, nlen);
		h->name[nlen] = '\0';
	}
	switch (block[156]) {
	case '0':
	case '\0':
		h->kind = TAR_REGULAR;
		break;
	case '1':
		h->kind = TAR_HARDLINK;
		break;
	case '2':
		h->kind = TAR_SYMLINK;
		break;
	case '3':
	case '4':
		h->kind = TAR_DEVICE;
		break;
	case '5':
		h->kind = TAR_DIRECTORY;
		break;
	case '6':
		h->kind = TAR_FIFO;
		break;
	case 'L':
		h->kind = TAR_LONGNAME;
		break;
	case 'x':
		h->kind = TAR_PAX;
		break;
	case 'g':
		h->kind = TAR_PAX_GLOBAL;
		break;
	default:
		h->kind = TAR_OTHER;
		break;
	}
	/* Links, devices and directories carry no data whatever the size field says. */
	if (h->kind == TAR_HARDLINK || h->kind == TAR_SYMLINK || h->kind == TAR_DEVICE ||
	    h->kind == TAR_DIRECTORY || h->kind == TAR_FIFO)
		h->size = 0;
	return 0;
}

int tar_normalize_name(const char *name, char *out, size_t n)
{
	const char *p = name, *seg;
	size_t len, used = 0;

	if (!name || !n)
		return -EINVAL;
	if (name[0] == '/')
		return -EPERM;
	/* A ".." anywhere refuses the archive, however long the name: first, before any limit. */
	for (seg = name; *seg; seg += len + (seg[len] == '/')) {
		len = strcspn(seg, "/");
		if (len == 2 && seg[0] == '.' && seg[1] == '.')
			return -EPERM;
	}
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	while (*p == '/')
		p++;
	/* Each component: no "..", and "." and empty ones dropped. */
	while (*p) {
		seg = p;
		len = strcspn(p, "/");
		p += len;
		while (*p == '/')
			p++;
		if (len == 2 && seg[0] == '.' && seg[1] == '.')
			return -EPERM;
		if (len == 0 || (len == 1 && seg[0] == '.'))
			continue;
		if (used + (used ? 1 : 0) + len >= n)
			return -ENAMETOOLONG;
		if (used)
			out[used++] = '/';
		memcpy(out + used, seg, len);
		used += len;
	}
	out[used] = '\0';
	return used ? 0 : -EINVAL;
}

/* The pax record at rec[*pos]: "LEN KEY=VALUE\n", LEN counting the whole record. 1 with key and
 * value (neither NUL-terminated) and *pos past it, 0 at the end, -EBADMSG for a broken one. */
static int pax_next(const char *rec, size_t len, size_t *pos, const char **key, size_t *klen,
                    const char **val, size_t *vlen)
{
	size_t rlen = 0, i = *pos;
	const char *eq, *end;

	if (*pos >= len)
		return 0;
	while (i < len && rec[i] >= '0' && rec[i] <= '9') {
		rlen = rlen * 10 + (size_t)(rec[i] - '0');
		if (rlen > len)
			return -EBADMSG;
		i++;
	}
	if (i == *pos || i >= len || rec[i] != ' ' || rlen < (i - *pos) + 3 || *pos + rlen > len ||
	    rec[*pos + rlen - 1] != '\n')
		return -EBADMSG;
	*key = rec + i + 1;
	end = rec + *pos + rlen - 1; /* the '\n' */
	eq = memchr(*key, '=', (size_t)(end - *key));
	if (!eq)
		return -EBADMSG;
	*klen = (size_t)(eq - *key);
	*val = eq + 1;
	*vlen = (size_t)(end - eq - 1);
	*pos += rlen;
	return 1;
}

int tar_pax_path(const char *rec, size_t len, char *out, size_t n)
{
	size_t pos = 0, klen, vlen;
	const char *key, *val;
	int found = 0, r;

	while ((r = pax_next(rec, len, &pos, &key, &klen, &val, &vlen)) > 0) {
		if (klen != 4 || memcmp(key, "path", 4) != 0)
			continue;
		if (vlen >= n || memchr(val, '\0', vlen))
			return -EBADMSG;
		memcpy(out, val, vlen);
		out[vlen] = '\0';
		found = 1;
	}
	return r < 0 ? r : found;
}

int tar_pax_size(const char *rec, size_t len, uint64_t *size)
{
	size_t pos = 0, klen, vlen;
	const char *key, *val;
	int found = 0, r;

	while ((r = pax_next(rec, len, &pos, &key, &klen, &val, &vlen)) > 0) {
		uint64_t v = 0;

		if (klen != 4 || memcmp(key, "size", 4) != 0)
			continue;
		if (vlen == 0)
			return -EBADMSG;
		for (size_t i = 0; i < vlen; i++) {
			if (val[i] < '0' || val[i] > '9' || v > (UINT64_MAX - 9) / 10)
				return -EBADMSG;
			v = v * 10 + (uint64_t)(val[i] - '0');
		}
		*size = v;
		found = 1;
	}
	return r < 0 ? r : found;
}

void tar_printable(const char *in, char *out, size_t n)
{
	size_t used = 0;

	if (!n)
		return;
	for (const unsigned char *p = (const unsigned char *)in; p && *p; p++) {
		char esc[5];
		size_t add;

		if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
			esc[0] = (char)*p;
			esc[1] = '\0';
		} else {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
		}
		add = strlen(esc);
		if (used + add >= n)
			break;
		memcpy(out + used, esc, add);
		used += add;
	}
	out[used] = '\0';
}

/* ---- the inflated stream ------------------------------------------------------------------- */

struct gz {
	int fd;
	z_stream z;
	unsigned char in[IN_CHUNK];
	unsigned char discard[4096]; /* where skipped bytes inflate to */
	bool eof_in, done;
	uint64_t unpacked, max;
};

/* Exactly len bytes of the inflated stream into dst (dst NULL: discard). 0; 1 at a clean end of
 * the stream before any byte of this read; -EBADMSG (corrupt or ends within the read),
 * -EFBIG (over the unpacked limit), -errno from read(2). */
static int gz_read(struct gz *g, unsigned char *dst, size_t len)
{
	size_t got = 0;

	while (got < len) {
		size_t want = len - got;
		int zr;

		if (g->done)
			return got == 0 ? 1 : -EBADMSG;
		if (g->z.avail_in == 0 && !g->eof_in) {
			ssize_t r = read(g->fd, g->in, sizeof(g->in));

			if (r < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			if (r == 0)
				g->eof_in = true;
			g->z.next_in = g->in;
			g->z.avail_in = (uInt)r;
		}
		if (!dst && want > sizeof(g->discard))
			want = sizeof(g->discard);
		if (want > UINT32_MAX)
			want = UINT32_MAX;
		g->z.next_out = dst ? dst + got : g->discard;
		g->z.avail_out = (uInt)want;
		zr = inflate(&g->z, Z_NO_FLUSH);
		want -= g->z.avail_out;
		got += want;
		g->unpacked += want;
		if (g->unpacked > g->max)
			return -EFBIG;
		if (zr == Z_STREAM_END) {
			/* gzip allows members one after another (gzip -d and tar read them as one
			 * stream): go on with the next, if there is more input. */
			if (g->z.avail_in == 0 && !g->eof_in) {
				ssize_t r = read(g->fd, g->in, sizeof(g->in));

				if (r < 0)
					return -errno;
				g->z.next_in = g->in;
				g->z.avail_in = (uInt)r;
				if (r == 0)
					g->eof_in = true;
			}
			if (g->z.avail_in == 0) {
				g->done = true;
				continue;
			}
			if (inflateReset(&g->z) != Z_OK)
				return -EBADMSG;
			continue;
		}
		if (zr == Z_BUF_ERROR && g->eof_in && g->z.avail_in == 0)
			return -EBADMSG; /* truncated */
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return -EBADMSG;
	}
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static uint64_t padded(uint64_t size)
{
	return (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
}

/* Read an entry's data (size bytes, then the padding) into buf (NUL-terminated). */
static int read_meta(struct gz *g, uint64_t size, char *buf, size_t cap)
{
	int r;

	if (size >= cap)
		return -EFBIG;
	r = gz_read(g, (unsigned char *)buf, (size_t)size);
	if (r)
		return r > 0 ? -EBADMSG : r;
	buf[size] = '\0';
	r = gz_read(g, NULL, (size_t)(padded(size) - size));
	return r > 0 ? -EBADMSG : r;
}

static const char *kind_name(enum tar_kind k)
{
	switch (k) {
	case TAR_HARDLINK:
		return "a hard link";
	case TAR_SYMLINK:
		return "a symbolic link";
	case TAR_DEVICE:
		return "a device";
	case TAR_DIRECTORY:
		return "a directory";
	case TAR_FIFO:
		return "a FIFO";
	default:
		return "a special entry";
	}
}

int tarball_extract(int in_fd, const char *member, int out_fd, const struct tar_limits *lim,
                    char *why, size_t n)
{
	struct gz *g;
	struct tar_header h;
	unsigned char block[TAR_BLOCK];
	char *pending = NULL, *meta = NULL, norm[256], want[256], shown[1024];
	uint64_t pending_size = 0;
	unsigned entries = 0;
	bool found = false, have_pending_size = false;
	int r;

	if (!member || !lim || tar_normalize_name(member, want, sizeof(want)) < 0) {
		str_printf(why, n, "bad member name");
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	meta = malloc(PAX_MAX);
	pending = malloc(LONGNAME_MAX);
	if (!g || !meta || !pending) {
		r = -ENOMEM;
		str_printf(why, n, "out of memory");
		goto out_free;
	}
	pending[0] = '\0';
	g->fd = in_fd;
	g->max = lim->max_unpacked;
	/* 16 + MAX_WBITS: a gzip wrapper, checked. */
	if (inflateInit2(&g->z, 16 + MAX_WBITS) != Z_OK) {
		r = -ENOMEM;
		str_printf(why, n, "zlib: cannot initialise");
		goto out_free;
	}

	for (;;) {
		const char *name;
		uint64_t size;

		r = gz_read(g, block, TAR_BLOCK);
		if (r == 1) /* the stream ended on a block boundary without end blocks */
			break;
		if (r < 0) {
			if (r == -EFBIG)
				str_printf(why, n, "the archive unpacks to more than %llu bytes",
				           (unsigned long long)lim->max_unpacked);
			else if (r == -EBADMSG)
				str_printf(why, n,
				           "not a gzip'd tar, or a corrupt or truncated one");
			else
				str_printf(why, n, "reading the download failed: %s", strerror(-r));
			goto out;
		}
		r = tar_parse_header(block, &h);
		if (r == 1)
			break; /* the end-of-archive block */
		if (r < 0) {
			str_printf(why, n, "a tar header is corrupt (entry %u)", entries + 1);
			goto out;
		}
		if (++entries > lim->max_entries) {
			r = -EFBIG;
			str_printf(why, n, "more than %u entries", lim->max_entries);
			goto out;
		}
		size = h.size;
		if (h.kind == TAR_LONGNAME || h.kind == TAR_PAX || h.kind == TAR_PAX_GLOBAL) {
			r = read_meta(g, size, meta,
			              h.kind == TAR_LONGNAME ? LONGNAME_MAX : PAX_MAX);
			if (r < 0) {
				str_printf(why, n, "an extended tar header is %s",
				           r == -EFBIG ? "too large" : "corrupt or truncated");
				goto out;
			}
			if (h.kind == TAR_LONGNAME) {
				snprintf(pending, LONGNAME_MAX, "%s", meta);
			} else if (h.kind == TAR_PAX) {
				r = tar_pax_path(meta, (size_t)size, pending, LONGNAME_MAX);
				if (r >= 0) {
					r = tar_pax_size(meta, (size_t)size, &pending_size);
					have_pending_size = r == 1;
				}
				if (r < 0) {
					str_printf(why, n, "a pax extended header is malformed");
					goto out;
				}
			}
			continue;
		}
		name = pending[0] ? pending : h.name;
		/* A pax size record overrides the header's (sizes of 8 GiB and more). */
		if (have_pending_size && h.kind == TAR_REGULAR) {
			size = pending_size;
			h.size = pending_size;
		}
		have_pending_size = false;
		r = tar_normalize_name(name, norm, sizeof(norm));
		pending[0] = '\0';
		if (r == -EPERM) {
			tar_printable(name, shown, sizeof(shown));
			str_printf(why, n,
			           "unsafe member name \"%.200s\" (absolute or with \"..\")",
			           shown);
			goto out;
		}
		/* An old-style directory: a regular entry whose name ends in '/'. */
		if (h.kind == TAR_REGULAR && name[0] && name[strlen(name) - 1] == '/')
			h.kind = TAR_DIRECTORY;
		if (r == 0 && strcmp(norm, want) == 0) {
			if (found) {
				r = -EPERM;
				str_printf(why, n, "\"%s\" appears twice in the archive", want);
				goto out;
			}
			if (h.kind != TAR_REGULAR) {
				r = -EPERM;
				str_printf(why, n,
				           "\"%s\" in the archive is %s, not a regular file", want,
				           kind_name(h.kind));
				goto out;
			}
			if (size > lim->max_member) {
				r = -EFBIG;
				str_printf(why, n,
				           "\"%s\" is %llu bytes, more than the limit of %llu",
				           want, (unsigned long long)size,
				           (unsigned long long)lim->max_member);
				goto out;
			}
			found = true;
			while (size) {
				size_t chunk = size > IN_CHUNK ? IN_CHUNK : (size_t)size;

				r = gz_read(g, (unsigned char *)meta, chunk);
				if (r == 0)
					r = write_all(out_fd, (unsigned char *)meta, chunk);
				if (r) {
					if (r > 0)
						r = -EBADMSG;
					str_printf(why, n, "\"%s\": %s", want,
					           r == -EBADMSG ? "the archive ends inside it"
					           : r == -EFBIG ? "the archive unpacks to too much"
					                         : "writing it failed");
					goto out;
				}
				size -= chunk;
			}
			r = gz_read(g, NULL, (size_t)(padded(h.size) - h.size));
		} else {
			/* Another entry: skipped, its data never leaves this function. */
			r = 0;
			for (uint64_t left = padded(size); left && r == 0;) {
				size_t chunk = left > IN_CHUNK ? IN_CHUNK : (size_t)left;

				r = gz_read(g, NULL, chunk);
				left -= chunk;
			}
		}
		if (r) {
			if (r > 0)
				r = -EBADMSG;
			if (r == -EFBIG)
				str_printf(why, n, "the archive unpacks to more than %llu bytes",
				           (unsigned long long)lim->max_unpacked);
			else
				str_printf(why, n, "the archive ends inside an entry");
			goto out;
		}
	}
	if (found) {
		r = 0;
	} else {
		r = -ENOENT;
		str_printf(why, n, "no member \"%s\" in the archive", want);
	}
out:
	inflateEnd(&g->z);
out_free:
	free(pending);
	free(meta);
	free(g);
	return r;
}
