/* The IMDS guard (see imds_guard.h). */
#include "imds_guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "subproc.h"
#include "util.h"

/* "add" then "delete" in one transaction: the delete never fails, and nothing of an older table
 * (a runnerd killed before its exit path) survives. nft 1.0.6 has no "destroy". */
#define RESET_TABLE                                                                                \
	"add table inet " IMDS_GUARD_TABLE "\n"                                                    \
	"delete table inet " IMDS_GUARD_TABLE "\n"

int imds_guard_endpoint(const char *url, int *family, char *addr, size_t n, unsigned *port)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *p, *end, *colon = NULL;
	unsigned long v;
	size_t len;
	int fam;

	*family = 0;
	*port = 0;
	if (!url)
		return -EINVAL;
	if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return -EINVAL;
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end)
			return -EINVAL;
		p++;
		len = (size_t)(end - p);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (!colon && end[1] && end[1] != '/')
			return -EINVAL;
		*family = 6;
	} else {
		end = p + strcspn(p, ":/");
		len = (size_t)(end - p);
		colon = *end == ':' ? end : NULL;
		*family = 4;
	}
	if (len == 0 || len >= sizeof(host))
		return len ? -ENOENT : -EINVAL;
	memcpy(host, p, len);
	host[len] = '\0';
	fam = *family;
	if (inet_pton(fam == 6 ? AF_INET6 : AF_INET, host, bin) != 1) {
		*family = 0;
		return fam == 6 ? -EINVAL : -ENOENT; /* [...] must hold an address */
	}
	if (colon) {
		char *stop;

		if (colon[1] < '0' || colon[1] > '9')
			return -EINVAL;
		errno = 0;
		v = strtoul(colon + 1, &stop, 10);
		if (errno || v == 0 || v > 65535 || (*stop && *stop != '/'))
			return -EINVAL;
		*port = (unsigned)v;
	}
	if (str_copy(addr, host, n) >= n)
		return -ENAMETOOLONG;
	return 0;
}

static int add_rule(struct buf *out, uid_t uid, int family, const char *addr, unsigned port)
{
	if (port)
		return buf_printf(out, "\t\tmeta skuid %u %s daddr %s tcp dport %u reject\n",
		                  (unsigned)uid, family == 6 ? "ip6" : "ip", addr, port);
	return buf_printf(out, "\t\tmeta skuid %u %s daddr %s reject\n", (unsigned)uid,
	                  family == 6 ? "ip6" : "ip", addr);
}

int imds_guard_ruleset(uid_t uid, const char *endpoint, struct buf *out)
{
	char addr[INET6_ADDRSTRLEN + 1];
	unsigned port = 0;
	int family = 0, r;

	if (uid == 0)
		return -EINVAL;
	r = buf_append_str(out, RESET_TABLE "table inet " IMDS_GUARD_TABLE " {\n"
	                                    "\tchain imds_guard {\n"
	                                    "\t\ttype filter hook output priority filter; "
	                                    "policy accept;\n");
	if (r == 0)
		r = add_rule(out, uid, 4, IMDS_GUARD_ADDR4, 0);
	if (r == 0)
		r = add_rule(out, uid, 6, IMDS_GUARD_ADDR6, 0);
	/* The endpoint tests and odd setups point runnerd at: only an IP literal can be matched
	 * here, and the two real addresses are covered whatever its port. */
	if (r == 0 && endpoint && *endpoint &&
	    imds_guard_endpoint(endpoint, &family, addr, sizeof(addr), &port) == 0 &&
	    strcmp(addr, IMDS_GUARD_ADDR4) != 0 && strcasecmp(addr, IMDS_GUARD_ADDR6) != 0)
		r = add_rule(out, uid, family, addr, port);
	if (r == 0)
		r = buf_append_str(out, "\t}\n}\n");
	return r;
}

const char *imds_guard_removal(void)
{
	return RESET_TABLE;
}

static int run_nft(const char *script, size_t len, int *status)
{
	const char *argv[] = {"nft", "-f", "-", NULL};
	struct spawn_opts o = {.search_path = true,
	                       .stdout_to_stderr = true,
	                       .timeout_ms = IMDS_GUARD_TIMEOUT_MS,
	                       .input = script,
	                       .input_len = len};
	int r;

	r = spawn_run(argv, &o, status);
	if (r < 0)
		return r;
	return *status == 0 ? 0 : -EIO;
}

int imds_guard_install(uid_t uid, const char *endpoint, int *status)
{
	struct buf script;
	int r;

	*status = -1;
	buf_init(&script, 4096);
	r = imds_guard_ruleset(uid, endpoint, &script);
	if (r == 0)
		r = run_nft(script.data, script.len, status);
	buf_free(&script);
	return r;
}

int imds_guard_remove(int *status)
{
	*status = -1;
	return run_nft(RESET_TABLE, strlen(RESET_TABLE), status);
}
