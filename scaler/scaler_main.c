/* runner-scaler: queue depth to ASG capacity (runner-scaler(8)).
 *
 * One epoll loop: a signalfd (TERM/INT finish the cycle and exit, HUP reloads), a timerfd for the
 * interval, one for the election, one for the systemd watchdog, and the curl multi sockets and
 * timer of the cycle engine (cycle.c). Set-up may exit with sysexits codes; once the loop runs,
 * failures are logged and the pools hold — the loop itself never dies of an upstream. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>

#include "aws.h"
#include "aws_services.h"
#include "buf.h"
#include "creds.h"
#include "cycle.h"
#include "election.h"
#include "evloop.h"
#include "http.h"
#include "imds.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "runner_api.h"
#include "scaler_config.h"
#include "simulate.h"
#include "util.h"

#define ONCE_BUDGET_MS  27000 /* --once ends within 30 s: the cycle's hard deadline */
#define ONCE_ALARM_S    29    /* and, should anything still block, SIGALRM ends it */
#define TOKEN_MAX       ((size_t)64 * 1024)
#define IMDS_QUICK_MS   1000L /* instance id and region: IMDS answers at once or not at all */
#define REGION_ATTEMPTS 5u
#define METRICS_MAX     ((size_t)64 * 1024 * 1024)

struct app {
	const char *config_path;
	bool once, dry_run;
	int log_format_cli; /* -1: from the config */

	int epfd;
	struct ev_source sig, tick, elect, watchdog;
	struct scaler s;

	struct http_client *http;
	struct imds imds;
	struct aws_ctx aws;
	bool creds_ok;
	struct runner_api api;
	struct buf token;
	bool have_token;
	uint64_t token_tried_at;
	struct election el;
	char default_region[64];
	struct mhttp *mh;
	struct mhttp *mh_retired; /* replaced by a reload: freed after the epoll batch */
	char *listen;             /* the address mh listens on */

	uint64_t once_deadline;
	bool ready_sent, stop, reload, done;
	int exit_code;
};

static struct app app;

static void usage(FILE *f)
{
	fprintf(f, "usage: runner-scaler [-c FILE] [--once] [--dry-run] [--log-format text|json]\n"
	           "       runner-scaler check-config [-c FILE]\n"
	           "       runner-scaler simulate --trace FILE [...]\n"
	           "       runner-scaler --version | --help\n"
	           "Default config: " SCALER_CONFIG_DEFAULT "\n");
}

static void report_line(int priority, const char *line)
{
	log_msg(priority, "%s", line);
}

static void once_alarm(int sig)
{
	static const char msg[] = "runner-scaler: --once ran out of time, exiting\n";

	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(EX_UNAVAILABLE);
}

/* ---- set-up helpers ----------------------------------------------------------------------- */

static int print_config_errors(const char *path, int r, const char *errors)
{
	if (errors && errors[0])
		fprintf(stderr, "%s", errors);
	else if (r == -ENOENT)
		fprintf(stderr, "%s: cannot read: no such file\n", path);
	else
		fprintf(stderr, "%s: cannot load: %s\n", path, strerror(-r));
	return EX_CONFIG;
}

/* The blocking AWS calls (the token fetch; the lease sets its own for each tick): each call
 * may take two request timeouts, counted from its own start. The one absolute bound is --once's
 * budget (app.aws.cap_mono_ms, set in main for the whole process). */
static void aws_bound(long timeout_ms, unsigned attempts)
{
	app.aws.timeout_ms = timeout_ms;
	app.aws.max_attempts = attempts;
	app.aws.call_budget_ms = 2 * (uint64_t)timeout_ms;
}

static bool need_default_region(const struct scaler_config *c)
{
	if (c->circleci->token_source == TOKEN_SECRETSMANAGER ||
	    c->circleci->token_source == TOKEN_SSM || c->election->mode == ELECTION_MODE_DYNAMODB)
		return true;
	for (size_t i = 0; i < c->npools; i++)
		if (!c->pools[i]->region || !c->pools[i]->region[0])
			return true;
	return false;
}

/* The region for the token and the lease: the environment, else IMDS. IMDS may be slow to
 * answer early in a boot: a few attempts with a backoff (REGION_ATTEMPTS, about 20 s in all; not
 * past --once's budget). -ENODEV when IMDS is disabled (a configuration problem); any other
 * error is one a restart may cure. */
