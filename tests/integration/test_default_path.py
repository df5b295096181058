"""The shipped defaults are the tested path: both daemons run exactly as installed, against the
outside world at its real addresses (tests/fakes/world.py).

- The configuration is the packaged file (packaging/etc/runnerd.conf, what the .deb installs at
  /etc/runnerd/runnerd.conf) or the one the CloudFormation stack's user-data writes, rendered
  from packaging/aws/cloudformation.yaml with a deployment's parameter values.
- The environment holds PATH and LANG, nothing else: no AWS_* or CIRCLECI_* variable, no
  endpoint, no credentials, the default timeouts.
- IMDS answers at http://169.254.169.254 (and [fd00:ec2::254]); AWS and CircleCI at their real
  names over HTTPS, with certificates from a CA the test makes, which the instance's CA bundle
  (Debian's path) holds; DynamoDB is dynalite behind the fake; runnerd powers off through
  logind's PowerOff on the system bus, answered by a stand-in (tests/fakes/fake_logind.py).
- The agent is the stand-in (tests/fakes/fake_agent.py) at the packaged default binary path.

Each test that runs a daemon names what it proves in its docstring; every override the other
tests use is listed in tests/README.md with the test here (or in tests/e2e) covering its
default. Needs root (namespaces); skipped otherwise.
"""

import hashlib
import json
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MAIN_INSTANCE_ID, PYTHON, REPO
import stack
import vendor
import world as world_mod

FAKE_AGENT = REPO / "tests" / "fakes" / "fake_agent.py"
PACKAGED_RUNNERD_CONF = REPO / "packaging" / "etc" / "runnerd.conf"
RC = "default-org/linux"
TOKEN = "rt-default-path-0123456789abcdef-SECRET"
CIRCLE_TOKEN = "CCIPAT_default_path_0123456789-SECRET"
ACCOUNT = "123456789012"
OTHER_INSTANCE = "i-00000000000000002"
REGION = "us-east-1"
STACK = "runnerd"
LEASE_TABLE = "runnerd-LeaseTable-DEFAULT"
AGENT_VERSION = "3.1.4"
AGENT_EVENTS = "/var/tmp/agent-events"
AGENT_DUMP = "/var/tmp/agent-dump.json"


def secret_arn(name):
    # Secrets Manager's ARN: the name and a 6-character suffix (the fake derives it the same).
    return (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-"
            f"{hashlib.sha256(name.encode()).hexdigest()[:6]}")


def agent_wrapper(behaviour="success", notify=None):
    """The stand-in agent as an executable at the packaged default [agent] binary."""
    extra = f" --notify {notify}" if notify else ""
    return ("#!/bin/sh\n"
            f"exec {PYTHON} {FAKE_AGENT} --behaviour {behaviour} --record {AGENT_EVENTS} "
            f"--dump {AGENT_DUMP} --resource-class {RC}{extra} -- \"$@\"\n")


def installed(build):
    """The daemons at their installed paths (the build's binaries: the ASan suite runs these
    tests with its own)."""
    return {"/usr/sbin/runnerd": ((Path(build) / "runnerd").read_bytes(), 0o755),
            "/usr/bin/runnerctl": ((Path(build) / "runnerctl").read_bytes(), 0o755),
            "/usr/sbin/runner-scaler": ((Path(build) / "runner-scaler").read_bytes(), 0o755)}


