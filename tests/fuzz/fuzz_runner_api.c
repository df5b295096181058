/* CircleCI Runner API bodies: task counts, the runner list, error bodies.
 * Properties: counts are never negative; an error message is non-empty, one line of printable
 * ASCII, within its buffer; the runner names of a list come all or not at all (as many as the
 * list counts), and the launch bookkeeping takes any name. */
#include <errno.h>

#include "fuzz.h"
#include "launches.h"
#include "runner_api.h"

struct names {
	struct launch_tracker *t;
	int64_t n;
};

static int on_name(void *ctx, const char *name)
{
	struct names *nm = ctx;
	char ids[4][LAUNCH_ID_MAX];
	size_t k = launches_ids_in_name(name, ids, 4);

	for (size_t i = 0; i < k; i++)
		FUZZ_CHECK(launches_valid_id(ids[i]));
	launches_runner(nm->t, name);
	nm->n++;
	return 0;
}

static void check_names(const char *json, size_t size)
{
	static const struct asg_instance one = {"i-0123456789abcdef0", "InService", "Healthy",
	                                        true};
	struct launch_tracker t;
	struct launch_verdict v;
	struct names nm;
	int64_t count = -1, items = -1;
	int r;

	launches_init(&t);
	FUZZ_CHECK(launches_observe(&t, &one, 1, 0, 0) == 0);
	nm.t = &t;
	nm.n = 0;
	r = runner_api_parse_runner_names(json, size, on_name, &nm, &count);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0) {
		FUZZ_CHECK(count == nm.n);
		FUZZ_CHECK(runner_api_parse_runners(json, size, &items) == 0 && items == count);
	} else {
		FUZZ_CHECK(nm.n == 0);
	}
	launches_judge(&t, 1, 0, &v);
	FUZZ_CHECK(v.failed == 0 && v.connected <= 1);
	launches_reset(&t);
}

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
	check_names(json, size);
	check_error(429, json, size, 7);
	check_error(500, json, size, -1);
	check_error(401, size ? json : NULL, size, -5);
	return 0;
}
