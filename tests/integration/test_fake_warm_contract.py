"""Contract tests for the fake's warm pools and lifecycle hooks (tests/fakes/fake_warm.py).

boto3 drives PutWarmPool, DescribeWarmPool, DeleteWarmPool, PutLifecycleHook,
DescribeLifecycleHooks, CompleteLifecycleAction, RecordLifecycleActionHeartbeat and
DescribeAutoScalingInstances, which proves the fake speaks their wire format (botocore parses
every answer; every request's signature is checked by the fake and cross-checked with
botocore's signer). The model is driven by ticks (POST /_fake/tick) and the fake clock, so
nothing here waits on time.
Run: /usr/bin/python3 -m pytest -q tests/integration/test_fake_warm_contract.py
"""

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import INSTANCE_PROBE, PYTHON

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
HOOK = "runner-launch"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


def asc(fake):
    return fake.boto3_client("autoscaling", config=NO_RETRY)


def err(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def group(fake, name="pool"):
    return fake.state()["asgs"][name]


def states(insts):
    return [i["state"] for i in insts]


def assert_signed_ops(fake, ops):
    """Every request of these operations was signed right (and botocore agrees)."""
    seen = [r for r in fake.requests() if r.get("op") in ops]
    assert {r["op"] for r in seen} == set(ops)
    for r in seen:
        assert r["signature_ok"] and r["botocore_agrees"] is True, r


def test_lifecycle_hooks_put_describe_and_errors(fake):
    fake.set_asg("pool", 0, 4)
    a = asc(fake)
    a.put_lifecycle_hook(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                         LifecycleTransition=LAUNCHING, HeartbeatTimeout=600,
                         DefaultResult="ABANDON")
    hooks = a.describe_lifecycle_hooks(AutoScalingGroupName="pool")["LifecycleHooks"]
    assert [(h["LifecycleHookName"], h["LifecycleTransition"], h["HeartbeatTimeout"],
             h["DefaultResult"], h["AutoScalingGroupName"]) for h in hooks] == \
        [(HOOK, LAUNCHING, 600, "ABANDON", "pool")]
    # An update keeps what it leaves out; a new hook gets AWS's defaults.
    a.put_lifecycle_hook(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                         DefaultResult="CONTINUE")
    a.put_lifecycle_hook(LifecycleHookName="other", AutoScalingGroupName="pool",
                         LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING")
    hooks = {h["LifecycleHookName"]: h
             for h in a.describe_lifecycle_hooks(AutoScalingGroupName="pool")["LifecycleHooks"]}
    assert (hooks[HOOK]["HeartbeatTimeout"], hooks[HOOK]["DefaultResult"]) == (600, "CONTINUE")
    assert (hooks["other"]["HeartbeatTimeout"], hooks["other"]["DefaultResult"]) == \
        (3600, "ABANDON")
    for kw, text in [({"LifecycleTransition": "autoscaling:EC2_INSTANCE_BOOTED"},
                      "Lifecycle Transition"),
                     ({"LifecycleTransition": LAUNCHING, "HeartbeatTimeout": 10}, "Heartbeat"),
                     ({"LifecycleTransition": LAUNCHING, "DefaultResult": "MAYBE"},
                      "DefaultResult")]:
        with pytest.raises(ClientError) as e:
            a.put_lifecycle_hook(LifecycleHookName="bad", AutoScalingGroupName="pool", **kw)
        assert err(e)[0] == "ValidationError" and text in err(e)[1]
    with pytest.raises(ClientError) as e:
        a.put_lifecycle_hook(LifecycleHookName="h", AutoScalingGroupName="nope",
                             LifecycleTransition=LAUNCHING)
    assert "not found" in err(e)[1]
    a.delete_lifecycle_hook(LifecycleHookName="other", AutoScalingGroupName="pool")
    assert [h["LifecycleHookName"] for h in
            a.describe_lifecycle_hooks(AutoScalingGroupName="pool")["LifecycleHooks"]] == [HOOK]
    assert_signed_ops(fake, ["PutLifecycleHook", "DescribeLifecycleHooks",
                             "DeleteLifecycleHook"])


def test_warm_pool_put_describe_and_the_pool_fills(fake):
    """A fixed pool of 2 (MinSize = MaxGroupPreparedCapacity = 2): two instances launch into
    the pool and stop there, outside the group's own instances and its desired capacity."""
    fake.set_asg("pool", 0, 5, desired=1, instances=1)
    a = asc(fake)
    d = a.describe_warm_pool(AutoScalingGroupName="pool")
    assert "WarmPoolConfiguration" not in d and d["Instances"] == []
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=2, MaxGroupPreparedCapacity=2,
                    PoolState="Stopped", InstanceReusePolicy={"ReuseOnScaleIn": False})
    d = a.describe_warm_pool(AutoScalingGroupName="pool")
    assert d["WarmPoolConfiguration"] == {"MinSize": 2, "MaxGroupPreparedCapacity": 2,
                                          "PoolState": "Stopped",
                                          "InstanceReusePolicy": {"ReuseOnScaleIn": False}}
    s = fake.tick()
    assert states(s["asgs"]["pool"]["warm_instances"]) == ["Warmed:Pending"] * 2
    fake.tick()
    s = fake.tick()
    g = s["asgs"]["pool"]
    assert states(g["warm_instances"]) == ["Warmed:Stopped"] * 2
    assert [i["target_lifecycle_state"] for i in g["warm_instances"]] == ["Warmed:Stopped"] * 2
    d = a.describe_warm_pool(AutoScalingGroupName="pool")
    assert [i["LifecycleState"] for i in d["Instances"]] == ["Warmed:Stopped"] * 2
    # The group itself: one instance, desired 1, no pool instance among its own.
    desc = a.describe_auto_scaling_groups(AutoScalingGroupNames=["pool"])
    grp = desc["AutoScalingGroups"][0]
    assert grp["DesiredCapacity"] == 1 and len(grp["Instances"]) == 1
    pool_ids = {i["InstanceId"] for i in d["Instances"]}
    assert not pool_ids & {i["InstanceId"] for i in grp["Instances"]}
    # DescribeAutoScalingInstances lists pool instances with their group's name.
    di = a.describe_auto_scaling_instances(InstanceIds=sorted(pool_ids))
    assert {(i["InstanceId"], i["AutoScalingGroupName"], i["LifecycleState"])
            for i in di["AutoScalingInstances"]} == {(p, "pool", "Warmed:Stopped")
                                                     for p in pool_ids}
    # A pool instance is not terminated through the group.
    with pytest.raises(ClientError) as e:
        a.terminate_instance_in_auto_scaling_group(InstanceId=sorted(pool_ids)[0],
                                                   ShouldDecrementDesiredCapacity=True)
    assert err(e)[0] == "ValidationError" and "warm pool" in err(e)[1]
    # A smaller pool: the extra instance is terminated.
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=1, MaxGroupPreparedCapacity=1)
    s = fake.tick()
    assert sorted(states(s["asgs"]["pool"]["warm_instances"])) == \
        ["Warmed:Stopped", "Warmed:Terminating"]
    s = fake.tick()
    assert states(s["asgs"]["pool"]["warm_instances"]) == ["Warmed:Stopped"]
    assert [i["cause"] for i in s["terminated"]] == ["pool-shrunk"]
    # Bad input, as AWS words it (botocore itself refuses a MaxGroupPreparedCapacity below -1).
    for kw in ({"MinSize": 3, "MaxGroupPreparedCapacity": 2}, {"PoolState": "Frozen"}):
        with pytest.raises(ClientError) as e:
            a.put_warm_pool(AutoScalingGroupName="pool", **kw)
        assert err(e)[0] == "ValidationError"
    assert_signed_ops(fake, ["PutWarmPool", "DescribeWarmPool", "DescribeAutoScalingInstances"])


