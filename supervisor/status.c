#include "status.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static const char *const phase_names[PHASE_COUNT] = {
        [PHASE_STARTING] = "starting",
        [PHASE_METADATA] = "metadata",
        [PHASE_CREDENTIALS] = "credentials",
        [PHASE_LAUNCH_HOOK] = "launch-hook",
        [PHASE_TOKEN] = "token",
        [PHASE_PACKAGES] = "packages",
        [PHASE_AGENT_INSTALL] = "agent-install",
        [PHASE_WARM_WAIT] = "warm-wait",
        [PHASE_AGENT_CONFIG] = "agent-config",
        [PHASE_RUNNING] = "running",
        [PHASE_DRAINING] = "draining",
        [PHASE_LEAVING_ASG] = "leaving-asg",
        [PHASE_POWERING_OFF] = "powering-off",
        [PHASE_FAILED] = "failed",
        [PHASE_EXITED] = "exited",
};

const char *warm_path_name(enum warm_path p)
{
	static const char *const names[] = {
	        [WARM_NONE] = "cold",           [WARM_PREPARE] = "prepare",
	        [WARM_SAME_BOOT] = "same-boot", [WARM_RESUMED] = "resumed",
	        [WARM_USED] = "used",
	};

	return (unsigned)p < ARRAY_SIZE(names) ? names[p] : "unknown";
}

const char *phase_name(enum phase p)
{
	if ((unsigned)p >= PHASE_COUNT)
		return "unknown";
	return phase_names[p];
}

/* Wall clock can step backwards (NTP at boot): never let a duration wrap. */
static uint64_t elapsed_ms(uint64_t since, uint64_t now)
{
	return now > since ? now - since : 0;
}

void status_enter(struct runnerd_status *st, enum phase p, uint64_t now_ms)
{
	uint64_t since = st->phase_since_ms;

	if ((unsigned)p >= PHASE_COUNT)
		return;
	/* Before the first status_enter the "previous phase" is starting, begun at started_ms. */
	if (since == 0)
		since = st->started_ms;
	if ((unsigned)st->phase < PHASE_COUNT && since != 0) {
		st->phase_ms[st->phase] += elapsed_ms(since, now_ms);
		st->phase_visited[st->phase] = true;
	}
	st->phase = p;
	st->phase_since_ms = now_ms;
	st->phase_visited[p] = true;
}

static double ms_to_s(uint64_t ms)
{
	return (double)ms / 1000.0;
}

/* The fixed-size fields may be filled from the network (IMDS, API errors): bound the read and
 * replace bytes that are not valid UTF-8, so the reply is always valid JSON text. */
static char *sanitize(const char *s, size_t max)
{
	size_t n = strnlen(s, max), i = 0, o = 0;
	char *out = malloc(n * 3 + 1); /* worst case every byte becomes U+FFFD */

	if (!out)
		return NULL;
	while (i < n) {
		const unsigned char *u = (const unsigned char *)s + i;
		size_t len = 0;

		if (u[0] < 0x80)
			len = 1;
		else if (u[0] >= 0xc2 && u[0] <= 0xdf)
			len = 2;
		else if (u[0] >= 0xe0 && u[0] <= 0xef)
			len = 3;
		else if (u[0] >= 0xf0 && u[0] <= 0xf4)
			len = 4;
		if (len > 1) {
			size_t k;

			if (i + len > n)
				len = 0;
			for (k = 1; len && k < len; k++)
				if ((u[k] & 0xc0) != 0x80)
					len = 0;
			/* Overlong 3/4-byte forms, surrogates and code points above U+10FFFF. */
			if (len == 3 &&
			    ((u[0] == 0xe0 && u[1] < 0xa0) || (u[0] == 0xed && u[1] > 0x9f)))
				len = 0;
			if (len == 4 &&
			    ((u[0] == 0xf0 && u[1] < 0x90) || (u[0] == 0xf4 && u[1] > 0x8f)))
				len = 0;
		}
		if (len == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, s + i, len);
		o += len;
		i += len;
	}
	out[o] = '\0';
	return out;
}

/* Adds s (bounded by max) as a string, or null when empty and nullable. */
static int add_str(cJSON *obj, const char *key, const char *s, size_t max, bool nullable)
{
	char *clean;
	cJSON *item;

	if (nullable && (max == 0 || s[0] == '\0'))
		return cJSON_AddNullToObject(obj, key) ? 0 : -ENOMEM;
	clean = sanitize(s, max);
	if (!clean)
		return -ENOMEM;
	item = cJSON_AddStringToObject(obj, key, clean);
	free(clean);
	return item ? 0 : -ENOMEM;
}

static int add_num(cJSON *obj, const char *key, double v)
{
	return cJSON_AddNumberToObject(obj, key, v) ? 0 : -ENOMEM;
}

