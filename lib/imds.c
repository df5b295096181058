/* IMDSv2 client. IMDS answers in microseconds or never (a hop limit of 1 drops the PUT reply in
 * containers), so timeouts are short; the token is cached and renewed a minute before its TTL. */
#include "imds.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "util.h"

#define IMDS_DEFAULT_BASE        "http://169.254.169.254"
#define IMDS_DEFAULT_BASE_IPV6   "http://[fd00:ec2::254]"
#define IMDS_CONNECT_TIMEOUT_MS  1000L
#define IMDS_TIMEOUT_DEFAULT_MS  2000L
#define IMDS_TOKEN_TTL_DEFAULT_S 21600u
#define IMDS_TOKEN_SLACK_S       60
#define IMDS_TOKEN_MAX_BODY      4096
#define IMDS_MAX_BODY            (64 * 1024)

int imds_init(struct imds *m, struct http_client *http)
{
	const char *v;
	size_t len;

	memset(m, 0, sizeof(*m));
	m->http = http;
	m->timeout_ms = IMDS_TIMEOUT_DEFAULT_MS;
	m->token_ttl_s = IMDS_TOKEN_TTL_DEFAULT_S;
	str_copy(m->base, IMDS_DEFAULT_BASE, sizeof(m->base));

	v = getenv("AWS_EC2_METADATA_DISABLED");
	if (v && strcasecmp(v, "true") == 0) {
		m->disabled = true;
		str_copy(m->disabled_reason, "AWS_EC2_METADATA_DISABLED=true",
		         sizeof(m->disabled_reason));
	}
	/* The SDKs' endpoint mode: IPv6-only subnets reach IMDS at its IPv6 address. */
	v = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
	if (v && strcasecmp(v, "IPv6") == 0)
		str_copy(m->base, IMDS_DEFAULT_BASE_IPV6, sizeof(m->base));
	else if (v && v[0] && strcasecmp(v, "IPv4") != 0) {
		/* An unknown mode: never silently talk to another address. */
		m->disabled = true;
		snprintf(m->disabled_reason, sizeof(m->disabled_reason),
		         "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=%.40s is neither IPv4 nor IPv6",
		         v);
	}
	v = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	if (v && v[0]) {
		len = strlen(v);
		while (len && v[len - 1] == '/')
			len--;
		if (len == 0 || len >= sizeof(m->base)) {
			/* Unusable override: never silently talk to the default instead. */
			m->disabled = true;
			str_copy(m->disabled_reason,
			         "AWS_EC2_METADATA_SERVICE_ENDPOINT is empty or too long",
			         sizeof(m->disabled_reason));
		} else {
			memcpy(m->base, v, len);
			m->base[len] = '\0';
			m->explicit_base = true;
		}
	}
	return 0;
}

void imds_clear(struct imds *m)
{
	explicit_bzero(m->token, sizeof(m->token));
	m->token_expiry = 0;
}

static time_t mono_s(void)
{
	return (time_t)(now_mono_ms() / 1000u);
}

/* Strip surrounding whitespace in place; returns the new length. */
static size_t trim(char *s, size_t len)
{
	size_t start = 0;

	if (!s)
		return 0;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
	               s[len - 1] == '\n'))
		len--;
	while (start < len &&
	       (s[start] == ' ' || s[start] == '\t' || s[start] == '\r' || s[start] == '\n'))
		start++;
	memmove(s, s + start, len - start);
	s[len - start] = '\0';
	return len - start;
}

static int status_to_errno(long status)
{
	switch (status) {
	case 404:
		return -ENOENT;
	case 403:
		return -EACCES;
	default:
		return -EPROTO;
	}
}