static int resolve_default_region(const struct scaler_config *c)
{
	long saved = app.imds.timeout_ms;
	int r = 0;

	if (app.default_region[0])
		return 0;
	if (aws_region_from_env(app.default_region, sizeof(app.default_region)) == 0)
		return 0;
	if (!need_default_region(c))
		return 0;
	app.imds.timeout_ms = IMDS_QUICK_MS;
	for (unsigned attempt = 0; attempt < REGION_ATTEMPTS; attempt++) {
		uint64_t d = backoff_full_jitter_ms(attempt, 1000, 8000, random_u32()) + 250;

		r = imds_region(&app.imds, app.default_region, sizeof(app.default_region));
		if (r == 0 || r == -ENODEV)
			break;
		if (attempt + 1 == REGION_ATTEMPTS ||
		    (app.once_deadline && now_mono_ms() + d >= app.once_deadline))
			break;
		log_warn("region: IMDS: %s (%s); trying again", strerror(-r), app.imds.last_call);
		sleep_ms(d);
	}
	app.imds.timeout_ms = saved;
	if (r < 0) {
		app.default_region[0] = '\0';
		log_err("no region: set AWS_REGION (or [pool] region for every pool); IMDS gave "
		        "none (%s)",
		        r == -ENODEV && app.imds.disabled_reason[0] ? app.imds.disabled_reason
		                                                    : strerror(-r));
		return r;
	}
	return 0;
}

static void ensure_creds(void)
{
	int r;

	if (app.creds_ok && app.aws.refresh && aws_creds_expiring(&app.aws.creds, time(NULL))) {
		r = app.aws.refresh(app.aws.refresh_user, &app.aws.creds);
		if (r < 0)
			log_warn("unable to refresh instance-role credentials: %s", strerror(-r));
	}
	if (app.creds_ok)
		return;
	r = creds_resolve(&app.aws, &app.imds);
	if (r < 0) {
		str_printf(
		        app.s.creds_problem, sizeof(app.s.creds_problem),
		        "neither AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY nor an instance role (%s)",
		        strerror(-r));
		log_err("no AWS credentials: %s", app.s.creds_problem);
		return;
	}
	app.creds_ok = true;
	app.s.creds_problem[0] = '\0';
}

static int read_token_file(const char *path, struct buf *out, char *why, size_t n)
{
	int r = buf_read_file(out, path);

	if (r == -EFBIG)
		str_printf(why, n, "%s is larger than %zu bytes", path, TOKEN_MAX);
	else if (r < 0)
		str_printf(why, n, "cannot read %s: %s", path, strerror(-r));
	return r;
}

/* Strip surrounding whitespace in place; refuse what could not be a token (it goes into an
 * HTTP header: a line break there would forge headers). */
static int token_clean(struct buf *t, char *why, size_t n)
{
	size_t a = 0, b = t->len;

	while (a < b && (t->data[a] == ' ' || t->data[a] == '\t' || t->data[a] == '\r' ||
	                 t->data[a] == '\n'))
		a++;
	while (b > a && (t->data[b - 1] == ' ' || t->data[b - 1] == '\t' ||
	                 t->data[b - 1] == '\r' || t->data[b - 1] == '\n'))
		b--;
	memmove(t->data, t->data + a, b - a);
	t->len = b - a;
	t->data[t->len] = '\0';
	if (t->len == 0) {
		str_printf(why, n, "the token is empty");
		return -EINVAL;
	}
	for (size_t i = 0; i < t->len; i++) {
		if ((unsigned char)t->data[i] < 0x20 || (unsigned char)t->data[i] == 0x7f) {
			str_printf(why, n, "the token contains control characters");
			return -EINVAL;
		}
	}
	return 0;
}

