/* The boot steps (see boot.h and runnerd(8), BOOT FLOW). */
#include "boot.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "aws_services.h"
#include "creds.h"
#include "log.h"
#include "subproc.h"
#include "util.h"

#define IMDS_ATTEMPTS             5
#define AWS_ATTEMPTS              5
#define AGENT_DOWNLOAD_MAX        ((uint64_t)512 * 1024 * 1024)
#define AGENT_DOWNLOAD_TIMEOUT_MS (10 * 60 * 1000L)
#define DPKG_QUERY_TIMEOUT_MS     60000L
#define APT_ENV_MAX               256

extern char **environ;

static int fail(struct boot_ctx *b, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct boot_ctx *b, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->err, sizeof(b->err), fmt, ap);
	va_end(ap);
	return r < 0 ? r : -EIO;
}

int boot_ctx_init(struct boot_ctx *b, const struct runnerd_config *conf, const char *instance_id,
                  const char *region)
{
	int r;

	memset(b, 0, sizeof(*b));
	b->conf = conf;
	buf_init(&b->token, BOOT_TOKEN_FILE_MAX);
	r = http_client_new(&b->http);
	if (r < 0)
		return r;
	imds_init(&b->imds, b->http);
	b->aws.http = b->http;
	b->aws.max_attempts = AWS_ATTEMPTS;
	if (instance_id)
		str_copy(b->instance_id, instance_id, sizeof(b->instance_id));
	if (region)
		str_copy(b->region, region, sizeof(b->region));
	return 0;
}

void boot_ctx_free(struct boot_ctx *b)
{
	buf_wipe(&b->token);
	creds_wipe(&b->aws.creds);
	imds_clear(&b->imds);
	http_client_free(b->http);
	b->http = NULL;
}

enum lifecycle_kind boot_classify_state(const char *state)
{
	if (!state || !*state || strcmp(state, "InService") == 0)
		return LC_IN_SERVICE;
	if (strcmp(state, "Terminated") == 0 || strcmp(state, "Warmed:Terminated") == 0)
		return LC_TERMINATED;
	if (strncmp(state, "Warmed:", 7) == 0)
		return LC_WARMED;
	return LC_OTHER;
}

static bool transient(int r)
{
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -EPROTO ||
	       r == -ECONNRESET;
}

/* Sleep before retry attempt (0-based) unless that would pass the deadline: false then. */
static bool backoff(struct boot_ctx *b, unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
	uint64_t d = backoff_full_jitter_ms(attempt, base_ms, cap_ms, random_u32());

	if (b->deadline_mono_ms && now_mono_ms() + d >= b->deadline_mono_ms)
		return false;
	sleep_ms(d);
	return true;
}

/* The IMDS request that failed last, for messages: "imds:token (HTTP 500)". */
static const char *imds_call(const struct imds *m, char *out, size_t n)
{
	if (m->last_status)
		snprintf(out, n, "%s (HTTP %ld)", m->last_call[0] ? m->last_call : "imds",
		         m->last_status);
	else
		snprintf(out, n, "%s", m->last_call[0] ? m->last_call : "imds");
	return out;
}

/* IMDS answers at once or not at all early in boot; retry the transport a few times. */
static int imds_retry(struct boot_ctx *b, int (*fn)(struct imds *, char *, size_t), char *out,
                      size_t n)
{
	char call[256];
	unsigned a;
	int r = 0;

	for (a = 0; a < IMDS_ATTEMPTS; a++) {
		r = fn(&b->imds, out, n);
		if (!transient(r) || a + 1 == IMDS_ATTEMPTS || !backoff(b, a, 200, 2000))
			break;
		log_warn("metadata: %s: %s, retrying", imds_call(&b->imds, call, sizeof(call)),
		         strerror(-r));
	}
	return r;
}

