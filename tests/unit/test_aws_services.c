/* aws_services: the pure parsers and classifiers from tables (broken input included), then every
 * call against a loopback HTTP server that records requests and replays canned responses. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "aws_services.h"
#include "http.h"
#include "loopback_server.h"
#include "util.h"
#include "xml.h"

/* ---- Secrets Manager / SSM parsers -------------------------------------------------------- */

struct secret_case {
	const char *json;
	const char *key;
	int r;
	const char *value;
};

static const struct secret_case secret_cases[] = {
        {"{\"SecretString\":\"  tok-123\\n\"}", NULL, 0, "tok-123"},
        {"{\"SecretString\":\"\\ttok\\r\\n\"}", "", 0, "tok"},
        {"{\"Name\":\"x\",\"SecretString\":\"{\\\"runner_token\\\":\\\"abc\\\"}\"}", "runner_token",
         0, "abc"},
        /* escapes survive: quote, backslash, unicode */
        {"{\"SecretString\":\"{\\\"k\\\":\\\"a\\\\\\\"b\\\\\\\\c\\\\u00e9\\\"}\"}", "k", 0,
         "a\"b\\c\xc3\xa9"},
        /* a key value keeps its inner whitespace; only the whole value is trimmed */
        {"{\"SecretString\":\"{\\\"k\\\":\\\" a b \\\"}\"}", "k", 0, " a b "},
        {"{\"SecretString\":\"{\\\"other\\\":\\\"abc\\\"}\"}", "runner_token", -ENOENT, NULL},
        {"{\"SecretString\":\"{\\\"k\\\":42}\"}", "k", -EBADMSG, NULL},
        {"{\"SecretString\":\"{\\\"k\\\":null}\"}", "k", -EBADMSG, NULL},
        {"{\"SecretString\":\"{\\\"k\\\":{\\\"a\\\":\\\"b\\\"}}\"}", "k", -EBADMSG, NULL},
        {"{\"SecretString\":\"{\\\"k\\\":true}\"}", "k", -EBADMSG, NULL},
        {"{\"SecretString\":\"{\\\"k\\\":\\\"\\\"}\"}", "k", -ENODATA, NULL},
        {"{\"SecretString\":\"not json\"}", "k", -EBADMSG, NULL},
        {"{\"SecretString\":\"[\\\"k\\\"]\"}", "k", -EBADMSG, NULL},
        {"{\"SecretString\":\"{\\\"k\\\":\\\"v\\\"\"}", "k", -EBADMSG, NULL}, /* truncated inner */
        {"{\"SecretBinary\":\"AAECAw==\"}", NULL, -ENOENT, NULL},
        {"{\"SecretBinary\":\"AAECAw==\"}", "k", -ENOENT, NULL},
        {"{\"SecretString\":null}", NULL, -ENOENT, NULL},
        {"{\"SecretString\":\"\"}", NULL, -ENODATA, NULL},
        {"{\"SecretString\":\" \\n\\t \"}", NULL, -ENODATA, NULL},
        {"{\"SecretString\":12}", NULL, -EBADMSG, NULL},
        {"{\"SecretString\":[\"a\"]}", NULL, -EBADMSG, NULL},
        {"{\"SecretString\":\"abc\"", NULL, -EBADMSG, NULL}, /* truncated */
        {"{\"SecretString\":\"abc\"} trailing", NULL, -EBADMSG, NULL},
        {"[\"SecretString\"]", NULL, -EBADMSG, NULL},
        {"\"SecretString\"", NULL, -EBADMSG, NULL},
        {"", NULL, -EBADMSG, NULL},
        {"{\"SecretString\":\"abc\"}\n", NULL, 0, "abc"}, /* trailing whitespace is fine */
};

static void test_sm_parse_secret_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(secret_cases) / sizeof(secret_cases[0]); i++) {
		const struct secret_case *c = &secret_cases[i];
		struct buf out;
		int r;

		buf_init(&out, 0);
		buf_append_str(&out, "previous-secret");
		r = sm_parse_secret(c->json, strlen(c->json), c->key, &out);
		if (r != c->r)
			fail_msg("case %zu (%s): got %d, want %d", i, c->json, r, c->r);
		if (c->value) {
			assert_non_null(out.data);
			assert_int_equal(out.len, strlen(c->value));
			assert_memory_equal(out.data, c->value, out.len);
		} else {
			assert_int_equal(out.len, 0); /* nothing half-written, old value gone */
		}
		buf_wipe(&out);
	}
}

static void test_sm_parse_secret_bounds(void **state)
{
	const char *json = "{\"SecretString\":\"0123456789\"}";
	struct buf out;

	(void)state;
	buf_init(&out, 4);
	assert_int_equal(sm_parse_secret(json, strlen(json), NULL, &out), -EFBIG);
	assert_int_equal(out.len, 0);
	buf_wipe(&out);
	/* len bounds the parse: the same text cut short is truncated JSON */
	buf_init(&out, 0);
	assert_int_equal(sm_parse_secret(json, strlen(json) - 2, NULL, &out), -EBADMSG);
	assert_int_equal(sm_parse_secret(json, strlen(json), NULL, &out), 0);
	assert_string_equal(out.data, "0123456789");
	buf_wipe(&out);
}

struct ssm_case {
	const char *json;
	int r;
	const char *value;
};

static const struct ssm_case ssm_cases[] = {
        {"{\"Parameter\":{\"Name\":\"/a\",\"Type\":\"SecureString\",\"Value\":\" t0k \\n\","
         "\"Version\":3}}",
         0, "t0k"},
        {"{\"Parameter\":{\"Value\":\"a b\"}}", 0, "a b"},
        {"{\"Parameter\":{\"Value\":\"\"}}", -ENODATA, NULL},
        {"{\"Parameter\":{\"Value\":\"  \"}}", -ENODATA, NULL},
        {"{\"Parameter\":{\"Value\":5}}", -EBADMSG, NULL},
        {"{\"Parameter\":{\"Name\":\"/a\"}}", -EBADMSG, NULL},
        {"{\"Parameter\":\"x\"}", -EBADMSG, NULL},
        {"{}", -EBADMSG, NULL},
        {"{\"Parameter\":{\"Value\":\"x\"}", -EBADMSG, NULL},
        {"null", -EBADMSG, NULL},
        {"", -EBADMSG, NULL},
};

static void test_ssm_parse_parameter_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ssm_cases) / sizeof(ssm_cases[0]); i++) {
		const struct ssm_case *c = &ssm_cases[i];
		struct buf out;
		int r;

		buf_init(&out, 0);
		r = ssm_parse_parameter(c->json, strlen(c->json), &out);
		if (r != c->r)
			fail_msg("case %zu (%s): got %d, want %d", i, c->json, r, c->r);
		if (c->value)
			assert_string_equal(out.data, c->value);
		else
			assert_int_equal(out.len, 0);
		buf_wipe(&out);
	}
}

/* ---- DescribeAutoScalingGroups parser ----------------------------------------------------- */

#define DESCRIBE_HEAD                                                                              \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                             \
	"<DescribeAutoScalingGroupsResponse "                                                      \
	"xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\n"                            \
	" <DescribeAutoScalingGroupsResult>\n"
#define DESCRIBE_TAIL                                                                              \
	" </DescribeAutoScalingGroupsResult>\n"                                                    \
	" <ResponseMetadata><RequestId>0f02a07d-b677</RequestId></ResponseMetadata>\n"             \
	"</DescribeAutoScalingGroupsResponse>\n"