def test_pool_size_follows_max_prepared_and_desired(fake):
    """Without MinSize the pool is MaxGroupPreparedCapacity (unset: MaxSize) - desired."""
    fake.set_asg("pool", 0, 4, desired=1, instances=1)
    a = asc(fake)
    a.put_warm_pool(AutoScalingGroupName="pool")  # MaxSize 4 - desired 1
    assert len(fake.tick()["asgs"]["pool"]["warm_instances"]) == 3
    d = a.describe_warm_pool(AutoScalingGroupName="pool", MaxRecords=2)
    assert len(d["Instances"]) == 2 and d["NextToken"]
    d2 = a.describe_warm_pool(AutoScalingGroupName="pool", NextToken=d["NextToken"])
    assert len(d2["Instances"]) == 1 and "NextToken" not in d2
    assert "MaxGroupPreparedCapacity" not in d["WarmPoolConfiguration"]
    with pytest.raises(ClientError) as e:
        a.describe_warm_pool(AutoScalingGroupName="pool", NextToken="garbage")
    assert err(e)[0] == "InvalidNextToken"
    a.delete_warm_pool(AutoScalingGroupName="pool")
    d = a.describe_warm_pool(AutoScalingGroupName="pool")
    assert d["WarmPoolConfiguration"]["Status"] == "PendingDelete"
    s = fake.tick(2)
    assert s["asgs"]["pool"]["warm_instances"] == [] and s["asgs"]["pool"]["warm_pool"] is None
    assert "WarmPoolConfiguration" not in a.describe_warm_pool(AutoScalingGroupName="pool")


