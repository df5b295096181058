/* runnerd.conf schema and the checks that span keys (runnerd.conf(5) documents every key). */
#include "runnerd_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "agent.h"
#include "buf.h"
#include "util.h"

#define DAY_MS (24ull * 3600 * 1000)

static const char *const flavours[] = {"circleci-runner", "launch-agent", NULL};
static const char *const modes[] = {"single-task", "continuous", NULL};
static const char *const sources[] = {"secretsmanager", "ssm", "file", NULL};
static const char *const on_exits[] = {"poweroff", "exit", NULL};
/* "" leaves logging.level out: the agent's default (info). */
static const char *const log_levels[] = {"", "debug", "info", "warn", "error", NULL};

#define K(sect, field) offsetof(struct sect, field)

static const struct cfg_key agent_keys[] = {
        {"flavour", CFG_ENUM, K(rd_agent_conf, flavour), "circleci-runner", flavours, 0, 0, 0,
         NULL},
        {"binary", CFG_STRING, K(rd_agent_conf, binary), "/usr/bin/circleci-runner", NULL, 0, 0,
         CFG_REQUIRED, NULL},
        {"config_path", CFG_STRING, K(rd_agent_conf, config_path),
         "/etc/circleci-runner/circleci-runner-config.yaml", NULL, 0, 0, CFG_REQUIRED, NULL},
        {"name", CFG_STRING, K(rd_agent_conf, name), "%H-%i", NULL, 0, 0, CFG_REQUIRED, NULL},
        {"user", CFG_STRING, K(rd_agent_conf, user), "circleci", NULL, 0, 0, CFG_REQUIRED, NULL},
        {"working_directory", CFG_STRING, K(rd_agent_conf, working_directory),
         "/var/lib/circleci-runner/workdir", NULL, 0, 0, CFG_REQUIRED, NULL},
        {"cleanup_working_directory", CFG_BOOL, K(rd_agent_conf, cleanup_working_directory), "true",
         NULL, 0, 0, 0, NULL},
        {"mode", CFG_ENUM, K(rd_agent_conf, mode), "single-task", modes, 0, 0, 0, NULL},
        /* 0 = never: the agent's own default. */
        {"idle_timeout", CFG_DURATION, K(rd_agent_conf, idle_timeout_ms), "1m", NULL, 0,
         (int64_t)(365 * DAY_MS), 0, NULL},
        {"max_run_time", CFG_DURATION, K(rd_agent_conf, max_run_time_ms), "5h", NULL, 1000,
         (int64_t)(365 * DAY_MS), 0, NULL},
        {"api_url", CFG_STRING, K(rd_agent_conf, api_url), "", NULL, 0, 0, 0,
         "CIRCLECI_RUNNER_API_URL"},
        {"download_url", CFG_STRING, K(rd_agent_conf, download_url), "", NULL, 0, 0, 0, NULL},
        {"sha256", CFG_STRING, K(rd_agent_conf, sha256), "", NULL, 0, 0, 0, NULL},
        /* The package route: the vendor's Debian package from its apt repository. */
        {"package", CFG_STRING, K(rd_agent_conf, package), "", NULL, 0, 0, 0, NULL},
        {"apt_source", CFG_STRING, K(rd_agent_conf, apt_source), "", NULL, 0, 0, 0, NULL},
        {"apt_keyring", CFG_STRING, K(rd_agent_conf, apt_keyring), "", NULL, 0, 0, 0, NULL},
        {"apt_keyring_sha256", CFG_STRING, K(rd_agent_conf, apt_keyring_sha256), "", NULL, 0, 0, 0,
         NULL},
        /* Machine runner 3 downloads its task agent here and runs it as the job user. */
        {"task_agent_directory", CFG_STRING, K(rd_agent_conf, task_agent_directory),
         RD_TASK_AGENT_DIRECTORY_DEFAULT, NULL, 0, 0, CFG_REQUIRED, NULL},
        {"ssh_advertise_addr", CFG_STRING, K(rd_agent_conf, ssh_advertise_addr), "", NULL, 0, 0, 0,
         NULL},
        {"log_level", CFG_ENUM, K(rd_agent_conf, log_level), "", log_levels, 0, 0, 0, NULL},
};

