/* AWS requests without an SDK. Signing is libcurl's CURLOPT_AWS_SIGV4 (7.88.1), used only the
 * way aws-wire.md §4 found safe: POST / with POSTFIELDS, explicit "aws:amz:REGION:SERVICE", a
 * fresh header list naming Content-Type, X-Amz-Target and X-Amz-Security-Token once each, and no
 * X-Amz-Date, Date, Authorization or "Name:" removal headers. */
#include "aws.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "xml.h"

#define AWS_TIMEOUT_DEFAULT_MS      10000L
#define AWS_MAX_ATTEMPTS_DEFAULT    3u
#define AWS_BACKOFF_BASE_DEFAULT_MS 1000u
#define AWS_BACKOFF_CAP_DEFAULT_MS  20000u
#define AWS_CREDS_REFRESH_WINDOW_S  300
#define AWS_QUERY_VERSION           "2011-01-01"

static const struct {
	const char *signing;      /* signing name and host prefix */
	const char *env;          /* AWS_ENDPOINT_URL_<env> */
	const char *target;       /* X-Amz-Target prefix (JSON services) */
	const char *content_type; /* JSON services */
} services[] = {
        [AWS_AUTOSCALING] = {"autoscaling", "AWS_ENDPOINT_URL_AUTO_SCALING", NULL, NULL},
        [AWS_SECRETSMANAGER] = {"secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                                "secretsmanager", "application/x-amz-json-1.1"},
        [AWS_SSM] = {"ssm", "AWS_ENDPOINT_URL_SSM", "AmazonSSM", "application/x-amz-json-1.1"},
        [AWS_DYNAMODB] = {"dynamodb", "AWS_ENDPOINT_URL_DYNAMODB", "DynamoDB_20120810",
                          "application/x-amz-json-1.0"},
};

static bool service_valid(enum aws_service svc)
{
	return (unsigned)svc < ARRAY_SIZE(services);
}

const char *aws_signing_name(enum aws_service svc)
{
	return service_valid(svc) ? services[svc].signing : NULL;
}

/* Regions are [a-z0-9-]; the SigV4 option string allows at most 64 characters per field. */
static bool region_valid(const char *region)
{
	size_t i;

	if (!region || !region[0] || strlen(region) > 64)
		return false;
	for (i = 0; region[i]; i++) {
		char c = region[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static const char *env_get(const char *(*getenv_fn)(const char *), const char *name)
{
	const char *v = getenv_fn ? getenv_fn(name) : getenv(name);

	return v && v[0] ? v : NULL;
}

int aws_endpoint(enum aws_service svc, const char *region, char *out, size_t n, bool *explicit_out,
                 const char *(*getenv_fn)(const char *))
{
	const char *v;
	size_t len;
	int w;

	if (explicit_out)
		*explicit_out = false;
	if (!service_valid(svc) || !region_valid(region) || !n)
		return -EINVAL;
	v = env_get(getenv_fn, services[svc].env);
	if (!v)
		v = env_get(getenv_fn, "AWS_ENDPOINT_URL");
	if (v) {
		/* The caller appends "/": a trailing slash here would make the path "//". */
		len = strlen(v);
		while (len && v[len - 1] == '/')
			len--;
		if (!len)
			return -EINVAL;
		if (len >= n)
			return -ENAMETOOLONG;
		memcpy(out, v, len);
		out[len] = '\0';
		if (explicit_out)
			*explicit_out = true;
		return 0;
	}
	w = snprintf(out, n, "https://%s.%s.amazonaws.com%s", services[svc].signing, region,
	             strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
	if (w < 0 || (size_t)w >= n)
		return -ENAMETOOLONG;
	return 0;
}

int aws_region_from_env(char *out, size_t n)
{
	const char *v = env_get(NULL, "AWS_REGION");

	if (!v)
		v = env_get(NULL, "AWS_DEFAULT_REGION");
	if (!v)
		return -ENOENT;
	if (strlen(v) >= n)
		return -ENAMETOOLONG;
	str_copy(out, v, n);
	return 0;
}

int aws_form_append(struct buf *out, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *parts[2] = {name, value};
	size_t i;
	int r;

	if (!name || !value)
		return -EINVAL;
	if (out->len) {
		r = buf_append(out, "&", 1);
		if (r < 0)
			return r;
	}
	for (i = 0; i < 2; i++) {
		const unsigned char *s = (const unsigned char *)parts[i];

		if (i == 1) {
			r = buf_append(out, "=", 1);
			if (r < 0)
				return r;
		}
		for (; *s; s++) {
			char enc[3];

			if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
			    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.' ||
			    *s == '~') {
				r = buf_append(out, s, 1);
			} else if (*s == ' ') {
				r = buf_append(out, "+", 1);
			} else {
				enc[0] = '%';
				enc[1] = hex[*s >> 4];
				enc[2] = hex[*s & 15];
				r = buf_append(out, enc, 3);
			}
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* AWS text ends up in logs: copy it printable (no line breaks to forge log lines with). */
static void copy_printable(char *dst, size_t n, const char *src)
{
	size_t i;

	str_copy(dst, src, n);
	for (i = 0; dst[i]; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = ' ';
}

int aws_parse_query_error(const char *body, size_t len, struct aws_error *err)
{
	struct xml_node *root = NULL;
	const struct xml_node *e = NULL;
	const char *code, *msg, *rid = NULL;
	int r;

	if (!body)
		return -EBADMSG;
	r = xml_parse(body, len, &root);
	if (r < 0)
		return -EBADMSG;
	if (strcmp(root->name, "ErrorResponse") == 0) {
		e = xml_child(root, "Error");
		rid = xml_text(root, "RequestId");
	} else if (strcmp(root->name, "Response") == 0) {
		/* The EC2-style variant: <Response><Errors><Error>..</Errors><RequestID>. */
		e = xml_path(root, "Errors/Error");
		rid = xml_text(root, "RequestID");
		if (!rid)
			rid = xml_text(root, "RequestId");
	}
	code = e ? xml_text(e, "Code") : NULL;
	if (!code || !code[0]) {
		r = -EBADMSG;
		goto out;
	}
	msg = xml_text(e, "Message");
	copy_printable(err->code, sizeof(err->code), code);
	copy_printable(err->message, sizeof(err->message), msg ? msg : "");
	if (rid && rid[0])
		copy_printable(err->request_id, sizeof(err->request_id), rid);
	r = 0;
out:
	xml_free(root);
	return r;
}

int aws_parse_json_error(const char *body, size_t len, struct aws_error *err)
{
	cJSON *root;
	const cJSON *type, *msg;
	char code[sizeof(err->code)];
	const char *start, *p;
	size_t clen;
	int r = -EBADMSG;

	if (!body)
		return -EBADMSG;
	root = cJSON_ParseWithLength(body, len);
	if (!root)
		return -EBADMSG;
	if (!cJSON_IsObject(root))
		goto out;
	type = cJSON_GetObjectItemCaseSensitive(root, "__type");
	if (!cJSON_IsString(type) || !type->valuestring)
		goto out;
	/* botocore's rule: cut at the first ':', then keep what follows the last '#'. */
	start = type->valuestring;
	p = strchr(start, ':');
	clen = p ? (size_t)(p - start) : strlen(start);
	p = memrchr(start, '#', clen);
	if (p) {
		clen -= (size_t)(p + 1 - start);
		start = p + 1;
	}
	if (clen == 0 || clen >= sizeof(code))
		goto out;
	memcpy(code, start, clen);
	code[clen] = '\0';
	msg = cJSON_GetObjectItemCaseSensitive(root, "message");
	if (!cJSON_IsString(msg))
		msg = cJSON_GetObjectItemCaseSensitive(root, "Message");
	copy_printable(err->code, sizeof(err->code), code);
	copy_printable(err->message, sizeof(err->message),
	               cJSON_IsString(msg) && msg->valuestring ? msg->valuestring : "");
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

bool aws_error_retryable(const struct aws_error *err)
{
	/* botocore "standard" mode (retries/standard.py) plus ResourceContention and
	 * ScalingActivityInProgress (aws-wire.md §6); our transport words are connection errors. */
	static const char *const codes[] = {
	        "Throttling",
	        "ThrottlingException",
	        "ThrottledException",
	        "RequestThrottledException",
	        "TooManyRequestsException",
	        "ProvisionedThroughputExceededException",
	        "TransactionInProgressException",
	        "RequestLimitExceeded",
	        "BandwidthLimitExceeded",
	        "LimitExceededException",
	        "RequestThrottled",
	        "SlowDown",
	        "PriorRequestNotComplete",
	        "EC2ThrottledException",
	        "RequestTimeout",
	        "RequestTimeoutException",
	        "ResourceContention",
	        "ScalingActivityInProgress",
	        "timeout",
	        "refused",
	        "unreachable",
	        "transport",
	};
	size_t i;

	if (!err)
		return false;
	for (i = 0; i < ARRAY_SIZE(codes); i++)
		if (strcmp(err->code, codes[i]) == 0)
			return true;
	switch (err->http_status) {
	case 429:
	case 500:
	case 502:
	case 503:
	case 504:
		/* A lost condition is a business answer whatever status carries it. */
		return strcmp(err->code, "ConditionalCheckFailedException") != 0;
	default:
		return false;
	}
}

bool aws_creds_expiring(const struct aws_creds *c, time_t now)
{
	if (!c->akid[0])
		return true;
	return c->expiration != 0 && c->expiration - now <= AWS_CREDS_REFRESH_WINDOW_S;
}

uint64_t aws_call_deadline(const struct aws_ctx *ctx, uint64_t now_ms)
{
	uint64_t d = 0;

	if (ctx->call_budget_ms)
		d = ctx->call_budget_ms > UINT64_MAX - now_ms ? UINT64_MAX
		                                              : now_ms + ctx->call_budget_ms;
	if (ctx->cap_mono_ms && (!d || ctx->cap_mono_ms < d))
		d = ctx->cap_mono_ms;
	return d;
}

uint64_t aws_cap_begin(struct aws_ctx *ctx, uint64_t cap_mono_ms)
{
	uint64_t saved = ctx->cap_mono_ms;

	if (cap_mono_ms && (!saved || cap_mono_ms < saved))
		ctx->cap_mono_ms = cap_mono_ms;
	return saved;
}

void aws_cap_end(struct aws_ctx *ctx, uint64_t saved)
{
	ctx->cap_mono_ms = saved;
}

static void error_reset(struct aws_error *err, const char *svc, const char *op)
{
	memset(err, 0, sizeof(*err));
	err->retry_after_s = -1;
	snprintf(err->call, sizeof(err->call), "%s:%s", svc, op);
}

static void error_transport(struct aws_error *err, int r, long status)
{
	const char *code, *msg;

	switch (r) {
	case -ETIMEDOUT:
		code = "timeout";
		msg = "request timed out";
		break;
	case -ECONNREFUSED:
		code = "refused";
		msg = "could not connect";
		break;
	case -EHOSTUNREACH:
		code = "unreachable";
		msg = "could not resolve host";
		break;
	case -EFBIG:
		code = "too-large";
		msg = "response larger than the limit";
		break;
	case -EPERM:
		code = "transport";
		msg = "plain http refused for a non-loopback endpoint";
		break;
	case -EKEYREJECTED:
		code = "tls";
		msg = "TLS certificate verification failed: the endpoint's certificate is not "
		      "trusted "
		      "by the system CA bundle, or does not name the host";
		break;
	case -ENOPKG:
		code = "tls";
		msg = "no system CA bundle (/etc/ssl/certs/ca-certificates.crt): install "
		      "ca-certificates";
		break;
	default:
		code = "transport";
		msg = "transport error";
		break;
	}
	str_copy(err->code, code, sizeof(err->code));
	str_copy(err->message, msg, sizeof(err->message));
	err->http_status = status;
	err->request_id[0] = '\0';
	err->retry_after_s = -1;
}

static bool transport_retryable(int r)
{
	/* Oversize answers and refused URLs will not change on retry; ENOMEM/EINVAL are ours. */
	return r != -EFBIG && r != -EPERM && r != -ENOMEM && r != -EINVAL && r != -EKEYREJECTED &&
	       r != -ENOPKG;
}

struct aws_call {
	enum aws_service svc;
	const char *region;
	const char *op;
	const char *content_type;
	const char *target; /* full "Prefix.Op" or NULL */
	const char *body;
	size_t body_len;
	size_t max_body; /* response limit; 0 = BUF_MAX_DEFAULT */
	bool query;
};

/* One signed attempt. 0 with a 2xx body moved into out; -EREMOTEIO with err; transport errors. */
static int aws_attempt(struct aws_ctx *ctx, const struct aws_call *call, const char *url,
                       bool explicit_endpoint, long timeout_ms, struct buf *out,
                       struct aws_error *err)
{
	struct http_request req;
	struct http_response resp;
	struct buf ct_hdr, target_hdr, token_hdr, userpwd;
	const char *headers[4];
	char sigv4[128];
	size_t nh = 0;
	int r;

	buf_init(&ct_hdr, 0);
	buf_init(&target_hdr, 0);
	buf_init(&token_hdr, 0);
	buf_init(&userpwd, 0);
	memset(&resp, 0, sizeof(resp));
	buf_init(&resp.body, 0);

	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:%s", call->region, services[call->svc].signing);
	r = buf_printf(&ct_hdr, "Content-Type: %s", call->content_type);
	if (r < 0)
		goto out;
	headers[nh++] = ct_hdr.data;
	if (call->target) {
		r = buf_printf(&target_hdr, "X-Amz-Target: %s", call->target);
		if (r < 0)
			goto out;
		headers[nh++] = target_hdr.data;
	}
	if (ctx->creds.token[0]) {
		r = buf_printf(&token_hdr, "X-Amz-Security-Token: %s", ctx->creds.token);
		if (r < 0)
			goto out;
		headers[nh++] = token_hdr.data;
	}
	headers[nh] = NULL;
	r = buf_printf(&userpwd, "%s:%s", ctx->creds.akid, ctx->creds.secret);
	if (r < 0)
		goto out;

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = url;
	req.headers = headers;
	req.body = call->body;
	req.body_len = call->body_len;
	req.timeout_ms = timeout_ms;
	req.max_body = call->max_body ? call->max_body : BUF_MAX_DEFAULT;
	req.sigv4 = sigv4;
	req.userpwd = userpwd.data;
	req.explicit_endpoint = explicit_endpoint;

	r = http_perform(ctx->http, &req, &resp);
	if (r < 0) {
		error_transport(err, r, resp.status);
		goto out;
	}
	if (resp.status >= 200 && resp.status < 300) {
		/* Nothing of an earlier failed attempt stays in err. */
		err->http_status = resp.status;
		err->code[0] = err->message[0] = '\0';
		err->retry_after_s = -1;
		copy_printable(err->request_id, sizeof(err->request_id), resp.request_id);
		/* Move, don't copy: the body may hold a secret and must exist only once. */
		buf_wipe(out);
		*out = resp.body;
		buf_init(&resp.body, 0);
		r = 0;
		goto out;
	}

	err->http_status = resp.status;
	err->retry_after_s = resp.retry_after_s;
	err->code[0] = err->message[0] = err->request_id[0] = '\0';
	if (call->query)
		r = aws_parse_query_error(resp.body.data, resp.body.len, err);
	else
		r = aws_parse_json_error(resp.body.data, resp.body.len, err);
	if (r < 0) {
		/* Not AWS-shaped (a proxy's HTML page, an empty 503): name it by status. */
		snprintf(err->code, sizeof(err->code), "http-%ld", resp.status);
		str_copy(err->message, "error response without an AWS error body",
		         sizeof(err->message));
	}
	if (resp.request_id[0])
		copy_printable(err->request_id, sizeof(err->request_id), resp.request_id);
	r = -EREMOTEIO;
out:
	buf_wipe(&userpwd);
	buf_wipe(&token_hdr);
	buf_free(&target_hdr);
	buf_free(&ct_hdr);
	buf_wipe(&resp.body);
	return r;
}

/* Credentials go into a header line and "AKID:SECRET": printable, no spaces, no ':' in AKID. */
static bool creds_printable(const struct aws_creds *c)
{
	const char *const parts[] = {c->akid, c->secret, c->token};
	const char *p;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(parts); i++)
		for (p = parts[i]; *p; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
				return false;
	return strchr(c->akid, ':') == NULL;
}

static bool code_is_expired_token(const struct aws_error *err)
{
	return strcmp(err->code, "ExpiredToken") == 0 ||
	       strcmp(err->code, "ExpiredTokenException") == 0;
}

static int aws_do(struct aws_ctx *ctx, const struct aws_call *call, struct buf *out,
                  struct aws_error *err)
{
	char endpoint[512], url[520];
	bool explicit_endpoint = false, forced_refresh = false;
	unsigned max_attempts = ctx->max_attempts ? ctx->max_attempts : AWS_MAX_ATTEMPTS_DEFAULT;
	uint64_t base = ctx->backoff_base_ms ? ctx->backoff_base_ms : AWS_BACKOFF_BASE_DEFAULT_MS;
	uint64_t cap = ctx->backoff_cap_ms ? ctx->backoff_cap_ms : AWS_BACKOFF_CAP_DEFAULT_MS;
	long timeout_ms = ctx->timeout_ms > 0 ? ctx->timeout_ms : AWS_TIMEOUT_DEFAULT_MS;
	/* This call's own deadline: it starts now and ends with the call. */
	uint64_t deadline = aws_call_deadline(ctx, now_mono_ms());
	unsigned attempt;
	uint64_t now, delay, ra_ms;
	int r;

	r = aws_endpoint(call->svc, call->region, endpoint, sizeof(endpoint), &explicit_endpoint,
	                 NULL);
	if (r < 0) {
		str_copy(err->code, "endpoint", sizeof(err->code));
		str_copy(err->message, "no endpoint for this service and region",
		         sizeof(err->message));
		return r;
	}
	snprintf(url, sizeof(url), "%s/", endpoint);

	for (attempt = 0;; attempt++) {
		long t = timeout_ms;
		bool need_refresh;

		now = now_mono_ms();
		if (deadline) {
			if (now >= deadline) {
				error_transport(err, -ETIMEDOUT, 0);
				return -ETIMEDOUT;
			}
			if (deadline - now < (uint64_t)t)
				t = (long)(deadline - now);
		}

		need_refresh = forced_refresh || aws_creds_expiring(&ctx->creds, time(NULL));
		if (ctx->refresh && need_refresh) {
			r = ctx->refresh(ctx->refresh_user, &ctx->creds);
			/* A failed refresh is fatal only once the old credentials are unusable. */
			if (r < 0 &&
			    (!ctx->creds.akid[0] ||
			     (ctx->creds.expiration && ctx->creds.expiration <= time(NULL)))) {
				str_copy(err->code, "credentials", sizeof(err->code));
				str_copy(err->message, "could not refresh credentials",
				         sizeof(err->message));
				return r;
			}
		}
		/* The refresh (IMDS) took part of this call's time: the attempt gets what is left.
		 */
		if (deadline && ctx->refresh && need_refresh) {
			now = now_mono_ms();
			if (now >= deadline) {
				error_transport(err, -ETIMEDOUT, 0);
				return -ETIMEDOUT;
			}
			if (deadline - now < (uint64_t)t)
				t = (long)(deadline - now);
		}
		if (!ctx->creds.akid[0]) {
			str_copy(err->code, "credentials", sizeof(err->code));
			str_copy(err->message, "no credentials", sizeof(err->message));
			return -ENOKEY;
		}
		if (!creds_printable(&ctx->creds)) {
			str_copy(err->code, "credentials", sizeof(err->code));
			str_copy(err->message, "credentials hold unusable characters",
			         sizeof(err->message));
			return -EINVAL;
		}

		r = aws_attempt(ctx, call, url, explicit_endpoint, t, out, err);
		if (r == 0)
			return 0;
		if (attempt + 1 >= max_attempts)
			return r;
		if (r == -EREMOTEIO && ctx->refresh && !forced_refresh &&
		    code_is_expired_token(err)) {
			/* Rotated early or clock skew: fetch new credentials and go again. */
			forced_refresh = true;
			continue;
		}
		forced_refresh = false;
		if (r == -EREMOTEIO ? !aws_error_retryable(err) : !transport_retryable(r))
			return r;

		delay = backoff_full_jitter_ms(attempt, base, cap, random_u32());
		if (err->retry_after_s >= 0) {
			ra_ms = (uint64_t)err->retry_after_s * 1000u;
			/* Honour a longer Retry-After, but not beyond our own ceiling: then the
			 * caller's schedule is the better place to wait. */
			if (ra_ms > cap)
				return r;
			if (ra_ms > delay)
				delay = ra_ms;
		}
		now = now_mono_ms();
		if (deadline && now + delay >= deadline)
			return r;
		sleep_ms(delay);
	}
}

int aws_query(struct aws_ctx *ctx, const char *region, const char *action, const char *form,
              struct buf *out, struct aws_error *err)
{
	return aws_query_max(ctx, region, action, form, 0, out, err);
}

int aws_query_max(struct aws_ctx *ctx, const char *region, const char *action, const char *form,
                  size_t max_body, struct buf *out, struct aws_error *err)
{
	struct aws_error local;
	struct aws_call call;
	struct buf body;
	int r;

	if (!err)
		err = &local;
	error_reset(err, "autoscaling", action ? action : "");
	buf_init(&body, 0);
	if (!ctx || !ctx->http || !action || !action[0] || !out) {
		r = -EINVAL;
		goto out;
	}
	r = aws_form_append(&body, "Action", action);
	if (r == 0)
		r = aws_form_append(&body, "Version", AWS_QUERY_VERSION);
	if (r == 0 && form && form[0])
		r = buf_printf(&body, "&%s", form);
	if (r < 0)
		goto out;

	memset(&call, 0, sizeof(call));
	call.svc = AWS_AUTOSCALING;
	call.region = region;
	call.op = action;
	call.content_type = "application/x-www-form-urlencoded; charset=utf-8";
	call.body = body.data;
	call.body_len = body.len;
	call.max_body = max_body;
	call.query = true;
	r = aws_do(ctx, &call, out, err);
out:
	buf_free(&body);
	return r;
}

int aws_json(struct aws_ctx *ctx, enum aws_service svc, const char *region, const char *operation,
             const char *json, struct buf *out, struct aws_error *err)
{
	struct aws_error local;
	struct aws_call call;
	char target[128];
	int r;

	if (!err)
		err = &local;
	if (!service_valid(svc) || !services[svc].target) {
		error_reset(err, "aws", operation ? operation : "");
		return -EINVAL;
	}
	error_reset(err, services[svc].signing, operation ? operation : "");
	if (!ctx || !ctx->http || !operation || !operation[0] || !json || !out)
		return -EINVAL;
	r = snprintf(target, sizeof(target), "%s.%s", services[svc].target, operation);
	if (r < 0 || (size_t)r >= sizeof(target))
		return -EINVAL;

	memset(&call, 0, sizeof(call));
	call.svc = svc;
	call.region = region;
	call.op = operation;
	call.content_type = services[svc].content_type;
	call.target = target;
	call.body = json;
	call.body_len = strlen(json);
	return aws_do(ctx, &call, out, err);
}
