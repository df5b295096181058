/* Unit tests: state_dir's record (warm_state.h): parsing from tables (what is accepted, what is
 * not ours), formatting and parsing back, the judgement for a boot (whose record, which bake
 * inputs), the bake fingerprint's inputs, and load/save/mark on files in a temporary
 * directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runnerd_config.h"
#include "util.h"
#include "warm_state.h"

#define IID "i-0fa4e0000000000001"

struct pcase {
	const char *what;
	const char *text;
	int want_r;
	const char *instance_id;
	const char *bake;
	uint64_t prepared_ms, agent_started_ms, packages_ms;
};

/* clang-format off */
static const struct pcase pcases[] = {
	{"a prepared record", "version=1\ninstance_id=" IID "\nbake=0123456789abcdef\n"
	 "prepared_ms=1704088800000\npackages_ms=3000\nagent_install_ms=1250\nagent_started_ms=0\n",
	 0, IID, "0123456789abcdef", 1704088800000ull, 0, 3000},
	{"an agent ran", "# comment\nversion=1\ninstance_id=" IID "\nagent_started_ms=17\n",
	 0, IID, "", 0, 17, 0},
	{"CRLF and no final newline", "version=1\r\ninstance_id=" IID "\r\nprepared_ms=5",
	 0, IID, "", 5, 0, 0},
	{"a newer runnerd's key is ignored", "version=1\ninstance_id=" IID "\nfuture=x\n",
	 0, IID, "", 0, 0, 0},
	{"blank lines", "\n\nversion=1\n\ninstance_id=" IID "\n\n", 0, IID, "", 0, 0, 0},
	{"no version", "instance_id=" IID "\n", -EBADMSG, NULL, NULL, 0, 0, 0},
	{"a newer version", "version=2\ninstance_id=" IID "\n", -EBADMSG, NULL, NULL, 0, 0, 0},
	{"version 0", "version=0\ninstance_id=" IID "\n", -EBADMSG, NULL, NULL, 0, 0, 0},
	{"no instance", "version=1\nprepared_ms=5\n", -EBADMSG, NULL, NULL, 0, 0, 0},
	{"a line without =", "version=1\ninstance_id=" IID "\nhello\n", -EBADMSG, NULL, NULL,
	 0, 0, 0},
	{"an empty key", "version=1\n=5\ninstance_id=" IID "\n", -EBADMSG, NULL, NULL, 0, 0, 0},
	{"a negative time", "version=1\ninstance_id=" IID "\nprepared_ms=-5\n", -EBADMSG,
	 NULL, NULL, 0, 0, 0},
	{"a number too long", "version=1\ninstance_id=" IID "\nprepared_ms=12345678901234567890\n",
	 -EBADMSG, NULL, NULL, 0, 0, 0},
	{"an empty number", "version=1\ninstance_id=" IID "\nagent_started_ms=\n", -EBADMSG,
	 NULL, NULL, 0, 0, 0},
	{"an instance id with a slash", "version=1\ninstance_id=i-0/../x\n", -EBADMSG, NULL,
	 NULL, 0, 0, 0},
	{"an instance id too long", "version=1\ninstance_id=i-0123456789abcdef0123456789abcdef\n",
	 -EBADMSG, NULL, NULL, 0, 0, 0},
	{"a bake that is not hex", "version=1\ninstance_id=" IID "\nbake=xyz\n", -EBADMSG, NULL,
	 NULL, 0, 0, 0},
	{"an empty file", "", -EBADMSG, NULL, NULL, 0, 0, 0},
};
/* clang-format on */

static void test_parse(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(pcases); i++) {
		const struct pcase *c = &pcases[i];
		struct warm_state st;
		int r = warm_state_parse(c->text, strlen(c->text), &st);

		if (r != c->want_r) {
			print_error("case %zu (%s): %d, want %d\n", i, c->what, r, c->want_r);
			fail();
		}
		if (r < 0)
			continue;
		assert_string_equal(st.instance_id, c->instance_id);
		assert_string_equal(st.bake, c->bake);
		assert_int_equal(st.prepared_ms, c->prepared_ms);
		assert_int_equal(st.agent_started_ms, c->agent_started_ms);
		assert_int_equal(st.packages_ms, c->packages_ms);
	}
	/* A NUL inside, or more than the file may hold: not ours. */
	{
		static const char nul[] = "version=1\ninstance_id=" IID "\0\n";
		char big[WARM_STATE_MAX + 2];
		struct warm_state st;

		assert_int_equal(warm_state_parse(nul, sizeof(nul) - 1, &st), -EBADMSG);
		memset(big, '#', sizeof(big));
		assert_int_equal(warm_state_parse(big, sizeof(big), &st), -EBADMSG);
	}
}

