/* The control-socket request line ({"version":1,"command":"status"|"drain"}).
 * Properties: only the documented return codes; a command is set only on success. */
#include <errno.h>

#include "control.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum control_command cmd = (enum control_command) - 1;
	int r;

	r = control_parse_request((const char *)data, size, &cmd);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPROTO || r == -EINVAL || r == -EMSGSIZE);
	if (r == 0)
		FUZZ_CHECK(cmd == CONTROL_STATUS || cmd == CONTROL_DRAIN);
	else
		FUZZ_CHECK(cmd == (enum control_command) - 1);
	if (size > CONTROL_REQUEST_MAX)
		FUZZ_CHECK(r == -EMSGSIZE);
	return 0;
}
