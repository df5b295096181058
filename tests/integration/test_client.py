"""The C client layer (lib/) against the fake cloud and dynalite, through tests/tools/cloudtool.

Every AWS request the fake receives has its SigV4 signature verified (independently and with
botocore) against the credentials it issued, so a passing call proves the signature. Each
scenario runs twice: with environment credentials and with IMDS role (session) credentials."""

import subprocess
import time

import pytest

CREDS = ["env", "imds"]


def tool(build, env, *args, timeout=30):
    return subprocess.run([str(build / "tests" / "cloudtool"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def aws_requests(fake, op, since=0):
    return [r for r in fake.requests(since) if r.get("op") == op]


def assert_signed_with(fake, op, creds):
    reqs = aws_requests(fake, op)
    assert reqs, f"no {op} request reached the fake"
    for r in reqs:
        assert r["signature_ok"] is True, r
        if creds == "imds":
            assert r["akid"].startswith("ASIA"), r
            assert r["token_used"], r
        else:
            assert r["akid"] == fake.akid, r
            assert not r["token_used"], r


@pytest.mark.parametrize("creds", CREDS)
def test_credentials_source(fake, build, creds):
    out = tool(build, fake.env(imds=creds == "imds"), "creds-source")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == creds


@pytest.mark.parametrize("creds", CREDS)
def test_secret_whole_and_key(fake, build, creds):
    fake.set_secret("cci-runner-secrets", '{"runner_token": "tok-123\\"x", "other": "y"}')
    fake.set_secret("plain", "  whole-secret-value \n")
    env = fake.env(imds=creds == "imds")
    out = tool(build, env, "secret", "cci-runner-secrets", "runner_token")
    assert out.returncode == 0, out.stderr
    assert out.stdout == 'tok-123"x\n'
    out = tool(build, env, "secret", "plain")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "whole-secret-value\n"
    out = tool(build, env, "secret", "cci-runner-secrets", "missing_key")
    assert out.returncode == 2
    out = tool(build, env, "secret", "no-such-secret")
    assert out.returncode == 2
    assert "ResourceNotFoundException" in out.stderr
    assert_signed_with(fake, "GetSecretValue", creds)


@pytest.mark.parametrize("creds", CREDS)
def test_ssm_parameter(fake, build, creds):
    fake.set_parameter("/runner/token", "ssm-token-value")
    env = fake.env(imds=creds == "imds")
    out = tool(build, env, "ssm", "/runner/token")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ssm-token-value\n"
    body = aws_requests(fake, "GetParameter")[0]["body"]
    assert body["WithDecryption"] is True
    out = tool(build, env, "ssm", "/missing")
    assert out.returncode == 2 and "ParameterNotFound" in out.stderr
    assert_signed_with(fake, "GetParameter", creds)


@pytest.mark.parametrize("creds", CREDS)
def test_asg_describe_set_terminate(fake, build, creds):
    fake.set_asg("cci-runner-asg", 0, 10, 2, instances=2)
    fake.set_asg("other-asg", 1, 3, 1, instances=1)
    env = fake.env(imds=creds == "imds")
    out = tool(build, env, "describe", "cci-runner-asg", "other-asg")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "group cci-runner-asg min=0 max=10 desired=2 instances=2" in lines
    assert "group other-asg min=1 max=3 desired=1 instances=1" in lines

    out = tool(build, env, "set-desired", "cci-runner-asg", "5")
    assert out.returncode == 0, out.stderr
    assert fake.state()["asgs"]["cci-runner-asg"]["desired"] == 5
    sets = aws_requests(fake, "SetDesiredCapacity")
    assert sets[-1]["params"]["HonorCooldown"] == "false"

    victim = fake.instances("cci-runner-asg")[0]["id"]
    out = tool(build, env, "terminate", victim, "true")
    assert out.returncode == 0, out.stderr
    assert fake.state()["asgs"]["cci-runner-asg"]["desired"] == 4
    term = aws_requests(fake, "TerminateInstanceInAutoScalingGroup")
    assert len(term) == 1
    assert term[0]["params"]["ShouldDecrementDesiredCapacity"] == "true"
    assert term[0]["params"]["InstanceId"] == victim

    # Already gone: "Instance Id not found" is recognised; the call is not retried.
    out = tool(build, env, "terminate", "i-0000000000000dead", "true")
    assert out.returncode == 2 and "not-found" in out.stdout
    assert len(aws_requests(fake, "TerminateInstanceInAutoScalingGroup")) == 2

    out = tool(build, env, "update", "other-asg", "0", "4", "-1")
    assert out.returncode == 0, out.stderr
    g = fake.state()["asgs"]["other-asg"]
    assert (g["min"], g["max"], g["desired"]) == (0, 4, 1)
    for op in ("DescribeAutoScalingGroups", "SetDesiredCapacity",
               "TerminateInstanceInAutoScalingGroup", "UpdateAutoScalingGroup"):
        assert_signed_with(fake, op, creds)


def test_terminate_at_min_size_is_recognised(fake, build):
    fake.set_asg("g", 1, 3, 1, instances=1)
    iid = fake.instances("g")[0]["id"]
    out = tool(build, fake.env(imds=False), "terminate", iid, "true")
    assert out.returncode == 2
    assert "min-size" in out.stdout, out.stdout + out.stderr
    out = tool(build, fake.env(imds=False), "terminate", iid, "false")
    assert out.returncode == 0, out.stderr


def test_throttling_is_retried_then_succeeds(fake, build):
    fake.set_asg("g", 0, 5, 0)
    fake.fault("autoscaling:SetDesiredCapacity", status=400, code="Throttling",
               message="Rate exceeded", times=2)
    out = tool(build, fake.env(imds=False), "set-desired", "g", "3")
    assert out.returncode == 0, out.stderr
    assert [r["status"] for r in aws_requests(fake, "SetDesiredCapacity")] == [400, 400, 200]


def test_validation_error_is_not_retried(fake, build):
    fake.set_asg("g", 0, 5, 0)
    out = tool(build, fake.env(imds=False), "set-desired", "g", "9")
    assert out.returncode == 2 and "ValidationError" in out.stderr
    assert len(aws_requests(fake, "SetDesiredCapacity")) == 1


def test_bad_signature_is_rejected(fake, build):
    """A wrong secret must fail: the fake's verifier is live, so passing tests mean something."""
    fake.set_asg("g", 0, 5, 0)
    env = fake.env(imds=False)
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    out = tool(build, env, "describe", "g")
    assert out.returncode == 2
    assert "SignatureDoesNotMatch" in out.stderr
    assert aws_requests(fake, "DescribeAutoScalingGroups")[0]["signature_ok"] is False


@pytest.mark.parametrize("fault,word", [
    (dict(status=500, body="<html>oops</html>", content_type="text/html"), "http-500"),
    (dict(status=200, body="{not json", content_type="application/x-amz-json-1.1"), "malformed"),
    (dict(oversize_bytes=2 << 20), "too-large"),
    (dict(delay_s=5), "timeout"),
])
def test_secret_errors_are_clear(fake, build, fault, word):
    fake.set_secret("s", "v")
    fake.fault("secretsmanager:GetSecretValue", **fault)
    env = fake.env(imds=False)
    env["CLOUDTOOL_TIMEOUT_MS"] = "1000"  # per attempt; three attempts
    out = tool(build, env, "secret", "s", timeout=60)
    assert out.returncode == 2, out.stdout
    assert word in out.stderr, out.stderr
    assert "secretsmanager:GetSecretValue" in out.stderr, out.stderr


def test_imds_items(fake, build):
    env = fake.env()
    assert tool(build, env, "imds", "instance-id").stdout.strip() == fake.main_instance_id
    assert tool(build, env, "imds", "region").stdout.strip() == fake.region
    assert tool(build, env, "imds", "lifecycle").stdout.strip() == "none"
    assert tool(build, env, "imds", "spot").stdout.strip() == "none"
    fake.set_imds(target_lifecycle_state="Warmed:Stopped",
                  spot_action={"action": "terminate", "time": "2026-11-27T08:22:00Z"})
    assert tool(build, env, "imds", "lifecycle").stdout.strip() == "Warmed:Stopped"
    assert tool(build, env, "imds", "spot").stdout.strip().startswith("terminate ")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    assert tool(build, env, "imds", "instance-id").returncode == 2


def test_runner_api_counts_and_errors(fake, build):
    fake.set_runner_token("circle-api-token")
    fake.add_jobs("org/linux", count=3)
    env = fake.env()
    env["CIRCLE_TOKEN"] = "circle-api-token"
    out = tool(build, env, "runner-counts", "org/linux")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "unclaimed=3 running=0 runners=0"
    fake.fault("runner:tasks", status=429, retry_after=7, times=1)
    out = tool(build, env, "runner-counts", "org/linux")
    assert out.returncode == 2 and "http 429" in out.stderr and "retry-after 7" in out.stderr
    env["CIRCLE_TOKEN"] = "wrong-token"
    out = tool(build, env, "runner-counts", "org/linux")
    assert out.returncode == 2 and "http 401" in out.stderr
    assert "wrong-token" not in out.stderr


@pytest.mark.parametrize("creds", CREDS)
def test_dynamodb_conditional_write_wins_and_loses(fake, dynalite, build, creds):
    table = dynalite.create_lease_table()
    env = fake.env(imds=creds == "imds", dynamodb=dynalite.url)
    a = tool(build, env, "lease-acquire", table, "scaler", "owner-a", "30000")
    assert a.returncode == 0, a.stderr
    assert "owner=owner-a" in a.stdout and "version=1" in a.stdout
    b = tool(build, env, "lease-acquire", table, "scaler", "owner-b", "30000")
    assert b.returncode == 1 and b.stdout.strip() == "lost", b.stdout + b.stderr
    r = tool(build, env, "lease-renew", table, "scaler", "owner-a", "30000", "1")
    assert r.returncode == 0, r.stderr
    assert "version=2" in r.stdout
    stale = tool(build, env, "lease-renew", table, "scaler", "owner-a", "30000", "1")
    assert stale.returncode == 1, stale.stdout + stale.stderr  # fencing: old version loses
    g = tool(build, env, "lease-get", table, "scaler")
    assert "owner=owner-a" in g.stdout and "version=2" in g.stdout
    item = dynalite.client().get_item(TableName=table, Key={"lease_id": {"S": "scaler"}},
                                      ConsistentRead=True)["Item"]
    assert item["owner"]["S"] == "owner-a" and item["version"]["N"] == "2"