static void fetch_token(void)
{
	const struct circleci_section *cc = app.s.cfg.circleci;
	struct aws_error err;
	struct buf tok;
	char why[160] = "";
	const char *v;
	int r = 0;

	app.token_tried_at = now_mono_ms();
	buf_init(&tok, TOKEN_MAX);
	memset(&err, 0, sizeof(err));
	switch (cc->token_source) {
	case TOKEN_ENV:
		v = getenv(scaler_token_env_name(cc));
		if (!v || !v[0]) {
			str_printf(why, sizeof(why), "environment variable %s is not set",
			           scaler_token_env_name(cc));
			r = -ENOENT;
		} else {
			r = buf_append_str(&tok, v);
		}
		break;
	case TOKEN_FILE:
		r = read_token_file(cc->token_id, &tok, why, sizeof(why));
		break;
	case TOKEN_SECRETSMANAGER:
	case TOKEN_SSM:
		ensure_creds();
		if (!app.creds_ok) {
			str_printf(why, sizeof(why), "no AWS credentials to read it with");
			r = -ENOKEY;
			break;
		}
		aws_bound((long)app.s.cfg.scaler->request_timeout_ms, 2);
		if (cc->token_source == TOKEN_SECRETSMANAGER)
			r = sm_get_secret(&app.aws, app.default_region, cc->token_id, cc->token_key,
			                  &tok, &err);
		else
			r = ssm_get_parameter(&app.aws, app.default_region, cc->token_id, &tok,
			                      &err);
		if (r < 0)
			str_printf(why, sizeof(why), "%s %s: %s%s%s",
			           cc->token_source == TOKEN_SSM ? "SSM parameter" : "secret",
			           cc->token_id, err.code[0] ? err.code : strerror(-r),
			           err.message[0] ? ": " : "", err.message);
		break;
	}
	if (r == 0)
		r = token_clean(&tok, why, sizeof(why));
	if (r < 0) {
		log_err("unable to get the CircleCI API token (token_source = %s): %s",
		        scaler_token_source_name(cc->token_source), why);
		buf_wipe(&tok);
		/* A token we had keeps working until the new one can be read. */
		if (app.api.token && app.api.token[0]) {
			log_warn("keeping the previous token for now");
			return;
		}
		str_printf(app.s.token_problem, sizeof(app.s.token_problem), "%s", why);
		return;
	}
	if (log_add_secret(tok.data) == -ENOSPC) {
		log_forget_secrets();
		(void)log_add_secret(tok.data);
	}
	buf_wipe(&app.token);
	app.token = tok;
	app.api.token = app.token.data;
	app.have_token = true;
	app.s.token_problem[0] = '\0';
}

static int api_setup(const struct scaler_config *c)
{
	const char *token = app.api.token;
	int r = runner_api_init(&app.api, app.http, c->circleci->api_url, token);

	if (r < 0)
		log_err("[circleci] api_url: unusable Runner API URL: %s", strerror(-r));
	return r;
}

static int election_setup(const struct scaler_config *c)
{
	char iid[64] = "", owner[ELECTION_OWNER_MAX];
	long saved = app.imds.timeout_ms;
	int r;

	if (c->election->mode != ELECTION_MODE_DYNAMODB) {
		election_init_disabled(&app.el);
		return 0;
	}
	if (!app.imds.disabled) {
		app.imds.timeout_ms = IMDS_QUICK_MS;
		if (imds_instance_id(&app.imds, iid, sizeof(iid)) < 0)
			iid[0] = '\0';
		app.imds.timeout_ms = saved;
	}
	r = election_owner_id(iid, owner, sizeof(owner));
	if (r == 0)
		r = election_init(&app.el, c->election->table, c->election->name, owner,
		                  app.default_region, c->election->lease_ms,
		                  (long)c->scaler->request_timeout_ms);
	if (r < 0) {
		log_err("[election]: cannot set up the lease: %s", strerror(-r));
		return r;
	}
	log_info("election: contending for lease %s in table %s as %s (lease %" PRIu64 " ms)",
	         app.el.lease_id, app.el.table, app.el.owner, app.el.lease_ms);
	return 0;
}

static bool election_changed(const struct scaler_config *c)
{
	const struct election_section *e = c->election;

	if ((e->mode == ELECTION_MODE_DYNAMODB) != app.el.enabled)
		return true;
	if (!app.el.enabled)
		return false;
	if (app.el.fenced)
		return true;
	/* The lease calls' timeout follows request_timeout too (election_init). */
	return strcmp(e->table, app.el.table) != 0 || strcmp(e->name, app.el.lease_id) != 0 ||
	       e->lease_ms != app.el.lease_ms ||
	       election_call_timeout_ms(e->lease_ms, (long)c->scaler->request_timeout_ms) !=
	               app.el.call_timeout_ms;
}

