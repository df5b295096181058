/* posix_spawn + a pidfd to wait with a timeout on one child (see spawn.h). */
#include "subproc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

extern char **environ;

void spawn_child_env(char *const *src, char **out, size_t max)
{
	/* systemd's hand-over to runnerd itself: a child that found them would speak for
	 * runnerd's unit (sd_notify) or take its sockets. */
	static const char *const drop[] = {"NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=",
	                                   "LISTEN_FDS=",    "LISTEN_PID=",   "LISTEN_FDNAMES="};
	size_t n = 0;

	for (; src && *src && n + 1 < max; src++) {
		bool keep = true;

		for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]) && keep; i++)
			keep = strncmp(*src, drop[i], strlen(drop[i])) != 0;
		if (keep)
			out[n++] = *src;
	}
	out[n] = NULL;
}

int spawn_status_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 255;
}

/* Read what is there; keep reading past the buffer's limit so the child never blocks on a full
 * pipe, but drop the excess. Returns 1 at EOF, 0 otherwise. */
static int drain(int fd, struct buf *b)
{
	char tmp[4096];
	ssize_t n;

	for (;;) {
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return 1;
		if (n < 0)
			return errno == EAGAIN ? 0 : 1;
		if (b)
			(void)buf_append(b, tmp, (size_t)n);
	}
}

static int wait_child(pid_t pid, int capfd, struct buf *capture, long timeout_ms, int *status)
{
	uint64_t deadline = timeout_ms > 0 ? now_mono_ms() + (uint64_t)timeout_ms : 0;
	int pidfd = pidfd_open(pid, 0);
	bool exited = false, eof = capfd < 0;
	int ws = 0, r = 0;

	if (pidfd < 0) {
		/* Kernels before 5.3: no timeout, but still only this pid. */
		while (!eof) {
			struct pollfd p = {capfd, POLLIN, 0};

			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				break;
			eof = drain(capfd, capture) != 0;
		}
		while (waitpid(pid, &ws, 0) < 0) {
			if (errno != EINTR)
				return -errno;
		}
		*status = spawn_status_code(ws);
		return 0;
	}
	while (!exited || !eof) {
		struct pollfd fds[2] = {{pidfd, POLLIN, 0}, {capfd, POLLIN, 0}};
		int wait_ms = -1;

		if (exited) {
			/* The child is gone; a grandchild may keep the pipe open: take what is
			 * there and stop. */
			(void)drain(capfd, capture);
			break;
		}
		if (deadline) {
			uint64_t now = now_mono_ms();

			if (now >= deadline) {
				(void)kill(pid, SIGKILL);
				r = -ETIMEDOUT;
				deadline = 0;
				continue;
			}
			wait_ms = (int)(deadline - now);
		}
		if (poll(fds, eof ? 1 : 2, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			(void)kill(pid, SIGKILL);
			exited = true; /* reap below */
			break;
		}
		if (!eof && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
			eof = drain(capfd, capture) != 0;
		if (fds[0].revents & POLLIN)
			exited = true;
	}
	close(pidfd);
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return r ? r : -errno;
	}
	*status = spawn_status_code(ws);
	return r;
}

/* A pipe that already holds all of input, its write end closed: the child reads it to EOF. Input
 * of at most PIPE_BUF bytes fits any pipe, so the write never blocks. -errno. */
static int input_pipe(const char *input, size_t len)
{
	int p[2], r;
	size_t off = 0;

	if (len > PIPE_BUF)
		return -E2BIG;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(p[1], input + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			close(p[0]);
			close(p[1]);
			return r;
		}
		off += (size_t)n;
	}
	close(p[1]);
	return p[0];
}

int spawn_run(const char *const argv[], const struct spawn_opts *o, int *status)
{
	char *envp[SPAWN_ENV_MAX];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int pfd[2] = {-1, -1};
	int in = -1;
	pid_t pid;
	int r;

	*status = -1;
	if (o->input) {
		in = input_pipe(o->input, o->input_len);
		if (in < 0)
			return in;
	}
	if (o->capture && pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = -errno;
		if (in >= 0)
			close(in);
		return r;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	/* runnerd blocks every signal for its signalfd; a helper must not inherit that. */
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (in >= 0)
		posix_spawn_file_actions_adddup2(&fa, in, 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (o->capture) {
		/* The write end is O_NONBLOCK too; make it blocking for the child. */
		(void)fcntl(pfd[1], F_SETFL, 0);
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	} else if (o->stdout_to_stderr) {
		posix_spawn_file_actions_adddup2(&fa, 2, 1);
	}
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawn_file_actions_addchdir_np(&fa, "/");
	spawn_child_env(o->envp ? o->envp : environ, envp, SPAWN_ENV_MAX);
	if (o->search_path)
		r = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, envp);
	else
		r = posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (in >= 0)
		close(in);
	if (r != 0) {
		r = -r;
		goto out;
	}
	r = wait_child(pid, pfd[0], o->capture, o->timeout_ms, status);
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	return r;
}