def stack_values(**kw):
    # The stack's default agent URL (the release tarball, %a) unless a test says otherwise.
    v = {"AgentSha256": "0" * 64,
         "RunnerTokenSecretArn": secret_arn("cci-runner-secrets"),
         "CircleTokenSecretArn": secret_arn("cci-runner-lambda-secrets"),
         "RunnerdDebUrl": "https://runnerd-artifacts.s3.amazonaws.com/runnerd.deb",
         "RunnerdDebSha256": "1" * 64,
         "ScalerDebUrl": "https://runnerd-artifacts.s3.amazonaws.com/runner-scaler.deb",
         "ScalerDebSha256": "2" * 64, "ResourceClass": RC, "RunnerMaxSize": "10",
         "LeaseTable": LEASE_TABLE, "AWS::StackName": STACK, "AWS::Region": REGION,
         "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT}
    v.update(kw)
    return v


def stack_file(lt, path, **kw):
    cfn = stack.load_cfn()
    values = {k: p["Default"] for k, p in cfn["Parameters"].items() if "Default" in p}
    values.update(stack_values(**kw))
    return stack.written_file(stack.render_user_data(lt, values, cfn), path)


def prepare_runner_world(fake, runner_token_secret="cci-runner-secrets"):
    fake.set_secret(runner_token_secret, json.dumps({"runner_token": TOKEN}))
    fake.set_agent_token(TOKEN, RC)
    fake.add_jobs(RC, 1, duration_s=1)
    fake.set_asg(f"{STACK}-runners", min=0, max=5, desired=2,
                 instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                            {"id": OTHER_INSTANCE, "state": "InService"}])
    # A cold launch into the group: Auto Scaling sets the target state (the stack's runners
    # have launch_hook, and a 404 is "not yet" to them).
    fake.set_imds(target_lifecycle_state="InService")


def stack_launch_hook(fake):
    """The stack's runner group as it launches: its LAUNCHING hook (as the template defines it)
    on the fake's group, and the instance launched under it, in Pending:Wait. Returns the
    hook's name."""
    h = stack.launch_hook()
    fake.put_launch_hook(f"{STACK}-runners", h["LifecycleHookName"],
                         heartbeat_s=int(h["HeartbeatTimeout"]), default=h["DefaultResult"])
    fake.lifecycle(MAIN_INSTANCE_ID, "Pending:Wait")
    return h["LifecycleHookName"]


def wait_proc(p, timeout, what, log=None):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"{what} did not exit within {timeout} s\n"
                             + (Path(log).read_text(errors="replace")[-4000:] if log else ""))


def aws_calls(fake, service=None, op=None):
    """The daemons' calls to AWS and CircleCI (not the test's own, which go to the fake's
    main port with its static key)."""
    return [r for r in fake.requests() if r.get("service") not in ("imds", None, "blob")
            and r.get("listener") != "main"
            and (service is None or r["service"] == service) and (op is None or r["op"] == op)]


def assert_real_addresses(fake):
    """Every request came through the world's listeners at the real names: IMDS at its
    address, AWS and CircleCI over TLS at SERVICE.REGION.amazonaws.com."""
    reqs = fake.requests()
    imds = [r for r in reqs if r.get("service") == "imds"]
    assert imds, "no IMDS request at all"
    assert {r["listener"] for r in imds} == {"imds"}, imds
    assert {r["host"] for r in imds} == {"169.254.169.254"}, imds
    # Only the test itself used the fake's own port, with the fake's static key.
    assert all(r.get("akid") in (None, fake.akid) for r in reqs if r.get("listener") == "main")
    for r in aws_calls(fake):
        assert r["listener"] == "tls", r
        want = f"{r['service']}.{REGION}.amazonaws.com"
        if r["service"] == "runner":
            want = "runner.circleci.com"
        assert r["host"] == want, r
        if r["service"] != "runner":
            # Signed with the instance role's session credentials, which IMDS issued.
            assert r["signature_ok"] is True and r["token_used"] is True, r
            assert r["akid"].startswith("ASIA"), r
            assert r.get("botocore_agrees") is not False, r


def assert_left_and_powered_off(fake, logind):
    [t] = aws_calls(fake, "autoscaling", "TerminateInstanceInAutoScalingGroup")
    assert t["params"]["InstanceId"] == MAIN_INSTANCE_ID, t
    assert t["params"]["ShouldDecrementDesiredCapacity"] == "true", t
    assert t["status"] == 200, t
    assert t["caller_instance"] == MAIN_INSTANCE_ID, t
    assert logind.calls() == [{"method": "PowerOff", "interactive": False, "uid": 0}]


