/* runner-scaler metrics in the Prometheus text exposition format (0.0.4): a pure renderer, an
 * atomic textfile writer (node-exporter's textfile collector reads whole files only). */
#ifndef RUNNERD_METRICS_H
#define RUNNERD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Why a read or write failed; the kind label of runner_scaler_api_errors_total. */
enum api_error_kind {
	API_ERR_TIMEOUT,
	API_ERR_CONNECT,   /* refused, unreachable, DNS */
	API_ERR_THROTTLED, /* 429, Throttling */
	API_ERR_AUTH,      /* 401/403: a configuration error */
	API_ERR_HTTP_4XX,
	API_ERR_HTTP_5XX,
	API_ERR_MALFORMED, /* unparsable or oversized body */
	API_ERR_NOT_FOUND, /* the ASG is not in the describe result */
	API_ERR_OTHER,
	API_ERR_KINDS,
};

const char *api_error_kind_name(enum api_error_kind k);

struct metrics_pool {
	const char *name;
	bool have_counts;
	int64_t unclaimed, running;
	bool have_current;
	int64_t current;
	bool have_desired;
	int64_t desired;
	uint64_t holds;
	uint64_t api_errors[API_ERR_KINDS];
	uint64_t launch_failures; /* failed launches judged so far */
	int64_t backoff_s;        /* seconds of launch back-off left; 0: none */
	bool have_warm;           /* warm_pool is managed and its pool was read */
	int64_t warm_size;        /* instances in the group's warm pool */
};

struct metrics_snapshot {
	const struct metrics_pool *pools;
	size_t npools;
	double cycle_duration_s; /* < 0: no cycle finished yet */
	bool leader;
	uint64_t cycles;
};

/* Pure: append the exposition text to out (0, -EFBIG, -ENOMEM). */
int metrics_render(const struct metrics_snapshot *s, struct buf *out);
/* Pure: a label value escaped per the format (\\, \", \n); 0 or -ENOSPC. */
int metrics_escape_label(const char *v, char *out, size_t n);
/* Write text to path through a temp file in the same directory, fsync, rename: readers see the
 * old file or the new one, never a part. 0 or -errno. */
int metrics_write_file(const char *path, const char *text, size_t len);

#endif