static int fetch_token(struct imds *m)
{
	struct http_request req;
	struct http_response resp;
	char url[300], ttl_hdr[64];
	const char *headers[2];
	size_t len, i;
	unsigned ttl = m->token_ttl_s ? m->token_ttl_s : IMDS_TOKEN_TTL_DEFAULT_S;
	int r;

	imds_clear(m);
	if (ttl > 21600)
		ttl = 21600;
	if (ttl <= IMDS_TOKEN_SLACK_S)
		ttl = IMDS_TOKEN_SLACK_S + 1;
	snprintf(url, sizeof(url), "%s/latest/api/token", m->base);
	snprintf(ttl_hdr, sizeof(ttl_hdr), "X-aws-ec2-metadata-token-ttl-seconds: %u", ttl);
	headers[0] = ttl_hdr;
	headers[1] = NULL;
	str_copy(m->last_call, "imds:token", sizeof(m->last_call));

	memset(&req, 0, sizeof(req));
	req.method = "PUT";
	req.url = url;
	req.headers = headers;
	req.connect_timeout_ms = IMDS_CONNECT_TIMEOUT_MS;
	req.timeout_ms = m->timeout_ms > 0 ? m->timeout_ms : IMDS_TIMEOUT_DEFAULT_MS;
	req.max_body = IMDS_TOKEN_MAX_BODY;
	req.explicit_endpoint = m->explicit_base;
	req.no_proxy = true;

	r = http_perform(m->http, &req, &resp);
	m->last_status = resp.status;
	if (r < 0)
		goto out;
	if (resp.status != 200) {
		r = status_to_errno(resp.status);
		if (r == -ENOENT)
			r = -EPROTO; /* no token endpoint: IMDSv1 only, which we do not speak */
		goto out;
	}
	len = trim(resp.body.data, resp.body.len);
	/* The token goes into a header line: printable ASCII only, no CR/LF injection. */
	if (len == 0 || len >= sizeof(m->token)) {
		r = -EBADMSG;
		goto out;
	}
	for (i = 0; i < len; i++)
		if (resp.body.data[i] <= 0x20 || resp.body.data[i] >= 0x7f) {
			r = -EBADMSG;
			goto out;
		}
	memcpy(m->token, resp.body.data, len + 1);
	m->token_expiry = mono_s() + (time_t)ttl - IMDS_TOKEN_SLACK_S;
	r = 0;
out:
	buf_wipe(&resp.body);
	return r;
}

static int get_once(struct imds *m, const char *path, struct http_response *resp)
{
	struct http_request req;
	struct buf url, hdr;
	const char *headers[2];
	int r;

	buf_init(&url, 0);
	buf_init(&hdr, 0);
	snprintf(m->last_call, sizeof(m->last_call), "imds:%s", path);
	m->last_status = 0;
	r = buf_printf(&url, "%s/latest/%s", m->base, path);
	if (r == 0)
		r = buf_printf(&hdr, "X-aws-ec2-metadata-token: %s", m->token);
	if (r < 0) {
		memset(resp, 0, sizeof(*resp));
		buf_init(&resp->body, IMDS_MAX_BODY);
		goto out;
	}
	headers[0] = hdr.data;
	headers[1] = NULL;
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = url.data;
	req.headers = headers;
	req.connect_timeout_ms = IMDS_CONNECT_TIMEOUT_MS;
	req.timeout_ms = m->timeout_ms > 0 ? m->timeout_ms : IMDS_TIMEOUT_DEFAULT_MS;
	req.max_body = IMDS_MAX_BODY;
	req.explicit_endpoint = m->explicit_base;
	req.no_proxy = true;
	r = http_perform(m->http, &req, resp);
	m->last_status = resp->status;
out:
	buf_wipe(&hdr);
	buf_free(&url);
	return r;
}

/* Paths are ours or a role name we validated: refuse anything that could bend the URL. */
static bool path_valid(const char *path)
{
	const char *p;

	if (!path || !path[0] || path[0] == '/' || strstr(path, ".."))
		return false;
	for (p = path; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("-_./+=,@", *p)))
			return false;
	return true;
}