/* Shaped like the botocore-checked sample of aws-wire.md §1, with the traps it lists. */
static const char describe_full[] = DESCRIBE_HEAD
        "<AutoScalingGroups><member>\n"
        "  <AutoScalingGroupName>my&amp;asg</AutoScalingGroupName>\n"
        "  <AutoScalingGroupARN>arn:aws:autoscaling:us-east-1:1:autoScalingGroup:930d:"
        "autoScalingGroupName/my-asg</AutoScalingGroupARN>\n"
        "  <MinSize>1</MinSize><MaxSize>10</MaxSize><DesiredCapacity>2</DesiredCapacity>\n"
        "  <DefaultCooldown>300</DefaultCooldown>\n"
        "  <AvailabilityZones><member>us-east-1a</member><member>us-east-1b</member>"
        "</AvailabilityZones>\n"
        "  <LoadBalancerNames/><HealthCheckType>EC2</HealthCheckType>\n"
        "  <Instances>\n"
        "   <member><InstanceId>i-0123456789abcdef0</InstanceId><InstanceType>t3.micro"
        "</InstanceType>\n"
        "    <AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>InService"
        "</LifecycleState>\n"
        "    <HealthStatus>Healthy</HealthStatus>\n"
        "    <LaunchTemplate><LaunchTemplateId>lt-0abc</LaunchTemplateId><LaunchTemplateName>my-lt"
        "</LaunchTemplateName><Version>1</Version></LaunchTemplate>\n"
        "    <ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>\n"
        "   <member><InstanceId>i-0fedcba9876543210</InstanceId><AvailabilityZone>us-east-1b"
        "</AvailabilityZone><LifecycleState>Terminating:Wait</LifecycleState>"
        "<HealthStatus>Unhealthy</HealthStatus>"
        "<ProtectedFromScaleIn>true</ProtectedFromScaleIn></member>\n"
        "  </Instances>\n"
        "  <CreatedTime>2023-01-10T12:34:56.789Z</CreatedTime>\n"
        "  <SuspendedProcesses><member><ProcessName>Launch</ProcessName>"
        "<SuspensionReason>User suspended at 2023-01-10T12:40:00Z</SuspensionReason></member>"
        "<member><ProcessName>AZRebalance</ProcessName><SuspensionReason>User suspended at "
        "2023-01-10T12:40:00Z</SuspensionReason></member></SuspendedProcesses>\n"
        "  <Tags><member><Key>a&lt;b</Key><Value>{&quot;x&quot;:1}</Value></member></Tags>\n"
        "  <TerminationPolicies><member>Default</member></TerminationPolicies>\n"
        "  <NewInstancesProtectedFromScaleIn>false</NewInstancesProtectedFromScaleIn>\n"
        " </member>\n"
        " <member><AutoScalingGroupName>second</AutoScalingGroupName>"
        "<MinSize>0</MinSize><MaxSize> 20 </MaxSize><DesiredCapacity>0</DesiredCapacity>"
        "<Instances/></member>\n"
        "</AutoScalingGroups>\n"
        "<NextToken>next+/=page</NextToken>\n" DESCRIBE_TAIL;

static void test_asg_parse_describe_full(void **state)
{
	struct asg_group *g = NULL;
	size_t n = 0;
	char token[64];

	(void)state;
	assert_int_equal(asg_parse_describe(describe_full, strlen(describe_full), &g, &n, token,
	                                    sizeof(token)),
	                 0);
	assert_int_equal(n, 2);
	assert_string_equal(token, "next+/=page");
	assert_string_equal(g[0].name, "my&asg");
	assert_int_equal(g[0].min_size, 1);
	assert_int_equal(g[0].max_size, 10);
	assert_int_equal(g[0].desired, 2);
	assert_int_equal(g[0].ninstances, 2); /* not the AZ, tag or policy members */
	assert_string_equal(g[0].instances[0].id, "i-0123456789abcdef0");
	assert_string_equal(g[0].instances[0].lifecycle_state, "InService");
	assert_string_equal(g[0].instances[0].health_status, "Healthy");
	assert_false(g[0].instances[0].protected_from_scale_in);
	assert_string_equal(g[0].instances[1].id, "i-0fedcba9876543210");
	assert_string_equal(g[0].instances[1].lifecycle_state, "Terminating:Wait");
	assert_string_equal(g[0].instances[1].health_status, "Unhealthy");
	assert_true(g[0].instances[1].protected_from_scale_in);
	assert_true(g[0].az_rebalance_suspended);
	assert_string_equal(g[1].name, "second");
	assert_false(g[1].az_rebalance_suspended);  /* no SuspendedProcesses at all */
	assert_false(g[0].new_instances_protected); /* "false" */
	assert_false(g[1].new_instances_protected); /* absent: not known to be protected */
	assert_int_equal(g[1].max_size, 20);
	assert_int_equal(g[1].ninstances, 0);
	assert_null(g[1].instances);
	asg_groups_free(g, n);
}

/* NewInstancesProtectedFromScaleIn: a launch back-off lowers past the usual value only in a
 * group whose new instances are protected from scale-in. */
static void test_asg_parse_describe_protect_new(void **state)
{
	static const char xml[] =
	        DESCRIBE_HEAD "<AutoScalingGroups><member><AutoScalingGroupName>g"
	                      "</AutoScalingGroupName><MinSize>0</MinSize><MaxSize>2</MaxSize>"
	                      "<DesiredCapacity>0</DesiredCapacity><Instances/>"
	                      "<NewInstancesProtectedFromScaleIn>true"
	                      "</NewInstancesProtectedFromScaleIn></member>"
	                      "</AutoScalingGroups>\n" DESCRIBE_TAIL;
	struct asg_group *g = NULL;
	size_t n = 0;
	char token[8];

	(void)state;
	assert_int_equal(asg_parse_describe(xml, strlen(xml), &g, &n, token, sizeof(token)), 0);
	assert_int_equal(n, 1);
	assert_true(g[0].new_instances_protected);
	asg_groups_free(g, n);
}

struct describe_case {
	const char *name;
	const char *xml;
	int r;
	size_t ngroups;
};

#define ONE_GROUP(body)                                                                            \
	DESCRIBE_HEAD "<AutoScalingGroups><member>" body "</member>"                               \
	              "</AutoScalingGroups>" DESCRIBE_TAIL
#define SIZES   "<MinSize>0</MinSize><MaxSize>5</MaxSize><DesiredCapacity>1</DesiredCapacity>"
#define NAME    "<AutoScalingGroupName>g</AutoScalingGroupName>"
#define INST(b) NAME SIZES "<Instances><member>" b "</member></Instances>"
#define GOOD_INSTANCE_FIELDS                                                                       \
	"<AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>Pending</LifecycleState>"  \
	"<HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn>"

static const char long_name_group[] = ONE_GROUP(
        "<AutoScalingGroupName>"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "</AutoScalingGroupName>" SIZES);

