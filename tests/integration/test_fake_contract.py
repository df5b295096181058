"""Contract tests for tests/fakes/fakecloud.py.

botocore/boto3 and the aws CLI drive the fake, which proves it speaks real AWS wire format.
The tests also cover the Runner API, the control API, fault injection, IMDSv2 semantics, and
the launch hook.
Run: /usr/bin/python3 -m pytest -q tests/integration/test_fake_contract.py
"""

import base64
import http.client
import importlib.util
import json
import socket
import subprocess
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.utils import InstanceMetadataFetcher

from conftest import FAKECLOUD, INSTANCE_PROBE, PYTHON

# botocore's "max_attempts" counts retries; "total_max_attempts" counts attempts.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def load_fakecloud():
    spec = importlib.util.spec_from_file_location("fakecloud", FAKECLOUD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def client(fake, service, **kw):
    return fake.boto3_client(service, config=kw.pop("config", NO_RETRY), **kw)


def err_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def err_status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def http_req(fake, method, path, headers=None, body=None, port=None, timeout=10):
    """(status, headers dict (lower-case), body bytes) of one raw request."""
    conn = http.client.HTTPConnection("127.0.0.1", port or fake.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def imds_token(fake, ttl="60", port=None):
    status, hdrs, body = http_req(fake, "PUT", "/latest/api/token",
                                  {"X-aws-ec2-metadata-token-ttl-seconds": ttl}, port=port)
    assert status == 200, body
    assert hdrs["x-aws-ec2-metadata-token-ttl-seconds"] == ttl
    return body.decode()


def imds_get(fake, path, token, port=None):
    headers = {} if token is None else {"X-aws-ec2-metadata-token": token}
    return http_req(fake, "GET", "/latest/" + path, headers, port=port)


def signed_raw(fake, service, body, akid, secret, token=None, amzdate=None, scope=None,
               target=None, sign_token=True, region="us-east-1"):
    """Sign with botocore at a chosen timestamp and send with http.client: for the requests a
    normal client would never make (stale date, wrong scope, unsigned token)."""
    amzdate = amzdate or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {"Host": f"127.0.0.1:{fake.port}", "X-Amz-Date": amzdate,
               "Content-Type": ("application/x-amz-json-1.1" if target else
                                "application/x-www-form-urlencoded; charset=utf-8")}
    if target:
        headers["X-Amz-Target"] = target
    if token is not None and sign_token:
        headers["X-Amz-Security-Token"] = token
    req = AWSRequest(method="POST", url=fake.url + "/", data=body, headers=headers)
    req.context["timestamp"] = amzdate
    s = SigV4Auth(Credentials(akid, secret), scope or service, region)
    sig = s.signature(s.string_to_sign(req, s.canonical_request(req)), req)
    auth = (f"AWS4-HMAC-SHA256 Credential={akid}/{s.credential_scope(req)}, "
            f"SignedHeaders={s.signed_headers(s.headers_to_sign(req))}, Signature={sig}")
    send = dict(headers, Authorization=auth)
    if token is not None and not sign_token:
        send["X-Amz-Security-Token"] = token
    return http_req(fake, "POST", "/", send, body)


# ---- SigV4 verifier vs AWS's published test vectors ----------------------------------------

VECTOR_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
STS_TOKEN = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAe"
             "MicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZa"
             "mpKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr"
             "7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/"
             "oLxBA==")
VECTORS = [  # (name, method, path, query, headers, body, signature) from aws-sig-v4-test-suite
    ("post-x-www-form-urlencoded", "POST", "/", "",
     {"content-type": ["application/x-www-form-urlencoded"], "host": ["example.amazonaws.com"],
      "x-amz-date": ["20150830T123600Z"]}, b"Param1=value1",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ("get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1",
     {"host": ["example.amazonaws.com"], "x-amz-date": ["20150830T123600Z"]}, b"",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-header-value-trim", "GET", "/", "",
     {"host": ["example.amazonaws.com"], "my-header1": [" value1"],
      "my-header2": [' "a   b   c"'], "x-amz-date": ["20150830T123600Z"]}, b"",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("post-sts-header-before", "POST", "/", "",
     {"host": ["example.amazonaws.com"], "x-amz-date": ["20150830T123600Z"],
      "x-amz-security-token": [STS_TOKEN]}, b"",
     "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
]


@pytest.mark.parametrize("vec", VECTORS, ids=[v[0] for v in VECTORS])
def test_verifier_matches_aws_test_vectors(vec):
    fc = load_fakecloud()
    _name, method, path, query, headers, body, want = vec
    signed = sorted(headers)
    creq = fc.canonical_request(method, path, query, headers, signed, body)
    got = fc.sigv4_signature(creq, "20150830T123600Z", "20150830", "us-east-1", "service",
                             VECTOR_SECRET)
    assert got == want
    assert fc.botocore_signature(method, path, query, headers, signed, body, "20150830T123600Z",
                                 "AKIDEXAMPLE", VECTOR_SECRET, "us-east-1", "service") == want
    # A one-byte change in the body must change the signature.
    creq2 = fc.canonical_request(method, path, query, headers, signed, body + b"x")
    assert fc.sigv4_signature(creq2, "20150830T123600Z", "20150830", "us-east-1", "service",
                              VECTOR_SECRET) != want


def test_canonical_query_encoding():
    fc = load_fakecloud()
    assert fc.canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert fc.canonical_query("k=a b") == "k=a%20b"
    assert fc.canonical_query("k=a+b") == "k=a%2Bb"  # '+' is a literal plus for AWS
    assert fc.canonical_query("k=%7e%2f") == "k=~%2F"
    assert fc.canonical_query("flag&x=") == "flag=&x="


# ---- Auto Scaling (Query) ------------------------------------------------------------------

def test_describe_groups_realistic_shape(fake):
    fake.set_asg("pool-a", 0, 10, desired=2,
                 instances=[{"id": "i-0aaaaaaaaaaaaaaa1"},
                            {"id": "i-0aaaaaaaaaaaaaaa2", "protected": True}],
                 tags={"Name": "runners & <friends>"})
    fake.set_asg("pool-b", 1, 3, desired=1, instances=1, protect_new=True)
    a = client(fake, "autoscaling")
    groups = {g["AutoScalingGroupName"]: g for g in a.describe_auto_scaling_groups()
              ["AutoScalingGroups"]}
    assert sorted(groups) == ["pool-a", "pool-b"]
    g = groups["pool-a"]
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (0, 10, 2)
    assert g["LaunchTemplate"]["Version"] == "1"
    assert g["AvailabilityZones"] == ["us-east-1a", "us-east-1b"]
    assert g["Tags"] == [{"ResourceId": "pool-a", "ResourceType": "auto-scaling-group",
                          "Key": "Name", "Value": "runners & <friends>",
                          "PropagateAtLaunch": True}]
    assert g["AutoScalingGroupARN"].endswith(":autoScalingGroupName/pool-a")
    assert [(i["InstanceId"], i["LifecycleState"], i["HealthStatus"], i["ProtectedFromScaleIn"])
            for i in g["Instances"]] == [("i-0aaaaaaaaaaaaaaa1", "InService", "Healthy", False),
                                         ("i-0aaaaaaaaaaaaaaa2", "InService", "Healthy", True)]
    assert all(i["LaunchTemplate"]["Version"] == "1" for i in g["Instances"])
    assert groups["pool-b"]["NewInstancesProtectedFromScaleIn"] is True
    assert groups["pool-b"]["Instances"][0]["ProtectedFromScaleIn"] is True
    assert groups["pool-b"]["Tags"] == []
    # The raw XML has what the C parser must cope with: nesting, empties, entities.
    status, hdrs, raw = signed_raw(fake, "autoscaling",
                                   b"Action=DescribeAutoScalingGroups&Version=2011-01-01",
                                   fake.akid, fake.secret)
    xml = raw.decode()
    assert status == 200 and hdrs["content-type"] == "text/xml"
    assert "x-amzn-requestid" in hdrs
    assert "<Tags/>" in xml and "<LoadBalancerNames/>" in xml
    assert "runners &amp; &lt;friends&gt;" in xml
    assert xml.count("<member>") > 8 and "<Version>1</Version>" in xml
    assert xml.startswith('<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.'
                          'amazonaws.com/doc/2011-01-01/">')


def test_describe_paging_names_and_region(fake):
    for n in range(5):
        fake.set_asg(f"g{n}", 0, 5, desired=0)
    fake.set_asg("west", 0, 5, desired=0, region="us-west-2")
    a = client(fake, "autoscaling")
    first = a.describe_auto_scaling_groups(MaxRecords=2)
    assert [g["AutoScalingGroupName"] for g in first["AutoScalingGroups"]] == ["g0", "g1"]
    assert first["NextToken"]
    second = a.describe_auto_scaling_groups(MaxRecords=2, NextToken=first["NextToken"])
    assert [g["AutoScalingGroupName"] for g in second["AutoScalingGroups"]] == ["g2", "g3"]
    pages = a.get_paginator("describe_auto_scaling_groups").paginate(
        PaginationConfig={"PageSize": 2})
    names = [g["AutoScalingGroupName"] for p in pages for g in p["AutoScalingGroups"]]
    assert names == ["g0", "g1", "g2", "g3", "g4"]
    last = a.describe_auto_scaling_groups(MaxRecords=100)
    assert "NextToken" not in last and len(last["AutoScalingGroups"]) == 5
    picked = a.describe_auto_scaling_groups(AutoScalingGroupNames=["g3", "nope", "g1"])
    assert sorted(g["AutoScalingGroupName"] for g in picked["AutoScalingGroups"]) == ["g1", "g3"]
    with pytest.raises(ClientError) as e:
        a.describe_auto_scaling_groups(NextToken="garbage")
    assert err_code(e) == "InvalidNextToken"
    with pytest.raises(ClientError) as e:
        a.describe_auto_scaling_groups(AutoScalingGroupNames=[f"n{i}" for i in range(51)])
    assert err_code(e) == "ValidationError" and err_status(e) == 400
    assert "The number of group names that may be passed in is limited to 50" in str(e.value)
    west = client(fake, "autoscaling", region_name="us-west-2")
    assert [g["AutoScalingGroupName"] for g in
            west.describe_auto_scaling_groups()["AutoScalingGroups"]] == ["west"]
    with pytest.raises(ClientError) as e:
        west.set_desired_capacity(AutoScalingGroupName="g0", DesiredCapacity=1)
    assert err_code(e) == "ValidationError" and "not found" in str(e.value)


def test_describe_large_fleet_pages_by_groups(fake):
    """Thousands of instances across groups, as AWS answers them: pages of MaxRecords groups,
    each group with every instance (complete members, about 650 bytes each on the wire), so a
    page runs to megabytes; botocore parses it all; NextToken is opaque, needs form-encoding
    and is only good for the request it came from."""
    big = [f"big{i:02d}" for i in range(12)]
    for n in big:
        fake.set_asg(n, 0, 1000, 400, instances=400)
    fake.set_asg("huge", 0, 5000, 3000, instances=3000, instance_type="m5.large")
    names = sorted(big + ["huge"])
    a = client(fake, "autoscaling")
    pages = list(a.get_paginator("describe_auto_scaling_groups").paginate(
        AutoScalingGroupNames=names, PaginationConfig={"PageSize": 5}))
    assert [len(p["AutoScalingGroups"]) for p in pages] == [5, 5, 3]
    assert ["NextToken" in p for p in pages] == [True, True, False]
    groups = {g["AutoScalingGroupName"]: g for p in pages for g in p["AutoScalingGroups"]}
    assert sorted(groups) == names
    assert {n: len(g["Instances"]) for n, g in groups.items()} == dict(
        {n: 400 for n in big}, huge=3000)
    ids = [i["InstanceId"] for g in groups.values() for i in g["Instances"]]
    assert len(set(ids)) == len(ids) == 12 * 400 + 3000
    assert all(len(i) == 19 and i.startswith("i-0") for i in ids)
    member_keys = {"InstanceId", "InstanceType", "AvailabilityZone", "LifecycleState",
                   "HealthStatus", "LaunchTemplate", "ProtectedFromScaleIn"}
    for g in groups.values():
        assert all(member_keys <= set(i) for i in g["Instances"])
        assert g["DesiredCapacity"] == len(g["Instances"])
    huge = groups["huge"]["Instances"]
    assert {i["InstanceType"] for i in huge} == {"m5.large"}
    assert {i["AvailabilityZone"] for i in huge} == {"us-east-1a", "us-east-1b"}
    assert {i["LaunchTemplate"]["LaunchTemplateName"] for i in huge} == {"huge-lt"}

    # On the wire: one page of five 400-instance groups is over a mebibyte, and a member of
    # the 3,000-instance group weighs what an AWS one does.
    def raw(body):
        status, _, data = signed_raw(fake, "autoscaling", body.encode(), fake.akid, fake.secret)
        return status, data.decode()

    form = "Action=DescribeAutoScalingGroups&Version=2011-01-01"
    status, page = raw(form + "&MaxRecords=5")
    assert status == 200 and page.count("<InstanceId>") == 5 * 400
    assert len(page) > 1024 * 1024
    status, one = raw(form + "&AutoScalingGroupNames.member.1=huge")
    status2, none = raw(form + "&AutoScalingGroupNames.member.1=huge&IncludeInstances=false")
    assert status == status2 == 200 and "<Instances>" in one and "<Instances" not in none
    assert 550 < (len(one) - len(none)) / 3000 < 900
    assert "\n          <member>\n            <InstanceId>i-0" in one  # indented as AWS

    # NextToken: base64 with '+', '/' and '=' (a client must form-encode it), tied to the
    # names and region it was issued for.
    token = pages[0]["NextToken"]
    assert set("+/=") <= set(token)
    again = a.describe_auto_scaling_groups(AutoScalingGroupNames=names, MaxRecords=5,
                                           NextToken=token)
    assert [g["AutoScalingGroupName"] for g in again["AutoScalingGroups"]] == names[5:10]
    for kw in (dict(AutoScalingGroupNames=["huge"]), dict(),
               dict(AutoScalingGroupNames=names[:12])):
        with pytest.raises(ClientError) as e:
            a.describe_auto_scaling_groups(NextToken=token, MaxRecords=5, **kw)
        assert err_code(e) == "InvalidNextToken" and err_status(e) == 400
    west = client(fake, "autoscaling", region_name="us-west-2")
    with pytest.raises(ClientError) as e:
        west.describe_auto_scaling_groups(AutoScalingGroupNames=names, NextToken=token)
    assert err_code(e) == "InvalidNextToken"

    # MaxRecords raises the 50-name limit with it (up to 100), as AWS documents.
    many = [f"nope{i}" for i in range(99)] + ["huge"]
    got = a.describe_auto_scaling_groups(AutoScalingGroupNames=many, MaxRecords=100)
    assert [g["AutoScalingGroupName"] for g in got["AutoScalingGroups"]] == ["huge"]
    with pytest.raises(ClientError) as e:
        a.describe_auto_scaling_groups(AutoScalingGroupNames=many + ["x"], MaxRecords=100)
    assert "limited to 100" in str(e.value)
    with pytest.raises(ClientError) as e:
        a.describe_auto_scaling_groups(AutoScalingGroupNames=many[:51])
    assert "limited to 50" in str(e.value)


def test_set_desired_capacity_and_errors(fake):
    fake.set_asg("pool", 1, 20, desired=1)
    a = client(fake, "autoscaling")
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=4, HonorCooldown=False)
    assert fake.state()["asgs"]["pool"]["desired"] == 4
    with pytest.raises(ClientError) as e:
        a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=25)
    assert err_code(e) == "ValidationError"
    assert e.value.response["Error"]["Message"] == (
        "New SetDesiredCapacity value 25 is above max value 20 for the AutoScalingGroup.")
    with pytest.raises(ClientError) as e:
        a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=0)
    assert "is below min value 1" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        a.set_desired_capacity(AutoScalingGroupName="ghost", DesiredCapacity=1)
    assert err_code(e) == "ValidationError"
    assert e.value.response["Error"]["Message"].startswith("AutoScalingGroup name not found")
    assert fake.state()["asgs"]["pool"]["desired"] == 4


def test_suspend_processes(fake):
    """SuspendProcesses as botocore sends it; DescribeAutoScalingGroups then lists the process
    with its reason, as boto3 parses it; an unknown process name is a ValidationError."""
    fake.set_asg("pool", 0, 5, desired=0)
    a = client(fake, "autoscaling")
    g = a.describe_auto_scaling_groups(AutoScalingGroupNames=["pool"])["AutoScalingGroups"][0]
    assert g["SuspendedProcesses"] == []
    a.suspend_processes(AutoScalingGroupName="pool", ScalingProcesses=["AZRebalance"])
    g = a.describe_auto_scaling_groups(AutoScalingGroupNames=["pool"])["AutoScalingGroups"][0]
    [sp] = g["SuspendedProcesses"]
    assert sp["ProcessName"] == "AZRebalance"
    assert sp["SuspensionReason"].startswith("User suspended at "), sp
    with pytest.raises(ClientError) as e:
        a.suspend_processes(AutoScalingGroupName="pool", ScalingProcesses=["Rebalance"])
    assert err_code(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        a.suspend_processes(AutoScalingGroupName="ghost", ScalingProcesses=["AZRebalance"])
    assert err_code(e) == "ValidationError"
    assert fake.state()["asgs"]["pool"]["suspended"] == ["AZRebalance"]


def test_update_group(fake):
    fake.set_asg("pool", 0, 5, desired=2)
    a = client(fake, "autoscaling")
    a.update_auto_scaling_group(AutoScalingGroupName="pool", MinSize=1, MaxSize=10,
                                DesiredCapacity=3, NewInstancesProtectedFromScaleIn=True)
    g = a.describe_auto_scaling_groups(AutoScalingGroupNames=["pool"])["AutoScalingGroups"][0]
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (1, 10, 3)
    assert g["NewInstancesProtectedFromScaleIn"] is True
    a.update_auto_scaling_group(AutoScalingGroupName="pool", MaxSize=2)  # desired follows max
    assert fake.state()["asgs"]["pool"]["desired"] == 2
    with pytest.raises(ClientError) as e:
        a.update_auto_scaling_group(AutoScalingGroupName="pool", DesiredCapacity=7)
    assert err_code(e) == "ValidationError" and "must be between" in str(e.value)
    with pytest.raises(ClientError) as e:
        a.update_auto_scaling_group(AutoScalingGroupName="pool", MinSize=5)
    assert err_code(e) == "ValidationError"


def test_terminate_instance_in_group(fake):
    fake.set_asg("pool", 1, 5, desired=3, instances=3)
    ids = [i["id"] for i in fake.instances("pool")]
    a = client(fake, "autoscaling")
    out = a.terminate_instance_in_auto_scaling_group(InstanceId=ids[0],
                                                     ShouldDecrementDesiredCapacity=True)
    act = out["Activity"]
    assert act["StatusCode"] == "InProgress" and act["AutoScalingGroupName"] == "pool"
    assert act["Description"] == f"Terminating EC2 instance: {ids[0]}"
    assert "shrinking the capacity from 3 to 2" in act["Cause"]
    assert json.loads(act["Details"])["Availability Zone"].startswith("us-east-1")
    g = a.describe_auto_scaling_groups(AutoScalingGroupNames=["pool"])["AutoScalingGroups"][0]
    assert g["DesiredCapacity"] == 2
    assert {i["InstanceId"]: i["LifecycleState"] for i in g["Instances"]}[ids[0]] == "Terminating"
    # Gone (or going) instances are "not found": the answer a retried call gets.
    with pytest.raises(ClientError) as e:
        a.terminate_instance_in_auto_scaling_group(InstanceId=ids[0],
                                                   ShouldDecrementDesiredCapacity=True)
    assert err_code(e) == "ValidationError"
    assert e.value.response["Error"]["Message"] == (
        f"Instance Id not found - No managed instance found for instance ID {ids[0]}")
    with pytest.raises(ClientError) as e:
        a.terminate_instance_in_auto_scaling_group(InstanceId="i-0deadbeefdeadbeef",
                                                   ShouldDecrementDesiredCapacity=False)
    assert "Instance Id not found" in str(e.value)
    a.terminate_instance_in_auto_scaling_group(InstanceId=ids[1],
                                               ShouldDecrementDesiredCapacity=True)
    # desired (1) == min (1): decrementing is refused, terminating with replacement is not.
    with pytest.raises(ClientError) as e:
        a.terminate_instance_in_auto_scaling_group(InstanceId=ids[2],
                                                   ShouldDecrementDesiredCapacity=True)
    assert err_code(e) == "ValidationError"
    assert "desiredSize equals minSize (1)" in str(e.value)
    out = a.terminate_instance_in_auto_scaling_group(InstanceId=ids[2],
                                                     ShouldDecrementDesiredCapacity=False)
    assert "shrinking" not in out["Activity"]["Cause"]
    s = fake.tick()
    insts = s["asgs"]["pool"]["instances"]
    assert s["asgs"]["pool"]["desired"] == 1
    assert {i["id"] for i in s["terminated"]} == set(ids)
    assert [i["terminated_by_api"] for i in s["terminated"]] == [True] * 3
    assert [i["state"] for i in insts] == ["Pending"]  # the replacement for ids[2]
    assert insts[0]["id"] not in ids


def test_instance_model_scaling_and_protection(fake):
    fake.set_asg("pool", 0, 10, desired=0)
    a = client(fake, "autoscaling")
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=3)
    assert fake.instances("pool") == []  # nothing happens between ticks
    s = fake.tick()
    assert [i["state"] for i in s["asgs"]["pool"]["instances"]] == ["Pending"] * 3
    s = fake.tick()
    insts = s["asgs"]["pool"]["instances"]
    assert [i["state"] for i in insts] == ["InService"] * 3
    ids = [i["id"] for i in insts]
    assert len(set(ids)) == 3 and all(len(i) <= 19 for i in ids)
    a.set_instance_protection(InstanceIds=[ids[0]], AutoScalingGroupName="pool",
                              ProtectedFromScaleIn=True)
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=0)
    s = fake.tick()
    states = {i["id"]: (i["state"], i["cause"]) for i in s["asgs"]["pool"]["instances"]}
    assert states[ids[0]] == ("InService", None)  # protected: never chosen for scale-in
    assert states[ids[1]] == states[ids[2]] == ("Terminating", "scale-in")
    s = fake.tick()
    assert [i["id"] for i in s["asgs"]["pool"]["instances"]] == [ids[0]]
    a.update_auto_scaling_group(AutoScalingGroupName="pool",
                                NewInstancesProtectedFromScaleIn=True, DesiredCapacity=2)
    s = fake.tick()
    new = [i for i in s["asgs"]["pool"]["instances"] if i["id"] != ids[0]]
    assert len(new) == 1 and new[0]["protected"] is True


