/* Unit tests: runnerd's lifecycle table, transition by transition, and whole paths through it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "machine.h"
#include "util.h"

#define W   MC_WARM
#define END MC_AWS_ENDING
#define NOL MC_NO_LEAVE
#define NOP MC_NO_POWEROFF
#define H   MC_HOOK
#define U   MC_USED

struct tcase {
	enum phase cur;
	enum machine_event ev;
	unsigned ctx;
	enum phase next;
	unsigned actions;
	bool handled;
};

#define RUN ACT_RUN_STEP
#define AB  ACT_ABANDON_WORKER

static const struct tcase cases[] = {
        /* start */
        {PHASE_STARTING, EV_START, 0, PHASE_METADATA, RUN | ACT_ARM_BOOT_DEADLINE, true},
        {PHASE_STARTING, EV_SIGTERM, 0, PHASE_LEAVING_ASG, RUN, true},
        {PHASE_STARTING, EV_AGENT_EXIT, 0, PHASE_STARTING, 0, false},
        /* the boot order, cold */
        {PHASE_METADATA, EV_STEP_OK, 0, PHASE_CREDENTIALS, RUN, true},
        {PHASE_CREDENTIALS, EV_STEP_OK, 0, PHASE_TOKEN, RUN, true},
        {PHASE_TOKEN, EV_STEP_OK, 0, PHASE_PACKAGES, RUN, true},
        {PHASE_PACKAGES, EV_STEP_OK, 0, PHASE_AGENT_INSTALL, RUN, true},
        {PHASE_AGENT_INSTALL, EV_STEP_OK, 0, PHASE_AGENT_CONFIG, RUN, true},
        {PHASE_AGENT_CONFIG, EV_STEP_OK, 0, PHASE_RUNNING,
         ACT_START_AGENT | ACT_DISARM_BOOT_DEADLINE, true},
        /* with a launch hook: completed after the credentials, before the token */
        {PHASE_CREDENTIALS, EV_STEP_OK, H, PHASE_LAUNCH_HOOK, RUN, true},
        {PHASE_LAUNCH_HOOK, EV_STEP_OK, H, PHASE_TOKEN, RUN, true},
        {PHASE_LAUNCH_HOOK, EV_STEP_FAILED, H, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_LAUNCH_HOOK, EV_BOOT_DEADLINE, H, PHASE_FAILED, AB | ACT_PROCEED, true},
        {PHASE_LAUNCH_HOOK, EV_SIGTERM, H, PHASE_LEAVING_ASG, AB | RUN, true},
        /* an agent already ran here (state_dir), in service: the exit path at once */
        {PHASE_METADATA, EV_USED, U, PHASE_LEAVING_ASG, RUN, true},
        {PHASE_METADATA, EV_USED, U | NOL, PHASE_POWERING_OFF, RUN, true},
        {PHASE_CREDENTIALS, EV_USED, U, PHASE_CREDENTIALS, 0, false},
        /* the warm pool: credentials (for the hook), the bake work, the hook, warm-wait */
        {PHASE_METADATA, EV_WARM, W, PHASE_CREDENTIALS, RUN | ACT_DISARM_BOOT_DEADLINE, true},
        {PHASE_CREDENTIALS, EV_STEP_OK, W, PHASE_PACKAGES, RUN, true},
        {PHASE_CREDENTIALS, EV_STEP_OK, W | H, PHASE_PACKAGES, RUN, true},
        {PHASE_PACKAGES, EV_STEP_OK, W, PHASE_AGENT_INSTALL, RUN, true},
        {PHASE_AGENT_INSTALL, EV_STEP_OK, W, PHASE_WARM_WAIT, 0, true},
        {PHASE_AGENT_INSTALL, EV_STEP_OK, W | H, PHASE_LAUNCH_HOOK, RUN, true},
        {PHASE_LAUNCH_HOOK, EV_STEP_OK, W | H, PHASE_WARM_WAIT, 0, true},
        /* out of the pool (the loop clears MC_WARM): the in-service order, hook first */
        {PHASE_WARM_WAIT, EV_IN_SERVICE, H, PHASE_CREDENTIALS, RUN | ACT_ARM_BOOT_DEADLINE, true},
        {PHASE_WARM_WAIT, EV_STEP_OK, W, PHASE_WARM_WAIT, 0, false},
        /* used, in the pool: abandon the hook and exit quietly; without a hook just exit */
        {PHASE_CREDENTIALS, EV_STEP_OK, W | U | H, PHASE_LAUNCH_HOOK, RUN, true},
        {PHASE_LAUNCH_HOOK, EV_STEP_OK, W | U | H, PHASE_EXITED, ACT_QUIT | ACT_QUIET, true},
        {PHASE_CREDENTIALS, EV_STEP_OK, W | U, PHASE_EXITED, ACT_QUIT | ACT_QUIET, true},
        /* SIGTERM while warm = the ASG stops the warmed instance: exit quietly, no ASG call */
        {PHASE_WARM_WAIT, EV_SIGTERM, W, PHASE_EXITED, AB | ACT_QUIT | ACT_QUIET, true},
        {PHASE_WARM_WAIT, EV_SIGTERM, W | H, PHASE_EXITED, AB | ACT_QUIT | ACT_QUIET, true},
        {PHASE_CREDENTIALS, EV_SIGTERM, W, PHASE_EXITED, AB | ACT_QUIT | ACT_QUIET, true},
        {PHASE_PACKAGES, EV_SIGTERM, W, PHASE_EXITED, AB | ACT_QUIT | ACT_QUIET, true},
        {PHASE_AGENT_INSTALL, EV_SIGTERM, W, PHASE_EXITED, AB | ACT_QUIT | ACT_QUIET, true},
        {PHASE_LAUNCH_HOOK, EV_SIGTERM, W | H, PHASE_EXITED, AB | ACT_QUIT | ACT_QUIET, true},
        /* ... but not once it is in service, nor on a cold boot */
        {PHASE_TOKEN, EV_SIGTERM, H, PHASE_LEAVING_ASG, AB | RUN, true},
        {PHASE_PACKAGES, EV_SIGTERM, 0, PHASE_LEAVING_ASG, AB | RUN, true},
        /* an ending in the pool: the hook abandoned (the leave step), or just power-off */
        {PHASE_WARM_WAIT, EV_DRAIN_REQUEST, W | H, PHASE_LEAVING_ASG, AB | RUN, true},
        {PHASE_WARM_WAIT, EV_DRAIN_REQUEST, W, PHASE_POWERING_OFF, AB | RUN, true},
        {PHASE_WARM_WAIT, EV_NOTICE_AWS_TERMINATING, W, PHASE_POWERING_OFF, AB | RUN, true},
        {PHASE_WARM_WAIT, EV_STEP_FAILED, W, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_FAILED, EV_PROCEED, W | H, PHASE_LEAVING_ASG, RUN, true},
        {PHASE_FAILED, EV_PROCEED, W, PHASE_POWERING_OFF, RUN, true},
        /* any fatal error -> failed -> exit path */
        {PHASE_METADATA, EV_STEP_FAILED, 0, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_CREDENTIALS, EV_STEP_FAILED, 0, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_TOKEN, EV_STEP_FAILED, 0, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_PACKAGES, EV_STEP_FAILED, W, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_AGENT_INSTALL, EV_STEP_FAILED, 0, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_AGENT_CONFIG, EV_STEP_FAILED, 0, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_RUNNING, EV_STEP_FAILED, 0, PHASE_FAILED, ACT_PROCEED, true},
        {PHASE_FAILED, EV_PROCEED, 0, PHASE_LEAVING_ASG, RUN, true},
        {PHASE_FAILED, EV_PROCEED, NOL, PHASE_POWERING_OFF, RUN, true},
        {PHASE_FAILED, EV_PROCEED, END, PHASE_POWERING_OFF, RUN, true},
        {PHASE_FAILED, EV_PROCEED, NOP, PHASE_EXITED, ACT_QUIT, true},
        {PHASE_FAILED, EV_SIGTERM, 0, PHASE_FAILED, 0, false},
        /* the boot deadline */
        {PHASE_METADATA, EV_BOOT_DEADLINE, 0, PHASE_FAILED, AB | ACT_PROCEED, true},
        {PHASE_TOKEN, EV_BOOT_DEADLINE, 0, PHASE_FAILED, AB | ACT_PROCEED, true},
        {PHASE_PACKAGES, EV_BOOT_DEADLINE, 0, PHASE_FAILED, AB | ACT_PROCEED, true},
        {PHASE_AGENT_CONFIG, EV_BOOT_DEADLINE, 0, PHASE_FAILED, AB | ACT_PROCEED, true},
        {PHASE_RUNNING, EV_BOOT_DEADLINE, 0, PHASE_RUNNING, 0, false},
        {PHASE_WARM_WAIT, EV_BOOT_DEADLINE, W, PHASE_WARM_WAIT, 0, false},
        /* stop requests during boot: drop the step, take the exit path */
        {PHASE_CREDENTIALS, EV_DRAIN_REQUEST, 0, PHASE_LEAVING_ASG, AB | RUN, true},
        {PHASE_METADATA, EV_NOTICE_AWS_TERMINATING, 0, PHASE_POWERING_OFF, AB | RUN, true},
        {PHASE_TOKEN, EV_SIGTERM, NOP, PHASE_EXITED, AB | ACT_QUIT, true},
        /* running */
        {PHASE_RUNNING, EV_AGENT_EXIT, 0, PHASE_LEAVING_ASG, RUN, true},
        {PHASE_RUNNING, EV_AGENT_EXIT, NOL, PHASE_POWERING_OFF, RUN, true},
        {PHASE_RUNNING, EV_AGENT_EXIT, NOP, PHASE_EXITED, ACT_QUIT, true},
        {PHASE_RUNNING, EV_SIGTERM, 0, PHASE_DRAINING, ACT_TERM_AGENT | ACT_ARM_DRAIN, true},
        {PHASE_RUNNING, EV_DRAIN_REQUEST, 0, PHASE_DRAINING, ACT_TERM_AGENT | ACT_ARM_DRAIN, true},
        {PHASE_RUNNING, EV_NOTICE_AWS_TERMINATING, 0, PHASE_DRAINING,
         ACT_TERM_AGENT | ACT_ARM_DRAIN, true},
        {PHASE_RUNNING, EV_RUN_WATCHDOG, 0, PHASE_RUNNING, ACT_KILL_AGENT, true},
        {PHASE_RUNNING, EV_DRAIN_TIMEOUT, 0, PHASE_RUNNING, 0, false},
        {PHASE_RUNNING, EV_IN_SERVICE, 0, PHASE_RUNNING, 0, false},
        /* draining */
        {PHASE_DRAINING, EV_AGENT_EXIT, 0, PHASE_LEAVING_ASG, RUN, true},
        /* AWS terminating -> skip leaving-asg */
        {PHASE_DRAINING, EV_AGENT_EXIT, END, PHASE_POWERING_OFF, RUN, true},
        {PHASE_DRAINING, EV_AGENT_EXIT, END | NOP, PHASE_EXITED, ACT_QUIT, true},
        {PHASE_DRAINING, EV_DRAIN_TIMEOUT, 0, PHASE_DRAINING, ACT_KILL_AGENT, true},
        {PHASE_DRAINING, EV_RUN_WATCHDOG, 0, PHASE_DRAINING, ACT_KILL_AGENT, true},
        {PHASE_DRAINING, EV_SIGTERM, 0, PHASE_DRAINING, ACT_TERM_AGENT, true},
        {PHASE_DRAINING, EV_DRAIN_REQUEST, 0, PHASE_DRAINING, 0, true},
        {PHASE_DRAINING, EV_NOTICE_AWS_TERMINATING, 0, PHASE_DRAINING, 0, true},
        /* the exit path */
        {PHASE_LEAVING_ASG, EV_LEFT_ASG, 0, PHASE_POWERING_OFF, RUN, true},
        {PHASE_LEAVING_ASG, EV_SIGTERM, 0, PHASE_LEAVING_ASG, 0, false},
        {PHASE_LEAVING_ASG, EV_AGENT_EXIT, 0, PHASE_LEAVING_ASG, 0, false},
        {PHASE_POWERING_OFF, EV_STEP_OK, 0, PHASE_POWERING_OFF, ACT_QUIT, true},
        {PHASE_POWERING_OFF, EV_STEP_FAILED, 0, PHASE_POWERING_OFF, ACT_QUIT, true},
        {PHASE_POWERING_OFF, EV_SIGTERM, 0, PHASE_POWERING_OFF, 0, false},
        {PHASE_EXITED, EV_SIGTERM, 0, PHASE_EXITED, 0, false},
        {PHASE_EXITED, EV_START, 0, PHASE_EXITED, 0, false},
};

