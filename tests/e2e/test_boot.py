"""The real boot: the freshly built runnerd .deb installed by the CloudFormation stack's own
user-data on a Debian 12 guest under qemu (software emulation), with the shipped configuration
and nothing in runnerd's environment: the default path, end to end.

The guest's world is the image's (tests/e2e/boot.py): IMDS at 169.254.169.254, AWS, CircleCI
and the download hosts at their real names over HTTPS, trusted through a CA in the image's CA
bundle; both carried to this guest's own fake cloud on the host (qemu guestfwd). The user-data
is the stack's runner launch template rendered for a deployment: it downloads the .deb from an
S3 URL, checks its SHA-256 and installs it; the package's postinst starts runnerd, which reads
the runnerd.conf that user-data wrote (the token's secret by ARN, the agent's download URL and
digest), downloads the agent and runs it.

The scenarios boot at the same time, each guest with its own fake cloud:
  success  a cold boot into service: the agent claims the job, runs it and exits 0 (booted by
           default on a foreign architecture only: the warm scenario's boot 2 covers it);
  warm     the warm pool on one disk. Boot 1 in Warmed:Stopped: user-data installs the .deb,
           runnerd does the bake work (the agent's download), completes the group's LAUNCHING
           hook with CONTINUE and waits; the test then stops the guest as EC2 stops a pool
           instance, with the ACPI power button (QMP system_powerdown): systemd's SIGTERM, and
           runnerd exits 0 (no Terminate, no power-off of its own, runnerd-failed.service never
           starts). Boot 2 of the same disk, InService (cloud-init runs no user-data again):
           runnerd completes the hook again, skips the bake work, fetches the token, and the
           agent claims the job, runs it, completes it and exits 0;
  crash    a cold boot: the agent claims the job and dies of SIGSEGV;
  bad-deb  the .deb's digest is wrong: runnerd-bootstrap ends the boot.
runnerd must leave the ASG (decrement, signed with the IMDS role's session credentials) and
power the guest off through logind. The warm scenario's user-data is the stack's with
launch_hook added to runnerd.conf's [lifecycle] (the group's hook is the fake's). Its second
boot runs alone, after the others: it costs one boot without the .deb install or the agent
download (about 67 s on 2 vCPUs under TCG; the test prints its time). The agent (tests/e2e/guest_agent.py,
served as the agent download) posts what it saw inside the guest to the fake (POST
/_fake/note): the unit's systemd state, `runnerctl status --json` with the job claimed, and the
job user.

Architectures: RUNNERD_E2E_ARCH (default this machine's; `make e2e-arm64` sets arm64) picks the
package, the image (tests/e2e/boot.py builds an arm64 one with qemu-user-static) and the guest
(qemu-system-aarch64 -machine virt under TCG); the agent tarball is CircleCI's name for that
architecture, circleci-runner_linux_arm64.tar.gz, which the guest's runnerd asks for through
%a in the stack's AgentDownloadUrl. A foreign architecture boots the success scenario only
(RUNNERD_E2E_SCENARIOS, comma-separated, chooses others; those not booted are skipped, saying
so): its boot takes minutes of emulated CPU.

Needs root (the base image is built with debootstrap and chroot); skipped otherwise, saying so.
The .deb: $RUNNERD_E2E_DEB, else the newest $RUNNERD_BUILD/runnerd_*_ARCH.deb (`make deb`).
RUNNERD_E2E_TIMEOUT bounds each boot (seconds, default 600 native, 1200 emulated: a native
boot takes about 200 s under TCG on a quiet 2-core machine; the bound is a deadline, not a
wait). Tuning: RUNNERD_E2E_CPUS (vCPUs per guest; default: the host's CPUs shared out), RUNNERD_E2E_SEQUENTIAL=1
(one boot after the other).
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "fakes"))
import boot  # noqa: E402
import stack  # noqa: E402
import vendor  # noqa: E402


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
STACK = "runnerd"
ASG = f"{STACK}-runners"
SECRET_ID = "cci-runner-secrets"
ACCOUNT = "123456789012"
HOSTNAME = "ip-10-0-2-15"
OTHER_INSTANCE = "i-00000000000000002"
JOB_USER = "circleci"
ARCH = os.environ.get("RUNNERD_E2E_ARCH") or boot.host_arch()
EMULATED = ARCH != boot.host_arch()
BOOT_TIMEOUT_S = int(os.environ.get("RUNNERD_E2E_TIMEOUT", "1200" if EMULATED else "600"))
DEB_URL = "https://runnerd-artifacts.s3.amazonaws.com/e2e/runnerd.deb"
AGENT_VERSION = "3.1.4"  # the stack's default AgentDownloadUrl pins it
# success: a cold boot into service (the warm scenario's boot 2 covers it natively, so it boots
# by default only on a foreign architecture, where one boot is what the time allows).
ALL_SCENARIOS = ("warm", "success", "crash", "bad-deb")
SCENARIOS = tuple(x for x in os.environ.get("RUNNERD_E2E_SCENARIOS", "").split(",") if x) or \
    (("success",) if EMULATED else ("warm", "crash", "bad-deb"))
HOOK = "runner-launch"


def find_deb(build):
    env = os.environ.get("RUNNERD_E2E_DEB")
    if env:
        return Path(env)
    debs = sorted(Path(build).glob(f"runnerd_*_{ARCH}.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.fail(f"no runnerd_*_{ARCH}.deb in {build}: run `make deb ARCH={ARCH}` "
                    "(make e2e and make e2e-arm64 do)")
    return debs[-1]


def secret_arn(name):
    return (f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{name}-"
            f"{hashlib.sha256(name.encode()).hexdigest()[:6]}")


def with_launch_hook(ud):
    """The stack's user-data, its runnerd.conf given [lifecycle] launch_hook."""
    import yaml
    head, _, body = ud.partition("\n")
    doc = yaml.safe_load(body)
    [conf] = [f for f in doc["write_files"] if f["path"] == "/etc/runnerd/runnerd.conf"]
    assert "[lifecycle]\n" in conf["content"], conf
    conf["content"] = conf["content"].replace("[lifecycle]\n",
                                              f"[lifecycle]\nlaunch_hook = {HOOK}\n", 1)
    return head + "\n" + yaml.safe_dump(doc, sort_keys=False, width=1 << 30)


