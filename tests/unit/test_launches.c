/* Launch-failure bookkeeping (scaler/launches.c), from tables: every scenario is a run of
 * group reads, runner list reads and scale-ins, with what the tracker must say after each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launches.h"
#include "util.h"

#define A   "i-0000000a"
#define B   "i-0000000b"
#define C   "i-0000000c"
#define D   "i-0000000d"
#define L17 "i-0123456789abcdef0"

#define ANY    (-1)
#define MIN_MS 60000

enum op {
	END,
	OBS,   /* a read of the group: "ID:State[:u] ..." (u: not protected from scale-in) */
	LIST,  /* a complete runner list: runner names, space separated; then the verdict */
	LOWER, /* the scaler lowered desired capacity */
};

struct step {
	enum op op;
	const char *arg;
	uint64_t now_ms;
	/* after the step; ANY: not checked */
	int unconfirmed, connected, left;
	int need_list;
	/* LIST only: the verdict */
	int failed, newly_connected, started, ended;
	int64_t streak, backoff_left_ms;
};

struct scenario {
	const char *name;
	unsigned threshold;
	struct step steps[12];
};

/* unconfirmed, connected, left, need_list */
#define TRACK(u, c, l, nl) u, c, l, nl
/* failed, newly connected, backoff started, backoff ended, streak, backoff left */
#define VERDICT(f, nc, s, e, st, bl) f, nc, s, e, st, bl
#define NOV                          VERDICT(ANY, ANY, ANY, ANY, ANY, ANY)

