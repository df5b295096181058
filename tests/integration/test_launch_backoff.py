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
import signal
import tempfile
import time
from pathlib import Path

import pytest

from conftest import PYTHON, REPO
from test_scaler import (RC, RC2, TOKEN, daemons, desired_of, last_seq, pool,  # noqa: F401
                         scaler_env, write_conf)

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
    # Searchable by all: the job user reaches each runner's task agent directory through it
    # (runnerd refuses one it cannot), as in the demo.
    Path(d).chmod(0o755)
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
    """Every instance the group ever held, in launch order."""
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
        assert "AccessDeniedException" in log and "phase: token -> failed" in log, log[-2000:]
        assert f"{iid}: powered off" in log, log[-2000:]
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


@pytest.mark.fake_options(tick_interval=0.25)
def test_without_back_off_the_loop_runs(fake, build, tmp_path, sockdir, daemons):
    """The same group with launch_failures = 0 (detection off: the scaler as it was before the
    back-off): a loop at the group's full width, and not one runner list read."""
    runnerd_group(fake, tmp_path / "work", sockdir, BAD_SECRET)
    deny_secret(fake)
    fake.add_jobs(RC, MAX)
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=MAX, launch_failures=0)],
                      interval="1s")
    d = daemons(build, conf, scaler_env(fake))
    t0 = time.monotonic()
    s = watch(fake, WINDOW_S)
    elapsed = time.monotonic() - t0
    insts, writes = launched(s), set_requests(fake)
    figures = f"{len(insts)} launches and {len(writes)} writes in {elapsed:.0f} s"
    print(f"\nfailing launches, launch_failures = 0: {figures}")
    assert len(insts) >= 4 * MAX, figures
    assert not [r for r in fake.requests() if r.get("op") == "list"]
    assert "launch" not in d.text()


# ---------------------------------------------------------------------------------------------
# healthy churn never trips it


@pytest.mark.fake_options(tick_interval=0.25)
def test_healthy_churn_never_trips(fake, build, tmp_path, sockdir, daemons):
    """Real runnerd instances whose agent claims a job, runs it for 0.3-1 s and exits; runnerd
    leaves with a decrement: 15 jobs through a group of max 3, with the most sensitive setting
    (launch_failures = 1) and a scaler polling every 200 ms, so that many instances are seen
    unconfirmed and many leave between two reads. Not one failed launch."""
    runnerd_group(fake, tmp_path / "work", sockdir, GOOD_SECRET, boot_s=0.2, mx=3)
    prom = tmp_path / "runnerd.prom"
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=3, launch_failures=1)],
                      interval="200ms", metrics=prom)
    d = daemons(build, conf, scaler_env(fake))
    for k in range(15):
        fake.add_jobs(RC, 1, duration_s=0.3 + (k % 4) * 0.25)

    def finished(st):
        jobs = st["jobs"].get(RC, {})
        return st if len(jobs.get("done", [])) == 15 and not st["asgs"][ASG]["instances"] \
            else None

    s = fake.wait_until(finished, timeout=90, what="15 jobs done and the group empty")
    insts = launched(s)
    assert len(insts) >= 5, insts  # churn: instances came and went
    terms = [r for r in fake.requests() if r.get("op") == "TerminateInstanceInAutoScalingGroup"
             and r["status"] == 200]
    assert len(terms) == len(insts)  # each left by itself, after its job
    lists = [r for r in fake.requests() if r.get("op") == "list"]
    assert lists, "detection never read the runner list"
    mark = d.mark()
    d.wait_for(r"pool=a .*action=noop", start=mark)
    d.wait_for(r"pool=a .*action=noop", start=d.mark())  # two cycles with nothing to judge
    # Nothing left to judge: no more runner list reads.
    n_lists = len([r for r in fake.requests() if r.get("op") == "list"])
    d.wait_for(r"pool=a ", start=d.mark())
    d.wait_for(r"pool=a ", start=d.mark())
    assert len([r for r in fake.requests() if r.get("op") == "list"]) == n_lists
    text = prom.read_text()
    assert metric(text, "runner_scaler_launch_failures_total") == 0, text
    assert metric(text, "runner_scaler_pool_backoff_seconds") == 0, text
    assert "launch" not in d.text() and "WARNING" not in d.text(), d.text()
    print(f"\nhealthy churn: {len(insts)} instances, {len(lists)} runner list reads, "
          f"0 failed launches")


