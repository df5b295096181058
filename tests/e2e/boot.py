#!/usr/bin/python3
"""Real boots for the e2e test: a cached Debian 12 base image, and qemu guests booted from it
with a cloud-init NoCloud seed (the EC2 user-data route), for amd64 or arm64 (ARCHES).

The base image (ensure_image): debootstrap minbase of bookworm with systemd, udev, dbus, the
cloud kernel, cloud-init, sudo and the runtime dependencies of the runnerd package; DHCP through
systemd-networkd; cloud-init limited to NoCloud and to the modules the test uses. It is turned
into an ext4 image with `mkfs.ext4 -d`, and kept with its kernel and initrd in
  ${RUNNERD_CACHE:-${XDG_CACHE_HOME:-~/.cache}/runnerd}/e2e/<hash of the recipe>/
A recipe change (architecture, packages, files, this module's RECIPE_VERSION) means a new hash,
so a new image; the others are removed once unused for PRUNE_AFTER_DAYS. A lock file serialises
builders. The mirror comes from the host's apt sources (never hard-coded); it is not part of the
hash.

Architectures: the recipe and the guest differ only where the architecture does (Arch: the
kernel package, qemu's system binary, machine and CPU model, the serial console's name). An
arm64 image is built on an amd64 host by `debootstrap --arch=arm64`, whose second stage and the
apt/dpkg runs in the chroot execute arm64 programs through qemu-user-static's binfmt_misc
handler (its F flag: no emulator copied into the root; scripts/install-deps registers it); the
guest is qemu-system-aarch64 -machine virt under TCG, Debian's arm64 cloud kernel and initrd
booted directly (no firmware).

A guest (Guest): a qcow2 overlay on the base image (the base is never written), a seed ISO
(genisoimage, volume id cidata) holding user-data and meta-data, and qemu with software
emulation (TCG; RUNNERD_E2E_ACCEL=kvm to try KVM locally, RUNNERD_E2E_CPU another CPU model),
user-mode networking on 169.254.0.0/16 with the world's two addresses (IMDS at
169.254.169.254:80, the AWS, CircleCI and download names at WORLD_ADDR:443) carried to the
guest's fake cloud on the host's loopback by guestfwd and socat, the serial console in a file.
qemu runs under
`timeout` in its own session (so a killed test leaves no qemu behind for longer than the
timeout); Guest.kill() ends it.

Standalone: `boot.py image` builds (or finds) the image and prints its directory.
The image also provides the rest of the world the guest's runnerd must not be told about: the
world's host names in /etc/hosts (cloud-init's template), no Debian mirror, and a CA made when
the image is built (kept beside it, ca.pem and ca.key; Image.server_cert issues the fake's
certificate from it) in the image's CA bundle.
Needs root (debootstrap, chroot), debootstrap, qemu-system-x86 (qemu-system-arm and
qemu-user-static for arm64), qemu-utils, genisoimage, e2fsprogs, socat, openssl
(scripts/install-deps installs them).
"""

import base64
import fcntl
import socket
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import world  # noqa: E402

RECIPE_VERSION = 3
SUITE = "bookworm"
IMAGE_SIZE = "2G"
PRUNE_AFTER_DAYS = 14


class Arch:
    """What differs between the architectures' images and guests."""

    def __init__(self, name, qemu, machine, cpu, console, qemu_user=None):
        self.name, self.qemu, self.machine, self.cpu = name, qemu, machine, cpu
        self.console = console          # the serial console's device name in the guest
        self.qemu_user = qemu_user      # the binfmt handler that runs its programs on this host
        self.kernel_package = f"linux-image-cloud-{name}"


# Under TCG the plain x86-64 baseline costs ~10% less CPU than -cpu max, whose AVX/AVX2 glibc
# picks and TCG emulates slowly (measured: 59 vs 66 s of CPU per boot). For arm64, an ARMv8.0
# core (Debian's baseline): -cpu max adds pointer authentication (every call and return
# signed, which TCG computes in software), SVE and MTE, which nothing here needs (measured:
# 412 vs 254 s of CPU for the arm64 boot to power-off).
ARCHES = {
    "amd64": Arch("amd64", "qemu-system-x86_64", "pc", "qemu64", "ttyS0"),
    "arm64": Arch("arm64", "qemu-system-aarch64", "virt", "cortex-a72", "ttyAMA0",
                  qemu_user="qemu-aarch64"),
}


def host_arch():
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


