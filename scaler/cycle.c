/* The scaling cycle on curl multi (see cycle.h). Transfers are driven by the caller's epoll loop
 * through the multi socket interface; nothing here blocks. */
#include "cycle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <syslog.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aws_services.h"
#include "util.h"

#define BACKOFF_CAP_MS       ((uint64_t)300000) /* 5 min between tries of a failing pool, at most */
#define RETRY_AFTER_CAP_S    3600L              /* a Retry-After beyond an hour is a server bug */
#define DESCRIBE_MAX_PAGES   20                 /* 50 names at 100 a page is one page */
#define ASG_FORM_MAX         ((size_t)64 * 1024)
#define CONNECT_TIMEOUT_MS   2000L
#define MAX_HOST_CONNECTIONS 64L
#define MAX_CONNECTS         128L

struct curl_sock {
	struct ev_source src;
	struct scaler *s;
	bool dead;
	struct curl_sock *next_dead;
};

static void report(struct scaler *s, int priority, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void report(struct scaler *s, int priority, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (!s->report)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->report(priority, line);
}

/* ---- pure helpers ------------------------------------------------------------------------- */

static bool in_list(const char *code, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(code, list[i]) == 0)
			return true;
	return false;
}

enum api_error_kind cycle_classify(int rc, long status, const char *aws_code)
{
	static const char *const throttle[] = {
	        "Throttling",
	        "ThrottlingException",
	        "RequestLimitExceeded",
	        "RequestThrottled",
	        "RequestThrottledException",
	        "TooManyRequestsException",
	        "ThrottledException",
	        "SlowDown",
	};
	static const char *const auth[] = {
	        "InvalidClientTokenId",
	        "SignatureDoesNotMatch",
	        "AccessDenied",
	        "AccessDeniedException",
	        "UnrecognizedClientException",
	        "ExpiredToken",
	        "ExpiredTokenException",
	        "MissingAuthenticationToken",
	        "IncompleteSignature",
	        "InvalidSignatureException",
	        "AuthFailure",
	};

	if (rc < 0) {
		switch (rc) {
		case -ETIMEDOUT:
			return API_ERR_TIMEOUT;
		case -ECONNREFUSED:
		case -EHOSTUNREACH:
		case -ECONNRESET:
			return API_ERR_CONNECT;
		case -EFBIG:
		case -EBADMSG:
			return API_ERR_MALFORMED;
		default:
			return API_ERR_OTHER;
		}
	}
	if (aws_code && aws_code[0]) {
		if (in_list(aws_code, throttle, ARRAY_SIZE(throttle)))
			return API_ERR_THROTTLED;
		if (in_list(aws_code, auth, ARRAY_SIZE(auth)))
			return API_ERR_AUTH;
	}
	if (status == 429)
		return API_ERR_THROTTLED;
	if (status == 401 || status == 403)
		return API_ERR_AUTH;
	if (status >= 500 && status <= 599)
		return API_ERR_HTTP_5XX;
	if (status >= 400 && status <= 499)
		return API_ERR_HTTP_4XX;
	return API_ERR_OTHER;
}

enum suspend_retry cycle_suspend_retry(int rc, long status, const char *aws_code)
{
	static const char *const permission[] = {
	        "AccessDenied",
	        "AccessDeniedException",
	        "UnauthorizedOperation",
	};
	static const char *const passing[] = {
	        /* credentials that expired in flight: the next ones are fetched before expiry */
	        "ExpiredToken",
	        "ExpiredTokenException",
	        "RequestExpired",
	        /* the group busy with something else (ResourceInUse, 400, is one of the two
	         * faults SuspendProcesses models; ResourceContention is a 5xx) */
	        "ResourceInUse",
	        "ScalingActivityInProgress",
	        /* botocore's transient codes */
	        "RequestTimeout",
	        "RequestTimeoutException",
	        "PriorRequestNotComplete",
	};
	enum api_error_kind kind;

	if (rc < 0)
		return SUSPEND_RETRY_SOON; /* no answer: a timeout, a reset, no memory */
	if (aws_code && aws_code[0]) {
		if (in_list(aws_code, permission, ARRAY_SIZE(permission)))
			return SUSPEND_RETRY_PERMISSION;
		if (in_list(aws_code, passing, ARRAY_SIZE(passing)))
			return SUSPEND_RETRY_SOON;
	} else if (status == 403) {
		return SUSPEND_RETRY_PERMISSION;
	}
	kind = cycle_classify(0, status, aws_code);
	if (kind == API_ERR_THROTTLED || kind == API_ERR_HTTP_5XX)
		return SUSPEND_RETRY_SOON;
	return SUSPEND_RETRY_LATER;
}

uint64_t cycle_backoff_ms(unsigned failures, uint64_t interval_ms, long retry_after_s, uint32_t rnd)
{
	uint64_t cap = interval_ms > BACKOFF_CAP_MS ? interval_ms : BACKOFF_CAP_MS;
	uint64_t d = backoff_full_jitter_ms(failures ? failures - 1 : 0, interval_ms, cap, rnd);

	if (retry_after_s > 0) {
		uint64_t ra = (uint64_t)(retry_after_s < RETRY_AFTER_CAP_S ? retry_after_s
		                                                           : RETRY_AFTER_CAP_S) *
		              1000;

		if (ra > d)
			d = ra;
	}
	return d;
}

/* A text value: bare when it is one plain word, else quoted with \" and \\ escaped. */
static int put_value(struct buf *b, const char *v)
{
	bool plain = v[0] != '\0';
	int r = 0;

	for (const char *p = v; *p && plain; p++)
		if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '=' || (unsigned char)*p >= 0x7f)
			plain = false;
	if (plain)
		return buf_append_str(b, v);
	r = buf_append(b, "\"", 1);
	for (const char *p = v; *p && r == 0; p++) {
		if (*p == '"' || *p == '\\')
			r = buf_printf(b, "\\%c", *p);
		else if (*p == '\n')
			r = buf_append_str(b, "\\n");
		else if ((unsigned char)*p < ' ')
			r = buf_append(b, "?", 1);
		else
			r = buf_append(b, p, 1);
	}
	if (r == 0)
		r = buf_append(b, "\"", 1);
	return r;
}

static int put_num(struct buf *b, const char *key, int64_t v)
{
	if (v < 0)
		return buf_printf(b, " %s=-", key);
	return buf_printf(b, " %s=%" PRId64, key, v);
}

static bool json_num(cJSON *o, const char *key, int64_t v)
{
	return v < 0 ? cJSON_AddNullToObject(o, key) != NULL
	             : cJSON_AddNumberToObject(o, key, (double)v) != NULL;
}

int cycle_format_decision(const struct decision_line *d, int format, char *out, size_t n)
{
	struct buf b;
	int r = 0;

	if (n == 0)
		return -ENOSPC;
	out[0] = '\0';
	buf_init(&b, n);
	if (format == SCALER_LOG_JSON) {
		cJSON *o = cJSON_CreateObject();
		char *txt = NULL;

		if (!o || !cJSON_AddStringToObject(o, "pool", d->pool) ||
		    !cJSON_AddStringToObject(o, "resource_class", d->resource_class) ||
		    !json_num(o, "unclaimed", d->unclaimed) ||
		    !json_num(o, "running", d->running) || !json_num(o, "current", d->current) ||
		    !json_num(o, "desired", d->desired) ||
		    !cJSON_AddStringToObject(o, "action", d->action) ||
		    !cJSON_AddStringToObject(o, "reason", d->reason))
			r = -ENOMEM;
		if (r == 0) {
			txt = cJSON_PrintUnformatted(o);
			r = txt ? buf_append_str(&b, txt) : -ENOMEM;
		}
		cJSON_free(txt);
		cJSON_Delete(o);
	} else {
		r = buf_append_str(&b, "pool=");
		if (r == 0)
			r = put_value(&b, d->pool);
		if (r == 0)
			r = buf_append_str(&b, " resource_class=");
		if (r == 0)
			r = put_value(&b, d->resource_class);
		if (r == 0)
			r = put_num(&b, "unclaimed", d->unclaimed);
		if (r == 0)
			r = put_num(&b, "running", d->running);
		if (r == 0)
			r = put_num(&b, "current", d->current);
		if (r == 0)
			r = put_num(&b, "desired", d->desired);
		if (r == 0)
			r = buf_printf(&b, " action=%s reason=", d->action);
		if (r == 0)
			r = put_value(&b, d->reason[0] ? d->reason : "-");
	}
	if (r == 0 && b.len < n)
		memcpy(out, b.data, b.len + 1);
	else if (r == 0 || r == -EFBIG)
		r = -ENOSPC;
	buf_free(&b);
	return r;
}

int64_t cycle_expected_instances(int64_t pool_max, int64_t seen_instances, int64_t seen_desired)
{
	int64_t base;

	if (seen_instances < 0 && seen_desired < 0)
		base = pool_max;
	else
		base = seen_instances > seen_desired ? seen_instances : seen_desired;
	if (base < 0)
		base = 0;
	if (base > INT64_MAX / 2)
		return INT64_MAX;
	return base + base / 4 + 16;
}

