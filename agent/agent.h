/* Everything specific to the CircleCI agent: the two flavours, the YAML config (every value a
 * safely quoted scalar), name expansion, download + SHA-256 verification, the child's argv/env. */
#ifndef RUNNERD_AGENT_H
#define RUNNERD_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "tarball.h"

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
	const char *task_agent_directory; /* machine runner 3 (required, absolute) */
	const char *ssh_advertise_addr;   /* expanded host:port, NULL or "" = leave out */
	const char *log_level;            /* NULL or "" = leave out */
};

/* The port the agent's rerun-with-SSH listens on (CircleCI's, fixed). */
#define AGENT_SSH_PORT "54782"

/* Expand %H (short hostname: up to the first dot), %i (instance id) and %% in pattern; then
 * characters outside [A-Za-z0-9.()_-] become '-'. 0, -EINVAL (unknown %x), -ENAMETOOLONG.
 * Also -EINVAL for a lone trailing '%', %H/%i with a NULL or empty value, or an empty result. */
int agent_expand_name(const char *pattern, const char *hostname, const char *instance_id, char *out,
                      size_t n);

/* Expand [agent] ssh_advertise_addr: %I the instance's private IPv4, %P its public one, %%;
 * AGENT_SSH_PORT appended when no port is given. 0, -EINVAL (bad escape or character, a bare
 * IPv6 address), -ENOENT (%I or %P asked for but NULL/empty: no such address), -ENAMETOOLONG. */
int agent_expand_advertise(const char *pattern, const char *private_ip, const char *public_ip,
                           char *out, size_t n);

/* The working directory the flavour gets: launch-agent appends "/%s" unless it holds "%s". */
int agent_working_directory(const struct agent_settings *s, char *out, size_t n);

/* Render the agent's YAML into out. Every value is a double-quoted YAML scalar with escapes, so
 * quotes, '#', ':' or newlines in a token or name cannot add or change keys. Durations are Go
 * style ("1m", "5h", "5h15m"). Machine runner 3 always gets runner.task_agent_directory, the
 * launch-agent runner.disable_auto_update: true. out should be wiped by the caller (it holds the
 * token). Appends to out. 0; -EINVAL (NULL/empty token or user, NULL name/mode, bad flavour, a
 * machine runner 3 without an absolute task_agent_directory, or any value
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

/* Fetch the agent binary: download url (https, or http on loopback/explicit), streamed into a
 * 0600 temp file beside dest while its SHA-256 is computed, at most max_download bytes; verify
 * the digest of the download against sha256_hex (64 hex, any case); then either the download is
 * the binary, or it is CircleCI's release tarball (the URL's path ends in .tar.gz or .tgz, or
 * the download starts with gzip's magic) and the regular-file member named as dest's basename is
 * taken out of it (tarball.h, limits in tar). The result is made 0755 (owned by the caller,
 * root) and renamed to dest; no temp file is left behind (and those an earlier, killed attempt
 * left are removed first), and nothing unverified ever becomes executable.
 * 0; otherwise -errno with why (n bytes) naming the problem: -EBADMSG digest mismatch (or a
 * corrupt archive), -ENOENT HTTP 404/410 or no such member, -EACCES 401/403, -EAGAIN 429 or
 * 5xx (*retry_after_s set from Retry-After when given, else -1), -EBADR another status, -EPERM
 * an unsafe archive (links, devices, absolute or ".." names), -EFBIG over a limit, -EINVAL bad
 * arguments; transport errors as http_perform. */
struct http_client;
struct agent_fetch {
	const char *url; /* expanded: no %a left */
	bool explicit_url;
	const char *sha256_hex;
	const char *dest;
	uint64_t max_download;
	struct tar_limits tar;
	long timeout_ms;
	bool raw;            /* the download is the file, whatever its URL ends in or starts with */
	unsigned mode;       /* of the result; 0 = 0755 (a binary) */
	long *retry_after_s; /* or NULL: the server's Retry-After on -EAGAIN, -1 when none */
};

/* Write data to path atomically (temp file beside it, fsync, rename), mode `mode`, owned by the
 * caller. Parents are created 0755. 0 or -errno. */
int agent_write_file(const char *path, const char *data, size_t len, unsigned mode);
int agent_fetch(struct http_client *http, const struct agent_fetch *f, char *why, size_t n);

/* Pure: is agent_fetch's result worth another attempt (a timeout, a refused or broken
 * connection, HTTP 429 or 5xx: -EAGAIN)? Never a digest mismatch, an unsafe archive, a 404, a
 * status the server will only repeat (-EBADR). */
bool agent_fetch_retryable(int r);
/* Pure: does the URL's path (query and fragment aside) end in .tar.gz or .tgz? */
bool agent_url_is_tarball(const char *url);
/* Pure: expand %a (the architecture: amd64 | arm64) in a download URL. A '%' followed by 'a' and
 * a hex digit ("%a0"), and every other '%', is the URL's own percent-encoding and stays as it
 * is. 0, -EINVAL (%a without an arch), -ENAMETOOLONG. */
int agent_expand_url(const char *pattern, const char *arch, char *out, size_t n);
/* Pure: does the URL pattern use %a? */
bool agent_url_has_arch(const char *pattern);
/* Pure: the digest [agent] sha256 gives for arch: the value itself when it is one digest (64
 * hex), else the entry "ARCH:HEX" of a list of them separated by commas or blanks
 * ("amd64:..., arm64:..."). out gets 64 hex and a NUL. 0; -ENOENT (a list without arch, or arch
 * NULL); -EINVAL (malformed: a bad digest, an entry without "ARCH:", one arch twice). */
int agent_pick_sha256(const char *value, const char *arch, char out[65]);
/* Pure: CircleCI's name for a uname(2) machine ("x86_64" -> "amd64", "aarch64" -> "arm64"),
 * NULL when CircleCI ships no agent for it. */
const char *agent_arch_name(const char *machine);

/* Is the SHA-256 of the file at path hex (64 hex)? 0 yes; -EBADMSG no; -EFBIG larger than max
 * bytes; -EINVAL a bad hex; -errno reading. */
int agent_file_sha256_matches(const char *path, const char *hex, uint64_t max);

/* Pure: compare a computed digest against hex. */
bool agent_sha256_matches(const unsigned char digest[32], const char *hex);

#endif
