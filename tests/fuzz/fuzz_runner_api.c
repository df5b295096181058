/* CircleCI Runner API bodies: task counts, the runner list, error bodies.
 * Properties: counts are never negative; an error message is non-empty, one line of printable
 * ASCII, within its buffer. */
#include <errno.h>

#include "fuzz.h"
#include "runner_api.h"

static void check_error(long status, const char *body, size_t len, long retry_after)
{
	struct runner_api_error err;
	size_t n;

	runner_api_parse_error(status, body, len, retry_after, &err);
	FUZZ_CHECK(err.http_status == status);
	FUZZ_CHECK(err.retry_after_s == (retry_after >= 0 ? retry_after : -1));
	n = strnlen(err.message, sizeof(err.message));
	FUZZ_CHECK(n > 0 && n < sizeof(err.message));
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(err.message[i] >= 0x20 && err.message[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data;
	int64_t count;
	int r;

	r = runner_api_parse_count(json, size, "unclaimed_task_count", &count);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0)
		FUZZ_CHECK(count >= 0);
	r = runner_api_parse_count(json, size, "running_runner_tasks", &count);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0)
		FUZZ_CHECK(count >= 0);
	r = runner_api_parse_runners(json, size, &count);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0)
		FUZZ_CHECK(count >= 0);
	check_error(429, json, size, 7);
	check_error(500, json, size, -1);
	check_error(401, size ? json : NULL, size, -5);
	return 0;
}
