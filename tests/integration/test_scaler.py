"""runner-scaler against the fake cloud (and dynalite for the lease).

Every wait is on a condition with a deadline: the fake's request log (long-polled through its
state generation) or a line the scaler logs. The fake's request log is the witness for what
was written to AWS, when, and with which credentials (each scaler in the election tests has
its own static key pair and its own Circle-Token).
"""

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import FakeCloud, free_port  # noqa: F401  (FakeCloud for type hints)

TOKEN = "cci-token-0123456789"
RC = "acme/linux"
RC2 = "acme/arm"

# ---------------------------------------------------------------------------------------------
# helpers


def conf_text(pools, interval="200ms", request_timeout="2s", metrics=None, listen=None,
              election=None, token="env", token_id=None, token_key=None, log_format=None):
    """pools: list of dicts with name, resource_class, asg, max (+ min, headroom, max_step,
    region, launch_failures, az_rebalance, warm_pool)."""
    out = ["[scaler]", f"interval = {interval}", f"request_timeout = {request_timeout}"]
    if metrics:
        out.append(f"metrics = {metrics}")
    if listen:
        out.append(f"listen = {listen}")
    if log_format:
        out.append(f"log_format = {log_format}")
    out += ["", "[circleci]", f"token_source = {token}"]
    if token_id:
        out.append(f"token_id = {token_id}")
    if token_key:
        out.append(f"token_key = {token_key}")
    for p in pools:
        out += ["", f"[pool {p['name']}]"]
        for k in ("resource_class", "asg", "region", "min", "max", "headroom", "max_step",
                  "launch_failures", "az_rebalance", "warm_pool"):
            if k in p:
                out.append(f"{k} = {p[k]}")
    if election:
        out += ["", "[election]", "mode = dynamodb", f"table = {election['table']}",
                f"name = {election.get('name', 'runner-scaler')}",
                f"lease = {election.get('lease', '3s')}"]
    return "\n".join(out) + "\n"


def write_conf(path, pools, **kw):
    path.write_text(conf_text(pools, **kw))
    return path


def pool(name="a", rc=RC, asg="asg-a", **kw):
    return dict(name=name, resource_class=rc, asg=asg, **kw)


def scaler_env(fake, token=TOKEN, akid=None, secret=None, dynamodb=None):
    env = fake.env(imds=False, dynamodb=dynamodb)
    env["CIRCLE_TOKEN"] = token
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if akid:
        env["AWS_ACCESS_KEY_ID"] = akid
        env["AWS_SECRET_ACCESS_KEY"] = secret
    return env


