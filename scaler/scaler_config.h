/* scaler.conf: the schema of runner-scaler.conf(5) on lib/config.h, plus the checks that need
 * more than one key (min <= max, one pool per ASG, election needs a table, ...). */
#ifndef RUNNERD_SCALER_CONFIG_H
#define RUNNERD_SCALER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define SCALER_CONFIG_DEFAULT "/etc/runnerd/scaler.conf"
#define SCALER_MAX_POOLS      4096

enum scaler_log_format {
	SCALER_LOG_TEXT,
	SCALER_LOG_JSON,
};

enum scaler_token_source {
	TOKEN_SECRETSMANAGER,
	TOKEN_SSM,
	TOKEN_FILE,
	TOKEN_ENV,
};

enum scaler_election_mode {
	ELECTION_MODE_NONE,
	ELECTION_MODE_DYNAMODB,
};

struct scaler_section {
	uint64_t interval_ms;
	char *metrics; /* textfile path or NULL */
	uint64_t request_timeout_ms;
	char *listen;   /* "HOST:PORT" or NULL */
	int log_format; /* enum scaler_log_format */
};

struct circleci_section {
	char *api_url;
	int token_source; /* enum scaler_token_source */
	char *token_id;   /* NULL: CIRCLE_TOKEN for env, else an error */
	char *token_key;
};

enum az_rebalance { AZ_REBALANCE_SUSPEND, AZ_REBALANCE_LEAVE };

struct pool_section {
	char *name;
	char *resource_class;
	char *asg;
	char *region; /* NULL: the scaler's own region */
	int64_t min, max, headroom, max_step;
	int64_t launch_failures; /* failed launches in a row before a back-off; 0: detection off */
	int az_rebalance;     /* enum az_rebalance: suspend the group's AZRebalance, or leave it */
	char *warm_pool_text; /* warm_pool as written: "" unset */
	int64_t warm_pool;    /* from it: instances to keep prepared; -1: not managed */
};

struct election_section {
	int mode; /* enum scaler_election_mode */
	char *table;
	char *name;
	uint64_t lease_ms;
};

struct scaler_config {
	struct cfg *cfg; /* owns every string below */
	struct scaler_section *scaler;
	struct circleci_section *circleci;
	struct election_section *election;
	struct pool_section **pools;
	size_t npools;
};

/* Load and validate. 0; -EINVAL with *errors (caller frees) holding "FILE:LINE: key: reason"
 * lines; other -errno (-ENOENT: no such file). out is untouched unless 0 is returned. */
int scaler_config_load(const char *path, struct scaler_config *out, char **errors);
int scaler_config_load_string(const char *text, const char *display_name, struct scaler_config *out,
                              char **errors);
void scaler_config_free(struct scaler_config *c);

/* check-config output: the effective config as INI, secrets as <redacted>. */
int scaler_config_print(const struct scaler_config *c, FILE *out);

/* The token variable for token_source = env ("CIRCLE_TOKEN" unless token_id says otherwise). */
const char *scaler_token_env_name(const struct circleci_section *cc);
const char *scaler_token_source_name(int source);

/* Pure: warm_pool's value: "" is -1 (not managed), else 0 to 100000 instances. 0 or -EINVAL. */
int scaler_parse_warm_pool(const char *s, int64_t *out);

/* Pure: "HOST:PORT" / "[V6]:PORT" / ":PORT" into host (empty = any) and port. 0 or -EINVAL. */
int scaler_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
