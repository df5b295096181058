"""The real boot: the freshly built runnerd .deb installed by cloud-init user-data on a Debian 12
guest under qemu (software emulation), against the fake cloud on the host's loopback.

Both scenarios boot at the same time, each guest with its own fake cloud:
  success  the agent claims the job, runs it, completes it and exits 0;
  crash    the agent claims the job and dies of SIGSEGV.
Either way runnerd must leave the ASG (decrement, signed with the IMDS role's session
credentials) and power the guest off. The agent (tests/e2e/guest_agent.py, shipped in the
user-data) posts what it saw inside the guest to the fake (POST /_fake/note): the unit's
systemd state, `runnerctl status --json` with the job claimed, and the job user.

Needs root (the base image is built with debootstrap and chroot); skipped otherwise, saying so.
The .deb: $RUNNERD_E2E_DEB, else the newest $RUNNERD_BUILD/runnerd_*.deb (`make deb`).
RUNNERD_E2E_TIMEOUT bounds each boot (seconds, default 300). Tuning: RUNNERD_E2E_CPUS (vCPUs per
guest; default: the host's CPUs shared out), RUNNERD_E2E_SEQUENTIAL=1 (one boot after the other).
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import boot  # noqa: E402


def _load_integration_conftest():
    # FakeCloud lives in the integration suite's conftest; loaded under its own name so it
    # cannot clash with any other module called conftest.
    spec = importlib.util.spec_from_file_location(
        "runnerd_integration_conftest", REPO / "tests" / "integration" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


it = _load_integration_conftest()

RC = "e2e-org/linux-vm"
TOKEN = "rt-e2e-0123456789abcdef-SECRET-TOKEN"
ASG = "cci-runner-asg"
SECRET_ID = "cci-runner-secrets"
HOSTNAME = "ip-10-0-2-15"
OTHER_INSTANCE = "i-00000000000000002"
JOB_USER = "circleci"
BOOT_TIMEOUT_S = int(os.environ.get("RUNNERD_E2E_TIMEOUT", "300"))
AGENT_BIN = "/usr/local/bin/circleci-runner"
AGENT_PY = "/usr/local/lib/runnerd-e2e/guest_agent.py"
DEB_IN_GUEST = "/var/lib/runnerd-e2e/runnerd.deb"
SCENARIOS = ("success", "crash")

RUNNERD_CONF = """\
[agent]
flavour = circleci-runner
binary = {agent_bin}
config_path = /etc/circleci-runner/circleci-runner-config.yaml
name = %H-%i
user = {user}
working_directory = /var/lib/circleci-runner/workdir
mode = single-task

[token]
source = secretsmanager
id = {secret_id}
key = runner_token

[packages]
install =