static void test_table(void **state)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct tcase *c = &cases[i];
		struct machine_step s = machine_next(c->cur, c->ev, c->ctx);

		if (s.next != c->next || s.actions != c->actions || s.handled != c->handled) {
			print_error("case %zu: %s + %s (ctx %#x): got %s/%#x/%d, want %s/%#x/%d\n",
			            i, phase_name(c->cur), machine_event_name(c->ev), c->ctx,
			            phase_name(s.next), s.actions, s.handled, phase_name(c->next),
			            c->actions, c->handled);
			fail();
		}
	}
}

/* Every (phase, event) pair gives a sane answer: ignored ones change nothing, handled ones
 * never go backwards into starting, and every exit-path phase is reachable only forward. */
static void test_total(void **state)
{
	unsigned p, e, ctx;

	for (ctx = 0; ctx < 64; ctx++) {
		for (p = 0; p < PHASE_COUNT; p++) {
			for (e = 0; e < EV_COUNT; e++) {
				struct machine_step s = machine_next(p, e, ctx);

				if (!s.handled) {
					assert_int_equal(s.next, p);
					assert_int_equal(s.actions, 0);
					continue;
				}
				assert_int_not_equal(s.next, PHASE_STARTING);
				if (p >= PHASE_LEAVING_ASG && p != PHASE_FAILED)
					assert_true(s.next >= p);
				/* Only the exit path quits. */
				if (s.actions & ACT_QUIT)
					assert_true(s.next == PHASE_EXITED ||
					            s.next == PHASE_POWERING_OFF);
			}
		}
	}
	assert_int_equal(machine_next(PHASE_COUNT, EV_START, 0).handled, false);
	assert_int_equal(machine_next(PHASE_RUNNING, EV_COUNT, 0).handled, false);
	assert_string_equal(machine_event_name(EV_LEFT_ASG), "left-asg");
	assert_string_equal(machine_event_name(EV_COUNT), "unknown");
}