def run_once(build, conf, env, *args, timeout=40):
    t0 = time.monotonic()
    p = subprocess.run([str(build / "runner-scaler"), "-c", str(conf), "--once", *args],
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    p.elapsed = time.monotonic() - t0
    return p


def sets(fake, since=0, asg=None, akid=None):
    """SetDesiredCapacity requests that reached the fake (any outcome)."""
    out = []
    for r in fake.requests(since):
        if r.get("service") != "autoscaling" or r.get("op") != "SetDesiredCapacity":
            continue
        params = r.get("params") or {}
        if asg and params.get("AutoScalingGroupName") != asg:
            continue
        if akid and r.get("akid") != akid:
            continue
        out.append(r)
    return out


def ok_sets(fake, **kw):
    return [r for r in sets(fake, **kw) if r.get("status") == 200]


def desired_of(r):
    return int(r["params"]["DesiredCapacity"])


def last_seq(fake):
    reqs = fake.requests()
    return reqs[-1]["seq"] if reqs else 0


def decisions(stderr):
    return [line.split(": ", 1)[1] for line in stderr.splitlines()
            if line.startswith("runner-scaler: pool=")]


class Scaler:
    """A runner-scaler daemon whose stderr is collected line by line; wait_for() blocks on a
    condition variable until a matching line arrives (or the deadline passes)."""

    def __init__(self, build, conf, env, *args):
        self.proc = subprocess.Popen([str(build / "runner-scaler"), "-c", str(conf), *args],
                                     env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF
            self.cond.notify_all()

    def wait_for(self, pattern, timeout=10.0, start=0):
        """Index of the first line at or after start matching pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError(f"scaler exited waiting for {pattern!r}:\n"
                                             + self.text())
                    if rx.search(line):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n"
                                         + self.text())
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def text(self):
        with self.cond:
            return "\n".join(x for x in self.lines if x is not None)[-6000:]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)
        return self.proc.returncode


@pytest.fixture
def daemons():
    started = []

    def start(build, conf, env, *args):
        s = Scaler(build, conf, env, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def cloud(fake):
    """The fake with the scaler's Circle-Token registered and one group asg-a (0..10, 1)."""
    fake.set_runner_token(TOKEN)
    fake.set_asg("asg-a", 0, 10, 1)
    return fake


def run_jobs(fake, rc, n, token="agent-tok"):
    """n tasks that are running (claimed by a fake agent)."""
    fake.set_agent_token(token, rc)
    fake.add_jobs(rc, n, duration_s=3600)
    for i in range(n):
        status, _ = fake.claim(rc, f"runner-{i}", token)
        assert status == 200


# ---------------------------------------------------------------------------------------------
# the policy end to end


def test_once_sets_demand(cloud, build, tmp_path):
    cloud.add_jobs(RC, 3)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    w = ok_sets(cloud)
    assert [desired_of(r) for r in w] == [3]
    assert w[0]["params"]["HonorCooldown"] == "false"
    assert w[0]["params"]["AutoScalingGroupName"] == "asg-a"
    # Signed right (the fake checks SigV4 itself and with botocore), with the static key.
    aws = [r for r in cloud.requests() if r["service"] == "autoscaling"]
    assert [r["op"] for r in aws] == ["DescribeAutoScalingGroups", "SuspendProcesses",
                                      "SetDesiredCapacity"] or \
        [r["op"] for r in aws] == ["DescribeAutoScalingGroups", "SetDesiredCapacity",
                                   "SuspendProcesses"], aws
    assert all(r["signature_ok"] and r["akid"] == cloud.akid for r in aws), aws
    assert all(r.get("botocore_agrees") in (True, None) for r in aws), aws
    d = decisions(p.stderr)
    assert d == ["pool=a resource_class=acme/linux unclaimed=3 running=0 current=1 desired=3 "
                 "action=set reason=demand"], p.stderr
    assert TOKEN not in p.stderr


def test_az_rebalance_suspended_once(cloud, build, tmp_path, daemons):
    """Zone rebalancing would launch and end runners to even out zones: the leader suspends
    AZRebalance on each group whose describe shows it running, once; `az_rebalance = leave`
    and --dry-run leave it; a refusal (the role lacks the permission) is said once, never
    holds the scaling, and is not retried every cycle."""
    cloud.set_asg("asg-a", 0, 10, 0)
    cloud.set_asg("asg-b", 0, 10, 0)
    cloud.add_jobs(RC, 1)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8), pool(name="b", asg="asg-b", max=8,
                                                              rc="acme/other",
                                                              az_rebalance="leave")])
    p = run_once(build, conf, scaler_env(cloud), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert not [r for r in cloud.requests() if r["op"] == "SuspendProcesses"]
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    sus = [r for r in cloud.requests() if r["op"] == "SuspendProcesses"]
    assert len(sus) == 1 and sus[0]["status"] == 200, sus
    assert sus[0]["params"] == {"Action": "SuspendProcesses", "Version": "2011-01-01",
                                "AutoScalingGroupName": "asg-a",
                                "ScalingProcesses.member.1": "AZRebalance"}, sus
    assert sus[0].get("botocore_agrees") in (True, None), sus
    st = cloud.state()["asgs"]
    assert st["asg-a"]["suspended"] == ["AZRebalance"] and st["asg-b"]["suspended"] == []
    assert "pool a: suspended AZRebalance on asg-a" in p.stderr, p.stderr
    # Suspended now: the next run sees it in the describe and writes nothing more.
    seq = max(r["seq"] for r in cloud.requests())
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert not [r for r in cloud.requests(seq) if r["op"] == "SuspendProcesses"]

    # Refused: a warning, the scaling goes on, and a daemon does not ask again each cycle.
    cloud.set_asg("asg-c", 0, 10, 0)
    cloud.fault("autoscaling:SuspendProcesses", status=403, code="AccessDenied",
                message="not authorized to perform: autoscaling:SuspendProcesses")
    seq = max(r["seq"] for r in cloud.requests())
    conf = write_conf(tmp_path / "c.conf", [pool(name="c", asg="asg-c", max=8)], interval="1s")
    d = daemons(build, conf, scaler_env(cloud))
    i = d.wait_for(r"pool=c .*desired=1 action=set", 20)
    i = d.wait_for(r"pool=c .*action=noop", 20, start=i + 1)
    d.wait_for(r"pool=c .*action=noop", 20, start=i + 1)
    sus = [r for r in cloud.requests(seq) if r["op"] == "SuspendProcesses"]
    assert len(sus) == 1 and sus[0]["status"] == 403, sus
    assert d.text().count("could not suspend AZRebalance on asg-c") == 1, d.text()
    assert "AccessDenied" in d.text()
    assert "grant the role autoscaling:SuspendProcesses on the group" in d.text()
    assert cloud.state()["asgs"]["asg-c"]["desired"] == 1


@pytest.mark.parametrize("fault,times", [
    (dict(status=400, code="Throttling", message="Rate exceeded"), 2),
    (dict(status=503, code="ServiceUnavailable", message="Service is unavailable"), 2),
    # one of the two faults SuspendProcesses models: the group busy for now
    (dict(status=400, code="ResourceInUse",
          message="The operation can't be performed because the resource is in use."), 2),
    # libcurl sends a request again, once, when a reused connection closes without an answer
    (dict(close=True), 4),
    (dict(delay_s=1.5, close=True), 2),
], ids=["throttling", "5xx", "in-use", "transport", "timeout"])
def test_az_rebalance_passing_failure_is_retried_next_cycle(cloud, build, tmp_path, daemons,
                                                            fault, times):
    """Throttling, a 5xx, a dropped connection or a timeout on SuspendProcesses pass in
    seconds: tried again from the next cycle (with the pool's jittered backoff), not an hour
    later; said once, without the permission hint."""
    cloud.set_asg("asg-a", 0, 10, 0)
    fid = cloud.fault("autoscaling:SuspendProcesses", times=times, **fault)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms",
                      request_timeout="1s")
    d = daemons(build, conf, scaler_env(cloud))
    d.wait_for(r"pool a: suspended AZRebalance on asg-a", timeout=20)
    assert cloud.state()["asgs"]["asg-a"]["suspended"] == ["AZRebalance"]
    # Every fault was met before the success (a dropped request is logged when the fake
    # drops it, which may be after the success).
    def suspends(_st):
        sus = [r for r in cloud.requests() if r["op"] == "SuspendProcesses"]
        return sus if len(sus) == times + 1 else None

    sus = cloud.wait_until(suspends, timeout=5, what="every SuspendProcesses logged")
    assert [r["status"] for r in sus].count(200) == 1, sus
    assert next(f["hits"] for f in cloud.state()["faults"] if f["id"] == fid) == times
    warned = [x for x in d.lines if x and "could not suspend AZRebalance" in x
              and "WARNING" in x]
    assert len(warned) == 1, d.text()  # the failures after the first are not said again
    assert "passing failure" in warned[0] and "grant the role" not in warned[0], warned
    if "code" in fault:
        assert fault["code"] in warned[0], warned


def test_az_rebalance_other_error_names_it(cloud, build, tmp_path, daemons):
    """An error that is neither passing nor a refusal: said once with the AWS error named (no
    permission hint), tried again an hour later."""
    cloud.set_asg("asg-a", 0, 10, 0)
    cloud.fault("autoscaling:SuspendProcesses", status=400, code="ValidationError",
                message="Group asg-a is being deleted")
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms")
    d = daemons(build, conf, scaler_env(cloud))
    i = d.wait_for(r"could not suspend AZRebalance on asg-a", timeout=20)
    for _ in range(3):
        i = d.wait_for(r"pool=a ", start=i + 1)
    sus = [r for r in cloud.requests() if r["op"] == "SuspendProcesses"]
    assert len(sus) == 1, sus
    assert d.text().count("could not suspend AZRebalance") == 1, d.text()
    line = next(x for x in d.lines if x and "could not suspend AZRebalance" in x)
    assert "ValidationError: Group asg-a is being deleted" in line, line
    assert "grant the role" not in line and "tried again hourly" in line, line


