/* agent/: YAML rendering (parsed back with libyaml), names, durations, argv/env, atomic files,
 * SHA-256 and the download path against a loopback HTTP server thread. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "agent.h"
#include "http.h"
#include "loopback_server.h"
#include "tar_builder.h"
#include "util.h"

/* ---- a tiny YAML loader: flattens the document into "section.key" / "key[i]" -> scalar ---- */

#define MAP_MAX 32

struct kv {
	char key[64];
	char *value;
	size_t len;
	yaml_scalar_style_t style;
	char tag[64];
};

struct kvmap {
	struct kv items[MAP_MAX];
	size_t n;
};

static void kvmap_free(struct kvmap *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		free(m->items[i].value);
	m->n = 0;
}

static const struct kv *kvmap_get(const struct kvmap *m, const char *key)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (strcmp(m->items[i].key, key) == 0)
			return &m->items[i];
	return NULL;
}

/* Returns 0, or -1 on anything but a clean tree of mappings / flow sequences of scalars, or on
 * duplicate keys. */
static int kvmap_add(struct kvmap *m, const char *key, yaml_node_t *node)
{
	struct kv *e;

	if (node->type != YAML_SCALAR_NODE || m->n == MAP_MAX || kvmap_get(m, key))
		return -1;
	e = &m->items[m->n];
	if (str_copy(e->key, key, sizeof(e->key)) >= sizeof(e->key))
		return -1;
	e->len = node->data.scalar.length;
	e->value = malloc(e->len + 1);
	if (!e->value)
		return -1;
	memcpy(e->value, node->data.scalar.value, e->len);
	e->value[e->len] = '\0';
	e->style = node->data.scalar.style;
	str_copy(e->tag, node->tag ? (const char *)node->tag : "", sizeof(e->tag));
	m->n++;
	return 0;
}

static int walk(yaml_document_t *doc, yaml_node_t *node, const char *prefix, struct kvmap *m,
                int depth)
{
	yaml_node_pair_t *pair;
	yaml_node_item_t *item;
	yaml_node_t *k, *v;
	char key[64];
	int i = 0;

	if (depth > 2 || node->type != YAML_MAPPING_NODE)
		return -1;
	for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
		k = yaml_document_get_node(doc, pair->key);
		v = yaml_document_get_node(doc, pair->value);
		/* Keys are always plain: a quoted key would mean a value leaked into key position.
		 */
		if (!k || !v || k->type != YAML_SCALAR_NODE ||
		    k->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			return -1;
		snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "",
		         (const char *)k->data.scalar.value);
		if (v->type == YAML_MAPPING_NODE) {
			if (walk(doc, v, key, m, depth + 1) < 0)
				return -1;
		} else if (v->type == YAML_SEQUENCE_NODE) {
			i = 0;
			for (item = v->data.sequence.items.start; item < v->data.sequence.items.top;
			     item++) {
				char ik[80];

				snprintf(ik, sizeof(ik), "%s[%d]", key, i++);
				if (kvmap_add(m, ik, yaml_document_get_node(doc, *item)) < 0)
					return -1;
			}
		} else if (kvmap_add(m, key, v) < 0) {
			return -1;
		}
	}
	return 0;
}

/* Load exactly one YAML document from text into m. */
static int yaml_load(const char *text, size_t len, struct kvmap *m)
{
	yaml_parser_t parser;
	yaml_document_t doc, doc2;
	yaml_node_t *root;
	int r = -1;

	m->n = 0;
	if (!yaml_parser_initialize(&parser))
		return -1;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc))
		goto out_parser;
	root = yaml_document_get_root_node(&doc);
	if (root && walk(&doc, root, "", m, 0) == 0) {
		/* A second document would be a "---" that escaped its quotes. */
		if (yaml_parser_load(&parser, &doc2)) {
			if (!yaml_document_get_root_node(&doc2))
				r = 0;
			yaml_document_delete(&doc2);
		}
	}
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
	if (r < 0)
		kvmap_free(m);
	return r;
}

/* ---- rendering ---- */

static const struct agent_settings base_settings = {
        .flavour = AGENT_CIRCLECI_RUNNER,
        .api_url = "",
        .name = "ip-10-0-0-1-i-0abc",
        .user = "circleci",
        .working_directory = "/var/lib/circleci-runner/workdir",
        .cleanup_working_directory = true,
        .mode = "single-task",
        .idle_timeout_ms = 60000,
        .max_run_time_ms = 5 * 3600000ull,
        .task_agent_directory = "/var/lib/circleci-runner/task-agent",
};

