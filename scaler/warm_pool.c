/* runner-scaler's warm pools (see warm_pool.h and runner-scaler(8), WARM POOLS). */
#include "warm_pool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <cjson/cJSON.h>

#include "cycle.h"
#include "util.h"

/* ---- pure ---------------------------------------------------------------------------------- */

enum warm_pool_plan warm_pool_decide(int64_t want, bool read, const struct asg_warm_pool *seen,
                                     char *why, size_t n)
{
	if (n)
		why[0] = '\0';
	if (want < 0 || !read)
		return WARM_POOL_UNKNOWN;
	if (seen->exists && strcmp(seen->status, "PendingDelete") == 0)
		return WARM_POOL_DELETING;
	return asg_warm_pool_differs(seen, want, why, n) ? WARM_POOL_PUT : WARM_POOL_KEEP;
}

static const char *action_word(const struct warm_pool_state *w)
{
	if (w->failed)
		return "hold";
	switch (w->plan) {
	case WARM_POOL_DELETING:
		return "wait";
	case WARM_POOL_PUT:
		switch (w->write) {
		case WARM_WRITE_OK:
			return "put";
		case WARM_WRITE_DRY:
			return "put (dry run: not written)";
		case WARM_WRITE_FENCED:
			return "hold (not the leader)";
		default:
			return "hold";
		}
	default:
		return "keep";
	}
}

int warm_pool_format(const char *pool, int64_t want, const struct warm_pool_state *w, bool json,
                     char *out, size_t n)
{
	char reason[WARM_POOL_ERR_MAX + 200];
	int len;

	out[0] = '\0';
	if (want < 0 || !w->asked)
		return 0;
	if (w->failed)
		str_printf(reason, sizeof(reason), "%s", w->err[0] ? w->err : "read failed");
	else if (w->plan == WARM_POOL_DELETING)
		str_printf(
		        reason, sizeof(reason),
		        "the warm pool is being deleted (PendingDelete): PutWarmPool after it is "
		        "gone");
	else if (w->plan == WARM_POOL_PUT && w->write == WARM_WRITE_FAILED)
		str_printf(reason, sizeof(reason), "%s; %s", w->why, w->err);
	else if (w->plan == WARM_POOL_PUT)
		str_printf(reason, sizeof(reason),
		           "%s: MinSize=MaxGroupPreparedCapacity=%" PRId64
		           " PoolState=Stopped ReuseOnScaleIn=false",
		           w->why, want);
	else
		return 0; /* read, and as wanted: nothing to say every cycle */
	if (json) {
		cJSON *o = cJSON_CreateObject();
		char *text = NULL;

		if (!o || !cJSON_AddStringToObject(o, "pool", pool) ||
		    !cJSON_AddNumberToObject(o, "warm_pool", (double)want) ||
		    !cJSON_AddNumberToObject(o, "warm_pool_size",
		                             w->read ? (double)w->seen.instances : -1) ||
		    !cJSON_AddStringToObject(o, "action", action_word(w)) ||
		    !cJSON_AddStringToObject(o, "reason", reason) ||
		    !(text = cJSON_PrintUnformatted(o))) {
			cJSON_Delete(o);
			return -ENOSPC;
		}
		len = snprintf(out, n, "%s", text);
		cJSON_free(text);
		cJSON_Delete(o);
	} else {
		len = snprintf(out, n, "pool=%s warm_pool=%" PRId64 " action=%s reason=\"%s\"",
		               pool, want, action_word(w), reason);
	}
	return len < 0 || (size_t)len >= n ? -ENOSPC : 0;
}

/* ---- the cycle's hooks --------------------------------------------------------------------- */

void warm_pool_reset(struct warm_pool_state *w)
{
	w->asked = w->read = w->failed = false;
	w->pages = 0;
	memset(&w->seen, 0, sizeof(w->seen));
	w->plan = WARM_POOL_UNKNOWN;
	w->write = WARM_WRITE_NONE;
	w->why[0] = w->err[0] = '\0';
}

int warm_pool_form(const struct scaler *s, const struct job *job, struct buf *body)
{
	const struct pool_state *p = &s->pools[job->index];

	if (job->kind == XFER_WARM_PUT)
		return asg_put_warm_pool_form(p->cfg->asg, p->cfg->warm_pool, body);
	return asg_describe_warm_pool_form(p->cfg->asg, p->warm.seen.next_token, body);
}

