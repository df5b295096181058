"""Large fleets (DESIGN.md "Large fleets"; issue 10, defect 3): runner-scaler reads a fleet of
thousands of instances like a small one.

DescribeAutoScalingGroups lists every instance of every group it names (about 660 bytes each in
the fake, as on AWS), so one batch of 50 groups of 100 instances is over 3 MiB of XML and one
group of 6,000 instances over 4 MiB. The scaler must read both, in --once and as a daemon, and
scale out where the queue asks for it; a pool must never hold because its answer is large.
Every wait is a process exit or a decision line with a deadline.
"""

import re

import pytest

from test_fake_contract import signed_raw
from test_scaler import (RC, TOKEN, Scaler, decisions, desired_of, ok_sets, pool, run_once,
                         scaler_env, write_conf)

MIB = 1024 * 1024
BATCH = 50          # CYCLE_DESCRIBE_BATCH: the scaler names up to 50 groups per call
PER_GROUP = 100     # instances in each group of the batch: 5,000 in all
GIANT = 6000        # instances in the one big group
SIZE_HOLD = re.compile(r"too large|too-large|EFBIG")


def add_jobs(fake, rc, n):
    """n unclaimed tasks for class rc (the control API takes 1,000 per call)."""
    while n > 0:
        fake.add_jobs(rc, min(n, 1000))
        n -= 1000


def describe_bytes(fake, names):
    """Size of the raw DescribeAutoScalingGroups answer for names (one call, as the scaler
    makes it): the witness that the fleet really is large on the wire."""
    body = "Action=DescribeAutoScalingGroups&Version=2011-01-01&MaxRecords=100&" + "&".join(
        f"AutoScalingGroupNames.member.{i + 1}={n}" for i, n in enumerate(names))
    status, _, raw = signed_raw(fake, "autoscaling", body.encode(), fake.akid, fake.secret)
    assert status == 200, raw[:500]
    assert b"<NextToken>" not in raw  # one page: the size is the whole answer
    return len(raw)


def batch_fleet(fake):
    """50 groups of 100 instances (desired 100, max 400), one pool each. Even pools have 130
    unclaimed tasks (scale out to 130), odd pools 100 (already right: noop). Returns
    (pools, expected writes {asg: desired})."""
    pools, want = [], {}
    for i in range(BATCH):
        asg, rc = f"fleet-{i:02d}", f"acme/fleet-{i:02d}"
        fake.set_asg(asg, 0, 400, PER_GROUP, instances=PER_GROUP)
        demand = 130 if i % 2 == 0 else PER_GROUP
        add_jobs(fake, rc, demand)
        pools.append(pool(f"p{i:02d}", rc, asg, max=400))
        if demand != PER_GROUP:
            want[asg] = demand
    return pools, want


def giant_fleet(fake):
    """One group of 6,000 instances (max 8,000) with 6,250 tasks queued, and a small group of
    the same region (so the same describe batch) with 3. Returns (pools, expected writes)."""
    fake.set_asg("giant", 0, 8000, GIANT, instances=GIANT)
    add_jobs(fake, "acme/giant", GIANT + 250)
    fake.set_asg("small", 0, 10, 1, instances=1)
    add_jobs(fake, RC, 3)
    return ([pool("giant", "acme/giant", "giant", max=8000), pool("small", RC, "small", max=10)],
            {"giant": GIANT + 250, "small": 3})


def written(fake, since=0):
    """{asg: desired} of the SetDesiredCapacity calls that succeeded (the last per group)."""
    return {r["params"]["AutoScalingGroupName"]: desired_of(r) for r in ok_sets(fake)
            if r["seq"] > since}


def assert_no_size_hold(lines):
    """No pool held, and nothing was too large (lines: the scaler's log lines)."""
    held = [ln for ln in lines if "action=hold" in ln or SIZE_HOLD.search(ln)]
    assert not held, f"{len(held)} lines hold or are too large, the first:\n" + "\n".join(
        held[:3])


def daemon_lines(d):
    with d.cond:
        return [x for x in d.lines if x is not None]


