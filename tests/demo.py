#!/usr/bin/python3
"""make demo: the whole system on one machine, against the bundled fake cloud on 127.0.0.1.

What runs:
- tests/fakes/fakecloud.py: IMDS, Secrets Manager, Auto Scaling and the Runner API;
- the real runner-scaler as a daemon (interval 1 s), its config in a temporary directory, its
  Circle-Token in the fake Secrets Manager, scaling two Auto Scaling groups, one per resource
  class;
- for every instance a group launches: a real runnerd process with its own temporary root, its
  own IMDS identity (port) and role credentials. It "boots" for DEMO_BOOT_SECONDS, then runs
  the boot flow and supervises a fake agent that claims one job, runs it and exits; runnerd then
  leaves the group with a decrement and "powers off" (poweroff_command ends the process).

The timeline shows per pool the unclaimed jobs, the group's desired capacity and its instances
by phase (from each instance's `runnerctl status --json` over its control socket, and the job
it runs from the fake). The summary: jobs, mean and p95 wait (claim - submit),
instance-seconds and idle instance-seconds. Every process the demo started is stopped at the
end, also on Ctrl-C (exit 130), and the demo checks that none is left.

DEMO_FAIL_BOOT=1: a bad configuration, live. The linux pool's launch template names a runner
token secret that does not exist, so every instance it launches fails in runnerd's token phase,
leaves its group with a decrement and powers off. runner-scaler notices (launch_failures, 3 in
a row), stops raising the group for a back-off of 60 s and says so; the timeline shows the
seconds of back-off left. Once it backs off the demo "fixes" the launch template (instances that
boot from then on get the right secret); the group is raised again when the back-off ends, or
at once when an instance launched before it boots after the fix and its runner connects (the
scaler says so, and the demo shows that line). The summary says how many launches failed and
how often the pool backed off.

Warm pools: the linux pool keeps DEMO_WARM_POOL (2; 0 turns it off) instances prepared and
stopped ([pool] warm_pool, the group's LAUNCHING hook, runnerd's launch_hook and state_dir).
Every instance "installs a package" for DEMO_BAKE_SECONDS (3) before its agent starts; pool
instances do that ahead of time and are stopped; one started from the pool skips it. The
jobs come once the pool is ready; the timeline's warm column counts the pool's prepared
instances (+ those preparing), and the summary compares the time from an instance's start to
its job for instances from the pool and cold launches: the wait a warm instance saves.

Knobs (environment): DEMO_JOBS (total jobs, default 24), DEMO_JOB_SECONDS (mean job length, 5),
DEMO_BOOT_SECONDS (simulated OS boot, 2), DEMO_BAKE_SECONDS (the package install, 3),
DEMO_WARM_POOL (2), DEMO_WAVE_SECONDS (when the second wave of jobs comes, 15), DEMO_DEADLINE (seconds, 110; 200 with DEMO_FAIL_BOOT), DEMO_FAIL_BOOT=1 (above),
DEMO_WORKDIR (use this directory), DEMO_SUMMARY (write the summary as JSON to this file),
DEMO_KEEP=1 (keep the temporary files), RUNNERD_BUILD (the build directory).
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import PYTHON, FakeCloud, _die_with_parent  # noqa: E402

BUILD = Path(os.environ.get("RUNNERD_BUILD") or REPO / "build").resolve()
JOBS = max(2, int(os.environ.get("DEMO_JOBS", "24")))
JOB_S = float(os.environ.get("DEMO_JOB_SECONDS", "5"))
BOOT_S = float(os.environ.get("DEMO_BOOT_SECONDS", "2"))
FAIL_BOOT = os.environ.get("DEMO_FAIL_BOOT") == "1"
BAKE_S = float(os.environ.get("DEMO_BAKE_SECONDS", "3"))
WARM_POOL = int(os.environ.get("DEMO_WARM_POOL", "0" if FAIL_BOOT else "2"))
HOOK = "runner-launch"
DEADLINE_S = float(os.environ.get("DEMO_DEADLINE", "200" if FAIL_BOOT else "110"))
WAVE_S = float(os.environ.get("DEMO_WAVE_SECONDS", "15"))
SCALER_TOKEN = "demo-circle-token-0123456789"


class Pool:
    def __init__(self, name, rc, asg, mx, share, warm=0):
        self.name, self.rc, self.asg, self.max, self.share = name, rc, asg, mx, share
        self.warm = warm  # [pool] warm_pool: prepared, stopped instances (0: none)
        self.secret = f"demo-runner-token-{name}"
        self.agent_token = f"demo-agent-token-{name}"


POOLS = [Pool("linux", "demo/linux", "demo-linux", 4, 2 / 3, WARM_POOL),
         Pool("arm", "demo/arm", "demo-arm", 3, 1 / 3)]

GLYPHS_UTF8 = {"busy": "█", "idle": "▒", "start": "░", "leave": "×", "free": "·"}
GLYPHS_ASCII = {"busy": "#", "idle": "=", "start": "+", "leave": "x", "free": "."}


# ---- one instance ------------------------------------------------------------------------------

def fail_marker(workdir, rc):
    """While this file exists, the launch template of rc's group is broken (DEMO_FAIL_BOOT)."""
    return Path(workdir) / ("fail-boot-" + rc.replace("/", "-"))


