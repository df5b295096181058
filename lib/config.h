/* Typed INI configuration on inih. A schema is a table of sections and keys; values land in the
 * caller's structs; unknown sections/keys and bad values are errors reported as
 * "FILE:LINE: key: reason"; defaults are filled after parsing; environment overrides after that. */
#ifndef RUNNERD_CONFIG_H
#define RUNNERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
	CFG_STRING,   /* char * (NULL when unset and no default; "" allowed) */
	CFG_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
	CFG_INT,      /* int64_t */
	CFG_DURATION, /* uint64_t milliseconds: "250ms", "10s", "1m", "5h15m", "2d"; bare number =
	                 seconds */
	CFG_SIZE,     /* uint64_t bytes: "512", "64K", "1M", "1MiB", "2G" (binary multiples) */
	CFG_LIST,     /* struct cfg_list: whitespace- or comma-separated words */
	CFG_ENUM,     /* int: index into choices */
};

#define CFG_SECRET 0x1u /* printed as <redacted> */
#define CFG_REQUIRED                                                                               \
	0x2u /* missing after defaults and env: error "FILE: [section] key: required" */

struct cfg_list {
	char **items;
	size_t n;
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t offset;              /* offsetof(section struct, field) */
	const char *def;            /* default, parsed like a file value; NULL = unset */
	const char *const *choices; /* CFG_ENUM: NULL-terminated */
	int64_t min, max; /* CFG_INT, CFG_DURATION (ms), CFG_SIZE bounds; min == max == 0: none */
	unsigned flags;
	const char *env; /* environment variable that overrides the value, or NULL */
};

struct cfg_section {
	const char *name; /* "agent"; for named sections the type word, "pool" in [pool NAME] */
	bool named;       /* many instances, each [TYPE NAME] */
	const struct cfg_key *keys;
	size_t nkeys;
	size_t size;          /* sizeof the section struct */
	size_t name_offset;   /* named: offsetof the char * that receives NAME */
	size_t max_instances; /* named: at most this many (0 = 1024) */
};

struct cfg; /* opaque: owns every string, list and struct it hands out */

/* Parse path (or text, with display name for messages). On bad config returns -EINVAL and fills
 * *errors (caller frees) with one "FILE:LINE: key: reason" line per problem, newline-separated;
 * other failures return -errno (-ENOENT when the file is missing). *out is set only on success. */
int cfg_load_file(const struct cfg_section *schema, size_t nsections, const char *path,
                  struct cfg **out, char **errors);
int cfg_load_string(const struct cfg_section *schema, size_t nsections, const char *text,
                    const char *display_name, struct cfg **out, char **errors);

/* Singleton section data (defaults filled even when the section was absent); NULL if unknown. */
void *cfg_get(const struct cfg *c, const char *section);
/* Named sections, in file order. */
size_t cfg_count(const struct cfg *c, const char *type);
void *cfg_get_named(const struct cfg *c, const char *type, size_t i);
/* The line a key was set on (0 when defaulted or from the environment), for later validation
 * messages; data is a pointer returned by cfg_get/cfg_get_named. */
unsigned cfg_line(const struct cfg *c, const void *data, const char *key);
const char *cfg_path(const struct cfg *c);

/* The effective config as INI: every section and key, "key = value", secrets as <redacted>.
 * Re-parsing the output gives the same config (tested). */
int cfg_print(const struct cfg *c, FILE *out);
void cfg_free(struct cfg *c);

/* Pure value parsers (unit-tested from tables). 0 or -EINVAL / -ERANGE. */
int cfg_parse_duration(const char *s, uint64_t *ms);
int cfg_parse_size(const char *s, uint64_t *bytes);
int cfg_parse_bool(const char *s, bool *out);
int cfg_parse_int(const char *s, int64_t *out);
/* Canonical text for a duration: "5h15m", "1m", "250ms", "0s". */
void cfg_format_duration(uint64_t ms, char *out, size_t n);

#endif
