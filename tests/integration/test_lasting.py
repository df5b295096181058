"""What lasts is tested lasting (issue 10): two minutes of the shipped defaults, both daemons.

One test, so that its two halves share the same two minutes:

- two runner-scalers with the scaler configuration the CloudFormation stack ships (interval
  10 s, lease 15 s, request_timeout left at its default of 10 s, the API token read from
  Secrets Manager), contending for one lease in dynalite. The one elected keeps its lease and
  keeps writing SetDesiredCapacity for more than two minutes -- many lease periods, and far
  past 2 x request_timeout, where a stale deadline once stopped every renewal -- while the
  other stays standby throughout; when the leader is stopped, the standby takes over.
- runnerd with its shipped lifecycle timings (notice_interval 5 s, boot_deadline 10 m) and a
  fake agent whose job runs two minutes, on instance-role credentials that live 45 s. runnerd
  refreshes role credentials from 5 minutes before their Expiration, so with a 45 s life every
  signed call asks IMDS first, and the credentials it signed the token fetch with at boot have
  expired long before the job ends: the exit path's TerminateInstanceInAutoScalingGroup must
  be signed with new ones, valid when sent. Meanwhile runnerd polls the spot and
  target-lifecycle notices every 5 s.

Waits are on the fake's request log (long-polled), scaler log lines, the agent's handshake
FIFO and runnerd's exit; the pace of the scaler half is the scaler's own interval.
"""

import configparser
import grp
import json
import os
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import MAIN_INSTANCE_ID  # noqa: E402
from test_runnerd import ASG, RC, SECRET_ID, TOKEN, Runnerd, render_ini  # noqa: E402
from test_scaler import Scaler, desired_of, ok_sets  # noqa: E402
from test_default_path import stack_file  # noqa: E402

WINDOW_S = 125  # the leader must lead and write for at least this long (>= 2 minutes)
JOB_S = 120  # runnerd's job
CREDENTIAL_TTL_S = 45  # < the job, and < runnerd's 5-minute refresh window
SCALER_RC = "acme/lasting"
STACK = "lasting"
CIRCLE_TOKEN = "cci-api-token-lasting-0123456789"
CIRCLE_SECRET = "cci-runner-lambda-secrets"


# ---- the shipped scaler configuration -------------------------------------------------------

def shipped_scaler_conf(values):
    """/etc/runnerd/scaler.conf as the stack's scaler launch template writes it, evaluated as
    CloudFormation would with values (tests/fakes/stack.py, as the default-path tests do)."""
    return stack_file("ScalerLaunchTemplate", "/etc/runnerd/scaler.conf",
                      **{k: str(v) for k, v in values.items()})


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration.strip())
    assert m, duration
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def effective(build, conf, env):
    """check-config's effective configuration (defaults filled in) as a ConfigParser."""
    p = subprocess.run([str(build / "runner-scaler"), "check-config", "-c", str(conf)], env=env,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(p.stdout)
    return cp


# ---- helpers --------------------------------------------------------------------------------

def scaler_env(fake, dynalite, i):
    """Scaler i's environment: its own static key pair (so the fake's log tells the two
    apart), no IMDS, DynamoDB at dynalite."""
    akid, secret = f"AKIALASTING{i}0000000", f"lasting-secret-{i}"
    fake.credentials(akid, secret)
    env = fake.env(imds=False, dynamodb=dynalite.url)
    env.update(AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret,
               AWS_EC2_METADATA_DISABLED="true")
    return env, akid


def pool_writes(fake, since=0):
    return [r for r in ok_sets(fake, since=since)
            if r["params"]["AutoScalingGroupName"] == f"{STACK}-runners"]


def wait_write(fake, value, since, timeout, what, scalers=()):
    """The first write of value after seq since; on a timeout, the scalers' logs say why."""
    def pred(_s):
        w = [r for r in pool_writes(fake, since) if desired_of(r) == value]
        return w[0] if w else None
    try:
        return fake.wait_until(pred, timeout=timeout, what=what)
    except AssertionError as e:
        logs = "\n".join(f"--- scaler {s.proc.pid}:\n{s.text()[-2500:]}" for s in scalers)
        raise AssertionError(f"{str(e)[:200]}\n{logs}") from None


def queued(fake):
    return len(fake.state()["jobs"].get(SCALER_RC, {}).get("queued", []))


def lease_item(dynalite, table):
    return dynalite.client().get_item(TableName=table, Key={"lease_id": {"S": "runner-scaler"}},
                                      ConsistentRead=True)["Item"]


def start_runnerd(build, tmp_path, fake):
    """runnerd with the shipped [lifecycle] timings: only what a test machine needs is set
    (the agent wrapper and its paths, the control socket, a power-off that writes a file)."""
    fake.set_secret(SECRET_ID, json.dumps({"runner_token": TOKEN}))
    fake.set_agent_token(TOKEN, RC)
    fake.add_jobs(RC, 1, duration_s=JOB_S)
    fake.set_asg(ASG, min=0, max=5, desired=2,
                 instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                            {"id": "i-00000000000000002", "state": "InService"}])
    fake.set_imds(credential_ttl_s=CREDENTIAL_TTL_S)
    rd_dir = tmp_path / "runnerd"
    rd_dir.mkdir()
    r = Runnerd(build, rd_dir, fake, behaviour="success")
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    # [token]: the defaults (secretsmanager, cci-runner-secrets, runner_token).
    r.conf.write_text(render_ini({
        # The task agent's default directory (/var/lib/circleci-runner/task-agent) is the
        # default-path tests' (in the world's overlay): here, on this machine, one of the test's.
        "agent": {"binary": str(r.wrapper), "config_path": str(r.config_path), "user": user,
                  "working_directory": str(rd_dir / "work"),
                  "task_agent_directory": str(r.task_agent_dir)},
        "lifecycle": {"poweroff_command": f"echo off > {r.marker}"},
        "control": {"socket": str(r.socket), "group": group}}))
    shown = subprocess.run([str(build / "runnerd"), "check-config", "-c", str(r.conf)],
                           env=r.env, capture_output=True, text=True, timeout=10)
    assert shown.returncode == 0, shown.stderr
    for want in ("notice_interval = 5s", "boot_deadline = 10m", "source = secretsmanager"):
        assert want in shown.stdout, shown.stdout
    return r.start()


