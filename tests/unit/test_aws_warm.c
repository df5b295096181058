/* Unit tests: warm pools' Auto Scaling wire formats (aws_warm.h). The request bodies are the
 * ones botocore 1.29 serializes for the same calls; the answers are shaped as AWS sends them
 * (aws-wire.md), with the cases a parser must refuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws_warm.h"
#include "util.h"

#define NS   "xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\""
#define META "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"
#define IID  "i-0fa4e0000000000001"

static const char *instance_member(const char *iid, const char *group, const char *state)
{
	static char buf[1024];

	snprintf(
	        buf, sizeof(buf),
	        "<member>\n  <InstanceId>%s</InstanceId>\n  <InstanceType>t3.micro</InstanceType>\n"
	        "  <AutoScalingGroupName>%s</AutoScalingGroupName>\n"
	        "  <AvailabilityZone>us-east-1a</AvailabilityZone>\n"
	        "  <LifecycleState>%s</LifecycleState>\n  <HealthStatus>HEALTHY</HealthStatus>\n"
	        "  <LaunchTemplate><LaunchTemplateId>lt-1</LaunchTemplateId>"
	        "<LaunchTemplateName>x</LaunchTemplateName><Version>1</Version></LaunchTemplate>\n"
	        "  <ProtectedFromScaleIn>false</ProtectedFromScaleIn>\n</member>",
	        iid, group, state);
	return buf;
}

static void test_parse_instance_group(void **state)
{
	char xml[4096], group[256], st[48];

	snprintf(xml, sizeof(xml),
	         "<DescribeAutoScalingInstancesResponse " NS ">\n"
	         "<DescribeAutoScalingInstancesResult><AutoScalingInstances>\n%s\n"
	         "</AutoScalingInstances></DescribeAutoScalingInstancesResult>" META
	         "</DescribeAutoScalingInstancesResponse>",
	         instance_member(IID, "cci-runner-asg &amp; co", "Warmed:Pending:Wait"));
	assert_int_equal(asg_parse_instance_group(xml, strlen(xml), IID, group, sizeof(group), st,
	                                          sizeof(st)),
	                 0);
	assert_string_equal(group, "cci-runner-asg & co");
	assert_string_equal(st, "Warmed:Pending:Wait");
	/* Another instance's member only: not listed. */
	assert_int_equal(asg_parse_instance_group(xml, strlen(xml), "i-0ffffffffffffffff", group,
	                                          sizeof(group), st, sizeof(st)),
	                 -ENOENT);
	assert_string_equal(group, "");
	/* A name that does not fit whole is refused, never cut. */
	assert_int_equal(asg_parse_instance_group(xml, strlen(xml), IID, group, 8, st, sizeof(st)),
	                 -EBADMSG);
	/* AWS lists nothing: in no group. */
	snprintf(xml, sizeof(xml),
	         "<DescribeAutoScalingInstancesResponse " NS ">"
	         "<DescribeAutoScalingInstancesResult><AutoScalingInstances/>"
	         "</DescribeAutoScalingInstancesResult>" META
	         "</DescribeAutoScalingInstancesResponse>");
	assert_int_equal(asg_parse_instance_group(xml, strlen(xml), IID, group, sizeof(group), st,
	                                          sizeof(st)),
	                 -ENOENT);
	/* An error, another answer, broken XML. */
	{
		static const char *const bad[] = {
		        "<ErrorResponse " NS
		        "><Error><Code>Throttling</Code></Error></ErrorResponse>",
		        "<DescribeAutoScalingGroupsResponse " NS
		        "><DescribeAutoScalingGroupsResult/>"
		        "</DescribeAutoScalingGroupsResponse>",
		        "<DescribeAutoScalingInstancesResponse><"
		        "DescribeAutoScalingInstancesResult>",
		        "",
		};

		for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
			assert_int_equal(asg_parse_instance_group(bad[i], strlen(bad[i]), IID,
			                                          group, sizeof(group), st,
			                                          sizeof(st)),
			                 -EBADMSG);
	}
	/* The member lacks its group: malformed. */
	snprintf(
	        xml, sizeof(xml),
	        "<DescribeAutoScalingInstancesResponse " NS ">"
	        "<DescribeAutoScalingInstancesResult><AutoScalingInstances><member><InstanceId>" IID
	        "</InstanceId><LifecycleState>InService</LifecycleState></member>"
	        "</AutoScalingInstances></DescribeAutoScalingInstancesResult>" META
	        "</DescribeAutoScalingInstancesResponse>");
	assert_int_equal(asg_parse_instance_group(xml, strlen(xml), IID, group, sizeof(group), st,
	                                          sizeof(st)),
	                 -EBADMSG);
}

