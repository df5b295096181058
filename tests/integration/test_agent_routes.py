"""The agent CircleCI actually ships, by each route runnerd takes to it, on the default path (the
world of tests/fakes/world.py, nothing in the environment):

- tarball: CircleCI's release tarball (tests/fakes/vendor.py lays it out as CircleCI does) at
  its real URL with %a, the SHA-256 of the download checked, the one member taken out; and what
  must be refused: a wrong digest, a symlink, a traversal name, a device, an oversize member;
  each with a clear error and then the exit path (leave the group, power off);
- package: the vendor's circleci-runner .deb from a signed apt repository at packagecloud.io,
  its own unit held by a drop-in before it can start (a condition: a strict postinst's
  `enable --now` still succeeds), the conffile runnerd's to write; also booted under systemd (nspawn) where that unit
  would really start, and where an image with the vendor's unit enabled by hand has it stopped;
- baked: the binary already there (test_default_path.py);
- the job: the stand-in runner writes its task agent into runner.task_agent_directory and runs
  it as the job user through command_prefix, as machine runner 3 does; a directory the job user
  cannot reach (under /root: the agent's own default for a root runner) or could change is
  refused before the agent starts.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import vendor
from conftest import MAIN_INSTANCE_ID, PYTHON, REPO
from test_packaging import Chroot, debs, debs_dir, journal, out, rootfs_tar  # noqa: F401
from test_default_path import (AGENT_EVENTS, RC, TOKEN, agent_wrapper, assert_left_and_powered_off,
                               assert_real_addresses, aws_calls, installed, packaged_conf,
                               prepare_runner_world, wait_proc)

VERSION = "3.1.4"


def run_with(world, logind, build, tmp_path, conf, files=None, timeout=90, name="runner",
             setup=None):
    inst = world.instance(name, logind=logind,
                          files={"/etc/runnerd/runnerd.conf": conf, **(files or {}),
                                 **installed(build)})
    if setup:
        r = inst.run(["/bin/sh", "-ec", setup])
        assert r.returncode == 0, r.stderr
    log = tmp_path / "runnerd.log"
    with open(log, "wb") as f:
        p = inst.popen(["/usr/sbin/runnerd"], stdout=f, stderr=subprocess.STDOUT)
    rc = wait_proc(p, timeout, "runnerd", log)
    return inst, rc, log.read_text(errors="replace")


def events(inst):
    p = inst.path(AGENT_EVENTS)
    return p.read_text().splitlines() if p.exists() else []


# ---- the tarball route ------------------------------------------------------------------------

def tarball_conf(digest, **more):
    return packaged_conf(download_url=vendor.tarball_url(VERSION), sha256=digest, **more)


def test_tarball_route(world, logind, build, tmp_path):
    """download_url with %a names CircleCI's tarball for this machine (amd64 here); runnerd
    checks the download's SHA-256, takes `circleci-runner` out, installs it 0755 root, and the
    job runs its task agent as the job user."""
    fake = world.fake
    prepare_runner_world(fake)
    agent = agent_wrapper().encode()
    tgz = vendor.release_tarball(agent)
    fake.set_blob(vendor.tarball_url(VERSION, "amd64"), tgz, "application/x-gzip")
    inst, rc, text = run_with(world, logind, build, tmp_path,
                              tarball_conf(hashlib.sha256(tgz).hexdigest()))
    assert rc == 0, text
    assert "(a release tarball)" in text and "SHA-256 of the download verified" in text, text
    binary = inst.path("/usr/bin/circleci-runner")
    assert binary.read_bytes() == agent
    st = os.stat(binary)
    assert (st.st_mode & 0o7777, st.st_uid) == (0o755, 0)
    # No temp file, no archive left beside it.
    assert not [p.name for p in binary.parent.iterdir() if p.name.startswith(".")]
    got = [(r["host"], r["path"]) for r in fake.requests() if r.get("service") == "blob"]
    assert got == [("circleci-binary-releases.s3.amazonaws.com",
                    f"/circleci-runner/{VERSION}/circleci-runner_linux_amd64.tar.gz")], got
    ev = events(inst)
    assert ev[:2] == ["started", "claimed job-1"] and ev[-1] == "completed job-1", ev
    assert "task-agent 0 circleci" in ev, ev
    assert_real_addresses(fake)
    assert_left_and_powered_off(fake, logind)


def test_tarball_download_retried(world, logind, build, tmp_path):
    """S3's 503 SlowDown and a dropped connection are tried again (with a backoff, within the
    boot deadline); a 404 is not: it would only repeat."""
    fake = world.fake
    prepare_runner_world(fake)
    tgz = vendor.release_tarball(agent_wrapper().encode())
    url = vendor.tarball_url(VERSION, "amd64")
    fake.set_blob(url, tgz, "application/x-gzip")
    match = "blob:" + url.split("://", 1)[1]
    # A dropped connection first (a fresh one: curl cannot quietly retry it), then a 503.
    fake.fault(match, close=True, times=1)
    fake.fault(match, status=503, code="SlowDown", retry_after=2, times=1)
    inst, rc, text = run_with(world, logind, build, tmp_path,
                              tarball_conf(hashlib.sha256(tgz).hexdigest()))
    assert rc == 0, text
    assert text.count("trying again") == 2, text
    # The 503's Retry-After (2 s) is waited at least, within the boot deadline.
    pauses = [int(m) for m in re.findall(r"HTTP status 503; trying again in (\d+) ms", text)]
    assert pauses and pauses[0] >= 2000, text
    got = [r["status"] for r in fake.requests() if r.get("service") == "blob"]
    assert got == [None, 503, 200], got

    fake.reset()
    prepare_runner_world(fake)
    (tmp_path / "404").mkdir()
    inst, rc, text = run_with(world, logind, build, tmp_path / "404",
                              tarball_conf(hashlib.sha256(tgz).hexdigest()), name="again")
    assert rc == 69, text
    assert "HTTP status 404" in text and "trying again" not in text, text
    assert [r["status"] for r in fake.requests() if r.get("service") == "blob"] == [404]


@pytest.mark.parametrize("case, says", [
    ("digest", "SHA-256 of the download is"),
    ("symlink", "is a symbolic link, not a regular file"),
    ("traversal", "unsafe member name \"../../etc/cron.d/runnerd-evil\""),
    ("device", "is a device, not a regular file"),
    ("oversize", "is 629145600 bytes, more than the limit"),
])
def test_tarball_refused(world, logind, build, tmp_path, case, says):
    """A tarball runnerd must not install: a clear error naming the problem, no binary and no
    temp file left, then the exit path as for any failed boot: leave the group, power off."""
    fake = world.fake
    prepare_runner_world(fake)
    if case == "digest":
        tgz = vendor.release_tarball(agent_wrapper().encode())
        digest = hashlib.sha256(tgz + b"x").hexdigest()
    else:
        tgz = vendor.hostile_tarball(case)
        digest = hashlib.sha256(tgz).hexdigest()
    fake.set_blob(vendor.tarball_url(VERSION, "amd64"), tgz, "application/x-gzip")
    inst, rc, text = run_with(world, logind, build, tmp_path, tarball_conf(digest))
    assert rc == 69, text
    assert says in text, text
    assert re.search(r"phase: agent-install -> failed", text), text
    bindir = inst.path("/usr/bin")
    assert not (bindir / "circleci-runner").exists()
    assert not [p for p in bindir.glob(".circleci-runner*")] if bindir.exists() else True
    assert not inst.path("/etc/cron.d/runnerd-evil").exists()
    assert events(inst) == []
    assert_left_and_powered_off(fake, logind)


# ---- the package route ------------------------------------------------------------------------

def package_world(world, tmp_path, behaviour="success"):
    """The vendor's package in a signed repository at packagecloud.io, its key at gpgkey."""
    fake = world.fake
    prepare_runner_world(fake)
    agent = agent_wrapper(behaviour).encode()
    deb = vendor.vendor_deb(tmp_path / "debs", agent, VERSION)
    home, pub = vendor.gpg_key(tmp_path)
    source = vendor.signed_apt_repo(fake, vendor.APT_BASE + "/any", [deb], home)
    fake.set_blob(vendor.APT_BASE + "/gpgkey", pub, "application/pgp-keys")
    conf = packaged_conf(package="circleci-runner", apt_source=source,
                         apt_keyring=vendor.APT_BASE + "/gpgkey",
                         apt_keyring_sha256=hashlib.sha256(pub).hexdigest())
    return agent, conf