def test_instance_model_failing_boots(fake):
    """fail_boot: "leave" is runnerd's exit path after a failed boot (a decrement); "pending"
    is an image that never boots (no decrement: the group replaces it). An instance of the
    list may say otherwise. No runner is ever listed for them."""
    fake.set_runner_token("circle-tok")
    fake.set_asg("pool", 0, 10, desired=2, fail_boot="leave", fail_boot_ticks=2,
                 instances=[{"id": "i-0aaaaaaaaaaaaaaa1", "state": "InService",
                             "fail_boot": None}])
    s = fake.tick()  # the healthy one is there; one more launches
    insts = s["asgs"]["pool"]["instances"]
    assert [(i["state"], i["fail_boot"]) for i in insts] == [("InService", None),
                                                             ("Pending", "leave")]
    s = fake.tick()
    assert [i["state"] for i in s["asgs"]["pool"]["instances"]] == ["InService", "InService"]
    s = fake.tick()  # two ticks old: it leaves with a decrement
    failed = s["asgs"]["pool"]["instances"][1]
    assert (failed["state"], failed["cause"]) == ("Terminating", "boot-failed")
    assert s["asgs"]["pool"]["desired"] == 1
    s = fake.tick()
    assert [i["id"] for i in s["asgs"]["pool"]["instances"]] == ["i-0aaaaaaaaaaaaaaa1"]
    assert s["terminated"][-1]["id"] == failed["id"]
    for _ in range(3):
        s = fake.tick()
    assert [i["state"] for i in s["asgs"]["pool"]["instances"]] == ["InService"]

    fake.set_asg("img", 0, 10, desired=1, fail_boot="pending", fail_boot_ticks=2)
    seen = []
    for _ in range(7):
        s = fake.tick()
        seen += [(i["id"], i["state"], i["cause"]) for i in s["asgs"]["img"]["instances"]]
    assert not [x for x in seen if x[1] == "InService"]  # never past Pending
    ended = [x for x in seen if x[1] == "Terminating"]
    assert ended and all(c == "launch-failed" for _, _, c in ended)
    assert len({i for i, _, _ in seen}) >= 3  # replaced, again and again
    assert s["asgs"]["img"]["desired"] == 1  # no decrement
    assert runner_get(fake, "/api/v3/runner?resource-class=org/rc")[1]["items"] == []