/* ISO-8601 UTC with milliseconds: 2024-01-01T06:00:00.123Z. */
static int add_time(cJSON *obj, const char *key, uint64_t epoch_ms)
{
	char iso[40];
	struct tm tm;
	time_t t = (time_t)(epoch_ms / 1000);

	if (epoch_ms == 0 || !gmtime_r(&t, &tm) || strftime(iso, 24, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return cJSON_AddNullToObject(obj, key) ? 0 : -ENOMEM;
	snprintf(iso + strlen(iso), sizeof(iso) - strlen(iso), ".%03uZ",
	         (unsigned)(epoch_ms % 1000));
	return cJSON_AddStringToObject(obj, key, iso) ? 0 : -ENOMEM;
}

static int add_agent(cJSON *root, const struct runnerd_status *st, uint64_t now_ms)
{
	cJSON *agent = cJSON_AddObjectToObject(root, "agent");
	bool running = st->agent_pid > 0 && st->agent_exit_status < 0;
	int r;

	if (!agent)
		return -ENOMEM;
	r = add_str(agent, "flavour", st->flavour, sizeof(st->flavour), false);
	if (r == 0)
		r = st->agent_pid > 0 ? add_num(agent, "pid", st->agent_pid)
		                      : (cJSON_AddNullToObject(agent, "pid") ? 0 : -ENOMEM);
	if (r == 0)
		r = add_time(agent, "started", st->agent_started_ms);
	if (r == 0)
		r = running && st->agent_started_ms
		            ? add_num(agent, "uptime_seconds",
		                      ms_to_s(elapsed_ms(st->agent_started_ms, now_ms)))
		            : (cJSON_AddNullToObject(agent, "uptime_seconds") ? 0 : -ENOMEM);
	if (r == 0)
		r = st->agent_exit_status >= 0
		            ? add_num(agent, "exit_status", st->agent_exit_status)
		            : (cJSON_AddNullToObject(agent, "exit_status") ? 0 : -ENOMEM);
	return r;
}

/* null on a cold boot; else the path, when and how long the bake work took in the pool. */
static int add_warm(cJSON *root, const struct runnerd_status *st)
{
	const struct warm_status *w = &st->warm;
	cJSON *o;
	int r;

	if (w->path == WARM_NONE && !w->prepared_ms)
		return cJSON_AddNullToObject(root, "warm") ? 0 : -ENOMEM;
	o = cJSON_AddObjectToObject(root, "warm");
	if (!o || !cJSON_AddStringToObject(o, "path", warm_path_name(w->path)))
		return -ENOMEM;
	r = add_time(o, "prepared", w->prepared_ms);
	if (r == 0)
		r = w->prepared_ms ? add_num(o, "prepare_seconds",
		                             ms_to_s(w->packages_ms + w->agent_install_ms))
		                   : (cJSON_AddNullToObject(o, "prepare_seconds") ? 0 : -ENOMEM);
	if (r == 0)
		r = add_str(o, "launch_hook", w->hook, sizeof(w->hook), true);
	return r;
}

int status_to_json(const struct runnerd_status *st, uint64_t now_ms, struct buf *out)
{
	cJSON *root = cJSON_CreateObject(), *phases;
	uint64_t since = st->phase_since_ms ? st->phase_since_ms : st->started_ms;
	char *text = NULL;
	int r = -ENOMEM;
	unsigned i;

	if (!root)
		goto out;
	if ((r = add_num(root, "version", 1)) < 0)
		goto out;
	if (!cJSON_AddStringToObject(root, "phase", phase_name(st->phase)))
		goto out;
	if ((r = add_num(root, "phase_seconds", ms_to_s(elapsed_ms(since, now_ms)))) < 0)
		goto out;
	r = -ENOMEM;
	phases = cJSON_AddObjectToObject(root, "phases");
	if (!phases)
		goto out;
	/* Every visited phase in boot order; the current one includes its time so far. */
	for (i = 0; i < PHASE_COUNT; i++) {
		uint64_t ms = st->phase_ms[i];

		if (!st->phase_visited[i] && ms == 0 && i != (unsigned)st->phase)
			continue;
		if (i == (unsigned)st->phase)
			ms += elapsed_ms(since, now_ms);
		if ((r = add_num(phases, phase_names[i], ms_to_s(ms))) < 0)
			goto out;
	}
	if ((r = add_str(root, "instance_id", st->instance_id, sizeof(st->instance_id), false)) <
	            0 ||
	    (r = add_str(root, "region", st->region, sizeof(st->region), false)) < 0 ||
	    (r = add_str(root, "lifecycle_state", st->lifecycle_state, sizeof(st->lifecycle_state),
	                 false)) < 0 ||
	    (r = add_str(root, "notice", st->notice, sizeof(st->notice), true)) < 0 ||
	    (r = add_str(root, "last_error", st->last_error, sizeof(st->last_error), true)) < 0 ||
	    (r = add_time(root, "started", st->started_ms)) < 0 ||
	    (r = add_num(root, "uptime_seconds",
	                 st->started_ms ? ms_to_s(elapsed_ms(st->started_ms, now_ms)) : 0)) < 0 ||
	    (r = add_agent(root, st, now_ms)) < 0 || (r = add_warm(root, st)) < 0)
		goto out;
	r = -ENOMEM;
	text = cJSON_PrintUnformatted(root);
	if (!text)
		goto out;
	r = buf_append_str(out, text);
out:
	cJSON_free(text);
	cJSON_Delete(root);
	return r;
}