@pytest.fixture
def daemon():
    """start(build, conf, env) -> a Scaler daemon, stopped at teardown."""
    started = []

    def start(build, conf, env):
        started.append(Scaler(build, conf, env))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def fleet(fake):
    fake.set_runner_token(TOKEN)
    return fake


def test_once_reads_a_batch_of_50_groups_of_100(fleet, build, tmp_path):
    pools, want = batch_fleet(fleet)
    assert describe_bytes(fleet, [p["asg"] for p in pools]) > 3 * MIB
    conf = write_conf(tmp_path / "s.conf", pools, request_timeout="10s")
    p = run_once(build, conf, scaler_env(fleet), timeout=60)
    assert_no_size_hold(p.stderr.splitlines())
    assert p.returncode == 0, p.stderr[-3000:]
    assert written(fleet) == want
    d = decisions(p.stderr)
    assert len(d) == BATCH
    assert sum("action=set" in x for x in d) == len(want)
    assert sum("action=noop" in x for x in d) == BATCH - len(want)
    # Every group was read, each exactly once in the end (splitting may retry some).
    named = set()
    for r in fleet.requests():
        if r.get("op") == "DescribeAutoScalingGroups" and r.get("status") == 200:
            named |= {v for k, v in r["params"].items() if k.startswith("AutoScalingGroupNames")}
    assert named == {p["asg"] for p in pools}


def test_once_reads_a_group_of_6000(fleet, build, tmp_path):
    pools, want = giant_fleet(fleet)
    assert describe_bytes(fleet, ["giant", "small"]) > 3 * MIB
    conf = write_conf(tmp_path / "s.conf", pools, request_timeout="10s")
    p = run_once(build, conf, scaler_env(fleet), timeout=60)
    assert_no_size_hold(p.stderr.splitlines())
    assert p.returncode == 0, p.stderr[-3000:]
    assert written(fleet) == want
    assert re.search(r"pool=giant .*current=6000 desired=6250 action=set", p.stderr), p.stderr


def test_daemon_scales_out_a_large_fleet(fleet, build, tmp_path, daemon):
    """Both fleets under one daemon (52 pools, about 8 MiB of describe answers a cycle): the
    first cycle sets every pool that has work beyond its group; after more work arrives, a
    later cycle scales out again. No cycle holds for size."""
    pools, want = batch_fleet(fleet)
    gpools, gwant = giant_fleet(fleet)
    pools += gpools
    want.update(gwant)
    conf = write_conf(tmp_path / "s.conf", pools, interval="1s", request_timeout="10s")
    d = daemon(build, conf, scaler_env(fleet))
    # The first cycle ends with one decision line per pool; wait for the last pool's.
    d.wait_for(r"pool=small .*action=set", timeout=30)
    assert_no_size_hold(daemon_lines(d))
    assert written(fleet) == want
    seq = fleet.requests()[-1]["seq"]

    add_jobs(fleet, "acme/giant", 500)       # 6,750 now
    add_jobs(fleet, "acme/fleet-01", 40)     # 140 on a group still at 100
    mark = d.mark()
    d.wait_for(r"pool=giant .*current=6250 desired=6750 action=set", timeout=30, start=mark)
    d.wait_for(r"pool=p01 .*current=100 desired=140 action=set", timeout=30, start=mark)
    assert_no_size_hold(daemon_lines(d))
    assert written(fleet, since=seq) == {"giant": 6750, "fleet-01": 140}


def describe_names(r):
    return sorted(v for k, v in r["params"].items() if k.startswith("AutoScalingGroupNames"))


def wide_fleet(fake):
    """Four pools of max 10 with 10 tasks each, in one region. Three groups hold 10 instances
    (noop); one lists 3,000 (someone else sized it): the first describe's limit, sized from the
    pools' max, is too small for the answer, and that pool is set to its max of 10."""
    pools = []
    for name, n in (("s0", 10), ("wide", 3000), ("s1", 10), ("s2", 10)):
        fake.set_asg(name, 0, max(n, 10), n, instances=n)
        add_jobs(fake, f"acme/{name}", 10)
        pools.append(pool(name, f"acme/{name}", name, max=10))
    return pools