/* Bodies as botocore 1.29 serializes them (aws_query adds Action and Version to runnerd's). */
static void test_forms(void **state)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(asg_complete_lifecycle_form("runner-launch", "my asg", IID, false, &b), 0);
	assert_string_equal(b.data, "LifecycleHookName=runner-launch&AutoScalingGroupName=my+asg&"
	                            "LifecycleActionResult=CONTINUE&InstanceId=" IID);
	buf_reset(&b);
	assert_int_equal(asg_complete_lifecycle_form("h/1", "g", IID, true, &b), 0);
	assert_string_equal(b.data, "LifecycleHookName=h%2F1&AutoScalingGroupName=g&"
	                            "LifecycleActionResult=ABANDON&InstanceId=" IID);
	buf_reset(&b);
	assert_int_equal(asg_complete_lifecycle_form("", "g", IID, true, &b), -EINVAL);
	assert_int_equal(asg_complete_lifecycle_form("h", "g", "", true, &b), -EINVAL);
	buf_reset(&b);
	assert_int_equal(asg_put_warm_pool_form("g", 2, &b), 0);
	assert_string_equal(
	        b.data, "Action=PutWarmPool&Version=2011-01-01&AutoScalingGroupName=g&MinSize=2&"
	                "MaxGroupPreparedCapacity=2&PoolState=Stopped&"
	                "InstanceReusePolicy.ReuseOnScaleIn=false");
	buf_reset(&b);
	assert_int_equal(asg_put_warm_pool_form("g", -1, &b), -EINVAL);
	buf_reset(&b);
	assert_int_equal(asg_describe_warm_pool_form("g", "", &b), 0);
	assert_string_equal(b.data, "Action=DescribeWarmPool&Version=2011-01-01&"
	                            "AutoScalingGroupName=g&MaxRecords=50");
	buf_reset(&b);
	assert_int_equal(asg_describe_warm_pool_form("g", "a+b/c=", &b), 0);
	assert_string_equal(b.data, "Action=DescribeWarmPool&Version=2011-01-01&"
	                            "AutoScalingGroupName=g&MaxRecords=50&NextToken=a%2Bb%2Fc%3D");
	buf_free(&b);
}

static const char *pool_xml(const char *conf, const char *members, const char *token)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf),
	         "<DescribeWarmPoolResponse " NS ">\n<DescribeWarmPoolResult>\n%s\n"
	         "<Instances>%s</Instances>\n%s%s%s</DescribeWarmPoolResult>" META
	         "</DescribeWarmPoolResponse>",
	         conf, members, token ? "<NextToken>" : "", token ? token : "",
	         token ? "</NextToken>" : "");
	return buf;
}

#define CONF(min, max, state, reuse)                                                               \
	"<WarmPoolConfiguration><MinSize>" min "</MinSize><MaxGroupPreparedCapacity>" max          \
	"</MaxGroupPreparedCapacity><PoolState>" state "</PoolState><InstanceReusePolicy>"         \
	"<ReuseOnScaleIn>" reuse "</ReuseOnScaleIn></InstanceReusePolicy></WarmPoolConfiguration>"