int boot_metadata(struct boot_ctx *b)
{
	char call[256];
	int r;

	if (b->imds.disabled) {
		/* Not on EC2 (or told so): no instance id, so no ASG to leave. */
		log_warn("metadata: IMDS disabled (%s): no instance id, no lifecycle notices",
		         b->imds.disabled_reason[0] ? b->imds.disabled_reason : "disabled");
		b->instance_id[0] = '\0';
		b->lifecycle_state[0] = '\0';
		if (aws_region_from_env(b->region, sizeof(b->region)) < 0)
			return fail(b, -ENOENT, "metadata: IMDS disabled and AWS_REGION unset");
		return 0;
	}
	r = imds_retry(b, imds_instance_id, b->instance_id, sizeof(b->instance_id));
	if (r < 0)
		return fail(b, r, "metadata: instance id from IMDS (%s): %s: %s", b->imds.base,
		            imds_call(&b->imds, call, sizeof(call)), strerror(-r));
	/* The SDKs' rule: the environment names the region first. */
	if (aws_region_from_env(b->region, sizeof(b->region)) < 0) {
		r = imds_retry(b, imds_region, b->region, sizeof(b->region));
		if (r < 0)
			return fail(b, r, "metadata: region from IMDS: %s: %s",
			            imds_call(&b->imds, call, sizeof(call)), strerror(-r));
	}
	r = imds_retry(b, imds_target_lifecycle_state, b->lifecycle_state,
	               sizeof(b->lifecycle_state));
	if (r == -ENOENT) {
		/* Never set: the instance is not in an ASG lifecycle; treat as InService. */
		b->lifecycle_state[0] = '\0';
		r = 0;
	}
	if (r < 0)
		return fail(b, r, "metadata: target lifecycle state from IMDS: %s: %s",
		            imds_call(&b->imds, call, sizeof(call)), strerror(-r));
	log_info("metadata: instance %s, region %s, target lifecycle state %s", b->instance_id,
	         b->region, b->lifecycle_state[0] ? b->lifecycle_state : "(none)");
	return 0;
}

int boot_credentials(struct boot_ctx *b)
{
	char call[256];
	unsigned a;
	int r = 0;

	for (a = 0; a < IMDS_ATTEMPTS; a++) {
		b->imds.last_call[0] = '\0';
		r = creds_resolve(&b->aws, b->imds.disabled ? NULL : &b->imds);
		if (!transient(r) || a + 1 == IMDS_ATTEMPTS || !backoff(b, a, 200, 2000))
			break;
		log_warn("credentials: instance role from IMDS: %s: %s, retrying",
		         imds_call(&b->imds, call, sizeof(call)), strerror(-r));
	}
	if (r == -ENOENT)
		return fail(b, r,
		            "credentials: none: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
		            "attach an instance role");
	if (r == -EINVAL)
		return fail(b, r,
		            "credentials: only half of an access key pair in the environment");
	if (r < 0 && b->imds.last_call[0])
		return fail(b, r, "credentials: instance role from IMDS: %s: %s",
		            imds_call(&b->imds, call, sizeof(call)), strerror(-r));
	if (r < 0)
		return fail(b, r, "credentials: %s", strerror(-r));
	b->have_creds = true;
	log_info("credentials: from %s",
	         b->aws.creds.from_imds ? "the instance role" : "the environment");
	return 0;
}

int boot_token_trim(struct buf *t)
{
	size_t start = 0, end = t->len;

	if (!t->data || memchr(t->data, '\0', t->len))
		return -EINVAL;
	while (start < end && isspace((unsigned char)t->data[start]))
		start++;
	while (end > start && isspace((unsigned char)t->data[end - 1]))
		end--;
	if (start == end)
		return -EINVAL;
	memmove(t->data, t->data + start, end - start);
	/* Wipe the tail we no longer use: it may hold part of a secret. */
	explicit_bzero(t->data + (end - start), t->len - (end - start));
	t->len = end - start;
	t->data[t->len] = '\0';
	return 0;
}

static int token_from_file(struct boot_ctx *b, const char *path)
{
	char tmp[4096];
	struct stat st;
	ssize_t n;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fail(b, -errno, "token: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = fail(b, -EINVAL, "token: %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077)
		log_warn("token: %s is accessible by group or others (mode %04o); make it 0600",
		         path, (unsigned)(st.st_mode & 07777));
	for (;;) {
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = fail(b, -errno, "token: %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (buf_append(&b->token, tmp, (size_t)n) < 0) {
			r = fail(b, -EFBIG, "token: %s: larger than %d bytes", path,
			         BOOT_TOKEN_FILE_MAX);
			goto out;
		}
	}
out:
	explicit_bzero(tmp, sizeof(tmp));
	close(fd);
	return r;
}

