/* Unit tests: the XML reader on real Auto Scaling responses, entities, namespaces, and a table
 * of broken input (truncated, mismatched, unknown entities, DTDs, limits). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "util.h"
#include "xml.h"

static const char describe_xml[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<DescribeAutoScalingGroupsResponse "
        "xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\n"
        " <DescribeAutoScalingGroupsResult><AutoScalingGroups><member>\n"
        "  <AutoScalingGroupName>my-asg</AutoScalingGroupName>\n"
        "  <MinSize>1</MinSize><MaxSize>10</MaxSize><DesiredCapacity>2</DesiredCapacity>\n"
        "  <AvailabilityZones><member>us-east-1a</member><member>us-east-1b</member>"
        "</AvailabilityZones>\n"
        "  <LoadBalancerNames/><Tags />\n"
        "  <Instances>\n"
        "   <member><InstanceId>i-0123456789abcdef0</InstanceId>\n"
        "    <LaunchTemplate><LaunchTemplateId>lt-0abc</LaunchTemplateId><Version>1</Version>"
        "</LaunchTemplate>\n"
        "    <LifecycleState>InService</LifecycleState></member>\n"
        "   <member><InstanceId>i-0fedcba9876543210</InstanceId>"
        "<LifecycleState>Terminating:Wait</LifecycleState></member>\n"
        "  </Instances>\n"
        " </member></AutoScalingGroups></DescribeAutoScalingGroupsResult>\n"
        " <!-- a comment, with <tags> & ampersands -->\n"
        " <ResponseMetadata><RequestId>0f02a07d-b677-11e2-9eb0-dd50EXAMPLE</RequestId>"
        "</ResponseMetadata>\n"
        "</DescribeAutoScalingGroupsResponse>\n";

static int parse_str(const char *s, struct xml_node **root)
{
	return xml_parse(s, strlen(s), root);
}

static void test_describe_response(void **state)
{
	struct xml_node *root, *g, *inst, *m;
	size_t n = 0;

	assert_int_equal(parse_str(describe_xml, &root), 0);
	assert_string_equal(root->name, "DescribeAutoScalingGroupsResponse");
	g = xml_path(root, "DescribeAutoScalingGroupsResult/AutoScalingGroups/member");
	assert_non_null(g);
	assert_string_equal(xml_text(g, "AutoScalingGroupName"), "my-asg");
	assert_string_equal(xml_text(g, "MinSize"), "1");
	assert_string_equal(xml_text(g, "DesiredCapacity"), "2");
	assert_string_equal(xml_text(g, "AvailabilityZones/member"), "us-east-1a");
	assert_string_equal(xml_text(g, "Tags"), "");
	assert_string_equal(xml_text(g, "LoadBalancerNames"), "");
	assert_null(xml_text(g, "NoSuchThing"));
	assert_null(xml_path(g, "Instances/member/Nope"));
	inst = xml_child(g, "Instances");
	assert_non_null(inst);
	for (m = inst->child; m; m = m->next) {
		assert_string_equal(m->name, "member");
		n++;
	}
	assert_int_equal(n, 2);
	assert_string_equal(xml_text(inst->child, "LaunchTemplate/Version"), "1");
	assert_string_equal(xml_text(inst->child->next, "LifecycleState"), "Terminating:Wait");
	assert_string_equal(xml_text(root, "ResponseMetadata/RequestId"),
	                    "0f02a07d-b677-11e2-9eb0-dd50EXAMPLE");
	/* The empty path is n itself. */
	assert_ptr_equal(xml_path(root, ""), root);
	assert_null(xml_path(NULL, "a"));
	assert_null(xml_child(NULL, "a"));
	xml_free(root);
}

static void test_entities_and_text(void **state)
{
	static const struct {
		const char *xml;
		const char *want;
	} cases[] = {
	        {"<a>x &lt; y &gt; z &amp; &quot;q&quot; &apos;s&apos;</a>",
	         "x < y > z & \"q\" 's'"},
	        {"<a>&#65;&#x42;&#x63;</a>", "ABc"},
	        {"<a>caf&#xE9;</a>", "caf\xC3\xA9"},
	        {"<a>&#8364;</a>", "\xE2\x82\xAC"},
	        {"<a>&#x1F600;</a>", "\xF0\x9F\x98\x80"},
	        {"<a>{&quot;Subnet ID&quot;:&quot;subnet-1234&quot;}</a>",
	         "{\"Subnet ID\":\"subnet-1234\"}"},
	        {"<a><![CDATA[<raw> & stuff]]></a>", "<raw> & stuff"},
	        {"<a>one<!-- c -->two<?pi x?>three</a>", "onetwothree"},
	        {"<a>  keep  spaces </a>", "  keep  spaces "},
	        {"<a>x > y</a>", "x > y"},
	        {"<a></a>", ""},
	        {"<a/>", ""},
	        {"\xEF\xBB\xBF<a>bom</a>", "bom"},
	        {"<a b=\"1\" c='2>3' d = \"&amp;\">attrs</a>", "attrs"},
	        {"<ns:a xmlns:ns=\"urn:x\">ns</ns:a >", "ns"},
	};
	struct xml_node *root;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = parse_str(cases[i].xml, &root);

		if (r != 0)
			fail_msg("case %zu: parse %s: %d", i, cases[i].xml, r);
		if (strcmp(root->text, cases[i].want) != 0)
			fail_msg("case %zu: text '%s' want '%s'", i, root->text, cases[i].want);
		xml_free(root);
	}
}

