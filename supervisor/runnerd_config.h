/* runnerd.conf: the schema of DESIGN.md on lib/config.h, plus the checks that span keys
 * (sha256 with download_url, absolute paths, ...). Pure: returns errors, never logs. */
#ifndef RUNNERD_RUNNERD_CONFIG_H
#define RUNNERD_RUNNERD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define RUNNERD_CONF_DEFAULT "/etc/runnerd/runnerd.conf"

/* Enum indexes, in the order of the choices in runnerd_config.c. */
enum rd_flavour { RD_FLAVOUR_CIRCLECI_RUNNER, RD_FLAVOUR_LAUNCH_AGENT };
enum rd_mode { RD_MODE_SINGLE_TASK, RD_MODE_CONTINUOUS };
enum rd_token_source { RD_TOKEN_SECRETSMANAGER, RD_TOKEN_SSM, RD_TOKEN_FILE };
enum rd_on_exit { RD_ON_EXIT_POWEROFF, RD_ON_EXIT_EXIT };

#define RD_TASK_AGENT_DIRECTORY_DEFAULT "/var/lib/circleci-runner/task-agent"
#define RD_STATE_DIR_DEFAULT            "/var/lib/runnerd"

struct rd_agent_conf {
	int flavour; /* enum rd_flavour */
	char *binary;
	char *config_path;
	char *name;
	char *user;
	char *working_directory;
	bool cleanup_working_directory;
	int mode;                 /* enum rd_mode */
	uint64_t idle_timeout_ms; /* 0 = never */
	uint64_t max_run_time_ms;
	char *api_url;      /* "" = leave out; CIRCLECI_RUNNER_API_URL overrides */
	char *download_url; /* "" = never download; %a is the architecture */
	char *sha256;       /* one digest, or "ARCH:HEX, ARCH:HEX" (one per architecture) */
	char *package;      /* "" = no package route */
	char *apt_source;   /* "URI SUITE COMPONENT..." */
	char *apt_keyring;  /* a path, or an https URL with apt_keyring_sha256 */
	char *apt_keyring_sha256;
	char *task_agent_directory; /* root's, 0755: the job user runs the task agent from it */
	char *ssh_advertise_addr;   /* "" = leave out; %I private, %P public IPv4 */
	int log_level;              /* 0 = leave out; else rd_log_level_name() */
};

struct rd_token_conf {
	int source; /* enum rd_token_source */
	char *id;
	char *key; /* secretsmanager only; "" = the whole SecretString */
};

struct rd_packages_conf {
	struct cfg_list install;
	uint64_t lock_timeout_ms;
	int64_t retries;
};

struct rd_lifecycle_conf {
	int on_exit; /* enum rd_on_exit */
	bool leave_asg;
	char *poweroff_command; /* "" = logind PowerOff */
	uint64_t boot_deadline_ms;
	uint64_t drain_timeout_ms;
	uint64_t notice_interval_ms;
	char *launch_hook; /* "" = none: the group's EC2_INSTANCE_LAUNCHING hook runnerd completes
	                    */
	char *state_dir;   /* what survives a stop and start (warm_state.h) */
};

struct rd_control_conf {
	char *socket;
	char *group;
};

/* A loaded and validated config. The section pointers point into cfg (which owns them). */
struct runnerd_config {
	struct cfg *cfg;
	struct rd_agent_conf *agent;
	struct rd_token_conf *token;
	struct rd_packages_conf *packages;
	struct rd_lifecycle_conf *lifecycle;
	struct rd_control_conf *control;
};

/* Load and validate path (text: with display_name). 0; -EINVAL with *errors (caller frees) holding
 * one "FILE:LINE: key: reason" line per problem; other -errno (-ENOENT: no such file) with
 * *errors NULL. On failure out is left zeroed. */
int runnerd_config_load(const char *path, struct runnerd_config *out, char **errors);
int runnerd_config_load_string(const char *text, const char *display_name,
                               struct runnerd_config *out, char **errors);
/* The checks that span keys, on an already parsed config: appends error lines to *errors
 * (allocated when NULL). Returns the number of problems found, or -ENOMEM. */
int runnerd_config_validate(const struct runnerd_config *c, char **errors);
void runnerd_config_free(struct runnerd_config *c);

const char *rd_flavour_name(int flavour);
const char *rd_mode_name(int mode);
const char *rd_token_source_name(int source);
const char *rd_log_level_name(int level); /* "" for 0 (leave out) */

#endif
