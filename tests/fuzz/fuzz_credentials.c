/* Credential-bearing JSON: Secrets Manager GetSecretValue (whole string and a key inside it), SSM
 * GetParameter, IMDS role credentials, IMDS spot instance-action. The same input goes to each.
 * Properties: a value handed out is non-empty; a whole value has no surrounding whitespace;
 * nothing is left in the output on failure; parsed credentials are non-empty and terminated. */
#include <ctype.h>
#include <errno.h>

#include "aws_services.h"
#include "fuzz.h"
#include "imds.h"

static void check_value(int r, const struct buf *out, bool trimmed)
{
	if (r < 0) {
		FUZZ_CHECK(out->len == 0);
		return;
	}
	FUZZ_CHECK(r == 0 && out->len > 0 && out->data != NULL);
	FUZZ_CHECK(out->data[out->len] == '\0');
	if (trimmed) {
		FUZZ_CHECK(!isspace((unsigned char)out->data[0]));
		FUZZ_CHECK(!isspace((unsigned char)out->data[out->len - 1]));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = {NULL, "", "runner_token", "circle_token"};
	const char *json = (const char *)data;
	struct spot_action spot;
	struct aws_creds creds;
	struct buf out;
	int r;

	buf_init(&out, 0);
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		r = sm_parse_secret(json, size, keys[k], &out);
		FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOENT || r == -ENODATA);
		check_value(r, &out, !keys[k] || !keys[k][0]);
	}
	r = ssm_parse_parameter(json, size, &out);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENODATA);
	check_value(r, &out, true);
	buf_wipe(&out);

	memset(&creds, 0xa5, sizeof(creds));
	r = imds_parse_credentials(json, size, &creds);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EACCES);
	if (r == 0) {
		FUZZ_CHECK(creds.from_imds);
		FUZZ_CHECK(creds.akid[0] &&
		           strnlen(creds.akid, sizeof(creds.akid)) < sizeof(creds.akid));
		FUZZ_CHECK(creds.secret[0] &&
		           strnlen(creds.secret, sizeof(creds.secret)) < sizeof(creds.secret));
		FUZZ_CHECK(strnlen(creds.token, sizeof(creds.token)) < sizeof(creds.token));
	}

	memset(&spot, 0, sizeof(spot));
	r = imds_parse_spot_action(json, size, &spot);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0)
		FUZZ_CHECK(!strcmp(spot.action, "terminate") || !strcmp(spot.action, "stop") ||
		           !strcmp(spot.action, "hibernate"));
	return 0;
}
