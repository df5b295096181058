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

/* Pure. The drop-in that keeps a unit from starting while unless_path exists (runnerd's own
 * executable): a comment saying who wrote it and how to undo it, then "[Unit]" and
 * "ConditionPathExists=!UNLESS_PATH". 0; -EINVAL (not an absolute path, or a character systemd
 * would read as syntax); -ENAMETOOLONG. */
int apt_hold_text(const char *unless_path, char *out, size_t n);

/* Write that drop-in as etc/systemd/system/UNIT.d/50-runnerd.conf under root ("" or NULL = /).
 * Unlike a mask, a start (a postinst's `systemctl enable --now`, a boot, an operator) succeeds
 * and runs nothing, so a strict maintainer script still installs; and it can be written before
 * the package that ships UNIT exists. 1 when written, 0 when it was already there as written,
 * -errno. */
int apt_hold_unit(const char *root, const char *unit, const char *unless_path);

/* Does runnerd's package hold UNIT already? It ships the same drop-in as
 * /lib/systemd/system/UNIT.d/50-runnerd.conf (packaging/systemd/), for /usr/sbin/runnerd, so
 * that the vendor's units are held from the moment runnerd is installed, and released when it
 * is removed. */
bool apt_unit_held_by_package(const char *root, const char *unit);

/* Does a unit file for UNIT exist under root in /etc, /usr/lib or /lib/systemd/system? */
bool apt_unit_installed(const char *root, const char *unit);

#endif
