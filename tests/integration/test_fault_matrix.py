"""The fault matrix: every outward call of each daemon against every kind of upstream failure.

runnerd (one full boot per row, boot_deadline 3 s): IMDS token, IMDS credentials, Secrets
Manager, SSM, Auto Scaling Terminate. Expected: it still ends in its exit path (leave the ASG
when it can, power off: the poweroff_command marker) within its deadlines, never hangs, never
dies by a signal, and its log names the call that failed.

runner-scaler (`--once`, request_timeout 2 s, one pool whose demand 1 is below the ASG's 4, so
a blind write would be a scale-in): Runner API counts (tasks, running), Auto Scaling Describe
and SetDesiredCapacity, DynamoDB (the lease; dynalite behind a small fault-injecting proxy,
since dynalite itself cannot fail on demand). Expected: the pool holds, nothing is written
from data that could not be read, exit 69, the log names the call; once the fault is gone the
next run writes (recovers).

The rows are MATRIX (a list of dicts: daemon, call, fault, expected). They run concurrently,
each against its own fake cloud (no shared fault state), longest first; one test item per row
reports its outcome, and the table with results is printed at the end of the session
("fault matrix" section). Every wait is a process exit or a future with a deadline.
"""

import concurrent.futures
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import MAIN_INSTANCE_ID, FakeCloud, free_port
from test_runnerd import ASG, RC as AGENT_RC, SECRET_ID, TIMEOUT_SCALE, TOKEN as RUNNER_TOKEN
from test_runnerd import Runnerd
from test_scaler import RC, TOKEN, pool, run_once, scaler_env, sets, write_conf

MIB = 1024 * 1024
OVERSIZE = MIB + 64 * 1024       # over every 1 MiB read limit (IMDS's are smaller still)
BOOT_DEADLINE_S = 3
LEAVE_TIMEOUT_S = 60             # supervisor/exit_path.h LEAVE_TIMEOUT_MS
# make memcheck runs runnerd under valgrind: every bound on it stretches by RUNNERD_TIMEOUT_SCALE.
RUNNERD_BOUND_S = (BOOT_DEADLINE_S + LEAVE_TIMEOUT_S + 15) * TIMEOUT_SCALE
BOOT_FAULT_BOUND_S = (BOOT_DEADLINE_S + 10) * TIMEOUT_SCALE
SCALER_ONCE_BOUND_S = 30         # DESIGN.md: --once ends within 30 s whatever the upstreams do
SCALER_REQUEST_TIMEOUT_S = 2
SSM_PARAM = "/ci/runner-token"
SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                       r"runtime error:|==\d+==ERROR")
WORKERS = 10

FAULTS = ["refused", "timeout", "throttle", "500", "auth", "malformed", "oversize", "slow"]

