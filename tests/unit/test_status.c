/* status: phase names, time accounting across phases, the versioned JSON runnerctl reads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

static const struct {
	enum phase p;
	const char *name;
} names[] = {
        {PHASE_STARTING, "starting"},
        {PHASE_METADATA, "metadata"},
        {PHASE_CREDENTIALS, "credentials"},
        {PHASE_LAUNCH_HOOK, "launch-hook"},
        {PHASE_TOKEN, "token"},
        {PHASE_PACKAGES, "packages"},
        {PHASE_AGENT_INSTALL, "agent-install"},
        {PHASE_WARM_WAIT, "warm-wait"},
        {PHASE_AGENT_CONFIG, "agent-config"},
        {PHASE_RUNNING, "running"},
        {PHASE_DRAINING, "draining"},
        {PHASE_LEAVING_ASG, "leaving-asg"},
        {PHASE_POWERING_OFF, "powering-off"},
        {PHASE_FAILED, "failed"},
        {PHASE_EXITED, "exited"},
};

static void test_phase_names(void **state)
{
	size_t i;

	assert_int_equal(sizeof(names) / sizeof(names[0]), PHASE_COUNT);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(phase_name(names[i].p), names[i].name);
	assert_string_equal(phase_name(PHASE_COUNT), "unknown");
	assert_string_equal(phase_name((enum phase) - 1), "unknown");
}

static void new_status(struct runnerd_status *st, uint64_t started)
{
	memset(st, 0, sizeof(*st));
	st->started_ms = started;
	st->agent_exit_status = -1;
}

static void test_enter_accounts_time(void **state)
{
	struct runnerd_status st;

	new_status(&st, 1000);
	/* The first enter accounts "starting" from started_ms. */
	status_enter(&st, PHASE_METADATA, 1500);
	assert_int_equal(st.phase, PHASE_METADATA);
	assert_int_equal(st.phase_since_ms, 1500);
	assert_int_equal(st.phase_ms[PHASE_STARTING], 500);
	assert_true(st.phase_visited[PHASE_STARTING]);
	assert_true(st.phase_visited[PHASE_METADATA]);
	assert_int_equal(st.phase_ms[PHASE_METADATA], 0);

	status_enter(&st, PHASE_CREDENTIALS, 1520);
	assert_int_equal(st.phase_ms[PHASE_METADATA], 20);
	status_enter(&st, PHASE_METADATA, 1600);
	assert_int_equal(st.phase_ms[PHASE_CREDENTIALS], 80);
	/* Re-visiting accumulates. */
	status_enter(&st, PHASE_TOKEN, 1650);
	assert_int_equal(st.phase_ms[PHASE_METADATA], 70);
	assert_false(st.phase_visited[PHASE_PACKAGES]);
	/* A wall clock stepping backwards never wraps. */
	status_enter(&st, PHASE_PACKAGES, 1000);
	assert_int_equal(st.phase_ms[PHASE_TOKEN], 0);
	assert_true(st.phase_visited[PHASE_TOKEN]);
	/* Out of range is ignored. */
	status_enter(&st, PHASE_COUNT, 2000);
	assert_int_equal(st.phase, PHASE_PACKAGES);
}

static void test_enter_without_start_time(void **state)
{
	struct runnerd_status st;

	new_status(&st, 0);
	status_enter(&st, PHASE_STARTING, 5000);
	assert_int_equal(st.phase_ms[PHASE_STARTING], 0);
	assert_true(st.phase_visited[PHASE_STARTING]);
	status_enter(&st, PHASE_METADATA, 5250);
	assert_int_equal(st.phase_ms[PHASE_STARTING], 250);
}

static cJSON *to_json(const struct runnerd_status *st, uint64_t now)
{
	struct buf b;
	cJSON *j;

	buf_init(&b, 0);
	assert_int_equal(status_to_json(st, now, &b), 0);
	assert_non_null(b.data);
	assert_null(memchr(b.data, '\n', b.len)); /* one line on the wire */
	j = cJSON_ParseWithLength(b.data, b.len);
	buf_free(&b);
	assert_non_null(j);
	return j;
}