NO_MIRROR = {"/etc/apt/sources.list": "", "/etc/apt/sources.list.d/debian.sources": ""}
HOLD = "etc/systemd/system/circleci-runner.service.d/50-runnerd.conf"
PACKAGED_HOLD = "lib/systemd/system/circleci-runner.service.d/50-runnerd.conf"


def assert_vendor_unit_held(root, packaged=False):
    """runnerd's drop-in, not a mask (a mask would fail a strict postinst's enable): the one
    runnerd's package ships, or the one runnerd writes when installed some other way."""
    unit = root / "etc/systemd/system/circleci-runner.service"
    assert not unit.is_symlink(), "the vendor unit is masked (a strict postinst fails on that)"
    text = (root / (PACKAGED_HOLD if packaged else HOLD)).read_text()
    assert "[Unit]\nConditionPathExists=!/usr/sbin/runnerd\n" in text, text


DOWN_SOURCE = {"/etc/apt/sources.list.d/down.list":
               f"deb {vendor.APT_BASE}/gone/any any main\n"}


def test_package_route(world, logind, build, tmp_path):
    """package = circleci-runner: the key fetched and checked, the source written with
    signed-by, the vendor unit held by a drop-in before apt-get installs the package, the
    package's binary run as the one agent, and the vendor's conffile replaced by runnerd's
    config."""
    fake = world.fake
    agent, conf = package_world(world, tmp_path)
    # Another source on the image is broken (its repository is gone): the update of
    # runnerd's source alone does not read it, so it cannot fail the install.
    inst, rc, text = run_with(world, logind, build, tmp_path, conf, {**NO_MIRROR, **DOWN_SOURCE},
                              timeout=180)
    assert rc == 0, text
    assert_vendor_unit_held(inst.path("/"))
    assert inst.path("/usr/bin/circleci-runner").read_bytes() == agent
    src = inst.path("/etc/apt/sources.list.d/runnerd-agent.list").read_text()
    assert src == ("deb [signed-by=/etc/apt/keyrings/runnerd-agent.asc] "
                   f"{vendor.APT_BASE}/any/ any main\n"), src
    assert inst.path("/etc/apt/keyrings/runnerd-agent.asc").read_bytes().startswith(
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    cfg = inst.path("/etc/circleci-runner/circleci-runner-config.yaml")
    st = os.stat(cfg)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)
    assert "Written by runnerd" in cfg.read_text() and "AUTH_TOKEN" not in cfg.read_text()
    ev = events(inst)
    assert ev.count("started") == 1 and ev[-1] == "completed job-1", ev
    # The repository was read signed: InRelease fetched, the package from the pool.
    got = {r["path"] for r in fake.requests() if r.get("service") == "blob"
           and r["status"] == 200}
    assert "/circleci/runner/any/dists/any/InRelease" in got, got
    assert f"/circleci/runner/any/pool/main/circleci-runner_{VERSION}_amd64.deb" in got, got
    assert "circleci-runner.service held by /etc/systemd/system/" in text, text
    # The source just added was read alone first (another source being down cannot fail it).
    assert "apt-get update of that source alone: status 0" in text, text
    assert_left_and_powered_off(fake, logind)