static const struct cfg_key token_keys[] = {
        {"source", CFG_ENUM, K(rd_token_conf, source), "secretsmanager", sources, 0, 0, 0, NULL},
        {"id", CFG_STRING, K(rd_token_conf, id), "cci-runner-secrets", NULL, 0, 0, CFG_REQUIRED,
         NULL},
        {"key", CFG_STRING, K(rd_token_conf, key), "runner_token", NULL, 0, 0, 0, NULL},
};

static const struct cfg_key packages_keys[] = {
        {"install", CFG_LIST, K(rd_packages_conf, install), NULL, NULL, 0, 0, 0, NULL},
        {"lock_timeout", CFG_DURATION, K(rd_packages_conf, lock_timeout_ms), "5m", NULL, 0,
         (int64_t)DAY_MS, 0, NULL},
        {"retries", CFG_INT, K(rd_packages_conf, retries), "3", NULL, 1, 20, 0, NULL},
};

static const struct cfg_key lifecycle_keys[] = {
        {"on_exit", CFG_ENUM, K(rd_lifecycle_conf, on_exit), "poweroff", on_exits, 0, 0, 0, NULL},
        {"leave_asg", CFG_BOOL, K(rd_lifecycle_conf, leave_asg), "true", NULL, 0, 0, 0, NULL},
        {"poweroff_command", CFG_STRING, K(rd_lifecycle_conf, poweroff_command), "", NULL, 0, 0, 0,
         NULL},
        {"boot_deadline", CFG_DURATION, K(rd_lifecycle_conf, boot_deadline_ms), "10m", NULL, 1000,
         (int64_t)(7 * DAY_MS), 0, NULL},
        {"drain_timeout", CFG_DURATION, K(rd_lifecycle_conf, drain_timeout_ms), "5h15m", NULL, 100,
         (int64_t)(365 * DAY_MS), 0, NULL},
        /* Below 100 ms the poll would be a busy loop against IMDS. */
        {"notice_interval", CFG_DURATION, K(rd_lifecycle_conf, notice_interval_ms), "5s", NULL, 100,
         (int64_t)DAY_MS, 0, NULL},
        /* Warm pools (runnerd.conf(5), WARM POOLS): the hook's name, and where the records that
         * must survive a stop and start live. */
        {"launch_hook", CFG_STRING, K(rd_lifecycle_conf, launch_hook), "", NULL, 0, 0, 0, NULL},
        {"state_dir", CFG_STRING, K(rd_lifecycle_conf, state_dir), RD_STATE_DIR_DEFAULT, NULL, 0, 0,
         CFG_REQUIRED, NULL},
};

static const struct cfg_key control_keys[] = {
        {"socket", CFG_STRING, K(rd_control_conf, socket), "/run/runnerd/control.sock", NULL, 0, 0,
         CFG_REQUIRED, NULL},
        {"group", CFG_STRING, K(rd_control_conf, group), "adm", NULL, 0, 0, 0, NULL},
};

#define SECTION(n, keys, type)                                                                     \
	{                                                                                          \
		n, false, keys, ARRAY_SIZE(keys), sizeof(struct type), 0, 0                        \
	}

static const struct cfg_section schema[] = {
        SECTION("agent", agent_keys, rd_agent_conf),
        SECTION("token", token_keys, rd_token_conf),
        SECTION("packages", packages_keys, rd_packages_conf),
        SECTION("lifecycle", lifecycle_keys, rd_lifecycle_conf),
        SECTION("control", control_keys, rd_control_conf),
};

const char *rd_flavour_name(int flavour)
{
	return flavour >= 0 && flavour < 2 ? flavours[flavour] : "unknown";
}

const char *rd_mode_name(int mode)
{
	return mode >= 0 && mode < 2 ? modes[mode] : "unknown";
}

const char *rd_log_level_name(int level)
{
	return level > 0 && level < 5 ? log_levels[level] : "";
}

