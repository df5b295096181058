/* scaler.conf schema and the checks that span keys. Every key, default and bound here is listed
 * in runner-scaler.conf(5); change both together. */
#include "scaler_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http.h"
#include "launches.h"
#include "runner_api.h"
#include "util.h"

#define OFF(type, field) offsetof(struct type, field)
#define SEC_MS(s)        ((int64_t)(s)*1000)
#define POOL_COUNT_MAX   100000 /* far above any ASG MaxSize; rejects typos like 1e9 */
#define STR_(x)          #x
#define STR(x)           STR_(x)

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const token_sources[] = {"secretsmanager", "ssm", "file", "env", NULL};
static const char *const election_modes[] = {"none", "dynamodb", NULL};

static bool table_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

static const struct cfg_key scaler_keys[] = {
        {"interval", CFG_DURATION, OFF(scaler_section, interval_ms), "10s", NULL, 100, SEC_MS(3600),
         0, NULL},
        {"metrics", CFG_STRING, OFF(scaler_section, metrics), NULL, NULL, 0, 0, 0, NULL},
        {"request_timeout", CFG_DURATION, OFF(scaler_section, request_timeout_ms), "10s", NULL, 100,
         SEC_MS(60), 0, NULL},
        {"listen", CFG_STRING, OFF(scaler_section, listen), NULL, NULL, 0, 0, 0, NULL},
        {"log_format", CFG_ENUM, OFF(scaler_section, log_format), "text", log_formats, 0, 0, 0,
         NULL},
};

static const struct cfg_key circleci_keys[] = {
        {"api_url", CFG_STRING, OFF(circleci_section, api_url), RUNNER_API_DEFAULT_URL, NULL, 0, 0,
         0, "CIRCLECI_RUNNER_API_URL"},
        {"token_source", CFG_ENUM, OFF(circleci_section, token_source), "secretsmanager",
         token_sources, 0, 0, 0, NULL},
        {"token_id", CFG_STRING, OFF(circleci_section, token_id), NULL, NULL, 0, 0, 0, NULL},
        {"token_key", CFG_STRING, OFF(circleci_section, token_key), NULL, NULL, 0, 0, 0, NULL},
};

static const char *const az_rebalance_names[] = {"suspend", "leave", NULL};

static const struct cfg_key pool_keys[] = {
        {"resource_class", CFG_STRING, OFF(pool_section, resource_class), NULL, NULL, 0, 0,
         CFG_REQUIRED, NULL},
        {"asg", CFG_STRING, OFF(pool_section, asg), NULL, NULL, 0, 0, CFG_REQUIRED, NULL},
        {"region", CFG_STRING, OFF(pool_section, region), NULL, NULL, 0, 0, 0, NULL},
        {"min", CFG_INT, OFF(pool_section, min), "0", NULL, 0, POOL_COUNT_MAX, 0, NULL},
        {"max", CFG_INT, OFF(pool_section, max), NULL, NULL, 0, POOL_COUNT_MAX, CFG_REQUIRED, NULL},
        {"headroom", CFG_INT, OFF(pool_section, headroom), "0", NULL, 0, POOL_COUNT_MAX, 0, NULL},
        {"max_step", CFG_INT, OFF(pool_section, max_step), "0", NULL, 0, POOL_COUNT_MAX, 0, NULL},
        {"launch_failures", CFG_INT, OFF(pool_section, launch_failures),
         STR(LAUNCH_FAILURES_DEFAULT), NULL, 0, LAUNCH_FAILURES_MAX, 0, NULL},
        {"az_rebalance", CFG_ENUM, OFF(pool_section, az_rebalance), "suspend", az_rebalance_names,
         0, 0, 0, NULL},
        /* A string, so that "unset" (not managed) survives check-config's print. */
        {"warm_pool", CFG_STRING, OFF(pool_section, warm_pool_text), "", NULL, 0, 0, 0, NULL},
};

static const struct cfg_key election_keys[] = {
        {"mode", CFG_ENUM, OFF(election_section, mode), "none", election_modes, 0, 0, 0, NULL},
        {"table", CFG_STRING, OFF(election_section, table), NULL, NULL, 0, 0, 0, NULL},
        {"name", CFG_STRING, OFF(election_section, name), "runner-scaler", NULL, 0, 0, 0, NULL},
        {"lease", CFG_DURATION, OFF(election_section, lease_ms), "15s", NULL, SEC_MS(3),
         SEC_MS(3600), 0, NULL},
};

static const struct cfg_section schema[] = {
        {"scaler", false, scaler_keys, ARRAY_SIZE(scaler_keys), sizeof(struct scaler_section), 0,
         0},
        {"circleci", false, circleci_keys, ARRAY_SIZE(circleci_keys),
         sizeof(struct circleci_section), 0, 0},
        {"pool", true, pool_keys, ARRAY_SIZE(pool_keys), sizeof(struct pool_section),
         OFF(pool_section, name), SCALER_MAX_POOLS},
        {"election", false, election_keys, ARRAY_SIZE(election_keys),
         sizeof(struct election_section), 0, 0},
};