def imds_gets(fake, path):
    return [q for q in fake.requests()
            if q["service"] == "imds" and q["op"] == path and q.get("listener") == "main"]


# ---- the test -------------------------------------------------------------------------------

def test_two_minutes_of_shipped_defaults(fake, dynalite, build, tmp_path):
    table = dynalite.create_lease_table()
    conf = tmp_path / "scaler.conf"
    conf.write_text(shipped_scaler_conf({
        "CircleTokenSecretArn": f"arn:aws:secretsmanager:{fake.region}:123456789012:secret:"
                                f"{CIRCLE_SECRET}",
        "ResourceClass": SCALER_RC, "AWS::StackName": STACK, "AWS::Region": fake.region,
        "RunnerMaxSize": 50, "LeaseTable": table}))
    fake.set_secret(CIRCLE_SECRET, json.dumps({"circle_token": CIRCLE_TOKEN}))
    fake.set_runner_token(CIRCLE_TOKEN)
    fake.set_asg(f"{STACK}-runners", 0, 50, 0)
    env0, akid0 = scaler_env(fake, dynalite, 0)
    env1, akid1 = scaler_env(fake, dynalite, 1)
    cfg = effective(build, conf, env0)
    interval = seconds(cfg["scaler"]["interval"])
    request_timeout = seconds(cfg["scaler"]["request_timeout"])
    lease = seconds(cfg["election"]["lease"])
    assert "request_timeout" not in conf.read_text()  # the default, not a shortened one
    assert cfg["election"]["mode"] == "dynamodb"
    # The premise: the window spans several lease periods past 2 x request_timeout.
    assert WINDOW_S >= 2 * request_timeout + 4 * lease, (request_timeout, lease)

    rd = start_runnerd(build, tmp_path, fake)
    scalers = {}
    try:
        fake.add_jobs(SCALER_RC, 1, duration_s=3600)
        for env, akid in ((env0, akid0), (env1, akid1)):
            scalers[akid] = Scaler(build, conf, env)
        first = wait_write(fake, 1, 0, 2 * interval + lease, "the leader's first write",
                           scalers.values())
        leader_akid = first["akid"]
        standby_akid = akid1 if leader_akid == akid0 else akid0
        leader, standby = scalers[leader_akid], scalers[standby_akid]
        leader.wait_for(r"election: leader now")
        standby.wait_for(r"election: contending for lease runner-scaler")
        rd.agent_pid(timeout=30)  # runnerd booted and its job runs

        # The window: raise the demand by one after each write; the leader writes each new
        # value at its next cycle.
        writes = [first]
        while writes[-1]["t"] - first["t"] < WINDOW_S:
            fake.add_jobs(SCALER_RC, 1, duration_s=3600)
            want = queued(fake)
            writes.append(wait_write(fake, want, writes[-1]["seq"], 2 * interval + lease,
                                     f"the write of demand {want}", scalers.values()))
        span = writes[-1]["t"] - first["t"]
        assert {w["akid"] for w in writes} == {leader_akid}
        gaps = [b["t"] - a["t"] for a, b in zip(writes, writes[1:])]
        assert max(gaps) <= interval + request_timeout, gaps  # never a stalled leader
        item = lease_item(dynalite, table)
        assert item["owner"]["S"].endswith(f":{leader.proc.pid}")
        renewals = int(item["version"]["N"]) - 1
        assert renewals >= 0.8 * span / (lease / 3), (renewals, span)
        for line in ("lease call", "lost the lease", "unable to"):
            assert line not in leader.text(), leader.text()
        # The standby only contended: it never fetched the API token (so it read no queue)
        # and never called Auto Scaling.
        seq_window = writes[-1]["seq"]
        assert not [q for q in fake.requests() if q.get("akid") == standby_akid], \
            "the standby called AWS"
        assert "leader now" not in standby.text()

        # runnerd: the job ran its two minutes and runnerd left the group with a decrement.
        assert rd.wait(timeout=JOB_S + 60) == 0, rd.stderr()
        assert rd.events() == ["started", "claimed job-1",
                               f"task-agent 0 {pwd.getpwuid(os.geteuid()).pw_name}",
                               "completed job-1"]
        assert rd.marker.read_text() == "off\n"
        reqs = fake.requests()
        term = [q for q in reqs if q.get("op") == "TerminateInstanceInAutoScalingGroup"]
        assert len(term) == 1 and term[0]["status"] == 200, term
        term = term[0]
        assert term["params"]["InstanceId"] == MAIN_INSTANCE_ID
        assert term["params"]["ShouldDecrementDesiredCapacity"] == "true"
        assert term["signature_ok"] and term["token_used"] and term["auth_error"] is None
        issued = {q["issued_akid"]: q["expiration"] for q in reqs
                  if "issued_akid" in q and q.get("listener") == "main"}
        fetch = [q for q in reqs if q.get("op") == "GetSecretValue"
                 and q["akid"] in issued]
        assert len(fetch) == 1 and fetch[0]["status"] == 200, fetch
        boot_akid = fetch[0]["akid"]
        # Refreshed across the Expiration: the boot's credentials had expired when the exit
        # path signed, with credentials IMDS issued later and still valid then.
        assert issued[boot_akid] < term["t"], (issued, term["t"])
        assert term["akid"] in issued and term["akid"] != boot_akid
        assert issued[term["akid"]] > term["t"]

        # The notices were polled every notice_interval (5 s) for the whole job.
        for path in ("meta-data/spot/instance-action",
                     "meta-data/autoscaling/target-lifecycle-state"):
            polls = [q["t"] for q in imds_gets(fake, path)]
            assert polls and polls[-1] - polls[0] >= JOB_S - 10, (path, polls)
            gaps = [b - a for a, b in zip(polls, polls[1:])]
            # Never faster than the interval; on a loaded machine a poll may be late, but not
            # as a rule.
            gaps.sort()
            assert gaps[0] >= 4.0 and gaps[len(gaps) // 2] <= 6.0 and gaps[-1] <= 12.0, \
                (path, gaps)
            assert len(polls) >= (polls[-1] - polls[0]) / 5.0, (path, len(polls))

        # The leader stops (SIGTERM: it releases the lease); the standby takes over.
        mark = standby.mark()
        assert leader.stop() == 0
        t_stop = time.time()
        fake.add_jobs(SCALER_RC, 1, duration_s=3600)
        want = queued(fake)
        w = wait_write(fake, want, seq_window, lease + 2 * interval, "the standby's write",
                       [standby])
        assert w["akid"] == standby_akid
        # At its next contention (every lease/3), not once the lease ran out: the leader
        # released it on the way out (a release that the stale deadline used to stop too).
        assert w["t"] - t_stop < lease / 3 + 3, w["t"] - t_stop
        standby.wait_for(r"election: leader now", start=mark)
        assert lease_item(dynalite, table)["owner"]["S"].endswith(f":{standby.proc.pid}")
    finally:
        for s in scalers.values():
            s.stop()
        rd.close()
    assert all(s.proc.returncode == 0 for s in scalers.values())