static const struct describe_case describe_cases[] = {
        {"minimal", ONE_GROUP(NAME SIZES), 0, 1},
        {"empty list", DESCRIBE_HEAD "<AutoScalingGroups/>" DESCRIBE_TAIL, 0, 0},
        {"empty list, open/close",
         DESCRIBE_HEAD "<AutoScalingGroups></AutoScalingGroups>" DESCRIBE_TAIL, 0, 0},
        {"instance ok", ONE_GROUP(INST("<InstanceId>i-1</InstanceId>" GOOD_INSTANCE_FIELDS)), 0, 1},
        /* SuspendedProcesses is read for AZRebalance only; nothing in it fails a group */
        {"suspended empty", ONE_GROUP(NAME SIZES "<SuspendedProcesses/>"), 0, 1},
        {"suspended odd members",
         ONE_GROUP(NAME SIZES "<SuspendedProcesses><member/><member><SuspensionReason>x"
                              "</SuspensionReason></member><other/></SuspendedProcesses>"),
         0, 1},
        {"error response",
         "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>"
         "Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
         "<RequestId>9f1e</RequestId></ErrorResponse>",
         -EBADMSG, 0},
        {"other response",
         "<SetDesiredCapacityResponse><ResponseMetadata><RequestId>x</RequestId>"
         "</ResponseMetadata></SetDesiredCapacityResponse>",
         -EBADMSG, 0},
        {"no list", DESCRIBE_HEAD DESCRIBE_TAIL, -EBADMSG, 0},
        {"truncated", DESCRIBE_HEAD "<AutoScalingGroups><member>" NAME SIZES, -EBADMSG, 0},
        {"truncated tag", DESCRIBE_HEAD "<AutoScalingGroups><member><MinSi", -EBADMSG, 0},
        {"unknown entity", ONE_GROUP("<AutoScalingGroupName>a&bogus;</AutoScalingGroupName>" SIZES),
         -EBADMSG, 0},
        {"missing name", ONE_GROUP(SIZES), -EBADMSG, 0},
        {"empty name", ONE_GROUP("<AutoScalingGroupName/>" SIZES), -EBADMSG, 0},
        {"name too long", long_name_group, -EBADMSG, 0},
        {"missing MinSize",
         ONE_GROUP(NAME "<MaxSize>5</MaxSize><DesiredCapacity>1</DesiredCapacity>"), -EBADMSG, 0},
        {"missing MaxSize",
         ONE_GROUP(NAME "<MinSize>5</MinSize><DesiredCapacity>1</DesiredCapacity>"), -EBADMSG, 0},
        {"missing DesiredCapacity", ONE_GROUP(NAME "<MinSize>0</MinSize><MaxSize>5</MaxSize>"),
         -EBADMSG, 0},
        {"non-numeric",
         ONE_GROUP(NAME "<MinSize>0</MinSize><MaxSize>5</MaxSize><DesiredCapacity>two"
                        "</DesiredCapacity>"),
         -EBADMSG, 0},
        {"trailing junk",
         ONE_GROUP(NAME "<MinSize>0</MinSize><MaxSize>5x</MaxSize><DesiredCapacity>1"
                        "</DesiredCapacity>"),
         -EBADMSG, 0},
        {"negative",
         ONE_GROUP(NAME "<MinSize>-1</MinSize><MaxSize>5</MaxSize><DesiredCapacity>1"
                        "</DesiredCapacity>"),
         -EBADMSG, 0},
        {"fraction",
         ONE_GROUP(NAME "<MinSize>0</MinSize><MaxSize>5</MaxSize><DesiredCapacity>1.5"
                        "</DesiredCapacity>"),
         -EBADMSG, 0},
        {"huge",
         ONE_GROUP(NAME "<MinSize>0</MinSize><MaxSize>99999999999999999999</MaxSize>"
                        "<DesiredCapacity>1</DesiredCapacity>"),
         -EBADMSG, 0},
        {"empty number",
         ONE_GROUP(NAME "<MinSize></MinSize><MaxSize>5</MaxSize><DesiredCapacity>1"
                        "</DesiredCapacity>"),
         -EBADMSG, 0},
        {"instance without id", ONE_GROUP(INST(GOOD_INSTANCE_FIELDS)), -EBADMSG, 0},
        {"instance id too long",
         ONE_GROUP(INST("<InstanceId>i-0123456789abcdef0123456789abcdef</"
                        "InstanceId>" GOOD_INSTANCE_FIELDS)),
         -EBADMSG, 0},
        {"instance without state",
         ONE_GROUP(INST("<InstanceId>i-1</InstanceId><HealthStatus>Healthy</HealthStatus>")),
         -EBADMSG, 0},
        {"instance bad bool",
         ONE_GROUP(INST("<InstanceId>i-1</InstanceId><LifecycleState>InService"
                        "</LifecycleState><ProtectedFromScaleIn>yes</ProtectedFromScaleIn>")),
         -EBADMSG, 0},
        /* the id is a direct child of the member: one nested deeper does not count */
        {"instance id only nested",
         ONE_GROUP(INST("<LaunchTemplate><InstanceId>i-1</InstanceId></"
                        "LaunchTemplate>" GOOD_INSTANCE_FIELDS)),
         -EBADMSG, 0},
        {"not xml", "{\"AutoScalingGroups\":[]}", -EBADMSG, 0},
        {"empty", "", -EBADMSG, 0},
};

static void test_asg_parse_describe_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(describe_cases) / sizeof(describe_cases[0]); i++) {
		const struct describe_case *c = &describe_cases[i];
		struct asg_group *g = (struct asg_group *)0x1;
		size_t n = 99;
		char token[32] = "stale";
		int r;

		r = asg_parse_describe(c->xml, strlen(c->xml), &g, &n, token, sizeof(token));
		if (r != c->r)
			fail_msg("case %s: got %d, want %d", c->name, r, c->r);
		assert_int_equal(n, c->ngroups);
		assert_string_equal(token, "");
		if (r < 0 || n == 0)
			assert_null(g);
		asg_groups_free(g, n);
	}
}

static void test_asg_parse_describe_token(void **state)
{
	struct asg_group *g = NULL;
	size_t n = 0;
	char small[4];

	(void)state;
	/* A token that does not fit is an error, not a silently truncated next request. */
	assert_int_equal(asg_parse_describe(describe_full, strlen(describe_full), &g, &n, small,
	                                    sizeof(small)),
	                 -EBADMSG);
	assert_null(g);
	assert_int_equal(n, 0);
	/* len bounds the parse */
	assert_int_equal(asg_parse_describe(describe_full, 200, &g, &n, NULL, 0), -EBADMSG);
}

static void test_asg_parse_describe_many_instances(void **state)
{
	struct buf x;
	struct asg_group *g = NULL;
	size_t n = 0;

	(void)state;
	buf_init(&x, 0);
	assert_int_equal(buf_append_str(&x, DESCRIBE_HEAD "<AutoScalingGroups><member>" NAME SIZES
	                                                  "<Instances>"),
	                 0);
	for (int i = 0; i < 500; i++)
		assert_int_equal(buf_printf(&x,
		                            "<member><InstanceId>i-%05d</InstanceId>"
		                            "<LifecycleState>InService</LifecycleState></member>",
		                            i),
		                 0);
	assert_int_equal(
	        buf_append_str(&x, "</Instances></member></AutoScalingGroups>" DESCRIBE_TAIL), 0);
	assert_int_equal(asg_parse_describe(x.data, x.len, &g, &n, NULL, 0), 0);
	assert_int_equal(n, 1);
	assert_int_equal(g[0].ninstances, 500);
	assert_string_equal(g[0].instances[499].id, "i-00499");
	assert_string_equal(g[0].instances[0].health_status, "");
	asg_groups_free(g, n);
	buf_free(&x);
}

/* An answer over the default node limit parses when it is large enough to hold that many
 * elements legitimately (asg_describe_max_nodes grows with the answer). */
static void test_asg_parse_describe_node_limit_grows(void **state)
{
	struct buf x;
	struct asg_group *g = NULL;
	size_t n = 0, inst = XML_MAX_NODES / 3 + 10; /* member + 2 fields each: over the default */

	(void)state;
	buf_init(&x, 64 * 1024 * 1024);
	assert_int_equal(buf_append_str(&x, DESCRIBE_HEAD "<AutoScalingGroups><member>" NAME SIZES
	                                                  "<Instances>"),
	                 0);
	for (size_t i = 0; i < inst; i++)
		assert_int_equal(buf_printf(&x,
		                            "<member><InstanceId>i-%017zx</InstanceId>"
		                            "<LifecycleState>InService</LifecycleState></member>",
		                            i),
		                 0);
	assert_int_equal(
	        buf_append_str(&x, "</Instances></member></AutoScalingGroups>" DESCRIBE_TAIL), 0);
	assert_true(x.len / ASG_DESCRIBE_NODE_BYTES > XML_MAX_NODES);
	assert_int_equal(asg_parse_describe(x.data, x.len, &g, &n, NULL, 0), 0);
	assert_int_equal(g[0].ninstances, inst);
	asg_groups_free(g, n);
	/* The same elements, packed denser than any answer (no text): over the limit. */
	buf_reset(&x);
	assert_int_equal(buf_append_str(&x, DESCRIBE_HEAD "<AutoScalingGroups><member>" NAME SIZES
	                                                  "<Instances>"),
	                 0);
	for (size_t i = 0; i < XML_MAX_NODES; i++)
		assert_int_equal(buf_append(&x, "<member/>", 9), 0);
	assert_int_equal(
	        buf_append_str(&x, "</Instances></member></AutoScalingGroups>" DESCRIBE_TAIL), 0);
	assert_int_equal(asg_parse_describe(x.data, x.len, &g, &n, NULL, 0), -E2BIG);
	assert_null(g);
	buf_free(&x);
}

