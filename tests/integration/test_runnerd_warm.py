"""runnerd in a warm pool, against the fake cloud (DESIGN.md, warm pools; runnerd(8), WARM
POOLS): the real binary with the fake agent, the fake's instance record of the main identity
put where AWS would have it (POST /_fake/lifecycle), the group's LAUNCHING hook created through
the Auto Scaling API. A stop and start of the instance is two runnerd processes on one state_dir.

Covered: prepare and hook (bake work only, recorded, CompleteLifecycleAction CONTINUE with the
group's name from DescribeAutoScalingInstances, warm-wait); SIGTERM in warm-wait exits 0 with no
Terminate and no power-off; the resume on a later boot (the second hook, the bake work skipped,
the token, the agent, the warm path in runnerctl status); the same-boot resume; "No active
Lifecycle Action" retried; a refused hook failing the boot; an instance that ran an agent never
starting another (ABANDON in the pool, the exit path in service). Every wait is on a condition
with a deadline.
"""

import signal
import time

from conftest import MAIN_INSTANCE_ID
from test_runnerd import (ASG, EX_UNAVAILABLE, RC, TIMEOUT_SCALE, Runnerd,  # noqa: F401
                          assert_exit_path, cloud, ops, rd, terminate_calls)

HOOK = "runner-launch"
NO_ACTION = f"No active Lifecycle Action found with instance ID {MAIN_INSTANCE_ID}"


def hook_calls(fake):
    return [r for r in fake.requests() if r.get("op") == "CompleteLifecycleAction"]


def results(fake):
    return [(r["status"], r["params"]["LifecycleActionResult"]) for r in hook_calls(fake)]


def warm_group(fake, place="Warmed:Pending:Wait", target="Warmed:Stopped"):
    """The main identity's instance in the group's warm pool, waiting on the hook."""
    fake.put_launch_hook(ASG, HOOK)
    fake.lifecycle(MAIN_INSTANCE_ID, place)
    fake.set_imds(target_lifecycle_state=target)


def instance(fake):
    s = fake.state()["asgs"][ASG]
    return next(i for i in s["instances"] + s["warm_instances"] if i["id"] == MAIN_INSTANCE_ID)


def record(r):
    text = (r.tmp / "state" / "runnerd.state").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def boot_in_pool(rd, cloud, **kw):
    """Boot 1 in Warmed:Stopped: the bake work, the hook, warm-wait."""
    warm_group(cloud)
    r = rd(lifecycle={"launch_hook": HOOK}, **kw).start()
    s = r.wait_phase("warm-wait")
    return r, s


def test_prepare_and_hook_then_stopped_quietly(rd, cloud):
    r, s = boot_in_pool(rd, cloud)
    # The pool's path: credentials, the bake work, the hook; no token, no agent.
    assert list(s["phases"]) == ["starting", "metadata", "credentials", "launch-hook",
                                 "packages", "agent-install", "warm-wait"]
    assert s["warm"]["path"] == "prepare" and s["warm"]["launch_hook"] == "CONTINUE"
    assert s["agent"]["pid"] is None and not r.config_path.exists()
    assert "GetSecretValue" not in ops(cloud)
    # The group's name came from DescribeAutoScalingInstances; CONTINUE with the instance id.
    di = [q for q in cloud.requests() if q.get("op") == "DescribeAutoScalingInstances"]
    assert [q["params"]["InstanceIds.member.1"] for q in di] == [MAIN_INSTANCE_ID]
    [c] = hook_calls(cloud)
    assert c["params"] == {"Action": "CompleteLifecycleAction", "Version": "2011-01-01",
                           "LifecycleHookName": HOOK, "AutoScalingGroupName": ASG,
                           "LifecycleActionResult": "CONTINUE",
                           "InstanceId": MAIN_INSTANCE_ID}
    assert c["status"] == 200 and c["signature_ok"] and c["akid"].startswith("ASIA")
    assert instance(cloud)["state"] == "Warmed:Pending:Proceed"
    # The bake work is recorded for this instance; no agent ran.
    rec = record(r)
    assert rec["instance_id"] == MAIN_INSTANCE_ID and int(rec["prepared_ms"]) > 0
    assert rec["agent_started_ms"] == "0"
    # AWS stops the instance: SIGTERM in warm-wait is no ending of runnerd's.
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0, r.stderr()
    assert terminate_calls(cloud) == [] and not r.marker.exists()
    assert results(cloud) == [(200, "CONTINUE")]


