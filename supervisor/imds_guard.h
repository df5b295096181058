/* Keeping jobs away from the instance role: an nftables table of runnerd's own (table inet
 * runnerd) rejects what sockets of the job user send to the instance metadata service, so a job
 * cannot fetch the role's credentials. runnerd installs it before the agent starts and removes it
 * when it exits. It only makes sense for a job user other than runnerd's own: runnerd reads IMDS
 * itself. Both scripts are idempotent (a stale table of a killed runnerd is replaced). Never
 * logs; see runnerd(8), SECURITY. */
#ifndef RUNNERD_IMDS_GUARD_H
#define RUNNERD_IMDS_GUARD_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

#define IMDS_GUARD_TABLE      "runnerd"
#define IMDS_GUARD_ADDR4      "169.254.169.254"
#define IMDS_GUARD_ADDR6      "fd00:ec2::254"
#define IMDS_GUARD_TIMEOUT_MS 10000L

/* Pure: the host of an endpoint URL ("http://127.0.0.1:8080/", "http://[fd00::1]") when it is
 * an IP literal: *family 4 or 6, the address as written, *port (0 = none given). -ENOENT for a
 * host name, -EINVAL for what is not an http(s) URL. */
int imds_guard_endpoint(const char *url, int *family, char *addr, size_t n, unsigned *port);

/* Pure: the nft script (re)creating the table: the two real IMDS addresses, plus the endpoint
 * (AWS_EC2_METADATA_SERVICE_ENDPOINT; NULL or "" = none) when its host is an IP literal, with
 * its port when one is given. Appends to out. 0, -EINVAL for uid 0 (it would cut runnerd off
 * too), -ENOMEM/-EFBIG. */
int imds_guard_ruleset(uid_t uid, const char *endpoint, struct buf *out);

/* Pure: the nft script removing the table, present or not. */
const char *imds_guard_removal(void);

/* Run `nft -f -` (nft looked up in PATH) with the ruleset, or the removal. 0; -ENOENT (no nft);
 * -EIO with *status the exit status of nft (its messages went to runnerd's stderr); -ETIMEDOUT;
 * -errno. */
int imds_guard_install(uid_t uid, const char *endpoint, int *status);
int imds_guard_remove(int *status);

#endif
