"""runner-scaler's launch-failure back-off against the fake cloud (DESIGN.md, "Launch failures").

An instance that leaves its group without a runner whose name contains its instance id ever
having been listed by the Runner API (GET /api/v3/runner?resource-class=RC) is a failed launch;
after [pool NAME] launch_failures (3) of them in a row the pool stops raising its desired
capacity for a back-off (1 minute, doubling to 30). The failing instances here are real runnerd
processes, launched by the fake per instance with their own IMDS identity (tests/demo.py's
--instance mode), whose runner token secret does not exist: each fails in its token phase,
leaves its group with a decrement and powers off, as on EC2 with a wrong secret ARN.

Waits are on the fake's state generation or on the scaler's log lines, each with a deadline;
the measurement window of the loop tests is a deadline too, not a sleep.
"""

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import PYTHON, REPO
from test_scaler import RC, TOKEN, daemons, pool, scaler_env, write_conf  # noqa: F401

DEMO = REPO / "tests" / "demo.py"
ASG = "asg-a"
MAX = 5
WINDOW_S = 30.0
# The stack's parameter pattern accepts an ARN without Secrets Manager's 6-character suffix,
# which the instance role's policy (granted on the full ARN) does not cover: IAM denies the
# GetSecretValue (deny_secret below).
BAD_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cci-runner-secrets"
GOOD_SECRET = "cci-runner-secrets"
AGENT_TOKEN = "agent-token-0123456789"


@pytest.fixture
def sockdir():
    """runnerd's control sockets: a short directory of their own (108-byte socket paths)."""
    d = tempfile.mkdtemp(prefix="rbo-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def runnerd_group(fake, work, sockdir, secret, boot_s=0.3, mx=MAX, protect=True):
    """Group ASG (0..mx, desired 0) whose every instance is a real runnerd reading its runner
    token from secret (the demo's instance: boot, write runnerd.conf, exec runnerd)."""
    work.mkdir(parents=True, exist_ok=True)
    fake.set_runner_token(TOKEN)
    fake.set_secret(GOOD_SECRET, json.dumps({"runner_token": AGENT_TOKEN}))
    fake.set_agent_token(AGENT_TOKEN, RC)
    fake.set_asg(ASG, 0, mx, 0, protect_new=protect, stop_grace_s=5,
                 launch_command=[PYTHON, str(DEMO), "--instance", str(work), sockdir, RC,
                                 secret, str(boot_s)])


def deny_secret(fake):
    """IAM's answer to GetSecretValue on an ARN the role's policy does not grant."""
    fake.fault("secretsmanager:GetSecretValue", status=400, code="AccessDeniedException",
               message="User: arn:aws:sts::123456789012:assumed-role/runnerd-test-role/i-x is "
               "not authorized to perform: secretsmanager:GetSecretValue on resource: "
               + BAD_SECRET + " because no identity-based policy allows the "
               "secretsmanager:GetSecretValue action")


def launched(state, asg=ASG):
    """Every instance the group ever held: (id, record), in launch order."""
    insts = [i for i in state["terminated"] if i["asg"] == asg]
    insts += state["asgs"][asg]["instances"]
    return sorted(insts, key=lambda i: i["launched_at"])


def set_requests(fake, since=0):
    return [r for r in fake.requests(since)
            if r.get("op") == "SetDesiredCapacity" and r.get("status") == 200]


def watch(fake, seconds, stop=None):
    """Follow the fake's state for seconds (a deadline, event-driven: the state generation),
    or until stop(state) is true. Returns the last state."""
    deadline = time.monotonic() + seconds
    s = fake.state()
    while True:
        if stop and stop(s):
            return s
        left = deadline - time.monotonic()
        if left <= 0:
            return s
        s = fake.state(wait=s["generation"], timeout=min(left, 5))


def metric(text, name, pool_name="a"):
    m = re.search(rf'^{name}\{{pool="{pool_name}"\}} (\S+)$', text, re.M)
    return float(m[1]) if m else None


# ---------------------------------------------------------------------------------------------
# a group whose instances never connect


@pytest.mark.fake_options(tick_interval=0.25)
def test_failing_launches_back_off(fake, build, tmp_path, sockdir, daemons):
    """5 queued jobs, a group of max 5 whose runnerd instances all fail at the token phase.
    Without the back-off this is a loop at the group's full width (the issue measured 50
    launches and 11 writes in 30 s); with it, the first failed wave stops the raises."""
    runnerd_group(fake, tmp_path / "work", sockdir, BAD_SECRET)
    deny_secret(fake)
    fake.add_jobs(RC, MAX)
    prom = tmp_path / "runnerd.prom"
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=MAX)], interval="1s",
                      metrics=prom)
    d = daemons(build, conf, scaler_env(fake))
    t0 = time.monotonic()
    s = watch(fake, WINDOW_S)
    elapsed = time.monotonic() - t0
    insts = launched(s)
    writes = set_requests(fake)
    figures = (f"{len(insts)} launches and {len(writes)} writes in {elapsed:.0f} s "
               f"(group max {MAX}, scaler interval 1 s)")
    print(f"\nfailing launches, launch_failures = 3: {figures}")
    # Bounded: the first wave, and a few more launched before enough of it was judged.
    assert len(insts) <= 2 * MAX, figures
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=5)
    warn = d.lines[i]
    print(warn)
    gone = {x["id"] for x in s["terminated"] if x["asg"] == ASG}
    named = set(re.findall(r"i-[0-9a-f]{8,17}", warn))
    assert len(named) >= 3 and named <= gone, (warn, gone)
    assert "not raising desired capacity for 60 s" in warn, warn
    # Every named instance really failed in runnerd's token phase, left its group itself with
    # a decrement and powered off.
    terms = {r["params"]["InstanceId"]: r for r in fake.requests()
             if r.get("op") == "TerminateInstanceInAutoScalingGroup" and r["status"] == 200}
    for iid in named:
        assert terms[iid]["params"]["ShouldDecrementDesiredCapacity"] == "true"
        log = (fake.log_dir / f"{iid}.log").read_text(errors="replace")
        assert "token" in log and f"{iid}: powered off" in log, log[-2000:]
    # The decision lines say so, and no write raised desired once the back-off began.
    j = d.wait_for(r'pool=a .*action=noop reason="launch back-off: \d+ failed launches in a '
                   r'row, \d+ s left: not raised to 5', start=i)
    print(d.lines[j])
    seq_at = max(r["seq"] for r in fake.requests())
    # The metrics say so.
    d.wait_for(r"pool=a ", start=d.mark())  # a cycle (and its metrics) after the line above
    text = prom.read_text()
    assert metric(text, "runner_scaler_launch_failures_total") >= 3, text
    assert 0 < metric(text, "runner_scaler_pool_backoff_seconds") <= 60, text
    assert "# TYPE runner_scaler_launch_failures_total counter" in text
    assert "# TYPE runner_scaler_pool_backoff_seconds gauge" in text
    s2 = watch(fake, 3)
    assert not set_requests(fake, since=seq_at)
    assert len(launched(s2)) == len(insts)
