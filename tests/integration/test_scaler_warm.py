"""runner-scaler's warm pools against the fake cloud (DESIGN.md, runner-scaler: warm pools;
runner-scaler(8), WARM POOLS): [pool NAME] warm_pool = N keeps the group's pool at N prepared,
stopped instances never reused on scale-in; PutWarmPool only when DescribeWarmPool shows
otherwise, only as the leader; desired capacity stays unclaimed + running; a failed
DescribeWarmPool never changes scaling. The fake's request log is the witness of every call
(signed, and checked with botocore's signer)."""

import re

from conftest import FakeCloud  # noqa: F401
from test_scaler import (RC, cloud, daemons, desired_of, elect_env, last_seq,  # noqa: F401
                         ok_sets, pool, run_once, scaler_env, wait_write, write_conf)

LEASE_S = 3


def warm_calls(fake, op, since=0):
    return [r for r in fake.requests(since) if r.get("op") == op]


def puts(fake, since=0):
    return warm_calls(fake, "PutWarmPool", since)


def pool_conf(fake):
    return fake.boto3_client("autoscaling").describe_warm_pool(
        AutoScalingGroupName="asg-a").get("WarmPoolConfiguration")


def test_put_once_then_only_reads(cloud, build, tmp_path):
    conf = write_conf(tmp_path / "s.conf", [pool(max=10, warm_pool=2)])
    env = scaler_env(cloud)
    p = run_once(build, conf, env)
    assert p.returncode == 0, p.stderr
    [put] = puts(cloud)
    assert put["status"] == 200 and put["signature_ok"] and put["botocore_agrees"] is True
    assert put["params"] == {"Action": "PutWarmPool", "Version": "2011-01-01",
                             "AutoScalingGroupName": "asg-a", "MinSize": "2",
                             "MaxGroupPreparedCapacity": "2", "PoolState": "Stopped",
                             "InstanceReusePolicy.ReuseOnScaleIn": "false"}
    assert pool_conf(cloud) == {"MinSize": 2, "MaxGroupPreparedCapacity": 2,
                                "PoolState": "Stopped",
                                "InstanceReusePolicy": {"ReuseOnScaleIn": False}}
    assert re.search(r"pool=a warm_pool=2 action=put reason=\"no warm pool: "
                     r"MinSize=MaxGroupPreparedCapacity=2 PoolState=Stopped "
                     r"ReuseOnScaleIn=false\"", p.stderr), p.stderr
    # The describe came first, in the same cycle as the group's.
    ops = [r["op"] for r in cloud.requests() if r["service"] == "autoscaling"]
    assert ops.index("DescribeWarmPool") < ops.index("PutWarmPool")
    # The pool fills (outside the group); later cycles read it and write nothing.
    cloud.tick(3)
    seq = last_seq(cloud)
    for _ in range(2):
        p = run_once(build, conf, env)
        assert p.returncode == 0 and "warm_pool" not in p.stderr, p.stderr
    assert puts(cloud, seq) == [] and len(warm_calls(cloud, "DescribeWarmPool", seq)) == 2


def test_a_pool_that_differs_is_written_back(cloud, build, tmp_path):
    a = cloud.boto3_client("autoscaling")
    conf = write_conf(tmp_path / "s.conf", [pool(max=10, warm_pool=2)])
    env = scaler_env(cloud)
    for kw, why in [({"MinSize": 1, "MaxGroupPreparedCapacity": 2}, "MinSize 1, want 2"),
                    ({"MinSize": 2, "MaxGroupPreparedCapacity": 2, "PoolState": "Running"},
                     "PoolState Running, want Stopped"),
                    ({"MinSize": 2, "MaxGroupPreparedCapacity": 2,
                      "InstanceReusePolicy": {"ReuseOnScaleIn": True}},
                     "ReuseOnScaleIn true, want false"),
                    ({"MinSize": 2}, "MaxGroupPreparedCapacity unset: -1, want 2")]:
        a.put_warm_pool(AutoScalingGroupName="asg-a", **kw)
        seq = last_seq(cloud)  # after the test's own call
        p = run_once(build, conf, env)
        assert p.returncode == 0, p.stderr
        assert f'action=put reason="{why}' in p.stderr, p.stderr
        assert len(puts(cloud, seq)) == 1
        assert pool_conf(cloud)["MinSize"] == 2
        assert pool_conf(cloud)["MaxGroupPreparedCapacity"] == 2


def test_unset_is_not_managed(cloud, build, tmp_path):
    cloud.boto3_client("autoscaling").put_warm_pool(AutoScalingGroupName="asg-a", MinSize=5)
    seq = last_seq(cloud)
    conf = write_conf(tmp_path / "s.conf", [pool(max=10)])
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert warm_calls(cloud, "DescribeWarmPool", seq) == [] and puts(cloud, seq) == []
    assert pool_conf(cloud)["MinSize"] == 5