int boot_token(struct boot_ctx *b)
{
	const struct rd_token_conf *t = b->conf->token;
	struct aws_error err;
	const char *what = rd_token_source_name(t->source);
	const char *call;
	uint64_t cap;
	int r;

	memset(&err, 0, sizeof(err));
	buf_wipe(&b->token);
	buf_init(&b->token, BOOT_TOKEN_FILE_MAX);
	switch (t->source) {
	case RD_TOKEN_SECRETSMANAGER:
		/* The boot deadline bounds this step's call, and ends with it. */
		cap = aws_cap_begin(&b->aws, b->deadline_mono_ms);
		r = sm_get_secret(&b->aws, b->region, t->id, t->key[0] ? t->key : NULL, &b->token,
		                  &err);
		aws_cap_end(&b->aws, cap);
		break;
	case RD_TOKEN_SSM:
		cap = aws_cap_begin(&b->aws, b->deadline_mono_ms);
		r = ssm_get_parameter(&b->aws, b->region, t->id, &b->token, &err);
		aws_cap_end(&b->aws, cap);
		break;
	default:
		r = token_from_file(b, t->id);
		if (r < 0)
			return r;
		break;
	}
	/* Every message names the call, also when it got no AWS error back. */
	call = err.call[0]                            ? err.call
	       : t->source == RD_TOKEN_SECRETSMANAGER ? "secretsmanager:GetSecretValue"
	                                              : "ssm:GetParameter";
	/* Register first, so that nothing below can print it. */
	if (r == 0 && b->token.data)
		(void)log_add_secret(b->token.data);
	if (r == -ENOENT && t->source == RD_TOKEN_SECRETSMANAGER && t->key[0])
		return fail(b, r, "token: secret %s has no string member \"%s\"", t->id, t->key);
	if (r == -ENOENT)
		return fail(b, r, "token: secret %s has no SecretString", t->id);
	if (r == -EREMOTEIO)
		return fail(b, r, "token: %s %s: %s: %s (%s)", what, t->id, err.call, err.code,
		            err.message);
	if (r == -EBADMSG)
		return fail(b, r, "token: %s %s: %s: malformed answer%s", what, t->id, call,
		            t->key[0] && t->source == RD_TOKEN_SECRETSMANAGER
		                    ? " (is SecretString a JSON object?)"
		                    : "");
	if (r < 0)
		return fail(b, r, "token: %s %s: %s: %s (%s)", what, t->id, call,
		            err.message[0] ? err.message : strerror(-r), err.code);
	if (boot_token_trim(&b->token) < 0) {
		buf_wipe(&b->token);
		buf_init(&b->token, BOOT_TOKEN_FILE_MAX);
		return fail(b, -EINVAL, "token: %s %s: empty or not text", what, t->id);
	}
	(void)log_add_secret(b->token.data);
	log_info("token: from %s %s%s%s (%zu bytes)", what, t->id,
	         t->source == RD_TOKEN_SECRETSMANAGER && t->key[0] ? " key " : "",
	         t->source == RD_TOKEN_SECRETSMANAGER && t->key[0] ? t->key : "", b->token.len);
	return 0;
}

/* ---- packages ---- */

static bool pkg_installed(const char *pkg, char **envp)
{
	const char *argv[] = {"dpkg-query", "-W", "-f=${Status}", pkg, NULL};
	struct spawn_opts o = {
	        .envp = envp, .search_path = true, .timeout_ms = DPKG_QUERY_TIMEOUT_MS};
	struct buf out;
	bool yes;
	int st, r;

	buf_init(&out, 4096);
	o.capture = &out;
	r = spawn_run(argv, &o, &st);
	yes = r == 0 && st == 0 && out.data && strcmp(out.data, "install ok installed") == 0;
	buf_free(&out);
	return yes;
}

