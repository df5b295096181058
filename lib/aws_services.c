/* The AWS calls runnerd and runner-scaler make: Secrets Manager, SSM, Auto Scaling, the DynamoDB
 * lease. Requests go through aws_query/aws_json; every response parser is a pure function. */
#include "aws_services.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "util.h"
#include "xml.h"

#define ASG_MAX_NAMES 50
/* 50 names at 100 a page is one page; the bound only stops a server that keeps sending tokens. */
#define ASG_MAX_PAGES      20
#define ASG_NEXT_TOKEN_MAX 2048

/* ---- small helpers ------------------------------------------------------------------------ */

static void error_clear(struct aws_error *err)
{
	memset(err, 0, sizeof(*err));
	err->retry_after_s = -1;
}

/* A reply we cannot use is described in err like aws.c describes a transport failure. */
static void error_note(struct aws_error *err, const char *call, const char *code, const char *what)
{
	str_copy(err->code, code, sizeof(err->code));
	str_copy(err->message, what, sizeof(err->message));
	if (!err->call[0])
		str_copy(err->call, call, sizeof(err->call));
}

static void error_malformed(struct aws_error *err, const char *call, const char *what)
{
	error_note(err, call, "malformed", what);
}

/* Zero every string value before freeing: the tree may hold a secret. */
static void json_wipe(cJSON *n)
{
	for (; n; n = n->next) {
		if (n->valuestring)
			explicit_bzero(n->valuestring, strlen(n->valuestring));
		json_wipe(n->child);
	}
}

static void json_wipe_delete(cJSON *root)
{
	if (!root)
		return;
	json_wipe(root);
	cJSON_Delete(root);
}

static bool json_put(cJSON *obj, const char *key, cJSON *item)
{
	if (item && cJSON_AddItemToObject(obj, key, item))
		return true;
	cJSON_Delete(item);
	return false;
}

static int json_print(const cJSON *root, char **out)
{
	*out = cJSON_PrintUnformatted(root);
	return *out ? 0 : -ENOMEM;
}

