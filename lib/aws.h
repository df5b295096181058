/* AWS requests without an SDK: SigV4 through CURLOPT_AWS_SIGV4 (with the Debian 12 workarounds of
 * aws-wire.md §4), the Query and JSON protocols, errors, retries with full jitter, endpoints. */
#ifndef RUNNERD_AWS_H
#define RUNNERD_AWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "http.h"

enum aws_service {
	AWS_AUTOSCALING,
	AWS_SECRETSMANAGER,
	AWS_SSM,
	AWS_DYNAMODB,
};

struct aws_creds {
	char akid[128];
	char secret[128];
	char token[2048];  /* session token, "" for long-term keys */
	time_t expiration; /* 0 = never */
	bool from_imds;
};

/* What went wrong, for the caller to log: code is the AWS error code ("Throttling",
 * "ConditionalCheckFailedException"), or a transport word ("timeout", "refused", "too-large",
 * "malformed", "http-NNN"). call names the operation ("autoscaling:SetDesiredCapacity"). */
struct aws_error {
	long http_status; /* 0 when no response */
	char code[96];
	char message[512];
	char request_id[96];
	char call[64];
	long retry_after_s; /* -1 when absent */
};

struct imds;

/* Refreshes credentials when they are near expiry; returns 0 or -errno. */
typedef int (*aws_creds_refresh_fn)(void *user, struct aws_creds *creds);

struct aws_ctx {
	struct http_client *http;
	struct aws_creds creds;
	aws_creds_refresh_fn refresh; /* NULL = static credentials */
	void *refresh_user;
	long timeout_ms;          /* per attempt; 0 = 10000 */
	unsigned max_attempts;    /* 0 = 3 */
	uint64_t backoff_base_ms; /* 0 = 1000; tests may set 1 */
	uint64_t backoff_cap_ms;  /* 0 = 20000 */
	/* How long one aws_query/aws_json call may take, its retries and their sleeps included:
	 * each call turns it into a deadline of its own when it starts, and that deadline ends
	 * with the call. 0 = no budget (attempts, timeouts and backoff bound the call). */
	uint64_t call_budget_ms;
	/* An absolute cap (monotonic ms) for a caller whose whole run has one: runner-scaler
	 * --once's budget, runnerd's boot deadline during a boot step. No call starts at or past
	 * it and none runs beyond it. 0 = none. Set it for a scope with aws_cap_begin and end the
	 * scope with aws_cap_end, so it never outlives the calls it was meant for. */
	uint64_t cap_mono_ms;
};

/* Endpoint for a service: AWS_ENDPOINT_URL_<SERVICE> (AUTO_SCALING, SECRETS_MANAGER, SSM,
 * DYNAMODB), else AWS_ENDPOINT_URL, else https://SERVICE.REGION.amazonaws.com (.com.cn for cn-*);
 * never with a trailing '/' (the caller appends the path).
 * *explicit_out tells whether it came from a variable. getenv_fn NULL = getenv (injectable for
 * unit tests). 0, -ENAMETOOLONG, -EINVAL (bad region). */
int aws_endpoint(enum aws_service svc, const char *region, char *out, size_t n, bool *explicit_out,
                 const char *(*getenv_fn)(const char *));
/* Region from AWS_REGION then AWS_DEFAULT_REGION; -ENOENT when neither is set. */
int aws_region_from_env(char *out, size_t n);
/* Signing name and X-Amz-Target prefix. */
const char *aws_signing_name(enum aws_service svc);

/* Query protocol (Auto Scaling): POST / with form (already encoded) as body; on 2xx *out holds the
 * XML. Returns 0; -EREMOTEIO when AWS answered an error (err filled from ErrorResponse); transport
 * errors as http_perform. An error body that is not AWS-shaped (a proxy's HTML page, an empty
 * 503) is still -EREMOTEIO, with err->code "http-NNN" (retried when NNN is 429/500/502/503/504).
 * Retries throttling/transient codes per aws_error_retryable() with full-jitter backoff. */
int aws_query(struct aws_ctx *ctx, const char *region, const char *action, const char *form,
              struct buf *out, struct aws_error *err);
/* The same with a response limit of its own (0 = BUF_MAX_DEFAULT, 1 MiB), for answers whose
 * legitimate size the caller knows to be larger (describes of large fleets): -EFBIG above it. */
int aws_query_max(struct aws_ctx *ctx, const char *region, const char *action, const char *form,
                  size_t max_body, struct buf *out, struct aws_error *err);
/* JSON 1.0/1.1 (Secrets Manager, SSM: 1.1 with target prefix; DynamoDB: 1.0). target is the
 * operation ("GetSecretValue"). Same returns as aws_query; err from {"__type","message"}. */
int aws_json(struct aws_ctx *ctx, enum aws_service svc, const char *region, const char *operation,
             const char *json, struct buf *out, struct aws_error *err);

/* Bound the calls made from here to the matching aws_cap_end by the absolute deadline cap
 * (monotonic ms; 0 = add none). An earlier cap already in force stays. Returns what
 * aws_cap_end must restore. */
uint64_t aws_cap_begin(struct aws_ctx *ctx, uint64_t cap_mono_ms);
void aws_cap_end(struct aws_ctx *ctx, uint64_t saved);

/* Pure helpers (unit-tested). */
/* The deadline of one call starting at now_ms: now_ms + call_budget_ms, or cap_mono_ms when
 * that is earlier; 0 = none. */
uint64_t aws_call_deadline(const struct aws_ctx *ctx, uint64_t now_ms);
/* Form-encode "name=value" (unreserved kept, space -> '+', else %XX uppercase) and append it
 * to out, preceded by '&' when out is not empty. */
int aws_form_append(struct buf *out, const char *name, const char *value);
/* Parse an XML ErrorResponse (also <Response><Errors><Error>) into err. 0 or -EBADMSG. */
int aws_parse_query_error(const char *body, size_t len, struct aws_error *err);
/* Parse {"__type","message"|"Message"} with the prefix (#) and suffix (:) rules. 0 or -EBADMSG. */
int aws_parse_json_error(const char *body, size_t len, struct aws_error *err);
/* Throttling, transient and 5xx: retry. Other 4xx (and ConditionalCheckFailedException): not. */
bool aws_error_retryable(const struct aws_error *err);
/* True when creds should be refreshed: expiring within 5 minutes of now. */
bool aws_creds_expiring(const struct aws_creds *c, time_t now);

#endif
