/* runnerd: the on-instance supervisor. One event loop in the main thread (signalfd, timerfds,
 * the control socket, the worker's result pipe) drives the lifecycle table of machine.c; the
 * blocking boot steps run in one worker thread (worker.c); the agent is forked from here.
 * runnerd(8) is the user-facing description of all of this, exit codes included. */
#include <curl/curl.h>
#include <ini.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "agent.h"
#include "boot.h"
#include "control.h"
#include "exit_path.h"
#include "imds_guard.h"
#include "log.h"
#include "machine.h"
#include "runnerd_config.h"
#include "subproc.h"
#include "status.h"
#include "launch_hook.h"
#include "util.h"
#include "warm_state.h"
#include "worker.h"

#define EXIT_STOPPED      143 /* stopped before the agent ran: as a shell reports SIGTERM */
#define AGENT_ENV_STORAGE 16384
#define AGENT_ENV_MAX     64

extern char **environ;

enum timer_id { T_BOOT, T_POLL, T_DRAIN, T_RUN_WATCHDOG, T_SD_WATCHDOG, T_COUNT };

enum outcome {
	OUT_NONE,     /* the agent's status decides */
	OUT_FAILED,   /* a boot step failed, or the boot deadline passed */
	OUT_STOPPED,  /* SIGTERM, drain or an AWS notice before the agent ran */
	OUT_QUIET,    /* warm instance stopped by the ASG */
	OUT_INTERNAL, /* fork and friends */
};

struct runnerd {
	struct runnerd_config conf;
	struct runnerd_status st;
	unsigned ctx; /* MC_* */
	int sfd;
	int result_rfd, result_wfd;
	int tfd[T_COUNT];
	struct control_server *ctl;
	struct worker worker;
	unsigned gen;
	bool abandoned; /* some worker was detached: exit with _exit */
	bool poll_inflight;
	pid_t agent_pid;
	bool agent_alive;
	int agent_status; /* -1 until reaped */
	enum outcome outcome;
	bool poweroff_failed;
	bool quit;
	uint64_t sd_watchdog_usec;
	uint64_t boot_deadline_mono; /* 0 = not armed */
	bool imds_guarded;           /* our nftables table is in place: remove it at exit */
	/* The instance has a target lifecycle state: a group (a warm pool) may stop and start it,
	 * so state_dir is read and written (warm_state.h). */
	bool stateful;
};

/* ---- small helpers ---- */

static const char *sig_name(int sig)
{
	const char *n = sigabbrev_np(sig);

	return n ? n : "?"; /* real-time signals have no abbreviation */
}

static void set_error(struct runnerd *d, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void set_error(struct runnerd *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->st.last_error, sizeof(d->st.last_error), fmt, ap);
	va_end(ap);
	log_err("%s", d->st.last_error);
}

static void timer_arm(struct runnerd *d, enum timer_id t, uint64_t ms, bool periodic)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (ms == 0)
		ms = 1; /* zero would disarm */
	its.it_value.tv_sec = (time_t)(ms / 1000);
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	if (periodic)
		its.it_interval = its.it_value;
	if (timerfd_settime(d->tfd[t], 0, &its, NULL) < 0)
		log_warn("unable to arm a timer, ignoring: %m");
}

static void timer_disarm(struct runnerd *d, enum timer_id t)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	(void)timerfd_settime(d->tfd[t], 0, &its, NULL);
}

static bool in_poll_phase(enum phase p)
{
	return p == PHASE_WARM_WAIT || p == PHASE_RUNNING || p == PHASE_DRAINING;
}

static enum job_kind job_for_phase(enum phase p)
{
	switch (p) {
	case PHASE_METADATA:
		return JOB_METADATA;
	case PHASE_CREDENTIALS:
		return JOB_CREDENTIALS;
	case PHASE_LAUNCH_HOOK:
		return JOB_LAUNCH_HOOK;
	case PHASE_TOKEN:
		return JOB_TOKEN;
	case PHASE_PACKAGES:
		return JOB_PACKAGES;
	case PHASE_AGENT_INSTALL:
		return JOB_AGENT_INSTALL;
	case PHASE_AGENT_CONFIG:
		return JOB_AGENT_CONFIG;
	case PHASE_LEAVING_ASG:
		return JOB_LEAVE_ASG;
	case PHASE_POWERING_OFF:
		return JOB_POWEROFF;
	default:
		return JOB_COUNT;
	}
}

static int ensure_worker(struct runnerd *d)
{
	int r;

	if (d->worker.job_fd >= 0)
		return 0;
	r = worker_start(&d->worker, ++d->gen, d->result_wfd, &d->conf, d->st.instance_id,
	                 d->st.region);
	if (r < 0)
		log_err("unable to start the worker thread: %s", strerror(-r));
	return r;
}

static int submit(struct runnerd *d, enum job_kind kind, uint64_t deadline)
{
	struct job j;
	int r;

	/* The struct goes through a pipe whole: no uninitialised padding bytes (valgrind). */
	memset(&j, 0, sizeof(j));
	j.kind = kind;
	j.deadline_mono_ms = deadline;
	j.stateful = d->stateful;
	j.warm = d->ctx & MC_WARM;
	j.abandon = d->ctx & MC_USED;
	r = ensure_worker(d);
	if (r == 0)
		r = worker_submit(&d->worker, &j);
	if (r < 0)
		log_err("unable to hand %s to the worker: %s", job_kind_name(kind), strerror(-r));
	return r;
}

