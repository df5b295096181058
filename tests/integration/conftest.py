"""pytest fixtures shared by the integration tests. Run them with /usr/bin/python3 -m pytest.

fake      (function scope) a running tests/fakes/fakecloud.py on a free port: a FakeCloud
          object with control-API helpers and .env() for the programs under test. Options
          come from a marker, e.g. @pytest.mark.fake_options(tick_interval=0.2).
          At teardown the fake and every process it launched are killed. The teardown fails
          if any of those processes survive.
dynalite  (session scope) dynalite, a real DynamoDB emulator, started from the install-deps
          cache -> Dynalite(url, create_lease_table()). Tests that use it are skipped when it
          is not installed.
build     (session scope) Path of the build directory holding the binaries: $RUNNERD_BUILD,
          else <repo>/build.

Constants: PYTHON (/usr/bin/python3, the interpreter that has botocore), REPO, FAKECLOUD,
INSTANCE_PROBE.
"""

import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]
# tests/fakes holds helpers the tests import (world.py).
sys.path.insert(0, str(REPO / "tests" / "fakes"))
FAKECLOUD = REPO / "tests" / "fakes" / "fakecloud.py"
INSTANCE_PROBE = REPO / "tests" / "fakes" / "instance_probe.py"

DEFAULT_AKID = "AKIAFAKECLOUD0000001"  # pre-registered in the fake (also after reset)
DEFAULT_SECRET = "fakecloud/Secret+Key/0123456789abcdefghij"
DEFAULT_REGION = "us-east-1"
MAIN_INSTANCE_ID = "i-0123456789abcdef0"
DEFAULT_ROLE = "runnerd-test-role"

# Variables stripped from every environment handed to a program under test. Ambient
# credentials or endpoints must never leak into a test.
_SCRUB_PREFIXES = ("AWS_", "CIRCLECI_", "CIRCLE_TOKEN")


def clean_environ(base=None):
    """os.environ (or base) without any AWS_*/CIRCLECI_* variable."""
    src = os.environ if base is None else base
    return {k: v for k, v in src.items() if not k.startswith(_SCRUB_PREFIXES)}


def _die_with_parent():
    """preexec_fn: SIGTERM this child when pytest dies, even by SIGKILL (no teardown runs
    then). The fake's SIGTERM handler kills its instance processes. PR_SET_PDEATHSIG follows
    the forking thread: pytest's main thread, alive for the whole session."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


def read_line(proc, deadline_s, what):
    """The first stdout line of proc, without blocking past the deadline (the handshake)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + deadline_s
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{what}: no handshake line within {deadline_s} s")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"{what}: exited (status {proc.wait()}) before its handshake")
            buf += chunk
            if len(buf) > 65536:
                raise RuntimeError(f"{what}: handshake line too long")
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode(errors="replace")