static const struct scenario scenarios[] = {
        {"a failing wave backs off after 3",
         3,
         {{OBS, A ":Pending " B ":Pending " C ":InService", 0, TRACK(3, 0, 0, 1), NOV},
          {LIST, "", 100, TRACK(3, 0, 0, 1), VERDICT(0, 0, 0, 0, 0, 0)},
          {OBS, A ":Terminating " B ":Terminating:Wait", 1000, TRACK(0, 0, 3, 1), NOV},
          {LIST, "", 1100, TRACK(0, 0, 0, 0), VERDICT(3, 0, 1, 0, 3, MIN_MS)},
          {OBS, "", 2000, TRACK(0, 0, 0, 0), NOV},
          {END}}},
        {"two failures stay under 3",
         3,
         {{OBS, A ":InService " B ":InService", 0, TRACK(2, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 2, 1), NOV},
          {LIST, "", 1100, TRACK(0, 0, 0, 0), VERDICT(2, 0, 0, 0, 2, 0)},
          {END}}},
        {"failures add up across waves",
         3,
         {{OBS, A ":InService " B ":InService", 0, TRACK(2, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 2, 1), NOV},
          {LIST, "", 1100, TRACK(0, 0, 0, 0), VERDICT(2, 0, 0, 0, 2, 0)},
          {OBS, C ":Pending", 2000, TRACK(1, 0, 0, 1), NOV},
          {OBS, C ":Terminated", 3000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 3000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 3, MIN_MS)},
          {END}}},
        {"healthy: the runner connects, runs, leaves",
         1,
         {{OBS, A ":Pending", 0, TRACK(1, 0, 0, 1), NOV},
          {LIST, "other-runner ip-10-0-0-1-" A, 100, TRACK(0, 1, 0, 0), VERDICT(0, 1, 0, 0, 0, 0)},
          {OBS, A ":InService", 1000, TRACK(0, 1, 0, 0), NOV},
          {OBS, A ":Terminating", 2000, TRACK(0, 0, 0, 0), NOV},
          {OBS, "", 3000, TRACK(0, 0, 0, 0), NOV},
          {END}}},
        {"its runner listed only after it left: a success",
         1,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {LIST, "", 100, TRACK(1, 0, 0, 1), VERDICT(0, 0, 0, 0, 0, 0)},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "host-" A, 1100, TRACK(0, 0, 0, 0), VERDICT(0, 1, 0, 0, 0, 0)},
          {END}}},
        {"Pending the whole time: a failed launch (bad AMI, subnet)",
         1,
         {{OBS, A ":Pending", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, A ":Pending:Wait", 1000, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 2000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 2100, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 1, MIN_MS)},
          {END}}},
        {"first seen leaving: no history, nothing counted",
         1,
         {{OBS, A ":Terminating " B ":Terminated " C ":Detaching", 0, TRACK(0, 0, 0, 0), NOV},
          {OBS, "", 1000, TRACK(0, 0, 0, 0), NOV},
          {LIST, "", 1100, TRACK(0, 0, 0, 0), VERDICT(0, 0, 0, 0, 0, 0)},
          {END}}},
        {"detached by an operator: forgotten",
         1,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, A ":Detaching", 1000, TRACK(0, 0, 0, 0), NOV},
          {LIST, "", 1100, TRACK(0, 0, 0, 0), VERDICT(0, 0, 0, 0, 0, 0)},
          {END}}},
        {"a connected runner resets the count and ends the back-off",
         2,
         {{OBS, A ":InService " B ":InService " C ":Pending", 0, TRACK(3, 0, 0, 1), NOV},
          {OBS, C ":Pending", 1000, TRACK(1, 0, 2, 1), NOV},
          {LIST, "", 1100, TRACK(1, 0, 0, 1), VERDICT(2, 0, 1, 0, 2, MIN_MS)},
          {LIST, "x-" C, 5000, TRACK(0, 1, 0, 0), VERDICT(0, 1, 0, 1, 0, 0)},
          {END}}},
        {"a read with failures and a connect: the connect wins",
         1,
         {{OBS, A ":InService " B ":InService", 0, TRACK(2, 0, 0, 1), NOV},
          {OBS, B ":InService", 1000, TRACK(1, 0, 1, 1), NOV},
          {LIST, B, 1100, TRACK(0, 1, 0, 0), VERDICT(1, 1, 0, 0, 0, 0)},
          {END}}},
        {"failures during a back-off do not extend it",
         1,
         {{OBS, A ":InService " B ":InService", 0, TRACK(2, 0, 0, 1), NOV},
          {OBS, B ":InService", 1000, TRACK(1, 0, 1, 1), NOV},
          {LIST, "", 1000, TRACK(1, 0, 0, 1), VERDICT(1, 0, 1, 0, 1, MIN_MS)},
          {OBS, "", 11000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 11000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 0, 0, 2, 50000)},
          {END}}},
        {"after the back-off the next failure doubles it",
         1,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 1000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 1, MIN_MS)},
          {OBS, B ":InService", 61000, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 62000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 62000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 2, 2 * MIN_MS)},
          {END}}},
        {"threshold 0: judged, never backs off",
         0,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 1000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 0, 0, 1, 0)},
          {END}}},
        {"unprotected, the scaler lowered desired: maybe a scale-in victim, not judged",
         1,
         {{OBS, A ":InService:u " B ":InService", 0, TRACK(2, 0, 0, 1), NOV},
          {LOWER, NULL, 0, TRACK(2, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV}, /* B (protected) is judged */
          {LIST, "", 1000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 1, MIN_MS)},
          {END}}},
        {"lowered just before its first sighting: not judged",
         1,
         {{OBS, "", 0, TRACK(0, 0, 0, 0), NOV},
          {LOWER, NULL, 0, TRACK(0, 0, 0, 0), NOV},
          {OBS, A ":Pending:u", 1000, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 2000, TRACK(0, 0, 0, 0), NOV},
          {END}}},
        {"lowered long before it was launched: judged",
         1,
         {{OBS, "", 0, TRACK(0, 0, 0, 0), NOV},
          {LOWER, NULL, 0, TRACK(0, 0, 0, 0), NOV},
          {OBS, "", 1000, TRACK(0, 0, 0, 0), NOV},
          {OBS, A ":Pending:u", 2000, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 3000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 3000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 1, MIN_MS)},
          {END}}},
        {"no list read for a while: the verdict waits (a failed read judges nothing)",
         1,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV},
          {OBS, "", 2000, TRACK(0, 0, 1, 1), NOV},
          {OBS, "", 3000, TRACK(0, 0, 1, 1), NOV},
          {LIST, "", 3000, TRACK(0, 0, 0, 0), VERDICT(1, 0, 1, 0, 1, MIN_MS)},
          {END}}},
        {"no list read for 15 minutes: forgotten unjudged",
         1,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV},
          {OBS, "", 1000 + 15 * 60000, TRACK(0, 0, 1, 1), NOV},
          {OBS, "", 1001 + 15 * 60000, TRACK(0, 0, 0, 0), NOV},
          {LIST, "", 1001 + 15 * 60000, TRACK(0, 0, 0, 0), VERDICT(0, 0, 0, 0, 0, 0)},
          {END}}},
        {"missing from one read, listed again: back to unconfirmed",
         1,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {OBS, "", 1000, TRACK(0, 0, 1, 1), NOV},
          {OBS, A ":InService", 2000, TRACK(1, 0, 0, 1), NOV},
          {LIST, "", 2000, TRACK(1, 0, 0, 1), VERDICT(0, 0, 0, 0, 0, 0)},
          {END}}},
        {"ids that are not instance ids, and duplicates, are ignored",
         1,
         {{OBS, "i-XYZ:InService i-0000000:Pending " A ":Pending " A ":Pending", 0,
           TRACK(1, 0, 0, 1), NOV},
          {END}}},
        {"a connected runner that stays listed does not reset a later streak",
         2,
         {{OBS, A ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {LIST, "r-" A, 0, TRACK(0, 1, 0, 0), VERDICT(0, 1, 0, 0, 0, 0)},
          {OBS, A ":InService " B ":InService " C ":InService", 1000, TRACK(2, 1, 0, 1), NOV},
          {OBS, A ":InService", 2000, TRACK(0, 1, 2, 1), NOV},
          {LIST, "r-" A, 2000, TRACK(0, 1, 0, 0), VERDICT(2, 0, 1, 0, 2, MIN_MS)},
          {END}}},
        {"17-digit ids",
         1,
         {{OBS, L17 ":InService", 0, TRACK(1, 0, 0, 1), NOV},
          {LIST, "ip-10-0-3-17-" L17, 0, TRACK(0, 1, 0, 0), VERDICT(0, 1, 0, 0, 0, 0)},
          {END}}},
};