/* ---- the agent ---- */

static uint64_t run_watchdog_ms(const struct runnerd_config *c)
{
	/* single-task: it may idle, run one job, then drain; continuous has no bound. */
	if (c->agent->mode != RD_MODE_SINGLE_TASK)
		return 0;
	return c->agent->idle_timeout_ms + c->agent->max_run_time_ms +
	       c->lifecycle->drain_timeout_ms;
}

/* Before the agent starts: reject the job user's traffic to IMDS (imds_guard.h). Not fatal when
 * it cannot be done (no nft, no CAP_NET_ADMIN): the job matters more; it is logged as a
 * warning, and runnerd(8) tells what it means. */
static void guard_imds(struct runnerd *d)
{
	const char *user = d->conf.agent->user;
	const char *endpoint = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	struct passwd pw, *res = NULL;
	char mem[4096];
	int r, st;

	r = getpwnam_r(user, &pw, mem, sizeof(mem), &res);
	if (r != 0 || !res) {
		log_warn("imds-guard: unknown job user %s: its access to the instance metadata "
		         "service is not restricted",
		         user);
		return;
	}
	if (pw.pw_uid == 0 || pw.pw_uid == geteuid()) {
		/* runnerd reads IMDS itself: a rule for its own uid would cut it off too. */
		log_notice("imds-guard: the job user %s is runnerd's own user (uid %u): no IMDS "
		           "guard; jobs can reach the instance role's credentials",
		           user, (unsigned)pw.pw_uid);
		return;
	}
	r = imds_guard_install(pw.pw_uid, endpoint, &st);
	if (r < 0) {
		log_warn("imds-guard: nft -f - %s: the job user %s can reach the instance metadata "
		         "service (install nftables; see runnerd(8), SECURITY)",
		         r == -EIO ? "failed" : strerror(-r), user);
		return;
	}
	d->imds_guarded = true;
	log_info("imds-guard: nftables table inet %s rejects uid %u (%s) to %s and %s%s%s",
	         IMDS_GUARD_TABLE, (unsigned)pw.pw_uid, user, IMDS_GUARD_ADDR4, IMDS_GUARD_ADDR6,
	         endpoint && *endpoint ? " and " : "", endpoint && *endpoint ? endpoint : "");
}

static void unguard_imds(struct runnerd *d)
{
	int r, st;

	if (!d->imds_guarded)
		return;
	r = imds_guard_remove(&st);
	if (r < 0)
		log_warn("imds-guard: removing table inet %s: nft %s", IMDS_GUARD_TABLE,
		         r == -EIO ? "failed" : strerror(-r));
	else
		log_info("imds-guard: table inet %s removed", IMDS_GUARD_TABLE);
	d->imds_guarded = false;
}

/* fork/exec with a clean slate. Between fork and exec only async-signal-safe calls: the
 * process has threads. */
static int start_agent(struct runnerd *d)
{
	const struct rd_agent_conf *a = d->conf.agent;
	const char *argv[6];
	char storage[AGENT_ENV_STORAGE];
	char *envp[AGENT_ENV_MAX];
	uint64_t wd;
	pid_t pid;
	int r;

	agent_argv(a->flavour == RD_FLAVOUR_LAUNCH_AGENT ? AGENT_LAUNCH_AGENT
	                                                 : AGENT_CIRCLECI_RUNNER,
	           a->binary, a->config_path, argv);
	r = agent_child_env(environ, storage, sizeof(storage), envp, AGENT_ENV_MAX);
	if (r < 0) {
		set_error(d, "running: the agent's environment does not fit: %s", strerror(-r));
		return r;
	}
	/* Recorded before the agent exists: whatever happens next, this instance never starts
	 * another one (a warm pool could bring it back into service). */
	if (d->stateful) {
		r = warm_state_mark_agent(d->conf.lifecycle->state_dir, d->st.instance_id,
		                          now_wall_ms());
		if (r < 0) {
			set_error(d,
			          "running: cannot record in %s that an agent runs here: %s (not "
			          "starting one that a warm pool could start again)",
			          d->conf.lifecycle->state_dir, strerror(-r));
			return r;
		}
	}
	guard_imds(d);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		set_error(d, "running: unable to fork the agent: %s", strerror(errno));
		return r;
	}
	if (pid == 0) {
		struct sigaction sa;
		sigset_t none;
		int sig;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (sig = 1; sig < NSIG; sig++)
			(void)sigaction(sig, &sa, NULL);
		sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		(void)close_range(3, ~0U, 0);
		(void)!chdir("/"); /* best effort: the agent uses absolute paths */
		execve(argv[0], (char *const *)argv, envp);
		_exit(errno == ENOENT ? 127 : 126);
	}
	d->agent_pid = pid;
	d->agent_alive = true;
	d->agent_status = -1;
	d->st.agent_pid = pid;
	d->st.agent_started_ms = now_wall_ms();
	d->st.agent_exit_status = -1;
	log_info("running: agent %s started (pid %d)", a->binary, (int)pid);
	(void)sd_notify(0, "READY=1\nSTATUS=running");
	wd = run_watchdog_ms(&d->conf);
	if (wd)
		timer_arm(d, T_RUN_WATCHDOG, wd, false);
	return 0;
}