def wait_pids_gone(pids, deadline_s):
    """Wait (pidfd, no polling) until every pid has exited; returns those still running."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    sel = selectors.DefaultSelector()
    try:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + deadline_s
        left = dict(fds)
        while left:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            for key, _ in sel.select(timeout):
                sel.unregister(key.fd)
                left.pop(key.fd, None)
        return sorted(left.values())
    finally:
        sel.close()
        for fd in fds:
            os.close(fd)


class FakeError(AssertionError):
    pass


class FakeCloud:
    """A running fakecloud. Attributes: url, port, proc, log_dir, akid, secret, region,
    main_instance_id, role. Helpers wrap the control API documented in fakecloud.py; they
    raise FakeError when the fake rejects the input."""

    akid = DEFAULT_AKID
    secret = DEFAULT_SECRET
    region = DEFAULT_REGION
    main_instance_id = MAIN_INSTANCE_ID
    role = DEFAULT_ROLE

    def __init__(self, workdir, tick_interval=0.0, extra_args=()):
        self.workdir = Path(workdir)
        self.log_dir = self.workdir / "fakecloud-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.workdir / "fakecloud.stderr"
        self.tick_interval = tick_interval
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.url = None
        self._pids = set()

    # -- lifecycle --
    def start(self, deadline_s=10.0):
        argv = [PYTHON, str(FAKECLOUD), "--port", "0", "--log-dir", str(self.log_dir),
                "--tick-interval", str(self.tick_interval)] + self.extra_args
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, env=clean_environ(),
                                         preexec_fn=_die_with_parent)
        try:
            line = read_line(self.proc, deadline_s, "fakecloud")
            if not line.startswith("READY port="):
                raise RuntimeError(f"fakecloud: unexpected handshake {line!r}")
            # READY port=N [tls=A:P,...] [imds=A:P,...]
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            self.port = int(fields["port"])
            self.listeners = {k: v.split(",") for k, v in fields.items() if k != "port"}
        except Exception as e:
            self.stop()
            raise RuntimeError(f"{e}\n--- fakecloud stderr ---\n{self.stderr_tail()}") from e
        self.proc.stdout.close()
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def stderr_tail(self, n=4000):
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        """Stop the fake and everything it launched. Returns the pids that would not die."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            try:
                self._remember_pids()
            except (OSError, FakeError, ValueError):
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Belt and braces: the instance processes are group leaders (start_new_session).
        for pid in self._pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None
        return wait_pids_gone(self._pids, 5)

    def _remember_pids(self):
        s = self.state()
        for a in s["asgs"].values():
            self._pids.update(i["pid"] for i in a["instances"] if i["pid"])
            self._pids.update(i["pid"] for i in a.get("warm_instances", []) if i["pid"])
        self._pids.update(i["pid"] for i in s["terminated"] if i["pid"])

    # -- raw control access --
    def call(self, method, path, body=None, timeout=30):
        """(status, parsed JSON or None) of one control request; path under /_fake/."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, "/_fake/" + path, body=data,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()

    def _ok(self, method, path, body=None, timeout=30):
        status, out = self.call(method, path, body, timeout)
        if status != 200:
            raise FakeError(f"{method} /_fake/{path} {body!r}: {status} {out!r}")
        return out

    # -- helpers --
    def reset(self):
        return self._ok("POST", "reset", {})

    def credentials(self, akid, secret, token=None):
        """Register static credentials (the default pair is always registered)."""
        body = {"akid": akid, "secret": secret}
        if token is not None:
            body["token"] = token
        return self._ok("POST", "credentials", body)

    def set_secret(self, secret_id, string=None, binary=None):
        """string=None and binary=None deletes the secret; binary is base64 text."""
        body = {"id": secret_id}
        if binary is not None:
            body["binary"] = binary
        else:
            body["string"] = string
        return self._ok("POST", "secret", body)

    def set_parameter(self, name, value, type=None):
        """value=None deletes; type String | StringList | SecureString (default)."""
        body = {"name": name, "value": value}
        if type is not None:
            body["type"] = type
        return self._ok("POST", "parameter", body)

    def set_asg(self, name, min, max, desired=None, **kw):
        """Create or replace a group. kw: instances (count or list of {id, state, health,
        protected}), protect_new, launch_command (argv list), launch_env, region, role, tags,
        stop_grace_s, user_data. Returns the group as in state()."""
        body = dict(kw, name=name, min=min, max=max)
        if desired is not None:
            body["desired"] = desired
        return self._ok("POST", "asg", body)

    def set_imds(self, **kw):
        """kw: instance_id, region, availability_zone, role, target_lifecycle_state,
        spot_action ({"action","time"?}), rebalance (True or {"noticeTime"}), user_data,
        credential_ttl_s, rotate_credentials, for_instance. None removes an item."""
        return self._ok("POST", "imds", kw)

    def set_stack(self, name, resources):
        """A CloudFormation stack whose logical resources take SignalResource."""
        return self._ok("POST", "stack", {"name": name, "resources": list(resources)})

    def set_blob(self, url, data, content_type=None):
        """Serve bytes (None deletes) at an https URL on the world's TLS listener."""
        import base64
        body = {"url": url, "data": None if data is None else base64.b64encode(data).decode()}
        if content_type:
            body["content_type"] = content_type
        return self._ok("POST", "blob", body)

    def set_runner_token(self, token, resource_classes=None):
        body = {"token": token}
        if resource_classes is not None:
            body["resource_classes"] = list(resource_classes)
        return self._ok("POST", "runner-token", body)

    def set_agent_token(self, token, resource_class):
        return self._ok("POST", "agent-token", {"token": token, "resource_class": resource_class})

    def add_jobs(self, resource_class, count=1, duration_s=0):
        """Queue jobs; returns their ids."""
        return self._ok("POST", "jobs", {"resource_class": resource_class, "count": count,
                                         "duration_s": duration_s})["job_ids"]

    def claim(self, resource_class, runner_name, token):
        """The fake agent's claim: (status, body); 200 {"job_id","duration_s"}, 204, 401."""
        return self.call("POST", "agent/claim", {"resource_class": resource_class,
                                                 "runner_name": runner_name, "token": token})

    def complete(self, job_id, exit_code=0):
        return self._ok("POST", "agent/complete", {"job_id": job_id, "exit_code": exit_code})

    def fault(self, match, **kw):
        """Add a fault (see fakecloud.py: status, code, message, body, content_type, delay_s,
        retry_after, slow_bps, oversize_bytes, close, times, instance_id). Returns its id."""
        return self._ok("POST", "fault", dict(kw, match=match))["id"]

    def clear_faults(self):
        return self._ok("DELETE", "faults")

    def requests(self, since=0):
        """Logged requests with seq > since (each: service, op, status, akid, ...)."""
        return self._ok("GET", f"requests?since={int(since)}")["requests"]

    def state(self, wait=None, timeout=10.0):
        """The fake's state. With wait=G, returns once the generation differs from G (or
        after timeout seconds)."""
        q = "" if wait is None else f"?wait={int(wait)}&timeout_s={float(timeout)}"
        return self._ok("GET", "state" + q, timeout=timeout + 30)

    def wait_until(self, pred, timeout=10.0, what="condition"):
        """Call pred(state) on every state change until it returns something truthy (which is
        returned). Event-driven (long poll on the generation), no sleeping."""
        deadline = time.monotonic() + timeout
        s = self.state()
        while True:
            v = pred(s)
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; state: "
                                     f"{json.dumps(s)[:3000]}")
            s = self.state(wait=s["generation"], timeout=min(left, 30))

    def tick(self, n=1):
        """Run n reconcile steps; returns the state afterwards."""
        return self._ok("POST", "tick", {"n": n})

    def advance_clock(self, seconds):
        """Move the fake clock (IMDS token TTLs, credential expiry) forward."""
        return self._ok("POST", "clock", {"advance_s": seconds})

    def instances(self, asg):
        return self.state()["asgs"][asg]["instances"]

    # -- warm pools and lifecycle hooks (tests/fakes/fake_warm.py) --
    def put_launch_hook(self, asg, name="runner-launch", heartbeat_s=600, default="ABANDON",
                        region=None):
        """A LAUNCHING lifecycle hook on asg, through the Auto Scaling API (boto3)."""
        self.boto3_client("autoscaling", region_name=region or self.region).put_lifecycle_hook(
            LifecycleHookName=name, AutoScalingGroupName=asg,
            LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
            HeartbeatTimeout=heartbeat_s, DefaultResult=default)

    def put_warm_pool(self, asg, size, pool_state="Stopped", reuse=False, region=None):
        """A fixed warm pool of size instances (MinSize = MaxGroupPreparedCapacity)."""
        self.boto3_client("autoscaling", region_name=region or self.region).put_warm_pool(
            AutoScalingGroupName=asg, MinSize=size, MaxGroupPreparedCapacity=size,
            PoolState=pool_state, InstanceReusePolicy={"ReuseOnScaleIn": reuse})

    def lifecycle(self, instance_id, state):
        """Put an instance without a process where AWS would have it: Pending:Wait, InService,
        Warmed:Pending:Wait (a fresh action of the group's LAUNCHING hook), Warmed:Stopped."""
        return self._ok("POST", "lifecycle", {"instance_id": instance_id, "state": state})

    # -- environment for programs under test --
    def env(self, imds=True, region=None, dynamodb=None, base=None):
        """A complete environment (base or os.environ, without AWS_*/CIRCLECI_*) that points
        every AWS SDK convention at the fake: AWS_ENDPOINT_URL, AWS_EC2_METADATA_SERVICE_ENDPOINT,
        CIRCLECI_RUNNER_API_URL, AWS_REGION/AWS_DEFAULT_REGION. imds=True: no credential
        variables, so clients use the IMDS role credentials. imds=False: the default
        static key pair in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. dynamodb: a URL for
        AWS_ENDPOINT_URL_DYNAMODB (e.g. dynalite.url). Note: /usr/bin/aws (awscli 2.9) needs
        a trailing "/" on AWS_EC2_METADATA_SERVICE_ENDPOINT; botocore 1.29 does not."""
        env = clean_environ(base)
        region = region or self.region
        env.update({"AWS_ENDPOINT_URL": self.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url,
                    "CIRCLECI_RUNNER_API_URL": self.url, "AWS_REGION": region,
                    "AWS_DEFAULT_REGION": region, "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": ""})
        if not imds:
            env["AWS_ACCESS_KEY_ID"] = self.akid
            env["AWS_SECRET_ACCESS_KEY"] = self.secret
        if dynamodb:
            env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb
        return env

    def boto3_client(self, service, **kw):
        """A boto3 client for the fake with the default static credentials (kw override)."""
        import boto3
        args = dict(endpoint_url=self.url, region_name=self.region,
                    aws_access_key_id=self.akid, aws_secret_access_key=self.secret)
        args.update(kw)
        return boto3.client(service, **args)