# Per call: how the fake names it (match), the variable whose endpoint "refused" closes (else a
# dropped connection, close=True, stands for it), the wire protocol (what a 429, an auth
# failure or a malformed body looks like there), the call's own timeout, the pattern its error
# lines must carry, and what runnerd/runner-scaler must do.
CALLS = {
    ("runnerd", "imds:token"): dict(
        match="imds:token", var="AWS_EC2_METADATA_SERVICE_ENDPOINT", proto="imds-token",
        timeout_s=2, names=r"imds:token", exit=69, terminate="none",
        expected="exit 69; no Terminate (no instance id without IMDS); power-off"),
    ("runnerd", "imds:credentials"): dict(
        match="imds:meta-data/iam/security-credentials/?*", var=None, proto="imds",
        timeout_s=2, names=r"imds:meta-data/iam/security-credentials/", exit=69,
        terminate="none", expected="exit 69; no Terminate (no credentials to sign it); "
                                   "power-off"),
    ("runnerd", "secretsmanager:GetSecretValue"): dict(
        match="secretsmanager:GetSecretValue", var="AWS_ENDPOINT_URL_SECRETS_MANAGER",
        proto="json", timeout_s=10, names=r"secretsmanager:GetSecretValue", exit=69,
        terminate="done", expected="exit 69; Terminate done; power-off"),
    ("runnerd", "ssm:GetParameter"): dict(
        match="ssm:GetParameter", var="AWS_ENDPOINT_URL_SSM", proto="json", timeout_s=10,
        names=r"ssm:GetParameter", exit=69, terminate="done",
        expected="exit 69; Terminate done; power-off"),
    ("runnerd", "autoscaling:TerminateInstanceInAutoScalingGroup"): dict(
        match="autoscaling:TerminateInstanceInAutoScalingGroup",
        var="AWS_ENDPOINT_URL_AUTO_SCALING", proto="query", timeout_s=10,
        names=r"autoscaling:TerminateInstanceInAutoScalingGroup", exit=0, terminate="tried",
        expected="exit 0 (the job ran); Terminate tried, retried within 60 s; power-off"),
    ("runner-scaler", "runner:tasks"): dict(
        match="runner:tasks", var="CIRCLECI_RUNNER_API_URL", proto="runner", timeout_s=2,
        names=r"Runner API unclaimed", write="none",
        expected="exit 69; hold, no SetDesiredCapacity; next run writes"),
    ("runner-scaler", "runner:running"): dict(
        match="runner:running", var=None, proto="runner", timeout_s=2,
        names=r"Runner API running", write="none",
        expected="exit 69; hold, no SetDesiredCapacity; next run writes"),
    ("runner-scaler", "autoscaling:DescribeAutoScalingGroups"): dict(
        match="autoscaling:DescribeAutoScalingGroups", var="AWS_ENDPOINT_URL_AUTO_SCALING",
        proto="query", timeout_s=2, names=r"autoscaling:DescribeAutoScalingGroups",
        write="none", expected="exit 69; hold, no SetDesiredCapacity; next run writes"),
    ("runner-scaler", "autoscaling:SetDesiredCapacity"): dict(
        match="autoscaling:SetDesiredCapacity", var=None, proto="query", timeout_s=2,
        names=r"autoscaling:SetDesiredCapacity", write="tried",
        expected="exit 69; the one write fails, pool held; next run converges"),
    ("runner-scaler", "dynamodb:lease"): dict(
        match=None, var="AWS_ENDPOINT_URL_DYNAMODB", proto="dynamodb", timeout_s=2,
        names=r"election: lease call dynamodb:\w+ failed", write="none",
        expected="exit 69; not leader, no SetDesiredCapacity; next run writes"),
}

# Rows whose fault is not an error at all for that call.
SPECIAL = {
    # A 2xx Terminate is done: its body (an Activity) is not needed.
    ("autoscaling:TerminateInstanceInAutoScalingGroup", "malformed"): dict(
        exit=0, terminate="done", names=None,
        expected="exit 0; a 2xx Terminate counts as done (body unused); power-off"),
    # Likewise a 2xx SetDesiredCapacity was accepted; the next cycle re-reads the ASG.
    ("autoscaling:SetDesiredCapacity", "malformed"): dict(
        exit=0, names=None,
        expected="exit 0; a 2xx write counts as written (body unused); next run converges"),
}

MATRIX = []
for (_daemon, _call), _c in CALLS.items():
    for _fault in FAULTS:
        _row = {"daemon": _daemon, "call": _call, "fault": _fault, "expected": _c["expected"]}
        _row.update({k: v for k, v in SPECIAL.get((_call, _fault), {}).items()
                     if k == "expected"})
        MATRIX.append(_row)


def row_id(row):
    return f"{row['daemon']}|{row['call']}|{row['fault']}"


def row_conf(row):
    c = dict(CALLS[(row["daemon"], row["call"])])
    c.update(SPECIAL.get((row["call"], row["fault"]), {}))
    return c


# ---- what each fault is on the wire ---------------------------------------------------------

