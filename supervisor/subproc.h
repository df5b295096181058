/* Run a helper program (apt-get, dpkg-query, the poweroff command) and wait for THAT child only:
 * the main loop reaps the agent by its pid, so nobody may waitpid(-1). Never logs. */
#ifndef RUNNERD_SUBPROC_H
#define RUNNERD_SUBPROC_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct spawn_opts {
	char *const *envp;     /* NULL = runnerd's environment */
	bool search_path;      /* argv[0] looked up in PATH */
	bool stdout_to_stderr; /* the child's stdout joins runnerd's stderr (the journal) */
	struct buf *capture;   /* or: capture stdout here (bounded by the buf's max) */
	long timeout_ms;       /* <= 0: wait without limit; on expiry the child is SIGKILLed */
	const char *input;     /* or NULL: the child's stdin instead of /dev/null (nft -f -) */
	size_t input_len;      /* at most PIPE_BUF: written whole before the child starts */
};

/* Start argv with signals unblocked and at their defaults, stdin /dev/null (or o->input), fds >=
 * 3 closed, cwd "/". On return *status is the exit code, or 128 + signal. 0; -ETIMEDOUT (killed,
 * *status set); -E2BIG (input over PIPE_BUF); -errno from posix_spawn (-ENOENT: no such program)
 * or waiting. */
int spawn_run(const char *const argv[], const struct spawn_opts *o, int *status);

#define SPAWN_ENV_MAX 512

/* Pure: src without systemd's hand-over to runnerd (NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*), into
 * out (max slots, NULL-terminated; entries point into src). Every child runnerd spawns gets this:
 * apt, dpkg and their scripts must not speak for runnerd's unit. */
void spawn_child_env(char *const *src, char **out, size_t max);

/* Pure: a wait status as runnerd reports it: exit code, or 128 + signal number. */
int spawn_status_code(int wstatus);

#endif