def test_query_unknown_action_and_bad_params(fake):
    status, _, raw = signed_raw(fake, "autoscaling", b"Action=LaunchRockets&Version=2011-01-01",
                                fake.akid, fake.secret)
    assert status == 400 and b"<Code>InvalidAction</Code>" in raw
    fake.set_asg("pool", 0, 5)
    status, _, raw = signed_raw(fake, "autoscaling",
                                b"Action=SetDesiredCapacity&Version=2011-01-01&"
                                b"AutoScalingGroupName=pool&DesiredCapacity=lots",
                                fake.akid, fake.secret)
    assert status == 400 and b"<Code>ValidationError</Code>" in raw
    assert b"<Type>Sender</Type>" in raw


# ---- Secrets Manager / SSM (JSON 1.1) ------------------------------------------------------

def test_secrets_manager(fake):
    fake.set_secret("cci-runner-secrets", '{"runner_token":"tok-\\"quoted\\""}')
    fake.set_secret("bin", binary=base64.b64encode(b"\x00\x01\x02\x03").decode())
    sm = client(fake, "secretsmanager")
    out = sm.get_secret_value(SecretId="cci-runner-secrets")
    assert json.loads(out["SecretString"]) == {"runner_token": 'tok-"quoted"'}
    assert out["Name"] == "cci-runner-secrets" and out["VersionStages"] == ["AWSCURRENT"]
    assert out["ARN"].startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:"
                                 "cci-runner-secrets-")
    assert out["ResponseMetadata"]["RequestId"]  # from the x-amzn-RequestId header
    assert out["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    assert sm.get_secret_value(SecretId=out["ARN"])["Name"] == "cci-runner-secrets"
    assert sm.get_secret_value(SecretId="bin")["SecretBinary"] == b"\x00\x01\x02\x03"
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId="missing")
    assert err_code(e) == "ResourceNotFoundException" and err_status(e) == 400
    assert e.value.response["Error"]["Message"] == \
        "Secrets Manager can't find the specified secret."
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId="bin", VersionStage="AWSPREVIOUS")
    assert err_code(e) == "ResourceNotFoundException"
    fake.set_secret("bin", None)
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId="bin")
    assert err_code(e) == "ResourceNotFoundException"
    assert [r["body"] for r in fake.requests() if r["op"] == "GetSecretValue"][0] == \
        {"SecretId": "cci-runner-secrets"}


