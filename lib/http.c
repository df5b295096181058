/* HTTP on libcurl. One easy handle per client (connection reuse); every request starts from
 * curl_easy_reset so no option of the previous request leaks into this one (aws-wire.md §4
 * rule 4: stale postfields poison the SigV4 payload hash). */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

#define HTTP_CONNECT_TIMEOUT_DEFAULT_MS 2000L
#define HTTP_TIMEOUT_DEFAULT_MS         10000L

struct http_client {
	CURL *h;
};

int http_client_new(struct http_client **out)
{
	struct http_client *c;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h = curl_easy_init();
	if (!c->h) {
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->h);
	free(c);
}

void http_response_free(struct http_response *resp)
{
	if (!resp)
		return;
	buf_free(&resp->body);
}

static void response_init(struct http_response *resp, size_t max_body)
{
	memset(resp, 0, sizeof(*resp));
	buf_init(&resp->body, max_body ? max_body : BUF_MAX_DEFAULT);
	resp->retry_after_s = -1;
}

static bool host_is_loopback(const char *host)
{
	char tmp[INET6_ADDRSTRLEN + 2];
	struct in_addr a4;
	struct in6_addr a6;
	size_t n = strlen(host);

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	/* curl reports IPv6 hosts with their brackets. */
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) == 1)
			return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
	}
	return false;
}

/* The instance metadata service at its own addresses, port 80: the one plain-http peer a
 * daemon on EC2 must reach without any endpoint variable (IMDS speaks no TLS). */
static bool host_is_imds(const char *host, const char *port)
{
	static const unsigned char imds6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
	                                        0,    0,    0,    0,    0, 0, 0x02, 0x54};
	char tmp[INET6_ADDRSTRLEN + 2];
	struct in_addr a4;
	struct in6_addr a6;
	size_t n = strlen(host);

	if (port && strcmp(port, "80") != 0)
		return false;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return ntohl(a4.s_addr) == 0xa9fea9feu; /* 169.254.169.254 */
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) == 1)
			return memcmp(&a6, imds6, sizeof(imds6)) == 0;
	}
	return false;
}

bool http_url_allowed(const char *url, bool explicit_endpoint)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *port = NULL;
	bool ok = false;

	if (!url)
		return false;
	u = curl_url();
	if (!u)
		return false;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
		goto out;
	if (strcasecmp(scheme, "https") == 0)
		ok = true;
	else if (strcasecmp(scheme, "http") == 0) {
		/* No default port: an explicit one comes back as given, none as NULL. */
		(void)curl_url_get(u, CURLUPART_PORT, &port, 0);
		ok = explicit_endpoint || host_is_loopback(host) || host_is_imds(host, port);
	}
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

/* IMF-fixdate only ("Sun, 06 Nov 1994 08:49:37 GMT"): the one format RFC 9110 lets senders use. */
static int parse_imf_fixdate(const char *s, time_t *out)
{
	static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	char wd[4], mon[4], tz[4];
	int d, y, h, mi, sec, n = 0;
	struct tm tm;
	size_t i;
	bool day_ok = false;

	if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", wd, &d, mon, &y, &h,
	           &mi, &sec, tz, &n) != 8 ||
	    n == 0)
		return -EINVAL;
	while (s[n] == ' ' || s[n] == '\t')
		n++;
	if (s[n] != '\0' || strcmp(tz, "GMT") != 0)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(days); i++)
		day_ok |= strcmp(wd, days[i]) == 0;
	if (!day_ok)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mon = -1;
	for (i = 0; i < ARRAY_SIZE(months); i++)
		if (strcmp(mon, months[i]) == 0)
			tm.tm_mon = (int)i;
	if (tm.tm_mon < 0 || d < 1 || d > 31 || y < 1970 || h > 23 || mi > 59 || sec > 60 ||
	    h < 0 || mi < 0 || sec < 0)
		return -EINVAL;
	tm.tm_mday = d;
	tm.tm_year = y - 1900;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*out = timegm(&tm);
	return 0;
}

