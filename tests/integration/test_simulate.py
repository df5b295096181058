"""runner-scaler simulate as a command, and the bench scripts around it: the JSON report, errors
that name the trace line, exit codes, the SVG plot, scaler.conf pools, the reference traces
being what bench/gen-traces writes, bench/compare's tables, and warm pools (--warm-pool,
--resume-time): a tiny trace worked out by hand, the reference traces' accounting, and every
output without --warm-pool byte for byte what it was before warm pools."""

import hashlib
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
    (["--trace", "X", "--warm-pool", "-1"], 64, "--warm-pool"),
    (["--trace", "X", "--warm-pool", "10001"], 64, "--warm-pool: want a number up to 10000"),
    (["--trace", "X", "--warm-pool", "two"], 64, "--warm-pool"),
    (["--trace", "X", "--warm-pool"], 64, "--warm-pool needs a value"),
    (["--trace", "X", "--warm-pool", "1", "--resume-time", "40-30"], 64, "--resume-time"),
    (["--trace", "X", "--warm-pool", "1", "--resume-time", "36s"], 64, "--resume-time"),
    (["--trace", "X", "--warm-pool", "1", "--resume-time", "3601"], 64, "--resume-time"),
    (["--trace", "X", "--resume-time", "36"], 64, "--resume-time: only with --warm-pool"),
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
    assert "--warm-pool N" in p.stdout and "resume 30-40 s" in p.stdout


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


# ---- warm pools ---------------------------------------------------------------------------

def test_warm_pool_from_scaler_conf(build, tmp_path):
    """[pool NAME] warm_pool in the config the daemon reads is the simulator's pool too, the
    same run as --warm-pool; unset or 0 simulates none."""
    t = tmp_path / "t.csv"
    t.write_text("".join(f"{k * 120},60,org/a\n" for k in range(20)))
    conf = tmp_path / "scaler.conf"
    runs = {}
    for name, extra in (("unset", ""), ("zero", "warm_pool = 0\n"), ("two", "warm_pool = 2\n")):
        conf.write_text("[circleci]\ntoken_source = env\n"
                        f"[pool a]\nresource_class = org/a\nasg = a\nmax = 5\n{extra}")
        runs[name] = json.loads(sim(build, "--trace", t, "-c", conf, "--json").stdout)
    opt = json.loads(sim(build, "--trace", t, "-c", conf, "--json", "--warm-pool", "2").stdout)
    assert runs["two"]["pools"][0]["warm_pool"] == 2, runs["two"]["pools"][0]
    assert runs["two"] == opt
    assert "warm_pool" not in runs["unset"]["pools"][0] and runs["zero"] == runs["unset"]
    assert runs["two"]["pools"][0]["warm_pool_launches"] > 0

