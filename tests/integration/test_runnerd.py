"""runnerd end to end: the real binary against the fake cloud, with tests/fakes/fake_agent.py as
the agent. Every wait is on a condition with a deadline (process exit, a file appearing, the
fake's request log or state); nothing sleeps to synchronise.

Each test gets a config in tmp_path: the agent binary is a per-test wrapper script around
fake_agent.py, the control socket lives in a short /tmp directory (sun_path is 108 bytes), the
group is the current user's primary group, and poweroff_command writes a marker file.
"""

import grp
import json
import os
import pwd
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import MAIN_INSTANCE_ID, PYTHON, REPO, public_dir  # noqa: E402

FAKE_AGENT = REPO / "tests" / "fakes" / "fake_agent.py"
RC = "test-org/linux-small"
TOKEN = "rt-0123456789abcdef-SECRET-TOKEN"
ASG = "cci-runner-asg"
SECRET_ID = "cci-runner-secrets"

EX_USAGE, EX_UNAVAILABLE, EX_TEMPFAIL, EX_CONFIG = 64, 69, 75, 78

# make memcheck (scripts/run-sanitized): a command prefix for runnerd (valgrind ...), and a
# factor for the waits on it, which runs that much slower there.
WRAPPER = shlex.split(os.environ.get("RUNNERD_WRAPPER", ""))
TIMEOUT_SCALE = float(os.environ.get("RUNNERD_TIMEOUT_SCALE") or 1)


# ---- helpers ------------------------------------------------------------------------------

