#!/usr/bin/python3
"""The outside world of an EC2 instance at its real addresses, for tests that run the daemons
exactly as they are installed: the packaged configuration, no AWS_* or CIRCLECI_* variable,
the default timeouts. Only the world is faked, never the daemon's configuration.

World (a network namespace of its own, made and removed by the test; needs root):
  - IMDS at http://169.254.169.254 and http://[fd00:ec2::254] (port 80, on the namespace's
    loopback device), served by the fake cloud (tests/fakes/fakecloud.py);
  - AWS (autoscaling, secretsmanager, ssm, dynamodb, sts . REGION . amazonaws.com), CircleCI
    (runner.circleci.com) and S3-style download hosts at their real names over HTTPS, with a
    certificate from a CA the test makes; the names resolve to TEST-NET-1 addresses that only
    exist in the namespace; DynamoDB is the real emulator, dynalite, behind the fake (which
    checks every signature first);
  - the fake's control API stays on the test's own loopback (FakeCloud.url), reachable from
    the test and unreachable from inside the world.

Instance (a process "on the instance"): the program runs in the world's network namespace, in
a mount namespace of its own where /etc, /usr, /var, /home and /root are overlays of the host's
(writes land in the test's directory, never on the host) and /run is the instance's own (empty
at first, shared by the processes of one Instance). Into that view go:
/etc/hosts naming the world's hosts, the CA bundle at Debian's path
(/etc/ssl/certs/ca-certificates.crt, what libcurl and Python read by default), the job user,
the files the test gives (the packaged config, a stand-in agent at /usr/bin/circleci-runner...),
and optionally a system bus whose org.freedesktop.login1 records PowerOff (FakeLogind), so
runnerd's default power-off (logind) is what runs. The environment is PATH and LANG only.

Nothing here changes the product: no endpoint variable, no test-only code path; libcurl
verifies the certificate as it does on EC2, against the CA bundle at its default path.

Command line (used by Instance itself; documented for debugging):
  world.py enter SPEC.json -- ARGV...   (inside `ip netns exec`): mounts and files of SPEC,
                                        then exec ARGV
"""

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"
REGION = "us-east-1"
IMDS4, IMDS6 = "169.254.169.254", "fd00:ec2::254"
# TEST-NET-1 (RFC 5737): addresses that exist nowhere but in the world's namespace.
AWS_ADDR, CIRCLECI_ADDR, DOWNLOAD_ADDR = "192.0.2.10", "192.0.2.20", "192.0.2.30"
AWS_SERVICES = ("autoscaling", "secretsmanager", "ssm", "dynamodb", "sts", "ec2",
                "cloudformation")
DOWNLOAD_HOSTS = ("circleci-binary-releases.s3.amazonaws.com",
                  "runnerd-artifacts.s3.amazonaws.com", "packagecloud.io")
DYNALITE_PORT = 8000
OVERLAYS = ("/etc", "/usr", "/var", "/home", "/root", "/opt")
JOB_USER = "circleci"

_seq = itertools.count(1)


def aws_hosts(regions):
    return [f"{svc}.{r}.amazonaws.com" for r in regions for svc in AWS_SERVICES]


def run(argv, check=True, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {r.returncode}\n{r.stdout}"
                           f"{r.stderr}")
    return r


# ---- the test CA --------------------------------------------------------------------------

def make_ca(d, days=2):
    """A CA in directory d: what an instance trusts. -> (ca.pem, ca.key)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = d / "ca.pem", d / "ca.key"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", ca_key, "-out", ca, "-days", str(days), "-subj",
         "/CN=runnerd test world CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return ca, ca_key


def issue_cert(ca, ca_key, d, names):
    """A server certificate for names from the CA, in directory d: the fake's.
    -> (cert.pem, key.pem)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    key, csr, cert, ext = (d / n for n in ("server.key", "server.csr", "server.pem",
                                           "server.ext"))
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=runnerd test world"])
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext])
    return cert, key


def world_names(regions=(REGION,)):
    """Every host name the world answers for over TLS."""
    return aws_hosts(regions) + ["runner.circleci.com", *DOWNLOAD_HOSTS]


# ---- the world ----------------------------------------------------------------------------

