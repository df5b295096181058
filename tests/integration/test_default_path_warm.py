"""Warm pools on the default path (tests/integration/test_default_path.py's world: IMDS at
169.254.169.254, AWS at its real names over TLS, the packaged configuration, an environment of
PATH and LANG). A world Instance is one disk: its /var (and so the default state_dir,
/var/lib/runnerd) is an overlay that outlives each runnerd, so two runnerd processes on one
Instance are two boots of one EC2 instance, stopped and started by its warm pool.

- prepare and hook, SIGTERM in warm-wait, then the resume with its second hook: the packaged
  runnerd.conf with launch_hook set (its only change), state_dir at its default;
- reuse: an instance that ran a job, put back into the pool, abandons; started into service
  again, it takes the exit path without an agent;
- runner-scaler's pool management with the stack's scaler.conf plus warm_pool.
Needs root (namespaces); skipped otherwise.
"""

import json
import os
import signal
import subprocess
import time

from conftest import MAIN_INSTANCE_ID
from test_default_path import (AGENT_EVENTS, REGION, STACK, agent_wrapper, assert_real_addresses,
                               aws_calls, installed, packaged_conf, prepare_runner_world,
                               prepare_scaler_world, stack_file, wait_proc)

HOOK = "runner-launch"
GROUP = f"{STACK}-runners"


def hooks(fake):
    return [(r["params"]["LifecycleActionResult"], r["status"])
            for r in aws_calls(fake, "autoscaling", "CompleteLifecycleAction")]


def warm_instance(world, logind, build):
    return world.instance("warm", logind=logind, files={
        "/etc/runnerd/runnerd.conf": packaged_conf(launch_hook=HOOK),
        "/usr/bin/circleci-runner": (agent_wrapper(), 0o755), **installed(build)})


