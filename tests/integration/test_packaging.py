"""The Debian packages, built and installed for real (packaging/README.md).

- The packages are built by packaging/build-deb (`make debs-all`: this machine's architecture
  and arm64, cross-built) into a temporary directory, or taken from $RUNNERD_DEBS (`make
  verify-packaging` and `make integration` build them first and pass their build directory).
- For each architecture: lintian --fail-on error,warning on both packages; their contents; the
  binaries' ELF machine (aarch64 in the arm64 packages) and hardening. The foreign
  architecture's binaries are started under qemu user-mode emulation (qemu-aarch64-static, the
  multiarch runtime libraries the arm64 -dev packages brought): `runnerd --version` and
  `runner-scaler check-config` of the stack's scaler configuration. The rest runs natively.
- Installation with dpkg into a Debian 12 chroot (debootstrap, cached outside the repo, keyed by
  its recipe): the real maintainer scripts run, systemd-sysusers and systemd-tmpfiles included.
  The chroot has /run/systemd/system, so the scripts act as on a booted system; systemctl is a
  stub that records every call and hands the offline verbs (preset, enable, is-enabled, ...) to
  the real one, so enablement is real and every start/stop/restart is seen. Needs root (chroot,
  a private mount namespace for /proc): skipped, saying so, when not root.
- systemd-analyze verify of both units inside that root, the man pages of Documentation= looked
  up there too: any output on stderr fails (it exits 0 on unknown keys), with a negative control
  that proves a bad key is reported; systemd-analyze security bounds runner-scaler's exposure.
"""

import hashlib
import os
import re
import select
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO  # noqa: E402

BUILD_DEB = REPO / "packaging" / "build-deb"
SUITE = "bookworm"
# What the chroot needs so that dpkg -i of both packages succeeds without the network: their
# run-time dependencies, and systemd (sysusers, tmpfiles, systemctl, unit targets).
# python3 and python3-yaml: the stand-in agent (tests/fakes/fake_agent.py) runs in it when booted;
# ca-certificates: both packages depend on it.
ROOTFS_INCLUDE = ("systemd,sudo,procps,libcurl4,libcjson1,libinih1,libssl3,libyaml-0-2,zlib1g,"
                  "python3,python3-yaml,ca-certificates")
ROOTFS_RECIPE = f"debootstrap --variant=minbase --include={ROOTFS_INCLUDE} {SUITE}; " \
                "minus var/cache/apt/archives/*.deb and var/lib/apt/lists/*"

# The stub: offline verbs go to the real systemctl (enablement is done for real; SYSTEMD_OFFLINE
# because /run/systemd/system would make it look for a manager), the verbs that need a running
# manager are recorded and succeed (is-active: "inactive").
SYSTEMCTL_STUB = r"""#!/bin/sh
echo "$*" >>/var/log/systemctl.calls
for a; do
	case "$a" in
	preset | enable | disable | reenable | mask | unmask | is-enabled | list-unit-files | cat)
		SYSTEMD_OFFLINE=1 exec /usr/bin/systemctl.real "$@" ;;
	is-active) exit 3 ;;
	start | stop | restart | try-restart | reload | reload-or-restart | daemon-reload | kill)
		exit 0 ;;
	esac
done
exit 0
"""


def run(argv, timeout=120, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)


def out(r):
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


# ---- the packages -------------------------------------------------------------------------