def wait_for(pred, timeout, what, proc=None):
    """Re-check pred() until it holds, with a deadline. For state that has no change
    notification (runnerctl status). Between checks it waits on runnerd's exit (a pidfd), so
    a runnerd that dies ends the wait at once instead of at the deadline."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    pidfd = None
    if proc is not None and proc.poll() is None:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    try:
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            sel.select(0.05)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)


class Runnerd:
    """One runnerd process with its config and files."""

    def __init__(self, build, tmp, fake, behaviour="success", flavour="circleci-runner",
                 token_source="secretsmanager", token_id=SECRET_ID, token_key="runner_token",
                 lifecycle=None, agent=None, extra_env=None, sock_dir=None, path_prefix=None,
                 packages=""):
        self.build, self.tmp, self.fake = Path(build), Path(tmp), fake
        self.task_agent_dir = public_dir("rd-task-") / "task-agent"
        self.pidfile = self.tmp / "agent.pid"
        self.dump = self.tmp / "agent-dump.json"
        self.record = self.tmp / "agent-events"
        self.marker = self.tmp / "poweroff.marker"
        self.stderr_path = self.tmp / "runnerd.stderr"
        self.owns_sock_dir = sock_dir is None
        self.sock_dir = Path(sock_dir or tempfile.mkdtemp(prefix="rd-", dir="/tmp"))
        self.socket = self.sock_dir / "control.sock"
        self.config_path = self.tmp / "etc" / "circleci-runner" / "config.yaml"
        self.wrapper = self.tmp / "bin" / "agent"
        self.wrapper.parent.mkdir(parents=True, exist_ok=True)
        self.fifo = self.tmp / "agent.fifo"
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self.wrapper.write_text(
            "#!/bin/sh\n"
            f"exec {PYTHON} {FAKE_AGENT} --behaviour {behaviour} --pidfile {self.pidfile} "
            f"--notify {self.fifo} --dump {self.dump} --record {self.record} "
            f"--resource-class {RC} -- \"$@\"\n")
        self.wrapper.chmod(0o755)
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        lc = {"on_exit": "poweroff", "poweroff_command": f"echo off > {self.marker}",
              "boot_deadline": "30s", "drain_timeout": "20s", "notice_interval": "100ms",
              "state_dir": str(self.tmp / "state")}
        lc.update(lifecycle or {})
        ag = {"flavour": flavour, "binary": str(self.wrapper),
              "config_path": str(self.config_path), "name": "%H-%i", "user": user,
              "working_directory": str(self.tmp / "work"), "mode": "single-task",
              "idle_timeout": "1m", "max_run_time": "5h",
              "task_agent_directory": str(self.task_agent_dir)}
        ag.update(agent or {})
        sections = {"agent": ag,
                    "token": {"source": token_source, "id": token_id, "key": token_key},
                    "packages": {"install": packages},
                    "lifecycle": lc,
                    "control": {"socket": str(self.socket), "group": group}}
        self.conf = self.tmp / "runnerd.conf"
        self.conf.write_text(render_ini(sections))
        self.env = fake.env()
        if path_prefix:
            self.env["PATH"] = f"{path_prefix}:{self.env.get('PATH', '/usr/bin:/bin')}"
        self.env.update(extra_env or {})
        self.proc = None

    def start(self, *args):
        # Open the handshake FIFO before the agent can exist (non-blocking: no writer yet).
        self._fifo_fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([*WRAPPER, str(self.build / "runnerd"), "-c", str(self.conf),
                                      *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, env=self.env)
        return self

    def wait(self, timeout=20):
        timeout *= TIMEOUT_SCALE
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"runnerd did not exit within {timeout} s:\n{self.stderr()}")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def agent_pid(self, timeout=15):
        """The fake agent's "ready PID" line on the FIFO (the handshake), or fail as soon as
        runnerd exits."""
        timeout *= TIMEOUT_SCALE
        sel = selectors.DefaultSelector()
        pidfd = os.pidfd_open(self.proc.pid)
        sel.register(self._fifo_fd, selectors.EVENT_READ, "fifo")
        sel.register(pidfd, selectors.EVENT_READ, "runnerd")
        buf = b""
        deadline = time.monotonic() + timeout
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no agent handshake within {timeout} s:\n"
                                         f"{self.stderr()}")
                for key, _ in sel.select(left):
                    if key.data == "runnerd":
                        raise AssertionError(f"runnerd exited ({self.proc.wait()}) before the "
                                             f"agent started:\n{self.stderr()}")
                    # Linux reports a FIFO readable only once a writer came: data, or
                    # its close (EOF) after the line.
                    try:
                        chunk = os.read(self._fifo_fd, 256)
                    except BlockingIOError:
                        continue
                    if not chunk and b"\n" not in buf:
                        raise AssertionError("the agent closed the FIFO without a line")
                    buf += chunk
        finally:
            sel.close()
            os.close(pidfd)
        pid = int(buf.split()[1])
        assert int(self.pidfile.read_text()) == pid
        return pid

    def ctl(self, *args, check=True):
        r = subprocess.run([str(self.build / "runnerctl"), "-s", str(self.socket), *args],
                           capture_output=True, text=True, timeout=10)
        if check:
            assert r.returncode == 0, f"runnerctl {args}: {r.returncode} {r.stderr}"
        return r

    def status(self):
        return json.loads(self.ctl("status", "--json").stdout)

    def wait_phase(self, phase, timeout=10):
        def ok():
            if self.proc.poll() is not None:
                raise AssertionError(f"runnerd exited ({self.proc.returncode}) before phase "
                                     f"{phase}:\n{self.stderr()}")
            r = self.ctl("status", "--json", check=False)
            if r.returncode != 0:
                return None
            s = json.loads(r.stdout)
            return s if s["phase"] == phase else None
        return wait_for(ok, timeout, f"phase {phase}", self.proc)

    def events(self):
        try:
            return self.record.read_text().split("\n")[:-1]
        except OSError:
            return []

    def agent_dump(self):
        return json.loads(self.dump.read_text())

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self._err.close()
            os.close(self._fifo_fd)
            self.proc = None
        if self.owns_sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)


def render_ini(sections):
    out = []
    for name, keys in sections.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {v}" for k, v in keys.items())
    return "\n".join(out) + "\n"


def terminate_calls(fake):
    return [r for r in fake.requests() if r.get("op") == "TerminateInstanceInAutoScalingGroup"]


def decrement_flags(calls):
    return [r["params"]["ShouldDecrementDesiredCapacity"] for r in calls]


def ops(fake):
    return [r.get("op") for r in fake.requests()]


@pytest.fixture
def cloud(fake):
    """The fake prepared for one instance: the secret, the agent token, one queued job, and an
    ASG holding the main identity's instance (desired 2, min 0)."""
    fake.set_secret(SECRET_ID, json.dumps({"runner_token": TOKEN}))
    fake.set_agent_token(TOKEN, RC)
    fake.add_jobs(RC, 1, duration_s=0)
    fake.set_asg(ASG, min=0, max=5, desired=2,
                 instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                            {"id": "i-00000000000000002", "state": "InService"}])
    return fake


