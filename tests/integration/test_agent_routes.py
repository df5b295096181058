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
from test_default_path import (AGENT_EVENTS, RC, TOKEN, agent_wrapper, assert_left_and_powered_off,
                               assert_real_addresses, aws_calls, installed, packaged_conf,
                               prepare_runner_world, wait_proc)

VERSION = "3.1.4"


def run_with(world, logind, build, tmp_path, conf, files=None, timeout=90):
    inst = world.instance("runner", logind=logind,
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