size_t cycle_runner_list_bytes(int64_t expected_instances)
{
	size_t room = (CYCLE_RUNNER_LIST_MAX_BYTES - CYCLE_RUNNER_LIST_BASE_BYTES) /
	              (4 * CYCLE_RUNNER_BYTES);

	if (expected_instances <= 0)
		return CYCLE_RUNNER_LIST_BASE_BYTES;
	if ((uint64_t)expected_instances >= room)
		return CYCLE_RUNNER_LIST_MAX_BYTES;
	return CYCLE_RUNNER_LIST_BASE_BYTES + (size_t)expected_instances * 4 * CYCLE_RUNNER_BYTES;
}

static size_t pool_bytes_of(const size_t *bytes, size_t pool)
{
	return bytes ? bytes[pool] : asg_describe_group_bytes(0);
}

size_t cycle_chunk_cap(const struct chunk *c, const size_t *bytes)
{
	size_t cap = ASG_DESCRIBE_BASE_BYTES;

	for (size_t i = 0; i < c->n && cap < ASG_DESCRIBE_MAX_BYTES; i++) {
		size_t b = pool_bytes_of(bytes, c->pools[i]);

		cap = b >= ASG_DESCRIBE_MAX_BYTES - cap ? ASG_DESCRIBE_MAX_BYTES : cap + b;
	}
	return cap;
}

int cycle_plan_chunks(const char *const *regions, const size_t *bytes, const bool *take, size_t n,
                      struct chunk **out, size_t *nout, size_t *cap_out)
{
	struct chunk *cs = NULL, *grown;
	size_t *sums = NULL, *gsums;
	size_t nc = 0, cap = 0;

	*out = NULL;
	*nout = 0;
	if (cap_out)
		*cap_out = 0;
	for (size_t i = 0; i < n; i++) {
		struct chunk *c = NULL;
		size_t b;

		if (take && !take[i])
			continue;
		b = pool_bytes_of(bytes, i);
		/* The newest batch of this region, if it has room (older ones are full). */
		for (size_t j = nc; j-- > 0;) {
			if (strcmp(cs[j].region, regions[i]) == 0) {
				if (cs[j].n < CYCLE_DESCRIBE_BATCH && b <= CYCLE_BATCH_BYTES &&
				    sums[j] <= CYCLE_BATCH_BYTES - b) {
					c = &cs[j];
					sums[j] += b;
				}
				break;
			}
		}
		if (!c) {
			if (nc == cap) {
				cap = cap ? cap * 2 : 4;
				grown = realloc(cs, cap * sizeof(*cs));
				gsums = grown ? realloc(sums, cap * sizeof(*sums)) : NULL;
				if (!grown || !gsums) {
					free(grown ? grown : cs);
					free(sums);
					return -ENOMEM;
				}
				cs = grown;
				sums = gsums;
			}
			c = &cs[nc];
			memset(c, 0, sizeof(*c));
			c->region = regions[i];
			sums[nc++] = b;
		}
		c->pools[c->n++] = i;
	}
	for (size_t j = 0; j < nc; j++)
		cs[j].cap = cycle_chunk_cap(&cs[j], bytes);
	free(sums);
	*out = cs;
	*nout = nc;
	if (cap_out)
		*cap_out = cap;
	return 0;
}

enum describe_retry cycle_describe_retry(size_t npools, size_t cap, uint64_t left_ms)
{
	if (npools == 0 || left_ms < CYCLE_RETRY_MIN_LEFT_MS)
		return DESCRIBE_GIVE_UP;
	if (npools >= 2)
		return DESCRIBE_SPLIT;
	return cap < ASG_DESCRIBE_MAX_BYTES ? DESCRIBE_ALONE : DESCRIBE_GIVE_UP;
}

int cycle_split_chunk(const struct chunk *c, const size_t *bytes, struct chunk *a, struct chunk *b)
{
	struct chunk src;
	size_t half;

	if (c->n < 2 || c->n > CYCLE_DESCRIBE_BATCH)
		return -EINVAL;
	src = *c; /* c may be a or b */
	half = (src.n + 1) / 2;
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	a->region = b->region = src.region;
	memcpy(a->pools, src.pools, half * sizeof(src.pools[0]));
	a->n = half;
	memcpy(b->pools, src.pools + half, (src.n - half) * sizeof(src.pools[0]));
	b->n = src.n - half;
	a->cap = cycle_chunk_cap(a, bytes);
	b->cap = cycle_chunk_cap(b, bytes);
	return 0;
}

/* name=value, form-encoded; aws_form_append puts the '&' between pairs. */
static int form_add(struct buf *form, const char *name, const char *value)
{
	return aws_form_append(form, name, value);
}

int cycle_describe_form(const char *const *names, size_t n, const char *next_token, struct buf *out)
{
	char key[64];
	int r;

	if (n == 0 || n > CYCLE_DESCRIBE_BATCH)
		return -EINVAL;
	r = form_add(out, "Action", "DescribeAutoScalingGroups");
	if (r == 0)
		r = form_add(out, "Version", "2011-01-01");
	for (size_t i = 0; i < n && r == 0; i++) {
		snprintf(key, sizeof(key), "AutoScalingGroupNames.member.%zu", i + 1);
		r = form_add(out, key, names[i]);
	}
	if (r == 0)
		r = form_add(out, "MaxRecords", "100");
	if (r == 0 && next_token && next_token[0])
		r = form_add(out, "NextToken", next_token);
	return r;
}

int cycle_set_form(const char *asg, int64_t desired, struct buf *out)
{
	char num[24];
	int r;

	if (!asg || !asg[0] || desired < 0)
		return -EINVAL;
	snprintf(num, sizeof(num), "%" PRId64, desired);
	r = form_add(out, "Action", "SetDesiredCapacity");
	if (r == 0)
		r = form_add(out, "Version", "2011-01-01");
	if (r == 0)
		r = form_add(out, "AutoScalingGroupName", asg);
	if (r == 0)
		r = form_add(out, "DesiredCapacity", num);
	if (r == 0)
		r = form_add(out, "HonorCooldown", "false");
	return r;
}

int cycle_suspend_form(const char *asg, struct buf *out)
{
	int r;

	if (!asg || !asg[0])
		return -EINVAL;
	r = form_add(out, "Action", "SuspendProcesses");
	if (r == 0)
		r = form_add(out, "Version", "2011-01-01");
	if (r == 0)
		r = form_add(out, "AutoScalingGroupName", asg);
	if (r == 0)
		r = form_add(out, "ScalingProcesses.member.1", "AZRebalance");
	return r;
}

/* ---- curl multi on epoll ------------------------------------------------------------------ */

static void drain(struct scaler *s);

static void sock_event(struct ev_source *src, uint32_t events)
{
	struct curl_sock *cs = (struct curl_sock *)src;
	struct scaler *s = cs->s;
	int flags = 0, running;
	int fd = src->fd;

	if (cs->dead)
		return; /* removed earlier in this same epoll batch */
	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	/* cs may be freed inside (CURL_POLL_REMOVE): only s and fd from here on. */
	(void)curl_multi_socket_action(s->multi, fd, flags, &running);
	drain(s);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct scaler *s = userp;
	struct curl_sock *cs = socketp;
	uint32_t ev = 0;

	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
			(void)curl_multi_assign(s->multi, fd, NULL);
			/* Not freed yet: the loop may still hold an event for it from the same
			 * epoll_wait batch. scaler_reap() frees it after the batch. */
			cs->dead = true;
			cs->next_dead = s->graveyard;
			s->graveyard = cs;
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (!cs) {
		cs = calloc(1, sizeof(*cs));
		if (!cs)
			return -1;
		cs->src.fd = fd;
		cs->src.fn = sock_event;
		cs->s = s;
		if (ev_ctl(s->epfd, EPOLL_CTL_ADD, &cs->src, ev) == -EEXIST &&
		    ev_ctl(s->epfd, EPOLL_CTL_MOD, &cs->src, ev) < 0) {
			free(cs);
			return -1;
		}
		(void)curl_multi_assign(s->multi, fd, cs);
		return 0;
	}
	return ev_ctl(s->epfd, EPOLL_CTL_MOD, &cs->src, ev) < 0 ? -1 : 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct scaler *s = userp;
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (timeout_ms == 0) {
		its.it_value.tv_nsec = 1; /* "now": from the loop, not from inside this callback */
	} else if (timeout_ms > 0) {
		its.it_value.tv_sec = timeout_ms / 1000;
		its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000L;
	}
	return timerfd_settime(s->timer.fd, 0, &its, NULL) < 0 ? -1 : 0;
}

static void timer_event(struct ev_source *src, uint32_t events)
{
	struct scaler *s = (struct scaler *)((char *)src - offsetof(struct scaler, timer));
	uint64_t ticks;
	int running;

	(void)!read(src->fd, &ticks, sizeof(ticks));
	(void)curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain(s);
}

