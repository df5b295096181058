/* Unit tests: runnerd.conf — defaults, a full good file, each bad value, unknown keys,
 * the cross-key checks, the one environment override, and print -> re-parse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runnerd_config.h"
#include "util.h"

#define SHA "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"

static const char good[] = "[agent]\n"
                           "flavour = launch-agent\n"
                           "binary = /opt/circleci/circleci-launch-agent\n"
                           "config_path = /etc/opt/circleci/launch-agent-config.yaml\n"
                           "name = ci-%H-%i\n"
                           "user = builder\n"
                           "working_directory = /opt/circleci/workdir\n"
                           "cleanup_working_directory = false\n"
                           "mode = continuous\n"
                           "idle_timeout = 0\n"
                           "max_run_time = 2h\n"
                           "api_url = https://runner.example.com\n"
                           "download_url = https://example.com/agent\n"
                           "sha256 = " SHA "\n"
                           "[token]\n"
                           "source = ssm\n"
                           "id = /ci/runner-token\n"
                           "key =\n"
                           "[packages]\n"
                           "install = nodejs, npm git\n"
                           "lock_timeout = 30s\n"
                           "retries = 5\n"
                           "[lifecycle]\n"
                           "on_exit = exit\n"
                           "leave_asg = false\n"
                           "poweroff_command = /sbin/shutdown -h now\n"
                           "boot_deadline = 15m\n"
                           "drain_timeout = 1h\n"
                           "notice_interval = 2s\n"
                           "[control]\n"
                           "socket = /run/r/c.sock\n"
                           "group = wheel\n";

static void test_defaults(void **state)
{
	struct runnerd_config c;
	char *errs = NULL;

	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(runnerd_config_load_string("", "empty.conf", &c, &errs), 0);
	assert_null(errs);
	assert_int_equal(c.agent->flavour, RD_FLAVOUR_CIRCLECI_RUNNER);
	assert_string_equal(c.agent->binary, "/usr/bin/circleci-runner");
	assert_string_equal(c.agent->config_path,
	                    "/etc/circleci-runner/circleci-runner-config.yaml");
	assert_string_equal(c.agent->name, "%H-%i");
	assert_string_equal(c.agent->user, "circleci");
	assert_string_equal(c.agent->working_directory, "/var/lib/circleci-runner/workdir");
	assert_true(c.agent->cleanup_working_directory);
	assert_int_equal(c.agent->mode, RD_MODE_SINGLE_TASK);
	assert_int_equal(c.agent->idle_timeout_ms, 60000);
	assert_int_equal(c.agent->max_run_time_ms, 5 * 3600000ull);
	assert_string_equal(c.agent->api_url, "");
	assert_string_equal(c.agent->download_url, "");
	assert_string_equal(c.agent->sha256, "");
	assert_int_equal(c.token->source, RD_TOKEN_SECRETSMANAGER);
	assert_string_equal(c.token->id, "cci-runner-secrets");
	assert_string_equal(c.token->key, "runner_token");
	assert_int_equal(c.packages->install.n, 0);
	assert_int_equal(c.packages->lock_timeout_ms, 300000);
	assert_int_equal(c.packages->retries, 3);
	assert_int_equal(c.lifecycle->on_exit, RD_ON_EXIT_POWEROFF);
	assert_true(c.lifecycle->leave_asg);
	assert_string_equal(c.lifecycle->poweroff_command, "");
	assert_int_equal(c.lifecycle->boot_deadline_ms, 600000);
	assert_int_equal(c.lifecycle->drain_timeout_ms, (5 * 60 + 15) * 60000ull);
	assert_int_equal(c.lifecycle->notice_interval_ms, 5000);
	assert_string_equal(c.lifecycle->launch_hook, "");
	assert_string_equal(c.lifecycle->state_dir, "/var/lib/runnerd");
	assert_string_equal(c.control->socket, "/run/runnerd/control.sock");
	assert_string_equal(c.control->group, "adm");
	assert_string_equal(rd_flavour_name(c.agent->flavour), "circleci-runner");
	assert_string_equal(rd_mode_name(c.agent->mode), "single-task");
	assert_string_equal(rd_token_source_name(c.token->source), "secretsmanager");
	runnerd_config_free(&c);
}

static void test_good(void **state)
{
	struct runnerd_config c, c2;
	char *errs = NULL, *printed = NULL, *printed2 = NULL;
	size_t plen = 0, plen2 = 0;
	FILE *f;

	unsetenv("CIRCLECI_RUNNER_API_URL");
	assert_int_equal(runnerd_config_load_string(good, "good.conf", &c, &errs), 0);
	assert_null(errs);
	assert_int_equal(c.agent->flavour, RD_FLAVOUR_LAUNCH_AGENT);
	assert_string_equal(c.agent->name, "ci-%H-%i");
	assert_false(c.agent->cleanup_working_directory);
	assert_int_equal(c.agent->mode, RD_MODE_CONTINUOUS);
	assert_int_equal(c.agent->idle_timeout_ms, 0);
	assert_int_equal(c.agent->max_run_time_ms, 2 * 3600000ull);
	assert_string_equal(c.agent->sha256, SHA);
	assert_int_equal(c.token->source, RD_TOKEN_SSM);
	assert_string_equal(c.token->key, "");
	assert_int_equal(c.packages->install.n, 3);
	assert_string_equal(c.packages->install.items[2], "git");
	assert_int_equal(c.packages->retries, 5);
	assert_int_equal(c.lifecycle->on_exit, RD_ON_EXIT_EXIT);
	assert_false(c.lifecycle->leave_asg);
	assert_string_equal(c.lifecycle->poweroff_command, "/sbin/shutdown -h now");
	assert_int_equal(c.lifecycle->notice_interval_ms, 2000);
	assert_string_equal(c.control->group, "wheel");

	/* check-config's output re-parses to the same config, and shows real values. */
	f = open_memstream(&printed, &plen);
	assert_non_null(f);
	assert_int_equal(cfg_print(c.cfg, f), 0);
	fclose(f);
	assert_non_null(strstr(printed, "sha256 = " SHA));
	assert_non_null(strstr(printed, "id = /ci/runner-token"));
	assert_null(strstr(printed, "<redacted>"));
	assert_int_equal(runnerd_config_load_string(printed, "printed.conf", &c2, &errs), 0);
	f = open_memstream(&printed2, &plen2);
	assert_int_equal(cfg_print(c2.cfg, f), 0);
	fclose(f);
	assert_string_equal(printed, printed2);
	free(printed);
	free(printed2);
	runnerd_config_free(&c2);
	runnerd_config_free(&c);
}