def test_ssm_get_parameter(fake):
    fake.set_parameter("/runner/token", "s3cret-token")
    fake.set_parameter("/runner/token", "s3cret-token-v2")
    fake.set_parameter("plain", "hello", type="String")
    ssm = client(fake, "ssm")
    p = ssm.get_parameter(Name="/runner/token", WithDecryption=True)["Parameter"]
    assert (p["Name"], p["Type"], p["Value"], p["Version"]) == \
        ("/runner/token", "SecureString", "s3cret-token-v2", 2)
    assert p["ARN"] == "arn:aws:ssm:us-east-1:123456789012:parameter/runner/token"
    enc = ssm.get_parameter(Name="/runner/token")["Parameter"]["Value"]
    assert "s3cret" not in enc  # no decryption: ciphertext
    assert ssm.get_parameter(Name="plain")["Parameter"]["Value"] == "hello"
    assert ssm.get_parameter(Name="/runner/token:2", WithDecryption=True)["Parameter"][
        "Value"] == "s3cret-token-v2"
    with pytest.raises(ClientError) as e:
        ssm.get_parameter(Name="/runner/token:1")
    assert err_code(e) == "ParameterVersionNotFound"
    with pytest.raises(ClientError) as e:
        ssm.get_parameter(Name="/nope", WithDecryption=True)
    assert err_code(e) == "ParameterNotFound" and err_status(e) == 400
    status, hdrs, raw = signed_raw(fake, "ssm", b'{"Name":"/nope","WithDecryption":true}',
                                   fake.akid, fake.secret, target="AmazonSSM.GetParameter")
    assert status == 400 and json.loads(raw) == {"__type": "ParameterNotFound"}
    assert hdrs["content-type"] == "application/x-amz-json-1.1" and hdrs["x-amzn-requestid"]


# ---- credentials and signature verification ------------------------------------------------

def test_session_credentials_from_imds_work_everywhere(fake):
    fake.set_secret("s", "v")
    fake.set_parameter("/p", "v")
    fake.set_asg("pool", 0, 3)
    fetcher = InstanceMetadataFetcher(timeout=2, num_attempts=1,
                                      config={"ec2_metadata_service_endpoint": fake.url})
    c = fetcher.retrieve_iam_role_credentials()
    assert c["role_name"] == fake.role
    assert c["access_key"].startswith("ASIA") and len(c["access_key"]) == 20
    kw = dict(aws_access_key_id=c["access_key"], aws_secret_access_key=c["secret_key"],
              aws_session_token=c["token"])
    client(fake, "autoscaling", **kw).set_desired_capacity(AutoScalingGroupName="pool",
                                                           DesiredCapacity=1)
    assert client(fake, "secretsmanager", **kw).get_secret_value(SecretId="s")["SecretString"] \
        == "v"
    assert client(fake, "ssm", **kw).get_parameter(Name="/p", WithDecryption=True)[
        "Parameter"]["Value"] == "v"
    aws = [r for r in fake.requests() if r["service"] != "imds"]
    assert len(aws) == 3
    for r in aws:
        assert r["akid"] == c["access_key"] and r["token_used"] is True
        assert r["signature_ok"] is True and r["botocore_agrees"] is True
        assert r["caller_instance"] == fake.main_instance_id and r["status"] == 200
    # IMDS hands out the same credentials until they near expiry.
    assert fetcher.retrieve_iam_role_credentials()["access_key"] == c["access_key"]