def test_package_route_refuses_a_wrong_key(world, logind, build, tmp_path):
    """apt_keyring_sha256 that does not match the key served: nothing installed, the exit
    path."""
    fake = world.fake
    _, conf = package_world(world, tmp_path)
    conf = re.sub(r"^apt_keyring_sha256 = .*$", "apt_keyring_sha256 = " + "0" * 64, conf,
                  flags=re.M)
    inst, rc, text = run_with(world, logind, build, tmp_path, conf, NO_MIRROR)
    assert rc == 69, text
    assert "apt_keyring" in text and "SHA-256 of the download is" in text, text
    assert not inst.path("/usr/bin/circleci-runner").exists()
    assert_left_and_powered_off(fake, logind)


# ---- the job: the task agent as the job user -------------------------------------------------

def test_task_agent_under_root_is_refused(world, logind, build, tmp_path):
    """Where machine runner 3 puts the task agent by default for a root runner
    (~/.local/libexec/circleci, /root being 0700) the job user cannot run it, and every job
    would fail after the agent claimed it; runnerd refuses the directory before the agent
    starts, naming the parent in the way, and the instance leaves instead of burning jobs."""
    fake = world.fake
    prepare_runner_world(fake)
    conf = packaged_conf(task_agent_directory="/root/.local/libexec/circleci")
    inst, rc, text = run_with(world, logind, build, tmp_path, conf,
                              {"/usr/bin/circleci-runner": (agent_wrapper(), 0o755)})
    assert rc == 69, text
    assert "/root is not searchable by all users (mode 0700)" in text, text
    assert events(inst) == [], "the agent started"
    assert not fake.state()["jobs"][RC]["done"], "a job was claimed"
    assert_left_and_powered_off(fake, logind)


