#!/usr/bin/python3
"""ddbproxy: a fault-injecting proxy in front of a DynamoDB endpoint (dynalite), for the soak.

Run (Python 3.11 stdlib):
    /usr/bin/python3 tests/fakes/ddbproxy.py --upstream http://127.0.0.1:PORT [--port N]
                                             [--seed S]
It listens on 127.0.0.1:N (0 = pick a port) and prints exactly one line, `READY port=<N>`, to
stdout once it listens. SIGTERM/SIGINT stop it. Point AWS_ENDPOINT_URL_DYNAMODB at it.

Every request outside /_proxy/ is forwarded to the upstream as it came (method, path, body and
headers but Host; dynalite does not check signatures), and logged with its operation (from
X-Amz-Target) and, for the lease calls of runner-scaler, what it was:
  read     GetItem
  acquire  PutItem
  renew    UpdateItem that bumps the version ("#v = #v + :one")
  release  any other UpdateItem
Control API (JSON in and out; 400 {"error": ...} on bad input):
  POST   /_proxy/fault {match, status?, code?, message?, delay_s?, close?, probability?}
         match: fnmatch pattern on the operation ("UpdateItem", "*"). -> {"id": N}
         A matching fault applies to a request with the given probability (default 1; the
         first matching fault decides). It sleeps delay_s, then:
           close          drops the connection without an answer;
           status/code    answers a DynamoDB JSON error {"__type": "...#CODE", "message"}:
                          status 400 when only code is given (ThrottlingException when
                          neither), InternalServerError from status 500 up;
           otherwise      forwards the request (a slow upstream).
  DELETE /_proxy/faults                  removes every fault
  GET    /_proxy/log?since=N             {"requests": [{seq, t, op, kind, status, fault}],
                                         "last": N}; status null: dropped, or the upstream
                                         did not answer (then also "error")
"""

import argparse
import collections
import fnmatch
import http.client
import http.server
import json
import random
import signal
import socket
import sys
import threading
import time
from urllib.parse import parse_qsl, urlsplit

LOG_KEEP = 200000
UPSTREAM_TIMEOUT_S = 30
HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length",
               "proxy-connection", "te", "trailer", "upgrade"}


class State:
    def __init__(self, upstream, seed):
        u = urlsplit(upstream)
        if u.scheme != "http" or not u.hostname or not u.port:
            raise SystemExit(f"ddbproxy: --upstream must be http://HOST:PORT, not {upstream}")
        self.host, self.port = u.hostname, u.port
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.faults = []
        self.fault_seq = 0
        self.log = collections.deque(maxlen=LOG_KEEP)
        self.seq = 0

    def pick_fault(self, op):
        with self.lock:
            for f in self.faults:
                if fnmatch.fnmatchcase(op, f["match"]):
                    if self.rng.random() < f.get("probability", 1.0):
                        f["hits"] += 1
                        return dict(f)
                    return None
        return None

    def record(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)


def lease_kind(op, body):
    if op == "GetItem":
        return "read"
    if op == "PutItem":
        return "acquire"
    if op == "UpdateItem":
        try:
            expr = json.loads(body or b"{}").get("UpdateExpression", "")
        except (ValueError, AttributeError):
            expr = ""
        return "renew" if "#v = #v + :one" in expr else "release"
    return "other"


FAULT_KEYS = {"match": str, "status": int, "code": str, "message": str, "delay_s": (int, float),
              "close": bool, "probability": (int, float)}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ddbproxy"
    sys_version = ""
    timeout = 120

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        n = self.headers.get("Content-Length")
        return self.rfile.read(int(n)) if n and n.isdigit() else b""

    def _send(self, status, body, ctype, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_GET

    def _dispatch(self):
        body = self._body()
        path, _, query = self.path.partition("?")
        if path.startswith("/_proxy/"):
            self._control(path[len("/_proxy/"):], body, query)
        else:
            self._forward(body)

    # -- control --
    def _control(self, path, body, query):
        st = self.server.state
        if self.command == "POST" and path == "fault":
            try:
                spec = json.loads(body or b"{}")
                if not isinstance(spec, dict) or not isinstance(spec.get("match"), str):
                    raise ValueError("match (a string) is required")
                for k, v in spec.items():
                    if k not in FAULT_KEYS or not isinstance(v, FAULT_KEYS[k]) or \
                            isinstance(v, bool) != (FAULT_KEYS[k] is bool):
                        raise ValueError(f"bad key or value: {k}")
            except ValueError as e:
                self._json(400, {"error": str(e)})
                return
            with st.lock:
                st.fault_seq += 1
                spec.update(id=st.fault_seq, hits=0)
                st.faults.append(spec)
            self._json(200, {"id": spec["id"]})
        elif self.command == "DELETE" and path in ("faults", "fault"):
            with st.lock:
                st.faults.clear()
            self._json(200, {})
        elif self.command == "GET" and path == "log":
            try:
                since = int(dict(parse_qsl(query)).get("since", "0"))
            except ValueError:
                self._json(400, {"error": "since: an integer"})
                return
            with st.lock:
                out = [dict(e) for e in st.log if e["seq"] > since]
                last = st.seq
            self._json(200, {"requests": out, "last": last})
        else:
            self._json(404, {"error": f"no control route {self.command} /_proxy/{path}"})

    # -- forwarding --
    def _forward(self, body):
        st = self.server.state
        target = self.headers.get("X-Amz-Target", "")
        op = target.rpartition(".")[2] or "?"
        entry = {"t": time.time(), "op": op, "kind": lease_kind(op, body), "status": None,
                 "fault": None}
        try:
            f = st.pick_fault(op)
            if f is not None:
                entry["fault"] = f["id"]
                if f.get("delay_s"):
                    time.sleep(f["delay_s"])  # the fault itself: a slow DynamoDB
                if f.get("close"):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if "status" in f or "code" in f:
                    status = f.get("status") or 400
                    code = f.get("code") or ("InternalServerError" if status >= 500
                                             else "ThrottlingException")
                    msg = f.get("message") or ("Rate exceeded" if "Throttl" in code else code)
                    out = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                                      "message": msg}).encode()
                    entry["status"] = status
                    self._send(status, out, "application/x-amz-json-1.0",
                               {"x-amzn-RequestId": f"ddbproxy-{time.monotonic_ns()}"})
                    return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            conn = http.client.HTTPConnection(st.host, st.port, timeout=UPSTREAM_TIMEOUT_S)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                keep = {k: v for k, v in r.getheaders() if k.lower() not in HOP_HEADERS
                        and k.lower() != "content-type"}
                entry["status"] = r.status
                self._send(r.status, data, r.getheader("Content-Type") or
                           "application/x-amz-json-1.0", keep)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            entry["error"] = repr(e)
            self.close_connection = True
        finally:
            st.record(entry)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args.upstream, args.seed)

    def stop(_signum, _frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"READY port={srv.server_address[1]}", flush=True)
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