def test_resume_completes_the_hook_again_and_skips_the_bake(rd, cloud):
    r, _ = boot_in_pool(rd, cloud, packages="coreutils")
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0, r.stderr()
    r.close()
    # Started into the group: the hook fires again (Pending:Wait), the target is InService.
    cloud.lifecycle(MAIN_INSTANCE_ID, "Pending:Wait")
    cloud.set_imds(target_lifecycle_state="InService")
    r2 = rd(lifecycle={"launch_hook": HOOK}, packages="coreutils")
    r2.start()
    r2.agent_pid()
    s = r2.status()
    assert r2.wait() == 0, r2.stderr()
    # The second hook before the agent; the bake work skipped (no dpkg-query, no apt), the
    # token fetched at resume.
    assert results(cloud) == [(200, "CONTINUE"), (200, "CONTINUE")]
    assert s["warm"]["path"] == "resumed" and s["warm"]["launch_hook"] == "CONTINUE"
    assert s["warm"]["prepared"] and s["warm"]["prepare_seconds"] >= 0
    assert list(s["phases"])[:4] == ["starting", "metadata", "credentials", "launch-hook"]
    err = r2.stderr()
    assert "packages: done in the warm pool" in err and "agent-install: done in the warm pool" \
        in err
    assert "apt-get" not in err
    order = ops(cloud)
    assert order.index("CompleteLifecycleAction") < order.index("GetSecretValue")
    assert r2.events()[:2] == ["started", "claimed job-1"]
    assert_exit_path(r2, cloud)
    assert int(record(r2)["agent_started_ms"]) > 0


def test_runnerctl_status_shows_the_warm_path(rd, cloud):
    r, _ = boot_in_pool(rd, cloud)
    out = r.ctl("status").stdout
    assert "phase:         warm-wait" in out
    assert "warm pool:     in the warm pool: bake work, then waiting to be stopped; launch " \
        "hook CONTINUE" in out
    assert "launch-hook " in out.split("phases:", 1)[1]
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0


def test_same_boot_resume_completes_the_hook_again(rd, cloud):
    """Warmed:Running: no stop; the target turns InService while runnerd waits."""
    r, _ = boot_in_pool(rd, cloud)
    cloud.lifecycle(MAIN_INSTANCE_ID, "Pending:Wait")
    cloud.set_imds(target_lifecycle_state="InService")
    r.agent_pid()
    s = r.status()
    assert r.wait() == 0, r.stderr()
    assert results(cloud) == [(200, "CONTINUE"), (200, "CONTINUE")]
    assert s["warm"]["path"] == "same-boot"
    assert_exit_path(r, cloud)


def test_no_active_action_right_after_the_transition_is_retried(rd, cloud):
    cloud.fault("autoscaling:CompleteLifecycleAction", code="ValidationError",
                message=NO_ACTION, times=2)
    r, s = boot_in_pool(rd, cloud)
    assert results(cloud) == [(400, "CONTINUE"), (400, "CONTINUE"), (200, "CONTINUE")]
    assert "launch-hook: runner-launch completed with CONTINUE (3 calls)" in r.stderr()
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0


def test_a_refused_hook_fails_the_boot_in_service(rd, cloud):
    """Access denied is a configuration error: in service the exit path (AWS would abandon
    the instance at the heartbeat timeout, in the middle of a job)."""
    cloud.put_launch_hook(ASG, HOOK)
    cloud.lifecycle(MAIN_INSTANCE_ID, "Pending:Wait")
    cloud.set_imds(target_lifecycle_state="InService")
    cloud.fault("autoscaling:CompleteLifecycleAction", status=403, code="AccessDenied",
                message="not authorized to perform: autoscaling:CompleteLifecycleAction")
    r = rd(lifecycle={"launch_hook": HOOK}).start()
    assert r.wait() == EX_UNAVAILABLE
    assert "AccessDenied" in r.stderr() and not r.pidfile.exists()
    assert "GetSecretValue" not in ops(cloud)
    assert_exit_path(r, cloud)