BAKED = {"/usr/bin/circleci-runner": (agent_wrapper(), 0o755)}
TASK_DIR = "/var/lib/circleci-runner/task-agent"


@pytest.mark.parametrize("case, setup, says", [
    ("symlink", f"mkdir -p /opt/elsewhere /var/lib/circleci-runner && rm -rf {TASK_DIR} && "
                f"ln -s /opt/elsewhere {TASK_DIR}", "is a symbolic link"),
    ("symlinked parent", "mkdir -p /opt/real && rm -rf /var/lib/circleci-runner && "
                         "ln -s /opt/real /var/lib/circleci-runner",
     "/var/lib/circleci-runner is a symbolic link"),
    ("parent of the job user's", "mkdir -p /var/lib/circleci-runner && "
                                 "chown circleci /var/lib/circleci-runner",
     "/var/lib/circleci-runner belongs to uid"),
    ("job user's", f"rm -rf {TASK_DIR} && mkdir -p {TASK_DIR} && chown circleci {TASK_DIR}",
     "belongs to uid"),
    ("group-writable", f"rm -rf {TASK_DIR} && mkdir -p {TASK_DIR} && chmod 0775 {TASK_DIR}",
     "writable by group or others (mode 0775)"),
    ("parent writable by all", "mkdir -p /var/lib/circleci-runner && "
                               "chmod 0777 /var/lib/circleci-runner",
     "/var/lib/circleci-runner is writable by others than its owner (mode 0777)"),
    ("parent not searchable", "mkdir -p /var/lib/circleci-runner && "
                              "chmod 0700 /var/lib/circleci-runner",
     "/var/lib/circleci-runner is not searchable by all users (mode 0700)"),
])
def test_task_agent_directory_refused(world, logind, build, tmp_path, case, setup, says):
    """A task agent directory the job user could change (and so swap the task agent the next
    job runs, or steer root's writes) or cannot reach: refused before the agent starts, with
    the reason, and nothing changed on it; then the exit path."""
    fake = world.fake
    prepare_runner_world(fake)
    inst, rc, text = run_with(world, logind, build, tmp_path, packaged_conf(), BAKED,
                              setup=setup)
    assert rc == 69, text
    assert f"agent-config: task_agent_directory {TASK_DIR}: " in text and says in text, text
    assert events(inst) == [], "the agent started"
    assert_left_and_powered_off(fake, logind)
    if case == "job user's":
        st = os.lstat(inst.path(TASK_DIR))
        assert st.st_uid != 0, "runnerd took the directory over instead of refusing it"


def test_task_agent_directory_existing_is_kept(world, logind, build, tmp_path):
    """A directory of root's that only lacks the read and search bits (0700, as an agent might
    have left it) gets them; root's ownership is all runnerd wants, and the job runs."""
    fake = world.fake
    prepare_runner_world(fake)
    inst, rc, text = run_with(world, logind, build, tmp_path, packaged_conf(), BAKED,
                              setup=f"mkdir -p {TASK_DIR} && chmod 0700 {TASK_DIR}")
    assert rc == 0, text
    st = os.lstat(inst.path(TASK_DIR))
    assert (st.st_mode & 0o7777, st.st_uid) == (0o755, 0)
    assert "task-agent 0 circleci" in events(inst), events(inst)