def bake_stand_ins(root, bake_s):
    """apt-get and dpkg-query in root/bin: installing "demo-toolchain" takes bake_s seconds
    (the bake work a warm pool does ahead of time); it stays installed on this disk."""
    (root / "dpkg").mkdir(exist_ok=True)
    (root / "bin" / "apt-get").write_text(
        "#!/bin/sh\n"
        f"case \"$*\" in *\" install \"*) sleep {bake_s}; touch {root}/dpkg/demo-toolchain;; "
        "esac\nexit 0\n")
    (root / "bin" / "dpkg-query").write_text(
        f"#!/bin/sh\n[ -e {root}/dpkg/\"$3\" ] || exit 1\nprintf 'install ok installed'\n")
    for f in ("apt-get", "dpkg-query"):
        (root / "bin" / f).chmod(0o755)


def instance_main(workdir, sockdir, rc, secret, boot_s):
    """The launch command of one fake instance: boot, write runnerd.conf, exec runnerd. The
    instance's disk is WORKDIR/instances/ID: a start from the warm pool boots the same disk
    again (state_dir and the bake work are on it). The group's launch_env may give
    DEMO_LAUNCH_HOOK (the LAUNCHING hook runnerd completes) and DEMO_BAKE_SECONDS (a package
    whose install takes that long)."""
    iid = os.environ["FAKE_INSTANCE_ID"]
    time.sleep(float(boot_s))  # the OS booting; the instance's IMDS is already up
    if fail_marker(workdir, rc).exists():
        secret += "-typo"  # a secret that does not exist: runnerd fails in its token phase
    root = Path(workdir) / "instances" / iid
    (root / "bin").mkdir(parents=True, exist_ok=True)
    bake_s = float(os.environ.get("DEMO_BAKE_SECONDS") or 0)
    if bake_s > 0:
        bake_stand_ins(root, bake_s)
        os.environ["PATH"] = f"{root}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"
    # runnerd keeps its lock beside the socket: a directory of its own per instance.
    (Path(sockdir) / iid).mkdir(mode=0o750, exist_ok=True)
    agent = root / "bin" / "agent"
    agent.write_text(f"#!/bin/sh\nexec {PYTHON} {REPO}/tests/fakes/fake_agent.py "
                     f"--behaviour success --resource-class {rc} -- \"$@\"\n")
    agent.chmod(0o755)
    conf = root / "runnerd.conf"
    conf.write_text(f"""[agent]
binary = {agent}
config_path = {root}/etc/agent.yaml
user = {os.environ.get("USER") or "root"}
working_directory = {root}/work
task_agent_directory = {sockdir}/tasks/{iid}
api_url = {os.environ["FAKE_CLOUD_URL"]}
[token]
source = secretsmanager
id = {secret}
key = runner_token
[packages]
install = {"demo-toolchain" if bake_s > 0 else ""}
[lifecycle]
poweroff_command = echo "{iid}: powered off"
notice_interval = 1s
launch_hook = {os.environ.get("DEMO_LAUNCH_HOOK", "")}
state_dir = {root}/state
[control]
socket = {sockdir}/{iid}/control.sock
group = {os.getgid()}
""")
    runnerd = str(BUILD / "runnerd")
    os.execv(runnerd, [runnerd, "-c", str(conf)])