static void signal_agent(struct runnerd *d, int sig)
{
	if (!d->agent_alive)
		return;
	if (kill(d->agent_pid, sig) < 0)
		log_warn("unable to send SIG%s to the agent (pid %d), ignoring: %m", sig_name(sig),
		         (int)d->agent_pid);
	else
		log_info("sent SIG%s to the agent (pid %d)", sig_name(sig), (int)d->agent_pid);
}

/* ---- feeding the machine ---- */

static void enter_phase(struct runnerd *d, enum phase p)
{
	enum phase old = d->st.phase;

	status_enter(&d->st, p, now_wall_ms());
	log_info("phase: %s -> %s", phase_name(old), phase_name(p));
	(void)sd_notifyf(0, "STATUS=%s", phase_name(p));
	if (in_poll_phase(p) && !in_poll_phase(old))
		timer_arm(d, T_POLL, d->conf.lifecycle->notice_interval_ms, true);
	else if (!in_poll_phase(p))
		timer_disarm(d, T_POLL);
	if ((p == PHASE_LEAVING_ASG || p == PHASE_POWERING_OFF || p == PHASE_EXITED) &&
	    old != PHASE_LEAVING_ASG && old != PHASE_POWERING_OFF)
		(void)sd_notify(0, "STOPPING=1");
}

/* Carry out actions; returns an event to feed next (EV_COUNT: none). */
static enum machine_event do_actions(struct runnerd *d, unsigned act)
{
	const struct rd_lifecycle_conf *lc = d->conf.lifecycle;
	enum machine_event next = EV_COUNT;

	if ((act & ACT_ABANDON_WORKER) && d->worker.job_fd >= 0 && d->worker.inflight) {
		log_warn("abandoning the worker thread (busy with a step that no longer matters)");
		worker_release(&d->worker, false);
		d->abandoned = true;
		d->poll_inflight = false;
	}
	if (act & ACT_ARM_BOOT_DEADLINE) {
		d->boot_deadline_mono = now_mono_ms() + lc->boot_deadline_ms;
		timer_arm(d, T_BOOT, lc->boot_deadline_ms, false);
	}
	if (act & ACT_DISARM_BOOT_DEADLINE) {
		d->boot_deadline_mono = 0;
		timer_disarm(d, T_BOOT);
	}
	if (act & ACT_RUN_STEP) {
		enum job_kind k = job_for_phase(d->st.phase);
		uint64_t deadline = d->boot_deadline_mono;

		if (k == JOB_LEAVE_ASG)
			deadline = now_mono_ms() + LEAVE_TIMEOUT_MS;
		else if (k == JOB_POWEROFF)
			deadline = 0;
		if (k != JOB_COUNT && submit(d, k, deadline) < 0) {
			/* Without a worker only the parts that need none can go on. */
			if (d->outcome == OUT_NONE)
				d->outcome = OUT_INTERNAL;
			if (k == JOB_POWEROFF)
				d->poweroff_failed = true;
			next = k == JOB_LEAVE_ASG ? EV_LEFT_ASG : EV_STEP_FAILED;
		}
	}
	if ((act & ACT_START_AGENT) && start_agent(d) < 0) {
		d->outcome = OUT_INTERNAL;
		next = EV_STEP_FAILED;
	}
	if (act & ACT_TERM_AGENT)
		signal_agent(d, SIGTERM);
	if (act & ACT_ARM_DRAIN)
		timer_arm(d, T_DRAIN, lc->drain_timeout_ms, false);
	if (act & ACT_KILL_AGENT)
		signal_agent(d, SIGKILL);
	if (act & ACT_QUIET)
		d->outcome = OUT_QUIET;
	if (act & ACT_QUIT)
		d->quit = true;
	if (act & ACT_PROCEED)
		next = EV_PROCEED;
	return next;
}

static bool feed(struct runnerd *d, enum machine_event ev)
{
	bool first_handled = false, first = true;

	while (ev != EV_COUNT) {
		struct machine_step s = machine_next(d->st.phase, ev, d->ctx);

		if (first)
			first_handled = s.handled;
		first = false;
		if (!s.handled) {
			log_debug("event %s ignored in phase %s", machine_event_name(ev),
			          phase_name(d->st.phase));
			break;
		}
		if (s.next != d->st.phase)
			enter_phase(d, s.next);
		ev = do_actions(d, s.actions);
	}
	return first_handled;
}

/* A stop request before the agent ran is an ending of its own (exit 143). */
static void note_stop(struct runnerd *d, bool handled)
{
	if (handled && d->agent_pid == 0 && d->outcome == OUT_NONE)
		d->outcome = OUT_STOPPED;
}

/* ---- event sources ---- */