NATIVE = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                        check=True).stdout.strip()
# The architectures the project ships (`make debs-all`), and what tells them apart.
ARCHS = ("amd64", "arm64")
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
FILE_MACHINE = {"amd64": "x86-64", "arm64": "ARM aarch64"}
QEMU_USER = {"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}
BINARIES = ("usr/sbin/runnerd", "usr/bin/runnerctl", "usr/sbin/runner-scaler")


@pytest.fixture(scope="module")
def debs_dir(tmp_path_factory):
    """The directory with both architectures' packages: $RUNNERD_DEBS, else built now."""
    given = os.environ.get("RUNNERD_DEBS")
    if given:
        return Path(given)
    d = tmp_path_factory.mktemp("debs")
    for arch in ARCHS:
        r = run([BUILD_DEB, d, arch], timeout=900)
        assert r.returncode == 0, f"packaging/build-deb {arch} failed:\n" + out(r)
    return d


def debs_of(d, arch):
    """{'runnerd': Path, 'runner-scaler': Path} of one architecture in d."""
    found = {}
    for p in ("runnerd", "runner-scaler"):
        m = sorted(d.glob(f"{p}_*_{arch}.deb"))
        assert len(m) == 1, (f"want exactly one {p}_*_{arch}.deb in {d}, got {m} "
                             "(`make debs-all` builds every architecture)")
        found[p] = m[0]
    return found


@pytest.fixture(scope="module")
def debs(debs_dir):
    """This machine's architecture: the packages the chroot and nspawn tests install."""
    return debs_of(debs_dir, NATIVE)


@pytest.fixture(scope="module", params=ARCHS)
def arch_debs(request, debs_dir):
    """(arch, packages) for every architecture shipped."""
    return request.param, debs_of(debs_dir, request.param)


def deb_field(deb, field):
    r = run(["dpkg-deb", "-f", deb, field])
    assert r.returncode == 0, out(r)
    return r.stdout.strip()


def deb_files(deb):
    r = run(["dpkg-deb", "-c", deb])
    assert r.returncode == 0, out(r)
    # "drwxr-xr-x root/root 0 2026-01-01 00:00 ./etc/" -> "/etc"
    return {line.split(None, 5)[5].split(" -> ")[0].lstrip(".").rstrip("/") or "/"
            for line in r.stdout.splitlines()}


def test_lintian_clean(arch_debs):
    arch, debs = arch_debs
    # lintian's --fail-on takes the kinds that fail, not a threshold: error and warning.
    r = run(["lintian", "--fail-on", "error,warning", "--display-info", "--no-tag-display-limit",
             debs["runnerd"], debs["runner-scaler"]], timeout=300)
    assert r.returncode == 0, out(r)
    bad = [l for l in r.stdout.splitlines()
           if l.startswith(("E:", "W:")) or "unused-override" in l or "mismatched-override" in l]
    assert not bad, out(r)
    # lintian read what it was given: both packages, of this architecture.
    for p, deb in debs.items():
        assert deb_field(deb, "Package") == p and deb_field(deb, "Architecture") == arch, deb


def test_package_contents(arch_debs):
    arch, debs = arch_debs
    rd, sc = deb_files(debs["runnerd"]), deb_files(debs["runner-scaler"])
    for f in ("/usr/sbin/runnerd", "/usr/bin/runnerctl", "/lib/systemd/system/runnerd.service",
              "/lib/systemd/system/runnerd-failed.service", "/etc/runnerd/runnerd.conf", "/usr/lib/sysusers.d/runnerd.conf",
              "/usr/lib/tmpfiles.d/runnerd.conf", "/usr/share/man/man8/runnerd.8.gz",
              "/usr/share/man/man8/runnerctl.8.gz", "/usr/share/man/man5/runnerd.conf.5.gz",
              "/usr/share/doc/runnerd/copyright", "/usr/share/doc/runnerd/README.Debian"):
        assert f in rd, f"runnerd lacks {f}"
    for f in ("/usr/sbin/runner-scaler", "/lib/systemd/system/runner-scaler.service",
              "/etc/runnerd/scaler.conf", "/usr/share/man/man8/runner-scaler.8.gz",
              "/usr/share/man/man5/runner-scaler.conf.5.gz"):
        assert f in sc, f"runner-scaler lacks {f}"
    # A scaler node must never get the unit that powers the machine off.
    assert not {"/usr/sbin/runnerd", "/lib/systemd/system/runnerd.service",
                "/lib/systemd/system/runnerd-failed.service"} & sc, sorted(sc)
    assert not any("scaler" in f for f in rd), sorted(rd)

    depends = deb_field(debs["runnerd"], "Depends")
    for dep in ("sudo", "libcurl4", "libsystemd0", "libcjson1", "libinih1"):
        assert re.search(rf"(^|, ){re.escape(dep)}\b", depends), depends
    assert re.search(r"(^|, )procps\b", deb_field(debs["runner-scaler"], "Depends"))
    assert deb_field(debs["runnerd"], "Version") == deb_field(debs["runner-scaler"], "Version")

    for deb, conffile in ((debs["runnerd"], "/etc/runnerd/runnerd.conf"),
                          (debs["runner-scaler"], "/etc/runnerd/scaler.conf")):
        ctl = run(["sh", "-c", 'dpkg-deb --ctrl-tarfile "$1" | tar -xOf - ./conffiles', "sh", deb])
        assert ctl.stdout.split() == [conffile], out(ctl)


def unpack(debs, dest):
    for deb in debs.values():
        r = run(["dpkg-deb", "-x", deb, dest])
        assert r.returncode == 0, out(r)
    return dest


def elf_machine(path):
    """e_machine of an ELF file, from its header (64-bit little-endian, as both targets are)."""
    hdr = Path(path).read_bytes()[:20]
    assert hdr[:4] == b"\x7fELF", f"{path}: not ELF"
    assert hdr[4] == 2 and hdr[5] == 1, f"{path}: not ELF64 little-endian"
    return int.from_bytes(hdr[18:20], "little")


def test_binaries_are_for_their_architecture(arch_debs, tmp_path):
    """The packages of an architecture hold that architecture's binaries: aarch64 in the arm64
    packages (a cross build that quietly used the host compiler would make x86-64 ones)."""
    arch, debs = arch_debs
    root = unpack(debs, tmp_path)
    for b in BINARIES:
        assert elf_machine(root / b) == ELF_MACHINE[arch], (arch, b)
        if shutil.which("file"):
            desc = run(["file", "-b", root / b]).stdout
            assert FILE_MACHINE[arch] in desc and "pie executable" in desc, (arch, b, desc)
        # Linked against the architecture's own dynamic loader.
        interp = run(["readelf", "-lW", root / b]).stdout
        loader = {"amd64": "/lib64/ld-linux-x86-64.so.2",
                  "arm64": "/lib/ld-linux-aarch64.so.1"}[arch]
        assert f"[Requesting program interpreter: {loader}]" in interp, (arch, b)


def test_elf_machine_reader_tells_them_apart(tmp_path):
    """The check above can fail: a header of the other machine is read as that machine."""
    for arch, m in ELF_MACHINE.items():
        f = tmp_path / arch
        f.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + m.to_bytes(2, "little") + bytes(44))
        assert elf_machine(f) == m
    assert ELF_MACHINE["amd64"] != ELF_MACHINE["arm64"]