MALFORMED = {
    "imds-token": "not a token",  # spaces: never a header value
    "imds": '{"Code": "Success", "AccessKeyId": ',
    "json": '{"SecretString": ',
    "query": "<TerminateInstanceInAutoScalingGroupResponse><Activity>",
    "runner": '{"unclaimed_task_count": ',
}


def fake_fault(proto, fault, timeout_s):
    """The fake's fault spec (fakecloud.py, POST /_fake/fault) for one kind of failure."""
    if fault == "refused":
        return {"close": True}  # for calls that share their endpoint with others
    if fault == "timeout":
        return {"delay_s": timeout_s + 2}
    if fault == "throttle":
        if proto == "query":
            return {"status": 400, "code": "Throttling"}
        if proto == "json":
            return {"status": 400, "code": "ThrottlingException"}
        return {"status": 429, "retry_after": 1}
    if fault == "500":
        return {"status": 500}
    if fault == "auth":
        if proto == "query":
            return {"status": 403, "code": "AccessDenied"}
        if proto == "json":
            return {"status": 403, "code": "AccessDeniedException"}
        return {"status": 403 if proto == "imds-token" else 401}
    if fault == "malformed":
        return {"status": 200, "body": MALFORMED[proto]}
    if fault == "oversize":
        return {"oversize_bytes": OVERSIZE}
    if fault == "slow":
        return {"slow_bps": 1}
    raise ValueError(fault)


def closed_endpoint():
    """A loopback URL nobody listens on: connection refused."""
    return f"http://127.0.0.1:{free_port()}"


# ---- DynamoDB: a fault-injecting proxy in front of dynalite ----------------------------------