# debootstrap's own resolver handles the boot essentials (and the architecture's cloud kernel);
# the rest (cloud-init's Python stack trips it) goes through apt in the chroot, with the
# package's own dependencies and recommendations (read from the .deb) added: the guest installs
# it offline.
BOOTSTRAP_PACKAGES = ["systemd", "systemd-sysv", "dbus", "udev"]
# curl and ca-certificates: the stack's user-data downloads the .deb with curl over HTTPS, as on
# Debian's AMI; git: the stack's [packages] install = git, already there (this world has no
# Debian mirror).
APT_PACKAGES = ["cloud-init", "sudo", "python3-yaml", "curl", "ca-certificates", "git"]

# The world as the guest sees it (the image provides it; the guest's runnerd and its config know
# nothing of it): qemu's user network is 169.254.0.0/16, so that IMDS is at its real address,
# 169.254.169.254:80, and the AWS, CircleCI and download host names resolve to WORLD_ADDR:443;
# both are carried to the fake cloud on the host by guestfwd (socat). The certificates come
# from a CA made with the image, in the image's CA bundle (update-ca-certificates).
GUEST_NET = "169.254.0.0/16"
GUEST_HOST_ADDR = "169.254.0.2"
GUEST_DNS_ADDR = "169.254.0.3"
GUEST_DHCP_START = "169.254.0.15"
IMDS_ADDR = "169.254.169.254"
WORLD_ADDR = "169.254.170.10"
WORLD_NAMES = ["autoscaling.us-east-1.amazonaws.com", "secretsmanager.us-east-1.amazonaws.com",
               "ssm.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com",
               "runner.circleci.com", "circleci-binary-releases.s3.amazonaws.com",
               "runnerd-artifacts.s3.amazonaws.com", "packagecloud.io"]
CA_NAME = "runnerd-e2e-world"

# Files written into the rootfs (path -> content). Part of the recipe hash.
IMAGE_FILES = {
    "etc/fstab": "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    # The host's resolver means nothing in the guest; with no DNS, lookups fail at once.
    "etc/resolv.conf": "",
    "etc/systemd/network/10-e2e.network": "[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\n"
                                          "LinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    # No Debian mirror in this world: apt has nothing to update from (the user-data's
    # `apt-get update` succeeds with nothing to do, and nothing goes to the network).
    "etc/apt/sources.list": "",
    "etc/apt/sources.list.d/debian.sources": "",
    # The world's host names, in the template cloud-init writes /etc/hosts from.
    "etc/cloud/templates/hosts.debian.tmpl":
        "## template:jinja\n127.0.1.1 {{fqdn}} {{hostname}}\n127.0.0.1 localhost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        f"{WORLD_ADDR} " + " ".join(WORLD_NAMES) + "\n",
    # Every unit's log on the serial console too (the test reads it; image_files names the
    # architecture's console); runnerd's unit is the package's own, untouched.
    "etc/systemd/journald.conf.d/90-e2e-console.conf":
        "[Journal]\nForwardToConsole=yes\nTTYPath=/dev/CONSOLE\nMaxLevelConsole=info\n",
    # NoCloud only (the seed ISO); the network is networkd's; only the modules the test uses,
    # which keeps the boot short. runcmd moves to the final stage, so cloud-config.service
    # (one more Python start, ~10 s under emulation) is masked. manage_etc_hosts: sudo
    # resolves the host name.
    "etc/cloud/cloud.cfg.d/99-e2e.cfg": """\
datasource_list: [ NoCloud, None ]
network: {config: disabled}
manage_etc_hosts: true
cloud_init_modules: [set_hostname, update_hostname, update_etc_hosts, write_files]
cloud_config_modules: []
cloud_final_modules: [runcmd, scripts_user, final_message]
""",
}
ENABLE_UNITS = ["systemd-networkd.service"]
# Nothing but the test may run: no timers (apt-daily would go for the network), no stage
# without modules.
MASK_UNITS = ["cloud-config.service", "apt-daily.timer", "apt-daily-upgrade.timer",
              "dpkg-db-backup.timer", "e2scrub_all.timer", "e2scrub_reap.service",
              "fstrim.timer"]



def image_files(arch):
    return {k: v.replace("/dev/CONSOLE", f"/dev/{arch.console}") for k, v in IMAGE_FILES.items()}


class E2eError(RuntimeError):
    pass


