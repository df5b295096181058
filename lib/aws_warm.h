/* The Auto Scaling calls of warm pools: runnerd's side (which group am I in, complete my launch
 * lifecycle action) and runner-scaler's (DescribeWarmPool, PutWarmPool). Request forms and
 * response parsers are pure functions; the calls go through aws_query. */
#ifndef RUNNERD_AWS_WARM_H
#define RUNNERD_AWS_WARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws.h"
#include "buf.h"

/* ---- runnerd: the LAUNCHING lifecycle hook ------------------------------------------------- */

/* DescribeAutoScalingInstances(InstanceIds.member.1=instance_id): the name of the group the
 * instance belongs to (also while it is in the group's warm pool) and its LifecycleState
 * ("Warmed:Pending:Wait", "Pending:Wait", ...). 0; -ENOENT when AWS lists no such instance (it
 * is in no group); -EBADMSG; -EREMOTEIO with err; transport errors as aws_query. */
int asg_instance_group(struct aws_ctx *ctx, const char *region, const char *instance_id,
                       char *group, size_t gn, char *state, size_t sn, struct aws_error *err);
/* Pure: the member for instance_id in a DescribeAutoScalingInstances answer. -ENOENT when it is
 * not listed, -EBADMSG when malformed or a value does not fit whole. */
int asg_parse_instance_group(const char *xml, size_t len, const char *instance_id, char *group,
                             size_t gn, char *state, size_t sn);

/* CompleteLifecycleAction(LifecycleHookName, AutoScalingGroupName, LifecycleActionResult
 * CONTINUE or ABANDON, InstanceId): one attempt, never retried here (a retry after a lost reply
 * finds no action: the caller decides what that means). Returns like aws_query. */
int asg_complete_lifecycle_action(struct aws_ctx *ctx, const char *region, const char *hook,
                                  const char *group, const char *instance_id, bool abandon,
                                  struct aws_error *err);
/* Pure: the parameters in botocore's order (aws_query adds Action and Version). */
int asg_complete_lifecycle_form(const char *hook, const char *group, const char *instance_id,
                                bool abandon, struct buf *out);
/* Pure: ValidationError "No active Lifecycle Action found with instance ID ..." (or "...with
 * token ..."): nothing waits for this instance's answer (yet, or any more). */
bool asg_error_is_no_active_action(const struct aws_error *err);

/* ---- runner-scaler: the group's warm pool -------------------------------------------------- */

#define ASG_WARM_TOKEN_MAX 2048

struct asg_warm_pool {
	bool exists;            /* a WarmPoolConfiguration was listed */
	int64_t min_size;       /* MinSize (0 when absent) */
	int64_t max_prepared;   /* MaxGroupPreparedCapacity; -1 when absent (MaxSize) */
	char pool_state[16];    /* Stopped | Running | Hibernated ("" when absent) */
	char status[16];        /* PendingDelete, or "" */
	bool reuse_on_scale_in; /* InstanceReusePolicy.ReuseOnScaleIn (false if absent) */
	int64_t instances;      /* pool instances listed, those being terminated not */
	char next_token[ASG_WARM_TOKEN_MAX + 1];
};

/* Pure: one DescribeWarmPool answer. Instances accumulate into out->instances (the caller
 * zeroes *out before the first page); the configuration is taken from each page. 0 or
 * -EBADMSG. */
int asg_parse_warm_pool(const char *xml, size_t len, struct asg_warm_pool *out);
/* Pure: DescribeWarmPool(AutoScalingGroupName, MaxRecords=50, NextToken when not ""). */
int asg_describe_warm_pool_form(const char *group, const char *next_token, struct buf *out);
/* Pure: PutWarmPool for a fixed pool of n prepared, stopped instances that are never reused
 * on scale-in: MinSize = MaxGroupPreparedCapacity = n (the pool's size is the larger of
 * MaxGroupPreparedCapacity - desired and MinSize: n whatever the desired capacity),
 * PoolState=Stopped, InstanceReusePolicy.ReuseOnScaleIn=false. */
int asg_put_warm_pool_form(const char *group, int64_t n, struct buf *out);
/* Pure: why the pool differs from a fixed pool of n ("no warm pool", "MinSize 0, want 2",
 * ...) into why (n bytes); false when it is that pool already. */
bool asg_warm_pool_differs(const struct asg_warm_pool *p, int64_t n, char *why, size_t wn);

#endif