/* Strict non-negative decimal integer, surrounding whitespace allowed (pretty-printed XML). */
static int parse_count(const char *s, int64_t *out)
{
	int64_t v = 0;

	if (!s)
		return -EBADMSG;
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -EBADMSG;
	for (; isdigit((unsigned char)*s); s++) {
		int d = *s - '0';

		if (v > (INT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	while (isspace((unsigned char)*s))
		s++;
	if (*s)
		return -EBADMSG;
	*out = v;
	return 0;
}

static bool is_ws(char c)
{
	return isspace((unsigned char)c) != 0;
}

/* Replace out's contents with [p, p+n) minus surrounding whitespace; -ENODATA when empty. */
static int set_trimmed(struct buf *out, const char *p, size_t n)
{
	while (n && is_ws(p[0])) {
		p++;
		n--;
	}
	while (n && is_ws(p[n - 1]))
		n--;
	if (n == 0)
		return -ENODATA;
	return buf_append(out, p, n);
}

/* Forget what out held before: it may have been a secret. */
static void out_clear(struct buf *out)
{
	if (out->data)
		explicit_bzero(out->data, out->len);
	buf_reset(out);
}

/* ---- Secrets Manager / SSM ---------------------------------------------------------------- */

int sm_parse_secret(const char *json, size_t len, const char *key, struct buf *out)
{
	cJSON *root = NULL, *inner = NULL;
	const cJSON *ss, *member;
	int r;

	out_clear(out);
	root = json_parse_exact(json, len);
	if (!root || !cJSON_IsObject(root)) {
		r = -EBADMSG;
		goto out;
	}
	ss = cJSON_GetObjectItemCaseSensitive(root, "SecretString");
	if (!ss || cJSON_IsNull(ss)) {
		r = -ENOENT; /* a SecretBinary secret: nothing we can use as a token */
		goto out;
	}
	if (!cJSON_IsString(ss) || !ss->valuestring) {
		r = -EBADMSG;
		goto out;
	}
	if (!key || !key[0]) {
		r = set_trimmed(out, ss->valuestring, strlen(ss->valuestring));
		goto out;
	}
	inner = json_parse_exact(ss->valuestring, strlen(ss->valuestring));
	if (!inner || !cJSON_IsObject(inner)) {
		r = -EBADMSG;
		goto out;
	}
	member = cJSON_GetObjectItemCaseSensitive(inner, key);
	if (!member) {
		r = -ENOENT;
		goto out;
	}
	if (!cJSON_IsString(member) || !member->valuestring) {
		r = -EBADMSG;
		goto out;
	}
	if (!member->valuestring[0]) {
		r = -ENODATA;
		goto out;
	}
	r = buf_append_str(out, member->valuestring);
out:
	json_wipe_delete(inner);
	json_wipe_delete(root);
	if (r < 0)
		out_clear(out);
	return r;
}

int ssm_parse_parameter(const char *json, size_t len, struct buf *out)
{
	cJSON *root;
	const cJSON *value;
	int r;

	out_clear(out);
	root = json_parse_exact(json, len);
	if (!root || !cJSON_IsObject(root)) {
		r = -EBADMSG;
		goto out;
	}
	value = cJSON_GetObjectItemCaseSensitive(root, "Parameter");
	value = cJSON_IsObject(value) ? cJSON_GetObjectItemCaseSensitive(value, "Value") : NULL;
	if (!cJSON_IsString(value) || !value->valuestring) {
		r = -EBADMSG;
		goto out;
	}
	r = set_trimmed(out, value->valuestring, strlen(value->valuestring));
out:
	json_wipe_delete(root);
	if (r < 0)
		out_clear(out);
	return r;
}

/* One-member request {"name": value} for the secret reads. */
static int secret_request(enum aws_service svc, const char *region, const char *op,
                          const char *name_key, const char *name, bool decrypt, struct buf *resp,
                          struct aws_ctx *ctx, struct aws_error *err)
{
	cJSON *req;
	char *body = NULL;
	int r;

	req = cJSON_CreateObject();
	if (!req || !cJSON_AddStringToObject(req, name_key, name) ||
	    (decrypt && !cJSON_AddTrueToObject(req, "WithDecryption"))) {
		r = -ENOMEM;
		goto out;
	}
	r = json_print(req, &body);
	if (r < 0)
		goto out;
	r = aws_json(ctx, svc, region, op, body, resp, err);
out:
	cJSON_free(body);
	cJSON_Delete(req);
	return r;
}

int sm_get_secret(struct aws_ctx *ctx, const char *region, const char *id, const char *key,
                  struct buf *out, struct aws_error *err)
{
	struct aws_error local;
	struct buf resp;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&resp, 0);
	if (!id || !id[0]) {
		r = -EINVAL;
		goto out;
	}
	r = secret_request(AWS_SECRETSMANAGER, region, "GetSecretValue", "SecretId", id, false,
	                   &resp, ctx, err);
	if (r < 0)
		goto out;
	r = sm_parse_secret(resp.data, resp.len, key, out);
	if (r == -EBADMSG)
		error_malformed(err, "secretsmanager:GetSecretValue", "unparsable GetSecretValue");
	else if (r == -ENOENT)
		error_note(err, "secretsmanager:GetSecretValue", "missing",
		           key && key[0] ? "key not in SecretString (or a binary secret)"
		                         : "no SecretString (a binary secret)");
	else if (r == -ENODATA)
		error_note(err, "secretsmanager:GetSecretValue", "empty", "empty secret value");
out:
	buf_wipe(&resp);
	return r;
}

int ssm_get_parameter(struct aws_ctx *ctx, const char *region, const char *name, struct buf *out,
                      struct aws_error *err)
{
	struct aws_error local;
	struct buf resp;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&resp, 0);
	if (!name || !name[0]) {
		r = -EINVAL;
		goto out;
	}
	r = secret_request(AWS_SSM, region, "GetParameter", "Name", name, true, &resp, ctx, err);
	if (r < 0)
		goto out;
	r = ssm_parse_parameter(resp.data, resp.len, out);
	if (r == -EBADMSG)
		error_malformed(err, "ssm:GetParameter", "unparsable GetParameter");
	else if (r == -ENODATA)
		error_note(err, "ssm:GetParameter", "empty", "empty parameter value");
out:
	buf_wipe(&resp);
	return r;
}

/* ---- Auto Scaling ------------------------------------------------------------------------- */

/* aws_form_append encodes name=value and puts the '&' between pairs itself. */
static int form_add(struct buf *form, const char *name, const char *value)
{
	return aws_form_append(form, name, value);
}

static int form_add_i64(struct buf *form, const char *name, int64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	return form_add(form, name, num);
}

/* Required text that must fit dst whole: a truncated id would name another instance. */
static int copy_text(const struct xml_node *n, const char *name, char *dst, size_t size,
                     bool required)
{
	const char *t = xml_text(n, name);

	dst[0] = '\0';
	if (!t || !t[0])
		return required ? -EBADMSG : 0;
	if (str_copy(dst, t, size) >= size)
		return -EBADMSG;
	return 0;
}

static int parse_instance(const struct xml_node *m, struct asg_instance *in)
{
	const char *prot;
	int r;

	memset(in, 0, sizeof(*in));
	r = copy_text(m, "InstanceId", in->id, sizeof(in->id), true);
	if (r < 0)
		return r;
	r = copy_text(m, "LifecycleState", in->lifecycle_state, sizeof(in->lifecycle_state), true);
	if (r < 0)
		return r;
	r = copy_text(m, "HealthStatus", in->health_status, sizeof(in->health_status), false);
	if (r < 0)
		return r;
	prot = xml_text(m, "ProtectedFromScaleIn");
	if (prot && strcmp(prot, "true") == 0)
		in->protected_from_scale_in = true;
	else if (prot && strcmp(prot, "false") != 0)
		return -EBADMSG;
	return 0;
}

static void group_free(struct asg_group *g)
{
	free(g->instances);
	g->instances = NULL;
	g->ninstances = 0;
}

static int parse_group(const struct xml_node *m, struct asg_group *g)
{
	const struct xml_node *insts, *c;
	const char *prot;
	size_t n = 0, i = 0;
	int r;

	memset(g, 0, sizeof(*g));
	r = copy_text(m, "AutoScalingGroupName", g->name, sizeof(g->name), true);
	if (r < 0)
		return r;
	if (parse_count(xml_text(m, "MinSize"), &g->min_size) < 0 ||
	    parse_count(xml_text(m, "MaxSize"), &g->max_size) < 0 ||
	    parse_count(xml_text(m, "DesiredCapacity"), &g->desired) < 0)
		return -EBADMSG;
	prot = xml_text(m, "NewInstancesProtectedFromScaleIn");
	g->new_instances_protected = prot && strcmp(prot, "true") == 0;
	/* <SuspendedProcesses><member><ProcessName>AZRebalance</ProcessName>... */
	insts = xml_child(m, "SuspendedProcesses");
	for (c = insts ? insts->child : NULL; c; c = c->next) {
		const char *name = c->name && strcmp(c->name, "member") == 0
		                           ? xml_text(c, "ProcessName")
		                           : NULL;

		if (name && strcmp(name, "AZRebalance") == 0)
			g->az_rebalance_suspended = true;
	}
	/* Only direct <member> children of <Instances>: AvailabilityZones, Tags and the like have
	 * members of their own, and LaunchTemplate has a <Version>. */
	insts = xml_child(m, "Instances");
	for (c = insts ? insts->child : NULL; c; c = c->next)
		if (c->name && strcmp(c->name, "member") == 0)
			n++;
	if (n == 0)
		return 0;
	g->instances = calloc(n, sizeof(*g->instances));
	if (!g->instances)
		return -ENOMEM;
	for (c = insts->child; c; c = c->next) {
		if (!c->name || strcmp(c->name, "member") != 0)
			continue;
		r = parse_instance(c, &g->instances[i]);
		if (r < 0) {
			group_free(g);
			return r;
		}
		i++;
	}
	g->ninstances = n;
	return 0;
}

void asg_groups_free(struct asg_group *groups, size_t n)
{
	if (!groups)
		return;
	for (size_t i = 0; i < n; i++)
		group_free(&groups[i]);
	free(groups);
}

/* ---- sizes of DescribeAutoScalingGroups answers -------------------------------------------- */

size_t asg_describe_group_bytes(int64_t instances)
{
	uint64_t n = instances > 0 ? (uint64_t)instances : 0;

	if (n >= (ASG_DESCRIBE_MAX_BYTES - ASG_DESCRIBE_GROUP_BYTES) / ASG_DESCRIBE_INSTANCE_BYTES)
		return ASG_DESCRIBE_MAX_BYTES;
	return ASG_DESCRIBE_GROUP_BYTES + (size_t)n * ASG_DESCRIBE_INSTANCE_BYTES;
}

size_t asg_describe_cap(const int64_t *instances, size_t n)
{
	size_t total = ASG_DESCRIBE_BASE_BYTES;

	for (size_t i = 0; i < n && total < ASG_DESCRIBE_MAX_BYTES; i++) {
		total += asg_describe_group_bytes(instances ? instances[i] : 0);
		if (total > ASG_DESCRIBE_MAX_BYTES)
			total = ASG_DESCRIBE_MAX_BYTES;
	}
	return total;
}

bool asg_describe_plausible(size_t len, const struct asg_group *groups, size_t n)
{
	size_t cap = ASG_DESCRIBE_BASE_BYTES;

	if (n && !groups)
		return false;
	for (size_t i = 0; i < n && cap < ASG_DESCRIBE_MAX_BYTES; i++) {
		cap += asg_describe_group_bytes((int64_t)groups[i].ninstances);
		if (cap > ASG_DESCRIBE_MAX_BYTES)
			cap = ASG_DESCRIBE_MAX_BYTES;
	}
	return len <= cap;
}

size_t asg_describe_max_nodes(size_t len)
{
	size_t n = len / ASG_DESCRIBE_NODE_BYTES;

	return n > XML_MAX_NODES ? n : XML_MAX_NODES;
}

int asg_parse_describe(const char *xml, size_t len, struct asg_group **groups, size_t *ngroups,
                       char *next_token, size_t next_token_len)
{
	struct xml_node *root = NULL;
	const struct xml_node *result, *list, *c;
	struct asg_group *gs = NULL;
	const char *token;
	size_t n = 0, i = 0;
	int r;

	*groups = NULL;
	*ngroups = 0;
	if (next_token && next_token_len)
		next_token[0] = '\0';
	if (!xml || len == 0)
		return -EBADMSG;
	r = xml_parse_limit(xml, len, asg_describe_max_nodes(len), &root);
	if (r < 0)
		goto out;
	r = -EBADMSG;
	/* An ErrorResponse (or anything else) is not a describe result. */
	if (strcmp(root->name, "DescribeAutoScalingGroupsResponse") == 0)
		result = xml_child(root, "DescribeAutoScalingGroupsResult");
	else
		result = NULL;
	list = result ? xml_child(result, "AutoScalingGroups") : NULL;
	if (!list)
		goto out;
	token = xml_text(result, "NextToken");
	if (token && token[0]) {
		if (!next_token || str_copy(next_token, token, next_token_len) >= next_token_len)
			goto out;
	}
	for (c = list->child; c; c = c->next)
		if (c->name && strcmp(c->name, "member") == 0)
			n++;
	if (n) {
		gs = calloc(n, sizeof(*gs));
		if (!gs) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (c = list->child; c; c = c->next) {
		if (!c->name || strcmp(c->name, "member") != 0)
			continue;
		r = parse_group(c, &gs[i]);
		if (r < 0)
			goto out;
		i++;
	}
	*groups = gs;
	*ngroups = n;
	gs = NULL;
	r = 0;
out:
	asg_groups_free(gs, i);
	xml_free(root);
	if (r < 0 && next_token && next_token_len)
		next_token[0] = '\0';
	return r;
}

static int describe_form(struct buf *form, const char *const *names, size_t nnames,
                         const char *next_token)
{
	char key[64];
	int r = 0;

	for (size_t i = 0; i < nnames && r == 0; i++) {
		snprintf(key, sizeof(key), "AutoScalingGroupNames.member.%zu", i + 1);
		r = form_add(form, key, names[i]);
	}
	if (r == 0)
		r = form_add(form, "MaxRecords", "100");
	if (r == 0 && next_token[0])
		r = form_add(form, "NextToken", next_token);
	return r;
}

/* Append groups[0..n) to *all (moving their instances); frees the groups array. */
static int groups_append(struct asg_group **all, size_t *nall, struct asg_group *groups, size_t n)
{
	struct asg_group *grown;

	if (n) {
		grown = realloc(*all, (*nall + n) * sizeof(*grown));
		if (!grown) {
			asg_groups_free(groups, n);
			return -ENOMEM;
		}
		*all = grown;
		memcpy(*all + *nall, groups, n * sizeof(*groups));
		*nall += n;
	}
	free(groups); /* its instances moved into all */
	return 0;
}

/* Every page for one set of names, each read up to ASG_DESCRIBE_MAX_BYTES and then held to
 * what its content accounts for (asg_describe_plausible). On success the groups are appended
 * to *all; on failure *all is unchanged. *too_big: the answer did not fit the ceiling (or the
 * node limit), so fewer names per call may. */
static int describe_names(struct aws_ctx *ctx, const char *region, const char *const *names,
                          size_t nnames, struct asg_group **all, size_t *nall,
                          struct aws_error *err, bool *too_big)
{
	struct asg_group *mine = NULL, *page = NULL;
	size_t nmine = 0, npage = 0;
	char token[ASG_NEXT_TOKEN_MAX] = "";
	struct buf form, resp;
	int r = 0;

	*too_big = false;
	buf_init(&form, 0);
	buf_init(&resp, ASG_DESCRIBE_MAX_BYTES);
	for (unsigned pageno = 0;; pageno++) {
		if (pageno == ASG_MAX_PAGES) {
			r = -E2BIG;
			goto out;
		}
		buf_reset(&form);
		buf_reset(&resp);
		r = describe_form(&form, names, nnames, token);
		if (r < 0)
			goto out;
		r = aws_query_max(ctx, region, "DescribeAutoScalingGroups", form.data,
		                  ASG_DESCRIBE_MAX_BYTES, &resp, err);
		if (r == -EFBIG)
			*too_big = true;
		if (r < 0)
			goto out;
		r = asg_parse_describe(resp.data, resp.len, &page, &npage, token, sizeof(token));
		if (r == -E2BIG) {
			*too_big = true;
			r = -EFBIG;
			error_note(err, "autoscaling:DescribeAutoScalingGroups", "too-large",
			           "more elements than the node limit");
			goto out;
		}
		if (r < 0) {
			if (r == -EBADMSG)
				error_malformed(err, "autoscaling:DescribeAutoScalingGroups",
				                "unparsable DescribeAutoScalingGroups");
			goto out;
		}
		if (!asg_describe_plausible(resp.len, page, npage)) {
			r = -EFBIG;
			error_note(err, "autoscaling:DescribeAutoScalingGroups", "too-large",
			           "answer larger than its groups and instances account for");
			goto out;
		}
		r = groups_append(&mine, &nmine, page, npage);
		page = NULL;
		npage = 0;
		if (r < 0)
			goto out;
		if (!token[0])
			break;
	}
	r = groups_append(all, nall, mine, nmine);
	mine = NULL;
	nmine = 0;
out:
	asg_groups_free(page, npage);
	asg_groups_free(mine, nmine);
	buf_free(&form);
	buf_free(&resp);
	return r;
}

/* describe_names, and when the answer is too large for one call, each half of the names on its
 * own (down to one name a call). */
static int describe_split(struct aws_ctx *ctx, const char *region, const char *const *names,
                          size_t nnames, struct asg_group **all, size_t *nall,
                          struct aws_error *err)
{
	size_t before = *nall, half = (nnames + 1) / 2;
	bool too_big = false;
	int r;

	r = describe_names(ctx, region, names, nnames, all, nall, err, &too_big);
	if (r != -EFBIG || !too_big || nnames < 2)
		return r;
	r = describe_split(ctx, region, names, half, all, nall, err);
	if (r == 0)
		r = describe_split(ctx, region, names + half, nnames - half, all, nall, err);
	if (r < 0) { /* all or nothing: drop what the first half added */
		for (size_t i = before; i < *nall; i++)
			free((*all)[i].instances);
		*nall = before;
	}
	return r;
}

int asg_describe(struct aws_ctx *ctx, const char *region, const char *const *names, size_t nnames,
                 struct asg_group **groups, size_t *ngroups, struct aws_error *err)
{
	struct aws_error local;
	struct asg_group *all = NULL;
	size_t nall = 0;
	int r = 0;

	if (!err)
		err = &local;
	error_clear(err);
	*groups = NULL;
	*ngroups = 0;
	if (nnames > ASG_MAX_NAMES)
		return -E2BIG;
	for (size_t i = 0; i < nnames; i++)
		if (!names[i] || !names[i][0])
			return -EINVAL;
	r = describe_split(ctx, region, names, nnames, &all, &nall, err);
	if (r < 0) {
		asg_groups_free(all, nall);
		return r;
	}
	*groups = all;
	*ngroups = nall;
	return 0;
}

/* Send an action whose reply carries nothing we need. */
static int asg_simple(struct aws_ctx *ctx, const char *region, const char *action,
                      const struct buf *form, struct aws_error *err)
{
	struct buf resp;
	int r;

	buf_init(&resp, 0);
	r = aws_query(ctx, region, action, form->data ? form->data : "", &resp, err);
	buf_free(&resp);
	return r;
}

int asg_set_desired(struct aws_ctx *ctx, const char *region, const char *name, int64_t desired,
                    bool honor_cooldown, struct aws_error *err)
{
	struct aws_error local;
	struct buf form;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&form, 0);
	if (!name || !name[0] || desired < 0) {
		r = -EINVAL;
		goto out;
	}
	r = form_add(&form, "AutoScalingGroupName", name);
	if (r == 0)
		r = form_add_i64(&form, "DesiredCapacity", desired);
	if (r == 0)
		r = form_add(&form, "HonorCooldown", honor_cooldown ? "true" : "false");
	if (r == 0)
		r = asg_simple(ctx, region, "SetDesiredCapacity", &form, err);
out:
	buf_free(&form);
	return r;
}

int asg_update(struct aws_ctx *ctx, const char *region, const char *name, int64_t min_size,
               int64_t max_size, int64_t desired, struct aws_error *err)
{
	struct aws_error local;
	struct buf form;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&form, 0);
	if (!name || !name[0]) {
		r = -EINVAL;
		goto out;
	}
	r = form_add(&form, "AutoScalingGroupName", name);
	if (r == 0 && min_size >= 0)
		r = form_add_i64(&form, "MinSize", min_size);
	if (r == 0 && max_size >= 0)
		r = form_add_i64(&form, "MaxSize", max_size);
	if (r == 0 && desired >= 0)
		r = form_add_i64(&form, "DesiredCapacity", desired);
	if (r == 0)
		r = asg_simple(ctx, region, "UpdateAutoScalingGroup", &form, err);
out:
	buf_free(&form);
	return r;
}