static void aws_ending(struct runnerd *d, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void aws_ending(struct runnerd *d, const char *fmt, ...)
{
	bool first = !(d->ctx & MC_AWS_ENDING);
	va_list ap;

	d->ctx |= MC_AWS_ENDING;
	if (!first)
		return;
	va_start(ap, fmt);
	vsnprintf(d->st.notice, sizeof(d->st.notice), fmt, ap);
	va_end(ap);
	log_notice("lifecycle notice: %s: AWS is ending this instance; draining, and not "
	           "leaving the ASG ourselves",
	           d->st.notice);
	note_stop(d, feed(d, EV_NOTICE_AWS_TERMINATING));
}

static void handle_state(struct runnerd *d, const char *state, bool warm_wait)
{
	enum lifecycle_kind k = boot_classify_state(state);

	str_copy(d->st.lifecycle_state, state, sizeof(d->st.lifecycle_state));
	if (k == LC_TERMINATED) {
		aws_ending(d, "target-lifecycle-state: %s", state);
	} else if (warm_wait && !state[0]) {
		/* 404 after Warmed:* a moment ago says nothing new: never a start in the pool. */
		log_debug("warm-wait: no target lifecycle state (IMDS 404): still waiting");
	} else if (warm_wait && (k == LC_IN_SERVICE || k == LC_OTHER)) {
		log_info("warm-wait: target lifecycle state %s: starting",
		         state[0] ? state : "(none)");
		/* Out of the pool: from here on a stop is a stop, and a failure leaves the group.
		 */
		d->ctx &= ~MC_WARM;
		d->st.warm.path = WARM_SAME_BOOT;
		feed(d, EV_IN_SERVICE);
	}
}

/* After metadata: which way this boot goes (machine.c's boot order). */
static void metadata_done(struct runnerd *d, const struct job_result *res)
{
	enum lifecycle_kind k = boot_classify_state(res->lifecycle_state);

	d->stateful = res->lifecycle_state[0] && res->instance_id[0];
	if (res->prepared) {
		d->st.warm.prepared_ms = res->prepared_ms;
		d->st.warm.packages_ms = res->packages_ms;
		d->st.warm.agent_install_ms = res->agent_install_ms;
	}
	if (res->used)
		d->st.warm.path = WARM_USED;
	else if (k == LC_WARMED)
		d->st.warm.path = WARM_PREPARE;
	else if (res->prepared)
		d->st.warm.path = WARM_RESUMED;
	switch (k) {
	case LC_WARMED:
		d->ctx |= MC_WARM | (res->used ? MC_USED : 0);
		if (res->used)
			log_notice("metadata: %s, but an agent already ran on this instance (%s): "
			           "%s",
			           res->lifecycle_state, d->conf.lifecycle->state_dir,
			           (d->ctx & MC_HOOK) ? "abandoning the launch hook"
			                              : "exiting (no launch_hook to abandon)");
		else
			log_info("metadata: %s: warm pool: bake work only, then warm-wait",
			         res->lifecycle_state);
		feed(d, EV_WARM);
		return;
	case LC_TERMINATED:
		aws_ending(d, "target-lifecycle-state: %s", res->lifecycle_state);
		return;
	default:
		if (res->used) {
			set_error(d,
			          "metadata: an agent already ran on this instance (%s/%s): not "
			          "starting another",
			          d->conf.lifecycle->state_dir, WARM_STATE_FILE);
			if (d->outcome == OUT_NONE)
				d->outcome = OUT_FAILED;
			feed(d, EV_USED);
			return;
		}
		feed(d, EV_STEP_OK);
		return;
	}
}

static void handle_result(struct runnerd *d, const struct job_result *res)
{
	bool failed = res->r < 0;

	if (res->gen != d->worker.gen || d->worker.job_fd < 0) {
		log_debug("ignoring %s result of an abandoned worker", job_kind_name(res->kind));
		return;
	}
	if (d->worker.inflight)
		d->worker.inflight--;
	/* A step's answer counts only in its own phase (polls are checked below). */
	if (res->kind != JOB_POLL_WARM && res->kind != JOB_POLL_NOTICE &&
	    res->kind != job_for_phase(d->st.phase)) {
		log_debug("ignoring a late %s result in phase %s", job_kind_name(res->kind),
		          phase_name(d->st.phase));
		return;
	}
	switch (res->kind) {
	case JOB_METADATA:
		str_copy(d->st.instance_id, res->instance_id, sizeof(d->st.instance_id));
		str_copy(d->st.region, res->region, sizeof(d->st.region));
		if (!res->instance_id[0])
			d->ctx |= MC_NO_LEAVE;
		if (failed)
			break;
		str_copy(d->st.lifecycle_state, res->lifecycle_state,
		         sizeof(d->st.lifecycle_state));
		metadata_done(d, res);
		return;
	case JOB_CREDENTIALS:
	case JOB_TOKEN:
	case JOB_AGENT_CONFIG:
		if (!failed)
			feed(d, EV_STEP_OK);
		break;
	case JOB_PACKAGES:
	case JOB_AGENT_INSTALL:
		if (!failed && res->skipped && d->st.warm.path == WARM_NONE)
			d->st.warm.path = WARM_RESUMED;
		if (!failed)
			feed(d, EV_STEP_OK);
		break;
	case JOB_LAUNCH_HOOK:
		str_copy(d->st.warm.hook,
		         failed ? "failed"
		         : res->hook_outcome == HOOK_DONE
		                 ? ((d->ctx & MC_USED) ? "ABANDON" : "CONTINUE")
		                 : hook_outcome_name(res->hook_outcome),
		         sizeof(d->st.warm.hook));
		if (!failed)
			feed(d, EV_STEP_OK);
		break;
	case JOB_POLL_WARM:
		d->poll_inflight = false;
		if (!failed && d->st.phase == PHASE_WARM_WAIT)
			handle_state(d, res->lifecycle_state, true);
		else if (failed)
			log_warn("warm-wait: target lifecycle state: %s, retrying",
			         strerror(-res->r));
		return;
	case JOB_POLL_NOTICE:
		d->poll_inflight = false;
		if (res->spot)
			aws_ending(d, "spot: %s at %lld", res->spot_action, res->spot_time);
		if (res->state_known)
			handle_state(d, res->lifecycle_state, false);
		if (failed)
			log_debug("notice poll: %s", strerror(-res->r));
		return;
	case JOB_LEAVE_ASG:
		if (res->leave_outcome == LEAVE_FAILED && (d->ctx & MC_WARM))
			set_error(d, "leaving-asg: abandoning the launch hook in the warm pool: %s",
			          res->err[0] ? res->err : strerror(-res->r));
		else if (res->leave_outcome == LEAVE_FAILED)
			set_error(d,
			          "leaving-asg: autoscaling:TerminateInstanceInAutoScalingGroup "
			          "failed after %u call(s): %s",
			          res->leave_calls, res->err[0] ? res->err : strerror(-res->r));
		feed(d, EV_LEFT_ASG);
		return;
	case JOB_POWEROFF:
		if (failed)
			d->poweroff_failed = true;
		feed(d, failed ? EV_STEP_FAILED : EV_STEP_OK);
		return;
	default:
		return;
	}
	if (failed) {
		const char *why = res->err[0] ? res->err : strerror(-res->r);
		char dur[32];

		/* A step's calls are cut off at the boot deadline, so its failure can arrive just
		 * before the deadline timer: name the deadline then, whichever comes first. */
		if (d->boot_deadline_mono && now_mono_ms() >= d->boot_deadline_mono) {
			cfg_format_duration(d->conf.lifecycle->boot_deadline_ms, dur, sizeof(dur));
			set_error(d, "boot deadline (%s) passed in phase %s: %s", dur,
			          phase_name(d->st.phase), why);
		} else {
			set_error(d, "%s", why);
		}
		if (d->outcome == OUT_NONE)
			d->outcome = OUT_FAILED;
		feed(d, EV_STEP_FAILED);
	}
}

static void drain_results(struct runnerd *d)
{
	struct job_result res;
	ssize_t n;

	for (;;) {
		n = read(d->result_rfd, &res, sizeof(res));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(res))
			return;
		handle_result(d, &res);
	}
}