_PUBLIC_DIRS = []


def public_dir(prefix):
    """A fresh directory the job user can reach (/tmp/PREFIX*, 0755, root's; removed when the
    session ends): pytest's own tmp_path sits under /tmp/pytest-of-root (0700), and runnerd
    refuses a task agent directory the job user cannot search its way to."""
    import shutil
    import tempfile
    if not _PUBLIC_DIRS:
        import atexit
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _PUBLIC_DIRS])
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    _PUBLIC_DIRS.append(d)
    return Path(d)


def pytest_configure(config):
    config.addinivalue_line("markers", "fake_options(**kw): options for the fake fixture "
                            "(tick_interval=seconds, extra_args=[...])")


@pytest.fixture
def fake(request, tmp_path):
    """A fakecloud for this test (see FakeCloud)."""
    m = request.node.get_closest_marker("fake_options")
    opts = dict(m.kwargs) if m else {}
    fc = FakeCloud(tmp_path, **opts).start()
    try:
        yield fc
    finally:
        left = fc.stop()
        if left:
            raise AssertionError(f"fakecloud left processes behind: {left}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain(src, dst_path):
    """Copy what a child still writes to its stdout pipe into its log (pipe never fills)."""
    with open(dst_path, "ab") as dst:
        for chunk in iter(lambda: src.read1(65536), b""):
            dst.write(chunk)
            dst.flush()


class Dynalite:
    """A running dynalite: url, port, and create_lease_table()."""

    def __init__(self, url, port, proc):
        self.url, self.port, self.proc = url, port, proc
        self._n = 0

    def client(self, region=DEFAULT_REGION):
        import boto3
        return boto3.client("dynamodb", endpoint_url=self.url, region_name=region,
                            aws_access_key_id="AKIDDYNALITE", aws_secret_access_key="dynalite")

    def create_lease_table(self, name=None, region=DEFAULT_REGION):
        """Create a lease table (partition key lease_id, type S) and wait until it is ACTIVE.
        The name defaults to a fresh unique one, so tests sharing the session do not
        collide. Returns the name."""
        if name is None:
            self._n += 1
            name = f"runnerd-leases-{os.getpid()}-{self._n}"
        c = self.client(region)
        c.create_table(TableName=name,
                       AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
                       KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}],
                       BillingMode="PAY_PER_REQUEST")
        c.get_waiter("table_exists").wait(TableName=name,
                                          WaiterConfig={"Delay": 1, "MaxAttempts": 20})
        return name


