/* Everything specific to the CircleCI agent: the two flavours, the YAML config (every value a
 * safely quoted scalar), name expansion, download + SHA-256 verification, the child's argv/env. */
#ifndef RUNNERD_AGENT_H
#define RUNNERD_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

enum agent_flavour {
	AGENT_CIRCLECI_RUNNER, /* machine runner 3: `circleci-runner machine -c FILE` */
	AGENT_LAUNCH_AGENT,    /* legacy: `circleci-launch-agent --config FILE` */
};

struct agent_settings {
	enum agent_flavour flavour;
	const char *api_url;           /* NULL or "" = leave api.url out */
	const char *name;              /* already expanded */
	const char *user;              /* job user for command_prefix */
	const char *working_directory; /* as configured; launch-agent gets "/%s" appended */
	bool cleanup_working_directory;
	const char *mode;         /* "single-task" | "continuous" */
	uint64_t idle_timeout_ms; /* 0 = leave out */
	uint64_t max_run_time_ms;
};

/* Expand %H (short hostname: up to the first dot), %i (instance id) and %% in pattern; then
 * characters outside [A-Za-z0-9.()_-] become '-'. 0, -EINVAL (unknown %x), -ENAMETOOLONG.
 * Also -EINVAL for a lone trailing '%', %H/%i with a NULL or empty value, or an empty result. */
int agent_expand_name(const char *pattern, const char *hostname, const char *instance_id, char *out,
                      size_t n);

/* The working directory the flavour gets: launch-agent appends "/%s" unless it holds "%s". */
int agent_working_directory(const struct agent_settings *s, char *out, size_t n);

/* Render the agent's YAML into out. Every value is a double-quoted YAML scalar with escapes, so
 * quotes, '#', ':' or newlines in a token or name cannot add or change keys. Durations are Go
 * style ("1m", "5h", "5h15m"). out should be wiped by the caller (it holds the token).
 * Appends to out. 0; -EINVAL (NULL/empty token or user, NULL name/mode, bad flavour, or any value
 * not valid UTF-8); -ENAMETOOLONG (working directory); -EFBIG/-ENOMEM from buf. On error out is
 * left as it was (the appended part wiped). */
int agent_render_config(const struct agent_settings *s, const char *token, struct buf *out);

/* Write data to path atomically: parent created (0755) when missing; temp file in the same
 * directory with mode 0600, fchown(uid, gid), write, fsync, rename, fsync the directory.
 * uid/gid (uid_t)-1 = leave as the caller. 0 or -errno; no temp file left behind on error. */
int agent_write_file_atomic(const char *path, const char *data, size_t len, uid_t uid, gid_t gid);

/* Go-style duration for YAML: 90000 -> "1m30s", 3600000 -> "1h", 500 -> "500ms". */
void agent_format_go_duration(uint64_t ms, char *out, size_t n);

/* argv for the child (static strings plus config_path; NULL-terminated, at most 6 entries).
 * binary is the configured binary path. */
void agent_argv(enum agent_flavour f, const char *binary, const char *config_path,
                const char *argv[6]);

/* A clean environment for the agent: PATH, LANG=C.UTF-8, HOME=/root, plus the passthrough
 * variables that are safe (TZ, http_proxy/https_proxy/no_proxy and upper-case forms); never
 * AWS_* credentials, never the token. Entries are written into storage (NUL-separated) and
 * pointers into envp (NULL-terminated, capacity max). 0 or -E2BIG. */
int agent_child_env(char *const *parent_env, char *storage, size_t storage_len, char **envp,
                    size_t max);

/* Download url (https, or http on loopback/explicit) into a temp file next to dest, verify its
 * SHA-256 against sha256_hex (64 hex chars, case-insensitive), chmod 0755, rename to dest.
 * Size limit max_bytes. A .tar.gz (by URL suffix) is not supported here: -ENOTSUP.
 * 0; -EBADMSG checksum mismatch (file removed); -EINVAL bad hex; transport as http_perform.
 * A status other than 200: -ENOENT (404, 410), -EACCES (401, 403), -EPROTO (others). */
struct http_client;
int agent_download(struct http_client *http, const char *url, bool explicit_url,
                   const char *sha256_hex, const char *dest, uint64_t max_bytes, long timeout_ms);

/* Pure: compare a computed digest against hex. */
bool agent_sha256_matches(const unsigned char digest[32], const char *hex);

#endif