[lifecycle]
on_exit = poweroff
leave_asg = true
boot_deadline = 3m
drain_timeout = 2m
"""


def find_deb(build):
    env = os.environ.get("RUNNERD_E2E_DEB")
    if env:
        return Path(env)
    debs = sorted(Path(build).glob("runnerd_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.fail(f"no runnerd_*.deb in {build}: run `make deb` (make e2e does)")
    return debs[-1]


def user_data(deb, behaviour, fake_port):
    url = f"http://{boot.GUEST_ADDR_OF_HOST}:{fake_port}"
    # The drop-in is the test's only addition to the EC2 route: the endpoints of the fake,
    # and runnerd's log on the serial console too.
    dropin = ("[Service]\n"
              f"Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT={url}\n"
              f"Environment=AWS_ENDPOINT_URL={url}\n"
              f"Environment=CIRCLECI_RUNNER_API_URL={url}\n"
              "StandardOutput=journal+console\nStandardError=journal+console\n")
    wrapper = (f"#!/bin/sh\nexec /usr/bin/python3 {AGENT_PY} --behaviour {behaviour} "
               f"--resource-class {RC} --note agent -- \"$@\"\n")
    conf = RUNNERD_CONF.format(agent_bin=AGENT_BIN, user=JOB_USER, secret_id=SECRET_ID)
    files = [("/etc/runnerd/runnerd.conf", conf.encode(), 0o644),
             ("/etc/systemd/system/runnerd.service.d/10-e2e.conf", dropin.encode(), 0o644),
             (AGENT_PY, (HERE / "guest_agent.py").read_bytes(), 0o755),
             (AGENT_BIN, wrapper.encode(), 0o755),
             (DEB_IN_GUEST, Path(deb).read_bytes(), 0o644)]
    # As packaging/aws/user-data-runner.yaml installs it, minus the download and the
    # `apt-get update` (offline here: what the package depends on or recommends is in the
    # image already). Installing starts runnerd (the package's postinst); the config is
    # already in place and is kept. A failed install powers off at once instead of idling to
    # the timeout.
    install = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
               f"-o Dpkg::Options::=--force-confold {DEB_IN_GUEST} || "
               "{ echo E2E-INSTALL-FAILED; systemctl poweroff; }")
    return boot.cloud_config(files, [["sh", "-c", install]])


def meta_data():
    return f"instance-id: {it.MAIN_INSTANCE_ID}\nlocal-hostname: {HOSTNAME}\n"


def prepare_fake(fake):
    fake.set_secret(SECRET_ID, json.dumps({"runner_token": TOKEN}))
    fake.set_agent_token(TOKEN, RC)
    fake.add_jobs(RC, 1, duration_s=2)
    fake.set_asg(ASG, min=0, max=5, desired=2,
                 instances=[{"id": it.MAIN_INSTANCE_ID, "state": "InService"},
                            {"id": OTHER_INSTANCE, "state": "InService"}])


class Boot:
    def __init__(self, name, guest, fake, image_build_s):
        self.name, self.guest, self.fake = name, guest, fake
        self.image_build_s = image_build_s
        self.state = None
        self.requests = None

    def context(self):
        return self.guest.describe()


@pytest.fixture(scope="module")
def boots(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the e2e boot test needs root (debootstrap and chroot build its image); "
                    "run `make e2e` as root")
    missing = boot.missing_tools()
    if missing:
        pytest.fail(f"missing tools: {', '.join(missing)} (run scripts/install-deps)")
    build = Path(os.environ.get("RUNNERD_BUILD") or REPO / "build").resolve()
    deb = find_deb(build)
    image, build_s = boot.ensure_image(boot.deb_depends(deb))
    cpus = int(os.environ.get("RUNNERD_E2E_CPUS")
               or max(1, (os.cpu_count() or 2) // len(SCENARIOS)))
    out, fakes = {}, []
    try:
        for name in SCENARIOS:
            d = tmp_path_factory.mktemp(f"e2e-{name}")
            fake = it.FakeCloud(d)
            fakes.append(fake)
            fake.start()
            prepare_fake(fake)
            g = boot.Guest(image, d / "guest", name, user_data(deb, name, fake.port),
                           meta_data(), cpus=cpus).prepare()
            out[name] = Boot(name, g, fake, build_s)
        if os.environ.get("RUNNERD_E2E_SEQUENTIAL"):
            for b in out.values():
                boot.wait_all([b.guest.start(BOOT_TIMEOUT_S)])
        else:
            for b in out.values():
                b.guest.start(BOOT_TIMEOUT_S)
            boot.wait_all([b.guest for b in out.values()])
        for b in out.values():
            b.state, b.requests = b.fake.state(), b.fake.requests()
        yield out
    finally:
        for b in out.values():
            b.guest.kill()
        left = []
        for f in fakes:
            left += f.stop()
        assert not left, f"fakecloud left processes behind: {left}"


def report_timing(capsys, b):
    built = f"image built in {b.image_build_s:.0f} s" if b.image_build_s else "image cached"
    accel = os.environ.get("RUNNERD_E2E_ACCEL", "tcg")
    with capsys.disabled():
        cpu = f", qemu CPU {b.guest.cpu_s:.1f} s" if b.guest.cpu_s is not None else ""
        print(f"\ne2e {b.name}: {built}; boot to power-off {b.guest.elapsed or 0:.1f} s "
              f"({b.guest.cpus} vCPU, {accel}{cpu})")


def assert_powered_off(b):
    g = b.guest
    assert g.returncode == 0, f"qemu did not exit 0 (124 = timeout)\n{b.context()}"
    serial = g.serial_text()
    assert "reboot: Power down" in serial, b.context()
    assert "Kernel panic" not in serial, b.context()
    assert "E2E-INSTALL-FAILED" not in serial, b.context()
    # The token invariant, on the whole console: cloud-init, runnerd, the agent.
    assert TOKEN not in serial


def assert_agent_report(b):
    notes = b.state["notes"]
    assert "agent" in notes, f"the agent never reported\n{b.context()}"
    rep = notes["agent"]
    # runnerd ran under systemd and had reached READY (Type=notify: active) with the agent up.
    unit = rep["unit"]
    assert unit.get("Type") == "notify", rep
    assert unit.get("ActiveState") == "active", rep
    assert unit.get("MainPID") == str(rep["ppid"]), rep
    # runnerctl status --json inside the guest, the job claimed: phase running.
    assert rep["runnerctl_rc"] == 0, rep
    st = rep["runnerctl"]
    assert st["version"] == 1, st
    assert st["phase"] == "running", st
    assert st["agent"]["pid"] == rep["pid"], st
    assert st["agent"]["exit_status"] is None, st
    assert st["last_error"] is None, st
    assert st.get("instance_id", it.MAIN_INSTANCE_ID) == it.MAIN_INSTANCE_ID, st
    # The name runnerd gave the agent, from the OS host name cloud-init set and IMDS.
    assert rep["hostname"] == HOSTNAME, rep
    assert rep["runner_name"] == f"{HOSTNAME}-{it.MAIN_INSTANCE_ID}", rep
    # The job stepped down to the package's job user through sudo, under the unit.
    assert rep["uid"] == 0, rep
    assert rep["command_prefix"] == ["sudo", "-niHu", JOB_USER, "--"], rep
    assert rep["job"]["rc"] == 0 and rep["job"]["stdout"].strip() == JOB_USER, rep["job"]
    return rep


def assert_left_asg(b):
    calls = [r for r in b.requests if r.get("op") == "TerminateInstanceInAutoScalingGroup"]
    assert len(calls) == 1, f"{calls}\n{b.context()}"
    c = calls[0]
    assert c["params"]["InstanceId"] == it.MAIN_INSTANCE_ID, c
    assert c["params"]["ShouldDecrementDesiredCapacity"] == "true", c
    assert c["status"] == 200, c
    # Signed with the role's session credentials that IMDS issued to this instance.
    assert c["signature_ok"] is True, c
    assert c["token_used"] is True, c
    assert c["akid"].startswith("ASIA"), c
    assert c["caller_instance"] == it.MAIN_INSTANCE_ID, c
    assert c.get("botocore_agrees") is not False, c
    creds = [r for r in b.requests if r.get("service") == "imds" and r.get("op") == "credentials"
             and r.get("status") == 200]
    assert creds and all(r["token_used"] for r in creds), creds  # IMDSv2
    assert b.state["asgs"][ASG]["desired"] == 1, b.state["asgs"][ASG]
    [inst] = [i for i in b.state["asgs"][ASG]["instances"] + b.state["terminated"]
              if i["id"] == it.MAIN_INSTANCE_ID]
    assert inst["state"] in ("Terminating", "Terminated"), inst


def test_boot_install_run_job_power_off(boots, capsys):
    b = boots["success"]
    report_timing(capsys, b)
    assert_powered_off(b)
    rep = assert_agent_report(b)
    jobs = b.state["jobs"][RC]
    assert [j["id"] for j in jobs["done"]] == [rep["job_id"]], jobs
    done = jobs["done"][0]
    assert done["exit_code"] == 0 and done["runner_name"] == rep["runner_name"], done
    assert jobs["queued"] == [] and jobs["running"] == [], jobs
    assert_left_asg(b)


def test_boot_agent_crash_still_leaves_and_powers_off(boots, capsys):
    b = boots["crash"]
    report_timing(capsys, b)
    assert_powered_off(b)
    rep = assert_agent_report(b)
    jobs = b.state["jobs"][RC]
    # Claimed, never completed: the agent died with it.
    assert [j["id"] for j in jobs["running"]] == [rep["job_id"]], jobs
    assert jobs["done"] == [], jobs
    assert_left_asg(b)
