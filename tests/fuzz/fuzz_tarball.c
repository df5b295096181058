/* agent/tarball: the input is the download, extracted for the member "circleci-runner" with
 * small limits. A first byte of 'T' means "the rest is a raw tar stream": the harness gzips it so
 * that mutations reach the header parser instead of dying in the gzip check; any other input is
 * the download as it is (a .tar.gz, or anything).
 * Properties: only the documented returns; on success the member is within its limit and the
 * archive unpacked within its own; on failure the reason is set, one printable line. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zlib.h>

#include "fuzz.h"
#include "tarball.h"

/* gzip `data` into a malloc'd buffer; NULL when zlib refuses (never for these sizes). */
static unsigned char *gzip_raw(const uint8_t *data, size_t size, size_t *out_len)
{
	z_stream z = {0};
	size_t cap = size + size / 8 + 256;
	unsigned char *buf = malloc(cap);

	if (!buf || deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(buf);
		return NULL;
	}
	z.next_in = (unsigned char *)data;
	z.avail_in = (uInt)size;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&z);
		free(buf);
		return NULL;
	}
	*out_len = z.total_out;
	deflateEnd(&z);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *gz = NULL;

	static const struct tar_limits lim = {
	        .max_member = 64 * 1024, .max_unpacked = 1 << 20, .max_entries = 64};
	int in = memfd_create("in", MFD_CLOEXEC), out = memfd_create("out", MFD_CLOEXEC), r;
	char why[256] = "";
	off_t len;

	FUZZ_CHECK(in >= 0 && out >= 0);
	if (size > 0 && data[0] == 'T') {
		size_t gz_len = 0;

		gz = gzip_raw(data + 1, size - 1, &gz_len);
		FUZZ_CHECK(gz != NULL);
		data = gz;
		size = gz_len;
	}
	FUZZ_CHECK(write(in, data, size) == (ssize_t)size);
	FUZZ_CHECK(lseek(in, 0, SEEK_SET) == 0);
	r = tarball_extract(in, "circleci-runner", out, &lim, why, sizeof(why));
	len = lseek(out, 0, SEEK_END);
	FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EPERM || r == -EFBIG || r == -EBADMSG);
	if (r == 0) {
		FUZZ_CHECK(len >= 0 && (uint64_t)len <= lim.max_member);
	} else {
		FUZZ_CHECK(why[0] != '\0');
		for (const char *p = why; *p; p++)
			FUZZ_CHECK(*p >= 0x20 || *p == '\t' || (unsigned char)*p >= 0x80);
	}
	close(in);
	close(out);
	free(gz);
	return 0;
}