struct bad {
	const char *text;
	const char *want; /* a substring of the error text */
};

static const struct bad bads[] = {
        {"[agent]\nflavour = docker\n", "bad.conf:2: flavour"},
        {"[agent]\nmode = forever\n", "bad.conf:2: mode"},
        {"[token]\nsource = vault\n", "bad.conf:2: source"},
        {"[lifecycle]\non_exit = reboot\n", "bad.conf:2: on_exit"},
        {"[lifecycle]\nleave_asg = maybe\n", "bad.conf:2: leave_asg"},
        {"[lifecycle]\nboot_deadline = 0\n", "bad.conf:2: boot_deadline"},
        {"[lifecycle]\nboot_deadline = soon\n", "bad.conf:2: boot_deadline"},
        {"[lifecycle]\ndrain_timeout = 0s\n", "bad.conf:2: drain_timeout"},
        {"[lifecycle]\nnotice_interval = 10ms\n", "bad.conf:2: notice_interval"},
        /* warm pools: a hook name as AWS spells them, a state directory of runnerd's own */
        {"[lifecycle]\nlaunch_hook = my hook\n", "bad.conf:2: launch_hook"},
        {"[lifecycle]\nlaunch_hook = h;x\n", "bad.conf:2: launch_hook"},
        {"[lifecycle]\nlaunch_hook = "
         "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
         "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
         "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
         "\n",
         "bad.conf:2: launch_hook"},
        {"[lifecycle]\nstate_dir = var/lib/runnerd\n", "bad.conf:2: state_dir"},
        {"[lifecycle]\nstate_dir = /var/lib/runnerd/\n", "bad.conf:2: state_dir"},
        {"[lifecycle]\nstate_dir = /tmp\n", "bad.conf:2: state_dir: /tmp is shared"},
        {"[lifecycle]\nstate_dir =\n", "bad.conf:2: state_dir"},
        {"[agent]\nmax_run_time = 0\n", "bad.conf:2: max_run_time"},
        {"[agent]\nidle_timeout = -1m\n", "bad.conf:2: idle_timeout"},
        {"[packages]\nretries = 0\n", "bad.conf:2: retries"},
        {"[packages]\nretries = lots\n", "bad.conf:2: retries"},
        {"[agent]\nuser =\n", "bad.conf:2: user"},
        {"[agent]\nuser = -oops\n", "bad.conf:2: user"},
        {"[agent]\nuser = bob smith\n", "bad.conf:2: user"},
        {"[agent]\nname = %H-%x\n", "bad.conf:2: name"},
        {"[agent]\nname =\n", "bad.conf:2: name"},
        {"[agent]\nbinary = circleci-runner\n", "bad.conf:2: binary"},
        {"[agent]\nconfig_path = relative.yaml\n", "bad.conf:2: config_path"},
        {"[agent]\nworking_directory = work\n", "bad.conf:2: working_directory"},
        {"[agent]\napi_url = runner.circleci.com\n", "bad.conf:2: api_url"},
        /* the sha256 rules */
        {"[agent]\ndownload_url = https://example.com/a\n", "bad.conf:2: download_url: requires"},
        {"[agent]\ndownload_url = https://example.com/a\nsha256 = abc\n", "bad.conf:3: sha256"},
        {"[agent]\nsha256 = " SHA "0\n", "bad.conf:2: sha256"},
        {"[agent]\nsha256 = "
         "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
         "bad.conf:2: sha256"},
        {"[agent]\ndownload_url = ftp://example.com/a\nsha256 = " SHA "\n",
         "bad.conf:2: download_url"},
        {"[agent]\nsha256 = x86_64:" SHA "\n", "bad.conf:2: sha256"},
        {"[agent]\nsha256 = amd64:" SHA ", amd64:" SHA "\n", "bad.conf:2: sha256"},
        {"[agent]\nsha256 = amd64 " SHA "\n", "bad.conf:2: sha256"},
        {"[agent]\ndownload_url = https://h/a.tgz\nsha256 = amd64:" SHA ", arm64:" SHA "\n",
         "bad.conf:3: sha256: one digest per architecture, but download_url has no %a"},
        /* task_agent_directory: absolute, plain, not a directory every user shares */
        {"[agent]\ntask_agent_directory = rel/dir\n", "bad.conf:2: task_agent_directory"},
        {"[agent]\ntask_agent_directory = /tmp\n",
         "bad.conf:2: task_agent_directory: /tmp is shared"},
        {"[agent]\ntask_agent_directory = /var/tmp\n", "bad.conf:2: task_agent_directory"},
        {"[agent]\ntask_agent_directory = /\n", "bad.conf:2: task_agent_directory"},
        {"[agent]\ntask_agent_directory = /opt/../tmp\n", "bad.conf:2: task_agent_directory"},
        {"[agent]\ntask_agent_directory = /opt//x\n", "bad.conf:2: task_agent_directory"},
        {"[agent]\ntask_agent_directory = /opt/x/\n", "bad.conf:2: task_agent_directory"},
        {"[agent]\ntask_agent_directory = /opt/./x\n", "bad.conf:2: task_agent_directory"},
        /* the package route */
        {"[agent]\npackage = circleci-runner\n", "bad.conf:2: package: requires apt_source"},
        {"[agent]\npackage = circleci-runner\napt_source = https://r.example/d any main # x\n"
         "apt_keyring = /k.gpg\n",
         "bad.conf:3: apt_source"},
        {"[agent]\npackage = circleci-runner\napt_source = https://r.example/d\tany main\n"
         "apt_keyring = /k.gpg\n",
         "bad.conf:3: apt_source"},
        {"[agent]\npackage = circleci-runner\napt_source = http://r.example/d any main\n"
         "apt_keyring = /k.gpg\n",
         "bad.conf:3: apt_source"},
        {"[agent]\npackage = circleci-runner\napt_source = https://r.example/d any main\n"
         "apt_keyring = /my keys/k.gpg\n",
         "bad.conf:4: apt_keyring"},
        {"[agent]\npackage = circleci-runner\napt_source = https://r.example/d any main\n"
         "apt_keyring = https://r.example/k.gpg\n",
         "bad.conf:4: apt_keyring: a URL requires apt_keyring_sha256"},
        {"[agent]\npackage = -oops\n", "bad.conf:2: package"},
        {"[agent]\nflavour = launch-agent\npackage = circleci-runner\n", "package: only for"},
        /* ssh_advertise_addr's port, log_level's flavour */
        {"[agent]\nssh_advertise_addr = %I:0\n", "bad.conf:2: ssh_advertise_addr"},
        {"[agent]\nssh_advertise_addr = %I:65536\n", "bad.conf:2: ssh_advertise_addr"},
        {"[agent]\nssh_advertise_addr = %I:ssh\n", "bad.conf:2: ssh_advertise_addr"},
        {"[agent]\nflavour = launch-agent\nlog_level = debug\n", "bad.conf:3: log_level"},
        {"[token]\nsource = file\nid = token.txt\n", "bad.conf:3: id"},
        {"[token]\nid =\n", "bad.conf:2: id"},
        {"[control]\nsocket = control.sock\n", "bad.conf:2: socket"},
        {"[control]\nsocket = /run/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaa"
         "aaaaaaaaaaaaaaaaaaaa/c.sock\n",
         "bad.conf:2: socket"},
        /* unknown keys and sections, syntax */
        {"[agent]\nflavor = circleci-runner\n", "bad.conf:2: flavor"},
        {"[tokens]\nid = x\n", "bad.conf:1"},
        {"[lifecycle]\nboot_deadline\n", "bad.conf:2"},
};

