#!/usr/bin/python3
"""The CircleCI agent stand-in that runs INSIDE the e2e guest, started by the installed runnerd.

usage: guest_agent.py [--behaviour success|crash] [--resource-class RC] [--note KEY] [--]
                      AGENT-ARGV
AGENT-ARGV is what runnerd passes to machine runner 3: `machine -c FILE` (or --config FILE).
The guest downloads this file as its agent binary (the stack's [agent] download_url), so the
test bakes the options' defaults into the copy it serves (BEHAVIOUR, RESOURCE_CLASS below).
Only the guest's python3 (cloud-init's) with its stdlib and python3-yaml is used; HTTPS goes
to the world's names (api.url defaults to https://runner.circleci.com, as in the real agent),
trusted through the guest's CA bundle.

What it does, each step's result collected in a report:
  1. waits (bounded) until systemd shows runnerd.service active: READY=1 reached systemd;
  2. claims one job from the fake cloud's agent side door ({api.url}/_fake/agent/claim), with
     the token and runner name from the config runnerd rendered;
  3. with the job claimed, takes `runnerctl status --json` (runnerd must say phase running);
  4. runs the job's one command through the config's command_prefix (sudo -niHu USER --):
     `id -un`, proving the job steps down to the job user under the unit's hardening;
  5. posts the report to the fake ({api.url}/_fake/note, key --note) and prints it on stderr
     (runnerd's journal, and the serial console: the image forwards the journal there);
  then success: "runs" the job (its duration), completes it, exits 0;
       crash:   dies of SIGSEGV with the job still claimed.
Exit 64 on bad usage, 78 when the config is unusable, 2 when the fake refuses a call.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

BEHAVIOUR = "success"
RESOURCE_CLASS = ""
UNIT = "runnerd.service"
ACTIVE_WAIT_S = 60


def log(msg):
    print(f"e2e-agent: {msg}", file=sys.stderr, flush=True)


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, None


def run(argv, timeout=30):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        return {"rc": r.returncode, "stdout": r.stdout[-8000:], "stderr": r.stderr[-4000:]}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": None, "stdout": "", "stderr": repr(e)}


def unit_props():
    r = run(["/usr/bin/systemctl", "show", UNIT, "-p",
             "ActiveState,SubState,Type,MainPID,StatusText,Result,NRestarts"])
    props = dict(line.split("=", 1) for line in r["stdout"].splitlines() if "=" in line)
    return props


def wait_active():
    """systemd processes READY=1 asynchronously, after runnerd forked us: re-read the unit's
    state until it is active, within a deadline (no change notification without D-Bus)."""
    deadline = time.monotonic() + ACTIVE_WAIT_S
    while True:
        p = unit_props()
        if p.get("ActiveState") != "activating" or time.monotonic() >= deadline:
            return p
        time.sleep(0.1)


def parse(argv):
    opts = {"behaviour": BEHAVIOUR, "resource_class": RESOURCE_CLASS, "note": "agent"}
    i = 0
    while i + 1 < len(argv) and argv[i].startswith("--") and argv[i] != "--":
        key = argv[i][2:].replace("-", "_")
        if key not in opts:
            break
        opts[key] = argv[i + 1]
        i += 2
    rest = argv[i + 1:] if argv[i:i + 1] == ["--"] else argv[i:]
    config = None
    if rest and rest[:1] == ["machine"] and len(rest) == 3 and rest[1] in ("-c", "--config"):
        config = rest[2]
    if opts["behaviour"] not in ("success", "crash") or not opts["resource_class"] or not config:
        log(f"bad usage: {argv!r}")
        sys.exit(64)
    return opts, config


def main():
    opts, config_path = parse(sys.argv[1:])
    try:
        with open(config_path) as f:
            config = yaml.safe_load(f)
        url = (config["api"].get("url") or "https://runner.circleci.com").rstrip("/")
        token, name = config["api"]["auth_token"], config["runner"]["name"]
        prefix = config["runner"].get("command_prefix") or []
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        log(f"config {config_path}: {e!r}")
        return 78
    report = {"behaviour": opts["behaviour"], "pid": os.getpid(), "ppid": os.getppid(),
              "uid": os.getuid(), "runner_name": name, "command_prefix": prefix,
              "hostname": os.uname().nodename}
    report["unit"] = wait_active()

    status, body = post(f"{url}/_fake/agent/claim", {"resource_class": opts["resource_class"],
                                                      "runner_name": name, "token": token})
    if status != 200:
        log(f"claim: HTTP {status}")
        post(f"{url}/_fake/note", {"key": opts["note"], "value": dict(report, claim=status)})
        return 2
    job = body["job_id"]
    report["job_id"] = job
    r = run(["/usr/bin/runnerctl", "status", "--json"])
    try:
        report["runnerctl"] = json.loads(r["stdout"])
    except ValueError:
        report["runnerctl"] = None
    report["runnerctl_rc"], report["runnerctl_stderr"] = r["rc"], r["stderr"]
    report["job"] = run(list(prefix) + ["/bin/sh", "-c", "id -un"])
    status, _ = post(f"{url}/_fake/note", {"key": opts["note"], "value": report})
    log(f"report ({status}): {json.dumps(report, sort_keys=True)}")

    if opts["behaviour"] == "crash":
        log(f"crashing with {job} claimed")
        os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(float(body.get("duration_s") or 0))  # the job itself, not synchronisation
    status, _ = post(f"{url}/_fake/agent/complete", {"job_id": job, "exit_code": 0})
    if status != 200:
        log(f"complete: HTTP {status}")
        return 2
    log(f"completed {job}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
