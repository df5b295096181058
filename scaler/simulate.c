/* runner-scaler simulate: the command: options, the files it reads and writes, and the run
 * (the parts: sim_trace.c, sim_model.c, sim_report.c; the model in simulate.h). */
#include "simulate.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "launches.h"
#include "scaler_config.h"
#include "sim_internal.h"
#include "util.h"

#define TRACE_FILE_MAX ((size_t)256 * 1024 * 1024)
#define REPORT_MAX     ((size_t)64 * 1024 * 1024)

/* ---- the command -------------------------------------------------------------------------- */

static int read_file(const char *path, struct buf *out, FILE *err)
{
	int r = buf_read_file(out, path);

	if (r == -EFBIG)
		fprintf(err, "runner-scaler simulate: %s: larger than %zu bytes\n", path, out->max);
	else if (r < 0)
		fprintf(err, "runner-scaler simulate: %s: %s\n", path, strerror(-r));
	return r;
}

static int write_file(const char *path, const struct buf *b, FILE *err)
{
	char tmp[4096];
	FILE *f;
	int r = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp)) {
		fprintf(err, "runner-scaler simulate: %s: path too long\n", path);
		return -ENAMETOOLONG;
	}
	f = fopen(tmp, "we");
	if (!f) {
		fprintf(err, "runner-scaler simulate: %s: %s\n", tmp, strerror(errno));
		return -errno;
	}
	if (fwrite(b->data ? b->data : "", 1, b->len, f) != b->len)
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -EIO;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		fprintf(err, "runner-scaler simulate: cannot write %s: %s\n", path, strerror(-r));
		unlink(tmp);
	}
	return r;
}

static void sim_usage(FILE *f)
{
	fprintf(f,
	        "usage: runner-scaler simulate --trace FILE [--policy runnerd|tutorial]\n"
	        "         [--boot-time SECONDS[-SECONDS]] [-c scaler.conf] [--max N] [--seed N]\n"
	        "         [--interval DURATION] [--idle-timeout DURATION] [--claim-interval "
	        "DURATION]\n"
	        "         [--replace-delay DURATION] [--fail-launches FROM-TO]\n"
	        "         [--launch-failures N] [--warm-pool N [--resume-time SECONDS[-SECONDS]]]\n"
	        "         [--json] [--plot FILE.svg]\n"
	        "The trace is CSV: submit_s,duration_s[,resource_class], an optional header.\n"
	        "Model defaults (sources in scaler/simulate.h): boot %d-%d s uniform; poll every\n"
	        "%d s (runnerd without -c; with it [scaler] interval) or %d s (tutorial); claim\n"
	        "every %d s; agent idle timeout %d s; tutorial replacement after %d s; pools\n"
	        "from the trace with max %d unless -c or --max say otherwise.\n"
	        "--fail-launches FROM-TO: instances launched then (simulated seconds) fail their\n"
	        "boot; the report adds the same run without the launch back-off. "
	        "--launch-failures\n"
	        "N: the back-off's threshold for every pool (default -c's, else %d; 0: off).\n"
	        "--warm-pool N: every group keeps N prepared instances stopped in a warm pool;\n"
	        "a scale-out takes one first (resume %d-%d s uniform, or --resume-time), else\n"
	        "launches cold; each one taken is refilled by a launch that boots, prepares and\n"
	        "stops (+%d s). The report adds the stopped-instance seconds (EBS only) and the\n"
	        "refills' running time.\n",
	        SIM_BOOT_MIN_S, SIM_BOOT_MAX_S, SIM_RUNNERD_INTERVAL_S, SIM_TUTORIAL_INTERVAL_S,
	        SIM_CLAIM_INTERVAL_S, SIM_IDLE_TIMEOUT_S, SIM_REPLACE_DELAY_S, SIM_DEFAULT_MAX,
	        LAUNCH_FAILURES_DEFAULT, SIM_RESUME_MIN_S, SIM_RESUME_MAX_S, SIM_WARM_STOP_S);
}

static int opt_duration(const char *name, const char *v, int64_t *ms, FILE *err)
{
	uint64_t u;

	if (cfg_parse_duration(v, &u) < 0 || u > (uint64_t)SIM_STALL_S * SIM_MS_PER_S) {
		fprintf(err,
		        "runner-scaler simulate: --%s: invalid duration '%s' (use 10s, 1m, 0)\n",
		        name, v);
		return -EINVAL;
	}
	*ms = (int64_t)u;
	return 0;
}

