"""A warm pool end to end against the fake cloud: the real runner-scaler keeps the group's pool
at one instance ([pool] warm_pool = 1), and every instance the fake launches is a real runnerd
(tests/demo.py's --instance: its own IMDS identity, its own disk in the work directory) with
the group's LAUNCHING hook in its config and a package whose install takes a while.

What AWS does and runnerd must survive, in order: the pool instance boots in Warmed:Stopped,
does the bake work, completes the hook with CONTINUE and waits; the fake stops it (SIGTERM, as
an ACPI shutdown reaches runnerd) and runnerd exits 0 without leaving the group or powering
off; a job arrives, the scaler raises desired capacity, the fake starts the same instance into
the group (a second boot of the same disk, target InService, the hook firing again); runnerd
completes the hook again, skips the bake work, fetches the token, runs the job and leaves the
group; the pool refills. Every wait is on the fake's state or a log line, with a deadline.
"""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import PYTHON, REPO
from test_scaler import RC, TOKEN, daemons, pool, scaler_env, write_conf  # noqa: F401

DEMO = REPO / "tests" / "demo.py"
ASG = "asg-a"
HOOK = "runner-launch"
SECRET = "cci-runner-secrets"
AGENT_TOKEN = "agent-token-0123456789"


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="rwf-", dir="/tmp")
    Path(d).chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def ops_by(fake, op, iid):
    return [r for r in fake.requests() if r.get("op") == op and r.get("caller_instance") == iid]


@pytest.mark.fake_options(tick_interval=0.2)
def test_pool_instance_prepares_stops_and_resumes_into_a_job(fake, build, tmp_path, sockdir,
                                                             daemons):
    work = tmp_path / "work"
    work.mkdir()
    fake.set_runner_token(TOKEN)
    fake.set_secret(SECRET, json.dumps({"runner_token": AGENT_TOKEN}))
    fake.set_agent_token(AGENT_TOKEN, RC)
    fake.set_asg(ASG, 0, 3, 0, protect_new=True, stop_grace_s=10,
                 launch_command=[PYTHON, str(DEMO), "--instance", str(work), sockdir, RC,
                                 SECRET, "0.2"],
                 launch_env={"DEMO_LAUNCH_HOOK": HOOK, "DEMO_BAKE_SECONDS": "0.5"})
    fake.put_launch_hook(ASG, HOOK)
    conf = write_conf(tmp_path / "s.conf", [pool(max=3, warm_pool=1)], interval="200ms")
    daemons(build, conf, scaler_env(fake))

    def prepared(s):
        ws = [w for w in s["asgs"][ASG]["warm_instances"] if w["state"] == "Warmed:Stopped"]
        return ws[0] if ws else None

    w = fake.wait_until(prepared, timeout=60, what="a prepared, stopped pool instance")
    iid = w["id"]
    # Stopped as AWS stops it: runnerd exited 0, it neither left the group nor powered off.
    assert w["exit_code"] == 0 and w["health"] == "Healthy"
    log = Path(w["log"]).read_text()
    assert "warm-wait" in log and "powered off" not in log
    assert ops_by(fake, "TerminateInstanceInAutoScalingGroup", iid) == []
    [c] = ops_by(fake, "CompleteLifecycleAction", iid)
    assert c["params"]["LifecycleActionResult"] == "CONTINUE" and c["status"] == 200
    assert c["akid"].startswith("ASIA")  # the instance role, from its own IMDS
    assert ops_by(fake, "GetSecretValue", iid) == []  # never the token in the pool
    assert "packages: apt-get install of 1 package(s)" in log

    # A job: the scaler raises desired to 1, the pool's instance is started into the group.
    fake.add_jobs(RC, 1, duration_s=0.5)

    def done(s):
        jobs = s["jobs"].get(RC, {}).get("done", [])
        gone = {i["id"]: i for i in s["terminated"]}
        return jobs and iid in gone and gone[iid]["stopped"] and (jobs[0], gone[iid])

    job, inst = fake.wait_until(done, timeout=60, what="the job done on the resumed instance")
    assert job["runner_name"].endswith(iid)
    assert inst["boots"] == 2 and inst["resumed_at"] and inst["terminated_by_api"]
    hooks = ops_by(fake, "CompleteLifecycleAction", iid)
    assert [(r["params"]["LifecycleActionResult"], r["status"]) for r in hooks] == \
        [("CONTINUE", 200), ("CONTINUE", 200)]
    # Left the group, asking for the decrement first. A call may be retried after a lost reply
    # on a loaded machine, and if the scaler already lowered desired to MinSize (the job done)
    # the group refuses the decrement and runnerd leaves without it (exit_path.c).
    ts = ops_by(fake, "TerminateInstanceInAutoScalingGroup", iid)
    said = [(t["params"].get("ShouldDecrementDesiredCapacity"), t["status"]) for t in ts]
    assert said and said[0][0] == "true", said
    assert [s for s in said if s[1] == 200], said
    second = Path(inst["log"]).read_text()[len(log):]
    assert "packages: done in the warm pool" in second
    assert "agent-install: done in the warm pool" in second
    assert "apt-get install" not in second
    # The time to the agent on the second boot is the boot and runnerd's own steps: a figure,
    # not a bound (the bake work's absence is asserted above).
    claim = job["claimed_at"] - inst["resumed_at"]
    print(f"\nwarm fleet: resumed instance to the job's claim {claim:.1f} s")
    # The pool refilled with another instance.
    fake.wait_until(lambda s: [x for x in s["asgs"][ASG]["warm_instances"] if x["id"] != iid],
                    timeout=30, what="the pool refilled")
