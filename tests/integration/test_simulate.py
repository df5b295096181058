"""runner-scaler simulate as a command, and the bench scripts around it: the JSON report, errors
that name the trace line, exit codes, the SVG plot, scaler.conf pools, the reference traces
being what bench/gen-traces writes, and bench/compare's table."""

import json
import subprocess

import pytest

from conftest import PYTHON, REPO

TRACES = REPO / "bench" / "traces"
KEYS = ("jobs", "wait_p50_s", "wait_p95_s", "wait_max_s", "instance_seconds",
        "idle_instance_seconds", "api_calls", "launches", "failed_launches")


def sim(build, *args, check=True):
    p = subprocess.run([str(build / "runner-scaler"), "simulate", *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize("policy", ["runnerd", "tutorial"])
@pytest.mark.parametrize("trace", ["steady", "bursty", "nightly"])
def test_json_report(build, trace, policy):
    path = TRACES / f"{trace}.csv"
    n = sum(1 for line in path.read_text().splitlines()[1:] if line.strip())
    out = json.loads(sim(build, "--trace", path, "--policy", policy, "--json").stdout)
    for k in KEYS:
        assert k in out, k
    assert out["jobs"] == n and out["policy"] == policy
    assert 0 <= out["wait_p50_s"] <= out["wait_p95_s"] <= out["wait_max_s"]
    assert out["pools"][0]["jobs"] == n and out["peak_instances"] <= 20


def test_same_seed_same_output_other_seed_other(build):
    a = sim(build, "--trace", TRACES / "bursty.csv", "--seed", 5).stdout
    b = sim(build, "--trace", TRACES / "bursty.csv", "--seed", 5).stdout
    c = sim(build, "--trace", TRACES / "bursty.csv", "--seed", 6).stdout
    assert a == b and a != c


def test_bad_line_is_named(build, tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("submit_s,duration_s\n0,10\n5,ten\n")
    p = sim(build, "--trace", t, check=False)
    assert p.returncode == 65  # EX_DATAERR
    assert f"{t}: line 3: duration_s: not a number of seconds: \"ten\"" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("args,code,msg", [
    ([], 64, "--trace FILE is required"),
    (["--trace", "/nonexistent.csv"], 66, "/nonexistent.csv"),
    (["--trace", "X", "--policy", "fast"], 64, "--policy"),
    (["--trace", "X", "--boot-time", "60-45"], 64, "--boot-time"),
    (["--trace", "X", "--interval", "soon"], 64, "--interval"),
    (["--trace", "X", "--max", "-1"], 64, "--max"),
    (["--trace", "X", "--bogus"], 64, "unknown option"),
    (["--trace", "X", "extra"], 64, "unexpected argument"),
    (["--trace", "X", "--plot", "out.png"], 64, "only SVG"),
    (["--trace", "X", "--fail-launches", "1800-600"], 64, "--fail-launches"),
    (["--trace", "X", "--fail-launches", "600"], 64, "--fail-launches"),
    (["--trace", "X", "--launch-failures", "101"], 64, "--launch-failures"),
])
def test_usage_errors(build, tmp_path, args, code, msg):
    (tmp_path / "X").write_text("0,1\n")
    p = subprocess.run([str(build / "runner-scaler"), "simulate", *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == code, p.stderr
    assert msg in p.stderr


def test_help(build):
    p = sim(build, "--help")
    assert "--trace FILE" in p.stdout and "45-60 s" in p.stdout


def test_plot_svg(build, tmp_path):
    out = tmp_path / "b.svg"
    sim(build, "--trace", TRACES / "bursty.csv", "--plot", out)
    svg = out.read_text()
    assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
    assert svg.count("<path") == 4  # queued, desired, instances up, busy


def test_pools_from_scaler_conf(build, tmp_path):
    conf = tmp_path / "scaler.conf"
    conf.write_text("[scaler]\ninterval = 5s\n[circleci]\ntoken_source = env\n"
                    "[pool lin]\nresource_class = org/linux\nasg = a\nmax = 2\n"
                    "[pool arm]\nresource_class = org/arm\nasg = b\nmax = 3\nheadroom = 1\n")
    t = tmp_path / "t.csv"
    t.write_text("submit_s,duration_s,resource_class\n0,60,org/linux\n0,60,org/linux\n"
                 "0,60,org/linux\n1,30,org/arm\n")
    out = json.loads(sim(build, "--trace", t, "-c", conf, "--json").stdout)
    assert out["model"]["interval_s"] == 5
    pools = {p["name"]: p for p in out["pools"]}
    assert pools["lin"]["jobs"] == 3 and pools["lin"]["max"] == 2
    assert pools["lin"]["peak_instances"] == 2  # capped: the third job waits for a slot
    assert pools["arm"]["launches"] >= 2  # headroom 1 from the config
    # The tutorial ignores the daemon's interval and headroom.
    tut = json.loads(sim(build, "--trace", t, "-c", conf, "--json", "--policy", "tutorial")
                     .stdout)
    assert tut["model"]["interval_s"] == 60
    t.write_text("0,1,org/linux\n2,1,org/other\n")
    p = sim(build, "--trace", t, "-c", conf, check=False)
    assert p.returncode == 65 and "line 2: resource class \"org/other\" has no pool" in p.stderr
    conf.write_text("[pool x]\nmax = 1\n")
    p = sim(build, "--trace", t, "-c", conf, check=False)
    assert p.returncode == 78 and "resource_class" in p.stderr


def test_reference_traces_are_the_generators(tmp_path):
    p = subprocess.run([PYTHON, str(REPO / "bench" / "gen-traces"), "--seed", "1", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for name in ("steady", "bursty", "nightly"):
        assert (tmp_path / f"{name}.csv").read_bytes() == (TRACES / f"{name}.csv").read_bytes()


def test_compare_table(build, tmp_path):
    svg = tmp_path / "bursty.svg"
    p = subprocess.run([PYTHON, str(REPO / "bench" / "compare"), "--build", str(build),
                        "--plot", str(svg)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for name in ("| steady |", "| bursty |", "| nightly |", "Targets on the bursty trace"):
        assert name in p.stdout
    text = svg.read_text()
    assert "runnerd: pool default" in text and "tutorial: pool default" in text


def test_failing_launch_template_is_bounded(build):
    """A launch template that fails from 1 h to 2 h into the bursty trace (every instance
    launched then fails its boot and leaves): the report gives the launches with the back-off
    and, beside them, without it (the same run with launch_failures 0)."""
    out = json.loads(sim(build, "--trace", TRACES / "bursty.csv", "--fail-launches",
                         "3600-7200", "--json").stdout)
    w = out["without_backoff"]
    assert out["model"]["fail_launches_s"] == [3600, 7200]
    assert out["pools"][0]["launch_failures"] == 3
    assert out["jobs"] == w["jobs"] == 297
    assert out["failed_launches"] > 0 and out["backoffs"] >= 3
    assert w["failed_launches"] >= 5 * out["failed_launches"], (out, w)
    assert w["launches"] > out["launches"] and w["backoffs"] == 0
    # The instances that ran a job are the same number: one per job.
    assert out["launches"] - out["failed_launches"] == 297
    text = sim(build, "--trace", TRACES / "bursty.csv", "--fail-launches", "3600-7200").stdout
    assert (f"{out['launches']} launches (0 replacements)" in text
            and f"{out['failed_launches']} launches failed their boot; "
                f"{out['backoffs']} launch back-offs" in text), text
    assert (f"without the launch back-off: {w['launches']} launches "
            f"({w['failed_launches']} failed their boot)") in text
    print(f"\nbursty, launches failing 3600-7200 s: {out['launches']} launches "
          f"({out['failed_launches']} failed), {out['backoffs']} back-offs; without the "
          f"back-off {w['launches']} ({w['failed_launches']} failed)")


def test_launch_failures_from_config_and_option(build, tmp_path):
    conf = tmp_path / "scaler.conf"
    conf.write_text("[circleci]\ntoken_source = env\n"
                    "[pool a]\nresource_class = org/a\nasg = a\nmax = 5\nlaunch_failures = 0\n")
    t = tmp_path / "t.csv"
    t.write_text("".join(f"{k * 30},60,org/a\n" for k in range(40)))
    off = json.loads(sim(build, "--trace", t, "-c", conf, "--json", "--fail-launches",
                         "100-600").stdout)
    assert off["pools"][0]["launch_failures"] == 0
    assert off["backoffs"] == 0 and "without_backoff" not in off  # nothing to compare
    on = json.loads(sim(build, "--trace", t, "-c", conf, "--json", "--fail-launches", "100-600",
                        "--launch-failures", "2").stdout)
    assert on["pools"][0]["launch_failures"] == 2 and on["backoffs"] >= 1
    assert on["without_backoff"]["failed_launches"] == off["failed_launches"]
    assert on["failed_launches"] < off["failed_launches"]
    text = sim(build, "--trace", t, "-c", conf).stdout
    assert "no launch back-off" in text
    # The tutorial knows nothing of failed launches.
    tut = json.loads(sim(build, "--trace", t, "--policy", "tutorial", "--json",
                         "--fail-launches", "100-600").stdout)
    assert tut["pools"][0]["launch_failures"] == 0 and "without_backoff" not in tut
