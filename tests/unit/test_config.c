/* Unit tests for lib/config.c: value parsers from tables, then whole configs against a sample
 * schema (a singleton [agent] and named [pool NAME] sections): errors text, environment,
 * defaults, required keys, printing and the print -> parse -> print round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the sample schema ---- */

struct agent {
	int flavour;
	char *binary;
	char *name;
	bool cleanup;
	uint64_t idle_timeout;
	struct cfg_list install;
	char *token;
	int64_t retries;
	uint64_t max_body;
	char *api_url;
	char *note;
};

struct pool {
	char *name;
	char *resource_class;
	int64_t min;
	int64_t max;
	uint64_t lease;
};

static const char *const flavours[] = {"circleci-runner", "launch-agent", NULL};

#define A(f) offsetof(struct agent, f)
static const struct cfg_key agent_keys[] = {
        {.name = "flavour",
         .type = CFG_ENUM,
         .offset = A(flavour),
         .def = "circleci-runner",
         .choices = flavours},
        {.name = "binary",
         .type = CFG_STRING,
         .offset = A(binary),
         .def = "/usr/bin/circleci-runner"},
        {.name = "name", .type = CFG_STRING, .offset = A(name), .flags = CFG_REQUIRED},
        {.name = "cleanup", .type = CFG_BOOL, .offset = A(cleanup), .def = "true"},
        {.name = "idle_timeout",
         .type = CFG_DURATION,
         .offset = A(idle_timeout),
         .def = "1m",
         .min = 1000,
         .max = 3600000,
         .env = "TEST_CFG_IDLE"},
        {.name = "install", .type = CFG_LIST, .offset = A(install), .def = ""},
        {.name = "token",
         .type = CFG_STRING,
         .offset = A(token),
         .flags = CFG_SECRET,
         .env = "TEST_CFG_TOKEN"},
        {.name = "retries", .type = CFG_INT, .offset = A(retries), .def = "3", .min = 0, .max = 10},
        {.name = "max_body", .type = CFG_SIZE, .offset = A(max_body), .def = "1M"},
        {.name = "api_url", .type = CFG_STRING, .offset = A(api_url), .env = "TEST_CFG_API_URL"},
        {.name = "note", .type = CFG_STRING, .offset = A(note)},
};

#define P(f) offsetof(struct pool, f)
static const struct cfg_key pool_keys[] = {
        {.name = "resource_class",
         .type = CFG_STRING,
         .offset = P(resource_class),
         .flags = CFG_REQUIRED},
        {.name = "min", .type = CFG_INT, .offset = P(min), .def = "0", .min = 0, .max = 1000},
        {.name = "max", .type = CFG_INT, .offset = P(max), .def = "1", .min = 0, .max = 1000},
        /* env on a named section's key is ignored: which pool would it mean? */
        {.name = "lease",
         .type = CFG_DURATION,
         .offset = P(lease),
         .def = "15s",
         .env = "TEST_CFG_POOL_LEASE"},
};

static const struct cfg_section schema[] = {
        {.name = "agent",
         .keys = agent_keys,
         .nkeys = N_ELEMS(agent_keys),
         .size = sizeof(struct agent)},
        {.name = "pool",
         .named = true,
         .keys = pool_keys,
         .nkeys = N_ELEMS(pool_keys),
         .size = sizeof(struct pool),
         .name_offset = P(name),
         .max_instances = 3},
};

/* A schema with nothing required: an empty file must give all defaults. */
struct opt {
	int64_t n;
	char *s;
	bool b;
};
static const struct cfg_key opt_keys[] = {
        {.name = "n", .type = CFG_INT, .offset = offsetof(struct opt, n), .def = "5"},
        {.name = "s", .type = CFG_STRING, .offset = offsetof(struct opt, s), .def = "dflt"},
        {.name = "b", .type = CFG_BOOL, .offset = offsetof(struct opt, b)},
};
static const struct cfg_section opt_schema[] = {
        {.name = "opt", .keys = opt_keys, .nkeys = N_ELEMS(opt_keys), .size = sizeof(struct opt)},
};

static const char *const env_vars[] = {"TEST_CFG_IDLE", "TEST_CFG_TOKEN", "TEST_CFG_API_URL",
                                       "TEST_CFG_POOL_LEASE"};

static int clear_env(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(env_vars); i++)
		unsetenv(env_vars[i]);
	return 0;
}

static int load(const char *text, struct cfg **c, char **errs)
{
	return cfg_load_string(schema, N_ELEMS(schema), text, "t.conf", c, errs);
}

static struct cfg *load_ok(const char *text)
{
	struct cfg *c = NULL;
	char *errs = NULL;
	int r = load(text, &c, &errs);

	if (r != 0)
		print_error("unexpected errors (%d):\n%s", r, errs ? errs : "(none)");
	assert_int_equal(r, 0);
	assert_null(errs);
	assert_non_null(c);
	return c;
}

static void expect_errors(const char *text, const char *want)
{
	struct cfg *c = (struct cfg *)0x1; /* must stay untouched on failure */
	char *errs = NULL;
	int r = load(text, &c, &errs);

	assert_int_equal(r, -EINVAL);
	assert_ptr_equal(c, (struct cfg *)0x1);
	assert_non_null(errs);
	assert_string_equal(errs, want);
	free(errs);
}