class World:
    """See the module's docstring. fake: the FakeCloud (conftest) serving the world; region;
    netns: the namespace's name. Use as a context manager, or start()/stop()."""

    def __init__(self, workdir, fake_cls, regions=(REGION,), dynalite_exe=None, omit_names=()):
        self.workdir = Path(workdir)
        self.regions = tuple(regions)
        self.region = self.regions[0]
        self.fake_cls = fake_cls
        self.dynalite_exe = dynalite_exe
        self.netns = f"rdw{os.getpid() % 100000}x{next(_seq)}"
        self.fake = None
        self.dynalite = None
        self._netns_made = False
        # The names the certificate holds; a test may leave some out (hostname verification).
        self.names = [n for n in world_names(self.regions) if n not in omit_names]

    # -- lifecycle --
    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self.ca, ca_key = make_ca(self.workdir / "ca")
        cert, key = issue_cert(self.ca, ca_key, self.workdir / "ca", self.names)
        run(["ip", "netns", "add", self.netns])
        self._netns_made = True
        ns = ["ip", "-n", self.netns]
        run(ns + ["link", "set", "lo", "up"])
        for a in (IMDS4, AWS_ADDR, CIRCLECI_ADDR, DOWNLOAD_ADDR):
            run(ns + ["addr", "add", f"{a}/32", "dev", "lo"])
        # IPv6 may be off by default in a new namespace's loopback; IMDS has an IPv6 address.
        run(["ip", "netns", "exec", self.netns, "sysctl", "-qw",
             "net.ipv6.conf.lo.disable_ipv6=0"], check=False)
        run(ns + ["addr", "add", f"{IMDS6}/128", "dev", "lo", "nodad"])
        extra = ["--netns", self.netns, "--tls-cert", cert, "--tls-key", key,
                 "--listen-tls", "0.0.0.0:443",
                 "--listen-imds", f"{IMDS4}:80", "--listen-imds", f"[{IMDS6}]:80"]
        if self.dynalite_exe:
            self.dynalite = self._start_dynalite()
            extra += ["--dynamodb-upstream", f"http://127.0.0.1:{DYNALITE_PORT}"]
        self.fake = self.fake_cls(self.workdir / "fake", extra_args=extra).start()

    def _start_dynalite(self):
        logf = self.workdir / "dynalite.log"
        with open(logf, "ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.netns, self.dynalite_exe,
                                     "--host", "127.0.0.1", "--port", str(DYNALITE_PORT),
                                     "--createTableMs", "0", "--deleteTableMs", "0",
                                     "--updateTableMs", "0"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, start_new_session=True)
        line = _read_line(proc, 20, "dynalite")
        if not line.startswith("Dynalite listening at:"):
            proc.kill()
            raise RuntimeError(f"dynalite: unexpected first line {line!r}")
        proc.stdout.close()
        return proc

    def stop(self):
        left = []
        if self.fake is not None:
            left = self.fake.stop()
            self.fake = None
        if self.dynalite is not None:
            _killpg(self.dynalite)
            self.dynalite = None
        if self._netns_made:
            run(["ip", "netns", "del", self.netns], check=False)
            self._netns_made = False
        return left

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        left = self.stop()
        if left and exc[0] is None:
            raise AssertionError(f"fakecloud left processes behind: {left}")

    # -- what an instance sees --
    def hosts_file(self):
        host = os.uname().nodename
        lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{host} {host.split('.')[0]}",
                 "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{AWS_ADDR}\t{n}" for n in aws_hosts(self.regions)]
        lines += [f"{CIRCLECI_ADDR}\trunner.circleci.com"]
        lines += [f"{DOWNLOAD_ADDR}\t{n}" for n in DOWNLOAD_HOSTS]
        return "\n".join(lines) + "\n"

    def create_table(self, name, region=None):
        """A lease table in dynalite (partition key lease_id, S), through the fake's main port
        (signed like any client would), waited for until ACTIVE."""
        c = self.fake.boto3_client("dynamodb", region_name=region or self.region)
        c.create_table(TableName=name,
                       AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
                       KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}],
                       BillingMode="PAY_PER_REQUEST")
        c.get_waiter("table_exists").wait(TableName=name,
                                          WaiterConfig={"Delay": 1, "MaxAttempts": 20})
        return c

    def instance(self, name, files=None, logind=None, job_user=JOB_USER):
        """An Instance: a filesystem view for processes on this world's instance."""
        return Instance(self, self.workdir / f"instance-{name}", files or {}, logind, job_user)


