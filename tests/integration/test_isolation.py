"""Keeping jobs away from the runner's secrets (runnerd(8), SECURITY).

Most of this needs root: a throwaway job user (useradd --system --no-create-home, removed at
teardown), a network namespace with a fake instance metadata service on 169.254.169.254 and
fd00:ec2::254 (a tiny HTTP server on the namespace's lo), and runnerd run as root inside that
namespace, so the nftables table it installs never touches the host's ruleset. runnerd runs
offline there: IMDS disabled (AWS_EC2_METADATA_DISABLED), the token from a 0600 file, no ASG to
leave, poweroff_command writes a marker.

The agent is a stand-in (AGENT below) that runs one "job" exactly as the real agents do, through
the command_prefix it reads from the YAML config runnerd rendered (sudo -niHu USER --), and
records what the job could and could not do. The job tries to read the agent config, the token
file, /proc/<runnerd>/environ and /proc/<agent>/environ, and to reach IMDS; root (the agent)
tries the same to show that the refusals are the job user's alone.

test_core_dumps_disabled runs for everyone (as a non-root user too): runnerd made itself
non-dumpable, which the kernel shows by giving the files of its /proc/<pid> to root.
Every wait is a FIFO line or a process exit with a deadline.
"""

import grp
import json
import os
import pwd
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PYTHON, clean_environ, read_line  # noqa: E402

TOKEN = "rt-isolation-0123456789abcdef-SECRET"
IMDS4, IMDS6 = "169.254.169.254", "fd00:ec2::254"
# In the namespace, 127.0.0.1 serves two more ports: the one AWS_EC2_METADATA_SERVICE_ENDPOINT
# names (guarded too), and another one (not: the guard is that narrow).
ENDPOINT_PORT, OTHER_PORT = 8169, 8170
ENDPOINT, OTHER = f"127.0.0.1:{ENDPOINT_PORT}", f"127.0.0.1:{OTHER_PORT}"
ALL_OK = {IMDS4: "ok", IMDS6: "ok", ENDPOINT: "ok", OTHER: "ok"}
EX_NOPERM, EX_UNAVAILABLE = 77, 69

ROOT = os.geteuid() == 0
TOOLS = {t: shutil.which(t) or (f"/usr/sbin/{t}" if os.path.exists(f"/usr/sbin/{t}") else None)
         for t in ("sudo", "nft", "ip", "useradd", "userdel", "groupadd", "groupdel",
                   "setpriv")}


def need_root(*tools):
    if not ROOT:
        pytest.skip("needs root (a throwaway user, a network namespace, nftables)")
    missing = [t for t in tools if not TOOLS.get(t)]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (scripts/install-deps installs them)")


def run(*argv, check=True, **kw):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                       timeout=kw.pop("timeout", 30), **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv}: exit {p.returncode}: {p.stderr}")
    return p


# ---- throwaway accounts and the namespace ----------------------------------------------------

class Account:
    def __init__(self, name):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid


def add_user(name, groups=()):
    argv = [TOOLS["useradd"], "--system", "--no-create-home", "--shell", "/bin/sh",
            "--user-group", name]
    if groups:
        argv[1:1] = ["-G", ",".join(groups)]
    run(*argv)
    return Account(name)


def del_user(name):
    if run(TOOLS["userdel"], name, check=False).returncode != 0:
        run(TOOLS["userdel"], "-f", name, check=False)


@pytest.fixture(scope="module")
def accounts():
    """job: the job user; ops: a member of ctl (the control socket's group); neither is in
    the other's groups. Removed at teardown."""
    need_root("useradd", "userdel", "groupadd", "groupdel")
    tag = secrets.token_hex(3)
    made_users, group = [], f"rdctl{tag}"
    try:
        run(TOOLS["groupadd"], "--system", group)
        made_users.append(f"rdjob{tag}")
        job = add_user(made_users[-1])
        made_users.append(f"rdops{tag}")
        ops = add_user(made_users[-1], groups=[group])
        yield {"job": job, "ops": ops, "ctl": group, "ctl_gid": grp.getgrnam(group).gr_gid}
    finally:
        for u in made_users:
            del_user(u)
        run(TOOLS["groupdel"], group, check=False)