# ---- runnerd --------------------------------------------------------------------------------

def test_runnerd_packaged_config_runs_a_job_and_leaves(world, logind, build, tmp_path):
    """The packaged runnerd.conf, untouched, nothing in the environment: IMDSv2 at
    169.254.169.254 (issue 10, defect 1: refused before any I/O on the old code), the role's
    credentials, the token from Secrets Manager at its real name over TLS, the agent config,
    the job, TerminateInstanceInAutoScalingGroup with a decrement, logind's PowerOff."""
    fake = world.fake
    prepare_runner_world(fake)
    conf = PACKAGED_RUNNERD_CONF.read_text()
    inst = world.instance("runner", logind=logind, files={
        "/etc/runnerd/runnerd.conf": conf, "/usr/bin/circleci-runner": (agent_wrapper(), 0o755),
        **installed(build)})
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    rc = wait_proc(p, 60, "runnerd", log)
    text = log.read_text(errors="replace")
    assert rc == 0, text
    assert TOKEN not in text
    events = inst.path(AGENT_EVENTS).read_text().splitlines()
    assert events[0] == "started" and events[-1].startswith("completed "), events
    dump = json.loads(inst.path(AGENT_DUMP).read_text())
    # The agent config as the packaged defaults render it: no api.url (the agent's default,
    # CircleCI's cloud), the token, a name from the host name and the instance id.
    assert "url" not in dump["config"]["api"], dump["config"]
    assert dump["config"]["api"]["auth_token"] == TOKEN
    assert dump["config"]["runner"]["name"].endswith("-" + MAIN_INSTANCE_ID)
    assert dump["agent_argv"] == ["machine", "-c",
                                  "/etc/circleci-runner/circleci-runner-config.yaml"], dump
    assert not any(k.startswith(("AWS_", "CIRCLE")) for k in dump["env"]), dump["env"]
    jobs = fake.state()["jobs"][RC]
    assert len(jobs["done"]) == 1 and jobs["done"][0]["exit_code"] == 0, jobs
    assert_real_addresses(fake)
    [sm] = aws_calls(fake, "secretsmanager", "GetSecretValue")
    assert sm["body"]["SecretId"] == "cci-runner-secrets", sm
    assert_left_and_powered_off(fake, logind)


def test_runnerd_stack_user_data_config_downloads_the_agent(world, logind, build, tmp_path):
    """The runnerd.conf the CloudFormation stack's user-data writes (rendered from the template
    with its defaults and a deployment's values) in the group the stack makes, whose LAUNCHING
    hook holds a new instance in Pending:Wait: the hook completed with CONTINUE before the
    token, the secret by ARN, the agent from CircleCI's release tarball at its real URL (the
    stack's pinned version, %a), checked against its SHA-256, then the same path to
    power-off."""
    fake = world.fake
    prepare_runner_world(fake)
    hook = stack_launch_hook(fake)
    agent = agent_wrapper().encode()
    tgz = vendor.release_tarball(agent)
    url = vendor.tarball_url(AGENT_VERSION, "amd64")
    fake.set_blob(url, tgz, "application/x-gzip")
    conf = stack_file("RunnerLaunchTemplate", "/etc/runnerd/runnerd.conf",
                      AgentSha256=hashlib.sha256(tgz).hexdigest())
    assert f"download_url = {vendor.tarball_url(AGENT_VERSION)}" in conf, conf
    inst = world.instance("runner", logind=logind,
                          files={"/etc/runnerd/runnerd.conf": conf, **installed(build)})
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    rc = wait_proc(p, 60, "runnerd", log)
    text = log.read_text(errors="replace")
    assert rc == 0, text
    assert TOKEN not in text
    assert inst.path("/usr/bin/circleci-runner").read_bytes() == agent
    assert os.stat(inst.path("/usr/bin/circleci-runner")).st_mode & 0o777 == 0o755
    blobs = [r for r in fake.requests() if r.get("service") == "blob"]
    assert [(b["host"], b["path"], b["status"], b["listener"]) for b in blobs] == [
        ("circleci-binary-releases.s3.amazonaws.com", url.split(".com", 1)[1], 200, "tls")], \
        blobs
    [sm] = aws_calls(fake, "secretsmanager", "GetSecretValue")
    assert sm["body"]["SecretId"] == secret_arn("cci-runner-secrets"), sm
    [c] = aws_calls(fake, "autoscaling", "CompleteLifecycleAction")
    assert (c["params"]["LifecycleHookName"], c["params"]["LifecycleActionResult"],
            c["params"]["AutoScalingGroupName"], c["status"]) == \
        (hook, "CONTINUE", f"{STACK}-runners", 200), c
    assert c["t"] < sm["t"], (c, sm)
    assert inst.path(AGENT_EVENTS).read_text().splitlines()[-1].startswith("completed ")
    assert_real_addresses(fake)
    assert_left_and_powered_off(fake, logind)