def test_unknown_class_warns(cloud, build, tmp_path):
    """The API answers 0 for a class it does not know: the scaler lists the class's runners
    and warns loudly when there are none."""
    conf = write_conf(tmp_path / "s.conf", [pool(max=8, rc="acme/typo")])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert re.search(r"WARNING: pool a: resource class acme/typo lists no runners", p.stderr)
    lists = [r for r in cloud.requests() if r["op"] == "list"]
    assert [r["params"]["resource-class"] for r in lists] == ["acme/typo"]


def test_instance_role_credentials(cloud, build, tmp_path):
    """No key in the environment: the instance role's session credentials from IMDSv2, sent
    with a signed X-Amz-Security-Token; the region too comes from IMDS."""
    cloud.add_jobs(RC, 2)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    env = cloud.env(imds=True)
    env["CIRCLE_TOKEN"] = TOKEN
    del env["AWS_REGION"], env["AWS_DEFAULT_REGION"]
    p = run_once(build, conf, env)
    assert p.returncode == 0, p.stderr
    w = ok_sets(cloud)
    assert [desired_of(r) for r in w] == [2]
    assert w[0]["token_used"] and w[0]["signature_ok"] and w[0]["region"] == "us-east-1"
    assert w[0]["akid"] != cloud.akid


def test_running_and_headroom(cloud, build, tmp_path):
    cloud.add_jobs(RC, 2)
    run_jobs(cloud, RC, 1)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8, headroom=1)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [2 + 1 + 1]
    # A class with work is evidently known: no runner listing, no warning.
    assert not [r for r in cloud.requests() if r["op"] == "list"]
    assert "WARNING" not in p.stderr


def test_idle_known_class_is_listed_once(cloud, build, tmp_path, daemons):
    run_jobs(cloud, RC, 1)  # registers runner-0
    cloud.complete(cloud.state()["jobs"][RC]["running"][0]["id"])
    cloud.set_asg("asg-a", 0, 10, 0)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms")
    d = daemons(build, conf, scaler_env(cloud))
    d.wait_for(r"pool a: resource class acme/linux has 1 runners")
    d.wait_for(r"action=noop", start=d.mark())
    d.wait_for(r"action=noop", start=d.mark())
    assert len([r for r in cloud.requests() if r["op"] == "list"]) == 1
    assert "WARNING" not in d.text()