/* ---- sizes of describe answers ------------------------------------------------------------ */

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)

static void test_asg_describe_group_bytes_table(void **state)
{
	static const struct {
		int64_t instances;
		size_t want;
	} cases[] = {
	        {0, 128 * KIB},
	        {-1, 128 * KIB}, /* unknown counts as none */
	        {INT64_MIN, 128 * KIB},
	        {1, 130 * KIB},
	        {100, 328 * KIB},
	        {5000, 128 * KIB + 5000 * 2 * KIB},
	        {8127, 16 * MIB - 2 * KIB}, /* the largest below the ceiling */
	        {8128, 16 * MIB},           /* exactly at it */
	        {8129, 16 * MIB},           /* saturates */
	        {INT64_MAX, 16 * MIB},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (asg_describe_group_bytes(cases[i].instances) != cases[i].want)
			fail_msg("case %zu: %" PRId64 " -> %zu, want %zu", i, cases[i].instances,
			         asg_describe_group_bytes(cases[i].instances), cases[i].want);
}

static void test_asg_describe_cap_table(void **state)
{
	static const int64_t none[] = {0}, small[] = {10, 0, 3}, huge[] = {1, 20000},
	                     broken[] = {-5, INT64_MIN, INT64_MAX};
	static int64_t fifty100[50];
	static const struct {
		const int64_t *instances;
		size_t n;
		size_t want;
	} cases[] = {
	        {NULL, 0, 16 * KIB},
	        {none, 0, 16 * KIB},
	        {none, 1, 144 * KIB},
	        {NULL, 2, 16 * KIB + 256 * KIB}, /* NULL: groups of unknown size */
	        {small, 3, 16 * KIB + 3 * 128 * KIB + 26 * KIB},
	        {fifty100, 49, 16 * KIB + 49 * 328 * KIB},
	        {fifty100, 50, 16 * MIB}, /* 16,416 KiB: the sum saturates too */
	        {huge, 2, 16 * MIB},
	        {broken, 2, 16 * KIB + 256 * KIB},
	        {broken, 3, 16 * MIB},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fifty100); i++)
		fifty100[i] = 100;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (asg_describe_cap(cases[i].instances, cases[i].n) != cases[i].want)
			fail_msg("case %zu: %zu, want %zu", i,
			         asg_describe_cap(cases[i].instances, cases[i].n), cases[i].want);
}

static void test_asg_describe_plausible_table(void **state)
{
	static struct asg_group two[2] = {{.ninstances = 0}, {.ninstances = 1000}};
	static const struct {
		size_t len;
		const struct asg_group *groups;
		size_t n;
		bool want;
	} cases[] = {
	        {0, NULL, 0, true},
	        {16 * KIB, NULL, 0, true}, /* no group found: the envelope only */
	        {16 * KIB + 1, NULL, 0, false},
	        {144 * KIB, two, 1, true},
	        {144 * KIB + 1, two, 1, false}, /* a group of none padded past its share */
	        {1064 * KIB, two + 1, 1, true}, /* 1000 instances: 16 + 128 + 2000 KiB */
	        {2144 * KIB, two + 1, 1, true},
	        {2144 * KIB + 1, two + 1, 1, false},
	        {2272 * KIB, two, 2, true},
	        {16 * MIB + 1, two, 2, false},
	        {1, NULL, 1, false}, /* groups promised, none given */
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (asg_describe_plausible(cases[i].len, cases[i].groups, cases[i].n) !=
		    cases[i].want)
			fail_msg("case %zu: want %d", i, cases[i].want);
}

static void test_asg_describe_max_nodes_table(void **state)
{
	static const struct {
		size_t len;
		size_t want;
	} cases[] = {
	        {0, XML_MAX_NODES},
	        {1024, XML_MAX_NODES},
	        {(size_t)XML_MAX_NODES * 32, XML_MAX_NODES},
	        {(size_t)XML_MAX_NODES * 32 + 32, XML_MAX_NODES + 1},
	        {32 * MIB, MIB},
	        {SIZE_MAX, SIZE_MAX / 32},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (asg_describe_max_nodes(cases[i].len) != cases[i].want)
			fail_msg("case %zu: %zu, want %zu", i, asg_describe_max_nodes(cases[i].len),
			         cases[i].want);
}

/* ---- error classifiers -------------------------------------------------------------------- */

struct classify_case {
	const char *code;
	const char *message;
	bool not_found;
	bool min_size;
};

static const struct classify_case classify_cases[] = {
        {"ValidationError",
         "Instance Id not found - No managed instance found for instance ID: i-0123456789abcdef0",
         true, false},
        {"ValidationError", "No managed instance found for instance ID i-1", true, false},
        {"ValidationError", "instance id NOT FOUND - whatever", true, false},
        {"ValidationError",
         "Currently, desiredSize equals minSize (1). Terminating instance without replacement will "
         "violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to "
         "false or lower group's min size.",
         false, true},
        {"ValidationError",
         "New SetDesiredCapacity value 0 is below min value 1 for the AutoScalingGroup.", false,
         true},
        {"ValidationError", "Desired capacity can't be less than the group's MINSIZE", false, true},
        {"ValidationError", "The number of group names that may be passed in is limited to 50",
         false, false},
        {"ValidationError", "", false, false},
        {"Throttling", "Rate exceeded", false, false},
        {"ScalingActivityInProgress", "desiredSize equals minSize", false, false},
        {"InvalidClientTokenId", "Instance Id not found", false, false},
        {"", "", false, false},
};

static void test_asg_error_classifiers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(classify_cases) / sizeof(classify_cases[0]); i++) {
		const struct classify_case *c = &classify_cases[i];
		struct aws_error e;

		memset(&e, 0, sizeof(e));
		e.http_status = 400;
		snprintf(e.code, sizeof(e.code), "%s", c->code);
		snprintf(e.message, sizeof(e.message), "%s", c->message);
		if (asg_error_is_not_found(&e) != c->not_found)
			fail_msg("case %zu: not_found want %d", i, c->not_found);
		if (asg_error_is_min_size(&e) != c->min_size)
			fail_msg("case %zu: min_size want %d", i, c->min_size);
	}
	assert_false(asg_error_is_not_found(NULL));
	assert_false(asg_error_is_min_size(NULL));
}

/* ---- DynamoDB lease item parser ----------------------------------------------------------- */

struct lease_case {
	const char *json;
	int r;
	bool exists;
	const char *owner;
	int64_t expiry, version;
};

#define ITEM(o, e, v)                                                                              \
	"{\"lease_id\":{\"S\":\"runner-scaler\"},\"owner\":{\"S\":\"" o "\"},"                     \
	"\"expiry\":{\"N\":\"" e "\"},\"version\":{\"N\":\"" v "\"}}"