/* apt runs with runnerd's environment minus the AWS keys, plus DEBIAN_FRONTEND. */
static void apt_env(char **envp, size_t max)
{
	static char frontend[] = "DEBIAN_FRONTEND=noninteractive";
	size_t n = 0;
	char **e;

	for (e = environ; *e && n + 2 < max; e++) {
		if (strncmp(*e, "DEBIAN_FRONTEND=", 16) == 0 ||
		    strncmp(*e, "AWS_SECRET", 10) == 0 ||
		    strncmp(*e, "AWS_SESSION_TOKEN=", 18) == 0 ||
		    strncmp(*e, "AWS_ACCESS_KEY_ID=", 18) == 0)
			continue;
		envp[n++] = *e;
	}
	envp[n++] = frontend;
	envp[n] = NULL;
}

static int run_apt(const char *const *argv, char **envp)
{
	struct spawn_opts o = {.envp = envp, .search_path = true, .stdout_to_stderr = true};
	int st, r;

	r = spawn_run(argv, &o, &st);
	if (r < 0)
		return r;
	return st;
}

int boot_packages(struct boot_ctx *b)
{
	const struct rd_packages_conf *p = b->conf->packages;
	const char *argv[16 + 128];
	char *envp[APT_ENV_MAX];
	char lock[64];
	size_t i, n = 0, missing = 0;
	int64_t attempt;
	int st = 0;

	if (p->install.n == 0) {
		log_info("packages: none configured");
		return 0;
	}
	if (p->install.n > 128)
		return fail(b, -E2BIG, "packages: more than 128 packages");
	snprintf(lock, sizeof(lock), "DPkg::Lock::Timeout=%llu",
	         (unsigned long long)((p->lock_timeout_ms + 999) / 1000));
	apt_env(envp, APT_ENV_MAX);
	argv[n++] = "apt-get";
	argv[n++] = "-y";
	argv[n++] = "-q";
	argv[n++] = "-o";
	argv[n++] = lock;
	argv[n++] = "install";
	argv[n++] = "--no-install-recommends";
	for (i = 0; i < p->install.n; i++) {
		if (!pkg_installed(p->install.items[i], envp)) {
			argv[n++] = p->install.items[i];
			missing++;
		}
	}
	argv[n] = NULL;
	if (!missing) {
		log_info("packages: all %zu installed already", p->install.n);
		return 0;
	}
	{
		/* Name what is about to be installed: the operator's first question on a slow boot.
		 */
		char names[512] = "";
		size_t used = 0;

		for (i = n - missing; i < n && used < sizeof(names); i++) {
			int w = snprintf(names + used, sizeof(names) - used, "%s%s",
			                 used ? " " : "", argv[i]);

			used = w < 0 ? sizeof(names) : used + (size_t)w;
		}
		log_info("packages: to install: %s%s", names, used >= sizeof(names) ? "..." : "");
	}
	for (attempt = 1; attempt <= p->retries; attempt++) {
		if (attempt == 2) {
			/* A failed install is most often stale package lists (an old AMI). */
			const char *upd[] = {"apt-get", "-q", "-o", lock, "update", NULL};

			st = run_apt(upd, envp);
			log_info("packages: apt-get update: status %d", st);
		} else if (attempt > 2 && !backoff(b, (unsigned)(attempt - 3), 2000, 30000)) {
			break;
		}
		log_info("packages: apt-get install of %zu package(s), attempt %lld of %lld",
		         missing, (long long)attempt, (long long)p->retries);
		st = run_apt(argv, envp);
		if (st == 0) {
			log_info("packages: installed");
			return 0;
		}
		if (st < 0)
			return fail(b, st, "packages: cannot run apt-get: %s", strerror(-st));
		log_warn("packages: apt-get install failed with status %d", st);
	}
	return fail(b, -EIO, "packages: apt-get install failed (last status %d)", st);
}

/* ---- agent ---- */

