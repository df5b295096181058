/* runner-scaler simulate: replay a job trace, in simulated time, through a model of the Auto
 * Scaling group and its instances, driven either by the policy the daemon runs (policy_decide,
 * the very function, no copy) or by the CircleCI tutorial's once-a-minute function.
 *
 * The parts, each pure but the last: sim_trace.c (the trace and the option values it parses),
 * sim_model.c (the model: sim_run), sim_queue.c (its event heap and lists), sim_warm.c (a
 * group's warm pool: its counts and costs), sim_report.c (text, JSON, SVG), simulate.c (the
 * command).
 *
 * THE MODEL. Every parameter and its source is here, in one place; the man page and the README
 * point at this table. Nothing is tuned to flatter either policy: both share the boot time, the
 * agent and the group; they differ only where the two designs differ (marked "runnerd" and
 * "tutorial").
 *
 *   boot time          uniform SIM_BOOT_MIN_S..SIM_BOOT_MAX_S (45-60 s), from the group
 *                      launching the instance to the agent's first claim; the ASG's own launch
 *                      delay is inside it. Source: "45-60 s boot with optimized AMI"
 *                      (terraform-aws-github-runner #4637); peers report 45 s to 4 min
 *                      (notes/peers.md §0.4, §9). --boot-time 45-60 | 50 changes it.
 *   poll interval      runnerd: [scaler] interval, default 10 s (DESIGN.md, scaler.conf).
 *                      tutorial: 60 s, an EventBridge cron(0/1 * * * ? *) (notes/circleci.md
 *                      §4.1). The first poll is at t = 0. 0 means "after every event".
 *   the policy         runnerd: policy_decide() with the pool's min, max, headroom, max_step;
 *                      the group's MinSize = pool min (0 unless -c says otherwise), MaxSize =
 *                      pool max; SetDesiredCapacity only on change.
 *                      tutorial: desired = min(unclaimed + running, max), written every poll
 *                      with UpdateAutoScalingGroup (its lambda_function.py).
 *   agent claim        an idle agent asks for work every SIM_CLAIM_INTERVAL_S (5 s): machine
 *                      runner 3 logs app.backoff_ms=5000 in its claim loop (notes/circleci.md
 *                      §1.6); it asks at once when it starts. Oldest unclaimed job first.
 *   agent idle timeout SIM_IDLE_TIMEOUT_S (60 s), both: runnerd.conf [agent] idle_timeout = 1m;
 *                      the tutorial's user data sets idle_timeout: 1m (notes/circleci.md §4.1).
 *   single task        both: the agent runs one job, then exits.
 *   agent exit         runnerd: TerminateInstanceInAutoScalingGroup with a decrement (desired
 *                      - 1; at MinSize the call falls back to no decrement), the instance
 *                      leaves the group at once (DESIGN.md, invariants).
 *                      tutorial: ExecStopPost=shutdown now -h: the instance stops but stays in
 *                      the group; the group's health check notices it after
 *                      SIM_REPLACE_DELAY_S, terminates it and launches a replacement while
 *                      desired still counts it (notes/circleci.md §4.3.2). AWS documents the
 *                      check as "periodic" with no figure; 0 s (the fake cloud's next tick) is
 *                      the default and bench/compare also shows 60 s.
 *   the group          launches at once whenever desired exceeds the instances it holds;
 *                      scale-in protection is on for both (the tutorial's readme; this
 *                      project's README), so a lowered desired never terminates an instance.
 *   instance-seconds   from launch until the agent exits (runnerd: the exit path takes
 *                      milliseconds; tutorial: a stopped instance is not billed).
 *   boot, idle         the instance-seconds not spent running a job are reported in two
 *                      parts: boot (launch to the agent's start) and idle (the agent up with
 *                      no job: waiting for its claim, or for its idle timeout). "Overhead" is
 *                      their sum (with a warm pool, warm-up too).
 *   warm pool          --warm-pool N, every pool (DESIGN.md: [pool NAME] warm_pool = N), as
 *                      sim_warm.h describes it: N prepared instances, stopped; an instance the
 *                      group wants (a scale-out, the tutorial's replacement) is taken from the
 *                      stopped ones first, else launched cold as above; each one taken is
 *                      replaced by a refill launched into the pool; none comes back
 *                      (ReuseOnScaleIn false). Pool instances are outside the group and its
 *                      max. Without --warm-pool there is no pool and the reports are unchanged.
 *   resume time        uniform SIM_RESUME_MIN_S..SIM_RESUME_MAX_S (30-40 s), from the group
 *                      taking a stopped instance to the agent's first claim (the start, the
 *                      LAUNCHING hook's second firing, the token, the agent); counted as boot
 *                      time. Source: AWS's sample measured 36 s from the pool to InService,
 *                      and AWS quotes launches "as low as 30 seconds" (notes/warm-pools.md).
 *                      --resume-time 30-40 | 36 changes it.
 *   refill warm-up     a boot time drawn as above (the same image and work up to the agent,
 *                      the hook in place of the token and the agent) plus SIM_WARM_STOP_S
 *                      (17 s): AWS's sample took 260 s to launch into the pool against 243 s
 *                      to launch cold into the group (notes/warm-pools.md). Running from its
 *                      launch until it is stopped (like a cold boot, counted from launch; EC2
 *                      bills neither pending nor stopping, so this errs against the pool):
 *                      "warm-up", instance time spent on no job. A refill launched while
 *                      launches fail (--fail-launches) prepares all the same; the instance
 *                      fails when it is resumed in the window (the token, the agent URL).
 *   stopped seconds    a stopped pool instance pays for its EBS volume only: its time is
 *                      reported apart (warm_pool_stopped_seconds), never in instance-seconds.
 *   API calls          runnerd per poll: GET tasks and tasks/running per pool, one
 *                      DescribeAutoScalingGroups per 50 pools, SetDesiredCapacity on change; per
 *                      instance one TerminateInstanceInAutoScalingGroup. tutorial per poll and
 *                      pool (one function per resource class): GetSecretValue, the two task
 *                      counts, UpdateAutoScalingGroup. Calls made while booting (token, IMDS)
 *                      are the same for both and not counted.
 *   failing launches   --fail-launches FROM-TO (simulated seconds): every instance launched
 *                      in [FROM, TO) fails its boot (a bad launch template, AMI, secret or agent
 *                      URL) when its boot time is over, runs no agent and takes the same exit
 *                      as an agent: runnerd's instance leaves with a decrement, the
 *                      tutorial's stops and is replaced. Its boot is billed.
 *   launch back-off    runnerd only, pools with launch_failures > 0 (default 3, the daemon's;
 *                      -c's, or --launch-failures): every poll runs the daemon's own
 *                      bookkeeping (launches.c) on what its reads would show: the group's
 *                      instances (ids i-<17 hex digits>), and, while one is unconfirmed, the
 *                      class's runner list (one more API call): the runner of every instance
 *                      whose agent started, listed from its start until the poll after its
 *                      instance left. policy_decide() gets the back-off, as in the daemon.
 *                      With --fail-launches the run is made twice, the second time with
 *                      launch_failures 0 everywhere, and the report gives both launch counts.
 *   the end            when every job is done, every group is empty and every warm pool
 *                      refill stopped, or SIM_DRAIN_S after the last job finished (a pool min
 *                      above 0 never empties). Stopped pool instances are counted until then.
 * Waits are claim time - submit time; p50 and p95 are nearest-rank percentiles. */