static const struct lease_case lease_cases[] = {
        {"{\"Item\":" ITEM("i-1:42", "1700000030000", "7") "}", 0, true, "i-1:42", 1700000030000,
         7},
        {"{\"Attributes\":" ITEM("me", "0", "1") "}", 0, true, "me", 0, 1},
        {"{}", 0, false, "", 0, 0},
        {"{\"Item\":{}}", 0, false, "", 0, 0},
        {"{\"ConsumedCapacity\":{\"TableName\":\"t\"}}", 0, false, "", 0, 0},
        {"{\"Item\":" ITEM("a\\\"b", "5", "9223372036854775807") "}", 0, true, "a\"b", 5,
         INT64_MAX},
        {"{\"Item\":" ITEM("o", "5", "9223372036854775808") "}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":" ITEM("o", "-5", "1") "}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":" ITEM("o", "1.5", "1") "}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":" ITEM("o", "1e3", "1") "}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":" ITEM("o", "", "1") "}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":{\"lease_id\":{\"S\":\"x\"},\"owner\":{\"S\":\"o\"},"
         "\"expiry\":{\"N\":\"5\"}}}",
         -EBADMSG, false, "", 0, 0},
        {"{\"Item\":{\"lease_id\":{\"S\":\"x\"},\"expiry\":{\"N\":\"5\"},"
         "\"version\":{\"N\":\"1\"}}}",
         -EBADMSG, false, "", 0, 0},
        {"{\"Item\":{\"owner\":{\"N\":\"5\"},\"expiry\":{\"N\":\"5\"},\"version\":{\"N\":\"1\"}}}",
         -EBADMSG, false, "", 0, 0},
        {"{\"Item\":{\"owner\":{\"S\":\"o\"},\"expiry\":{\"S\":\"5\"},\"version\":{\"N\":\"1\"}}}",
         -EBADMSG, false, "", 0, 0},
        {"{\"Item\":{\"owner\":{\"S\":\"o\"},\"expiry\":5,\"version\":{\"N\":\"1\"}}}", -EBADMSG,
         false, "", 0, 0},
        {"{\"Item\":{\"owner\":{\"S\":\"o\"},\"expiry\":{\"N\":5},\"version\":{\"N\":\"1\"}}}",
         -EBADMSG, false, "", 0, 0},
        {"{\"Item\":[]}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":\"x\"}", -EBADMSG, false, "", 0, 0},
        {"{\"Item\":" ITEM("o", "5", "1"), -EBADMSG, false, "", 0, 0}, /* truncated */
        {"[]", -EBADMSG, false, "", 0, 0},
        {"", -EBADMSG, false, "", 0, 0},
};

static void test_ddb_parse_lease_item_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(lease_cases) / sizeof(lease_cases[0]); i++) {
		const struct lease_case *c = &lease_cases[i];
		struct ddb_lease l;
		int r;

		memset(&l, 0x5a, sizeof(l));
		r = ddb_parse_lease_item(c->json, strlen(c->json), &l);
		if (r != c->r)
			fail_msg("case %zu (%s): got %d, want %d", i, c->json, r, c->r);
		assert_int_equal(l.exists, c->exists);
		assert_string_equal(l.owner, c->owner);
		assert_int_equal(l.expiry_ms, c->expiry);
		assert_int_equal(l.version, c->version);
	}
}

static void test_ddb_parse_lease_owner_too_long(void **state)
{
	char json[1024];
	char owner[300];
	struct ddb_lease l;

	(void)state;
	memset(owner, 'o', sizeof(owner) - 1);
	owner[sizeof(owner) - 1] = '\0';
	snprintf(json, sizeof(json),
	         "{\"Item\":{\"owner\":{\"S\":\"%s\"},\"expiry\":{\"N\":\"1\"},"
	         "\"version\":{\"N\":\"1\"}}}",
	         owner);
	assert_int_equal(ddb_parse_lease_item(json, strlen(json), &l), -EBADMSG);
	assert_false(l.exists);
}

/* ---- calls against a loopback server ------------------------------------------------------ */

struct net {
	struct loopback_server srv;
	struct aws_ctx ctx;
	struct aws_error err;
};

static const char *const endpoint_vars[] = {
        "AWS_ENDPOINT_URL_AUTO_SCALING",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_DYNAMODB",
};

/* Serve script, point every service at it, static credentials, 1 ms backoff. */
static void net_start(struct net *n, const struct ls_response *script, size_t len)
{
	memset(n, 0, sizeof(*n));
	assert_int_equal(ls_start(&n->srv, script, len), 0);
	for (size_t i = 0; i < sizeof(endpoint_vars) / sizeof(endpoint_vars[0]); i++)
		unsetenv(endpoint_vars[i]);
	setenv("AWS_ENDPOINT_URL", n->srv.url, 1);
	assert_int_equal(http_client_new(&n->ctx.http), 0);
	snprintf(n->ctx.creds.akid, sizeof(n->ctx.creds.akid), "AKIDEXAMPLE");
	snprintf(n->ctx.creds.secret, sizeof(n->ctx.creds.secret), "secret");
	n->ctx.timeout_ms = 5000;
	n->ctx.backoff_base_ms = 1;
	n->ctx.backoff_cap_ms = 2;
}

/* Join the server: after this n->srv.reqs and nreqs are safe to read. */
static void net_stop(struct net *n)
{
	ls_stop(&n->srv);
	http_client_free(n->ctx.http);
	unsetenv("AWS_ENDPOINT_URL");
}

#define OK_XML(op)                                                                                 \
	{                                                                                          \
		LS_REPLY, 200, "Content-Type: text/xml\r\n",                                       \
		        "<" op                                                                     \
		        "Response xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">"     \
		        "<ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></" op      \
		        "Response>",                                                               \
		        0                                                                          \
	}
#define JSON_REPLY(status, body)                                                                   \
	{                                                                                          \
		LS_REPLY, status, "Content-Type: application/x-amz-json-1.1\r\n", body, 0          \
	}
#define XML_ERROR(status, code, msg)                                                               \
	{                                                                                          \
		LS_REPLY, status, "Content-Type: text/xml\r\n",                                    \
		        "<ErrorResponse "                                                          \
		        "xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">"              \
		        "<Error><Type>Sender</Type><Code>" code "</Code><Message>" msg             \
		        "</Message></Error><RequestId>e1</RequestId></ErrorResponse>",             \
		        0                                                                          \
	}

/* A member of a parsed JSON request body, by path of object keys. */
static const char *jstr(const cJSON *root, const char *k1, const char *k2, const char *k3)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, k1);

	if (k2)
		n = cJSON_GetObjectItemCaseSensitive(n, k2);
	if (k3)
		n = cJSON_GetObjectItemCaseSensitive(n, k3);
	return cJSON_IsString(n) ? n->valuestring : NULL;
}

static cJSON *req_json(const struct ls_request *rq)
{
	cJSON *j = cJSON_ParseWithLength(rq->body, rq->body_len);

	assert_non_null(j);
	return j;
}

static void test_sm_get_secret_call(void **state)
{
	static const struct ls_response script[] = {
	        JSON_REPLY(200, "{\"Name\":\"n\",\"SecretString\":\"{\\\"runner_token\\\":"
	                        "\\\"s3cr3t\\\"}\"}"),
	};
	struct net n;
	struct buf out;
	cJSON *j;

	(void)state;
	net_start(&n, script, 1);
	buf_init(&out, 0);
	assert_int_equal(
	        sm_get_secret(&n.ctx, "us-east-1", "prod/\"x\"\\y", "runner_token", &out, &n.err),
	        0);
	assert_string_equal(out.data, "s3cr3t");
	buf_wipe(&out);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 1);
	assert_string_equal(n.srv.reqs[0].method, "POST");
	assert_string_equal(n.srv.reqs[0].path, "/");
	assert_string_equal(ls_header(&n.srv.reqs[0], "X-Amz-Target"),
	                    "secretsmanager.GetSecretValue");
	j = req_json(&n.srv.reqs[0]);
	assert_string_equal(jstr(j, "SecretId", NULL, NULL), "prod/\"x\"\\y"); /* escaped */
	cJSON_Delete(j);
}