int boot_mkdir_parent(const char *path, unsigned mode)
{
	char dir[4096];
	char *p;

	if (str_copy(dir, path, sizeof(dir)) >= sizeof(dir))
		return -ENAMETOOLONG;
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int boot_agent_install(struct boot_ctx *b)
{
	const struct rd_agent_conf *a = b->conf->agent;
	struct stat st;
	int r;

	if (stat(a->binary, &st) == 0 && S_ISREG(st.st_mode) && access(a->binary, X_OK) == 0) {
		log_info("agent-install: %s is present", a->binary);
		return 0;
	}
	if (!a->download_url[0])
		return fail(b, -ENOENT,
		            "agent-install: the agent binary %s is missing or not executable, and "
		            "[agent] download_url is not set",
		            a->binary);
	r = boot_mkdir_parent(a->binary, 0755);
	if (r < 0)
		return fail(b, r, "agent-install: cannot create the directory of %s: %s", a->binary,
		            strerror(-r));
	log_info("agent-install: downloading %s to %s", a->download_url, a->binary);
	r = agent_download(b->http, a->download_url, false, a->sha256, a->binary,
	                   AGENT_DOWNLOAD_MAX, AGENT_DOWNLOAD_TIMEOUT_MS);
	if (r == -EBADMSG)
		return fail(b, r, "agent-install: %s: SHA-256 does not match [agent] sha256",
		            a->download_url);
	if (r < 0)
		return fail(b, r, "agent-install: download of %s to %s: %s", a->download_url,
		            a->binary, strerror(-r));
	log_info("agent-install: %s installed and verified", a->binary);
	return 0;
}

int boot_agent_config(struct boot_ctx *b)
{
	const struct rd_agent_conf *a = b->conf->agent;
	struct agent_settings s;
	char host[256], name[256];
	struct buf yaml;
	int r;

	if (!b->token.data || !b->token.len)
		return fail(b, -ENOKEY, "agent-config: no token");
	if (gethostname(host, sizeof(host)) < 0)
		str_copy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	r = agent_expand_name(a->name, host, b->instance_id, name, sizeof(name));
	if (r < 0)
		return fail(b, r, "agent-config: name \"%s\" does not expand: %s", a->name,
		            strerror(-r));
	memset(&s, 0, sizeof(s));
	s.flavour =
	        a->flavour == RD_FLAVOUR_LAUNCH_AGENT ? AGENT_LAUNCH_AGENT : AGENT_CIRCLECI_RUNNER;
	s.api_url = a->api_url;
	s.name = name;
	s.user = a->user;
	s.working_directory = a->working_directory;
	s.cleanup_working_directory = a->cleanup_working_directory;
	s.mode = rd_mode_name(a->mode);
	s.idle_timeout_ms = a->idle_timeout_ms;
	s.max_run_time_ms = a->max_run_time_ms;
	buf_init(&yaml, 0);
	r = agent_render_config(&s, b->token.data, &yaml);
	if (r < 0) {
		(void)fail(b, r, "agent-config: rendering: %s", strerror(-r));
		goto out;
	}
	/* The agent runs as runnerd's own user (root in production): 0600, owned by it. */
	r = agent_write_file_atomic(a->config_path, yaml.data, yaml.len, geteuid(), getegid());
	if (r < 0) {
		(void)fail(b, r, "agent-config: writing %s: %s", a->config_path, strerror(-r));
		goto out;
	}
	log_info("agent-config: wrote %s (mode 0600), runner name %s", a->config_path, name);
out:
	buf_wipe(&yaml);
	/* The token's only copy now is the 0600 file. */
	buf_wipe(&b->token);
	buf_init(&b->token, BOOT_TOKEN_FILE_MAX);
	return r;
}

int boot_poll_state(struct boot_ctx *b, char *state, size_t n)
{
	int r;

	if (b->imds.disabled) {
		state[0] = '\0';
		return 0;
	}
	r = imds_target_lifecycle_state(&b->imds, state, n);
	if (r == -ENOENT) {
		state[0] = '\0';
		return 0;
	}
	return r;
}

int boot_poll_spot(struct boot_ctx *b, struct spot_action *out)
{
	if (b->imds.disabled)
		return -ENOENT;
	return imds_spot_action(&b->imds, out);
}