def dynalite_path():
    cache = os.environ.get("RUNNERD_CACHE")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        cache = os.path.join(xdg, "runnerd")
    return os.path.join(cache, "dynalite", "node_modules", ".bin", "dynalite")


@pytest.fixture(scope="session")
def dynalite(tmp_path_factory):
    """dynalite on a free loopback port for the whole session (see Dynalite)."""
    exe = dynalite_path()
    if not os.access(exe, os.X_OK):
        pytest.skip(f"dynalite not installed at {exe} (run scripts/install-deps)")
    logf = tmp_path_factory.mktemp("dynalite") / "dynalite.log"
    proc = None
    for _attempt in range(3):  # a picked port can be taken before dynalite binds it
        port = free_port()
        with open(logf, "ab") as log:
            proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port),
                                     "--createTableMs", "0", "--deleteTableMs", "0",
                                     "--updateTableMs", "0"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, start_new_session=True, env=clean_environ(),
                                    preexec_fn=_die_with_parent)
        try:
            # Handshake: dynalite prints "Dynalite listening at: http://HOST:PORT" once bound;
            # then one connect proves the port is really its.
            line = read_line(proc, 15, "dynalite")
            if not line.startswith("Dynalite listening at:"):
                raise RuntimeError(f"dynalite: unexpected first line {line!r}")
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            threading.Thread(target=_drain, args=(proc.stdout, logf), daemon=True).start()
            break
        except (RuntimeError, OSError):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc = None
    if proc is None:
        raise RuntimeError("dynalite did not start; log:\n" + logf.read_text(errors="replace"))
    try:
        yield Dynalite(f"http://127.0.0.1:{port}", port, proc)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


@pytest.fixture
def world(tmp_path):
    """The outside world of an EC2 instance at its real addresses (tests/fakes/world.py):
    IMDS at 169.254.169.254, AWS and CircleCI at their real names over TLS from a test CA,
    DynamoDB as dynalite behind the fake; world.fake is its FakeCloud. Needs root."""
    if os.geteuid() != 0:
        pytest.skip("the default-path world needs root (network and mount namespaces)")
    import world as world_mod
    exe = dynalite_path()
    w = world_mod.World(tmp_path / "world", FakeCloud,
                        dynalite_exe=exe if os.access(exe, os.X_OK) else None)
    with w:
        yield w


@pytest.fixture
def logind(tmp_path):
    """A private system bus whose org.freedesktop.login1 records PowerOff (world.FakeLogind)."""
    import world as world_mod
    lg = world_mod.FakeLogind(tmp_path / "bus").start()
    try:
        yield lg
    finally:
        lg.stop()


@pytest.fixture(scope="session")
def build():
    """Path of the build directory: $RUNNERD_BUILD, else <repo>/build."""
    return Path(os.environ.get("RUNNERD_BUILD") or REPO / "build").resolve()