def packaged_conf(**keys):
    """The packaged runnerd.conf with some of its commented defaults set: key -> value."""
    text = PACKAGED_RUNNERD_CONF.read_text()
    for k, v in keys.items():
        text, n = re.subn(rf"^;{k} =.*$", f"{k} = {v}", text, count=1, flags=re.M)
        assert n == 1, k
    return text


def run_runnerd(world, logind, build, tmp_path, conf, extra_files=None, timeout=60):
    inst = world.instance("runner", logind=logind, files={
        "/etc/runnerd/runnerd.conf": conf, "/usr/bin/circleci-runner": (agent_wrapper(), 0o755),
        **(extra_files or {}), **installed(build)})
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    rc = wait_proc(p, timeout, "runnerd", log)
    return inst, rc, log.read_text(errors="replace")


def test_runnerd_ssm_token(world, logind, build, tmp_path):
    """[token] source = ssm: the SecureString parameter at ssm.REGION.amazonaws.com, decrypted
    (the default endpoint that AWS_ENDPOINT_URL_SSM replaces elsewhere)."""
    fake = world.fake
    prepare_runner_world(fake)
    fake.set_parameter("/runnerd/runner-token", TOKEN)
    inst, rc, text = run_runnerd(world, logind, build, tmp_path,
                                 packaged_conf(source="ssm", id="/runnerd/runner-token"))
    assert rc == 0, text
    assert TOKEN not in text
    [g] = aws_calls(fake, "ssm", "GetParameter")
    assert g["body"] == {"Name": "/runnerd/runner-token", "WithDecryption": True}, g
    assert aws_calls(fake, "secretsmanager") == []
    assert_real_addresses(fake)
    assert_left_and_powered_off(fake, logind)


def test_runnerd_installs_packages_with_real_apt(world, logind, build, tmp_path):
    """[packages] install with the real dpkg-query and apt-get (the tests elsewhere put stand-ins
    first in PATH): the package is missing from the lists, so the first apt-get install fails,
    apt-get update fetches the world's repository over HTTPS, and the retry installs it."""
    fake = world.fake
    prepare_runner_world(fake)
    deb = world_mod.build_deb(tmp_path / "debs", "runnerd-world-probe",
                              files={"/usr/share/runnerd-world-probe/PROBE": "installed\n"})
    line = world_mod.apt_repo(fake, "https://packagecloud.io/runnerd/world-probe/debian",
                              [deb])
    inst, rc, text = run_runnerd(
        world, logind, build, tmp_path, packaged_conf(install="runnerd-world-probe"),
        extra_files={"/etc/apt/sources.list": "", "/etc/apt/sources.list.d/debian.sources": "",
                     "/etc/apt/sources.list.d/world.list": line}, timeout=180)
    assert rc == 0, text
    assert inst.path("/usr/share/runnerd-world-probe/PROBE").read_text() == "installed\n"
    got = [r["path"] for r in fake.requests() if r.get("service") == "blob" and
           r["status"] == 200]
    assert any(p.endswith("/Packages") for p in got) and any(p.endswith(".deb") for p in got)
    assert "packages: to install: runnerd-world-probe\n" in text, text
    assert inst.path(AGENT_EVENTS).read_text().splitlines()[-1].startswith("completed ")
    assert_left_and_powered_off(fake, logind)