/* Drive whole paths the way the main loop does (PROCEED fed at once) and compare the phases. */
static void walk(unsigned ctx, const enum machine_event *evs, size_t n, const enum phase *want,
                 size_t nwant, unsigned *all_actions)
{
	enum phase cur = PHASE_STARTING;
	size_t i, k = 0;

	*all_actions = 0;
	for (i = 0; i < n; i++) {
		enum machine_event ev = evs[i];

		for (;;) {
			struct machine_step s = machine_next(cur, ev, ctx);

			assert_true(s.handled);
			*all_actions |= s.actions;
			if (s.next != cur) {
				assert_true(k < nwant);
				assert_int_equal(s.next, want[k]);
				k++;
			}
			cur = s.next;
			/* What the main loop does: in the pool from EV_WARM, out at InService. */
			if (ev == EV_WARM)
				ctx |= MC_WARM;
			if (ev == EV_IN_SERVICE)
				ctx &= ~MC_WARM;
			if (!(s.actions & ACT_PROCEED))
				break;
			ev = EV_PROCEED;
		}
	}
	assert_int_equal(k, nwant);
}

static void test_paths(void **state)
{
	unsigned acts;

	{ /* cold boot, single task, exit path */
		const enum machine_event ev[] = {EV_START,    EV_STEP_OK, EV_STEP_OK, EV_STEP_OK,
		                                 EV_STEP_OK,  EV_STEP_OK, EV_STEP_OK, EV_AGENT_EXIT,
		                                 EV_LEFT_ASG, EV_STEP_OK};
		const enum phase ph[] = {PHASE_METADATA, PHASE_CREDENTIALS,   PHASE_TOKEN,
		                         PHASE_PACKAGES, PHASE_AGENT_INSTALL, PHASE_AGENT_CONFIG,
		                         PHASE_RUNNING,  PHASE_LEAVING_ASG,   PHASE_POWERING_OFF};

		walk(0, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_true(acts & ACT_QUIT);
		assert_false(acts & ACT_QUIET);
	}
	{ /* fatal error: failed -> leaving-asg -> powering-off */
		const enum machine_event ev[] = {EV_START, EV_STEP_OK, EV_STEP_FAILED, EV_LEFT_ASG,
		                                 EV_STEP_OK};
		const enum phase ph[] = {PHASE_METADATA, PHASE_CREDENTIALS, PHASE_FAILED,
		                         PHASE_LEAVING_ASG, PHASE_POWERING_OFF};

		walk(0, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
	}
	{ /* warm pool: Warmed:Stopped, SIGTERM in warm-wait -> quiet exit */
		const enum machine_event ev[] = {EV_START,   EV_WARM,    EV_STEP_OK, EV_STEP_OK,
		                                 EV_STEP_OK, EV_STEP_OK, EV_SIGTERM};
		const enum phase ph[] = {PHASE_METADATA,      PHASE_CREDENTIALS, PHASE_PACKAGES,
		                         PHASE_AGENT_INSTALL, PHASE_LAUNCH_HOOK, PHASE_WARM_WAIT,
		                         PHASE_EXITED};

		walk(MC_HOOK, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_true(acts & ACT_QUIET);
		assert_false(acts & ACT_START_AGENT);
		assert_true(acts & ACT_DISARM_BOOT_DEADLINE);
	}
	{ /* resumed from the pool on a later boot: an in-service boot with the hook first */
		const enum machine_event ev[] = {EV_START,      EV_STEP_OK,  EV_STEP_OK, EV_STEP_OK,
		                                 EV_STEP_OK,    EV_STEP_OK,  EV_STEP_OK, EV_STEP_OK,
		                                 EV_AGENT_EXIT, EV_LEFT_ASG, EV_STEP_OK};
		const enum phase ph[] = {PHASE_METADATA,     PHASE_CREDENTIALS, PHASE_LAUNCH_HOOK,
		                         PHASE_TOKEN,        PHASE_PACKAGES,    PHASE_AGENT_INSTALL,
		                         PHASE_AGENT_CONFIG, PHASE_RUNNING,     PHASE_LEAVING_ASG,
		                         PHASE_POWERING_OFF};

		walk(MC_HOOK, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_true(acts & ACT_START_AGENT);
		assert_false(acts & ACT_QUIET);
	}
	{ /* warm pool, then InService in the same boot: the hook again, the rest, running */
		const enum machine_event ev[] = {EV_START,         EV_WARM,
		                                 EV_STEP_OK,       EV_STEP_OK,
		                                 EV_STEP_OK,       EV_STEP_OK,
		                                 EV_IN_SERVICE,    EV_STEP_OK,
		                                 EV_STEP_OK,       EV_STEP_OK,
		                                 EV_STEP_OK,       EV_STEP_OK,
		                                 EV_STEP_OK,       EV_NOTICE_AWS_TERMINATING,
		                                 EV_DRAIN_TIMEOUT, EV_AGENT_EXIT,
		                                 EV_STEP_OK};
		const enum phase ph[] = {
		        PHASE_METADATA,      PHASE_CREDENTIALS,   PHASE_PACKAGES,
		        PHASE_AGENT_INSTALL, PHASE_LAUNCH_HOOK,   PHASE_WARM_WAIT,
		        PHASE_CREDENTIALS,   PHASE_LAUNCH_HOOK,   PHASE_TOKEN,
		        PHASE_PACKAGES,      PHASE_AGENT_INSTALL, PHASE_AGENT_CONFIG,
		        PHASE_RUNNING,       PHASE_DRAINING,      PHASE_POWERING_OFF};

		/* The loop sets MC_AWS_ENDING on the notice; without it the exit path would
		 * leave the ASG, so pass it for the whole walk (it changes nothing earlier). */
		walk(MC_AWS_ENDING | MC_HOOK, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_true(acts & ACT_KILL_AGENT);
		assert_true(acts & ACT_START_AGENT);
	}
	{ /* used, back in the pool (ReuseOnScaleIn): the hook abandoned, a quiet exit */
		const enum machine_event ev[] = {EV_START, EV_WARM, EV_STEP_OK, EV_STEP_OK};
		const enum phase ph[] = {PHASE_METADATA, PHASE_CREDENTIALS, PHASE_LAUNCH_HOOK,
		                         PHASE_EXITED};

		walk(MC_HOOK | MC_USED, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_true(acts & ACT_QUIET);
		assert_false(acts & ACT_START_AGENT);
	}
	{ /* used, in service: the exit path, never an agent */
		const enum machine_event ev[] = {EV_START, EV_USED, EV_LEFT_ASG, EV_STEP_OK};
		const enum phase ph[] = {PHASE_METADATA, PHASE_LEAVING_ASG, PHASE_POWERING_OFF};

		walk(MC_HOOK | MC_USED, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_false(acts & ACT_START_AGENT);
		assert_false(acts & ACT_QUIET);
	}
	{ /* boot deadline while a step hangs */
		const enum machine_event ev[] = {EV_START,         EV_STEP_OK,  EV_STEP_OK,
		                                 EV_BOOT_DEADLINE, EV_LEFT_ASG, EV_STEP_FAILED};
		const enum phase ph[] = {PHASE_METADATA, PHASE_CREDENTIALS, PHASE_TOKEN,
		                         PHASE_FAILED,   PHASE_LEAVING_ASG, PHASE_POWERING_OFF};

		walk(0, ev, ARRAY_SIZE(ev), ph, ARRAY_SIZE(ph), &acts);
		assert_true(acts & ACT_ABANDON_WORKER);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_table),
	        cmocka_unit_test(test_total),
	        cmocka_unit_test(test_paths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