# ---------------------------------------------------------------------------------------------
# a runner connecting ends a back-off; the hold rule; instances that never leave Pending

SLOW = "i-0aaaaaaaaaaaaaaa1"


def failing_group(fake, mode="leave", slow=False, mx=6):
    """A group (fake instances, no processes) whose every launch fails its boot after two
    ticks; slow=True adds SLOW, an instance that boots fine and has not connected yet."""
    fake.set_runner_token(TOKEN)
    fake.set_agent_token(AGENT_TOKEN, RC)
    insts = [{"id": SLOW, "state": "Pending", "fail_boot": None}] if slow else 0
    fake.set_asg(ASG, 0, mx, 1 if slow else 0, protect_new=True, fail_boot=mode,
                 fail_boot_ticks=2, instances=insts)


@pytest.mark.fake_options(tick_interval=0.25)
def test_a_connecting_runner_ends_the_back_off(fake, build, tmp_path, daemons):
    failing_group(fake, slow=True)
    fake.add_jobs(RC, 4)
    prom = tmp_path / "runnerd.prom"
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=6)], interval="200ms",
                      metrics=prom)
    d = daemons(build, conf, scaler_env(fake))
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    assert SLOW not in d.lines[i]  # still booting: not judged
    j = d.wait_for(r"pool=a .*action=noop reason=\"launch back-off", start=i)
    seq = max(r["seq"] for r in fake.requests())
    # SLOW's agent connects (claims a job): the runner list names it.
    status, _ = fake.claim(RC, f"ip-10-0-0-9-{SLOW}", AGENT_TOKEN)
    assert status == 200
    t0 = time.monotonic()
    k = d.wait_for(rf"pool a: the runner of {SLOW} connected: launch back-off ended",
                   start=j, timeout=10)
    took = time.monotonic() - t0
    d.wait_for(r"pool=a .*action=set reason=demand", start=k, timeout=10)
    raises = [r for r in set_requests(fake, since=seq)]
    assert raises and desired_of(raises[0]) == 4, raises  # 3 queued + 1 running
    assert took < 10  # the back-off was 60 s
    d.wait_for(r"pool=a ", start=d.mark())
    text = prom.read_text()
    assert metric(text, "runner_scaler_launch_failures_total") >= 3
    assert metric(text, "runner_scaler_pool_backoff_seconds") == 0, text


@pytest.mark.parametrize("fault,kind", [(dict(status=500), "http_5xx"),
                                        (dict(oversize_bytes=3 << 20), "malformed")],
                         ids=["500", "over-its-limit"])
@pytest.mark.fake_options(tick_interval=0.25)
def test_a_runner_list_that_cannot_be_read_judges_nothing(fake, build, tmp_path, daemons, fault,
                                                          kind):
    """The hold rule: while GET /api/v3/runner fails (a 500, or an answer over its limit of
    1 MiB + 4 KiB per instance the group may hold: 1.1 MiB here), the instances that left are
    neither failures nor successes; once it answers, they are judged (they still have no
    runner)."""
    failing_group(fake)
    fake.add_jobs(RC, 3)
    fid = fake.fault("runner:list", **fault)
    prom = tmp_path / "runnerd.prom"
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=3)], interval="200ms",
                      metrics=prom)
    d = daemons(build, conf, scaler_env(fake))
    # Wait until waves have come and gone with the list failing throughout.
    fake.wait_until(lambda st: len(launched(st)) >= 6, timeout=30, what="two failed waves")
    d.wait_for(r"pool=a ", start=d.mark())
    text = prom.read_text()
    assert metric(text, "runner_scaler_launch_failures_total") == 0, text
    assert metric(text, "runner_scaler_pool_backoff_seconds") == 0, text
    errors = re.search(rf'^runner_scaler_api_errors_total{{pool="a",kind="{kind}"}} (\d+)$',
                       text, re.M)
    assert errors and int(errors[1]) >= 2, text
    assert "launches in a row" not in d.text()
    assert "action=hold" not in d.text()  # a failed list read holds no scaling
    hits = next(f["hits"] for f in fake.state()["faults"] if f["id"] == fid)
    assert hits >= 2
    too_large = [x for x in d.lines if x and "is larger than its limit of 1100 KiB" in x]
    assert len(too_large) == (1 if kind == "malformed" else 0), d.text()  # said once
    fake.clear_faults()
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=10)
    n = int(re.search(r"pool a: (\d+) launches", d.lines[i])[1])
    assert n >= 3