def agent_tarball(behaviour):
    """The stand-in agent as the guest downloads it: guest_agent.py with its defaults baked, as
    `circleci-runner` in a release tarball laid out like CircleCI's."""
    src = (HERE / "guest_agent.py").read_text()
    src = src.replace('BEHAVIOUR = "success"', f"BEHAVIOUR = {behaviour!r}", 1)
    src = src.replace('RESOURCE_CLASS = ""', f"RESOURCE_CLASS = {RC!r}", 1)
    return vendor.release_tarball(src.encode())


def user_data(deb, tarball, deb_sha256=None):
    """Exactly what the CloudFormation stack's runner launch template gives an instance,
    rendered with the template's defaults and this deployment's values: the .deb at an S3 URL
    and the agent's release tarball (the stack's pinned URL) with their digests, the token's
    secret by ARN. Nothing else: no drop-in, no variable."""
    cfn = stack.load_cfn()
    values = {k: p["Default"] for k, p in cfn["Parameters"].items() if "Default" in p}
    values.update({"AgentSha256": hashlib.sha256(tarball).hexdigest(),
              "RunnerTokenSecretArn": secret_arn(SECRET_ID),
              "CircleTokenSecretArn": secret_arn("cci-runner-lambda-secrets"),
              "RunnerdDebUrl": DEB_URL,
              "RunnerdDebSha256": deb_sha256 or hashlib.sha256(Path(deb).read_bytes()).hexdigest(),
              "ScalerDebUrl": "https://runnerd-artifacts.s3.amazonaws.com/e2e/scaler.deb",
              "ScalerDebSha256": "0" * 64, "ResourceClass": RC, "RunnerMaxSize": "5",
              "Architecture": ARCH,
              "LeaseTable": "runnerd-LeaseTable-E2E", "AWS::StackName": STACK,
              "AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT})
    return stack.render_user_data("RunnerLaunchTemplate", values, cfn)


def meta_data():
    return f"instance-id: {it.MAIN_INSTANCE_ID}\nlocal-hostname: {HOSTNAME}\n"


def start_fake(d, image):
    """The fake for one guest: its TLS and IMDS listeners on host ports that the guest reaches
    at the world's addresses (guestfwd), with a certificate from the image's CA."""
    cert, key = image.server_cert(d / "tls")
    fake = it.FakeCloud(d, extra_args=["--tls-cert", cert, "--tls-key", key,
                                       "--listen-tls", "127.0.0.1:0",
                                       "--listen-imds", "127.0.0.1:0"])
    fake.start()
    return fake


def prepare_fake(fake, deb, tarball):
    fake.set_secret(SECRET_ID, json.dumps({"runner_token": TOKEN}))
    fake.set_agent_token(TOKEN, RC)
    fake.add_jobs(RC, 1, duration_s=2)
    fake.set_asg(ASG, min=0, max=5, desired=2,
                 instances=[{"id": it.MAIN_INSTANCE_ID, "state": "InService"},
                            {"id": OTHER_INSTANCE, "state": "InService"}])
    fake.set_blob(DEB_URL, Path(deb).read_bytes())
    # Only this architecture's tarball exists: a runnerd that expanded %a wrongly gets a 404.
    fake.set_blob(vendor.tarball_url(AGENT_VERSION, ARCH), tarball, "application/x-gzip")


def port_of(fake, kind):
    return int(fake.listeners[kind][0].rsplit(":", 1)[1])


class Boot:
    def __init__(self, name, guest, fake, image_build_s):
        self.name, self.guest, self.fake = name, guest, fake
        self.image_build_s = image_build_s
        self.state = None
        self.requests = None
        self.first = None  # warm: boot 1 (serial, exit, timings, its requests)

    def context(self):
        return self.guest.describe()


@pytest.fixture(scope="module")
def boots(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the e2e boot test needs root (debootstrap and chroot build its image); "
                    "run `make e2e` as root")
    assert ARCH in boot.ARCHES, f"RUNNERD_E2E_ARCH={ARCH}: not one of {sorted(boot.ARCHES)}"
    assert set(SCENARIOS) <= set(ALL_SCENARIOS), SCENARIOS
    missing = boot.missing_tools(ARCH)
    if missing:
        pytest.fail(f"missing tools: {', '.join(missing)} (run scripts/install-deps)")
    build = Path(os.environ.get("RUNNERD_BUILD") or REPO / "build").resolve()
    deb = find_deb(build)
    r = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture"], capture_output=True,
                       text=True, timeout=30)
    assert r.stdout.strip() == ARCH, f"{deb} is not an {ARCH} package: {r.stdout}{r.stderr}"
    image, build_s = boot.ensure_image(boot.deb_depends(deb), arch=ARCH)
    cpus = int(os.environ.get("RUNNERD_E2E_CPUS")
               or max(1, (os.cpu_count() or 2) // len(SCENARIOS)))
    out, fakes = {}, []
    try:
        for name in SCENARIOS:
            d = tmp_path_factory.mktemp(f"e2e-{name}")
            fake = start_fake(d, image)
            fakes.append(fake)
            tarball = agent_tarball("success" if name == "warm" else name)
            prepare_fake(fake, deb, tarball)
            # bad-deb: the .deb's digest in the stack's parameters is wrong (a stale build, a
            # changed object): the bootstrap must end like runnerd's failures.
            ud = user_data(deb, tarball, "0" * 64 if name == "bad-deb" else None)
            if name == "warm":
                ud = with_launch_hook(ud)
                fake.put_launch_hook(ASG, HOOK)
                fake.lifecycle(it.MAIN_INSTANCE_ID, "Warmed:Pending:Wait")
                fake.set_imds(target_lifecycle_state="Warmed:Stopped")
            g = boot.Guest(image, d / "guest", name, ud, meta_data(),
                           cpus=cpus, imds_port=port_of(fake, "imds"),
                           world_port=port_of(fake, "tls"), arch=ARCH).prepare()
            out[name] = Boot(name, g, fake, build_s)
        if os.environ.get("RUNNERD_E2E_SEQUENTIAL"):
            for b in out.values():
                b.guest.start(BOOT_TIMEOUT_S)
                if b.name == "warm":
                    stop_when_prepared(b)
                boot.wait_all([b.guest])
        else:
            for b in out.values():
                b.guest.start(BOOT_TIMEOUT_S)
            if "warm" in out:
                stop_when_prepared(out["warm"])
            boot.wait_all([b.guest for b in out.values()])
        if "warm" in out:
            resume(out["warm"])
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


def booted(boots, name):
    if name not in boots:
        pytest.skip(f"scenario {name} not booted for {ARCH} (booted: {', '.join(SCENARIOS)}; "
                    "RUNNERD_E2E_SCENARIOS chooses)")
    return boots[name]


def hook_calls(requests):
    return [r for r in requests if r.get("op") == "CompleteLifecycleAction"]


def stop_when_prepared(b):
    """Boot 1 of the warm guest: once runnerd completed the hook (the bake work done), stop it
    as EC2 stops a pool instance: the ACPI power button."""
    g = b.guest

    def hooked(_s):
        done = [r for r in hook_calls(b.fake.requests()) if r["status"] == 200]
        return done[0] if done else None

    try:
        call = b.fake.wait_until(hooked, timeout=BOOT_TIMEOUT_S,
                                 what="boot 1's CompleteLifecycleAction")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{g.describe()}")
    b.first = {"hook_s": call["t"] - g.started_wall}
    g.powerdown()


def resume(b):
    """Boot 2 of the warm guest, once boot 1 powered off: started into the group (Pending:Wait,
    the hook firing again), target InService; alone, with every CPU."""
    g = b.guest
    b.first.update(returncode=g.returncode, elapsed=g.elapsed, cpu_s=g.cpu_s,
                   serial=g.serial_text(), requests=b.fake.requests(),
                   describe=g.describe())
    if g.returncode != 0:
        return  # the test says why
    b.fake.lifecycle(it.MAIN_INSTANCE_ID, "Pending:Wait")
    b.fake.set_imds(target_lifecycle_state="InService")
    g.cpus = int(os.environ.get("RUNNERD_E2E_CPUS") or os.cpu_count() or 1)
    boot.wait_all([g.start(BOOT_TIMEOUT_S)])


def report_timing(capsys, b):
    built = f"image built in {b.image_build_s:.0f} s" if b.image_build_s else "image cached"
    accel = os.environ.get("RUNNERD_E2E_ACCEL", "tcg")
    with capsys.disabled():
        cpu = f", qemu CPU {b.guest.cpu_s:.1f} s" if b.guest.cpu_s is not None else ""
        print(f"\ne2e {ARCH} {b.name}: {built}; boot to power-off {b.guest.elapsed or 0:.1f} s "
              f"({b.guest.cpus} vCPU, {b.guest.arch.qemu} -cpu {b.guest.cpu_model()}, "
              f"{accel}{cpu})")


def assert_powered_off(b):
    g = b.guest
    assert g.returncode == 0, f"qemu did not exit 0 (124 = timeout)\n{b.context()}"
    serial = g.serial_text()
    assert "reboot: Power down" in serial, b.context()
    assert "Kernel panic" not in serial, b.context()
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


def assert_left_asg(b, via_runnerd=True):
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
    # The world at its real addresses: IMDS at 169.254.169.254, AWS at its names over TLS.
    imds = [r for r in b.requests if r.get("service") == "imds"]
    assert {(r["listener"], r["host"]) for r in imds} == {("imds", "169.254.169.254")}, imds
    assert (c["listener"], c["host"]) == ("tls", "autoscaling.us-east-1.amazonaws.com"), c
    blobs = [(r["host"], r["path"], r["status"]) for r in b.requests if r.get("service") == "blob"]
    assert ("runnerd-artifacts.s3.amazonaws.com", "/e2e/runnerd.deb", 200) in blobs, blobs
    if via_runnerd:
        [sm] = [r for r in b.requests if r.get("op") == "GetSecretValue"]
        assert (sm["listener"], sm["host"]) == ("tls", "secretsmanager.us-east-1.amazonaws.com"), \
            sm
        assert sm["body"]["SecretId"] == secret_arn(SECRET_ID), sm
        assert ("circleci-binary-releases.s3.amazonaws.com",
                f"/circleci-runner/{AGENT_VERSION}/circleci-runner_linux_{ARCH}.tar.gz", 200) \
            in blobs, blobs
    assert b.state["asgs"][ASG]["desired"] == 1, b.state["asgs"][ASG]
    [inst] = [i for i in b.state["asgs"][ASG]["instances"] + b.state["terminated"]
              if i["id"] == it.MAIN_INSTANCE_ID]
    assert inst["state"] in ("Terminating", "Terminated"), inst


def test_boot_install_run_job_power_off(boots, capsys):
    b = booted(boots, "success")
    report_timing(capsys, b)
    assert_powered_off(b)
    rep = assert_agent_report(b)
    jobs = b.state["jobs"][RC]
    assert [j["id"] for j in jobs["done"]] == [rep["job_id"]], jobs
    done = jobs["done"][0]
    assert done["exit_code"] == 0 and done["runner_name"] == rep["runner_name"], done
    assert jobs["queued"] == [] and jobs["running"] == [], jobs
    assert_left_asg(b)


def test_warm_pool_prepare_stop_resume_run_job(boots, capsys):
    """The warm pool on one disk (see the module's docstring): boot 1 prepares in
    Warmed:Stopped and is stopped from outside; boot 2 resumes InService and runs the job."""
    b = booted(boots, "warm")
    first = b.first
    assert first, "boot 1 never completed its hook"
    serial1 = first["serial"]
    assert first["returncode"] == 0, f"boot 1: qemu exit {first['returncode']}\n" + \
        first["describe"]
    assert "reboot: Power down" in serial1, first["describe"]
    # Boot 1: the hook completed with CONTINUE, no token, no Terminate; the stop was no
    # failure of runnerd's: it exited 0 and runnerd-failed.service never ran.
    req1 = first["requests"]
    assert [(r["params"]["LifecycleActionResult"], r["status"]) for r in hook_calls(req1)] == \
        [("CONTINUE", 200)], first["describe"]
    assert not [r for r in req1 if r.get("op") in ("GetSecretValue",
                                                   "TerminateInstanceInAutoScalingGroup")]
    assert "exiting with status 0 (phase exited)" in serial1, first["describe"]
    assert "runnerd-failed" not in serial1 and "powering-off" not in serial1, first["describe"]
    assert TOKEN not in serial1
    # Boot 2: cloud-init ran no user-data again (no second .deb download), the hook again.
    report_timing(capsys, b)
    assert_powered_off(b)
    debs = [r for r in b.requests if r.get("service") == "blob" and "runnerd.deb" in r["path"]]
    assert len(debs) == 1, debs
    assert [(r["params"]["LifecycleActionResult"], r["status"])
            for r in hook_calls(b.requests)] == [("CONTINUE", 200), ("CONTINUE", 200)]
    rep = assert_agent_report(b)
    warm = rep["runnerctl"]["warm"]
    assert warm["path"] == "resumed" and warm["launch_hook"] == "CONTINUE", warm
    assert warm["prepare_seconds"] is not None, warm
    jobs = b.state["jobs"][RC]
    assert [j["id"] for j in jobs["done"]] == [rep["job_id"]], jobs
    done = jobs["done"][0]
    assert done["exit_code"] == 0 and done["runner_name"] == rep["runner_name"], done
    assert jobs["queued"] == [] and jobs["running"] == [], jobs
    assert_left_asg(b)
    to_agent = done["claimed_at"] - b.guest.started_wall
    cold = boots.get("crash")
    cold_jobs = cold.state["jobs"][RC]["running"] if cold else None
    cold_to_agent = cold_jobs[0]["claimed_at"] - cold.guest.started_wall if cold_jobs else None
    with capsys.disabled():
        print(f"e2e warm: boot 1 power-on to the hook completed {first['hook_s']:.1f} s "
              f"(runnerd's bake work {warm['prepare_seconds']:.1f} s of it), to power-off "
              f"{first['elapsed']:.1f} s; boot 2 power-on to the agent's claim {to_agent:.1f} s"
              + (f" (a cold boot's: {cold_to_agent:.1f} s, crash scenario, booted beside two "
                 "others)" if cold_to_agent else ""))


def test_boot_agent_crash_still_leaves_and_powers_off(boots, capsys):
    b = booted(boots, "crash")
    report_timing(capsys, b)
    assert_powered_off(b)
    rep = assert_agent_report(b)
    jobs = b.state["jobs"][RC]
    # Claimed, never completed: the agent died with it.
    assert [j["id"] for j in jobs["running"]] == [rep["job_id"]], jobs
    assert jobs["done"] == [], jobs
    assert_left_asg(b)


def test_boot_failed_bootstrap_leaves_and_powers_off(boots, capsys):
    """The stack's user-data with a .deb whose digest does not match: runnerd is never
    installed, and runnerd-bootstrap ends the boot as runnerd would: it leaves the group with a
    decrement (signed with the role's session credentials, through curl's SigV4) and powers the
    guest off. Before issue 12 the instance stayed up, InService and protected, for good."""
    b = booted(boots, "bad-deb")
    report_timing(capsys, b)
    assert_powered_off(b)
    serial = b.guest.serial_text()
    assert "runnerd-bootstrap:" in serial and "SHA-256 is not" in serial, b.context()
    assert "left the group" in serial, b.context()
    assert not [r for r in b.requests if r.get("op") == "GetSecretValue"], "runnerd ran"
    assert "notes" not in b.state or "agent" not in b.state["notes"], b.state.get("notes")
    assert_left_asg(b, via_runnerd=False)