static int listen_setup(const char *listen)
{
	char host[64];
	uint16_t port;
	int r;

	if (app.mh && listen && app.listen && strcmp(listen, app.listen) == 0)
		return 0;
	/* A reload runs inside an epoll batch that may still hold events of this server's
	 * connections: it stops serving now and is freed after the batch (loop()). */
	mhttp_retire(app.mh, &app.mh_retired);
	app.mh = NULL;
	free(app.listen);
	app.listen = NULL;
	if (!listen || !listen[0])
		return 0;
	r = scaler_parse_listen(listen, host, sizeof(host), &port);
	if (r == 0)
		r = mhttp_open(app.epfd, host, port, &app.mh);
	if (r < 0) {
		log_err("[scaler] listen = %s: unable to listen: %s", listen, strerror(-r));
		return r;
	}
	app.listen = strdup(listen);
	log_info("serving metrics on http://%s/metrics", listen);
	return 0;
}

static void arm(int fd, uint64_t first_ms, uint64_t every_ms)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = (time_t)(first_ms / 1000);
	its.it_value.tv_nsec = (long)(first_ms % 1000) * 1000000L;
	if (first_ms == 0)
		its.it_value.tv_nsec = 1;
	its.it_interval.tv_sec = (time_t)(every_ms / 1000);
	its.it_interval.tv_nsec = (long)(every_ms % 1000) * 1000000L;
	(void)timerfd_settime(fd, 0, &its, NULL);
}

static void arm_election(void)
{
	uint64_t now = now_mono_ms(), due = app.el.next_due;

	if (!app.el.enabled || app.el.fenced) {
		struct itimerspec off;

		memset(&off, 0, sizeof(off));
		(void)timerfd_settime(app.elect.fd, 0, &off, NULL);
		return;
	}
	/* Wake for the next call, and at the deadline itself so the loss is noticed on time. */
	if (app.el.leader && app.el.valid_until && app.el.valid_until < due)
		due = app.el.valid_until;
	arm(app.elect.fd, due > now ? due - now : 0, 0);
}

/* ---- reporting ---------------------------------------------------------------------------- */

static void publish_metrics(void)
{
	const char *path = app.s.cfg.scaler->metrics;
	struct metrics_snapshot snap;
	struct buf out;
	int r;

	if ((!path || !path[0]) && !app.mh)
		return;
	if (scaler_metrics(&app.s, election_may_act(&app.el, now_mono_ms()), &snap) < 0)
		return;
	buf_init(&out, METRICS_MAX);
	r = metrics_render(&snap, &out);
	free((void *)snap.pools);
	if (r < 0) {
		log_warn("unable to render metrics: %s", strerror(-r));
		goto out;
	}
	if (path && path[0]) {
		r = metrics_write_file(path, out.data ? out.data : "", out.len);
		if (r < 0)
			log_warn("unable to write metrics to %s: %s", path, strerror(-r));
	}
	if (app.mh)
		(void)mhttp_set_body(app.mh, out.data ? out.data : "", out.len);
out:
	buf_free(&out);
}