IMDS_SERVER = r"""
import http.server, socket, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"imds-ok"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
class S6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
servers = [http.server.ThreadingHTTPServer((sys.argv[1], 80), H), S6((sys.argv[2], 80), H)]
servers += [http.server.ThreadingHTTPServer(("127.0.0.1", int(p)), H) for p in sys.argv[3:]]
for s in servers:
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("READY", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture(scope="module")
def netns():
    """A network namespace with the two IMDS addresses on its lo and an HTTP server on port
    80 of each. Yields its name."""
    need_root("ip")
    name = f"rdfm-{secrets.token_hex(3)}"
    run(TOOLS["ip"], "netns", "add", name)
    server = None
    try:
        ns = [TOOLS["ip"], "netns", "exec", name]
        run(*ns, TOOLS["ip"], "link", "set", "lo", "up")
        run(*ns, TOOLS["ip"], "addr", "add", f"{IMDS4}/32", "dev", "lo")
        run(*ns, TOOLS["ip"], "-6", "addr", "add", f"{IMDS6}/128", "dev", "lo", "nodad")
        server = subprocess.Popen([*ns, PYTHON, "-c", IMDS_SERVER, IMDS4, IMDS6,
                                   str(ENDPOINT_PORT), str(OTHER_PORT)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = read_line(server, 10, "fake IMDS")
        assert line == "READY", line
        yield name
    finally:
        if server is not None:
            server.stdin.close()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        run(TOOLS["ip"], "netns", "del", name, check=False)


def in_ns(netns, *argv):
    return [TOOLS["ip"], "netns", "exec", netns, *map(str, argv)]


def as_user(acct, *argv):
    """argv run as acct with its own groups (setpriv execs: no extra process)."""
    return [TOOLS["setpriv"], f"--reuid={acct.uid}", f"--regid={acct.gid}", "--init-groups",
            "--", *map(str, argv)]


def nft_tables(netns):
    if not TOOLS["nft"]:
        return ""
    return run(*in_ns(netns, TOOLS["nft"], "list", "tables")).stdout


# ---- the stand-in agent and its job -----------------------------------------------------------

AGENT = r"""#!/usr/bin/python3
# Stand-in agent: runs one job through the config's command_prefix, records, then exits (or
# waits for SIGTERM). Its settings: a JSON file the test names below.
import json, os, signal, subprocess, sys
import yaml
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
S = json.load(open(@SETTINGS@))
cfg_path = sys.argv[-1]
st = os.stat(cfg_path)
cfg = yaml.safe_load(open(cfg_path))
prefix = cfg["runner"]["command_prefix"]
res = {"argv": sys.argv, "agent_pid": os.getpid(), "runnerd_pid": os.getppid(),
       "uid": os.getuid(), "config_mode": st.st_mode & 0o7777, "config_uid": st.st_uid,
       "prefix": prefix}
if S.get("job"):
    j = subprocess.run(prefix + ["/bin/sh", S["job"], str(os.getppid()), str(os.getpid()),
                                 cfg_path, S["token"], S["probe"]],
                       capture_output=True, text=True, timeout=60)
    res["job"] = {"rc": j.returncode, "stdout": j.stdout, "stderr": j.stderr}
    p = subprocess.run(["/usr/bin/python3", S["probe"]], capture_output=True, text=True,
                       timeout=30)
    res["root_probe"] = p.stdout
    try:
        n = subprocess.run(["/usr/sbin/nft", "list", "table", "inet", "runnerd"],
                           capture_output=True, text=True, timeout=30)
        res["nft"] = {"rc": n.returncode, "stdout": n.stdout, "stderr": n.stderr}
    except OSError as e:
        res["nft"] = {"rc": None, "stdout": "", "stderr": repr(e)}