static void test_sm_get_secret_errors(void **state)
{
	static const struct ls_response script[] = {
	        JSON_REPLY(400, "{\"__type\":\"ResourceNotFoundException\",\"message\":"
	                        "\"Secrets Manager can't find the specified secret.\"}"),
	        JSON_REPLY(200, "{\"SecretBinary\":\"AAECAw==\"}"),
	        JSON_REPLY(200, "{\"SecretString\":"),
	};
	struct net n;
	struct buf out;

	(void)state;
	net_start(&n, script, 3);
	buf_init(&out, 0);
	/* not retried: a 4xx that is not throttling */
	assert_int_equal(sm_get_secret(&n.ctx, "us-east-1", "missing", NULL, &out, &n.err),
	                 -EREMOTEIO);
	assert_string_equal(n.err.code, "ResourceNotFoundException");
	assert_int_equal(n.err.http_status, 400);
	assert_int_equal(sm_get_secret(&n.ctx, "us-east-1", "bin", NULL, &out, &n.err), -ENOENT);
	assert_string_equal(n.err.code, "missing");
	assert_int_equal(sm_get_secret(&n.ctx, "us-east-1", "cut", NULL, &out, &n.err), -EBADMSG);
	assert_string_equal(n.err.code, "malformed");
	assert_int_equal(out.len, 0);
	assert_int_equal(sm_get_secret(&n.ctx, "us-east-1", "", NULL, &out, &n.err), -EINVAL);
	buf_wipe(&out);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 3);
}

static void test_ssm_get_parameter_call(void **state)
{
	static const struct ls_response script[] = {
	        JSON_REPLY(200, "{\"Parameter\":{\"Name\":\"/cci/token\",\"Type\":\"SecureString\","
	                        "\"Value\":\"tok\\n\",\"Version\":3}}"),
	};
	struct net n;
	struct buf out;
	cJSON *j;

	(void)state;
	net_start(&n, script, 1);
	buf_init(&out, 0);
	assert_int_equal(ssm_get_parameter(&n.ctx, "eu-west-1", "/cci/token", &out, &n.err), 0);
	assert_string_equal(out.data, "tok");
	buf_wipe(&out);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 1);
	assert_string_equal(ls_header(&n.srv.reqs[0], "X-Amz-Target"), "AmazonSSM.GetParameter");
	j = req_json(&n.srv.reqs[0]);
	assert_string_equal(jstr(j, "Name", NULL, NULL), "/cci/token");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "WithDecryption")));
	cJSON_Delete(j);
}

static const char page1[] = DESCRIBE_HEAD
        "<AutoScalingGroups><member><AutoScalingGroupName>asg-1</AutoScalingGroupName>" SIZES
        "<Instances><member><InstanceId>i-1</InstanceId><LifecycleState>InService"
        "</LifecycleState></member></Instances></member></AutoScalingGroups>"
        "<NextToken>a+b/c=</NextToken>" DESCRIBE_TAIL;
static const char page2[] = DESCRIBE_HEAD
        "<AutoScalingGroups><member><AutoScalingGroupName>my asg</AutoScalingGroupName>" SIZES
        "</member></AutoScalingGroups>" DESCRIBE_TAIL;

static void test_asg_describe_paging(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, page1, 0},
	        {LS_REPLY, 200, NULL, page2, 0},
	};
	const char *names[] = {"asg-1", "my asg"};
	struct asg_group *g = NULL;
	size_t ng = 0;
	struct net n;

	(void)state;
	net_start(&n, script, 2);
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names, 2, &g, &ng, &n.err), 0);
	net_stop(&n);
	assert_int_equal(ng, 2);
	assert_string_equal(g[0].name, "asg-1");
	assert_int_equal(g[0].ninstances, 1);
	assert_string_equal(g[0].instances[0].id, "i-1");
	assert_string_equal(g[1].name, "my asg");
	asg_groups_free(g, ng);
	assert_int_equal(n.srv.nreqs, 2);
	assert_string_equal(n.srv.reqs[0].body,
	                    "Action=DescribeAutoScalingGroups&Version=2011-01-01"
	                    "&AutoScalingGroupNames.member.1=asg-1"
	                    "&AutoScalingGroupNames.member.2=my+asg&MaxRecords=100");
	assert_string_equal(n.srv.reqs[1].body,
	                    "Action=DescribeAutoScalingGroups&Version=2011-01-01"
	                    "&AutoScalingGroupNames.member.1=asg-1"
	                    "&AutoScalingGroupNames.member.2=my+asg&MaxRecords=100"
	                    "&NextToken=a%2Bb%2Fc%3D");
}

static void test_asg_describe_failures(void **state)
{
	static const struct ls_response script[] = {
	        {LS_REPLY, 200, NULL, page1, 0},
	        XML_ERROR(400, "InvalidNextToken", "The token is invalid"),
	        {LS_REPLY, 200, NULL, ONE_GROUP(NAME "<MaxSize>1</MaxSize>"), 0},
	};
	const char *names[51];
	struct asg_group *g = NULL;
	size_t ng = 7;
	struct net n;

	(void)state;
	for (size_t i = 0; i < 51; i++)
		names[i] = "asg";
	net_start(&n, script, 3);
	/* over the API's limit of 50 names: refused before any request */
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names, 51, &g, &ng, &n.err), -E2BIG);
	assert_null(g);
	assert_int_equal(ng, 0);
	/* an error on the second page drops the first page too */
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names, 1, &g, &ng, &n.err), -EREMOTEIO);
	assert_string_equal(n.err.code, "InvalidNextToken");
	assert_null(g);
	assert_int_equal(ng, 0);
	/* a 200 with a group lacking required fields */
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names, 1, &g, &ng, &n.err), -EBADMSG);
	assert_string_equal(n.err.code, "malformed");
	assert_string_equal(n.err.call, "autoscaling:DescribeAutoScalingGroups");
	assert_null(g);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 3);
}

/* Over the ceiling for two names: each name on its own (both found, in order); over it for
 * one name: nothing to split, -EFBIG. Larger than its content accounts for: -EFBIG without a
 * retry (padding does not shrink in halves). */
static char over_ceiling[16 * 1024 * 1024 + 1];

static void test_asg_describe_too_large(void **state)
{
	static const char padded_head[] = ONE_GROUP(NAME SIZES);
	static char padded[200 * 1024];
	const struct ls_response script[] = {
	        {LS_REPLY, 200, "Content-Type: text/xml\r\n", over_ceiling, sizeof(over_ceiling)},
	        {LS_REPLY, 200, NULL,
	         ONE_GROUP("<AutoScalingGroupName>a</AutoScalingGroupName>" SIZES), 0},
	        {LS_REPLY, 200, NULL,
	         ONE_GROUP("<AutoScalingGroupName>b</AutoScalingGroupName>" SIZES), 0},
	        {LS_REPLY, 200, "Content-Type: text/xml\r\n", over_ceiling, sizeof(over_ceiling)},
	        {LS_REPLY, 200, NULL, padded, sizeof(padded)},
	};
	const char *names[] = {"a", "b"};
	struct asg_group *g = NULL;
	size_t ng = 0;
	struct net n;

	(void)state;
	memset(over_ceiling, ' ', sizeof(over_ceiling));
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, padded_head, sizeof(padded_head) - 1);
	net_start(&n, script, ARRAY_SIZE(script));
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names, 2, &g, &ng, &n.err), 0);
	assert_int_equal(ng, 2);
	assert_string_equal(g[0].name, "a");
	assert_string_equal(g[1].name, "b");
	asg_groups_free(g, ng);
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names, 1, &g, &ng, &n.err), -EFBIG);
	assert_string_equal(n.err.code, "too-large");
	assert_null(g);
	assert_int_equal(asg_describe(&n.ctx, "us-east-1", names + 1, 1, &g, &ng, &n.err), -EFBIG);
	assert_string_equal(n.err.code, "too-large");
	assert_non_null(strstr(n.err.message, "account for"));
	assert_null(g);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 5);
	assert_non_null(strstr(n.srv.reqs[0].body, "member.1=a&AutoScalingGroupNames.member.2=b"));
	assert_non_null(strstr(n.srv.reqs[1].body, "member.1=a&MaxRecords"));
	assert_non_null(strstr(n.srv.reqs[2].body, "member.1=b&MaxRecords"));
}