static void notify_ready(const char *status)
{
	if (!app.ready_sent) {
		(void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
		app.ready_sent = true;
	} else {
		(void)sd_notifyf(0, "STATUS=%s", status);
	}
}

/* ---- the cycle ---------------------------------------------------------------------------- */

static void do_reload(void);

static void start_cycle(void)
{
	uint64_t now = now_mono_ms();
	int r;

	if (scaler_busy(&app.s) || app.stop || app.done)
		return;
	if (!election_may_act(&app.el, now))
		return;
	ensure_creds();
	/* A missing or refused token is fetched again, at most once per interval. */
	if ((!app.have_token) &&
	    (!app.token_tried_at || now - app.token_tried_at >= app.s.cfg.scaler->interval_ms ||
	     app.once))
		fetch_token();
	r = scaler_cycle_start(&app.s, now_mono_ms());
	if (r < 0 && r != -EBUSY)
		log_err("unable to start a cycle: %s", strerror(-r));
}

static void cycle_finished(void)
{
	char status[160];

	app.s.finished = false;
	publish_metrics();
	snprintf(status, sizeof(status), "%s; last cycle %.3f s: %zu pools, %zu held%s",
	         app.el.enabled ? "leader" : "running", app.s.last_duration_s, app.s.npools,
	         app.s.held, app.dry_run ? " (dry run)" : "");
	notify_ready(status);
	if (app.s.token_rejected && app.have_token) {
		app.have_token = false; /* rotated? fetch it again before the next cycle */
		app.token_tried_at = 0;
	}
	if (app.once) {
		app.exit_code = app.s.held ? EX_UNAVAILABLE : EX_OK;
		app.done = true;
		return;
	}
	if (app.stop) {
		app.done = true;
		return;
	}
	if (app.reload)
		do_reload();
}

static void do_reload(void)
{
	struct scaler_config nc;
	char *errors = NULL;
	int r;

	app.reload = false;
	r = scaler_config_load(app.config_path, &nc, &errors);
	if (r < 0) {
		log_err("reload of %s failed; keeping the running config:", app.config_path);
		for (char *line = errors ? strtok(errors, "\n") : NULL; line;
		     line = strtok(NULL, "\n"))
			log_err("  %s", line);
		if (!errors)
			log_err("  %s", strerror(-r));
		free(errors);
		return;
	}
	if (resolve_default_region(&nc) < 0) {
		scaler_config_free(&nc);
		return;
	}
	if (app.log_format_cli < 0)
		app.s.log_format = nc.scaler->log_format;
	if (election_changed(&nc)) {
		election_release(&app.el, &app.aws);
		if (election_setup(&nc) < 0) {
			scaler_config_free(&nc);
			election_init_fenced(&app.el);
			arm_election();
			log_err("reload: the election cannot be set up; no scaling at all until "
			        "the next "
			        "good reload");
			return;
		}
		arm_election();
	}
	(void)listen_setup(nc.scaler->listen);
	arm(app.tick.fd, nc.scaler->interval_ms, nc.scaler->interval_ms);
	(void)api_setup(&nc);
	app.have_token = false; /* operators rotate tokens and send HUP */
	app.token_tried_at = 0;
	r = scaler_apply_config(&app.s, &nc);
	if (r < 0) {
		log_err("reload failed: %s", strerror(-r));
		return;
	}
	log_info("reloaded %s: %zu pools", app.config_path, app.s.npools);
	publish_metrics();
}

/* ---- event sources ------------------------------------------------------------------------ */

static void on_signal(struct ev_source *src, uint32_t events)
{
	struct signalfd_siginfo si;

	while (read(src->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			if (!app.stop)
				log_info("signal %u: finishing the cycle, then exiting",
				         si.ssi_signo);
			app.stop = true;
			(void)sd_notify(0, "STOPPING=1");
			if (!scaler_busy(&app.s))
				app.done = true;
			break;
		case SIGHUP:
			app.reload = true;
			if (!scaler_busy(&app.s))
				do_reload();
			break;
		default:
			break;
		}
	}
}

static void on_tick(struct ev_source *src, uint32_t events)
{
	uint64_t n;

	(void)!read(src->fd, &n, sizeof(n));
	if (scaler_busy(&app.s)) {
		log_debug("previous cycle still running; skipping this tick");
		return;
	}
	start_cycle();
}

/* Names the DynamoDB call, also when it got no AWS error back (no answer, or an unreadable
 * one). */
static void log_lease_failure(int priority)
{
	const struct aws_error *e = &app.el.last_error;

	log_msg(priority, "election: lease call %s failed: %s: %s",
	        e->call[0] ? e->call : "dynamodb", e->code[0] ? e->code : strerror(-app.el.last_rc),
	        e->message[0] ? e->message : strerror(-app.el.last_rc));
}

static void on_election(struct ev_source *src, uint32_t events)
{
	uint64_t n;
	enum election_event ev;

	(void)!read(src->fd, &n, sizeof(n));
	ensure_creds();
	ev = election_tick(&app.el, &app.aws, now_mono_ms());
	if (app.el.last_rc < 0 && app.el.failures == 1)
		log_lease_failure(LOG_WARNING);
	if (ev == ELECTION_GAINED) {
		log_notice("election: leader now (lease %s, version %" PRId64 ")", app.el.lease_id,
		           app.el.lease.version);
		start_cycle();
		publish_metrics();
	} else if (ev == ELECTION_LOST) {
		log_warn("election: lost the lease; no more writes until it is won again");
		(void)sd_notifyf(0, "STATUS=standby: lease %s not held", app.el.lease_id);
		publish_metrics();
	}
	if (!app.ready_sent && !app.el.leader)
		notify_ready("standby: another scaler holds the lease");
	arm_election();
}

static void on_watchdog(struct ev_source *src, uint32_t events)
{
	uint64_t n;

	(void)!read(src->fd, &n, sizeof(n));
	(void)sd_notify(0, "WATCHDOG=1");
}

static int add_timer(struct ev_source *src, void (*fn)(struct ev_source *, uint32_t))
{
	src->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	src->fn = fn;
	if (src->fd < 0)
		return -errno;
	return ev_ctl(app.epfd, EPOLL_CTL_ADD, src, EPOLLIN);
}

static int loop(void)
{
	struct epoll_event evs[64];

	for (;;) {
		if (app.s.finished)
			cycle_finished();
		if (app.done)
			break;
		uint64_t next = mhttp_sweep(app.mh, now_mono_ms()), now = now_mono_ms();
		int timeout = next ? (int)(next > now ? next - now : 0) : -1;
		int n = epoll_wait(app.epfd, evs, (int)ARRAY_SIZE(evs), timeout);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return EX_OSERR;
		}
		for (int i = 0; i < n; i++) {
			struct ev_source *src = evs[i].data.ptr;

			src->fn(src, evs[i].events);
			if (app.s.finished)
				cycle_finished();
		}
		/* What this batch retired (curl sockets, a metrics server a reload replaced): no
		 * event of it is left to dispatch now. */
		scaler_reap(&app.s);
		mhttp_reap(&app.mh_retired);
	}
	return app.exit_code;
}