class Instance:
    """A process's view of one instance (see the module's docstring). files: {path: bytes|str
    or (bytes|str, mode)}; written after the overlays are mounted. logind: a FakeLogind whose
    bus appears at /run/dbus/system_bus_socket."""

    def __init__(self, world, root, files, logind, job_user):
        self.world = world
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.logind = logind
        files = dict(files)
        files.setdefault("/etc/hosts", world.hosts_file())
        files.setdefault("/etc/ssl/certs/ca-certificates.crt", Path(world.ca).read_bytes())
        spec = {"root": str(self.root), "overlays": list(OVERLAYS), "files": {},
                "bus_dir": str(logind.dir) if logind else None, "job_user": job_user}
        for path, v in files.items():
            data, mode = (v if isinstance(v, tuple) else (v, 0o644))
            if isinstance(data, str):
                data = data.encode()
            spec["files"][path] = {"data": base64.b64encode(data).decode(), "mode": mode}
        self.spec_path = self.root / "spec.json"
        self.spec_path.write_text(json.dumps(spec))

    def argv(self, argv):
        return ["ip", "netns", "exec", self.world.netns, PYTHON, str(HERE / "world.py"),
                "enter", str(self.spec_path), "--", *map(str, argv)]

    def env(self):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
        # The sanitizer runs' own settings (scripts/run-sanitized), harness only: where reports
        # go and what they check. Nothing the product reads.
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        return env

    def popen(self, argv, **kw):
        kw.setdefault("env", self.env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(argv), **kw)

    def run(self, argv, timeout=60, **kw):
        kw.setdefault("env", self.env())
        return subprocess.run(self.argv(argv), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kw)

    def path(self, p):
        """Where a file the instance wrote under an overlay lives on the host."""
        return self.root / "upper" / p.lstrip("/")


# ---- an apt repository in the world ---------------------------------------------------------

def build_deb(d, name, version="1.0", files=None, arch="all", extra_control=""):
    """A .deb built with dpkg-deb from files {path: bytes|str} -> its Path."""
    root = Path(d) / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    for path, data in (files or {}).items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: runnerd tests <tests@runnerd.invalid>\n"
        f"Description: {name}, made by the runnerd tests\n{extra_control}")
    out = Path(d) / f"{name}_{version}_{arch}.deb"
    run(["dpkg-deb", "--root-owner-group", "--build", root, out])
    return out


