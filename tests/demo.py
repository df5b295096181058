#!/usr/bin/python3
"""make demo: the system on one machine, against the bundled fake cloud on 127.0.0.1.

The fake Auto Scaling group launches each instance as a real local runnerd process with its own
IMDS identity (its own port), a temporary root, and a fake agent that claims one job, runs it
and exits; runnerd then leaves the group with a decrement and "powers off" (ends the process).
This first version sets the group's desired capacity from the queue once, the way the scaler
will; it prints a live timeline and a summary, and cleans up everything it started.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import PYTHON, FakeCloud  # noqa: E402

BUILD = Path(os.environ.get("RUNNERD_BUILD") or REPO / "build")
RC = "demo-org/linux"
ASG = "demo-linux"
JOBS = int(os.environ.get("DEMO_JOBS", "6"))
JOB_S = float(os.environ.get("DEMO_JOB_SECONDS", "3"))
DEADLINE_S = float(os.environ.get("DEMO_DEADLINE", "100"))


def instance_main(workdir):
    """Run as the launch command of one fake instance: write its runnerd.conf, exec runnerd."""
    iid = os.environ["FAKE_INSTANCE_ID"]
    root = Path(workdir) / iid
    (root / "bin").mkdir(parents=True, exist_ok=True)
    agent = root / "bin" / "agent"
    agent.write_text(f"#!/bin/sh\nexec {PYTHON} {REPO}/tests/fakes/fake_agent.py "
                     f"--behaviour success --resource-class {RC} -- \"$@\"\n")
    agent.chmod(0o755)
    sock = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    conf = root / "runnerd.conf"
    conf.write_text(f"""[agent]
binary = {agent}
config_path = {root}/etc/agent.yaml
user = {os.environ.get("USER") or "root"}
working_directory = {root}/work
api_url = {os.environ["FAKE_CLOUD_URL"]}
[token]
source = secretsmanager
id = demo-runner-token
key = runner_token
[packages]
install =
[lifecycle]
poweroff_command = echo "{iid}: powered off"
notice_interval = 1s
[control]
socket = {sock}/control.sock
group = {os.getgid()}
""")
    os.execv(str(BUILD / "runnerd"), [str(BUILD / "runnerd"), "-c", str(conf)])


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--instance":
        instance_main(sys.argv[2])
        return 0
    work = Path(tempfile.mkdtemp(prefix="runnerd-demo-"))
    fake = FakeCloud(work, tick_interval=0.5).start()
    stopped = False

    def stop(*_):
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        fake.set_secret("demo-runner-token", '{"runner_token": "demo-resource-class-token"}')
        fake.set_agent_token("demo-resource-class-token", RC)
        fake.set_asg(ASG, 0, 4, 0, protect_new=True, stop_grace_s=5,
                     launch_command=[PYTHON, str(Path(__file__).resolve()), "--instance",
                                     str(work)])
        fake.add_jobs(RC, count=JOBS, duration_s=JOB_S)
        print(f"fake cloud on {fake.url}; {JOBS} jobs of {JOB_S:.0f} s queued on {RC}; "
              f"group {ASG} max 4")
        t0 = time.monotonic()
        subprocess.run([str(BUILD / "tests" / "cloudtool"), "set-desired", ASG,
                        str(min(JOBS, 4))], env=fake.env(imds=False), check=True)
        last = None
        shown = None
        while not stopped and time.monotonic() - t0 < DEADLINE_S:
            s = fake.state(wait=last["generation"] if last else None, timeout=1.0)
            last = s
            jobs = {k: len(v) for k, v in s["jobs"].get(RC, {}).items()}
            g = s["asgs"][ASG]
            states = {}
            for i in g["instances"]:
                states[i["state"]] = states.get(i["state"], 0) + 1
            line = (f"desired={g['desired']} instances={dict(sorted(states.items()))} "
                    f"queued={jobs.get('queued')} running={jobs.get('running')} "
                    f"done={jobs.get('done')}")
            if line != shown:
                print(f"t={time.monotonic() - t0:5.1f}s {line}", flush=True)
                shown = line
            if jobs.get("done") == JOBS and not g["instances"]:
                break
            # The first wave takes up to 4 jobs; launch again for what is left.
            if jobs.get("queued") and g["desired"] == 0:
                subprocess.run([str(BUILD / "tests" / "cloudtool"), "set-desired", ASG,
                                str(min(jobs["queued"], 4))], env=fake.env(imds=False),
                               check=True)
        s = fake.state()
        jobs = {k: len(v) for k, v in s["jobs"].get(RC, {}).items()}
        terms = [r for r in fake.requests() if r.get("op") == "TerminateInstanceInAutoScalingGroup"]
        print(f"summary: jobs done {jobs.get('done')}/{JOBS}, instances launched "
              f"{len(s['terminated']) + len(s['asgs'][ASG]['instances'])}, left the group with "
              f"a decrement {sum(1 for r in terms if r['status'] == 200)}, "
              f"wall {time.monotonic() - t0:.1f} s")
        return 0 if jobs.get("done") == JOBS else 1
    finally:
        fake.stop()


if __name__ == "__main__":
    sys.exit(main())