def test_runnerctl_default_socket_status_and_drain(world, logind, build, tmp_path):
    """runnerctl with no options finds runnerd's default control socket
    (/run/runnerd/control.sock, group adm): status while the agent runs, then drain, which
    ends in the exit path."""
    fake = world.fake
    prepare_runner_world(fake)
    fifo = tmp_path / "agent.fifo"
    os.mkfifo(fifo)
    inst = world.instance("runner", logind=logind, files={
        "/etc/runnerd/runnerd.conf": PACKAGED_RUNNERD_CONF.read_text(),
        "/usr/bin/circleci-runner": (agent_wrapper("hang", notify=fifo), 0o755),
        **installed(build)})
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    try:
        sel = selectors.DefaultSelector()
        sel.register(rfd, selectors.EVENT_READ)
        got = b""
        deadline = time.monotonic() + 60
        while b"\n" not in got:
            assert p.poll() is None, log.read_text(errors="replace")
            left = deadline - time.monotonic()
            assert left > 0, "the agent never started:\n" + log.read_text(errors="replace")
            if sel.select(min(left, 0.5)):
                got += os.read(rfd, 100)
        sel.close()
        # READY was sent once the agent ran; status answers on the default socket.
        st = inst.run(["/usr/bin/runnerctl", "status", "--json"])
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        assert status["phase"] == "running", status
        assert status["agent"]["exit_status"] is None, status
        assert status["instance_id"] == MAIN_INSTANCE_ID, status
        d = inst.run(["/usr/bin/runnerctl", "drain"])
        assert d.returncode == 0, d.stderr
        rc = wait_proc(p, 60, "runnerd", log)
    finally:
        os.close(rfd)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0, log.read_text(errors="replace")
    assert inst.path(AGENT_EVENTS).read_text().splitlines()[-1] == "SIGTERM"
    assert_left_and_powered_off(fake, logind)


def test_runnerd_tls_verification_stays_on(world, logind, build, tmp_path):
    """Negative control: an instance whose CA bundle lacks the world's CA (the host's own
    bundle) cannot talk to 'AWS': runnerd fails in the token phase naming the certificate
    problem, and still takes the exit path (here the power-off; leaving the group needs AWS)."""
    fake = world.fake
    prepare_runner_world(fake)
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = host_bundle.read_bytes() if host_bundle.exists() else b""
    inst = world.instance("runner", logind=logind, files={
        "/etc/runnerd/runnerd.conf": PACKAGED_RUNNERD_CONF.read_text(),
        "/usr/bin/circleci-runner": (agent_wrapper(), 0o755),
        "/etc/ssl/certs/ca-certificates.crt": bundle, **installed(build)})
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    rc = wait_proc(p, 120, "runnerd", log)
    text = log.read_text(errors="replace")
    assert rc == 69, text
    assert "TLS certificate verification failed" in text, text
    # Not retried: a certificate problem is configuration, not a passing fault.
    assert text.count("TerminateInstanceInAutoScalingGroup i-") == 1, text
    assert not inst.path(AGENT_EVENTS).exists()
    # Nothing reached the fake's AWS handlers: the handshakes failed first.
    assert aws_calls(fake) == [], aws_calls(fake)
    assert logind.calls() == [{"method": "PowerOff", "interactive": False, "uid": 0}]


