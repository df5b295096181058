/* Auto Scaling Query responses: the XML reader itself, DescribeAutoScalingGroups (with paging
 * token) and ErrorResponse. The same input goes to each.
 * Properties: the tree respects the depth and node limits and has a name and text on every
 * node; parsed groups have names and instances with ids; an error code is non-empty and free
 * of control characters; nothing is handed out on failure. */
#include <errno.h>

#include "aws.h"
#include "aws_services.h"
#include "fuzz.h"
#include "xml.h"

static size_t walk(const struct xml_node *n, size_t depth)
{
	size_t count = 0;

	FUZZ_CHECK(depth <= XML_MAX_DEPTH);
	for (; n; n = n->next) {
		FUZZ_CHECK(n->name != NULL && n->name[0] != '\0');
		FUZZ_CHECK(n->text != NULL);
		count += 1 + walk(n->child, depth + 1);
	}
	return count;
}

static void check_printable(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	FUZZ_CHECK(n < size);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *xml = (const char *)data;
	struct xml_node *root = NULL;
	struct asg_group *groups = NULL;
	struct aws_error err;
	char token[2048];
	size_t ngroups = 0;
	int r;

	r = xml_parse(xml, size, &root);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -E2BIG);
	if (r == 0) {
		FUZZ_CHECK(root != NULL && root->next == NULL);
		FUZZ_CHECK(walk(root, 1) <= XML_MAX_NODES);
		(void)xml_text(root, "DescribeAutoScalingGroupsResult/AutoScalingGroups/member");
		(void)xml_path(root, "Error/Code");
	}
	xml_free(root);

	r = asg_parse_describe(xml, size, &groups, &ngroups, token, sizeof(token));
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -E2BIG);
	FUZZ_CHECK(strnlen(token, sizeof(token)) < sizeof(token));
	if (r == 0) {
		FUZZ_CHECK(ngroups == 0 || groups != NULL);
		for (size_t i = 0; i < ngroups; i++) {
			const struct asg_group *g = &groups[i];

			FUZZ_CHECK(g->name[0] &&
			           strnlen(g->name, sizeof(g->name)) < sizeof(g->name));
			FUZZ_CHECK(g->min_size >= 0 && g->max_size >= 0 && g->desired >= 0);
			FUZZ_CHECK(g->ninstances == 0 || g->instances != NULL);
			for (size_t k = 0; k < g->ninstances; k++) {
				FUZZ_CHECK(g->instances[k].id[0] != '\0');
				FUZZ_CHECK(g->instances[k].lifecycle_state[0] != '\0');
			}
		}
	} else {
		FUZZ_CHECK(groups == NULL && ngroups == 0 && token[0] == '\0');
	}
	asg_groups_free(groups, ngroups);

	memset(&err, 0, sizeof(err));
	err.retry_after_s = -1;
	r = aws_parse_query_error(xml, size, &err);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0) {
		FUZZ_CHECK(err.code[0] != '\0');
		check_printable(err.code, sizeof(err.code));
		check_printable(err.message, sizeof(err.message));
		check_printable(err.request_id, sizeof(err.request_id));
		(void)aws_error_retryable(&err);
		(void)asg_error_is_not_found(&err);
		(void)asg_error_is_min_size(&err);
	}
	return 0;
}