def test_session_credentials_in_subprocess_via_env(fake):
    fake.set_secret("cci", "from-imds")
    code = ("import boto3, os\n"
            "s = boto3.session.Session()\n"
            "c = s.client('secretsmanager', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n"
            "print(c.get_secret_value(SecretId='cci')['SecretString'])\n"
            "print(s.get_credentials().method, s.get_credentials().access_key[:4])\n")
    out = subprocess.run([PYTHON, "-c", code], env=fake.env(imds=True), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["from-imds", "iam-role", "ASIA"]
    out = subprocess.run([PYTHON, "-c", code], env=fake.env(imds=False), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["from-imds", "env", "AKIA"]


def test_rejected_credentials_and_signatures(fake):
    fake.set_asg("pool", 0, 3)
    fake.set_secret("s", "v")
    bad = dict(aws_access_key_id=fake.akid, aws_secret_access_key="wrong-secret")
    with pytest.raises(ClientError) as e:
        client(fake, "autoscaling", **bad).describe_auto_scaling_groups()
    assert err_code(e) == "SignatureDoesNotMatch" and err_status(e) == 403
    with pytest.raises(ClientError) as e:
        client(fake, "secretsmanager", **bad).get_secret_value(SecretId="s")
    assert err_code(e) == "InvalidSignatureException" and err_status(e) == 400
    unknown = dict(aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x")
    with pytest.raises(ClientError) as e:
        client(fake, "autoscaling", **unknown).describe_auto_scaling_groups()
    assert err_code(e) == "InvalidClientTokenId" and err_status(e) == 403
    with pytest.raises(ClientError) as e:
        client(fake, "ssm", **unknown).get_parameter(Name="/x")
    assert err_code(e) == "UnrecognizedClientException"

    # A signature tampered with after signing.
    a = client(fake, "autoscaling")

    def tamper(request, **_):
        auth = request.headers["Authorization"]
        auth = auth.decode() if isinstance(auth, bytes) else auth
        request.headers["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")

    a.meta.events.register("before-send.auto-scaling.SetDesiredCapacity", tamper)
    with pytest.raises(ClientError) as e:
        a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=1)
    assert err_code(e) == "SignatureDoesNotMatch"
    assert fake.state()["asgs"]["pool"]["desired"] == 0

    # Session credentials: without their token, with a wrong one, unsigned, expired.
    fetcher = InstanceMetadataFetcher(timeout=2, num_attempts=1,
                                      config={"ec2_metadata_service_endpoint": fake.url})
    c = fetcher.retrieve_iam_role_credentials()
    no_token = dict(aws_access_key_id=c["access_key"], aws_secret_access_key=c["secret_key"])
    with pytest.raises(ClientError) as e:
        client(fake, "autoscaling", **no_token).describe_auto_scaling_groups()
    assert err_code(e) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as e:
        client(fake, "secretsmanager", **no_token).get_secret_value(SecretId="s")
    assert err_code(e) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as e:
        client(fake, "ssm", aws_session_token=c["token"] + "x", **no_token).get_parameter(Name="/x")
    assert err_code(e) == "UnrecognizedClientException"
    body = b"Action=DescribeAutoScalingGroups&Version=2011-01-01"
    status, _, raw = signed_raw(fake, "autoscaling", body, c["access_key"], c["secret_key"],
                                token=c["token"], sign_token=False)
    assert status == 400 and b"<Code>IncompleteSignature</Code>" in raw
    status, _, raw = signed_raw(fake, "autoscaling", body, c["access_key"], c["secret_key"],
                                token=c["token"])
    assert status == 200
    fake.advance_clock(7 * 3600)
    status, _, raw = signed_raw(fake, "autoscaling", body, c["access_key"], c["secret_key"],
                                token=c["token"])
    assert status == 403 and b"<Code>ExpiredToken</Code>" in raw
    c2 = fetcher.retrieve_iam_role_credentials()  # IMDS rotates expired credentials
    assert c2["access_key"] != c["access_key"]
    status, _, _ = signed_raw(fake, "autoscaling", body, c2["access_key"], c2["secret_key"],
                              token=c2["token"])
    assert status == 200

    log = [r for r in fake.requests() if r["service"] == "autoscaling"]
    assert [r["signature_ok"] for r in log].count(True) == 2
    assert {r["auth_error"] for r in log if not r["signature_ok"]} >= {
        "mismatch", "unknown_key", "incomplete", "expired_token"}


def test_signature_scope_date_and_missing_auth(fake):
    body = b"Action=DescribeAutoScalingGroups&Version=2011-01-01"
    status, _, raw = signed_raw(fake, "autoscaling", body, fake.akid, fake.secret, scope="ssm")
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in raw
    assert b"Credential should be scoped to correct service: &apos;autoscaling&apos;" in raw
    stale = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 900))
    status, _, raw = signed_raw(fake, "autoscaling", body, fake.akid, fake.secret, amzdate=stale)
    assert status == 403 and b"Signature expired" in raw
    future = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + 900))
    status, _, raw = signed_raw(fake, "secretsmanager", b"{}", fake.akid, fake.secret,
                                amzdate=future, target="secretsmanager.GetSecretValue")
    assert status == 400 and json.loads(raw)["__type"] == "InvalidSignatureException"
    assert "not yet current" in json.loads(raw)["message"]
    status, _, raw = http_req(fake, "POST", "/", {"Content-Type":
                                                  "application/x-www-form-urlencoded"}, body)
    assert status == 403 and b"<Code>MissingAuthenticationToken</Code>" in raw
    status, _, raw = http_req(fake, "POST", "/", {"X-Amz-Target": "AmazonSSM.GetParameter",
                                                  "Authorization": "AWS4-HMAC-SHA256 nonsense"},
                              b"{}")
    assert status == 400 and json.loads(raw)["__type"] == "IncompleteSignatureException"
    # Registered static credentials with a token must present it.
    fake.credentials("AKIASTATICWITHTOKEN0", "static-secret", token="static-token")
    status, _, _ = signed_raw(fake, "autoscaling", body, "AKIASTATICWITHTOKEN0", "static-secret",
                              token="static-token")
    assert status == 200
    status, _, raw = signed_raw(fake, "autoscaling", body, "AKIASTATICWITHTOKEN0",
                                "static-secret")
    assert status == 403 and b"InvalidClientTokenId" in raw


def test_request_body_cap(fake):
    with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    status, _, _ = http_req(fake, "POST", "/_fake/jobs", {"Content-Length": "abc"})
    assert status == 400


# ---- aws CLI -------------------------------------------------------------------------------

def test_aws_cli_parses_responses(fake):
    fake.set_asg("cli-asg", 0, 4, desired=1, instances=1, tags={"team": "ci & cd"})
    fake.set_secret("cli/secret", '{"runner_token":"abc"}')
    fake.set_parameter("/cli/token", "param-value")
    base = ["/usr/bin/aws", "--endpoint-url", fake.url, "--output", "json"]
    role_env = fake.env(imds=True)
    # awscli 2.9 vendors an older botocore that appends "latest/api/token" to the endpoint
    # without a separator; botocore 1.29 and runnerd take the bare URL.
    role_env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = fake.url + "/"
    runs = {
        "asg": (fake.env(imds=False), ["autoscaling", "describe-auto-scaling-groups"]),
        "sm": (fake.env(imds=False), ["secretsmanager", "get-secret-value",
                                      "--secret-id", "cli/secret"]),
        "ssm": (fake.env(imds=False), ["ssm", "get-parameter", "--name", "/cli/token",
                                       "--with-decryption"]),
        "missing": (fake.env(imds=False), ["secretsmanager", "get-secret-value",
                                           "--secret-id", "nope"]),
        "imds-role": (role_env, ["autoscaling", "describe-auto-scaling-groups",
                                            "--auto-scaling-group-names", "cli-asg"]),
    }
    procs = {k: subprocess.Popen(base + argv, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
             for k, (env, argv) in runs.items()}
    res = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=60)
        res[k] = (p.returncode, out, err)
    for k in ("asg", "sm", "ssm", "imds-role"):
        assert res[k][0] == 0, (k, res[k][2])
    g = json.loads(res["asg"][1])["AutoScalingGroups"][0]
    assert g["AutoScalingGroupName"] == "cli-asg" and g["DesiredCapacity"] == 1
    assert g["Tags"][0]["Value"] == "ci & cd"
    assert len(g["Instances"]) == 1
    assert json.loads(json.loads(res["sm"][1])["SecretString"]) == {"runner_token": "abc"}
    assert json.loads(res["ssm"][1])["Parameter"]["Value"] == "param-value"
    assert res["missing"][0] == 254 and "ResourceNotFoundException" in res["missing"][2]
    assert json.loads(res["imds-role"][1])["AutoScalingGroups"][0]["AutoScalingGroupName"] == \
        "cli-asg"
    aws = [r for r in fake.requests() if r["service"] in ("autoscaling", "secretsmanager", "ssm")]
    assert all(r["signature_ok"] for r in aws) and len(aws) == 5
    assert sorted(r["akid"][:4] for r in aws) == ["AKIA"] * 4 + ["ASIA"]


# ---- fault injection -----------------------------------------------------------------------

def test_fault_throttling_xml_then_retry(fake):
    fake.set_asg("pool", 0, 5)
    fid = fake.fault("autoscaling:SetDesiredCapacity", code="Throttling", times=1)
    a = client(fake, "autoscaling",
               config=Config(retries={"total_max_attempts": 3, "mode": "standard"}))
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=2)  # retried once
    calls = [r for r in fake.requests() if r["op"] == "SetDesiredCapacity"]
    assert [(r["status"], r.get("fault")) for r in calls] == [(400, fid), (200, None)]
    fake.fault("autoscaling:*", code="Throttling", message="Rate exceeded")
    with pytest.raises(ClientError) as e:
        client(fake, "autoscaling").describe_auto_scaling_groups()
    assert err_code(e) == "Throttling" and err_status(e) == 400
    assert e.value.response["Error"]["Message"] == "Rate exceeded"
    fake.clear_faults()
    client(fake, "autoscaling").describe_auto_scaling_groups()