def test_imds_ipv6_endpoint_mode(world, logind, build, tmp_path):
    """AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6 (the SDKs' setting for IPv6-only subnets)
    reads IMDS at http://[fd00:ec2::254], admitted by address like 169.254.169.254."""
    fake = world.fake
    prepare_runner_world(fake)
    inst = world.instance("runner", logind=logind, files={
        "/etc/runnerd/runnerd.conf": PACKAGED_RUNNERD_CONF.read_text(),
        "/usr/bin/circleci-runner": (agent_wrapper(), 0o755), **installed(build)})
    env = inst.env()
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "IPv6"
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT, env=env)
    rc = wait_proc(p, 60, "runnerd", log)
    assert rc == 0, log.read_text(errors="replace")
    imds = [r for r in fake.requests() if r.get("service") == "imds"]
    assert imds and {r["host"] for r in imds} == {"[fd00:ec2::254]"}, imds
    assert_left_and_powered_off(fake, logind)


# ---- runner-scaler --------------------------------------------------------------------------

def prepare_scaler_world(world):
    fake = world.fake
    fake.set_secret("cci-runner-lambda-secrets", json.dumps({"circle_token": CIRCLE_TOKEN}))
    fake.set_runner_token(CIRCLE_TOKEN)
    fake.set_asg(f"{STACK}-runners", min=0, max=10, desired=0)
    fake.add_jobs(RC, 3)
    world.create_table(LEASE_TABLE)


def scaler_instance(world, build):
    conf = stack_file("ScalerLaunchTemplate", "/etc/runnerd/scaler.conf")
    assert "mode = dynamodb" in conf and "lease = 15s" in conf, conf
    return world.instance("scaler", files={"/etc/runnerd/scaler.conf": conf,
                                           **installed(build)})


def assert_scaler_wrote(world):
    fake = world.fake
    assert fake.state()["asgs"][f"{STACK}-runners"]["desired"] == 3
    assert_real_addresses(fake)
    ddb = aws_calls(fake, "dynamodb")
    assert ddb and all(r["host"] == f"dynamodb.{REGION}.amazonaws.com" for r in ddb), ddb
    [sm] = aws_calls(fake, "secretsmanager", "GetSecretValue")
    assert sm["body"]["SecretId"] == secret_arn("cci-runner-lambda-secrets"), sm
    runner = aws_calls(fake, "runner")
    assert runner and all(r["circle_token"] == CIRCLE_TOKEN for r in runner), runner
    sets = aws_calls(fake, "autoscaling", "SetDesiredCapacity")
    assert [s["params"]["DesiredCapacity"] for s in sets] == ["3"], sets


def test_scaler_stack_config_once(world, build, tmp_path):
    """runner-scaler --once with the scaler.conf the stack's user-data writes: region, instance
    id and credentials from IMDS at 169.254.169.254, the CircleCI token from Secrets Manager
    (ARN), the DynamoDB lease, the Runner API at runner.circleci.com, SetDesiredCapacity."""
    prepare_scaler_world(world)
    inst = scaler_instance(world, build)
    r = inst.run(["/usr/sbin/runner-scaler", "--once"], timeout=40)
    assert r.returncode == 0, r.stdout + r.stderr
    assert CIRCLE_TOKEN not in r.stdout + r.stderr
    assert_scaler_wrote(world)
    item = world.fake.boto3_client("dynamodb").get_item(
        TableName=LEASE_TABLE, Key={"lease_id": {"S": "runner-scaler"}}, ConsistentRead=True)
    assert item["Item"]["owner"]["S"].startswith(MAIN_INSTANCE_ID + ":"), item