/* "ID:State[:u] ..." into instances (the strings live in buf). */
static size_t parse_insts(const char *spec, struct asg_instance *out, size_t max)
{
	char buf[512], *save = NULL, *tok;
	size_t n = 0;

	str_copy(buf, spec, sizeof(buf));
	for (tok = strtok_r(buf, " ", &save); tok && n < max; tok = strtok_r(NULL, " ", &save)) {
		char *colon = strchr(tok, ':');
		size_t len;

		assert_non_null(colon);
		memset(&out[n], 0, sizeof(out[n]));
		*colon = '\0';
		str_copy(out[n].id, tok, sizeof(out[n].id));
		len = strlen(colon + 1);
		out[n].protected_from_scale_in = true;
		if (len > 2 && strcmp(colon + 1 + len - 2, ":u") == 0) {
			colon[1 + len - 2] = '\0';
			out[n].protected_from_scale_in = false;
		}
		str_copy(out[n].lifecycle_state, colon + 1, sizeof(out[n].lifecycle_state));
		n++;
	}
	return n;
}

static void list_read(struct launch_tracker *t, const char *names)
{
	char buf[512], *save = NULL, *tok;

	str_copy(buf, names, sizeof(buf));
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		launches_runner(t, tok);
}

static void check(int want, long got, const char *what, const char *sc, size_t step)
{
	if (want == ANY || want == got)
		return;
	fail_msg("%s, step %zu: %s is %ld, want %d", sc, step + 1, what, got, want);
}

static void test_scenarios(void **state)
{
	for (size_t s = 0; s < ARRAY_SIZE(scenarios); s++) {
		const struct scenario *sc = &scenarios[s];
		struct launch_tracker t;

		launches_init(&t);
		for (size_t k = 0; sc->steps[k].op != END; k++) {
			const struct step *st = &sc->steps[k];
			struct asg_instance insts[16];
			struct launch_verdict v;
			size_t n;

			switch (st->op) {
			case OBS:
				n = parse_insts(st->arg, insts, ARRAY_SIZE(insts));
				assert_int_equal(launches_observe(&t, insts, n, st->now_ms, 0), 0);
				break;
			case LIST:
				list_read(&t, st->arg);
				launches_judge(&t, sc->threshold, st->now_ms, &v);
				check(st->failed, v.failed, "failed", sc->name, k);
				check(st->newly_connected, v.connected, "connected", sc->name, k);
				check(st->started, v.backoff_started, "backoff started", sc->name,
				      k);
				check(st->ended, v.backoff_ended, "backoff ended", sc->name, k);
				if (st->failed > 0)
					check(st->failed < LAUNCH_IDS_KEPT ? st->failed
					                                   : LAUNCH_IDS_KEPT,
					      (long)v.nfailed_ids, "failed ids", sc->name, k);
				if (st->started > 0)
					check((int)(st->backoff_left_ms), (long)v.backoff_ms,
					      "backoff length", sc->name, k);
				check(st->streak, t.streak, "streak", sc->name, k);
				check((int)st->backoff_left_ms,
				      (long)launches_backoff_left_ms(&t, st->now_ms),
				      "backoff left", sc->name, k);
				break;
			case LOWER:
				launches_lowered(&t);
				break;
			case END:
				break;
			}
			check(st->unconfirmed, (long)launches_count(&t, LAUNCH_UNCONFIRMED),
			      "unconfirmed", sc->name, k);
			check(st->connected, (long)launches_count(&t, LAUNCH_CONNECTED),
			      "connected", sc->name, k);
			check(st->left, (long)launches_count(&t, LAUNCH_LEFT), "left", sc->name, k);
			check(st->need_list, launches_need_list(&t), "need_list", sc->name, k);
		}
		launches_reset(&t);
	}
}

