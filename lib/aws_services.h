/* The AWS calls runnerd and runner-scaler make, with their response parsers as pure functions. */
#ifndef RUNNERD_AWS_SERVICES_H
#define RUNNERD_AWS_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws.h"
#include "buf.h"

/* ---- Secrets Manager / SSM ---------------------------------------------------------------- */

/* GetSecretValue(SecretId=id). key NULL or "": the whole SecretString (surrounding whitespace
 * stripped); else SecretString must be a JSON object and key a string member in it.
 * out receives the value (caller wipes with buf_wipe). -ENOENT: key missing or no SecretString
 * (binary); -EBADMSG: malformed; -EREMOTEIO with err (ResourceNotFoundException ...). */
int sm_get_secret(struct aws_ctx *ctx, const char *region, const char *id, const char *key,
                  struct buf *out, struct aws_error *err);
int sm_parse_secret(const char *json, size_t len, const char *key, struct buf *out);

/* GetParameter(Name, WithDecryption=true): Parameter.Value, whitespace stripped. */
int ssm_get_parameter(struct aws_ctx *ctx, const char *region, const char *name, struct buf *out,
                      struct aws_error *err);
int ssm_parse_parameter(const char *json, size_t len, struct buf *out);

/* ---- Auto Scaling ------------------------------------------------------------------------- */

struct asg_instance {
	char id[32];
	char lifecycle_state[40];
	char health_status[16];
	bool protected_from_scale_in;
};

struct asg_group {
	char name[256];
	int64_t min_size, max_size, desired;
	bool az_rebalance_suspended;  /* SuspendedProcesses lists AZRebalance */
	bool new_instances_protected; /* NewInstancesProtectedFromScaleIn is true (absent: no) */
	struct asg_instance *instances;
	size_t ninstances;
};

/* DescribeAutoScalingGroups lists every instance of every group, so an answer grows with the
 * fleet: about 700 bytes an instance as AWS sends it, megabytes for thousands of instances.
 * Generous bounds of what a legitimate answer holds, for response limits (DESIGN.md: every
 * buffer sized to the largest legitimate answer): */
/* the envelope, NextToken and RequestId */
#define ASG_DESCRIBE_BASE_BYTES ((size_t)16 * 1024)
/* one group without its instances: 50 tags, target groups, a mixed instances policy */
#define ASG_DESCRIBE_GROUP_BYTES ((size_t)128 * 1024)
/* one instance member (about 700 bytes as AWS writes it, indented) */
#define ASG_DESCRIBE_INSTANCE_BYTES ((size_t)2048)
/* The ceiling of one answer whatever it holds (about 20,000 instances as AWS writes them):
 * memory stays bounded; more names than fit are read in smaller calls. */
#define ASG_DESCRIBE_MAX_BYTES ((size_t)16 * 1024 * 1024)
/* Parsing: at least this many bytes of answer per XML element (about 50 in AWS's answers, 40
 * without indentation), so a tree never holds more than len / 32 nodes: a padded 16 MiB answer
 * costs about 70 MiB to parse, not 130. */
#define ASG_DESCRIBE_NODE_BYTES 32

/* Pure. Bytes one group of n instances may take in an answer (n < 0 counts as 0), and the
 * largest legitimate answer for groups of instances[0..n) instances: BASE + their group bytes;
 * both saturate at ASG_DESCRIBE_MAX_BYTES. instances NULL: groups of unknown (0) size. */
size_t asg_describe_group_bytes(int64_t instances);
size_t asg_describe_cap(const int64_t *instances, size_t n);
/* Pure. Does an answer of len bytes fit what the groups parsed from it account for (len <=
 * the cap of their instance counts)? A larger one is padded or broken, never legitimate. */
bool asg_describe_plausible(size_t len, const struct asg_group *groups, size_t n);
/* Pure. The XML node limit for parsing an answer of len bytes (at least XML_MAX_NODES). */
size_t asg_describe_max_nodes(size_t len);

/* DescribeAutoScalingGroups for up to 50 names (-E2BIG above), following NextToken. Each call
 * reads up to ASG_DESCRIBE_MAX_BYTES and must be plausible for its content (else -EFBIG, err
 * "too-large"); when a call's answer is larger than the ceiling, its names are described in
 * halves, down to one name a call. *groups (caller frees with asg_groups_free) holds the
 * groups found, in response order. */
int asg_describe(struct aws_ctx *ctx, const char *region, const char *const *names, size_t nnames,
                 struct asg_group **groups, size_t *ngroups, struct aws_error *err);
/* -E2BIG when the answer has more elements than asg_describe_max_nodes(len). */
int asg_parse_describe(const char *xml, size_t len, struct asg_group **groups, size_t *ngroups,
                       char *next_token, size_t next_token_len);
void asg_groups_free(struct asg_group *groups, size_t n);

int asg_set_desired(struct aws_ctx *ctx, const char *region, const char *name, int64_t desired,
                    bool honor_cooldown, struct aws_error *err);
/* UpdateAutoScalingGroup: any of min/max/desired < 0 is left out. */
int asg_update(struct aws_ctx *ctx, const char *region, const char *name, int64_t min_size,
               int64_t max_size, int64_t desired, struct aws_error *err);
/* TerminateInstanceInAutoScalingGroup. Never retried automatically (not idempotent): the
 * caller decides. Returns like aws_query. */
int asg_terminate_instance(struct aws_ctx *ctx, const char *region, const char *instance_id,
                           bool decrement, struct aws_error *err);
/* Pure: classify a Terminate error. */
bool asg_error_is_not_found(const struct aws_error *err); /* "Instance Id not found" */
bool asg_error_is_min_size(const struct aws_error *err);  /* ValidationError at MinSize */

/* ---- DynamoDB lease ----------------------------------------------------------------------- */

struct ddb_lease {
	char owner[256];
	int64_t expiry_ms; /* epoch milliseconds */
	int64_t version;   /* fencing token; grows by one on every acquire and renew */
	bool exists;
};

/* Item shape: {lease_id:S, owner:S, expiry:N (epoch ms), version:N}. Attribute names are aliased
 * (#o, #e, #v) because owner and others are reserved words.
 * Acquire: PutItem when absent, expired (expiry < now_ms) or already ours; version = prior+1.
 * Renew: UpdateItem when owner = me AND version = held version; expiry = new, version + 1.
 * Both: 0 when won (*lease updated to the new state), 1 when the condition failed (lost: not an
 * error, never retried), negative on errors (-EREMOTEIO with err, transport). */
int ddb_lease_get(struct aws_ctx *ctx, const char *region, const char *table, const char *lease_id,
                  struct ddb_lease *out, struct aws_error *err);
int ddb_lease_acquire(struct aws_ctx *ctx, const char *region, const char *table,
                      const char *lease_id, const char *owner, int64_t now_ms, int64_t duration_ms,
                      struct ddb_lease *lease, struct aws_error *err);
int ddb_lease_renew(struct aws_ctx *ctx, const char *region, const char *table,
                    const char *lease_id, const char *owner, int64_t now_ms, int64_t duration_ms,
                    struct ddb_lease *lease, struct aws_error *err);
/* Release: delete-by-expiry (set expiry 0) when still ours; 0 or 1 as above. */
int ddb_lease_release(struct aws_ctx *ctx, const char *region, const char *table,
                      const char *lease_id, const char *owner, struct ddb_lease *lease,
                      struct aws_error *err);
int ddb_parse_lease_item(const char *json, size_t len, struct ddb_lease *out);

#endif