static void test_parse_warm_pool(void **state)
{
	struct asg_warm_pool p;
	char members[4096];
	const char *x;

	snprintf(members, sizeof(members), "%s", instance_member(IID, "g", "Warmed:Stopped"));
	strcat(members, instance_member("i-2", "g", "Warmed:Pending:Wait"));
	strcat(members, instance_member("i-3", "g", "Warmed:Terminating:Wait"));
	memset(&p, 0, sizeof(p));
	x = pool_xml(CONF("2", "2", "Stopped", "false"), members, "tok+1");
	assert_int_equal(asg_parse_warm_pool(x, strlen(x), &p), 0);
	assert_true(p.exists);
	assert_int_equal(p.min_size, 2);
	assert_int_equal(p.max_prepared, 2);
	assert_string_equal(p.pool_state, "Stopped");
	assert_false(p.reuse_on_scale_in);
	assert_int_equal(p.instances, 2); /* the one being terminated is not counted */
	assert_string_equal(p.next_token, "tok+1");
	/* The next page adds its instances. */
	x = pool_xml(CONF("2", "2", "Stopped", "false"),
	             instance_member("i-4", "g", "Warmed:Running"), NULL);
	assert_int_equal(asg_parse_warm_pool(x, strlen(x), &p), 0);
	assert_int_equal(p.instances, 3);
	assert_string_equal(p.next_token, "");
	/* No warm pool: no configuration, no instances. */
	memset(&p, 0, sizeof(p));
	x = pool_xml("", "", NULL);
	assert_int_equal(asg_parse_warm_pool(x, strlen(x), &p), 0);
	assert_false(p.exists);
	assert_int_equal(p.instances, 0);
	/* Only MinSize set: MaxGroupPreparedCapacity absent is -1 (the group's MaxSize). */
	memset(&p, 0, sizeof(p));
	x = pool_xml("<WarmPoolConfiguration><MinSize>0</MinSize><PoolState>Running</PoolState>"
	             "<Status>PendingDelete</Status></WarmPoolConfiguration>",
	             "", NULL);
	assert_int_equal(asg_parse_warm_pool(x, strlen(x), &p), 0);
	assert_int_equal(p.max_prepared, -1);
	assert_string_equal(p.status, "PendingDelete");
	assert_string_equal(p.pool_state, "Running");
	/* Refused: a bad number, a bad boolean, an error answer, a member without its state. */
	{
		const char *bad[4];

		bad[0] = strdup(pool_xml(CONF("two", "2", "Stopped", "false"), "", NULL));
		bad[1] = strdup(pool_xml(CONF("2", "2", "Stopped", "maybe"), "", NULL));
		bad[2] = "<ErrorResponse " NS
		         "><Error><Code>Throttling</Code></Error></ErrorResponse>";
		bad[3] =
		        strdup(pool_xml("", "<member><InstanceId>i-1</InstanceId></member>", NULL));
		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			memset(&p, 0, sizeof(p));
			assert_int_equal(asg_parse_warm_pool(bad[i], strlen(bad[i]), &p), -EBADMSG);
		}
		free((void *)bad[0]);
		free((void *)bad[1]);
		free((void *)bad[3]);
	}
	memset(&p, 0, sizeof(p));
	x = pool_xml(CONF("-2", "2", "Stopped", "false"), "", NULL);
	assert_int_equal(asg_parse_warm_pool(x, strlen(x), &p), -EBADMSG);
	x = pool_xml(CONF("0", "-1", "Stopped", "false"), "", NULL);
	assert_int_equal(asg_parse_warm_pool(x, strlen(x), &p), 0);
	assert_int_equal(p.max_prepared, -1);
}

struct dcase {
	bool exists;
	int64_t min, max;
	const char *state;
	bool reuse;
	int64_t want_n;
	bool differs;
	const char *why;
};

/* clang-format off */
static const struct dcase dcases[] = {
	{true, 2, 2, "Stopped", false, 2, false, ""},
	{true, 2, 2, "", false, 2, false, ""}, /* PoolState absent: Stopped, the default */
	{false, 0, -1, "", false, 2, true, "no warm pool"},
	{true, 0, -1, "Stopped", false, 2, true, "MinSize 0, want 2"},
	{true, 2, -1, "Stopped", false, 2, true, "MaxGroupPreparedCapacity unset: -1, want 2"},
	{true, 2, 3, "Stopped", false, 2, true, "MaxGroupPreparedCapacity 3, want 2"},
	{true, 2, 2, "Running", false, 2, true, "PoolState Running, want Stopped"},
	{true, 2, 2, "Stopped", true, 2, true, "ReuseOnScaleIn true, want false"},
	{true, 0, 0, "Stopped", false, 0, false, ""}, /* a pool of none is a pool too */
};
/* clang-format on */

static void test_differs(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(dcases); i++) {
		const struct dcase *c = &dcases[i];
		struct asg_warm_pool p;
		char why[128] = "";

		memset(&p, 0, sizeof(p));
		p.exists = c->exists;
		p.min_size = c->min;
		p.max_prepared = c->max;
		str_copy(p.pool_state, c->state, sizeof(p.pool_state));
		p.reuse_on_scale_in = c->reuse;
		assert_int_equal(asg_warm_pool_differs(&p, c->want_n, why, sizeof(why)),
		                 c->differs);
		if (c->differs)
			assert_string_equal(why, c->why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_instance_group),
	        cmocka_unit_test(test_forms),
	        cmocka_unit_test(test_parse_warm_pool),
	        cmocka_unit_test(test_differs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