int asg_terminate_instance(struct aws_ctx *ctx, const char *region, const char *instance_id,
                           bool decrement, struct aws_error *err)
{
	struct aws_error local;
	struct aws_ctx once;
	struct buf form;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&form, 0);
	if (!instance_id || !instance_id[0]) {
		r = -EINVAL;
		goto out;
	}
	r = form_add(&form, "InstanceId", instance_id);
	if (r == 0)
		r = form_add(&form, "ShouldDecrementDesiredCapacity", decrement ? "true" : "false");
	if (r < 0)
		goto out;
	/* A retry after a lost reply would decrement twice or hit "not found": one attempt, the
	 * caller decides. The copy shares http and credentials; refreshed ones are copied back. */
	once = *ctx;
	once.max_attempts = 1;
	r = asg_simple(&once, region, "TerminateInstanceInAutoScalingGroup", &form, err);
	ctx->creds = once.creds;
	explicit_bzero(&once.creds, sizeof(once.creds));
out:
	buf_free(&form);
	return r;
}

static bool error_is_validation(const struct aws_error *err)
{
	return err && strcmp(err->code, "ValidationError") == 0;
}

bool asg_error_is_not_found(const struct aws_error *err)
{
	if (!error_is_validation(err))
		return false;
	return strcasestr(err->message, "Instance Id not found") ||
	       strcasestr(err->message, "No managed instance found");
}