# A valid scaler configuration: what the stack's scaler user-data writes, with its values.
SCALER_CONF = """[scaler]
interval = 10s

[circleci]
token_source = secretsmanager
token_id = arn:aws:secretsmanager:us-east-1:123456789012:secret:cci-runner-lambda-secrets-AbCdEf
token_key = circle_token

[pool runners]
resource_class = myorg/linux-arm
asg = runnerd-runners
region = us-east-1
min = 0
max = 10

[election]
mode = dynamodb
table = runnerd-LeaseTable-0123
name = runner-scaler
lease = 15s
"""


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != NATIVE])
def test_foreign_binaries_start_under_emulation(arch, debs_dir, tmp_path):
    """The cross-built binaries run: under qemu user-mode emulation (called by name, no binfmt
    needed), with the runtime libraries of the multiarch -dev packages for that architecture.
    The unit tests and the rest of the suite run on the native build; the full boot of the arm64
    package is `make e2e-arm64`."""
    qemu = shutil.which(QEMU_USER[arch])
    assert qemu, f"{QEMU_USER[arch]} is missing: run scripts/install-deps"
    debs = debs_of(debs_dir, arch)
    root = unpack(debs, tmp_path / "root")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    want_version = deb_field(debs["runnerd"], "Version")
    for b in ("usr/sbin/runnerd", "usr/sbin/runner-scaler", "usr/bin/runnerctl"):
        r = run([qemu, root / b, "--version"], env=env, timeout=60)
        assert r.returncode == 0, f"{b}\n{out(r)}"
        assert want_version in r.stdout, (b, r.stdout)
    conf = tmp_path / "scaler.conf"
    conf.write_text(SCALER_CONF)
    r = run([qemu, root / "usr/sbin/runner-scaler", "check-config", "-c", conf], env=env,
            timeout=60)
    assert r.returncode == 0, out(r)
    shown = r.stdout
    assert "[pool runners]" in shown and "resource_class = myorg/linux-arm" in shown, shown
    assert "mode = dynamodb" in shown, shown
    # And a configuration it must refuse is refused (78, the line named): the emulated binary
    # really reads and checks, it does not just start.
    conf.write_text(SCALER_CONF.replace("max = 10", "max = ten"))
    r = run([qemu, root / "usr/sbin/runner-scaler", "check-config", "-c", conf], env=env,
            timeout=60)
    assert r.returncode == 78 and f"{conf}:" in r.stderr and "max" in r.stderr, out(r)
    # runnerd's own check-config, on its shipped configuration.
    r = run([qemu, root / "usr/sbin/runnerd", "check-config", "-c",
             root / "etc/runnerd/runnerd.conf"], env=env, timeout=60)
    assert r.returncode == 0 and "user = circleci" in r.stdout, out(r)


def test_binaries_hardened(arch_debs, tmp_path):
    """PIE, full RELRO (BIND_NOW), stack protector and FORTIFY in all three binaries."""
    arch, debs = arch_debs
    unpack(debs, tmp_path)
    for b in BINARIES:
        path = tmp_path / b
        hdr = run(["readelf", "-hlW", path]).stdout
        assert re.search(r"Type:\s+DYN", hdr), f"{b}: not PIE\n{hdr}"
        assert "GNU_RELRO" in hdr, f"{b}: no RELRO"
        dyn = run(["readelf", "-dW", path]).stdout
        assert re.search(r"\(FLAGS\).*\bBIND_NOW\b|\(FLAGS_1\).*\bNOW\b", dyn), \
            f"{b}: no BIND_NOW\n{dyn}"
        syms = run(["readelf", "--dyn-syms", "-W", path]).stdout
        assert "__stack_chk_fail" in syms, f"{b}: no stack protector"
        assert re.search(r"\b__\w+_chk\b", syms.replace("__stack_chk_fail", "")), \
            f"{b}: no FORTIFY_SOURCE function"