int imds_get(struct imds *m, const char *path, struct buf *out)
{
	struct http_response resp;
	bool retried = false;
	int r;

	memset(&resp, 0, sizeof(resp));
	if (m->disabled)
		return -ENODEV;
	if (!path_valid(path))
		return -EINVAL;
	for (;;) {
		if (!m->token[0] || mono_s() >= m->token_expiry) {
			r = fetch_token(m);
			if (r < 0)
				return r;
		}
		r = get_once(m, path, &resp);
		if (r < 0)
			goto out;
		if (resp.status == 401 && !retried) {
			/* Token expired or rejected: a new one, once. */
			retried = true;
			imds_clear(m);
			buf_wipe(&resp.body);
			continue;
		}
		break;
	}
	if (resp.status != 200) {
		r = status_to_errno(resp.status);
		goto out;
	}
	buf_wipe(out);
	*out = resp.body;
	buf_init(&resp.body, 0);
	r = 0;
out:
	buf_wipe(&resp.body);
	return r;
}

/* GET a one-line value into out[n], whitespace stripped. */
static int get_value(struct imds *m, const char *path, char *out, size_t n)
{
	struct buf b;
	size_t len;
	int r;

	buf_init(&b, 0);
	r = imds_get(m, path, &b);
	if (r < 0)
		goto out;
	len = trim(b.data, b.len);
	if (len == 0 || memchr(b.data, '\n', len) || memchr(b.data, '\0', len)) {
		r = -EBADMSG;
		goto out;
	}
	if (len >= n) {
		r = -ENAMETOOLONG;
		goto out;
	}
	memcpy(out, b.data, len + 1);
	r = 0;
out:
	buf_free(&b);
	return r;
}

int imds_instance_id(struct imds *m, char *out, size_t n)
{
	return get_value(m, "meta-data/instance-id", out, n);
}

static bool region_chars_ok(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

int imds_region(struct imds *m, char *out, size_t n)
{
	char az[64];
	size_t len;
	int r;

	r = get_value(m, "meta-data/placement/region", out, n);
	if (r == 0)
		return region_chars_ok(out) ? 0 : -EBADMSG;
	if (r != -ENOENT)
		return r;
	/* Older IMDS: the availability zone ("us-east-1a") minus its letter. */
	r = get_value(m, "meta-data/placement/availability-zone", az, sizeof(az));
	if (r < 0)
		return r == -ENAMETOOLONG ? -EBADMSG : r;
	len = strlen(az);
	if (len < 2)
		return -EBADMSG;
	az[len - 1] = '\0';
	if (!region_chars_ok(az))
		return -EBADMSG;
	if (len - 1 >= n)
		return -ENAMETOOLONG;
	memcpy(out, az, len);
	return 0;
}

int imds_target_lifecycle_state(struct imds *m, char *out, size_t n)
{
	return get_value(m, "meta-data/autoscaling/target-lifecycle-state", out, n);
}

int imds_parse_spot_action(const char *json, size_t len, struct spot_action *out)
{
	cJSON *root;
	const cJSON *action, *t;
	time_t when;
	int r = -EBADMSG;

	if (!json)
		return -EBADMSG;
	root = json_parse_exact(json, len);
	if (!root)
		return -EBADMSG;
	if (!cJSON_IsObject(root))
		goto out;
	action = cJSON_GetObjectItemCaseSensitive(root, "action");
	t = cJSON_GetObjectItemCaseSensitive(root, "time");
	if (!cJSON_IsString(action) || !cJSON_IsString(t))
		goto out;
	if (strcmp(action->valuestring, "terminate") != 0 &&
	    strcmp(action->valuestring, "stop") != 0 &&
	    strcmp(action->valuestring, "hibernate") != 0)
		goto out;
	if (parse_iso8601(t->valuestring, &when) < 0)
		goto out;
	str_copy(out->action, action->valuestring, sizeof(out->action));
	out->time = when;
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

int imds_spot_action(struct imds *m, struct spot_action *out)
{
	struct buf b;
	int r;

	buf_init(&b, 0);
	r = imds_get(m, "meta-data/spot/instance-action", &b);
	if (r == 0)
		r = imds_parse_spot_action(b.data, b.len, out);
	buf_free(&b);
	return r;
}

static int parse_rebalance(const char *json, size_t len, time_t *notice)
{
	cJSON *root;
	const cJSON *t;
	int r = -EBADMSG;

	if (!json)
		return -EBADMSG;
	root = json_parse_exact(json, len);
	if (!root)
		return -EBADMSG;
	t = cJSON_GetObjectItemCaseSensitive(root, "noticeTime");
	if (cJSON_IsObject(root) && cJSON_IsString(t) && parse_iso8601(t->valuestring, notice) == 0)
		r = 0;
	cJSON_Delete(root);
	return r;
}

int imds_rebalance(struct imds *m, time_t *notice)
{
	struct buf b;
	int r;

	buf_init(&b, 0);
	r = imds_get(m, "meta-data/events/recommendations/rebalance", &b);
	if (r == 0)
		r = parse_rebalance(b.data, b.len, notice);
	buf_free(&b);
	return r;
}

static int copy_string_member(const cJSON *root, const char *name, char *dst, size_t n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);

	if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= n)
		return -EBADMSG;
	str_copy(dst, v->valuestring, n);
	return 0;
}