def test_scale_in_to_min(cloud, build, tmp_path):
    cloud.set_asg("asg-a", 0, 10, 6)
    conf = write_conf(tmp_path / "s.conf", [pool(min=2, max=8)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [2]


def test_cap_at_pool_max(cloud, build, tmp_path):
    cloud.add_jobs(RC, 30)
    conf = write_conf(tmp_path / "s.conf", [pool(max=5)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [5]
    assert "reason=\"capped at pool max\"" in p.stderr


def test_cap_at_asg_max(cloud, build, tmp_path):
    cloud.set_asg("asg-a", 0, 4, 1)
    cloud.add_jobs(RC, 30)
    conf = write_conf(tmp_path / "s.conf", [pool(max=20)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [4]
    assert "capped at ASG MaxSize" in p.stderr


def test_no_write_when_equal(cloud, build, tmp_path):
    cloud.set_asg("asg-a", 0, 10, 2)
    cloud.add_jobs(RC, 2)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert sets(cloud) == []
    assert "action=noop" in p.stderr
    # It did read: the describe and both counts reached the fake.
    ops = {(r["service"], r["op"]) for r in cloud.requests()}
    assert {("autoscaling", "DescribeAutoScalingGroups"), ("runner", "tasks"),
            ("runner", "running")} <= ops


def test_dry_run_writes_nothing(cloud, build, tmp_path):
    cloud.add_jobs(RC, 4)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    p = run_once(build, conf, scaler_env(cloud), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert sets(cloud) == []
    assert re.search(r"desired=4 action=set reason=\"demand \(dry run: not written\)\"",
                     p.stderr), p.stderr


def test_json_decision_lines(cloud, build, tmp_path):
    cloud.add_jobs(RC, 1)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    p = run_once(build, conf, scaler_env(cloud), "--log-format", "json")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x.split(": ", 1)[1]) for x in p.stderr.splitlines()
             if x.startswith("runner-scaler: {")]
    assert lines == [{"pool": "a", "resource_class": RC, "unclaimed": 1, "running": 0,
                      "current": 1, "desired": 1, "action": "noop",
                      "reason": "unchanged (demand)"}]


def test_two_pools_two_regions(cloud, build, tmp_path):
    cloud.set_asg("asg-b", 0, 10, 0, region="eu-west-1")
    cloud.add_jobs(RC, 2)
    cloud.add_jobs(RC2, 5)
    conf = write_conf(tmp_path / "s.conf",
                      [pool(max=8), pool("b", RC2, "asg-b", max=3, region="eu-west-1")])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    got = {r["params"]["AutoScalingGroupName"]: desired_of(r) for r in ok_sets(cloud)}
    assert got == {"asg-a": 2, "asg-b": 3}
    describes = [r for r in cloud.requests() if r["op"] == "DescribeAutoScalingGroups"]
    assert sorted(r["region"] for r in describes) == ["eu-west-1", "us-east-1"]
    assert len(decisions(p.stderr)) == 2


def test_many_pools_batched_describe(cloud, build, tmp_path):
    """120 pools: three DescribeAutoScalingGroups calls (50 + 50 + 20), all set correctly."""
    pools = []
    for i in range(120):
        cloud.set_asg(f"g{i}", 0, 10, 0)
        pools.append(pool(f"p{i}", f"acme/c{i}", f"g{i}", max=10))
        if i % 7 == 0:
            cloud.add_jobs(f"acme/c{i}", 1 + i % 5)
    conf = write_conf(tmp_path / "s.conf", pools)
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    describes = [r for r in cloud.requests(0) if r["op"] == "DescribeAutoScalingGroups"]
    sizes = sorted(sum(1 for k in r["params"] if k.startswith("AutoScalingGroupNames.member"))
                   for r in describes)
    assert sizes == [20, 50, 50]
    got = {r["params"]["AutoScalingGroupName"]: desired_of(r) for r in ok_sets(cloud)}
    assert got == {f"g{i}": 1 + i % 5 for i in range(120) if i % 7 == 0}


# ---------------------------------------------------------------------------------------------
# every failure holds (no write, exit 69), and the next cycle recovers

FAILURES = {
    "runner-timeout": ("runner:tasks", dict(delay_s=3)),
    "runner-close": ("runner:running", dict(close=True)),
    "runner-400": ("runner:tasks", dict(status=400)),
    "runner-404": ("runner:running", dict(status=404)),
    "runner-500": ("runner:tasks", dict(status=500)),
    "runner-503": ("runner:running", dict(status=503)),
    "runner-429": ("runner:tasks", dict(status=429, retry_after=1)),
    "runner-malformed-json": ("runner:tasks", dict(status=200, body='{"unclaimed_task_count": ')),
    "runner-wrong-type": ("runner:running", dict(status=200, body='{"running_runner_tasks":"2"}')),
    "runner-negative": ("runner:tasks", dict(status=200, body='{"unclaimed_task_count":-4}')),
    "runner-html": ("runner:tasks", dict(status=200, body="<html>maintenance</html>",
                                         content_type="text/html")),
    "runner-oversized": ("runner:tasks", dict(oversize_bytes=2 * 1024 * 1024)),
    "asg-timeout": ("autoscaling:DescribeAutoScalingGroups", dict(delay_s=3)),
    "asg-throttled": ("autoscaling:DescribeAutoScalingGroups",
                      dict(status=400, code="Throttling", message="Rate exceeded")),
    "asg-500": ("autoscaling:DescribeAutoScalingGroups", dict(status=500)),
    "asg-403": ("autoscaling:DescribeAutoScalingGroups",
                dict(status=403, code="AccessDenied", message="not authorized")),
    "asg-malformed-xml": ("autoscaling:DescribeAutoScalingGroups",
                          dict(status=200, body="<DescribeAutoScalingGroupsResponse><Describe")),
    "asg-wrong-doc": ("autoscaling:DescribeAutoScalingGroups",
                      dict(status=200, body="<Other><x>1</x></Other>")),
    "set-throttled": ("autoscaling:SetDesiredCapacity", dict(status=400, code="Throttling")),
    "set-500": ("autoscaling:SetDesiredCapacity", dict(status=500)),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_failure_holds_then_recovers(cloud, build, tmp_path, kind):
    match, spec = FAILURES[kind]
    cloud.set_asg("asg-a", 0, 10, 4)
    cloud.add_jobs(RC, 1)  # demand 1 < current 4: a scale-in, if it ever wrote blind
    cloud.fault(match, times=1, **spec)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], request_timeout="1s")
    env = scaler_env(cloud)

    p = run_once(build, conf, env)
    assert p.returncode == 69, p.stderr
    assert "action=hold" in p.stderr
    assert ok_sets(cloud) == []
    if not match.endswith("SetDesiredCapacity"):
        assert sets(cloud) == []  # not even attempted
    assert p.elapsed < 10

    p = run_once(build, conf, env)
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [1], p.stderr


def test_refused_holds(cloud, build, tmp_path):
    cloud.set_asg("asg-a", 0, 10, 4)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    env = scaler_env(cloud)
    env["CIRCLECI_RUNNER_API_URL"] = f"http://127.0.0.1:{free_port()}"
    p = run_once(build, conf, env)
    assert p.returncode == 69, p.stderr
    assert "connection refused" in p.stderr
    assert sets(cloud) == []
    env["AWS_ENDPOINT_URL_AUTO_SCALING"] = f"http://127.0.0.1:{free_port()}"
    env["CIRCLECI_RUNNER_API_URL"] = cloud.url
    p = run_once(build, conf, env)
    assert p.returncode == 69, p.stderr
    assert "DescribeAutoScalingGroups: connection refused" in p.stderr


def test_unauthorised_is_a_config_error(cloud, build, tmp_path):
    cloud.add_jobs(RC, 2)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    p = run_once(build, conf, scaler_env(cloud, token="not-a-registered-token"))
    assert p.returncode == 69, p.stderr
    assert re.search(r"configuration error: .*token_source = env, token_id = CIRCLE_TOKEN",
                     p.stderr), p.stderr
    assert sets(cloud) == []
    assert "not-a-registered-token" not in p.stderr


def test_asg_not_found_holds(cloud, build, tmp_path):
    cloud.add_jobs(RC, 2)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8, asg="no-such-asg")])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 69
    assert "ASG no-such-asg not found in us-east-1" in p.stderr
    assert sets(cloud) == []


def test_once_ends_within_30s_with_hanging_upstreams(cloud, build, tmp_path):
    """request_timeout at its maximum (60 s) and every upstream hanging: --once still ends in
    under 30 s, holding."""
    cloud.fault("runner:*", delay_s=100)
    cloud.fault("autoscaling:*", delay_s=100)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], request_timeout="60s")
    p = run_once(build, conf, scaler_env(cloud), timeout=45)
    assert p.returncode == 69, p.stderr
    assert p.elapsed < 30, p.elapsed
    assert "timeout" in p.stderr
    assert sets(cloud) == []


def test_once_request_timeout_bounds_a_hang(cloud, build, tmp_path):
    cloud.fault("runner:running", delay_s=100)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], request_timeout="1s")
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 69
    assert p.elapsed < 4, p.elapsed
    assert "Runner API running: timeout" in p.stderr


# ---------------------------------------------------------------------------------------------
# the daemon


def test_daemon_429_then_success_honours_retry_after(cloud, build, tmp_path, daemons):
    cloud.add_jobs(RC, 3)
    cloud.fault("runner:tasks", status=429, retry_after=2, times=1)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms")
    d = daemons(build, conf, scaler_env(cloud))
    w = cloud.wait_until(lambda s: ok_sets(cloud), timeout=15, what="a write after the 429")
    assert [desired_of(r) for r in w] == [3]
    tasks = [r for r in cloud.requests() if r["op"] == "tasks"]
    assert tasks[0]["status"] == 429
    # The pool was not asked again before Retry-After had passed.
    assert tasks[1]["t"] >= tasks[0]["t"] + 1.9, (tasks[0]["t"], tasks[1]["t"])
    assert w[0]["t"] > tasks[0]["t"] + 1.9
    d.wait_for(r"action=hold reason=\"backing off")
    assert d.stop() == 0


