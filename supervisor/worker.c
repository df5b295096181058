/* The worker thread (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot.h"
#include "exit_path.h"
#include "launch_hook.h"
#include "log.h"
#include "util.h"
#include "warm_state.h"

_Static_assert(sizeof(struct job_result) <= PIPE_BUF, "results must be written atomically");

struct worker_arg {
	unsigned gen;
	int job_fd; /* read end */
	int result_fd;
	const struct runnerd_config *conf;
	char instance_id[32];
	char region[32];
};

const char *job_kind_name(enum job_kind k)
{
	static const char *const names[JOB_COUNT] = {
	        [JOB_METADATA] = "metadata",
	        [JOB_CREDENTIALS] = "credentials",
	        [JOB_TOKEN] = "token",
	        [JOB_PACKAGES] = "packages",
	        [JOB_AGENT_INSTALL] = "agent-install",
	        [JOB_AGENT_CONFIG] = "agent-config",
	        [JOB_LAUNCH_HOOK] = "launch-hook",
	        [JOB_POLL_WARM] = "poll-warm",
	        [JOB_POLL_NOTICE] = "poll-notice",
	        [JOB_LEAVE_ASG] = "leaving-asg",
	        [JOB_POWEROFF] = "powering-off",
	};

	return (unsigned)k < JOB_COUNT ? names[k] : "unknown";
}

static void poll_notice(struct boot_ctx *b, struct job_result *res)
{
	struct spot_action spot;
	int rs, rt;

	memset(&spot, 0, sizeof(spot));
	rs = boot_poll_spot(b, &spot);
	if (rs == 0) {
		res->spot = true;
		str_copy(res->spot_action, spot.action, sizeof(res->spot_action));
		res->spot_time = (long long)spot.time;
	}
	rt = boot_poll_state(b, res->lifecycle_state, sizeof(res->lifecycle_state));
	res->state_known = rt == 0;
	res->r = rs < 0 && rs != -ENOENT ? rs : rt;
}

/* state_dir's record, for an instance with a target lifecycle state (one that a warm pool can
 * stop and start again; without one, IMDS 404, there is no warm pool and nothing to keep). */
static void read_record(struct boot_ctx *b, struct job_result *res)
{
	const char *dir = b->conf->lifecycle->state_dir;
	char bake[WARM_BAKE_HEX + 1];
	struct warm_judgement j;
	struct warm_state st;
	int r;

	r = warm_state_load(dir, &st);
	if (r == -ENOENT)
		return;
	if (r < 0) {
		log_warn("metadata: %s/%s: %s: ignoring it", dir, WARM_STATE_FILE,
		         r == -EBADMSG ? "not a record of runnerd's" : strerror(-r));
		return;
	}
	warm_bake_fingerprint(b->conf, bake);
	j = warm_state_judge(&st, b->instance_id, bake);
	if (!j.used && !j.prepared && strcmp(st.instance_id, b->instance_id) != 0)
		log_info("metadata: %s/%s belongs to %s (a copied disk): ignoring it", dir,
		         WARM_STATE_FILE, st.instance_id);
	res->used = j.used;
	res->prepared = j.prepared;
	if (j.prepared) {
		res->prepared_ms = st.prepared_ms;
		res->packages_ms = st.packages_ms;
		res->agent_install_ms = st.agent_install_ms;
	}
}

/* The bake step ran before on this instance for these inputs (in its warm pool): skip it. */
static bool bake_done(struct boot_ctx *b, const struct job *j, const char *what)
{
	struct job_result r;

	if (!j->stateful)
		return false;
	memset(&r, 0, sizeof(r));
	read_record(b, &r);
	if (!r.prepared)
		return false;
	log_info("%s: done in the warm pool %llu s ago: skipped", what,
	         (unsigned long long)((now_wall_ms() - r.prepared_ms) / 1000));
	return true;
}

static void bake_record(struct boot_ctx *b, uint64_t packages_ms, uint64_t agent_install_ms)
{
	const char *dir = b->conf->lifecycle->state_dir;
	char bake[WARM_BAKE_HEX + 1];
	int r;

	warm_bake_fingerprint(b->conf, bake);
	r = warm_state_mark_prepared(dir, b->instance_id, bake, now_wall_ms(), packages_ms,
	                             agent_install_ms);
	if (r < 0)
		log_warn("agent-install: recording the bake work in %s: %s (it runs again in "
		         "service)",
		         dir, strerror(-r));
	else
		log_info("agent-install: bake work recorded in %s/%s", dir, WARM_STATE_FILE);
}

static void leave_pool(struct boot_ctx *b, struct job_result *res)
{
	struct hook_report rep;

	/* A pool instance leaves by abandoning its launch action: AWS terminates it. */
	res->r = boot_launch_hook(b, true, &rep);
	res->hook_outcome = (int)rep.outcome;
	res->hook_calls = rep.calls;
	res->leave_calls = rep.calls;
	res->leave_outcome = res->r < 0 ? LEAVE_FAILED : LEAVE_DONE;
	if (res->r < 0)
		str_copy(res->err, b->err, sizeof(res->err));
}