static const cJSON *get(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v)
		fail_msg("missing key %s", key);
	return v;
}

static void assert_num(const cJSON *o, const char *key, double want)
{
	const cJSON *v = get(o, key);

	assert_true(cJSON_IsNumber(v));
	if (fabs(v->valuedouble - want) > 1e-9)
		fail_msg("%s: %f != %f", key, v->valuedouble, want);
}

static void assert_str(const cJSON *o, const char *key, const char *want)
{
	const cJSON *v = get(o, key);

	assert_true(cJSON_IsString(v));
	assert_string_equal(v->valuestring, want);
}

static void assert_null_key(const cJSON *o, const char *key)
{
	assert_true(cJSON_IsNull(get(o, key)));
}

static void test_json_fresh(void **state)
{
	struct runnerd_status st;
	const cJSON *agent, *phases;
	cJSON *j;

	new_status(&st, 1704088800000ull); /* 2024-01-01T06:00:00Z */
	status_enter(&st, PHASE_STARTING, 1704088800000ull);
	j = to_json(&st, 1704088803250ull);
	assert_num(j, "version", 1);
	assert_int_equal(get(j, "version")->valueint, 1);
	assert_str(j, "phase", "starting");
	assert_num(j, "phase_seconds", 3.25);
	assert_num(j, "uptime_seconds", 3.25);
	assert_str(j, "started", "2024-01-01T06:00:00.000Z");
	assert_str(j, "instance_id", "");
	assert_str(j, "region", "");
	assert_str(j, "lifecycle_state", "");
	assert_null_key(j, "notice");
	assert_null_key(j, "last_error");
	phases = get(j, "phases");
	assert_true(cJSON_IsObject(phases));
	assert_int_equal(cJSON_GetArraySize(phases), 1);
	assert_num(phases, "starting", 3.25);
	agent = get(j, "agent");
	assert_true(cJSON_IsObject(agent));
	assert_str(agent, "flavour", "");
	assert_null_key(agent, "pid");
	assert_null_key(agent, "started");
	assert_null_key(agent, "uptime_seconds");
	assert_null_key(agent, "exit_status");
	assert_null_key(j, "warm"); /* a cold boot */
	cJSON_Delete(j);
}

/* The warm path in the status: which path this boot took, the bake work done in the pool on
 * an earlier boot, the last launch-hook completion; the phase timings include launch-hook. */
static void test_json_warm(void **state)
{
	static const struct {
		enum warm_path path;
		uint64_t prepared_ms, packages_ms, agent_install_ms;
		const char *hook;
		const char *want_path, *want_prepared;
		double want_seconds; /* < 0: null */
	} cases[] = {
	        {WARM_PREPARE, 0, 0, 0, "CONTINUE", "prepare", NULL, -1},
	        {WARM_RESUMED, 1704088800000ull, 3000, 1250, "CONTINUE", "resumed",
	         "2024-01-01T06:00:00.000Z", 4.25},
	        {WARM_SAME_BOOT, 0, 0, 0, "no-action", "same-boot", NULL, -1},
	        {WARM_USED, 0, 0, 0, "ABANDON", "used", NULL, -1},
	        /* a record of bake work, yet a cold path: the record still shows */
	        {WARM_NONE, 1704088800000ull, 10, 0, "", "cold", "2024-01-01T06:00:00.000Z", 0.01},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct runnerd_status st;
		const cJSON *w, *phases;
		cJSON *j;

		new_status(&st, 1704088800000ull);
		status_enter(&st, PHASE_LAUNCH_HOOK, 1704088800000ull);
		st.warm.path = cases[i].path;
		st.warm.prepared_ms = cases[i].prepared_ms;
		st.warm.packages_ms = cases[i].packages_ms;
		st.warm.agent_install_ms = cases[i].agent_install_ms;
		snprintf(st.warm.hook, sizeof(st.warm.hook), "%s", cases[i].hook);
		j = to_json(&st, 1704088801500ull);
		w = get(j, "warm");
		assert_true(cJSON_IsObject(w));
		assert_str(w, "path", cases[i].want_path);
		if (cases[i].want_prepared)
			assert_str(w, "prepared", cases[i].want_prepared);
		else
			assert_null_key(w, "prepared");
		if (cases[i].want_seconds < 0)
			assert_null_key(w, "prepare_seconds");
		else
			assert_num(w, "prepare_seconds", cases[i].want_seconds);
		if (cases[i].hook[0])
			assert_str(w, "launch_hook", cases[i].hook);
		else
			assert_null_key(w, "launch_hook");
		phases = get(j, "phases");
		assert_num(phases, "launch-hook", 1.5);
		cJSON_Delete(j);
	}
	assert_string_equal(warm_path_name(WARM_RESUMED), "resumed");
	assert_string_equal(warm_path_name((enum warm_path)99), "unknown");
}

