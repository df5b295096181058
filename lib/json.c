#include "json.h"

#include <ctype.h>
#include <stdbool.h>

cJSON *json_parse_exact(const char *json, size_t len)
{
	const char *end = NULL;
	cJSON *root;

	if (!json || len == 0)
		return NULL;
	root = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (!root)
		return NULL;
	for (; end && end < json + len; end++) {
		if (!isspace((unsigned char)*end)) {
			cJSON_Delete(root);
			return NULL;
		}
	}
	return root;
}