/* cfg_print into a malloc'd string. */
static char *print_str(const struct cfg *c)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	assert_non_null(f);
	assert_int_equal(cfg_print(c, f), 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(s);
	return s;
}

/* ---- pure parsers ---- */

struct u64_case {
	const char *in;
	int r;
	uint64_t want;
};

static void test_parse_duration(void **state)
{
	static const struct u64_case cases[] = {
	        {"0", 0, 0},
	        {"0ms", 0, 0},
	        {"10", 0, 10000},
	        {"250ms", 0, 250},
	        {"10s", 0, 10000},
	        {"1m", 0, 60000},
	        {"5h15m", 0, 18900000},
	        {"2d", 0, 172800000},
	        {"1h30m20s", 0, 5420000},
	        {"1s500ms", 0, 1500},
	        {"1d2h3m4s5ms", 0, 93784005},
	        {"007s", 0, 7000},
	        {"18446744073709551615ms", 0, UINT64_MAX},
	        {"", -EINVAL, 0},
	        {"5x", -EINVAL, 0},
	        {"-1s", -EINVAL, 0},
	        {"+1s", -EINVAL, 0},
	        {"1.5h", -EINVAL, 0},
	        {"h", -EINVAL, 0},
	        {"ms", -EINVAL, 0},
	        {"1h ", -EINVAL, 0},
	        {" 1h", -EINVAL, 0},
	        {"10 s", -EINVAL, 0},
	        {"1m5h", -EINVAL, 0},  /* largest unit first */
	        {"1h1h", -EINVAL, 0},  /* each unit once */
	        {"1ms5s", -EINVAL, 0}, /* ms is the smallest */
	        {"1hm", -EINVAL, 0},
	        {"1h30", -EINVAL, 0}, /* a bare number only on its own */
	        {"1H", -EINVAL, 0},
	        {"10sec", -EINVAL, 0},
	        {"18446744073709551616ms", -ERANGE, 0},
	        {"18446744073709552s", -ERANGE, 0},
	        {"213503982335d", -ERANGE, 0},
	        {"99999999999999999999", -ERANGE, 0},
	        {"213503982334d14h25m51s616ms", -ERANGE, 0}, /* UINT64_MAX + 1 by the sum */
	};
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		uint64_t v = 12345;
		int r = cfg_parse_duration(cases[i].in, &v);

		if (r != cases[i].r)
			print_error("case '%s': r=%d want %d\n", cases[i].in, r, cases[i].r);
		assert_int_equal(r, cases[i].r);
		if (r == 0)
			assert_int_equal(v, cases[i].want);
		else
			assert_int_equal(v, 12345); /* untouched on failure */
	}
	assert_int_equal(cfg_parse_duration(NULL, &(uint64_t){0}), -EINVAL);
}

static void test_format_duration(void **state)
{
	static const struct {
		uint64_t ms;
		const char *want;
	} cases[] = {
	        {0, "0s"},
	        {1, "1ms"},
	        {250, "250ms"},
	        {1000, "1s"},
	        {1500, "1s500ms"},
	        {60000, "1m"},
	        {90000, "1m30s"},
	        {3600000, "1h"},
	        {18900000, "5h15m"},
	        {5420000, "1h30m20s"},
	        {172800000, "2d"},
	        {93784005, "1d2h3m4s5ms"},
	        {UINT64_MAX, "213503982334d14h25m51s615ms"},
	};
	char out[64], small[4];
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		uint64_t back = 0;

		cfg_format_duration(cases[i].ms, out, sizeof(out));
		assert_string_equal(out, cases[i].want);
		/* canonical text parses back to the same value */
		assert_int_equal(cfg_parse_duration(out, &back), 0);
		assert_int_equal(back, cases[i].ms);
	}
	/* a short buffer truncates but stays terminated */
	memset(small, 'x', sizeof(small));
	cfg_format_duration(18900000, small, sizeof(small));
	assert_true(strlen(small) < sizeof(small));
	assert_memory_equal(small, "5h1", 4);
	cfg_format_duration(0, small, 0); /* n == 0 writes nothing */
}

