/* Boot steps that handle the runner token: it is read (from a file: no network), written into
 * the agent config 0600, and then gone from runnerd's memory; what a trim drops is wiped. And
 * the boot deadline bounds the token step's calls only, not the calls made after it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "aws_services.h"
#include "boot.h"
#include "loopback_server.h"
#include "runnerd_config.h"
#include "util.h"

#define TOKEN "rt-unit-0123456789abcdef-SECRET"

static char dir[] = "/tmp/test_boot.XXXXXX";
static char token_path[256], config_path[256];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0600), 0);
}

static bool file_has(const char *path, const char *needle)
{
	char text[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return strstr(text, needle) != NULL;
}

static int setup(void **state)
{
	if (!mkdtemp(dir) || chmod(dir, 0755) < 0) /* the job user reaches the task agent dir */
		return -1;
	snprintf(token_path, sizeof(token_path), "%s/token", dir);
	snprintf(config_path, sizeof(config_path), "%s/etc/agent.yaml", dir);
	write_file(token_path, "\n  " TOKEN "  \n\n");
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown(void **state)
{
	char sub[300];

	unlink(token_path);
	unlink(config_path);
	snprintf(sub, sizeof(sub), "%s/etc", dir);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/task-agent", dir);
	rmdir(sub);
	rmdir(dir);
	curl_global_cleanup();
	return 0;
}

static void load(struct runnerd_config *c, const char *config_path_value)
{
	char text[1024];
	char *errs = NULL;

	/* Everything under the test's directory: never the host's /var/lib. */
	snprintf(text, sizeof(text),
	         "[agent]\nconfig_path = %s\nuser = nobody\ntask_agent_directory = %s/task-agent\n"
	         "[token]\nsource = file\nid = %s\n",
	         config_path_value, dir, token_path);
	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(runnerd_config_load_string(text, "unit.conf", c, &errs), 0);
	assert_null(errs);
}

