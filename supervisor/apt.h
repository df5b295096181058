/* Debian's package tools as runnerd drives them: unattended apt-get, dpkg-query, an apt source
 * of its own, and a drop-in that keeps a package's unit from starting. No logging here: each
 * function returns 0 or -errno (apt's own output goes to runnerd's stderr, the journal). */
#ifndef RUNNERD_APT_H
#define RUNNERD_APT_H

#include <stdbool.h>
#include <stddef.h>

#define APT_ENV_MAX 256

/* The environment apt runs with: runnerd's minus the AWS keys, plus
 * DEBIAN_FRONTEND=noninteractive. envp has max slots; it points into environ. */
void apt_env(char **envp, size_t max);

/* Is pkg installed ("install ok installed")? */
bool apt_pkg_installed(const char *pkg, char **envp);

/* Run apt-get (argv[0] "apt-get", looked up in PATH): its exit status, or -errno when it could
 * not run. Its stdout goes to stderr. */
int apt_run(const char *const *argv, char **envp);

/* The source line runnerd writes for source ("URI SUITE COMPONENT...") signed by keyring:
 * "deb [signed-by=KEYRING] URI SUITE COMPONENT...\n". Pure. 0, -EINVAL (a character apt would
 * read as syntax: '[' ']' '#', a newline or control), -ENAMETOOLONG. */
int apt_source_line(const char *source, const char *keyring, char *out, size_t n);

/* Is this key file ASCII-armoured (apt wants the name to end in .asc then) or binary (.gpg)?
 * Pure, on the file's first bytes. */
bool apt_key_is_armored(const char *data, size_t len);

/* The drop-in that keeps UNIT from starting: etc/systemd/system/UNIT.d/50-runnerd.conf under
 * root ("" or NULL = /), "[Unit] ConditionPathExists=!/etc/runnerd/runnerd.conf" with a comment
 * saying who wrote it and how to undo it. Unlike a mask, a start (a postinst's `systemctl enable
 * --now`, a boot, an operator) succeeds and runs nothing, so a strict maintainer script still
 * installs; and it can be written before the package that ships UNIT exists. 1 when written, 0
 * when it was already there as written, -errno. */
#define APT_HOLD_UNLESS_MISSING "/etc/runnerd/runnerd.conf"
int apt_hold_unit(const char *root, const char *unit);

/* Does a unit file for UNIT exist under root in /etc, /usr/lib or /lib/systemd/system? */
bool apt_unit_installed(const char *root, const char *unit);

#endif