def test_scaler_stack_config_daemon(world, build, tmp_path):
    """The daemon as its unit runs it (no arguments): elected through the lease, it scales the
    group, and on SIGTERM finishes and gives the lease back."""
    prepare_scaler_world(world)
    inst = scaler_instance(world, build)
    log = tmp_path / "scaler.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runner-scaler"], stdout=f, stderr=subprocess.STDOUT)
    try:
        world.fake.wait_until(lambda s: s["asgs"][f"{STACK}-runners"]["desired"] == 3,
                              timeout=40, what="the scaler's SetDesiredCapacity")
    except AssertionError as e:
        p.kill()
        raise AssertionError(f"{e}\n{log.read_text(errors='replace')}")
    p.send_signal(signal.SIGTERM)
    rc = wait_proc(p, 30, "runner-scaler", log)
    text = log.read_text(errors="replace")
    assert rc == 0, text
    assert CIRCLE_TOKEN not in text
    assert_scaler_wrote(world)
    item = world.fake.boto3_client("dynamodb").get_item(
        TableName=LEASE_TABLE, Key={"lease_id": {"S": "runner-scaler"}}, ConsistentRead=True)
    # Released at exit: expired at once, so a successor need not wait out the lease.
    assert int(item["Item"]["expiry"]["N"]) <= int(time.time() * 1000), item


def test_scaler_launch_failures_on_the_default_path(world, build, tmp_path):
    """The launch back-off on the shipped defaults (launch_failures 3, interval 10 s): while
    the group holds instances not seen connected, the runner list is read at
    runner.circleci.com over TLS; the three that leave without a runner start the back-off,
    and the group is not raised again."""
    prepare_scaler_world(world)
    fake = world.fake
    group = f"{STACK}-runners"
    fake.set_asg(group, min=0, max=10, desired=3, instances=3, fail_boot="leave",
                 fail_boot_ticks=1, protect_new=True)  # as the stack makes it
    ids = [i["id"] for i in fake.instances(group)]
    inst = scaler_instance(world, build)
    log = tmp_path / "scaler.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runner-scaler"], stdout=f, stderr=subprocess.STDOUT)
    try:
        fake.wait_until(lambda s: aws_calls(fake, "runner", "list"), timeout=40,
                        what="the runner list read for the unconfirmed instances")
        fake.tick(2)  # their boot fails: they leave with a decrement
        fake.wait_until(lambda s: len(aws_calls(fake, "runner", "list")) >= 2, timeout=40,
                        what="the next cycle's runner list read")
    except AssertionError as e:
        p.kill()
        raise AssertionError(f"{e}\n{log.read_text(errors='replace')}")
    p.send_signal(signal.SIGTERM)  # it finishes the cycle first
    rc = wait_proc(p, 30, "runner-scaler", log)
    text = log.read_text(errors="replace")
    assert rc == 0, text
    assert_real_addresses(fake)
    lists = aws_calls(fake, "runner", "list")
    assert all(r["params"]["resource-class"] == RC and r["circle_token"] == CIRCLE_TOKEN
               for r in lists), lists
    warn = [x for x in text.splitlines() if "3 launches in a row left the group" in x]
    assert len(warn) == 1 and all(i in warn[0] for i in ids), text
    assert "not raising desired capacity for 60 s" in warn[0]
    assert re.search(r'reason="launch back-off: 3 failed launches in a row, \d+ s left: '
                     r'not raised to 3 \(0 runners connected\)"', text), text
    assert not aws_calls(fake, "autoscaling", "SetDesiredCapacity")


# ---- TLS and proxies, as an instance meets them ------------------------------------------------

def test_tls_hostname_verification(tmp_path, logind, build):
    """Negative control for hostname verification: the world's certificate leaves out
    secretsmanager.REGION.amazonaws.com (the name still resolves to the world, the CA is
    trusted): the token fetch fails naming the certificate, and runnerd takes the exit path."""
    if os.geteuid() != 0:
        pytest.skip("the default-path world needs root (network and mount namespaces)")
    from conftest import FakeCloud
    w = world_mod.World(tmp_path / "world", FakeCloud,
                        omit_names=[f"secretsmanager.{REGION}.amazonaws.com"])
    with w:
        prepare_runner_world(w.fake)
        inst, rc, text = run_runnerd(w, logind, build, tmp_path, packaged_conf())
        assert rc == 69, text
        assert "TLS certificate verification failed" in text and "name the host" in text, text
        assert aws_calls(w.fake, "secretsmanager") == []
        # The names it does hold still work: the group was left.
        [t] = aws_calls(w.fake, "autoscaling", "TerminateInstanceInAutoScalingGroup")
        assert t["status"] == 200, t


