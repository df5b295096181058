/* Prometheus text rendering and the atomic textfile write. */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define LABEL_MAX 1024

static const char *const kind_names[API_ERR_KINDS] = {
        [API_ERR_TIMEOUT] = "timeout",     [API_ERR_CONNECT] = "connect",
        [API_ERR_THROTTLED] = "throttled", [API_ERR_AUTH] = "auth",
        [API_ERR_HTTP_4XX] = "http_4xx",   [API_ERR_HTTP_5XX] = "http_5xx",
        [API_ERR_MALFORMED] = "malformed", [API_ERR_NOT_FOUND] = "not_found",
        [API_ERR_OTHER] = "other",
};

const char *api_error_kind_name(enum api_error_kind k)
{
	if ((unsigned)k >= API_ERR_KINDS)
		return "other";
	return kind_names[k];
}

int metrics_escape_label(const char *v, char *out, size_t n)
{
	size_t o = 0;

	for (; *v; v++) {
		const char *rep = NULL;
		char one[2] = {*v, 0};

		if (*v == '\\')
			rep = "\\\\";
		else if (*v == '"')
			rep = "\\\"";
		else if (*v == '\n')
			rep = "\\n";
		else
			rep = one;
		if (o + strlen(rep) + 1 > n)
			return -ENOSPC;
		memcpy(out + o, rep, strlen(rep));
		o += strlen(rep);
	}
	if (o + 1 > n)
		return -ENOSPC;
	out[o] = '\0';
	return 0;
}

enum which {
	M_UNCLAIMED,
	M_RUNNING,
	M_DESIRED,
	M_CURRENT,
	M_HOLDS,
	M_LAUNCH_FAILURES,
	M_BACKOFF,
	M_WARM_SIZE,
};

struct family {
	const char *name, *type, *help;
	enum which which;
};

static const struct family gauges[] = {
        {"runner_scaler_unclaimed_tasks", "gauge",
         "Unclaimed tasks of the pool's resource class at the last read.", M_UNCLAIMED},
        {"runner_scaler_running_tasks", "gauge",
         "Running tasks of the pool's resource class at the last read.", M_RUNNING},
        {"runner_scaler_desired_capacity", "gauge",
         "Desired capacity the policy chose in the last cycle.", M_DESIRED},
        {"runner_scaler_current_capacity", "gauge", "The ASG's DesiredCapacity as last described.",
         M_CURRENT},
        {"runner_scaler_holds_total", "counter",
         "Cycles in which the pool held because data was missing or a call failed.", M_HOLDS},
        {"runner_scaler_launch_failures_total", "counter",
         "Instances that left the group without their runner ever connecting.", M_LAUNCH_FAILURES},
        {"runner_scaler_pool_backoff_seconds", "gauge",
         "Seconds left of the launch back-off, in which the pool does not raise its desired "
         "capacity (0: none).",
         M_BACKOFF},
        {"runner_scaler_warm_pool_size", "gauge",
         "Instances in the group's warm pool at the last DescribeWarmPool (those being "
         "terminated not counted); only pools with warm_pool set.",
         M_WARM_SIZE},
};

static int header(struct buf *out, const char *name, const char *type, const char *help)
{
	return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int render_family(const struct metrics_snapshot *s, const struct family *f, struct buf *out)
{
	char label[LABEL_MAX];
	int r = header(out, f->name, f->type, f->help);

	for (size_t i = 0; i < s->npools && r == 0; i++) {
		const struct metrics_pool *p = &s->pools[i];
		int64_t v;

		switch (f->which) {
		case M_UNCLAIMED:
			if (!p->have_counts)
				continue;
			v = p->unclaimed;
			break;
		case M_RUNNING:
			if (!p->have_counts)
				continue;
			v = p->running;
			break;
		case M_DESIRED:
			if (!p->have_desired)
				continue;
			v = p->desired;
			break;
		case M_CURRENT:
			if (!p->have_current)
				continue;
			v = p->current;
			break;
		case M_LAUNCH_FAILURES:
			v = (int64_t)p->launch_failures;
			break;
		case M_BACKOFF:
			v = p->backoff_s;
			break;
		case M_WARM_SIZE:
			if (!p->have_warm)
				continue;
			v = p->warm_size;
			break;
		case M_HOLDS:
		default:
			v = (int64_t)p->holds;
			break;
		}
		r = metrics_escape_label(p->name ? p->name : "", label, sizeof(label));
		if (r == 0)
			r = buf_printf(out, "%s{pool=\"%s\"} %" PRId64 "\n", f->name, label, v);
	}
	return r;
}

int metrics_render(const struct metrics_snapshot *s, struct buf *out)
{
	char label[LABEL_MAX];
	int r = 0;

	for (size_t f = 0; f < ARRAY_SIZE(gauges) && r == 0; f++)
		r = render_family(s, &gauges[f], out);
	if (r == 0)
		r = header(out, "runner_scaler_api_errors_total", "counter",
		           "Failed upstream calls by pool and kind.");
	for (size_t i = 0; i < s->npools && r == 0; i++) {
		r = metrics_escape_label(s->pools[i].name ? s->pools[i].name : "", label,
		                         sizeof(label));
		for (unsigned k = 0; k < API_ERR_KINDS && r == 0; k++)
			r = buf_printf(out,
			               "runner_scaler_api_errors_total{pool=\"%s\",kind=\"%s\"} "
			               "%" PRIu64 "\n",
			               label, kind_names[k], s->pools[i].api_errors[k]);
	}
	if (r == 0 && s->cycle_duration_s >= 0) {
		r = header(out, "runner_scaler_cycle_duration_seconds", "gauge",
		           "Wall time of the last complete cycle.");
		if (r == 0)
			r = buf_printf(out, "runner_scaler_cycle_duration_seconds %.6f\n",
			               s->cycle_duration_s);
	}
	if (r == 0)
		r = header(out, "runner_scaler_cycles_total", "counter", "Cycles completed.");
	if (r == 0)
		r = buf_printf(out, "runner_scaler_cycles_total %" PRIu64 "\n", s->cycles);
	if (r == 0)
		r = header(
		        out, "runner_scaler_leader", "gauge",
		        "1 while this process may actuate (holds the lease, or election is off).");
	if (r == 0)
		r = buf_printf(out, "runner_scaler_leader %d\n", s->leader ? 1 : 0);
	return r;
}

int metrics_write_file(const char *path, const char *text, size_t len)
{
	char tmp[4096];
	int fd = -1, r = 0;
	size_t off = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* 0644: node-exporter runs as another user; metrics hold no secrets. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		r = -errno;
out:
	if (fd >= 0)
		close(fd);
	if (r < 0)
		(void)unlink(tmp);
	return r;
}