@pytest.fixture
def rd(build, tmp_path, cloud):
    made = []

    def make(**kw):
        r = Runnerd(build, tmp_path, cloud, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def assert_exit_path(r, fake, decrements=("true",)):
    """The one exit path ran: Terminate exactly as expected, then the power-off marker."""
    calls = terminate_calls(fake)
    assert decrement_flags(calls) == list(decrements), calls
    for c in calls:
        assert c["params"]["InstanceId"] == MAIN_INSTANCE_ID
    assert r.marker.read_text() == "off\n", r.stderr()


def assert_no_token_leak(r, token=TOKEN):
    assert token not in r.stderr()
    if r.dump.exists():
        d = r.dump.read_text()
        dump = json.loads(d)
        assert token not in json.dumps(dump["argv"])
        assert token not in json.dumps(dump["env"])
        for k in dump["env"]:
            assert not k.startswith("AWS_"), k
            assert "TOKEN" not in k, k


def assert_agent_config(r, token=TOKEN, flavour="circleci-runner"):
    st = os.stat(r.config_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid() and st.st_gid == os.getegid()
    cfg = yaml.safe_load(r.config_path.read_text())
    assert cfg["api"]["auth_token"] == token
    assert cfg["api"]["url"] == r.fake.url
    host = os.uname().nodename.split(".")[0]
    assert cfg["runner"]["name"] == f"{host}-{MAIN_INSTANCE_ID}"
    assert cfg["runner"]["mode"] == "single-task"
    assert cfg["runner"]["command_prefix"] == ["sudo", "-niHu",
                                               pwd.getpwuid(os.geteuid()).pw_name, "--"]
    wd = str(r.tmp / "work")
    assert cfg["runner"]["working_directory"] == (wd + "/%s" if flavour == "launch-agent"
                                                  else wd)
    return cfg


# ---- happy paths --------------------------------------------------------------------------

@pytest.mark.parametrize("flavour,argv_head", [("circleci-runner", ["machine", "-c"]),
                                               ("launch-agent", ["--config"])])
def test_happy_path(rd, cloud, flavour, argv_head):
    r = rd(flavour=flavour).start()
    assert r.wait() == 0, r.stderr()
    # The agent ran the job (its task agent as the job user, through command_prefix) and
    # finished.
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert r.events() == ["started", "claimed job-1", f"task-agent 0 {user}", "completed job-1"]
    if flavour == "circleci-runner":
        ta = r.task_agent_dir
        assert os.stat(ta).st_mode & 0o7777 == 0o755 and os.stat(ta).st_uid == os.geteuid()
    done = cloud.state()["jobs"][RC]["done"]
    assert [j["id"] for j in done] == ["job-1"] and done[0]["exit_code"] == 0
    host = os.uname().nodename.split(".")[0]
    assert done[0]["runner_name"] == f"{host}-{MAIN_INSTANCE_ID}"
    dump = r.agent_dump()
    assert dump["agent_argv"] == argv_head + [str(r.config_path)]
    assert dump["cwd"] == "/"
    assert_agent_config(r, flavour=flavour)
    assert_exit_path(r, cloud)
    assert_no_token_leak(r)
    # The ASG shrank by this instance (2 -> 1).
    assert cloud.state()["asgs"][ASG]["desired"] == 1


def test_token_secretsmanager_whole_string(rd, cloud):
    cloud.set_secret("whole-secret", f"  {TOKEN}\n")
    r = rd(token_id="whole-secret", token_key="").start()
    assert r.wait() == 0, r.stderr()
    assert r.events()[-1] == "completed job-1"
    assert_agent_config(r)
    assert_exit_path(r, cloud)
    assert_no_token_leak(r)


def test_token_ssm(rd, cloud):
    cloud.set_parameter("/ci/runner-token", TOKEN)
    r = rd(token_source="ssm", token_id="/ci/runner-token").start()
    assert r.wait() == 0, r.stderr()
    assert "ssm:GetParameter" in [f"{q.get('service')}:{q.get('op')}" for q in cloud.requests()]
    assert_agent_config(r)
    assert_exit_path(r, cloud)
    assert_no_token_leak(r)


def test_token_file(rd, cloud, tmp_path):
    tf = tmp_path / "token"
    tf.write_text(f"\n{TOKEN}\n\n")
    tf.chmod(0o600)
    r = rd(token_source="file", token_id=str(tf)).start()
    assert r.wait() == 0, r.stderr()
    assert_agent_config(r)
    assert_exit_path(r, cloud)
    assert_no_token_leak(r)
    assert "accessible by group" not in r.stderr()


# ---- failures before the agent -------------------------------------------------------------

def test_token_missing(rd, cloud):
    cloud.set_secret(SECRET_ID, None)
    r = rd().start()
    assert r.wait() == EX_UNAVAILABLE, r.stderr()
    assert not r.pidfile.exists()
    assert not r.config_path.exists()
    assert "ResourceNotFoundException" in r.stderr()
    assert_exit_path(r, cloud)


def test_token_key_missing(rd, cloud):
    cloud.set_secret(SECRET_ID, json.dumps({"other": TOKEN}))
    r = rd().start()
    assert r.wait() == EX_UNAVAILABLE, r.stderr()
    assert "runner_token" in r.stderr()
    assert_exit_path(r, cloud)
    assert_no_token_leak(r)


def test_agent_binary_missing(rd, cloud, tmp_path):
    r = rd(agent={"binary": str(tmp_path / "nope" / "circleci-runner")}).start()
    assert r.wait() == EX_UNAVAILABLE
    assert f"{tmp_path}/nope/circleci-runner" in r.stderr()
    assert "download_url" in r.stderr()
    assert_exit_path(r, cloud)


@pytest.mark.fake_options(tick_interval=0)
def test_boot_deadline(rd, cloud):
    """The token call hangs past a 2 s boot deadline: failed -> exit path, without waiting for
    the stuck call."""
    cloud.fault("secretsmanager:GetSecretValue", delay_s=8)
    r = rd(lifecycle={"boot_deadline": "2s"})
    t0 = time.monotonic()
    r.start()
    assert r.wait(timeout=15) == EX_UNAVAILABLE, r.stderr()
    assert time.monotonic() - t0 < 7
    assert "boot deadline" in r.stderr()
    assert not r.pidfile.exists()
    assert_exit_path(r, cloud)


# ---- the agent's ending --------------------------------------------------------------------

def test_agent_crash(rd, cloud):
    r = rd(behaviour="crash").start()
    assert r.wait() == 3, r.stderr()
    assert_exit_path(r, cloud)


def test_agent_killed_by_signal(rd, cloud):
    r = rd(behaviour="signal").start()
    assert r.wait() == 128 + signal.SIGKILL, r.stderr()
    assert_exit_path(r, cloud)


@pytest.mark.skipif(bool(WRAPPER), reason="valgrind dies when execve fails in the child")
def test_agent_exec_failure(rd, cloud):
    r = rd()
    r.wrapper.write_text("#!/nonexistent/interpreter\n")
    r.start()
    assert r.wait() == 127, r.stderr()
    assert_exit_path(r, cloud)


# ---- draining ------------------------------------------------------------------------------

def test_status_and_runnerctl_drain(rd, cloud):
    r = rd(behaviour="hang").start()
    pid = r.agent_pid()
    s = r.wait_phase("running")
    assert s["version"] == 1
    assert s["agent"]["pid"] == pid
    assert s["agent"]["exit_status"] is None
    assert s["last_error"] is None
    assert s["instance_id"] == MAIN_INSTANCE_ID
    human = r.ctl("status").stdout
    assert "running" in human and str(pid) in human
    assert terminate_calls(cloud) == []
    r.ctl("drain")
    assert r.wait() == 0, r.stderr()
    assert r.events() == ["started", "SIGTERM"]
    assert_exit_path(r, cloud)
    assert_no_token_leak(r)


def test_sigterm_to_runnerd(rd, cloud):
    r = rd(behaviour="hang").start()
    r.agent_pid()
    r.wait_phase("running")
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0, r.stderr()
    assert r.events() == ["started", "SIGTERM"]
    assert_exit_path(r, cloud)


def test_drain_timeout_kills(rd, cloud):
    r = rd(behaviour="hang-ignore-term", lifecycle={"drain_timeout": "500ms"}).start()
    r.agent_pid()
    r.wait_phase("running")
    r.ctl("drain")
    assert r.wait() == 128 + signal.SIGKILL, r.stderr()
    assert r.events() == ["started", "SIGTERM"]
    assert_exit_path(r, cloud)


def test_spot_notice(rd, cloud):
    """AWS is taking the instance back: drain, power off, but no Terminate call."""
    r = rd(behaviour="hang").start()
    r.agent_pid()
    r.wait_phase("running")
    cloud.set_imds(spot_action={"action": "terminate"})
    assert r.wait() == 0, r.stderr()
    assert r.events() == ["started", "SIGTERM"]
    assert "spot" in r.stderr()
    assert_exit_path(r, cloud, decrements=())


def test_target_state_terminated(rd, cloud):
    r = rd(behaviour="hang").start()
    r.agent_pid()
    r.wait_phase("running")
    cloud.set_imds(target_lifecycle_state="Terminated")
    assert r.wait() == 0, r.stderr()
    assert r.events() == ["started", "SIGTERM"]
    assert_exit_path(r, cloud, decrements=())


def test_min_size_fallback(rd, cloud):
    """desired == MinSize: the decrement is refused, the second call goes without it."""
    cloud.set_asg(ASG, min=2, max=5, desired=2,
                  instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                             {"id": "i-00000000000000002", "state": "InService"}])
    r = rd().start()
    assert r.wait() == 0, r.stderr()
    calls = terminate_calls(cloud)
    assert decrement_flags(calls) == ["true", "false"]
    assert calls[0]["status"] == 400 and calls[1]["status"] == 200
    assert_exit_path(r, cloud, decrements=("true", "false"))


def test_leave_not_found_counts_as_done(rd, cloud):
    cloud.set_asg(ASG, min=0, max=5, desired=1,
                  instances=[{"id": "i-00000000000000002", "state": "InService"}])
    r = rd().start()
    assert r.wait() == 0, r.stderr()
    assert_exit_path(r, cloud)


def test_leave_retries_transient_error(rd, cloud):
    cloud.fault("autoscaling:TerminateInstanceInAutoScalingGroup", status=503,
                code="ServiceUnavailable", message="try again", times=1)
    r = rd().start()
    assert r.wait() == 0, r.stderr()
    assert_exit_path(r, cloud, decrements=("true", "true"))
    assert cloud.state()["asgs"][ASG]["desired"] == 1


# ---- warm pools ----------------------------------------------------------------------------

def test_warm_pool_then_in_service(rd, cloud):
    cloud.set_imds(target_lifecycle_state="Warmed:Stopped")
    r = rd().start()
    s = r.wait_phase("warm-wait")
    assert s["lifecycle_state"] == "Warmed:Stopped"
    # Only packages and agent-install ran: no token fetched, no agent config.
    assert "GetSecretValue" not in ops(cloud)
    assert not r.config_path.exists()
    assert not r.pidfile.exists()
    cloud.set_imds(target_lifecycle_state="InService")
    assert r.wait() == 0, r.stderr()
    assert r.events() == ["started", "claimed job-1",
                          f"task-agent 0 {pwd.getpwuid(os.geteuid()).pw_name}", "completed job-1"]
    assert_exit_path(r, cloud)


def test_warm_pool_stopped_quietly(rd, cloud):
    """SIGTERM in warm-wait is the ASG stopping the warmed instance: exit 0, no ASG call, no
    power-off."""
    cloud.set_imds(target_lifecycle_state="Warmed:Stopped")
    r = rd().start()
    r.wait_phase("warm-wait")
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 0, r.stderr()
    assert terminate_calls(cloud) == []
    assert not r.marker.exists()
    assert "GetSecretValue" not in ops(cloud)


def test_target_state_terminated_at_boot(rd, cloud):
    cloud.set_imds(target_lifecycle_state="Terminated")
    r = rd().start()
    assert r.wait() != 0
    assert not r.pidfile.exists()
    assert_exit_path(r, cloud, decrements=())


# ---- invariants ----------------------------------------------------------------------------

INJECT_TOKEN = 'tok"en\n  evil: 1\n#x: \'y\' \\ }{ ]['


def test_yaml_injection(rd, cloud):
    cloud.set_secret(SECRET_ID, json.dumps({"runner_token": INJECT_TOKEN}))
    r = rd(behaviour="dump-env", agent={"name": "ci\"#: x\\n%H"}).start()
    assert r.wait() == 0, r.stderr()
    cfg = yaml.safe_load(r.config_path.read_text())
    assert cfg["api"]["auth_token"] == INJECT_TOKEN.strip()
    assert set(cfg) <= {"api", "runner", "logging"}
    assert set(cfg["api"]) == {"auth_token", "url"}
    assert "evil" not in cfg["runner"] and "evil" not in cfg
    host = os.uname().nodename.split(".")[0]
    assert cfg["runner"]["name"] == f"ci----x-n{host}"
    # The agent read the same thing.
    assert r.agent_dump()["config"] == cfg
    assert_no_token_leak(r, INJECT_TOKEN.strip())
    assert_exit_path(r, cloud)


def test_second_runnerd_refused(rd, cloud):
    first = rd(behaviour="hang").start()
    first.agent_pid()
    second = Runnerd(first.build, first.tmp / "second", cloud, sock_dir=first.sock_dir)
    second.start()
    try:
        assert second.wait(10) == EX_TEMPFAIL
        err = second.stderr()
        assert f"{first.sock_dir}/runnerd.lock" in err and f"pid {first.proc.pid}" in err
        # The first one is untouched: its socket still answers, nothing else happened.
        assert first.status()["phase"] == "running"
        assert not second.pidfile.exists() and not second.marker.exists()
    finally:
        second.close()
    first.ctl("drain")
    assert first.wait() == 0
    assert_exit_path(first, cloud)


def test_control_socket_unavailable_is_not_fatal(rd, cloud):
    r = rd()
    r.conf.write_text(r.conf.read_text().replace(
        f"group = {grp.getgrgid(os.getegid()).gr_name}", "group = no-such-group-rd"))
    r.start()
    assert r.wait() == 0, r.stderr()
    assert "control socket" in r.stderr()
    assert r.events()[-1] == "completed job-1"
    assert_exit_path(r, cloud)


def test_on_exit_exit_skips_both(rd, cloud):
    r = rd(lifecycle={"on_exit": "exit"}).start()
    assert r.wait() == 0, r.stderr()
    assert r.events()[-1] == "completed job-1"
    assert terminate_calls(cloud) == []
    assert not r.marker.exists()


@pytest.mark.parametrize("lifecycle, rc, says", [
    ("on_exit = exit\n", 0, "keeping the instance up"),
    ("on_exit = poweroff\n", EX_UNAVAILABLE, "on_exit = poweroff"),
    ("", EX_UNAVAILABLE, "on_exit = poweroff"),
    ("on_exit = halt\n", EX_CONFIG, "is unusable: powering off"),
    # Errors elsewhere: the one key that reads plainly is honoured.
    ("on_exit = exit\n[token]\nsource = file\n", 0, "has errors, but on_exit = exit"),
    ("on_exit = poweroff\n[token]\nsource = file\n", EX_CONFIG, "is unusable"),
    (None, EX_CONFIG, "is unusable: powering off"),
])
def test_on_failure_decides_by_on_exit(build, tmp_path, lifecycle, rc, says):
    """runnerd-failed.service's question (the unit's last resort): keep the instance up only
    for on_exit = exit; a config it cannot read powers off."""
    conf = tmp_path / "runnerd.conf"
    if lifecycle is not None:
        conf.write_text("[lifecycle]\n" + lifecycle)
    r = subprocess.run([str(Path(build) / "runnerd"), "on-failure", "-c", str(conf)],
                       capture_output=True, text=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == rc, (r.stdout, r.stderr)
    assert says in r.stdout, (r.stdout, r.stderr)


def test_packages_through_apt(rd, cloud, tmp_path):
    """dpkg-query says one package is missing: apt-get install runs (noninteractive, the lock
    timeout) and is retried once after apt-get update. While the first apt-get blocks,
    runnerctl still answers (the worker thread runs apt, the main loop serves the socket)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    gate = tmp_path / "apt.gate"
    os.mkfifo(gate)
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n"
        "case \"$3\" in coreutils) printf 'install ok installed';; *) exit 1;; esac\n")
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\n"
        f"echo \"$DEBIAN_FRONTEND $*\" >> {log}\n"
        # The first call waits at the gate until the test has seen the status.
        f"[ \"$(wc -l < {log})\" -eq 1 ] && read x < {gate}\n"
        f"n=$(grep -c ' install ' {log}); [ \"$n\" -ge 2 ]\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    r = rd(packages="coreutils nodejs", path_prefix=str(bin_dir)).start()
    wait_for(lambda: log.exists(), 10, "apt-get to start", r.proc)
    s = r.status()
    assert s["phase"] == "packages" and s["agent"]["pid"] is None

    def gate_open():
        try:  # ENXIO until apt-get has the gate open for reading
            return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None
    fd = wait_for(gate_open, 10, "apt-get at its gate", r.proc)
    os.write(fd, b"go\n")
    os.close(fd)
    assert r.wait() == 0, r.stderr()
    lines = log.read_text().splitlines()
    CONF = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
    assert lines == [
        f"noninteractive -y -q -o DPkg::Lock::Timeout=300 {CONF} install "
        "--no-install-recommends nodejs",
        "noninteractive -q -o DPkg::Lock::Timeout=300 update",
        f"noninteractive -y -q -o DPkg::Lock::Timeout=300 {CONF} install "
        "--no-install-recommends nodejs",
    ]
    assert_exit_path(r, cloud)
    assert s["phases"].get("token") is not None


def test_packages_all_installed_skip_apt(rd, cloud, tmp_path):
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nprintf 'install ok installed'\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-ran\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    r = rd(packages="git", path_prefix=str(bin_dir)).start()
    assert r.wait() == 0, r.stderr()
    assert not (tmp_path / "apt-ran").exists()


# ---- the command line ----------------------------------------------------------------------

def test_check_config(rd, build, tmp_path):
    r = rd()
    out = subprocess.run([str(build / "runnerd"), "check-config", "-c", str(r.conf)],
                         capture_output=True, text=True, env=r.env, timeout=10)
    assert out.returncode == 0, out.stderr
    assert f"binary = {r.wrapper}" in out.stdout
    assert f"poweroff_command = echo off > {r.marker}" in out.stdout
    assert "id = cci-runner-secrets" in out.stdout
    # The environment override is applied.
    assert f"api_url = {r.fake.url}" in out.stdout
    assert "<redacted>" not in out.stdout

    bad = tmp_path / "bad.conf"
    bad.write_text("[agent]\ndownload_url = https://example.com/agent\n"
                   "[lifecycle]\non_exit = reboot\n[nope]\n")
    out = subprocess.run([str(build / "runnerd"), "check-config", "-c", str(bad)],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == EX_CONFIG
    assert out.stdout == ""
    assert f"{bad}:5: on_exit" in out.stderr or f"{bad}:4: on_exit" in out.stderr, out.stderr


def test_usage_and_version(build):
    out = subprocess.run([str(build / "runnerd"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("runnerd ")
    out = subprocess.run([str(build / "runnerd"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "check-config" in out.stdout
    out = subprocess.run([str(build / "runnerd"), "frobnicate"], capture_output=True, text=True)
    assert out.returncode == EX_USAGE
    out = subprocess.run([str(build / "runnerd"), "-c"], capture_output=True, text=True)
    assert out.returncode == EX_USAGE
    out = subprocess.run([str(build / "runnerd"), "-c", "/nonexistent.conf"],
                         capture_output=True, text=True)
    assert out.returncode == EX_CONFIG


def test_prepare_never_fetches_token(rd, cloud, build):
    r = rd()
    out = subprocess.run([str(build / "runnerd"), "prepare", "-c", str(r.conf)],
                         capture_output=True, text=True, env=r.env, timeout=20)
    assert out.returncode == 0, out.stderr
    assert cloud.requests() == []
    assert not r.config_path.exists()
    assert not r.pidfile.exists()


# ---- systemd notify and agent download -----------------------------------------------------

class NotifyListener:
    """A NOTIFY_SOCKET for runnerd: collects every datagram in a thread (the queue of a Unix
    datagram socket is short: 10 by default)."""

    def __init__(self, path):
        import socket
        import threading
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            with self.cond:
                self.messages.append(data.decode())
                self.cond.notify_all()

    def wait_count(self, text, n, timeout):
        """Wait (condition variable, deadline) until text was received n times."""
        with self.cond:
            ok = self.cond.wait_for(lambda: sum(text in m for m in self.messages) >= n,
                                    timeout)
        assert ok, f"{n} x {text!r} not received in {timeout} s: {self.messages}"

    def close(self):
        self.sock.close()


def test_sd_notify(rd, cloud, tmp_path):
    n = NotifyListener(tmp_path / "notify.sock")
    try:
        r = rd(behaviour="hang", extra_env={"NOTIFY_SOCKET": n.path,
                                             "WATCHDOG_USEC": "200000"}).start()
        r.agent_pid()
        n.wait_count("READY=1", 1, 10)
        n.wait_count("WATCHDOG=1", 3, 10)  # every 100 ms: half of WATCHDOG_USEC
        r.ctl("drain")
        assert r.wait() == 0, r.stderr()
        n.wait_count("STOPPING=1", 1, 5)
    finally:
        n.close()
    msgs = [m for m in n.messages if m != "WATCHDOG=1"]
    statuses = [m for m in msgs if m.startswith("STATUS=")]
    assert statuses == ["STATUS=metadata", "STATUS=credentials", "STATUS=token",
                        "STATUS=packages", "STATUS=agent-install", "STATUS=agent-config",
                        "STATUS=running", "STATUS=draining", "STATUS=leaving-asg",
                        "STATUS=powering-off"], msgs
    ready = next(i for i, m in enumerate(msgs) if "READY=1" in m)
    assert msgs.index("STATUS=running") < ready < msgs.index("STATUS=draining")
    assert sum("READY=1" in m for m in msgs) == 1
    assert msgs.index("STATUS=leaving-asg") < msgs.index("STOPPING=1")


@pytest.fixture
def file_server(tmp_path):
    """A loopback HTTP server for tmp_path/www (the agent download)."""
    import functools
    import http.server
    import threading
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("good_sum", [True, False])
def test_agent_download(rd, cloud, tmp_path, file_server, good_sum):
    import hashlib
    www, base = file_server
    dest = tmp_path / "opt" / "circleci" / "circleci-runner"
    r = rd()
    body = r.wrapper.read_bytes()
    (www / "circleci-runner").write_bytes(body)
    digest = hashlib.sha256(body if good_sum else b"something else").hexdigest()
    r = rd(agent={"binary": str(dest), "download_url": f"{base}/circleci-runner",
                  "sha256": digest.upper()})
    r.start()
    if good_sum:
        assert r.wait() == 0, r.stderr()
        assert dest.read_bytes() == body
        assert stat.S_IMODE(dest.stat().st_mode) == 0o755
        assert r.events()[-1] == "completed job-1"
    else:
        assert r.wait() == EX_UNAVAILABLE, r.stderr()
        assert "SHA-256" in r.stderr()
        assert not dest.exists()
        assert list(dest.parent.iterdir()) == []  # no temp file left behind
    assert_exit_path(r, cloud)