static void expect_str(const struct kvmap *m, const char *key, const char *want)
{
	const struct kv *e = kvmap_get(m, key);

	if (!e)
		fail_msg("key %s missing", key);
	assert_int_equal(e->len, strlen(want));
	assert_memory_equal(e->value, want, e->len);
	assert_int_equal(e->style, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
	assert_string_equal(e->tag, YAML_STR_TAG);
}

static void expect_plain(const struct kvmap *m, const char *key, const char *want)
{
	const struct kv *e = kvmap_get(m, key);

	if (!e)
		fail_msg("key %s missing", key);
	assert_string_equal(e->value, want);
	assert_int_equal(e->style, YAML_PLAIN_SCALAR_STYLE);
}

/* Render s+token, parse it back, check every key and value, and that no other key exists. */
static void check_roundtrip(const struct agent_settings *s, const char *token)
{
	struct buf out;
	struct kvmap m;
	char wd[8192], dur[64];
	size_t want = 0, wlen;

	buf_init(&out, 0);
	assert_int_equal(agent_render_config(s, token, &out), 0);
	assert_non_null(out.data);
	assert_int_equal(strlen(out.data), out.len);
	if (yaml_load(out.data, out.len, &m) < 0)
		fail_msg("rendered YAML does not load back:\n%s", out.data);

	expect_str(&m, "api.auth_token", token);
	want++;
	if (s->api_url && s->api_url[0]) {
		expect_str(&m, "api.url", s->api_url);
		want++;
	}
	expect_str(&m, "runner.name", s->name);
	expect_str(&m, "runner.mode", s->mode);
	want += 2;
	if (s->idle_timeout_ms) {
		agent_format_go_duration(s->idle_timeout_ms, dur, sizeof(dur));
		expect_str(&m, "runner.idle_timeout", dur);
		want++;
	}
	agent_format_go_duration(s->max_run_time_ms, dur, sizeof(dur));
	expect_str(&m, "runner.max_run_time", dur);
	want++;
	/* Computed independently of agent_working_directory(). */
	wlen = strlen(s->working_directory);
	if (s->flavour == AGENT_LAUNCH_AGENT && !strstr(s->working_directory, "%s"))
		snprintf(wd, sizeof(wd), "%s%s", s->working_directory,
		         s->working_directory[wlen - 1] == '/' ? "%s" : "/%s");
	else
		snprintf(wd, sizeof(wd), "%s", s->working_directory);
	expect_str(&m, "runner.working_directory", wd);
	want++;
	expect_plain(&m, "runner.cleanup_working_directory",
	             s->cleanup_working_directory ? "true" : "false");
	want++;
	expect_str(&m, "runner.command_prefix[0]", "sudo");
	expect_str(&m, "runner.command_prefix[1]", "-niHu");
	expect_str(&m, "runner.command_prefix[2]", s->user);
	expect_str(&m, "runner.command_prefix[3]", "--");
	want += 4;
	if (s->flavour == AGENT_CIRCLECI_RUNNER) {
		expect_str(&m, "runner.task_agent_directory", s->task_agent_directory);
		expect_str(&m, "logging.file", "-");
		expect_str(&m, "logging.format", "text");
		want += 3;
	} else {
		expect_plain(&m, "runner.disable_auto_update", "true");
		want++;
	}
	if (s->ssh_advertise_addr && s->ssh_advertise_addr[0]) {
		expect_str(&m, "runner.ssh.advertise_addr", s->ssh_advertise_addr);
		want++;
	}
	if (s->log_level && s->log_level[0] && s->flavour == AGENT_CIRCLECI_RUNNER) {
		expect_str(&m, "logging.level", s->log_level);
		want++;
	} else {
		assert_null(kvmap_get(&m, "logging.level")); /* the launch-agent has none */
	}
	if (m.n != want) {
		size_t i;

		for (i = 0; i < m.n; i++)
			print_message("key: %s\n", m.items[i].key);
		fail_msg("%zu keys, expected %zu:\n%s", m.n, want, out.data);
	}
	kvmap_free(&m);
	buf_wipe(&out);
}

static void test_render_circleci_runner(void **state)
{
	struct agent_settings s = base_settings;
	struct buf out;

	check_roundtrip(&s, "tok-123");
	buf_init(&out, 0);
	assert_int_equal(agent_render_config(&s, "tok-123", &out), 0);
	/* The exact text, once, so a reader sees what the agent gets. */
	assert_string_equal(out.data,
	                    "# Written by runnerd at boot; changes are overwritten.\n"
	                    "api:\n"
	                    "  auth_token: \"tok-123\"\n"
	                    "runner:\n"
	                    "  name: \"ip-10-0-0-1-i-0abc\"\n"
	                    "  mode: \"single-task\"\n"
	                    "  idle_timeout: \"1m\"\n"
	                    "  max_run_time: \"5h\"\n"
	                    "  working_directory: \"/var/lib/circleci-runner/workdir\"\n"
	                    "  cleanup_working_directory: true\n"
	                    "  command_prefix: [\"sudo\", \"-niHu\", \"circleci\", \"--\"]\n"
	                    "  task_agent_directory: \"/var/lib/circleci-runner/task-agent\"\n"
	                    "logging:\n"
	                    "  file: \"-\"\n"
	                    "  format: \"text\"\n");
	buf_wipe(&out);
}

static void test_render_launch_agent(void **state)
{
	struct agent_settings s = base_settings;
	struct buf out;
	struct kvmap m;

	s.flavour = AGENT_LAUNCH_AGENT;
	s.api_url = "https://circleci.example.com";
	s.cleanup_working_directory = false;
	s.mode = "continuous";
	s.max_run_time_ms = 5 * 3600000ull + 15 * 60000;
	check_roundtrip(&s, "tok");

	buf_init(&out, 0);
	assert_int_equal(agent_render_config(&s, "tok", &out), 0);
	assert_int_equal(yaml_load(out.data, out.len, &m), 0);
	expect_str(&m, "runner.working_directory", "/var/lib/circleci-runner/workdir/%s");
	expect_str(&m, "runner.max_run_time", "5h15m");
	expect_str(&m, "api.url", "https://circleci.example.com");
	expect_plain(&m, "runner.cleanup_working_directory", "false");
	assert_null(kvmap_get(&m, "logging.file"));
	kvmap_free(&m);
	buf_wipe(&out);

	/* Already holding %s: as is. Trailing slash: no "//". */
	s.working_directory = "/w/%s/x";
	check_roundtrip(&s, "tok");
	s.working_directory = "/w/";
	check_roundtrip(&s, "tok");
	/* The launch-agent needs no task agent directory, and gets the SSH key too; never a
	 * logging.level, which it does not have. */
	s.task_agent_directory = NULL;
	s.ssh_advertise_addr = "10.0.3.17:54782";
	s.log_level = "debug";
	check_roundtrip(&s, "tok");
}

static void test_render_ssh_and_level(void **state)
{
	struct agent_settings s = base_settings;

	s.ssh_advertise_addr = "10.0.3.17:54782";
	s.log_level = "warn";
	check_roundtrip(&s, "tok");
	/* Machine runner 3 without a task agent directory: refused (it would use /root). */
	{
		struct buf out;

		buf_init(&out, 0);
		s.task_agent_directory = NULL;
		assert_int_equal(agent_render_config(&s, "tok", &out), -EINVAL);
		s.task_agent_directory = "relative/dir";
		assert_int_equal(agent_render_config(&s, "tok", &out), -EINVAL);
		assert_int_equal(out.len, 0);
		buf_free(&out);
	}
}

static void test_render_optional_keys(void **state)
{
	struct agent_settings s = base_settings;
	int f;

	for (f = 0; f < 2; f++) {
		s.flavour = f ? AGENT_LAUNCH_AGENT : AGENT_CIRCLECI_RUNNER;
		s.api_url = NULL;
		s.idle_timeout_ms = 0;
		check_roundtrip(&s, "t"); /* counts keys: neither url nor idle_timeout */
		s.api_url = "http://127.0.0.1:8080";
		s.idle_timeout_ms = 90000;
		check_roundtrip(&s, "t");
	}
}

static char long_string[4097];

static const char *const hostile[] = {
        "\"",
        "'",
        "a\"b'c",
        "# comment",
        "x # y",
        "key: value",
        ": ",
        "\n",
        "x\napi:\n  auth_token: evil",
        "x\"\napi:\n  auth_token: \"evil",
        "line1\r\nline2",
        "\r",
        "- x",
        "-",
        "{a: b}",
        "[1, 2]",
        "&anchor *alias",
        "*alias",
        "!!tag",
        "!!binary aGVsbG8=",
        "%YAML 1.2",
        "---",
        "...",
        "x\n---\ny: z",
        "  leading",
        "trailing  ",
        " ",
        "\t",
        "a\tb",
        "\\",
        "\\\"",
        "C:\\path\\n",
        "\\x41\\u0041",
        "null",
        "~",
        "true",
        "0x1F",
        "1e3",
        "<< AUTH_TOKEN >>",
        "|\n  block",
        ">\n  folded",
        "@`",
        "\x01\x02\x1b[31m\x7f",
        "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80",
        "nel\xc2\x85ls\xe2\x80\xa8ps\xe2\x80\xa9"
        "bom\xef\xbb\xbf c1\xc2\x9b nbsp\xc2\xa0",
        "\xef\xbf\xbe\xef\xbf\xbf",
        long_string,
};

static void fill_long_string(void)
{
	size_t i;

	/* Every printable ASCII character and the awkward ones, cycled over 4 KiB. */
	for (i = 0; i < sizeof(long_string) - 1; i++)
		long_string[i] = i % 7 == 0 ? "\"\\\n:#\t'"[i / 7 % 7] : (char)(32 + i % 95);
	long_string[sizeof(long_string) - 1] = '\0';
}

static void test_render_hostile(void **state)
{
	struct agent_settings s;
	size_t i;
	int f;

	fill_long_string();
	for (f = 0; f < 2; f++) {
		for (i = 0; i < ARRAY_SIZE(hostile); i++) {
			s = base_settings;
			s.flavour = f ? AGENT_LAUNCH_AGENT : AGENT_CIRCLECI_RUNNER;
			/* The hostile value in the token, the name, or everywhere at once. */
			check_roundtrip(&s, hostile[i]);
			s.name = hostile[i];
			check_roundtrip(&s, "real-token");
			s.api_url = hostile[i];
			s.user = hostile[i];
			s.mode = hostile[i];
			if (strlen(hostile[i]) < 1024)
				s.working_directory = hostile[i];
			check_roundtrip(&s, hostile[i]);
		}
	}
}

static void test_render_all_ascii(void **state)
{
	struct agent_settings s = base_settings;
	char all[128];
	int c, f;

	for (c = 1; c < 128; c++)
		all[c - 1] = (char)c;
	all[127] = '\0';
	for (f = 0; f < 2; f++) {
		s.flavour = f ? AGENT_LAUNCH_AGENT : AGENT_CIRCLECI_RUNNER;
		s.name = all;
		check_roundtrip(&s, all);
	}
}

static void test_render_injection_does_not_change_token(void **state)
{
	struct agent_settings s = base_settings;
	struct buf out;
	struct kvmap m;

	s.name = "x\napi:\n  auth_token: evil\n  url: \"http://evil\"";
	buf_init(&out, 0);
	assert_int_equal(agent_render_config(&s, "good", &out), 0);
	assert_int_equal(yaml_load(out.data, out.len, &m), 0);
	expect_str(&m, "api.auth_token", "good");
	assert_null(kvmap_get(&m, "api.url"));
	expect_str(&m, "runner.name", s.name);
	/* The rendered text has one line per key: no raw newline escaped the quotes. */
	assert_null(strstr(out.data, "\napi:\n  auth_token: evil"));
	kvmap_free(&m);
	buf_wipe(&out);
}

static void test_render_invalid_utf8(void **state)
{
	static const char *const bad[] = {
	        "\xff",
	        "a\x80",
	        "\xc0\x80",
	        "\xc1\xbf",
	        "\xe0\x80\x80",
	        "\xed\xa0\x80",
	        "\xed\xbf\xbf",
	        "\xf4\x90\x80\x80",
	        "\xf8\x88\x80\x80",
	        "\xe2\x82",
	        "\xe2\x82x",
	        "\xf0\x9f\x9a",
	        "ok\xfe",
	};
	struct agent_settings s = base_settings;
	struct buf out;
	size_t i;

	buf_init(&out, 0);
	assert_int_equal(buf_append_str(&out, "prefix"), 0);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		s = base_settings;
		assert_int_equal(agent_render_config(&s, bad[i], &out), -EINVAL);
		s.name = bad[i];
		assert_int_equal(agent_render_config(&s, "tok", &out), -EINVAL);
		s = base_settings;
		s.user = bad[i];
		assert_int_equal(agent_render_config(&s, "tok", &out), -EINVAL);
		/* out is left as it was. */
		assert_int_equal(out.len, 6);
		assert_string_equal(out.data, "prefix");
	}
	buf_wipe(&out);
}