PENDING_WINDOW_S = 20.0


def launched_since(state, t, asg=ASG):
    return [i for i in launched(state, asg) if i["launched_at"] > t]


def fake_now(state):
    """The fake's clock (launched_at is on it)."""
    return time.time() + state["clock_offset_s"]


@pytest.mark.fake_options(tick_interval=0.25)
def test_instances_that_never_leave_pending_are_not_replaced_forever(fake, build, tmp_path,
                                                                     daemons):
    """A bad AMI: instances never get past Pending and EC2 ends them without lowering desired
    capacity, so the group itself replaces them at its full width: not raising desired is not
    enough (measured before the fix: 156 launches in 20 s after the warning, desired still 4).
    In the back-off the scaler lowers desired to the runners that connected (none here), so
    the replacements stop; more demand raises nothing. A healthy pool beside it (b: its
    instances boot) scales to its demand as usual."""
    failing_group(fake, mode="pending", mx=4)
    fake.set_asg("asg-b", 0, 3, 0, protect_new=True)
    fake.add_jobs(RC, 4)
    fake.add_jobs(RC2, 2)
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=4),
                                            pool(name="b", rc=RC2, asg="asg-b", max=3)],
                      interval="200ms")
    d = daemons(build, conf, scaler_env(fake))
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    warn = d.lines[i]
    assert "lowering it to the runners that connected" in warn, warn
    at = fake.state()
    t_warn, n_before = fake_now(at), len(launched(at))
    d.wait_for(r'pool=a .*action=set reason="launch back-off: \d+ failed launches in a row, '
               r'\d+ s left: lowered to 0 \(0 runners connected\)"', start=i)
    fake.add_jobs(RC, 2)  # more demand: still no raise
    d.wait_for(r'pool=a .*unclaimed=6 .*desired=0 action=noop reason="launch back-off: \d+ '
               r'failed launches in a row, \d+ s left: not raised to 4 \(0 runners '
               r'connected\)"', start=i)
    s = watch(fake, PENDING_WINDOW_S)
    after = launched_since(s, t_warn)
    figures = (f"{n_before} launches before the warning, {len(after)} in the "
               f"{PENDING_WINDOW_S:.0f} s after it (group max 4)")
    print(f"\ninstances that never leave Pending: {figures}")
    # Bounded: what was launched before the lowering took effect, never a loop.
    assert n_before <= 2 * 4 and len(after) <= 2 * 4, figures
    assert s["asgs"][ASG]["desired"] == 0 and not s["asgs"][ASG]["instances"], s["asgs"][ASG]
    writes = [r for r in set_requests(fake) if r["params"]["AutoScalingGroupName"] == ASG]
    lowered = next(r["seq"] for r in writes if desired_of(r) == 0)
    assert not [r for r in writes if r["seq"] > lowered], writes  # never raised again
    # The healthy pool: at its demand, its instances alive, not one launch judged failed.
    assert s["asgs"]["asg-b"]["desired"] == 2, s["asgs"]["asg-b"]
    assert len(launched(s, "asg-b")) == 2
    judged = [x for x in d.lines if x and re.search(
        r"pool b: .*(launches in a row|left the group without)|pool=b .*launch back-off", x)]
    assert not judged, judged