static void reap_agent(struct runnerd *d)
{
	int ws;
	pid_t p;

	if (!d->agent_alive)
		return;
	/* Only the agent's pid: the worker waits for its own helpers (apt, sh). */
	do
		p = waitpid(d->agent_pid, &ws, WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p != d->agent_pid)
		return;
	d->agent_alive = false;
	d->agent_status = spawn_status_code(ws);
	d->st.agent_exit_status = d->agent_status;
	timer_disarm(d, T_DRAIN);
	timer_disarm(d, T_RUN_WATCHDOG);
	if (WIFSIGNALED(ws))
		log_notice("agent (pid %d) killed by SIG%s (status %d)", (int)d->agent_pid,
		           sig_name(WTERMSIG(ws)), d->agent_status);
	else
		log_notice("agent (pid %d) exited with status %d", (int)d->agent_pid,
		           d->agent_status);
	if (d->agent_status == 126 || d->agent_status == 127)
		set_error(d, "running: the agent %s could not be executed (status %d)",
		          d->conf.agent->binary, d->agent_status);
	feed(d, EV_AGENT_EXIT);
}

static void handle_signals(struct runnerd *d)
{
	struct signalfd_siginfo si;
	ssize_t n;

	for (;;) {
		n = read(d->sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			return;
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap_agent(d);
			break;
		case SIGTERM:
		case SIGINT:
		case SIGQUIT:
			log_notice("received SIG%s (from pid %u)", sig_name((int)si.ssi_signo),
			           si.ssi_pid);
			if (d->st.phase == PHASE_RUNNING)
				snprintf(d->st.notice, sizeof(d->st.notice), "SIG%s",
				         sig_name((int)si.ssi_signo));
			note_stop(d, feed(d, EV_SIGTERM));
			break;
		case SIGHUP:
			log_info("SIGHUP ignored (runnerd does not reload; restart it instead)");
			break;
		default:
			break;
		}
	}
}

/* What a boot phase blocks on, for the message when the deadline cuts it short: the worker that
 * knows the exact request is stuck in it. */
static const char *phase_waits_on(const struct runnerd *d, char *out, size_t n)
{
	const struct rd_token_conf *t = d->conf.token;
	const struct rd_agent_conf *a = d->conf.agent;

	switch (d->st.phase) {
	case PHASE_METADATA:
		return "imds (token, instance id, region, target lifecycle state)";
	case PHASE_CREDENTIALS:
		return "imds:meta-data/iam/security-credentials (the instance role)";
	case PHASE_LAUNCH_HOOK:
		return "autoscaling:CompleteLifecycleAction";
	case PHASE_TOKEN:
		snprintf(out, n, "%s %s",
		         t->source == RD_TOKEN_SECRETSMANAGER ? "secretsmanager:GetSecretValue"
		         : t->source == RD_TOKEN_SSM          ? "ssm:GetParameter"
		                                              : "the token file",
		         t->id);
		return out;
	case PHASE_PACKAGES:
		return "apt-get";
	case PHASE_AGENT_INSTALL:
		snprintf(out, n, "the download of %s", a->download_url);
		return out;
	default:
		return phase_name(d->st.phase);
	}
}