static int opt_u64(const char *name, const char *v, uint64_t lim, uint64_t *out, FILE *err)
{
	char *end;
	unsigned long long u;

	errno = 0;
	u = strtoull(v, &end, 10);
	if (!*v || *v == '-' || *end || errno || u > lim) {
		fprintf(err,
		        "runner-scaler simulate: --%s: want a number up to %" PRIu64 ", not '%s'\n",
		        name, lim, v);
		return -EINVAL;
	}
	*out = u;
	return 0;
}

struct sim_opts {
	const char *trace, *config, *plot, *boot;
	const char *interval, *idle, *claim, *replace, *fail, *resume;
	bool json, have_max, have_launch_failures, have_warm_pool;
	uint64_t max, seed, launch_failures, warm_pool;
	enum sim_policy policy;
};

static int parse_sim_args(int argc, char **argv, struct sim_opts *o, FILE *out, FILE *err)
{
	static const struct option opts[] = {
	        {"trace", required_argument, NULL, 't'},
	        {"policy", required_argument, NULL, 'p'},
	        {"boot-time", required_argument, NULL, 'b'},
	        {"config", required_argument, NULL, 'c'},
	        {"json", no_argument, NULL, 'j'},
	        {"plot", required_argument, NULL, 'P'},
	        {"seed", required_argument, NULL, 's'},
	        {"max", required_argument, NULL, 'm'},
	        {"interval", required_argument, NULL, 'i'},
	        {"idle-timeout", required_argument, NULL, 'I'},
	        {"claim-interval", required_argument, NULL, 'C'},
	        {"replace-delay", required_argument, NULL, 'R'},
	        {"fail-launches", required_argument, NULL, 'F'},
	        {"launch-failures", required_argument, NULL, 'L'},
	        {"warm-pool", required_argument, NULL, 'W'},
	        {"resume-time", required_argument, NULL, 'r'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->seed = 1;
	optind = 0; /* glibc: a full re-initialisation */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			o->trace = optarg;
			break;
		case 'p':
			if (strcmp(optarg, "runnerd") == 0) {
				o->policy = SIM_POLICY_RUNNERD;
			} else if (strcmp(optarg, "tutorial") == 0) {
				o->policy = SIM_POLICY_TUTORIAL;
			} else {
				fprintf(err,
				        "runner-scaler simulate: --policy: want runnerd or "
				        "tutorial, not '%s'\n",
				        optarg);
				return EX_USAGE;
			}
			break;
		case 'b':
			o->boot = optarg;
			break;
		case 'c':
			o->config = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'P':
			o->plot = optarg;
			break;
		case 's':
			if (opt_u64("seed", optarg, UINT64_MAX, &o->seed, err) < 0)
				return EX_USAGE;
			break;
		case 'm':
			if (opt_u64("max", optarg, 100000, &o->max, err) < 0)
				return EX_USAGE;
			o->have_max = true;
			break;
		case 'i':
			o->interval = optarg;
			break;
		case 'I':
			o->idle = optarg;
			break;
		case 'C':
			o->claim = optarg;
			break;
		case 'R':
			o->replace = optarg;
			break;
		case 'F':
			o->fail = optarg;
			break;
		case 'L':
			if (opt_u64("launch-failures", optarg, LAUNCH_FAILURES_MAX,
			            &o->launch_failures, err) < 0)
				return EX_USAGE;
			o->have_launch_failures = true;
			break;
		case 'W':
			if (opt_u64("warm-pool", optarg, SIM_WARM_POOL_MAX, &o->warm_pool, err) < 0)
				return EX_USAGE;
			o->have_warm_pool = true;
			break;
		case 'r':
			o->resume = optarg;
			break;
		case 'h':
			sim_usage(out);
			return EX_OK;
		case ':':
			fprintf(err, "runner-scaler simulate: %s needs a value\n",
			        argv[optind - 1]);
			sim_usage(err);
			return EX_USAGE;
		default:
			fprintf(err, "runner-scaler simulate: unknown option '%s'\n",
			        argv[optind - 1]);
			sim_usage(err);
			return EX_USAGE;
		}
	}
	/* The only operand is the word "simulate" itself (options may come on either side). */
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "simulate") != 0) {
			fprintf(err, "runner-scaler simulate: unexpected argument '%s'\n", argv[i]);
			return EX_USAGE;
		}
	}
	if (!o->trace) {
		fprintf(err, "runner-scaler simulate: --trace FILE is required\n");
		sim_usage(err);
		return EX_USAGE;
	}
	if (o->resume && !o->have_warm_pool) {
		fprintf(err, "runner-scaler simulate: --resume-time: only with --warm-pool N\n");
		return EX_USAGE;
	}
	return -1;
}