/* ---- per-pool bookkeeping ----------------------------------------------------------------- */

static void pool_fail(struct pool_state *p, enum api_error_kind kind, long retry_after_s,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void pool_fail(struct pool_state *p, enum api_error_kind kind, long retry_after_s,
                      const char *fmt, ...)
{
	va_list ap;

	p->failed = true;
	p->api_errors[kind]++;
	if (kind == API_ERR_AUTH)
		p->auth_failed = true;
	if (retry_after_s > p->retry_after_s)
		p->retry_after_s = retry_after_s;
	if (p->err[0])
		return; /* the first failure explains the hold */
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
}

static const char *transport_word(int rc)
{
	switch (rc) {
	case -ETIMEDOUT:
		return "timeout";
	case -ECONNREFUSED:
		return "connection refused";
	case -EHOSTUNREACH:
		return "host unreachable";
	case -EFBIG:
		return "response too large";
	case -EBADMSG:
		return "malformed response";
	case -EPERM:
		return "URL not allowed (plain http to a non-loopback host)";
	case -EKEYREJECTED:
		return "TLS certificate verification failed (not trusted by the system CA bundle, "
		       "or "
		       "not naming the host)";
	case -ENOPKG:
		return "no system CA bundle (install ca-certificates)";
	case -ENOMEM:
		return "out of memory";
	default:
		return "transport error";
	}
}

/* ---- the request engine ------------------------------------------------------------------- */

static bool is_list(uint32_t kind)
{
	return kind == XFER_RUNNERS || kind == XFER_LAUNCHES;
}

static size_t list_limit(const struct scaler *s, size_t pool)
{
	const struct pool_state *p = &s->pools[pool];

	return cycle_runner_list_bytes(
	        cycle_expected_instances(p->cfg->max, p->seen_instances, p->seen_desired));
}

static int queue_push(struct scaler *s, uint32_t kind, size_t index)
{
	if (s->qlen == s->qcap) {
		size_t cap = s->qcap ? s->qcap * 2 : 64;
		struct job *q = realloc(s->queue, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		s->queue = q;
		s->qcap = cap;
	}
	s->queue[s->qlen].kind = kind;
	s->queue[s->qlen].index = (uint32_t)index;
	s->qlen++;
	return 0;
}

static int prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
	struct slot *sl = clientp;

	/* The fencing point: the last moment before a write leaves this process. */
	if (!election_may_act(sl->s->election, now_mono_ms())) {
		sl->fenced = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

/* The Auto Scaling endpoint of region, with the "/" path aws_endpoint leaves to its caller. */
static const char *pool_asg_endpoint(const char *region, char *url, size_t n, bool *explicit_ep)
{
	size_t len;

	if (aws_endpoint(AWS_AUTOSCALING, region, url, n, explicit_ep, NULL) < 0)
		return NULL;
	len = strlen(url);
	if (len + 2 > n)
		return NULL;
	url[len] = '/';
	url[len + 1] = '\0';
	return url;
}

/* Build and add one transfer. 0, or -errno (then nothing was added). */
static int slot_start(struct scaler *s, struct slot *sl, struct job job, long timeout_ms)
{
	static const char *const paths[] = {[XFER_UNCLAIMED] = "/runner/tasks",
	                                    [XFER_RUNNING] = "/runner/tasks/running",
	                                    [XFER_RUNNERS] = "/runner",
	                                    [XFER_LAUNCHES] = "/runner"};
	struct http_request req;
	const char *headers[4] = {NULL};
	char url[1024], auth[1024], token_hdr[2200], sigv4[128], userpwd[300];
	const struct aws_creds *cr = &s->aws->creds;
	const char *region;
	int r;

	memset(&req, 0, sizeof(req));
	buf_reset(&sl->body);
	sl->job = job;
	sl->fenced = false;
	req.timeout_ms = timeout_ms;
	req.connect_timeout_ms = timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS;
	auth[0] = token_hdr[0] = userpwd[0] = '\0';

	if (job.kind <= XFER_LAUNCHES) {
		const struct pool_state *p = &s->pools[job.index];

		r = runner_api_url(s->api, paths[job.kind], p->cfg->resource_class, url,
		                   sizeof(url));
		if (r < 0)
			return r;
		if (snprintf(auth, sizeof(auth), "Circle-Token: %s",
		             s->api->token ? s->api->token : "") >= (int)sizeof(auth))
			return -E2BIG;
		headers[0] = auth;
		headers[1] = "Accept: application/json";
		req.method = "GET";
		req.url = url;
		req.explicit_endpoint = s->api->explicit_base;
		if (is_list(job.kind))
			req.max_body = list_limit(s, job.index);
	} else {
		bool explicit_ep = false;

		if (job.kind == XFER_DESCRIBE) {
			const struct chunk *c = &s->chunks[job.index];
			const char *names[CYCLE_DESCRIBE_BATCH];

			for (size_t i = 0; i < c->n; i++)
				names[i] = s->pools[c->pools[i]].cfg->asg;
			region = c->region;
			req.max_body = c->cap;
			r = cycle_describe_form(names, c->n, c->next_token, &sl->body);
		} else if (job.kind == XFER_SET || job.kind == XFER_SUSPEND) {
			const struct pool_state *p = &s->pools[job.index];

			region = p->region;
			r = job.kind == XFER_SUSPEND
			            ? cycle_suspend_form(p->cfg->asg, &sl->body)
			            : cycle_set_form(p->cfg->asg, p->decision.desired, &sl->body);
		} else {
			region = s->pools[job.index].region;
			r = warm_pool_form(s, &job, &sl->body);
		}
		if (r < 0)
			return r;
		if (!pool_asg_endpoint(region, url, sizeof(url), &explicit_ep))
			return -EINVAL;
		snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:%s", region,
		         aws_signing_name(AWS_AUTOSCALING));
		if (snprintf(userpwd, sizeof(userpwd), "%s:%s", cr->akid, cr->secret) >=
		    (int)sizeof(userpwd))
			return -E2BIG;
		headers[0] = "Content-Type: application/x-www-form-urlencoded; charset=utf-8";
		if (cr->token[0]) {
			snprintf(token_hdr, sizeof(token_hdr), "X-Amz-Security-Token: %s",
			         cr->token);
			headers[1] = token_hdr;
		}
		req.method = "POST";
		req.url = url;
		req.body = sl->body.data;
		req.body_len = sl->body.len;
		req.sigv4 = sigv4;
		req.userpwd = userpwd;
		req.explicit_endpoint = explicit_ep;
	}
	req.headers = headers;

	if (!sl->h) {
		sl->h = curl_easy_init();
		if (!sl->h) {
			r = -ENOMEM;
			goto out;
		}
	}
	r = http_prepare(sl->h, &req, &sl->resp, &sl->hdrs);
	if (r < 0)
		goto out;
	(void)curl_easy_setopt(sl->h, CURLOPT_PRIVATE, sl);
	/* Over TLS, prefer waiting for an HTTP/2 connection to multiplex over opening another
	 * one; plain http is HTTP/1.1 only, where waiting would just serialise. */
	if (strncmp(req.url, "https://", 8) == 0)
		(void)curl_easy_setopt(sl->h, CURLOPT_PIPEWAIT, 1L);
	if (job.kind == XFER_SET || job.kind == XFER_SUSPEND || job.kind == XFER_WARM_PUT) {
		if (curl_easy_setopt(sl->h, CURLOPT_PREREQFUNCTION, prereq_cb) != CURLE_OK ||
		    curl_easy_setopt(sl->h, CURLOPT_PREREQDATA, sl) != CURLE_OK) {
			r = -ENOTSUP; /* no fencing point: no write */
			goto out;
		}
	}
	if (curl_multi_add_handle(s->multi, sl->h) != CURLM_OK) {
		r = -ENOMEM;
		goto out;
	}
	sl->busy = true;
	s->inflight++;
out:
	explicit_bzero(auth, sizeof(auth));
	explicit_bzero(userpwd, sizeof(userpwd));
	explicit_bzero(token_hdr, sizeof(token_hdr));
	if (r < 0) {
		http_response_free(&sl->resp);
		curl_slist_free_all(sl->hdrs);
		sl->hdrs = NULL;
	}
	return r;
}

static void job_failed(struct scaler *s, struct job job, int rc);

/* Describes whose response limits would take the describes in flight over
 * CYCLE_DESCRIBE_BUDGET wait (one always runs); they go back in the queue when one ends. */
static bool describe_must_wait(struct scaler *s, struct job job)
{
	if (job.kind != XFER_DESCRIBE || s->describe_reserved == 0 ||
	    s->chunks[job.index].cap <= CYCLE_DESCRIBE_BUDGET - s->describe_reserved)
		return false;
	/* A batch has one describe at a time, so one entry per batch is enough; deferred has
	 * chunks_cap entries (chunks_grow). */
	if (s->ndeferred >= s->chunks_cap)
		return false;
	s->deferred[s->ndeferred++] = job.index;
	return true;
}

/* Runner lists whose response limits would take the lists in flight over
 * CYCLE_RUNNER_LIST_BUDGET wait (one always runs); they go back in the queue when one ends. A
 * pool has one list read at a time, so npools entries are enough. */
static bool list_must_wait(struct scaler *s, struct job job)
{
	if (!is_list(job.kind) || s->list_reserved == 0 ||
	    list_limit(s, job.index) <= CYCLE_RUNNER_LIST_BUDGET - s->list_reserved)
		return false;
	if (s->nlists_waiting >= s->npools)
		return false;
	s->lists_waiting[s->nlists_waiting++] = job;
	return true;
}

static void pump(struct scaler *s)
{
	while (s->qhead < s->qlen && s->inflight < CYCLE_MAX_INFLIGHT) {
		struct job job = s->queue[s->qhead++];
		uint64_t now = now_mono_ms();
		struct slot *sl = NULL;
		int r;

		if (now >= s->phase_deadline) {
			job_failed(s, job, -ETIMEDOUT);
			continue;
		}
		if (describe_must_wait(s, job) || list_must_wait(s, job))
			continue;
		for (size_t i = 0; i < CYCLE_MAX_INFLIGHT; i++) {
			if (!s->slots[i].busy) {
				sl = &s->slots[i];
				break;
			}
		}
		r = slot_start(s, sl, job, (long)(s->phase_deadline - now));
		if (r < 0) {
			job_failed(s, job, r);
		} else if (job.kind == XFER_DESCRIBE) {
			sl->reserved = s->chunks[job.index].cap;
			s->describe_reserved += sl->reserved;
		} else if (is_list(job.kind)) {
			sl->list_reserved = list_limit(s, job.index);
			s->list_reserved += sl->list_reserved;
		}
	}
}

/* ---- results ------------------------------------------------------------------------------ */

static void on_count(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	bool unclaimed = sl->job.kind == XFER_UNCLAIMED;
	const char *what = unclaimed ? "unclaimed" : "running";
	struct runner_api_error err;
	long status = sl->resp.status;
	int64_t v;

	if (rc == 0 && status >= 200 && status <= 299) {
		rc = runner_api_parse_count(
		        sl->resp.body.data, sl->resp.body.len,
		        unclaimed ? "unclaimed_task_count" : "running_runner_tasks", &v);
		if (rc == 0) {
			if (unclaimed) {
				p->unclaimed = v;
				p->have_unclaimed = true;
			} else {
				p->running = v;
				p->have_running = true;
			}
			return;
		}
		rc = -EBADMSG;
	}
	if (rc < 0) {
		pool_fail(p, cycle_classify(rc, 0, NULL), -1, "Runner API %s: %s", what,
		          transport_word(rc));
		return;
	}
	runner_api_parse_error(status, sl->resp.body.data, sl->resp.body.len,
	                       sl->resp.retry_after_s, &err);
	pool_fail(p, cycle_classify(0, status, NULL), sl->resp.retry_after_s,
	          "Runner API %s: HTTP %ld%s%s", what, status, err.message[0] ? ": " : "",
	          err.message);
	if (status == 401 || status == 403)
		s->token_rejected = true;
}

/* The class check's verdict from a runner list answer: status 200 with n runners, or 404. */
static void class_listed(struct scaler *s, struct pool_state *p, long status, int64_t n)
{
	p->listed = true;
	if (status == 404)
		report(s, LOG_WARNING,
		       "WARNING: pool %s: the Runner API does not know resource class %s (HTTP "
		       "404): check [pool %s] resource_class",
		       p->cfg->name, p->cfg->resource_class, p->cfg->name);
	else if (n == 0)
		report(s, LOG_WARNING,
		       "WARNING: pool %s: resource class %s lists no runners at all. If it "
		       "should have some, the class name is wrong or the token belongs to "
		       "another organisation: the Runner API then reports 0 tasks, and "
		       "this "
		       "pool will never scale out",
		       p->cfg->name, p->cfg->resource_class);
	else
		report(s, LOG_INFO, "pool %s: resource class %s has %" PRId64 " runners",
		       p->cfg->name, p->cfg->resource_class, n);
}

static void on_runners(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	long status = sl->resp.status;
	int64_t n = 0;

	if (rc == 0 && status >= 200 && status <= 299 &&
	    runner_api_parse_runners(sl->resp.body.data, sl->resp.body.len, &n) == 0) {
		class_listed(s, p, 200, n);
		return;
	}
	if (rc == 0 && status == 404) {
		class_listed(s, p, 404, 0);
		return;
	}
	/* Advisory only: try again next cycle; the count requests report real failures. */
	report(s, LOG_DEBUG, "pool %s: could not list runners of %s (%s, HTTP %ld); will retry",
	       p->cfg->name, p->cfg->resource_class, rc < 0 ? transport_word(rc) : "error", status);
}

static int runner_named(void *ctx, const char *name)
{
	launches_runner(ctx, name);
	return 0;
}

/* The runner list read behind the describe: judge the launches. A read that fails judges
 * nothing (it counts neither as a failure nor as a success) and holds nothing either. */
static void on_launches(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	long status = sl->resp.status;
	struct launch_verdict v;
	char ids[LAUNCH_IDS_KEPT * (LAUNCH_ID_MAX + 2) + 32];
	int64_t n = 0;

	if (rc == 0 && status >= 200 && status <= 299) {
		rc = runner_api_parse_runner_names(sl->resp.body.data, sl->resp.body.len,
		                                   runner_named, &p->launches, &n);
		if (rc < 0)
			rc = -EBADMSG;
	}
	if (rc == 0 && status >= 200 && status <= 299) {
		p->have_list = true;
		p->list_status = 200;
		p->list_count = n;
		p->list_too_large = false;
		launches_judge(&p->launches, (unsigned)p->cfg->launch_failures, now_mono_ms(), &v);
		p->launch_failures_total += v.failed;
		if (v.backoff_ended)
			report(s, LOG_INFO,
			       "pool %s: the runner of %s connected: launch back-off ended",
			       p->cfg->name, v.connected_id);
		if (v.backoff_started) {
			bool unprotected = !p->asg_protect_new || p->launches.unprotected_now > 0;

			launches_format_ids((const char(*)[LAUNCH_ID_MAX])p->launches.ids,
			                    p->launches.nids, p->launches.streak, ids, sizeof(ids));
			report(s, LOG_WARNING,
			       "WARNING: pool %s: %u launches in a row left the group "
			       "without their runner ever connecting (%s): not raising "
			       "desired capacity for %" PRIu64 " s, %s. Check what an instance "
			       "needs to start its runner: the launch template, AMI, subnet, "
			       "the runner token's secret and the instance role's access to "
			       "it, the agent's download URL",
			       p->cfg->name, p->launches.streak, ids, v.backoff_ms / 1000,
			       unprotected
			               ? "and not lowering it below the usual value: the "
			                 "group's instances are not protected from scale-in, so "
			                 "a lower value could end a busy runner (turn on "
			                 "NewInstancesProtectedFromScaleIn)"
			               : "and lowering it to the runners that connected, so "
			                 "that the group stops replacing the failing instances");
		} else if (v.failed) {
			/* Before a back-off a warning; within one (the group relaunching by itself,
			 * or launches made before it began) only information. */
			bool backing_off =
			        launches_backoff_left_ms(&p->launches, now_mono_ms()) > 0;

			launches_format_ids((const char(*)[LAUNCH_ID_MAX])v.failed_ids,
			                    v.nfailed_ids, v.failed, ids, sizeof(ids));
			report(s, backing_off ? LOG_INFO : LOG_WARNING,
			       "%spool %s: %u instance%s left the group without %s runner ever "
			       "connecting (%s): %u failed launches in a row%s",
			       backing_off ? "" : "WARNING: ", p->cfg->name, v.failed,
			       v.failed == 1 ? "" : "s", v.failed == 1 ? "its" : "their", ids,
			       p->launches.streak, backing_off ? " (backing off)" : "");
		}
		return;
	}
	if (rc == 0 && status == 404) {
		p->have_list = true; /* the class check's answer; no verdict from it */
		p->list_status = 404;
		return;
	}
	if (rc == 0)
		p->api_errors[cycle_classify(0, status, NULL)]++;
	else
		p->api_errors[cycle_classify(rc, 0, NULL)]++;
	if (rc == -EFBIG && !p->list_too_large) {
		p->list_too_large = true;
		report(s, LOG_WARNING,
		       "WARNING: pool %s: the runner list of %s is larger than its limit of %zu "
		       "KiB: launch failures are not judged while it is",
		       p->cfg->name, p->cfg->resource_class, list_limit(s, sl->job.index) / 1024);
		return;
	}
	report(s, LOG_DEBUG,
	       "pool %s: could not list runners of %s (%s, HTTP %ld): launches not judged this "
	       "cycle",
	       p->cfg->name, p->cfg->resource_class, rc < 0 ? transport_word(rc) : "error", status);
}

/* After the group was read: track its instances; queue the runner list behind the describe
 * when an instance waits for its runner or its verdict. */
static void observe_launches(struct scaler *s, size_t pi, const struct asg_group *g)
{
	struct pool_state *p = &s->pools[pi];

	/* A read more than this after the previous one: what happened in between was not
	 * watched (not the leader, stopped, or its reads failing): nothing of it is judged. */
	uint64_t gap = 2 * (s->cfg.scaler->interval_ms + s->cfg.scaler->request_timeout_ms);
	uint64_t before = p->launches.observed_ms, now = now_mono_ms();
	int r;

	if (p->cfg->launch_failures <= 0 || p->observed)
		return;
	p->observed = true;
	r = launches_observe(&p->launches, g->instances, g->ninstances, now, gap);
	if (r < 0)
		return; /* out of memory: nothing observed, nothing judged this cycle */
	p->tracked = true;
	if (r > 0)
		report(s, LOG_INFO,
		       "pool %s: group not read for %" PRIu64 " s: the instances seen before are "
		       "forgotten (launch failures are judged on what is seen from now on)",
		       p->cfg->name, (now - before) / 1000);
	if (launches_need_list(&p->launches) && !s->token_problem[0])
		(void)queue_push(s, XFER_LAUNCHES, pi);
}

/* A failed AWS call: its kind, and text naming the call and the AWS error. code (NULL: not
 * wanted) gets the AWS error code, "" when there is none (transport, unparsable). */
static void aws_failure_code(struct slot *sl, int rc, const char *call, char *text, size_t n,
                             enum api_error_kind *kind, char *code, size_t code_n)
{
	struct aws_error err;
	long status = sl->resp.status;

	memset(&err, 0, sizeof(err));
	if (code && code_n)
		code[0] = '\0';
	if (rc < 0) {
		*kind = cycle_classify(rc, 0, NULL);
		str_printf(text, n, "%s: %s", call, transport_word(rc));
		return;
	}
	if (aws_parse_query_error(sl->resp.body.data ? sl->resp.body.data : "", sl->resp.body.len,
	                          &err) == 0 &&
	    err.code[0]) {
		*kind = cycle_classify(0, status, err.code);
		str_printf(text, n, "%s: %s: %.120s (HTTP %ld)", call, err.code, err.message,
		           status);
		if (code && code_n)
			str_copy(code, err.code, code_n);
		return;
	}
	*kind = status >= 200 && status <= 299 ? API_ERR_MALFORMED
	                                       : cycle_classify(0, status, NULL);
	str_printf(text, n, "%s: %s (HTTP %ld)", call,
	           *kind == API_ERR_MALFORMED ? "malformed response" : "unparsable error", status);
}

static void aws_failure(struct slot *sl, int rc, const char *call, char *text, size_t n,
                        enum api_error_kind *kind)
{
	aws_failure_code(sl, rc, call, text, n, kind, NULL, 0);
}

/* Room for want batches, and as many deferred entries. 0 or -ENOMEM. */
static int chunks_grow(struct scaler *s, size_t want)
{
	size_t cap = s->chunks_cap ? s->chunks_cap : 4;
	struct chunk *c;
	uint32_t *d;

	while (cap < want)
		cap *= 2;
	if (cap > s->chunks_cap) {
		c = realloc(s->chunks, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		s->chunks = c;
	}
	d = realloc(s->deferred, cap * sizeof(*d));
	if (!d)
		return -ENOMEM;
	s->deferred = d;
	s->chunks_cap = cap;
	return 0;
}

static void describe_failed(struct scaler *s, size_t ci, enum api_error_kind kind,
                            long retry_after_s, const char *text)
{
	const struct chunk *c = &s->chunks[ci];

	for (size_t i = 0; i < c->n; i++)
		pool_fail(&s->pools[c->pools[i]], kind, retry_after_s, "%s", text);
}

/* Batch ci's answer was larger than its limit (or than the XML node limit): describe it again
 * in smaller pieces while the phase allows (cycle_describe_retry). True when it was queued
 * again; false when its pools must hold. */
static bool describe_again_smaller(struct scaler *s, size_t ci)
{
	uint64_t now = now_mono_ms();
	uint64_t left = s->phase_deadline > now ? s->phase_deadline - now : 0;
	struct chunk *c = &s->chunks[ci];
	size_t n = c->n, cap = c->cap, ni;

	switch (cycle_describe_retry(n, cap, left)) {
	case DESCRIBE_SPLIT:
		if (chunks_grow(s, s->nchunks + 1) < 0)
			return false;
		c = &s->chunks[ci]; /* chunks_grow may have moved it */
		ni = s->nchunks;
		if (cycle_split_chunk(c, s->pool_bytes, &s->chunks[ci], &s->chunks[ni]) < 0)
			return false;
		s->nchunks++;
		report(s, LOG_INFO,
		       "autoscaling:DescribeAutoScalingGroups of %zu groups in %s: answer over its "
		       "limit of %zu KiB, describing them in two halves",
		       n, c->region, cap / 1024);
		if (queue_push(s, XFER_DESCRIBE, ci) < 0)
			job_failed(s, (struct job){XFER_DESCRIBE, (uint32_t)ci}, -ENOMEM);
		if (queue_push(s, XFER_DESCRIBE, ni) < 0)
			job_failed(s, (struct job){XFER_DESCRIBE, (uint32_t)ni}, -ENOMEM);
		return true;
	case DESCRIBE_ALONE:
		c->cap = ASG_DESCRIBE_MAX_BYTES;
		c->next_token[0] = '\0';
		c->pages = 0;
		report(s, LOG_INFO,
		       "autoscaling:DescribeAutoScalingGroups of %s: answer over its limit of %zu "
		       "KiB, describing it again with %zu KiB",
		       s->pools[c->pools[0]].cfg->asg, cap / 1024, ASG_DESCRIBE_MAX_BYTES / 1024);
		return queue_push(s, XFER_DESCRIBE, ci) == 0;
	case DESCRIBE_GIVE_UP:
	default:
		return false;
	}
}

static void on_describe(struct scaler *s, struct slot *sl, int rc)
{
	size_t ci = sl->job.index;
	struct chunk *c = &s->chunks[ci];
	struct asg_group *groups = NULL;
	size_t ng = 0, ninst = 0;
	long status = sl->resp.status;
	enum api_error_kind kind;
	char text[CYCLE_ERR_MAX];

	if (rc == 0 && status >= 200 && status <= 299) {
		rc = asg_parse_describe(sl->resp.body.data, sl->resp.body.len, &groups, &ng,
		                        c->next_token, sizeof(c->next_token));
		if (rc == 0 && !asg_describe_plausible(sl->resp.body.len, groups, ng)) {
			/* Padding or garbage: no legitimate answer is larger than its content. */
			for (size_t g = 0; g < ng; g++)
				ninst += groups[g].ninstances;
			str_printf(
			        text, sizeof(text),
			        "autoscaling:DescribeAutoScalingGroups: response too large for its "
			        "content (%zu bytes for %zu group%s of %zu instances)",
			        sl->resp.body.len, ng, ng == 1 ? "" : "s", ninst);
			asg_groups_free(groups, ng);
			describe_failed(s, ci, API_ERR_MALFORMED, -1, text);
			return;
		}
		if (rc == 0) {
			for (size_t i = 0; i < c->n; i++) {
				struct pool_state *p = &s->pools[c->pools[i]];

				for (size_t g = 0; g < ng; g++) {
					if (strcmp(groups[g].name, p->cfg->asg) != 0)
						continue;
					p->asg_ok = true;
					p->asg_desired = groups[g].desired;
					p->asg_min = groups[g].min_size;
					p->asg_max = groups[g].max_size;
					p->seen_instances = (int64_t)groups[g].ninstances;
					p->seen_desired = groups[g].desired;
					p->az_rebalance_suspended =
					        groups[g].az_rebalance_suspended;
					p->asg_protect_new = groups[g].new_instances_protected;
					observe_launches(s, c->pools[i], &groups[g]);
					break;
				}
			}
			asg_groups_free(groups, ng);
			if (c->next_token[0] && ++c->pages < DESCRIBE_MAX_PAGES &&
			    queue_push(s, XFER_DESCRIBE, ci) == 0)
				return;
			for (size_t i = 0; i < c->n; i++) {
				struct pool_state *p = &s->pools[c->pools[i]];

				if (!p->asg_ok)
					pool_fail(p, API_ERR_NOT_FOUND, -1,
					          "ASG %s not found in %s", p->cfg->asg, c->region);
			}
			return;
		}
		/* More elements than a tree of this size may hold: too large, like -EFBIG. */
		rc = rc == -E2BIG ? -EFBIG : -EBADMSG;
		status = 0;
	}
	if (rc == -EFBIG) {
		if (describe_again_smaller(s, ci))
			return;
		c = &s->chunks[ci];
		str_printf(
		        text, sizeof(text),
		        "autoscaling:DescribeAutoScalingGroups: response too large (over %zu KiB "
		        "for %zu group%s)",
		        c->cap / 1024, c->n, c->n == 1 ? "" : "s");
		describe_failed(s, ci, API_ERR_MALFORMED, -1, text);
		return;
	}
	aws_failure(sl, rc, "autoscaling:DescribeAutoScalingGroups", text, sizeof(text), &kind);
	describe_failed(s, ci, kind, sl->resp.retry_after_s, text);
}

/* A SuspendProcesses that failed (text names the call and the AWS error): when to try again
 * and what to say (cycle_suspend_retry). Never holds the scaling. */
static void suspend_failed(struct scaler *s, struct pool_state *p, enum suspend_retry how,
                           long retry_after_s, const char *text)
{
	uint64_t now = now_mono_ms(), wait;

	switch (how) {
	case SUSPEND_RETRY_SOON:
		/* Throttling, a 5xx, a timeout: gone by the next cycle most often; backing off
		 * like a failing pool so that a throttled account is not pressed further. */
		wait = cycle_backoff_ms(++p->az_failures, s->cfg.scaler->interval_ms, retry_after_s,
		                        random_u32());
		p->az_next_try = now + wait;
		if (p->az_said_ms && now - p->az_said_ms < CYCLE_AZ_RETRY_MS) {
			report(s, LOG_DEBUG,
			       "pool %s: could not suspend AZRebalance on %s (%s): trying again in "
			       "%" PRIu64 " ms",
			       p->cfg->name, p->cfg->asg, text, wait);
			return;
		}
		p->az_said_ms = now;
		report(s, LOG_WARNING,
		       "WARNING: pool %s: could not suspend AZRebalance on %s (%s): a passing "
		       "failure, tried again from the next cycle (said at most once an hour)",
		       p->cfg->name, p->cfg->asg, text);
		return;
	case SUSPEND_RETRY_PERMISSION:
	case SUSPEND_RETRY_LATER:
	default:
		/* Not fixed in seconds: an hour, said once until it works. */
		p->az_next_try = now + CYCLE_AZ_RETRY_MS;
		if (p->az_warned)
			return;
		p->az_warned = true;
		if (how == SUSPEND_RETRY_PERMISSION)
			report(s, LOG_WARNING,
			       "WARNING: pool %s: could not suspend AZRebalance on %s (%s): zone "
			       "rebalancing may start and end runners; grant the role "
			       "autoscaling:SuspendProcesses on the group, or set az_rebalance = "
			       "leave (tried again hourly)",
			       p->cfg->name, p->cfg->asg, text);
		else
			report(s, LOG_WARNING,
			       "WARNING: pool %s: could not suspend AZRebalance on %s (%s): zone "
			       "rebalancing may start and end runners; tried again hourly "
			       "(az_rebalance = leave turns this off)",
			       p->cfg->name, p->cfg->asg, text);
		return;
	}
}

/* Zone rebalancing launches an instance in one zone and ends one in another to even them out:
 * for runners that exit after their job it is churn, launches that boot for nothing. Once per
 * group that shows it not suspended. A refusal (the role lacks autoscaling:SuspendProcesses)
 * or another lasting error is said once and tried again an hour later; a passing failure
 * (throttling, a 5xx, a timeout) is tried again from the next cycle. Never holds the scaling. */
static void on_suspend(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	long status = sl->resp.status;
	enum api_error_kind kind;
	char text[CYCLE_ERR_MAX], code[96];

	if (sl->fenced)
		return;
	if (rc == 0 && status >= 200 && status <= 299) {
		p->az_rebalance_suspended = true;
		p->az_warned = false;
		p->az_failures = 0;
		p->az_said_ms = 0;
		report(s, LOG_INFO,
		       "pool %s: suspended AZRebalance on %s: zone rebalancing would start and "
		       "end runners to even out zones",
		       p->cfg->name, p->cfg->asg);
		return;
	}
	aws_failure_code(sl, rc, "autoscaling:SuspendProcesses", text, sizeof(text), &kind, code,
	                 sizeof(code));
	p->api_errors[kind]++;
	suspend_failed(s, p, cycle_suspend_retry(rc, status, code), sl->resp.retry_after_s, text);
}

static void on_set(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	long status = sl->resp.status;
	enum api_error_kind kind;
	char text[CYCLE_ERR_MAX];

	if (sl->fenced) {
		p->write = WRITE_FENCED;
		return;
	}
	if (rc == 0 && status >= 200 && status <= 299) {
		p->write = WRITE_OK;
		p->seen_desired = p->decision.desired; /* the next describe may list that many */
		if (p->decision.desired < p->asg_desired)
			launches_lowered(&p->launches); /* unprotected instances may be picked */
		return;
	}
	p->write = WRITE_FAILED;
	aws_failure(sl, rc, "autoscaling:SetDesiredCapacity", text, sizeof(text), &kind);
	pool_fail(p, kind, sl->resp.retry_after_s, "%s", text);
}

/* A job that never got a response (deadline, or it could not be built). */
static void job_failed(struct scaler *s, struct job job, int rc)
{
	struct pool_state *p;

	switch (job.kind) {
	case XFER_UNCLAIMED:
	case XFER_RUNNING:
		p = &s->pools[job.index];
		pool_fail(p, cycle_classify(rc, 0, NULL), -1, "Runner API %s: %s",
		          job.kind == XFER_UNCLAIMED ? "unclaimed" : "running", transport_word(rc));
		break;
	case XFER_RUNNERS:
		break;
	case XFER_LAUNCHES:
		s->pools[job.index].api_errors[cycle_classify(rc, 0, NULL)]++;
		break;
	case XFER_DESCRIBE:
		for (size_t i = 0; i < s->chunks[job.index].n; i++)
			pool_fail(&s->pools[s->chunks[job.index].pools[i]],
			          cycle_classify(rc, 0, NULL), -1,
			          "autoscaling:DescribeAutoScalingGroups: %s", transport_word(rc));
		break;
	case XFER_SUSPEND: {
		char text[CYCLE_ERR_MAX];

		p = &s->pools[job.index];
		p->api_errors[cycle_classify(rc, 0, NULL)]++;
		str_printf(text, sizeof(text), "autoscaling:SuspendProcesses: %s",
		           transport_word(rc));
		suspend_failed(s, p, cycle_suspend_retry(rc, 0, NULL), -1, text);
		break;
	}
	case XFER_SET:
		p = &s->pools[job.index];
		p->write = WRITE_FAILED;
		pool_fail(p, cycle_classify(rc, 0, NULL), -1, "autoscaling:SetDesiredCapacity: %s",
		          transport_word(rc));
		break;
	case XFER_WARM:
	case XFER_WARM_PUT:
		warm_pool_job_failed(s, &job, rc);
		break;
	}
}

static void advance(struct scaler *s);

/* Budget came free: the waiting describes go back in the queue (pump decides again). */
static void requeue_deferred(struct scaler *s)
{
	size_t n = s->ndeferred;

	s->ndeferred = 0;
	for (size_t i = 0; i < n; i++)
		if (queue_push(s, XFER_DESCRIBE, s->deferred[i]) < 0)
			job_failed(s, (struct job){XFER_DESCRIBE, s->deferred[i]}, -ENOMEM);
}

static void requeue_lists(struct scaler *s)
{
	size_t n = s->nlists_waiting;

	s->nlists_waiting = 0;
	for (size_t i = 0; i < n; i++)
		if (queue_push(s, s->lists_waiting[i].kind, s->lists_waiting[i].index) < 0)
			job_failed(s, s->lists_waiting[i], -ENOMEM);
}

static void drain(struct scaler *s)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
		struct slot *sl = NULL;
		int rc;

		if (msg->msg != CURLMSG_DONE)
			continue;
		(void)curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
		rc = http_finish(msg->easy_handle, msg->data.result, &sl->resp);
		(void)curl_multi_remove_handle(s->multi, msg->easy_handle);
		switch (sl->job.kind) {
		case XFER_UNCLAIMED:
		case XFER_RUNNING:
			on_count(s, sl, rc);
			break;
		case XFER_RUNNERS:
			on_runners(s, sl, rc);
			break;
		case XFER_LAUNCHES:
			on_launches(s, sl, rc);
			break;
		case XFER_DESCRIBE:
			on_describe(s, sl, rc);
			break;
		case XFER_SET:
			on_set(s, sl, rc);
			break;
		case XFER_SUSPEND:
			on_suspend(s, sl, rc);
			break;
		case XFER_WARM:
			if (warm_pool_on_describe(s, sl, rc) &&
			    queue_push(s, XFER_WARM, sl->job.index))
				warm_pool_job_failed(s, &sl->job, -ENOMEM);
			break;
		case XFER_WARM_PUT:
			warm_pool_on_put(s, sl, rc);
			break;
		}
		http_response_free(&sl->resp);
		curl_slist_free_all(sl->hdrs);
		sl->hdrs = NULL;
		sl->busy = false;
		s->inflight--;
		if (sl->reserved) {
			s->describe_reserved -= sl->reserved;
			sl->reserved = 0;
			requeue_deferred(s);
		}
		if (sl->list_reserved) {
			s->list_reserved -= sl->list_reserved;
			sl->list_reserved = 0;
			requeue_lists(s);
		}
	}
	advance(s);
}

/* ---- phases ------------------------------------------------------------------------------- */

static uint64_t phase_deadline(const struct scaler *s, uint64_t now)
{
	uint64_t d = now + s->cfg.scaler->request_timeout_ms;

	if (s->hard_deadline && s->hard_deadline < d)
		d = s->hard_deadline;
	return d;
}

static void begin_write(struct scaler *s)
{
	uint64_t now = now_mono_ms();

	s->qhead = s->qlen = 0;
	for (size_t i = 0; i < s->npools; i++) {
		struct pool_state *p = &s->pools[i];
		struct policy_input in;

		if (!p->due)
			continue;
		memset(&in, 0, sizeof(in));
		in.counts_ok = p->have_unclaimed && p->have_running;
		in.unclaimed = p->unclaimed;
		in.running = p->running;
		in.asg_ok = p->asg_ok;
		in.asg_desired = p->asg_desired;
		in.asg_min = p->asg_min;
		in.asg_max = p->asg_max;
		in.pool_min = p->cfg->min;
		in.pool_max = p->cfg->max;
		in.headroom = p->cfg->headroom;
		in.max_step = p->cfg->max_step;
		if (p->cfg->launch_failures > 0) {
			in.launch_backoff_ms = (int64_t)launches_backoff_left_ms(&p->launches, now);
			in.failed_launches = p->launches.streak;
			/* What a back-off lowers desired to at most (with the mins): the runners
			 * that connected as this cycle's reads show them, and the instances
			 * whose runner may have connected unseen (no list read behind this
			 * describe). A group not tracked this cycle tells nothing: nothing
			 * below the current value. */
			if (p->tracked) {
				in.launch_connected =
				        (int64_t)launches_count(&p->launches, LAUNCH_CONNECTED);
				in.launch_unknown = (int64_t)launches_unknown(
				        &p->launches, p->have_list && p->list_status == 200);
			} else {
				in.launch_unknown = p->asg_desired > 0 ? p->asg_desired : 0;
			}
			/* The group picks what a lower value ends: without scale-in protection
			 * that may be a busy runner (nothing below the usual decision then). */
			in.launch_unprotected = !p->asg_protect_new || !p->tracked ||
			                        p->launches.unprotected_now > 0;
		}
		policy_decide(&in, &p->decision);
		/* The start-up check of the class, once per pool: only a class that shows no work
		 * can be a wrong one (the API answers 0 for classes it does not know, or that the
		 * token cannot see); it runs beside the writes, it decides nothing. The runner list
		 * read for launches this cycle answers it too. */
		if (!p->listed && in.counts_ok) {
			if (in.unclaimed + in.running > 0)
				p->listed = true;
			else if (p->have_list)
				class_listed(s, p, p->list_status, p->list_count);
			else if (queue_push(s, XFER_RUNNERS, i) < 0)
				p->listed = true;
		}
		if (p->asg_ok && !p->az_rebalance_suspended &&
		    p->cfg->az_rebalance == AZ_REBALANCE_SUSPEND && now >= p->az_next_try &&
		    !s->dry_run && election_may_act(s->election, now) &&
		    queue_push(s, XFER_SUSPEND, i) < 0)
			job_failed(s, (struct job){XFER_SUSPEND, (uint32_t)i}, -ENOMEM);
		/* Beside the decision, never part of it (warm_pool.h). */
		if (warm_pool_begin_write(s, i, now) && queue_push(s, XFER_WARM_PUT, i) < 0)
			job_failed(s, (struct job){XFER_WARM_PUT, (uint32_t)i}, -ENOMEM);
		if (p->decision.action != POLICY_SET)
			continue;
		if (s->dry_run)
			p->write = WRITE_DRY;
		else if (!election_may_act(s->election, now))
			p->write = WRITE_FENCED;
		else if (queue_push(s, XFER_SET, i) < 0)
			job_failed(s, (struct job){XFER_SET, (uint32_t)i}, -ENOMEM);
	}
	s->phase = PHASE_WRITE;
	s->phase_deadline = phase_deadline(s, now);
}

static void finalize(struct scaler *s)
{
	uint64_t now = now_mono_ms();
	uint64_t interval = s->cfg.scaler->interval_ms;
	bool auth = false;
	char line[1024];

	s->held = 0;
	for (size_t i = 0; i < s->npools; i++) {
		struct pool_state *p = &s->pools[i];
		struct decision_line d;
		enum policy_action act;
		const char *why = p->decision.reason;
		bool held;

		memset(&d, 0, sizeof(d));
		if (!p->due) {
			act = POLICY_HOLD;
			str_printf(p->final_reason, sizeof(p->final_reason),
			           "backing off after %u failed cycles (next try in %" PRIu64
			           " ms)",
			           p->failures, p->next_try > now ? p->next_try - now : 0);
		} else {
			act = p->decision.action;
			if (act == POLICY_SET && p->write == WRITE_FAILED) {
				act = POLICY_HOLD;
				str_printf(p->final_reason, sizeof(p->final_reason), "%s",
				           p->err[0] ? p->err : "write failed");
			} else if (act == POLICY_SET && p->write == WRITE_FENCED) {
				act = POLICY_HOLD;
				str_printf(p->final_reason, sizeof(p->final_reason),
				           "not the leader any more: %s not written", why);
			} else if (act == POLICY_SET && p->write == WRITE_DRY) {
				str_printf(p->final_reason, sizeof(p->final_reason),
				           "%s (dry run: not written)", why);
			} else if (act == POLICY_HOLD && p->err[0]) {
				str_printf(p->final_reason, sizeof(p->final_reason), "%s: %s", why,
				           p->err);
			} else {
				str_printf(p->final_reason, sizeof(p->final_reason), "%s", why);
			}
		}
		held = act == POLICY_HOLD;
		p->final_action = act;
		if (held) {
			p->holds++;
			s->held++;
		}
		if (p->auth_failed)
			auth = true;
		if (p->due) {
			if (p->failed) {
				p->failures++;
				p->next_try =
				        now + cycle_backoff_ms(p->failures, interval,
				                               p->retry_after_s, random_u32());
			} else {
				p->failures = 0;
				p->next_try = 0;
			}
		}

		p->m.name = p->cfg->name;
		p->m.have_counts = p->due && p->have_unclaimed && p->have_running;
		p->m.unclaimed = p->unclaimed;
		p->m.running = p->running;
		p->m.have_current = p->due && p->asg_ok;
		p->m.current = p->asg_desired;
		p->m.have_desired = p->due && p->decision.desired >= 0 && p->asg_ok;
		p->m.desired = p->decision.desired;
		p->m.holds = p->holds;
		memcpy(p->m.api_errors, p->api_errors, sizeof(p->api_errors));
		p->m.launch_failures = p->launch_failures_total;
		p->m.backoff_s =
		        (int64_t)((launches_backoff_left_ms(&p->launches, now) + 999) / 1000);

		d.pool = p->cfg->name;
		d.resource_class = p->cfg->resource_class;
		d.unclaimed = p->due && p->have_unclaimed ? p->unclaimed : -1;
		d.running = p->due && p->have_running ? p->running : -1;
		d.current = p->due && p->asg_ok ? p->asg_desired : -1;
		d.desired = p->due && p->asg_ok ? p->decision.desired : -1;
		d.action = policy_action_name(act);
		d.reason = p->final_reason;
		if (cycle_format_decision(&d, s->log_format, line, sizeof(line)) == 0)
			report(s, held ? LOG_WARNING : LOG_INFO, "%s", line);
		if (p->due)
			warm_pool_finalize(s, i);
	}
	if (auth)
		report(s, LOG_ERR,
		       "configuration error: a call was refused as unauthorised (HTTP 401/403). "
		       "Runner API: check the token from [circleci] token_source = %s, token_id = "
		       "%s; AWS: check the credentials and IAM policy",
		       scaler_token_source_name(s->cfg.circleci->token_source),
		       s->cfg.circleci->token_source == TOKEN_ENV
		               ? scaler_token_env_name(s->cfg.circleci)
		               : (s->cfg.circleci->token_id ? s->cfg.circleci->token_id : "-"));
	s->last_duration_s = (double)(now - s->cycle_start) / 1000.0;
	s->cycles++;
	s->phase = PHASE_IDLE;
	s->finished = true;
}

static void advance(struct scaler *s)
{
	for (;;) {
		pump(s);
		if (s->inflight || s->qhead < s->qlen)
			return;
		if (s->phase == PHASE_FETCH) {
			begin_write(s);
			continue;
		}
		if (s->phase == PHASE_WRITE)
			finalize(s);
		return;
	}
}

int scaler_cycle_start(struct scaler *s, uint64_t now_mono)
{
	const char **regions = NULL;
	bool *take = NULL;
	int r = 0;

	if (s->phase != PHASE_IDLE)
		return -EBUSY;
	s->finished = false;
	s->token_rejected = false;
	s->cycle_start = now_mono;
	s->qhead = s->qlen = 0;
	free(s->chunks);
	s->chunks = NULL;
	s->nchunks = s->chunks_cap = 0;
	s->ndeferred = 0;
	free(s->pool_bytes);
	s->pool_bytes = NULL;
	s->nlists_waiting = 0;
	if (s->npools) {
		struct job *w = realloc(s->lists_waiting, s->npools * sizeof(*w));

		if (!w)
			return -ENOMEM;
		s->lists_waiting = w;
		regions = calloc(s->npools, sizeof(*regions));
		take = calloc(s->npools, sizeof(*take));
		s->pool_bytes = calloc(s->npools, sizeof(*s->pool_bytes));
		if (!regions || !take || !s->pool_bytes) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < s->npools; i++) {
		struct pool_state *p = &s->pools[i];

		p->due = p->next_try <= now_mono;
		p->have_unclaimed = p->have_running = p->asg_ok = false;
		p->failed = p->auth_failed = false;
		p->observed = p->tracked = p->have_list = false;
		p->list_status = 0;
		p->list_count = 0;
		p->unclaimed = p->running = p->asg_desired = p->asg_min = p->asg_max = -1;
		p->retry_after_s = -1;
		p->err[0] = '\0';
		memset(&p->decision, 0, sizeof(p->decision));
		p->decision.action = POLICY_HOLD;
		p->decision.desired = -1;
		p->write = WRITE_NONE;
		warm_pool_reset(&p->warm);
		regions[i] = p->region;
		take[i] = p->due && !s->creds_problem[0];
		s->pool_bytes[i] = asg_describe_group_bytes(
		        cycle_expected_instances(p->cfg->max, p->seen_instances, p->seen_desired));
	}
	r = cycle_plan_chunks(regions, s->pool_bytes, take, s->npools, &s->chunks, &s->nchunks,
	                      &s->chunks_cap);
	if (r == 0)
		r = chunks_grow(s, s->nchunks); /* the deferred list's room */
	if (r < 0)
		goto out;
	/* Describes first: few and each carries 50 pools. */
	for (size_t c = 0; c < s->nchunks && r == 0; c++)
		r = queue_push(s, XFER_DESCRIBE, c);
	for (size_t i = 0; i < s->npools && r == 0; i++) {
		struct pool_state *p = &s->pools[i];

		if (!p->due)
			continue;
		if (s->creds_problem[0])
			pool_fail(p, API_ERR_AUTH, -1, "no AWS credentials: %s", s->creds_problem);
		if (s->token_problem[0]) {
			pool_fail(p, API_ERR_AUTH, -1, "no CircleCI token: %s", s->token_problem);
			continue;
		}
		r = queue_push(s, XFER_UNCLAIMED, i);
		if (r == 0)
			r = queue_push(s, XFER_RUNNING, i);
		if (r == 0 && p->cfg->warm_pool >= 0 && !s->creds_problem[0]) {
			p->warm.asked = true;
			r = queue_push(s, XFER_WARM, i);
		}
	}
	if (r < 0)
		goto out;
	s->phase = PHASE_FETCH;
	s->phase_deadline = phase_deadline(s, now_mono);
	advance(s);
out:
	free(regions);
	free(take);
	if (r < 0)
		s->qhead = s->qlen = 0;
	return r;
}

void scaler_reap(struct scaler *s)
{
	while (s->graveyard) {
		struct curl_sock *cs = s->graveyard;

		s->graveyard = cs->next_dead;
		free(cs);
	}
}

bool scaler_busy(const struct scaler *s)
{
	return s->phase != PHASE_IDLE;
}

/* ---- set-up ------------------------------------------------------------------------------- */

int scaler_init(struct scaler *s, int epfd)
{
	memset(s, 0, sizeof(*s));
	s->epfd = epfd;
	s->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer.fd < 0)
		return -errno;
	s->timer.fn = timer_event;
	if (ev_ctl(epfd, EPOLL_CTL_ADD, &s->timer, EPOLLIN) < 0)
		goto fail;
	s->multi = curl_multi_init();
	if (!s->multi)
		goto fail;
	if (curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) != CURLM_OK ||
	    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s) != CURLM_OK ||
	    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
	    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s) != CURLM_OK)
		goto fail;
	/* A polite ceiling per host (CircleCI asks for no bursts); HTTP/2 multiplexes under it.
	 * The connection cache keeps them open from one cycle to the next. */
	(void)curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, MAX_HOST_CONNECTIONS);
	(void)curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, MAX_CONNECTS);
	(void)curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	for (size_t i = 0; i < CYCLE_MAX_INFLIGHT; i++) {
		s->slots[i].s = s;
		buf_init(&s->slots[i].body, ASG_FORM_MAX);
	}
	s->phase = PHASE_IDLE;
	return 0;