def test_no_ca_bundle_is_named(world, logind, build, tmp_path):
    """An instance without a CA bundle (ca-certificates missing): the error says so, instead of
    blaming the endpoint; nothing is retried in vain."""
    prepare_runner_world(world.fake)
    inst, rc, text = run_runnerd(world, logind, build, tmp_path, packaged_conf(),
                                 extra_files={"/etc/ssl/certs/ca-certificates.crt": b""})
    assert rc == 69, text
    assert "no system CA bundle" in text and "install ca-certificates" in text, text
    assert "Key was rejected" not in text, text


def test_imds_never_through_a_proxy(world, logind, build, tmp_path):
    """http_proxy set on the instance (an operator's egress proxy; NO_PROXY for the AWS and
    CircleCI names): IMDS, link-local and plain http with role credentials in its answers,
    is still read directly, never through the proxy (which does not exist here)."""
    prepare_runner_world(world.fake)
    inst = world.instance("runner", logind=logind, files={
        "/etc/runnerd/runnerd.conf": PACKAGED_RUNNERD_CONF.read_text(),
        "/usr/bin/circleci-runner": (agent_wrapper(), 0o755), **installed(build)})
    env = inst.env()
    env.update(http_proxy="http://192.0.2.99:3128", HTTP_PROXY="http://192.0.2.99:3128",
               https_proxy="http://192.0.2.99:3128", ALL_PROXY="http://192.0.2.99:3128",
               NO_PROXY=".amazonaws.com,.circleci.com", no_proxy=".amazonaws.com,.circleci.com")
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT, env=env)
    rc = wait_proc(p, 60, "runnerd", log)
    assert rc == 0, log.read_text(errors="replace")
    imds = [r for r in world.fake.requests() if r.get("service") == "imds"]
    assert imds and all(r["status"] == 200 for r in imds if r["op"] == "token"), imds
    assert_left_and_powered_off(world.fake, logind)


def test_bootstrap_signals_cloudformation(world, tmp_path):
    """The scaler's user-data says the scaler runs (runnerd-bootstrap signal, as the stack's
    runcmd calls it): SignalResource at cloudformation.REGION.amazonaws.com over TLS, signed
    with the instance role's credentials from IMDS at 169.254.169.254, naming this instance;
    a stack that does not know the resource is a failure the script reports (exit 1)."""
    fake = world.fake
    fake.set_stack(STACK, ["ScalerGroup"])
    inst = world.instance("scaler")
    boot = str(REPO / "packaging" / "aws" / "runnerd-bootstrap")
    r = inst.run(["/bin/sh", boot, "signal", STACK, "ScalerGroup", "SUCCESS"])
    assert r.returncode == 0, r.stderr
    assert "signalled SUCCESS for ScalerGroup of runnerd" in r.stderr, r.stderr
    sig = fake.state()["stacks"][STACK]["signals"]
    assert [(s["resource"], s["unique_id"], s["status"]) for s in sig] == \
        [("ScalerGroup", MAIN_INSTANCE_ID, "SUCCESS")], sig
    [call] = aws_calls(fake, "cloudformation", "SignalResource")
    assert call["status"] == 200 and call["signature_ok"] and call["token_used"], call
    assert call["host"] == f"cloudformation.{world.fake.region}.amazonaws.com", call
    assert call.get("botocore_agrees") in (True, None), call
    r = inst.run(["/bin/sh", boot, "signal", STACK, "NoSuchGroup", "FAILURE"])
    assert r.returncode == 1 and "could not signal FAILURE" in r.stderr, r.stderr