static void handle_timer(struct runnerd *d, enum timer_id t)
{
	uint64_t ticks;
	char dur[32], wait[600];

	if (read(d->tfd[t], &ticks, sizeof(ticks)) != (ssize_t)sizeof(ticks))
		return;
	switch (t) {
	case T_BOOT:
		if (d->st.phase >= PHASE_RUNNING || d->st.phase == PHASE_WARM_WAIT)
			return;
		cfg_format_duration(d->conf.lifecycle->boot_deadline_ms, dur, sizeof(dur));
		set_error(d, "boot deadline (%s) passed in phase %s, waiting for %s", dur,
		          phase_name(d->st.phase), phase_waits_on(d, wait, sizeof(wait)));
		if (d->outcome == OUT_NONE)
			d->outcome = OUT_FAILED;
		feed(d, EV_BOOT_DEADLINE);
		break;
	case T_POLL:
		if (d->poll_inflight || !in_poll_phase(d->st.phase))
			return;
		if (submit(d, d->st.phase == PHASE_WARM_WAIT ? JOB_POLL_WARM : JOB_POLL_NOTICE,
		           0) == 0)
			d->poll_inflight = true;
		break;
	case T_DRAIN:
		cfg_format_duration(d->conf.lifecycle->drain_timeout_ms, dur, sizeof(dur));
		log_warn(
		        "draining: the agent is still running after drain_timeout (%s): killing it",
		        dur);
		feed(d, EV_DRAIN_TIMEOUT);
		break;
	case T_RUN_WATCHDOG:
		set_error(d, "running: the agent outlived idle_timeout + max_run_time + "
		             "drain_timeout: killing it");
		feed(d, EV_RUN_WATCHDOG);
		break;
	case T_SD_WATCHDOG:
		(void)sd_notify(0, "WATCHDOG=1");
		break;
	default:
		break;
	}
}

/* ---- the loop ---- */

#define NFDS (2 + T_COUNT + 1 + CONTROL_MAX_CLIENTS)

static int event_loop(struct runnerd *d)
{
	struct pollfd fds[NFDS];
	size_t n, nctl, i;
	int timeout;

	while (!d->quit) {
		n = 0;
		fds[n++] = (struct pollfd){d->sfd, POLLIN, 0};
		fds[n++] = (struct pollfd){d->result_rfd, POLLIN, 0};
		for (i = 0; i < T_COUNT; i++)
			fds[n++] = (struct pollfd){d->tfd[i], POLLIN, 0};
		nctl = d->ctl ? control_server_pollfds(d->ctl, fds + n, NFDS - n) : 0;
		timeout = d->ctl ? control_server_timeout_ms(d->ctl, now_mono_ms()) : -1;
		if (poll(fds, n + nctl, timeout) < 0) {
			if (errno == EINTR)
				continue;
			/* Cannot happen with valid fds; do not spin if it does. */
			log_err("poll: %m");
			return -errno;
		}
		if (fds[0].revents & POLLIN)
			handle_signals(d);
		if (fds[1].revents & POLLIN)
			drain_results(d);
		for (i = 0; i < T_COUNT; i++) {
			if (fds[2 + i].revents & POLLIN)
				handle_timer(d, (enum timer_id)i);
		}
		if (d->ctl) {
			bool drain = false;

			control_server_dispatch(d->ctl, fds + 2 + T_COUNT, nctl, &d->st,
			                        now_mono_ms(), now_wall_ms(), &drain);
			if (drain) {
				log_notice("drain requested over the control socket");
				if (d->st.phase == PHASE_RUNNING)
					str_copy(d->st.notice, "drain requested",
					         sizeof(d->st.notice));
				note_stop(d, feed(d, EV_DRAIN_REQUEST));
			}
		}
	}
	return 0;
}

/* ---- setup ---- */

/* One runnerd per host: flock on runnerd.lock next to the control socket. The lock file holds
 * the pid for the message of the one refused. */
static int take_lock(const char *socket_path, int *fd_out)
{
	char path[PATH_MAX], pid[32] = "";
	const char *slash = strrchr(socket_path, '/');
	ssize_t n;
	int fd, r;

	r = boot_mkdir_parent(socket_path, 0755);
	if (r < 0) {
		log_err("unable to create the directory of %s: %s", socket_path, strerror(-r));
		return EX_CANTCREAT;
	}
	snprintf(path, sizeof(path), "%.*s/runnerd.lock", (int)(slash - socket_path), socket_path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		log_err("unable to open the lock file %s: %m", path);
		return EX_CANTCREAT;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			log_err("unable to lock %s: %m", path);
			close(fd);
			return EX_OSERR;
		}
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		log_err("another runnerd is running (pid %s): it holds the lock %s; refusing to "
		        "start",
		        pid[0] ? pid : "unknown", path);
		close(fd);
		return EX_TEMPFAIL;
	}
	if (ftruncate(fd, 0) == 0) {
		n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		(void)!pwrite(fd, pid, (size_t)n, 0);
	}
	*fd_out = fd;
	return 0;
}