def status(inst):
    r = inst.run(["/usr/bin/runnerctl", "status", "--json"])
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_phase(inst, p, phase, log, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        assert p.poll() is None, log.read_text(errors="replace")
        s = status(inst)
        if s and s["phase"] == phase:
            return s
        assert time.monotonic() < deadline, f"no phase {phase}:\n" + \
            log.read_text(errors="replace")
        try:  # wait on runnerd itself between looks: an exit ends the wait at once
            p.wait(0.1)
        except subprocess.TimeoutExpired:
            pass


def boot(inst, tmp_path, n):
    log = tmp_path / f"runnerd-boot{n}.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    return p, log


def test_warm_pool_prepare_stop_resume_on_the_default_path(world, logind, build, tmp_path):
    fake = world.fake
    prepare_runner_world(fake)
    fake.put_launch_hook(GROUP, HOOK)
    fake.lifecycle(MAIN_INSTANCE_ID, "Warmed:Pending:Wait")
    fake.set_imds(target_lifecycle_state="Warmed:Stopped")
    inst = warm_instance(world, logind, build)
    # Boot 1, in the pool: the bake work, CONTINUE, warm-wait.
    p, log = boot(inst, tmp_path, 1)
    s = wait_phase(inst, p, "warm-wait", log)
    assert s["warm"]["path"] == "prepare" and s["warm"]["launch_hook"] == "CONTINUE"
    assert hooks(fake) == [("CONTINUE", 200)]
    [c] = aws_calls(fake, "autoscaling", "CompleteLifecycleAction")
    assert c["params"]["AutoScalingGroupName"] == GROUP and c["caller_instance"] == \
        MAIN_INSTANCE_ID
    assert aws_calls(fake, "secretsmanager") == []
    state = inst.path("/var/lib/runnerd/runnerd.state")
    assert f"instance_id={MAIN_INSTANCE_ID}\n" in state.read_text()
    assert os.stat(state.parent).st_mode & 0o777 == 0o700
    # AWS stops the instance: systemd sends runnerd SIGTERM on the way down.
    p.send_signal(signal.SIGTERM)
    assert wait_proc(p, 30, "runnerd", log) == 0, log.read_text(errors="replace")
    assert aws_calls(fake, "autoscaling", "TerminateInstanceInAutoScalingGroup") == []
    assert logind.calls() == []
    # Boot 2, started into the group: the second hook, the token, the job, the exit path.
    fake.lifecycle(MAIN_INSTANCE_ID, "Pending:Wait")
    fake.set_imds(target_lifecycle_state="InService")
    p, log2 = boot(inst, tmp_path, 2)
    assert wait_proc(p, 60, "runnerd", log2) == 0, log2.read_text(errors="replace")
    text = log2.read_text(errors="replace")
    assert "packages: done in the warm pool" in text
    assert hooks(fake) == [("CONTINUE", 200), ("CONTINUE", 200)]
    assert inst.path(AGENT_EVENTS).read_text().splitlines()[-1].startswith("completed ")
    assert_real_addresses(fake)
    [t] = aws_calls(fake, "autoscaling", "TerminateInstanceInAutoScalingGroup")
    assert t["params"]["ShouldDecrementDesiredCapacity"] == "true"
    assert logind.calls() == [{"method": "PowerOff", "interactive": False, "uid": 0}]


def test_a_used_instance_never_runs_a_second_agent_on_the_default_path(world, logind, build,
                                                                       tmp_path):
    fake = world.fake
    prepare_runner_world(fake)
    fake.set_imds(target_lifecycle_state="InService")
    inst = warm_instance(world, logind, build)
    # Boot 1, a cold launch in a group with a warm pool's hook: the job, the exit path.
    fake.put_launch_hook(GROUP, HOOK)
    fake.lifecycle(MAIN_INSTANCE_ID, "Pending:Wait")
    p, log = boot(inst, tmp_path, 1)
    assert wait_proc(p, 60, "runnerd", log) == 0, log.read_text(errors="replace")
    events = inst.path(AGENT_EVENTS).read_text().splitlines()
    assert events[-1].startswith("completed ")
    assert "agent_started_ms=0\n" not in inst.path("/var/lib/runnerd/runnerd.state").read_text()
    # Boot 2: the same disk back in the pool (ReuseOnScaleIn, a start by hand): ABANDON.
    prepare_runner_world(fake)
    fake.put_launch_hook(GROUP, HOOK)
    fake.lifecycle(MAIN_INSTANCE_ID, "Warmed:Pending:Wait")
    fake.set_imds(target_lifecycle_state="Warmed:Stopped")
    calls = len(logind.calls())
    p, log2 = boot(inst, tmp_path, 2)
    assert wait_proc(p, 60, "runnerd", log2) == 0, log2.read_text(errors="replace")
    assert hooks(fake)[-1] == ("ABANDON", 200)
    assert len(aws_calls(fake, "autoscaling", "TerminateInstanceInAutoScalingGroup")) == 1
    assert len(logind.calls()) == calls
    assert inst.path(AGENT_EVENTS).read_text().splitlines() == events
    # Boot 3: in service again: the exit path at once, still no second agent.
    fake.lifecycle(MAIN_INSTANCE_ID, "InService")
    fake.set_imds(target_lifecycle_state="InService")
    p, log3 = boot(inst, tmp_path, 3)
    assert wait_proc(p, 60, "runnerd", log3) != 0
    assert "an agent already ran on this instance" in log3.read_text(errors="replace")
    assert inst.path(AGENT_EVENTS).read_text().splitlines() == events
    assert len(aws_calls(fake, "autoscaling", "TerminateInstanceInAutoScalingGroup")) == 2
    assert len(logind.calls()) == calls + 1
    assert_real_addresses(fake)


def test_scaler_warm_pool_on_the_default_path(world, build, tmp_path):
    """The stack's scaler.conf with warm_pool = 2 in its pool: DescribeWarmPool and one
    PutWarmPool at autoscaling.REGION.amazonaws.com over TLS with the instance role, the
    desired capacity as the queue says (the pool is outside it); a second run writes nothing."""
    prepare_scaler_world(world)
    conf = stack_file("ScalerLaunchTemplate", "/etc/runnerd/scaler.conf")
    head, sep, tail = conf.partition("\n[pool ")
    assert sep, conf
    name, _, body = tail.partition("]\n")
    conf = f"{head}{sep}{name}]\nwarm_pool = 2\n{body}"
    inst = world.instance("scaler", files={"/etc/runnerd/scaler.conf": conf,
                                           **installed(build)})
    for _ in range(2):
        r = inst.run(["/usr/sbin/runner-scaler", "--once"], timeout=40)
        assert r.returncode == 0, r.stdout + r.stderr
    fake = world.fake
    [put] = aws_calls(fake, "autoscaling", "PutWarmPool")
    assert put["params"]["MinSize"] == put["params"]["MaxGroupPreparedCapacity"] == "2"
    assert put["params"]["InstanceReusePolicy.ReuseOnScaleIn"] == "false"
    assert put["host"] == f"autoscaling.{REGION}.amazonaws.com"
    assert len(aws_calls(fake, "autoscaling", "DescribeWarmPool")) == 2
    assert [s["params"]["DesiredCapacity"]
            for s in aws_calls(fake, "autoscaling", "SetDesiredCapacity")] == ["3"]
    assert_real_addresses(fake)
