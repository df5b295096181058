#!/usr/bin/python3
"""Write the fuzz seed corpora (tests/fuzz/corpus/<harness>/) from real responses.

Run it with /usr/bin/python3 (botocore) from the repository root:
    /usr/bin/python3 tests/fuzz/seed_corpus.py [--out tests/fuzz/corpus]
It starts tests/fakes/fakecloud.py (and dynalite when install-deps cached it), drives each
endpoint the C code reads through boto3 and plain HTTP, and saves the raw response bodies:
success and error shapes alike. The wire examples of the project's AWS wire notes, the
packaged configs and a few hand-written edge cases are added beside them. Byte-structured
harnesses (status_json, agent_yaml) get inputs laid out the way they consume bytes.
Re-running replaces the seeds it wrote; regress-* files (inputs that once crashed a harness)
are kept.
"""

import argparse
import hashlib
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import Dynalite, FakeCloud, clean_environ, dynalite_path, free_port, read_line  # noqa: E402

RC = "seed-org/linux-small"
TOKEN = "rt-0123456789abcdef-SEED"
CIRCLE = "circle-token-seed"


class Corpus:
    def __init__(self, root):
        self.root = Path(root)
        self.count = {}
        for f in self.root.glob("*/*"):
            if f.is_file() and not f.name.startswith("regress-"):
                f.unlink()

    def add(self, harness, data, name=None):
        if isinstance(data, str):
            data = data.encode()
        d = self.root / harness
        d.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha1(data).hexdigest()[:12]
        (d / f"{name + '-' if name else ''}{h}").write_bytes(data)
        self.count[harness] = self.count.get(harness, 0) + 1


def capture(client):
    """Raw bodies of every call the client makes, errors included (after-call sees both)."""
    bodies = []
    client.meta.events.register("after-call", lambda http_response, **kw:
                                bodies.append(http_response.content))
    return bodies