fail:
	if (s->multi)
		curl_multi_cleanup(s->multi);
	s->multi = NULL;
	close(s->timer.fd);
	s->timer.fd = -1;
	return -ENOMEM;
}

void scaler_free(struct scaler *s)
{
	for (size_t i = 0; i < CYCLE_MAX_INFLIGHT; i++) {
		struct slot *sl = &s->slots[i];

		if (sl->busy && s->multi)
			(void)curl_multi_remove_handle(s->multi, sl->h);
		if (sl->h)
			curl_easy_cleanup(sl->h);
		http_response_free(&sl->resp);
		curl_slist_free_all(sl->hdrs);
		buf_free(&sl->body);
	}
	if (s->multi)
		curl_multi_cleanup(s->multi);
	scaler_reap(s);
	if (s->timer.fd >= 0) {
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->timer.fd, NULL);
		close(s->timer.fd);
	}
	free(s->queue);
	free(s->chunks);
	free(s->deferred);
	free(s->lists_waiting);
	free(s->pool_bytes);
	for (size_t i = 0; i < s->npools; i++)
		launches_reset(&s->pools[i].launches);
	free(s->pools);
	scaler_config_free(&s->cfg);
	memset(s, 0, sizeof(*s));
	s->timer.fd = -1;
}

static bool same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