def test_vendor_unit_on_the_image_is_held(world, logind, build, tmp_path):
    """An image with the vendor's package baked in by hand (its unit on disk, the binary
    there): on the baked route too, runnerd holds the unit with its drop-in before the agent
    starts, so a boot cannot start a second agent under the same name."""
    fake = world.fake
    prepare_runner_world(fake)
    files = {**BAKED, "/usr/lib/systemd/system/circleci-runner.service": vendor.VENDOR_UNIT}
    inst, rc, text = run_with(world, logind, build, tmp_path, packaged_conf(), files)
    assert rc == 0, text
    assert_vendor_unit_held(inst.path("/"))
    assert "circleci-runner.service held by /etc/systemd/system/" in text, text
    # Without the unit on disk and without the package route, no drop-in: nothing to hold.
    fake.reset()
    prepare_runner_world(fake)
    (tmp_path / "none").mkdir()
    inst, rc, text = run_with(world, logind, build, tmp_path / "none", packaged_conf(), BAKED,
                              name="plain")
    assert rc == 0, text
    assert not inst.path("/" + HOLD).exists()


# ---- the digest, at deploy time --------------------------------------------------------------

def test_agent_sha256_from_the_manifest(world, logind, build, tmp_path):
    """packaging/agent-sha256 reads CircleCI's manifest.json at its real URL and prints the
    download_url and sha256 lines for the runners' config; --verify checks the tarball against
    it; those lines, pasted into runnerd.conf, make a runner that installs the agent."""
    fake = world.fake
    prepare_runner_world(fake)
    tgz = {a: vendor.release_tarball(agent_wrapper().encode() + f"# {a}\n".encode())
           for a in ("amd64", "arm64")}
    manifest = {"releases": {VERSION: {"linux": {
        a: {"url": vendor.tarball_url(VERSION, a), "sha256": hashlib.sha256(t).hexdigest()}
        for a, t in tgz.items()}}}}
    fake.set_blob(vendor.TARBALL_BASE + "/manifest.json", json.dumps(manifest).encode(),
                  "application/json")
    for a, t in tgz.items():
        fake.set_blob(vendor.tarball_url(VERSION, a), t, "application/x-gzip")
    script = str(REPO / "packaging" / "agent-sha256")
    inst = world.instance("deployer")
    r = inst.run([script, VERSION, "amd64", "--verify"])
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if not x.startswith("#")]
    assert lines == [f"download_url = {vendor.tarball_url(VERSION, 'amd64')}",
                     f"sha256 = {hashlib.sha256(tgz['amd64']).hexdigest()}"], r.stdout
    # Both architectures: the URL with %a and a digest for each, for a mixed fleet.
    both = inst.run([script, VERSION])
    assert both.returncode == 0, both
    both_lines = [x for x in both.stdout.splitlines() if not x.startswith("#")]
    assert both_lines == [f"download_url = {vendor.tarball_url(VERSION)}",
                          "sha256 = " + ", ".join(f"{a}:{hashlib.sha256(tgz[a]).hexdigest()}"
                                                  for a in ("amd64", "arm64"))], both.stdout
    # A release the manifest does not have, and a digest that does not match the tarball.
    assert inst.run([script, "9.9.9"]).returncode == 1
    fake.set_blob(vendor.tarball_url(VERSION, "arm64"), tgz["arm64"] + b"x")
    bad = inst.run([script, VERSION, "arm64", "--verify"])
    assert bad.returncode == 1 and "the manifest says" in bad.stderr, bad
    # The printed lines are a working config: one architecture's, and both (this amd64
    # machine picks its entry). The arm64 tarball is made right again first: the digests
    # printed are the manifest's.
    fake.set_blob(vendor.tarball_url(VERSION, "arm64"), tgz["arm64"])
    for i, chosen in enumerate((lines, both_lines)):
        conf = packaged_conf(download_url=chosen[0].split(" = ")[1],
                             sha256=chosen[1].split(" = ")[1])
        (tmp_path / str(i)).mkdir()
        inst, rc, text = run_with(world, logind, build, tmp_path / str(i), conf,
                                  name=f"runner{i}")
        assert rc == 0, text
        assert inst.path("/usr/bin/circleci-runner").read_bytes() == \
            agent_wrapper().encode() + b"# amd64\n"
        fake.reset()
        prepare_runner_world(fake)
        fake.set_blob(vendor.tarball_url(VERSION, "amd64"), tgz["amd64"])
    # A list without this machine's architecture: the boot fails saying so.
    conf = packaged_conf(download_url=both_lines[0].split(" = ")[1],
                         sha256="arm64:" + hashlib.sha256(tgz["arm64"]).hexdigest())
    (tmp_path / "none").mkdir()
    _, rc, text = run_with(world, logind, build, tmp_path / "none", conf, name="runner-x")
    assert rc == 69, text
    assert "[agent] sha256 has no digest for amd64" in text, text


