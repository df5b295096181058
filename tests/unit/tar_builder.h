/* Build tar archives (and gzip them) in memory for the tests: ustar headers with any type,
 * GNU long names, pax records, hostile sizes. Header-only (static functions). */
#ifndef RUNNERD_TEST_TAR_BUILDER_H
#define RUNNERD_TEST_TAR_BUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

struct tarb {
	unsigned char *data;
	size_t len, cap;
};

static void tarb_put(struct tarb *t, const void *p, size_t n)
{
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap : 4096;

		while (cap < t->len + n)
			cap *= 2;
		t->data = realloc(t->data, cap);
		if (!t->data)
			abort();
		t->cap = cap;
	}
	memcpy(t->data + t->len, p, n);
	t->len += n;
}

/* A header block. size_field: the size as written (may lie); base256 writes it GNU-style. */
static void tarb_header(unsigned char h[512], const char *name, char type, uint64_t size_field,
                        const char *linkname, int base256, int posix_prefix_split)
{
	unsigned sum = 0;
	size_t nl = strlen(name);

	memset(h, 0, 512);
	if (posix_prefix_split && nl > 100) {
		/* prefix (up to 155) "/" name (up to 100): split at the last '/' that fits. */
		const char *cut = name + nl - 101; /* the '/' may sit just before a 100-byte name */
		const char *slash = strchr(cut, '/');

		if (!slash)
			abort();
		memcpy(h + 345, name, (size_t)(slash - name));
		memcpy(h, slash + 1, nl - (size_t)(slash - name) - 1);
	} else {
		memcpy(h, name, nl > 100 ? 100 : nl);
	}
	snprintf((char *)h + 100, 8, "%07o", 0755);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	if (base256) {
		h[124] = 0x80;
		for (int i = 11; i >= 1; i--) {
			h[124 + i] = (unsigned char)(size_field & 0xff);
			size_field >>= 8;
		}
	} else {
		char sz[32];

		snprintf(sz, sizeof(sz), "%011llo", (unsigned long long)size_field);
		memcpy(h + 124, sz, strlen(sz) < 12 ? strlen(sz) : 12);
	}
	snprintf((char *)h + 136, 12, "%011o", 0);
	h[156] = (unsigned char)type;
	if (linkname)
		memcpy(h + 157, linkname, strlen(linkname) > 100 ? 100 : strlen(linkname));
	memcpy(h + 257,
	       "ustar\0"
	       "00",
	       8);
	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
}

/* An entry: header and data (data_len bytes, padded); size_field is what the header says. */
static void tarb_entry(struct tarb *t, const char *name, char type, const void *data,
                       size_t data_len, uint64_t size_field, const char *linkname)
{
	unsigned char h[512], pad[512] = {0};

	tarb_header(h, name, type, size_field, linkname, 0, 0);
	tarb_put(t, h, 512);
	if (data && data_len) {
		tarb_put(t, data, data_len);
		if (data_len % 512)
			tarb_put(t, pad, 512 - data_len % 512);
	}
}

static void tarb_file(struct tarb *t, const char *name, const char *content)
{
	tarb_entry(t, name, '0', content, strlen(content), strlen(content), NULL);
}

static void tarb_end(struct tarb *t)
{
	unsigned char z[1024] = {0};

	tarb_put(t, z, sizeof(z));
}

/* gzip of the archive; *out malloc'd. */
static size_t tarb_gzip(const struct tarb *t, unsigned char **out)
{
	z_stream z;
	size_t cap = compressBound((uLong)t->len) + 64;

	memset(&z, 0, sizeof(z));
	*out = malloc(cap);
	if (!*out || deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z.next_in = t->data;
	z.avail_in = (uInt)t->len;
	z.next_out = *out;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		abort();
	cap = z.total_out;
	deflateEnd(&z);
	return cap;
}

#endif