# sha256 of what the binary of c3587c5 (integrate, before warm pools) printed for these runs:
# trace, policy, extra options, format (txt: the text report, json: --json, svg: --plot).
# Without --warm-pool nothing may change, byte for byte. Except the six runnerd runs with
# --fail-launches, since the launch back-off lowers desired capacity to the runners that
# connected (scaler-fixes): one more capacity write (and API call) per back-off, every other
# figure of those reports the same.
GOLDEN = dict([
    (("steady", "runnerd", "", "txt"), "984a1b240f5d1fc32347f4015b52eea4b3dd139bd1472265ae5387fd4b5e1410"),
    (("steady", "runnerd", "", "json"), "98016266698a88399d6776a52a1206303abe187d0b7c5ff83d0ddea604655c42"),
    (("steady", "tutorial", "", "txt"), "32d73f18e18235fd1d2e9d0b5488d05afd9ed49a09b67a8c6e5eb4814f9b7086"),
    (("steady", "tutorial", "", "json"), "b3243acef5e21c8afa902c14d73fd063e1ce77e218e40a3964a56d9ef0a3b444"),
    (("bursty", "runnerd", "", "txt"), "69fe3aeead03c0978ab6626dee40298f190fa9d0a475a6c5e654c2419437163e"),
    (("bursty", "runnerd", "", "json"), "6c0f0d5018f81195c8cabb561351f7751d7f5c31c1e2fdf69426e60248a81e63"),
    (("bursty", "tutorial", "", "txt"), "c91326fdb59f26f9ac055328ba8108c805b9a999a21aa15f06343a129923dfa8"),
    (("bursty", "tutorial", "", "json"), "43ed94100510944796fef923747cd784571bc446f7fbfcd87c49b4a69c23894c"),
    (("nightly", "runnerd", "", "txt"), "0be69ca815db00e6cda917342b8d4a075e67f50ef909bd8bd81407782e0508bd"),
    (("nightly", "runnerd", "", "json"), "534612ee75ca6489400aabc03ceb45eba91d705f83e0ab0c42abf1400f044599"),
    (("nightly", "tutorial", "", "txt"), "bf0ca6ab21ed55a094f9920a9bbcc10a0ece7d2619d07f6d767c56af622c1b42"),
    (("nightly", "tutorial", "", "json"), "b4fc3d54817f5285545158ee2c15f56ca3d325869e989e37905cd7a799304641"),
    (("steady", "runnerd", "--max 40", "txt"), "6515a21fdb21952e145ff238da65357d86c05624b99b8c06f8defcdc1f5f4210"),
    (("steady", "runnerd", "--max 40", "json"), "757a6fa4d489c6ec383a196d455d31808789c8c3c4f7a68c97ce5b1e32172b2a"),
    (("steady", "tutorial", "--max 40", "txt"), "d1c58d85c1078287fc936f3d60f9099a513ab41e82aa2388547656e50d2f341b"),
    (("steady", "tutorial", "--max 40", "json"), "1e356915100e377d55f75fbaa4e5095586819666d9c51ffa583cd82796cb3a9f"),
    (("bursty", "runnerd", "--max 40", "txt"), "b42d99cb5ffff941a0a0bde26e3966ee6b6bf48a95e0e8b5e16f03ead58589f1"),
    (("bursty", "runnerd", "--max 40", "json"), "c2b96c5be7b711132d17f948fb3f60e40dcc71e274281b42ed23a36419ad4e6d"),
    (("bursty", "tutorial", "--max 40", "txt"), "e32a8d1711b0e41de1cddc129e7ac8a7d28f14c75ca6fe7e6e7ed0ac8075d026"),
    (("bursty", "tutorial", "--max 40", "json"), "9fb59f7a804a960252053f9db54305aa7c3ca9808e54671fdcf09ab6469d49c3"),
    (("nightly", "runnerd", "--max 40", "txt"), "c1a5422e7b59bbac8fa23ad598f041aedf61006381e832391a503273c651ab2a"),
    (("nightly", "runnerd", "--max 40", "json"), "e11635ada92cd3834b4fc0503739006c8e9884acc4ea4f83a26185e2595065d4"),
    (("nightly", "tutorial", "--max 40", "txt"), "4644c528763b3f7b9679b907cbfd86c54a6a7088beff2ee4e0dab5e5c3b44084"),
    (("nightly", "tutorial", "--max 40", "json"), "478029ab968216d12dc08e2ef6faee25106185f851114741191d237101146f07"),
    (("steady", "runnerd", "--fail-launches 3600-7200", "txt"), "acc57685e81e65277a71843653b888620416d2d1f79fae0d1b1989ae4a0ea176"),
    (("steady", "runnerd", "--fail-launches 3600-7200", "json"), "eea1beedff183f797279fb6de628f601573027a91d1a016696f11aba9b360f10"),
    (("steady", "tutorial", "--fail-launches 3600-7200", "txt"), "0395c446b0505478a6a48c89c4263e29edbfd9f4caf164204ea16132ef465af7"),
    (("steady", "tutorial", "--fail-launches 3600-7200", "json"), "ea903665e6ff5b865c680dec48f33d42d3428004359c0ee9e470860cf97dd098"),
    (("bursty", "runnerd", "--fail-launches 3600-7200", "txt"), "180911a1d2bec872ce08ec8ff4656676e77fd723c306584b378e029811050f8e"),
    (("bursty", "runnerd", "--fail-launches 3600-7200", "json"), "3720fc5ebc14313d3e48de1fc50ce8b83c27e77f2d9baefe12a7a7c1b6768371"),
    (("bursty", "tutorial", "--fail-launches 3600-7200", "txt"), "fbec588d0f8b5b0c489038b38237c050d3988ffd7605b51ae74cf19310bf5bd6"),
    (("bursty", "tutorial", "--fail-launches 3600-7200", "json"), "14d5c356acff7bc774e60c673d97549f2ea9d6e9ea7da12368b278bd2528e736"),
    (("nightly", "runnerd", "--fail-launches 3600-7200", "txt"), "872f2b1e30690aa979f14273c50f1ed9a6d9b9071006d6f6c40eb4969098d08c"),
    (("nightly", "runnerd", "--fail-launches 3600-7200", "json"), "76042a4da127bf45f5eff712df31ed6b2555559057fe940a9868d5a3270969fd"),
    (("nightly", "tutorial", "--fail-launches 3600-7200", "txt"), "fc9ba50fc86363f68390306c16bfa9a98d5421f5d4bc79215a48f5b7f38a683b"),
    (("nightly", "tutorial", "--fail-launches 3600-7200", "json"), "197a593e573096d167a759cd23780065b926e29039e3b71399e8a03ce6566309"),
    (("bursty", "runnerd", "", "svg"), "4b264ed760d18cea91ecd2af7f6681246c2af595c2182fb3d7f3961d33910874"),
    (("bursty", "tutorial", "", "svg"), "6e385ab04c8bcbb37b01826f90160a3f403322026c1ad886154ea2cf27d14801"),
])


