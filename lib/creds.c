/* The credentials chain, as the AWS SDKs order it: environment, then the instance role. */
#include "creds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *env_value(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] ? v : NULL;
}

int creds_from_env(struct aws_creds *out)
{
	const char *akid = env_value("AWS_ACCESS_KEY_ID");
	const char *secret = env_value("AWS_SECRET_ACCESS_KEY");
	const char *token = env_value("AWS_SESSION_TOKEN");
	struct aws_creds c;
	int r = -EINVAL;

	if (!akid && !secret)
		return -ENOENT;
	if (!akid || !secret)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	if (strlen(akid) >= sizeof(c.akid) || strlen(secret) >= sizeof(c.secret) ||
	    (token && strlen(token) >= sizeof(c.token)))
		goto out;
	str_copy(c.akid, akid, sizeof(c.akid));
	str_copy(c.secret, secret, sizeof(c.secret));
	if (token)
		str_copy(c.token, token, sizeof(c.token));
	*out = c;
	r = 0;
out:
	explicit_bzero(&c, sizeof(c));
	return r;
}

int creds_refresh_imds(void *user, struct aws_creds *creds)
{
	struct imds *m = user;
	struct aws_creds fresh;
	int r;

	memset(&fresh, 0, sizeof(fresh));
	r = imds_role_credentials(m, &fresh);
	if (r == 0) {
		creds_wipe(creds);
		*creds = fresh;
	}
	explicit_bzero(&fresh, sizeof(fresh));
	return r;
}

int creds_resolve(struct aws_ctx *ctx, struct imds *m)
{
	int r;

	ctx->refresh = NULL;
	ctx->refresh_user = NULL;
	r = creds_from_env(&ctx->creds);
	/* Half a key pair is a mistake to report, not a reason to try the next source. */
	if (r != -ENOENT)
		return r;
	if (!m)
		return -ENOENT;
	r = creds_refresh_imds(m, &ctx->creds);
	if (r < 0)
		return r;
	ctx->refresh = creds_refresh_imds;
	ctx->refresh_user = m;
	return 0;
}

void creds_wipe(struct aws_creds *c)
{
	if (c)
		explicit_bzero(c, sizeof(*c));
}