const char *rd_token_source_name(int source)
{
	return source >= 0 && source < 3 ? sources[source] : "unknown";
}

/* One validation message. The position is the line the key was set on; a default or an
 * environment value has none, so the message names the section (or the variable) instead,
 * like lib/config's own "required" errors. */
static int add_err(struct buf *b, const struct runnerd_config *c, const void *data,
                   const char *section, const char *key, const char *env, const char *fmt, ...)
        __attribute__((format(printf, 7, 8)));

static int add_err(struct buf *b, const struct runnerd_config *c, const void *data,
                   const char *section, const char *key, const char *env, const char *fmt, ...)
{
	unsigned line = cfg_line(c->cfg, data, key);
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (line)
		return buf_printf(b, "%s:%u: %s: %s\n", cfg_path(c->cfg), line, key, why);
	if (env && getenv(env) && *getenv(env))
		return buf_printf(b, "ENV:%s: %s: %s\n", env, key, why);
	return buf_printf(b, "%s: [%s] %s: %s\n", cfg_path(c->cfg), section, key, why);
}

static bool is_hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return i == 64;
}

/* "/a/b": absolute, no empty, "." or ".." component, no trailing '/' (but "/" itself). */
static bool is_plain_abs_path(const char *p)
{
	if (p[0] != '/')
		return false;
	if (p[1] == '\0')
		return true;
	for (const char *c = p; *c;) {
		size_t len;

		c++; /* past the '/' */
		len = strcspn(c, "/");
		if (len == 0 || (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += len;
	}
	return true;
}

/* Directories every user can write into. */
static bool is_shared_dir(const char *p)
{
	static const char *const shared[] = {"/", "/tmp", "/var/tmp", "/dev/shm", "/run/lock"};

	for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++)
		if (strcmp(p, shared[i]) == 0)
			return true;
	return false;
}

static bool is_url(const char *s)
{
	return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

/* A user name safe as the argument of sudo -u: no option look-alike, no spaces or controls. */
static bool is_user_name(const char *s)
{
	size_t i;

	if (!*s || *s == '-' || strlen(s) > 32)
		return false;
	for (i = 0; s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!isalnum(ch) && ch != '_' && ch != '-' && ch != '.')
			return false;
	}
	return true;
}

/* AWS's pattern for LifecycleHookName: [A-Za-z0-9\-_\/]+, 1 to 255 characters. */
static bool is_hook_name(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '/')
			return false;
	}
	return i >= 1 && i <= 255;
}

#define ERR(data, sect, key, env, ...)                                                             \
	do {                                                                                       \
		if (add_err(&b, c, data, sect, key, env, __VA_ARGS__) < 0)                         \
			goto oom;                                                                  \
		n++;                                                                               \
	} while (0)

