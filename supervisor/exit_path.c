/* Leaving the ASG and powering off (see exit_path.h and runnerd(8), EXIT PATH). */
#include "exit_path.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "aws_services.h"
#include "creds.h"
#include "log.h"
#include "subproc.h"
#include "util.h"

#define LEAVE_BACKOFF_BASE_MS       500
#define LEAVE_BACKOFF_CAP_MS        8000
#define POWEROFF_COMMAND_TIMEOUT_MS 120000L

static bool leave_retryable(int r, const struct aws_error *err)
{
	if (r == -EREMOTEIO)
		return aws_error_retryable(err);
	/* No answer, or one we could not read (a proxy's HTML 502): the call may or may not have
	 * happened; a retry is safe because "not found" afterwards counts as done. */
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -EPROTO ||
	       r == -ECONNRESET || r == -EBADMSG;
}

int leave_asg_run(const struct leave_ops *ops, uint64_t deadline_ms, unsigned max_attempts,
                  struct leave_report *rep)
{
	bool decrement = true;
	unsigned transient = 0;
	struct aws_error err;
	int r;

	memset(rep, 0, sizeof(*rep));
	rep->outcome = LEAVE_FAILED;
	for (;;) {
		memset(&err, 0, sizeof(err));
		r = ops->terminate(ops->user, decrement, &err);
		rep->calls++;
		rep->last_r = r;
		if (r == 0) {
			rep->outcome = LEAVE_DONE;
			rep->decremented = decrement;
			return 0;
		}
		rep->last = err;
		if (r == -EREMOTEIO && asg_error_is_not_found(&err)) {
			rep->outcome = LEAVE_NOT_FOUND;
			return 0;
		}
		if (r == -EREMOTEIO && decrement && asg_error_is_min_size(&err)) {
			/* At MinSize the ASG refuses the decrement: leave without it (the
			 * fallback Buildkite's script gets wrong, peers.md §0). */
			decrement = false;
			continue;
		}
		if (!leave_retryable(r, &err) || ++transient >= max_attempts)
			return r;
		{
			uint64_t d = backoff_full_jitter_ms(transient - 1, LEAVE_BACKOFF_BASE_MS,
			                                    LEAVE_BACKOFF_CAP_MS,
			                                    ops->random(ops->user));

			if (ops->now_ms(ops->user) + d >= deadline_ms)
				return r;
			ops->sleep_ms(ops->user, d);
		}
	}
}

/* ---- the real operations ---- */

static int real_terminate(void *user, bool decrement, struct aws_error *err)
{
	struct boot_ctx *b = user;

	log_info("leaving-asg: TerminateInstanceInAutoScalingGroup %s "
	         "ShouldDecrementDesiredCapacity=%s",
	         b->instance_id, decrement ? "true" : "false");
	return asg_terminate_instance(&b->aws, b->region, b->instance_id, decrement, err);
}

static uint64_t real_now(void *user)
{
	return now_mono_ms();
}

static void real_sleep(void *user, uint64_t ms)
{
	sleep_ms(ms);
}

static uint32_t real_random(void *user)
{
	return random_u32();
}

