/* The task agent's directory (machine runner 3's runner.task_agent_directory): the agent writes
 * the task agent there as root and runs it as the job user through command_prefix. So the job
 * user must be able to reach and run it, and must not be able to change it, or anything on the
 * way to it: a job that could would swap the task agent the next job runs, or steer root's
 * writes elsewhere. No logging here: 0 or -errno, and the reason in why. */
#ifndef RUNNERD_TASK_DIR_H
#define RUNNERD_TASK_DIR_H

#include <stddef.h>

/* Make dir ready, or refuse it:
 * - dir is an absolute path; no component of it may be a symbolic link (-ELOOP: name the real
 *   path), walked from / with O_NOFOLLOW so that what is checked is what is used;
 * - every existing component is a directory owned by root (or by runnerd's own user when it
 *   does not run as root); a parent may be writable by group
 *   or others only when sticky (/tmp); every parent is searchable by all users;
 * - missing components are created root's, mode 0755 whatever the umask;
 * - dir itself, when it exists, is not writable by group or others; the read and search bits
 *   it lacks are added (never its owner changed);
 * - dir is not on a noexec mount (-ENOEXEC): the job user could not run the task agent.
 * -EPERM for an owner or mode that would let another user change it, -EACCES for a parent the
 * job user cannot search, -ENOTDIR, -ELOOP, -ENOEXEC, -ENAMETOOLONG, -EINVAL (not absolute),
 * or -errno from the file system; why (n bytes) names the component and the reason. */
int task_dir_prepare(const char *dir, char *why, size_t n);

#endif