@pytest.mark.fake_options(tick_interval=0.25)
def test_the_back_off_keeps_the_runners_that_connected(fake, build, tmp_path, daemons):
    """Two runners connected and busy (protected from scale-in, as every runner is), then the
    launches start failing in the "pending" mode: the back-off lowers desired to 2, the two
    runners, and no lower; they keep running their jobs and the failing replacements stop."""
    keep = ["i-0cccccccccccccc01", "i-0cccccccccccccc02"]
    fake.set_runner_token(TOKEN)
    fake.set_agent_token(AGENT_TOKEN, RC)
    fake.set_asg(ASG, 0, 6, 2, protect_new=True, fail_boot="pending", fail_boot_ticks=2,
                 instances=[{"id": x, "state": "InService", "fail_boot": None,
                             "protected": True} for x in keep])
    fake.add_jobs(RC, 2, duration_s=3600)
    for x in keep:
        status, _ = fake.claim(RC, f"ip-10-0-0-9-{x}", AGENT_TOKEN)
        assert status == 200
    fake.add_jobs(RC, 3)  # demand 5: three more instances, which fail
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=6)], interval="200ms")
    d = daemons(build, conf, scaler_env(fake))
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    d.wait_for(r'pool=a .*running=2 .*desired=2 action=set reason="launch back-off: \d+ '
               r'failed launches in a row, \d+ s left: (not raised to 5, )?lowered to 2 \(2 '
               r'runners connected\)"', start=i)
    t_low = fake_now(fake.state())
    s = watch(fake, 6)
    g = s["asgs"][ASG]
    assert g["desired"] == 2, g
    assert sorted(x["id"] for x in g["instances"]) == keep, g["instances"]
    assert all(x["state"] == "InService" for x in g["instances"]), g["instances"]
    assert len(launched_since(s, t_low)) <= 3, launched_since(s, t_low)
    assert len(s["jobs"][RC]["running"]) == 2  # their jobs go on


@pytest.mark.fake_options(tick_interval=0.25)
def test_the_back_off_lowers_no_group_without_scale_in_protection(fake, build, tmp_path, daemons):
    """The same two busy runners in a group without scale-in protection (the docs require it;
    nothing enforces it): the group, not the scaler, picks what a lower desired ends, here
    the oldest first, the busy runners. So the back-off lowers nothing below the usual
    decision there: no raise, and the runners keep their jobs. The warning says why."""
    keep = ["i-0cccccccccccccc01", "i-0cccccccccccccc02"]
    fake.set_runner_token(TOKEN)
    fake.set_agent_token(AGENT_TOKEN, RC)
    fake.set_asg(ASG, 0, 6, 2, protect_new=False, fail_boot="pending", fail_boot_ticks=2,
                 instances=[{"id": x, "state": "InService", "fail_boot": None,
                             "protected": False} for x in keep])
    fake.add_jobs(RC, 2, duration_s=3600)
    for x in keep:
        status, _ = fake.claim(RC, f"ip-10-0-0-9-{x}", AGENT_TOKEN)
        assert status == 200
    fake.add_jobs(RC, 3)  # demand 5: three more instances, which fail
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=6)], interval="200ms")
    d = daemons(build, conf, scaler_env(fake))
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    warn = d.lines[i]
    d.wait_for(r"pool=a .*launch back-off", start=i)
    s = watch(fake, 6)
    g = s["asgs"][ASG]
    alive = [x["id"] for x in g["instances"] if x["state"] == "InService"]
    assert sorted(set(keep) & set(alive)) == keep, g["instances"]
    assert len(s["jobs"][RC]["running"]) == 2  # their jobs go on
    assert g["desired"] == 5, g
    lowered = [x for x in d.lines if x and re.search(r"pool=a .*lowered to", x)]
    assert not lowered, lowered
    assert "not protected from scale-in" in warn, warn