# ---- the package route under a real systemd -------------------------------------------------

def test_package_route_under_systemd(world, rootfs_tar, debs, tmp_path):
    """The runnerd package installed in a Debian root booted by systemd-nspawn inside the
    world's network (IMDS, AWS, packagecloud.io at their addresses): runnerd.service installs
    the vendor package, whose strict postinst enables and starts circleci-runner.service; the
    drop-in makes that start succeed and run nothing, so exactly one agent runs, runnerd's; the
    machine powers off."""
    assert shutil.which("systemd-nspawn"), "systemd-nspawn is missing: run scripts/install-deps"
    fake = world.fake
    _, conf = package_world(world, tmp_path)
    ch = Chroot(rootfs_tar, tmp_path)
    try:
        r = ch.install(debs["runnerd"])
        assert r.returncode == 0, out(r)
        ch.unstub()
        root = ch.root
        files = {"etc/runnerd/runnerd.conf": conf, "etc/hosts": world.hosts_file(),
                 "etc/ssl/certs/ca-certificates.crt": Path(world.ca).read_text(),
                 "etc/apt/sources.list": "", "etc/apt/sources.list.d/debian.sources": ""}
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
        log = tmp_path / "nspawn.log"
        with open(log, "wb") as logf:
            boot = subprocess.Popen(
                # nsenter, not `ip netns exec`: only the network namespace; the latter's fresh
                # /sys hides the cgroup mounts systemd-nspawn needs.
                ["nsenter", f"--net=/run/netns/{world.netns}", "systemd-nspawn", "--quiet",
                 "--register=no", "--keep-unit", f"--bind-ro={REPO / 'tests' / 'fakes'}",
                 "-D", str(root), "-b"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            boot.wait(240)  # runnerd powers the container off when its job is done
        except subprocess.TimeoutExpired:
            os.killpg(boot.pid, 9)
            boot.wait(10)
            raise AssertionError("the container did not power off:\n" + journal(ch))
        everything = journal(ch)
        ev = (root / "var/tmp/agent-events").read_text().splitlines() \
            if (root / "var/tmp/agent-events").exists() else []
        assert ev.count("started") == 1 and ev[-1] == "completed job-1", \
            f"{ev}\n{everything}"
        assert "task-agent 0 circleci" in ev, ev
        assert_vendor_unit_held(root, packaged=True)
        # The postinst's `systemctl enable --now` ran and succeeded; the start was skipped.
        assert (root / "etc/systemd/system/multi-user.target.wants/"
                "circleci-runner.service").is_symlink(), everything
        assert re.search(r"circleci-runner.service.*unmet condition", everything), everything
        assert "Started circleci-runner.service" not in everything, everything
        # This root has no D-Bus, so no logind: the fallback, systemctl poweroff, does it.
        assert re.search(r"powering-off: (logind accepted PowerOff|systemctl poweroff "
                         r"accepted)", journal(ch, "-u", "runnerd.service")), everything
        # apt, dpkg and the vendor's scripts did not speak for runnerd's unit.
        assert "reception only permitted for main PID" not in everything, everything
        done = fake.state()["jobs"][RC]["done"]
        assert len(done) == 1 and done[0]["exit_code"] == 0, done
        [t] = aws_calls(fake, "autoscaling", "TerminateInstanceInAutoScalingGroup")
        assert t["params"]["InstanceId"] == MAIN_INSTANCE_ID and t["status"] == 200, t
    finally:
        ch.remove()


@pytest.mark.parametrize("how", ["packaged", "installed by hand"])
def test_vendor_unit_enabled_on_the_image(world, rootfs_tar, debs, tmp_path, how):
    """An image where someone baked the vendor's package and enabled its unit by hand, booted
    under systemd. With runnerd's package, its drop-in holds the unit from the start: the
    vendor's agent never runs. With runnerd installed some other way (its packaged drop-in
    gone), the unit starts first and runs an agent of its own, one that ignores SIGTERM as an
    agent draining a job would; runnerd holds the unit, kills it at once (not hours later), and
    runs the one agent; the unit does not come back (Restart=always meets the condition), and
    the machine powers off."""
    assert shutil.which("systemd-nspawn"), "systemd-nspawn is missing: run scripts/install-deps"
    fake = world.fake
    prepare_runner_world(fake)
    ch = Chroot(rootfs_tar, tmp_path)
    try:
        r = ch.install(debs["runnerd"])
        assert r.returncode == 0, out(r)
        ch.unstub()
        root = ch.root
        # The binary both run: as the vendor's unit (user circleci) it marks that it ran and
        # waits, as an agent does between jobs; as runnerd's child (root) the stand-in agent.
        wrapper = agent_wrapper().replace(
            "#!/bin/sh\n",
            "#!/bin/sh\nif [ \"$(id -u)\" != 0 ]; then\n"
            "\techo \"vendor agent $$\" >>/var/tmp/vendor-agent\n\ttrap '' TERM\n"
            "\twhile :; do sleep 100; done\nfi\n", 1)
        files = {"etc/runnerd/runnerd.conf": (packaged_conf(), 0o644),
                 "etc/hosts": (world.hosts_file(), 0o644),
                 "etc/ssl/certs/ca-certificates.crt": (Path(world.ca).read_text(), 0o644),
                 "usr/bin/circleci-runner": (wrapper, 0o755),
                 "usr/lib/systemd/system/circleci-runner.service": (vendor.VENDOR_UNIT, 0o644),
                 "etc/circleci-runner/circleci-runner-config.yaml": (vendor.VENDOR_CONFFILE,
                                                                     0o640),
                 # Started before runnerd, so that runnerd meets it running (a boot's order
                 # is otherwise a race, and the drop-in alone would keep it from starting).
                 "etc/systemd/system/circleci-runner.service.d/10-first.conf":
                     ("[Unit]\nBefore=runnerd.service\n", 0o644)}
        if how == "installed by hand":
            (root / PACKAGED_HOLD).unlink()
        for rel, (text, mode) in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
            (root / rel).chmod(mode)
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "circleci-runner.service").symlink_to(
            "/usr/lib/systemd/system/circleci-runner.service")
        (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
        log = tmp_path / "nspawn.log"
        with open(log, "wb") as logf:
            boot = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{world.netns}", "systemd-nspawn", "--quiet",
                 "--register=no", "--keep-unit", f"--bind-ro={REPO / 'tests' / 'fakes'}",
                 "-D", str(root), "-b"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            boot.wait(240)
        except subprocess.TimeoutExpired:
            os.killpg(boot.pid, 9)
            boot.wait(10)
            raise AssertionError("the container did not power off:\n" + journal(ch))
        everything = journal(ch)
        vendor_runs = (root / "var/tmp/vendor-agent").read_text().splitlines() \
            if (root / "var/tmp/vendor-agent").exists() else []
        if how == "packaged":
            assert vendor_runs == [], f"{vendor_runs}\n{everything}"
            assert re.search(r"circleci-runner.service.*unmet condition", everything), everything
            assert_vendor_unit_held(root, packaged=True)
            assert not (root / HOLD).exists(), "runnerd wrote a drop-in its package ships"
        else:
            assert len(vendor_runs) == 1, f"{vendor_runs}\n{everything}"
            assert "killed circleci-runner.service, which was running an agent of its own" \
                in everything, everything
            assert_vendor_unit_held(root)
        ev = (root / "var/tmp/agent-events").read_text().splitlines() \
            if (root / "var/tmp/agent-events").exists() else []
        assert ev.count("started") == 1 and ev[-1] == "completed job-1", f"{ev}\n{everything}"
        done = fake.state()["jobs"][RC]["done"]
        assert len(done) == 1 and done[0]["exit_code"] == 0, done
    finally:
        ch.remove()