def call(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except Exception:  # noqa: BLE001 - error responses are what we are after too
        pass


def http_raw(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def from_fake(cp, fake):
    fake.set_secret("cci-runner-secrets", json.dumps({"runner_token": TOKEN, "other": "x"}))
    fake.set_secret("plain-secret", f"  {TOKEN}\n")
    fake.set_secret("scaler-secrets", json.dumps({"circle_token": CIRCLE}))
    fake.set_secret("binary-secret", binary="AAECAw==")
    fake.set_parameter("/runner/token", TOKEN)
    fake.set_parameter("/runner/plain", "value with spaces ", type="String")

    sm = fake.boto3_client("secretsmanager")
    got = capture(sm)
    for sid in ("cci-runner-secrets", "plain-secret", "scaler-secrets", "binary-secret",
                "missing-secret"):
        call(sm.get_secret_value, SecretId=sid)
    fake.fault("secretsmanager:GetSecretValue", code="ThrottlingException", times=1)
    call(sm.get_secret_value, SecretId="cci-runner-secrets")
    fake.fault("secretsmanager:GetSecretValue", status=500, times=1)
    call(sm.get_secret_value, SecretId="cci-runner-secrets")
    ssm = fake.boto3_client("ssm")
    got_ssm = capture(ssm)
    for name in ("/runner/token", "/runner/plain", "/missing"):
        call(ssm.get_parameter, Name=name, WithDecryption=True)
    for b in got + got_ssm:
        cp.add("credentials", b, "fake")
        cp.add("aws_json_error", b, "fake")

    # IMDS: token, role credentials, spot notice.
    fake.set_imds(spot_action={"action": "terminate", "time": "2026-01-01T00:02:00Z"})
    st, tok = http_raw(fake.port, "PUT", "/latest/api/token",
                       {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    assert st == 200, st
    h = {"X-aws-ec2-metadata-token": tok.decode()}
    st, body = http_raw(fake.port, "GET", f"/latest/meta-data/iam/security-credentials/{fake.role}",
                        h)
    cp.add("credentials", body, "fake-imds-creds")
    st, body = http_raw(fake.port, "GET", "/latest/meta-data/spot/instance-action", h)
    cp.add("credentials", body, "fake-imds-spot")
    fake.set_imds(spot_action={"action": "hibernate"})
    st, body = http_raw(fake.port, "GET", "/latest/meta-data/spot/instance-action", h)
    cp.add("credentials", body, "fake-imds-spot")
    st, body = http_raw(fake.port, "GET", "/latest/meta-data/nothing-here", h)
    cp.add("credentials", body, "fake-imds-404")

    # Auto Scaling: describe (instances in several states), set, terminate, errors.
    fake.set_asg("cci-runner-asg", 0, 10, instances=[
        {"id": "i-0123456789abcdef0", "state": "InService"},
        {"id": "i-0fedcba9876543210", "state": "InService", "protected": True},
        {"id": "i-0aaaaaaaaaaaaaaa1", "state": "Pending", "health": "Unhealthy"}])
    fake.set_asg("other-asg", 1, 3, desired=1)
    asg = fake.boto3_client("autoscaling")
    got = capture(asg)
    call(asg.describe_auto_scaling_groups, AutoScalingGroupNames=["cci-runner-asg", "other-asg"])
    call(asg.describe_auto_scaling_groups, AutoScalingGroupNames=["missing"])
    call(asg.set_desired_capacity, AutoScalingGroupName="other-asg", DesiredCapacity=2,
         HonorCooldown=False)
    call(asg.terminate_instance_in_auto_scaling_group, InstanceId="i-0aaaaaaaaaaaaaaa1",
         ShouldDecrementDesiredCapacity=True)
    call(asg.terminate_instance_in_auto_scaling_group, InstanceId="i-0aaaaaaaaaaaaaaa1",
         ShouldDecrementDesiredCapacity=True)
    call(asg.set_desired_capacity, AutoScalingGroupName="other-asg", DesiredCapacity=99)
    fake.fault("autoscaling:DescribeAutoScalingGroups", code="Throttling", times=1)
    call(asg.describe_auto_scaling_groups, AutoScalingGroupNames=["cci-runner-asg"])
    fake.fault("autoscaling:DescribeAutoScalingGroups", status=503, times=1)
    call(asg.describe_auto_scaling_groups, AutoScalingGroupNames=["cci-runner-asg"])
    bad = fake.boto3_client("autoscaling", aws_access_key_id="AKIAUNKNOWN000000000")
    got_bad = capture(bad)
    call(bad.describe_auto_scaling_groups)
    for b in got + got_bad:
        cp.add("asg_xml", b, "fake")

    # Runner API: counts, the runner list, auth and throttling errors.
    fake.set_runner_token(CIRCLE)
    fake.add_jobs(RC, count=3)
    h = {"Circle-Token": CIRCLE}
    q = f"?resource-class={RC}"
    for path in ("/api/v3/runner/tasks", "/api/v3/runner/tasks/running", "/api/v3/runner"):
        cp.add("runner_api", http_raw(fake.port, "GET", path + q, h)[1], "fake")
    cp.add("runner_api", http_raw(fake.port, "GET", "/api/v3/runner/tasks" + q,
                                  {"Circle-Token": "wrong"})[1], "fake-401")
    fake.fault("runner:tasks", status=429, retry_after=3, times=1)
    cp.add("runner_api", http_raw(fake.port, "GET", "/api/v3/runner/tasks" + q, h)[1],
           "fake-429")
    fake.fault("runner:running", status=502, body="<html>Bad gateway</html>",
               content_type="text/html", times=1)
    cp.add("runner_api", http_raw(fake.port, "GET", "/api/v3/runner/tasks/running" + q, h)[1],
           "fake-502")


def from_dynalite(cp, workdir):
    exe = dynalite_path()
    if not os.access(exe, os.X_OK):
        print("seed_corpus: dynalite not installed; ddb_lease gets the wire examples only")
        return
    port = free_port()
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--createTableMs",
                             "0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=clean_environ())
    try:
        read_line(proc, 15, "dynalite")
        d = Dynalite(f"http://127.0.0.1:{port}", port, proc)
        table = d.create_lease_table("runnerd-leases")
        c = d.client()
        got = capture(c)
        key = {"lease_id": {"S": "runner-scaler"}}
        call(c.get_item, TableName=table, Key=key, ConsistentRead=True)
        call(c.put_item, TableName=table,
             Item=dict(key, owner={"S": "i-0123456789abcdef0:4242"},
                       expiry={"N": "1767225615000"}, version={"N": "1"}),
             ConditionExpression="attribute_not_exists(lease_id) OR #e < :now OR #o = :me",
             ExpressionAttributeNames={"#e": "expiry", "#o": "owner"},
             ExpressionAttributeValues={":now": {"N": "1767225600000"},
                                        ":me": {"S": "i-0123456789abcdef0:4242"}})
        call(c.get_item, TableName=table, Key=key, ConsistentRead=True)
        call(c.update_item, TableName=table, Key=key,
             UpdateExpression="SET #e = :exp, #v = #v + :one",
             ConditionExpression="#o = :me AND #v = :ver",
             ExpressionAttributeNames={"#e": "expiry", "#v": "version", "#o": "owner"},
             ExpressionAttributeValues={":exp": {"N": "1767225630000"},
                                        ":me": {"S": "i-0123456789abcdef0:4242"},
                                        ":ver": {"N": "1"}, ":one": {"N": "1"}},
             ReturnValues="ALL_NEW")
        call(c.update_item, TableName=table, Key=key, UpdateExpression="SET #e = :exp",
             ConditionExpression="#o = :me", ExpressionAttributeNames={"#e": "expiry",
                                                                       "#o": "owner"},
             ExpressionAttributeValues={":exp": {"N": "1"}, ":me": {"S": "someone-else"}})
        call(c.get_item, TableName="no-such-table", Key=key)
        for b in got:
            cp.add("ddb_lease", b, "dynalite")
            cp.add("aws_json_error", b, "dynalite")
    finally:
        proc.kill()
        proc.wait()


# ---- examples from aws-wire.md and hand-written edge cases --------------------------------

DESCRIBE = """<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
 <DescribeAutoScalingGroupsResult><AutoScalingGroups><member>
  <AutoScalingGroupName>my-asg</AutoScalingGroupName>
  <AutoScalingGroupARN>arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:930d:autoScalingGroupName/my-asg</AutoScalingGroupARN>
  <MinSize>1</MinSize><MaxSize>10</MaxSize><DesiredCapacity>2</DesiredCapacity>
  <DefaultCooldown>300</DefaultCooldown>
  <AvailabilityZones><member>us-east-1a</member><member>us-east-1b</member></AvailabilityZones>
  <LoadBalancerNames/><HealthCheckType>EC2</HealthCheckType>
  <Instances>
   <member><InstanceId>i-0123456789abcdef0</InstanceId><InstanceType>t3.micro</InstanceType>
    <AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>InService</LifecycleState>
    <HealthStatus>Healthy</HealthStatus>
    <LaunchTemplate><LaunchTemplateId>lt-0abc</LaunchTemplateId><LaunchTemplateName>my-lt</LaunchTemplateName><Version>1</Version></LaunchTemplate>
    <ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>
   <member><InstanceId>i-0fedcba9876543210</InstanceId><AvailabilityZone>us-east-1b</AvailabilityZone><LifecycleState>Terminating:Wait</LifecycleState><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>true</ProtectedFromScaleIn></member>
  </Instances>
  <CreatedTime>2023-01-10T12:34:56.789Z</CreatedTime>
  <Tags/><TerminationPolicies><member>Default</member></TerminationPolicies>
  <NewInstancesProtectedFromScaleIn>false</NewInstancesProtectedFromScaleIn>
 </member></AutoScalingGroups><NextToken>tok&amp;en==</NextToken></DescribeAutoScalingGroupsResult>
 <ResponseMetadata><RequestId>0f02a07d-b677-11e2-9eb0-dd50EXAMPLE</RequestId></ResponseMetadata>
</DescribeAutoScalingGroupsResponse>
"""

XML_MISC = [
    """<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
  <Error><Type>Sender</Type><Code>ScalingActivityInProgress</Code><Message>Scaling activity 1 is in progress &amp; blocks &lt;this&gt;</Message></Error>
  <RequestId>9f1e1b2c-0000</RequestId>
</ErrorResponse>""",
    """<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>ab-12</RequestID></Response>""",
    """<ErrorResponse><Error><Code>ValidationError</Code><Message>Instance Id not found - No managed instance found for instance ID: i-0123</Message></Error><RequestId>r</RequestId></ErrorResponse>""",
    """<TerminateInstanceInAutoScalingGroupResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
 <TerminateInstanceInAutoScalingGroupResult><Activity>
  <ActivityId>cc44a87</ActivityId><AutoScalingGroupName>my-asg</AutoScalingGroupName>
  <Details>{"Subnet ID":"subnet-1234","Availability Zone":"us-east-1a"}</Details>
  <Cause><![CDATA[a <cdata> section]]></Cause><!-- a comment -->
 </Activity></TerminateInstanceInAutoScalingGroupResult>
 <ResponseMetadata><RequestId>r&#x41;&#66;</RequestId></ResponseMetadata>
</TerminateInstanceInAutoScalingGroupResponse>""",
    "<a:b xmlns:a='x' c=\"d\"><a:c/></a:b>",
]

JSON_ERRORS = [
    '{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",'
    '"message":"The conditional request failed"}',
    '{"__type":"ResourceNotFoundException","Message":"Secrets Manager can\'t find the specified '
    'secret."}',
    '{"__type":"ParameterNotFound:http://internal.amazon.com/coral/","message":null}',
    '{"__type":"#","message":"empty code"}',
]

CREDENTIALS = [
    '{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/app/db-AbCdEf",'
    '"Name":"prod/app/db","VersionId":"EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE","SecretString":'
    '"{\\"runner_token\\":\\"app\\",\\"circle_token\\":\\"s3cr3t\\"}","VersionStages":'
    '["AWSCURRENT"],"CreatedDate":1523477145.713}',
    '{"Name":"x","SecretBinary":"AAECAw=="}',
    '{"SecretString":"{\\"runner_token\\":\\"\\"}"}',
    '{"Parameter":{"Name":"/app/config","Type":"SecureString","Value":"\\u00e9t\\u00e9 \\t",'
    '"Version":3,"LastModifiedDate":1673501234.5,"ARN":"arn:aws:ssm:x:parameter/app/config",'
    '"DataType":"text"}}',
    '{"Code":"Success","LastUpdated":"2024-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":'
    '"ASIAEXAMPLE","SecretAccessKey":"secret","Token":"token","Expiration":"2024-01-01T06:00:00Z"}',
    '{"Code":"AssumeRoleUnauthorizedAccess","Message":"no policy","LastUpdated":'
    '"2024-01-01T00:00:00Z"}',
    '{"action":"stop","time":"2017-09-18T08:22:00.123Z"}',
    '{"noticeTime":"2020-10-27T08:22:00Z"}',
]

RUNNER = [
    '{"unclaimed_task_count":0}', '{"running_runner_tasks":12}',
    '{"unclaimed_task_count":-1}', '{"unclaimed_task_count":1.5}',
    '{"unclaimed_task_count":9223372036854775807}',
    '{"items":[{"resource_class":"a/b","hostname":"h","name":"n","first_connected":'
    '"2024-01-01T00:00:00Z","last_connected":"2024-01-01T00:00:01Z","last_used":null,'
    '"ip":"10.0.0.1","version":"3.0.0"}]}',
    '{"items":[]}', '{"message":"Invalid token provided."}',
    # runner names as runnerd renders them (%H-%i), and a list with an item without a name
    '{"items":[{"resource_class":"a/b","hostname":"ip-10-0-3-17","name":'
    '"ip-10-0-3-17-i-0123456789abcdef0"},{"name":"i-0123abcd-i-0123456789abcdef0x"},'
    '{"name":"api-deadbeef"}]}',
    '{"items":[{"name":"ok"},{"hostname":"no-name"}]}',
]

DDB = [
    '{"Item":{"lease_id":{"S":"runner-scaler"},"owner":{"S":"i-0123:42"},"expiry":'
    '{"N":"1700000030000"},"version":{"N":"7"}}}',
    '{"Attributes":{"lease_id":{"S":"x"},"owner":{"S":"h:1"},"expiry":{"N":"0"},'
    '"version":{"N":"18446744073709551616"}}}',
    '{}', '{"Item":{}}',
]

CONTROL = [
    '{"version":1,"command":"status"}\n', '{"version":1,"command":"drain"}\n',
    '{"command":"status"}', '{"version":2,"command":"status"}\n',
    '{"version":"1","command":"status"}\n', '{"version":1,"command":"reboot"}\n',
    '{"version":1,"command":"status"} trailing\n', '[1,2]\n', '\n',
]

VALUES = ["250ms", "10s", "1m", "5h15m", "2d", "1d2h3m4s5ms", "18446744073709551615",
          "512", "64K", "1MiB", "2G", "3tb", "true", "Off", "-42", "9223372036854775808",
          "127.0.0.1:9102", "[::1]:9102", ":9102", "localhost:80", "Wed, 21 Oct 2015 07:28:00 GMT",
          "2024-01-01T06:00:00.123Z", "https://runner.circleci.com/api/v3",
          "http://127.0.0.1:8080/x", "%H-%i", "%H-%%-%i-(x)", "runner %x"]

METRICS_HTTP = [
    "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n",
    "POST /metrics HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\n\n", "GET /metrics\r\n\r\n",
]

RUNNERD_CONF = """[agent]
flavour = launch-agent
binary = /opt/circleci/circleci-launch-agent
config_path = /etc/circleci-runner/launch-agent-config.yaml
name = ci-%H-%i
user = circleci
working_directory = /var/lib/circleci/workdir
cleanup_working_directory = false
mode = continuous
idle_timeout = 0
max_run_time = 1d2h
api_url = https://runner.example.com
download_url = https://example.com/agent
sha256 = 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

[token]
source = ssm
id = /runner/token

[packages]
install = git, jq nodejs
lock_timeout = 30s
retries = 5

[lifecycle]
on_exit = exit
leave_asg = no
poweroff_command = systemctl poweroff ; inline comment
boot_deadline = 15m
drain_timeout = 1h
notice_interval = 500ms

[control]
socket = /run/runnerd/control.sock
group = 4
"""

SCALER_CONF = """[scaler]
interval = 5s
metrics = /var/lib/prometheus/node-exporter/runnerd.prom
request_timeout = 8s
listen = [::1]:9102
log_format = json

[circleci]
api_url = https://runner.circleci.com
token_source = env
token_id = MY_TOKEN

[pool linux-small]
resource_class = org/linux-small
asg = small-asg
region = eu-west-1
min = 1
max = 5
headroom = 1
max_step = 2

[pool linux-large]
resource_class = org/linux-large
asg = large-asg
max = 20

[election]
mode = dynamodb
table = runnerd-leases
name = runner-scaler
lease = 3s
"""

BROKEN_CONF = ["[agent]\nflavour = other\nunknown = 1\n", "[agent\n", "key = value\n",
               "[token]\nsource = file\n[token]\n", "[pool]\nmax = 1\n", "\x00\x01",
               "[lifecycle]\nboot_deadline = 99999999999999999999d\n", "[pool a]\nmin = 5\nmax=1\n"]


def status_input(phase, strings, nums=(1767225600000, 1767225500000), pid=4242, exit_status=-1):
    """Bytes in the order fuzz_status_json.c consumes them."""
    b = bytes([phase]) + struct.pack(">QQ", *nums)
    for i in range(14):
        b += bytes([3]) + struct.pack(">Q", 1000 * (i + 1))
    b += struct.pack(">Q", pid & 0xffffffff) + struct.pack(">Q", 1767225550000)
    b += struct.pack(">Q", exit_status & 0xffffffff) + struct.pack(">Q", 1767225700000)
    for s in strings:
        s = s.encode() if isinstance(s, str) else s
        b += bytes([len(s)]) + s
    return b


def yaml_input(flavour, cleanup, idle, maxrun, fields):
    """Bytes in the order fuzz_agent_yaml.c consumes them (fields: ASCII strings)."""
    b = bytes([flavour, cleanup])
    b += bytes([0]) + struct.pack(">Q", idle) if idle else bytes([1])
    b += struct.pack(">Q", maxrun)
    for s in fields:
        b += s.encode() + b"\xff"
    return b


def static(cp):
    cp.add("asg_xml", DESCRIBE, "wire")
    for x in XML_MISC:
        cp.add("asg_xml", x, "wire")
    for x in JSON_ERRORS:
        cp.add("aws_json_error", x, "wire")
    for x in CREDENTIALS:
        cp.add("credentials", x, "wire")
    for x in RUNNER:
        cp.add("runner_api", x, "hand")
    for x in DDB:
        cp.add("ddb_lease", x, "wire")
    for x in CONTROL:
        cp.add("control_request", x, "hand")
    for x in VALUES:
        cp.add("values", x, "hand")
    for x in METRICS_HTTP:
        cp.add("metrics_http", x, "hand")
    cp.add("runnerd_conf", RUNNERD_CONF, "hand")
    cp.add("scaler_conf", SCALER_CONF, "hand")
    for x in BROKEN_CONF:
        cp.add("runnerd_conf", x, "broken")
        cp.add("scaler_conf", x, "broken")
    for name in ("runnerd.conf", "scaler.conf"):
        p = REPO / "packaging" / "etc" / name
        if p.exists():
            cp.add("runnerd_conf" if name == "runnerd.conf" else "scaler_conf", p.read_bytes(),
                   "packaged")
    cp.add("status_json", status_input(8, ["i-0123456789abcdef0", "us-east-1",
                                           "circleci-runner", "InService", "", ""]), "running")
    cp.add("status_json", status_input(12, ["i-0123", "eu-west-1", "launch-agent",
                                            "Warmed:Stopped", "spot: terminate at 12:00",
                                            "token: secretsmanager: \"AccessDenied\"\n\x01"],
                                       exit_status=137), "failed")
    cp.add("status_json", status_input(2, ["", "", "", "", b"\xff\xfe\xc3(", b"\xed\xa0\x80x"],
                                       pid=0, nums=(0, 5)), "bad-utf8")
    cp.add("agent_yaml", yaml_input(0, 1, 60000, 18000000, [
        TOKEN, "", "ip-10-0-0-1-i-0123", "circleci", "/var/lib/circleci-runner/workdir",
        "single-task"]), "runner3")
    cp.add("agent_yaml", yaml_input(1, 0, 0, 5400500, [
        'tok"en: #x\nkey: y', "https://runner.example.com", "name: {a}", "ci user",
        "/srv/%s/x", "continuous"]), "launch-agent")


def tarballs(cp):
    """CircleCI's release tarball shape and its hostile variants, gzip'd."""
    import gzip
    import io
    import tarfile

    def tgz(entries, fmt=tarfile.USTAR_FORMAT, raw_mode=False):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=fmt) as t:
            for name, kind, data, link in entries:
                ti = tarfile.TarInfo(name)
                ti.type = kind
                ti.mode = 0o755
                ti.size = len(data) if kind == tarfile.REGTYPE else 0
                ti.linkname = link or ""
                t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        if raw_mode:  # the harness gzips what follows a 'T'
            return b"T" + raw.getvalue()
        return gzip.compress(raw.getvalue(), mtime=0)

    agent = b"#!/bin/sh\necho agent\n"
    cp.add("tarball", tgz([("circleci-runner", tarfile.REGTYPE, agent, None)]), "good")
    cp.add("tarball", tgz([("./circleci-runner", tarfile.REGTYPE, agent, None),
                           ("LICENSE", tarfile.REGTYPE, b"license", None)]), "dot-slash")
    cp.add("tarball", tgz([("circleci-runner", tarfile.SYMTYPE, b"", "/bin/sh")]), "symlink")
    cp.add("tarball", tgz([("../circleci-runner", tarfile.REGTYPE, agent, None)]), "traversal")
    cp.add("tarball", tgz([("x" * 120 + "/circleci-runner", tarfile.REGTYPE, agent, None)],
                          tarfile.GNU_FORMAT), "gnu-longname")
    cp.add("tarball", tgz([("d/" + "y" * 110, tarfile.REGTYPE, agent, None)],
                          tarfile.PAX_FORMAT), "pax")
    cp.add("tarball", gzip.compress(b"not a tar at all", mtime=0), "not-tar")
    cp.add("tarball", b"\x1f\x8b\x08\x00garbage", "bad-gzip")
    # Raw tar streams, so mutations land in the headers.
    cp.add("tarball", tgz([("circleci-runner", tarfile.REGTYPE, agent, None)], raw_mode=True),
           "raw-good")
    cp.add("tarball", tgz([("x" * 120 + "/circleci-runner", tarfile.REGTYPE, agent, None)],
                          tarfile.GNU_FORMAT, raw_mode=True), "raw-gnu-longname")
    cp.add("tarball", tgz([("d/" + "y" * 110, tarfile.REGTYPE, agent, None),
                           ("circleci-runner", tarfile.REGTYPE, agent, None)],
                          tarfile.PAX_FORMAT, raw_mode=True), "raw-pax")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "tests" / "fuzz" / "corpus"))
    args = ap.parse_args()
    cp = Corpus(args.out)
    static(cp)
    tarballs(cp)
    with tempfile.TemporaryDirectory() as tmp:
        fake = FakeCloud(tmp).start()
        try:
            from_fake(cp, fake)
        finally:
            fake.stop()
        from_dynalite(cp, tmp)
    for h, n in sorted(cp.count.items()):
        print(f"{h}: {n} seeds written")


if __name__ == "__main__":
    main()