@pytest.mark.fake_options(tick_interval=0.25)
def test_the_back_off_lowers_nothing_on_a_runner_list_it_could_not_read(fake, build, tmp_path,
                                                                        daemons):
    """In a back-off, instances whose runner the scaler could not look up (GET /api/v3/runner
    failing) count as runners: the hold rule, no scale-in on data it could not read. Three
    instances that boot but never connect are put in the group (an operator raising it by
    hand) while the list fails: desired stays at 3. Once the list answers they are judged
    runnerless and desired goes down to the runners that connected (none)."""
    failing_group(fake, mode="pending", mx=4)
    fake.add_jobs(RC, 4)
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=4)], interval="200ms")
    d = daemons(build, conf, scaler_env(fake))
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    d.wait_for(r'pool=a .*action=set reason="launch back-off: .*lowered to 0 \(0 runners '
               r'connected\)"', start=i)
    fake.fault("runner:list", status=500)
    hand = [f"i-0dddddddddddddd0{k}" for k in range(1, 4)]
    fake.set_asg(ASG, 0, 4, 3, protect_new=True, fail_boot="pending", fail_boot_ticks=2,
                 instances=[{"id": x, "state": "InService", "fail_boot": None,
                             "protected": True} for x in hand])
    seq = last_seq(fake)
    j = d.wait_for(r'pool=a .*current=3 desired=3 action=noop reason="launch back-off: \d+ '
                   r'failed launches in a row, \d+ s left: not raised to 4 \(0 runners '
                   r'connected, 3 instances not judged\)"', start=d.mark())
    for _ in range(3):  # more cycles on the same failing list: still nothing lowered
        j = d.wait_for(r"pool=a .*current=3 desired=3 action=noop", start=j + 1)
    assert not [r for r in set_requests(fake, since=seq)
                if r["params"]["AutoScalingGroupName"] == ASG]
    fake.clear_faults()
    d.wait_for(r'pool=a .*current=3 desired=0 action=set reason="launch back-off: \d+ failed '
               r'launches in a row, \d+ s left: not raised to 4, lowered to 0 \(0 runners '
               r'connected\)"', start=j)
    # Protected: lowering desired ended none of them.
    s = fake.state()
    assert sorted(x["id"] for x in s["asgs"][ASG]["instances"]) == hand, s["asgs"][ASG]


@pytest.mark.fake_options(tick_interval=0.25)
def test_a_new_scaler_starts_without_the_back_off(fake, build, tmp_path, daemons):
    """The tracker lives in the process (runner-scaler(8), Launch failures): a restarted
    scaler, or a new leader, starts at 0 failed launches in a row. What that costs: one more
    wave of launches (its first raise) before its own back-off, never a loop."""
    failing_group(fake, mode="pending", mx=4)
    fake.add_jobs(RC, 4)
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=4)], interval="200ms")
    d = daemons(build, conf, scaler_env(fake))
    d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    fake.wait_until(lambda st: (st["asgs"][ASG]["desired"] == 0
                                and not st["asgs"][ASG]["instances"]) or None,
                    timeout=10, what="the group lowered and empty")
    d.stop()
    t_restart = fake_now(fake.state())
    d2 = daemons(build, conf, scaler_env(fake))
    d2.wait_for(r"pool=a .*action=set reason=demand", timeout=10)  # no back-off: it raises
    d2.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    s = fake.wait_until(lambda st: (st["asgs"][ASG]["desired"] == 0
                                    and not st["asgs"][ASG]["instances"]) and st or None,
                        timeout=10, what="the group lowered again")
    n = len(launched_since(s, t_restart))
    print(f"\nafter a restart in a back-off: {n} launches before the next one (max 4)")
    assert 3 <= n <= 2 * 4, n


# ---------------------------------------------------------------------------------------------
# reloads keep the history of the same pool


@pytest.mark.fake_options(tick_interval=0.25)
def test_reload_keeps_the_back_off(fake, build, tmp_path, daemons):
    failing_group(fake)
    fake.add_jobs(RC, 3)
    prom = tmp_path / "runnerd.prom"
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=3)], interval="200ms",
                      metrics=prom)
    d = daemons(build, conf, scaler_env(fake))
    i = d.wait_for(r"WARNING: pool a: \d+ launches in a row left", timeout=30)
    seq = max(r["seq"] for r in fake.requests())
    # The same pool with another max (and a second pool): its back-off goes on.
    fake.set_asg("asg-b", 0, 2, 0)
    write_conf(conf, [pool(asg=ASG, max=2), pool(name="b", rc="acme/arm", asg="asg-b", max=2)],
               interval="200ms", metrics=prom)
    d.signal(signal.SIGHUP)
    d.wait_for(r"pool=b ", start=i)
    d.wait_for(r'pool=a .*reason="launch back-off: \d+ failed launches in a row, \d+ s left: '
               r'not raised to 2 \(0 runners connected\)"', start=d.mark())
    assert not set_requests(fake, since=seq)
    # Off by a reload: no back-off, the raise goes out at once.
    write_conf(conf, [pool(asg=ASG, max=2, launch_failures=0)], interval="200ms",
               metrics=prom)
    d.signal(signal.SIGHUP)
    d.wait_for(r"pool=a .*action=set reason=\"capped at pool max\"", start=d.mark())


