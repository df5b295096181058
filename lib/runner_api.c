/* CircleCI Runner API v3 client (circleci.md §1): GETs with a Circle-Token, counts parsed
 * strictly, errors reduced to status + message + Retry-After. The token never enters a message. */
#include "runner_api.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "util.h"

#define RUNNER_API_TIMEOUT_MS 10000
#define RUNNER_API_SNIPPET    200 /* bytes of a non-JSON error body kept for the log */
#define JSON_SAFE_INT         9007199254740992.0 /* 2^53: integers above it are not exact doubles */

static void error_clear(struct runner_api_error *err)
{
	memset(err, 0, sizeof(*err));
	err->retry_after_s = -1;
}

int runner_api_init(struct runner_api *api, struct http_client *http, const char *base_url,
                    const char *token)
{
	const char *env = getenv("CIRCLECI_RUNNER_API_URL");
	const char *url = RUNNER_API_DEFAULT_URL;
	size_t n;

	memset(api, 0, sizeof(*api));
	api->http = http;
	api->token = token;
	if (env && env[0]) {
		url = env;
		api->explicit_base = true;
	} else if (base_url && base_url[0]) {
		url = base_url;
		api->explicit_base = true;
	}
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		return -EINVAL;
	if (str_copy(api->base_url, url, sizeof(api->base_url)) >= sizeof(api->base_url))
		return -ENAMETOOLONG;
	n = strlen(api->base_url);
	while (n && api->base_url[n - 1] == '/')
		api->base_url[--n] = '\0';
	if (strcmp(api->base_url, "https:") == 0 || strcmp(api->base_url, "http:") == 0)
		return -EINVAL; /* nothing after the scheme */
	return 0;
}

int runner_api_url(const struct runner_api *api, const char *path, const char *resource_class,
                   char *out, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len;
	int w;

	if (!path || path[0] != '/' || !resource_class || !resource_class[0] || n == 0)
		return -EINVAL;
	w = snprintf(out, n, "%s/api/v3%s?resource-class=", api->base_url, path);
	if (w < 0 || (size_t)w >= n)
		return -ENAMETOOLONG;
	len = (size_t)w;
	/* RFC 3986: unreserved kept, everything else %XX (so '/' -> %2F, ' ' -> %20). */
	for (const unsigned char *p = (const unsigned char *)resource_class; *p; p++) {
		bool keep = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~';

		if (len + (keep ? 1 : 3) >= n) {
			out[0] = '\0';
			return -ENAMETOOLONG;
		}
		if (keep) {
			out[len++] = (char)*p;
		} else {
			out[len++] = '%';
			out[len++] = hex[*p >> 4];
			out[len++] = hex[*p & 15];
		}
	}
	out[len] = '\0';
	return 0;
}

/* A count is a non-negative JSON integer that a double holds exactly. */
static int count_value(const cJSON *v, int64_t *count)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -EBADMSG;
	d = v->valuedouble;
	if (!(d >= 0 && d <= JSON_SAFE_INT) || d != (double)(int64_t)d)
		return -EBADMSG;
	*count = (int64_t)d;
	return 0;
}

int runner_api_parse_count(const char *json, size_t len, const char *field, int64_t *count)
{
	cJSON *root;
	int r = -EBADMSG;

	root = json_parse_exact(json, len);
	if (root && cJSON_IsObject(root) && field)
		r = count_value(cJSON_GetObjectItemCaseSensitive(root, field), count);
	cJSON_Delete(root);
	return r;
}

int runner_api_parse_runners(const char *json, size_t len, int64_t *count)
{
	const cJSON *items, *it;
	cJSON *root;
	int64_t n = 0;
	int r = -EBADMSG;

	root = json_parse_exact(json, len);
	if (!root || !cJSON_IsObject(root))
		goto out;
	items = cJSON_GetObjectItemCaseSensitive(root, "items");
	if (!cJSON_IsArray(items))
		goto out;
	cJSON_ArrayForEach(it, items)
	{
		if (!cJSON_IsObject(it))
			goto out;
		n++;
	}
	*count = n;
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

int runner_api_parse_runner_names(const char *json, size_t len,
                                  int (*fn)(void *ctx, const char *name), void *ctx, int64_t *count)
{
	const cJSON *items, *it;
	cJSON *root;
	int64_t n = 0;
	int r = -EBADMSG;

	root = json_parse_exact(json, len);
	if (!root || !cJSON_IsObject(root))
		goto out;
	items = cJSON_GetObjectItemCaseSensitive(root, "items");
	if (!cJSON_IsArray(items))
		goto out;
	/* All of it first: a bad answer names nobody (a read that fails decides nothing). */
	cJSON_ArrayForEach(it, items)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");

		if (!cJSON_IsObject(it) || !cJSON_IsString(name) || !name->valuestring)
			goto out;
		n++;
	}
	r = 0;
	cJSON_ArrayForEach(it, items)
	{
		r = fn ? fn(ctx, cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring) : 0;
		if (r < 0)
			goto out;
	}
	if (count)
		*count = n;
out:
	cJSON_Delete(root);
	return r;
}

