/* Shared by the libFuzzer harnesses: a byte consumer (like LLVM's FuzzedDataProvider) to build
 * structured values from the input, and FUZZ_CHECK for the properties a harness asserts beyond
 * "no crash". A failed check aborts, which libFuzzer reports as a crash with the input saved. */
#ifndef RUNNERD_FUZZ_H
#define RUNNERD_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fdp {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fdp_u8(struct fdp *f)
{
	uint8_t v = 0;

	if (f->n) {
		v = f->p[0];
		f->p++;
		f->n--;
	}
	return v;
}

static inline uint64_t fdp_u64(struct fdp *f)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | fdp_u8(f);
	return v;
}

static inline bool fdp_bool(struct fdp *f)
{
	return fdp_u8(f) & 1;
}

/* Up to max bytes, ending early at a 0xff byte (so later fields get their own bytes), as a
 * malloc'd NUL-terminated string. Embedded NULs end the C string early, like a real field. */
static inline char *fdp_str(struct fdp *f, size_t max)
{
	char *s = malloc(max + 1);
	size_t i = 0;

	if (!s)
		abort();
	while (i < max && f->n) {
		uint8_t c = fdp_u8(f);

		if (c == 0xff)
			break;
		s[i++] = (char)c;
	}
	s[i] = '\0';
	return s;
}

/* A valid UTF-8 string of up to max code points, NUL-free: each code point is drawn from one to
 * three input bytes, mostly ASCII, sometimes from the awkward ranges (C0/C1 controls, line and
 * paragraph separators, BOM, noncharacters, astral planes). */
static inline char *fdp_utf8(struct fdp *f, size_t max)
{
	char *s = malloc(max * 4 + 1);
	size_t o = 0;

	if (!s)
		abort();
	for (size_t i = 0; i < max && f->n; i++) {
		uint8_t sel = fdp_u8(f);
		uint32_t c;

		if (sel == 0xff)
			break;
		if (sel < 0xc0) {
			c = sel & 0x7f;
		} else {
			static const uint32_t special[] = {0x85,   0x9f,   0xa0,    0x2028,  0x2029,
			                                   0xfeff, 0xfffe, 0xffff,  0xd7ff,  0xe000,
			                                   0xfffd, 0x7ff,  0x10000, 0x10ffff};
			uint32_t hi = fdp_u8(f), lo = fdp_u8(f);

			if (sel < 0xd0)
				c = special[(hi << 8 | lo) %
				            (sizeof(special) / sizeof(special[0]))];
			else
				c = ((uint32_t)(sel & 0x0f) << 16 | hi << 8 | lo) % 0x110000;
		}
		if (c == 0 || (c >= 0xd800 && c <= 0xdfff))
			c = 'x';
		if (c < 0x80) {
			s[o++] = (char)c;
		} else if (c < 0x800) {
			s[o++] = (char)(0xc0 | c >> 6);
			s[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			s[o++] = (char)(0xe0 | c >> 12);
			s[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			s[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			s[o++] = (char)(0xf0 | c >> 18);
			s[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
			s[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			s[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	s[o] = '\0';
	return s;
}

/* The input as a NUL-terminated copy (parsers that take C strings). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Strict UTF-8 (no overlongs, surrogates, or code points above U+10FFFF). */
static inline bool fuzz_valid_utf8(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		size_t len;
		uint32_t c, min;

		if (u[i] < 0x80) {
			i++;
			continue;
		} else if ((u[i] & 0xe0) == 0xc0) {
			len = 2, c = u[i] & 0x1f, min = 0x80;
		} else if ((u[i] & 0xf0) == 0xe0) {
			len = 3, c = u[i] & 0x0f, min = 0x800;
		} else if ((u[i] & 0xf8) == 0xf0) {
			len = 4, c = u[i] & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (u[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

#endif
