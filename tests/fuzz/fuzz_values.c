/* The small value parsers of outside input: config durations, sizes, booleans and integers,
 * listen addresses, Retry-After, ISO-8601 times, URL policy, runner-name patterns. The whole
 * input is handed to each as one C string.
 * Properties: a parsed duration prints canonically and re-parses to the same value; a parsed
 * integer prints and re-parses the same; an expanded runner name holds only CircleCI's
 * characters. */
#include <errno.h>
#include <inttypes.h>

#include "agent.h"
#include "config.h"
#include "fuzz.h"
#include "http.h"
#include "scaler_config.h"
#include "util.h"

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '(' || c == ')' || c == '-' || c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	char text[128], host[64], name[64];
	uint64_t u, u2;
	int64_t i, i2;
	uint16_t port;
	time_t t;
	bool b;
	int r;

	r = cfg_parse_duration(s, &u);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		cfg_format_duration(u, text, sizeof(text));
		FUZZ_CHECK(cfg_parse_duration(text, &u2) == 0);
		FUZZ_CHECK(u == u2);
	}
	r = cfg_parse_size(s, &u);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	r = cfg_parse_bool(s, &b);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	r = cfg_parse_int(s, &i);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		snprintf(text, sizeof(text), "%" PRId64, i);
		FUZZ_CHECK(cfg_parse_int(text, &i2) == 0 && i == i2);
	}

	r = scaler_parse_listen(s, host, sizeof(host), &port);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r == 0)
		FUZZ_CHECK(strlen(host) < sizeof(host));

	FUZZ_CHECK(http_parse_retry_after(s, 1700000000L) >= -1);
	(void)parse_iso8601(s, &t);
	(void)http_url_allowed(s, false);
	(void)http_url_allowed(s, true);

	r = agent_expand_name(s, "ip-10-0-0-1.ec2.internal", "i-0123456789abcdef0", name,
	                      sizeof(name));
	if (r == 0) {
		FUZZ_CHECK(name[0] != '\0');
		for (const char *p = name; *p; p++)
			FUZZ_CHECK(name_char_ok(*p));
	}
	free(s);
	return 0;
}
