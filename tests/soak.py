#!/usr/bin/python3
"""make soak: runner-scaler with election and runnerd for SOAK_MINUTES (30) under faults.

What runs, all on 127.0.0.1:
- tests/fakes/fakecloud.py (Secrets Manager, Auto Scaling, the Runner API, IMDS), dynalite,
  and tests/fakes/ddbproxy.py in front of dynalite to inject faults into the lease calls;
- two runner-scalers with the scaler.conf the CloudFormation stack ships (interval 10 s,
  lease 15 s, request_timeout at its default), contending for one lease: scaler 0 signs with
  a static key pair, scaler 1 with the instance role's credentials from IMDS, which live 60 s
  (so it refreshes them all the time, and the fake issues new ones every 30 s);
- runnerd with its shipped lifecycle timings, supervising a fake agent whose one job lasts
  until shortly before the end, on the same 60 s role credentials; at the end it must leave
  the group with a Terminate signed by valid credentials.
The demand (queued tasks of the pool) changes every 15 s. Faults come in phases, each a tenth
or so of the run (a few minutes of a 30-minute soak): DynamoDB throttling, 500s, timeouts and
dropped connections on the lease calls (about half of them), a full DynamoDB outage, and the
Runner API and Auto Scaling failing with 500s, throttling, timeouts and dropped connections.
The first and last tenth are clean.

One line per minute: lease renewals (successful renew calls through the proxy), acquisitions,
SetDesiredCapacity writes (per scaler), holds (decision lines with action=hold), leader changes
(a scaler logging "leader now" after the first election), the faults active, and the RSS of
each daemon (VmRSS from /proc). It fails (exit 1) when a daemon dies, when the RSS of any
daemon grew by more than SOAK_RSS_BOUND_KIB (default 1536) over its value at the end of the
warm-up (the first tenth, at least a minute), when a minute without any lease fault saw no
renewal, when any request failed authentication, or when runnerd's ending is not the clean
one (job done, Terminate 200 with valid credentials, exit 0).

Knobs (environment): SOAK_MINUTES (30), SOAK_RSS_BOUND_KIB (1536), SOAK_SEED (1),
SOAK_WORKDIR (use this directory), SOAK_KEEP=1 (keep the logs also when it passes),
RUNNERD_BUILD (the build directory).
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import (PYTHON, Dynalite, FakeCloud, MAIN_INSTANCE_ID,  # noqa: E402
                      _die_with_parent, clean_environ, dynalite_path, free_port, read_line)
from test_lasting import shipped_scaler_conf  # noqa: E402
from test_runnerd import ASG, RC, SECRET_ID, TOKEN, Runnerd, render_ini  # noqa: E402
from test_scaler import Scaler  # noqa: E402

BUILD = Path(os.environ.get("RUNNERD_BUILD") or REPO / "build").resolve()
MINUTES = float(os.environ.get("SOAK_MINUTES") or 30)
RSS_BOUND_KIB = int(os.environ.get("SOAK_RSS_BOUND_KIB") or 1536)
SEED = int(os.environ.get("SOAK_SEED") or 1)
CREDENTIAL_TTL_S = 60
DEMAND_PERIOD_S = 15
DEMAND_MAX = 8
SCALER_RC = "acme/soak"
STACK = "soak"
CIRCLE_TOKEN = "cci-api-token-soak-0123456789"
CIRCLE_SECRET = "cci-runner-lambda-secrets"
AGENT_TOKEN = "soak-agent-token"  # claims the pool's queued tasks to lower the demand

# (start, end) as fractions of the run, name, where ("ddb" = the proxy, "fake"), fault spec.
PHASES = [
    (0.10, 0.20, "ddb-throttling", "ddb", dict(match="*", status=400,
                                               code="ThrottlingException", probability=0.5)),
    (0.20, 0.27, "runner-500", "fake", dict(match="runner:*", status=500)),
    (0.27, 0.34, "asg-throttling", "fake", dict(match="autoscaling:*", status=400,
                                                code="Throttling")),
    (0.36, 0.46, "ddb-timeouts", "ddb", dict(match="*", delay_s=7, probability=0.3)),
    (0.46, 0.52, "runner-timeouts", "fake", dict(match="runner:*", delay_s=12)),
    (0.52, 0.58, "asg-dropped", "fake", dict(match="autoscaling:*", close=True)),
    (0.60, 0.68, "ddb-dropped", "ddb", dict(match="*", close=True, probability=0.5)),
    (0.68, 0.74, "ddb-500", "ddb", dict(match="*", status=500, probability=0.5)),
    (0.74, 0.80, "ddb-outage", "ddb", dict(match="*", close=True)),
    (0.80, 0.86, "runner-dropped", "fake", dict(match="runner:*", close=True)),
]


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def http_json(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Proc:
    """A helper process with a READY handshake line (dynalite, ddbproxy)."""

    def __init__(self, argv, logf, ready):
        with open(logf, "ab") as lf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=lf, env=clean_environ(), start_new_session=True,
                                         preexec_fn=_die_with_parent)
        line = read_line(self.proc, 20, argv[0])
        if not line.startswith(ready):
            raise RuntimeError(f"{argv[0]}: unexpected first line {line!r}")
        self.line = line
        # Keep reading what it prints, so a full pipe never blocks it.
        threading.Thread(target=self._drain, args=(logf,), daemon=True).start()

    def _drain(self, logf):
        with open(logf, "ab") as dst:
            for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
                dst.write(chunk)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Demand:
    """Moves the pool's queued tasks to a new target every DEMAND_PERIOD_S: new tasks queued,
    or queued ones claimed and completed by a pretend agent."""

    def __init__(self, fake, rng):
        self.fake, self.rng = fake, rng
        fake.set_agent_token(AGENT_TOKEN, SCALER_RC)
        self.n = 0

    def step(self):
        target = self.rng.randint(0, DEMAND_MAX)
        queued = len(self.fake.state()["jobs"].get(SCALER_RC, {}).get("queued", []))
        if target > queued:
            self.fake.add_jobs(SCALER_RC, target - queued, duration_s=3600)
        for _ in range(queued - target):
            self.n += 1
            status, body = self.fake.claim(SCALER_RC, f"soak-agent-{self.n}", AGENT_TOKEN)
            if status == 200:
                self.fake.complete(body["job_id"])
        return target


def start_runnerd(fake, work, job_s):
    fake.set_secret(SECRET_ID, json.dumps({"runner_token": TOKEN}))
    fake.set_agent_token(TOKEN, RC)
    fake.add_jobs(RC, 1, duration_s=job_s)
    fake.set_asg(ASG, min=0, max=5, desired=2,
                 instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                            {"id": "i-00000000000000002", "state": "InService"}])
    d = work / "runnerd"
    d.mkdir()
    r = Runnerd(BUILD, d, fake, behaviour="success")
    import grp
    import pwd
    r.conf.write_text(render_ini({
        "agent": {"binary": str(r.wrapper), "config_path": str(r.config_path),
                  "user": pwd.getpwuid(os.geteuid()).pw_name,
                  "working_directory": str(d / "work")},
        "lifecycle": {"poweroff_command": f"echo off > {r.marker}"},
        "control": {"socket": str(r.socket), "group": grp.getgrgid(os.getegid()).gr_name}}))
    return r.start()


def count_lines(scaler, start, end, pattern):
    rx = re.compile(pattern)
    with scaler.cond:
        return sum(1 for x in scaler.lines[start:end] if x is not None and rx.search(x))


def main():
    for exe in ("runnerd", "runner-scaler"):
        if not os.access(BUILD / exe, os.X_OK):
            log(f"{BUILD / exe} is missing; run make first")
            return 69
    if not os.access(dynalite_path(), os.X_OK):
        log(f"dynalite is not installed at {dynalite_path()} (run scripts/install-deps)")
        return 69
    total_s = MINUTES * 60
    if total_s < 120:
        log("SOAK_MINUTES must be at least 2")
        return 64
    warmup_min = max(1, int(round(MINUTES * 0.1)))
    work = Path(os.environ.get("SOAK_WORKDIR") or tempfile.mkdtemp(prefix="runnerd-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    interrupted = []
    wake = threading.Event()  # the driver's clock: set early only by a signal

    def on_signal(signum, _frame):
        interrupted.append(signum)
        wake.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    fake = dyn = proxy = rd = None
    scalers = []
    problems = []
    rows = []
    try:
        fake = FakeCloud(work / "fake", tick_interval=0).start()
        dyn_port = free_port()
        dyn = Proc([dynalite_path(), "--host", "127.0.0.1", "--port", str(dyn_port),
                    "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"],
                   work / "dynalite.log", "Dynalite listening at:")
        table = Dynalite(f"http://127.0.0.1:{dyn_port}", dyn_port, dyn.proc) \
            .create_lease_table("runnerd-leases-soak")
        proxy = Proc([PYTHON, str(REPO / "tests" / "fakes" / "ddbproxy.py"), "--upstream",
                      f"http://127.0.0.1:{dyn_port}", "--seed", str(SEED)],
                     work / "ddbproxy.log", "READY port=")
        proxy_url = f"http://127.0.0.1:{int(proxy.line.split('=')[1])}"

        conf = work / "scaler.conf"
        conf.write_text(shipped_scaler_conf({
            "CircleTokenSecretArn": f"arn:aws:secretsmanager:{fake.region}:123456789012:"
                                    f"secret:{CIRCLE_SECRET}",
            "ResourceClass": SCALER_RC, "AWS::StackName": STACK, "AWS::Region": fake.region,
            "RunnerMaxSize": 50, "LeaseTable": table}))
        fake.set_secret(CIRCLE_SECRET, json.dumps({"circle_token": CIRCLE_TOKEN}))
        fake.set_runner_token(CIRCLE_TOKEN)
        fake.set_asg(f"{STACK}-runners", 0, 50, 0)
        fake.set_imds(credential_ttl_s=CREDENTIAL_TTL_S)
        static = ("AKIASOAKSCALER000000", "soak-scaler-secret")
        fake.credentials(*static)
        env0 = fake.env(imds=False, dynamodb=proxy_url)
        env0.update(AWS_ACCESS_KEY_ID=static[0], AWS_SECRET_ACCESS_KEY=static[1],
                    AWS_EC2_METADATA_DISABLED="true")
        env1 = fake.env(imds=True, dynamodb=proxy_url)
        demand = Demand(fake, rng)
        demand.step()

        t0 = time.monotonic()
        rd = start_runnerd(fake, work, job_s=max(60, total_s - 45))
        scalers = [Scaler(BUILD, conf, env0), Scaler(BUILD, conf, env1)]
        names = ["scaler0", "scaler1"]
        print(f"soak: {MINUTES:g} min; fake {fake.url}, dynalite {dyn_port} behind {proxy_url}; "
              f"scaler0 pid {scalers[0].proc.pid} (static key), scaler1 pid "
              f"{scalers[1].proc.pid} (role credentials, {CREDENTIAL_TTL_S} s), runnerd pid "
              f"{rd.proc.pid}; logs in {work}", flush=True)
        print(" min  renew acq writes(s0/s1) holds leader-chg lease-faults  "
              "rss KiB: scaler0 scaler1 runnerd  faults", flush=True)

        active = {}  # phase name -> (where, id)
        marks = [0, 0]
        proxy_seq = fake_seq = 0
        gains_seen = 0
        next_demand = DEMAND_PERIOD_S
        minute = 0
        minute_faults = set()
        rd_done = False
        minutes = int(-(-total_s // 60))  # the last one may be short
        while not interrupted and minute < minutes:
            now = time.monotonic() - t0
            # Fault phases.
            for start, end, name, where, spec in PHASES:
                on = start * total_s <= now < end * total_s
                if on and name not in active:
                    if where == "ddb":
                        fid = http_json("POST", f"{proxy_url}/_proxy/fault", spec)["id"]
                    else:
                        fid = fake.fault(**spec)
                    active[name] = (where, fid)
                elif not on and name in active:
                    where_, _ = active.pop(name)
                    if where_ == "ddb":
                        http_json("DELETE", f"{proxy_url}/_proxy/faults")
                    else:
                        fake.clear_faults()
            minute_faults.update(active)
            if now >= next_demand:
                demand.step()
                next_demand += DEMAND_PERIOD_S
            for i, s in enumerate(scalers):
                if s.proc.poll() is not None:
                    raise RuntimeError(f"{names[i]} exited ({s.proc.returncode}):\n{s.text()}")
            if not rd_done and rd.proc.poll() is not None:
                rd_done = True
            # A minute is over (or the run): its line.
            if now >= min((minute + 1) * 60, total_s):
                minute += 1
                plog = http_json("GET", f"{proxy_url}/_proxy/log?since={proxy_seq}")
                flog = fake.requests(fake_seq)
                if plog["requests"]:
                    proxy_seq = plog["requests"][-1]["seq"]
                if flog:
                    fake_seq = flog[-1]["seq"]
                pr = plog["requests"]
                renew = sum(1 for q in pr if q["kind"] == "renew" and q["status"] == 200)
                acq = sum(1 for q in pr if q["kind"] == "acquire" and q["status"] == 200)
                lease_faults = sum(1 for q in pr if q["fault"] is not None)
                writes = [q for q in flog if q.get("op") == "SetDesiredCapacity"
                          and q.get("status") == 200]
                w0 = sum(1 for q in writes if q.get("akid") == static[0])
                w1 = len(writes) - w0
                bad_auth = [q for q in flog if q.get("signature_ok") is False]
                new_marks = [s.mark() for s in scalers]
                holds = sum(count_lines(s, marks[i], new_marks[i], r"action=hold")
                            for i, s in enumerate(scalers))
                gains = sum(count_lines(s, marks[i], new_marks[i], r"election: leader now")
                            for i, s in enumerate(scalers))
                changes = max(0, gains_seen + gains - 1) - max(0, gains_seen - 1)
                gains_seen += gains
                marks = new_marks
                rss = [rss_kib(s.proc.pid) for s in scalers] + \
                    [rss_kib(rd.proc.pid) if not rd_done else None]
                lease_fault_minute = any(n.startswith("ddb") for n in minute_faults)
                row = dict(minute=minute, renew=renew, acquire=acq, writes=(w0, w1),
                           holds=holds, leader_changes=changes, lease_faults=lease_faults,
                           rss=rss, faults=sorted(minute_faults),
                           lease_fault_minute=lease_fault_minute)
                rows.append(row)
                rss_s = " ".join(f"{x:7d}" if x is not None else "      -" for x in rss)
                print(f"{minute:4d} {renew:6d} {acq:3d} {len(writes):6d} ({w0}/{w1}) "
                      f"{holds:5d} {changes:10d} {lease_faults:12d}  {rss_s}           "
                      f"{','.join(sorted(minute_faults)) or '-'}", flush=True)
                for q in bad_auth:
                    problems.append(f"minute {minute}: authentication failed: "
                                    f"{q.get('service')}:{q.get('op')} {q.get('auth_error')}")
                if renew == 0 and not lease_fault_minute:
                    problems.append(f"minute {minute}: no lease renewal, and no lease fault "
                                    f"was active")
                minute_faults = set(active)
            # Until the next scheduled event (a second at most): this driver runs on a clock.
            wake.wait(max(0.05, min(1.0, next_demand - now, (minute + 1) * 60 - now,
                                    total_s - now)))
        if interrupted:
            raise KeyboardInterrupt
        # The end: runnerd's job is over by now; it must have left the group cleanly.
        for name in list(active):
            where_, _ = active.pop(name)
            if where_ == "ddb":
                http_json("DELETE", f"{proxy_url}/_proxy/faults")
            else:
                fake.clear_faults()
        rc = rd.wait(timeout=120)
        reqs = fake.requests()
        term = [q for q in reqs if q.get("op") == "TerminateInstanceInAutoScalingGroup"]
        issued = {q["issued_akid"]: q["expiration"] for q in reqs if "issued_akid" in q}
        if rc != 0:
            problems.append(f"runnerd exited {rc}:\n{rd.stderr()[-3000:]}")
        ev = rd.events()
        if len(ev) != 3 or ev[0] != "started" or not ev[1].startswith("claimed ") or \
                ev[2] != "completed " + ev[1].split()[1]:
            problems.append(f"runnerd's agent: {ev}")
        if not term or term[-1]["status"] != 200 or not term[-1]["signature_ok"]:
            problems.append(f"runnerd's Terminate: {term}")
        elif term[-1]["akid"] not in issued or issued[term[-1]["akid"]] <= term[-1]["t"]:
            problems.append("runnerd's Terminate was not signed with credentials valid then")
        sessions = len(issued)
        for i, s in enumerate(scalers):
            if s.stop() != 0:
                problems.append(f"{names[i]} did not exit 0 on SIGTERM:\n{s.text()[-3000:]}")
        # Memory: no growth past the bound after the warm-up.
        for k, name in enumerate(names + ["runnerd"]):
            series = [(r["minute"], r["rss"][k]) for r in rows if r["rss"][k] is not None]
            base = [v for m, v in series if m == warmup_min]
            later = [v for m, v in series if m > warmup_min]
            if base and later and max(later) - base[0] > RSS_BOUND_KIB:
                problems.append(f"{name}: RSS grew from {base[0]} KiB (minute {warmup_min}) "
                                f"to {max(later)} KiB, more than {RSS_BOUND_KIB} KiB")
        tot = lambda key: sum(r[key] for r in rows)  # noqa: E731
        print(f"soak: {len(rows)} minutes; {tot('renew')} renewals, {tot('acquire')} "
              f"acquisitions, {sum(sum(r['writes']) for r in rows)} writes, {tot('holds')} "
              f"holds, {tot('leader_changes')} leader changes; runnerd exit {rc}, its job "
              f"done, Terminate signed by a session IMDS issued ({sessions} sessions issued)",
              flush=True)
    except KeyboardInterrupt:
        problems.append("interrupted")
    except Exception as e:  # still clean up; say what broke
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        for i, s in enumerate(scalers):
            s.stop()
            with s.cond:
                text = "\n".join(x for x in s.lines if x is not None)
            (work / f"scaler{i}.log").write_text(text + "\n")
        if rd is not None:
            rd.close()
        for p in (proxy, dyn):
            if p is not None:
                p.stop()
        if fake is not None:
            fake.stop()
    if problems:
        for p in problems:
            print(f"soak: FAIL: {p}", flush=True)
        print(f"soak: logs kept in {work}", flush=True)
        return 130 if interrupted else 1
    print("soak: PASS", flush=True)
    if os.environ.get("SOAK_KEEP") != "1" and not os.environ.get("SOAK_WORKDIR"):
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"soak: logs in {work}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
