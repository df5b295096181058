#!/usr/bin/python3
"""A stand-in for the CircleCI agent that runnerd starts (circleci-runner or launch-agent).

usage: fake_agent.py --behaviour B [--pidfile F] [--notify FIFO] [--dump F] [--record F]
                     [--resource-class RC] -- AGENT-ARGV...
AGENT-ARGV is what runnerd passes: `machine -c FILE` / `machine --config FILE` (machine runner 3)
or `--config FILE` (launch-agent). The tests write a small wrapper script as [agent] binary that
execs this program with the options and "$@".

The agent reads its YAML config (api.auth_token and runner.name are required; api.url defaults
to https://runner.circleci.com, as the real agents do), then:
  --dump F      writes {argv, env, config, config_mode, config_uid, uid, pid} to F (atomically)
  --pidfile F   writes its pid to F (atomically) once SIGTERM handling is in place: a test that
                saw the file knows a SIGTERM from now on is recorded, never lost
  --notify FIFO then writes "ready PID\n" into FIFO (when a reader has it open): the test's
                handshake, read with a deadline instead of polling for the pid file
  --record F    appends one line per event: started, claimed JOB, completed JOB, idle, SIGTERM
Behaviours:
  success           claim one job from the fake cloud's side door (POST {api.url}/_fake/agent/claim
                    with the config's token and name), run it as the real agent does (below),
                    complete it with the task agent's exit code, exit 0; exit 0 as well when the
                    queue is empty (like an idle timeout), 2 on 401
The job, as machine runner 3 runs one: the runner (this process, root under runnerd) writes its
task agent into runner.task_agent_directory (default ~/.local/libexec/circleci of the runner's
user, as the real one), mode 0755, and runs it through runner.command_prefix (sudo -niHu USER
--): the task agent, as the job user, reports `id -un` and exits 0. A directory the job user
cannot reach (the default under /root) fails the job with the task agent's exit status (126 or
1 from sudo): recorded as "task-agent STATUS USER", and the job completes with that status.
  crash             exit 3
  signal            kill itself with SIGKILL
  hang              wait for SIGTERM (a drain), record it, exit 0
  hang-ignore-term  record SIGTERMs and keep waiting (runnerd must SIGKILL it)
  dump-env          write the dump and exit 0
Exit 64 on bad usage, 78 when the config is unusable.
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

BEHAVIOURS = ("success", "crash", "signal", "hang", "hang-ignore-term", "dump-env")


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def record(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def parse(argv):
    opts = {"behaviour": None, "pidfile": None, "notify": None, "dump": None, "record": None,
            "resource_class": "test-org/runner"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        key = a[2:].replace("-", "_")
        if not a.startswith("--") or key not in opts or i + 1 >= len(argv):
            break
        opts[key] = argv[i + 1]
        i += 2
    rest = argv[i:]
    config = None
    if rest[:1] == ["machine"] and len(rest) == 3 and rest[1] in ("-c", "--config"):
        config = rest[2]
    elif len(rest) == 2 and rest[0] == "--config":
        config = rest[1]
    if opts["behaviour"] not in BEHAVIOURS or config is None:
        print(f"fake_agent: bad usage: {argv!r}", file=sys.stderr)
        sys.exit(64)
    return opts, config, rest


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, None


TASK_AGENT = "#!/bin/sh\n# the stand-in task agent: the job runs as this user\nid -un\n"


def run_task_agent(runner, machine_runner):
    """Write the task agent where machine runner 3 downloads it and run it through the command
    prefix (the legacy launch-agent: the job's command through the prefix, no file).
    -> (exit status, the user it ran as or "-")."""
    prefix = list(runner.get("command_prefix") or [])
    if not machine_runner:
        try:
            r = subprocess.run(prefix + ["/bin/sh", "-c", "id -un"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60, cwd="/")
        except (OSError, subprocess.TimeoutExpired):
            return 1, "-"
        return r.returncode, (r.stdout.strip() or "-") if r.returncode == 0 else "-"
    d = runner.get("task_agent_directory") or os.path.expanduser("~/.local/libexec/circleci")
    try:
        # The directory is runnerd's to make (root's, 0755). Missing, the stand-in makes it
        # as a careful agent might, 0700 (so only its own user can use it): a runner that
        # relied on the agent for it would fail its jobs here, as it might on a real one.
        if not os.path.isdir(d):
            os.makedirs(d, mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        path = os.path.join(d, "circleci-agent")
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(TASK_AGENT)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except OSError as e:
        print(f"fake_agent: task agent: {e!r}", file=sys.stderr)
        return 1, "-"
    try:
        r = subprocess.run(prefix + [path, "_internal", "agent-runner"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"fake_agent: task agent: {e!r}", file=sys.stderr)
        return 1, "-"
    if r.returncode != 0:
        print(f"fake_agent: task agent exited {r.returncode}: {r.stderr.strip()}",
              file=sys.stderr)
    return r.returncode, (r.stdout.strip() or "-") if r.returncode == 0 else "-"


def main():
    opts, config_path, rest = parse(sys.argv[1:])
    rec = opts["record"]
    # Before anything can be observed: SIGTERM is held and taken with sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        st = os.stat(config_path)
        with open(config_path) as f:
            config = yaml.safe_load(f)
        api, runner = config["api"], config["runner"]
        # The real agents default api.url to CircleCI's cloud when the config has none.
        url = api.get("url") or "https://runner.circleci.com"
        token, name = api["auth_token"], runner["name"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        print(f"fake_agent: config {config_path}: {e!r}", file=sys.stderr)
        return 78
    if opts["dump"]:
        write_atomic(opts["dump"], json.dumps({
            "argv": sys.argv, "agent_argv": rest, "env": dict(os.environ), "config": config,
            "config_mode": st.st_mode & 0o7777, "config_uid": st.st_uid, "uid": os.getuid(),
            "pid": os.getpid(), "cwd": os.getcwd()}))
    record(rec, "started")
    if opts["pidfile"]:
        write_atomic(opts["pidfile"], f"{os.getpid()}\n")
    if opts["notify"]:
        try:
            fd = os.open(opts["notify"], os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, f"ready {os.getpid()}\n".encode())
            os.close(fd)
        except OSError:
            pass  # nobody listening

    b = opts["behaviour"]
    if b == "dump-env":
        return 0
    if b == "crash":
        return 3
    if b == "signal":
        os.kill(os.getpid(), signal.SIGKILL)
    if b in ("hang", "hang-ignore-term"):
        while True:
            signal.sigwait({signal.SIGTERM})
            record(rec, "SIGTERM")
            if b == "hang":
                return 0
    # success
    status, body = post(f"{url.rstrip('/')}/_fake/agent/claim",
                        {"resource_class": opts["resource_class"], "runner_name": name,
                         "token": token})
    if status == 204:
        record(rec, "idle")
        return 0
    if status != 200:
        print(f"fake_agent: claim: HTTP {status}", file=sys.stderr)
        return 2
    job = body["job_id"]
    record(rec, f"claimed {job}")
    code, who = run_task_agent(config.get("runner") or {}, rest[:1] == ["machine"])
    record(rec, f"task-agent {code} {who}")
    time.sleep(float(body.get("duration_s") or 0))  # the job itself, not synchronisation
    status, _ = post(f"{url.rstrip('/')}/_fake/agent/complete",
                     {"job_id": job, "exit_code": code})
    if status != 200:
        print(f"fake_agent: complete: HTTP {status}", file=sys.stderr)
        return 2
    record(rec, f"completed {job}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