static void test_token_gone_after_agent_config(void **state)
{
	struct runnerd_config c;
	struct boot_ctx b;
	struct stat st;

	load(&c, config_path);
	assert_int_equal(boot_ctx_init(&b, &c, "i-0123456789abcdef0", "us-east-1"), 0);
	assert_int_equal(boot_token(&b), 0);
	assert_non_null(b.token.data);
	assert_string_equal(b.token.data, TOKEN);
	assert_int_equal(boot_mkdir_parent(config_path, 0755), 0);
	assert_int_equal(boot_agent_config(&b), 0);
	/* The token's only copy is the 0600 file now. */
	assert_null(b.token.data);
	assert_int_equal(b.token.len, 0);
	assert_int_equal(stat(config_path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_true(file_has(config_path, TOKEN));
	boot_ctx_free(&b);
	runnerd_config_free(&c);
}

static void test_token_gone_after_failed_agent_config(void **state)
{
	struct runnerd_config c;
	struct boot_ctx b;

	/* A config path that cannot be written: the step fails, the token is wiped all the
	 * same. */
	load(&c, "/dev/null/nope/agent.yaml");
	assert_int_equal(boot_ctx_init(&b, &c, "i-0123456789abcdef0", "us-east-1"), 0);
	assert_int_equal(boot_token(&b), 0);
	assert_non_null(b.token.data);
	assert_true(boot_agent_config(&b) < 0);
	assert_non_null(strstr(b.err, "agent-config"));
	assert_null(strstr(b.err, TOKEN));
	assert_null(b.token.data);
	assert_int_equal(b.token.len, 0);
	boot_ctx_free(&b);
	runnerd_config_free(&c);
}

static void test_ctx_free_wipes(void **state)
{
	struct runnerd_config c;
	struct boot_ctx b;

	load(&c, config_path);
	assert_int_equal(boot_ctx_init(&b, &c, NULL, NULL), 0);
	assert_int_equal(boot_token(&b), 0);
	assert_non_null(b.token.data);
	strcpy(b.aws.creds.secret, "secret-access-key");
	strcpy(b.imds.token, "imds-session-token");
	boot_ctx_free(&b);
	assert_null(b.token.data);
	assert_int_equal(b.aws.creds.secret[0], '\0');
	assert_int_equal(b.imds.token[0], '\0');
	runnerd_config_free(&c);
}

static void test_trim_wipes_the_dropped_bytes(void **state)
{
	static const char in[] = "  \t" TOKEN " \n\n\n";
	size_t i, old_len = sizeof(in) - 1;
	struct buf t;

	buf_init(&t, 1024);
	assert_int_equal(buf_append(&t, in, old_len), 0);
	assert_int_equal(boot_token_trim(&t), 0);
	assert_string_equal(t.data, TOKEN);
	/* Nothing of the old layout (a shifted copy of the token's tail) stays behind. */
	for (i = t.len; i < old_len; i++)
		assert_int_equal(t.data[i], 0);
	buf_wipe(&t);
	assert_null(t.data);
}

/* Issue 10: the boot deadline bounds the token step's Secrets Manager call (a hang ends at the
 * deadline) and ends with it: a later call on the same context (the exit path's, say, an hour
 * into the job) still goes out. */
static void test_boot_deadline_ends_with_the_step(void **state)
{
	static const struct ls_response script[] = {
	        {LS_STALL, 0, NULL, NULL, 0},
	        {LS_REPLY, 200, NULL,
	         "<TerminateInstanceInAutoScalingGroupResponse><"
	         "TerminateInstanceInAutoScalingGroupResult>"
	         "<Activity><ActivityId>a</ActivityId></Activity>"
	         "</TerminateInstanceInAutoScalingGroupResult>"
	         "</TerminateInstanceInAutoScalingGroupResponse>",
	         0},
	};
	struct loopback_server srv;
	struct runnerd_config c;
	struct boot_ctx b;
	struct aws_error err;
	char *errs = NULL;
	uint64_t t0;
	int r;

	assert_int_equal(runnerd_config_load_string("[agent]\nuser = nobody\n"
	                                            "[token]\nsource = secretsmanager\nid = s\n",
	                                            "unit.conf", &c, &errs),
	                 0);
	assert_int_equal(ls_start(&srv, script, ARRAY_SIZE(script)), 0);
	setenv("AWS_ENDPOINT_URL", srv.url, 1);
	assert_int_equal(boot_ctx_init(&b, &c, "i-0123456789abcdef0", "us-east-1"), 0);
	str_copy(b.aws.creds.akid, "AKIDTEST", sizeof(b.aws.creds.akid));
	str_copy(b.aws.creds.secret, "secret", sizeof(b.aws.creds.secret));
	b.have_creds = true;
	t0 = now_mono_ms();
	b.deadline_mono_ms = t0 + 300;
	assert_true(boot_token(&b) < 0);
	assert_true(now_mono_ms() - t0 < 5000); /* cut at the deadline, not the 10 s timeout */
	/* The boot is over (its deadline passed); the exit path's call must still go out. */
	b.deadline_mono_ms = 0;
	assert_int_equal(b.aws.cap_mono_ms, 0);
	r = asg_terminate_instance(&b.aws, b.region, b.instance_id, true, &err);
	if (r != 0)
		fail_msg("a call after the boot deadline did not go out: %d %s: %s", r, err.code,
		         err.message);
	ls_stop(&srv);
	unsetenv("AWS_ENDPOINT_URL");
	assert_int_equal(srv.nreqs, 2);
	assert_non_null(strstr(srv.reqs[1].body, "Action=TerminateInstanceInAutoScalingGroup"));
	boot_ctx_free(&b);
	runnerd_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_token_gone_after_agent_config),
	        cmocka_unit_test(test_token_gone_after_failed_agent_config),
	        cmocka_unit_test(test_ctx_free_wipes),
	        cmocka_unit_test(test_boot_deadline_ends_with_the_step),
	        cmocka_unit_test(test_trim_wipes_the_dropped_bytes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