def test_desired_capacity_leaves_the_pool_out(cloud, build, tmp_path):
    """Pool instances are outside desired capacity: unclaimed + running, whatever the pool."""
    cloud.boto3_client("autoscaling").put_warm_pool(
        AutoScalingGroupName="asg-a", MinSize=3, MaxGroupPreparedCapacity=3)
    cloud.tick(3)
    cloud.add_jobs(RC, 2)
    seq = last_seq(cloud)
    conf = write_conf(tmp_path / "s.conf", [pool(max=10, warm_pool=3)],
                      metrics=tmp_path / "m.prom")
    p = run_once(build, conf, scaler_env(cloud))
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [2]
    assert puts(cloud, seq) == []
    prom = (tmp_path / "m.prom").read_text()
    assert 'runner_scaler_warm_pool_size{pool="a"} 3\n' in prom
    assert 'runner_scaler_desired_capacity{pool="a"} 2\n' in prom


def test_a_failed_describe_never_changes_scaling(cloud, build, tmp_path):
    cloud.fault("autoscaling:DescribeWarmPool", status=500, code="InternalFailure")
    cloud.add_jobs(RC, 3)
    conf = write_conf(tmp_path / "s.conf", [pool(max=10, warm_pool=2)],
                      metrics=tmp_path / "m.prom")
    p = run_once(build, conf, scaler_env(cloud))
    # Not a hold: the pool was evaluated and scaled as the queue says.
    assert p.returncode == 0, p.stderr
    assert [desired_of(r) for r in ok_sets(cloud)] == [3]
    assert re.search(r"pool=a resource_class=\S+ unclaimed=3 .*action=set", p.stderr), p.stderr
    assert re.search(r'pool=a warm_pool=2 action=hold reason="autoscaling:DescribeWarmPool: '
                     r'InternalFailure', p.stderr), p.stderr
    assert puts(cloud) == []
    prom = (tmp_path / "m.prom").read_text()
    assert "runner_scaler_warm_pool_size" not in prom.split("# TYPE runner_scaler_warm_pool_"
                                                            "size gauge\n", 1)[1].split("#")[0]
    assert 'runner_scaler_holds_total{pool="a"} 0\n' in prom
    assert 'runner_scaler_api_errors_total{pool="a",kind="http_5xx"} 1\n' in prom


def test_a_failed_put_is_retried_next_cycle(cloud, build, tmp_path):
    cloud.fault("autoscaling:PutWarmPool", code="LimitExceeded", message="too many pools",
                times=1)
    conf = write_conf(tmp_path / "s.conf", [pool(max=10, warm_pool=1)])
    env = scaler_env(cloud)
    p = run_once(build, conf, env)
    assert p.returncode == 0, p.stderr
    assert "LimitExceeded" in p.stderr and pool_conf(cloud) is None
    p = run_once(build, conf, env)
    assert [r["status"] for r in puts(cloud)] == [400, 200]
    assert pool_conf(cloud)["MinSize"] == 1


def test_dry_run_writes_no_pool(cloud, build, tmp_path):
    conf = write_conf(tmp_path / "s.conf", [pool(max=10, warm_pool=2)])
    p = run_once(build, conf, scaler_env(cloud), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "action=put (dry run: not written)" in p.stderr
    assert puts(cloud) == [] and pool_conf(cloud) is None


def test_only_the_leader_writes_the_pool(cloud, dynalite, build, tmp_path, daemons):
    """Two scalers through the DynamoDB lease: the leader writes the pool once; the follower
    makes no Auto Scaling call at all; after the leader stops, the new one finds the pool as
    wanted and writes nothing."""
    cloud.set_asg("asg-a", 0, 50, 0)
    table = dynalite.create_lease_table()
    conf = write_conf(tmp_path / "s.conf", [pool(max=50, warm_pool=2)], interval="200ms",
                      election={"table": table, "lease": f"{LEASE_S}s"})
    started = []
    for i in range(2):
        env, akid = elect_env(cloud, dynalite, i)
        started.append((daemons(build, conf, env), akid))
    cloud.wait_until(lambda s: s["asgs"]["asg-a"]["warm_pool"], timeout=15,
                     what="the pool written")
    cloud.add_jobs(RC, 1)
    first = wait_write(cloud, 1, 0, 15, "the leader's capacity write")
    leader_akid = first["akid"]
    assert {r["akid"] for r in puts(cloud)} == {leader_akid} and len(puts(cloud)) == 1
    assert {r["akid"] for r in cloud.requests() if r["service"] == "autoscaling"} == \
        {leader_akid}
    leader = next(s for s, a in started if a == leader_akid)
    follower = next(s for s, a in started if a != leader_akid)
    assert leader.stop() == 0
    seq = last_seq(cloud)
    cloud.add_jobs(RC, 1)
    r = wait_write(cloud, 2, seq, 4 * LEASE_S, "the follower takes over")
    assert r["akid"] != leader_akid
    follower.wait_for(r"pool=a ", start=follower.mark())  # a full cycle as the leader
    assert warm_calls(cloud, "DescribeWarmPool", seq) and puts(cloud, seq) == []