tmp = S["result"] + ".tmp"
with open(tmp, "w") as f:
    json.dump(res, f)
os.replace(tmp, S["result"])
if S.get("fifo"):
    fd = os.open(S["fifo"], os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"ready\n")
    os.close(fd)
if S.get("hang"):
    signal.sigwait({signal.SIGTERM})
sys.exit(0)
"""

JOB = r"""# The job, as the job user: $1 runnerd pid, $2 agent pid, $3 agent config, $4 token file,
# $5 the IMDS probe.
echo "user=$(id -un)"
for f in "$3" "$4" "/proc/$1/environ" "/proc/$2/environ"; do
	if test -e "$f"; then e=exists; else e=missing; fi
	if cat "$f" >/dev/null 2>&1; then r=READ; else r=denied; fi
	echo "file=$f $e $r"
done
echo "probe=$(/usr/bin/python3 "$5")"
echo "env-begin"
env
echo "env-end"
"""

PROBE = r"""import json, socket
out = {}
for name, fam, addr, port in (
        ("169.254.169.254", socket.AF_INET, "169.254.169.254", 80),
        ("fd00:ec2::254", socket.AF_INET6, "fd00:ec2::254", 80),
        ("127.0.0.1:%d" % ENDPOINT_PORT, socket.AF_INET, "127.0.0.1", ENDPOINT_PORT),
        ("127.0.0.1:%d" % OTHER_PORT, socket.AF_INET, "127.0.0.1", OTHER_PORT)):
    s = socket.socket(fam)
    s.settimeout(3)
    try:
        s.connect((addr, port))
        s.sendall(b"GET /latest/meta-data/ HTTP/1.0\r\n\r\n")
        data = s.recv(200)
        out[name] = "ok" if data.split(b" ")[1:2] == [b"200"] else "bad"
    except ConnectionRefusedError:
        out[name] = "refused"
    except OSError as e:
        out[name] = "error %d" % e.errno
    finally:
        s.close()