static void test_render_bad_args(void **state)
{
	struct agent_settings s = base_settings;
	struct buf out;

	buf_init(&out, 0);
	assert_int_equal(agent_render_config(&s, NULL, &out), -EINVAL);
	assert_int_equal(agent_render_config(&s, "", &out), -EINVAL);
	s.user = "";
	assert_int_equal(agent_render_config(&s, "t", &out), -EINVAL);
	s.user = NULL;
	assert_int_equal(agent_render_config(&s, "t", &out), -EINVAL);
	s = base_settings;
	s.name = NULL;
	assert_int_equal(agent_render_config(&s, "t", &out), -EINVAL);
	s = base_settings;
	s.mode = NULL;
	assert_int_equal(agent_render_config(&s, "t", &out), -EINVAL);
	s = base_settings;
	s.working_directory = "";
	assert_int_equal(agent_render_config(&s, "t", &out), -EINVAL);
	s = base_settings;
	s.flavour = (enum agent_flavour)7;
	assert_int_equal(agent_render_config(&s, "t", &out), -EINVAL);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

static void test_render_limits(void **state)
{
	struct agent_settings s = base_settings;
	struct buf out;
	char *wd;

	/* A buffer limit that cuts the token in half: -EFBIG, out as before, token gone. */
	buf_init(&out, 64);
	assert_int_equal(agent_render_config(&s, "secret-secret-secret-secret-secret", &out),
	                 -EFBIG);
	assert_int_equal(out.len, 0);
	assert_null(memmem(out.data, out.cap, "secret", 6));
	buf_free(&out);

	wd = malloc(5000);
	assert_non_null(wd);
	memset(wd, 'a', 4999);
	wd[4999] = '\0';
	s.working_directory = wd;
	buf_init(&out, 0);
	assert_int_equal(agent_render_config(&s, "t", &out), -ENAMETOOLONG);
	buf_free(&out);
	free(wd);
}

/* ---- working directory, names, durations ---- */

static void test_working_directory(void **state)
{
	static const struct {
		enum agent_flavour f;
		const char *in, *want;
	} t[] = {
	        {AGENT_CIRCLECI_RUNNER, "/var/lib/w", "/var/lib/w"},
	        {AGENT_CIRCLECI_RUNNER, "/var/lib/w/%s", "/var/lib/w/%s"},
	        {AGENT_LAUNCH_AGENT, "/opt/circleci/workdir", "/opt/circleci/workdir/%s"},
	        {AGENT_LAUNCH_AGENT, "/opt/circleci/workdir/", "/opt/circleci/workdir/%s"},
	        {AGENT_LAUNCH_AGENT, "/opt/%s/x", "/opt/%s/x"},
	        {AGENT_LAUNCH_AGENT, "/", "/%s"},
	};
	struct agent_settings s = base_settings;
	char out[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		s.flavour = t[i].f;
		s.working_directory = t[i].in;
		assert_int_equal(agent_working_directory(&s, out, sizeof(out)), 0);
		assert_string_equal(out, t[i].want);
	}
	s.flavour = AGENT_LAUNCH_AGENT;
	s.working_directory = "/abcd";
	assert_int_equal(agent_working_directory(&s, out, 9), 0); /* "/abcd/%s" + NUL */
	assert_string_equal(out, "/abcd/%s");
	assert_int_equal(agent_working_directory(&s, out, 8), -ENAMETOOLONG);
	s.working_directory = NULL;
	assert_int_equal(agent_working_directory(&s, out, sizeof(out)), -EINVAL);
}

static void test_expand_name(void **state)
{
	static const struct {
		const char *pattern, *host, *iid;
		size_t n;
		int rc;
		const char *want;
	} t[] = {
	        {"%H-%i", "ip-10-0-0-1.ec2.internal", "i-0abc", 64, 0, "ip-10-0-0-1-i-0abc"},
	        {"%i", "h", "i-0123456789abcdef0", 64, 0, "i-0123456789abcdef0"},
	        {"%H", "plainhost", "i", 64, 0, "plainhost"},
	        {"runner-%%-%i", "h", "i-1", 64, 0, "runner---i-1"},
	        {"%%", "h", "i", 64, 0, "-"},
	        {"a b/c:d", "h", "i", 64, 0, "a-b-c-d"},
	        {"ok.()_-AZaz09", "h", "i", 64, 0, "ok.()_-AZaz09"},
	        {"caf\xc3\xa9-%H", "h\xc3\xb6st.x", "i", 64, 0, "caf--h-st"},
	        {"\xf0\x9f\x9a\x80\xe2\x82\xac", "h", "i", 64, 0, "--"},
	        {"\xff\xfe", "h", "i", 64, 0, "--"},
	        {"a\nb\"c'd#e", "h", "i", 64, 0, "a-b-c-d-e"},
	        {"%x", "h", "i", 64, -EINVAL, ""},
	        {"abc%", "h", "i", 64, -EINVAL, ""},
	        {"%H", ".leadingdot", "i", 64, -EINVAL, ""},
	        {"%H", NULL, "i", 64, -EINVAL, ""},
	        {"%i", "h", NULL, 64, -EINVAL, ""},
	        {"%i", "h", "", 64, -EINVAL, ""},
	        {"", "h", "i", 64, -EINVAL, ""},
	        {"abcd", "h", "i", 5, 0, "abcd"},
	        {"abcde", "h", "i", 5, -ENAMETOOLONG, ""},
	        {"%H-%i", "hostname", "i-0abc", 10, -ENAMETOOLONG, ""},
	        {"%H-%i", "hostname", "i-0abc", 16, 0, "hostname-i-0abc"},
	        {"%H-%i", "hostname", "i-0abc", 15, -ENAMETOOLONG, ""},
	};
	char out[64];
	size_t i;
	int rc;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		memset(out, 'Z', sizeof(out));
		rc = agent_expand_name(t[i].pattern, t[i].host, t[i].iid, out, t[i].n);
		if (rc != t[i].rc)
			fail_msg("case %zu (%s): rc %d, want %d", i, t[i].pattern, rc, t[i].rc);
		assert_string_equal(out, t[i].want);
	}
	assert_int_equal(agent_expand_name("x", "h", "i", out, 0), -EINVAL);
}