@pytest.mark.fake_options(tick_interval=0.25)
def test_what_was_not_watched_is_not_judged(fake, build, tmp_path, daemons):
    """A scaler that saw two instances booting, then did not run (SIGSTOP here; in life a
    standby, or reads that kept failing) while they left without a runner: it never saw them
    leave, so it judges nothing of them; it tracks what it sees from then on, as after a
    restart. The same departures, watched, are two failed launches (the control, below)."""
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=4, launch_failures=1)],
                      interval="200ms", request_timeout="500ms", metrics=tmp_path / "m.prom")
    asg = fake.boto3_client("autoscaling")
    fake.set_runner_token(TOKEN)
    results = {}
    for watched in (False, True):
        fake.set_asg(ASG, 0, 4, 2, protect_new=True, instances=2)
        ids = [i["id"] for i in fake.instances(ASG)]
        seq = last_seq(fake)
        d = daemons(build, conf, scaler_env(fake))
        fake.wait_until(lambda st: [r for r in fake.requests(seq) if r.get("op") == "list"],
                        timeout=10, what="the scaler reading the runner list for them")
        # A decision line: a cycle ended, so the group's describe was taken in (the first
        # cycle's list read may go out beside its describe, before the instances are tracked).
        d.wait_for(r"pool=a ", timeout=10)
        if not watched:
            d.signal(signal.SIGSTOP)
            stopped = time.monotonic()
        for iid in ids:  # they leave, without a runner, as runnerd does after a failed boot
            asg.terminate_instance_in_auto_scaling_group(InstanceId=iid,
                                                         ShouldDecrementDesiredCapacity=False)
        # Both gone (the group may already have launched their replacements, desired 2).
        fake.wait_until(lambda st: not [i for i in st["asgs"][ASG]["instances"]
                                        if i["id"] in ids] or None, timeout=10,
                        what="both gone")
        if not watched:
            # The condition under test is the pause itself: longer than 2 x (interval +
            # request_timeout) = 1.4 s.
            time.sleep(max(0.0, 2.0 - (time.monotonic() - stopped)))
            d.signal(signal.SIGCONT)
            d.wait_for(r"pool a: group not read for \d+ s: the instances seen before are "
                       r"forgotten", timeout=10)
        mark = d.mark()
        d.wait_for(r"pool=a ", start=mark)
        d.wait_for(r"pool=a ", start=d.mark())
        results[watched] = metric((tmp_path / "m.prom").read_text(),
                                  "runner_scaler_launch_failures_total")
        d.stop()
    assert results == {False: 0, True: 2}, results


def test_one_runner_list_read_serves_the_class_check(fake, build, tmp_path):
    """A class that shows no work and a group with an instance not seen connected: the cycle
    reads the runner list once, behind the describe, and the class check uses that answer."""
    from test_scaler import run_once
    fake.set_runner_token(TOKEN)
    fake.set_asg(ASG, 0, 4, 1, instances=[{"id": SLOW, "state": "InService"}])
    conf = write_conf(tmp_path / "s.conf", [pool(asg=ASG, max=4)])
    p = run_once(build, conf, scaler_env(fake))
    assert p.returncode == 0, p.stderr
    lists = [r for r in fake.requests() if r.get("op") == "list"]
    assert len(lists) == 1, lists
    assert "WARNING: pool a: resource class acme/linux lists no runners at all" in p.stderr
    # The answer names a runner of another instance: listed, so no warning, still one read.
    fake.set_agent_token(AGENT_TOKEN, RC)
    fake.claim(RC, "ip-10-0-0-7-i-0bbbbbbbbbbbbbbb2", AGENT_TOKEN)
    seq = last_seq(fake)
    p = run_once(build, conf, scaler_env(fake))
    assert p.returncode == 0, p.stderr
    assert len([r for r in fake.requests(seq) if r.get("op") == "list"]) == 1
    assert "pool a: resource class acme/linux has 1 runners" in p.stderr