static void test_parse_size(void **state)
{
	static const struct u64_case cases[] = {
	        {"0", 0, 0},
	        {"512", 0, 512},
	        {"512B", 0, 512},
	        {"512b", 0, 512},
	        {"64K", 0, 65536},
	        {"64k", 0, 65536},
	        {"64KB", 0, 65536}, /* binary, like K and KiB */
	        {"64KiB", 0, 65536},
	        {"64kib", 0, 65536},
	        {"1M", 0, 1048576},
	        {"1MiB", 0, 1048576},
	        {"1MB", 0, 1048576},
	        {"2G", 0, 2147483648ULL},
	        {"2GiB", 0, 2147483648ULL},
	        {"1T", 0, 1099511627776ULL},
	        {"16777215TiB", 0, 16777215ULL << 40},
	        {"18446744073709551615", 0, UINT64_MAX},
	        {"", -EINVAL, 0},
	        {"-1", -EINVAL, 0},
	        {"+1", -EINVAL, 0},
	        {"1.5M", -EINVAL, 0},
	        {"1X", -EINVAL, 0},
	        {"K", -EINVAL, 0},
	        {"1 K", -EINVAL, 0},
	        {" 1K", -EINVAL, 0},
	        {"1K ", -EINVAL, 0},
	        {"1MiBs", -EINVAL, 0},
	        {"1iB", -EINVAL, 0},
	        {"1BB", -EINVAL, 0},
	        {"0x10", -EINVAL, 0},
	        {"1KK", -EINVAL, 0},
	        {"18446744073709551616", -ERANGE, 0},
	        {"16777216T", -ERANGE, 0},
	        {"17179869184G", -ERANGE, 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		uint64_t v = 777;
		int r = cfg_parse_size(cases[i].in, &v);

		if (r != cases[i].r)
			print_error("case '%s': r=%d want %d\n", cases[i].in, r, cases[i].r);
		assert_int_equal(r, cases[i].r);
		assert_int_equal(v, r == 0 ? cases[i].want : 777);
	}
	assert_int_equal(cfg_parse_size(NULL, &(uint64_t){0}), -EINVAL);
}

static void test_parse_bool(void **state)
{
	static const struct {
		const char *in;
		int r;
		bool want;
	} cases[] = {
	        {"true", 0, true},         {"TRUE", 0, true},     {"Yes", 0, true},
	        {"on", 0, true},           {"1", 0, true},        {"false", 0, false},
	        {"No", 0, false},          {"OFF", 0, false},     {"0", 0, false},
	        {"", -EINVAL, false},      {"2", -EINVAL, false}, {"truee", -EINVAL, false},
	        {" true", -EINVAL, false}, {"y", -EINVAL, false}, {"n", -EINVAL, false},
	        {"01", -EINVAL, false},
	};
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		bool v = !cases[i].want;
		int r = cfg_parse_bool(cases[i].in, &v);

		if (r != cases[i].r)
			print_error("case '%s'\n", cases[i].in);
		assert_int_equal(r, cases[i].r);
		if (r == 0)
			assert_int_equal(v, cases[i].want);
	}
	assert_int_equal(cfg_parse_bool(NULL, &(bool){false}), -EINVAL);
}