def cache_root():
    base = os.environ.get("RUNNERD_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        base = os.path.join(xdg, "runnerd")
    return Path(base) / "e2e"


def missing_tools(arch="amd64"):
    """What booting arch needs on this host and is not there (a list of reasons)."""
    a = ARCHES[arch]
    tools = ["debootstrap", a.qemu, "qemu-img", "genisoimage", "mkfs.ext4",
             "dpkg-deb", "timeout", "chroot", "socat", "openssl"]
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [t for t in tools if shutil.which(t, path=path) is None]
    if arch != host_arch():
        # The image's chroot runs arm64 programs: a registered, enabled binfmt handler.
        handler = Path("/proc/sys/fs/binfmt_misc") / (a.qemu_user or f"qemu-{arch}")
        try:
            enabled = handler.read_text().splitlines()[0] == "enabled"
        except (OSError, IndexError):
            enabled = False
        if not enabled:
            missing.append(f"the {handler.name} binfmt_misc handler (qemu-user-static)")
    return missing


def _apt_sources():
    """(uri, suites) of every enabled `deb` source of the host: deb822 and one-line files."""
    d = Path("/etc/apt/sources.list.d")
    for f in sorted(d.glob("*.sources")) if d.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", f.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2).split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                for uri in fields.get("uris", []):
                    yield uri, fields.get("suites", [])
    lists = [Path("/etc/apt/sources.list")] + (sorted(d.glob("*.list")) if d.is_dir() else [])
    for f in lists:
        for line in f.read_text(errors="replace").splitlines() if f.is_file() else []:
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]


def debian_mirror():
    """The Debian mirror the host's apt uses: the source of SUITE, else of any suite but the
    security archive (which carries no full release)."""
    sources = list(_apt_sources())
    for uri, suites in sources:
        if SUITE in suites:
            return uri
    for uri, suites in sources:
        if not any(s.endswith("-security") for s in suites):
            return uri
    raise E2eError("no Debian mirror in the host's apt sources")


def deb_depends(deb):
    """Package names the .deb depends on or recommends (first alternative, no versions or
    arch): what `apt-get install` of it would pull in, so the image has it already."""
    out = []
    for field in ("Pre-Depends", "Depends", "Recommends"):
        r = subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise E2eError(f"dpkg-deb -f {deb} {field}: {r.stderr.strip()}")
        for dep in r.stdout.split(","):
            name = dep.split("|")[0].split("(")[0].split("[")[0].strip().split(":")[0]
            if name:
                out.append(name)
    return out


def recipe(extra_packages=(), arch="amd64"):
    a = ARCHES[arch]
    r = {"version": RECIPE_VERSION, "suite": SUITE, "variant": "minbase",
         "bootstrap": BOOTSTRAP_PACKAGES + [a.kernel_package],
         "packages": sorted(set(APT_PACKAGES) | set(extra_packages)),
         "files": image_files(a), "enable": ENABLE_UNITS, "mask": MASK_UNITS,
         "size": IMAGE_SIZE}
    # amd64's recipe reads as it did before there were architectures, so its cached image
    # (and its hash) stays valid; any other architecture names itself.
    if arch != "amd64":
        r["arch"] = arch
    return r


def recipe_hash(r):
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


class Image:
    def __init__(self, path):
        self.dir = Path(path)
        self.root = self.dir / "root.img"
        self.kernel = self.dir / "vmlinuz"
        self.initrd = self.dir / "initrd.img"

    def complete(self):
        return (self.dir / "recipe.json").is_file() and self.root.is_file()

    def server_cert(self, d):
        """A server certificate for the world's names from the image's CA -> (cert, key)."""
        return world.issue_cert(self.dir / "ca.pem", self.dir / "ca.key", d, WORLD_NAMES)


def _run(argv, logf, timeout, what, **kw):
    logf.write(f"+ {' '.join(map(str, argv))}\n".encode())
    logf.flush()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                           timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise E2eError(f"{what}: timed out after {timeout} s")
    if r.returncode != 0:
        raise E2eError(f"{what}: exit status {r.returncode}")