#ifndef RUNNERD_SIMULATE_H
#define RUNNERD_SIMULATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"

#define SIM_BOOT_MIN_S          45
#define SIM_BOOT_MAX_S          60
#define SIM_RUNNERD_INTERVAL_S  10 /* only without -c; with it, [scaler] interval */
#define SIM_TUTORIAL_INTERVAL_S 60
#define SIM_CLAIM_INTERVAL_S    5
#define SIM_IDLE_TIMEOUT_S      60
#define SIM_REPLACE_DELAY_S     0
#define SIM_RESUME_MIN_S        30
#define SIM_RESUME_MAX_S        40
#define SIM_WARM_STOP_S         17
#define SIM_WARM_POOL_MAX       10000 /* --warm-pool N: at most this */
#define SIM_DRAIN_S             3600
#define SIM_DEFAULT_MAX         20           /* pools made from the trace when there is no -c */
#define SIM_DESCRIBE_BATCH      50           /* pools per DescribeAutoScalingGroups (cycle.c) */
#define SIM_STALL_S             (24 * 3600)  /* no progress this long with work left: stuck */
#define SIM_EVENTS_MAX          200000000ULL /* a bound on the work of any run */

/* Trace limits: a parser fed a file bounds everything. */
#define SIM_LINE_MAX       4096
#define SIM_CLASS_MAX      128 /* bytes, with the NUL */
#define SIM_CLASSES_MAX    64
#define SIM_JOBS_MAX       2000000
#define SIM_SUBMIT_MAX_S   (366 * 86400)
#define SIM_DURATION_MAX_S (7 * 86400)
#define SIM_SERIES_MAX     4000000 /* plot samples per pool; later ones are dropped */