def test_launching_hook_into_the_pool_and_out_of_it(fake):
    """The hook fires in the pool (Warmed:Pending:Wait) and again when the instance is
    started into the group (Pending:Wait); CompleteLifecycleAction answers it, and a second
    answer finds no action."""
    fake.set_asg("pool", 0, 4)
    a = asc(fake)
    a.put_lifecycle_hook(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                         LifecycleTransition=LAUNCHING, HeartbeatTimeout=300)
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=1, MaxGroupPreparedCapacity=1)
    g = fake.tick()["asgs"]["pool"]
    [w] = g["warm_instances"]
    assert (w["state"], w["lifecycle_action"]) == ("Warmed:Pending:Wait", HOOK)
    iid = w["id"]
    assert fake.tick(3)["asgs"]["pool"]["warm_instances"][0]["state"] == "Warmed:Pending:Wait"
    [di] = a.describe_auto_scaling_instances(InstanceIds=[iid])["AutoScalingInstances"]
    assert (di["AutoScalingGroupName"], di["LifecycleState"]) == ("pool",
                                                                  "Warmed:Pending:Wait")
    a.complete_lifecycle_action(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                                LifecycleActionResult="CONTINUE", InstanceId=iid)
    assert group(fake)["warm_instances"][0]["state"] == "Warmed:Pending:Proceed"
    with pytest.raises(ClientError) as e:
        a.complete_lifecycle_action(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                                    LifecycleActionResult="CONTINUE", InstanceId=iid)
    assert err(e) == ("ValidationError", f"No active Lifecycle Action found with instance ID "
                      f"{iid}")
    assert fake.tick()["asgs"]["pool"]["warm_instances"][0]["state"] == "Warmed:Stopped"
    # Desired rises: the pool's instance is started into the group, the hook fires again.
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=1)
    g = fake.tick()["asgs"]["pool"]
    [inst] = g["instances"]
    assert inst["id"] == iid and inst["state"] == "Pending:Wait" and inst["resumed_at"]
    assert inst["target_lifecycle_state"] == "InService"
    # ... and the pool refills with a new instance.
    assert [w["id"] != iid for w in g["warm_instances"]] == [True]
    grp = a.describe_auto_scaling_groups(AutoScalingGroupNames=["pool"])["AutoScalingGroups"][0]
    assert [(i["InstanceId"], i["LifecycleState"]) for i in grp["Instances"]] == \
        [(iid, "Pending:Wait")]
    a.complete_lifecycle_action(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                                LifecycleActionResult="CONTINUE", InstanceId=iid)
    assert group(fake)["instances"][0]["state"] == "Pending:Proceed"
    assert fake.tick()["asgs"]["pool"]["instances"][0]["state"] == "InService"
    # Wrong hook, bad result, neither id nor token.
    for kw, text in [({"LifecycleHookName": "nope", "LifecycleActionResult": "CONTINUE",
                       "InstanceId": iid}, "No Lifecycle Hook found"),
                     ({"LifecycleHookName": HOOK, "LifecycleActionResult": "MAYBE",
                       "InstanceId": iid}, "lifecycleActionResult"),
                     ({"LifecycleHookName": HOOK, "LifecycleActionResult": "CONTINUE"},
                      "InstanceId or LifecycleActionToken")]:
        with pytest.raises(ClientError) as e:
            a.complete_lifecycle_action(AutoScalingGroupName="pool", **kw)
        assert err(e)[0] == "ValidationError" and text in err(e)[1], err(e)
    assert_signed_ops(fake, ["CompleteLifecycleAction", "DescribeAutoScalingInstances"])