# ---- watching ----------------------------------------------------------------------------------

def phase_of(sockdir, iid):
    """runnerd's phase over its control socket; None while nothing answers there."""
    sock = Path(sockdir) / iid / "control.sock"
    if not sock.exists():
        return None
    try:
        p = subprocess.run([str(BUILD / "runnerctl"), "-s", str(sock), "status", "--json"],
                           capture_output=True, text=True, timeout=2)
        return json.loads(p.stdout)["phase"] if p.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, KeyError):
        return None


def classify(inst, phase, runners):
    """One of boot/start/idle/busy/leave for the timeline. runners: names of the runners that
    hold a job now (runnerd names them %H-%i: the instance id ends the name)."""
    if inst["state"] == "Terminating" or inst["stopped"]:
        return "leave"
    if any(n.endswith(inst["id"]) for n in runners):
        return "busy"
    if phase is None:
        return "boot"
    if phase in ("draining", "leaving-asg", "powering-off", "failed"):
        return "leave"
    if phase == "running":
        return "idle"
    return "start"  # metadata .. agent-config, warm-wait


def pool_view(state, pool, sockdir, phases):
    jobs = state["jobs"].get(pool.rc, {"queued": [], "running": [], "done": []})
    runners = [j["runner_name"] or "" for j in jobs["running"]]
    asg = state["asgs"][pool.asg]
    counts = dict.fromkeys(("boot", "start", "idle", "busy", "leave"), 0)
    for inst in asg["instances"]:
        ph = phases.get(inst["id"])
        counts[classify(inst, ph, runners)] += 1
    total = sum(len(v) for v in jobs.values())
    warm = asg.get("warm_instances", [])
    ready = sum(1 for w in warm if w["state"] in ("Warmed:Stopped", "Warmed:Running"))
    warming = sum(1 for w in warm if w["state"].startswith("Warmed:Pending"))
    return {"queue": len(jobs["queued"]), "desired": asg["desired"], "done": len(jobs["done"]),
            "total": total, "warm": ready, "warming": warming, **counts}


def warm_cell(v, pool):
    """The warm column: instances prepared and stopped in the pool, +N still preparing."""
    if not pool.warm:
        return "-"
    return f"{v['warm']}" + (f"+{v['warming']}" if v["warming"] else "")


def fleet_strip(v, mx, g):
    cells = (g["busy"] * v["busy"] + g["idle"] * v["idle"] + g["start"] * (v["boot"] + v["start"])
             + g["leave"] * v["leave"])
    return cells + g["free"] * max(0, mx - len(cells))


# ---- processes ---------------------------------------------------------------------------------

def procs_mentioning(*paths):
    """pids (not ours) whose command line mentions one of paths: what the demo started."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(p in cmd for p in paths):
            out.append(int(d))
    return out


def stop_process(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---- summary -----------------------------------------------------------------------------------

def p95(values):
    """Nearest rank, like runner-scaler simulate."""
    v = sorted(values)
    return v[max(0, -(-len(v) * 95 // 100) - 1)] if v else 0.0


def failed_launches(state, asg):
    """Instances of asg that left without their runner ever being listed."""
    names = [r["name"] for r in state["runners"]]
    gone = [i for i in state["terminated"] if i["asg"] == asg]
    return [i["id"] for i in gone if not any(i["id"] in n for n in names)]


def backoff_lines(log_path):
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return []
    return [x for x in text.splitlines() if re.search(r"WARNING: pool \S+: \d+ launches in a row", x)]


def backoff_ended_lines(log_path):
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return []
    return [x for x in text.splitlines() if "launch back-off ended" in x]


def backoff_left(prom_path, pool):
    """Seconds of launch back-off left for pool, from the scaler's metrics file (0 if none)."""
    try:
        m = re.search(rf'^runner_scaler_pool_backoff_seconds{{pool="{pool}"}} (\d+)$',
                      Path(prom_path).read_text(), re.M)
    except OSError:
        return 0
    return int(m[1]) if m else 0