long http_parse_retry_after(const char *value, long now_epoch)
{
	const char *p;
	char *end;
	long v;
	time_t t;

	if (!value)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value >= '0' && *value <= '9') {
		for (p = value; *p >= '0' && *p <= '9'; p++)
			;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0')
			return -1;
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno == ERANGE)
			return -1;
		return v;
	}
	if (parse_imf_fixdate(value, &t) < 0)
		return -1;
	if ((long)t <= now_epoch)
		return 0;
	return (long)t - now_epoch;
}

static size_t on_body(char *p, size_t size, size_t n, void *user)
{
	struct http_response *resp = user;
	size_t len = size * n;
	long status = 0;
	int r;

	if (resp->sink &&
	    curl_easy_getinfo(resp->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
	    status >= 200 && status < 300) {
		if (len > resp->body.max || resp->streamed > resp->body.max - len) {
			resp->cb_error = -EFBIG;
			return 0;
		}
		r = resp->sink(resp->sink_user, p, len);
		if (r < 0) {
			resp->cb_error = r;
			return 0;
		}
		resp->streamed += len;
		return len;
	}
	if (resp->sink) {
		/* A streamed download's error page: its start holds the message. A server may
		 * answer a 500 with hundreds of MiB; past the cap the transfer stops, and the
		 * caller learns the status (http_finish), not -EFBIG. */
		size_t cap =
		        resp->body.max < HTTP_ERROR_BODY_MAX ? resp->body.max : HTTP_ERROR_BODY_MAX;
		size_t room = cap > resp->body.len ? cap - resp->body.len : 0;

		if (len > room) {
			(void)buf_append(&resp->body, p, room);
			resp->error_body_cut = true;
			return 0;
		}
		r = buf_append(&resp->body, p, len);
		if (r < 0) {
			resp->cb_error = r;
			return 0;
		}
		return len;
	}
	r = buf_append(&resp->body, p, len);
	if (r < 0) {
		resp->cb_error = r;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return len;
}

static void copy_header_value(char *dst, size_t n, const char *v, size_t vlen)
{
	size_t i, c = vlen < n - 1 ? vlen : n - 1;

	/* Values end up in logs: keep them printable. */
	for (i = 0; i < c; i++)
		dst[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
	dst[c] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *user)
{
	struct http_response *resp = user;
	size_t len = size * n, nlen, vlen;
	const char *colon, *v;
	char tmp[128];

	/* A new status line (after a 1xx): forget what the interim response said. */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		resp->retry_after_s = -1;
		resp->content_type[0] = '\0';
		resp->request_id[0] = '\0';
		return len;
	}
	colon = memchr(p, ':', len);
	if (!colon)
		return len;
	nlen = (size_t)(colon - p);
	v = colon + 1;
	vlen = len - nlen - 1;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ' ||
	                v[vlen - 1] == '\t'))
		vlen--;

	if (nlen == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
		copy_header_value(tmp, sizeof(tmp), v, vlen);
		resp->retry_after_s = http_parse_retry_after(tmp, (long)time(NULL));
	} else if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
		copy_header_value(resp->content_type, sizeof(resp->content_type), v, vlen);
	} else if ((nlen == 16 && strncasecmp(p, "x-amzn-RequestId", 16) == 0) ||
	           (nlen == 16 && strncasecmp(p, "x-amz-request-id", 16) == 0)) {
		copy_header_value(resp->request_id, sizeof(resp->request_id), v, vlen);
	}
	return len;
}