def _build(r, dest, logf):
    """Build the image of recipe r into the directory dest (which exists and is empty)."""
    rootfs = dest / "rootfs"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    # A foreign architecture's second stage runs in the chroot through the binfmt handler:
    # slower (every program emulated), hence the longer bounds.
    arch = r.get("arch", "amd64")
    slow = 1 if arch == host_arch() else 4
    _run(["debootstrap", f"--arch={arch}", f"--variant={r['variant']}", "--components=main",
          "--include=" + ",".join(r["bootstrap"]), r["suite"], str(rootfs), debian_mirror()],
         logf, 900 * slow, "debootstrap", env=env)
    # Nothing may start services inside the chroot.
    (rootfs / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)
    _run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], logf, 30, "mount /proc")
    try:
        _run(["chroot", str(rootfs), "apt-get", "install", "-y", "-q",
              "--no-install-recommends"] + r["packages"], logf, 600 * slow, "apt-get install",
             env=env)
    finally:
        _run(["umount", str(rootfs / "proc")], logf, 30, "umount /proc")
    (rootfs / "usr/sbin/policy-rc.d").unlink()
    for rel, text in r["files"].items():
        p = rootfs / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink():
            p.unlink()
        p.write_text(text)
    # The world's CA, made with the image and kept beside it (its key signs each run's server
    # certificate), trusted like any CA an AMI adds.
    ca, _ = world.make_ca(dest, days=3650)
    shutil.copyfile(ca, rootfs / f"usr/local/share/ca-certificates/{CA_NAME}.crt")
    _run(["chroot", str(rootfs), "update-ca-certificates"], logf, 120 * slow,
         "update-ca-certificates", env=env)
    _run(["chroot", str(rootfs), "systemctl", "enable"] + r["enable"], logf, 60,
         "systemctl enable", env=env)
    _run(["chroot", str(rootfs), "systemctl", "mask"] + r["mask"], logf, 60,
         "systemctl mask", env=env)
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / sub).glob("*"):
            if p.is_file():
                p.unlink()
    # apt's cache, made for the empty lists now: installing the .deb in the guest reuses it
    # instead of building it under emulation.
    _run(["chroot", str(rootfs), "apt-cache", "gencaches"], logf, 120 * slow,
         "apt-cache gencaches", env=env)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise E2eError(f"expected one kernel and one initrd in /boot: {kernels} {initrds}")
    shutil.copyfile(kernels[0], dest / "vmlinuz")
    shutil.copyfile(initrds[0], dest / "initrd.img")
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(dest / "root.img"),
          r["size"]], logf, 300, "mkfs.ext4")
    shutil.rmtree(rootfs)
    (dest / "recipe.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")