/* Copy up to max bytes of [p, p+len) into dst, surrounding whitespace trimmed and anything not
 * printable ASCII shown as '?', so a log line stays one line. */
static void copy_printable(char *dst, size_t size, const char *p, size_t len, size_t max)
{
	size_t o = 0;

	while (len && isspace((unsigned char)p[0])) {
		p++;
		len--;
	}
	while (len && isspace((unsigned char)p[len - 1]))
		len--;
	if (len > max)
		len = max;
	for (size_t i = 0; i < len && o + 1 < size; i++) {
		unsigned char c = (unsigned char)p[i];

		dst[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[o] = '\0';
}

void runner_api_parse_error(long status, const char *body, size_t len, long retry_after,
                            struct runner_api_error *err)
{
	const cJSON *msg;
	cJSON *root;

	error_clear(err);
	err->http_status = status;
	err->retry_after_s = retry_after >= 0 ? retry_after : -1;
	root = body ? json_parse_exact(body, len) : NULL;
	msg = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "message") : NULL;
	if (cJSON_IsString(msg) && msg->valuestring && msg->valuestring[0])
		copy_printable(err->message, sizeof(err->message), msg->valuestring,
		               strlen(msg->valuestring), sizeof(err->message) - 1);
	else if (body && len)
		copy_printable(err->message, sizeof(err->message), body, len, RUNNER_API_SNIPPET);
	if (!err->message[0])
		snprintf(err->message, sizeof(err->message), "HTTP %ld", status);
	cJSON_Delete(root);
}

static const char *transport_word(int r)
{
	switch (r) {
	case -ETIMEDOUT:
		return "timeout";
	case -ECONNREFUSED:
		return "refused";
	case -EHOSTUNREACH:
		return "unreachable";
	case -EFBIG:
		return "too-large";
	case -EPERM:
		return "plain http not allowed";
	case -ENOMEM:
		return "out of memory";
	default:
		return "transport error";
	}
}

/* A server could echo what it was sent; never let the token reach a log through err. */
static void scrub_token(char *msg, size_t size, const char *token)
{
	static const char mark[] = "<redacted>";
	size_t tl = token ? strlen(token) : 0;
	char tmp[sizeof(((struct runner_api_error *)0)->message)];
	size_t o = 0;

	if (tl < 4 || !strstr(msg, token) || size > sizeof(tmp))
		return;
	for (const char *p = msg; *p && o + 1 < size;) {
		if (strncmp(p, token, tl) == 0) {
			size_t ml = sizeof(mark) - 1;

			if (ml > size - 1 - o)
				ml = size - 1 - o;
			memcpy(tmp + o, mark, ml);
			o += ml;
			p += tl;
		} else {
			tmp[o++] = *p++;
		}
	}
	tmp[o] = '\0';
	memcpy(msg, tmp, o + 1);
	explicit_bzero(tmp, sizeof(tmp));
}

/* Copy a body with every occurrence of the token replaced, before anything is cut from it: a
 * snippet boundary must not leave half a token behind. */
static int scrub_body(const char *p, size_t len, const char *token, struct buf *out)
{
	size_t tl = token ? strlen(token) : 0;
	const char *hit;
	int r = 0;

	while (len && r == 0) {
		hit = tl ? memmem(p, len, token, tl) : NULL;
		if (!hit)
			return buf_append(out, p, len);
		r = buf_append(out, p, (size_t)(hit - p));
		if (r == 0)
			r = buf_append_str(out, "<redacted>");
		len -= (size_t)(hit - p) + tl;
		p = hit + tl;
	}
	return r;
}

static bool token_valid(const char *token)
{
	if (!token || !token[0])
		return false;
	for (const unsigned char *p = (const unsigned char *)token; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false; /* CR/LF would inject a header */
	return true;
}

/* GET base/api/v3/path?resource-class=RC; on 2xx resp->body holds the response. resp is always
 * initialised: the caller frees it. */
static int api_get(struct runner_api *api, const char *path, const char *resource_class,
                   struct http_response *resp, struct runner_api_error *err)
{
	struct http_request req;
	char url[1024];
	struct buf auth, scrubbed;
	const char *headers[3];
	int r;

	memset(resp, 0, sizeof(*resp));
	buf_init(&resp->body, BUF_MAX_DEFAULT);
	resp->retry_after_s = -1;
	buf_init(&auth, 0);
	if (!token_valid(api->token)) {
		str_copy(err->message, "missing or invalid Circle-Token", sizeof(err->message));
		r = -EINVAL;
		goto out;
	}
	r = runner_api_url(api, path, resource_class, url, sizeof(url));
	if (r < 0) {
		str_copy(err->message, "bad resource class or URL", sizeof(err->message));
		goto out;
	}
	r = buf_printf(&auth, "Circle-Token: %s", api->token);
	if (r < 0)
		goto out;
	headers[0] = auth.data;
	headers[1] = "Accept: application/json";
	headers[2] = NULL;
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = url;
	req.headers = headers;
	req.timeout_ms = api->timeout_ms > 0 ? api->timeout_ms : RUNNER_API_TIMEOUT_MS;
	req.max_body = BUF_MAX_DEFAULT;
	req.explicit_endpoint = api->explicit_base;
	r = http_perform(api->http, &req, resp);
	if (r < 0) {
		err->http_status = resp->status;
		str_copy(err->message, transport_word(r), sizeof(err->message));
		goto out;
	}
	if (resp->status < 200 || resp->status >= 300) {
		/* The body is bounded by max_body, so the copy is too (plus the marks). */
		buf_init(&scrubbed, 2 * BUF_MAX_DEFAULT);
		r = scrub_body(resp->body.data ? resp->body.data : "", resp->body.len, api->token,
		               &scrubbed);
		runner_api_parse_error(resp->status, r == 0 ? scrubbed.data : NULL,
		                       r == 0 ? scrubbed.len : 0, resp->retry_after_s, err);
		/* Again on the result: JSON escapes could have spelled the token differently. */
		scrub_token(err->message, sizeof(err->message), api->token);
		buf_wipe(&scrubbed);
		r = -EREMOTEIO;
		goto out;
	}
	err->http_status = resp->status;
out:
	buf_wipe(&auth);
	return r;
}

static int parse_items(const char *json, size_t len, const char *field, int64_t *count)
{
	return runner_api_parse_runners(json, len, count);
}

static int api_count(struct runner_api *api, const char *path, const char *resource_class,
                     const char *field,
                     int (*parse)(const char *json, size_t len, const char *field, int64_t *count),
                     int64_t *count, struct runner_api_error *err)
{
	struct runner_api_error local;
	struct http_response resp;
	int r;

	if (!err)
		err = &local;
	error_clear(err);
	r = api_get(api, path, resource_class, &resp, err);
	if (r < 0)
		goto out;
	r = parse(resp.body.data, resp.body.len, field, count);
	if (r < 0)
		str_copy(err->message, "malformed response", sizeof(err->message));
out:
	http_response_free(&resp);
	return r;
}

int runner_api_unclaimed(struct runner_api *api, const char *resource_class, int64_t *count,
                         struct runner_api_error *err)
{
	return api_count(api, "/runner/tasks", resource_class, "unclaimed_task_count",
	                 runner_api_parse_count, count, err);
}

int runner_api_running(struct runner_api *api, const char *resource_class, int64_t *count,
                       struct runner_api_error *err)
{
	return api_count(api, "/runner/tasks/running", resource_class, "running_runner_tasks",
	                 runner_api_parse_count, count, err);
}

int runner_api_list_runners(struct runner_api *api, const char *resource_class, int64_t *count,
                            struct runner_api_error *err)
{
	return api_count(api, "/runner", resource_class, NULL, parse_items, count, err);
}