static int setup(struct runnerd *d)
{
	sigset_t mask;
	size_t i;
	int p[2], r;

	/* Every signal we handle is read from the signalfd; the worker thread inherits the mask,
	 * so none is delivered to it. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGPIPE);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return -errno;
	sigdelset(&mask, SIGPIPE);
	d->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->sfd < 0)
		return -errno;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	d->result_rfd = p[0];
	d->result_wfd = p[1];
	if (fcntl(d->result_rfd, F_SETFL, O_NONBLOCK) < 0)
		return -errno;
	for (i = 0; i < T_COUNT; i++) {
		d->tfd[i] = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (d->tfd[i] < 0)
			return -errno;
	}
	r = control_server_open(d->conf.control->socket, d->conf.control->group, &d->ctl);
	if (r < 0) {
		/* The job matters more than runnerctl: carry on without it. */
		d->ctl = NULL;
		snprintf(d->st.last_error, sizeof(d->st.last_error),
		         "control socket %s (group %s): %s", d->conf.control->socket,
		         d->conf.control->group, strerror(-r));
		log_err("unable to open the control socket %s (group %s), continuing without "
		        "runnerctl: %s",
		        d->conf.control->socket, d->conf.control->group, strerror(-r));
	}
	if (sd_watchdog_enabled(0, &d->sd_watchdog_usec) > 0 && d->sd_watchdog_usec >= 2000)
		timer_arm(d, T_SD_WATCHDOG, d->sd_watchdog_usec / 2000, true);
	return 0;
}

static int exit_code(const struct runnerd *d)
{
	int code;

	if (d->outcome == OUT_QUIET)
		return 0;
	if (d->agent_status >= 0)
		code = d->agent_status;
	else if (d->outcome == OUT_STOPPED)
		code = EXIT_STOPPED;
	else if (d->outcome == OUT_INTERNAL)
		code = EX_SOFTWARE;
	else
		code = EX_UNAVAILABLE;
	/* Power-off was not possible: let the unit's FailureAction= do it. */
	if (code == 0 && d->poweroff_failed)
		code = EX_UNAVAILABLE;
	return code;
}

static int run_daemon(struct runnerd *d)
{
	const struct rd_lifecycle_conf *lc = d->conf.lifecycle;
	int lock_fd = -1, r, code;
	size_t i;

	d->sfd = d->result_rfd = d->result_wfd = -1;
	for (i = 0; i < T_COUNT; i++)
		d->tfd[i] = -1;
	d->worker.job_fd = -1;
	d->agent_status = -1;
	d->st.agent_exit_status = -1;
	d->st.started_ms = now_wall_ms();
	d->st.phase = PHASE_STARTING;
	str_copy(d->st.flavour, rd_flavour_name(d->conf.agent->flavour), sizeof(d->st.flavour));
	if (lc->on_exit == RD_ON_EXIT_EXIT)
		d->ctx |= MC_NO_POWEROFF;
	if (!lc->leave_asg)
		d->ctx |= MC_NO_LEAVE;
	if (lc->launch_hook[0])
		d->ctx |= MC_HOOK;

	r = take_lock(d->conf.control->socket, &lock_fd);
	if (r)
		return r;
	r = setup(d);
	if (r < 0) {
		log_err("unable to set up the event loop: %s", strerror(-r));
		code = EX_OSERR;
		goto out;
	}
	log_info("runnerd %s: starting (agent %s, %s)", RUNNERD_VERSION, d->st.flavour,
	         rd_mode_name(d->conf.agent->mode));

	/* After this point we no longer bail: every failure is an event, and every event ends in
	 * the exit path (leave the ASG, power off). */
	feed(d, EV_START);
	r = event_loop(d);
	if (r < 0 && d->outcome == OUT_NONE)
		d->outcome = OUT_INTERNAL;
	code = exit_code(d);
	unguard_imds(d);
	log_info("exiting with status %d (phase %s)", code, phase_name(d->st.phase));
out:
	if (d->ctl)
		control_server_close(d->ctl);
	if (d->worker.job_fd >= 0) {
		if (d->worker.inflight) {
			worker_release(&d->worker, false);
			d->abandoned = true;
		} else {
			worker_release(&d->worker, true);
		}
	}
	if (lock_fd >= 0)
		close(lock_fd); /* the file stays: unlinking a flock file races a newcomer */
	return code;
}

/* ---- prepare, check-config, arguments ---- */

static int run_prepare(struct runnerd *d)
{
	struct boot_ctx b;
	int r;

	r = boot_ctx_init(&b, &d->conf, NULL, NULL);
	if (r < 0) {
		log_err("prepare: %s", strerror(-r));
		return EX_OSERR;
	}
	log_info("prepare: packages and agent binary (no token, no agent)");
	r = boot_hold_vendor_agent(&b);
	if (r == 0)
		r = boot_packages(&b);
	if (r == 0)
		r = boot_agent_install(&b);
	if (r < 0)
		log_err("%s", b.err);
	else
		log_info("prepare: done");
	boot_ctx_free(&b);
	return r < 0 ? EX_UNAVAILABLE : 0;
}

