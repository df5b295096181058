/* The boot steps (see boot.h and runnerd(8), BOOT FLOW). */
#include "boot.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent.h"
#include "apt.h"
#include "aws_services.h"
#include "creds.h"
#include "log.h"
#include "subproc.h"
#include "task_dir.h"
#include "util.h"

#define IMDS_ATTEMPTS 5
/* With [lifecycle] launch_hook set the instance is in a group with a LAUNCHING hook, where IMDS
 * answers 404 for the target state until Auto Scaling has set it (AWS's ECS agent polls through
 * it): "not yet", never "in service" (an agent started in the warm pool claims a job that AWS
 * then stops). Polled this long, then taken as no Auto Scaling lifecycle at all. */
#define TARGET_STATE_WAIT_MS 120000
#define TARGET_STATE_POLL_MS 1000
#define AWS_ATTEMPTS         5
#define AGENT_DOWNLOAD_MAX   ((uint64_t)512 * 1024 * 1024)
/* The tarball's agent member (about 40 MiB for machine runner 3), everything it unpacks to,
 * and its entries: far above the real thing, far below what would hurt the instance. */
#define AGENT_MEMBER_MAX        ((uint64_t)512 * 1024 * 1024)
#define AGENT_UNPACKED_MAX      ((uint64_t)1024 * 1024 * 1024)
#define AGENT_TAR_ENTRIES_MAX   10000u
#define AGENT_DOWNLOAD_ATTEMPTS 4u
/* The package route's files. */
#define AGENT_KEYRING_DIR         "/etc/apt/keyrings"
#define AGENT_KEYRING             AGENT_KEYRING_DIR "/runnerd-agent"
#define AGENT_KEYRING_TMP         AGENT_KEYRING_DIR "/runnerd-agent.download"
#define AGENT_KEYRING_MAX         ((uint64_t)1024 * 1024)
#define AGENT_APT_LIST            "runnerd-agent.list"
#define AGENT_APT_SOURCE          "/etc/apt/sources.list.d/" AGENT_APT_LIST
#define AGENT_DOWNLOAD_TIMEOUT_MS (10 * 60 * 1000L)

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

/* Sleep d ms, unless that would run past the step's deadline (then false at once). */
static bool pause_ms(struct boot_ctx *b, uint64_t d)
{
	if (b->deadline_mono_ms && now_mono_ms() + d >= b->deadline_mono_ms)
		return false;
	sleep_ms(d);
	return true;
}

