"""make demo, shortened: the fake cloud, the real runner-scaler and real runnerd instances run a
small burst on two pools, one with a warm pool; the summary says every job ran, what the warm
pool saved, and that nothing is left running. And the
same demo interrupted with Ctrl-C (SIGINT to its process group, as a terminal sends it) stops
everything it started.

Processes are found by what they were started with: everything the demo starts has its work
directory (DEMO_WORKDIR) on its command line."""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

from conftest import PYTHON, REPO

DEMO = REPO / "tests" / "demo.py"


def demo_env(build, tmp_path, **knobs):
    env = dict(os.environ, RUNNERD_BUILD=str(build), DEMO_WORKDIR=str(tmp_path / "work"),
               DEMO_SUMMARY=str(tmp_path / "summary.json"), PYTHONIOENCODING="utf-8")
    env.update({k: str(v) for k, v in knobs.items()})
    return env


def procs_mentioning(path):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def test_demo_short_run(build, tmp_path):
    env = demo_env(build, tmp_path, DEMO_JOBS=6, DEMO_JOB_SECONDS=1, DEMO_BOOT_SECONDS=0.3,
                   DEMO_WAVE_SECONDS=2, DEMO_DEADLINE=80)
    t0 = time.monotonic()
    p = subprocess.run([PYTHON, str(DEMO)], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=110)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["jobs"] == 6 and s["jobs_done"] == 6, s
    assert s["processes_left"] == 0 and not s["interrupted"]
    # Every instance ran runnerd's exit path: it left its group itself (with a decrement,
    # unless the scaler had lowered desired to MinSize first).
    assert s["instances_launched"] >= 2  # two pools
    assert s["left_group"] == s["instances_launched"], s
    assert 1 <= s["left_with_decrement"] <= s["left_group"]
    assert s["capacity_writes"] >= 2  # the real scaler scaled both groups out
    assert 0 <= s["wait_mean_s"] <= s["wait_p95_s"] < 60
    assert s["busy_seconds"] >= 6 * 0.6 and s["instance_seconds"] > s["busy_seconds"]
    out = p.stdout
    assert "queue desired  fleet" in out and "summary: 6/6 jobs done" in out
    assert "linux" in out and "arm" in out and "processes left: 0" in out
    # The linux pool's warm pool (2 by default): prepared before the jobs came, its instances
    # took jobs, and started sooner than cold launches by about the install they skipped.
    assert "leave  warm   done" in out
    assert "linux: 2 instances prepared and stopped in the warm pool: the jobs come now" in out
    assert s["warm_jobs"] >= 1 and s["cold_jobs"] >= 1, s
    assert s["wait_saved_s"] > 1.5, s  # DEMO_BAKE_SECONDS=3 skipped, less the noise
    assert s["warm_prepared"] >= 2 and s["warm_stopped_seconds"] > 0
    assert "a warm instance saved" in out
    assert procs_mentioning(str(tmp_path / "work")) == []
    assert elapsed < 100


def test_demo_fail_boot_backs_off(build, tmp_path):
    """DEMO_FAIL_BOOT=1: the linux group's instances fail in runnerd's token phase until the
    scaler backs off; the demo then fixes the launch template, and once the back-off is over (or
    a runner of an instance that booted after the fix connected and ended it) every job runs."""
    env = demo_env(build, tmp_path, DEMO_FAIL_BOOT=1, DEMO_JOBS=4, DEMO_JOB_SECONDS=1,
                   DEMO_BOOT_SECONDS=0.3, DEMO_WAVE_SECONDS=2, DEMO_DEADLINE=150)
    p = subprocess.run([PYTHON, str(DEMO)], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=200)
    out = p.stdout
    assert p.returncode == 0, out[-4000:] + p.stderr[-4000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["jobs"] == s["jobs_done"] == 4 and s["processes_left"] == 0, s
    assert s["failed_launches"] >= 3 and s["backoffs"] == 1, s
    assert s["left_group"] == s["instances_launched"], s  # the failed ones left too
    assert "launches in a row left the group without their runner ever connecting" in out
    assert re.search(r"linux .*  back-off \d+ s\n", out), out  # the countdown in the timeline
    # The group was raised again: the back-off ran out, or a runner connected and ended it.
    ended = "launch back-off ended" in out
    assert ended or s["wall_s"] >= 60, out
    assert (f"{s['failed_launches']} launches failed their boot; the linux pool backed off "
            "1 time") in out
    assert procs_mentioning(str(tmp_path / "work")) == []


def test_demo_ctrl_c_stops_everything(build, tmp_path):
    env = demo_env(build, tmp_path, DEMO_JOBS=8, DEMO_JOB_SECONDS=30, DEMO_BOOT_SECONDS=0.3,
                   DEMO_DEADLINE=100)
    proc = subprocess.Popen([PYTHON, str(DEMO)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines = queue.Queue()

    def reader():
        for raw in iter(proc.stdout.readline, b""):
            lines.put(raw.decode("utf-8", errors="replace"))
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    seen = []
    try:
        # Wait for a timeline line showing an instance running a job (the fleet glyph).
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "demo ended early:\n" + "".join(seen)
            seen.append(line)
            if "█" in line:
                break
            assert time.monotonic() < deadline, "no busy instance in time:\n" + "".join(seen)
        assert procs_mentioning(str(tmp_path / "work")), "nothing running before Ctrl-C?"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        rc = proc.wait(40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    while True:
        line = lines.get(timeout=10)
        if line is None:
            break
        seen.append(line)
    out = "".join(seen)
    assert rc == 130, out[-4000:]
    assert "interrupted" in out and "processes left: 0" in out
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["interrupted"] and s["processes_left"] == 0
    assert s["jobs_done"] < 8  # it really was cut short
    assert procs_mentioning(str(tmp_path / "work")) == []