# ---- installing into a chroot -------------------------------------------------------------

def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: dpkg into a chroot, and a private mount namespace for its /proc")


def cache_dir():
    c = os.environ.get("RUNNERD_CACHE")
    if not c:
        c = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "runnerd")
    return Path(c)


def debian_mirror():
    """The mirror this machine's apt uses (never a hard-coded host)."""
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            f = line.split()
            if len(f) >= 3 and f[0] == "deb" and not f[1].startswith("["):
                return f[1]
    pytest.fail("no Debian mirror found in /etc/apt (debian.sources or sources.list)")


@pytest.fixture(scope="session")
def rootfs_tar():
    """A tarball of a minimal Debian 12 root with the packages' dependencies, cached."""
    needs_root()
    key = hashlib.sha256(ROOTFS_RECIPE.encode()).hexdigest()[:16]
    cache = cache_dir()
    tar = cache / f"pkgroot-{key}.tar"
    if tar.exists():
        return tar
    assert shutil.which("debootstrap"), "debootstrap is missing: run scripts/install-deps"
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f"pkgroot-{key}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        root = work / "root"
        r = run(["debootstrap", "--variant=minbase", f"--include={ROOTFS_INCLUDE}", SUITE, root,
                 debian_mirror()], timeout=900)
        assert r.returncode == 0, "debootstrap failed:\n" + out(r)[-4000:]
        for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (root / d).glob("*"):
                if p.is_file():
                    p.unlink()
        r = run(["tar", "-C", root, "-cf", work / "root.tar", "."], timeout=300)
        assert r.returncode == 0, out(r)
        os.replace(work / "root.tar", tar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tar


class Chroot:
    """A throwaway Debian root: run commands in it, see its systemctl calls."""

    def __init__(self, tar, where):
        self.root = Path(where) / "root"
        self.root.mkdir()
        r = run(["tar", "-C", self.root, "-xf", tar], timeout=300)
        assert r.returncode == 0, out(r)
        # What maintainer scripts test to tell a booted systemd.
        (self.root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
        real = self.root / "usr/bin/systemctl"
        real.rename(self.root / "usr/bin/systemctl.real")
        real.write_text(SYSTEMCTL_STUB)
        real.chmod(0o755)

    def run(self, argv, env=None, timeout=120):
        """argv inside the root, with /proc mounted in a private mount namespace (gone when
        the command ends), no standard input, and a clean environment plus env."""
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
             "DEBIAN_FRONTEND": "noninteractive"}
        e.update(env or {})
        script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
        return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                    self.root, *argv], env=e, timeout=timeout, stdin=subprocess.DEVNULL)

    def install(self, *debs, env=None, dpkg_opts=()):
        paths = []
        for d in debs:
            shutil.copy(d, self.root / "tmp" / Path(d).name)
            paths.append(f"/tmp/{Path(d).name}")
        return self.run(["dpkg", *dpkg_opts, "-i", *paths], env=env)

    def unstub(self):
        """The real systemctl back, to boot the root."""
        (self.root / "usr/bin/systemctl.real").replace(self.root / "usr/bin/systemctl")

    def remove(self):
        """A root is 160 MiB: do not leave it to pytest's tmp retention."""
        shutil.rmtree(self.root, ignore_errors=True)

    def calls(self):
        p = self.root / "var/log/systemctl.calls"
        return p.read_text().splitlines() if p.exists() else []

    def clear_calls(self):
        (self.root / "var/log/systemctl.calls").unlink(missing_ok=True)

    def enabled(self, unit):
        return (self.root / "etc/systemd/system/multi-user.target.wants" / unit).is_symlink()

    def passwd(self, user):
        for line in (self.root / "etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == user:
                return f
        return None


def starts(calls, unit):
    """The calls that would start unit (start, restart, try-restart...)."""
    return [c for c in calls if unit in c.split() and
            re.search(r"\b(start|restart|try-restart|reload-or-restart)\b", c)]


def stops(calls, unit):
    return [c for c in calls if unit in c.split() and re.search(r"\bstop\b", c)]


@pytest.fixture(scope="module")
def installed(rootfs_tar, debs, tmp_path_factory):
    """Both packages installed the plain way, as user-data does on a runner: (Chroot, result)."""
    ch = Chroot(rootfs_tar, tmp_path_factory.mktemp("chroot"))
    try:
        r = ch.install(debs["runnerd"], debs["runner-scaler"])
        assert r.returncode == 0, "dpkg -i failed:\n" + out(r)
        yield ch, r
    finally:
        ch.remove()


def test_install_starts_runnerd_without_blocking(installed):
    ch, _ = installed
    calls = ch.calls()
    assert ch.enabled("runnerd.service"), calls
    # Exactly one start, queued: a blocking start would wait for READY, which runnerd sends
    # after its packages phase, which needs the dpkg lock this install holds.
    assert starts(calls, "runnerd.service") == ["--no-block start runnerd.service"], calls
    assert "--system daemon-reload" in calls, calls


def test_install_creates_job_user(installed):
    ch, _ = installed
    pw = ch.passwd("circleci")
    assert pw is not None, "no circleci user"
    assert pw[5:7] == ["/home/circleci", "/bin/bash"], pw
    uid = int(pw[2])
    for d, mode in (("home/circleci", 0o750), ("var/lib/circleci-runner/workdir", 0o750)):
        st = (ch.root / d).stat()
        assert st.st_uid == uid and stat.S_IMODE(st.st_mode) == mode, (d, st)
    # The example configuration is valid as shipped (every key commented: the defaults).
    r = ch.run(["runnerd", "check-config"])
    assert r.returncode == 0, out(r)
    assert "user = circleci" in r.stdout


def test_scaler_installed_disabled_and_stopped(installed):
    ch, _ = installed
    calls = ch.calls()
    assert not ch.enabled("runner-scaler.service")
    assert not [c for c in starts(calls, "runner-scaler.service") if "is-" not in c], calls
    r = ch.run(["systemctl", "is-enabled", "runner-scaler.service"])
    assert r.stdout.strip() == "disabled", out(r)
    # The shipped example is not a working scaler configuration: it must fail, as EX_CONFIG
    # (the unit does not restart on 78).
    r = ch.run(["runner-scaler", "check-config"])
    assert r.returncode == 78, out(r)


def verify(ch, *units):
    env = dict(os.environ, MANPATH=str(ch.root / "usr/share/man"), SYSTEMD_LOG_COLOR="0",
               SYSTEMD_PAGER="")
    return run(["systemd-analyze", "verify", f"--root={ch.root}", *units], env=env)


def test_units_verify_clean(installed):
    ch, _ = installed
    # ExecStart binaries, targets and the man pages of Documentation= all resolve in the root.
    r = verify(ch, "runnerd.service", "runnerd-failed.service", "runner-scaler.service")
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "", out(r)


def test_units_verify_reports_a_bad_key(installed):
    """The negative control: the check above would see a mistake (verify still exits 0)."""
    ch, _ = installed
    probe = ch.root / "etc/systemd/system/verify-probe.service"
    text = (ch.root / "lib/systemd/system/runnerd.service").read_text()
    probe.write_text(text.replace("[Service]\n", "[Service]\nKillMod=mixed\n", 1))
    try:
        r = verify(ch, "verify-probe.service")
    finally:
        probe.unlink()
    assert "Unknown key" in r.stderr and "KillMod" in r.stderr, out(r)


def test_scaler_unit_exposure(installed):
    ch, _ = installed
    r = run(["systemd-analyze", "security", "--offline=yes", f"--root={ch.root}",
             "--threshold=15", "--no-pager", "runner-scaler.service"],
            env=dict(os.environ, SYSTEMD_COLORS="0"))
    m = re.search(r"Overall exposure level for runner-scaler.service: ([0-9.]+)", r.stdout)
    assert m and r.returncode == 0, out(r)
    assert float(m.group(1)) <= 1.5, out(r)


@pytest.fixture
def fresh(rootfs_tar, tmp_path):
    ch = Chroot(rootfs_tar, tmp_path)
    try:
        yield ch
    finally:
        ch.remove()


def test_no_start_switch(fresh, debs):
    r = fresh.install(debs["runnerd"], env={"RUNNERD_NO_START": "1"})
    assert r.returncode == 0, out(r)
    calls = fresh.calls()
    assert fresh.enabled("runnerd.service"), calls
    assert starts(calls, "runnerd.service") == [], calls
    assert "RUNNERD_NO_START=1" in r.stderr, out(r)


@pytest.mark.parametrize("policy_status,started", [(101, False), (0, True)])
def test_policy_rc_d(fresh, debs, policy_status, started):
    policy = fresh.root / "usr/sbin/policy-rc.d"
    policy.write_text(f"#!/bin/sh\necho \"$*\" >>/var/log/policy-rc.d.calls\n"
                      f"exit {policy_status}\n")
    policy.chmod(0o755)
    r = fresh.install(debs["runnerd"])
    assert r.returncode == 0, out(r)
    asked = (fresh.root / "var/log/policy-rc.d.calls").read_text().splitlines()
    assert "runnerd.service start" in asked, asked
    assert bool(starts(fresh.calls(), "runnerd.service")) == started, fresh.calls()
    assert fresh.enabled("runnerd.service")


def test_upgrade_and_purge_leave_runnerd_alone(fresh, debs):
    r = fresh.install(debs["runnerd"])
    assert r.returncode == 0, out(r)
    fresh.clear_calls()
    # A reinstall runs the upgrade paths (postinst configure with the old version).
    r = fresh.install(debs["runnerd"])
    assert r.returncode == 0, out(r)
    calls = fresh.calls()
    assert starts(calls, "runnerd.service") == [] and stops(calls, "runnerd.service") == [], calls
    r = fresh.run(["dpkg", "--purge", "runnerd"])
    assert r.returncode == 0, out(r)
    calls = fresh.calls()
    assert stops(calls, "runnerd.service") == [], calls
    assert not fresh.enabled("runnerd.service")
    assert not (fresh.root / "etc/runnerd/runnerd.conf").exists()


def test_config_written_first_is_kept(fresh, debs):
    """The user-data order: configuration first, then the install, which must keep it."""
    conf = fresh.root / "etc/runnerd/runnerd.conf"
    conf.parent.mkdir(parents=True)
    mine = "[token]\nid = my-secret\n"
    conf.write_text(mine)
    # Without --force-confold dpkg asks, and with no terminal it fails: why user-data passes it.
    r = fresh.install(debs["runnerd"], env={"RUNNERD_NO_START": "1"})
    assert r.returncode != 0 and "conffile prompt" in r.stderr, out(r)
    r = fresh.install(debs["runnerd"], env={"RUNNERD_NO_START": "1"},
                      dpkg_opts=("--force-confdef", "--force-confold"))
    assert r.returncode == 0, out(r)
    assert conf.read_text() == mine
    r = fresh.run(["runnerd", "check-config"])
    assert r.returncode == 0 and "id = my-secret" in r.stdout, out(r)


# ---- runner-scaler under systemd, in its sandbox ----------------------------------------

SCALER_TOKEN = "cci-token-packaging-0123"
RC = "acme/linux"


def test_scaler_runs_in_its_sandbox(rootfs_tar, debs, fake, tmp_path):
    """The installed unit, hardening and all, really runs the scaler: booted with
    systemd-nspawn (the host's network, so the fake cloud on 127.0.0.1 is reachable), the
    scaler reads its configuration and /etc/default/runner-scaler, signals READY, reads the
    queue and the group and sets the desired capacity, and writes its metrics into
    node-exporter's directory as the README's drop-in (User=prometheus) says. A system call the
    filter forbids, a path ProtectSystem hides or a missing address family would show here."""
    assert shutil.which("systemd-nspawn"), "systemd-nspawn is missing: run scripts/install-deps"
    fake.set_runner_token(SCALER_TOKEN)
    fake.set_asg("asg-a", 0, 10, 0)
    fake.add_jobs(RC, 3)

    ch = Chroot(rootfs_tar, tmp_path)
    try:
        r = ch.install(debs["runnerd"], debs["runner-scaler"])
        assert r.returncode == 0, out(r)
        ch.unstub()
        # Only the scaler: runnerd would run its boot flow and power the container off.
        (ch.root / "etc/systemd/system/multi-user.target.wants/runnerd.service").unlink()
        r = ch.run(["useradd", "--system", "--no-create-home", "prometheus"])
        assert r.returncode == 0, out(r)
        metrics = ch.root / "var/lib/prometheus/node-exporter"
        metrics.mkdir(parents=True)
        r = ch.run(["chown", "prometheus:prometheus", "/var/lib/prometheus/node-exporter"])
        assert r.returncode == 0, out(r)
        dropin = ch.root / "etc/systemd/system/runner-scaler.service.d"
        dropin.mkdir(parents=True)
        (dropin / "metrics.conf").write_text("[Service]\nUser=prometheus\nGroup=prometheus\n")
        (ch.root / "etc/runnerd/scaler.conf").write_text(
            "[scaler]\ninterval = 1s\n"
            "metrics = /var/lib/prometheus/node-exporter/runnerd.prom\n"
            "[circleci]\ntoken_source = env\n"
            f"[pool a]\nresource_class = {RC}\nasg = asg-a\nmax = 8\n")
        env = fake.env(imds=False)
        env.update(CIRCLE_TOKEN=SCALER_TOKEN, AWS_EC2_METADATA_DISABLED="true")
        (ch.root / "etc/default").mkdir(exist_ok=True)
        envfile = ch.root / "etc/default/runner-scaler"
        envfile.write_text("".join(f"{k}={v}\n" for k, v in env.items()
                                   if k.startswith(("AWS_", "CIRCLE"))))
        envfile.chmod(0o600)
        r = ch.run(["systemctl", "enable", "runner-scaler.service"],
                   env={"SYSTEMD_OFFLINE": "1"})
        assert r.returncode == 0, out(r)
        (ch.root / "var/log/journal").mkdir(parents=True, exist_ok=True)

        log = tmp_path / "nspawn.log"
        with open(log, "wb") as logf:
            boot = subprocess.Popen(["systemd-nspawn", "--quiet", "--register=no",
                                     "--keep-unit", "-D", str(ch.root), "-b"],
                                    stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        failure = None
        try:
            try:
                fake.wait_until(lambda s: s["asgs"]["asg-a"]["desired"] == 3, timeout=60,
                                what="the scaler's SetDesiredCapacity from the container")
            except AssertionError as e:
                failure = e  # reported below, with the container's journal
            # The metrics file follows the cycle's writes; no notification for it: re-check
            # with a deadline, ending early if the container dies.
            prom = metrics / "runnerd.prom"
            deadline = time.monotonic() + 30
            while not prom.exists() and boot.poll() is None and time.monotonic() < deadline:
                select.select([], [], [], 0.05)
        finally:
            # SIGTERM: nspawn powers the container off cleanly.
            boot.terminate()
            try:
                boot.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(boot.pid, 9)
                boot.wait(10)
        assert boot.returncode == 0, log.read_text(errors="replace")[-3000:]

        j = run(["journalctl", "-D", ch.root / "var/log/journal", "--no-pager", "-o", "cat",
                 "-u", "runner-scaler.service"])
        journal = j.stdout
        if failure:
            raise AssertionError(f"{failure}\n--- the scaler's journal:\n{journal}")
        assert "Started runner-scaler.service" in journal, journal  # READY=1 reached systemd
        assert "desired=3 action=set" in journal, journal
        for bad in ("SIGSYS", "status=31", "code=killed", "code=dumped", "Failed with result",
                    "Permission denied", "Read-only file system"):
            assert bad not in journal, journal
        sets = [q for q in fake.requests() if q.get("op") == "SetDesiredCapacity"]
        assert sets and all(q["signature_ok"] for q in sets), sets
        assert prom.exists(), "no metrics file; the scaler's journal:\n" + journal
        st = prom.stat()
        assert stat.S_IMODE(st.st_mode) == 0o644, oct(st.st_mode)
        assert 'runner_scaler_desired_capacity{pool="a"} 3' in prom.read_text()
        assert SCALER_TOKEN not in journal
    finally:
        ch.remove()


# ---- runnerd's unit when runnerd itself fails -----------------------------------------------

CRASH_DROPIN = """[Service]
ExecStart=
ExecStart=/bin/sh -c 'echo RUNNERD-STAND-IN-CRASHES; kill -SEGV $$$$'
"""


def boot_runnerd_root(ch, tmp_path, name):
    """Boot the root with runnerd.service enabled as the package leaves it, in a private
    network (nothing to reach: no IMDS, no AWS). -> (Popen, log path)."""
    ch.unstub()
    (ch.root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    log = tmp_path / f"nspawn-{name}.log"
    with open(log, "wb") as logf:
        boot = subprocess.Popen(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
                                 "--private-network", "-D", str(ch.root), "-b"],
                                stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return boot, log


def journal(ch, *args):
    return run(["journalctl", "-D", ch.root / "var/log/journal", "--no-pager", "-o", "cat",
                *args]).stdout


def stop_container(boot):
    if boot.poll() is None:
        boot.terminate()  # nspawn powers the container off cleanly
        try:
            boot.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(boot.pid, 9)
            boot.wait(10)


@pytest.mark.parametrize("case", ["crash-poweroff", "crash-exit", "bad-config"])
def test_runnerd_failure_powers_off_unless_on_exit_exit(rootfs_tar, debs, tmp_path, case):
    """runnerd.service's last resort agrees with on_exit: when runnerd fails (here a stand-in
    that dies of SIGSEGV, or the real runnerd refusing a broken config) the instance powers
    itself off (runnerd-failed.service's FailureAction=poweroff), except with on_exit = exit,
    which keeps it up for debugging. Booted for real with systemd-nspawn."""
    assert shutil.which("systemd-nspawn"), "systemd-nspawn is missing: run scripts/install-deps"
    ch = Chroot(rootfs_tar, tmp_path)
    try:
        r = ch.install(debs["runnerd"])
        assert r.returncode == 0, out(r)
        conf = ch.root / "etc/runnerd/runnerd.conf"
        shipped = conf.read_text()
        assert ";on_exit = poweroff\n" in shipped
        if case == "bad-config":
            conf.write_text(shipped.replace(";on_exit = poweroff\n", "on_exit = reboot\n"))
        else:
            if case == "crash-exit":
                conf.write_text(shipped.replace(";on_exit = poweroff\n", "on_exit = exit\n"))
            dropin = ch.root / "etc/systemd/system/runnerd.service.d"
            dropin.mkdir(parents=True)
            (dropin / "crash.conf").write_text(CRASH_DROPIN)
        boot, log = boot_runnerd_root(ch, tmp_path, case)
        try:
            if case == "crash-exit":
                # The decision is logged once runnerd-failed.service has run; no
                # notification crosses the container boundary, so re-check the journal with
                # a deadline (ending early should the container stop).
                deadline = time.monotonic() + 90
                seen = ""
                while boot.poll() is None and time.monotonic() < deadline:
                    seen = journal(ch, "-u", "runnerd-failed.service")
                    if "keeping the instance up" in seen and "Finished" in seen:
                        break
                    select.select([], [], [], 0.2)
                assert boot.poll() is None, "the container powered off:\n" + journal(ch)
                assert "keeping the instance up" in seen, journal(ch)
            else:
                try:
                    boot.wait(90)  # powers itself off: nspawn exits
                except subprocess.TimeoutExpired:
                    raise AssertionError("the container did not power off:\n" + journal(ch))
        finally:
            stop_container(boot)
        everything = journal(ch)
        failed = journal(ch, "-u", "runnerd-failed.service")
        if case == "bad-config":
            assert "on_exit: must be one of" in journal(ch, "-u", "runnerd.service"), everything
            assert "is unusable: powering off" in failed, everything
        elif case == "crash-poweroff":
            assert "RUNNERD-STAND-IN-CRASHES" in everything, everything
            assert "on_exit = poweroff" in failed and "powering off" in failed, everything
        if case == "crash-exit":
            assert "RUNNERD-STAND-IN-CRASHES" in everything, everything
            assert "Failed with result" not in failed, everything
            assert "FailureAction" not in everything and "Powering off" not in everything, \
                everything
        else:
            # The unit failed and its FailureAction= did the power-off.
            assert "runnerd-failed.service: Failed with result" in everything, everything
            assert re.search(r"(?i)failure ?action", everything), everything
    finally:
        ch.remove()


# ---- runner-scaler as its unit runs it, on the default path ---------------------------------

def test_scaler_unit_on_the_default_path(rootfs_tar, debs, world, tmp_path):
    """The scaler exactly as the stack deploys it: the package installed, the stack's
    scaler.conf, `systemctl enable runner-scaler` (the stack's user-data), the unit untouched
    (DynamicUser, the system-call filter, ProtectSystem...) and no /etc/default/runner-scaler:
    booted with systemd-nspawn in the world's network, so IMDS answers at 169.254.169.254 and
    AWS and CircleCI at their real names over TLS. It reads its region and credentials from
    IMDS, the token from Secrets Manager, takes the DynamoDB lease and scales the group."""
    import json as _json
    import test_default_path as dp
    assert shutil.which("systemd-nspawn"), "systemd-nspawn is missing: run scripts/install-deps"
    dp.prepare_scaler_world(world)
    fake = world.fake
    ch = Chroot(rootfs_tar, tmp_path)
    try:
        r = ch.install(debs["runner-scaler"])
        assert r.returncode == 0, out(r)
        ch.unstub()
        conf = dp.stack_file("ScalerLaunchTemplate", "/etc/runnerd/scaler.conf")
        for rel, text in {"etc/runnerd/scaler.conf": conf, "etc/hosts": world.hosts_file(),
                          "etc/ssl/certs/ca-certificates.crt": Path(world.ca).read_text()}.items():
            (ch.root / rel).write_text(text)
        assert not (ch.root / "etc/default/runner-scaler").exists()
        r = ch.run(["systemctl", "enable", "runner-scaler.service"],
                   env={"SYSTEMD_OFFLINE": "1"})
        assert r.returncode == 0, out(r)
        (ch.root / "var/log/journal").mkdir(parents=True, exist_ok=True)
        log = tmp_path / "nspawn.log"
        with open(log, "wb") as logf:
            boot = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{world.netns}", "systemd-nspawn", "--quiet",
                 "--register=no", "--keep-unit", "-D", str(ch.root), "-b"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True)
        failure = None
        try:
            fake.wait_until(lambda s: s["asgs"][f"{dp.STACK}-runners"]["desired"] == 3,
                            timeout=90, what="the scaler unit's SetDesiredCapacity")
        except AssertionError as e:
            failure = e
        finally:
            stop_container(boot)
        j = journal(ch, "-u", "runner-scaler.service")
        if failure:
            raise AssertionError(f"{failure}\n--- the scaler's journal:\n{j}\n"
                                 + log.read_text(errors="replace")[-2000:])
        assert "Started runner-scaler.service" in j, j  # READY=1 reached systemd
        assert "election: leader now" in j and "desired=3 action=set" in j, j
        for bad in ("SIGSYS", "status=31", "code=killed", "code=dumped", "Permission denied",
                    "Read-only file system", dp.CIRCLE_TOKEN):
            assert bad not in j, j
        dp.assert_scaler_wrote(world)
        item = fake.boto3_client("dynamodb").get_item(
            TableName=dp.LEASE_TABLE, Key={"lease_id": {"S": "runner-scaler"}},
            ConsistentRead=True)
        assert item["Item"]["owner"]["S"].startswith(dp.MAIN_INSTANCE_ID + ":"), \
            _json.dumps(item["Item"])
    finally:
        ch.remove()
