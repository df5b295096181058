/* Warm pools' Auto Scaling calls (see aws_warm.h). */
#include "aws_warm.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"
#include "xml.h"

static void error_clear(struct aws_error *err)
{
	memset(err, 0, sizeof(*err));
	err->retry_after_s = -1;
}

/* Strict integer, surrounding whitespace allowed (pretty-printed XML); min -1. */
static int parse_int(const char *s, int64_t *out)
{
	int64_t v = 0;
	bool neg = false;

	if (!s)
		return -EBADMSG;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (!isdigit((unsigned char)*s))
		return -EBADMSG;
	for (; isdigit((unsigned char)*s); s++) {
		if (v > (INT64_MAX - 9) / 10)
			return -EBADMSG;
		v = v * 10 + (*s - '0');
	}
	while (isspace((unsigned char)*s))
		s++;
	if (*s || (neg && v != 1))
		return -EBADMSG;
	*out = neg ? -v : v;
	return 0;
}

/* Text at path copied whole into dst; absent is "" unless required. */
static int copy_text(const struct xml_node *n, const char *path, char *dst, size_t size,
                     bool required)
{
	const char *t = xml_text(n, path);

	dst[0] = '\0';
	if (!t || !t[0])
		return required ? -EBADMSG : 0;
	return str_copy(dst, t, size) >= size ? -EBADMSG : 0;
}

/* The result element of an Action's answer, or NULL (an ErrorResponse, anything else). */
static const struct xml_node *result_of(const struct xml_node *root, const char *action)
{
	char name[96];

	snprintf(name, sizeof(name), "%sResponse", action);
	if (!root || !root->name || strcmp(root->name, name) != 0)
		return NULL;
	snprintf(name, sizeof(name), "%sResult", action);
	return xml_child(root, name);
}

/* ---- runnerd: the LAUNCHING lifecycle hook ------------------------------------------------- */

int asg_parse_instance_group(const char *xml, size_t len, const char *instance_id, char *group,
                             size_t gn, char *state, size_t sn)
{
	struct xml_node *root = NULL;
	const struct xml_node *result, *list, *c;
	int r;

	group[0] = '\0';
	state[0] = '\0';
	if (!xml || len == 0)
		return -EBADMSG;
	r = xml_parse(xml, len, &root);
	if (r < 0)
		return r == -E2BIG ? -EBADMSG : r;
	r = -EBADMSG;
	result = result_of(root, "DescribeAutoScalingInstances");
	list = result ? xml_child(result, "AutoScalingInstances") : NULL;
	if (!result)
		goto out;
	/* No list at all, or an empty one: AWS knows no such instance in any group. */
	r = -ENOENT;
	for (c = list ? list->child : NULL; c; c = c->next) {
		const char *id;

		if (!c->name || strcmp(c->name, "member") != 0)
			continue;
		id = xml_text(c, "InstanceId");
		if (!id || strcmp(id, instance_id) != 0)
			continue;
		r = copy_text(c, "AutoScalingGroupName", group, gn, true);
		if (r == 0)
			r = copy_text(c, "LifecycleState", state, sn, true);
		break;
	}
out:
	if (r < 0) {
		group[0] = '\0';
		state[0] = '\0';
	}
	xml_free(root);
	return r;
}

int asg_instance_group(struct aws_ctx *ctx, const char *region, const char *instance_id,
                       char *group, size_t gn, char *state, size_t sn, struct aws_error *err)
{
	struct aws_error local;
	struct buf form, resp;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	group[0] = '\0';
	state[0] = '\0';
	if (!instance_id || !instance_id[0])
		return -EINVAL;
	buf_init(&form, 0);
	buf_init(&resp, 0);
	r = aws_form_append(&form, "InstanceIds.member.1", instance_id);
	if (r == 0)
		r = aws_query(ctx, region, "DescribeAutoScalingInstances", form.data, &resp, err);
	if (r == 0)
		r = asg_parse_instance_group(resp.data, resp.len, instance_id, group, gn, state,
		                             sn);
	if (r == -EBADMSG) {
		str_copy(err->code, "malformed", sizeof(err->code));
		str_copy(err->message, "unreadable DescribeAutoScalingInstances answer",
		         sizeof(err->message));
		str_copy(err->call, "autoscaling:DescribeAutoScalingInstances", sizeof(err->call));
	}
	buf_free(&form);
	buf_free(&resp);
	return r;
}

int asg_complete_lifecycle_form(const char *hook, const char *group, const char *instance_id,
                                bool abandon, struct buf *out)
{
	int r;

	if (!hook || !hook[0] || !group || !group[0] || !instance_id || !instance_id[0])
		return -EINVAL;
	r = aws_form_append(out, "LifecycleHookName", hook);
	if (r == 0)
		r = aws_form_append(out, "AutoScalingGroupName", group);
	if (r == 0)
		r = aws_form_append(out, "LifecycleActionResult", abandon ? "ABANDON" : "CONTINUE");
	if (r == 0)
		r = aws_form_append(out, "InstanceId", instance_id);
	return r;
}

int asg_complete_lifecycle_action(struct aws_ctx *ctx, const char *region, const char *hook,
                                  const char *group, const char *instance_id, bool abandon,
                                  struct aws_error *err)
{
	struct aws_error local;
	struct aws_ctx once;
	struct buf form, resp;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&form, 0);
	buf_init(&resp, 0);
	r = asg_complete_lifecycle_form(hook, group, instance_id, abandon, &form);
	if (r < 0)
		goto out;
	/* One attempt: the caller tells a lost reply from an action that is gone. The copy shares
	 * http and credentials; refreshed ones are copied back. */
	once = *ctx;
	once.max_attempts = 1;
	r = aws_query(&once, region, "CompleteLifecycleAction", form.data, &resp, err);
	ctx->creds = once.creds;
	explicit_bzero(&once.creds, sizeof(once.creds));