int runnerd_config_validate(const struct runnerd_config *c, char **errors)
{
	const struct rd_agent_conf *a = c->agent;
	const struct rd_token_conf *t = c->token;
	const struct rd_control_conf *ctl = c->control;
	char name[256], url[2048];
	struct buf b;
	int n = 0, r;

	buf_init(&b, 0);
	if (*errors && buf_append_str(&b, *errors) < 0)
		goto oom;

	if (a->binary[0] != '/')
		ERR(a, "agent", "binary", NULL, "must be an absolute path");
	if (a->config_path[0] != '/')
		ERR(a, "agent", "config_path", NULL, "must be an absolute path");
	if (a->working_directory[0] != '/')
		ERR(a, "agent", "working_directory", NULL, "must be an absolute path");
	/* Expand with stand-ins: this catches unknown %x escapes and names that expand to nothing.
	 */
	r = agent_expand_name(a->name, "ip-10-0-0-1", "i-0123456789abcdef0", name, sizeof(name));
	if (r == -EINVAL)
		ERR(a, "agent", "name", NULL, "unknown %% escape (use %%H, %%i or %%%%)");
	else if (r < 0)
		ERR(a, "agent", "name", NULL, "too long");
	if (!is_user_name(a->user))
		ERR(a, "agent", "user", NULL,
		    "must be a user name (letters, digits, '.', '_', '-'; not starting with '-')");
	if (*a->api_url && !is_url(a->api_url))
		ERR(a, "agent", "api_url", "CIRCLECI_RUNNER_API_URL",
		    "must be an http:// or https:// URL");
	if (*a->download_url && !is_url(a->download_url))
		ERR(a, "agent", "download_url", NULL, "must be an http:// or https:// URL");
	if (*a->download_url && !*a->sha256)
		ERR(a, "agent", "download_url", NULL,
		    "requires sha256 (the agent binary's SHA-256)");
	if (*a->sha256 && agent_pick_sha256(a->sha256, "", url) == -EINVAL)
		ERR(a, "agent", "sha256", NULL,
		    "want the download's SHA-256 (64 hexadecimal characters), or one per "
		    "architecture: amd64:HEX, arm64:HEX");
	if (*a->download_url && agent_expand_url(a->download_url, "ppc64le", url, sizeof(url)) < 0)
		ERR(a, "agent", "download_url", NULL, "too long");
	/* One digest per architecture only makes sense for a URL that differs by architecture. */
	if (*a->download_url && *a->sha256 && !agent_url_has_arch(a->download_url) &&
	    agent_pick_sha256(a->sha256, "", url) == -ENOENT)
		ERR(a, "agent", "sha256", NULL,
		    "one digest per architecture, but download_url has no %%a: every machine would "
		    "download the same file");
	if (!is_plain_abs_path(a->task_agent_directory))
		ERR(a, "agent", "task_agent_directory", NULL,
		    "must be an absolute path without \".\", \"..\", \"//\" or a trailing /");
	else if (is_shared_dir(a->task_agent_directory))
		ERR(a, "agent", "task_agent_directory", NULL,
		    "%s is shared with every user; name a directory of runnerd's own "
		    "(the default is %s)",
		    a->task_agent_directory, RD_TASK_AGENT_DIRECTORY_DEFAULT);
	if (*a->package) {
		if (*a->download_url)
			ERR(a, "agent", "package", NULL,
			    "either package (the vendor's .deb) or download_url, not both");
		if (a->package[0] == '-' || strpbrk(a->package, " \t/"))
			ERR(a, "agent", "package", NULL, "\"%s\" is not a package name",
			    a->package);
		if (a->flavour != RD_FLAVOUR_CIRCLECI_RUNNER)
			ERR(a, "agent", "package", NULL,
			    "only for flavour = circleci-runner (CircleCI ships no launch-agent "
			    "package)");
		if (!*a->apt_source)
			ERR(a, "agent", "package", NULL,
			    "requires apt_source (the repository: URI SUITE COMPONENT...)");
		if (!*a->apt_keyring)
			ERR(a, "agent", "package", NULL,
			    "requires apt_keyring (the repository's signing key: a path or an "
			    "https:// URL)");
	}
	if (*a->apt_source) {
		if (!*a->package)
			ERR(a, "agent", "apt_source", NULL, "only with package");
		else if (strncmp(a->apt_source, "https://", 8) != 0 ||
		         strpbrk(a->apt_source, "[]#\t\r\n") || !strchr(a->apt_source + 8, ' '))
			ERR(a, "agent", "apt_source", NULL,
			    "want \"https://HOST/PATH SUITE COMPONENT...\" (runnerd adds deb and "
			    "signed-by)");
	}
	if (*a->apt_keyring) {
		if (strncmp(a->apt_keyring, "https://", 8) == 0) {
			if (!*a->apt_keyring_sha256)
				ERR(a, "agent", "apt_keyring", NULL,
				    "a URL requires apt_keyring_sha256 (the key file's SHA-256)");
		} else if (a->apt_keyring[0] != '/' || strpbrk(a->apt_keyring, " \t[]")) {
			ERR(a, "agent", "apt_keyring", NULL,
			    "must be an absolute path (without blanks or brackets) or an https:// "
			    "URL");
		}
	}
	if (*a->apt_keyring_sha256 && !is_hex64(a->apt_keyring_sha256))
		ERR(a, "agent", "apt_keyring_sha256", NULL, "must be 64 hexadecimal characters");
	if (a->log_level && a->flavour != RD_FLAVOUR_CIRCLECI_RUNNER)
		ERR(a, "agent", "log_level", NULL,
		    "only for flavour = circleci-runner (the launch-agent has no level setting)");
	if (*a->ssh_advertise_addr && agent_expand_advertise(a->ssh_advertise_addr, "10.0.0.1",
	                                                     "203.0.113.1", url, sizeof(url)) < 0)
		ERR(a, "agent", "ssh_advertise_addr", NULL,
		    "want HOST[:PORT] (PORT 1-65535), where %%I is the private and %%P the public "
		    "IPv4 address");
	for (size_t i = 0; i < c->packages->install.n; i++) {
		/* apt-get would take it for an option. */
		if (c->packages->install.items[i][0] == '-')
			ERR(c->packages, "packages", "install", NULL,
			    "\"%s\" is not a package name", c->packages->install.items[i]);
	}
	if (*c->lifecycle->launch_hook && !is_hook_name(c->lifecycle->launch_hook))
		ERR(c->lifecycle, "lifecycle", "launch_hook", NULL,
		    "want a lifecycle hook name (1-255 of letters, digits, '-', '_', '/')");
	if (!is_plain_abs_path(c->lifecycle->state_dir))
		ERR(c->lifecycle, "lifecycle", "state_dir", NULL,
		    "must be an absolute path without \".\", \"..\", \"//\" or a trailing /");
	else if (is_shared_dir(c->lifecycle->state_dir))
		ERR(c->lifecycle, "lifecycle", "state_dir", NULL,
		    "%s is shared with every user; name a directory of runnerd's own (the default "
		    "is %s)",
		    c->lifecycle->state_dir, RD_STATE_DIR_DEFAULT);
	if (t->source == RD_TOKEN_FILE && t->id[0] != '/')
		ERR(t, "token", "id", NULL, "source = file needs an absolute path");
	if (ctl->socket[0] != '/')
		ERR(ctl, "control", "socket", NULL, "must be an absolute path");
	else if (strlen(ctl->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		ERR(ctl, "control", "socket", NULL, "path too long for a Unix socket");

	free(*errors);
	*errors = NULL;
	if (n) {
		*errors = b.data;
		b.data = NULL;
	}
	buf_free(&b);
	return n;
oom:
	buf_free(&b);
	return -ENOMEM;
}

static int finish(struct cfg *cfg, struct runnerd_config *out, char **errors)
{
	struct runnerd_config c = {
	        .cfg = cfg,
	        .agent = cfg_get(cfg, "agent"),
	        .token = cfg_get(cfg, "token"),
	        .packages = cfg_get(cfg, "packages"),
	        .lifecycle = cfg_get(cfg, "lifecycle"),
	        .control = cfg_get(cfg, "control"),
	};
	int r;

	r = runnerd_config_validate(&c, errors);
	if (r != 0) {
		cfg_free(cfg);
		return r < 0 ? r : -EINVAL;
	}
	*out = c;
	return 0;
}

int runnerd_config_load(const char *path, struct runnerd_config *out, char **errors)
{
	struct cfg *cfg = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	*errors = NULL;
	r = cfg_load_file(schema, ARRAY_SIZE(schema), path, &cfg, errors);
	if (r < 0)
		return r;
	return finish(cfg, out, errors);
}

int runnerd_config_load_string(const char *text, const char *display_name,
                               struct runnerd_config *out, char **errors)
{
	struct cfg *cfg = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	*errors = NULL;
	r = cfg_load_string(schema, ARRAY_SIZE(schema), text, display_name, &cfg, errors);
	if (r < 0)
		return r;
	return finish(cfg, out, errors);
}

void runnerd_config_free(struct runnerd_config *c)
{
	if (!c)
		return;
	cfg_free(c->cfg);
	memset(c, 0, sizeof(*c));
}