static void test_go_duration(void **state)
{
	static const struct {
		uint64_t ms;
		const char *want;
	} t[] = {
	        {0, "0s"},
	        {1, "1ms"},
	        {500, "500ms"},
	        {1000, "1s"},
	        {1500, "1s500ms"},
	        {60000, "1m"},
	        {90000, "1m30s"},
	        {3600000, "1h"},
	        {5 * 3600000ull, "5h"},
	        {5 * 3600000ull + 15 * 60000, "5h15m"},
	        {3600000 + 1, "1h1ms"},
	        {72 * 3600000ull + 20000, "72h20s"},
	        {3723004, "1h2m3s4ms"},
	};
	char out[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		agent_format_go_duration(t[i].ms, out, sizeof(out));
		assert_string_equal(out, t[i].want);
	}
	/* Bounded: truncates, stays terminated. */
	agent_format_go_duration(3723004, out, 4);
	assert_string_equal(out, "1h2");
	agent_format_go_duration(3723004, out, 1);
	assert_string_equal(out, "");
	agent_format_go_duration(UINT64_MAX, out, sizeof(out));
	assert_true(strlen(out) > 0 && strlen(out) < sizeof(out) - 1);
}

/* ---- argv and environment ---- */

static void test_argv(void **state)
{
	const char *argv[6];

	memset(argv, 0x5a, sizeof(argv));
	agent_argv(AGENT_CIRCLECI_RUNNER, "/usr/bin/circleci-runner", "/etc/c.yaml", argv);
	assert_string_equal(argv[0], "/usr/bin/circleci-runner");
	assert_string_equal(argv[1], "machine");
	assert_string_equal(argv[2], "-c");
	assert_string_equal(argv[3], "/etc/c.yaml");
	assert_null(argv[4]);
	assert_null(argv[5]);

	memset(argv, 0x5a, sizeof(argv));
	agent_argv(AGENT_LAUNCH_AGENT, "/opt/circleci/circleci-launch-agent", "/etc/l.yaml", argv);
	assert_string_equal(argv[0], "/opt/circleci/circleci-launch-agent");
	assert_string_equal(argv[1], "--config");
	assert_string_equal(argv[2], "/etc/l.yaml");
	assert_null(argv[3]);
	assert_null(argv[4]);
	assert_null(argv[5]);
}