static void test_asg_set_desired_and_update(void **state)
{
	static const struct ls_response script[] = {
	        OK_XML("SetDesiredCapacity"),
	        OK_XML("SetDesiredCapacity"),
	        OK_XML("UpdateAutoScalingGroup"),
	        OK_XML("UpdateAutoScalingGroup"),
	};
	struct net n;

	(void)state;
	net_start(&n, script, 4);
	assert_int_equal(asg_set_desired(&n.ctx, "us-east-1", "my-asg", 4, false, &n.err), 0);
	assert_int_equal(asg_set_desired(&n.ctx, "us-east-1", "a&b=c", 0, true, &n.err), 0);
	assert_int_equal(asg_set_desired(&n.ctx, "us-east-1", "my-asg", -1, true, &n.err), -EINVAL);
	assert_int_equal(asg_update(&n.ctx, "us-east-1", "my-asg", -1, 10, -1, &n.err), 0);
	assert_int_equal(asg_update(&n.ctx, "us-east-1", "my-asg", 1, 10, 3, &n.err), 0);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 4);
	assert_string_equal(
	        n.srv.reqs[0].body,
	        "Action=SetDesiredCapacity&Version=2011-01-01&AutoScalingGroupName=my-asg"
	        "&DesiredCapacity=4&HonorCooldown=false");
	assert_string_equal(
	        n.srv.reqs[1].body,
	        "Action=SetDesiredCapacity&Version=2011-01-01&AutoScalingGroupName=a%26b%3Dc"
	        "&DesiredCapacity=0&HonorCooldown=true");
	assert_string_equal(n.srv.reqs[2].body, "Action=UpdateAutoScalingGroup&Version=2011-01-01"
	                                        "&AutoScalingGroupName=my-asg&MaxSize=10");
	assert_string_equal(n.srv.reqs[3].body,
	                    "Action=UpdateAutoScalingGroup&Version=2011-01-01"
	                    "&AutoScalingGroupName=my-asg&MinSize=1&MaxSize=10&DesiredCapacity=3");
}

static void test_asg_terminate_not_retried(void **state)
{
	static const struct ls_response script[] = {
	        XML_ERROR(500, "InternalFailure", "oops"),
	        XML_ERROR(500, "InternalFailure", "oops"),
	        OK_XML("SetDesiredCapacity"),
	};
	struct net n;

	(void)state;
	net_start(&n, script, 3);
	assert_int_equal(
	        asg_terminate_instance(&n.ctx, "us-east-1", "i-0123456789abcdef0", true, &n.err),
	        -EREMOTEIO);
	assert_int_equal(n.err.http_status, 500);
	assert_int_equal(n.ctx.max_attempts, 0); /* the caller's ctx is left alone */
	/* the same 500 on an idempotent call is retried: the next two responses are used */
	assert_int_equal(asg_set_desired(&n.ctx, "us-east-1", "my-asg", 1, false, &n.err), 0);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 3);
	assert_string_equal(n.srv.reqs[0].body,
	                    "Action=TerminateInstanceInAutoScalingGroup&Version=2011-01-01"
	                    "&InstanceId=i-0123456789abcdef0&ShouldDecrementDesiredCapacity=true");
}

static void test_asg_terminate_classified(void **state)
{
	static const struct ls_response script[] = {
	        XML_ERROR(400, "ValidationError",
	                  "Instance Id not found - No managed instance found for instance ID: "
	                  "i-0123456789abcdef0"),
	        XML_ERROR(400, "ValidationError",
	                  "Currently, desiredSize equals minSize (1). Terminating instance without "
	                  "replacement will violate group&apos;s min size constraint."),
	        OK_XML("TerminateInstanceInAutoScalingGroup"),
	};
	struct net n;

	(void)state;
	net_start(&n, script, 3);
	assert_int_equal(
	        asg_terminate_instance(&n.ctx, "us-east-1", "i-0123456789abcdef0", true, &n.err),
	        -EREMOTEIO);
	assert_true(asg_error_is_not_found(&n.err));
	assert_false(asg_error_is_min_size(&n.err));
	assert_int_equal(
	        asg_terminate_instance(&n.ctx, "us-east-1", "i-0123456789abcdef0", true, &n.err),
	        -EREMOTEIO);
	assert_false(asg_error_is_not_found(&n.err));
	assert_true(asg_error_is_min_size(&n.err));
	assert_int_equal(
	        asg_terminate_instance(&n.ctx, "us-east-1", "i-0123456789abcdef0", false, &n.err),
	        0);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 3);
	assert_non_null(strstr(n.srv.reqs[2].body, "&ShouldDecrementDesiredCapacity=false"));
}

#define NOW 1700000000000LL
#define LEASE_ITEM(o, e, v)                                                                        \
	"{\"lease_id\":{\"S\":\"runner-scaler\"},\"owner\":{\"S\":\"" o "\"},"                     \
	"\"expiry\":{\"N\":\"" #e "\"},\"version\":{\"N\":\"" #v "\"}}"
#define CCF                                                                                        \
	JSON_REPLY(400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"                          \
	                "ConditionalCheckFailedException\",\"message\":"                           \
	                "\"The conditional request failed\"}")

static void test_ddb_acquire_fresh(void **state)
{
	static const struct ls_response script[] = {
	        JSON_REPLY(200, "{}"),
	        JSON_REPLY(200, "{}"),
	};
	struct ddb_lease l;
	struct net n;
	cJSON *j;

	(void)state;
	net_start(&n, script, 2);
	memset(&l, 0, sizeof(l));
	assert_int_equal(ddb_lease_acquire(&n.ctx, "us-east-1", "leases", "runner-scaler",
	                                   "host-a:12", NOW, 15000, &l, &n.err),
	                 0);
	net_stop(&n);
	assert_true(l.exists);
	assert_string_equal(l.owner, "host-a:12");
	assert_int_equal(l.expiry_ms, NOW + 15000);
	assert_int_equal(l.version, 1);
	assert_int_equal(n.srv.nreqs, 2);

	assert_string_equal(ls_header(&n.srv.reqs[0], "X-Amz-Target"), "DynamoDB_20120810.GetItem");
	j = req_json(&n.srv.reqs[0]);
	assert_string_equal(jstr(j, "TableName", NULL, NULL), "leases");
	assert_string_equal(jstr(j, "Key", "lease_id", "S"), "runner-scaler");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ConsistentRead")));
	cJSON_Delete(j);

	assert_string_equal(ls_header(&n.srv.reqs[1], "X-Amz-Target"), "DynamoDB_20120810.PutItem");
	j = req_json(&n.srv.reqs[1]);
	assert_string_equal(jstr(j, "Item", "lease_id", "S"), "runner-scaler");
	assert_string_equal(jstr(j, "Item", "owner", "S"), "host-a:12");
	assert_string_equal(jstr(j, "Item", "expiry", "N"), "1700000015000");
	assert_string_equal(jstr(j, "Item", "version", "N"), "1");
	assert_string_equal(
	        jstr(j, "ConditionExpression", NULL, NULL),
	        "attribute_not_exists(lease_id) OR (#v = :prev AND (#e < :now OR #o = :me))");
	assert_string_equal(jstr(j, "ExpressionAttributeNames", "#o", NULL), "owner");
	assert_string_equal(jstr(j, "ExpressionAttributeNames", "#e", NULL), "expiry");
	assert_string_equal(jstr(j, "ExpressionAttributeNames", "#v", NULL), "version");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":prev", "N"), "0");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":now", "N"), "1700000000000");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":me", "S"), "host-a:12");
	cJSON_Delete(j);
}