/* Sleep before retry attempt (0-based) unless that would pass the deadline: false then. */
static bool backoff(struct boot_ctx *b, unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
	return pause_ms(b, backoff_full_jitter_ms(attempt, base_ms, cap_ms, random_u32()));
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

/* IMDS said 404 for the target state and launch_hook is set: poll (see TARGET_STATE_WAIT_MS). */
static int wait_target_state(struct boot_ctx *b)
{
	uint64_t end = now_mono_ms() + TARGET_STATE_WAIT_MS;
	int r = -ENOENT;

	log_info("metadata: no target lifecycle state yet (IMDS 404) and launch_hook %s is set: "
	         "waiting up to %d s for it",
	         b->conf->lifecycle->launch_hook, TARGET_STATE_WAIT_MS / 1000);
	while (r == -ENOENT && now_mono_ms() < end && pause_ms(b, TARGET_STATE_POLL_MS))
		r = imds_retry(b, imds_target_lifecycle_state, b->lifecycle_state,
		               sizeof(b->lifecycle_state));
	if (r == -ENOENT)
		log_warn("metadata: still no target lifecycle state: no Auto Scaling lifecycle, "
		         "going on as in service");
	return r;
}

int boot_metadata(struct boot_ctx *b)
{
	char call[256];
	int r;

	/* First of all: a vendor unit the image runs must not claim jobs while this boot reads
	 * metadata, credentials and the token. */
	r = boot_hold_vendor_agent(b);
	if (r < 0)
		return r;

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
	if (r == -ENOENT && b->conf->lifecycle->launch_hook[0])
		r = wait_target_state(b);
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

/* apt-get install of names (n), attempts as [packages] retries says: the lists are updated
 * before every attempt after a failed one (a failed install is most often stale lists: an old
 * AMI; a failed update is worth another), and before the first when first_list is set (a source
 * just added: that list alone, sources.list.d/FIRST_LIST, so that another source that is down
 * cannot fail it); from the third attempt on, a full-jitter backoff. what names the phase in the
 * log. */
static int apt_install_all(struct boot_ctx *b, const char *what, const char *const *names, size_t n,
                           const char *first_list)
{
	char only[128];
	bool update = first_list != NULL;
	const struct rd_packages_conf *p = b->conf->packages;
	const char *argv[16 + 128];
	char *envp[APT_ENV_MAX];
	char lock[64];
	size_t i, k = 0;
	int64_t attempt;
	int st = 0;

	if (n > 128)
		return fail(b, -E2BIG, "%s: more than 128 packages", what);
	snprintf(lock, sizeof(lock), "DPkg::Lock::Timeout=%llu",
	         (unsigned long long)((p->lock_timeout_ms + 999) / 1000));
	apt_env(envp, APT_ENV_MAX);
	argv[k++] = "apt-get";
	argv[k++] = "-y";
	argv[k++] = "-q";
	argv[k++] = "-o";
	argv[k++] = lock;
	/* Unattended: a conffile changed on the image keeps its version (no prompt, which would
	 * fail without a terminal); the vendor agent's config is runnerd's to write anyway. */
	argv[k++] = "-o";
	argv[k++] = "Dpkg::Options::=--force-confdef";
	argv[k++] = "-o";
	argv[k++] = "Dpkg::Options::=--force-confold";
	argv[k++] = "install";
	argv[k++] = "--no-install-recommends";
	for (i = 0; i < n; i++)
		argv[k++] = names[i];
	argv[k] = NULL;
	if (first_list)
		snprintf(only, sizeof(only), "Dir::Etc::sourcelist=sources.list.d/%s", first_list);
	for (attempt = 1; attempt <= p->retries; attempt++) {
		if (attempt > 2 && !backoff(b, (unsigned)(attempt - 3), 2000, 30000))
			break;
		if (update) {
			const char *all[] = {"apt-get", "-q", "-o", lock, "update", NULL};
			const char *one[] = {"apt-get", "-q",
			                     "-o",      lock,
			                     "-o",      only,
			                     "-o",      "Dir::Etc::sourceparts=-",
			                     "-o",      "APT::Get::List-Cleanup=0",
			                     "update",  NULL};
			bool just_one = attempt == 1 && first_list;

			st = apt_run(just_one ? one : all, envp);
			log_info("%s: apt-get update%s: status %d", what,
			         just_one ? " of that source alone" : "", st);
		}
		log_info("%s: apt-get install of %zu package(s), attempt %lld of %lld", what, n,
		         (long long)attempt, (long long)p->retries);
		st = apt_run(argv, envp);
		if (st == 0)
			return 0;
		if (st < 0)
			return fail(b, st, "%s: cannot run apt-get: %s", what, strerror(-st));
		log_warn("%s: apt-get install failed with status %d", what, st);
		update = true;
	}
	return fail(b, -EIO, "%s: apt-get install failed (last status %d)", what, st);
}

int boot_packages(struct boot_ctx *b)
{
	const struct rd_packages_conf *p = b->conf->packages;
	const char *missing[128];
	char *envp[APT_ENV_MAX];
	char names[512] = "";
	size_t i, n = 0, used = 0;
	int r;

	if (p->install.n == 0) {
		log_info("packages: none configured");
		return 0;
	}
	if (p->install.n > 128)
		return fail(b, -E2BIG, "packages: more than 128 packages");
	apt_env(envp, APT_ENV_MAX);
	for (i = 0; i < p->install.n; i++)
		if (!apt_pkg_installed(p->install.items[i], envp))
			missing[n++] = p->install.items[i];
	if (!n) {
		log_info("packages: all %zu installed already", p->install.n);
		return 0;
	}
	/* Name what is about to be installed: the operator's first question on a slow boot. */
	for (i = 0; i < n && used < sizeof(names); i++) {
		int w = snprintf(names + used, sizeof(names) - used, "%s%s", used ? " " : "",
		                 missing[i]);

		used = w < 0 ? sizeof(names) : used + (size_t)w;
	}
	log_info("packages: to install: %s%s", names, used >= sizeof(names) ? "..." : "");
	r = apt_install_all(b, "packages", missing, n, NULL);
	if (r == 0)
		log_info("packages: installed");
	return r;
}

/* ---- agent ---- */

/* mkdir, and a directory made here gets exactly mode whatever the umask. */
static int mkdir_exact(const char *dir, unsigned mode)
{
	if (mkdir(dir, (mode_t)mode) == 0)
		return chmod(dir, (mode_t)mode) < 0 ? -errno : 0;
	return errno == EEXIST ? 0 : -errno;
}

int boot_mkdir_parent(const char *path, unsigned mode)
{
	char dir[4096];
	char *p;
	int r;

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
		r = mkdir_exact(dir, mode);
		if (r < 0)
			return r;
		*p = '/';
	}
	return mkdir_exact(dir, mode);
}

/* agent_fetch, retried: S3 answers 503 SlowDown now and then, and a boot's network can be
 * slow. A few attempts with a full-jitter backoff (or the server's Retry-After, when longer),
 * each attempt's timeout and every pause within the boot deadline; never again after what a
 * retry would only repeat. what prefixes the log lines ("" or "apt_keyring "). */
static int fetch_retrying(struct boot_ctx *b, const struct agent_fetch *f, const char *what,
                          char *why, size_t n)
{
	struct agent_fetch g = *f;
	long retry_after_s = -1;
	uint64_t pause;
	size_t used;
	int r;

	g.retry_after_s = &retry_after_s;
	for (unsigned attempt = 0;; attempt++) {
		if (b->deadline_mono_ms) {
			uint64_t now = now_mono_ms();
			uint64_t left = b->deadline_mono_ms > now ? b->deadline_mono_ms - now : 0;

			if (left < 1000) {
				snprintf(why, n, "no time left before the boot deadline");
				return -ETIMEDOUT;
			}
			g.timeout_ms = f->timeout_ms > 0 && (uint64_t)f->timeout_ms < left
			                       ? f->timeout_ms
			                       : (long)left;
		}
		log_info("agent-install: downloading %s%s%s%s", what, f->url,
		         !f->raw && agent_url_is_tarball(f->url) ? " (a release tarball)" : "",
		         attempt ? ", again" : "");
		r = agent_fetch(b->http, &g, why, n);
		if (r == 0 || !agent_fetch_retryable(r))
			return r;
		if (attempt + 1 >= AGENT_DOWNLOAD_ATTEMPTS) {
			used = strnlen(why, n);
			if (used + 1 < n)
				snprintf(why + used, n - used, " (after %u attempts)", attempt + 1);
			return r;
		}
		pause = backoff_full_jitter_ms(attempt, 1000, 20000, random_u32());
		/* Clamped first: a day is past any boot deadline (and a huge value would wrap). */
		if (retry_after_s > 86400)
			retry_after_s = 86400;
		if (retry_after_s > 0 && (uint64_t)retry_after_s * 1000 > pause)
			pause = (uint64_t)retry_after_s * 1000;
		log_warn("agent-install: %s%s: %s; trying again in %llu ms", what, f->url, why,
		         (unsigned long long)pause);
		if (!pause_ms(b, pause)) {
			used = strnlen(why, n);
			if (used + 1 < n)
				snprintf(why + used, n - used,
				         " (no time left before the boot deadline)");
			return r;
		}
	}
}

/* The vendor's signing key where apt finds it: a path as it is, a URL fetched and checked
 * against apt_keyring_sha256 into /etc/apt/keyrings (.asc when armoured, as apt requires). */
static int agent_keyring(struct boot_ctx *b, char *out, size_t n)
{
	const struct rd_agent_conf *a = b->conf->agent;
	struct agent_fetch f = {0};
	char why[320], head[64];
	ssize_t len;
	int fd, r;

	if (strncmp(a->apt_keyring, "https://", 8) != 0) {
		if (access(a->apt_keyring, R_OK) < 0)
			return fail(b, -errno, "agent-install: apt_keyring %s: %s", a->apt_keyring,
			            strerror(errno));
		/* A key baked into the image is checked too when a digest is given. */
		r = a->apt_keyring_sha256[0]
		            ? agent_file_sha256_matches(a->apt_keyring, a->apt_keyring_sha256,
		                                        AGENT_KEYRING_MAX)
		            : 0;
		if (r < 0)
			return fail(b, r, "agent-install: apt_keyring %s: %s", a->apt_keyring,
			            r == -EBADMSG ? "its SHA-256 is not apt_keyring_sha256"
			                          : strerror(-r));
		str_copy(out, a->apt_keyring, n);
		return 0;
	}
	r = boot_mkdir_parent(AGENT_KEYRING_TMP, 0755);
	if (r < 0)
		return fail(b, r, "agent-install: cannot create %s: %s", AGENT_KEYRING_DIR,
		            strerror(-r));
	f.url = a->apt_keyring;
	f.sha256_hex = a->apt_keyring_sha256;
	f.dest = AGENT_KEYRING_TMP;
	f.max_download = AGENT_KEYRING_MAX;
	f.raw = true;
	f.mode = 0644;
	f.timeout_ms = AGENT_DOWNLOAD_TIMEOUT_MS;
	r = fetch_retrying(b, &f, "apt_keyring ", why, sizeof(why));
	if (r < 0)
		return fail(b, r, "agent-install: apt_keyring %s: %s", a->apt_keyring, why);
	fd = open(AGENT_KEYRING_TMP, O_RDONLY | O_CLOEXEC);
	len = fd < 0 ? -1 : read(fd, head, sizeof(head));
	if (fd >= 0)
		close(fd);
	str_copy(out,
	         len > 0 && apt_key_is_armored(head, (size_t)len) ? AGENT_KEYRING ".asc"
	                                                          : AGENT_KEYRING ".gpg",
	         n);
	if (rename(AGENT_KEYRING_TMP, out) < 0)
		return fail(b, -errno, "agent-install: cannot rename the key to %s: %s", out,
		            strerror(errno));
	return 0;
}

/* The package route: the vendor's circleci-runner .deb from its apt repository. Its own
 * circleci-runner.service is already held (boot_hold_vendor_agent); its conffile (the agent config)
 * is runnerd's to write at agent-config. */
static int agent_from_package(struct boot_ctx *b)
{
	const struct rd_agent_conf *a = b->conf->agent;
	const char *names[1] = {a->package};
	char keyring[PATH_MAX], line[4096];
	struct stat st;
	int r;

	r = agent_keyring(b, keyring, sizeof(keyring));
	if (r < 0)
		return r;
	r = apt_source_line(a->apt_source, keyring, line, sizeof(line));
	if (r == 0)
		r = agent_write_file(AGENT_APT_SOURCE, line, strlen(line), 0644);
	if (r < 0)
		return fail(b, r, "agent-install: writing %s: %s", AGENT_APT_SOURCE, strerror(-r));
	log_info("agent-install: installing the package %s from %s", a->package, AGENT_APT_SOURCE);
	r = apt_install_all(b, "agent-install", names, 1, AGENT_APT_LIST);
	if (r < 0)
		return r;
	if (stat(a->binary, &st) < 0 || !S_ISREG(st.st_mode) || access(a->binary, X_OK) < 0)
		return fail(b, -ENOENT, "agent-install: the package %s installed no executable %s",
		            a->package, a->binary);
	log_info("agent-install: %s installed from the package %s", a->binary, a->package);
	return 0;
}

/* The vendor's own unit for the configured flavour: the circleci-runner package ships
 * circleci-runner.service; CircleCI's server instructions have the launch-agent run by a
 * hand-made circleci.service. Either runs an agent of its own under the same runner name. */
static const char *vendor_unit(const struct boot_ctx *b)
{
	return b->conf->agent->flavour == RD_FLAVOUR_LAUNCH_AGENT ? "circleci.service"
	                                                          : "circleci-runner.service";
}

int boot_hold_vendor_agent(struct boot_ctx *b)
{
	const char *unit = vendor_unit(b);
	const char *reload[] = {"systemctl", "daemon-reload", NULL};
	const char *active[] = {"systemctl", "is-active", "--quiet", unit, NULL};
	const char *kill[] = {"systemctl", "kill", "--signal=SIGKILL", unit, NULL};
	const char *stop[] = {"systemctl", "stop", unit, NULL};
	struct spawn_opts o = {.search_path = true, .stdout_to_stderr = true, .timeout_ms = 60000};
	struct spawn_opts quiet = o;
	char self[PATH_MAX];
	bool installed = apt_unit_installed(NULL, unit), was_active;
	struct stat st;
	ssize_t len;
	int r = 0, status = 0;

	if (!b->conf->agent->package[0] && !installed)
		return 0;
	/* runnerd's package holds the units itself; a runnerd installed some other way writes
	 * the drop-in, on its own path. */
	if (!apt_unit_held_by_package(NULL, unit)) {
		len = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (len <= 0)
			return fail(b, len < 0 ? -errno : -EIO, "%s: cannot read /proc/self/exe",
			            unit);
		self[len] = '\0';
		r = apt_hold_unit(NULL, unit, self);
		if (r < 0)
			return fail(b, r, "cannot hold %s with a drop-in: %s", unit, strerror(-r));
		if (r > 0)
			log_info("%s held by /etc/systemd/system/%s.d/50-runnerd.conf: runnerd "
			         "runs the "
			         "agent",
			         unit, unit);
	}
	/* Without a running systemd (a chroot, an image build) the file alone is enough. */
	if (stat("/run/systemd/system", &st) < 0)
		return 0;
	if (r > 0 && (spawn_run(reload, &o, &status) < 0 || status != 0))
		log_warn("systemctl daemon-reload failed; %s is held on disk only", unit);
	if (!installed)
		return 0; /* the package comes later: nothing can be running yet */
	quiet.stdout_to_stderr = false;
	was_active = spawn_run(active, &quiet, &status) == 0 && status == 0;
	/* Killed, not stopped: its agent would drain a job it claimed for up to its
	 * TimeoutStopSec (hours), and that job is lost either way. Then stopped, whatever its
	 * state: one starting or waiting to restart is not "active". */
	if (was_active)
		(void)spawn_run(kill, &quiet, &status);
	r = spawn_run(stop, &o, &status);
	if (r == -ETIMEDOUT)
		return fail(b, r, "%s did not stop within 60 s", unit);
	if (r < 0 || status != 0)
		return fail(b, r < 0 ? r : -EBUSY, "%s would not stop (systemctl stop: status %d)",
		            unit, status);
	if (was_active)
		log_warn("killed %s, which was running an agent of its own (a job it had claimed "
		         "fails)",
		         unit);
	return 0;
}

int boot_agent_install(struct boot_ctx *b)
{
	const struct rd_agent_conf *a = b->conf->agent;
	struct agent_fetch f = {0};
	char url[2048], why[320], digest[65];
	const char *arch;
	struct utsname u;
	struct stat st;
	int r;

	if (stat(a->binary, &st) == 0 && S_ISREG(st.st_mode) && access(a->binary, X_OK) == 0) {
		log_info("agent-install: %s is present", a->binary);
		return 0;
	}
	if (a->package[0])
		return agent_from_package(b);
	if (!a->download_url[0])
		return fail(b, -ENOENT,
		            "agent-install: the agent binary %s is missing or not executable, and "
		            "[agent] download_url is not set",
		            a->binary);
	r = boot_mkdir_parent(a->binary, 0755);
	if (r < 0)
		return fail(b, r, "agent-install: cannot create the directory of %s: %s", a->binary,
		            strerror(-r));
	if (uname(&u) < 0 || !(arch = agent_arch_name(u.machine)))
		arch = NULL; /* only an error if the URL asks for %a */
	r = agent_expand_url(a->download_url, arch, url, sizeof(url));
	if (r < 0)
		return fail(b, r, "agent-install: [agent] download_url %s: %s", a->download_url,
		            r == -EINVAL ? "%a, but CircleCI ships no agent for this machine"
		                         : "too long once expanded");
	r = agent_pick_sha256(a->sha256, arch, digest);
	if (r < 0)
		return fail(b, r, "agent-install: [agent] sha256 has no digest for %s (%s)",
		            arch ? arch : u.machine, "give ARCH:HEX for each architecture");
	f.url = url;
	f.sha256_hex = digest;
	f.dest = a->binary;
	f.max_download = AGENT_DOWNLOAD_MAX;
	f.tar.max_member = AGENT_MEMBER_MAX;
	f.tar.max_unpacked = AGENT_UNPACKED_MAX;
	f.tar.max_entries = AGENT_TAR_ENTRIES_MAX;
	f.timeout_ms = AGENT_DOWNLOAD_TIMEOUT_MS;
	r = fetch_retrying(b, &f, "", why, sizeof(why));
	if (r < 0)
		return fail(b, r, "agent-install: %s: %s", url, why);
	log_info("agent-install: %s installed (SHA-256 of the download verified)", a->binary);
	return 0;
}

/* IMDS's meta-data/NAME as a string, "" when the instance has none (404). */
static int imds_string(struct boot_ctx *b, const char *path, char *out, size_t n)
{
	struct buf v;
	int r;

	out[0] = '\0';
	buf_init(&v, 256);
	r = imds_get(&b->imds, path, &v);
	if (r == 0 && v.len)
		str_copy(out, v.data, n);
	buf_free(&v);
	return r == -ENOENT ? 0 : r;
}

static int advertise_addr(struct boot_ctx *b, const char *pattern, char *out, size_t n)
{
	char priv[64] = "", pub[64] = "";
	int r = 0;

	if (strstr(pattern, "%I"))
		r = imds_string(b, "meta-data/local-ipv4", priv, sizeof(priv));
	if (r == 0 && strstr(pattern, "%P"))
		r = imds_string(b, "meta-data/public-ipv4", pub, sizeof(pub));
	if (r < 0)
		return fail(b, r, "agent-config: ssh_advertise_addr: IMDS: %s", strerror(-r));
	r = agent_expand_advertise(pattern, priv, pub, out, n);
	if (r == -ENOENT)
		return fail(b, r,
		            "agent-config: ssh_advertise_addr %s: the instance has no %s IPv4 "
		            "address",
		            pattern, priv[0] ? "public" : "private");
	if (r < 0)
		return fail(b, r, "agent-config: ssh_advertise_addr %s: %s", pattern, strerror(-r));
	return 0;
}

int boot_agent_config(struct boot_ctx *b)
{
	const struct rd_agent_conf *a = b->conf->agent;
	struct agent_settings s;
	char host[256], name[256], advertise[300];
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
	s.task_agent_directory = a->task_agent_directory;
	s.log_level = rd_log_level_name(a->log_level);
	buf_init(&yaml, 0);
	if (a->ssh_advertise_addr[0]) {
		r = advertise_addr(b, a->ssh_advertise_addr, advertise, sizeof(advertise));
		if (r < 0)
			goto out;
		s.ssh_advertise_addr = advertise;
	}
	if (s.flavour == AGENT_CIRCLECI_RUNNER) {
		char why[384] = "";

		r = task_dir_prepare(a->task_agent_directory, why, sizeof(why));
		if (r < 0) {
			(void)fail(b, r, "agent-config: task_agent_directory %s: %s",
			           a->task_agent_directory, why[0] ? why : strerror(-r));
			goto out;
		}
	}
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