static void test_parse_int(void **state)
{
	static const struct {
		const char *in;
		int r;
		int64_t want;
	} cases[] = {
	        {"0", 0, 0},
	        {"-5", 0, -5},
	        {"+7", 0, 7},
	        {"007", 0, 7}, /* decimal, not octal */
	        {"9223372036854775807", 0, INT64_MAX},
	        {"-9223372036854775808", 0, INT64_MIN},
	        {"", -EINVAL, 0},
	        {" 1", -EINVAL, 0},
	        {"1 ", -EINVAL, 0},
	        {"1x", -EINVAL, 0},
	        {"0x10", -EINVAL, 0},
	        {"-", -EINVAL, 0},
	        {"1.0", -EINVAL, 0},
	        {"1e3", -EINVAL, 0},
	        {"9223372036854775808", -ERANGE, 0},
	        {"-9223372036854775809", -ERANGE, 0},
	        {"99999999999999999999999", -ERANGE, 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		int64_t v = 42;
		int r = cfg_parse_int(cases[i].in, &v);

		if (r != cases[i].r)
			print_error("case '%s': r=%d\n", cases[i].in, r);
		assert_int_equal(r, cases[i].r);
		assert_int_equal(v, r == 0 ? cases[i].want : 42);
	}
	assert_int_equal(cfg_parse_int(NULL, &(int64_t){0}), -EINVAL);
}

/* ---- whole configs ---- */

static void test_defaults(void **state)
{
	struct cfg *c = load_ok("[agent]\nname = x\n");
	struct agent *a = cfg_get(c, "agent");

	(void)state;
	assert_non_null(a);
	assert_int_equal(a->flavour, 0);
	assert_string_equal(a->binary, "/usr/bin/circleci-runner");
	assert_string_equal(a->name, "x");
	assert_true(a->cleanup);
	assert_int_equal(a->idle_timeout, 60000);
	assert_int_equal(a->install.n, 0);
	assert_null(a->install.items);
	assert_null(a->token);
	assert_int_equal(a->retries, 3);
	assert_int_equal(a->max_body, 1048576);
	assert_null(a->api_url);
	assert_null(a->note);
	assert_int_equal(cfg_line(c, a, "name"), 2);
	assert_int_equal(cfg_line(c, a, "binary"), 0); /* defaulted */
	assert_int_equal(cfg_line(c, a, "nope"), 0);
	assert_int_equal(cfg_line(c, NULL, "name"), 0);
	assert_int_equal(cfg_count(c, "pool"), 0);
	assert_null(cfg_get_named(c, "pool", 0));
	assert_null(cfg_get(c, "pool")); /* named: not a singleton */
	assert_null(cfg_get(c, "nope"));
	assert_string_equal(cfg_path(c), "t.conf");
	cfg_free(c);
}

static void test_empty_file(void **state)
{
	struct cfg *c = NULL;
	char *errs = NULL;
	struct opt *o;

	(void)state;
	assert_int_equal(cfg_load_string(opt_schema, 1, "", "e.conf", &c, &errs), 0);
	assert_null(errs);
	o = cfg_get(c, "opt");
	assert_non_null(o);
	assert_int_equal(o->n, 5);
	assert_string_equal(o->s, "dflt");
	assert_false(o->b);
	cfg_free(c);
	/* only comments and blank lines: the same */
	assert_int_equal(cfg_load_string(opt_schema, 1, "\n; x\n# y\n   \n", NULL, &c, NULL), 0);
	assert_string_equal(cfg_path(c), "<string>");
	cfg_free(c);
	/* the sample schema's empty file: defaults, then the one required key is missing */
	expect_errors("", "t.conf: [agent] name: required\n");
	cfg_free(NULL);
}

static void test_all_values(void **state)
{
	static const char text[] = "[agent]\n"
	                           "flavour = launch-agent\n"
	                           "binary = /opt/agent\n"
	                           "name = %H-%i\n"
	                           "cleanup = off\n"
	                           "idle_timeout = 1h\n"
	                           "install = nodejs, npm,,git   make\t curl\n"
	                           "token = hunter2\n"
	                           "retries = 10\n"
	                           "max_body = 64K\n"
	                           "api_url = https://runner.example\n"
	                           "note =\n";
	struct cfg *c = load_ok(text);
	struct agent *a = cfg_get(c, "agent");

	(void)state;
	assert_int_equal(a->flavour, 1);
	assert_string_equal(a->binary, "/opt/agent");
	assert_string_equal(a->name, "%H-%i");
	assert_false(a->cleanup);
	assert_int_equal(a->idle_timeout, 3600000); /* the max bound is inclusive */
	assert_int_equal(a->install.n, 5);
	assert_string_equal(a->install.items[0], "nodejs");
	assert_string_equal(a->install.items[1], "npm");
	assert_string_equal(a->install.items[2], "git");
	assert_string_equal(a->install.items[3], "make");
	assert_string_equal(a->install.items[4], "curl");
	assert_string_equal(a->token, "hunter2");
	assert_int_equal(a->retries, 10);
	assert_int_equal(a->max_body, 65536);
	assert_string_equal(a->api_url, "https://runner.example");
	assert_non_null(a->note);
	assert_string_equal(a->note, ""); /* set empty: "" not NULL */
	assert_int_equal(cfg_line(c, a, "flavour"), 2);
	assert_int_equal(cfg_line(c, a, "note"), 12);
	cfg_free(c);
}

static void test_pools(void **state)
{
	static const char text[] = "[pool linux-large]\n"
	                           "resource_class = org/linux-large\n"
	                           "max = 20\n"
	                           "[agent]\n"
	                           "name = x\n"
	                           "[pool arm.small]\n"
	                           "resource_class = org/arm\n"
	                           "lease = 3s\n"
	                           "[pool empty-defaults]      ; no keys but the required one\n"
	                           "resource_class = org/e\n";
	struct cfg *c;
	struct pool *p;

	(void)state;
	setenv("TEST_CFG_POOL_LEASE", "1s", 1); /* named sections ignore env */
	c = load_ok(text);
	assert_int_equal(cfg_count(c, "pool"), 3);
	assert_int_equal(cfg_count(c, "agent"), 0);
	p = cfg_get_named(c, "pool", 0);
	assert_string_equal(p->name, "linux-large");
	assert_string_equal(p->resource_class, "org/linux-large");
	assert_int_equal(p->min, 0);
	assert_int_equal(p->max, 20);
	assert_int_equal(p->lease, 15000);
	assert_int_equal(cfg_line(c, p, "max"), 3);
	assert_int_equal(cfg_line(c, p, "min"), 0);
	p = cfg_get_named(c, "pool", 1);
	assert_string_equal(p->name, "arm.small");
	assert_int_equal(p->lease, 3000);
	assert_int_equal(cfg_line(c, p, "lease"), 8);
	p = cfg_get_named(c, "pool", 2);
	assert_string_equal(p->name, "empty-defaults");
	assert_int_equal(p->max, 1);
	assert_null(cfg_get_named(c, "pool", 3));
	assert_null(cfg_get_named(c, "agent", 0));
	cfg_free(c);
}

struct err_case {
	const char *what;
	const char *text;
	const char *errors;
};

#define AGENT "[agent]\nname = x\n"

static const struct err_case err_cases[] = {
        {"unknown key", AGENT "bogus = 1\n", "t.conf:3: bogus: unknown key in [agent]\n"},
        {"unknown section, its keys not reported", AGENT "[nope]\nk = v\n[agent2 x]\n",
         "t.conf:3: [nope]: unknown section\nt.conf:5: [agent2 x]: unknown section\n"},
        {"duplicate key", AGENT "cleanup = 1\nname = y\n",
         "t.conf:4: name: duplicate key (first set on line 2)\n"},
        {"duplicate key even when the first value was bad", AGENT "retries = x\nretries = 2\n",
         "t.conf:3: retries: invalid integer 'x'\n"
         "t.conf:4: retries: duplicate key (first set on line 3)\n"},
        {"duplicate pool name",
         AGENT "[pool a]\nresource_class = r\n[pool a]\nresource_class = r\n",
         "t.conf:5: [pool a]: duplicate pool name (first on line 3)\n"},
        {"pool without name", AGENT "[pool]\nresource_class = r\n",
         "t.conf:3: [pool]: missing name, use [pool NAME]\n"},
        {"pool with a bad name", AGENT "[pool a b]\n[pool a\"b]\n",
         "t.conf:3: [pool a b]: invalid name (letters, digits and . _ - : @ / + only)\n"
         "t.conf:4: [pool a\"b]: invalid name (letters, digits and . _ - : @ / + only)\n"},
        {"too many pools",
         AGENT "[pool a]\nresource_class = r\n[pool b]\nresource_class = r\n"
               "[pool c]\nresource_class = r\n[pool d]\nresource_class = r\n",
         "t.conf:9: [pool d]: too many [pool] sections (at most 3)\n"},
        {"pool key errors and required", AGENT "[pool a]\nmin = -1\nx = 1\n",
         "t.conf:4: min: out of range 0..1000\n"
         "t.conf:5: x: unknown key in [pool a]\n"
         "t.conf: [pool a] resource_class: required\n"},
        {"singleton with a name", "[agent x]\nname = y\n",
         "t.conf:1: [agent x]: section [agent] takes no name\n"
         "t.conf: [agent] name: required\n"},
        {"duplicate singleton", AGENT "[agent]\nnote = y\n",
         "t.conf:3: [agent]: duplicate section (first on line 1)\n"},
        {"key outside any section", "name = x\n" AGENT,
         "t.conf:1: name: key outside of any [section]\n"},
        {"line without '='", AGENT "just words\n",
         "t.conf:3: syntax error, expected 'key = value', '[section]' or a comment\n"},
        {"no continuation lines", "[agent]\ninstall = a\n    b\nname = x\n",
         "t.conf:3: syntax error, expected 'key = value', '[section]' or a comment\n"},
        {"syntax error on the last line without newline", AGENT "junk",
         "t.conf:3: syntax error, expected 'key = value', '[section]' or a comment\n"},
        {"comment hides the '='", AGENT "note ; = x\n",
         "t.conf:3: syntax error, expected 'key = value', '[section]' or a comment\n"},
        {"missing ']' skips the section's keys", "[agent\nname = x\n",
         "t.conf:1: [agent: missing ']' in section header\n"
         "t.conf: [agent] name: required\n"},
        {"text after ']'", "[agent] x\nname = x\n[agent];c\n",
         "t.conf:1: [agent]: unexpected text after ']'\n"
         "t.conf:3: [agent]: unexpected text after ']'\n"
         "t.conf: [agent] name: required\n"},
        {"empty section name", AGENT "[ ]\nk = v\n", "t.conf:3: []: empty section name\n"},
        {"missing key name", AGENT "= x\n", "t.conf:3: missing key name before '='\n"},
        {"required set empty", "[agent]\nname =\n",
         "t.conf:2: name: required, must not be empty\n"},
        {"bad values, all collected",
         AGENT "idle_timeout = 5x\n"
               "flavour = docker\n"
               "cleanup = maybe\n"
               "retries = 11\n"
               "max_body = 1X\n"
               "idle_timeout2 = 1\n",
         "t.conf:3: idle_timeout: invalid duration '5x' (use 10s, 1m, 5h15m)\n"
         "t.conf:4: flavour: must be one of: circleci-runner | launch-agent\n"
         "t.conf:5: cleanup: invalid boolean 'maybe' (use true or false)\n"
         "t.conf:6: retries: out of range 0..10\n"
         "t.conf:7: max_body: invalid size '1X' (use 512, 64K, 1M, 2G)\n"
         "t.conf:8: idle_timeout2: unknown key in [agent]\n"},
        {"ranges and overflow",
         AGENT "idle_timeout = 2h\nretries = 99999999999999999999\nmax_body = 99999999999T\n",
         "t.conf:3: idle_timeout: out of range 1s..1h\n"
         "t.conf:4: retries: integer '99999999999999999999' too large\n"
         "t.conf:5: max_body: size '99999999999T' too large\n"},
        {"below the duration minimum", AGENT "idle_timeout = 999ms\n",
         "t.conf:3: idle_timeout: out of range 1s..1h\n"},
        {"empty non-string values", AGENT "retries =\nidle_timeout =\nflavour =\n",
         "t.conf:3: retries: invalid integer ''\n"
         "t.conf:4: idle_timeout: invalid duration '' (use 10s, 1m, 5h15m)\n"
         "t.conf:5: flavour: must be one of: circleci-runner | launch-agent\n"},
        {"long bad values are shortened, control bytes hidden",
         AGENT "retries = 1234567890123456789012345678901234567890123456789012345678901234567890\n"
               "cleanup = a\x01z\n",
         "t.conf:3: retries: integer "
         "'1234567890123456789012345678901234567890123456789012345678901...' too large\n"
         "t.conf:4: cleanup: invalid boolean 'a?z' (use true or false)\n"},
};

static void test_errors(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(err_cases); i++) {
		struct cfg *c = NULL;
		char *errs = NULL;
		int r = load(err_cases[i].text, &c, &errs);

		if (r != -EINVAL || !errs || strcmp(errs, err_cases[i].errors))
			print_error("case '%s':\n--- got (%d)\n%s--- want\n%s", err_cases[i].what,
			            r, errs ? errs : "(null)\n", err_cases[i].errors);
		assert_int_equal(r, -EINVAL);
		assert_null(c);
		assert_non_null(errs);
		assert_string_equal(errs, err_cases[i].errors);
		free(errs);
	}
}

