/* JSON-protocol error bodies (Secrets Manager, SSM, DynamoDB): {"__type", "message"|"Message"}
 * with botocore's prefix and suffix rules.
 * Properties: a parsed code is non-empty, without '#', ':' or control characters; the message
 * is terminated and free of control characters. */
#include <errno.h>

#include "aws.h"
#include "aws_services.h"
#include "fuzz.h"

static void check_printable(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	FUZZ_CHECK(n < size);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aws_error err;
	int r;

	memset(&err, 0, sizeof(err));
	err.retry_after_s = -1;
	r = aws_parse_json_error((const char *)data, size, &err);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0) {
		FUZZ_CHECK(err.code[0] != '\0');
		FUZZ_CHECK(!strchr(err.code, '#') && !strchr(err.code, ':'));
		check_printable(err.code, sizeof(err.code));
		check_printable(err.message, sizeof(err.message));
		(void)aws_error_retryable(&err);
	}
	return 0;
}