class DdbFaultProxy:
    """Forwards to dynalite, or, while a fault is set, answers in its place without forwarding
    (so a faulted call never takes the lease behind the scaler's back). Loopback only; every
    fault is bounded in time (a trickle stops when the client hangs up, or after 30 s)."""

    DDB_JSON = "application/x-amz-json-1.0"

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.fault = None
        self.hits = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy.lock:
                    fault = proxy.fault
                    if fault:
                        proxy.hits += 1
                if fault:
                    proxy.answer(self, fault)
                else:
                    proxy.forward(self, body)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def set(self, fault):
        with self.lock:
            self.fault = fault

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def forward(self, h, body):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
        try:
            hdrs = {k: v for k, v in h.headers.items()
                    if k.lower() not in ("connection", "keep-alive", "content-length")}
            conn.request("POST", h.path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            h.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("connection", "content-length", "transfer-encoding",
                                     "date", "server"):
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        finally:
            conn.close()

    def _send(self, h, status, body, bps=None):
        h.send_response(status)
        h.send_header("Content-Type", self.DDB_JSON)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            if bps is None:
                h.wfile.write(body)
                return
            deadline = time.monotonic() + 30
            for i in range(len(body)):
                if time.monotonic() > deadline:
                    break
                h.wfile.write(body[i:i + 1])
                h.wfile.flush()
                time.sleep(1 / bps)  # the fault itself: a trickling body
        except OSError:
            pass
        h.close_connection = True

    def answer(self, h, fault):
        err = "com.amazonaws.dynamodb.v20120810#"
        if fault == "timeout":
            time.sleep(SCALER_REQUEST_TIMEOUT_S + 2)  # the fault itself; then hang up
            h.close_connection = True
            return
        if fault == "refused":  # not used (a closed port is the real thing), kept for symmetry
            h.close_connection = True
            return
        if fault == "throttle":
            body = {"__type": err + "ThrottlingException", "message": "Rate exceeded"}
            self._send(h, 400, json.dumps(body).encode())
        elif fault == "500":
            self._send(h, 500, b'{"__type":"com.amazon.coral.service#InternalFailure"}')
        elif fault == "auth":
            body = {"__type": "com.amazon.coral.service#AccessDeniedException",
                    "Message": "User is not authorized to perform: dynamodb:PutItem"}
            self._send(h, 403, json.dumps(body).encode())
        elif fault == "malformed":
            self._send(h, 200, b'{"Attributes": {"owner": ')
        elif fault == "oversize":
            self._send(h, 200, b"{}" + b" " * OVERSIZE)
        elif fault == "slow":
            self._send(h, 200, b'{"Attributes": {}}', bps=1)
        else:
            raise ValueError(fault)


# ---- running one row ------------------------------------------------------------------------

class Outcome:
    def __init__(self):
        self.problems = []
        self.facts = []
        self.skipped = None

    def check(self, cond, what):
        if not cond:
            self.problems.append(what)
        return cond

    @property
    def ok(self):
        return not self.problems and self.skipped is None

    def summary(self):
        if self.skipped:
            return f"skipped: {self.skipped}"
        head = "ok" if self.ok else "FAIL: " + "; ".join(self.problems)
        return f"{head} ({', '.join(self.facts)})"


def common_checks(out, rc, stderr, names):
    out.check(rc is not None, "hung (killed at its bound)")
    if rc is None:
        return
    out.check(rc >= 0, f"killed by signal {-rc}")
    out.check(not SANITIZER.search(stderr), "sanitizer report in stderr")
    if names:
        found = bool(re.search(names, stderr))
        out.check(found, f"no log line names the call (/{names}/)")
        if found:
            out.facts.append("call named")


def warm_up(build, fake):
    """One signed call before the clock starts: the fake's first one waits for its botocore
    import (its second opinion on signatures), which under the matrix's load can outlast a
    short request timeout and fail the wrong call."""
    p = subprocess.run([str(build / "tests" / "cloudtool"), "describe", "warm-up"],
                       env=fake.env(imds=False), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"warm-up: {p.returncode} {p.stderr}"


def terminate_requests(fake):
    return [r for r in fake.requests() if r.get("op") == "TerminateInstanceInAutoScalingGroup"]


def run_runnerd_row(row, build, workdir):
    c = row_conf(row)
    out = Outcome()
    fake = FakeCloud(workdir).start()
    r = None
    try:
        fake.set_secret(SECRET_ID, json.dumps({"runner_token": RUNNER_TOKEN}))
        fake.set_parameter(SSM_PARAM, RUNNER_TOKEN)
        fake.set_agent_token(RUNNER_TOKEN, AGENT_RC)
        fake.add_jobs(AGENT_RC, 1, duration_s=0)
        fake.set_asg(ASG, min=0, max=5, desired=2,
                     instances=[{"id": MAIN_INSTANCE_ID, "state": "InService"},
                                {"id": "i-00000000000000002", "state": "InService"}])
        warm_up(build, fake)
        extra = {}
        if row["fault"] == "refused" and c["var"]:
            extra[c["var"]] = closed_endpoint()
        else:
            fake.fault(c["match"], **fake_fault(c["proto"], row["fault"], c["timeout_s"]))
        ssm = row["call"] == "ssm:GetParameter"
        r = Runnerd(build, workdir, fake, token_source="ssm" if ssm else "secretsmanager",
                    token_id=SSM_PARAM if ssm else SECRET_ID,
                    lifecycle={"boot_deadline": f"{BOOT_DEADLINE_S}s"}, extra_env=extra)
        t0 = time.monotonic()
        r.start()
        try:
            rc = r.proc.wait(RUNNERD_BOUND_S)
        except subprocess.TimeoutExpired:
            rc = None
        elapsed = time.monotonic() - t0
        stderr = r.stderr()
        out.facts.append(f"{elapsed:.1f} s")
        common_checks(out, rc, stderr, c["names"])
        if rc is None:
            return out
        out.facts.append(f"exit {rc}")
        out.check(rc == c["exit"], f"exit {rc}, expected {c['exit']}")
        marker = r.marker.exists() and r.marker.read_text() == "off\n"
        out.check(marker, "no power-off (poweroff_command marker missing)")
        if marker:
            out.facts.append("power-off")
        calls = terminate_requests(fake)
        ok_calls = [q for q in calls if q.get("status") == 200]
        out.facts.append(f"Terminate x{len(calls)}")
        if c["terminate"] == "none":
            out.check(not calls, f"{len(calls)} Terminate call(s) without IMDS")
        elif c["terminate"] == "done":
            out.check(len(ok_calls) >= 1 and all(
                q["params"]["InstanceId"] == MAIN_INSTANCE_ID for q in calls),
                "the exit path did not leave the ASG")
        else:
            tries = stderr.count("leaving-asg: TerminateInstanceInAutoScalingGroup")
            out.check(len(calls) >= 1 or tries >= 1, "Terminate never tried")
        out.check(elapsed < RUNNERD_BOUND_S, f"took {elapsed:.1f} s")
        # Boot-step faults end at the boot deadline plus one quick exit path.
        if row["call"] != "autoscaling:TerminateInstanceInAutoScalingGroup":
            out.check(elapsed < BOOT_FAULT_BOUND_S, f"boot fault took {elapsed:.1f} s")
        return out
    finally:
        if r is not None:
            r.close()
        fake.stop()


def run_scaler_row(row, build, workdir, dyn):
    c = row_conf(row)
    out = Outcome()
    fake = FakeCloud(workdir).start()
    proxy = None
    try:
        fake.set_runner_token(TOKEN)
        fake.set_asg("asg-a", 0, 10, 4)
        fake.add_jobs(RC, 1)  # demand 1 < current 4: a scale-in, if it ever wrote blind
        env = scaler_env(fake)
        election = None
        if c["proto"] == "dynamodb":
            proxy = DdbFaultProxy(dyn.port)
            env["AWS_ENDPOINT_URL_DYNAMODB"] = proxy.url
            election = {"table": dyn.fm_table, "name": "fm-" + row["fault"], "lease": "3s"}
        conf = write_conf(workdir / "s.conf", [pool(max=8)],
                          request_timeout=f"{SCALER_REQUEST_TIMEOUT_S}s", election=election)
        warm_up(build, fake)
        faulted_env = dict(env)
        if row["fault"] == "refused" and c["var"]:
            faulted_env[c["var"]] = closed_endpoint()
        elif proxy:
            proxy.set(row["fault"])
        else:
            fake.fault(c["match"], **fake_fault(c["proto"], row["fault"], c["timeout_s"]))

        p = run_once(build, conf, faulted_env, timeout=SCALER_ONCE_BOUND_S + 10)
        common_checks(out, p.returncode, p.stderr, c["names"])
        out.facts += [f"{p.elapsed:.1f} s", f"exit {p.returncode}"]
        want = c.get("exit", 69)
        out.check(p.returncode == want, f"exit {p.returncode}, expected {want}")
        out.check(p.elapsed < SCALER_ONCE_BOUND_S, f"--once took {p.elapsed:.1f} s")
        attempted = sets(fake)
        if c["write"] == "none":
            out.check(not attempted, f"{len(attempted)} SetDesiredCapacity from data it "
                                     f"could not read")
        else:
            # The fake logs a request when it answers, so a delayed one shows up late: its
            # fault's hit count is the witness that the write went out.
            hits = sum(f["hits"] for f in fake.state()["faults"])
            out.check(len(attempted) >= 1 or hits >= 1, "the write was never tried")
        if c["proto"] == "dynamodb":
            # Not the leader: --once ends before any cycle (nothing read, nothing written).
            out.check("action=" not in p.stderr, "a cycle ran without the lease")
        elif want == 69:
            out.check("action=hold" in p.stderr, "the pool did not hold")
            out.facts.append("held")

        fake.clear_faults()
        if proxy:
            proxy.set(None)
        p2 = run_once(build, conf, env)
        desired = fake.state()["asgs"]["asg-a"]["desired"]
        recovered = p2.returncode == 0 and desired == 1
        out.check(recovered, f"no recovery: exit {p2.returncode}, desired {desired}:\n"
                             f"{p2.stderr[-1500:]}")
        if recovered:
            out.facts.append("recovered")
        out.check(not SANITIZER.search(p2.stderr), "sanitizer report (recovery run)")
        return out
    finally:
        if proxy:
            proxy.close()
        fake.stop()


def expected_duration(row):
    """For ordering only: the long rows (Terminate retried up to its 60 s deadline) first."""
    if row["call"].startswith("autoscaling:Terminate") and row["fault"] in (
            "timeout", "slow", "throttle", "500", "refused"):
        return 60
    if row["daemon"] == "runnerd":
        return 4
    return 2


# ---- the session fixture, the items, the report ---------------------------------------------

class MatrixReport:
    """Prints the table when the session ends (pytest_terminal_summary)."""

    def __init__(self):
        self.rows = []
        self.seconds = 0.0

    def pytest_terminal_summary(self, terminalreporter):
        if not self.rows:
            return
        tr = terminalreporter
        tr.section("fault matrix")
        tr.write_line(f"{len(self.rows)} rows in {self.seconds:.0f} s "
                      f"({WORKERS} at a time)")
        tr.write_line("call | fault | expected | result")
        for row, outcome in self.rows:
            tr.write_line(f"{row['daemon']} {row['call']} | {row['fault']} | "
                          f"{row['expected']} | {outcome.summary()}")


@pytest.fixture(scope="module")
def matrix(request, build, tmp_path_factory):
    for exe in ("runnerd", "runner-scaler"):
        if not (build / exe).exists():
            pytest.fail(f"{build / exe} missing: build first (make)")
    dyn, dyn_skip = None, None
    try:
        dyn = request.getfixturevalue("dynalite")
        dyn.fm_table = dyn.create_lease_table()
    except pytest.skip.Exception as e:
        dyn_skip = str(e)
    report = MatrixReport()
    request.config.pluginmanager.register(report, "runnerd-fault-matrix")
    base = tmp_path_factory.mktemp("matrix")

    def run(i, row):
        # A short directory: the control socket lives in /tmp anyway, the FIFO here.
        workdir = Path(tempfile.mkdtemp(prefix=f"r{i}-", dir=base))
        if row["daemon"] == "runnerd":
            return run_runnerd_row(row, build, workdir)
        if row_conf(row)["proto"] == "dynamodb" and dyn is None:
            o = Outcome()
            o.skipped = dyn_skip
            return o
        return run_scaler_row(row, build, workdir, dyn)

    order = sorted(range(len(MATRIX)), key=lambda i: -expected_duration(MATRIX[i]))
    results = {}
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool_:
        futs = {pool_.submit(run, i, MATRIX[i]): i for i in order}
        for f in concurrent.futures.as_completed(futs, timeout=600):
            i = futs[f]
            try:
                results[i] = f.result()
            except Exception as e:  # a broken harness is a failed row, not a lost table
                o = Outcome()
                o.problems.append(f"harness error: {e!r}")
                results[i] = o
    report.seconds = time.monotonic() - t0
    report.rows = [(MATRIX[i], results[i]) for i in range(len(MATRIX))]
    yield {row_id(MATRIX[i]): results[i] for i in range(len(MATRIX))}
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("row", MATRIX, ids=row_id)
def test_fault(matrix, row):
    o = matrix[row_id(row)]
    if o.skipped:
        pytest.skip(o.skipped)
    assert o.ok, f"{row_id(row)}: expected {row['expected']}: {o.summary()}"


def test_matrix_covers_every_call_and_fault():
    """The table is complete: each daemon's calls times every fault, once."""
    seen = {(r["daemon"], r["call"], r["fault"]) for r in MATRIX}
    assert len(seen) == len(MATRIX) == len(CALLS) * len(FAULTS)
    assert {c for _, c in CALLS} >= {
        "imds:token", "imds:credentials", "secretsmanager:GetSecretValue", "ssm:GetParameter",
        "autoscaling:TerminateInstanceInAutoScalingGroup", "runner:tasks", "runner:running",
        "autoscaling:DescribeAutoScalingGroups", "autoscaling:SetDesiredCapacity",
        "dynamodb:lease"}