static void test_ids_in_name(void **state)
{
	static const struct {
		const char *name;
		size_t n;
		const char *ids[3];
	} rows[] = {
	        {"ip-10-0-3-17-" L17, 2, {"i-01234567", L17}},
	        {"host-" A, 1, {A}},
	        {A "-" B, 2, {A, B}},
	        {"host-i-0000000", 0, {NULL}},  /* 7 digits */
	        {"host-I-0000000A", 0, {NULL}}, /* not an instance id's case */
	        {"api-deadbeef00", 1, {"i-deadbeef"}},
	        {"x-i-0123456789abcdef0123", 2, {"i-01234567", L17}},
	        {"", 0, {NULL}},
	        {"i-", 0, {NULL}},
	};

	for (size_t r = 0; r < ARRAY_SIZE(rows); r++) {
		char ids[3][LAUNCH_ID_MAX];
		size_t n = launches_ids_in_name(rows[r].name, ids, 3);

		assert_int_equal(n, rows[r].n);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(ids[i], rows[r].ids[i]);
	}
	{
		char one[1][LAUNCH_ID_MAX];

		assert_int_equal(launches_ids_in_name("ip-" L17, one, 1), 1); /* bounded by max */
	}
}

static void test_valid_id(void **state)
{
	static const struct {
		const char *s;
		bool ok;
	} rows[] = {
	        {A, true},
	        {L17, true},
	        {"i-0000000", false},
	        {"i-000000000", false},
	        {"i-0123456789abcdef", false},
	        {"i-0123456789abcdef01", false},
	        {"i-0000000A", false},
	        {"x-0000000a", false},
	        {"", false},
	        {"i-", false},
	};

	for (size_t r = 0; r < ARRAY_SIZE(rows); r++)
		assert_int_equal(launches_valid_id(rows[r].s), rows[r].ok);
}

static void test_backoff_schedule(void **state)
{
	static const uint64_t want_s[] = {60, 120, 240, 480, 960, 1800, 1800, 1800};

	for (unsigned l = 0; l < ARRAY_SIZE(want_s); l++)
		assert_int_equal(launches_backoff_ms(l), want_s[l] * 1000);
	assert_int_equal(launches_backoff_ms(40), LAUNCH_BACKOFF_MAX_MS);
	assert_int_equal(launches_backoff_ms(UINT32_MAX), LAUNCH_BACKOFF_MAX_MS);
}

/* Back-offs in a row double up to 30 minutes, through the tracker. */
static void test_backoff_doubles_to_30_minutes(void **state)
{
	struct launch_tracker t;
	struct asg_instance one;
	struct launch_verdict v;
	uint64_t now = 0;
	uint64_t lengths[8];

	launches_init(&t);
	for (size_t k = 0; k < ARRAY_SIZE(lengths); k++) {
		memset(&one, 0, sizeof(one));
		snprintf(one.id, sizeof(one.id), "i-%08zx", k + 1);
		str_copy(one.lifecycle_state, "InService", sizeof(one.lifecycle_state));
		assert_int_equal(launches_observe(&t, &one, 1, now, 0), 0);
		assert_int_equal(launches_observe(&t, NULL, 0, now, 0), 0);
		launches_judge(&t, 1, now, &v);
		assert_true(v.backoff_started);
		lengths[k] = v.backoff_ms / 1000;
		now += v.backoff_ms; /* the next launch after it ends */
	}
	assert_int_equal(lengths[0], 60);
	assert_int_equal(lengths[1], 120);
	assert_int_equal(lengths[4], 960);
	assert_int_equal(lengths[5], 1800);
	assert_int_equal(lengths[7], 1800);
	assert_int_equal(t.failed_total, 8);
	assert_int_equal(t.nids, LAUNCH_IDS_KEPT);
	assert_string_equal(t.ids[LAUNCH_IDS_KEPT - 1], "i-00000008"); /* the latest kept */
	launches_reset(&t);
}