def test_daemon_recovers_after_outage_and_never_scales_in_blind(cloud, build, tmp_path,
                                                                   daemons):
    cloud.set_asg("asg-a", 0, 10, 5)
    cloud.add_jobs(RC, 5)
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms")
    cloud.fault("runner:tasks", status=503, times=3)
    d = daemons(build, conf, scaler_env(cloud))
    # Three failed reads, then a good one: the first good cycle sees 5 == 5, no write.
    cloud.wait_until(lambda s: len([r for r in cloud.requests() if r["op"] == "tasks"
                                    and r["status"] == 200]) >= 2, timeout=30,
                     what="two good reads after the outage")
    assert sets(cloud) == []
    d.wait_for(r"action=noop")
    assert d.stop() == 0


def test_sighup_adds_and_removes_pools(cloud, build, tmp_path, daemons):
    cloud.set_asg("asg-b", 0, 10, 0)
    cloud.add_jobs(RC, 2)
    cloud.add_jobs(RC2, 3)
    prom = tmp_path / "m.prom"
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms", metrics=prom)
    cloud.fault("runner:tasks", status=500, times=1)
    d = daemons(build, conf, scaler_env(cloud))
    cloud.wait_until(lambda s: ok_sets(cloud, asg="asg-a"), timeout=10, what="pool a writes")
    assert sets(cloud, asg="asg-b") == []
    err_a = 'runner_scaler_api_errors_total{pool="a",kind="http_5xx"} 1\n'
    assert err_a in prom.read_text()

    write_conf(conf, [pool(max=8), pool("b", RC2, "asg-b", max=8)], interval="200ms",
               metrics=prom)
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for(r"reloaded .*: 2 pools", start=mark)
    w = cloud.wait_until(lambda s: ok_sets(cloud, asg="asg-b"), timeout=10, what="pool b")
    assert [desired_of(r) for r in w] == [3]
    d.wait_for(r"pool=b .*action=noop", start=d.mark())
    # Pool a kept its state across the reload (its counters), pool b started fresh.
    text = prom.read_text()
    assert err_a in text
    assert 'runner_scaler_api_errors_total{pool="b",kind="http_5xx"} 0\n' in text

    # Remove pool a: its queue is no longer read.
    write_conf(conf, [pool("b", RC2, "asg-b", max=8)], interval="200ms", metrics=prom)
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for(r"reloaded .*: 1 pools", start=mark)
    seq = last_seq(cloud)
    d.wait_for(r"pool=b .*action=noop", start=d.mark())
    d.wait_for(r"pool=b .*action=noop", start=d.mark())
    later = cloud.requests(seq)
    assert any(r["params"].get("resource-class") == RC2 for r in later if r["op"] == "tasks")
    assert not any(r["params"].get("resource-class") == RC for r in later
                   if r["op"] in ("tasks", "running"))

    # A broken config is refused; the running one stays.
    conf.write_text(conf.read_text() + "\nbogus_key = 1\n")
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for(r"reload of .* failed; keeping the running config", start=mark)
    d.wait_for(r"pool=b .*action=noop", start=d.mark())
    assert d.stop() == 0


def test_sigterm_finishes_and_exits(cloud, build, tmp_path, daemons):
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms")
    d = daemons(build, conf, scaler_env(cloud))
    d.wait_for(r"pool=a ")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0


def test_metrics_file_and_listen(cloud, build, tmp_path, daemons):
    cloud.add_jobs(RC, 3)
    prom = tmp_path / "runnerd.prom"
    port = free_port()
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)], interval="200ms", metrics=prom,
                      listen=f"127.0.0.1:{port}")
    cloud.fault("runner:running", status=500, times=1)
    d = daemons(build, conf, scaler_env(cloud))
    cloud.wait_until(lambda s: ok_sets(cloud), timeout=10, what="a write")
    mark = d.mark()
    d.wait_for(r"pool=a .*action=noop", start=mark)
    d.wait_for(r"pool=a .*action=noop", start=d.mark())  # a full cycle after the one above
    text = prom.read_text()
    for want in ['runner_scaler_unclaimed_tasks{pool="a"} 3',
                 'runner_scaler_running_tasks{pool="a"} 0',
                 'runner_scaler_desired_capacity{pool="a"} 3',
                 'runner_scaler_current_capacity{pool="a"} 3',
                 'runner_scaler_api_errors_total{pool="a",kind="http_5xx"} 1',
                 'runner_scaler_api_errors_total{pool="a",kind="timeout"} 0',
                 "# TYPE runner_scaler_unclaimed_tasks gauge",
                 "# TYPE runner_scaler_holds_total counter",
                 "runner_scaler_leader 1"]:
        assert want + "\n" in text, (want, text)
    assert re.search(r"^runner_scaler_cycle_duration_seconds \d+\.\d+$", text, re.M)
    # The failed read held that cycle (and maybe the next, backing off with jitter).
    assert int(re.search(r'^runner_scaler_holds_total\{pool="a"\} (\d+)$', text, re.M)[1]) >= 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'runner_scaler_desired_capacity{pool="a"} 3' in body
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert e.value.code == 404
    assert d.stop() == 0
    assert not list(tmp_path.glob("runnerd.prom.tmp*"))  # renamed, never left behind


# ---------------------------------------------------------------------------------------------
# tokens, commands


def test_token_from_secretsmanager_ssm_and_file(cloud, build, tmp_path):
    cloud.add_jobs(RC, 2)
    env = scaler_env(cloud, token="unused")
    del env["CIRCLE_TOKEN"]
    cloud.set_secret("cci-scaler", json.dumps({"circle_token": TOKEN, "other": "x"}))
    conf = write_conf(tmp_path / "sm.conf", [pool(max=8)], token="secretsmanager",
                      token_id="cci-scaler", token_key="circle_token")
    p = run_once(build, conf, env)
    assert p.returncode == 0, p.stderr
    assert TOKEN not in p.stderr

    cloud.set_asg("asg-a", 0, 10, 1)
    cloud.set_parameter("/cci/token", TOKEN + "\n")
    conf = write_conf(tmp_path / "ssm.conf", [pool(max=8)], token="ssm", token_id="/cci/token")
    assert run_once(build, conf, env).returncode == 0

    cloud.set_asg("asg-a", 0, 10, 1)
    tf = tmp_path / "token"
    tf.write_text(f"  {TOKEN}\n")
    conf = write_conf(tmp_path / "f.conf", [pool(max=8)], token="file", token_id=tf)
    assert run_once(build, conf, env).returncode == 0
    assert [desired_of(r) for r in ok_sets(cloud)] == [2, 2, 2]
    used = {r.get("circle_token") for r in cloud.requests() if r["service"] == "runner"}
    assert used == {TOKEN}

    # A missing secret: every pool holds, the problem is named.
    conf = write_conf(tmp_path / "bad.conf", [pool(max=8)], token="secretsmanager",
                      token_id="no-such-secret")
    p = run_once(build, conf, env)
    assert p.returncode == 69
    assert "unable to get the CircleCI API token (token_source = secretsmanager)" in p.stderr
    assert "ResourceNotFoundException" in p.stderr