static void test_bad(void **state)
{
	size_t i;

	unsetenv("CIRCLECI_RUNNER_API_URL");
	for (i = 0; i < ARRAY_SIZE(bads); i++) {
		struct runnerd_config c;
		char *errs = NULL;
		int r = runnerd_config_load_string(bads[i].text, "bad.conf", &c, &errs);

		if (r != -EINVAL || !errs || !strstr(errs, bads[i].want)) {
			print_error("case %zu (%s): r=%d errors=%s; want %s\n", i, bads[i].text, r,
			            errs ? errs : "(none)", bads[i].want);
			fail();
		}
		assert_null(c.cfg);
		free(errs);
	}
}

/* What the agent keys accept. */
static void test_agent_keys_good(void **state)
{
	static const char *const goods[] = {
	        "[agent]\nsha256 = amd64:" SHA ", arm64:" SHA "\n",
	        "[agent]\nsha256 = arm64:" SHA "\n",
	        "[agent]\ndownload_url = https://h/circleci-runner_linux_%a.tar.gz?sig=%a0%2F\n"
	        "sha256 = " SHA "\n",
	        "[agent]\ntask_agent_directory = /tmp/libexec/circleci\n",
	        "[agent]\ntask_agent_directory = /opt/circleci/task-agent\n",
	        "[agent]\nssh_advertise_addr = %P:65535\nlog_level = debug\n",
	        "[lifecycle]\nlaunch_hook = runner-launch/v2_x\nstate_dir = /srv/runnerd-state\n",
	        "[agent]\npackage = circleci-runner=3.1.4\n"
	        "apt_source = https://packagecloud.io/circleci/runner/any any main\n"
	        "apt_keyring = https://packagecloud.io/circleci/runner/gpgkey\n"
	        "apt_keyring_sha256 = " SHA "\n",
	        "[agent]\npackage = circleci-runner\n"
	        "apt_source = https://r.example/d any main\n"
	        "apt_keyring = /usr/share/keyrings/circleci.gpg\napt_keyring_sha256 = " SHA "\n",
	};

	unsetenv("CIRCLECI_RUNNER_API_URL");
	for (size_t i = 0; i < ARRAY_SIZE(goods); i++) {
		struct runnerd_config c;
		char *errs = NULL;
		int r = runnerd_config_load_string(goods[i], "good.conf", &c, &errs);

		if (r != 0) {
			print_error("case %zu (%s): r=%d errors=%s\n", i, goods[i], r,
			            errs ? errs : "(none)");
			fail();
		}
		runnerd_config_free(&c);
		free(errs);
	}
}