/* runnerd-failed.service (OnFailure= of runnerd.service) asks this whether the instance powers
 * off after runnerd failed: exit 0 keeps it up (on_exit = exit, for debugging); any other status
 * fails that unit, whose FailureAction=poweroff is the last resort. A config that cannot be read
 * powers off: a broken instance must not linger in its group. */
static int peek_on_exit(void *user, const char *section, const char *name, const char *value)
{
	int *on_exit = user;

	if (strcmp(section, "lifecycle") == 0 && strcmp(name, "on_exit") == 0)
		*on_exit = strcmp(value, "exit") == 0       ? RD_ON_EXIT_EXIT
		           : strcmp(value, "poweroff") == 0 ? RD_ON_EXIT_POWEROFF
		                                            : -1;
	return 1;
}

static int run_on_failure(const char *path, const struct runnerd_config *conf, int load_r)
{
	int on_exit = RD_ON_EXIT_POWEROFF;

	if (load_r < 0) {
		/* An operator debugging a broken config is exactly who asked for on_exit = exit:
		 * honour that one key when it reads plainly, whatever else is wrong. */
		if (ini_parse(path, peek_on_exit, &on_exit) >= 0 && on_exit == RD_ON_EXIT_EXIT) {
			printf("runnerd failed; %s has errors, but on_exit = exit: keeping the "
			       "instance "
			       "up for debugging (journalctl -u runnerd)\n",
			       path);
			return 0;
		}
		printf("runnerd failed and %s is unusable: powering off (the unit's "
		       "FailureAction=poweroff)\n",
		       path);
		return EX_CONFIG;
	}
	if (conf->lifecycle->on_exit == RD_ON_EXIT_EXIT) {
		printf("runnerd failed; on_exit = exit in %s: keeping the instance up for "
		       "debugging "
		       "(journalctl -u runnerd; see runnerd(8), DEBUGGING AN INSTANCE)\n",
		       path);
		return 0;
	}
	printf("runnerd failed; on_exit = poweroff in %s: powering off (the unit's "
	       "FailureAction=poweroff)\n",
	       path);
	return EX_UNAVAILABLE;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: runnerd [-c FILE]            boot, run the agent, leave the ASG, power "
	        "off\n"
	        "       runnerd prepare [-c FILE]    packages and agent binary only (AMI baking)\n"
	        "       runnerd check-config [-c FILE]  validate and print the effective config\n"
	        "       runnerd on-failure [-c FILE] after runnerd failed: exit 0 to keep the "
	        "instance up\n"
	        "       runnerd --version | --help\n"
	        "default FILE: %s; see runnerd(8) and runnerd.conf(5)\n",
	        RUNNERD_CONF_DEFAULT);
}

enum command { CMD_RUN, CMD_PREPARE, CMD_CHECK, CMD_ON_FAILURE };

int main(int argc, char **argv)
{
	static struct runnerd d;
	const char *path = RUNNERD_CONF_DEFAULT;
	enum command cmd = CMD_RUN;
	bool have_cmd = false;
	char *errors = NULL;
	int i, r, code;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--version") == 0) {
			printf("runnerd %s\n", RUNNERD_VERSION);
			return 0;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "runnerd: %s needs a FILE\n", a);
				usage(stderr);
				return EX_USAGE;
			}
			path = argv[i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			path = a + 9;
		} else if (!have_cmd && strcmp(a, "prepare") == 0) {
			cmd = CMD_PREPARE;
			have_cmd = true;
		} else if (!have_cmd && strcmp(a, "check-config") == 0) {
			cmd = CMD_CHECK;
			have_cmd = true;
		} else if (!have_cmd && strcmp(a, "on-failure") == 0) {
			cmd = CMD_ON_FAILURE;
			have_cmd = true;
		} else {
			fprintf(stderr, "runnerd: unexpected argument '%s'\n", a);
			usage(stderr);
			return EX_USAGE;
		}
	}

	log_init("runnerd");
	/* No core dumps or ptrace by other users: the token passes through this process. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	r = runnerd_config_load(path, &d.conf, &errors);
	if (cmd == CMD_ON_FAILURE) {
		if (errors)
			fputs(errors, stderr);
		free(errors);
		code = run_on_failure(path, &d.conf, r);
		fflush(stdout);
		if (r == 0)
			runnerd_config_free(&d.conf);
		return code;
	}
	if (r < 0) {
		if (errors)
			fputs(errors, stderr);
		else
			fprintf(stderr, "runnerd: %s: %s\n", path, strerror(-r));
		free(errors);
		return EX_CONFIG;
	}
	if (cmd == CMD_CHECK) {
		r = cfg_print(d.conf.cfg, stdout);
		runnerd_config_free(&d.conf);
		if (fflush(stdout) != 0 || r < 0)
			return EX_IOERR;
		return 0;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "runnerd: unable to initialise libcurl\n");
		return EX_SOFTWARE;
	}
	if (cmd == CMD_PREPARE)
		code = run_prepare(&d);
	else
		code = run_daemon(&d);

	if (d.abandoned) {
		/* A detached worker may still be inside libcurl or apt's wait: no atexit
		 * teardown under its feet. */
		fflush(stdout);
		fflush(stderr);
		_exit(code);
	}
	log_forget_secrets();
	runnerd_config_free(&d.conf);
	curl_global_cleanup();
	return code;
}