/* ---- main --------------------------------------------------------------------------------- */

enum command {
	CMD_RUN,
	CMD_CHECK_CONFIG,
	CMD_SIMULATE,
};

static int parse_args(int argc, char **argv, enum command *cmd)
{
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"once", no_argument, NULL, 'o'},
	        {"dry-run", no_argument, NULL, 'n'},
	        {"log-format", required_argument, NULL, 'l'},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	*cmd = CMD_RUN;
	/* simulate has options of its own (simulate.c); recognise it before getopt does. */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "simulate") == 0) {
			*cmd = CMD_SIMULATE;
			return -1;
		}
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			app.config_path = optarg;
			break;
		case 'o':
			app.once = true;
			break;
		case 'n':
			app.dry_run = true;
			break;
		case 'l':
			if (strcmp(optarg, "json") == 0)
				app.log_format_cli = SCALER_LOG_JSON;
			else if (strcmp(optarg, "text") == 0)
				app.log_format_cli = SCALER_LOG_TEXT;
			else {
				fprintf(stderr, "runner-scaler: --log-format: want text or json\n");
				return EX_USAGE;
			}
			break;
		case 'V':
			printf("runner-scaler %s\n", RUNNERD_VERSION);
			return EX_OK;
		case 'h':
			usage(stdout);
			return EX_OK;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		if (strcmp(argv[optind], "check-config") == 0 && optind + 1 == argc) {
			*cmd = CMD_CHECK_CONFIG;
		} else {
			fprintf(stderr, "runner-scaler: unexpected argument '%s'\n", argv[optind]);
			usage(stderr);
			return EX_USAGE;
		}
	}
	return -1;
}

static int setup_signals(void)
{
	sigset_t mask;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return -errno;
	app.sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (app.sig.fd < 0)
		return -errno;
	app.sig.fn = on_signal;
	if (app.once) {
		sa.sa_handler = once_alarm;
		(void)sigaction(SIGALRM, &sa, NULL);
		alarm(ONCE_ALARM_S);
	}
	return ev_ctl(app.epfd, EPOLL_CTL_ADD, &app.sig, EPOLLIN);
}

static void cleanup(void)
{
	if (app.el.enabled)
		election_release(&app.el, &app.aws);
	mhttp_close(app.mh);
	mhttp_reap(&app.mh_retired);
	free(app.listen);
	scaler_free(&app.s);
	imds_clear(&app.imds);
	creds_wipe(&app.aws.creds);
	http_client_free(app.http);
	buf_wipe(&app.token);
	log_forget_secrets();
	curl_global_cleanup();
}

