/* The DynamoDB lease item, as GetItem ({"Item":...} or {}) and UpdateItem ALL_NEW
 * ({"Attributes":...}) return it.
 * Properties: an existing lease has a terminated owner, a non-negative expiry and version; an
 * absent one is all zero; a rejected body leaves the output zeroed. */
#include <errno.h>

#include "aws_services.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ddb_lease l;
	int r;

	memset(&l, 0xa5, sizeof(l));
	r = ddb_parse_lease_item((const char *)data, size, &l);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0 && l.exists) {
		FUZZ_CHECK(strnlen(l.owner, sizeof(l.owner)) < sizeof(l.owner));
		FUZZ_CHECK(l.expiry_ms >= 0 && l.version >= 0);
	} else {
		FUZZ_CHECK(!l.exists && l.owner[0] == '\0' && l.expiry_ms == 0 && l.version == 0);
	}
	return 0;
}