def test_fault_json_and_5xx(fake):
    fake.set_secret("s", "v")
    fake.set_parameter("/p", "v")
    fake.fault("secretsmanager:GetSecretValue", status=400, code="ThrottlingException", times=1)
    with pytest.raises(ClientError) as e:
        client(fake, "secretsmanager").get_secret_value(SecretId="s")
    assert err_code(e) == "ThrottlingException"
    assert client(fake, "secretsmanager").get_secret_value(SecretId="s")["SecretString"] == "v"
    fake.fault("ssm:GetParameter", status=500, times=1)
    with pytest.raises(ClientError) as e:
        client(fake, "ssm").get_parameter(Name="/p")
    assert err_code(e) == "InternalFailure" and err_status(e) == 500
    fake.fault("ssm:GetParameter", status=503, body="<html>gateway</html>",
               content_type="text/html", times=1)
    status, hdrs, raw = signed_raw(fake, "ssm", b'{"Name":"/p"}', fake.akid, fake.secret,
                                   target="AmazonSSM.GetParameter")
    assert (status, hdrs["content-type"], raw) == (503, "text/html", b"<html>gateway</html>")


def test_fault_runner_429_delay_slow_oversize_close(fake):
    fake.set_runner_token("circle-tok")
    hdr = {"Circle-Token": "circle-tok"}
    path = "/api/v3/runner/tasks?resource-class=org/rc"
    fake.fault("runner:tasks", status=429, retry_after=7, times=1)
    status, hdrs, raw = http_req(fake, "GET", path, hdr)
    assert status == 429 and hdrs["retry-after"] == "7" and "message" in json.loads(raw)

    fake.fault("runner:tasks", delay_s=0.3, times=1)
    t0 = time.monotonic()
    status, _, raw = http_req(fake, "GET", path, hdr)
    assert time.monotonic() - t0 >= 0.3
    assert status == 200 and json.loads(raw) == {"unclaimed_task_count": 0}

    fake.fault("runner:tasks", slow_bps=200, oversize_bytes=100, times=1)
    t0 = time.monotonic()
    status, hdrs, raw = http_req(fake, "GET", path, hdr)
    assert time.monotonic() - t0 >= 0.4  # 100 bytes at 200 B/s
    assert len(raw) == 100 and json.loads(raw) == {"unclaimed_task_count": 0}

    fake.fault("runner:running", oversize_bytes=2 << 20, times=1)
    status, hdrs, raw = http_req(fake, "GET", "/api/v3/runner/tasks/running?resource-class=o/r",
                                 hdr)
    assert status == 200 and int(hdrs["content-length"]) == len(raw) == 2 << 20

    fake.fault("runner:list", close=True, times=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        http_req(fake, "GET", "/api/v3/runner?resource-class=o/r", hdr)
    status, _, _ = http_req(fake, "GET", "/api/v3/runner?resource-class=o/r", hdr)
    assert status == 200

    fake.fault("runner:tasks", status=200, body="{not json", times=1)
    assert http_req(fake, "GET", path, hdr)[2] == b"{not json"

    fake.fault("runner:*", status=500, message="boom")
    status, _, raw = http_req(fake, "GET", path, hdr)
    assert status == 500 and json.loads(raw) == {"message": "boom"}


def test_fault_oversize_aws_body_still_parses(fake):
    fake.set_secret("s", "v")
    fake.fault("secretsmanager:GetSecretValue", oversize_bytes=2 << 20, times=1)
    out = client(fake, "secretsmanager").get_secret_value(SecretId="s")
    assert out["SecretString"] == "v"
    assert int(out["ResponseMetadata"]["HTTPHeaders"]["content-length"]) == 2 << 20


def test_fault_imds(fake):
    tok = imds_token(fake)
    fake.fault("imds:meta-data/instance-id", status=500, times=1)
    assert imds_get(fake, "meta-data/instance-id", tok)[0] == 500
    assert imds_get(fake, "meta-data/instance-id", tok)[2].decode() == fake.main_instance_id
    fake.fault("imds:credentials", status=404)
    fetcher = InstanceMetadataFetcher(timeout=2, num_attempts=1,
                                      config={"ec2_metadata_service_endpoint": fake.url})
    assert fetcher.retrieve_iam_role_credentials() == {}
    fake.clear_faults()
    fake.fault("imds:token", status=503, times=1)
    status, _, _ = http_req(fake, "PUT", "/latest/api/token",
                            {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 503
    assert imds_token(fake)


# ---- IMDSv2 --------------------------------------------------------------------------------

def test_imds_token_semantics(fake):
    for bad in ("0", "21601", "abc", "-5", ""):
        status, _, _ = http_req(fake, "PUT", "/latest/api/token",
                                {"X-aws-ec2-metadata-token-ttl-seconds": bad})
        assert status == 400, bad
    assert http_req(fake, "PUT", "/latest/api/token")[0] == 400
    assert http_req(fake, "PUT", "/latest/api/token",
                    {"X-aws-ec2-metadata-token-ttl-seconds": "60",
                     "X-Forwarded-For": "10.0.0.1"})[0] == 403
    assert http_req(fake, "GET", "/latest/api/token")[0] == 405
    assert imds_get(fake, "meta-data/instance-id", None)[0] == 401
    assert imds_get(fake, "meta-data/instance-id", "bogus")[0] == 401
    tok = imds_token(fake, ttl="21600")
    status, hdrs, body = imds_get(fake, "meta-data/instance-id", tok)
    assert status == 200 and body.decode() == fake.main_instance_id
    short = imds_token(fake, ttl="5")
    assert imds_get(fake, "meta-data/instance-id", short)[0] == 200
    fake.advance_clock(6)
    assert imds_get(fake, "meta-data/instance-id", short)[0] == 401  # expired by its TTL
    assert imds_get(fake, "meta-data/instance-id", tok)[0] == 200
    status, hdrs, body = imds_get(fake, "meta-data/nothing-here", tok)
    assert status == 404 and hdrs["content-type"] == "text/html"


def test_imds_items(fake):
    tok = imds_token(fake)
    assert imds_get(fake, "meta-data/placement/region", tok)[2] == b"us-east-1"
    assert imds_get(fake, "meta-data/placement/availability-zone", tok)[2] == b"us-east-1a"
    for item in ("meta-data/autoscaling/target-lifecycle-state", "meta-data/spot/instance-action",
                 "meta-data/events/recommendations/rebalance", "user-data"):
        assert imds_get(fake, item, tok)[0] == 404, item
    fake.set_imds(instance_id="i-0abcdef0123456789", region="eu-west-1",
                  target_lifecycle_state="Warmed:Stopped",
                  spot_action={"action": "terminate", "time": "2017-09-18T08:22:00Z"},
                  rebalance={"noticeTime": "2020-10-27T08:22:00Z"}, user_data="#!/bin/sh\n")
    assert imds_get(fake, "meta-data/instance-id", tok)[2] == b"i-0abcdef0123456789"
    assert imds_get(fake, "meta-data/placement/region", tok)[2] == b"eu-west-1"
    assert imds_get(fake, "meta-data/placement/availability-zone", tok)[2] == b"eu-west-1a"
    assert imds_get(fake, "meta-data/autoscaling/target-lifecycle-state", tok)[2] == \
        b"Warmed:Stopped"
    assert json.loads(imds_get(fake, "meta-data/spot/instance-action", tok)[2]) == \
        {"action": "terminate", "time": "2017-09-18T08:22:00Z"}
    assert json.loads(imds_get(fake, "meta-data/events/recommendations/rebalance", tok)[2]) == \
        {"noticeTime": "2020-10-27T08:22:00Z"}
    assert imds_get(fake, "user-data", tok)[2] == b"#!/bin/sh\n"
    fake.set_imds(spot_action=None, target_lifecycle_state=None)
    assert imds_get(fake, "meta-data/spot/instance-action", tok)[0] == 404
    assert imds_get(fake, "meta-data/autoscaling/target-lifecycle-state", tok)[0] == 404
    assert imds_get(fake, "meta-data/iam/security-credentials/", tok)[2].decode() == fake.role
    status, _, raw = imds_get(fake, "meta-data/iam/security-credentials/" + fake.role, tok)
    creds = json.loads(raw)
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert creds["AccessKeyId"].startswith("ASIA") and creds["Token"]
    exp = time.mktime(time.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 5.5 * 3600 < exp - time.time() < 6.5 * 3600
    assert imds_get(fake, "meta-data/iam/security-credentials/other-role", tok)[0] == 404
    fake.set_imds(role=None)
    assert imds_get(fake, "meta-data/iam/security-credentials/", tok)[0] == 404


# ---- CircleCI Runner API -------------------------------------------------------------------

def runner_get(fake, path, token="circle-tok"):
    status, _, raw = http_req(fake, "GET", path, {"Circle-Token": token} if token else {})
    return status, json.loads(raw) if raw else None


def test_runner_api_auth_and_validation(fake):
    fake.set_runner_token("circle-tok")
    for token in (None, "wrong"):
        status, body = runner_get(fake, "/api/v3/runner/tasks?resource-class=org/rc", token)
        assert status == 401 and isinstance(body["message"], str)
    basic = base64.b64encode(b"circle-tok:").decode()
    status, _, raw = http_req(fake, "GET", "/api/v3/runner/tasks?resource-class=org/rc",
                              {"Authorization": "Basic " + basic})
    assert status == 200 and json.loads(raw) == {"unclaimed_task_count": 0}
    assert runner_get(fake, "/api/v3/runner/tasks")[0] == 400
    assert runner_get(fake, "/api/v3/runner/tasks/running")[0] == 400
    assert runner_get(fake, "/api/v3/runner")[0] == 400
    assert runner_get(fake, "/api/v3/runner/nope?resource-class=a/b")[0] == 404


def test_runner_counts_move_with_jobs(fake):
    fake.set_runner_token("circle-tok")
    fake.set_runner_token("limited", resource_classes=["org/other"])
    fake.set_agent_token("rc-tok", "org/linux")
    rc = "resource-class=org/linux"

    def counts(token="circle-tok"):
        return (runner_get(fake, f"/api/v3/runner/tasks?{rc}", token)[1]["unclaimed_task_count"],
                runner_get(fake, f"/api/v3/runner/tasks/running?{rc}", token)[1][
                    "running_runner_tasks"])

    assert counts() == (0, 0)
    assert fake.claim("org/linux", "r1", "rc-tok") == (204, None)
    jobs = fake.add_jobs("org/linux", count=3, duration_s=2)
    fake.add_jobs("org/other", count=1)
    assert len(jobs) == 3 and counts() == (3, 0)
    assert counts("limited") == (0, 0)  # a token limited to other classes sees nothing here
    status, body = fake.claim("org/linux", "r1", "bad-token")
    assert status == 401
    status, body = fake.claim("org/other", "r1", "rc-tok")  # token of another class
    assert status == 401
    status, body = fake.claim("org/linux", "runner-a", "rc-tok")
    assert status == 200 and body == {"job_id": jobs[0], "duration_s": 2}
    assert counts() == (2, 1)
    fake.claim("org/linux", "runner-b", "rc-tok")
    assert counts() == (1, 2)
    fake.complete(jobs[0], 0)
    assert counts() == (1, 1)
    assert fake.call("POST", "agent/complete", {"job_id": jobs[0], "exit_code": 0})[0] == 409
    assert fake.call("POST", "agent/complete", {"job_id": "job-999", "exit_code": 0})[0] == 404
    items = runner_get(fake, f"/api/v3/runner?{rc}")[1]["items"]
    assert sorted(i["name"] for i in items) == ["r1", "runner-a", "runner-b"]
    for i in items:
        assert set(i) >= {"resource_class", "hostname", "name", "first_connected",
                          "last_connected", "last_used", "version"}
        assert i["resource_class"] == "org/linux"
        assert time.strptime(i["first_connected"], "%Y-%m-%dT%H:%M:%SZ")
    assert len(runner_get(fake, "/api/v3/runner?namespace=org")[1]["items"]) == 3
    assert runner_get(fake, "/api/v3/runner?namespace=elsewhere")[1]["items"] == []
    jobs_state = fake.state()["jobs"]["org/linux"]
    assert [j["id"] for j in jobs_state["done"]] == [jobs[0]]
    assert jobs_state["done"][0]["completed_at"] >= jobs_state["done"][0]["claimed_at"] \
        >= jobs_state["done"][0]["created"]
    assert [j["runner_name"] for j in jobs_state["running"]] == ["runner-b"]
    assert len(jobs_state["queued"]) == 1


# ---- control API validation ----------------------------------------------------------------

BAD_CONTROL = [
    ("asg", {"name": "x", "min": 2, "max": 1}),
    ("asg", {"name": "x", "min": 0, "max": 5, "desired": 6}),
    ("asg", {"name": "x", "min": 0}),
    ("asg", {"name": "x", "min": "0", "max": 1}),
    ("asg", {"name": "x", "min": True, "max": 1}),
    ("asg", {"name": "x", "min": 0, "max": 1, "launch_command": "sh -c x"}),
    ("asg", {"name": "x", "min": 0, "max": 1, "launch_command": ["a\x00b"]}),
    ("asg", {"name": "x", "min": 0, "max": 1, "instances": [{"id": "not-an-id"}]}),
    ("asg", {"name": "x", "min": 0, "max": 1, "region": "mars"}),
    ("asg", {"name": "x", "min": 0, "max": 100000}),
    ("asg", {"name": "x", "min": 0, "max": 20001, "instances": 20001}),
    ("asg", {"name": "x", "min": 0, "max": 201, "launch_command": ["true"]}),
    ("asg", {"name": "x", "min": 0, "max": 5, "instance_type": "not a type"}),
    ("asg", {"name": "x", "min": 0, "max": 1, "surprise": 1}),
    ("asg", {"name": "x", "min": 0, "max": 1, "fail_boot": "sometimes"}),
    ("asg", {"name": "x", "min": 0, "max": 1, "fail_boot": "leave", "fail_boot_ticks": 0}),
    ("asg", {"name": "x", "min": 0, "max": 1, "fail_boot": "leave",
             "launch_command": ["true"]}),
    ("asg", []),
    ("imds", {"target_lifecycle_state": "Flying"}),
    ("imds", {"spot_action": {"action": "explode"}}),
    ("imds", {"for_instance": "i-0ffffffffffffffff"}),
    ("fault", {"status": 500}),
    ("fault", {"match": "*", "delay_s": -1}),
    ("fault", {"match": "*", "oversize_bytes": 1 << 40}),
    ("fault", {"match": "*", "retry_after": "7\r\nX-Evil: 1"}),
    ("jobs", {"resource_class": "no-slash", "count": 1}),
    ("jobs", {"resource_class": "org/rc", "count": 0}),
    ("secret", {"id": "s"}),
    ("secret", {"id": "s", "binary": "***"}),
    ("parameter", {"name": "/p", "value": "v", "type": "Blob"}),
    ("credentials", {"akid": "lower", "secret": "s"}),
    ("tick", {"n": 0}),
    ("clock", {"advance_s": -1}),
]


@pytest.mark.parametrize("path,body", BAD_CONTROL,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_CONTROL)])
def test_control_rejects_bad_input(fake, path, body):
    status, out = fake.call("POST", path, body)
    assert status == 400 and out["error"]


def test_control_misc(fake):
    assert fake.call("POST", "asg", None)[0] == 400  # empty body is {}: name missing
    status, _, raw = http_req(fake, "POST", "/_fake/asg", {}, b"{not json")
    assert status == 400 and b"not JSON" in raw
    assert fake.call("GET", "nowhere")[0] == 404
    assert fake.call("GET", "requests?since=abc")[0] == 400
    fake.set_asg("pool", 0, 3, desired=1, instances=1)
    fake.fault("*", status=500)
    fake.reset()
    s = fake.state()
    assert s["asgs"] == {} and s["faults"] == [] and s["jobs"] == {}
    client(fake, "autoscaling").describe_auto_scaling_groups()  # default keys survive reset
    # Long-poll: a state change wakes a waiter.
    g = fake.state()["generation"]
    fake.set_parameter("/x", "y")
    assert fake.state(wait=g, timeout=5)["generation"] > g


def test_note_side_door(fake):
    """POST /_fake/note: what the e2e guest's agent reports; bounded, replaced per key, reset."""
    g = fake.state()["generation"]
    assert fake.call("POST", "note", {"key": "agent", "value": {"phase": "running"}})[0] == 200
    assert fake.call("POST", "note", {"key": "agent", "value": [1, "two"]})[0] == 200
    assert fake.call("POST", "note", {"key": "other:1", "value": None})[0] == 200
    s = fake.state(wait=g, timeout=5)
    assert s["notes"] == {"agent": [1, "two"], "other:1": None}
    for bad in ({"key": "agent"}, {"value": 1}, {"key": "", "value": 1},
                {"key": "a b", "value": 1}, {"key": "k" * 129, "value": 1},
                {"key": "k", "value": "x" * 70000}, {"key": "k", "value": 1, "more": 2}):
        status, out = fake.call("POST", "note", bad)
        assert status == 400 and out["error"], bad
    for i in range(98):
        assert fake.call("POST", "note", {"key": f"n{i}", "value": i})[0] == 200
    assert fake.call("POST", "note", {"key": "one-too-many", "value": 1})[0] == 400
    assert fake.call("POST", "note", {"key": "agent", "value": 2})[0] == 200  # replace: fine
    fake.reset()
    assert fake.state()["notes"] == {}


# ---- launch hook ---------------------------------------------------------------------------

def probe_cmd(outdir, mode):
    return [PYTHON, str(INSTANCE_PROBE), str(outdir), mode]


def read_report(outdir, iid):
    return json.loads((outdir / f"{iid}.json").read_text())


def test_launch_hook_exit_without_leaving_gets_replaced(fake, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    fake.set_asg("pool", 0, 3, desired=2, launch_command=probe_cmd(out, "exit"))
    s = fake.tick()
    first = s["asgs"]["pool"]["instances"]
    assert len(first) == 2 and all(i["state"] == "Pending" and i["pid"] for i in first)
    ids = [i["id"] for i in first]
    ports = {i["id"]: i["imds_port"] for i in first}
    assert len(set(ports.values())) == 2 and fake.port not in ports.values()

    def stopped(s):
        insts = {i["id"]: i for i in s["asgs"]["pool"]["instances"]}
        return all(insts[i]["stopped"] for i in ids) and insts

    insts = fake.wait_until(stopped, what="both probes to exit")
    for iid in ids:
        rep = read_report(out, iid)
        assert "error" not in rep, rep
        assert rep["imds_instance_id"] == rep["env_instance_id"] == iid
        assert rep["imds_endpoint"] == f"http://127.0.0.1:{ports[iid]}"
        assert rep["region"] == "us-east-1" and rep["target_lifecycle_state"] == "InService"
        assert insts[iid]["exit_code"] == 0 and insts[iid]["health"] == "Unhealthy"
        assert not insts[iid]["terminated_by_api"]
    # The IMDS requests were served by each instance's own listener.
    served = {r["listener"] for r in fake.requests() if r["op"] == "meta-data/instance-id"}
    assert served == set(ids)
    s = fake.tick()  # like EC2 health checks: unhealthy -> terminated and replaced
    insts = s["asgs"]["pool"]["instances"]
    assert s["asgs"]["pool"]["desired"] == 2
    assert {i["id"]: (i["state"], i["cause"]) for i in insts if i["id"] in ids} == \
        {iid: ("Terminating", "unhealthy") for iid in ids}
    new = [i for i in insts if i["id"] not in ids]
    assert len(new) == 2 and all(i["state"] == "Pending" for i in new)
    client(fake, "autoscaling").set_desired_capacity(AutoScalingGroupName="pool",
                                                     DesiredCapacity=0)


def test_launch_hook_leave_decrements_and_is_not_replaced(fake, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    fake.set_asg("pool", 0, 3, desired=2, launch_command=probe_cmd(out, "leave"))
    ids = [i["id"] for i in fake.tick()["asgs"]["pool"]["instances"]]

    def stopped(s):
        insts = {i["id"]: i for i in s["asgs"]["pool"]["instances"]}
        return all(insts[i]["stopped"] for i in ids) and s

    s = fake.wait_until(stopped, what="both probes to leave and exit")
    for iid in ids:
        rep = read_report(out, iid)
        assert "error" not in rep, rep
        assert rep["terminate_status"] == "InProgress" and rep["access_key_prefix"] == "ASIA"
    g = s["asgs"]["pool"]
    assert g["desired"] == 0
    assert all(i["state"] == "Terminating" and i["terminated_by_api"] and i["health"] == "Healthy"
               and i["exit_code"] == 0 for i in g["instances"])
    s = fake.tick(2)
    assert s["asgs"]["pool"]["instances"] == []  # gone, and nothing launched to replace them
    assert {i["id"] for i in s["terminated"]} == set(ids)
    calls = [r for r in fake.requests() if r["op"] == "TerminateInstanceInAutoScalingGroup"]
    assert sorted(r["caller_instance"] for r in calls) == sorted(ids)
    for r in calls:
        assert r["akid"].startswith("ASIA") and r["token_used"] and r["signature_ok"]
        assert r["botocore_agrees"] is True and r["status"] == 200
        assert r["params"]["InstanceId"] == r["caller_instance"]


def test_launch_hook_scale_in_sends_sigterm_to_unprotected(fake, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    fake.set_asg("pool", 0, 3, desired=2, launch_command=probe_cmd(out, "wait"))
    fake.tick()
    s = fake.tick()
    insts = s["asgs"]["pool"]["instances"]
    assert [i["state"] for i in insts] == ["InService", "InService"]
    ids = [i["id"] for i in insts]
    # Once a probe has asked its IMDS for the instance id it has SIGTERM blocked (see probe).
    fake.wait_until(lambda s: {r["listener"] for r in fake.requests()
                               if r["op"] == "meta-data/instance-id"} >= set(ids),
                    what="probes to reach their IMDS")
    fake.set_imds(for_instance=ids[1], spot_action={"action": "stop"})
    tok = imds_token(fake, port=insts[1]["imds_port"])
    status, _, raw = imds_get(fake, "meta-data/spot/instance-action", tok,
                              port=insts[1]["imds_port"])
    assert status == 200 and json.loads(raw)["action"] == "stop"
    assert imds_get(fake, "meta-data/spot/instance-action", imds_token(fake))[0] == 404
    assert imds_get(fake, "meta-data/instance-id", tok)[0] == 401  # tokens are per instance
    a = client(fake, "autoscaling")
    a.set_instance_protection(InstanceIds=[ids[1]], AutoScalingGroupName="pool",
                              ProtectedFromScaleIn=True)
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=0)
    s = fake.tick()
    states = {i["id"]: i for i in s["asgs"]["pool"]["instances"]}
    assert states[ids[0]]["state"] == "Terminating"
    assert states[ids[0]]["target_lifecycle_state"] == "Terminated"
    assert states[ids[1]]["state"] == "InService"
    fake.tick()  # Terminated: the process gets SIGTERM

    def gone(s):
        done = {i["id"]: i for i in s["terminated"]}
        return ids[0] in done and done[ids[0]]["stopped"] and done[ids[0]]

    inst = fake.wait_until(gone, what="the scaled-in probe to exit")
    assert inst["exit_code"] == 0
    assert read_report(out, ids[0])["signal"] == "SIGTERM"
    s = fake.state()
    assert [(i["id"], i["stopped"]) for i in s["asgs"]["pool"]["instances"]] == [(ids[1], False)]


def test_launch_command_that_cannot_start(fake):
    fake.set_asg("pool", 0, 2, desired=1, launch_command=["/nonexistent/binary"])
    s = fake.tick()
    inst = s["asgs"]["pool"]["instances"][0]
    assert inst["stopped"] and inst["exit_code"] == 127 and inst["health"] == "Unhealthy"


# ---- the dynalite fixture ------------------------------------------------------------------

def test_dynalite_fixture_conditional_writes(dynalite):
    name = dynalite.create_lease_table()
    c = dynalite.client()
    assert c.describe_table(TableName=name)["Table"]["KeySchema"] == \
        [{"AttributeName": "lease_id", "KeyType": "HASH"}]
    item = {"lease_id": {"S": "scaler"}, "owner": {"S": "a"}, "version": {"N": "1"}}
    c.put_item(TableName=name, Item=item, ConditionExpression="attribute_not_exists(lease_id)")
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=name, Item=item,
                   ConditionExpression="attribute_not_exists(lease_id)")
    assert err_code(e) == "ConditionalCheckFailedException"
    assert dynalite.create_lease_table() != name  # fresh names: tests do not collide
