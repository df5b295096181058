/* HTTP on libcurl: timeouts always, a response size limit always, TLS verification always;
 * plain http:// only to loopback, to the instance metadata service at its own addresses, or to
 * an endpoint the operator set explicitly. */
#ifndef RUNNERD_HTTP_H
#define RUNNERD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"

struct http_request {
	const char *method; /* "GET", "PUT", "POST" */
	const char *url;
	const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
	const char *body;           /* POST/PUT body or NULL */
	size_t body_len;
	long connect_timeout_ms; /* 0 = 2000 */
	long timeout_ms;         /* total; 0 = 10000 */
	size_t max_body;         /* 0 = BUF_MAX_DEFAULT */
	const char *sigv4;       /* "aws:amz:REGION:SERVICE" to sign, or NULL */
	const char *userpwd;     /* "AKID:SECRET" with sigv4 (never logged) */
	bool explicit_endpoint;  /* URL came from an endpoint variable: plain http allowed */
	/* Never through a proxy (http_proxy and friends): IMDS is link-local, and role credentials
	 * must not travel to a proxy in clear text. */
	bool no_proxy;
	/* Follow up to 5 redirects (https only, unless explicit_endpoint): for a download whose
	 * content is checked afterwards (agent_fetch's SHA-256). Never for signed calls. */
	bool follow_redirects;
	/* Stream a 2xx body here, chunk by chunk, instead of into resp.body (which then holds only
	 * a non-2xx body, for its message); max_body still caps the total streamed. A negative
	 * return aborts the transfer, and http_perform returns it. */
	int (*sink)(void *user, const char *data, size_t len);
	void *sink_user;
};

/* With a sink, a non-2xx body keeps its first HTTP_ERROR_BODY_MAX bytes (or max_body, when
 * smaller); then the transfer stops and the status stands. */
#define HTTP_ERROR_BODY_MAX ((size_t)64 * 1024)

struct http_response {
	long status; /* 0 when no response arrived */
	struct buf body;
	long retry_after_s; /* Retry-After seconds, -1 when absent */
	char content_type[128];
	char request_id[128]; /* x-amzn-RequestId / x-amz-request-id, if any */
	int cb_error;         /* internal: write callback failure (-EFBIG, -ENOMEM, the sink's) */
	uint64_t streamed;    /* bytes given to the request's sink */
	bool error_body_cut;  /* a streamed request's non-2xx body stopped at HTTP_ERROR_BODY_MAX */
	/* internal: the sink and the handle whose status decides where a body goes */
	int (*sink)(void *user, const char *data, size_t len);
	void *sink_user;
	CURL *easy;
};

struct http_client; /* one curl easy handle, reused for connection reuse */

int http_client_new(struct http_client **out);
void http_client_free(struct http_client *c);

/* 0 when a response arrived, whatever its status. Otherwise: -EPERM (plain http to a non-loopback
 * host without explicit_endpoint), -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH (resolve/connect),
 * -EFBIG (body over max_body), -EKEYREJECTED (the peer's TLS certificate is not trusted by the
 * CA bundle, or does not name the host), -ENOPKG (the CA bundle is missing or unreadable),
 * -EPROTONOSUPPORT (a redirect to a scheme not allowed), -EPROTO (other transport errors),
 * -ENOMEM. With a sink, a non-2xx answer whose body is cut at HTTP_ERROR_BODY_MAX, or announced
 * larger than max_body, is still 0 with its status.
 * resp is always initialised; free it with http_response_free(). */
int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp);
void http_response_free(struct http_response *resp);

/* For curl multi users (the scaler): configure easy handle h for req, writing into resp.
 * *headers_out receives the slist to free after the transfer. Same checks as http_perform. */
int http_prepare(CURL *h, const struct http_request *req, struct http_response *resp,
                 struct curl_slist **headers_out);
/* Map a finished transfer's CURLcode to the return values of http_perform and fill status. */
int http_finish(CURL *h, CURLcode rc, struct http_response *resp);

/* Pure: may this URL be used? https always; http only when the host is loopback
 * (127.0.0.0/8, ::1, localhost), the instance metadata service at its own addresses on port 80
 * (169.254.169.254, [fd00:ec2::254]), or explicit is true. Other schemes never. */
bool http_url_allowed(const char *url, bool explicit_endpoint);
/* Pure: Retry-After header value (delta-seconds or HTTP-date) to seconds, -1 if unparsable. */
long http_parse_retry_after(const char *value, long now_epoch);

#endif
