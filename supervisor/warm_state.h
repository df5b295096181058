/* What runnerd keeps in [lifecycle] state_dir across a stop and start (warm pools): the bake
 * work done in the pool, and that an agent already ran on this instance. One small text file,
 * STATE_DIR/runnerd.state, written atomically; every record names the instance it belongs to,
 * so a disk copied into an image (an AMI made from a used instance) means nothing on another
 * instance. The parsing, formatting and judging are pure (table-tested); load and save touch
 * the file and never log. */
#ifndef RUNNERD_WARM_STATE_H
#define RUNNERD_WARM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runnerd_config.h"

#define WARM_STATE_FILE    "runnerd.state"
#define WARM_STATE_MAX     4096 /* the file is about 250 bytes; a larger one is not ours */
#define WARM_BAKE_HEX      16   /* characters of the bake fingerprint */
#define WARM_STATE_VERSION 1

struct warm_state {
	char instance_id[32];
	char bake[WARM_BAKE_HEX + 1]; /* fingerprint of the bake inputs the work was done for */
	uint64_t prepared_ms;         /* epoch ms the bake work was done in the pool; 0: not */
	uint64_t packages_ms;         /* how long the packages phase took then */
	uint64_t agent_install_ms;    /* and agent-install */
	uint64_t agent_started_ms;    /* epoch ms an agent started on this instance; 0: never */
};

/* What a record means for a boot of instance_id whose bake inputs have fingerprint bake. */
struct warm_judgement {
	bool used;     /* an agent already ran here: never start another */
	bool prepared; /* the bake work is done for these inputs: skip packages and agent-install */
};

/* Pure. text (len bytes, not NUL-terminated) into *out: "key=value" lines, '#' comments; keys
 * it does not know are ignored (a newer runnerd's), a version above ours or a malformed value
 * is -EBADMSG. */
int warm_state_parse(const char *text, size_t len, struct warm_state *out);
/* Pure. The file's text into out (n bytes): 0, or -ENOSPC. */
int warm_state_format(const struct warm_state *st, char *out, size_t n);
/* Pure. A record of another instance (or none: st NULL) judges nothing. */
struct warm_judgement warm_state_judge(const struct warm_state *st, const char *instance_id,
                                       const char *bake);
/* Pure. The fingerprint of what the bake work installs ([packages] install, the agent's
 * binary, download_url, sha256, package, apt_source): WARM_BAKE_HEX hex characters. */
void warm_bake_fingerprint(const struct runnerd_config *c, char out[WARM_BAKE_HEX + 1]);

/* dir/runnerd.state into *out: 0, -ENOENT (none), -EBADMSG (not a record of ours), -EFBIG, or
 * another -errno. */
int warm_state_load(const char *dir, struct warm_state *out);
/* Write *st as dir/runnerd.state: dir created 0700 (its parents 0755) when missing; temp
 * file, fsync, rename, fsync of dir, so that a stop right after it keeps it. 0 or -errno. */
int warm_state_save(const char *dir, const struct warm_state *st);

/* Read-modify-write of the record for instance_id (another instance's record is replaced):
 * the bake work done for fingerprint bake at now_ms, each phase's duration; or an agent
 * started at now_ms. 0 or -errno (as warm_state_save). */
int warm_state_mark_prepared(const char *dir, const char *instance_id, const char *bake,
                             uint64_t now_ms, uint64_t packages_ms, uint64_t agent_install_ms);
int warm_state_mark_agent(const char *dir, const char *instance_id, uint64_t now_ms);

#endif