def apt_repo(fake, base_url, debs, suite="bookworm", component="main", arch="amd64"):
    """Serve debs as an apt repository at base_url (dists/SUITE/Release, Packages, pool/) on the
    fake's TLS listener; unsigned: the source needs [trusted=yes]. -> the sources.list line."""
    import hashlib
    stanzas = []
    for deb in map(Path, debs):
        data = deb.read_bytes()
        fields = run(["dpkg-deb", "-f", deb]).stdout.rstrip("\n")
        rel = f"pool/{component}/{deb.name}"
        fake.set_blob(f"{base_url}/{rel}", data, "application/vnd.debian.binary-package")
        stanzas.append(f"{fields}\nFilename: {rel}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = ("\n".join(stanzas)).encode()
    ppath = f"{component}/binary-{arch}/Packages"
    fake.set_blob(f"{base_url}/dists/{suite}/{ppath}", packages, "text/plain")
    release = (f"Origin: runnerd-tests\nLabel: runnerd-tests\nSuite: {suite}\nCodename: {suite}\n"
               f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
               f"Architectures: {arch} all\nComponents: {component}\nSHA256:\n"
               f" {hashlib.sha256(packages).hexdigest()} {len(packages)} {ppath}\n")
    fake.set_blob(f"{base_url}/dists/{suite}/Release", release.encode(), "text/plain")
    return f"deb [trusted=yes] {base_url} {suite} {component}\n"


# ---- a system bus with logind's PowerOff --------------------------------------------------

class FakeLogind:
    """dbus-daemon on a socket in a directory of the test, and tests/fakes/fake_logind.py owning
    org.freedesktop.login1 on it: an Instance sees the socket at /run/dbus/system_bus_socket.
    calls() lists the PowerOff calls it got, as {"method", "interactive", "uid"}."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record = self.dir.parent / (self.dir.name + ".calls")
        self.daemon = self.service = None

    def start(self):
        sock = self.dir / "system_bus_socket"
        conf = self.dir.parent / (self.dir.name + ".conf")
        conf.write_text(f"""<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
""")
        self.daemon = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork",
                                        "--print-address"], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        address = _read_line(self.daemon, 10, "dbus-daemon")
        self.service = subprocess.Popen([PYTHON, str(HERE / "fake_logind.py"), address,
                                         str(self.record)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        line = _read_line(self.service, 15, "fake_logind")
        if line != "READY":
            self.stop()
            raise RuntimeError(f"fake_logind: unexpected handshake {line!r}")
        return self

    def calls(self):
        if not self.record.exists():
            return []
        return [json.loads(x) for x in self.record.read_text().splitlines() if x]

    def stop(self):
        for p in (self.service, self.daemon):
            if p is not None:
                _killpg(p)
        self.service = self.daemon = None


# ---- helpers ------------------------------------------------------------------------------

def _read_line(proc, deadline_s, what):
    import selectors
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
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode(errors="replace").strip()


def _killpg(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


# ---- `world.py enter`: runs inside `ip netns exec` (a mount namespace of its own) ----------

def _mount(*args):
    subprocess.run(["mount", *args], check=True)


def _add_user(name):
    """The job user in the overlaid /etc, as the package's sysusers.d would make it."""
    passwd = Path("/etc/passwd").read_text()
    if any(line.split(":")[0] == name for line in passwd.splitlines()):
        return
    taken = {int(line.split(":")[2]) for line in passwd.splitlines() if line.count(":") >= 6}
    taken |= {int(line.split(":")[2]) for line in Path("/etc/group").read_text().splitlines()
              if line.count(":") >= 3}
    uid = next(u for u in range(999, 100, -1) if u not in taken)
    with open("/etc/passwd", "a") as f:
        f.write(f"{name}:x:{uid}:{uid}:CircleCI job user:/home/{name}:/bin/bash\n")
    with open("/etc/group", "a") as f:
        f.write(f"{name}:x:{uid}:\n")
    with open("/etc/shadow", "a") as f:
        f.write(f"{name}:!*:19000::::::\n")
    home = Path("/home") / name
    home.mkdir(mode=0o750, exist_ok=True)
    os.chown(home, uid, uid)


def enter(spec_path, argv):
    spec = json.loads(Path(spec_path).read_text())
    root = Path(spec["root"])
    # ip netns exec made this mount namespace and turned / into a slave: nothing here
    # propagates back to the host.
    for d in spec["overlays"]:
        if not os.path.isdir(d):
            continue
        upper, work = root / "upper" / d.lstrip("/"), root / "work" / d.lstrip("/")
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        # The merged directory takes the upper one's owner and mode: the host's, so that
        # /root stays 0700 (a job user must not walk into it on the instance either).
        st = os.stat(d)
        os.chown(upper, st.st_uid, st.st_gid)
        os.chmod(upper, st.st_mode & 0o7777)
        _mount("-t", "overlay", "overlay", "-o",
               f"lowerdir={d},upperdir={upper},workdir={work}", d)
    # The instance's own /run, shared by every process of this Instance (runnerd's control
    # socket, and runnerctl beside it), empty at first like a fresh boot's.
    run_dir = root / "run"
    run_dir.mkdir(mode=0o755, exist_ok=True)
    _mount("--bind", str(run_dir), "/run")
    if spec.get("bus_dir"):
        os.makedirs("/run/dbus", exist_ok=True)
        _mount("--bind", spec["bus_dir"], "/run/dbus")
    if spec.get("job_user"):
        _add_user(spec["job_user"])
    for path, f in spec["files"].items():
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".world-tmp")
        tmp.write_bytes(base64.b64decode(f["data"]))
        tmp.chmod(f["mode"])
        os.replace(tmp, p)
    os.execvp(argv[0], argv)


def main(argv):
    if len(argv) >= 4 and argv[1] == "enter" and argv[3] == "--" and len(argv) > 4:
        enter(argv[2], argv[4:])
    print("usage: world.py enter SPEC.json -- ARGV...", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