int main(int argc, char **argv)
{
	struct scaler_config cfg;
	char *errors = NULL;
	enum command cmd;
	uint64_t t0 = now_mono_ms();
	int r, rc = EX_SOFTWARE;

	memset(&app, 0, sizeof(app));
	app.log_format_cli = -1;
	app.epfd = -1;
	app.config_path = SCALER_CONFIG_DEFAULT;
	log_init("runner-scaler");
	r = parse_args(argc, argv, &cmd);
	if (r >= 0)
		return r;
	if (cmd == CMD_SIMULATE)
		return simulate_main(argc, argv, stdout, stderr);
	if (app.once)
		app.once_deadline = t0 + ONCE_BUDGET_MS;

	r = scaler_config_load(app.config_path, &cfg, &errors);
	if (r < 0) {
		rc = print_config_errors(app.config_path, r, errors);
		free(errors);
		return rc;
	}
	if (cmd == CMD_CHECK_CONFIG) {
		r = scaler_config_print(&cfg, stdout);
		scaler_config_free(&cfg);
		if (fflush(stdout) != 0 || r < 0)
			return EX_IOERR;
		return EX_OK;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		scaler_config_free(&cfg);
		return EX_SOFTWARE;
	}
	buf_init(&app.token, TOKEN_MAX);
	app.sig.fd = app.tick.fd = app.elect.fd = app.watchdog.fd = -1;
	app.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (app.epfd < 0 || scaler_init(&app.s, app.epfd) < 0 || http_client_new(&app.http) < 0) {
		log_err("unable to set up: %s", strerror(errno));
		scaler_config_free(&cfg);
		goto out;
	}
	if (setup_signals() < 0 || add_timer(&app.tick, on_tick) < 0 ||
	    add_timer(&app.elect, on_election) < 0 || add_timer(&app.watchdog, on_watchdog) < 0) {
		log_err("unable to set up signals and timers: %s", strerror(errno));
		scaler_config_free(&cfg);
		goto out;
	}
	imds_init(&app.imds, app.http);
	app.aws.http = app.http;
	aws_bound((long)cfg.scaler->request_timeout_ms, 2);
	app.aws.cap_mono_ms = app.once_deadline; /* the process's own deadline: never restored */

	/* Everything below reads the config; a problem in it is a config error (78). */
	/* No region because IMDS did not answer is not the config's fault: exit with a status
	 * the unit restarts on (RestartPreventExitStatus spares only 64 and 78). */
	r = resolve_default_region(&cfg);
	if (r < 0) {
		rc = r == -ENODEV ? EX_CONFIG : EX_UNAVAILABLE;
		scaler_config_free(&cfg);
		goto out;
	}
	rc = EX_CONFIG;
	if (api_setup(&cfg) < 0 || election_setup(&cfg) < 0 ||
	    (!app.once && listen_setup(cfg.scaler->listen) < 0)) {
		scaler_config_free(&cfg);
		goto out;
	}
	str_copy(app.s.default_region, app.default_region, sizeof(app.s.default_region));
	app.s.dry_run = app.dry_run;
	app.s.log_format = app.log_format_cli >= 0 ? app.log_format_cli : cfg.scaler->log_format;
	app.s.aws = &app.aws;
	app.s.api = &app.api;
	app.s.election = &app.el;
	app.s.hard_deadline = app.once_deadline;
	app.s.report = report_line;
	if (scaler_apply_config(&app.s, &cfg) < 0) {
		rc = EX_SOFTWARE;
		goto out;
	}
	log_info("runner-scaler %s: %zu pools, interval %" PRIu64 " ms%s%s", RUNNERD_VERSION,
	         app.s.npools, app.s.cfg.scaler->interval_ms, app.dry_run ? ", dry run" : "",
	         app.once ? ", once" : "");

	/* From here on nothing exits on an upstream failure: pools hold instead. */
	if (app.once) {
		if (app.el.enabled) {
			ensure_creds();
			(void)election_tick(&app.el, &app.aws, now_mono_ms());
			if (!election_may_act(&app.el, now_mono_ms())) {
				if (app.el.last_rc < 0) {
					log_lease_failure(LOG_ERR);
					rc = EX_UNAVAILABLE;
				} else {
					log_info(
					        "election: another scaler holds the lease; nothing "
					        "to do");
					rc = EX_OK;
				}
				goto out;
			}
		}
		arm_election(); /* keep renewing while the cycle runs */
		start_cycle();
	} else {
		uint64_t wd = 0;

		arm(app.tick.fd, 0, app.s.cfg.scaler->interval_ms);
		arm_election();
		if (sd_watchdog_enabled(0, &wd) > 0 && wd >= 2000)
			arm(app.watchdog.fd, wd / 2000, wd / 2000);
	}
	rc = loop();
out:
	cleanup();
	if (app.epfd >= 0)
		close(app.epfd);
	return rc;
}