def test_used_instance_in_the_pool_abandons(rd, cloud):
    """An instance that ran an agent, back in the pool (ReuseOnScaleIn, or started by hand):
    ABANDON, exit 0, no agent, no Terminate, no power-off."""
    cloud.set_imds(target_lifecycle_state="InService")  # in a group: the agent is recorded
    first = rd().start()
    assert first.wait() == 0, first.stderr()
    assert int(record(first)["agent_started_ms"]) > 0
    first.close()
    first.marker.unlink()
    cloud.set_asg(ASG, min=0, max=5, desired=1,
                  instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"}])
    since = max(q["seq"] for q in cloud.requests())
    warm_group(cloud)
    r = rd(lifecycle={"launch_hook": HOOK}).start()
    assert r.wait() == 0, r.stderr()
    calls = [q for q in hook_calls(cloud) if q["seq"] > since]
    assert [(q["status"], q["params"]["LifecycleActionResult"]) for q in calls] == \
        [(200, "ABANDON")]
    assert instance(cloud)["state"] == "Warmed:Terminating"
    assert "an agent already ran on this instance" in r.stderr()
    assert not r.pidfile.exists() or r.events() == first.events()
    assert [q for q in terminate_calls(cloud) if q["seq"] > since] == []
    assert not r.marker.exists()


def test_used_instance_in_service_takes_the_exit_path(rd, cloud):
    cloud.set_imds(target_lifecycle_state="InService")
    first = rd().start()
    assert first.wait() == 0, first.stderr()
    first.close()
    (first.marker).unlink()
    cloud.set_asg(ASG, min=0, max=5, desired=2,
                  instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                             {"id": "i-00000000000000002", "state": "InService"}])
    cloud.add_jobs(RC, 1)
    since = max(q["seq"] for q in cloud.requests())
    r = rd().start()
    assert r.wait() == EX_UNAVAILABLE, r.stderr()
    assert "an agent already ran on this instance" in r.stderr()
    assert "GetSecretValue" not in [q.get("op") for q in cloud.requests(since)]
    assert len(r.events()) == len(first.events())  # no second agent
    calls = [q for q in terminate_calls(cloud) if q["seq"] > since]
    assert [q["params"]["ShouldDecrementDesiredCapacity"] for q in calls] == ["true"]
    assert r.marker.read_text() == "off\n"


def test_a_record_of_another_instance_means_nothing(rd, cloud):
    """A disk copied into an image from a used instance: its record names another instance."""
    state = rd().tmp / "state"
    state.mkdir(parents=True)
    (state / "runnerd.state").write_text("version=1\ninstance_id=i-0ffffffffffffffff\n"
                                         "agent_started_ms=5\n")
    cloud.set_imds(target_lifecycle_state="InService")
    r = rd().start()
    assert r.wait() == 0, r.stderr()
    assert r.events()[:2] == ["started", "claimed job-1"]
    assert record(r)["instance_id"] == MAIN_INSTANCE_ID
    assert_exit_path(r, cloud)


def test_without_a_target_state_nothing_is_recorded(rd, cloud):
    """IMDS 404 for the target state: no Auto Scaling lifecycle, no warm pool, nothing to
    keep: state_dir is left alone."""
    r = rd().start()
    assert r.wait() == 0, r.stderr()
    assert not (r.tmp / "state").exists()
    assert r.events()[0] == "started"


def test_a_target_state_not_there_yet_is_waited_for_with_a_launch_hook(rd, cloud):
    """IMDS answers 404 for the target state until Auto Scaling has set it (warm-pools.md; AWS's
    ECS agent polls through the 404). With launch_hook set the instance is in a group with a
    LAUNCHING hook: a 404 at boot is "not yet", never "in service" (that would claim a job in
    the pool, which AWS then stops mid-job)."""
    cloud.put_launch_hook(ASG, HOOK)
    cloud.lifecycle(MAIN_INSTANCE_ID, "Warmed:Pending:Wait")
    cloud.set_imds(target_lifecycle_state=None)
    r = rd(lifecycle={"launch_hook": HOOK}).start()
    time.sleep(2 * TIMEOUT_SCALE)
    cloud.set_imds(target_lifecycle_state="Warmed:Stopped")
    s = r.wait_phase("warm-wait", timeout=20)
    assert s["warm"]["path"] == "prepare", r.stderr()
    assert "GetSecretValue" not in ops(cloud) and r.events() == []
    assert results(cloud) == [(200, "CONTINUE")]
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0, r.stderr()


def test_a_target_state_gone_in_warm_wait_is_no_start(rd, cloud):
    """In warm-wait the target was Warmed:* a moment ago: a 404 now says nothing new, and is
    no reason to fetch the token and start an agent in the pool."""
    r, _ = boot_in_pool(rd, cloud)
    cloud.set_imds(target_lifecycle_state=None)
    time.sleep(1.5 * TIMEOUT_SCALE)  # notice_interval is 100 ms: many polls
    s = r.status()
    assert s["phase"] == "warm-wait", r.stderr()
    assert "GetSecretValue" not in ops(cloud) and r.events() == []
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0, r.stderr()