def _remove(d):
    """rmtree, after undoing the /proc mount of a build that was killed mid-way."""
    proc = Path(d) / "rootfs" / "proc"
    if os.path.ismount(proc):
        subprocess.run(["umount", "-l", str(proc)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    shutil.rmtree(d, ignore_errors=True)


def _prune(root, keep):
    """Remove images (and leftovers of killed builds) unused for PRUNE_AFTER_DAYS."""
    cutoff = time.time() - PRUNE_AFTER_DAYS * 86400
    for d in root.iterdir():
        if d.name.startswith(keep) or d.name.startswith(f".build-{keep}"):
            continue
        try:
            if d.stat().st_mtime >= cutoff:
                continue
            if d.is_dir() and (d.name.startswith(".build-") or Image(d).complete()):
                _remove(d)
            elif d.is_file() and (d.name.endswith(".lock") or d.name.startswith(".build-")):
                d.unlink()
        except OSError:
            pass


def ensure_image(extra_packages=(), log=None, arch="amd64"):
    """The Image of arch for the recipe (with extra_packages); built when missing. Returns
    (image, seconds spent building or 0.0)."""
    r = recipe(extra_packages, arch)
    h = recipe_hash(r)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    img = Image(root / h)
    if img.complete():
        os.utime(img.dir)  # in use: keep it from being pruned
        return img, 0.0
    with open(root / f"{h}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # another run may be building the same image
        if img.complete():
            return img, 0.0
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{h}-", dir=root))
        logpath = tmp.with_name(tmp.name + ".log")
        if log:
            log(f"building the e2e base image {h} (log: {logpath})")
        try:
            with open(logpath, "wb") as logf:
                _build(r, tmp, logf)
            if img.dir.exists():
                shutil.rmtree(img.dir)
            os.rename(tmp, img.dir)
        except Exception as e:
            _remove(tmp)
            tail = logpath.read_text(errors="replace")[-3000:] if logpath.exists() else ""
            raise E2eError(f"building the base image failed: {e}\n--- {logpath} ---\n{tail}")
        except BaseException:
            _remove(tmp)
            raise
        logpath.unlink(missing_ok=True)
        _prune(root, h)
        return img, time.monotonic() - t0


# ---- a guest ------------------------------------------------------------------------------

def cloud_config(files, runcmd):
    """#cloud-config user-data. files: [(path, bytes, mode)]; binary-safe through b64."""
    wf = [{"path": p, "encoding": "b64", "content": base64.b64encode(data).decode(),
           "permissions": f"0{mode:o}", "owner": "root:root"} for p, data, mode in files]
    return "#cloud-config\n" + yaml.safe_dump({"write_files": wf, "runcmd": runcmd},
                                              sort_keys=False, width=1 << 30)


class Guest:
    """One qemu guest booted from an Image with a NoCloud seed. Files live in workdir."""

    def __init__(self, image, workdir, name, user_data, meta_data, memory_mb=1024, cpus=1,
                 imds_port=None, world_port=None, arch="amd64"):
        self.image, self.name = image, name
        self.arch = ARCHES[arch]
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serial = self.dir / "serial.log"
        self.qemu_log = self.dir / "qemu.log"
        self.overlay = self.dir / "overlay.qcow2"
        self.seed = self.dir / "seed.iso"
        self.user_data, self.meta_data = user_data, meta_data
        self.memory_mb, self.cpus = memory_mb, cpus
        # Host ports (on 127.0.0.1) of the fake's IMDS and TLS listeners.
        self.imds_port, self.world_port = imds_port, world_port
        self.proc = None
        self.started = None
        self.started_wall = None
        self.elapsed = None
        self.cpu_s = None
        self.returncode = None
        self.boots = 0  # starts of this guest: each boots the same disk (overlay) again
        self.qmp = self.dir / "qmp.sock"

    def prepare(self):
        seed_dir = self.dir / "seed"
        seed_dir.mkdir(exist_ok=True)
        (seed_dir / "user-data").write_text(self.user_data)
        (seed_dir / "meta-data").write_text(self.meta_data)
        for argv in (["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                      str(self.image.root), str(self.overlay)],
                     ["genisoimage", "-quiet", "-output", str(self.seed), "-volid", "cidata",
                      "-joliet", "-rock", str(seed_dir / "user-data"),
                      str(seed_dir / "meta-data")]):
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                raise E2eError(f"{argv[0]}: exit status {r.returncode}: {r.stderr.strip()}")
        return self

    def argv(self, timeout_s):
        accel = os.environ.get("RUNNERD_E2E_ACCEL", "tcg")
        accel_opt = "tcg,thread=multi" if accel == "tcg" else accel
        a = self.arch
        # if=virtio: virtio-blk PCI devices on both machines (pc, and virt's PCIe bus), in this
        # order: vda the root, vdb the seed.
        return ["timeout", "--kill-after=10", str(int(timeout_s)),
                a.qemu, "-nodefaults", "-no-user-config", "-machine", a.machine,
                "-accel", accel_opt, "-cpu", self.cpu_model(), "-smp", str(self.cpus),
                "-m", str(self.memory_mb), "-no-reboot",
                "-display", "none", "-monitor", "none", "-serial", f"file:{self.serial}",
                # QMP: the outside's ACPI power button (powerdown), as EC2 stops an instance.
                "-qmp", f"unix:{self.qmp},server=on,wait=off",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", f"root=/dev/vda rw console={a.console} panic=-1",
                "-drive", f"file={self.overlay},format=qcow2,if=virtio",
                "-drive", f"file={self.seed},format=raw,if=virtio,readonly=on",
                "-netdev", self.netdev(), "-device", "virtio-net-pci,netdev=n0",
                "-device", "virtio-rng-pci"]

    def cpu_model(self):
        """The architecture's model; RUNNERD_E2E_CPU tries another (measuring, KVM's host)."""
        return os.environ.get("RUNNERD_E2E_CPU") or self.arch.cpu

    def netdev(self):
        nd = (f"user,id=n0,net={GUEST_NET},host={GUEST_HOST_ADDR},dns={GUEST_DNS_ADDR},"
              f"dhcpstart={GUEST_DHCP_START}")
        # guestfwd runs the command for each connection the guest opens to that address.
        if self.imds_port:
            nd += (f",guestfwd=tcp:{IMDS_ADDR}:80-cmd:socat STDIO "
                   f"TCP4:127.0.0.1:{self.imds_port}")
        if self.world_port:
            nd += (f",guestfwd=tcp:{WORLD_ADDR}:443-cmd:socat STDIO "
                   f"TCP4:127.0.0.1:{self.world_port}")
        return nd

    def start(self, timeout_s):
        """Boot (again: the same overlay, the same seed; cloud-init sees the same instance id
        and runs no per-instance module twice, like EC2 starting a stopped instance). Each boot
        has its own serial log: serial.log, then serial-2.log, ..."""
        self.timeout_s = timeout_s
        self.boots += 1
        if self.boots > 1:
            self.serial = self.dir / f"serial-{self.boots}.log"
            self.qemu_log = self.dir / f"qemu-{self.boots}.log"
            self.proc = None
            self.returncode = self.elapsed = self.cpu_s = None
        self.qmp.unlink(missing_ok=True)
        self.started_wall = time.time()
        with open(self.qemu_log, "wb") as out:
            self.proc = subprocess.Popen(self.argv(timeout_s), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out, start_new_session=True)
        self.started = time.monotonic()
        return self

    def _reap(self):
        """Called once qemu's group leader (`timeout`) has exited: collect its status and the
        CPU time it and qemu used (on a loaded host, a better measure than the wall clock)."""
        if self.proc.returncode is None:
            _, status, ru = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = ru.ru_utime + ru.ru_stime
        self.returncode = self.proc.returncode
        self.elapsed = time.monotonic() - self.started

    def powerdown(self, timeout_s=30):
        """Press the ACPI power button through QMP (system_powerdown): the guest's systemd
        shuts down as on an EC2 stop. Returns once qemu took the command (each read bounded
        by timeout_s)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
            sk.settimeout(timeout_s)
            # qemu made the socket as it started, long before the guest reaches the pool.
            sk.connect(str(self.qmp))
            f = sk.makefile("rwb", buffering=0)
            json.loads(f.readline())  # the greeting
            for cmd in ("qmp_capabilities", "system_powerdown"):
                f.write(json.dumps({"execute": cmd}).encode() + b"\n")
                while True:  # events may come before the answer
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
                if "error" in reply:
                    raise E2eError(f"guest {self.name}: QMP {cmd}: {reply['error']}")

    def kill(self):
        """End qemu: SIGTERM to `timeout`, which relays it to qemu and exits once qemu is gone;
        the whole group gets SIGKILL if that takes more than 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def serial_text(self):
        try:
            return self.serial.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self, tail=6000):
        qlog = self.qemu_log.read_text(errors="replace") if self.qemu_log.exists() else ""
        serial = self.serial_text()
        # The boot's story (runnerd's and cloud-init's lines, through journald to the console)
        # first: the tail alone is mostly the shutdown.
        story = [line for line in serial.splitlines()
                 if any(w in line for w in ("runnerd", "cloud-init", "circleci"))]
        return (f"guest {self.name}: qemu exit {self.returncode} after "
                f"{self.elapsed or 0:.1f} s\n--- qemu ---\n{qlog[-2000:]}\n"
                f"--- runnerd and cloud-init ---\n" + "\n".join(story[-200:]) + "\n"
                f"--- serial ({self.serial}) ---\n{serial[-tail:]}")


def wait_all(guests):
    """Wait until every guest's qemu has exited (each one's own exit time recorded), never
    past its timeout (+30 s: `timeout` itself ends qemu first); a guest still running then is
    killed. Returns the guests' exit statuses (124: the timeout ended qemu)."""
    sel = selectors.DefaultSelector()
    fds = {}
    try:
        for g in guests:
            fd = os.pidfd_open(g.proc.pid)
            fds[fd] = g
            sel.register(fd, selectors.EVENT_READ, g)
        deadline = max(g.started + g.timeout_s + 30 for g in guests)
        left = set(guests)
        while left:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            for key, _ in sel.select(timeout):
                sel.unregister(key.fd)
                key.data._reap()
                left.discard(key.data)
        for g in left:
            g.kill()
            g._reap()
    finally:
        sel.close()
        for fd in fds:
            os.close(fd)
    return [g.returncode for g in guests]


if __name__ == "__main__":
    args = sys.argv[1:]
    arch = "amd64"
    if args[:1] == ["--arch"] and len(args) > 1:
        arch, args = args[1], args[2:]
    if args[:1] != ["image"] or arch not in ARCHES:
        print("usage: boot.py [--arch amd64|arm64] image [DEB]", file=sys.stderr)
        sys.exit(64)
    extra = deb_depends(args[1]) if len(args) > 1 else ()
    image, took = ensure_image(extra, log=lambda m: print(m, file=sys.stderr), arch=arch)
    print(f"{image.dir} (built in {took:.0f} s)" if took else image.dir)