static void test_json_running_agent(void **state)
{
	struct runnerd_status st;
	const cJSON *agent, *phases, *it;
	const char *order[] = {"starting", "metadata", "credentials", "token", "running"};
	size_t i = 0;
	cJSON *j;

	new_status(&st, 1000);
	status_enter(&st, PHASE_METADATA, 1000);
	status_enter(&st, PHASE_CREDENTIALS, 1020);
	status_enter(&st, PHASE_TOKEN, 1030);
	status_enter(&st, PHASE_RUNNING, 1130);
	strcpy(st.instance_id, "i-0abc");
	strcpy(st.region, "us-east-1");
	strcpy(st.flavour, "circleci-runner");
	strcpy(st.lifecycle_state, "InService");
	strcpy(st.notice, "spot: terminate at 2024-01-01T06:02:00Z");
	st.agent_pid = 1234;
	st.agent_started_ms = 1704088800123ull;
	j = to_json(&st, 1704088810123ull);
	assert_str(j, "phase", "running");
	assert_str(j, "instance_id", "i-0abc");
	assert_str(j, "region", "us-east-1");
	assert_str(j, "lifecycle_state", "InService");
	assert_str(j, "notice", "spot: terminate at 2024-01-01T06:02:00Z");
	phases = get(j, "phases");
	/* Boot order, only visited phases; ms precision. */
	cJSON_ArrayForEach(it, phases)
	{
		assert_true(i < sizeof(order) / sizeof(order[0]));
		assert_string_equal(it->string, order[i++]);
	}
	assert_int_equal(i, 5);
	assert_num(phases, "starting", 0);
	assert_num(phases, "metadata", 0.02);
	assert_num(phases, "credentials", 0.01);
	assert_num(phases, "token", 0.1);
	agent = get(j, "agent");
	assert_str(agent, "flavour", "circleci-runner");
	assert_num(agent, "pid", 1234);
	assert_str(agent, "started", "2024-01-01T06:00:00.123Z");
	assert_num(agent, "uptime_seconds", 10);
	assert_null_key(agent, "exit_status");
	cJSON_Delete(j);

	/* Exited: status shown, uptime no longer counts. */
	st.agent_exit_status = 137;
	j = to_json(&st, 1704088820000ull);
	agent = get(j, "agent");
	assert_num(agent, "exit_status", 137);
	assert_num(agent, "pid", 1234);
	assert_null_key(agent, "uptime_seconds");
	cJSON_Delete(j);

	st.agent_exit_status = 0;
	j = to_json(&st, 1704088820000ull);
	assert_num(get(j, "agent"), "exit_status", 0);
	cJSON_Delete(j);
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t len, k;

		if (s[i] < 0x80)
			len = 1;
		else if (s[i] >= 0xc2 && s[i] <= 0xdf)
			len = 2;
		else if (s[i] >= 0xe0 && s[i] <= 0xef)
			len = 3;
		else if (s[i] >= 0xf0 && s[i] <= 0xf4)
			len = 4;
		else
			return false;
		if (i + len > n)
			return false;
		for (k = 1; k < len; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

static const struct {
	const char *in;
	const char *want;
} odd[] = {
        {"quote \" backslash \\ slash /", "quote \" backslash \\ slash /"},
        {"line\nbreak\r\ttab", "line\nbreak\r\ttab"},
        {"ctl \x01\x1f\x7f end", "ctl \x01\x1f\x7f end"},
        {"bad \xff\xfe utf8", "bad \xef\xbf\xbd\xef\xbf\xbd utf8"},
        {"truncated \xe2\x82", "truncated \xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate \xed\xa0\x80", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"euro \xe2\x82\xac ok", "euro \xe2\x82\xac ok"},
        {"{\"version\":2}", "{\"version\":2}"},
};

static void test_json_escaping(void **state)
{
	struct runnerd_status st;
	size_t i;

	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		struct buf b;
		cJSON *j;
		size_t k;

		new_status(&st, 1000);
		strcpy(st.last_error, odd[i].in);
		strcpy(st.notice, odd[i].in);
		buf_init(&b, 0);
		assert_int_equal(status_to_json(&st, 2000, &b), 0);
		assert_true(valid_utf8((const unsigned char *)b.data, b.len));
		for (k = 0; k < b.len; k++)
			assert_true((unsigned char)b.data[k] >= 0x20); /* controls are escaped */
		j = cJSON_ParseWithLength(b.data, b.len);
		buf_free(&b);
		assert_non_null(j);
		assert_str(j, "last_error", odd[i].want);
		assert_str(j, "notice", odd[i].want);
		assert_str(j, "phase", "starting"); /* nothing was injected */
		assert_num(j, "version", 1);
		cJSON_Delete(j);
	}
}

static void test_json_unterminated_fields(void **state)
{
	struct runnerd_status st;
	const cJSON *v;
	cJSON *j;

	/* A writer that filled a field to the brim without a NUL must not make us read past it. */
	new_status(&st, 1000);
	memset(st.last_error, 'e', sizeof(st.last_error));
	memset(st.instance_id, 'i', sizeof(st.instance_id));
	j = to_json(&st, 1000);
	v = get(j, "last_error");
	assert_true(cJSON_IsString(v));
	assert_int_equal(strlen(v->valuestring), sizeof(st.last_error));
	v = get(j, "instance_id");
	assert_int_equal(strlen(v->valuestring), sizeof(st.instance_id));
	cJSON_Delete(j);
}

static void test_json_bounded_output(void **state)
{
	struct runnerd_status st;
	struct buf b;

	new_status(&st, 1000);
	buf_init(&b, 16);
	assert_int_equal(status_to_json(&st, 2000, &b), -EFBIG);
	buf_free(&b);
	/* Appends to what the buffer holds. */
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "x"), 0);
	assert_int_equal(status_to_json(&st, 2000, &b), 0);
	assert_int_equal(b.data[0], 'x');
	assert_int_equal(b.data[1], '{');
	buf_free(&b);
}

static void test_json_clock_backwards(void **state)
{
	struct runnerd_status st;
	cJSON *j;

	new_status(&st, 5000);
	status_enter(&st, PHASE_METADATA, 6000);
	j = to_json(&st, 4000);
	assert_num(j, "phase_seconds", 0);
	assert_num(j, "uptime_seconds", 0);
	cJSON_Delete(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_phase_names),
	        cmocka_unit_test(test_enter_accounts_time),
	        cmocka_unit_test(test_enter_without_start_time),
	        cmocka_unit_test(test_json_fresh),
	        cmocka_unit_test(test_json_warm),
	        cmocka_unit_test(test_json_running_agent),
	        cmocka_unit_test(test_json_escaping),
	        cmocka_unit_test(test_json_unterminated_fields),
	        cmocka_unit_test(test_json_bounded_output),
	        cmocka_unit_test(test_json_clock_backwards),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
