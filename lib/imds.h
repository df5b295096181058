/* IMDSv2: token PUT with TTL, then GETs with the token; 401 -> new token, retry once. Short
 * timeouts (IMDS answers in microseconds or never: hop limit). */
#ifndef RUNNERD_IMDS_H
#define RUNNERD_IMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "aws.h"
#include "buf.h"
#include "http.h"

struct imds {
	struct http_client *http;
	/* "http://169.254.169.254", "http://[fd00:ec2::254]" with
	 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, or AWS_EC2_METADATA_SERVICE_ENDPOINT */
	char base[256];
	bool explicit_base;
	bool disabled; /* AWS_EC2_METADATA_DISABLED=true, or an unusable endpoint setting */
	char disabled_reason[128]; /* which variable disabled it, for the log */
	char token[256];
	time_t token_expiry;
	long timeout_ms;      /* per request; default 2000 */
	unsigned token_ttl_s; /* default 21600 */
	/* The request made last, for the caller's error message: "imds:token" or "imds:PATH"
	 * ("imds:meta-data/instance-id"); after a failure, the one that failed. */
	char last_call[224];
	long last_status; /* its HTTP status; 0 when it got no answer */
};

/* Reads the environment; never fails except -ENOMEM-free: returns 0. */
int imds_init(struct imds *m, struct http_client *http);
void imds_clear(struct imds *m); /* wipes the token */

/* GET /latest/PATH (e.g. "meta-data/instance-id"); body into out (limit 64 KiB).
 * 0; -ENOENT on 404; -ENODEV when disabled; -EACCES on 403; -EPROTO other status;
 * transport errors as http_perform. */
int imds_get(struct imds *m, const char *path, struct buf *out);

int imds_instance_id(struct imds *m, char *out, size_t n);
int imds_region(struct imds *m, char *out, size_t n);
/* autoscaling/target-lifecycle-state: -ENOENT when never set. */
int imds_target_lifecycle_state(struct imds *m, char *out, size_t n);

struct spot_action {
	char action[16]; /* terminate | stop | hibernate */
	time_t time;
};
/* spot/instance-action: 0 with a notice, -ENOENT when none (404), -EBADMSG malformed. */
int imds_spot_action(struct imds *m, struct spot_action *out);
/* events/recommendations/rebalance: 0 with notice time, -ENOENT none. */
int imds_rebalance(struct imds *m, time_t *notice);
/* Instance-role credentials: list role, fetch JSON. 0, -ENOENT (no role), -EBADMSG. */
int imds_role_credentials(struct imds *m, struct aws_creds *out);

/* Pure parsers. */
int imds_parse_spot_action(const char *json, size_t len, struct spot_action *out);
int imds_parse_credentials(const char *json, size_t len, struct aws_creds *out);

#endif