static void test_errors_null_out(void **state)
{
	struct cfg *c = NULL;

	(void)state;
	/* errors == NULL is allowed: the return value still says what happened */
	assert_int_equal(load(AGENT "bogus = 1\n", &c, NULL), -EINVAL);
	assert_null(c);
	assert_int_equal(cfg_load_string(schema, 2, NULL, "x", &c, NULL), -EINVAL);
}

static void test_too_many_errors(void **state)
{
	char text[4096], *p = text, *errs = NULL, *line;
	struct cfg *c = NULL;
	size_t i, n = 0;

	(void)state;
	p += sprintf(p, "[agent]\nname = x\n");
	for (i = 0; i < 150; i++)
		p += sprintf(p, "b%zu = 1\n", i);
	assert_int_equal(load(text, &c, &errs), -EINVAL);
	for (line = errs; (line = strchr(line, '\n')); line++)
		n++;
	assert_int_equal(n, 101); /* bounded: 100 errors and a closing line */
	assert_non_null(strstr(errs, "t.conf:102: b99: unknown key in [agent]\n"));
	assert_null(strstr(errs, "b100:"));
	assert_non_null(strstr(errs, "t.conf: too many errors, the rest are not shown\n"));
	free(errs);
}

static void test_comments(void **state)
{
	static const char text[] =
	        "; leading comment\n"
	        "# hash comment\n"
	        "\n"
	        "[agent]        ; header comment\n"
	        "flavour = launch-agent          ; circleci-runner | launch-agent\n"
	        "name = x;y\n"
	        "binary = /opt/a ;comment\n"
	        "api_url = http://h/#frag\n"
	        "                                   ; indented comment line\n"
	        "   # indented hash comment\n"
	        "note = a # b\n"
	        "  install = a b   \n"
	        "token:colon\n";
	struct cfg *c = load_ok(text);
	struct agent *a = cfg_get(c, "agent");

	(void)state;
	assert_int_equal(a->flavour, 1);
	assert_string_equal(a->name, "x;y"); /* ';' needs whitespace before it to start a comment */
	assert_string_equal(a->binary, "/opt/a");
	assert_string_equal(a->api_url, "http://h/#frag"); /* '#' only at line start */
	assert_string_equal(a->note, "a # b");
	assert_int_equal(a->install.n, 2); /* indentation does not matter */
	assert_int_equal(cfg_line(c, a, "install"), 12);
	assert_string_equal(a->token, "colon"); /* inih's name:value form */
	cfg_free(c);
}