static int build_model(const struct sim_opts *o, const struct scaler_config *cfg,
                       struct sim_model *m, FILE *err)
{
	sim_model_defaults(m, o->policy);
	m->seed = o->seed;
	if (cfg && o->policy == SIM_POLICY_RUNNERD)
		m->interval_ms = (int64_t)cfg->scaler->interval_ms;
	if (o->boot && sim_parse_boot(o->boot, &m->boot_min_ms, &m->boot_max_ms) < 0) {
		fprintf(err,
		        "runner-scaler simulate: --boot-time: want SECONDS or MIN-MAX (\"45-60\", "
		        "\"50\"), not '%s'\n",
		        o->boot);
		return -EINVAL;
	}
	if ((o->interval && opt_duration("interval", o->interval, &m->interval_ms, err) < 0) ||
	    (o->idle && opt_duration("idle-timeout", o->idle, &m->idle_timeout_ms, err) < 0) ||
	    (o->claim &&
	     opt_duration("claim-interval", o->claim, &m->claim_interval_ms, err) < 0) ||
	    (o->replace &&
	     opt_duration("replace-delay", o->replace, &m->replace_delay_ms, err) < 0))
		return -EINVAL;
	if (o->resume && sim_parse_resume(o->resume, &m->resume_min_ms, &m->resume_max_ms) < 0) {
		fprintf(err,
		        "runner-scaler simulate: --resume-time: want SECONDS or MIN-MAX "
		        "(\"30-40\", "
		        "\"36\"), not '%s'\n",
		        o->resume);
		return -EINVAL;
	}
	m->warm_report = o->have_warm_pool;
	if (o->fail && sim_parse_window(o->fail, &m->fail_from_ms, &m->fail_to_ms) < 0) {
		fprintf(err,
		        "runner-scaler simulate: --fail-launches: want FROM-TO in seconds, FROM "
		        "below TO (\"600-1800\"), not '%s'\n",
		        o->fail);
		return -EINVAL;
	}
	return 0;
}

/* Pools: from scaler.conf, or one per resource class of the trace. */
static int build_pools(const struct sim_opts *o, const struct scaler_config *cfg,
                       const struct sim_trace *t, struct sim_pool **pools, size_t *npools,
                       FILE *err)
{
	size_t n = cfg ? cfg->npools : t->nclasses;
	struct sim_pool *p = calloc(n ? n : 1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (cfg) {
			const struct pool_section *ps = cfg->pools[i];

			if (strlen(ps->resource_class) >= sizeof(p[i].resource_class)) {
				fprintf(err,
				        "runner-scaler simulate: pool %s: resource_class too "
				        "long\n",
				        ps->name);
				free(p);
				return -EINVAL;
			}
			str_copy(p[i].name, ps->name, sizeof(p[i].name));
			str_copy(p[i].resource_class, ps->resource_class,
			         sizeof(p[i].resource_class));
			p[i].min = ps->min;
			p[i].max = ps->max;
			p[i].headroom = ps->headroom;
			p[i].max_step = ps->max_step;
			p[i].launch_failures = ps->launch_failures;
			if (ps->warm_pool > 0) /* -1: not managed, as no pool */
				p[i].warm_pool = ps->warm_pool;
		} else {
			str_copy(p[i].name, t->classes[i][0] ? t->classes[i] : "default",
			         sizeof(p[i].name));
			str_copy(p[i].resource_class, t->classes[i], sizeof(p[i].resource_class));
			p[i].max = SIM_DEFAULT_MAX;
			p[i].launch_failures = LAUNCH_FAILURES_DEFAULT;
		}
		if (o->have_max)
			p[i].max = (int64_t)o->max;
		if (o->have_launch_failures)
			p[i].launch_failures = (int64_t)o->launch_failures;
		if (o->have_warm_pool)
			p[i].warm_pool = (int64_t)o->warm_pool;
		if (p[i].min > p[i].max)
			p[i].min = p[i].max;
		if (o->policy == SIM_POLICY_TUTORIAL) {
			/* The tutorial's function knows only max (it sets MinSize 0), and nothing
			 * of failed launches. A warm pool is the group's: it stays. */
			p[i].min = p[i].headroom = p[i].max_step = p[i].launch_failures = 0;
		}
	}
	*pools = p;
	*npools = n;
	return 0;
}