def test_cold_launch_with_hook_and_abandon(fake):
    """No pool: the hook fires once, at Pending:Wait; ABANDON terminates the instance (and the
    group launches a replacement: desired still counts it)."""
    fake.set_asg("pool", 0, 3)
    a = asc(fake)
    a.put_lifecycle_hook(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                         LifecycleTransition=LAUNCHING, HeartbeatTimeout=300)
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=1)
    [inst] = fake.tick()["asgs"]["pool"]["instances"]
    assert inst["state"] == "Pending:Wait" and inst["resumed_at"] is None
    assert fake.tick()["asgs"]["pool"]["instances"][0]["state"] == "Pending:Wait"
    a.complete_lifecycle_action(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                                LifecycleActionResult="ABANDON", InstanceId=inst["id"])
    g = group(fake)
    assert [(i["id"], i["state"], i["cause"]) for i in g["instances"]] == \
        [(inst["id"], "Terminating", "abandoned")]
    assert g["instances"][0]["target_lifecycle_state"] == "Terminated"
    s = fake.tick()
    assert [i["id"] for i in s["terminated"]] == [inst["id"]]
    assert [i["state"] for i in s["asgs"]["pool"]["instances"]] == ["Pending:Wait"]


def test_heartbeat_timeout_applies_default_result(fake):
    fake.set_asg("pool", 0, 3)
    a = asc(fake)
    a.put_lifecycle_hook(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                         LifecycleTransition=LAUNCHING, HeartbeatTimeout=30,
                         DefaultResult="ABANDON")
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=1, MaxGroupPreparedCapacity=1)
    [w] = fake.tick()["asgs"]["pool"]["warm_instances"]
    # A heartbeat pushes the timeout out again.
    fake.advance_clock(20)
    a.record_lifecycle_action_heartbeat(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                                        InstanceId=w["id"])
    fake.advance_clock(20)
    assert fake.tick()["asgs"]["pool"]["warm_instances"][0]["state"] == "Warmed:Pending:Wait"
    fake.advance_clock(11)
    g = fake.tick()["asgs"]["pool"]
    gone = [i for i in g["warm_instances"] if i["id"] == w["id"]]
    assert [(i["state"], i["cause"]) for i in gone] == [("Warmed:Terminating",
                                                        "heartbeat-timeout")]
    assert gone[0]["target_lifecycle_state"] == "Warmed:Terminated"
    s = fake.tick()
    assert w["id"] in {i["id"] for i in s["terminated"]}
    assert len(s["asgs"]["pool"]["warm_instances"]) == 1  # its replacement, waiting
    # DefaultResult CONTINUE: the pool instance is stopped as if completed.
    a.put_lifecycle_hook(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                         DefaultResult="CONTINUE")
    [w2] = s["asgs"]["pool"]["warm_instances"]
    fake.advance_clock(31)
    s = fake.tick(2)
    assert [(i["id"], i["state"]) for i in s["asgs"]["pool"]["warm_instances"]] == \
        [(w2["id"], "Warmed:Stopped")]
    # A token identifies an action as well as an instance id does (none waiting now).
    with pytest.raises(ClientError) as e:
        a.complete_lifecycle_action(LifecycleHookName=HOOK, AutoScalingGroupName="pool",
                                    LifecycleActionResult="CONTINUE",
                                    LifecycleActionToken="0b7e1b8e-0000-4000-8000-000000000000")
    assert "No active Lifecycle Action found with token" in err(e)[1]


def probe_cmd(out):
    return [PYTHON, str(INSTANCE_PROBE), str(out), "wait"]