/* Memory is bounded: a group larger than LAUNCH_TRACK_MAX is tracked up to it. */
static void test_bounded(void **state)
{
	size_t n = LAUNCH_TRACK_MAX + 100;
	struct asg_instance *insts = calloc(n, sizeof(*insts));
	struct launch_tracker t;

	assert_non_null(insts);
	for (size_t i = 0; i < n; i++) {
		snprintf(insts[i].id, sizeof(insts[i].id), "i-%017zx", i + 1);
		str_copy(insts[i].lifecycle_state, "InService", sizeof(insts[i].lifecycle_state));
	}
	launches_init(&t);
	assert_int_equal(launches_observe(&t, insts, n, 0, 0), 0);
	assert_int_equal(t.n, LAUNCH_TRACK_MAX);
	assert_int_equal(t.untracked_now, 100);
	/* Read again: the same ones, no growth; the 100 not tracked are still 100, not 200 (each
	 * read counts what it lists, it does not add to the last count). */
	assert_int_equal(launches_observe(&t, insts, n, 1000, 0), 0);
	assert_int_equal(t.n, LAUNCH_TRACK_MAX);
	assert_int_equal(t.untracked_now, 100);
	assert_int_equal(launches_observe(&t, insts, n, 1500, 0), 0);
	assert_int_equal(t.untracked_now, 100);
	assert_int_equal(t.forgotten, 0);
	/* A back-off keeps them: nothing is known of them. */
	assert_int_equal(launches_unknown(&t, true), 100);
	assert_int_equal(launches_unknown(&t, false), LAUNCH_TRACK_MAX + 100);
	/* Fewer listed: fewer not tracked. */
	assert_int_equal(launches_observe(&t, insts, LAUNCH_TRACK_MAX + 40, 1800, 0), 0);
	assert_int_equal(t.untracked_now, 40);
	/* They all leave: each waits for its verdict, still within the bound. */
	assert_int_equal(launches_observe(&t, NULL, 0, 2000, 0), 0);
	assert_int_equal(launches_count(&t, LAUNCH_LEFT), LAUNCH_TRACK_MAX);
	assert_int_equal(t.untracked_now, 0);
	assert_int_equal(launches_unknown(&t, false), 0); /* gone, waiting for their verdict */
	launches_reset(&t);
	assert_int_equal(t.n, 0);
	free(insts);
}

/* After a gap without reads the instances are forgotten (nothing of them is judged); the
 * count and the back-off are kept. */
static void test_gap_forgets_instances(void **state)
{
	struct asg_instance insts[3];
	struct launch_tracker t;
	struct launch_verdict v;

	memset(insts, 0, sizeof(insts));
	for (int i = 0; i < 3; i++) {
		snprintf(insts[i].id, sizeof(insts[i].id), "i-0000000%d", i + 1);
		str_copy(insts[i].lifecycle_state, "InService", sizeof(insts[i].lifecycle_state));
	}
	launches_init(&t);
	assert_int_equal(launches_observe(&t, insts, 2, 0, 10000), 0);
	assert_int_equal(launches_observe(&t, NULL, 0, 1000, 10000), 0);
	launches_judge(&t, 2, 1000, &v);
	assert_true(v.backoff_started);
	assert_int_equal(launches_observe(&t, &insts[2], 1, 11000, 10000), 0); /* at the limit */
	assert_true(launches_need_list(&t));
	/* The third leaves while nothing reads the group for 79 s. */
	assert_int_equal(launches_observe(&t, NULL, 0, 90000, 10000), 1);
	assert_int_equal(t.n, 0);
	assert_int_equal(t.forgotten, 1); /* the third, once */
	assert_false(launches_need_list(&t));
	launches_judge(&t, 2, 90000, &v);
	assert_int_equal(v.failed, 0);
	assert_int_equal(t.failed_total, 2);
	assert_int_equal(t.streak, 2);
	/* Without a limit the same is judged. */
	assert_int_equal(launches_observe(&t, &insts[2], 1, 100000, 0), 0);
	assert_int_equal(launches_observe(&t, NULL, 0, 500000, 0), 0);
	launches_judge(&t, 2, 500000, &v);
	assert_int_equal(v.failed, 1);
	/* Forgetting by hand keeps the count and the back-off. */
	launches_forget_instances(&t);
	assert_int_equal(t.streak, 3);
	assert_int_equal(launches_backoff_left_ms(&t, 500000), 120000);
	launches_reset(&t);
}