def test_check_config(cloud, build, tmp_path):
    conf = write_conf(tmp_path / "s.conf", [pool(max=8)])
    env = scaler_env(cloud)
    env["CIRCLECI_RUNNER_API_URL"] = "http://127.0.0.1:1"
    p = subprocess.run([str(build / "runner-scaler"), "check-config", "-c", str(conf)], env=env,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert "api_url = http://127.0.0.1:1\n" in p.stdout
    assert "[pool a]\n" in p.stdout and "max = 8\n" in p.stdout
    assert "interval = 200ms\n" in p.stdout
    assert sets(cloud) == [] and cloud.requests() == []  # it contacts nothing

    bad = tmp_path / "bad.conf"
    bad.write_text("[circleci]\ntoken_source = env\n[pool a]\nresource_class = acme/x\n"
                   "asg = g\nmin = 9\nmax = 3\n")
    p = subprocess.run([str(build / "runner-scaler"), "check-config", "-c", str(bad)], env=env,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 78
    assert f"{bad}:6: min: greater than max" in p.stderr
    assert p.stdout == ""
    p = run_once(build, bad, env)
    assert p.returncode == 78


def test_commands(build):
    rs = str(build / "runner-scaler")
    p = subprocess.run([rs, "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("runner-scaler ")
    p = subprocess.run([rs, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "check-config" in p.stdout
    p = subprocess.run([rs, "--bogus"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 64
    p = subprocess.run([rs, "simulate", "--trace", "/nonexistent/x.csv"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 66 and "/nonexistent/x.csv" in p.stderr  # EX_NOINPUT
    p = subprocess.run([rs, "-c", "/nonexistent/scaler.conf", "--once"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 78


# ---------------------------------------------------------------------------------------------
# election (dynalite)

LEASE_S = 3


def elect_env(fake, dynalite, i):
    akid, secret, token = f"AKIASCALER{i}00000000", f"scaler-secret-{i}", f"cci-token-scaler-{i}"
    fake.credentials(akid, secret)
    fake.set_runner_token(token)
    return scaler_env(fake, token=token, akid=akid, secret=secret, dynamodb=dynalite.url), akid


def start_electors(fake, dynalite, build, tmp_path, daemons, n):
    fake.set_asg("asg-a", 0, 50, 0)
    table = dynalite.create_lease_table()
    conf = write_conf(tmp_path / "s.conf", [pool(max=50)], interval="200ms",
                      election={"table": table, "lease": f"{LEASE_S}s"})
    out = []
    for i in range(n):
        env, akid = elect_env(fake, dynalite, i)
        out.append((daemons(build, conf, env), akid, env["CIRCLE_TOKEN"]))
    return out, table


def writers(fake, since=0):
    return {r["akid"] for r in ok_sets(fake, since=since)}


def queued(fake):
    return len(fake.state()["jobs"].get(RC, {}).get("queued", []))


def wait_write(fake, value, since, timeout, what):
    def pred(_s):
        w = [r for r in ok_sets(fake, since=since) if desired_of(r) == value]
        return w[0] if w else None
    return fake.wait_until(pred, timeout=timeout, what=what)


def test_election_one_writer(cloud, dynalite, build, tmp_path, daemons):
    scalers, table = start_electors(cloud, dynalite, build, tmp_path, daemons, 3)
    akid_of = {s: a for s, a, _ in scalers}
    # Whoever wins writes; change the demand a few times and watch who writes.
    for n in (1, 2, 3):
        cloud.add_jobs(RC, 1)
        wait_write(cloud, queued(cloud), 0, 15, f"write of demand {n}")
    w = writers(cloud)
    assert len(w) == 1, w
    leader_akid = w.pop()
    leader_token = next(t for s, a, t in scalers if a == leader_akid)
    # Followers only contend: no queue reads, no Auto Scaling calls at all.
    for r in cloud.requests():
        if r["service"] == "runner":
            assert r["circle_token"] == leader_token, r
        if r["service"] == "autoscaling":
            assert r["akid"] == leader_akid, r
    item = dynalite.client().get_item(TableName=table, Key={"lease_id": {"S": "runner-scaler"}},
                                      ConsistentRead=True)["Item"]
    leader = next(s for s in akid_of if akid_of[s] == leader_akid)
    assert item["owner"]["S"].endswith(f":{leader.proc.pid}")
    for s in akid_of:
        s.wait_for(r"election: contending for lease runner-scaler")
    assert leader.stop() == 0
    # A clean exit releases the lease: another scaler takes over well within one lease.
    t0 = time.time()
    seq = last_seq(cloud)
    cloud.add_jobs(RC, 1)
    r = wait_write(cloud, queued(cloud), seq, 2 * LEASE_S, "takeover after release")
    assert r["akid"] != leader_akid
    assert r["t"] - t0 < LEASE_S


def test_election_kill9_failover(cloud, dynalite, build, tmp_path, daemons):
    scalers, _ = start_electors(cloud, dynalite, build, tmp_path, daemons, 3)
    cloud.add_jobs(RC, 1)
    first = wait_write(cloud, 1, 0, 15, "first write")
    leader = next(s for s, a, _ in scalers if a == first["akid"])
    seq = last_seq(cloud)
    leader.proc.kill()
    t_kill = time.time()
    leader.proc.wait(5)
    cloud.add_jobs(RC, 1)
    r = wait_write(cloud, 2, seq, 4 * LEASE_S, "failover write")
    assert r["akid"] != first["akid"]
    assert r["t"] - t_kill <= 2 * LEASE_S, r["t"] - t_kill
    assert writers(cloud, since=seq) == {r["akid"]}


def test_election_sigstop_leader_is_fenced(cloud, dynalite, build, tmp_path, daemons):
    """A leader frozen in the middle of a cycle (its queue read outstanding) and continued
    after its lease ended: the read completes with fresh numbers that call for a write, and
    it must not write. The fake's request log says who wrote what when."""
    cloud.set_asg("asg-a", 0, 50, 0)
    table = dynalite.create_lease_table()
    conf = write_conf(tmp_path / "s.conf", [pool(max=50)], interval="200ms",
                      election={"table": table, "lease": f"{LEASE_S}s"})
    env_a, akid_a = elect_env(cloud, dynalite, 0)
    a = daemons(build, conf, env_a)
    cloud.add_jobs(RC, 1)
    wait_write(cloud, 1, 0, 15, "A's first write")
    assert writers(cloud) == {akid_a}
    others = []
    for i in (1, 2):
        env, akid = elect_env(cloud, dynalite, i)
        others.append((daemons(build, conf, env), akid))
    for s, _ in others:
        s.wait_for(r"election: contending")

    # Hold A's next queue read in the fake for a moment and freeze A while it waits.
    fid = cloud.fault("runner:tasks", delay_s=0.2, times=1)
    cloud.wait_until(lambda st: any(f["id"] == fid and f["hits"] == 1 for f in st["faults"]),
                     timeout=10, what="A's read held")
    a.signal(signal.SIGSTOP)
    t_stop = time.time()
    seq = last_seq(cloud)
    cloud.add_jobs(RC, 2)  # the held read will answer 3: worth a write
    r = wait_write(cloud, 3, seq, 4 * LEASE_S, "takeover while A is stopped")
    assert r["akid"] != akid_a
    assert r["t"] - t_stop <= 2 * LEASE_S

    # Continue it, with the queue grown again: a leader that still trusted its old lease
    # would write now. It must not write, ever again (the new leader keeps renewing).
    mark = a.mark()
    seq2 = last_seq(cloud)
    cloud.add_jobs(RC, 1)
    a.signal(signal.SIGCONT)
    a.wait_for(r"election: lost the lease", start=mark, timeout=10)
    r2 = wait_write(cloud, 4, seq2, 10, "next write after A continued")
    assert r2["akid"] == r["akid"]
    late = [x for x in sets(cloud) if x["akid"] == akid_a and x["t"] > t_stop + 0.1]
    assert late == [], (late, a.text())
    # It stopped acting: no queue reads once it noticed.
    seq3 = last_seq(cloud)
    new_leader = next(s for s, akid in others if akid == r["akid"])
    new_leader.wait_for(r"pool=a ", start=new_leader.mark())  # a full cycle later
    assert not [x for x in cloud.requests(seq3)
                if x.get("circle_token") == env_a["CIRCLE_TOKEN"]]
    assert a.proc.poll() is None  # alive, a follower now


def test_election_once_follower_exits_0(cloud, dynalite, build, tmp_path, daemons):
    cloud.set_asg("asg-a", 0, 50, 0)
    table = dynalite.create_lease_table()
    conf = write_conf(tmp_path / "s.conf", [pool(max=50)], interval="200ms",
                      election={"table": table, "lease": f"{LEASE_S}s"})
    env_a, akid_a = elect_env(cloud, dynalite, 0)
    daemons(build, conf, env_a)
    cloud.add_jobs(RC, 1)
    wait_write(cloud, 1, 0, 15, "leader's write")
    env_b, akid_b = elect_env(cloud, dynalite, 1)
    cloud.add_jobs(RC, 1)
    p = run_once(build, conf, env_b)
    assert p.returncode == 0, p.stderr
    assert "another scaler holds the lease" in p.stderr
    assert akid_b not in writers(cloud)


def test_election_leader_renews_past_request_timeouts(cloud, dynalite, build, tmp_path, daemons):
    """Issue 10: the leader keeps its lease for several lease periods, each far past
    2 x request_timeout. (It used to lose it at 2 x request_timeout after start-up: every
    renew and acquire then failed locally with "timeout", nothing was sent, nobody led.)"""
    cloud.set_asg("asg-a", 0, 50, 0)
    table = dynalite.create_lease_table()
    conf = write_conf(tmp_path / "s.conf", [pool(max=50)], interval="200ms",
                      request_timeout="1s", election={"table": table, "lease": f"{LEASE_S}s"})
    env, akid = elect_env(cloud, dynalite, 0)
    d = daemons(build, conf, env)
    cloud.add_jobs(RC, 1)
    first = wait_write(cloud, 1, 0, 15, "the leader's first write")
    t_first = first["t"]

    # A leader reads the queue every interval only while it may act: reads going on three
    # lease periods later mean the lease was held all along.
    horizon = t_first + 3 * LEASE_S

    def late_read(_s):
        return [r for r in cloud.requests(first["seq"])
                if r["service"] == "runner" and r["t"] >= horizon]
    try:
        cloud.wait_until(late_read, timeout=3 * LEASE_S + 5,
                         what="queue reads three lease periods after the first write")
    except AssertionError as e:
        raise AssertionError(f"{str(e)[:300]}\nscaler log:\n{d.text()}") from None
    seq = last_seq(cloud)
    cloud.add_jobs(RC, 1)
    w = wait_write(cloud, 2, seq, 2 * LEASE_S, "the next write")
    assert w["akid"] == akid
    text = d.text()
    assert "lease call" not in text and "lost the lease" not in text, text
    # Each renewal bumps the item's version; one every lease/3.
    item = dynalite.client().get_item(TableName=table, Key={"lease_id": {"S": "runner-scaler"}},
                                      ConsistentRead=True)["Item"]
    renewals = int(item["version"]["N"]) - 1
    expected = (w["t"] - t_first) / (LEASE_S / 3)
    assert renewals >= expected / 2, (renewals, expected)
    assert item["owner"]["S"].endswith(f":{d.proc.pid}")


# ---------------------------------------------------------------------------------------------
# reloads that move or remove the metrics listener while clients are in the same epoll batch


def metrics_get(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        assert r.status == 200
        return r.read().decode()


def served(d, port):
    """The metrics text from the scaler d on port; fails with d's log when it cannot."""
    try:
        return metrics_get(port)
    except OSError as e:
        d.proc.poll()
        raise AssertionError(f"GET /metrics on port {port}: {e!r}; scaler exit status "
                             f"{d.proc.returncode}; its log:\n{d.text()}") from None


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def half_requests(port, n=6):
    """n metrics clients, each connected and mid-request (a head without its blank line).
    Two complete requests afterwards are the handshake: the listener accepts the whole
    backlog in one go, so they are answered only once the n were accepted and registered."""
    socks = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"GET /metrics HTTP/1.0\r\n")
        socks.append(c)
    for _ in range(2):
        metrics_get(port)
    return socks


def finish_requests(socks):
    for c in socks:
        c.sendall(b"\r\n")


def wait_stopped(proc):
    """Block until proc (our child) is stopped (waitid, no polling)."""
    info = os.waitid(os.P_PID, proc.pid, os.WSTOPPED)
    assert info is not None and info.si_code == os.CLD_STOPPED, info


def closed_or_answered(socks, timeout=10):
    """Every client ends: the scaler answers it or closes it (never leaves it hanging)."""
    sel = selectors.DefaultSelector()
    left = {}
    for c in socks:
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        left[c] = b""
    deadline = time.monotonic() + timeout
    try:
        while left:
            t = deadline - time.monotonic()
            assert t > 0, f"{len(left)} metrics clients neither answered nor closed"
            for key, _ in sel.select(t):
                try:
                    chunk = key.fileobj.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    left[key.fileobj] += chunk
                    continue
                sel.unregister(key.fileobj)
                del left[key.fileobj]
    finally:
        sel.close()
        for c in socks:
            c.close()


def recheck_until(pred, timeout, what):
    """Re-check pred() with a deadline, for state that has no change notification (a socket's
    receive queue)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        while not pred():
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            sel.select(0.01)


def reply_waiting(fake_port):
    """True once some socket connected to the fake holds unread bytes (the stopped scaler's
    connection, its held response delivered); from /proc/net/tcp."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            rem_port = int(fields[2].split(":")[1], 16)
            rx_queue = int(fields[4].split(":")[1], 16)
            if rem_port == fake_port and rx_queue > 0:
                return True
    return False


def test_reload_moves_listener_with_clients_in_the_batch_idle(cloud, build, tmp_path, daemons):
    """Issue 10: a SIGHUP that changes or removes [scaler] listen frees the metrics server;
    clients of that server in the same epoll batch must not be touched after it (ASan:
    heap-use-after-free in the loop). The scaler is stopped while the signal and the clients'
    bytes arrive, so one batch holds them, the signal first. Idle: no cycle runs (interval 1h
    after the first)."""
    ports = [free_port() for _ in range(3)]
    conf = tmp_path / "s.conf"
    write_conf(conf, [pool(max=8)], interval="1h", listen=f"127.0.0.1:{ports[0]}")
    d = daemons(build, conf, scaler_env(cloud))
    d.wait_for(r"pool=a ")
    d.wait_for(rf"serving metrics on http://127.0.0.1:{ports[0]}/metrics")
    for old, new in ((ports[0], ports[1]), (ports[1], ports[2]), (ports[2], None)):
        socks = half_requests(old)
        write_conf(conf, [pool(max=8)], interval="1h",
                   listen=f"127.0.0.1:{new}" if new else None)
        mark = d.mark()
        d.signal(signal.SIGSTOP)
        wait_stopped(d.proc)
        d.signal(signal.SIGHUP)
        finish_requests(socks)
        d.signal(signal.SIGCONT)
        d.wait_for(r"reloaded .*: 1 pools", start=mark)
        closed_or_answered(socks)
        assert refused(old)
        if new:
            d.wait_for(rf"serving metrics on http://127.0.0.1:{new}/metrics", start=mark)
            assert 'runner_scaler_desired_capacity{pool="a"}' in served(d, new)
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_reload_moves_listener_with_clients_in_the_batch_cycle(cloud, build, tmp_path, daemons):
    """The same through the cycle-finished path: a SIGHUP during a cycle reloads when the
    cycle's last answer arrives; that answer and the clients' bytes share one batch, the
    answer first (the scaler is stopped until both are in)."""
    cloud.add_jobs(RC, 1)  # demand 1 == current 1: every cycle ends on its reads, no write
    ports = [free_port() for _ in range(4)]
    conf = tmp_path / "s.conf"
    write_conf(conf, [pool(max=8)], interval="200ms", listen=f"127.0.0.1:{ports[0]}")
    d = daemons(build, conf, scaler_env(cloud))
    d.wait_for(rf"serving metrics on http://127.0.0.1:{ports[0]}/metrics")
    d.wait_for(r"pool=a .*action=noop")
    for old, new in ((ports[0], ports[1]), (ports[1], ports[2]), (ports[2], None)):
        socks = half_requests(old)
        fid = cloud.fault("runner:tasks", delay_s=1.0, times=1)
        cloud.wait_until(lambda st: any(f["id"] == fid and f["hits"] == 1
                                        for f in st["faults"]),
                         timeout=10, what="a cycle's queue read held in the fake")
        write_conf(conf, [pool(max=8)], interval="200ms",
                   listen=f"127.0.0.1:{new}" if new else None)
        mark = d.mark()
        d.signal(signal.SIGHUP)  # mid-cycle: the reload waits for the cycle's end
        d.signal(signal.SIGSTOP)
        wait_stopped(d.proc)
        cloud.wait_until(lambda st: [r for r in cloud.requests() if r.get("fault") == fid
                                     and r.get("status")],
                         timeout=10, what="the held read answered")
        recheck_until(lambda: reply_waiting(cloud.port), 10,
                      "the held answer in the stopped scaler's socket")
        finish_requests(socks)
        d.signal(signal.SIGCONT)
        d.wait_for(r"reloaded .*: 1 pools", start=mark)
        closed_or_answered(socks)
        assert refused(old)
        if new:
            d.wait_for(rf"serving metrics on http://127.0.0.1:{new}/metrics", start=mark)
            assert 'runner_scaler_unclaimed_tasks{pool="a"} 1' in served(d, new)
        d.wait_for(r"pool=a .*action=noop", start=d.mark())  # cycles go on
    assert d.proc.poll() is None
    assert d.stop() == 0
