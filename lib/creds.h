/* The credentials chain: environment first, then the instance role through IMDSv2. */
#ifndef RUNNERD_CREDS_H
#define RUNNERD_CREDS_H

#include "aws.h"
#include "imds.h"

/* AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN. -ENOENT when unset,
 * -EINVAL when only one half is set. */
int creds_from_env(struct aws_creds *out);
/* Env, else IMDS role credentials. On success, when they came from IMDS, ctx->refresh is set so
 * aws_query/aws_json refresh them before Expiration. m must outlive ctx. */
int creds_resolve(struct aws_ctx *ctx, struct imds *m);
/* The refresh callback used above (user = struct imds *). */
int creds_refresh_imds(void *user, struct aws_creds *creds);
void creds_wipe(struct aws_creds *c);

#endif