static void test_crlf_and_bom(void **state)
{
	struct cfg *c = load_ok("\xEF\xBB\xBF[agent]\r\nname = x \r\nnote = n\r\n");
	struct agent *a = cfg_get(c, "agent");

	(void)state;
	assert_string_equal(a->name, "x");
	assert_string_equal(a->note, "n");
	assert_int_equal(cfg_line(c, a, "note"), 3);
	cfg_free(c);
}

static void test_long_lines(void **state)
{
	size_t vlen = 4096 - strlen("note = ");
	char *text = malloc(3 * 4200), *p;
	struct cfg *c;
	struct agent *a;
	char *errs = NULL;

	(void)state;
	assert_non_null(text);
	/* exactly 4096 bytes: accepted */
	p = text + sprintf(text, AGENT "note = ");
	memset(p, 'v', vlen);
	strcpy(p + vlen, "\n");
	c = load_ok(text);
	a = cfg_get(c, "agent");
	assert_int_equal(strlen(a->note), vlen);
	cfg_free(c);
	/* 4097 bytes: an error on its own line; the count of later lines stays right */
	p = text + sprintf(text, AGENT "note = ");
	memset(p, 'v', vlen + 1);
	strcpy(p + vlen + 1, "\nbogus = 1\n");
	c = NULL;
	assert_int_equal(load(text, &c, &errs), -EINVAL);
	assert_null(c);
	assert_string_equal(errs, "t.conf:3: line too long (more than 4096 bytes)\n"
	                          "t.conf:4: bogus: unknown key in [agent]\n");
	free(errs);
	/* a long unknown key name is shortened in the message */
	p = text + sprintf(text, AGENT);
	memset(p, 'k', 3000);
	strcpy(p + 3000, " = 1\n");
	assert_int_equal(load(text, &c, &errs), -EINVAL);
	assert_string_equal(errs,
	                    "t.conf:3: "
	                    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...: "
	                    "unknown key in [agent]\n");
	free(errs);
	free(text);
}