out:
	buf_free(&form);
	buf_free(&resp);
	return r;
}

bool asg_error_is_no_active_action(const struct aws_error *err)
{
	return err && strcmp(err->code, "ValidationError") == 0 &&
	       strcasestr(err->message, "No active Lifecycle Action") != NULL;
}

/* ---- runner-scaler: the group's warm pool -------------------------------------------------- */

static bool terminating(const char *state)
{
	return strncmp(state, "Warmed:Terminat", 15) == 0;
}

int asg_parse_warm_pool(const char *xml, size_t len, struct asg_warm_pool *out)
{
	struct xml_node *root = NULL;
	const struct xml_node *result, *conf, *insts, *c;
	const char *v;
	int64_t n = 0;
	int r;

	out->next_token[0] = '\0';
	if (!xml || len == 0)
		return -EBADMSG;
	r = xml_parse(xml, len, &root);
	if (r < 0)
		return r == -E2BIG ? -EBADMSG : r;
	r = -EBADMSG;
	result = result_of(root, "DescribeWarmPool");
	if (!result)
		goto out;
	conf = xml_child(result, "WarmPoolConfiguration");
	out->exists = conf != NULL;
	out->min_size = 0;
	out->max_prepared = -1;
	out->reuse_on_scale_in = false;
	out->pool_state[0] = out->status[0] = '\0';
	if (conf) {
		v = xml_text(conf, "MinSize");
		if (v && parse_int(v, &out->min_size) < 0)
			goto out;
		v = xml_text(conf, "MaxGroupPreparedCapacity");
		if (v && parse_int(v, &out->max_prepared) < 0)
			goto out;
		if (copy_text(conf, "PoolState", out->pool_state, sizeof(out->pool_state), false) <
		            0 ||
		    copy_text(conf, "Status", out->status, sizeof(out->status), false) < 0)
			goto out;
		v = xml_text(conf, "InstanceReusePolicy/ReuseOnScaleIn");
		if (v && strcmp(v, "true") == 0)
			out->reuse_on_scale_in = true;
		else if (v && v[0] && strcmp(v, "false") != 0)
			goto out;
	}
	insts = xml_child(result, "Instances");
	for (c = insts ? insts->child : NULL; c; c = c->next) {
		const char *st;

		if (!c->name || strcmp(c->name, "member") != 0)
			continue;
		st = xml_text(c, "LifecycleState");
		if (!xml_text(c, "InstanceId") || !st)
			goto out;
		if (!terminating(st))
			n++;
	}
	if (copy_text(result, "NextToken", out->next_token, sizeof(out->next_token), false) < 0)
		goto out;
	out->instances += n;
	r = 0;
out:
	if (r < 0)
		out->next_token[0] = '\0';
	xml_free(root);
	return r;
}

int asg_describe_warm_pool_form(const char *group, const char *next_token, struct buf *out)
{
	int r;

	if (!group || !group[0])
		return -EINVAL;
	r = aws_form_append(out, "Action", "DescribeWarmPool");
	if (r == 0)
		r = aws_form_append(out, "Version", "2011-01-01");
	if (r == 0)
		r = aws_form_append(out, "AutoScalingGroupName", group);
	if (r == 0)
		r = aws_form_append(out, "MaxRecords", "50");
	if (r == 0 && next_token && next_token[0])
		r = aws_form_append(out, "NextToken", next_token);
	return r;
}

int asg_put_warm_pool_form(const char *group, int64_t n, struct buf *out)
{
	char num[24];
	int r;

	if (!group || !group[0] || n < 0)
		return -EINVAL;
	snprintf(num, sizeof(num), "%" PRId64, n);
	r = aws_form_append(out, "Action", "PutWarmPool");
	if (r == 0)
		r = aws_form_append(out, "Version", "2011-01-01");
	if (r == 0)
		r = aws_form_append(out, "AutoScalingGroupName", group);
	if (r == 0)
		r = aws_form_append(out, "MinSize", num);
	if (r == 0)
		r = aws_form_append(out, "MaxGroupPreparedCapacity", num);
	if (r == 0)
		r = aws_form_append(out, "PoolState", "Stopped");
	if (r == 0)
		r = aws_form_append(out, "InstanceReusePolicy.ReuseOnScaleIn", "false");
	return r;
}

bool asg_warm_pool_differs(const struct asg_warm_pool *p, int64_t n, char *why, size_t wn)
{
	if (!p->exists)
		str_printf(why, wn, "no warm pool");
	else if (p->min_size != n)
		str_printf(why, wn, "MinSize %" PRId64 ", want %" PRId64, p->min_size, n);
	else if (p->max_prepared != n)
		str_printf(why, wn, "MaxGroupPreparedCapacity %s%" PRId64 ", want %" PRId64,
		           p->max_prepared < 0 ? "unset: " : "", p->max_prepared, n);
	else if (p->pool_state[0] && strcmp(p->pool_state, "Stopped") != 0)
		str_printf(why, wn, "PoolState %s, want Stopped", p->pool_state);
	else if (p->reuse_on_scale_in)
		str_printf(why, wn, "ReuseOnScaleIn true, want false");
	else
		return false;
	return true;
}
