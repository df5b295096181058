/* The boot steps of runnerd (metadata, credentials, token, packages, agent-install,
 * agent-config) and the polls of IMDS. They block (network, apt), so they run in runnerd's
 * worker thread, each on that thread's own boot_ctx. Each step returns 0 or -errno and leaves a
 * one-line reason in ctx->err; they log progress and retries, never the token. */
#ifndef RUNNERD_BOOT_H
#define RUNNERD_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws.h"
#include "buf.h"
#include "http.h"
#include "imds.h"
#include "runnerd_config.h"

#define BOOT_TOKEN_FILE_MAX (64 * 1024)

enum lifecycle_kind {
	LC_IN_SERVICE, /* InService, or no target state at all (not in an ASG lifecycle) */
	LC_WARMED,     /* Warmed:Stopped, Warmed:Running, Warmed:Hibernated */
	LC_TERMINATED, /* Terminated, Warmed:Terminated: AWS is ending the instance */
	LC_OTHER,      /* Detached, Standby, ...: carry on as in service */
};

struct boot_ctx {
	const struct runnerd_config *conf; /* read-only, shared */
	struct http_client *http;
	struct imds imds;
	struct aws_ctx aws;
	bool have_creds;
	char instance_id[32]; /* "" when IMDS is disabled */
	char region[32];
	char lifecycle_state[40];  /* "" = none */
	char group[256];           /* the Auto Scaling group, once launch-hook asked (or "") */
	struct buf token;          /* wiped after agent-config */
	uint64_t deadline_mono_ms; /* the current step's (0 = none): bounds its retry sleeps and
	                            * AWS calls; set and cleared per worker job */
	char err[256];
};

/* instance_id/region: what is already known (or NULL). 0 or -ENOMEM. */
int boot_ctx_init(struct boot_ctx *b, const struct runnerd_config *conf, const char *instance_id,
                  const char *region);
void boot_ctx_free(struct boot_ctx *b); /* wipes the token and credentials */

/* Pure: what a target-lifecycle-state means for runnerd ("" = none = in service). */
enum lifecycle_kind boot_classify_state(const char *state);

/* The vendor's own unit for the flavour (circleci-runner.service, or circleci.service for the
 * launch-agent) is kept from starting by a drop-in (apt.h) when the package route is set or
 * the unit is on the machine, and killed and stopped if it runs: the one agent is runnerd's.
 * boot_metadata does this first; `runnerd prepare` too. */
int boot_hold_vendor_agent(struct boot_ctx *b);
int boot_metadata(struct boot_ctx *b);
int boot_credentials(struct boot_ctx *b);
int boot_token(struct boot_ctx *b);
int boot_packages(struct boot_ctx *b);
int boot_agent_install(struct boot_ctx *b);
int boot_agent_config(struct boot_ctx *b);

/* Pure: trim surrounding whitespace of a token file in place; 0, or -EINVAL when empty or when it
 * holds a NUL byte. */
int boot_token_trim(struct buf *t);

/* One IMDS read of the target lifecycle state ("" when none). */
int boot_poll_state(struct boot_ctx *b, char *state, size_t n);
/* spot/instance-action: 0 with action, -ENOENT when none. */
int boot_poll_spot(struct boot_ctx *b, struct spot_action *out);

/* mkdir -p of path's parent directory; the directories it makes get exactly mode (umask aside).
 * 0 or -errno. */
int boot_mkdir_parent(const char *path, unsigned mode);

#endif