static void run_job(struct boot_ctx *b, const struct job *j, struct job_result *res,
                    uint64_t *packages_ms)
{
	struct leave_report rep;
	struct hook_report hr;
	uint64_t t0;

	b->deadline_mono_ms = j->deadline_mono_ms;
	b->err[0] = '\0';
	switch (j->kind) {
	case JOB_METADATA:
		res->r = boot_metadata(b);
		res->state_known = res->r == 0;
		str_copy(res->lifecycle_state, b->lifecycle_state, sizeof(res->lifecycle_state));
		if (res->r == 0 && b->lifecycle_state[0] && b->instance_id[0])
			read_record(b, res);
		break;
	case JOB_CREDENTIALS:
		res->r = boot_credentials(b);
		break;
	case JOB_TOKEN:
		res->r = boot_token(b);
		break;
	case JOB_PACKAGES:
		if (bake_done(b, j, "packages")) {
			res->skipped = true;
			break;
		}
		t0 = now_mono_ms();
		res->r = boot_packages(b);
		*packages_ms = now_mono_ms() - t0;
		break;
	case JOB_AGENT_INSTALL:
		if (bake_done(b, j, "agent-install")) {
			res->skipped = true;
			break;
		}
		t0 = now_mono_ms();
		res->r = boot_agent_install(b);
		if (res->r == 0 && j->warm && j->stateful)
			bake_record(b, *packages_ms, now_mono_ms() - t0);
		break;
	case JOB_AGENT_CONFIG:
		res->r = boot_agent_config(b);
		break;
	case JOB_LAUNCH_HOOK:
		res->r = boot_launch_hook(b, j->abandon, &hr);
		res->hook_outcome = (int)hr.outcome;
		res->hook_calls = hr.calls;
		break;
	case JOB_POLL_WARM:
		res->r = boot_poll_state(b, res->lifecycle_state, sizeof(res->lifecycle_state));
		res->state_known = res->r == 0;
		break;
	case JOB_POLL_NOTICE:
		poll_notice(b, res);
		break;
	case JOB_LEAVE_ASG:
		if (j->warm) {
			leave_pool(b, res);
			break;
		}
		res->r = exit_leave_asg(b, j->deadline_mono_ms, &rep);
		res->leave_outcome = (int)rep.outcome;
		res->leave_calls = rep.calls;
		if (rep.outcome == LEAVE_FAILED)
			snprintf(res->err, sizeof(res->err), "%.90s%s%.150s",
			         rep.last.code[0] ? rep.last.code : strerror(-rep.last_r),
			         rep.last.message[0] ? ": " : "", rep.last.message);
		break;
	case JOB_POWEROFF:
		res->r = exit_power_off(b->conf->lifecycle->poweroff_command);
		break;
	default:
		res->r = -EINVAL;
		break;
	}
	/* The job's deadline was this job's alone. */
	b->deadline_mono_ms = 0;
	str_copy(res->instance_id, b->instance_id, sizeof(res->instance_id));
	str_copy(res->region, b->region, sizeof(res->region));
	if (!res->err[0])
		str_copy(res->err, b->err, sizeof(res->err));
}

static bool read_job(int fd, struct job *j)
{
	ssize_t n;

	do
		n = read(fd, j, sizeof(*j));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*j);
}

static void *worker_main(void *p)
{
	struct worker_arg *a = p;
	struct boot_ctx b;
	struct job j;
	uint64_t packages_ms = 0; /* the last packages step's duration, for the record */
	int r;

	r = boot_ctx_init(&b, a->conf, a->instance_id, a->region);
	while (read_job(a->job_fd, &j)) {
		struct job_result res;
		ssize_t n;

		memset(&res, 0, sizeof(res));
		res.gen = a->gen;
		res.kind = j.kind;
		if (r < 0)
			res.r = r;
		else
			run_job(&b, &j, &res, &packages_ms);
		do
			n = write(a->result_fd, &res, sizeof(res));
		while (n < 0 && errno == EINTR);
	}
	if (r == 0)
		boot_ctx_free(&b);
	close(a->job_fd);
	free(a);
	return NULL;
}

int worker_start(struct worker *w, unsigned gen, int result_fd, const struct runnerd_config *conf,
                 const char *instance_id, const char *region)
{
	struct worker_arg *a;
	int fds[2], r;

	w->job_fd = -1;
	w->inflight = 0;
	w->gen = gen;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	if (pipe2(fds, O_CLOEXEC) < 0) {
		r = -errno;
		free(a);
		return r;
	}
	a->gen = gen;
	a->job_fd = fds[0];
	a->result_fd = result_fd;
	a->conf = conf;
	if (instance_id)
		str_copy(a->instance_id, instance_id, sizeof(a->instance_id));
	if (region)
		str_copy(a->region, region, sizeof(a->region));
	r = pthread_create(&w->thread, NULL, worker_main, a);
	if (r != 0) {
		close(fds[0]);
		close(fds[1]);
		free(a);
		return -r;
	}
	w->job_fd = fds[1];
	return 0;
}

int worker_submit(struct worker *w, const struct job *j)
{
	ssize_t n;

	if (w->job_fd < 0)
		return -EBADF;
	do
		n = write(w->job_fd, j, sizeof(*j));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*j))
		return n < 0 ? -errno : -EIO;
	w->inflight++;
	return 0;
}

void worker_release(struct worker *w, bool join)
{
	if (w->job_fd < 0)
		return;
	close(w->job_fd);
	w->job_fd = -1;
	if (join)
		pthread_join(w->thread, NULL);
	else
		pthread_detach(w->thread);
}