static void test_namespaces_stripped(void **state)
{
	struct xml_node *root;

	assert_int_equal(parse_str("<s:Envelope xmlns:s=\"urn:s\"><s:Body><x:Item xmlns:x=\"u\">"
	                           "v</x:Item></s:Body></s:Envelope>",
	                           &root),
	                 0);
	assert_string_equal(root->name, "Envelope");
	assert_string_equal(xml_text(root, "Body/Item"), "v");
	xml_free(root);
}

static void test_broken(void **state)
{
	static const struct {
		const char *xml;
		int want;
	} cases[] = {
	        {"", -EBADMSG},
	        {"   \n", -EBADMSG},
	        {"just text", -EBADMSG},
	        {"<a>", -EBADMSG},
	        {"<a><b></b>", -EBADMSG},
	        {"<a>text", -EBADMSG},
	        {"<a></b>", -EBADMSG},
	        {"<a><b></a></b>", -EBADMSG},
	        {"<ns:a></other:a>", -EBADMSG},
	        {"<\x87:/>", -EBADMSG}, /* found by fuzzing: a prefix without a local name */
	        {"<a><b:></b:></a>", -EBADMSG},
	        {"<a></a><b></b>", -EBADMSG},
	        {"<a></a>trailing", -EBADMSG},
	        {"</a>", -EBADMSG},
	        {"<a>&unknown;</a>", -EBADMSG},
	        {"<a>&amp</a>", -EBADMSG},
	        {"<a>& </a>", -EBADMSG},
	        {"<a>&;</a>", -EBADMSG},
	        {"<a>&#;</a>", -EBADMSG},
	        {"<a>&#x;</a>", -EBADMSG},
	        {"<a>&#0;</a>", -EBADMSG},
	        {"<a>&#xD800;</a>", -EBADMSG},
	        {"<a>&#x110000;</a>", -EBADMSG},
	        {"<a>&#12a;</a>", -EBADMSG},
	        {"<a>&#99999999999999;</a>", -EBADMSG},
	        {"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", -EBADMSG},
	        {"<a><!-- unterminated </a>", -EBADMSG},
	        {"<?xml version=\"1.0\"", -EBADMSG},
	        {"<a><![CDATA[open</a>", -EBADMSG},
	        {"<![CDATA[x]]><a/>", -EBADMSG},
	        {"<a b></a>", -EBADMSG},
	        {"<a b=1></a>", -EBADMSG},
	        {"<a b=\"1></a>", -EBADMSG},
	        {"<a b=\"1\"c=\"2\"></a>", -EBADMSG},
	        {"<a/ >", -EBADMSG},
	        {"< a></a>", -EBADMSG},
	        {"<1a></1a>", -EBADMSG},
	        {"<a></a", -EBADMSG},
	        {"<a", -EBADMSG},
	};
	struct xml_node *root = (struct xml_node *)1;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = parse_str(cases[i].xml, &root);

		if (r != cases[i].want)
			fail_msg("case %zu '%s': got %d want %d", i, cases[i].xml, r,
			         cases[i].want);
		assert_null(root);
	}
}

static void test_truncated_prefixes(void **state)
{
	struct xml_node *root;
	size_t len = strlen(describe_xml), cut;

	/* Every proper prefix that cuts into the root element is rejected. */
	for (cut = 0; cut < len; cut++) {
		int r = xml_parse(describe_xml, cut, &root);

		if (cut < len - 1 && r != -EBADMSG)
			fail_msg("prefix of %zu bytes: got %d", cut, r);
		if (r == 0)
			xml_free(root);
	}
	/* Only the trailing newline may go. */
	assert_int_equal(xml_parse(describe_xml, len - 1, &root), 0);
	xml_free(root);
}

static void test_nul_byte(void **state)
{
	static const char s[] = "<a>x\0y</a>";
	struct xml_node *root;

	assert_int_equal(xml_parse(s, sizeof(s) - 1, &root), -EBADMSG);
	assert_null(root);
}