int scaler_parse_warm_pool(const char *s, int64_t *out)
{
	int64_t v = 0;

	*out = -1;
	if (!s || !s[0])
		return 0;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9' || v > POOL_COUNT_MAX)
			return -EINVAL;
		v = v * 10 + (*c - '0');
	}
	if (v > POOL_COUNT_MAX)
		return -EINVAL;
	*out = v;
	return 0;
}

const char *scaler_token_source_name(int source)
{
	if (source < 0 || (size_t)source >= ARRAY_SIZE(token_sources) - 1)
		return "?";
	return token_sources[source];
}

const char *scaler_token_env_name(const struct circleci_section *cc)
{
	if (cc->token_id && cc->token_id[0])
		return cc->token_id;
	return "CIRCLE_TOKEN";
}

int scaler_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;
	long p;
	struct in6_addr a6;
	struct in_addr a4;
	char tmp[INET6_ADDRSTRLEN];

	if (!s || !s[0])
		return -EINVAL;
	if (s[0] == '[') {
		colon = strstr(s, "]:");
		if (!colon)
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* a bare IPv6 address needs brackets */
		hl = (size_t)(colon - s);
	}
	if (hl >= hostlen || hl >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, h, hl);
	tmp[hl] = '\0';
	if (hl && inet_pton(AF_INET, tmp, &a4) != 1 && inet_pton(AF_INET6, tmp, &a6) != 1 &&
	    strcmp(tmp, "localhost") != 0)
		return -EINVAL; /* no name resolution at start-up: addresses only */
	if (s[0] == '[' && (!hl || inet_pton(AF_INET6, tmp, &a6) != 1))
		return -EINVAL;
	if (colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || p < 1 || p > 65535)
		return -EINVAL;
	memcpy(host, tmp, hl + 1);
	*port = (uint16_t)p;
	return 0;
}

/* "FILE:LINE: key: reason", or "FILE: [section] key: reason" for a defaulted key. */
static void add_error(struct buf *errs, const struct cfg *c, const void *data, const char *section,
                      const char *key, const char *fmt, const char *arg)
{
	unsigned line = data && key ? cfg_line(c, data, key) : 0;
	char reason[256];

	/* fmt is one of the literals below, each with at most one %s. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(reason, sizeof(reason), fmt, arg ? arg : "");
#pragma GCC diagnostic pop
	if (line)
		(void)buf_printf(errs, "%s:%u: %s: %s\n", cfg_path(c), line, key, reason);
	else if (!key)
		(void)buf_printf(errs, "%s: [%s]: %s\n", cfg_path(c), section, reason);
	else
		(void)buf_printf(errs, "%s: [%s] %s: %s\n", cfg_path(c), section, key, reason);
}

static void validate(struct scaler_config *sc, struct buf *errs)
{
	const struct cfg *c = sc->cfg;
	const struct scaler_section *s = sc->scaler;
	const struct circleci_section *cc = sc->circleci;
	const struct election_section *el = sc->election;
	char host[INET6_ADDRSTRLEN];
	uint16_t port;

	if (s->metrics && s->metrics[0] && s->metrics[0] != '/')
		add_error(errs, c, s, "scaler", "metrics", "must be an absolute path", NULL);
	if (s->listen && s->listen[0] &&
	    scaler_parse_listen(s->listen, host, sizeof(host), &port) < 0)
		add_error(errs, c, s, "scaler", "listen", "want ADDRESS:PORT, got '%s'", s->listen);
	if (!cc->api_url || !http_url_allowed(cc->api_url, true))
		add_error(errs, c, cc, "circleci", "api_url", "not an http(s) URL: '%s'",
		          cc->api_url);
	if (cc->token_source != TOKEN_ENV && (!cc->token_id || !cc->token_id[0]))
		add_error(errs, c, cc, "circleci", "token_id", "required with token_source = %s",
		          scaler_token_source_name(cc->token_source));
	if (cc->token_source == TOKEN_FILE && cc->token_id && cc->token_id[0] != '/')
		add_error(errs, c, cc, "circleci", "token_id", "must be an absolute path", NULL);
	if (cc->token_source != TOKEN_SECRETSMANAGER && cc->token_key && cc->token_key[0])
		add_error(errs, c, cc, "circleci", "token_key",
		          "only used with token_source = secretsmanager", NULL);
	if (el->mode == ELECTION_MODE_DYNAMODB && (!el->table || !el->table[0]))
		add_error(errs, c, el, "election", "table", "required with mode = dynamodb", NULL);
	if (el->mode == ELECTION_MODE_DYNAMODB && (!el->name || !el->name[0]))
		add_error(errs, c, el, "election", "name", "must not be empty", NULL);
	/* DynamoDB's own rules for table names; the lease id is a key of at most 255 bytes here. */
	if (el->table && el->table[0] && !table_name_ok(el->table))
		add_error(errs, c, el, "election", "table",
		          "a DynamoDB table name: 3 to 255 of A-Z a-z 0-9 _ . -", NULL);
	if (el->name && strlen(el->name) > 255)
		add_error(errs, c, el, "election", "name", "longer than 255 characters", NULL);

	if (sc->npools == 0)
		add_error(errs, c, NULL, "pool NAME", NULL, "no pools: add a [pool NAME] section",
		          NULL);
	for (size_t i = 0; i < sc->npools; i++) {
		const struct pool_section *p = sc->pools[i];

		if (!p->name || !p->name[0])
			add_error(errs, c, p, "pool", "resource_class", "pool without a name",
			          NULL);
		if (p->min > p->max)
			add_error(errs, c, p, "pool", "min", "greater than max in pool '%s'",
			          p->name);
		if (p->resource_class && !strchr(p->resource_class, '/'))
			add_error(errs, c, p, "pool", "resource_class",
			          "want NAMESPACE/NAME, got '%s'", p->resource_class);
		if (p->asg && !p->asg[0])
			add_error(errs, c, p, "pool", "asg", "must not be empty", NULL);
		if (scaler_parse_warm_pool(p->warm_pool_text, &sc->pools[i]->warm_pool) < 0)
			add_error(errs, c, p, "pool", "warm_pool",
			          "want a number of instances (0 to " STR(
			                  POOL_COUNT_MAX) "), or nothing (not managed); got '%s'",
			          p->warm_pool_text);
		for (size_t j = 0; j < i; j++) {
			const struct pool_section *q = sc->pools[j];
			const char *pr = p->region ? p->region : "",
			           *qr = q->region ? q->region : "";

			/* Two pools on one group or one queue would fight or double the capacity.
			 */
			if (p->asg && q->asg && strcmp(p->asg, q->asg) == 0 && strcmp(pr, qr) == 0)
				add_error(errs, c, p, "pool", "asg", "already used by pool '%s'",
				          q->name);
			if (p->resource_class && q->resource_class &&
			    strcmp(p->resource_class, q->resource_class) == 0)
				add_error(errs, c, p, "pool", "resource_class",
				          "already used by pool '%s'", q->name);
		}
	}
}