print(json.dumps(out))
""".replace("ENDPOINT_PORT", str(ENDPOINT_PORT)).replace("OTHER_PORT", str(OTHER_PORT))


class Setup:
    """Files for one runnerd run: a public directory (0755, as /etc/circleci-runner is) holding
    the agent config, the token file (0600), the job and the probe; a private one for the rest.
    owner: the account that owns what runnerd writes (None = root)."""

    def __init__(self, build, job_user, group, job=True, hang=False, owner=None):
        # Both under /tmp: the accounts must reach them (pytest's base is root's, 0700).
        self.pub = Path(tempfile.mkdtemp(prefix="rdiso-", dir="/tmp"))
        self.pub.chmod(0o755)
        self.priv = Path(tempfile.mkdtemp(prefix="rdiso-priv-", dir="/tmp"))
        # Copies of the binaries the accounts run: the build tree may not be theirs to reach.
        self.bin = self.pub / "bin"
        self.bin.mkdir()
        for b in ("runnerd", "runnerctl"):
            shutil.copy2(Path(build) / b, self.bin / b)
        self.bin.chmod(0o755)
        self.config_path = self.pub / "etc" / "config.yaml"
        self.token = self.pub / "token"
        self.token.write_text(f"{TOKEN}\n")
        self.token.chmod(0o600)
        self.job, self.probe = self.pub / "job.sh", self.pub / "probe.py"
        self.job.write_text(JOB)
        self.probe.write_text(PROBE)
        for f in (self.job, self.probe):
            f.chmod(0o644)
        self.result = self.priv / "result.json"
        self.fifo = self.priv / "agent.fifo"
        os.mkfifo(self.fifo)
        self.marker = self.priv / "poweroff.marker"
        self.socket = self.pub / "sock" / "control.sock"
        self.stderr_path = self.priv / "runnerd.stderr"
        settings = self.priv / "agent.json"
        settings.write_text(json.dumps({
            "result": str(self.result), "fifo": str(self.fifo), "hang": hang,
            "job": str(self.job) if job else None, "token": str(self.token),
            "probe": str(self.probe)}))
        self.agent = self.priv / "agent"
        self.agent.write_text(AGENT.replace("@SETTINGS@", repr(str(settings))))
        self.agent.chmod(0o755)
        self.conf = self.priv / "runnerd.conf"
        self.conf.write_text(
            "[agent]\n"
            f"binary = {self.agent}\nconfig_path = {self.config_path}\nuser = {job_user}\n"
            f"working_directory = {self.pub / 'work'}\nname = iso-%H\n"
            f"task_agent_directory = {self.pub / 'task-agent'}\n"
            "[token]\nsource = file\n"
            f"id = {self.token}\n"
            "[lifecycle]\n"
            f"poweroff_command = echo off > {self.marker}\nboot_deadline = 30s\n"
            "drain_timeout = 10s\nnotice_interval = 1s\n"
            f"[control]\nsocket = {self.socket}\ngroup = {group}\n")
        if owner is not None:
            for p in (self.pub, self.priv, self.token, self.fifo, settings, self.agent,
                      self.conf):
                os.chown(p, owner.uid, owner.gid)
        self.env = clean_environ()
        self.env.update({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                         "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1",
                         # runnerd wants credentials before the token; none are used offline
                         "AWS_ACCESS_KEY_ID": "AKIAISOLATIONTEST000",
                         "AWS_SECRET_ACCESS_KEY": "isolation/secret/key"})
        self.proc = None

    def start(self, prefix=()):
        self._fifo_fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([*prefix, str(self.bin / "runnerd"), "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._err, env=self.env)
        return self

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout=30):
        """The agent's "ready" line on the FIFO, or fail as soon as runnerd exits."""
        sel = selectors.DefaultSelector()
        pidfd = os.pidfd_open(self.proc.pid)
        sel.register(self._fifo_fd, selectors.EVENT_READ, "fifo")
        sel.register(pidfd, selectors.EVENT_READ, "runnerd")
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"agent not ready in {timeout} s:\n{self.stderr()}")
                events = {key.data for key, _ in sel.select(left)}
                try:
                    buf += os.read(self._fifo_fd, 64)
                except BlockingIOError:
                    pass
                # An agent that does not hang is done by now: its line came first.
                if "runnerd" in events and b"\n" not in buf:
                    raise AssertionError(f"runnerd exited ({self.proc.wait()}) before the "
                                         f"agent was ready:\n{self.stderr()}")
        finally:
            sel.close()
            os.close(pidfd)
        return json.loads(self.result.read_text())

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"runnerd did not exit in {timeout} s:\n{self.stderr()}")

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()  # runnerd drains: the agent goes first
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            try:  # an agent orphaned all the same must not outlive the test (nor its user)
                pid = json.loads(self.result.read_text())["agent_pid"]
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if str(self.agent).encode() in f.read():  # still ours, not a reused pid
                        os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, KeyError):
                pass
            self._err.close()
            os.close(self._fifo_fd)
            self.proc = None
        shutil.rmtree(self.pub, ignore_errors=True)
        shutil.rmtree(self.priv, ignore_errors=True)