/* cJSON frees without wiping: zero every string in the tree before deleting it. */
static void json_wipe_delete(cJSON *root)
{
	cJSON *c;

	for (c = root ? root->child : NULL; c; c = c->next)
		if (cJSON_IsString(c) && c->valuestring)
			explicit_bzero(c->valuestring, strlen(c->valuestring));
	cJSON_Delete(root);
}

int imds_parse_credentials(const char *json, size_t len, struct aws_creds *out)
{
	struct aws_creds c;
	cJSON *root;
	const cJSON *code, *exp;
	int r = -EBADMSG;

	memset(&c, 0, sizeof(c));
	if (!json)
		return -EBADMSG;
	root = json_parse_exact(json, len);
	if (!root)
		return -EBADMSG;
	if (!cJSON_IsObject(root))
		goto out;
	/* A failed role fetch is a 200 with Code/Message (e.g. the role has no policy yet). */
	code = cJSON_GetObjectItemCaseSensitive(root, "Code");
	if (code && (!cJSON_IsString(code) || strcmp(code->valuestring, "Success") != 0)) {
		r = -EACCES;
		goto out;
	}
	if (copy_string_member(root, "AccessKeyId", c.akid, sizeof(c.akid)) < 0 ||
	    copy_string_member(root, "SecretAccessKey", c.secret, sizeof(c.secret)) < 0 ||
	    copy_string_member(root, "Token", c.token, sizeof(c.token)) < 0)
		goto out;
	exp = cJSON_GetObjectItemCaseSensitive(root, "Expiration");
	if (!cJSON_IsString(exp) || parse_iso8601(exp->valuestring, &c.expiration) < 0)
		goto out;
	c.from_imds = true;
	*out = c;
	r = 0;
out:
	explicit_bzero(&c, sizeof(c));
	json_wipe_delete(root);
	return r;
}

static bool role_name_valid(const char *s)
{
	if (!s[0])
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("+=,.@_-", *s)))
			return false;
	return true;
}

int imds_role_credentials(struct imds *m, struct aws_creds *out)
{
	struct buf b;
	char role[129], path[200];
	const char *nl;
	size_t len;
	int r;

	buf_init(&b, 0);
	r = imds_get(m, "meta-data/iam/security-credentials/", &b);
	if (r < 0)
		goto out;
	len = trim(b.data, b.len);
	if (len == 0) {
		r = -ENOENT;
		goto out;
	}
	nl = memchr(b.data, '\n', len);
	if (nl)
		len = (size_t)(nl - b.data);
	if (len >= sizeof(role)) {
		r = -EBADMSG;
		goto out;
	}
	memcpy(role, b.data, len);
	role[len] = '\0';
	len = trim(role, len);
	if (!role_name_valid(role)) {
		r = -EBADMSG;
		goto out;
	}
	snprintf(path, sizeof(path), "meta-data/iam/security-credentials/%s", role);
	r = imds_get(m, path, &b);
	if (r < 0)
		goto out;
	r = imds_parse_credentials(b.data, b.len, out);
out:
	buf_wipe(&b);
	return r;
}