static void test_round_trip(void **state)
{
	struct warm_state a = {.prepared_ms = 1704088800000ull,
	                       .packages_ms = 3000,
	                       .agent_install_ms = 1250,
	                       .agent_started_ms = 1704088900000ull},
	                  b;
	char text[WARM_STATE_MAX];

	str_copy(a.instance_id, IID, sizeof(a.instance_id));
	str_copy(a.bake, "00ff00ff00ff00ff", sizeof(a.bake));
	assert_int_equal(warm_state_format(&a, text, sizeof(text)), 0);
	assert_int_equal(warm_state_parse(text, strlen(text), &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(warm_state_format(&a, text, 40), -ENOSPC);
}

struct jcase {
	const char *what;
	const char *record_iid; /* NULL: no record */
	uint64_t prepared_ms, agent_started_ms;
	const char *record_bake, *bake;
	bool used, prepared;
};

/* clang-format off */
static const struct jcase jcases[] = {
	{"no record", NULL, 0, 0, "", "aaaa", false, false},
	{"prepared for these inputs", IID, 5, 0, "aaaa", "aaaa", false, true},
	{"prepared for other inputs (the config changed)", IID, 5, 0, "aaaa", "bbbb", false, false},
	{"not prepared", IID, 0, 0, "aaaa", "aaaa", false, false},
	{"an agent ran", IID, 0, 7, "", "aaaa", true, false},
	{"prepared, then an agent ran", IID, 5, 7, "aaaa", "aaaa", true, true},
	{"another instance's record (a copied disk)", "i-0ffffffffffffffff", 5, 7, "aaaa", "aaaa",
	 false, false},
};
/* clang-format on */

static void test_judge(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(jcases); i++) {
		const struct jcase *c = &jcases[i];
		struct warm_state st;
		struct warm_judgement j;

		memset(&st, 0, sizeof(st));
		if (c->record_iid) {
			str_copy(st.instance_id, c->record_iid, sizeof(st.instance_id));
			str_copy(st.bake, c->record_bake, sizeof(st.bake));
			st.prepared_ms = c->prepared_ms;
			st.agent_started_ms = c->agent_started_ms;
		}
		j = warm_state_judge(c->record_iid ? &st : NULL, IID, c->bake);
		if (j.used != c->used || j.prepared != c->prepared) {
			print_error("case %zu (%s): used %d prepared %d\n", i, c->what, j.used,
			            j.prepared);
			fail();
		}
	}
	/* No instance id (IMDS disabled): nothing applies. */
	{
		struct warm_state st = {.agent_started_ms = 1};
		struct warm_judgement j = warm_state_judge(&st, "", "");

		assert_false(j.used);
	}
}

static void load_conf(const char *text, struct runnerd_config *c)
{
	char *errors = NULL;

	assert_int_equal(runnerd_config_load_string(text, "test.conf", c, &errors), 0);
	free(errors);
}

/* The fingerprint changes with what the bake work installs, and only with that. */
static void test_fingerprint(void **state)
{
	static const char *const confs[] = {
	        "[packages]\ninstall = git\n",
	        "[packages]\ninstall = git nodejs\n",
	        "[packages]\ninstall = gitn odejs\n",
	        "[agent]\nbinary = /opt/agent\n",
	        "[agent]\ndownload_url = https://x/a.tar.gz\nsha256 = " /* 64 hex */
	        "0000000000000000000000000000000000000000000000000000000000000000\n",
	};
	char fp[ARRAY_SIZE(confs)][WARM_BAKE_HEX + 1], again[WARM_BAKE_HEX + 1];
	struct runnerd_config c;

	for (size_t i = 0; i < ARRAY_SIZE(confs); i++) {
		load_conf(confs[i], &c);
		warm_bake_fingerprint(&c, fp[i]);
		assert_int_equal(strlen(fp[i]), WARM_BAKE_HEX);
		for (size_t k = 0; k < i; k++)
			assert_string_not_equal(fp[i], fp[k]);
		runnerd_config_free(&c);
	}
	/* Not the token, the lifecycle or the agent's name. */
	load_conf("[packages]\ninstall = git\n[token]\nid = other\n[lifecycle]\nlaunch_hook = h\n"
	          "[agent]\nname = x-%i\n",
	          &c);
	warm_bake_fingerprint(&c, again);
	assert_string_equal(again, fp[0]);
	runnerd_config_free(&c);
}

static void test_files(void **state)
{
	char dir[] = "/tmp/rd-warm-XXXXXX", sub[64], path[96];
	struct warm_state st;
	struct stat sb;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/state", dir);
	snprintf(path, sizeof(path), "%s/%s", sub, WARM_STATE_FILE);
	assert_int_equal(warm_state_load(sub, &st), -ENOENT);
	/* The bake work, then the agent: one record, both kept. */
	assert_int_equal(warm_state_mark_prepared(sub, IID, "0123456789abcdef", 100, 3, 4), 0);
	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(warm_state_mark_agent(sub, IID, 200), 0);
	assert_int_equal(warm_state_load(sub, &st), 0);
	assert_string_equal(st.instance_id, IID);
	assert_string_equal(st.bake, "0123456789abcdef");
	assert_int_equal(st.prepared_ms, 100);
	assert_int_equal(st.packages_ms, 3);
	assert_int_equal(st.agent_install_ms, 4);
	assert_int_equal(st.agent_started_ms, 200);
	/* Another instance's disk: its record is replaced, not merged. */
	assert_int_equal(warm_state_mark_agent(sub, "i-0ffffffffffffffff", 300), 0);
	assert_int_equal(warm_state_load(sub, &st), 0);
	assert_string_equal(st.instance_id, "i-0ffffffffffffffff");
	assert_int_equal(st.prepared_ms, 0);
	assert_int_equal(st.agent_started_ms, 300);
	assert_int_equal(warm_state_mark_agent(sub, "", 300), -EINVAL);
	/* Garbage is not a record. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("hello\n", f);
	fclose(f);
	assert_int_equal(warm_state_load(sub, &st), -EBADMSG);
	/* ... and marking over it starts afresh. */
	assert_int_equal(warm_state_mark_agent(sub, IID, 400), 0);
	assert_int_equal(warm_state_load(sub, &st), 0);
	assert_int_equal(st.agent_started_ms, 400);
	unlink(path);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/a", dir);
	rmdir(sub);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse), cmocka_unit_test(test_round_trip),
	        cmocka_unit_test(test_judge), cmocka_unit_test(test_fingerprint),
	        cmocka_unit_test(test_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
