/* Strict JSON parsing on cJSON for bodies read from the network. */
#ifndef RUNNERD_JSON_H
#define RUNNERD_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Parse exactly [json, json + len): cJSON alone would accept trailing garbage. NULL when the
 * input is empty, malformed, or followed by anything but whitespace. Caller cJSON_Delete()s. */
cJSON *json_parse_exact(const char *json, size_t len);

#endif
