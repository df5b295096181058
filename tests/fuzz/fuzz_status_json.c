/* runnerctl's status JSON, rendered from random field values (the string fields may hold any
 * bytes: they are filled from IMDS and error messages, and need not even be terminated).
 * Properties: the output is valid UTF-8 and parses back with cJSON; it has version 1, the phase
 * name, the agent object with pid and exit_status (null exactly while there is no status), and
 * last_error null exactly when there is none; a string field that was valid UTF-8 comes back
 * unchanged. */
#include <cjson/cJSON.h>
#include <errno.h>

#include "fuzz.h"
#include "status.h"

static void fill(struct fdp *f, char *field, size_t size)
{
	size_t n = fdp_u8(f) % (size + 1);

	memset(field, 0, size);
	for (size_t i = 0; i < n; i++)
		field[i] = (char)fdp_u8(f);
}

/* The JSON value for field: null when empty and nullable; else the same text when it was
 * valid UTF-8 up to its end (or its size). */
static void check_str(const cJSON *root, const char *key, const char *field, size_t size,
                      bool nullable)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	size_t n = strnlen(field, size);

	FUZZ_CHECK(v != NULL);
	if (nullable && n == 0) {
		FUZZ_CHECK(cJSON_IsNull(v));
		return;
	}
	FUZZ_CHECK(cJSON_IsString(v));
	if (fuzz_valid_utf8(field, n))
		FUZZ_CHECK(strlen(v->valuestring) == n && memcmp(v->valuestring, field, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fdp f = {data, size};
	struct runnerd_status st;
	const cJSON *agent, *v;
	cJSON *root;
	struct buf out;
	uint64_t now;
	int r;

	memset(&st, 0, sizeof(st));
	st.phase = (enum phase)(fdp_u8(&f) % (PHASE_COUNT + 2));
	st.phase_since_ms = fdp_u64(&f);
	st.started_ms = fdp_u64(&f);
	for (int i = 0; i < PHASE_COUNT; i++) {
		uint8_t how = fdp_u8(&f);

		st.phase_visited[i] = how & 1;
		st.phase_ms[i] = how & 2 ? fdp_u64(&f) : 0;
	}
	st.agent_pid = (pid_t)(int32_t)(fdp_u64(&f) & 0xffffffffu);
	st.agent_started_ms = fdp_u64(&f);
	st.agent_exit_status = (int)(int32_t)(fdp_u64(&f) & 0xffffffffu);
	now = fdp_u64(&f);
	fill(&f, st.instance_id, sizeof(st.instance_id));
	fill(&f, st.region, sizeof(st.region));
	fill(&f, st.flavour, sizeof(st.flavour));
	fill(&f, st.lifecycle_state, sizeof(st.lifecycle_state));
	fill(&f, st.notice, sizeof(st.notice));
	fill(&f, st.last_error, sizeof(st.last_error));

	buf_init(&out, 0);
	r = status_to_json(&st, now, &out);
	FUZZ_CHECK(r == 0 && out.data != NULL);
	FUZZ_CHECK(strlen(out.data) == out.len);
	FUZZ_CHECK(fuzz_valid_utf8(out.data, out.len));
	root = cJSON_ParseWithLength(out.data, out.len);
	FUZZ_CHECK(cJSON_IsObject(root));

	v = cJSON_GetObjectItemCaseSensitive(root, "version");
	FUZZ_CHECK(cJSON_IsNumber(v) && v->valuedouble == 1);
	v = cJSON_GetObjectItemCaseSensitive(root, "phase");
	FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, phase_name(st.phase)) == 0);
	FUZZ_CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "phases")));
	check_str(root, "instance_id", st.instance_id, sizeof(st.instance_id), false);
	check_str(root, "region", st.region, sizeof(st.region), false);
	check_str(root, "lifecycle_state", st.lifecycle_state, sizeof(st.lifecycle_state), false);
	check_str(root, "notice", st.notice, sizeof(st.notice), true);
	check_str(root, "last_error", st.last_error, sizeof(st.last_error), true);

	agent = cJSON_GetObjectItemCaseSensitive(root, "agent");
	FUZZ_CHECK(cJSON_IsObject(agent));
	check_str(agent, "flavour", st.flavour, sizeof(st.flavour), false);
	v = cJSON_GetObjectItemCaseSensitive(agent, "pid");
	FUZZ_CHECK(st.agent_pid > 0 ? cJSON_IsNumber(v) && v->valuedouble == st.agent_pid
	                            : cJSON_IsNull(v));
	v = cJSON_GetObjectItemCaseSensitive(agent, "exit_status");
	FUZZ_CHECK(st.agent_exit_status >= 0
	                   ? cJSON_IsNumber(v) && v->valuedouble == st.agent_exit_status
	                   : cJSON_IsNull(v));

	cJSON_Delete(root);
	buf_free(&out);
	return 0;
}