def warm_stats(state, now_wall):
    """What the warm pools did: per instance that took a job, the time from its start (a
    launch, or a start from the pool) to its job's claim; the pool's stopped time."""
    claims = {}
    for rc in state["jobs"].values():
        for j in rc["running"] + rc["done"]:
            iid = (j["runner_name"] or "").rsplit("-", 1)[-1]
            claims.setdefault(iid, j["claimed_at"])
    insts = list(state["terminated"])
    for a in state["asgs"].values():
        insts += a["instances"] + a.get("warm_instances", [])
    warm, cold = [], []
    stopped_s = running_pool_s = 0.0
    prepared = 0
    for i in insts:
        short = i["id"].rsplit("-", 1)[-1]
        if i.get("stopped_at"):
            prepared += 1
            end = i.get("resumed_at") or i["ended_at"] or now_wall
            stopped_s += max(0.0, end - i["stopped_at"])
            running_pool_s += i["stopped_at"] - i["launched_at"]
        if short not in claims:
            continue
        if i.get("resumed_at"):
            warm.append(claims[short] - i["resumed_at"])
        else:
            cold.append(claims[short] - i["launched_at"])

    def mean(v):
        return round(sum(v) / len(v), 3) if v else None

    return {"warm_jobs": len(warm), "cold_jobs": len(cold),
            "warm_start_to_job_s": mean(warm), "cold_start_to_job_s": mean(cold),
            "wait_saved_s": (round(mean(cold) - mean(warm), 3) if warm and cold else None),
            "warm_prepared": prepared, "warm_stopped_seconds": round(stopped_s, 3),
            "warm_preparing_seconds": round(running_pool_s, 3)}


def summarize(state, requests, now_wall, t0_wall):
    waits, busy = [], 0.0
    done = 0
    for rc in state["jobs"].values():
        for j in rc["done"]:
            done += 1
            waits.append(j["claimed_at"] - j["created"])
            busy += j["completed_at"] - j["claimed_at"]
        for j in rc["running"]:
            waits.append(j["claimed_at"] - j["created"])
            busy += now_wall - j["claimed_at"]
    insts = list(state["terminated"])
    for a in state["asgs"].values():
        insts += a["instances"]
    inst_s = 0.0
    for i in insts:
        life = (i["ended_at"] or now_wall) - i["launched_at"]
        if i.get("stopped_at"):  # stopped in the warm pool meanwhile: EBS only, not counted
            life -= (i.get("resumed_at") or i["ended_at"] or now_wall) - i["stopped_at"]
        inst_s += life
    terms = [r for r in requests if r.get("op") == "TerminateInstanceInAutoScalingGroup"
             and r.get("status") == 200]
    left = {(r.get("params") or {}).get("InstanceId") for r in terms}
    dec = [r for r in terms
           if (r.get("params") or {}).get("ShouldDecrementDesiredCapacity") == "true"]
    sets = [r for r in requests if r.get("op") == "SetDesiredCapacity" and r.get("status") == 200]
    total = sum(len(v) for rc in state["jobs"].values() for v in rc.values())
    return {"jobs": total, "jobs_done": done,
            "wait_mean_s": round(sum(waits) / len(waits), 3) if waits else 0.0,
            "wait_p95_s": round(p95(waits), 3),
            "instance_seconds": round(inst_s, 3), "busy_seconds": round(busy, 3),
            "idle_instance_seconds": round(max(0.0, inst_s - busy), 3),
            "instances_launched": len(insts), "left_group": len(left),
            "left_with_decrement": len(dec),
            "capacity_writes": len(sets), "wall_s": round(now_wall - t0_wall, 3)}


# ---- main --------------------------------------------------------------------------------------

def job_plan():
    """(at_s, pool, duration_s): two waves, 60 % at once and the rest WAVE_S later, durations
    spread from 0.6x to 1.4x the mean so the fleet does not move in lockstep."""
    plan = []
    wave2 = int(JOBS * 0.4)
    for k in range(JOBS):
        at = 0.0 if k < JOBS - wave2 else WAVE_S
        pool = POOLS[0] if (k % 3) != 2 else POOLS[1]
        dur = JOB_S * (0.6 + 0.8 * ((k * 7) % JOBS) / max(1, JOBS - 1))
        plan.append((at, pool, round(dur, 2)))
    return plan


