/* The control socket: a Unix stream socket, one small versioned JSON request per connection,
 * one JSON reply. SO_PEERCRED: root or a member of the socket's group only. Bounded request size,
 * non-blocking, per-client deadline: a slow or hostile client cannot block the supervisor. */
#ifndef RUNNERD_CONTROL_H
#define RUNNERD_CONTROL_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "status.h"

#define CONTROL_REQUEST_MAX       4096
#define CONTROL_MAX_CLIENTS       8
#define CONTROL_CLIENT_TIMEOUT_MS 2000
#define CONTROL_PROTOCOL_VERSION  1

enum control_command {
	CONTROL_STATUS,
	CONTROL_DRAIN,
};

/* Request: one line of JSON, {"version":1,"command":"status"|"drain"}\n.
 * 0, -EBADMSG (not JSON / no command), -EPROTO (unsupported version), -EINVAL (unknown command),
 * -EMSGSIZE (len > CONTROL_REQUEST_MAX). A missing "version" is taken as 1. */
int control_parse_request(const char *line, size_t len, enum control_command *cmd);

/* May this peer use the socket? root always; otherwise sock_gid must be the peer's primary gid or
 * among its supplementary groups. */
bool control_peer_allowed(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
                          gid_t sock_gid);

struct control_server;

/* Bind path (unlinking a stale socket; creating the parent directory 0755 when missing), mode
 * 0660, group = group name (NULL or "" = root's group 0; all digits = a gid). -ENOENT unknown
 * group, -EADDRINUSE another server listens on path, -EEXIST a non-socket is in the way, -errno. */
int control_server_open(const char *path, const char *group, struct control_server **out);
void control_server_close(struct control_server *s); /* unlinks the socket */

/* Poll integration: fill up to max pollfds (listening fd + clients); returns how many. */
size_t control_server_pollfds(struct control_server *s, struct pollfd *fds, size_t max);
/* Milliseconds until the nearest client deadline, or -1. */
int control_server_timeout_ms(const struct control_server *s, uint64_t now_mono_ms);
/* Handle readiness for the pollfds filled above; answers status from st; sets *drain when a
 * permitted client asked for a drain. Never blocks. */
void control_server_dispatch(struct control_server *s, const struct pollfd *fds, size_t n,
                             const struct runnerd_status *st, uint64_t now_mono_ms,
                             uint64_t now_wall_ms, bool *drain);

#endif