/* What went wrong, as the decision lines say it; counted in api_errors (metrics only). */
static void failure(struct pool_state *p, const char *call, int rc, long status,
                    const struct buf *body)
{
	struct aws_error err;
	enum api_error_kind kind;

	memset(&err, 0, sizeof(err));
	if (rc < 0) {
		kind = cycle_classify(rc, 0, NULL);
		str_printf(p->warm.err, sizeof(p->warm.err), "%s: %s", call,
		           rc == -ETIMEDOUT ? "timeout" : strerror(-rc));
	} else if (aws_parse_query_error(body->data ? body->data : "", body->len, &err) == 0 &&
	           err.code[0]) {
		kind = cycle_classify(0, status, err.code);
		str_printf(p->warm.err, sizeof(p->warm.err), "%s: %s: %.120s (HTTP %ld)", call,
		           err.code, err.message, status);
	} else {
		kind = status >= 200 && status <= 299 ? API_ERR_MALFORMED
		                                      : cycle_classify(0, status, NULL);
		str_printf(p->warm.err, sizeof(p->warm.err), "%s: %s (HTTP %ld)", call,
		           kind == API_ERR_MALFORMED ? "malformed response" : "unparsable error",
		           status);
	}
	p->api_errors[kind]++;
}

bool warm_pool_on_describe(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	struct warm_pool_state *w = &p->warm;
	long status = sl->resp.status;

	if (rc == 0 && status >= 200 && status <= 299) {
		if (asg_parse_warm_pool(sl->resp.body.data, sl->resp.body.len, &w->seen) == 0) {
			w->pages++;
			if (w->seen.next_token[0] && w->pages < WARM_POOL_MAX_PAGES)
				return true;
			w->read = true;
			w->have_size = true;
			w->size = w->seen.instances;
			return false;
		}
	}
	w->failed = true;
	failure(p, "autoscaling:DescribeWarmPool", rc, status, &sl->resp.body);
	return false;
}

void warm_pool_on_put(struct scaler *s, struct slot *sl, int rc)
{
	struct pool_state *p = &s->pools[sl->job.index];
	long status = sl->resp.status;

	if (sl->fenced) {
		p->warm.write = WARM_WRITE_FENCED;
		return;
	}
	if (rc == 0 && status >= 200 && status <= 299) {
		p->warm.write = WARM_WRITE_OK;
		p->warm.writes++;
		return;
	}
	p->warm.write = WARM_WRITE_FAILED;
	failure(p, "autoscaling:PutWarmPool", rc, status, &sl->resp.body);
}

void warm_pool_job_failed(struct scaler *s, const struct job *job, int rc)
{
	struct pool_state *p = &s->pools[job->index];
	struct buf none;

	buf_init(&none, 0);
	if (job->kind == XFER_WARM_PUT) {
		p->warm.write = WARM_WRITE_FAILED;
		failure(p, "autoscaling:PutWarmPool", rc, 0, &none);
	} else {
		p->warm.failed = true;
		failure(p, "autoscaling:DescribeWarmPool", rc, 0, &none);
	}
}

bool warm_pool_begin_write(struct scaler *s, size_t i, uint64_t now)
{
	struct pool_state *p = &s->pools[i];
	struct warm_pool_state *w = &p->warm;

	w->plan = warm_pool_decide(p->cfg->warm_pool, w->read, &w->seen, w->why, sizeof(w->why));
	if (w->plan != WARM_POOL_PUT)
		return false;
	if (s->dry_run) {
		w->write = WARM_WRITE_DRY;
		return false;
	}
	if (!election_may_act(s->election, now)) {
		w->write = WARM_WRITE_FENCED;
		return false;
	}
	return true;
}

void warm_pool_finalize(struct scaler *s, size_t i)
{
	struct pool_state *p = &s->pools[i];
	struct warm_pool_state *w = &p->warm;
	char line[1024];

	p->m.have_warm = p->cfg->warm_pool >= 0 && w->have_size;
	p->m.warm_size = w->size;
	if (!s->report ||
	    warm_pool_format(p->cfg->name, p->cfg->warm_pool, w, s->log_format == SCALER_LOG_JSON,
	                     line, sizeof(line)) < 0 ||
	    !line[0])
		return;
	s->report(w->failed || w->write == WARM_WRITE_FAILED ? LOG_WARNING : LOG_INFO, line);
}