int scaler_apply_config(struct scaler *s, struct scaler_config *cfg)
{
	struct pool_state *np = NULL;
	bool *kept = NULL;
	size_t n = cfg->npools;

	if (s->phase != PHASE_IDLE) {
		scaler_config_free(cfg);
		return -EBUSY;
	}
	if (n) {
		np = calloc(n, sizeof(*np));
		kept = s->npools ? calloc(s->npools, sizeof(*kept)) : NULL;
		if (!np || (s->npools && !kept)) {
			free(np);
			free(kept);
			scaler_config_free(cfg);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct pool_section *ps = cfg->pools[i];
		const char *region = ps->region && ps->region[0] ? ps->region : s->default_region;

		np[i].seen_instances = np[i].seen_desired = -1; /* never read */
		for (size_t j = 0; j < s->npools; j++) {
			const struct pool_state *old = &s->pools[j];

			/* Same name, same queue, same group: the same pool; keep its history. */
			if (!kept[j] && same_str(old->cfg->name, ps->name) &&
			    same_str(old->cfg->resource_class, ps->resource_class) &&
			    same_str(old->cfg->asg, ps->asg) && same_str(old->region, region)) {
				np[i] = *old; /* its launch tracker moves with it */
				kept[j] = true;
				break;
			}
		}
		np[i].cfg = ps;
		np[i].region = region;
		if (ps->launch_failures <= 0)
			launches_reset(&np[i].launches); /* detection off: nothing kept, no reads */
	}
	for (size_t j = 0; j < s->npools; j++)
		if (!kept || !kept[j])
			launches_reset(&s->pools[j].launches); /* a pool that went away */
	free(kept);
	free(s->pools);
	s->pools = np;
	s->npools = n;
	scaler_config_free(&s->cfg);
	s->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	free(s->chunks); /* they pointed at the old regions */
	s->chunks = NULL;
	s->nchunks = s->chunks_cap = 0;
	s->ndeferred = 0;
	s->nlists_waiting = 0;
	return 0;
}

int scaler_metrics(const struct scaler *s, bool leader, struct metrics_snapshot *snap)
{
	struct metrics_pool *mp = NULL;

	memset(snap, 0, sizeof(*snap));
	if (s->npools) {
		mp = calloc(s->npools, sizeof(*mp));
		if (!mp)
			return -ENOMEM;
	}
	for (size_t i = 0; i < s->npools; i++) {
		mp[i] = s->pools[i].m;
		mp[i].name = s->pools[i].cfg->name;
		mp[i].holds = s->pools[i].holds;
		memcpy(mp[i].api_errors, s->pools[i].api_errors, sizeof(mp[i].api_errors));
		mp[i].launch_failures = s->pools[i].launch_failures_total;
	}
	snap->pools = mp;
	snap->npools = s->npools;
	snap->cycle_duration_s = s->cycles ? s->last_duration_s : -1;
	snap->leader = leader;
	snap->cycles = s->cycles;
	return 0;
}