static void test_env_override(void **state)
{
	struct cfg *c;
	struct agent *a;
	char *out;

	(void)state;
	setenv("TEST_CFG_API_URL", "https://env.example", 1);
	setenv("TEST_CFG_IDLE", "90s", 1);
	setenv("TEST_CFG_TOKEN", "s3cret-from-env", 1);
	c = load_ok(AGENT "api_url = https://file.example\n");
	a = cfg_get(c, "agent");
	assert_string_equal(a->api_url, "https://env.example");
	assert_int_equal(a->idle_timeout, 90000); /* applied with the section's key absent */
	assert_string_equal(a->token, "s3cret-from-env");
	assert_int_equal(cfg_line(c, a, "api_url"), 0); /* from the environment */
	assert_int_equal(cfg_line(c, a, "name"), 2);
	out = print_str(c);
	assert_non_null(strstr(out, "api_url = https://env.example\n"));
	assert_non_null(strstr(out, "idle_timeout = 1m30s\n"));
	assert_non_null(strstr(out, "token = <redacted>\n"));
	assert_null(strstr(out, "s3cret"));
	free(out);
	cfg_free(c);
	/* an empty variable counts as unset */
	setenv("TEST_CFG_API_URL", "", 1);
	c = load_ok(AGENT "api_url = https://file.example\n");
	a = cfg_get(c, "agent");
	assert_string_equal(a->api_url, "https://file.example");
	assert_int_equal(cfg_line(c, a, "api_url"), 3);
	cfg_free(c);
}

static void test_env_bad(void **state)
{
	(void)state;
	setenv("TEST_CFG_IDLE", "soon", 1);
	setenv("TEST_CFG_API_URL", "http://a\nb = c", 1);
	/* file errors first, then the environment's; required still checked after */
	expect_errors(
	        "[agent]\nbogus = 1\n",
	        "t.conf:2: bogus: unknown key in [agent]\n"
	        "ENV:TEST_CFG_IDLE: idle_timeout: invalid duration 'soon' (use 10s, 1m, 5h15m)\n"
	        "ENV:TEST_CFG_API_URL: api_url: value contains a newline\n"
	        "t.conf: [agent] name: required\n");
	setenv("TEST_CFG_IDLE", "2h", 1);
	unsetenv("TEST_CFG_API_URL");
	expect_errors(AGENT, "ENV:TEST_CFG_IDLE: idle_timeout: out of range 1s..1h\n");
}

static void test_print(void **state)
{
	static const char text[] = "[pool b]\n"
	                           "resource_class = org/b\n"
	                           "[agent]\n"
	                           "name = x\n"
	                           "install = a,b\n"
	                           "idle_timeout = 90000ms\n"
	                           "max_body = 1000\n"
	                           "token = hunter2\n"
	                           "[pool a]\n"
	                           "resource_class = org/a\n"
	                           "max = 5\n"
	                           "lease = 1h30m\n";
	static const char want[] = "[agent]\n"
	                           "flavour = circleci-runner\n"
	                           "binary = /usr/bin/circleci-runner\n"
	                           "name = x\n"
	                           "cleanup = true\n"
	                           "idle_timeout = 1m30s\n"
	                           "install = a b\n"
	                           "token = <redacted>\n"
	                           "retries = 3\n"
	                           "max_body = 1000\n"
	                           "api_url =\n"
	                           "note =\n"
	                           "\n"
	                           "[pool b]\n"
	                           "resource_class = org/b\n"
	                           "min = 0\n"
	                           "max = 1\n"
	                           "lease = 15s\n"
	                           "\n"
	                           "[pool a]\n"
	                           "resource_class = org/a\n"
	                           "min = 0\n"
	                           "max = 5\n"
	                           "lease = 1h30m\n";
	struct cfg *c = load_ok(text);
	char *out = print_str(c);

	(void)state;
	assert_string_equal(out, want);
	assert_null(strstr(out, "hunter2"));
	free(out);
	cfg_free(c);
	/* an empty secret prints empty: nothing to hide, and the reader sees it is unset */
	c = load_ok(AGENT "token =\nmax_body = 2G\n");
	out = print_str(c);
	assert_non_null(strstr(out, "\ntoken =\n"));
	assert_non_null(strstr(out, "\nmax_body = 2GiB\n"));
	free(out);
	cfg_free(c);
	assert_int_equal(cfg_print(NULL, stdout), -EINVAL);
}

/* openssh's regress/cfgparse idea: print, re-parse the output, print again: identical. */
static void test_round_trip(void **state)
{
	static const char text[] = "; a config touching every type\n"
	                           "[pool linux-large]\n"
	                           "resource_class = myorg/linux-large\n"
	                           "max = 20\n"
	                           "lease = 1d2h3m4s5ms\n"
	                           "[agent]\n"
	                           "flavour = launch-agent     ; the legacy one\n"
	                           "name = %H-%i\n"
	                           "cleanup = no\n"
	                           "idle_timeout = 3600\n"
	                           "install = nodejs, npm git\n"
	                           "token = hunter2\n"
	                           "retries = 0\n"
	                           "max_body = 3072K\n"
	                           "note = a # b;c\n"
	                           "[pool arm]\n"
	                           "resource_class = myorg/arm\n"
	                           "min = 2\n";
	struct cfg *c1, *c2;
	char *p1, *p2;
	struct agent *a1, *a2;
	struct pool *q1, *q2;
	size_t i;

	(void)state;
	setenv("TEST_CFG_API_URL", "https://env.example/x", 1);
	c1 = load_ok(text);
	p1 = print_str(c1);
	c2 = load_ok(p1);
	p2 = print_str(c2);
	assert_string_equal(p1, p2);
	/* and the values agree, except the secret, which printing hides */
	a1 = cfg_get(c1, "agent");
	a2 = cfg_get(c2, "agent");
	assert_int_equal(a1->flavour, a2->flavour);
	assert_string_equal(a1->name, a2->name);
	assert_int_equal(a1->cleanup, a2->cleanup);
	assert_int_equal(a1->idle_timeout, a2->idle_timeout);
	assert_int_equal(a1->install.n, a2->install.n);
	for (i = 0; i < a1->install.n; i++)
		assert_string_equal(a1->install.items[i], a2->install.items[i]);
	assert_int_equal(a1->retries, a2->retries);
	assert_int_equal(a1->max_body, a2->max_body);
	assert_string_equal(a1->api_url, a2->api_url);
	assert_string_equal(a1->note, a2->note);
	assert_string_equal(a2->token, "<redacted>");
	assert_int_equal(cfg_count(c2, "pool"), 2);
	for (i = 0; i < 2; i++) {
		q1 = cfg_get_named(c1, "pool", i);
		q2 = cfg_get_named(c2, "pool", i);
		assert_string_equal(q1->name, q2->name);
		assert_string_equal(q1->resource_class, q2->resource_class);
		assert_int_equal(q1->min, q2->min);
		assert_int_equal(q1->max, q2->max);
		assert_int_equal(q1->lease, q2->lease);
	}
	free(p1);
	free(p2);
	cfg_free(c1);
	cfg_free(c2);
}