static int finish_load(int r, struct cfg *cfg, struct scaler_config *out, char **errors)
{
	struct scaler_config sc;
	struct buf errs;

	if (r < 0)
		return r;
	memset(&sc, 0, sizeof(sc));
	buf_init(&errs, 64 * 1024);
	sc.cfg = cfg;
	sc.scaler = cfg_get(cfg, "scaler");
	sc.circleci = cfg_get(cfg, "circleci");
	sc.election = cfg_get(cfg, "election");
	sc.npools = cfg_count(cfg, "pool");
	if (!sc.scaler || !sc.circleci || !sc.election) {
		r = -EINVAL;
		goto out;
	}
	if (sc.npools) {
		sc.pools = calloc(sc.npools, sizeof(*sc.pools));
		if (!sc.pools) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < sc.npools; i++)
			sc.pools[i] = cfg_get_named(cfg, "pool", i);
	}
	validate(&sc, &errs);
	if (errs.len) {
		if (errors) {
			*errors = errs.data;
			errs.data = NULL;
		}
		r = -EINVAL;
		goto out;
	}
	*out = sc;
	sc.cfg = NULL;
	sc.pools = NULL;
	r = 0;
out:
	buf_free(&errs);
	free(sc.pools);
	cfg_free(sc.cfg);
	return r;
}

int scaler_config_load(const char *path, struct scaler_config *out, char **errors)
{
	struct cfg *cfg = NULL;
	int r;

	if (errors)
		*errors = NULL;
	r = cfg_load_file(schema, ARRAY_SIZE(schema), path, &cfg, errors);
	return finish_load(r, cfg, out, errors);
}

int scaler_config_load_string(const char *text, const char *display_name, struct scaler_config *out,
                              char **errors)
{
	struct cfg *cfg = NULL;
	int r;

	if (errors)
		*errors = NULL;
	r = cfg_load_string(schema, ARRAY_SIZE(schema), text, display_name, &cfg, errors);
	return finish_load(r, cfg, out, errors);
}

void scaler_config_free(struct scaler_config *c)
{
	if (!c)
		return;
	free(c->pools);
	cfg_free(c->cfg);
	memset(c, 0, sizeof(*c));
}

int scaler_config_print(const struct scaler_config *c, FILE *out)
{
	return cfg_print(c->cfg, out);
}