#define SETOPT(h, opt, val)                                                                        \
	do {                                                                                       \
		if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) {                             \
			r = -EINVAL;                                                               \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

int http_prepare(CURL *h, const struct http_request *req, struct http_response *resp,
                 struct curl_slist **headers_out)
{
	struct curl_slist *hdrs = NULL, *tmp;
	const char *const *hp;
	long connect_ms, total_ms;
	int r = 0;

	response_init(resp, req->max_body);
	resp->sink = req->sink;
	resp->sink_user = req->sink_user;
	resp->easy = h;
	*headers_out = NULL;
	if (!req->url || !req->method)
		return -EINVAL;
	if (!http_url_allowed(req->url, req->explicit_endpoint))
		return -EPERM;
	if (req->sigv4 && !req->userpwd)
		return -EINVAL;

	connect_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
	                                         : HTTP_CONNECT_TIMEOUT_DEFAULT_MS;
	total_ms = req->timeout_ms > 0 ? req->timeout_ms : HTTP_TIMEOUT_DEFAULT_MS;

	curl_easy_reset(h);
	SETOPT(h, CURLOPT_URL, req->url);
	SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SETOPT(h, CURLOPT_TIMEOUT_MS, total_ms);
	SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	/* Redirects only where asked (a download whose digest is checked afterwards), at most 5,
	 * and to https only unless the URL itself came from an endpoint variable. */
	SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, req->explicit_endpoint ? "http,https" : "https");
	SETOPT(h, CURLOPT_FOLLOWLOCATION, req->follow_redirects ? 1L : 0L);
	SETOPT(h, CURLOPT_MAXREDIRS, 5L);
	SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(h, CURLOPT_USERAGENT, "runnerd/" RUNNERD_VERSION);
	if (req->no_proxy)
		SETOPT(h, CURLOPT_NOPROXY, "*");
	/* Refuse an announced oversize body before reading it; the write callback catches the rest
	 * (chunked or lying Content-Length). */
	if (resp->body.max < (size_t)INT64_MAX)
		SETOPT(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)resp->body.max);
	SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(h, CURLOPT_WRITEDATA, resp);
	SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(h, CURLOPT_HEADERDATA, resp);

	if (strcmp(req->method, "GET") == 0) {
		SETOPT(h, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
		/* Always POSTFIELDS + size, even for PUT: SigV4 in 7.88 hashes only postfields, and
		 * an empty PUT (the IMDS token) needs a zero-length body, not an upload callback.
		 */
		SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
		SETOPT(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		if (strcmp(req->method, "PUT") == 0)
			SETOPT(h, CURLOPT_CUSTOMREQUEST, "PUT");
	} else {
		r = -EINVAL;
		goto out;
	}

	for (hp = req->headers; hp && *hp; hp++) {
		tmp = curl_slist_append(hdrs, *hp);
		if (!tmp) {
			r = -ENOMEM;
			goto out;
		}
		hdrs = tmp;
	}
	if (hdrs)
		SETOPT(h, CURLOPT_HTTPHEADER, hdrs);

	if (req->sigv4) {
		/* AWS_SIGV4 also selects CURLAUTH_AWS_SIGV4; no signing happens without a user. */
		SETOPT(h, CURLOPT_AWS_SIGV4, req->sigv4);
		SETOPT(h, CURLOPT_USERPWD, req->userpwd);
	}
out:
	if (r < 0)
		curl_slist_free_all(hdrs);
	else
		*headers_out = hdrs;
	return r;
}

int http_finish(CURL *h, CURLcode rc, struct http_response *resp)
{
	long status = 0;

	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
		resp->status = status;
	if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && resp->error_body_cut))
		return 0;
	/* A streamed request's error page announced as larger than the download may be: the
	 * status is the answer, not the size. */
	if (rc == CURLE_FILESIZE_EXCEEDED && resp->sink && status > 0 &&
	    (status < 200 || status >= 300))
		return 0;
	if (rc == CURLE_WRITE_ERROR && resp->cb_error)
		return resp->cb_error;
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT; /* a redirect to a scheme not allowed: it would only repeat
		                          */
	/* The peer's certificate is not trusted (or unusable): a configuration problem that a
	 * retry will not fix, and one an operator must be able to tell from a broken network. */
	case CURLE_SSL_CACERT_BADFILE:
		return -ENOPKG; /* the CA bundle itself is missing or unreadable */
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return -EKEYREJECTED;
	default:
		return -EPROTO;
	}
}

int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp)
{
	struct curl_slist *hdrs = NULL;
	CURLcode rc;
	int r;

	r = http_prepare(c->h, req, resp, &hdrs);
	if (r < 0)
		goto out;
	rc = curl_easy_perform(c->h);
	r = http_finish(c->h, rc, resp);
out:
	/* The handle keeps pointers to the request's strings and header list; drop them now. */
	curl_easy_reset(c->h);
	curl_slist_free_all(hdrs);
	return r;
}