/* What a launch back-off keeps: the live instances whose runner connected, and those not
 * confirmed yet when no runner list was read after the group's read (not judged). */
static void test_keep(void **state)
{
	struct asg_instance insts[4];
	struct launch_tracker t;
	struct launch_verdict v;
	const char *ids[4] = {A, B, C, D};

	memset(insts, 0, sizeof(insts));
	for (int i = 0; i < 4; i++) {
		str_copy(insts[i].id, ids[i], sizeof(insts[i].id));
		str_copy(insts[i].lifecycle_state, "InService", sizeof(insts[i].lifecycle_state));
	}
	launches_init(&t);
	assert_int_equal(launches_unknown(&t, true), 0);
	assert_int_equal(launches_observe(&t, insts, 4, 0, 0), 0);
	assert_int_equal(launches_unknown(&t, false), 4); /* unknown yet: all kept */
	assert_int_equal(launches_unknown(&t, true), 0);
	launches_runner(&t, "ip-10-0-0-1-" A);
	launches_runner(&t, "ip-10-0-0-2-" B);
	launches_judge(&t, 3, 0, &v);
	assert_int_equal(launches_count(&t, LAUNCH_CONNECTED), 2);
	assert_int_equal(launches_unknown(&t, true), 0);
	assert_int_equal(launches_unknown(&t, false), 2); /* C and D: their runner may be up now */
	/* C and D leave without a runner; A too, after its job: B alone stays. */
	assert_int_equal(launches_observe(&t, &insts[1], 1, 1000, 0), 0);
	assert_int_equal(launches_count(&t, LAUNCH_CONNECTED), 1);
	assert_int_equal(launches_unknown(&t, false), 0); /* the two that left are not kept */
	launches_judge(&t, 3, 1000, &v);
	assert_int_equal(v.failed, 2);
	assert_int_equal(launches_count(&t, LAUNCH_CONNECTED), 1);
	/* Listed Terminating: not kept. */
	str_copy(insts[1].lifecycle_state, "Terminating", sizeof(insts[1].lifecycle_state));
	assert_int_equal(launches_observe(&t, &insts[1], 1, 2000, 0), 0);
	assert_int_equal(launches_count(&t, LAUNCH_CONNECTED), 0);
	assert_int_equal(launches_unknown(&t, false), 0);
	launches_reset(&t);
}

/* The live instances a lower desired capacity may end (the group picks which): those listed
 * not protected from scale-in, tracked or not, whatever their id; not those leaving. */
static void test_unprotected_now(void **state)
{
	struct asg_instance insts[5];
	struct launch_tracker t;
	const char *ids[5] = {A, B, C, D, "not-an-id"};

	memset(insts, 0, sizeof(insts));
	for (int i = 0; i < 5; i++) {
		str_copy(insts[i].id, ids[i], sizeof(insts[i].id));
		str_copy(insts[i].lifecycle_state, "InService", sizeof(insts[i].lifecycle_state));
		insts[i].protected_from_scale_in = true;
	}
	launches_init(&t);
	assert_int_equal(launches_observe(&t, insts, 5, 0, 0), 0);
	assert_int_equal(t.unprotected_now, 0);
	insts[1].protected_from_scale_in = false;
	insts[4].protected_from_scale_in = false; /* not tracked, still in the group */
	assert_int_equal(launches_observe(&t, insts, 5, 1000, 0), 0);
	assert_int_equal(t.unprotected_now, 2);
	str_copy(insts[1].lifecycle_state, "Terminating", sizeof(insts[1].lifecycle_state));
	str_copy(insts[4].lifecycle_state, "Detaching", sizeof(insts[4].lifecycle_state));
	insts[2].protected_from_scale_in = false;
	str_copy(insts[2].lifecycle_state, "Pending", sizeof(insts[2].lifecycle_state));
	assert_int_equal(launches_observe(&t, insts, 5, 2000, 0), 0);
	assert_int_equal(t.unprotected_now, 1); /* C booting; B and the other on their way out */
	assert_int_equal(launches_observe(&t, NULL, 0, 3000, 0), 0);
	assert_int_equal(t.unprotected_now, 0);
	launches_reset(&t);
}