bool asg_error_is_min_size(const struct aws_error *err)
{
	/* AWS: "Currently, desiredSize equals minSize (1). Terminating instance without
	 * replacement will violate group's min size constraint. ..." */
	static const char *const hints[] = {
	        "minsize",
	        "min size",
	        "min_size",
	        "minimum size",
	        "below min",
	        "can't be less than",
	        "cannot be less than",
	};

	if (!error_is_validation(err) || asg_error_is_not_found(err))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(hints); i++)
		if (strcasestr(err->message, hints[i]))
			return true;
	return false;
}

/* ---- DynamoDB lease ----------------------------------------------------------------------- */

static cJSON *ddb_s(const char *v)
{
	cJSON *o = cJSON_CreateObject();

	if (o && !cJSON_AddStringToObject(o, "S", v)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

static cJSON *ddb_n(int64_t v)
{
	cJSON *o = cJSON_CreateObject();
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	if (o && !cJSON_AddStringToObject(o, "N", num)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

/* {"TableName":table,"Key":{"lease_id":{"S":id}}}, or with "Item" for PutItem (the caller adds
 * the other attributes to *map). */
static cJSON *ddb_request(const char *table, const char *lease_id, const char *map_name,
                          cJSON **map)
{
	cJSON *req = cJSON_CreateObject(), *m = cJSON_CreateObject();

	if (!req || !cJSON_AddStringToObject(req, "TableName", table) || !m ||
	    !json_put(m, "lease_id", ddb_s(lease_id))) {
		cJSON_Delete(m);
		cJSON_Delete(req);
		return NULL;
	}
	if (!cJSON_AddItemToObject(req, map_name, m)) {
		cJSON_Delete(m);
		cJSON_Delete(req);
		return NULL;
	}
	*map = m;
	return req;
}

/* Expression attribute names: owner is a reserved word; alias all three alike. Every
 * expression below uses all three (DynamoDB rejects unused names and values). */
static bool ddb_names(cJSON *req)
{
	cJSON *names = cJSON_CreateObject();

	if (!json_put(req, "ExpressionAttributeNames", names))
		return false;
	return cJSON_AddStringToObject(names, "#o", "owner") &&
	       cJSON_AddStringToObject(names, "#e", "expiry") &&
	       cJSON_AddStringToObject(names, "#v", "version");
}

static int ddb_call(struct aws_ctx *ctx, const char *region, const char *op, const cJSON *req,
                    struct buf *resp, struct aws_error *err)
{
	char *body = NULL;
	int r;

	r = json_print(req, &body);
	if (r == 0)
		r = aws_json(ctx, AWS_DYNAMODB, region, op, body, resp, err);
	cJSON_free(body);
	return r;
}

static bool ddb_lost(int r, const struct aws_error *err)
{
	return r == -EREMOTEIO && strcmp(err->code, "ConditionalCheckFailedException") == 0;
}

static int ddb_check_args(const char *table, const char *lease_id, const char *owner)
{
	if (!table || !table[0] || !lease_id || !lease_id[0])
		return -EINVAL;
	if (owner && (!owner[0] || strlen(owner) >= sizeof(((struct ddb_lease *)0)->owner)))
		return -EINVAL;
	return 0;
}

/* {"N":"digits"} as a non-negative integer; we never write anything else. */
static int ddb_get_n(const cJSON *item, const char *name, int64_t *out)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, name);
	const cJSON *n = cJSON_IsObject(a) ? cJSON_GetObjectItemCaseSensitive(a, "N") : NULL;

	if (!cJSON_IsString(n) || !n->valuestring)
		return -EBADMSG;
	return parse_count(n->valuestring, out);
}

int ddb_parse_lease_item(const char *json, size_t len, struct ddb_lease *out)
{
	cJSON *root;
	const cJSON *item, *owner;
	struct ddb_lease l;
	int r = -EBADMSG;

	memset(out, 0, sizeof(*out));
	memset(&l, 0, sizeof(l));
	root = json_parse_exact(json, len);
	if (!root || !cJSON_IsObject(root))
		goto out;
	item = cJSON_GetObjectItemCaseSensitive(root, "Item");
	if (!item)
		item = cJSON_GetObjectItemCaseSensitive(root, "Attributes");
	if (!item || (cJSON_IsObject(item) && !item->child)) {
		r = 0; /* GetItem answers {} when there is no such item */
		goto out;
	}
	if (!cJSON_IsObject(item))
		goto out;
	owner = cJSON_GetObjectItemCaseSensitive(item, "owner");
	owner = cJSON_IsObject(owner) ? cJSON_GetObjectItemCaseSensitive(owner, "S") : NULL;
	if (!cJSON_IsString(owner) || !owner->valuestring)
		goto out;
	if (str_copy(l.owner, owner->valuestring, sizeof(l.owner)) >= sizeof(l.owner))
		goto out;
	if (ddb_get_n(item, "expiry", &l.expiry_ms) < 0 ||
	    ddb_get_n(item, "version", &l.version) < 0)
		goto out;
	l.exists = true;
	*out = l;
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

static void ddb_malformed(struct aws_error *err, const char *op)
{
	char call[64];

	snprintf(call, sizeof(call), "dynamodb:%s", op);
	error_malformed(err, call, "unparsable lease item");
}

int ddb_lease_get(struct aws_ctx *ctx, const char *region, const char *table, const char *lease_id,
                  struct ddb_lease *out, struct aws_error *err)
{
	struct aws_error local;
	cJSON *req = NULL, *key;
	struct buf resp;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&resp, 0);
	memset(out, 0, sizeof(*out));
	r = ddb_check_args(table, lease_id, NULL);
	if (r < 0)
		goto out;
	req = ddb_request(table, lease_id, "Key", &key);
	if (!req || !cJSON_AddTrueToObject(req, "ConsistentRead")) {
		r = -ENOMEM;
		goto out;
	}
	r = ddb_call(ctx, region, "GetItem", req, &resp, err);
	if (r < 0)
		goto out;
	r = ddb_parse_lease_item(resp.data, resp.len, out);
	if (r < 0)
		ddb_malformed(err, "GetItem");
out:
	cJSON_Delete(req);
	buf_free(&resp);
	return r;
}

int ddb_lease_acquire(struct aws_ctx *ctx, const char *region, const char *table,
                      const char *lease_id, const char *owner, int64_t now_ms, int64_t duration_ms,
                      struct ddb_lease *lease, struct aws_error *err)
{
	struct aws_error local;
	struct ddb_lease cur;
	cJSON *req = NULL, *item, *values;
	struct buf resp;
	int64_t version, expiry;
	bool ok;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	buf_init(&resp, 0);
	r = ddb_check_args(table, lease_id, owner);
	if (r < 0 || now_ms < 0 || duration_ms <= 0 || now_ms > INT64_MAX - duration_ms) {
		r = -EINVAL;
		goto out;
	}
	expiry = now_ms + duration_ms;
	/* Read first: the new version must be the old one plus one, and the write is conditional
	 * on that old version, so two contenders reading the same item cannot both win. */
	r = ddb_lease_get(ctx, region, table, lease_id, &cur, err);
	if (r < 0)
		goto out;
	if (cur.exists && strcmp(cur.owner, owner) != 0 && cur.expiry_ms >= now_ms) {
		r = 1; /* held by someone else: no write needed to know we lost */
		goto out;
	}
	if (cur.version == INT64_MAX) {
		r = -EOVERFLOW;
		goto out;
	}
	version = cur.exists ? cur.version + 1 : 1;
	req = ddb_request(table, lease_id, "Item", &item);
	values = cJSON_CreateObject();
	ok = req && json_put(item, "owner", ddb_s(owner)) &&
	     json_put(item, "expiry", ddb_n(expiry)) && json_put(item, "version", ddb_n(version)) &&
	     cJSON_AddStringToObject(req, "ConditionExpression",
	                             "attribute_not_exists(lease_id) OR "
	                             "(#v = :prev AND (#e < :now OR #o = :me))") &&
	     ddb_names(req);
	if (!ok || !json_put(req, "ExpressionAttributeValues", values) ||
	    !json_put(values, ":prev", ddb_n(cur.version)) ||
	    !json_put(values, ":now", ddb_n(now_ms)) || !json_put(values, ":me", ddb_s(owner))) {
		if (!ok)
			cJSON_Delete(values);
		r = -ENOMEM;
		goto out;
	}
	r = ddb_call(ctx, region, "PutItem", req, &resp, err);
	if (ddb_lost(r, err)) {
		r = 1;
		goto out;
	}
	if (r < 0)
		goto out;
	memset(lease, 0, sizeof(*lease));
	str_copy(lease->owner, owner, sizeof(lease->owner));
	lease->expiry_ms = expiry;
	lease->version = version;
	lease->exists = true;
out:
	cJSON_Delete(req);
	buf_free(&resp);
	return r;
}

/* UpdateItem conditional on owner and version, ALL_NEW into *lease. */
static int ddb_update(struct aws_ctx *ctx, const char *region, const char *table,
                      const char *lease_id, const char *owner, const char *update, int64_t expiry,
                      bool bump, struct ddb_lease *lease, struct aws_error *err)
{
	struct ddb_lease now;
	cJSON *req, *key, *values;
	struct buf resp;
	int r;

	buf_init(&resp, 0);
	req = ddb_request(table, lease_id, "Key", &key);
	values = cJSON_CreateObject();
	if (!req || !cJSON_AddStringToObject(req, "UpdateExpression", update) ||
	    !cJSON_AddStringToObject(req, "ConditionExpression", "#o = :me AND #v = :ver") ||
	    !ddb_names(req) || !cJSON_AddStringToObject(req, "ReturnValues", "ALL_NEW")) {
		cJSON_Delete(values);
		r = -ENOMEM;
		goto out;
	}
	if (!json_put(req, "ExpressionAttributeValues", values) ||
	    !json_put(values, ":exp", ddb_n(expiry)) || !json_put(values, ":me", ddb_s(owner)) ||
	    !json_put(values, ":ver", ddb_n(lease->version)) ||
	    (bump && !json_put(values, ":one", ddb_n(1)))) {
		r = -ENOMEM;
		goto out;
	}
	r = ddb_call(ctx, region, "UpdateItem", req, &resp, err);
	if (ddb_lost(r, err)) {
		r = 1;
		goto out;
	}
	if (r < 0)
		goto out;
	r = ddb_parse_lease_item(resp.data, resp.len, &now);
	if (r == 0 && (!now.exists || strcmp(now.owner, owner) != 0))
		r = -EBADMSG;
	if (r < 0) {
		ddb_malformed(err, "UpdateItem");
		goto out;
	}
	*lease = now;
out:
	cJSON_Delete(req);
	buf_free(&resp);
	return r;
}

int ddb_lease_renew(struct aws_ctx *ctx, const char *region, const char *table,
                    const char *lease_id, const char *owner, int64_t now_ms, int64_t duration_ms,
                    struct ddb_lease *lease, struct aws_error *err)
{
	struct aws_error local;

	if (!err)
		err = &local;
	error_clear(err);
	if (ddb_check_args(table, lease_id, owner) < 0 || !lease->exists || now_ms < 0 ||
	    duration_ms <= 0 || now_ms > INT64_MAX - duration_ms)
		return -EINVAL;
	return ddb_update(ctx, region, table, lease_id, owner, "SET #e = :exp, #v = #v + :one",
	                  now_ms + duration_ms, true, lease, err);
}

int ddb_lease_release(struct aws_ctx *ctx, const char *region, const char *table,
                      const char *lease_id, const char *owner, struct ddb_lease *lease,
                      struct aws_error *err)
{
	struct aws_error local;

	if (!err)
		err = &local;
	error_clear(err);
	if (ddb_check_args(table, lease_id, owner) < 0 || !lease->exists)
		return -EINVAL;
	return ddb_update(ctx, region, table, lease_id, owner, "SET #e = :exp", 0, false, lease,
	                  err);
}