int exit_leave_asg(struct boot_ctx *b, uint64_t deadline_mono_ms, struct leave_report *rep)
{
	const struct leave_ops ops = {real_terminate, real_now, real_sleep, real_random, b};
	uint64_t cap;
	int r;

	memset(rep, 0, sizeof(*rep));
	rep->outcome = LEAVE_SKIPPED;
	/* Boot may have been cut short before metadata: one quick try now. */
	r = 0;
	if (!b->instance_id[0] && !b->imds.disabled)
		r = imds_instance_id(&b->imds, b->instance_id, sizeof(b->instance_id));
	if (!b->instance_id[0]) {
		if (r < 0)
			log_warn("leaving-asg: no instance id (%s: %s), skipping",
			         b->imds.last_call, strerror(-r));
		else
			log_warn("leaving-asg: no instance id, skipping");
		return -ENOENT;
	}
	if (!b->region[0] && aws_region_from_env(b->region, sizeof(b->region)) < 0 &&
	    (b->imds.disabled || imds_region(&b->imds, b->region, sizeof(b->region)) < 0)) {
		log_err("leaving-asg: no region known, cannot leave the ASG");
		return -ENOENT;
	}
	if (!b->have_creds) {
		b->imds.last_call[0] = '\0';
		r = creds_resolve(&b->aws, b->imds.disabled ? NULL : &b->imds);
		if (r < 0) {
			log_err("leaving-asg: no AWS credentials (%s%s%s), cannot leave the ASG",
			        b->imds.last_call[0] ? b->imds.last_call : "",
			        b->imds.last_call[0] ? ": " : "", strerror(-r));
			return r;
		}
		b->have_creds = true;
	}
	/* The leave deadline bounds these calls (and the retry sleeps between them), no other. */
	cap = aws_cap_begin(&b->aws, deadline_mono_ms);
	r = leave_asg_run(&ops, deadline_mono_ms, LEAVE_MAX_ATTEMPTS, rep);
	aws_cap_end(&b->aws, cap);
	switch (rep->outcome) {
	case LEAVE_DONE:
		log_info("leaving-asg: done%s", rep->decremented ? " (desired capacity decremented)"
		                                                 : " (at MinSize: no decrement)");
		break;
	case LEAVE_NOT_FOUND:
		log_info("leaving-asg: the ASG no longer knows %s: done", b->instance_id);
		break;
	default:
		/* The AWS error (or the transport's own words), not strerror: EKEYREJECTED would
		 * read as an access-key problem when it is a certificate. */
		log_err("leaving-asg: %s failed after %u call(s): %s%s%s",
		        rep->last.call[0] ? rep->last.call
		                          : "autoscaling:TerminateInstanceInAutoScalingGroup",
		        rep->calls, rep->last.code[0] ? rep->last.code : strerror(-rep->last_r),
		        rep->last.message[0] ? ": " : "", rep->last.message);
		break;
	}
	return r;
}

static int run_shell(const char *cmd, int *status)
{
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	struct spawn_opts o = {.stdout_to_stderr = true, .timeout_ms = POWEROFF_COMMAND_TIMEOUT_MS};

	return spawn_run(argv, &o, status);
}

static int logind_power_off(void)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	sd_bus *bus = NULL;
	int r;

	r = sd_bus_open_system(&bus);
	if (r < 0) {
		log_warn("powering-off: cannot connect to the system bus: %s", strerror(-r));
		goto out;
	}
	/* interactive = false: no polkit prompt; root is allowed. */
	r = sd_bus_call_method(bus, "org.freedesktop.login1", "/org/freedesktop/login1",
	                       "org.freedesktop.login1.Manager", "PowerOff", &e, &reply, "b", 0);
	if (r < 0)
		log_warn("powering-off: logind PowerOff: %s", e.message ? e.message : strerror(-r));
out:
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	sd_bus_flush_close_unref(bus);
	return r;
}

int exit_power_off(const char *poweroff_command)
{
	const char *argv[] = {"systemctl", "poweroff", NULL};
	struct spawn_opts o = {.search_path = true,
	                       .stdout_to_stderr = true,
	                       .timeout_ms = POWEROFF_COMMAND_TIMEOUT_MS};
	int r, st = -1;

	if (poweroff_command && *poweroff_command) {
		log_info("powering-off: running poweroff_command");
		r = run_shell(poweroff_command, &st);
		if (r < 0 && r != -ETIMEDOUT) {
			log_err("powering-off: cannot run /bin/sh: %s", strerror(-r));
			return r;
		}
		log_info("powering-off: poweroff_command %s with status %d",
		         r == -ETIMEDOUT ? "timed out, killed," : "exited", st);
		return 0;
	}
	r = logind_power_off();
	if (r >= 0) {
		log_info("powering-off: logind accepted PowerOff");
		return 0;
	}
	r = spawn_run(argv, &o, &st);
	if (r == 0 && st == 0) {
		log_info("powering-off: systemctl poweroff accepted");
		return 0;
	}
	log_err("powering-off: systemctl poweroff failed (%s, status %d)",
	        r < 0 ? strerror(-r) : "exited", st);
	return r < 0 ? r : -EIO;
}