enum sim_policy {
	SIM_POLICY_RUNNERD,
	SIM_POLICY_TUTORIAL,
};

struct sim_job {
	int64_t submit_ms, duration_ms;
	uint32_t line; /* in the trace file, for messages */
	uint16_t cls;  /* index into sim_trace.classes; "" (no third column) is a class too */
};

struct sim_trace {
	struct sim_job *jobs; /* sorted by submit time, then by line */
	size_t n;
	char classes[SIM_CLASSES_MAX][SIM_CLASS_MAX];
	size_t nclasses;
};

/* Pure: parse CSV text "submit_s,duration_s[,resource_class]" (optional header line with
 * those names; blank lines and lines starting with '#' are skipped; CRLF accepted). 0, or
 * -EINVAL / -E2BIG with err = "line N: what is wrong"; -ENOMEM. out is freed on error. */
int sim_trace_parse(const char *text, size_t len, struct sim_trace *out, char *err, size_t errlen);
void sim_trace_free(struct sim_trace *t);

/* Pure: "45-60" or "50" (seconds, decimals allowed) into a range in ms. 0 or -EINVAL. */
int sim_parse_boot(const char *s, int64_t *lo_ms, int64_t *hi_ms);
/* Pure: --resume-time "30-40" or "36" (seconds, decimals allowed, at most 3600, MIN <= MAX)
 * into a range in ms. 0 or -EINVAL. */
int sim_parse_resume(const char *s, int64_t *lo_ms, int64_t *hi_ms);
/* Pure: --fail-launches "FROM-TO" (seconds, decimals allowed, FROM < TO, TO at most
 * SIM_SUBMIT_MAX_S) into [from, to) in ms. 0 or -EINVAL. */
int sim_parse_window(const char *s, int64_t *from_ms, int64_t *to_ms);

struct sim_model {
	enum sim_policy policy;
	int64_t boot_min_ms, boot_max_ms;
	int64_t interval_ms;       /* 0: poll after every event */
	int64_t claim_interval_ms; /* 0: an idle agent takes a job the moment it is queued */
	int64_t idle_timeout_ms;
	int64_t replace_delay_ms;             /* tutorial only */
	int64_t fail_from_ms, fail_to_ms;     /* instances launched in [from, to) fail their boot */
	int64_t resume_min_ms, resume_max_ms; /* warm pool: taken from the pool to the agent */
	int64_t warm_stop_ms;                 /* warm pool: a refill's warm-up is a boot + this */
	bool warm_report; /* report the warm pool figures (--warm-pool given), even for N = 0 */
	uint64_t seed;
	uint64_t max_events; /* 0: SIM_EVENTS_MAX */
};

/* The defaults above for a policy (runnerd: SIM_RUNNERD_INTERVAL_S). */
void sim_model_defaults(struct sim_model *m, enum sim_policy policy);

