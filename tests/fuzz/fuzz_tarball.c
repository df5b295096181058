/* agent/tarball: the whole input is the download (a .tar.gz, or anything), extracted for the
 * member "circleci-runner" with small limits.
 * Properties: only the documented returns; on success the member is within its limit and the
 * archive unpacked within its own; on failure the reason is set, one printable line. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "tarball.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct tar_limits lim = {
	        .max_member = 64 * 1024, .max_unpacked = 1 << 20, .max_entries = 64};
	int in = memfd_create("in", MFD_CLOEXEC), out = memfd_create("out", MFD_CLOEXEC), r;
	char why[256] = "";
	off_t len;

	FUZZ_CHECK(in >= 0 && out >= 0);
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
	return 0;
}
