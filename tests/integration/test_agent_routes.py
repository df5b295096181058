"""The agent CircleCI actually ships, by each route runnerd takes to it, on the default path (the
world of tests/fakes/world.py, nothing in the environment):

- tarball: CircleCI's release tarball (tests/fakes/vendor.py lays it out as CircleCI does) at
  its real URL with %a, the SHA-256 of the download checked, the one member taken out; and what
  must be refused: a wrong digest, a symlink, a traversal name, a device, an oversize member;
  each with a clear error and then the exit path (leave the group, power off);
- package: the vendor's circleci-runner .deb from a signed apt repository at packagecloud.io,
  its own unit masked before it can start, the conffile runnerd's to write; also booted under
  systemd (nspawn) where that unit would really start;
- baked: the binary already there (test_default_path.py);
- the job: the stand-in runner writes its task agent into runner.task_agent_directory and runs
  it as the job user through command_prefix, as machine runner 3 does; a directory under /root
  (the agent's own default for a root runner) fails the job.
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
from test_packaging import Chroot, debs, journal, out, rootfs_tar  # noqa: F401 (fixtures)
from test_default_path import (AGENT_EVENTS, RC, TOKEN, agent_wrapper, assert_left_and_powered_off,
                               assert_real_addresses, aws_calls, installed, packaged_conf,
                               prepare_runner_world, wait_proc)

VERSION = "3.1.4"


def run_with(world, logind, build, tmp_path, conf, files=None, timeout=90, name="runner"):
    inst = world.instance(name, logind=logind,
                          files={"/etc/runnerd/runnerd.conf": conf, **(files or {}),
                                 **installed(build)})
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
    fake.fault(match, status=503, code="SlowDown", times=1)
    inst, rc, text = run_with(world, logind, build, tmp_path,
                              tarball_conf(hashlib.sha256(tgz).hexdigest()))
    assert rc == 0, text
    assert text.count("trying again") == 2, text
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


def test_package_route(world, logind, build, tmp_path):
    """package = circleci-runner: the key fetched and checked, the source written with
    signed-by, the vendor unit masked before apt-get installs the package, the package's binary
    run as the one agent, and the vendor's conffile replaced by runnerd's config."""
    fake = world.fake
    agent, conf = package_world(world, tmp_path)
    inst, rc, text = run_with(world, logind, build, tmp_path, conf, NO_MIRROR, timeout=180)
    assert rc == 0, text
    mask = inst.path("/etc/systemd/system/circleci-runner.service")
    assert os.readlink(mask) == "/dev/null", "the vendor unit is not masked"
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
    assert "agent-install: circleci-runner.service masked" in text, text
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

def test_task_agent_under_root_fails_the_job(world, logind, build, tmp_path):
    """Negative control for the task agent directory: where machine runner 3 puts it by default
    for a root runner (~/.local/libexec/circleci, /root being 0700), the job user cannot run
    it and the job fails; runnerd's default directory is what makes jobs work (the tests
    above)."""
    fake = world.fake
    prepare_runner_world(fake)
    conf = packaged_conf(task_agent_directory="/root/.local/libexec/circleci")
    inst, rc, text = run_with(world, logind, build, tmp_path, conf,
                              {"/usr/bin/circleci-runner": (agent_wrapper(), 0o755)})
    assert rc == 0, text  # the agent itself ended well; the job did not
    ev = events(inst)
    failed = [e for e in ev if e.startswith("task-agent ")]
    assert failed and not failed[0].startswith("task-agent 0 "), ev
    done = fake.state()["jobs"][RC]["done"]
    assert done and done[0]["exit_code"] != 0, done


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
    both = inst.run([script, VERSION])
    assert both.returncode == 0 and both.stdout.count("sha256 = ") == 2, both
    # A release the manifest does not have, and a digest that does not match the tarball.
    assert inst.run([script, "9.9.9"]).returncode == 1
    fake.set_blob(vendor.tarball_url(VERSION, "arm64"), tgz["arm64"] + b"x")
    bad = inst.run([script, VERSION, "arm64", "--verify"])
    assert bad.returncode == 1 and "the manifest says" in bad.stderr, bad
    # The printed lines are a working config.
    conf = packaged_conf(download_url=lines[0].split(" = ")[1], sha256=lines[1].split(" = ")[1])
    _, rc, text = run_with(world, logind, build, tmp_path, conf)
    assert rc == 0, text


# ---- the package route under a real systemd -------------------------------------------------

def test_package_route_under_systemd(world, rootfs_tar, debs, tmp_path):
    """The runnerd package installed in a Debian root booted by systemd-nspawn inside the
    world's network (IMDS, AWS, packagecloud.io at their addresses): runnerd.service installs
    the vendor package, whose postinst enables and starts circleci-runner.service; the mask
    keeps it from starting, so exactly one agent runs, runnerd's; the machine powers off."""
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
        assert os.readlink(root / "etc/systemd/system/circleci-runner.service") == "/dev/null"
        assert "circleci-runner.service is masked" in everything, everything
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