static void test_depth_limit(void **state)
{
	struct buf b;
	struct xml_node *root;
	int i;

	buf_init(&b, 0);
	for (i = 0; i < XML_MAX_DEPTH; i++)
		assert_int_equal(buf_append_str(&b, "<d>"), 0);
	for (i = 0; i < XML_MAX_DEPTH; i++)
		assert_int_equal(buf_append_str(&b, "</d>"), 0);
	assert_int_equal(xml_parse(b.data, b.len, &root), 0);
	xml_free(root);

	buf_reset(&b);
	for (i = 0; i < XML_MAX_DEPTH + 1; i++)
		assert_int_equal(buf_append_str(&b, "<d>"), 0);
	for (i = 0; i < XML_MAX_DEPTH + 1; i++)
		assert_int_equal(buf_append_str(&b, "</d>"), 0);
	assert_int_equal(xml_parse(b.data, b.len, &root), -E2BIG);
	assert_null(root);

	/* Self-closing at the limit counts too. */
	buf_reset(&b);
	for (i = 0; i < XML_MAX_DEPTH; i++)
		assert_int_equal(buf_append_str(&b, "<d>"), 0);
	assert_int_equal(buf_append_str(&b, "<e/>"), 0);
	for (i = 0; i < XML_MAX_DEPTH; i++)
		assert_int_equal(buf_append_str(&b, "</d>"), 0);
	assert_int_equal(xml_parse(b.data, b.len, &root), -E2BIG);
	buf_free(&b);
}

static void test_node_limit(void **state)
{
	struct buf b;
	struct xml_node *root;
	size_t i;

	buf_init(&b, 8 * 1024 * 1024);
	assert_int_equal(buf_append_str(&b, "<r>"), 0);
	for (i = 0; i < XML_MAX_NODES - 1; i++)
		assert_int_equal(buf_append(&b, "<m/>", 4), 0);
	assert_int_equal(buf_append_str(&b, "</r>"), 0);
	assert_int_equal(xml_parse(b.data, b.len, &root), 0);
	xml_free(root);

	buf_reset(&b);
	assert_int_equal(buf_append_str(&b, "<r>"), 0);
	for (i = 0; i < XML_MAX_NODES; i++)
		assert_int_equal(buf_append(&b, "<m/>", 4), 0);
	assert_int_equal(buf_append_str(&b, "</r>"), 0);
	assert_int_equal(xml_parse(b.data, b.len, &root), -E2BIG);
	assert_null(root);
	buf_free(&b);
}

/* A limit of the caller's own: exactly max_nodes nodes parse, one more is -E2BIG; 0 means the
 * default. */
static void test_node_limit_of_caller(void **state)
{
	static const struct {
		size_t members; /* <m/> children of <r>: members + 1 nodes */
		size_t limit;
		int want;
	} cases[] = {
	        {9, 10, 0},
	        {10, 10, -E2BIG},
	        {0, 1, 0},
	        {1, 1, -E2BIG},
	        {999, 1000, 0},
	        {1000, 1000, -E2BIG},
	        {XML_MAX_NODES - 1, 0, 0},
	        {XML_MAX_NODES, 0, -E2BIG},
	        {XML_MAX_NODES, XML_MAX_NODES + 1, 0},
	};
	struct buf b;
	struct xml_node *root;

	buf_init(&b, 8 * 1024 * 1024);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r;

		buf_reset(&b);
		assert_int_equal(buf_append_str(&b, "<r>"), 0);
		for (size_t j = 0; j < cases[i].members; j++)
			assert_int_equal(buf_append(&b, "<m/>", 4), 0);
		assert_int_equal(buf_append_str(&b, "</r>"), 0);
		r = xml_parse_limit(b.data, b.len, cases[i].limit, &root);
		if (r != cases[i].want)
			fail_msg("case %zu: %d, want %d", i, r, cases[i].want);
		if (r == 0)
			assert_non_null(root);
		else
			assert_null(root);
		xml_free(root);
	}
	buf_free(&b);
}

/* Indentation between children is not kept as text (a large document would keep megabytes of
 * it); text of a leaf, and text beside children, is. */
static void test_indentation_is_not_text(void **state)
{
	struct xml_node *root;

	assert_int_equal(parse_str("<r>\n  <a>  x  </a>\n  <b>\n  </b>\n  <c>\n\t<d/>\n  </c>\n"
	                           "  <e> t <f/> u </e>\n</r>",
	                           &root),
	                 0);
	assert_string_equal(root->text, "");
	assert_string_equal(xml_text(root, "a"), "  x  ");
	assert_string_equal(xml_text(root, "b"), "\n  ");
	assert_string_equal(xml_text(root, "c"), "");
	assert_string_equal(xml_text(root, "c/d"), "");
	assert_string_equal(xml_text(root, "e"), " t  u ");
	xml_free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_describe_response),
	        cmocka_unit_test(test_entities_and_text),
	        cmocka_unit_test(test_namespaces_stripped),
	        cmocka_unit_test(test_broken),
	        cmocka_unit_test(test_truncated_prefixes),
	        cmocka_unit_test(test_nul_byte),
	        cmocka_unit_test(test_depth_limit),
	        cmocka_unit_test(test_node_limit),
	        cmocka_unit_test(test_node_limit_of_caller),
	        cmocka_unit_test(test_indentation_is_not_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