@pytest.mark.parametrize("key", sorted(GOLDEN), ids=lambda k: "-".join(p for p in k if p))
def test_outputs_unchanged_without_warm_pool(build, tmp_path, key):
    trace, policy, extra, fmt = key
    args = ["--trace", TRACES / f"{trace}.csv", "--policy", policy, *extra.split()]
    if fmt == "json":
        out = sim(build, *args, "--json").stdout.encode()
    elif fmt == "svg":
        svg = tmp_path / "p.svg"
        sim(build, *args, "--plot", svg)
        out = svg.read_bytes()
    else:
        out = sim(build, *args).stdout.encode()
    assert hashlib.sha256(out).hexdigest() == GOLDEN[key], \
        f"simulate {' '.join(map(str, args))} ({fmt}) changed"


WARM_KEYS = ("warm_pool", "warm_pool_launches", "warm_pool_refills", "warm_pool_running_seconds",
             "warm_pool_stopped_seconds", "warm_pool_stopped_seconds_per_job")


def strip_warm(d):
    """The report without what --warm-pool adds."""
    if isinstance(d, dict):
        return {k: strip_warm(v) for k, v in d.items()
                if k not in WARM_KEYS + ("resume_min_s", "resume_max_s", "warm_stop_s")}
    if isinstance(d, list):
        return [strip_warm(v) for v in d]
    return d


@pytest.mark.parametrize("policy", ["runnerd", "tutorial"])
@pytest.mark.parametrize("trace", ["steady", "bursty", "nightly"])
def test_warm_pool_zero_is_no_pool(build, trace, policy):
    args = ["--trace", TRACES / f"{trace}.csv", "--policy", policy, "--json"]
    none = json.loads(sim(build, *args).stdout)
    zero = json.loads(sim(build, *args, "--warm-pool", "0").stdout)
    assert zero["warm_pool_stopped_seconds"] == 0 and zero["warm_pool_launches"] == 0
    assert strip_warm(zero) == none


def test_warm_pool_tiny_trace_by_hand(build, tmp_path):
    """Boot 50 s, resume 35 s, a refill 50 + 17 = 67 s; a pool of 1; jobs at 0, 10, 70 s:
       0  job 0: the poll takes the stopped instance A (resumes until 35); refill R launched
      10  job 1: nothing stopped (R warms): a cold launch C, until 60
      67  R stopped; 70: job 2 takes R (stopped 3 s), until 105; refill R2, stopped at 137
     135, 160, 205: the jobs end, the instances leave; R2 stays stopped until the end (68 s)
    Waits 35, 50, 35. Running: A 135 + C 150 + R 135 + warm-ups 67 + 67 = 554 s; busy 300,
    boot (and resume) 35 + 50 + 35 = 120, idle 0; stopped 3 + 68 = 71 s."""
    t = tmp_path / "t.csv"
    t.write_text("submit_s,duration_s\n0,100\n10,100\n70,100\n")
    args = ["--trace", t, "--boot-time", "50", "--warm-pool", "1", "--resume-time", "35"]
    out = json.loads(sim(build, *args, "--json").stdout)
    want = {"jobs": 3, "wait_p50_s": 35, "wait_p95_s": 50, "wait_max_s": 50,
            "instance_seconds": 554, "busy_seconds": 300, "boot_seconds": 120,
            "idle_instance_seconds": 0, "launches": 3, "warm_pool": 1, "warm_pool_launches": 2,
            "warm_pool_refills": 2, "warm_pool_running_seconds": 134,
            "warm_pool_stopped_seconds": 71, "simulated_seconds": 205}
    assert {k: out[k] for k in want} == want
    assert out["overhead_seconds_per_job"] == pytest.approx((554 - 300) / 3, abs=1e-3)
    assert out["warm_pool_stopped_seconds_per_job"] == pytest.approx(71 / 3, abs=1e-3)
    assert out["model"]["resume_min_s"] == out["model"]["resume_max_s"] == 35
    assert out["model"]["warm_stop_s"] == 17
    assert out["pools"][0]["warm_pool_stopped_seconds"] == 71
    text = sim(build, *args).stdout
    assert "warm pool of 1, stopped; resume 35-35 s (uniform)" in text, text
    assert "idle 0, warm-up 134; per job: idle 0.0, boot + idle + warm-up 84.7" in text, text
    assert ("warm pool 1: 2 launches from it, 2 refills running 134 s (44.7 per job); "
            "stopped 71 instance-seconds (EBS only; 23.7 per job)") in text, text
    # A pool of 3 (A, B, D stopped at 0): job 1 takes B at 10 (until 45), job 2 takes D at 70;
    # refills R1 0-67, R2 10-77, R3 70-137. Stopped: B 10 + D 70 + R1 138 + R2 128 + R3 68;
    # running: A 0-135, B 10-145, D 70-205, three warm-ups of 67.
    big = json.loads(sim(build, *args[:-4], "--warm-pool", "3", "--resume-time", "35", "--json")
                     .stdout)
    assert big["warm_pool_stopped_seconds"] == 10 + 70 + 138 + 128 + 68
    assert big["instance_seconds"] == 135 * 3 + 67 * 3
    assert big["wait_max_s"] == 35 and big["warm_pool_launches"] == 3
    # The resume range is drawn from: a range gives other waits than its ends.
    rng = json.loads(sim(build, *args[:-1], "30-40", "--json").stdout)
    assert 30 <= rng["wait_p50_s"] <= 40 and rng["model"]["resume_max_s"] == 40