def test_pool_instance_is_a_process_stopped_and_started(fake, tmp_path):
    """With a launch_command a pool instance is a process: it boots seeing Warmed:Stopped in
    its own IMDS, is stopped (SIGTERM, its exit waited for) into Warmed:Stopped, and started
    into the group again with the same instance id: a second boot that sees InService."""
    out = tmp_path / "reports"
    out.mkdir()
    fake.set_asg("pool", 0, 3, launch_command=probe_cmd(out), stop_grace_s=5)
    a = asc(fake)
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=1, MaxGroupPreparedCapacity=1)
    [w] = fake.tick()["asgs"]["pool"]["warm_instances"]
    iid = w["id"]
    # The probe's last IMDS read is its target state; SIGTERM is blocked and recorded from
    # before its first (instance_probe.py). Without a launch hook nothing else holds the stop
    # back: AWS stops a slow instance just as well.
    def booted(n):
        return lambda s: sum(r["op"] == "meta-data/autoscaling/target-lifecycle-state"
                             and r["listener"] == iid for r in fake.requests()) >= n

    fake.wait_until(booted(1), what="the probe's first boot")
    fake.tick()  # Warmed:Pending -> Warmed:Pending:Proceed
    fake.tick()  # ... -> stopping: SIGTERM

    def stopped(s):
        ws = s["asgs"]["pool"]["warm_instances"]
        return ws and ws[0]["state"] == "Warmed:Stopped" and ws[0]

    w = fake.wait_until(stopped, what="the pool instance to stop")
    first = json.loads((out / f"{iid}.json").read_text())
    assert w["stopped"] and w["exit_code"] == 0 and w["health"] == "Healthy", first
    assert first["target_lifecycle_state"] == "Warmed:Stopped"
    assert first["signal"] == "SIGTERM"
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=1)
    [inst] = fake.tick()["asgs"]["pool"]["instances"]
    assert inst["id"] == iid and inst["boots"] == 2 and not inst["stopped"]
    assert fake.tick()["asgs"]["pool"]["instances"][0]["state"] == "InService"
    fake.wait_until(booted(2), what="the second boot")
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=0, MaxGroupPreparedCapacity=0)
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=0)
    fake.tick(2)

    def ended(s):
        done = {i["id"]: i for i in s["terminated"]}
        return iid in done and done[iid]["stopped"] and done[iid]

    done = fake.wait_until(ended, what="the resumed instance to end")
    second = json.loads((out / f"{iid}.json").read_text())
    assert done["exit_code"] == 0, second
    assert second["target_lifecycle_state"] == "InService"
    assert second["imds_instance_id"] == iid and second["pid"] != first["pid"]
    assert second["signal"] == "SIGTERM"


def test_reuse_on_scale_in_returns_the_instance_to_the_pool(fake):
    fake.set_asg("pool", 0, 3, desired=1, instances=1)
    a = asc(fake)
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=0, MaxGroupPreparedCapacity=1,
                    InstanceReusePolicy={"ReuseOnScaleIn": True})
    iid = group(fake)["instances"][0]["id"]
    fake.tick()
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=0)
    g = fake.tick()["asgs"]["pool"]
    assert g["instances"] == []
    assert [(w["id"], w["state"], w["cause"]) for w in g["warm_instances"]] == \
        [(iid, "Warmed:Pending", "reused")]
    s = fake.tick(2)
    assert [(w["id"], w["state"]) for w in s["asgs"]["pool"]["warm_instances"]] == \
        [(iid, "Warmed:Stopped")]
    assert s["terminated"] == []
    # ReuseOnScaleIn false (the default): scale-in terminates.
    a.put_warm_pool(AutoScalingGroupName="pool", MinSize=0, MaxGroupPreparedCapacity=1)
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=1)
    assert fake.tick()["asgs"]["pool"]["instances"][0]["id"] == iid
    a.set_desired_capacity(AutoScalingGroupName="pool", DesiredCapacity=0)
    s = fake.tick()
    assert [(i["id"], i["state"]) for i in s["asgs"]["pool"]["instances"]] == \
        [(iid, "Terminating")]
