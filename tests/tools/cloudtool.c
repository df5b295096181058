/* cloudtool: drives lib/'s AWS, IMDS and Runner API clients from the command line, so the
 * integration tests exercise the real C client against the fake cloud and dynalite.
 * Test-only: prints secrets it reads (that is what the tests check). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "aws_services.h"
#include "creds.h"
#include "http.h"
#include "imds.h"
#include "runner_api.h"
#include "util.h"

static void usage(void)
{
	fprintf(stderr,
	        "usage: cloudtool CMD ARGS\n"
	        "  secret ID [KEY] | ssm NAME | describe ASG... | set-desired ASG N\n"
	        "  update ASG MIN MAX DESIRED | terminate INSTANCE true|false\n"
	        "  lease-get TABLE ID | lease-acquire TABLE ID OWNER MS\n"
	        "  lease-renew TABLE ID OWNER MS VERSION | imds instance-id|region|lifecycle|spot\n"
	        "  creds-source | runner-counts RESOURCE_CLASS (token from CIRCLE_TOKEN)\n");
}

static int fail_aws(const char *what, int r, const struct aws_error *err)
{
	fprintf(stderr, "cloudtool: %s: %s: %s (%d): %s: %s (http %ld)\n", what, err->call,
	        strerror(-r), r, err->code, err->message, err->http_status);
	return 2;
}

static void print_lease(const struct ddb_lease *l)
{
	printf("owner=%s expiry_ms=%" PRId64 " version=%" PRId64 " exists=%d\n", l->owner,
	       l->expiry_ms, l->version, l->exists);
}

int main(int argc, char **argv)
{
	struct http_client *http = NULL;
	struct imds m;
	struct aws_ctx ctx;
	struct aws_error err;
	struct buf out;
	char region[32];
	const char *cmd;
	int r, rc = 2;

	if (argc < 2) {
		usage();
		return 64;
	}
	cmd = argv[1];
	if (http_client_new(&http) < 0)
		return 70;
	imds_init(&m, http);
	memset(&ctx, 0, sizeof(ctx));
	memset(&err, 0, sizeof(err));
	ctx.http = http;
	ctx.backoff_base_ms = 10;
	if (getenv("CLOUDTOOL_TIMEOUT_MS"))
		ctx.timeout_ms = strtol(getenv("CLOUDTOOL_TIMEOUT_MS"), NULL, 10);
	buf_init(&out, 0);

	if (strcmp(cmd, "imds") == 0 && argc == 3) {
		char v[256];
		struct spot_action sa;

		if (strcmp(argv[2], "instance-id") == 0)
			r = imds_instance_id(&m, v, sizeof(v));
		else if (strcmp(argv[2], "region") == 0)
			r = imds_region(&m, v, sizeof(v));
		else if (strcmp(argv[2], "lifecycle") == 0)
			r = imds_target_lifecycle_state(&m, v, sizeof(v));
		else if (strcmp(argv[2], "spot") == 0) {
			r = imds_spot_action(&m, &sa);
			if (r == 0)
				snprintf(v, sizeof(v), "%s %lld", sa.action, (long long)sa.time);
		} else {
			usage();
			rc = 64;
			goto out;
		}
		if (r == -ENOENT) {
			printf("none\n");
			rc = 0;
		} else if (r < 0) {
			fprintf(stderr, "cloudtool: imds %s: %s\n", argv[2], strerror(-r));
		} else {
			printf("%s\n", v);
			rc = 0;
		}
		goto out;
	}

	if (strcmp(cmd, "runner-counts") == 0 && argc == 3) {
		struct runner_api api;
		struct runner_api_error aerr;
		int64_t u = 0, run = 0, n = 0;

		memset(&aerr, 0, sizeof(aerr));
		runner_api_init(&api, http, NULL, getenv("CIRCLE_TOKEN"));
		if ((r = runner_api_unclaimed(&api, argv[2], &u, &aerr)) < 0 ||
		    (r = runner_api_running(&api, argv[2], &run, &aerr)) < 0 ||
		    (r = runner_api_list_runners(&api, argv[2], &n, &aerr)) < 0) {
			fprintf(stderr,
			        "cloudtool: runner api: %s: http %ld: %s (retry-after %ld)\n",
			        strerror(-r), aerr.http_status, aerr.message, aerr.retry_after_s);
			goto out;
		}
		printf("unclaimed=%" PRId64 " running=%" PRId64 " runners=%" PRId64 "\n", u, run,
		       n);
		rc = 0;
		goto out;
	}

	/* Everything below talks to AWS: region, then the credentials chain. */
	if (aws_region_from_env(region, sizeof(region)) < 0 &&
	    (r = imds_region(&m, region, sizeof(region))) < 0) {
		fprintf(stderr, "cloudtool: no region: %s\n", strerror(-r));
		goto out;
	}
	r = creds_resolve(&ctx, &m);
	if (r < 0) {
		fprintf(stderr, "cloudtool: no credentials: %s\n", strerror(-r));
		goto out;
	}

	if (strcmp(cmd, "creds-source") == 0) {
		printf("%s\n", ctx.creds.from_imds ? "imds" : "env");
		rc = 0;
	} else if (strcmp(cmd, "secret") == 0 && (argc == 3 || argc == 4)) {
		r = sm_get_secret(&ctx, region, argv[2], argc == 4 ? argv[3] : NULL, &out, &err);
		if (r < 0)
			rc = fail_aws("secret", r, &err);
		else {
			printf("%s\n", out.data);
			rc = 0;
		}
	} else if (strcmp(cmd, "ssm") == 0 && argc == 3) {
		r = ssm_get_parameter(&ctx, region, argv[2], &out, &err);
		if (r < 0)
			rc = fail_aws("ssm", r, &err);
		else {
			printf("%s\n", out.data);
			rc = 0;
		}
	} else if (strcmp(cmd, "describe") == 0 && argc >= 3) {
		struct asg_group *g = NULL;
		size_t ng = 0, i, j;

		r = asg_describe(&ctx, region, (const char *const *)argv + 2, (size_t)argc - 2, &g,
		                 &ng, &err);
		if (r < 0)
			rc = fail_aws("describe", r, &err);
		else {
			for (i = 0; i < ng; i++) {
				printf("group %s min=%" PRId64 " max=%" PRId64 " desired=%" PRId64
				       " instances=%zu\n",
				       g[i].name, g[i].min_size, g[i].max_size, g[i].desired,
				       g[i].ninstances);
				for (j = 0; j < g[i].ninstances; j++)
					printf("instance %s %s %s protected=%d\n",
					       g[i].instances[j].id,
					       g[i].instances[j].lifecycle_state,
					       g[i].instances[j].health_status,
					       g[i].instances[j].protected_from_scale_in);
			}
			rc = 0;
		}
		asg_groups_free(g, ng);
	} else if (strcmp(cmd, "set-desired") == 0 && argc == 4) {
		r = asg_set_desired(&ctx, region, argv[2], strtoll(argv[3], NULL, 10), false, &err);
		rc = r < 0 ? fail_aws("set-desired", r, &err) : 0;
	} else if (strcmp(cmd, "update") == 0 && argc == 6) {
		r = asg_update(&ctx, region, argv[2], strtoll(argv[3], NULL, 10),
		               strtoll(argv[4], NULL, 10), strtoll(argv[5], NULL, 10), &err);
		rc = r < 0 ? fail_aws("update", r, &err) : 0;
	} else if (strcmp(cmd, "terminate") == 0 && argc == 4) {
		r = asg_terminate_instance(&ctx, region, argv[2], strcmp(argv[3], "true") == 0,
		                           &err);
		if (r < 0) {
			rc = fail_aws("terminate", r, &err);
			if (asg_error_is_not_found(&err))
				printf("not-found\n");
			if (asg_error_is_min_size(&err))
				printf("min-size\n");
		} else {
			rc = 0;
		}
	} else if (strncmp(cmd, "lease-", 6) == 0 && argc >= 4) {
		struct ddb_lease l;

		memset(&l, 0, sizeof(l));
		if (strcmp(cmd, "lease-get") == 0)
			r = ddb_lease_get(&ctx, region, argv[2], argv[3], &l, &err);
		else if (strcmp(cmd, "lease-acquire") == 0 && argc == 6)
			r = ddb_lease_acquire(&ctx, region, argv[2], argv[3], argv[4],
			                      (int64_t)now_wall_ms(), strtoll(argv[5], NULL, 10),
			                      &l, &err);
		else if (strcmp(cmd, "lease-renew") == 0 && argc == 7) {
			l.version = strtoll(argv[6], NULL, 10);
			l.exists = true;
			str_copy(l.owner, argv[4], sizeof(l.owner));
			r = ddb_lease_renew(&ctx, region, argv[2], argv[3], argv[4],
			                    (int64_t)now_wall_ms(), strtoll(argv[5], NULL, 10), &l,
			                    &err);
		} else {
			usage();
			rc = 64;
			goto out;
		}
		if (r < 0) {
			rc = fail_aws(cmd, r, &err);
		} else if (r == 1) {
			printf("lost\n");
			rc = 1;
		} else {
			print_lease(&l);
			rc = 0;
		}
	} else {
		usage();
		rc = 64;
	}
out:
	buf_wipe(&out);
	creds_wipe(&ctx.creds);
	imds_clear(&m);
	http_client_free(http);
	return rc;
}
