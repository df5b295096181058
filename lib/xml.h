/* A small, bounded XML reader for AWS Query responses: elements, text, the five entities and
 * numeric references; attributes and namespaces skipped; no DTDs. Enough for what we read. */
#ifndef RUNNERD_XML_H
#define RUNNERD_XML_H

#include <stddef.h>

#define XML_MAX_DEPTH 32
#define XML_MAX_NODES 200000

struct xml_node {
	char *name; /* local name, prefix stripped */
	char *text; /* concatenated text content of this element (entities decoded), "" if none */
	struct xml_node *child;
	struct xml_node *next;
};

/* 0, -EBADMSG for malformed/truncated XML, -E2BIG past depth/node limits, -ENOMEM. */
int xml_parse(const char *s, size_t len, struct xml_node **root);
/* The same with a node limit of its own (0 = XML_MAX_NODES): for documents whose legitimate
 * size is known to be larger, like a describe of a large fleet. Each node costs about 100
 * bytes of memory. */
int xml_parse_limit(const char *s, size_t len, size_t max_nodes, struct xml_node **root);
void xml_free(struct xml_node *root);
/* First child named name, or NULL. */
struct xml_node *xml_child(const struct xml_node *n, const char *name);
/* Walk "A/B/C" from n (n itself is not part of the path); NULL if any step is missing. */
struct xml_node *xml_path(const struct xml_node *n, const char *path);
/* Text at path or NULL. */
const char *xml_text(const struct xml_node *n, const char *path);

#endif