@pytest.fixture
def setups(build):
    made = []

    def make(*a, **kw):
        s = Setup(build, *a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


# ---- one guarded run: the token and IMDS ----------------------------------------------------

@pytest.fixture(scope="module")
def guarded_run(build, accounts, netns):
    """runnerd as root in the namespace, [agent] user = the throwaway job user, one job. Before
    it, a stale table inet runnerd (as a killed runnerd leaves it) and a look at what the job
    user reaches without the guard; after it, the same look again."""
    need_root("sudo", "setpriv")
    job = accounts["job"]
    s = Setup(build, job.name, "root")
    s.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://{ENDPOINT}"
    try:
        before = run(*in_ns(netns, *as_user(job, PYTHON, s.probe))).stdout
        if TOOLS["nft"]:
            run(*in_ns(netns, TOOLS["nft"], "add table inet runnerd; add chain inet runnerd "
                                            "stale_from_a_killed_runnerd"))
        s.start(prefix=in_ns(netns))
        res = s.wait_ready()
        rc = s.wait()
        after = run(*in_ns(netns, *as_user(job, PYTHON, s.probe))).stdout
        yield {"setup": s, "res": res, "rc": rc, "before": json.loads(before),
               "after": json.loads(after), "tables_after": nft_tables(netns),
               "stderr": s.stderr()}
    finally:
        s.close()


def job_lines(res):
    return res["job"]["stdout"].splitlines()


def test_job_cannot_read_the_token(guarded_run, accounts):
    g, job = guarded_run, accounts["job"]
    res, s = g["res"], g["setup"]
    assert g["rc"] == 0, g["stderr"]
    assert s.marker.read_text() == "off\n"
    # The job ran through the rendered command_prefix, as the job user.
    assert res["prefix"] == ["sudo", "-niHu", job.name, "--"]
    assert res["job"]["rc"] == 0, res["job"]
    lines = job_lines(res)
    assert f"user={job.name}" in lines, lines
    # The config is 0600 and root's: the job sees the file (the directory is public) but can
    # read neither it, nor the token file, nor either process's environment.
    assert res["config_mode"] == 0o600 and res["config_uid"] == 0
    want = {f"file={s.config_path} exists denied", f"file={s.token} exists denied",
            f"file=/proc/{res['runnerd_pid']}/environ exists denied",
            f"file=/proc/{res['agent_pid']}/environ exists denied"}
    assert want <= set(lines), lines
    # Nothing of the secrets in anything the job printed, nor in its environment.
    text = res["job"]["stdout"] + res["job"]["stderr"]
    assert TOKEN not in text
    assert "isolation/secret/key" not in text
    env = lines[lines.index("env-begin") + 1:lines.index("env-end")]
    assert not [e for e in env if e.startswith(("AWS_", "CIRCLE"))], env
    assert TOKEN not in g["stderr"]


def test_job_cannot_reach_imds(guarded_run, accounts):
    need_root("nft")
    g, job = guarded_run, accounts["job"]
    res = g["res"]
    # Without the guard the job user reaches the fake IMDS: the refusals below are the rule's.
    assert g["before"] == ALL_OK
    probe = next(x for x in job_lines(res) if x.startswith("probe="))
    assert json.loads(probe[len("probe="):]) == {IMDS4: "refused", IMDS6: "refused",
                                                 ENDPOINT: "refused", OTHER: "ok"}
    # root (the agent, runnerd) still reaches it.
    assert json.loads(res["root_probe"]) == ALL_OK
    # The table, while the agent ran: ours alone (the stale one was replaced), for the job
    # user's uid only.
    nft = res["nft"]["stdout"]
    assert res["nft"]["rc"] == 0, res["nft"]
    assert "stale_from_a_killed_runnerd" not in nft
    assert f"meta skuid {job.uid} ip daddr {IMDS4} reject" in nft
    assert f"meta skuid {job.uid} ip6 daddr {IMDS6} reject" in nft
    assert f"meta skuid {job.uid} ip daddr 127.0.0.1 tcp dport {ENDPOINT_PORT} reject" in nft
    assert nft.count("meta skuid") == 3, nft
    assert "imds-guard: nftables table inet runnerd rejects uid" in g["stderr"]
    # Removed on exit; the job user reaches IMDS again.
    assert "runnerd" not in g["tables_after"]
    assert "imds-guard: table inet runnerd removed" in g["stderr"]
    assert g["after"] == ALL_OK


def test_guard_missing_nft_is_not_fatal(build, accounts, netns, setups, tmp_path):
    """No nft on PATH: a warning, and the job runs all the same."""
    need_root("sudo")
    job = accounts["job"]
    s = setups(job.name, "root")
    empty = tmp_path / "bin"
    empty.mkdir()
    # /usr/bin for python3 and sudo, but no sbin: nft is not found
    s.env["PATH"] = f"{empty}:/usr/bin:/bin"
    s.start(prefix=in_ns(netns))
    res = s.wait_ready()
    assert s.wait() == 0, s.stderr()
    assert "imds-guard: nft -f - No such file or directory" in s.stderr()
    assert f"user={job.name}" in job_lines(res)
    assert "runnerd" not in nft_tables(netns)


# ---- the control socket -----------------------------------------------------------------------

def test_control_socket_refuses_outsiders(build, accounts, netns, setups):
    need_root("setpriv")
    job, ops = accounts["job"], accounts["ops"]
    s = setups(job.name, accounts["ctl"], job=False, hang=True)
    s.start(prefix=in_ns(netns))
    s.wait_ready()
    ctl = [s.bin / "runnerctl", "-s", s.socket, "status", "--json"]
    st = os.stat(s.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == accounts["ctl_gid"]

    # Not root, not in the group: the socket file itself refuses (EACCES at connect).
    p = run(*as_user(job, *ctl), check=False)
    assert p.returncode == EX_UNAVAILABLE, p
    assert "permission denied" in p.stderr
    # Past the file's mode, runnerd's own check (SO_PEERCRED, the peer's groups) refuses.
    os.chmod(s.socket, 0o666)
    p = run(*as_user(job, *ctl), check=False)
    assert p.returncode == EX_NOPERM, p
    assert json.loads(p.stdout)["error"] == "permission denied"
    os.chmod(s.socket, 0o660)
    # A member of the group (a supplementary group) is let in.
    p = run(*as_user(ops, *ctl))
    status = json.loads(p.stdout)
    assert status["phase"] == "running" and status["agent"]["pid"] > 0

    run(s.bin / "runnerctl", "-s", s.socket, "drain")
    assert s.wait() == 0, s.stderr()


# ---- core dumps -------------------------------------------------------------------------------

def test_core_dumps_disabled(build, setups, request):
    """runnerd sets PR_SET_DUMPABLE 0 (before it reads the config): the kernel then gives its
    /proc entries to root (proc(5), PR_SET_DUMPABLE), so even its own uid can read neither its
    environment nor its memory, and no core is written. The agent it execs is dumpable again:
    the control that shows the check can tell the difference. runnerd runs as a non-root
    account here (the throwaway one under root, else the caller), or root would own it all."""
    if ROOT:
        need_root("useradd", "setpriv")
        owner = request.getfixturevalue("accounts")["job"]
        user, uid, gid, prefix = owner.name, owner.uid, owner.gid, as_user(owner)
    else:
        owner = None
        uid, gid, prefix = os.geteuid(), os.getegid(), ()
        user = pwd.getpwuid(uid).pw_name
    s = setups(user, grp.getgrgid(gid).gr_name, job=False, hang=True, owner=owner)
    s.start(prefix=prefix)
    res = s.wait_ready()
    rd_pid, agent_pid = s.proc.pid, res["agent_pid"]
    assert res["runnerd_pid"] == rd_pid and res["uid"] == uid
    # The directory keeps the euid (ps reads it); the files in it go to root.
    assert os.stat(f"/proc/{rd_pid}").st_uid == uid
    for f in ("environ", "mem", "maps", "auxv"):
        assert os.stat(f"/proc/{rd_pid}/{f}").st_uid == 0, f
        assert os.stat(f"/proc/{agent_pid}/{f}").st_uid == uid, f

    def readable(path):
        argv = as_user(owner, "cat", path) if owner else ["cat", path]
        return run(*argv, check=False).returncode == 0
    assert not readable(f"/proc/{rd_pid}/environ")
    assert not readable(f"/proc/{rd_pid}/mem")
    assert readable(f"/proc/{agent_pid}/environ")
    s.proc.terminate()
    assert s.wait() == 0, s.stderr()