def scaler_conf(path, metrics=None):
    lines = ["[scaler]", "interval = 1s", "request_timeout = 3s"]
    if metrics:
        lines.append(f"metrics = {metrics}")
    lines += ["",
             "[circleci]", "token_source = secretsmanager", "token_id = demo-scaler-token",
             "token_key = circle_token"]
    for p in POOLS:
        lines += ["", f"[pool {p.name}]", f"resource_class = {p.rc}", f"asg = {p.asg}",
                  "min = 0", f"max = {p.max}"]
        if p.warm:
            lines.append(f"warm_pool = {p.warm}")
    path.write_text("\n".join(lines) + "\n")


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "--instance":
        instance_main(*sys.argv[2:])
        return 0
    for exe in ("runnerd", "runnerctl", "runner-scaler"):
        if not os.access(BUILD / exe, os.X_OK):
            print(f"demo: {BUILD / exe} is missing; run make first", file=sys.stderr)
            return 69
    own_work = not os.environ.get("DEMO_WORKDIR")
    work = Path(os.environ.get("DEMO_WORKDIR") or tempfile.mkdtemp(prefix="runnerd-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are short (108 bytes): their own short directory.
    sockdir = tempfile.mkdtemp(prefix="rdemo-", dir="/tmp")
    # Searchable by all: the job user reaches each runner's task agent directory through it
    # (runnerd refuses one it cannot); each instance's socket directory stays 0750.
    os.chmod(sockdir, 0o755)
    glyphs = GLYPHS_UTF8 if (sys.stdout.encoding or "").lower().startswith("utf") else \
        GLYPHS_ASCII
    interrupted = []
    failed = []

    def on_signal(signum, _frame):
        interrupted.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    fake = scaler = None
    seen_pids = set()
    last_state, requests, summary = None, [], None
    t0 = time.monotonic()
    t0_wall = time.time()
    try:
        fake = FakeCloud(work, tick_interval=0.25).start()
        fake.set_secret("demo-scaler-token", json.dumps({"circle_token": SCALER_TOKEN}))
        fake.set_runner_token(SCALER_TOKEN)
        for p in POOLS:
            fake.set_secret(p.secret, json.dumps({"runner_token": p.agent_token}))
            fake.set_agent_token(p.agent_token, p.rc)
            fake.set_asg(p.asg, 0, p.max, 0, protect_new=True, stop_grace_s=5,
                         launch_command=[PYTHON, str(Path(__file__).resolve()), "--instance",
                                         str(work), sockdir, p.rc, p.secret, str(BOOT_S)],
                         launch_env={"DEMO_BAKE_SECONDS": str(BAKE_S),
                                     "DEMO_LAUNCH_HOOK": HOOK if p.warm else ""})
            if p.warm:
                # AWS waits for runnerd's CONTINUE before it stops a warming instance.
                fake.put_launch_hook(p.asg, HOOK, heartbeat_s=600, default="ABANDON")
        conf = work / "scaler.conf"
        prom = work / "runnerd.prom"
        if FAIL_BOOT:
            fail_marker(work, POOLS[0].rc).write_text("")
        scaler_conf(conf, metrics=prom if FAIL_BOOT else None)
        env = fake.env(imds=False)
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        with open(work / "runner-scaler.log", "ab") as log:
            scaler = subprocess.Popen([str(BUILD / "runner-scaler"), "-c", str(conf)], env=env,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      preexec_fn=_die_with_parent)

        plan = job_plan()
        pending = list(plan)
        print(f"runnerd demo: fake cloud on {fake.url}; runner-scaler (pid {scaler.pid}) "
              f"polls every 1 s; logs in {work}")
        for p in POOLS:
            n1 = sum(1 for at, q, _ in plan if q is p and at == 0)
            n2 = sum(1 for at, q, _ in plan if q is p and at > 0)
            print(f"  pool {p.name:5}  {p.rc} -> group {p.asg} (max {p.max}): {n1} jobs now, "
                  f"{n2} more at {WAVE_S:g} s")
        print(f"  jobs run {min(d for *_, d in plan):.1f}-{max(d for *_, d in plan):.1f} s; "
              f"an instance boots for {BOOT_S:g} s, then runnerd installs a package "
              f"({BAKE_S:g} s) and starts the agent")
        warm_pools = [p for p in POOLS if p.warm]
        for p in warm_pools:
            print(f"  pool {p.name}: a warm pool of {p.warm} (warm_pool = {p.warm}): instances "
                  "boot and install ahead of time, then wait stopped;\n    the jobs come once "
                  "it is ready, and an instance started from it skips the install")
        if FAIL_BOOT:
            print(f"  DEMO_FAIL_BOOT: group {POOLS[0].asg}'s launch template names a runner token "
                  "secret that does not exist:\n  its instances fail in runnerd's token phase "
                  "until runner-scaler backs off; then the template is fixed")
        print(f"  fleet: {glyphs['busy']} running a job  {glyphs['idle']} agent up, no job  "
              f"{glyphs['start']} booting  {glyphs['leave']} leaving  {glyphs['free']} free "
              f"slot\n")
        print("   time  pool   queue desired  fleet    boot start idle busy leave  warm   done")
        shown, shown_at = None, -1.0
        gen = None
        phases = {}
        fixed = ended = False
        jobs_t0 = None if warm_pools else 0.0  # jobs come once the warm pools are ready
        while not interrupted:
            now = time.monotonic() - t0
            if now > DEADLINE_S:
                print(f"demo: deadline of {DEADLINE_S:g} s reached", file=sys.stderr)
                break
            while jobs_t0 is not None and pending and pending[0][0] + jobs_t0 <= now:
                _, pool, dur = pending.pop(0)
                fake.add_jobs(pool.rc, 1, dur)
            s = fake.state(wait=gen, timeout=0.5)
            gen = s["generation"]
            last_state = s
            for a in s["asgs"].values():
                for inst in a["instances"]:
                    if inst["pid"]:
                        seen_pids.add(inst["pid"])
                    if inst["state"] != "Terminating" and not inst["stopped"]:
                        phases[inst["id"]] = phase_of(sockdir, inst["id"])
            views = [pool_view(s, p, sockdir, phases) for p in POOLS]
            if jobs_t0 is None and all(v["warm"] >= p.warm for p, v in zip(POOLS, views)
                                       if p.warm):
                jobs_t0 = now
                print(f"{now:6.1f}s " + "; ".join(
                    f"{p.name}: {p.warm} instances prepared and stopped in the warm pool"
                    for p in warm_pools) + ": the jobs come now")
            lines = []
            for p, v in zip(POOLS, views):
                lines.append(f"{p.name:6} {v['queue']:5} {v['desired']:7}  "
                             f"{fleet_strip(v, p.max, glyphs):8} {v['boot']:4} {v['start']:5} "
                             f"{v['idle']:4} {v['busy']:4} {v['leave']:5} "
                             f"{warm_cell(v, p):>5} {v['done']:3}/{v['total']}")
                left = backoff_left(prom, p.name) if FAIL_BOOT else 0
                if left:
                    lines[-1] += f"  back-off {left} s"
            if FAIL_BOOT and not fixed:
                warned = backoff_lines(work / "runner-scaler.log")
                if warned:
                    fail_marker(work, POOLS[0].rc).unlink()
                    fixed = True
                    said = warned[0].split("WARNING: ", 1)[1].split(": not raising")[0]
                    print(f"{now:6.1f}s runner-scaler: {said}: not raising desired capacity "
                          "for 60 s\n        (the launch template is fixed now: new instances "
                          "get the right secret)")
            if FAIL_BOOT and fixed and not ended:
                done_lines = backoff_ended_lines(work / "runner-scaler.log")
                if done_lines:
                    # An instance that booted after the fix connected its runner.
                    ended = True
                    print(f"{now:6.1f}s runner-scaler: "
                          f"{done_lines[0].split('runner-scaler: ', 1)[-1]}")
            finished = all(v["done"] == v["total"] and v["total"] for v in views) and all(
                not s["asgs"][p.asg]["instances"] for p in POOLS) and not pending
            # At most a line pair a second, like vmstat: what changed in between is merged.
            if lines != shown and (now - shown_at >= 1.0 or finished):
                print(f"{now:6.1f}s {lines[0]}")
                for extra in lines[1:]:
                    print(f"        {extra}")
                sys.stdout.flush()
                shown, shown_at = lines, now
            if finished:
                break
        requests = fake.requests()
        last_state = fake.state()
    except Exception as e:  # still clean up; say what broke
        if not interrupted:
            print(f"demo: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(e)
    finally:
        end_wall = time.time()
        stop_process(scaler)
        if fake is not None:
            if last_state is None:
                try:
                    last_state = fake.state()
                except Exception:
                    pass
            seen_pids.update(fake.stop())
        # Belt and braces: any instance process group still alive (checked to be ours).
        for pid in procs_mentioning(str(work), sockdir):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    left = procs_mentioning(str(work), sockdir)
    if last_state is not None:
        summary = summarize(last_state, requests, end_wall, t0_wall)
        summary["failed_launches"] = len(failed_launches(last_state, POOLS[0].asg)) + len(
            failed_launches(last_state, POOLS[1].asg))
        summary["backoffs"] = len(backoff_lines(work / "runner-scaler.log"))
        summary.update(warm_stats(last_state, end_wall))
    else:
        summary = {"jobs": 0, "jobs_done": 0}
    summary["processes_left"] = len(left)
    summary["interrupted"] = bool(interrupted)
    print()
    if interrupted:
        print("demo: interrupted; everything it started is stopped")
    if last_state is not None:
        print(f"summary: {summary['jobs_done']}/{summary['jobs']} jobs done in "
              f"{summary['wall_s']:.1f} s; wait mean {summary['wait_mean_s']:.1f} s, "
              f"p95 {summary['wait_p95_s']:.1f} s")
        rest = summary["left_group"] - summary["left_with_decrement"]
        print(f"         {summary['instances_launched']} instances; {summary['left_group']} "
              f"left their group themselves, {summary['left_with_decrement']} with a decrement"
              + (f", {rest} without (the scaler had lowered desired to MinSize first)"
                 if rest else ""))
        print(f"         runner-scaler wrote SetDesiredCapacity {summary['capacity_writes']} "
              f"times")
        if FAIL_BOOT:
            print(f"         {summary['failed_launches']} launches failed their boot; the "
                  f"{POOLS[0].name} pool backed off {summary['backoffs']} "
                  f"time{'s' if summary['backoffs'] != 1 else ''} instead of launching them "
                  "again and again")
        print(f"         instance-seconds {summary['instance_seconds']:.1f}: running jobs "
              f"{summary['busy_seconds']:.1f}, idle (booting, starting, waiting, leaving) "
              f"{summary['idle_instance_seconds']:.1f}")
        if WARM_POOL and summary.get("warm_prepared"):
            print(f"         warm pool: {summary['warm_prepared']} instances prepared in it "
                  f"({summary['warm_preparing_seconds']:.1f} instance-seconds running, "
                  f"counted above), {summary['warm_stopped_seconds']:.1f} s stopped (disk "
                  "only)")
        if summary.get("warm_jobs"):
            line = (f"         start to job: {summary['warm_jobs']} from the warm pool "
                    f"{summary['warm_start_to_job_s']:.1f} s")
            if summary.get("cold_jobs"):
                line += (f", {summary['cold_jobs']} cold launches "
                         f"{summary['cold_start_to_job_s']:.1f} s: a warm instance saved "
                         f"{summary['wait_saved_s']:.1f} s of wait")
            print(line)
    print(f"         processes left: {len(left)}")
    if os.environ.get("DEMO_SUMMARY"):
        Path(os.environ["DEMO_SUMMARY"]).write_text(json.dumps(summary) + "\n")
    ok = (not interrupted and not failed and not left and summary["jobs"] == JOBS
          and summary["jobs_done"] == JOBS)
    if FAIL_BOOT:  # it showed what it says it shows
        ok = ok and summary.get("backoffs", 0) >= 1 and summary.get("failed_launches", 0) >= 3
    if os.environ.get("DEMO_KEEP") != "1" and (ok or interrupted):
        import shutil
        shutil.rmtree(sockdir, ignore_errors=True)
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print(f"demo: logs kept in {work}", file=sys.stderr)
    if interrupted and interrupted[0] == signal.SIGINT:
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