/* Found by fuzzing: "key =;x" holds ";x" (only ';' after whitespace starts a comment), and
 * printing it as "key = ;x" turned it into a comment; so did a list item ";c" printed after a
 * space. */
static void test_round_trip_leading_semicolon(void **state)
{
	struct cfg *c1, *c2;
	struct agent *a1, *a2;
	char *p1, *p2;

	(void)state;
	c1 = load_ok("[agent]\nname =;n\nnote =;x ;y\ninstall =;a b,;c\n");
	a1 = cfg_get(c1, "agent");
	assert_string_equal(a1->note, ";x");
	p1 = print_str(c1);
	assert_non_null(strstr(p1, "\nnote =;x\n"));
	c2 = load_ok(p1);
	p2 = print_str(c2);
	assert_string_equal(p1, p2);
	a2 = cfg_get(c2, "agent");
	assert_string_equal(a2->name, ";n");
	assert_string_equal(a2->note, ";x");
	assert_int_equal(a2->install.n, 3);
	assert_string_equal(a2->install.items[0], ";a");
	assert_string_equal(a2->install.items[2], ";c");
	free(p1);
	free(p2);
	cfg_free(c1);
	cfg_free(c2);
}

static char *write_tmp(const void *data, size_t n)
{
	char *path = strdup("/tmp/test_config.XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	return path;
}

static void test_load_file(void **state)
{
	static const char nul[] = "[agent]\nname = x\0y\nnote = z\n";
	struct cfg *c = NULL;
	char *path, *errs = NULL, want[256], *big;
	const size_t bign = 1024 * 1024 + 1;

	(void)state;
	assert_int_equal(cfg_load_file(schema, 2, "/nonexistent/runnerd.conf", &c, &errs), -ENOENT);
	assert_null(c);
	assert_null(errs);

	path = write_tmp(AGENT "retries = 4\n", strlen(AGENT "retries = 4\n"));
	assert_int_equal(cfg_load_file(schema, 2, path, &c, &errs), 0);
	assert_null(errs);
	assert_string_equal(cfg_path(c), path);
	assert_int_equal(((struct agent *)cfg_get(c, "agent"))->retries, 4);
	cfg_free(c);
	c = NULL;
	unlink(path);
	free(path);

	path = write_tmp(nul, sizeof(nul) - 1);
	assert_int_equal(cfg_load_file(schema, 2, path, &c, &errs), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line\n%s: [agent] name: required\n", path,
	         path);
	assert_string_equal(errs, want);
	free(errs);
	errs = NULL;
	unlink(path);
	free(path);

	path = write_tmp("", 0);
	assert_int_equal(cfg_load_file(opt_schema, 1, path, &c, &errs), 0);
	assert_int_equal(((struct opt *)cfg_get(c, "opt"))->n, 5);
	cfg_free(c);
	c = NULL;
	unlink(path);
	free(path);

	/* a config over 1 MiB is refused before parsing */
	big = malloc(bign);
	assert_non_null(big);
	memset(big, '\n', bign);
	path = write_tmp(big, bign);
	assert_int_equal(cfg_load_file(schema, 2, path, &c, &errs), -EFBIG);
	assert_null(c);
	assert_null(errs);
	unlink(path);
	free(path);
	free(big);

	assert_int_equal(cfg_load_file(schema, 2, "/", &c, &errs), -EISDIR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_duration),
	        cmocka_unit_test(test_format_duration),
	        cmocka_unit_test(test_parse_size),
	        cmocka_unit_test(test_parse_bool),
	        cmocka_unit_test(test_parse_int),
	        cmocka_unit_test_setup_teardown(test_defaults, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_empty_file, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_all_values, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_pools, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_errors, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_errors_null_out, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_too_many_errors, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_comments, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_crlf_and_bom, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_long_lines, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_env_override, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_env_bad, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_print, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_round_trip, clear_env, clear_env),
	        cmocka_unit_test_setup_teardown(test_round_trip_leading_semicolon, clear_env,
	                                        clear_env),
	        cmocka_unit_test_setup_teardown(test_load_file, clear_env, clear_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