static const char *env_get(char **envp, const char *name)
{
	size_t len = strlen(name);

	for (; *envp; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

static void test_child_env(void **state)
{
	char *parent[] = {
	        "AWS_ACCESS_KEY_ID=AKIA",
	        "AWS_SECRET_ACCESS_KEY=sekrit",
	        "AWS_SESSION_TOKEN=sess",
	        "AWS_REGION=us-east-1",
	        "CIRCLECI_RUNNER_API_AUTH_TOKEN=tok1",
	        "LAUNCH_AGENT_API_AUTH_TOKEN=tok2",
	        "MY_TOKEN=x",
	        "SOME_SECRET=y",
	        "PATHX=no",
	        "PATH=/usr/bin:/bin",
	        "PATH=/second",
	        "HOME=/home/evil",
	        "LANG=de_DE.UTF-8",
	        "TZ=UTC",
	        "https_proxy=http://proxy:3128",
	        "NO_PROXY=169.254.169.254",
	        "LD_PRELOAD=/evil.so",
	        "NOEQUALS",
	        NULL,
	};
	char storage[512], *envp[16];
	size_t i, n;

	assert_int_equal(agent_child_env(parent, storage, sizeof(storage), envp, 16), 0);
	for (n = 0; envp[n]; n++) {
		assert_true(envp[n] >= storage && envp[n] < storage + sizeof(storage));
		assert_null(strstr(envp[n], "TOKEN"));
		assert_null(strstr(envp[n], "SECRET"));
		assert_null(strstr(envp[n], "AWS_"));
		assert_null(strstr(envp[n], "sekrit"));
		assert_null(strstr(envp[n], "tok"));
	}
	assert_int_equal(n, 6);
	assert_string_equal(env_get(envp, "PATH"), "/usr/bin:/bin");
	assert_string_equal(env_get(envp, "HOME"), "/root");
	assert_string_equal(env_get(envp, "LANG"), "C.UTF-8");
	assert_string_equal(env_get(envp, "TZ"), "UTC");
	assert_string_equal(env_get(envp, "https_proxy"), "http://proxy:3128");
	assert_string_equal(env_get(envp, "NO_PROXY"), "169.254.169.254");
	assert_null(env_get(envp, "LD_PRELOAD"));
	assert_null(env_get(envp, "PATHX"));
	for (i = 0; i < n; i++)
		assert_null(strstr(envp[i], "NOEQUALS"));

	/* No parent environment at all: a default PATH still. */
	assert_int_equal(agent_child_env(NULL, storage, sizeof(storage), envp, 16), 0);
	assert_non_null(env_get(envp, "PATH"));
	assert_non_null(strstr(env_get(envp, "PATH"), "/usr/bin"));
	assert_null(envp[3]);

	/* Too small: storage, then envp (3 fixed entries + NULL need 4 slots). */
	assert_int_equal(agent_child_env(parent, storage, 30, envp, 16), -E2BIG);
	assert_null(envp[0]);
	assert_int_equal(agent_child_env(parent, storage, sizeof(storage), envp, 4), -E2BIG);
	assert_null(envp[0]);
	assert_int_equal(agent_child_env(parent, storage, sizeof(storage), envp, 0), -E2BIG);
	assert_int_equal(agent_child_env(NULL, storage, sizeof(storage), envp, 4), 0);
	assert_null(envp[3]);
}

/* ---- files ---- */

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static int setup_tmpdir(void **state)
{
	strcpy(tmpdir, "/tmp/test_agent.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
	umask(022);
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t dir_count(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void read_file(const char *path, char *out, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	assert_true(fd >= 0);
	r = read(fd, out, n - 1);
	assert_true(r >= 0);
	out[r] = '\0';
	close(fd);
}

static void test_write_atomic_basic(void **state)
{
	char path[128], got[64];
	struct stat st;
	mode_t masks[] = {0, 022, 0777};
	size_t i;

	snprintf(path, sizeof(path), "%s/c.yaml", tmpdir);
	for (i = 0; i < ARRAY_SIZE(masks); i++) {
		umask(masks[i]);
		assert_int_equal(agent_write_file_atomic(path, "hello\n", 6, (uid_t)-1, (gid_t)-1),
		                 0);
		read_file(path, got, sizeof(got));
		assert_string_equal(got, "hello\n");
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_int_equal(st.st_uid, getuid());
		assert_int_equal(dir_count(tmpdir), 1);
	}
	umask(022);

	/* Replacing a world-readable file: new content, and 0600 again. */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(agent_write_file_atomic(path, "x", 1, (uid_t)-1, (gid_t)-1), 0);
	read_file(path, got, sizeof(got));
	assert_string_equal(got, "x");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 1);

	/* Empty content is a valid file. */
	assert_int_equal(agent_write_file_atomic(path, "", 0, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
}

static void test_write_atomic_parents(void **state)
{
	char path[128], dir[128], got[16];
	struct stat st;

	umask(077);
	snprintf(path, sizeof(path), "%s/a/b/c/config.yaml", tmpdir);
	assert_int_equal(agent_write_file_atomic(path, "abc", 3, (uid_t)-1, (gid_t)-1), 0);
	read_file(path, got, sizeof(got));
	assert_string_equal(got, "abc");
	snprintf(dir, sizeof(dir), "%s/a", tmpdir);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755);
	snprintf(dir, sizeof(dir), "%s/a/b/c", tmpdir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(dir_count(dir), 1);

	/* An existing parent keeps its mode. */
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(agent_write_file_atomic(path, "d", 1, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	umask(022);
}

static void test_write_atomic_errors(void **state)
{
	char path[160], file[128];
	struct rlimit old, lim;
	void (*old_handler)(int);

	/* Rename fails (destination is a directory): error, no temp left. */
	snprintf(path, sizeof(path), "%s/isdir", tmpdir);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(agent_write_file_atomic(path, "x", 1, (uid_t)-1, (gid_t)-1), -EISDIR);
	assert_int_equal(dir_count(tmpdir), 1);

	/* A parent that is a regular file. */
	snprintf(file, sizeof(file), "%s/plain", tmpdir);
	assert_int_equal(agent_write_file_atomic(file, "x", 1, (uid_t)-1, (gid_t)-1), 0);
	snprintf(path, sizeof(path), "%s/sub/f", file);
	assert_int_equal(agent_write_file_atomic(path, "x", 1, (uid_t)-1, (gid_t)-1), -ENOTDIR);

	/* The write itself fails (file size limit): error, no temp left. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	snprintf(path, sizeof(path), "%s/big", tmpdir);
	assert_int_equal(agent_write_file_atomic(path, "0123456789", 10, (uid_t)-1, (gid_t)-1),
	                 -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_int_equal(dir_count(tmpdir), 2); /* isdir, plain */

	assert_int_equal(agent_write_file_atomic("", "x", 1, (uid_t)-1, (gid_t)-1), -EINVAL);
	snprintf(path, sizeof(path), "%s/", tmpdir);
	assert_int_equal(agent_write_file_atomic(path, "x", 1, (uid_t)-1, (gid_t)-1), -EINVAL);
	snprintf(path, sizeof(path), "%s/..", tmpdir);
	assert_int_equal(agent_write_file_atomic(path, "x", 1, (uid_t)-1, (gid_t)-1), -EINVAL);
	assert_int_equal(dir_count(tmpdir), 2);
}

static void test_write_atomic_chown(void **state)
{
	char path[128];
	struct stat st;

	if (geteuid() != 0)
		skip();
	snprintf(path, sizeof(path), "%s/owned", tmpdir);
	assert_int_equal(agent_write_file_atomic(path, "t", 1, 65534, 65534), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* gid only. */
	assert_int_equal(agent_write_file_atomic(path, "t", 1, (uid_t)-1, 65534), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, 65534);
}

/* ---- SHA-256 ---- */

static void sha256_of(const char *s, unsigned char d[32])
{
	unsigned int len = 0;

	assert_int_equal(EVP_Digest(s, strlen(s), d, &len, EVP_sha256(), NULL), 1);
	assert_int_equal(len, 32);
}

static void test_sha256_matches(void **state)
{
	static const struct {
		const char *msg, *hex;
	} v[] = {
	        /* FIPS 180-2 / NIST example vectors. */
	        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	unsigned char d[32];
	char hex[80];
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(v); i++) {
		sha256_of(v[i].msg, d);
		assert_true(agent_sha256_matches(d, v[i].hex));
		/* Case-insensitive. */
		for (k = 0; v[i].hex[k]; k++)
			hex[k] = (char)(v[i].hex[k] >= 'a' ? v[i].hex[k] - 32 : v[i].hex[k]);
		hex[k] = '\0';
		assert_true(agent_sha256_matches(d, hex));
		/* Last nibble off by one. */
		strcpy(hex, v[i].hex);
		hex[63] = hex[63] == '0' ? '1' : '0';
		assert_false(agent_sha256_matches(d, hex));
		/* First nibble. */
		strcpy(hex, v[i].hex);
		hex[0] = hex[0] == 'f' ? 'e' : 'f';
		assert_false(agent_sha256_matches(d, hex));
		/* Truncated, too long, not hex, with whitespace. */
		strcpy(hex, v[i].hex);
		hex[62] = '\0';
		assert_false(agent_sha256_matches(d, hex));
		snprintf(hex, sizeof(hex), "%s0", v[i].hex);
		assert_false(agent_sha256_matches(d, hex));
		snprintf(hex, sizeof(hex), "%s\n", v[i].hex);
		assert_false(agent_sha256_matches(d, hex));
		snprintf(hex, sizeof(hex), " %.63s", v[i].hex);
		assert_false(agent_sha256_matches(d, hex));
		strcpy(hex, v[i].hex);
		hex[10] = 'g';
		assert_false(agent_sha256_matches(d, hex));
	}
	assert_false(agent_sha256_matches(d, ""));
	assert_false(agent_sha256_matches(d, NULL));
}

/* ---- download, against a one-shot loopback HTTP server thread ---- */

struct server {
	int fd;
	int port;
	pthread_t thread;
	const char *response; /* full HTTP response text */
	size_t response_len;
};

static void *server_main(void *arg)
{
	struct server *sv = arg;
	char req[4096];
	size_t got = 0;
	ssize_t r, off = 0;
	int c;

	c = accept4(sv->fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	/* Read the request head, then answer and close. */
	while (got < sizeof(req) - 1) {
		r = read(c, req + got, sizeof(req) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	while ((size_t)off < sv->response_len) {
		r = send(c, sv->response + off, sv->response_len - (size_t)off, MSG_NOSIGNAL);
		if (r <= 0)
			break;
		off += r;
	}
	close(c);
	return NULL;
}

static void server_start(struct server *sv, const char *response, size_t len)
{
	struct sockaddr_in a = {0};
	socklen_t alen = sizeof(a);

	sv->response = response;
	sv->response_len = len;
	sv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(sv->fd >= 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(sv->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(sv->fd, 4), 0);
	assert_int_equal(getsockname(sv->fd, (struct sockaddr *)&a, &alen), 0);
	sv->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void server_stop(struct server *sv)
{
	/* Shut the listener down so a thread still in accept() returns. */
	shutdown(sv->fd, SHUT_RDWR);
	pthread_join(sv->thread, NULL);
	close(sv->fd);
}

static char *http_200(const char *body)
{
	char *r = NULL;

	assert_true(
	        asprintf(&r,
	                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
	                 strlen(body), body) > 0);
	return r;
}

/* A 200 response carrying len bytes of body (binary-safe). */
static char *http_200_bytes(const unsigned char *body, size_t len, size_t *out_len)
{
	char head[128];
	int w = snprintf(head, sizeof(head),
	                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	                 len);
	char *r = malloc((size_t)w + len);

	assert_non_null(r);
	memcpy(r, head, (size_t)w);
	memcpy(r + w, body, len);
	*out_len = (size_t)w + len;
	return r;
}

static void hex_of(const char *s, char hex[65])
{
	unsigned char d[32];
	size_t i;

	sha256_of(s, d);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static const struct tar_limits TAR_LIM = {
        .max_member = 1 << 20, .max_unpacked = 4 << 20, .max_entries = 100};

static int fetch(struct http_client *h, const char *url, bool explicit_url, const char *hex,
                 const char *path, uint64_t max, char *why, size_t n)
{
	struct agent_fetch f = {.url = url,
	                        .explicit_url = explicit_url,
	                        .sha256_hex = hex,
	                        .dest = path,
	                        .max_download = max,
	                        .tar = TAR_LIM,
	                        .timeout_ms = 5000};

	return agent_fetch(h, &f, why, n);
}

static int download_as(struct http_client *h, const char *resp, size_t resp_len, const char *name,
                       const char *path, const char *hex, uint64_t max, char *why, size_t n)
{
	struct server sv;
	char url[128];
	int r;

	server_start(&sv, resp, resp_len);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", sv.port, name);
	r = fetch(h, url, false, hex, path, max, why, n);
	server_stop(&sv);
	return r;
}

static int download(struct http_client *h, const char *resp, const char *path, const char *hex,
                    uint64_t max)
{
	char why[256];

	return download_as(h, resp, strlen(resp), "circleci-launch-agent", path, hex, max, why,
	                   sizeof(why));
}

static void test_download(void **state)
{
	static const char body[] = "#!/bin/sh\necho fake agent\n";
	struct http_client *h;
	char hex[65], path[192], dir[128], got[128], *resp;
	struct stat st;

	assert_int_equal(http_client_new(&h), 0);
	hex_of(body, hex);
	resp = http_200(body);
	snprintf(dir, sizeof(dir), "%s/opt/circleci", tmpdir);
	snprintf(path, sizeof(path), "%s/circleci-launch-agent", dir);

	/* Good: in place (parents created), 0755, exact bytes, nothing else in the directory. */
	assert_int_equal(download(h, resp, path, hex, 1 << 20), 0);
	read_file(path, got, sizeof(got));
	assert_string_equal(got, body);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(dir_count(dir), 1);
	assert_int_equal(unlink(path), 0);

	/* Mismatch: -EBADMSG and no file at all. */
	hex_of("something else", hex);
	assert_int_equal(download(h, resp, path, hex, 1 << 20), -EBADMSG);
	assert_int_equal(dir_count(dir), 0);

	/* Mismatch with an existing binary: the old one stays. */
	assert_int_equal(agent_write_file_atomic(path, "old", 3, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(download(h, resp, path, hex, 1 << 20), -EBADMSG);
	read_file(path, got, sizeof(got));
	assert_string_equal(got, "old");
	assert_int_equal(dir_count(dir), 1);
	assert_int_equal(unlink(path), 0);

	/* Over the size limit. */
	hex_of(body, hex);
	assert_int_equal(download(h, resp, path, hex, 8), -EFBIG);
	assert_int_equal(dir_count(dir), 0);

	/* Not found. */
	assert_int_equal(download(h,
	                          "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
	                          "Connection: close\r\n\r\n",
	                          path, hex, 1 << 20),
	                 -ENOENT);
	assert_int_equal(dir_count(dir), 0);
	free(resp);

	/* Refused before any transfer. */
	{
		char why[256];

		assert_int_equal(
		        fetch(h, "https://x.invalid/a", false, "abc", path, 1, why, sizeof(why)),
		        -EINVAL);
		hex[5] = 'x';
		assert_int_equal(
		        fetch(h, "https://x.invalid/a", false, hex, path, 1, why, sizeof(why)),
		        -EINVAL);
		hex_of(body, hex);
		assert_int_equal(
		        fetch(h, "http://example.com/a", false, hex, path, 1, why, sizeof(why)),
		        -EPERM);
		assert_int_equal(
		        fetch(h, "ftp://127.0.0.1/a", true, hex, path, 1, why, sizeof(why)),
		        -EPERM);
	}
	assert_int_equal(dir_count(dir), 0);
	http_client_free(h);
}

/* CircleCI's release tarball: the member named as the binary's basename comes out 0755; a bad
 * archive leaves nothing behind (no binary, no temp file). */
static void test_download_tarball(void **state)
{
	static const char agent[] = "#!/bin/sh\necho the real agent\n";
	struct http_client *h;
	char hex[65], path[192], dir[128], got[128], why[256], *resp;
	unsigned char *gz, d[32];
	struct tarb t = {0};
	struct stat st;
	size_t gzlen, rlen;

	assert_int_equal(http_client_new(&h), 0);
	snprintf(dir, sizeof(dir), "%s/usr/bin", tmpdir);
	snprintf(path, sizeof(path), "%s/circleci-runner", dir);

	tarb_file(&t, "circleci-runner", agent);
	tarb_end(&t);
	gzlen = tarb_gzip(&t, &gz);
	free(t.data);
	memset(&t, 0, sizeof(t));
	EVP_Digest(gz, gzlen, d, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	resp = http_200_bytes(gz, gzlen, &rlen);

	assert_int_equal(download_as(h, resp, rlen, "circleci-runner_linux_amd64.tar.gz", path, hex,
	                             1 << 20, why, sizeof(why)),
	                 0);
	read_file(path, got, sizeof(got));
	assert_string_equal(got, agent);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(dir_count(dir), 1);
	assert_int_equal(unlink(path), 0);

	/* The digest is the download's, not the member's. */
	hex_of(agent, hex);
	assert_int_equal(download_as(h, resp, rlen, "x.tgz?X-Amz-Signature=1", path, hex, 1 << 20,
	                             why, sizeof(why)),
	                 -EBADMSG);
	assert_non_null(strstr(why, "SHA-256 of the download is"));
	assert_int_equal(dir_count(dir), 0);
	free(resp);
	free(gz);

	/* A verified archive whose member is a symlink: refused, nothing left. */
	tarb_entry(&t, "circleci-runner", '2', NULL, 0, 0, "/bin/sh");
	tarb_end(&t);
	gzlen = tarb_gzip(&t, &gz);
	free(t.data);
	EVP_Digest(gz, gzlen, d, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	resp = http_200_bytes(gz, gzlen, &rlen);
	assert_int_equal(
	        download_as(h, resp, rlen, "a.tar.gz", path, hex, 1 << 20, why, sizeof(why)),
	        -EPERM);
	assert_non_null(strstr(why, "symbolic link"));
	assert_int_equal(dir_count(dir), 0);
	free(resp);
	free(gz);
	http_client_free(h);
}

/* What each status means to the caller, and that an error page's size does not matter. */
static void test_download_statuses(void **state)
{
	static const struct {
		const char *head;
		int r;
		long retry_after;
	} cases[] = {
	        {"HTTP/1.1 418 I'm a teapot\r\n", -EBADR, -1},
	        {"HTTP/1.1 400 Bad Request\r\n", -EBADR, -1},
	        {"HTTP/1.1 410 Gone\r\n", -ENOENT, -1},
	        {"HTTP/1.1 403 Forbidden\r\n", -EACCES, -1},
	        {"HTTP/1.1 503 Slow Down\r\nRetry-After: 7\r\n", -EAGAIN, 7},
	        {"HTTP/1.1 429 Too Many Requests\r\n", -EAGAIN, -1},
	};
	struct http_client *h;
	char hex[65], path[192], why[256], *resp;
	long retry_after = 99;

	assert_int_equal(http_client_new(&h), 0);
	hex_of("x", hex);
	snprintf(path, sizeof(path), "%s/bin/circleci-runner", tmpdir);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct server sv;
		struct agent_fetch f = {.sha256_hex = hex,
		                        .dest = path,
		                        .max_download = 1 << 20,
		                        .tar = TAR_LIM,
		                        .timeout_ms = 5000,
		                        .retry_after_s = &retry_after};
		char url[96];
		int r;

		assert_true(asprintf(&resp, "%sContent-Length: 2\r\nConnection: close\r\n\r\nno",
		                     cases[i].head) > 0);
		server_start(&sv, resp, strlen(resp));
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/a", sv.port);
		f.url = url;
		r = agent_fetch(h, &f, why, sizeof(why));
		server_stop(&sv);
		if (r != cases[i].r || retry_after != cases[i].retry_after)
			fail_msg("%s: r=%d retry_after=%ld", cases[i].head, r, retry_after);
		assert_true(agent_fetch_retryable(r) == (r == -EAGAIN));
		assert_non_null(strstr(why, "HTTP status"));
		free(resp);
	}

	/* A 500 with a body far larger than the download's limit: the status, not -EFBIG, and
	 * the transfer stops at the error page's cap rather than reading it all. */
	{
		size_t big = 4 << 20, head_len;
		char head[128];
		char *full;

		head_len = (size_t)snprintf(head, sizeof(head),
		                            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: "
		                            "%zu\r\nConnection: close\r\n\r\n",
		                            big);
		full = malloc(head_len + big);
		assert_non_null(full);
		memcpy(full, head, head_len);
		memset(full + head_len, 'e', big);
		assert_int_equal(download_as(h, full, head_len + big, "a", path, hex, 1024, why,
		                             sizeof(why)),
		                 -EAGAIN);
		assert_string_equal(why, "HTTP status 500");
		/* The same without a Content-Length (the body runs until close): cut at the cap. */
		head_len =
		        (size_t)snprintf(head, sizeof(head),
		                         "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n");
		memcpy(full, head, head_len);
		memset(full + head_len, 'e', big);
		assert_int_equal(download_as(h, full, head_len + big, "a", path, hex, 1024, why,
		                             sizeof(why)),
		                 -EAGAIN);
		assert_string_equal(why, "HTTP status 502");
		free(full);
	}
	http_client_free(h);
}

/* A tarball at a URL that does not end in .tar.gz is known by its gzip magic; temp files an
 * earlier, killed attempt left beside the binary are removed, nothing else is. */
static void test_download_sniff_and_leftovers(void **state)
{
	static const char agent[] = "#!/bin/sh\necho sniffed\n";
	struct http_client *h;
	char hex[65], path[192], dir[128], got[128], why[256], name[256], *resp;
	unsigned char *gz, d[32];
	struct tarb t = {0};
	size_t gzlen, rlen;
	static const char *const stale[] = {".circleci-runner.download.AbC123",
	                                    ".circleci-runner.new.zzzzzz"};
	static const char *const kept[] = {".circleci-runner.download.toolong1", "other-file",
	                                   ".circleci-runner.new."};

	assert_int_equal(http_client_new(&h), 0);
	snprintf(dir, sizeof(dir), "%s/opt", tmpdir);
	snprintf(path, sizeof(path), "%s/circleci-runner", dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	for (size_t i = 0; i < ARRAY_SIZE(stale); i++) {
		snprintf(name, sizeof(name), "%s/%s", dir, stale[i]);
		assert_int_equal(agent_write_file(name, "stale", 5, 0600), 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(kept); i++) {
		snprintf(name, sizeof(name), "%s/%s", dir, kept[i]);
		assert_int_equal(agent_write_file(name, "keep", 4, 0600), 0);
	}
	tarb_file(&t, "circleci-runner", agent);
	tarb_end(&t);
	gzlen = tarb_gzip(&t, &gz);
	free(t.data);
	EVP_Digest(gz, gzlen, d, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	resp = http_200_bytes(gz, gzlen, &rlen);
	assert_int_equal(
	        download_as(h, resp, rlen, "download?id=42", path, hex, 1 << 20, why, sizeof(why)),
	        0);
	read_file(path, got, sizeof(got));
	assert_string_equal(got, agent);
	for (size_t i = 0; i < ARRAY_SIZE(stale); i++) {
		snprintf(name, sizeof(name), "%s/%s", dir, stale[i]);
		assert_int_equal(access(name, F_OK), -1);
	}
	for (size_t i = 0; i < ARRAY_SIZE(kept); i++) {
		snprintf(name, sizeof(name), "%s/%s", dir, kept[i]);
		assert_int_equal(access(name, F_OK), 0);
	}
	assert_int_equal(dir_count(dir), 1 + ARRAY_SIZE(kept));
	free(resp);
	free(gz);
	http_client_free(h);
}

/* A redirect is followed to the download (the digest decides what is kept); to plain http only
 * when the URL itself was explicit, never from an https one. */
static void test_download_redirect(void **state)
{
	static const char body[] = "#!/bin/sh\necho redirected\n";
	static const struct ls_response script[] = {
	        {LS_REPLY, 302, "Location: /real/circleci-runner\r\n", "moved", 0},
	        {LS_REPLY, 200, NULL, body, 0},
	};
	struct loopback_server srv;
	struct http_client *h;
	char hex[65], path[192], url[128], why[256], got[128];

	assert_int_equal(http_client_new(&h), 0);
	hex_of(body, hex);
	snprintf(path, sizeof(path), "%s/bin/circleci-runner", tmpdir);
	/* Explicit (an endpoint variable's URL): http to http is followed. */
	assert_int_equal(ls_start(&srv, script, ARRAY_SIZE(script)), 0);
	snprintf(url, sizeof(url), "%s/dl", srv.url);
	assert_int_equal(fetch(h, url, true, hex, path, 1 << 20, why, sizeof(why)), 0);
	ls_stop(&srv);
	assert_int_equal(srv.nreqs, 2);
	assert_string_equal(srv.reqs[1].path, "/real/circleci-runner");
	read_file(path, got, sizeof(got));
	assert_string_equal(got, body);
	assert_int_equal(unlink(path), 0);
	/* Not explicit (a loopback URL allowed as http): a redirect to http is not followed. */
	assert_int_equal(ls_start(&srv, script, ARRAY_SIZE(script)), 0);
	snprintf(url, sizeof(url), "%s/dl", srv.url);
	assert_int_equal(fetch(h, url, false, hex, path, 1 << 20, why, sizeof(why)),
	                 -EPROTONOSUPPORT);
	assert_false(agent_fetch_retryable(-EPROTONOSUPPORT));
	assert_non_null(strstr(why, "not https"));
	ls_stop(&srv);
	assert_int_equal(srv.nreqs, 1);
	assert_int_equal(access(path, F_OK), -1);
	http_client_free(h);
}

/* A key file on disk checked against a digest. */
static void test_file_sha256(void **state)
{
	char path[192], hex[65];

	snprintf(path, sizeof(path), "%s/key.gpg", tmpdir);
	assert_int_equal(agent_write_file(path, "keydata", 7, 0644), 0);
	hex_of("keydata", hex);
	assert_int_equal(agent_file_sha256_matches(path, hex, 1024), 0);
	assert_int_equal(agent_file_sha256_matches(path, hex, 6), -EFBIG);
	hex_of("other", hex);
	assert_int_equal(agent_file_sha256_matches(path, hex, 1024), -EBADMSG);
	assert_int_equal(agent_file_sha256_matches(path, "abc", 1024), -EINVAL);
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(agent_file_sha256_matches(path, hex, 1024), -ENOENT);
}

static void test_expand_url(void **state)
{
	static const struct {
		const char *in, *arch, *out;
		int r;
	} cases[] = {
	        {"https://h/circleci-runner_linux_%a.tar.gz", "amd64",
	         "https://h/circleci-runner_linux_amd64.tar.gz", 0},
	        {"https://h/%a/%a", "arm64", "https://h/arm64/arm64", 0},
	        /* The URL's own percent-encoding stays: %2F, and %a followed by a hex digit. */
	        {"https://h/x?sig=a%2Fb", "amd64", "https://h/x?sig=a%2Fb", 0},
	        {"https://h/x?sig=%a0%AB%aF", "amd64", "https://h/x?sig=%a0%AB%aF", 0},
	        {"https://h/%a?sig=%a1", "arm64", "https://h/arm64?sig=%a1", 0},
	        {"https://h/%%a", "arm64", "https://h/%arm64", 0},
	        {"https://h/%x/%", "amd64", "https://h/%x/%", 0},
	        {"https://h/%A", "amd64", "https://h/%A", 0},
	        {"https://h/plain", NULL, "https://h/plain", 0},
	        {"https://h/%a", NULL, NULL, -EINVAL},
	        {"https://h/%a", "", NULL, -EINVAL},
	        {"https://h/%a.tgz", NULL, NULL, -EINVAL},
	};
	char out[128];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = agent_expand_url(cases[i].in, cases[i].arch, out, sizeof(out));

		if (r != cases[i].r)
			fail_msg("expand_url(%s) = %d", cases[i].in, r);
		if (r == 0)
			assert_string_equal(out, cases[i].out);
	}
	assert_int_equal(agent_expand_url("https://h/%a", "amd64", out, 12), -ENAMETOOLONG);
	assert_true(agent_url_has_arch("https://h/%a.tgz"));
	assert_false(agent_url_has_arch("https://h/%a0.tgz"));
	assert_false(agent_url_has_arch("https://h/x"));
	assert_string_equal(agent_arch_name("x86_64"), "amd64");
	assert_string_equal(agent_arch_name("aarch64"), "arm64");
	assert_null(agent_arch_name("riscv64"));
	assert_null(agent_arch_name(NULL));
	assert_true(agent_url_is_tarball("https://h/a.tar.gz"));
	assert_true(agent_url_is_tarball("https://h/a.TGZ?sig=1#x"));
	assert_false(agent_url_is_tarball("https://h/a.tar.gz.sha256"));
	assert_false(agent_url_is_tarball("https://h/circleci-runner"));
}

#define D1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D2 "FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210"

static void test_pick_sha256(void **state)
{
	static const struct {
		const char *value, *arch, *out;
		int r;
	} cases[] = {
	        /* One digest: every architecture's. */
	        {D1, "amd64", D1, 0},
	        {D1, NULL, D1, 0},
	        /* One per architecture, separated by commas and/or blanks. */
	        {"amd64:" D1 ", arm64:" D2, "amd64", D1, 0},
	        {"amd64:" D1 ", arm64:" D2, "arm64", D2, 0},
	        {"amd64:" D1 " arm64:" D2, "arm64", D2, 0},
	        {" amd64:" D1 ",arm64:" D2 ",", "arm64", D2, 0},
	        {"amd64:" D1, "arm64", NULL, -ENOENT},
	        {"amd64:" D1, NULL, NULL, -ENOENT},
	        {"amd64:" D1, "", NULL, -ENOENT},
	        /* Broken. */
	        {"", "amd64", NULL, -EINVAL},
	        {" , ", "amd64", NULL, -EINVAL},
	        {"x86_64:" D1, "amd64", NULL, -EINVAL},
	        {"amd64:" D1 "0", "amd64", NULL, -EINVAL},
	        {"amd64:0123", "amd64", NULL, -EINVAL},
	        {"amd64 " D1, "amd64", NULL, -EINVAL},
	        {"amd64:" D1 ", amd64:" D2, "amd64", NULL, -EINVAL},
	        {"amd64:" D1 "; arm64:" D2, "arm64", NULL, -EINVAL},
	        {"amd64:g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "amd64",
	         NULL, -EINVAL},
	        {D1 D1, "amd64", NULL, -EINVAL},
	};
	char out[65];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = agent_pick_sha256(cases[i].value, cases[i].arch, out);

		if (r != cases[i].r)
			fail_msg("pick_sha256(%s, %s) = %d, want %d", cases[i].value,
			         cases[i].arch ? cases[i].arch : "NULL", r, cases[i].r);
		if (r == 0)
			assert_string_equal(out, cases[i].out);
	}
	assert_int_equal(agent_pick_sha256(NULL, "amd64", out), -EINVAL);
}

static void test_expand_advertise(void **state)
{
	static const struct {
		const char *in, *priv, *pub, *out;
		int r;
	} cases[] = {
	        {"%I", "10.0.3.17", NULL, "10.0.3.17:54782", 0},
	        {"%P:2222", "10.0.3.17", "203.0.113.9", "203.0.113.9:2222", 0},
	        {"runner-7.internal.example", NULL, NULL, "runner-7.internal.example:54782", 0},
	        {"[2001:db8::1]", NULL, NULL, "[2001:db8::1]:54782", 0},
	        {"[2001:db8::1]:22", NULL, NULL, "[2001:db8::1]:22", 0},
	        {"2001:db8::1", NULL, NULL, NULL, -EINVAL},
	        {"%P", "10.0.3.17", NULL, NULL, -ENOENT},
	        {"%I", NULL, NULL, NULL, -ENOENT},
	        {"%Q", "10.0.0.1", NULL, NULL, -EINVAL},
	        {"a b", NULL, NULL, NULL, -EINVAL},
	        {"a\"b", NULL, NULL, NULL, -EINVAL},
	        {"[::1", NULL, NULL, NULL, -EINVAL},
	        {"", NULL, NULL, NULL, -EINVAL},
	        {"h:1", NULL, NULL, "h:1", 0},
	        {"h:65535", NULL, NULL, "h:65535", 0},
	        {"h:0", NULL, NULL, NULL, -EINVAL},
	        {"h:65536", NULL, NULL, NULL, -EINVAL},
	        {"h:99999999999999999999", NULL, NULL, NULL, -EINVAL},
	        {"h:", NULL, NULL, NULL, -EINVAL},
	        {"h:22x", NULL, NULL, NULL, -EINVAL},
	        {"[::1]:0", NULL, NULL, NULL, -EINVAL},
	        {"[::1]:", NULL, NULL, NULL, -EINVAL},
	};
	char out[64];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = agent_expand_advertise(cases[i].in, cases[i].priv, cases[i].pub, out,
		                               sizeof(out));

		if (r != cases[i].r)
			fail_msg("expand_advertise(%s) = %d", cases[i].in, r);
		if (r == 0)
			assert_string_equal(out, cases[i].out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_render_circleci_runner),
	        cmocka_unit_test(test_render_launch_agent),
	        cmocka_unit_test(test_render_ssh_and_level),
	        cmocka_unit_test(test_render_optional_keys),
	        cmocka_unit_test(test_render_hostile),
	        cmocka_unit_test(test_render_all_ascii),
	        cmocka_unit_test(test_render_injection_does_not_change_token),
	        cmocka_unit_test(test_render_invalid_utf8),
	        cmocka_unit_test(test_render_bad_args),
	        cmocka_unit_test(test_render_limits),
	        cmocka_unit_test(test_working_directory),
	        cmocka_unit_test(test_expand_name),
	        cmocka_unit_test(test_go_duration),
	        cmocka_unit_test(test_argv),
	        cmocka_unit_test(test_child_env),
	        cmocka_unit_test_setup_teardown(test_write_atomic_basic, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_write_atomic_parents, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_write_atomic_errors, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_write_atomic_chown, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test(test_sha256_matches),
	        cmocka_unit_test_setup_teardown(test_download, setup_tmpdir, teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_download_tarball, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_download_statuses, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_download_sniff_and_leftovers, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_file_sha256, setup_tmpdir, teardown_tmpdir),
	        cmocka_unit_test_setup_teardown(test_download_redirect, setup_tmpdir,
	                                        teardown_tmpdir),
	        cmocka_unit_test(test_expand_url),
	        cmocka_unit_test(test_expand_advertise),
	        cmocka_unit_test(test_pick_sha256),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