def test_once_splits_a_batch_whose_answer_outgrew_its_limit(fleet, build, tmp_path):
    """The batch's answer is over its limit: it is described in halves within the cycle, down
    to the large group alone at the ceiling, and every pool is decided (none holds)."""
    pools = wide_fleet(fleet)
    conf = write_conf(tmp_path / "s.conf", pools, request_timeout="10s")
    p = run_once(build, conf, scaler_env(fleet), timeout=60)
    assert_no_size_hold(p.stderr.splitlines())
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.search(r"DescribeAutoScalingGroups of 4 groups in us-east-1: answer over its "
                     r"limit of \d+ KiB, describing them in two halves", p.stderr), p.stderr
    assert re.search(r"DescribeAutoScalingGroups of wide: answer over its limit of \d+ KiB, "
                     r"describing it again with 16384 KiB", p.stderr), p.stderr
    describes = [describe_names(r) for r in fleet.requests()
                 if r.get("op") == "DescribeAutoScalingGroups"]
    assert describes[0] == ["s0", "s1", "s2", "wide"]
    assert describes.count(["wide"]) == 2  # at the split's limit, then at the ceiling
    assert re.search(r"pool=wide .*current=3000 desired=10 action=set", p.stderr), p.stderr
    assert written(fleet) == {"wide": 10}


def test_daemon_learns_the_size_of_a_group(fleet, build, tmp_path, daemon):
    """After the first cycle has read the large group, later cycles size their describe from
    what it listed: one call for all four groups, no more splitting."""
    pools = wide_fleet(fleet)
    conf = write_conf(tmp_path / "s.conf", pools, interval="1s", request_timeout="10s")
    d = daemon(build, conf, scaler_env(fleet))
    d.wait_for(r"pool=s2 .*action=", timeout=30)  # the last line of the first cycle
    assert any("describing them in two halves" in ln for ln in daemon_lines(d))
    seq = fleet.requests()[-1]["seq"]
    mark = d.mark()
    d.wait_for(r"pool=s2 .*action=noop", timeout=30, start=mark)
    d.wait_for(r"pool=s2 .*action=noop", timeout=30, start=d.mark())
    later = daemon_lines(d)[mark:]
    assert_no_size_hold(later)
    assert not [ln for ln in later if "answer over its limit" in ln]
    describes = [describe_names(r) for r in fleet.requests(seq)
                 if r.get("op") == "DescribeAutoScalingGroups"]
    assert len(describes) >= 2  # two cycles at least
    assert all(x == ["s0", "s1", "s2", "wide"] for x in describes), describes


@pytest.mark.parametrize("pad,reason", [
    # Over the ceiling: even alone at 16 MiB the answer does not fit.
    (17 * MIB, r"response too large \(over 16384 KiB for 1 group\)"),
    # Fits the ceiling, but 2 MiB for one group of 3 instances is padding, not an answer.
    (2 * MIB, r"response too large for its content \(\d+ bytes for 1 group of 3 instances\)"),
])
def test_oversized_answers_still_hold(fleet, build, tmp_path, pad, reason):
    """A larger limit is no licence: an answer over the ceiling, or larger than its content
    accounts for, holds the pool (no write); the next run, without the fault, writes."""
    fleet.set_asg("g", 0, 10, 3, instances=3)
    add_jobs(fleet, RC, 1)  # demand 1 < 3: a blind write would scale in
    fleet.fault("autoscaling:DescribeAutoScalingGroups", oversize_bytes=pad)
    conf = write_conf(tmp_path / "s.conf", [pool("g", RC, "g", max=10)], request_timeout="10s")
    env = scaler_env(fleet)
    p = run_once(build, conf, env, timeout=60)
    assert p.returncode == 69, p.stderr
    assert re.search(r"pool=g .*action=hold reason=.*autoscaling:DescribeAutoScalingGroups: "
                     + reason, p.stderr), p.stderr
    assert written(fleet) == {}
    fleet.clear_faults()
    p = run_once(build, conf, env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert written(fleet) == {"g": 1}