int simulate_main(int argc, char **argv, FILE *out, FILE *err)
{
	struct sim_opts o;
	struct scaler_config cfg;
	bool have_cfg = false;
	struct sim_model m;
	struct sim_trace t;
	struct sim_result res, without;
	struct sim_pool *pools = NULL, *off = NULL;
	bool compare = false;
	size_t npools = 0;
	struct buf text, report;
	char why[512] = "", *errors = NULL;
	int rc, r;

	memset(&t, 0, sizeof(t));
	memset(&res, 0, sizeof(res));
	memset(&without, 0, sizeof(without));
	buf_init(&text, TRACE_FILE_MAX);
	buf_init(&report, REPORT_MAX);
	rc = parse_sim_args(argc, argv, &o, out, err);
	if (rc >= 0)
		goto out;
	rc = EX_CONFIG;
	if (o.config) {
		r = scaler_config_load(o.config, &cfg, &errors);
		if (r < 0) {
			if (errors && errors[0])
				fprintf(err, "%s", errors);
			else
				fprintf(err, "%s: cannot load: %s\n", o.config, strerror(-r));
			goto out;
		}
		have_cfg = true;
	}
	rc = EX_USAGE;
	if (build_model(&o, have_cfg ? &cfg : NULL, &m, err) < 0)
		goto out;
	rc = EX_NOINPUT;
	if (read_file(o.trace, &text, err) < 0)
		goto out;
	rc = EX_DATAERR;
	r = sim_trace_parse(text.data ? text.data : "", text.len, &t, why, sizeof(why));
	if (r < 0) {
		fprintf(err, "runner-scaler simulate: %s: %s\n", o.trace,
		        r == -ENOMEM ? "out of memory" : why);
		goto out;
	}
	r = build_pools(&o, have_cfg ? &cfg : NULL, &t, &pools, &npools, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < npools; i++) /* a pool from -c: reported as --warm-pool's */
		m.warm_report |= pools[i].warm_pool > 0;
	r = sim_run(&m, pools, npools, &t, o.plot != NULL, &res, why, sizeof(why));
	if (r == -ENOMEM) {
		rc = EX_SOFTWARE;
		fprintf(err, "runner-scaler simulate: out of memory\n");
		goto out;
	}
	if (r < 0) {
		fprintf(err, "runner-scaler simulate: %s: %s\n", o.trace, why);
		goto out;
	}
	/* Failing launches: the same run without the back-off, for comparison. */
	for (size_t i = 0; m.fail_to_ms > m.fail_from_ms && i < npools; i++)
		compare |= pools[i].launch_failures > 0;
	if (compare) {
		off = calloc(npools, sizeof(*off));
		if (!off) {
			rc = EX_SOFTWARE;
			goto out;
		}
		memcpy(off, pools, npools * sizeof(*off));
		for (size_t i = 0; i < npools; i++)
			off[i].launch_failures = 0;
		r = sim_run(&m, off, npools, &t, false, &without, why, sizeof(why));
		if (r < 0) {
			rc = r == -ENOMEM ? EX_SOFTWARE : rc;
			fprintf(err,
			        "runner-scaler simulate: %s (without the launch back-off): %s\n",
			        o.trace, r == -ENOMEM ? "out of memory" : why);
			goto out;
		}
	}
	rc = EX_SOFTWARE;
	if (o.plot) {
		const char *dot = strrchr(o.plot, '.');

		if (!dot || strcmp(dot, ".svg") != 0) {
			fprintf(err,
			        "runner-scaler simulate: --plot: only SVG is written (FILE.svg)\n");
			rc = EX_USAGE;
			goto out;
		}
		if (sim_render_svg(&m, pools, &res, NULL, &report) < 0 ||
		    write_file(o.plot, &report, err) < 0) {
			rc = EX_CANTCREAT;
			goto out;
		}
		buf_reset(&report);
	}
	r = o.json ? sim_render_json(&m, pools, &res, compare ? &without : NULL, &report)
	           : sim_render_text(&m, pools, &res, compare ? &without : NULL, &report);
	if (r < 0)
		goto out;
	if (fwrite(report.data, 1, report.len, out) != report.len || fflush(out) != 0) {
		rc = EX_IOERR;
		goto out;
	}
	rc = EX_OK;
out:
	if (have_cfg)
		scaler_config_free(&cfg);
	free(errors);
	free(pools);
	free(off);
	sim_result_free(&res);
	sim_result_free(&without);
	sim_trace_free(&t);
	buf_free(&text);
	buf_free(&report);
	return rc;
}