@pytest.mark.parametrize("trace", ["steady", "bursty", "nightly"])
def test_warm_pool_reference_traces(build, trace):
    """The accounting on the reference traces: running time is jobs + boots (and resumes) +
    idle agents + refills; stopped time never more than N instances for the whole run; every
    instance taken from the pool refilled, none returned; and the pool shortens the median
    wait."""
    path = TRACES / f"{trace}.csv"
    none = json.loads(sim(build, "--trace", path, "--json").stdout)
    for n in (1, 5):
        w = json.loads(sim(build, "--trace", path, "--json", "--warm-pool", n).stdout)
        assert w["jobs"] == none["jobs"] and w["busy_seconds"] == none["busy_seconds"]
        parts = (w["busy_seconds"] + w["boot_seconds"] + w["idle_instance_seconds"] +
                 w["warm_pool_running_seconds"])
        assert w["instance_seconds"] == pytest.approx(parts, abs=0.01)
        assert 0 < w["warm_pool_stopped_seconds"] <= n * w["simulated_seconds"]
        assert w["warm_pool_launches"] == w["warm_pool_refills"] <= w["launches"]
        assert w["launches"] == none["launches"] == w["jobs"]  # one instance per job, still
        # a refill runs at least a boot and the stop, at most the longest boot and the stop
        per = w["warm_pool_running_seconds"] / w["warm_pool_refills"]
        assert 45 + 17 <= per <= 60 + 17
        assert w["wait_p50_s"] < none["wait_p50_s"]
        assert w["peak_instances"] <= 20


def test_warm_pool_tutorial_and_plot(build, tmp_path):
    path = TRACES / "bursty.csv"
    tut = json.loads(sim(build, "--trace", path, "--policy", "tutorial", "--json",
                         "--warm-pool", "2").stdout)
    assert tut["warm_pool_launches"] > 0 and tut["replacements"] > 0
    svg = tmp_path / "w.svg"
    sim(build, "--trace", path, "--warm-pool", "2", "--plot", svg)
    text = svg.read_text()
    assert text.count("<path") == 5 and ">warm pool</text>" in text
    assert "warm pool 2:" in text and "stopped instance-s per job" in text


def test_compare_warm_pool_tables(build, tmp_path):
    svg = tmp_path / "bursty.svg"
    p = subprocess.run([PYTHON, str(REPO / "bench" / "compare"), "--build", str(build),
                        "--plot", str(svg)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for name in ("### Warm pool of 2", "| steady, warm pool 2 |", "| bursty, warm pool 2 |",
                 "| nightly, warm pool 2 |", "| trace | max | max binds |",
                 "Largest pool size that keeps instance time not on jobs",
                 "| steady | 20 | 10 |", "a slow cold boot, 120-180 s"):
        assert name in out, name
    # The recommendation the README makes is what the figures pick.
    assert ("Largest pool size that keeps instance time not on jobs within the tutorial's on "
            "every trace and max: 2.") in out
    assert svg.read_text().count("<path") == 4 + 4 + 5  # runnerd, tutorial, warm pool
