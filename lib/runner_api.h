/* CircleCI Runner API v3 client: queue depth per resource class, and the runners of a class. */
#ifndef RUNNERD_RUNNER_API_H
#define RUNNERD_RUNNER_API_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http.h"

#define RUNNER_API_DEFAULT_URL "https://runner.circleci.com"

struct runner_api {
	struct http_client *http;
	char base_url[512]; /* without /api/v3; CIRCLECI_RUNNER_API_URL overrides config */
	bool explicit_base; /* came from the variable or config: plain http allowed there */
	const char *token;  /* Circle-Token; not owned */
	long timeout_ms;    /* 0 = 10000 */
};

struct runner_api_error {
	long http_status;   /* 0 without a response */
	char message[256];  /* {"message":...} or a transport word */
	long retry_after_s; /* -1 when absent */
};

/* base_url: config value or NULL; CIRCLECI_RUNNER_API_URL wins; default RUNNER_API_DEFAULT_URL. */
int runner_api_init(struct runner_api *api, struct http_client *http, const char *base_url,
                    const char *token);

/* 0; -EREMOTEIO on an HTTP error status (err filled: 401/403 auth, 404, 429 + retry_after, 5xx);
 * -EBADMSG on a malformed body (missing field, wrong type, negative); transport as http_perform. */
int runner_api_unclaimed(struct runner_api *api, const char *resource_class, int64_t *count,
                         struct runner_api_error *err);
int runner_api_running(struct runner_api *api, const char *resource_class, int64_t *count,
                       struct runner_api_error *err);
/* GET /api/v3/runner?resource-class=RC: the number of runners listed. */
int runner_api_list_runners(struct runner_api *api, const char *resource_class, int64_t *count,
                            struct runner_api_error *err);

/* Request building and parsing, shared with the scaler's curl-multi path. */
int runner_api_url(const struct runner_api *api, const char *path, const char *resource_class,
                   char *out,
                   size_t n); /* path: "/runner/tasks", "/runner/tasks/running", "/runner" */
int runner_api_parse_count(const char *json, size_t len, const char *field, int64_t *count);
int runner_api_parse_runners(const char *json, size_t len, int64_t *count);
/* The runner list with every item's "name" (a string, required): fn(ctx, name) is called for
 * each, in order, only once the whole answer is known to be valid. 0 (*count = items, when
 * count is given), -EBADMSG (fn never called), or fn's negative return (it stops there). */
int runner_api_parse_runner_names(const char *json, size_t len,
                                  int (*fn)(void *ctx, const char *name), void *ctx,
                                  int64_t *count);
void runner_api_parse_error(long status, const char *body, size_t len, long retry_after,
                            struct runner_api_error *err);

#endif
