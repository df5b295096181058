/* The scaler's /metrics responder: the request head a client sends.
 * Properties: only the documented statuses; HEAD is flagged only for an answered HEAD. */
#include "fuzz.h"
#include "metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int is_head = -1, st;

	st = mhttp_route((const char *)data, size, &is_head);
	FUZZ_CHECK(st == 0 || st == 200 || st == 400 || st == 404 || st == 405);
	FUZZ_CHECK(is_head == 0 || is_head == 1);
	if (is_head)
		FUZZ_CHECK(st == 200 || st == 404);
	if (st == 200)
		FUZZ_CHECK(size >= 4 &&
		           (memcmp(data, "GET ", 4) == 0 || memcmp(data, "HEAD", 4) == 0));
	return 0;
}