/* Several problems are all reported, one line each. */
static void test_many_errors(void **state)
{
	struct runnerd_config c;
	char *errs = NULL;
	const char *text = "[agent]\nbinary = rel\nsha256 = xyz\n[control]\nsocket = rel.sock\n";
	size_t lines = 0;
	const char *p;

	assert_int_equal(runnerd_config_load_string(text, "m.conf", &c, &errs), -EINVAL);
	assert_non_null(errs);
	for (p = errs; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 3);
	assert_non_null(strstr(errs, "m.conf:2: binary: "));
	assert_non_null(strstr(errs, "m.conf:3: sha256: "));
	assert_non_null(strstr(errs, "m.conf:5: socket: "));
	free(errs);
}

static void test_env_override(void **state)
{
	struct runnerd_config c;
	char *errs = NULL;

	setenv("CIRCLECI_RUNNER_API_URL", "http://127.0.0.1:9/", 1);
	assert_int_equal(runnerd_config_load_string("[agent]\napi_url = https://a.example\n",
	                                            "env.conf", &c, &errs),
	                 0);
	assert_string_equal(c.agent->api_url, "http://127.0.0.1:9/");
	runnerd_config_free(&c);

	setenv("CIRCLECI_RUNNER_API_URL", "not-a-url", 1);
	assert_int_equal(runnerd_config_load_string("", "env.conf", &c, &errs), -EINVAL);
	assert_non_null(errs);
	assert_non_null(strstr(errs, "ENV:CIRCLECI_RUNNER_API_URL: api_url: "));
	free(errs);
	errs = NULL;

	/* No other key of runnerd.conf reads the environment. */
	unsetenv("CIRCLECI_RUNNER_API_URL");
	setenv("AWS_REGION", "eu-west-1", 1);
	assert_int_equal(runnerd_config_load_string("", "env.conf", &c, &errs), 0);
	assert_string_equal(c.agent->api_url, "");
	runnerd_config_free(&c);
	unsetenv("AWS_REGION");
}

static void test_missing_file(void **state)
{
	struct runnerd_config c;
	char *errs = NULL;

	assert_int_equal(runnerd_config_load("/nonexistent/runnerd.conf", &c, &errs), -ENOENT);
	assert_null(errs);
	assert_null(c.cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_good),
	        cmocka_unit_test(test_bad),          cmocka_unit_test(test_agent_keys_good),
	        cmocka_unit_test(test_many_errors),  cmocka_unit_test(test_env_override),
	        cmocka_unit_test(test_missing_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