struct sim_pool {
	char name[64];
	char resource_class[SIM_CLASS_MAX]; /* jobs of this class; "" jobs go to the first pool */
	int64_t min, max, headroom, max_step;
	int64_t launch_failures; /* runnerd: the launch back-off's threshold; 0: off */
	int64_t warm_pool;       /* instances kept prepared and stopped in the warm pool; 0: none */
};

struct sim_job_result {
	int64_t claimed_ms, done_ms; /* -1: never */
	uint32_t runs;               /* how many agents ran it: 1, always (a tested invariant) */
	uint32_t pool;
};

struct sim_stats {
	size_t jobs;
	int64_t wait_p50_ms, wait_p95_ms, wait_max_ms;
	double wait_mean_ms;
	int64_t instance_ms, busy_ms, boot_ms; /* idle = instance - busy - boot */
	uint64_t launches, replacements, api_calls, writes;
	uint64_t failed_launches; /* launched while launches fail (--fail-launches) */
	uint64_t backoffs;        /* launch back-offs the pool went into */
	int64_t peak_in_group;    /* instances the group held at once, stopped ones included */
	/* warm pool: launches above count cold launches and instances taken from the pool
	 * (warm_taken of them); instance_ms includes warm_ms, the refills' running time */
	int64_t warm_pool; /* its size (the total: of every pool) */
	uint64_t warm_taken, warm_refills;
	int64_t warm_ms, warm_stopped_ms;
};

struct sim_sample {
	int64_t t_ms;
	int32_t queued, desired, up, busy; /* up: booting, idle or busy (billed) */
	int32_t warm;                      /* stopped in the warm pool, ready to be taken */
};

struct sim_series {
	struct sim_sample *s;
	size_t n, cap;
	bool truncated;
};

struct sim_result {
	struct sim_stats total;
	struct sim_stats *pools;   /* npools */
	struct sim_series *series; /* npools, when sim_run was asked to record */
	size_t npools;
	struct sim_job_result *jobs; /* trace->n, in trace order */
	size_t njobs;
	int64_t end_ms;
	uint64_t events;
};

/* Run the simulation (pure: no clock, no I/O; the seed is the only randomness). Jobs of a class
 * no pool serves are an error naming the first such line. 0; -EINVAL (err says why), -ENOMEM,
 * -EDEADLK when work was left undone for SIM_STALL_S (a pool with max 0), -E2BIG past
 * SIM_EVENTS_MAX events. */
int sim_run(const struct sim_model *m, const struct sim_pool *pools, size_t npools,
            const struct sim_trace *t, bool record, struct sim_result *res, char *err,
            size_t errlen);
void sim_result_free(struct sim_result *r);

const char *sim_policy_name(enum sim_policy p);

/* Renderers, into a bounded buffer. The JSON has at least jobs, wait_p50_s, wait_p95_s,
 * wait_max_s, instance_seconds, idle_instance_seconds, api_calls, launches, failed_launches,
 * and a pools array; with m->warm_report, warm_pool_stopped_seconds and the other warm_pool_
 * figures too (without it, exactly what it was before warm pools). without: the same run with the
 * launch back-off off (--fail-launches), or NULL; its figures are reported beside (text) or under
 * "without_backoff" (JSON). */
int sim_render_text(const struct sim_model *m, const struct sim_pool *pools,
                    const struct sim_result *r, const struct sim_result *without, struct buf *out);
int sim_render_json(const struct sim_model *m, const struct sim_pool *pools,
                    const struct sim_result *r, const struct sim_result *without, struct buf *out);
/* An SVG of queued jobs, desired capacity, instances up and busy over time, a panel per pool;
 * with m->warm_report, the instances stopped in the warm pool too. */
int sim_render_svg(const struct sim_model *m, const struct sim_pool *pools,
                   const struct sim_result *r, const char *title, struct buf *out);

/* The subcommand: argv[0] is "simulate". Reads the files it is given, writes the report to out
 * and problems to err (the caller's streams); returns a sysexits code. */
int simulate_main(int argc, char **argv, FILE *out, FILE *err);

#endif