static void test_ddb_acquire_contended(void **state)
{
	static const struct ls_response script[] = {
	        /* held by b until NOW+5000: lost without a write */
	        JSON_REPLY(200, "{\"Item\":" LEASE_ITEM("b", 1700000005000, 3) "}"),
	        /* b's lease ran out: steal it with version 4, conditional on version 3 */
	        JSON_REPLY(200, "{\"Item\":" LEASE_ITEM("b", 1699999999999, 3) "}"),
	        JSON_REPLY(200, "{}"),
	        /* absent when read, but someone else wins the write */
	        JSON_REPLY(200, "{}"),
	        CCF,
	};
	struct ddb_lease l, before;
	struct net n;
	cJSON *j;

	(void)state;
	net_start(&n, script, 5);
	memset(&l, 0, sizeof(l));
	before = l;
	assert_int_equal(ddb_lease_acquire(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", NOW,
	                                   3000, &l, &n.err),
	                 1);
	assert_memory_equal(&l, &before, sizeof(l));
	assert_int_equal(ddb_lease_acquire(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", NOW,
	                                   3000, &l, &n.err),
	                 0);
	assert_int_equal(l.version, 4);
	assert_int_equal(l.expiry_ms, NOW + 3000);
	memset(&l, 0, sizeof(l));
	assert_int_equal(ddb_lease_acquire(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", NOW,
	                                   3000, &l, &n.err),
	                 1);
	assert_false(l.exists);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 5); /* the conditional failure was not retried */
	j = req_json(&n.srv.reqs[2]);
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":prev", "N"), "3");
	assert_string_equal(jstr(j, "Item", "version", "N"), "4");
	cJSON_Delete(j);
}

static void test_ddb_renew_release(void **state)
{
	static const struct ls_response script[] = {
	        JSON_REPLY(200, "{\"Attributes\":" LEASE_ITEM("a", 1700000015000, 5) "}"),
	        CCF,
	        JSON_REPLY(200, "{\"Attributes\":" LEASE_ITEM("a", 0, 5) "}"),
	        JSON_REPLY(200, "{\"Attributes\":{\"owner\":{\"S\":\"a\"}}}"),
	};
	struct ddb_lease l = {.owner = "a", .expiry_ms = NOW + 1000, .version = 4, .exists = true};
	struct ddb_lease held;
	struct net n;
	cJSON *j;

	(void)state;
	net_start(&n, script, 4);
	assert_int_equal(ddb_lease_renew(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", NOW,
	                                 15000, &l, &n.err),
	                 0);
	assert_int_equal(l.version, 5);
	assert_int_equal(l.expiry_ms, NOW + 15000);
	held = l;
	assert_int_equal(ddb_lease_renew(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", NOW,
	                                 15000, &l, &n.err),
	                 1);
	assert_memory_equal(&l, &held, sizeof(l));
	assert_int_equal(
	        ddb_lease_release(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", &l, &n.err),
	        0);
	assert_int_equal(l.expiry_ms, 0);
	assert_int_equal(l.version, 5);
	l.expiry_ms = 1;
	held = l;
	assert_int_equal(
	        ddb_lease_release(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", &l, &n.err),
	        -EBADMSG);
	assert_memory_equal(&l, &held, sizeof(l));
	l.exists = false;
	assert_int_equal(ddb_lease_renew(&n.ctx, "us-east-1", "leases", "runner-scaler", "a", NOW,
	                                 15000, &l, &n.err),
	                 -EINVAL);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 4);

	assert_string_equal(ls_header(&n.srv.reqs[0], "X-Amz-Target"),
	                    "DynamoDB_20120810.UpdateItem");
	j = req_json(&n.srv.reqs[0]);
	assert_string_equal(jstr(j, "Key", "lease_id", "S"), "runner-scaler");
	assert_string_equal(jstr(j, "UpdateExpression", NULL, NULL),
	                    "SET #e = :exp, #v = #v + :one");
	assert_string_equal(jstr(j, "ConditionExpression", NULL, NULL), "#o = :me AND #v = :ver");
	assert_string_equal(jstr(j, "ReturnValues", NULL, NULL), "ALL_NEW");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":ver", "N"), "4");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":one", "N"), "1");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":exp", "N"), "1700000015000");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":me", "S"), "a");
	cJSON_Delete(j);

	j = req_json(&n.srv.reqs[2]);
	assert_string_equal(jstr(j, "UpdateExpression", NULL, NULL), "SET #e = :exp");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":exp", "N"), "0");
	assert_string_equal(jstr(j, "ExpressionAttributeValues", ":ver", "N"), "5");
	/* DynamoDB rejects values the expressions do not use */
	assert_null(cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(j, "ExpressionAttributeValues"), ":one"));
	cJSON_Delete(j);
}

static void test_ddb_get(void **state)
{
	static const struct ls_response script[] = {
	        JSON_REPLY(200, "{\"Item\":" LEASE_ITEM("b", 1700000005000, 3) "}"),
	        JSON_REPLY(200, "{\"Item\":{\"owner\":{\"S\":\"b\"}}}"),
	        JSON_REPLY(400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
	                        "ResourceNotFoundException\",\"message\":\"no table\"}"),
	};
	struct ddb_lease l;
	struct net n;

	(void)state;
	net_start(&n, script, 3);
	assert_int_equal(ddb_lease_get(&n.ctx, "us-east-1", "leases", "runner-scaler", &l, &n.err),
	                 0);
	assert_true(l.exists);
	assert_string_equal(l.owner, "b");
	assert_int_equal(l.version, 3);
	assert_int_equal(ddb_lease_get(&n.ctx, "us-east-1", "leases", "runner-scaler", &l, &n.err),
	                 -EBADMSG);
	assert_string_equal(n.err.code, "malformed");
	assert_int_equal(ddb_lease_get(&n.ctx, "us-east-1", "leases", "runner-scaler", &l, &n.err),
	                 -EREMOTEIO);
	assert_string_equal(n.err.code, "ResourceNotFoundException");
	assert_int_equal(ddb_lease_get(&n.ctx, "us-east-1", "", "runner-scaler", &l, &n.err),
	                 -EINVAL);
	net_stop(&n);
	assert_int_equal(n.srv.nreqs, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sm_parse_secret_table),
	        cmocka_unit_test(test_sm_parse_secret_bounds),
	        cmocka_unit_test(test_ssm_parse_parameter_table),
	        cmocka_unit_test(test_asg_parse_describe_full),
	        cmocka_unit_test(test_asg_parse_describe_protect_new),
	        cmocka_unit_test(test_asg_parse_describe_table),
	        cmocka_unit_test(test_asg_parse_describe_token),
	        cmocka_unit_test(test_asg_parse_describe_many_instances),
	        cmocka_unit_test(test_asg_parse_describe_node_limit_grows),
	        cmocka_unit_test(test_asg_describe_group_bytes_table),
	        cmocka_unit_test(test_asg_describe_cap_table),
	        cmocka_unit_test(test_asg_describe_plausible_table),
	        cmocka_unit_test(test_asg_describe_max_nodes_table),
	        cmocka_unit_test(test_asg_error_classifiers),
	        cmocka_unit_test(test_ddb_parse_lease_item_table),
	        cmocka_unit_test(test_ddb_parse_lease_owner_too_long),
	        cmocka_unit_test(test_sm_get_secret_call),
	        cmocka_unit_test(test_sm_get_secret_errors),
	        cmocka_unit_test(test_ssm_get_parameter_call),
	        cmocka_unit_test(test_asg_describe_paging),
	        cmocka_unit_test(test_asg_describe_failures),
	        cmocka_unit_test(test_asg_describe_too_large),
	        cmocka_unit_test(test_asg_set_desired_and_update),
	        cmocka_unit_test(test_asg_terminate_not_retried),
	        cmocka_unit_test(test_asg_terminate_classified),
	        cmocka_unit_test(test_ddb_acquire_fresh),
	        cmocka_unit_test(test_ddb_acquire_contended),
	        cmocka_unit_test(test_ddb_renew_release),
	        cmocka_unit_test(test_ddb_get),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