/* An instance listed alive under an id the tracker cannot take (not "i-" and 8 or 17 hex
 * digits) is not judged, and a back-off keeps it like one it could not track. */
static void test_unreadable_id_is_unknown(void **state)
{
	struct asg_instance insts[3];
	struct launch_tracker t;

	memset(insts, 0, sizeof(insts));
	str_copy(insts[0].id, A, sizeof(insts[0].id));
	str_copy(insts[1].id, "i-0123456789ABCDEF0", sizeof(insts[1].id));
	str_copy(insts[2].id, "i-0123", sizeof(insts[2].id));
	for (int i = 0; i < 3; i++)
		str_copy(insts[i].lifecycle_state, "InService", sizeof(insts[i].lifecycle_state));
	launches_init(&t);
	assert_int_equal(launches_observe(&t, insts, 3, 0, 0), 0);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.untracked_now, 2);
	assert_int_equal(launches_unknown(&t, true), 2);
	str_copy(insts[2].lifecycle_state, "Terminating", sizeof(insts[2].lifecycle_state));
	assert_int_equal(launches_observe(&t, insts, 3, 1000, 0), 0);
	assert_int_equal(t.untracked_now, 1); /* the one leaving is not kept */
	launches_reset(&t);
}

/* Forgotten instances are counted once each, and only those not judged: a connected one was
 * judged already. */
static void test_forgotten_once(void **state)
{
	struct asg_instance insts[3];
	struct launch_tracker t;
	struct launch_verdict v;
	const char *ids[3] = {A, B, C};

	memset(insts, 0, sizeof(insts));
	for (int i = 0; i < 3; i++) {
		str_copy(insts[i].id, ids[i], sizeof(insts[i].id));
		str_copy(insts[i].lifecycle_state, "InService", sizeof(insts[i].lifecycle_state));
	}
	launches_init(&t);
	assert_int_equal(launches_observe(&t, insts, 3, 0, 0), 0);
	launches_runner(&t, "ip-10-0-0-1-" A);
	launches_judge(&t, 3, 0, &v);
	assert_int_equal(launches_observe(&t, insts, 3, 1000, 0), 0);
	assert_int_equal(t.forgotten, 0);
	launches_forget_instances(&t);
	assert_int_equal(t.forgotten, 2); /* B and C; A connected */
	launches_forget_instances(&t);
	assert_int_equal(t.forgotten, 2); /* nothing left to forget */
	/* Seen again after the gap: tracked afresh, forgotten again only if dropped again. */
	assert_int_equal(launches_observe(&t, insts, 3, 2000, 0), 0);
	assert_int_equal(launches_observe(&t, insts, 3, 3000, 0), 0);
	assert_int_equal(t.forgotten, 2);
	launches_reset(&t);
}

static void test_format_ids(void **state)
{
	char ids[3][LAUNCH_ID_MAX] = {A, B, C};
	char out[64];

	launches_format_ids((const char(*)[LAUNCH_ID_MAX])ids, 2, 2, out, sizeof(out));
	assert_string_equal(out, A ", " B);
	launches_format_ids((const char(*)[LAUNCH_ID_MAX])ids, 3, 7, out, sizeof(out));
	assert_string_equal(out, A ", " B ", " C " and 4 more");
	launches_format_ids((const char(*)[LAUNCH_ID_MAX])ids, 3, 7, out, 12);
	assert_string_equal(out, A ",");
	launches_format_ids((const char(*)[LAUNCH_ID_MAX])ids, 0, 0, out, sizeof(out));
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_scenarios),
	        cmocka_unit_test(test_ids_in_name),
	        cmocka_unit_test(test_valid_id),
	        cmocka_unit_test(test_backoff_schedule),
	        cmocka_unit_test(test_backoff_doubles_to_30_minutes),
	        cmocka_unit_test(test_bounded),
	        cmocka_unit_test(test_gap_forgets_instances),
	        cmocka_unit_test(test_keep),
	        cmocka_unit_test(test_unprotected_now),
	        cmocka_unit_test(test_unreadable_id_is_unknown),
	        cmocka_unit_test(test_forgotten_once),
	        cmocka_unit_test(test_format_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
