#!/usr/bin/python3
"""fakecloud: a local fake of the AWS and CircleCI endpoints that runnerd and runner-scaler use.

Run (Python 3.11 stdlib, plus botocore for a second opinion on signatures):
    /usr/bin/python3 tests/fakes/fakecloud.py [--port N] [--tick-interval S] [--log-dir DIR]
                                              [--max-body BYTES] [--verbose]
                                              [--netns NAME] [--listen-tls ADDR:PORT ...]
                                              [--tls-cert PEM --tls-key PEM]
                                              [--listen-imds ADDR:PORT ...]
                                              [--dynamodb-upstream URL]
It listens on 127.0.0.1:N (0 = pick a port). When it is listening it prints exactly one line,
`READY port=<N>` (then ` tls=ADDR:PORT,...` and ` imds=ADDR:PORT,...` when those listen), to
stdout. Tests wait for that line instead of sleeping. stdout is not used after that;
diagnostics go to stderr. SIGTERM/SIGINT stop it, and instance processes are killed.

The outside world at its real addresses (tests/fakes/world.py builds it around this):
  --netns NAME         the main port is bound where the fake starts (the test's own network);
                       then the fake enters network namespace NAME (/run/netns/NAME), where
                       every other listener is bound and every process it launches runs.
  --listen-tls A:P     HTTPS with --tls-cert/--tls-key (a certificate from the test's CA for the
                       real host names: autoscaling.REGION.amazonaws.com, runner.circleci.com,
                       ...). Routes like the main port, except that of the control API only the
                       agent's side door (/_fake/agent/..., /_fake/note) is there, and a GET of any other path
                       is a blob (/_fake/blob) looked up by Host and path, like S3.
  --listen-imds A:P    IMDSv2 of the main identity only (169.254.169.254:80, [fd00:ec2::254]:80).
  --dynamodb-upstream  DynamoDB (JSON 1.0, X-Amz-Target DynamoDB_20120810.*) is answered by this
                       real emulator (dynalite), after the fake has checked the signature and
                       applied faults ("dynamodb:PutItem", ...); on any listener.

The main port routes each request by its shape:
  PUT  /latest/api/token, GET /latest/...   IMDSv2 for the main identity (see /_fake/imds)
  POST / with X-Amz-Target                  Secrets Manager GetSecretValue, SSM GetParameter
                                            (JSON 1.1)
  POST / with a form body Action=...        Auto Scaling Query API (2011-01-01):
                                            DescribeAutoScalingGroups, SetDesiredCapacity,
                                            UpdateAutoScalingGroup, SetInstanceProtection,
                                            SuspendProcesses,
                                            TerminateInstanceInAutoScalingGroup; warm pools
                                            and lifecycle hooks (fake_warm.py): PutWarmPool,
                                            DescribeWarmPool, DeleteWarmPool,
                                            PutLifecycleHook, DescribeLifecycleHooks,
                                            DeleteLifecycleHook, CompleteLifecycleAction,
                                            RecordLifecycleActionHeartbeat,
                                            DescribeAutoScalingInstances
  GET  /api/v3/runner[/tasks[/running]]     CircleCI Runner API v3 (Circle-Token header)
  /_fake/...                                control API (JSON), below
Wire formats follow the AWS wire notes (botocore's models). The fake checks the SigV4 signature of
every AWS request (§5), using its own implementation and cross-checking with botocore. The key
must be registered static credentials or IMDS-issued session credentials, and session
credentials must carry their token as a signed X-Amz-Security-Token. Auto Scaling groups belong
to a region, and a request sees only the groups of the region in its credential scope. Secrets
and parameters are global.

Defaults, also after a reset:
  - static key AKIAFAKECLOUD0000001 / fakecloud/Secret+Key/0123456789abcdefghij, always
    registered;
  - region us-east-1;
  - a main identity i-0123456789abcdef0 with role runnerd-test-role.

Auth failures (Query XML / JSON):
  - no Authorization: MissingAuthenticationToken 403 / MissingAuthenticationTokenException 400;
  - malformed header, or Host, X-Amz-Date or the token not signed: IncompleteSignature 400 /
    IncompleteSignatureException 400;
  - wrong signature, wrong scope service or date, or skew over 5 min: SignatureDoesNotMatch 403 /
    InvalidSignatureException 400;
  - unknown key, or a missing or wrong token: InvalidClientTokenId 403 /
    UnrecognizedClientException 400;
  - expired session credentials: ExpiredToken 403 / ExpiredTokenException 400.

Other behaviour:
  - TerminateInstanceInAutoScalingGroup on an instance that is already Terminating answers
    "Instance Id not found", which is what a retried call sees.
  - Each request is logged before its response goes out, so a client that asks for the log
    right after a call finds that call in it.

Instance model. Each ASG holds instances: Pending -> InService -> Terminating -> Terminated.
Nothing changes between ticks. A tick is POST /_fake/tick, or one every --tick-interval
seconds. Each tick, in order:
  1. Terminating instances become Terminated: they leave the group, their process gets SIGTERM
     (then SIGKILL after stop_grace_s), and their IMDS listener closes.
  2. Pending instances become InService (not those whose boot fails "pending", below).
  3. Live instances marked Unhealthy become Terminating (a replacement is launched in step 4);
     so do instances whose boot fails (fail_boot) once they are fail_boot_ticks ticks old:
       "leave"    as runnerd's exit path after a failed boot: it leaves with a decrement, as
                  TerminateInstanceInAutoScalingGroup(ShouldDecrementDesiredCapacity=true)
                  does (without at MinSize); cause "boot-failed";
       "pending"  as EC2 when the image cannot boot (a bad AMI or subnet): it never gets past
                  Pending and is terminated without a decrement (cause "launch-failed"); the
                  group launches its replacement in step 4.
     Such an instance never runs an agent: the Runner API never lists a runner for it.
  4. When desired exceeds the live instances, new ones launch (Pending, protected when
     protect_new). When desired is lower, unprotected instances are terminated, oldest first
     (OldestInstance). Protected instances are never chosen.
Launch hook: when the ASG has a launch_command (an argv list), each instance gets its own IMDS
listener on its own port, serving that instance's identity and role credentials. The command
starts in a new session with FAKE_INSTANCE_ID, FAKE_IMDS_ENDPOINT and
AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:<imds port>, and with FAKE_CLOUD_URL,
AWS_ENDPOINT_URL and CIRCLECI_RUNNER_API_URL set to the main port. AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE point at /dev/null. Inherited AWS_* credential and region variables
are removed; launch_env overrides anything. Its stdout and stderr go to
<log-dir>/<instance-id>.log. When the process exits, the instance is "stopped". If the API
never terminated it, it is marked Unhealthy, like an EC2 health check would, and replaced on
the next tick while desired still counts it. This is the "shutdown without leaving the group"
race.

Control API (JSON in and out; 400 {"error": ...} on bad input; unknown keys are errors):
  POST /_fake/reset                  everything back to the start state (processes killed)
  POST /_fake/credentials {akid, secret, token?}            register static credentials
  POST /_fake/secret {id, string | binary(base64) | null}   null deletes
  POST /_fake/parameter {name, value | null, type?}         type defaults to SecureString
  POST /_fake/asg {name, min, max, desired?, instances?, protect_new?, launch_command?,
                   launch_env?, region?, role?, tags?, stop_grace_s?, user_data?,
                   instance_type?, fail_boot?, fail_boot_ticks?}
        create or replace. instances: a count, or [{id?, state?, health?, protected?,
        fail_boot?}]; up to 20000 per group, or 200 (max too) with a launch_command.
        fail_boot ("leave" | "pending" | null, groups without a launch_command): every
        instance the group launches fails its boot after fail_boot_ticks (default 2) ticks, as
        in the instance model; an entry of instances may say otherwise (null: it boots).
  POST /_fake/imds {instance_id, region, availability_zone, role, target_lifecycle_state,
                    spot_action, rebalance, user_data, credential_ttl_s, rotate_credentials,
                    local_ipv4, public_ipv4, for_instance}
        Sets items of the main-port identity, or of a launched instance's identity when
        for_instance is given. Only the keys present change; null removes an item.
        spot_action is {"action", "time"?} and rebalance is {"noticeTime"?} or true.
  POST /_fake/runner-token {token, resource_classes?}     Circle-Token for the Runner API
  POST /_fake/agent-token {token, resource_class}         resource-class token for claims
  POST /_fake/jobs {resource_class, count, duration_s?}   queue jobs -> {"job_ids": [...]}
  POST /_fake/agent/claim {resource_class, runner_name, token, hostname?, version?}
        -> 200 {"job_id","duration_s"} | 204 when the queue is empty | 401 bad token
        Any claim (204 too) is the runner connecting: from then on GET /api/v3/runner lists it
        under runner_name (runnerd names it %H-%i: it contains the instance id).
  POST /_fake/agent/complete {job_id, exit_code}
  POST /_fake/blob {url, data(base64) | null, content_type?}
        Serve these bytes at this https URL (its host and path) on the TLS listeners, as S3
        serves an object: GET and HEAD; 404 NoSuchKey XML otherwise. null deletes. Faults match
        "blob:<host><path>" (fnmatch), e.g. "blob:*.tar.gz". At most 64 MiB each.
  POST /_fake/note {key, value}      a free-form JSON value (at most 64 KiB encoded) that a
                                     helper the test cannot reach directly leaves for it: the
                                     e2e boot test's agent inside the guest posts what it saw
                                     there. Shown in state()["notes"][key]; at most 100 keys.
  POST /_fake/fault {match, status?, code?, message?, body?, content_type?, delay_s?,
                     retry_after?, slow_bps?, oversize_bytes?, close?, times?, instance_id?}
        match (fnmatch pattern): "autoscaling:SetDesiredCapacity", "secretsmanager:GetSecretValue",
        "ssm:GetParameter", "imds:token", "imds:credentials", "imds:<path under /latest/>",
        "runner:tasks", "runner:running", "runner:list", "*"... -> {"id": N}.
        The first matching fault with times left applies, after authentication. It sleeps
        delay_s, and then:
          close             drop the connection without a response;
          status/code/body  answer with that error instead: Query ErrorResponse XML,
                            JSON {"__type"}, Runner {"message"}, or the raw body;
          otherwise         answer normally.
        retry_after adds a Retry-After header, slow_bps trickles the body, and oversize_bytes
        pads the body with spaces to that size (still valid JSON/XML).
        Defaults: status is 400 when only code is given, else 500. code is Throttling (Query)
        or ThrottlingException (JSON) below 500; from 500 up it is InternalFailure, or
        ServiceUnavailable for a 503 on Query.
  DELETE /_fake/faults               remove all faults (also DELETE /_fake/fault)
  GET  /_fake/requests?since=N       {"requests": [...], "last": N}, the log of non-control
                                     requests (service, op, params/body, akid, token_used,
                                     signature_ok, status, ...; an IMDS credentials answer
                                     also has issued_akid and expiration, fake clock)
  GET  /_fake/state[?wait=G&timeout_s=T]  asgs, instances, terminated, jobs, runners, and the
                                     generation. With wait=G it blocks until the generation
                                     differs from G. Any change bumps the generation.
  POST /_fake/tick {n?}              run n reconcile steps, then return the state
  POST /_fake/clock {advance_s}      move the fake clock used for IMDS token TTLs and
                                     credential expiry; SigV4 skew uses the real clock
  POST /_fake/lifecycle {instance_id, state}  an instance without a process where AWS would
                                     have it: Pending:Wait, InService, Warmed:Pending:Wait,
                                     Warmed:Stopped (fake_warm.py)
Warm pools and lifecycle hooks: fake_warm.py has the model (the tick's part, resume before a
cold launch, the pool's size, heartbeat timeouts on the fake clock).
"""

import argparse
import base64
import collections
import datetime
import fnmatch
import hashlib
import hmac
import http.client
import http.server
import importlib
import itertools
import json
import os
import random
import re
import signal
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import traceback
import uuid
from urllib.parse import parse_qsl, quote, unquote
from xml.sax.saxutils import escape as _xml_escape

import fake_warm  # warm pools and lifecycle hooks: the model and its API (fake_warm.py)

ACCOUNT = "123456789012"
DEFAULT_AKID = "AKIAFAKECLOUD0000001"
DEFAULT_SECRET = "fakecloud/Secret+Key/0123456789abcdefghij"
DEFAULT_REGION = "us-east-1"
MAIN_INSTANCE_ID = "i-0123456789abcdef0"
DEFAULT_ROLE = "runnerd-test-role"
AS_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
MAX_BODY_DEFAULT = 1 << 20
SKEW_S = 300
LOG_KEEP = 5000
TERMINATED_KEEP = 1000
TOKENS_KEEP = 1000
MAX_INSTANCES = 200  # per group: each may own a process and a listener
LIFECYCLE_TARGETS = ("InService", "Terminated", "Detached", "Standby", "Warmed:Hibernated",
                     "Warmed:Running", "Warmed:Stopped", "Warmed:Terminated")
INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{8,17}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")

VERBOSE = False


def log(msg):
    print(f"fakecloud: {msg}", file=sys.stderr, flush=True)


def iso(t, ms=False):
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    if ms:
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def rand_str(n, alphabet=string.ascii_uppercase + string.digits):
    r = random.SystemRandom()
    return "".join(r.choice(alphabet) for _ in range(n))


# ---- SigV4: the independent verifier (aws-wire.md §5) --------------------------------------

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/\s,]+)/(\d{8})/([^/\s,]+)/([^/\s,]+)/aws4_request,"
    r"\s*SignedHeaders=([a-z0-9\-;]+),\s*Signature=([0-9a-f]{64})$")


def canonical_query(raw):
    """RFC 3986-encode each name and value (uppercase %XX) and sort the pairs.

    A raw '+' stays a literal plus: AWS does not read it as a space.
    """
    pairs = []
    for part in raw.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(method, path, query, headers, signed, body):
    """headers: lower-case name -> list of raw values (every signed name must be present)."""
    chdrs = "".join(
        f"{n}:{','.join(' '.join(v.split()) for v in headers[n])}\n" for n in signed)
    return "\n".join([method, quote(unquote(path), safe="/~"), canonical_query(query), chdrs,
                      ";".join(signed), hashlib.sha256(body).hexdigest()])


def sigv4_signature(creq, amzdate, scope_date, region, service, secret):
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, f"{scope_date}/{region}/{service}/aws4_request",
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    k = ("AWS4" + secret).encode("utf-8")
    for part in (scope_date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(k, sts.encode("utf-8"), hashlib.sha256).hexdigest()


BOTOCORE_SKIPS = {"expect", "user-agent", "x-amzn-trace-id"}


def botocore_signature(method, path, query, headers, signed, body, amzdate, akid, secret,
                       region, service):
    """Second opinion from botocore's SigV4Auth with a fixed timestamp; None if not comparable."""
    if BOTOCORE_SKIPS & set(signed):
        return None  # botocore silently drops these from the signed set
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        return None
    host = ",".join(headers.get("host", ["localhost"]))
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body,
                     headers={n: ",".join(headers[n]) for n in signed})
    req.context["timestamp"] = amzdate
    s = SigV4Auth(Credentials(akid, secret), service, region)
    return s.signature(s.string_to_sign(req, s.canonical_request(req)), req)


class AuthResult:
    def __init__(self):
        self.ok = False
        self.kind = None  # missing | incomplete | mismatch | unknown_key | expired_token
        self.message = ""
        self.akid = None
        self.region = None
        self.token_used = False
        self.caller_instance = None
        self.botocore_agrees = None

    def fail(self, kind, message):
        self.kind, self.message = kind, message
        return self


# ---- errors --------------------------------------------------------------------------------

class AwsError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Bad(Exception):
    """Bad control input -> 400 {"error": ...}."""


QUERY_AUTH = {"missing": ("MissingAuthenticationToken", 403),
              "incomplete": ("IncompleteSignature", 400),
              "mismatch": ("SignatureDoesNotMatch", 403),
              "unknown_key": ("InvalidClientTokenId", 403),
              "expired_token": ("ExpiredToken", 403)}
JSON_AUTH = {"missing": ("MissingAuthenticationTokenException", 400),
             "incomplete": ("IncompleteSignatureException", 400),
             "mismatch": ("InvalidSignatureException", 400),
             "unknown_key": ("UnrecognizedClientException", 400),
             "expired_token": ("ExpiredTokenException", 400)}


# ---- control input validation --------------------------------------------------------------

class F:
    """One field of a control body: type(s), required, nullable, bounds, pattern."""

    def __init__(self, types, required=False, nullable=False, lo=None, hi=None, maxlen=None,
                 pattern=None, choices=None):
        self.types = types if isinstance(types, tuple) else (types,)
        self.required, self.nullable = required, nullable
        self.lo, self.hi, self.maxlen = lo, hi, maxlen
        self.pattern = re.compile(pattern) if pattern else None
        self.choices = choices


def validate(obj, spec):
    if not isinstance(obj, dict):
        raise Bad("body must be a JSON object")
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        raise Bad(f"unknown key(s): {', '.join(unknown)}")
    out = {}
    for key, f in spec.items():
        if key not in obj:
            if f.required:
                raise Bad(f"{key}: required")
            continue
        v = obj[key]
        if v is None:
            if not f.nullable:
                raise Bad(f"{key}: must not be null")
            out[key] = None
            continue
        if isinstance(v, bool) and bool not in f.types:
            raise Bad(f"{key}: wrong type")
        if not isinstance(v, f.types):
            raise Bad(f"{key}: wrong type")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if v != v or v in (float("inf"), float("-inf")):
                raise Bad(f"{key}: not finite")
            if f.lo is not None and v < f.lo:
                raise Bad(f"{key}: below {f.lo}")
            if f.hi is not None and v > f.hi:
                raise Bad(f"{key}: above {f.hi}")
        if isinstance(v, (str, list, dict)) and f.maxlen is not None and len(v) > f.maxlen:
            raise Bad(f"{key}: too long (max {f.maxlen})")
        if isinstance(v, str):
            if "\x00" in v:
                raise Bad(f"{key}: NUL byte")
            if f.pattern and not f.pattern.match(v):
                raise Bad(f"{key}: malformed")
        if f.choices is not None and v not in f.choices:
            raise Bad(f"{key}: must be one of {', '.join(map(str, f.choices))}")
        out[key] = v
    return out


def str_list(v, key, maxlen=64, itemlen=4096):
    if not isinstance(v, list) or not v or len(v) > maxlen:
        raise Bad(f"{key}: must be a non-empty list of at most {maxlen} strings")
    for s in v:
        if not isinstance(s, str) or len(s) > itemlen or "\x00" in s:
            raise Bad(f"{key}: items must be strings without NUL")
    return list(v)


def str_map(v, key, maxitems=256, itemlen=4096):
    if not isinstance(v, dict) or len(v) > maxitems:
        raise Bad(f"{key}: must be an object of at most {maxitems} strings")
    for k, s in v.items():
        if not isinstance(s, str) or len(k) > 256 or len(s) > itemlen or "\x00" in k + s:
            raise Bad(f"{key}: values must be strings without NUL")
    return dict(v)


# ---- model ---------------------------------------------------------------------------------

class Identity:
    """What one IMDS endpoint answers: the main port's, or one launched instance's."""

    def __init__(self, instance_id, region, az, role):
        self.instance_id, self.region, self.az, self.role = instance_id, region, az, role
        self.target_lifecycle_state = None
        self.spot_action = None
        self.rebalance = None
        self.user_data = None
        self.credential_ttl_s = 21600
        self.local_ipv4 = "10.0.3.17"
        self.public_ipv4 = None  # a private subnet's instance has none: 404
        self.creds = None  # the issued session credentials, reused until near expiry
        self.tokens = {}   # IMDS token -> expiry (fake clock)


class Session:
    def __init__(self, akid, secret, token, issued, expiry, instance_id):
        self.akid, self.secret, self.token = akid, secret, token
        self.issued, self.expiry, self.instance_id = issued, expiry, instance_id


class Instance:
    def __init__(self, iid, asg, az, protected, state, now):
        self.id, self.asg, self.az = iid, asg, az
        self.state, self.health, self.protected = state, "Healthy", protected
        self.launched_at, self.ended_at = now, None
        self.identity = Identity(iid, asg.region, az, asg.role)
        self.identity.target_lifecycle_state = "InService"
        self.identity.user_data = asg.user_data
        self.proc = None
        self.exit_code = None
        self.stopped = False
        self.terminated_by_api = False
        self.cause = None
        self.imds_server = None
        self.imds_port = None
        self.log_path = None
        self.kill_timer = None
        self.fail_boot = asg.fail_boot  # None, "leave" or "pending"
        self.ticks = 0  # ticks seen alive
        fake_warm.init_instance(self)

    def to_json(self):
        return {"id": self.id, "asg": self.asg.name, "state": self.state, "health": self.health,
                "protected": self.protected, "availability_zone": self.az,
                "launched_at": self.launched_at, "ended_at": self.ended_at,
                "pid": self.proc.pid if self.proc else None, "exit_code": self.exit_code,
                "stopped": self.stopped, "terminated_by_api": self.terminated_by_api,
                "cause": self.cause, "imds_port": self.imds_port,
                "imds_url": f"http://127.0.0.1:{self.imds_port}" if self.imds_port else None,
                "log": self.log_path, "fail_boot": self.fail_boot,
                "target_lifecycle_state": self.identity.target_lifecycle_state,
                **fake_warm.instance_json(self)}


class Asg:
    def __init__(self, name, region, mn, mx, desired, now):
        self.name, self.region = name, region
        self.min, self.max, self.desired = mn, mx, desired
        self.protect_new = False
        self.launch_command = None
        self.launch_env = {}
        self.role = DEFAULT_ROLE
        self.tags = {}
        self.stop_grace_s = 5.0
        self.user_data = None
        self.instance_type = "t3.micro"
        self.fail_boot = None
        self.fail_boot_ticks = 2
        self.created = now
        self.suspended = {}  # process name -> when it was suspended (SuspendProcesses)
        self.instances = []  # not yet Terminated
        self.arn_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "asg:" + name))
        fake_warm.init_group(self)

    def live(self):
        return [i for i in self.instances if i.state in fake_warm.LIVE]

    def arn(self):
        return (f"arn:aws:autoscaling:{self.region}:{ACCOUNT}:autoScalingGroup:{self.arn_id}:"
                f"autoScalingGroupName/{self.name}")

    def to_json(self):
        return {"name": self.name, "region": self.region, "min": self.min, "max": self.max,
                "desired": self.desired, "protect_new": self.protect_new,
                "launch_command": self.launch_command, "fail_boot": self.fail_boot,
                "fail_boot_ticks": self.fail_boot_ticks,
                "suspended": sorted(self.suspended),
                "instances": [i.to_json() for i in self.instances], **fake_warm.group_json(self)}


class Fault:
    def __init__(self, fid, spec):
        self.id = fid
        self.spec = spec
        self.times = spec.get("times")
        self.hits = 0

    def to_json(self):
        return dict(self.spec, id=self.id, hits=self.hits)


class Cloud:
    def __init__(self, log_dir=None):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.generation = 0
        self.log_dir = log_dir
        self.main_port = None
        self.ddb_upstream = None  # (host, port) of a real DynamoDB emulator, or None
        self.iid_counter = itertools.count(1)
        self.log_seq = 0
        self.clock_offset = 0.0
        self._init_state()

    def _init_state(self):
        self.static_creds = {DEFAULT_AKID: (DEFAULT_SECRET, None)}
        self.sessions = {}
        self.secrets = {}
        self.params = {}
        self.asgs = {}
        self.terminated = collections.deque(maxlen=TERMINATED_KEEP)
        self.main_identity = Identity(MAIN_INSTANCE_ID, DEFAULT_REGION, DEFAULT_REGION + "a",
                                      DEFAULT_ROLE)
        self.runner_tokens = {}
        self.agent_tokens = {}
        self.jobs = collections.OrderedDict()
        self.job_seq = 0
        self.runners = {}
        self.notes = {}
        self.blobs = {}  # (host, path) -> (bytes, content type)
        self.stacks = {}  # name -> {"resources": [...], "signals": [...]} (SignalResource)
        self.faults = []
        self.fault_seq = 0
        self.log = collections.deque(maxlen=LOG_KEEP)

    def now(self):
        return time.time() + self.clock_offset

    def bump(self):
        with self.lock:
            self.generation += 1
            self.cond.notify_all()

    # -- request log --
    def record(self, entry):
        with self.lock:
            self.log_seq += 1
            entry["seq"] = self.log_seq
            self.log.append(entry)
            self.bump()

    # -- instances --
    def all_instances(self):
        for asg in self.asgs.values():
            yield from asg.instances
            yield from asg.warm

    def find_instance(self, iid, region=None):
        for asg in self.asgs.values():
            if region is not None and asg.region != region:
                continue
            for inst in asg.instances + asg.warm:
                if inst.id == iid:
                    return inst
        return None

    def new_instance_id(self):
        return f"i-0fa4e{next(self.iid_counter):012x}"

    def make_instance(self, asg, state="Pending", iid=None, protected=None):
        """Under the lock. A new instance record of asg, in neither of its lists yet."""
        n = len(asg.instances) + len(asg.warm) + len(self.terminated)
        az = asg.region + "ab"[n % 2]
        return Instance(iid or self.new_instance_id(), asg, az,
                        asg.protect_new if protected is None else protected, state, self.now())

    def launch(self, asg, state="Pending", iid=None, protected=None):
        """Under the lock. Creates the instance and, with a launch_command, its IMDS listener
        and process."""
        inst = self.make_instance(asg, state, iid, protected)
        asg.instances.append(inst)
        fake_warm.on_launch(self, inst)
        if asg.launch_command:
            self._start_instance(inst)
        return inst

    def _start_instance(self, inst):
        srv = FakeServer(("127.0.0.1", 0), Handler, self, inst.identity)
        inst.imds_server = srv
        inst.imds_port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                         name=f"imds-{inst.id}", daemon=True).start()
        env = {k: v for k, v in os.environ.items()
               if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                            "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_REGION",
                            "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")}
        main = f"http://127.0.0.1:{self.main_port}"
        imds = f"http://127.0.0.1:{inst.imds_port}"
        # A fresh instance has no ~/.aws: SDKs must find the role through IMDS.
        env.update({"FAKE_INSTANCE_ID": inst.id, "FAKE_IMDS_ENDPOINT": imds,
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds, "FAKE_CLOUD_URL": main,
                    "AWS_ENDPOINT_URL": main, "CIRCLECI_RUNNER_API_URL": main,
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        env.update(inst.asg.launch_env)
        out = subprocess.DEVNULL
        if self.log_dir:
            inst.log_path = os.path.join(self.log_dir, f"{inst.id}.log")
            out = open(inst.log_path, "ab")
        try:
            inst.proc = subprocess.Popen(inst.asg.launch_command, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.log_dir or "/")
        except OSError as e:
            log(f"{inst.id}: launch_command failed: {e}")
            inst.exit_code = 127
            inst.stopped = True
            inst.health = "Unhealthy"
            return
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        threading.Thread(target=self._wait_instance, args=(inst, inst.proc),
                         name=f"wait-{inst.id}", daemon=True).start()

    def _wait_instance(self, inst, proc):
        rc = proc.wait()
        with self.lock:
            inst.exit_code = rc
            inst.stopped = True
            if inst.kill_timer:
                inst.kill_timer.cancel()
            # Stopped without the API terminating it: EC2 health checks fail, the ASG replaces it.
            if inst.state in fake_warm.LIVE and inst.after_exit is None:
                inst.health = "Unhealthy"
            fake_warm.process_exited(inst)  # a stop that was waiting for it
            self.bump()

    def _stop_instance(self, inst, grace):
        """Outside the lock: SIGTERM the process group, SIGKILL after grace, close the IMDS."""
        proc = inst.proc
        if proc is not None and proc.poll() is None:
            _killpg(proc.pid, signal.SIGTERM)
            t = threading.Timer(grace, _kill_if_alive, args=(proc,))
            t.daemon = True
            inst.kill_timer = t
            t.start()
        srv, inst.imds_server = inst.imds_server, None
        if srv is not None:
            threading.Thread(target=_close_server, args=(srv,), daemon=True).start()

    def boot_failed(self, asg, inst):
        """Under the lock: inst's boot failed (see the instance model)."""
        if inst.fail_boot == "leave":
            if asg.desired > asg.min:
                asg.desired -= 1
            inst.terminated_by_api = True
            self.mark_terminating(inst, "boot-failed")
        else:
            self.mark_terminating(inst, "launch-failed")

    def mark_terminating(self, inst, cause):
        inst.state = "Terminating"
        inst.cause = cause
        inst.identity.target_lifecycle_state = "Terminated"

    def tick(self, steps=1):
        for _ in range(steps):
            stop = []
            with self.lock:
                now = self.now()
                for asg in self.asgs.values():
                    for inst in list(asg.instances):
                        if inst.state == "Terminating":
                            inst.state = "Terminated"
                            inst.ended_at = now
                            asg.instances.remove(inst)
                            self.terminated.append(inst)
                            stop.append((inst, asg.stop_grace_s))
                    for inst in asg.instances:
                        if inst.state == "Pending" and inst.health == "Healthy" \
                                and inst.fail_boot != "pending":
                            inst.state = "InService"
                    fake_warm.tick(self, asg, now, stop, stop)
                    for inst in asg.live():
                        inst.ticks += 1
                        if inst.health == "Unhealthy":
                            self.mark_terminating(inst, "unhealthy")
                        elif inst.fail_boot and inst.ticks >= asg.fail_boot_ticks:
                            self.boot_failed(asg, inst)
                    live = asg.live()
                    if asg.desired > len(live):
                        fake_warm.scale_out(self, asg, asg.desired - len(live))
                    elif asg.desired < len(live):
                        victims = sorted((i for i in live if not i.protected),
                                         key=lambda i: i.launched_at)
                        for inst in victims[:len(live) - asg.desired]:
                            if not fake_warm.scale_in(self, asg, inst, stop):
                                self.mark_terminating(inst, "scale-in")
                    fake_warm.refill(self, asg)
                self.bump()
            for inst, grace in stop:
                self._stop_instance(inst, grace)

    def kill_all(self, grace=2.0):
        """Outside the lock: end every instance process and listener (reset and exit)."""
        with self.lock:
            insts = list(self.all_instances()) + list(self.terminated)
        procs, closers = [], []
        for inst in insts:
            if inst.kill_timer:
                inst.kill_timer.cancel()
            if inst.proc is not None and inst.proc.poll() is None:
                _killpg(inst.proc.pid, signal.SIGTERM)
            if inst.proc is not None:
                procs.append(inst.proc)
            srv, inst.imds_server = inst.imds_server, None
            if srv is not None:
                t = threading.Thread(target=_close_server, args=(srv,), daemon=True)
                t.start()
                closers.append(t)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            # The whole group: a leader that already exited may have left children behind.
            _killpg(p.pid, signal.SIGKILL)
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} did not die")
        for t in closers:
            t.join(2)

    def reset(self):
        self.kill_all()
        with self.lock:
            self._init_state()
            self.bump()

    # -- credentials --
    def issue_credentials(self, ident):
        now = self.now()
        c = ident.creds
        # Like IMDS: the same credentials until they get close to expiry, then new ones.
        if c is None or c.expiry - now < min(900, ident.credential_ttl_s / 2):
            akid = "ASIA" + rand_str(16, string.ascii_uppercase + "234567")
            secret = rand_str(40, string.ascii_letters + string.digits + "+/")
            token = "IQoJb3JpZ2luX2VjEfake//" + base64.b64encode(os.urandom(150)).decode()
            c = Session(akid, secret, token, now, now + ident.credential_ttl_s,
                        ident.instance_id)
            ident.creds = c
            self.sessions[akid] = c
            # Bound the registry: sessions expired for a day are forgotten.
            for k in [k for k, s in self.sessions.items() if s.expiry < now - 86400]:
                del self.sessions[k]
        return c

    # -- state --
    def state_json(self):
        jobs = {}
        for j in self.jobs.values():
            d = jobs.setdefault(j["resource_class"], {"queued": [], "running": [], "done": []})
            d[j["state"]].append(dict(j))
        return {"generation": self.generation,
                "asgs": {n: a.to_json() for n, a in self.asgs.items()},
                "terminated": [i.to_json() for i in self.terminated],
                "jobs": jobs,
                "runners": list(self.runners.values()),
                "faults": [f.to_json() for f in self.faults],
                "main_identity": {"instance_id": self.main_identity.instance_id,
                                  "region": self.main_identity.region,
                                  "role": self.main_identity.role},
                "clock_offset_s": self.clock_offset,
                "stacks": {n: {"resources": list(v["resources"]),
                               "signals": list(v["signals"])} for n, v in self.stacks.items()},
                "notes": dict(self.notes)}

    # -- faults --
    def take_fault(self, keys, instance_id=None):
        with self.lock:
            for f in self.faults:
                if f.times is not None and f.hits >= f.times:
                    continue
                want = f.spec.get("instance_id")
                if want is not None and want != instance_id:
                    continue
                if any(fnmatch.fnmatchcase(k, f.spec["match"]) for k in keys):
                    f.hits += 1
                    self.bump()
                    return f
        return None


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_if_alive(proc):
    if proc.poll() is None:
        _killpg(proc.pid, signal.SIGKILL)


def _close_server(srv):
    try:
        srv.shutdown()
        srv.server_close()
    except OSError:
        pass


# ---- XML -----------------------------------------------------------------------------------

def xesc(s):
    return _xml_escape(str(s), {'"': "&quot;", "'": "&apos;"})


def el(tag, content=None):
    """content: None -> <tag/>; str/int/bool -> escaped text; list -> child fragments."""
    if content is None or (isinstance(content, list) and not content):
        return f"<{tag}/>"
    if isinstance(content, list):
        return f"<{tag}>\n" + "\n".join(content) + f"\n</{tag}>"
    if isinstance(content, bool):
        content = "true" if content else "false"
    return f"<{tag}>{xesc(content)}</{tag}>"


def members(tag, items):
    return el(tag, [el("member", i) for i in items])


def query_response(action, result_children, request_id, has_result=True, ns=AS_NS):
    parts = []
    if has_result:
        parts.append(el(f"{action}Result", result_children))
    parts.append(el("ResponseMetadata", [el("RequestId", request_id)]))
    return (f'<{action}Response xmlns="{ns}">\n' + "\n".join(parts)
            + f"\n</{action}Response>\n")


def query_error_xml(code, message, request_id, status):
    typ = "Receiver" if status >= 500 else "Sender"
    return (f'<ErrorResponse xmlns="{AS_NS}">\n'
            f"  <Error>\n    <Type>{typ}</Type>\n    <Code>{xesc(code)}</Code>\n"
            f"    <Message>{xesc(message)}</Message>\n  </Error>\n"
            f"  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n")


# DescribeAutoScalingGroups is rendered the way AWS sends it: indented two spaces a level, every
# group with all its instances, each instance with the fields AWS fills in (about 700 bytes a
# member, so a few thousand instances run to megabytes, as on the wire).
DESCRIBE_INDENT = "  "
MAX_GROUP_INSTANCES = 20000  # per group without a launch_command (plain records, no processes)
FAIL_BOOT = ("leave", "pending")


def az_id(az):
    """us-east-1a -> use1-az1, eu-central-1b -> euc1-az2 (AWS's AZ ID shape)."""
    region, letter = az[:-1], az[-1]
    parts = region.split("-")
    short = parts[0] + "".join(p[0] for p in parts[1:-1]) + parts[-1]
    return f"{short}-az{ord(letter) - ord('a') + 1}"


def _x(tag, content, ind):
    """One indented element: None or [] -> <tag/>; a list -> rendered child lines; else text."""
    if content is None or (isinstance(content, list) and not content):
        return f"{ind}<{tag}/>"
    if isinstance(content, list):
        return f"{ind}<{tag}>\n" + "\n".join(content) + f"\n{ind}</{tag}>"
    if isinstance(content, bool):
        content = "true" if content else "false"
    return f"{ind}<{tag}>{xesc(content)}</{tag}>"


def _lt(asg):
    return ("lt-0" + hashlib.sha256(asg.name.encode()).hexdigest()[:16], f"{asg.name}-lt", "1")


def launch_template_xml(asg, ind=""):
    lt_id, lt_name, version = _lt(asg)
    i2 = ind + DESCRIBE_INDENT
    return _x("LaunchTemplate", [_x("LaunchTemplateId", lt_id, i2),
                                 _x("LaunchTemplateName", lt_name, i2),
                                 _x("Version", version, i2)], ind)


def instance_xml(inst, ind=""):
    """One <member> of a group's Instances, at indentation ind: every field the Instance shape
    has that AWS fills in for a launch-template group (no WeightedCapacity: no mixed policy;
    no ImageId: no AMI override or root volume replacement)."""
    lt_id, lt_name, version = _lt(inst.asg)
    a, b = ind + DESCRIBE_INDENT, ind + 2 * DESCRIBE_INDENT
    return (f"{ind}<member>\n"
            f"{a}<InstanceId>{inst.id}</InstanceId>\n"
            f"{a}<InstanceType>{xesc(inst.asg.instance_type)}</InstanceType>\n"
            f"{a}<AvailabilityZone>{inst.az}</AvailabilityZone>\n"
            f"{a}<AvailabilityZoneId>{az_id(inst.az)}</AvailabilityZoneId>\n"
            f"{a}<LifecycleState>{inst.state}</LifecycleState>\n"
            f"{a}<HealthStatus>{inst.health}</HealthStatus>\n"
            f"{a}<LaunchTemplate>\n"
            f"{b}<LaunchTemplateId>{lt_id}</LaunchTemplateId>\n"
            f"{b}<LaunchTemplateName>{xesc(lt_name)}</LaunchTemplateName>\n"
            f"{b}<Version>{version}</Version>\n"
            f"{a}</LaunchTemplate>\n"
            f"{a}<ProtectedFromScaleIn>{'true' if inst.protected else 'false'}"
            f"</ProtectedFromScaleIn>\n"
            f"{ind}</member>")


def group_xml(asg, ind="", instances=True):
    """One <member> of AutoScalingGroups at indentation ind, with every instance (unless the
    request said IncludeInstances=false: then no Instances element)."""
    a, b, c = ind + DESCRIBE_INDENT, ind + 2 * DESCRIBE_INDENT, ind + 3 * DESCRIBE_INDENT

    def mem(tag, values):
        return _x(tag, [_x("member", v, b) for v in values], a)

    tags = [_x("member", [_x("ResourceId", asg.name, c),
                          _x("ResourceType", "auto-scaling-group", c),
                          _x("Key", k, c), _x("Value", v, c),
                          _x("PropagateAtLaunch", True, c)], b)
            for k, v in sorted(asg.tags.items())]
    zones = [asg.region + "a", asg.region + "b"]
    head = [_x("AutoScalingGroupName", asg.name, a), _x("AutoScalingGroupARN", asg.arn(), a),
            launch_template_xml(asg, a),
            _x("MinSize", asg.min, a), _x("MaxSize", asg.max, a),
            _x("DesiredCapacity", asg.desired, a), _x("DefaultCooldown", 300, a),
            mem("AvailabilityZones", zones),
            mem("AvailabilityZoneIds", [az_id(z) for z in zones]),
            _x("LoadBalancerNames", None, a), _x("TargetGroupARNs", None, a),
            _x("HealthCheckType", "EC2", a), _x("HealthCheckGracePeriod", 300, a)]
    if instances:
        head.append(_x("Instances", [instance_xml(i, b) for i in asg.instances], a))
    tail = [_x("CreatedTime", iso(asg.created, ms=True), a),
            _x("SuspendedProcesses",
               [_x("member", [_x("ProcessName", name, c),
                              _x("SuspensionReason", f"User suspended at {iso(t)}", c)], b)
                for name, t in sorted(asg.suspended.items())] or None, a),
            _x("VPCZoneIdentifier", "subnet-0fa4e00000000000a,subnet-0fa4e00000000000b", a),
            _x("EnabledMetrics", None, a),
            _x("Tags", tags, a),
            mem("TerminationPolicies", ["OldestInstance"]),
            _x("NewInstancesProtectedFromScaleIn", asg.protect_new, a),
            _x("ServiceLinkedRoleARN",
               f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/"
               "AWSServiceRoleForAutoScaling", a),
            _x("CapacityRebalance", False, a),
            _x("TrafficSources", None, a)]
    return _x("member", head + tail, ind)


# ---- Auto Scaling operations (under the lock) ----------------------------------------------

def q_members(params, prefix):
    """Name.member.N values, ordered by N."""
    out = []
    pat = re.compile(re.escape(prefix) + r"\.member\.(\d{1,4})$")
    for k, v in params.items():
        m = pat.match(k)
        if m:
            out.append((int(m.group(1)), v))
    return [v for _, v in sorted(out)]


def q_int(params, name, field, required=False):
    v = params.get(name)
    if v is None:
        if required:
            raise AwsError("ValidationError", f"1 validation error detected: Value null at "
                           f"'{field}' failed to satisfy constraint: Member must not be null")
        return None
    if not re.fullmatch(r"-?\d{1,9}", v):
        raise AwsError("ValidationError", f"Value '{v}' at '{field}' is not a valid integer")
    return int(v)


def q_bool(params, name, field, required=False):
    v = params.get(name)
    if v is None:
        if required:
            raise AwsError("ValidationError", f"1 validation error detected: Value null at "
                           f"'{field}' failed to satisfy constraint: Member must not be null")
        return None
    if v not in ("true", "false"):
        raise AwsError("ValidationError", f"Value '{v}' at '{field}' is not a valid boolean")
    return v == "true"


def q_group(cloud, params, region):
    name = params.get("AutoScalingGroupName")
    if not name:
        raise AwsError("ValidationError", "1 validation error detected: Value null at "
                       "'autoScalingGroupName' failed to satisfy constraint: "
                       "Member must not be null")
    asg = cloud.asgs.get(name)
    if asg is None or asg.region != region:
        raise AwsError("ValidationError",
                       f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return asg


# NextToken: opaque, standard base64 (so '+', '/' and '=' need form-encoding on the way back),
# bound to the region and the names it was issued for, like AWS's.
_TOKEN_MAGIC = b"\xfb\xef\xbe\xff\xff\xff"  # encodes to "++++////"


def _describe_token(region, names, offset):
    key = hashlib.sha256(("\n".join([region] + sorted(set(names)))).encode()).hexdigest()[:24]
    raw = _TOKEN_MAGIC + json.dumps({"o": offset, "k": key, "v": 2}).encode()
    raw += b" " * ((1 - len(raw)) % 3)  # length = 1 (mod 3): always "==" padding
    return base64.b64encode(raw).decode(), key


def _describe_offset(token, region, names, ngroups):
    """The offset a token stands for; InvalidNextToken when it is not one we issued for this
    request (garbage, another region or other names, past the end)."""
    bad = AwsError("InvalidNextToken", f"The token '{token}' is invalid.")
    try:
        raw = base64.b64decode(token, validate=True)
    except ValueError:
        raise bad
    if not raw.startswith(_TOKEN_MAGIC):
        raise bad
    try:
        d = json.loads(raw[len(_TOKEN_MAGIC):].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise bad
    _, key = _describe_token(region, names, 0)
    if (not isinstance(d, dict) or d.get("k") != key or not isinstance(d.get("o"), int)
            or isinstance(d.get("o"), bool) or not 0 < d["o"] <= ngroups):
        raise bad
    return d["o"]


def op_describe_groups(cloud, params, region, rid):
    """Pages by groups (MaxRecords, default 50, at most 100), every group with all its
    instances, however many: the answer runs to megabytes for a large fleet, as on AWS."""
    names = q_members(params, "AutoScalingGroupNames")
    if any(k.startswith("Filters.") for k in params):
        raise AwsError("ValidationError", "fakecloud: Filters are not supported")
    include = q_bool(params, "IncludeInstances", "includeInstances")
    max_records = q_int(params, "MaxRecords", "maxRecords")
    if max_records is not None and not 1 <= max_records <= 100:
        raise AwsError("ValidationError", f"1 validation error detected: Value '{max_records}' "
                       "at 'maxRecords' failed to satisfy constraint: Member must have value "
                       "less than or equal to 100 and greater than or equal to 1")
    # "By default, you can only specify up to 50 names. You can optionally increase this limit
    # using the MaxRecords property."
    limit = max(50, max_records or 0)
    if len(names) > limit:
        raise AwsError("ValidationError",
                       f"The number of group names that may be passed in is limited to {limit}")
    if max_records is None:
        max_records = 50
    groups = sorted((a for a in cloud.asgs.values() if a.region == region), key=lambda a: a.name)
    if names:
        wanted = set(names)
        groups = [a for a in groups if a.name in wanted]
    start = 0
    token = params.get("NextToken")
    if token:
        start = _describe_offset(token, region, names, len(groups))
    page = groups[start:start + max_records]
    i1, i2, i3 = DESCRIBE_INDENT, 2 * DESCRIBE_INDENT, 3 * DESCRIBE_INDENT
    out = [f'<DescribeAutoScalingGroupsResponse xmlns="{AS_NS}">',
           f"{i1}<DescribeAutoScalingGroupsResult>"]
    if page:
        out.append(f"{i2}<AutoScalingGroups>")
        out += [group_xml(a, i3, include is not False) for a in page]
        out.append(f"{i2}</AutoScalingGroups>")
    else:
        out.append(f"{i2}<AutoScalingGroups/>")
    if start + max_records < len(groups):
        out.append(_x("NextToken", _describe_token(region, names, start + max_records)[0], i2))
    out += [f"{i1}</DescribeAutoScalingGroupsResult>", f"{i1}<ResponseMetadata>",
            f"{i2}<RequestId>{rid}</RequestId>", f"{i1}</ResponseMetadata>",
            "</DescribeAutoScalingGroupsResponse>", ""]
    return "\n".join(out)


def _b64d(s):
    try:
        return base64.b64decode(s, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


def op_set_desired(cloud, params, region, rid):
    asg = q_group(cloud, params, region)
    d = q_int(params, "DesiredCapacity", "desiredCapacity", required=True)
    q_bool(params, "HonorCooldown", "honorCooldown")
    if d > asg.max:
        raise AwsError("ValidationError", f"New SetDesiredCapacity value {d} is above max value "
                       f"{asg.max} for the AutoScalingGroup.")
    if d < asg.min:
        raise AwsError("ValidationError", f"New SetDesiredCapacity value {d} is below min value "
                       f"{asg.min} for the AutoScalingGroup.")
    asg.desired = d
    return query_response("SetDesiredCapacity", None, rid, has_result=False)


def op_update_group(cloud, params, region, rid):
    asg = q_group(cloud, params, region)
    mn = q_int(params, "MinSize", "minSize")
    mx = q_int(params, "MaxSize", "maxSize")
    d = q_int(params, "DesiredCapacity", "desiredCapacity")
    prot = q_bool(params, "NewInstancesProtectedFromScaleIn", "newInstancesProtectedFromScaleIn")
    for v, f in ((mn, "minSize"), (mx, "maxSize"), (d, "desiredCapacity")):
        if v is not None and v < 0:
            raise AwsError("ValidationError", f"1 validation error detected: Value '{v}' at "
                           f"'{f}' failed to satisfy constraint: Member must have value greater "
                           "than or equal to 0")
    new_min = asg.min if mn is None else mn
    new_max = asg.max if mx is None else mx
    if new_min > new_max:
        raise AwsError("ValidationError", f"Max bound, {new_max}, must be greater than or equal "
                       f"to min bound, {new_min}")
    new_d = asg.desired
    if d is not None:
        new_d = d
    elif mn is not None and new_d < mn:
        new_d = mn  # documented: a larger MinSize without DesiredCapacity raises desired
    elif mx is not None and new_d > mx:
        new_d = mx
    if not new_min <= new_d <= new_max:
        raise AwsError("ValidationError", f"Desired capacity:{new_d} must be between the "
                       f"specified min size:{new_min} and max size:{new_max}")
    asg.min, asg.max, asg.desired = new_min, new_max, new_d
    if prot is not None:
        asg.protect_new = prot
    return query_response("UpdateAutoScalingGroup", None, rid, has_result=False)


def op_set_protection(cloud, params, region, rid):
    asg = q_group(cloud, params, region)
    ids = q_members(params, "InstanceIds")
    prot = q_bool(params, "ProtectedFromScaleIn", "protectedFromScaleIn", required=True)
    if not ids or len(ids) > 50:
        raise AwsError("ValidationError", "InstanceIds must hold 1 to 50 instance ids")
    found = []
    for iid in ids:
        inst = next((i for i in asg.instances if i.id == iid), None)
        if inst is None:
            raise AwsError("ValidationError",
                           f"The instance {iid} is not part of Auto Scaling group {asg.name}.")
        found.append(inst)
    for inst in found:
        inst.protected = prot
    return query_response("SetInstanceProtection", None, rid)


SCALING_PROCESSES = ("Launch", "Terminate", "AddToLoadBalancer", "AlarmNotification",
                     "AZRebalance", "HealthCheck", "InstanceRefresh", "ReplaceUnhealthy",
                     "ScheduledActions")


def op_suspend_processes(cloud, params, region, rid):
    """SuspendProcesses: the named processes (none named: all of them) suspended, as
    DescribeAutoScalingGroups then lists them."""
    asg = q_group(cloud, params, region)
    names = q_members(params, "ScalingProcesses") or list(SCALING_PROCESSES)
    for n in names:
        if n not in SCALING_PROCESSES:
            raise AwsError("ValidationError", f"Invalid processes: [{n}]")
    for n in names:
        asg.suspended.setdefault(n, cloud.now())
    return query_response("SuspendProcesses", None, rid, has_result=False)


def op_terminate_instance(cloud, params, region, rid):
    iid = params.get("InstanceId")
    if not iid:
        raise AwsError("ValidationError", "1 validation error detected: Value null at "
                       "'instanceId' failed to satisfy constraint: Member must not be null")
    if len(iid) > 19:
        raise AwsError("ValidationError", f"1 validation error detected: Value '{iid}' at "
                       "'instanceId' failed to satisfy constraint: Member must have length "
                       "less than or equal to 19")
    dec = q_bool(params, "ShouldDecrementDesiredCapacity", "shouldDecrementDesiredCapacity",
                 required=True)
    inst = cloud.find_instance(iid, region)
    if inst is not None and inst in inst.asg.warm:
        raise AwsError("ValidationError", f"fakecloud: {iid} is in the warm pool of "
                       f"{inst.asg.name}: pool instances are not terminated through the group "
                       "(ABANDON their lifecycle action, or shrink the pool)")
    # An instance already on its way out is no longer "managed": same answer as a gone one.
    if inst is None or inst.state not in fake_warm.LIVE:
        raise AwsError("ValidationError",
                       f"Instance Id not found - No managed instance found for instance ID {iid}")
    asg = inst.asg
    before = asg.desired
    if dec:
        if asg.desired <= asg.min:
            raise AwsError("ValidationError", f"Currently, desiredSize equals minSize "
                           f"({asg.min}). Terminating instance without replacement will violate "
                           "group's min size constraint. Either set shouldDecrementDesiredCapacity "
                           "flag to false or lower group's min size.")
        asg.desired -= 1
    cloud.mark_terminating(inst, "api")
    inst.terminated_by_api = True
    t = cloud.now()
    if dec:
        cause = (f"At {iso(t)} instance {iid} was taken out of service in response to a user "
                 f"request, shrinking the capacity from {before} to {asg.desired}.")
    else:
        cause = (f"At {iso(t)} instance {iid} was taken out of service in response to a user "
                 "request.")
    details = json.dumps({"Subnet ID": "subnet-0fa4e00000000000a", "Availability Zone": inst.az})
    act = [el("ActivityId", str(uuid.uuid4())), el("AutoScalingGroupName", asg.name),
           el("Description", f"Terminating EC2 instance: {iid}"), el("Cause", cause),
           el("StartTime", iso(t, ms=True)), el("StatusCode", "InProgress"), el("Progress", 0),
           el("Details", details)]
    return query_response("TerminateInstanceInAutoScalingGroup", [el("Activity", act)], rid)


QUERY_OPS = {"DescribeAutoScalingGroups": op_describe_groups,
             "SetDesiredCapacity": op_set_desired,
             "UpdateAutoScalingGroup": op_update_group,
             "SetInstanceProtection": op_set_protection,
             "SuspendProcesses": op_suspend_processes,
             "TerminateInstanceInAutoScalingGroup": op_terminate_instance}
fake_warm.bind(globals())
QUERY_OPS.update(fake_warm.QUERY_OPS)


# ---- CloudFormation (Query, under the lock) ---------------------------------------------------

CFN_NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"


def op_signal_resource(cloud, params, region, rid):
    """SignalResource: recorded per stack and logical resource (what a CreationPolicy or
    WaitOnResourceSignals waits for); a stack must have been declared with set_stack."""
    stack, logical = params.get("StackName"), params.get("LogicalResourceId")
    unique, status = params.get("UniqueId"), params.get("Status")
    for name, v in (("StackName", stack), ("LogicalResourceId", logical),
                    ("UniqueId", unique), ("Status", status)):
        if not v:
            raise AwsError("ValidationError", f"1 validation error detected: Value null at "
                           f"'{name[0].lower() + name[1:]}' failed to satisfy constraint: "
                           "Member must not be null")
    if status not in ("SUCCESS", "FAILURE"):
        raise AwsError("ValidationError", f"1 validation error detected: Value '{status}' at "
                       "'status' failed to satisfy constraint: Member must satisfy enum value "
                       "set: [SUCCESS, FAILURE]")
    st = cloud.stacks.get(stack)
    if st is None:
        raise AwsError("ValidationError", f"Stack with id {stack} does not exist")
    if logical not in st["resources"]:
        raise AwsError("ValidationError", f"Resource {logical} does not exist for stack "
                       f"{stack}")
    st["signals"].append({"resource": logical, "unique_id": unique, "status": status,
                          "t": cloud.now()})
    return query_response("SignalResource", None, rid, has_result=False, ns=CFN_NS)


CFN_OPS = {"SignalResource": op_signal_resource}


# ---- JSON services (under the lock) --------------------------------------------------------

def secret_suffix(name):
    return hashlib.sha256(name.encode()).hexdigest()[:6]


def sm_get_secret_value(cloud, body, region):
    sid = body.get("SecretId")
    if not isinstance(sid, str) or not sid:
        raise AwsError("ValidationException", "1 validation error detected: Value null at "
                       "'secretId' failed to satisfy constraint: Member must not be null")
    name = sid
    if sid.startswith("arn:"):
        m = re.fullmatch(r"arn:aws[a-z-]*:secretsmanager:[^:]*:\d{12}:secret:(.+)", sid)
        name = m.group(1) if m else ""
        if name not in cloud.secrets and len(name) > 7 and name[-7] == "-" \
                and secret_suffix(name[:-7]) == name[-6:]:
            name = name[:-7]
    sec = cloud.secrets.get(name)
    if sec is None:
        raise AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified "
                       "secret.")
    stage = body.get("VersionStage")
    if stage is not None and stage != "AWSCURRENT":
        raise AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified "
                       f"secret value for staging label: {stage}")
    vid = body.get("VersionId")
    if vid is not None and vid != sec["version_id"]:
        raise AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified "
                       f"secret value for VersionId: {vid}")
    out = {"ARN": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-{secret_suffix(name)}",
           "Name": name, "VersionId": sec["version_id"], "VersionStages": ["AWSCURRENT"],
           "CreatedDate": round(sec["created"], 3)}
    if sec.get("binary") is not None:
        out["SecretBinary"] = sec["binary"]
    else:
        out["SecretString"] = sec["string"]
    return out


def ssm_get_parameter(cloud, body, region):
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise AwsError("ValidationException", "1 validation error detected: Value null at "
                       "'name' failed to satisfy constraint: Member must not be null")
    decrypt = body.get("WithDecryption", False)
    if not isinstance(decrypt, bool):
        raise AwsError("SerializationException", "WithDecryption must be a boolean")
    m = re.fullmatch(r"arn:aws[a-z-]*:ssm:[^:]*:\d{12}:parameter(/.*)", name)
    if m:
        name = m.group(1)
        if name.count("/") == 1 and name[1:] in cloud.params:
            name = name[1:]
    version = None
    m = re.fullmatch(r"(.+):(\d{1,9})", name)
    if m and m.group(1) in cloud.params:
        name, version = m.group(1), int(m.group(2))
    p = cloud.params.get(name)
    if p is None:
        raise AwsError("ParameterNotFound", None)
    if version is not None and version != p["version"]:
        raise AwsError("ParameterVersionNotFound", f"Systems Manager could not find version "
                       f"{version} of {name}. Verify the version and try again.")
    value = p["value"]
    if p["type"] == "SecureString" and not decrypt:
        # Without decryption AWS hands back ciphertext: model it as an opaque blob.
        value = base64.b64encode(b"fakecloud-kms:" + hashlib.sha256(value.encode()).digest()
                                 ).decode()
    arn_name = name if name.startswith("/") else "/" + name
    return {"Parameter": {"Name": name, "Type": p["type"], "Value": value,
                          "Version": p["version"], "LastModifiedDate": round(p["modified"], 3),
                          "ARN": f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{arn_name}",
                          "DataType": "text"}}


DDB_TARGET_PREFIX = "DynamoDB_20120810."
S3_NO_SUCH_KEY = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                  '<Message>The specified key does not exist.</Message><Key>{key}</Key>'
                  '<RequestId>{rid}</RequestId></Error>')
S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            '<Message>{message}</Message><RequestId>{rid}</RequestId></Error>')
BLOB_MAX = 64 << 20

JSON_TARGETS = {"secretsmanager.GetSecretValue": ("secretsmanager", "GetSecretValue",
                                                  sm_get_secret_value),
                "AmazonSSM.GetParameter": ("ssm", "GetParameter", ssm_get_parameter)}


# ---- HTTP ----------------------------------------------------------------------------------

IMDS_HTML = ('<?xml version="1.0" encoding="iso-8859-1"?>\n'
             '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
             '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
             '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
             " <head>\n  <title>{s} - {r}</title>\n </head>\n <body>\n"
             "  <h1>{s} - {r}</h1>\n </body>\n</html>\n")
IMDS_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                405: "Method Not Allowed"}


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    # "main": everything; "tls": the world's HTTPS names; "imds": the main identity's IMDS
    kind = "main"

    def __init__(self, addr, handler, cloud, identity=None, kind="main"):
        self.cloud = cloud
        self.identity = identity  # None: the main port; else an instance's own IMDS listener
        self.kind = kind
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)


class TlsFakeServer(FakeServer):
    """HTTPS: the handshake happens in the request's own thread, so a slow client never holds
    up accept()."""

    def __init__(self, addr, handler, cloud, ctx):
        self.ctx = ctx
        super().__init__(addr, handler, cloud, kind="tls")

    def finish_request(self, request, client_address):
        try:
            request.settimeout(Handler.timeout)
            request = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as e:
            log(f"TLS handshake with {client_address}: {e}")
            return
        try:
            super().finish_request(request, client_address)
        finally:
            try:
                request.close()
            except OSError:
                pass


class BodyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
    # client's delayed ACK adds ~40 ms to every response.
    disable_nagle_algorithm = True
    server_version = "fakecloud"
    sys_version = ""
    timeout = 60
    max_body = MAX_BODY_DEFAULT
    entry = None   # the request-log entry of the current request (None: not logged)
    _fault = None  # the fault shaping the current response

    # -- plumbing --
    def log_message(self, fmt, *args):
        if VERBOSE:
            log(f"{self.address_string()} {fmt % args}")

    def handle_expect_100(self):
        self.entry, self._fault = None, None
        cl = self.headers.get("Content-Length", "")
        if cl.isdigit() and int(cl) > self.max_body:
            self._plain(413, "request body too large")
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise BodyError(501, "unsupported Transfer-Encoding")
            return self._read_chunked()
        cl = self.headers.get_all("Content-Length") or []
        if not cl:
            return b""
        if len(cl) > 1 or not cl[0].strip().isdigit() or len(cl[0].strip()) > 15:
            raise BodyError(400, "bad Content-Length")
        n = int(cl[0])
        if n > self.max_body:
            raise BodyError(413, "request body too large")
        body = self.rfile.read(n)
        if len(body) != n:
            raise BodyError(400, "short body")
        return body

    def _read_chunked(self):
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            size_s = line.split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_s):
                raise BodyError(400, "bad chunk")
            size = int(size_s, 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > self.max_body:
                raise BodyError(413, "request body too large")
            out += self.rfile.read(size)
            self.rfile.readline(16)

    def _send(self, status, body, ctype, headers=None):
        """Every response goes through here: applies the shaping of the current fault."""
        f = self._fault.spec if self._fault else {}
        if isinstance(body, str):
            body = body.encode("utf-8")
        want = f.get("oversize_bytes")
        if want and len(body) < want:
            body += b" " * (want - len(body))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if f.get("retry_after") is not None:
            self.send_header("Retry-After", str(f["retry_after"]))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Log before the client can see the response: a test that asks for the request log
        # right after its call must find that call there.
        self._record(status)
        self.end_headers()
        if self.command == "HEAD":
            return
        bps = f.get("slow_bps")
        try:
            if bps:
                step = max(1, bps // 20)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(step / bps)  # the fault itself: trickle the body
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _record(self, status):
        e, self.entry = self.entry, None
        if e is not None:
            e["status"] = status
            self.server.cloud.record(e)
            if VERBOSE:
                log(f"{e.get('service')}:{e.get('op')} -> {status}")

    def _plain(self, status, message):
        self._send(status, json.dumps({"message": message}), "application/json")

    def _json(self, status, obj):
        self._send(status, json.dumps(obj, indent=None), "application/json")

    def _dispatch(self):
        self.entry = None
        self._fault = None
        cloud = self.server.cloud
        raw_path, _, self.query = self.path.partition("?")
        self.rpath = raw_path
        try:
            try:
                self.body = self._read_body()
            except BodyError as e:
                self.close_connection = True
                self._plain(e.status, str(e))
                return
            if self.server.identity is not None or self.server.kind == "imds":
                if raw_path.startswith("/latest/"):
                    self._imds(self.server.identity or cloud.main_identity)
                else:
                    self._imds_status(404)
                return
            if raw_path.startswith("/_fake/"):
                # The world's HTTPS names offer only the stand-in agent's side door.
                if self.server.kind == "tls" and not (raw_path.startswith("/_fake/agent/")
                                                      or raw_path == "/_fake/note"):
                    self._plain(404, "fakecloud: no such route")
                    return
                self._control(raw_path[len("/_fake/"):])
                return
            if raw_path.startswith("/latest/"):
                self._imds(cloud.main_identity)
            elif raw_path.startswith("/api/"):
                self._runner()
            elif self.headers.get("X-Amz-Target") is not None:
                self._aws_json()
            elif self.command in ("POST", "GET") and (self.body or "Action=" in self.query):
                self._aws_query()
            elif self.server.kind == "tls" and self.command in ("GET", "HEAD"):
                self._blob()
            else:
                self._plain(404, "fakecloud: no such route")
        except Exception:  # a bug in the fake must not look like a hung peer
            log("internal error:\n" + traceback.format_exc())
            self.close_connection = True
            try:
                self._plain(500, "fakecloud internal error")
            except OSError:
                pass
        finally:
            self._record(None)  # no response: dropped by a close fault

    def _new_entry(self, service, op, listener=None):
        self.entry = {"t": time.time(), "listener": listener or self.server.kind,
                      "method": self.command, "path": self.rpath, "service": service, "op": op,
                      "host": self.headers.get("Host")}
        return self.entry

    def _apply_fault(self, keys, proto, instance_id=None):
        """True when the fault answered (or dropped) the request itself."""
        f = self.server.cloud.take_fault(keys, instance_id)
        if f is None:
            return False
        self.entry["fault"] = f.id
        spec = f.spec
        if spec.get("delay_s"):
            time.sleep(spec["delay_s"])  # the fault itself: a slow upstream
        if spec.get("close"):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        self._fault = f
        if not any(k in spec for k in ("status", "code", "body")):
            return False
        status = spec.get("status") or (400 if spec.get("code") else 500)
        code, msg = spec.get("code"), spec.get("message")
        ctype = spec.get("content_type")
        rid = str(uuid.uuid4())
        hdrs = {"x-amzn-RequestId": rid} if proto in ("query", "json") else {}
        if spec.get("body") is not None:
            default_ct = {"query": "text/xml", "json": "application/x-amz-json-1.1",
                          "runner": "application/json", "imds": "text/plain",
                          "blob": "application/xml"}[proto]
            self._send(status, spec["body"], ctype or default_ct, hdrs)
        elif proto == "query":
            code = code or ("ServiceUnavailable" if status == 503 else
                            "InternalFailure" if status >= 500 else "Throttling")
            msg = msg if msg is not None else ("Rate exceeded" if code == "Throttling" else code)
            self._send(status, query_error_xml(code, msg, rid, status), ctype or "text/xml", hdrs)
        elif proto == "json":
            code = code or ("InternalFailure" if status >= 500 else "ThrottlingException")
            obj = {"__type": code}
            obj["message"] = msg if msg is not None else (
                "Rate exceeded" if code == "ThrottlingException" else code)
            self._send(status, json.dumps(obj), ctype or "application/x-amz-json-1.1", hdrs)
        elif proto == "runner":
            msg = msg if msg is not None else http.client.responses.get(status, "error")
            self._send(status, json.dumps({"message": msg}), ctype or "application/json")
        elif proto == "blob":
            code = code or ("InternalError" if status >= 500 else "AccessDenied")
            self._send(status, S3_ERROR.format(code=xesc(code), message=xesc(msg or code),
                                               rid=rand_str(16)),
                       ctype or "application/xml")
        else:
            self._imds_status(status)
        return True

    # -- IMDS --
    def _imds_status(self, status):
        reason = IMDS_REASONS.get(status, http.client.responses.get(status, "Error"))
        self._send(status, IMDS_HTML.format(s=status, r=reason), "text/html")

    def _imds(self, ident):
        cloud = self.server.cloud
        listener = None if self.server.identity is None else ident.instance_id
        rel = self.rpath[len("/latest/"):]
        if rel == "api/token":
            e = self._new_entry("imds", "token", listener)
            e["instance_id"] = ident.instance_id
            if self.command != "PUT":
                self._imds_status(405)
                return
            if self.headers.get("X-Forwarded-For") is not None:
                self._imds_status(403)  # IMDS refuses token requests that went through a proxy
                return
            ttl_s = (self.headers.get("X-aws-ec2-metadata-token-ttl-seconds") or "").strip()
            if not re.fullmatch(r"\d{1,5}", ttl_s) or not 1 <= int(ttl_s) <= 21600:
                self._imds_status(400)
                return
            if self._apply_fault(["imds:token"], "imds", ident.instance_id):
                return
            ttl = int(ttl_s)
            token = base64.urlsafe_b64encode(os.urandom(42)).decode()
            with cloud.lock:
                now = cloud.now()
                for t in [t for t, exp in ident.tokens.items() if exp <= now]:
                    del ident.tokens[t]
                while len(ident.tokens) >= TOKENS_KEEP:
                    del ident.tokens[next(iter(ident.tokens))]
                ident.tokens[token] = now + ttl
            self._send(200, token, "text/plain",
                       {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
            return
        creds_path = rel.startswith("meta-data/iam/security-credentials")
        keys = ["imds:" + rel] + (["imds:credentials"] if creds_path else [])
        e = self._new_entry("imds", "credentials" if creds_path else rel, listener)
        e["instance_id"] = ident.instance_id
        if self.command != "GET":
            self._imds_status(405)
            return
        token = self.headers.get("X-aws-ec2-metadata-token")
        with cloud.lock:
            exp = ident.tokens.get(token) if token else None
            valid = exp is not None and exp > cloud.now()
        e["token_used"] = token is not None
        if not valid:
            self._imds_status(401)  # HttpTokens=required: no v1, no expired or foreign tokens
            return
        if self._apply_fault(keys, "imds", ident.instance_id):
            return
        with cloud.lock:
            status, body = self._imds_item(cloud, ident, rel)
        if status != 200:
            self._imds_status(status)
        else:
            self._send(200, body, "text/plain")

    def _imds_item(self, cloud, ident, rel):
        if rel == "meta-data/instance-id":
            return 200, ident.instance_id
        if rel == "meta-data/placement/region":
            return 200, ident.region
        if rel == "meta-data/placement/availability-zone":
            return 200, ident.az
        if rel in ("meta-data", "meta-data/"):
            items = ["ami-id", "autoscaling/", "events/", "iam/", "instance-id", "instance-type",
                     "placement/", "spot/"]
            return 200, "\n".join(items)
        if rel == "meta-data/instance-type":
            return 200, "t3.micro"
        if rel == "meta-data/local-ipv4":
            return 200, ident.local_ipv4
        if rel == "meta-data/public-ipv4":
            return (200, ident.public_ipv4) if ident.public_ipv4 else (404, None)
        if rel == "meta-data/ami-id":
            return 200, "ami-0fa4e000000000001"
        if rel in ("meta-data/iam/security-credentials", "meta-data/iam/security-credentials/"):
            return (200, ident.role) if ident.role else (404, None)
        if rel.startswith("meta-data/iam/security-credentials/"):
            role = rel[len("meta-data/iam/security-credentials/"):]
            if not ident.role or role != ident.role:
                return 404, None
            c = cloud.issue_credentials(ident)
            if self.entry is not None:  # which session this answer handed out, until when
                self.entry.update(issued_akid=c.akid, expiration=c.expiry)
            return 200, json.dumps({"Code": "Success", "LastUpdated": iso(c.issued),
                                    "Type": "AWS-HMAC", "AccessKeyId": c.akid,
                                    "SecretAccessKey": c.secret, "Token": c.token,
                                    "Expiration": iso(c.expiry)}, indent=2)
        if rel == "meta-data/autoscaling/target-lifecycle-state":
            s = ident.target_lifecycle_state
            return (200, s) if s else (404, None)
        if rel == "meta-data/spot/instance-action":
            s = ident.spot_action
            return (200, json.dumps(s)) if s else (404, None)
        if rel == "meta-data/events/recommendations/rebalance":
            s = ident.rebalance
            return (200, json.dumps(s)) if s else (404, None)
        if rel == "user-data":
            s = ident.user_data
            return (200, s) if s is not None else (404, None)
        return 404, None

    # -- SigV4 --
    def _verify(self, service):
        cloud = self.server.cloud
        r = AuthResult()
        auth = self.headers.get_all("Authorization") or []
        if not auth:
            return r.fail("missing", "Request is missing Authentication Token")
        m = AUTH_RE.match(auth[0].strip()) if len(auth) == 1 else None
        if not m:
            return r.fail("incomplete", "Authorization header requires 'Credential', "
                          "'Signature' and 'SignedHeaders' parameters (AWS4-HMAC-SHA256).")
        akid, scope_date, region, scope_service, signed_s, sig = m.groups()
        r.akid, r.region = akid, region
        signed = signed_s.split(";")
        headers = {}
        for name in set(signed) | {"host", "x-amz-date", "x-amz-security-token"}:
            vals = self.headers.get_all(name)
            if vals:
                headers[name] = vals
        token_hdr = headers.get("x-amz-security-token")
        r.token_used = token_hdr is not None
        if "" in signed or signed != sorted(set(signed)):
            return r.fail("mismatch", "SignedHeaders must be unique, lower-case and sorted: "
                          + signed_s)
        if "host" not in signed or "host" not in headers:
            return r.fail("incomplete", "'Host' must be a 'SignedHeader' in the AWS "
                          "Authorization.")
        amz = headers.get("x-amz-date")
        if not amz:
            return r.fail("incomplete", "Authorization header requires existence of either "
                          "a 'X-Amz-Date' or a 'Date' header.")
        if "x-amz-date" not in signed:
            return r.fail("incomplete", "'X-Amz-Date' must be a 'SignedHeader' in the AWS "
                          "Authorization.")
        amzdate = amz[0].strip()
        try:
            when = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            return r.fail("incomplete", "X-Amz-Date must be in the ISO8601 Long Format "
                          "(yyyyMMdd'T'HHmmss'Z')")
        missing = [n for n in signed if n not in headers]
        if missing:
            return r.fail("mismatch", "The request signature we calculated does not match the "
                          "signature you provided: signed header(s) not sent: "
                          + ", ".join(missing))
        if scope_service != service:
            return r.fail("mismatch",
                          f"Credential should be scoped to correct service: '{service}'. ")
        if scope_date != amzdate[:8]:
            return r.fail("mismatch", "Date in Credential scope does not match YYYYMMDD from "
                          f"ISO-8601 version of date from HTTP: '{scope_date}' != "
                          f"'{amzdate[:8]}', from '{amzdate}'.")
        now = time.time()
        if when < now - SKEW_S:
            return r.fail("mismatch", f"Signature expired: {amzdate} is now earlier than "
                          f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now - SKEW_S))} "
                          f"({time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))} - 5 min.)")
        if when > now + SKEW_S:
            return r.fail("mismatch", f"Signature not yet current: {amzdate} is still later "
                          f"than {time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now + SKEW_S))} "
                          f"({time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))} + 5 min.)")
        with cloud.lock:
            static = cloud.static_creds.get(akid)
            sess = cloud.sessions.get(akid)
            fake_now = cloud.now()
        token = token_hdr[0].strip() if token_hdr else None
        if static is not None:
            secret, want_token = static
        elif sess is not None:
            secret, want_token = sess.secret, sess.token
            r.caller_instance = sess.instance_id
        else:
            return r.fail("unknown_key", "The security token included in the request is "
                          "invalid.")
        if want_token is not None or token is not None:
            if token is None or token != want_token or len(token_hdr) != 1:
                return r.fail("unknown_key", "The security token included in the request is "
                              "invalid.")
            if "x-amz-security-token" not in signed:
                return r.fail("incomplete", "'X-Amz-Security-Token' must be a 'SignedHeader' "
                              "in the AWS Authorization (fakecloud rule).")
        if sess is not None and static is None and sess.expiry <= fake_now:
            return r.fail("expired_token", "The security token included in the request is "
                          "expired")
        creq = canonical_request(self.command, self.rpath, self.query, headers, signed,
                                 self.body)
        want = sigv4_signature(creq, amzdate, scope_date, region, service, secret)
        try:
            bc = botocore_signature(self.command, self.rpath, self.query, headers, signed,
                                    self.body, amzdate, akid, secret, region, service)
            r.botocore_agrees = None if bc is None else bc == want
        except Exception as e:  # the second opinion must never break the first
            log(f"botocore cross-check failed: {e!r}")
        if not hmac.compare_digest(want, sig):
            return r.fail("mismatch", "The request signature we calculated does not match the "
                          "signature you provided. Check your AWS Secret Access Key and signing "
                          "method. Consult the service documentation for details.")
        r.ok = True
        return r

    def _auth_log(self, r):
        e = self.entry
        e.update(akid=r.akid, token_used=r.token_used, signature_ok=r.ok,
                 auth_error=None if r.ok else r.kind, botocore_agrees=r.botocore_agrees,
                 caller_instance=r.caller_instance, region=r.region)

    # -- Auto Scaling (Query) --
    def _query_error(self, status, code, message):
        rid = str(uuid.uuid4())
        if self.entry is not None:
            self.entry["error"] = code
        self._send(status, query_error_xml(code, message, rid, status), "text/xml",
                   {"x-amzn-RequestId": rid})

    def _aws_query(self):
        cloud = self.server.cloud
        # Two Query services: CloudFormation (by its host name), Auto Scaling (the rest).
        host = (self.headers.get("Host") or "").split(":")[0]
        service = "cloudformation" if host.startswith("cloudformation.") else "autoscaling"
        ops = CFN_OPS if service == "cloudformation" else QUERY_OPS
        e = self._new_entry(service, None)
        params = {}
        try:
            text = self.body.decode("utf-8")
            pairs = parse_qsl(self.query, keep_blank_values=True, max_num_fields=1000)
            pairs += parse_qsl(text, keep_blank_values=True, max_num_fields=1000)
        except (UnicodeDecodeError, ValueError):
            self._query_error(400, "MalformedQueryString", "The query string is malformed.")
            return
        for k, v in pairs:
            params[k] = v
        action = params.get("Action")
        e["op"] = action
        e["params"] = params
        r = self._verify(service)
        self._auth_log(r)
        if not r.ok:
            code, status = QUERY_AUTH[r.kind]
            self._query_error(status, code, r.message)
            return
        if not action:
            self._query_error(400, "MissingAction", "Could not find operation: no Action.")
            return
        if self._apply_fault([f"{service}:{action}"], "query"):
            return
        op = ops.get(action)
        if op is None:
            self._query_error(400, "InvalidAction",
                              f"The action {action} is not valid for this web service.")
            return
        rid = str(uuid.uuid4())
        try:
            with cloud.lock:
                xml = op(cloud, params, r.region, rid)
                cloud.bump()
        except AwsError as err:
            self._query_error(err.status, err.code, err.message)
            return
        self._send(200, xml, "text/xml", {"x-amzn-RequestId": rid})

    # -- Secrets Manager / SSM (JSON 1.1) --
    def _json_error(self, status, code, message):
        rid = str(uuid.uuid4())
        if self.entry is not None:
            self.entry["error"] = code
        obj = {"__type": code}
        if message is not None:
            obj["message"] = message
        self._send(status, json.dumps(obj), "application/x-amz-json-1.1",
                   {"x-amzn-RequestId": rid})

    def _aws_json(self):
        cloud = self.server.cloud
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith(DDB_TARGET_PREFIX) and cloud.ddb_upstream:
            self._dynamodb(target[len(DDB_TARGET_PREFIX):])
            return
        svc, op_name, fn = JSON_TARGETS.get(target, (None, target, None))
        e = self._new_entry(svc or target.split(".")[0], op_name)
        try:
            body = json.loads(self.body or b"{}")
            e["body"] = body
        except (ValueError, UnicodeDecodeError):
            body = None
        if fn is None:
            self._json_error(400, "UnknownOperationException", None)
            return
        r = self._verify(svc)
        self._auth_log(r)
        if not r.ok:
            code, status = JSON_AUTH[r.kind]
            self._json_error(status, code, r.message)
            return
        if not isinstance(body, dict):
            self._json_error(400, "SerializationException", "Start of structure or map found "
                             "where not expected." if body is not None else "Malformed JSON")
            return
        if self._apply_fault([f"{svc}:{op_name}"], "json"):
            return
        try:
            with cloud.lock:
                out = fn(cloud, body, r.region)
        except AwsError as err:
            self._json_error(err.status, err.code, err.message)
            return
        self._send(200, json.dumps(out), "application/x-amz-json-1.1",
                   {"x-amzn-RequestId": str(uuid.uuid4())})

    # -- DynamoDB: a real emulator answers, after our signature check and faults --
    def _dynamodb(self, op_name):
        cloud = self.server.cloud
        e = self._new_entry("dynamodb", op_name)
        try:
            e["body"] = json.loads(self.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            pass
        r = self._verify("dynamodb")
        self._auth_log(r)
        if not r.ok:
            code, status = JSON_AUTH[r.kind]
            self._json_error(status, code, r.message)
            return
        if self._apply_fault([f"dynamodb:{op_name}"], "json"):
            return
        host, port = cloud.ddb_upstream
        fwd = {k: v for k, v in self.headers.items()
               if k.lower() not in ("host", "connection", "content-length", "expect",
                                    "transfer-encoding", "keep-alive")}
        try:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("POST", "/", body=self.body, headers=fwd)
            resp = conn.getresponse()
            data = resp.read(MAX_BODY_DEFAULT + 1)
            status = resp.status
            ctype = resp.getheader("Content-Type") or "application/x-amz-json-1.0"
            hdrs = {k: resp.getheader(k) for k in ("x-amzn-RequestId", "x-amz-crc32")
                    if resp.getheader(k)}
            conn.close()
        except OSError as err:
            log(f"dynamodb upstream {host}:{port}: {err!r}")
            self._json_error(500, "InternalFailure", "fakecloud: the DynamoDB emulator is gone")
            return
        if status >= 400:
            try:
                e["error"] = json.loads(data).get("__type", "").rpartition("#")[2]
            except (ValueError, AttributeError):
                pass
        self._send(status, data, ctype, hdrs)

    # -- blobs: objects at https URLs, as S3 serves them --
    def _blob(self):
        cloud = self.server.cloud
        host = (self.headers.get("Host") or "").lower().rsplit(":443", 1)[0]
        e = self._new_entry("blob", host + self.rpath)
        if self._apply_fault([f"blob:{host}{self.rpath}"], "blob"):
            return
        with cloud.lock:
            b = cloud.blobs.get((host, self.rpath))
        if b is None:
            rid = rand_str(16)
            self._send(404, S3_NO_SUCH_KEY.format(key=xesc(self.rpath.lstrip("/")), rid=rid),
                       "application/xml", {"x-amz-request-id": rid})
            return
        data, ctype = b
        e["bytes"] = len(data)
        self._send(200, data, ctype,
                   {"ETag": '"' + hashlib.md5(data).hexdigest() + '"',  # noqa: S324 (S3's own)
                    "Accept-Ranges": "bytes"})

    # -- CircleCI Runner API v3 --
    def _runner(self):
        cloud = self.server.cloud
        path = self.rpath.rstrip("/")
        ops = {"/api/v3/runner/tasks": "tasks", "/api/v3/runner/tasks/running": "running",
               "/api/v3/runner": "list"}
        op = ops.get(path)
        e = self._new_entry("runner", op or path)
        if op is None:
            self._plain(404, "Not found")
            return
        if self.command != "GET":
            self._plain(405, "Method Not Allowed")
            return
        token = self.headers.get("Circle-Token")
        basic = self.headers.get("Authorization", "")
        if token is None and basic.startswith("Basic "):
            token = (_b64d(basic[6:].strip()) or "").partition(":")[0] or None
        e["circle_token"] = token
        with cloud.lock:
            scope = cloud.runner_tokens.get(token, False) if token else False
        if scope is False:
            self._plain(401, "Invalid token provided.")
            return
        try:
            q = dict(parse_qsl(self.query, keep_blank_values=True, max_num_fields=20))
        except ValueError:
            self._plain(400, "malformed query")
            return
        e["params"] = q
        rc = q.get("resource-class")
        ns = q.get("namespace")
        if op == "list":
            if not rc and not ns:
                self._plain(400, "One of resource-class or namespace is required.")
                return
        elif not rc:
            self._plain(400, "resource-class is required")
            return
        if self._apply_fault([f"runner:{op}"], "runner"):
            return
        with cloud.lock:
            # A token limited to some classes sees zeros elsewhere (what CircleCI seems to do).
            def visible(c):
                return scope is None or c in scope

            def count(state):
                if not visible(rc):
                    return 0
                return sum(1 for j in cloud.jobs.values()
                           if j["resource_class"] == rc and j["state"] == state)

            if op == "tasks":
                out = {"unclaimed_task_count": count("queued")}
            elif op == "running":
                out = {"running_runner_tasks": count("running")}
            else:
                items = [dict(x) for x in cloud.runners.values()
                         if visible(x["resource_class"])
                         and (x["resource_class"] == rc if rc else
                              x["resource_class"].startswith(ns + "/"))]
                out = {"items": items}
        self._json(200, out)

    # -- control --
    def _control(self, path):
        cloud = self.server.cloud
        method = self.command
        try:
            if method in ("POST", "PUT"):
                try:
                    body = json.loads(self.body or b"{}")
                except (ValueError, UnicodeDecodeError):
                    raise Bad("body is not JSON")
            else:
                body = None
            fn = CONTROL.get((method, path))
            if fn is None:
                self._json(404, {"error": f"no control route {method} /_fake/{path}"})
                return
            status, out = fn(self, cloud, body)
        except Bad as e:
            self._json(400, {"error": str(e)})
            return
        if status == 204:
            self._send(204, b"", "application/json")
        else:
            self._json(status, out)


# ---- control handlers ----------------------------------------------------------------------

def c_reset(h, cloud, body):
    validate(body, {})
    cloud.reset()
    return 200, {"ok": True}


def c_stack(h, cloud, body):
    """A CloudFormation stack whose resources take SignalResource."""
    b = validate(body, {"name": F(str, True, maxlen=128, pattern=r"^[A-Za-z][A-Za-z0-9-]*$"),
                        "resources": F(list, True, maxlen=50)})
    if not all(isinstance(r, str) and re.fullmatch(r"[A-Za-z0-9]{1,255}", r)
               for r in b["resources"]):
        raise Bad("resources: logical ids")
    with cloud.lock:
        cloud.stacks[b["name"]] = {"resources": list(b["resources"]), "signals": []}
        cloud.bump()
    return 200, {"ok": True}


def c_credentials(h, cloud, body):
    b = validate(body, {"akid": F(str, True, maxlen=128, pattern=r"^[A-Z0-9]{4,128}$"),
                        "secret": F(str, True, maxlen=256, pattern=r"^\S+$"),
                        "token": F(str, nullable=True, maxlen=4096, pattern=r"^\S+$")})
    with cloud.lock:
        cloud.static_creds[b["akid"]] = (b["secret"], b.get("token"))
        cloud.bump()
    return 200, {"ok": True}


def c_secret(h, cloud, body):
    b = validate(body, {"id": F(str, True, maxlen=512, pattern=r"^[\w/+=.@-]+$"),
                        "string": F(str, nullable=True, maxlen=65536),
                        "binary": F(str, maxlen=87384)})
    if "string" in b and "binary" in b:
        raise Bad("give string or binary, not both")
    if "string" not in b and "binary" not in b:
        raise Bad("string or binary: required (string null deletes)")
    if "binary" in b and _b64bytes(b["binary"]) is None:
        raise Bad("binary: must be base64")
    with cloud.lock:
        if "string" in b and b["string"] is None:
            cloud.secrets.pop(b["id"], None)
        else:
            cloud.secrets[b["id"]] = {"string": b.get("string"), "binary": b.get("binary"),
                                      "version_id": str(uuid.uuid4()), "created": cloud.now()}
        cloud.bump()
    return 200, {"ok": True}


def _b64bytes(s):
    try:
        return base64.b64decode(s, validate=True)
    except ValueError:
        return None


def c_parameter(h, cloud, body):
    b = validate(body, {"name": F(str, True, maxlen=2048, pattern=r"^[\w/.-]+$"),
                        "value": F(str, True, nullable=True, maxlen=8192),
                        "type": F(str, choices=("String", "StringList", "SecureString"))})
    with cloud.lock:
        if b["value"] is None:
            cloud.params.pop(b["name"], None)
        else:
            old = cloud.params.get(b["name"])
            cloud.params[b["name"]] = {"value": b["value"], "type": b.get("type", "SecureString"),
                                       "version": old["version"] + 1 if old else 1,
                                       "modified": cloud.now()}
        cloud.bump()
    return 200, {"ok": True}


def c_asg(h, cloud, body):
    b = validate(body, {
        "name": F(str, True, maxlen=255, pattern=r"^[\w.:/+=@-]+$"),
        "min": F(int, True, lo=0, hi=MAX_GROUP_INSTANCES),
        "max": F(int, True, lo=0, hi=MAX_GROUP_INSTANCES),
        "desired": F(int, lo=0, hi=MAX_GROUP_INSTANCES),
        "instances": F((int, list), lo=0, hi=MAX_GROUP_INSTANCES, maxlen=MAX_GROUP_INSTANCES),
        "instance_type": F(str, maxlen=64, pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"),
        "protect_new": F(bool), "launch_command": F(list, nullable=True),
        "launch_env": F(dict), "region": F(str, pattern=REGION_RE.pattern),
        "role": F(str, nullable=True, maxlen=64, pattern=r"^[\w+=,.@-]+$"),
        "tags": F(dict), "stop_grace_s": F((int, float), lo=0, hi=60),
        "user_data": F(str, nullable=True, maxlen=16384),
        "fail_boot": F(str, nullable=True, choices=FAIL_BOOT),
        "fail_boot_ticks": F(int, lo=1, hi=1000)})
    desired = b.get("desired", b["min"])
    if not b["min"] <= desired <= b["max"]:
        raise Bad("need min <= desired <= max")
    cmd = str_list(b["launch_command"], "launch_command") if b.get("launch_command") else None
    env = str_map(b["launch_env"], "launch_env") if "launch_env" in b else {}
    tags = str_map(b["tags"], "tags", maxitems=50) if "tags" in b else {}
    specs = []
    inst = b.get("instances", 0)
    if isinstance(inst, int):
        specs = [{}] * inst
    else:
        for s in inst:
            specs.append(validate(s, {
                "id": F(str, pattern=INSTANCE_ID_RE.pattern),
                "state": F(str, choices=("Pending", "InService")),
                "health": F(str, choices=("Healthy", "Unhealthy")),
                "protected": F(bool),
                "fail_boot": F(str, nullable=True, choices=FAIL_BOOT)}))
    # A launched instance owns a process and a listener: a few hundred at most. Plain records
    # (no launch_command) go to thousands, for large-fleet reads.
    if cmd and b.get("fail_boot"):
        raise Bad("fail_boot is for groups without a launch_command (a launched process fails "
                  "its boot by itself)")
    if cmd and (len(specs) > MAX_INSTANCES or b["max"] > MAX_INSTANCES):
        raise Bad(f"with a launch_command, at most {MAX_INSTANCES} instances (max too)")
    ids = [s["id"] for s in specs if "id" in s]
    with cloud.lock:
        if ids:
            others = {i.id for i in cloud.all_instances() if i.asg.name != b["name"]}
            if len(set(ids)) != len(ids) or others & set(ids):
                raise Bad("instance ids must be unique")
        old = cloud.asgs.pop(b["name"], None)
        if old is not None:  # replacing a group: its instances go away first
            for i in old.instances + old.warm:
                i.state, i.cause, i.ended_at = "Terminated", "replaced", cloud.now()
                cloud.terminated.append(i)
    if old is not None:
        for i in old.instances + old.warm:
            cloud._stop_instance(i, 0.5)
    with cloud.lock:
        asg = Asg(b["name"], b.get("region", DEFAULT_REGION), b["min"], b["max"], desired,
                  cloud.now())
        asg.protect_new = b.get("protect_new", False)
        asg.launch_command = cmd
        asg.launch_env = env
        if "role" in b:
            asg.role = b["role"]
        asg.tags = tags
        asg.stop_grace_s = float(b.get("stop_grace_s", 5.0))
        asg.user_data = b.get("user_data")
        asg.instance_type = b.get("instance_type", asg.instance_type)
        asg.fail_boot = b.get("fail_boot")
        asg.fail_boot_ticks = b.get("fail_boot_ticks", asg.fail_boot_ticks)
        cloud.asgs[asg.name] = asg
        for s in specs:
            i = cloud.launch(asg, state=s.get("state", "InService"), iid=s.get("id"),
                             protected=s.get("protected"))
            if "health" in s:
                i.health = s["health"]
            if "fail_boot" in s:
                i.fail_boot = s["fail_boot"]
        cloud.bump()
        return 200, asg.to_json()


def c_imds(h, cloud, body):
    b = validate(body, {
        "instance_id": F(str, pattern=INSTANCE_ID_RE.pattern),
        "region": F(str, pattern=REGION_RE.pattern),
        "availability_zone": F(str, pattern=r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$"),
        "role": F(str, nullable=True, maxlen=64, pattern=r"^[\w+=,.@-]+$"),
        "target_lifecycle_state": F(str, nullable=True, choices=LIFECYCLE_TARGETS),
        "spot_action": F(dict, nullable=True), "rebalance": F((dict, bool), nullable=True),
        "user_data": F(str, nullable=True, maxlen=16384),
        "credential_ttl_s": F(int, lo=1, hi=43200), "rotate_credentials": F(bool),
        "local_ipv4": F(str, pattern=r"^\d{1,3}(\.\d{1,3}){3}$"),
        "public_ipv4": F(str, nullable=True, pattern=r"^\d{1,3}(\.\d{1,3}){3}$"),
        "for_instance": F(str, pattern=INSTANCE_ID_RE.pattern)})
    spot = b.get("spot_action")
    if spot is not None:
        spot = validate(spot, {"action": F(str, True, choices=("terminate", "stop", "hibernate")),
                               "time": F(str, maxlen=32)})
    reb = b.get("rebalance")
    if isinstance(reb, dict):
        reb = validate(reb, {"noticeTime": F(str, maxlen=32)})
    elif reb is False:
        raise Bad("rebalance: true, an object or null")
    with cloud.lock:
        ident = cloud.main_identity
        if "for_instance" in b:
            inst = cloud.find_instance(b["for_instance"])
            if inst is None:
                raise Bad(f"no live instance {b['for_instance']}")
            ident = inst.identity
            if "instance_id" in b:
                raise Bad("instance_id cannot change for a launched instance")
        for k in ("instance_id", "region", "role", "target_lifecycle_state", "user_data",
                  "credential_ttl_s", "local_ipv4", "public_ipv4"):
            if k in b:
                setattr(ident, k, b[k])
        if "availability_zone" in b:
            ident.az = b["availability_zone"]
        elif "region" in b:
            ident.az = b["region"] + "a"
        if "spot_action" in b:
            ident.spot_action = None if spot is None else {
                "action": spot["action"], "time": spot.get("time", iso(cloud.now() + 120))}
        if "rebalance" in b:
            ident.rebalance = None if reb is None else {
                "noticeTime": (reb.get("noticeTime") if isinstance(reb, dict) else None)
                or iso(cloud.now())}
        if b.get("rotate_credentials") or "credential_ttl_s" in b:
            ident.creds = None
        cloud.bump()
    return 200, {"ok": True}


def c_runner_token(h, cloud, body):
    b = validate(body, {"token": F(str, True, maxlen=256, pattern=r"^\S+$"),
                        "resource_classes": F(list, nullable=True, maxlen=100)})
    rcs = b.get("resource_classes")
    if rcs is not None:
        rcs = set(str_list(rcs, "resource_classes", maxlen=100, itemlen=256))
    with cloud.lock:
        cloud.runner_tokens[b["token"]] = rcs
        cloud.bump()
    return 200, {"ok": True}


RC_PATTERN = r"^[a-z0-9_-]{1,64}/[A-Za-z0-9:_+-]{1,128}$"


def c_agent_token(h, cloud, body):
    b = validate(body, {"token": F(str, True, maxlen=256, pattern=r"^\S+$"),
                        "resource_class": F(str, True, pattern=RC_PATTERN)})
    with cloud.lock:
        cloud.agent_tokens[b["token"]] = b["resource_class"]
        cloud.bump()
    return 200, {"ok": True}


def c_jobs(h, cloud, body):
    b = validate(body, {"resource_class": F(str, True, pattern=RC_PATTERN),
                        "count": F(int, True, lo=1, hi=1000),
                        "duration_s": F((int, float), lo=0, hi=86400)})
    ids = []
    with cloud.lock:
        if len(cloud.jobs) + b["count"] > 100000:
            raise Bad("too many jobs")
        for _ in range(b["count"]):
            cloud.job_seq += 1
            jid = f"job-{cloud.job_seq}"
            cloud.jobs[jid] = {"id": jid, "resource_class": b["resource_class"],
                               "state": "queued", "duration_s": b.get("duration_s", 0),
                               "created": cloud.now(), "claimed_at": None, "runner_name": None,
                               "completed_at": None, "exit_code": None}
            ids.append(jid)
        cloud.bump()
    return 200, {"job_ids": ids}


def c_claim(h, cloud, body):
    b = validate(body, {"resource_class": F(str, True, pattern=RC_PATTERN),
                        "runner_name": F(str, True, maxlen=256, pattern=r"^[\w.()-]+$"),
                        "token": F(str, True, maxlen=256),
                        "hostname": F(str, maxlen=256), "version": F(str, maxlen=64)})
    with cloud.lock:
        if cloud.agent_tokens.get(b["token"]) != b["resource_class"]:
            return 401, {"message": "invalid bearer token"}
        now = cloud.now()
        key = f"{b['resource_class']}|{b['runner_name']}"
        r = cloud.runners.get(key)
        if r is None:
            if len(cloud.runners) >= 10000:
                raise Bad("too many runners")
            r = cloud.runners[key] = {"resource_class": b["resource_class"],
                                      "hostname": b.get("hostname", b["runner_name"]),
                                      "name": b["runner_name"], "first_connected": iso(now),
                                      "last_connected": iso(now), "last_used": iso(now),
                                      "version": b.get("version", "3.0.0-fake"),
                                      "ip": "127.0.0.1"}
        r["last_connected"] = iso(now)
        job = next((j for j in cloud.jobs.values()
                    if j["resource_class"] == b["resource_class"] and j["state"] == "queued"),
                   None)
        if job is None:
            cloud.bump()
            return 204, None
        job.update(state="running", claimed_at=now, runner_name=b["runner_name"])
        r["last_used"] = iso(now)
        cloud.bump()
        return 200, {"job_id": job["id"], "duration_s": job["duration_s"]}


def c_complete(h, cloud, body):
    b = validate(body, {"job_id": F(str, True, maxlen=64),
                        "exit_code": F(int, True, lo=-255, hi=255)})
    with cloud.lock:
        job = cloud.jobs.get(b["job_id"])
        if job is None:
            return 404, {"message": "no such job"}
        if job["state"] != "running":
            return 409, {"message": f"job is {job['state']}"}
        job.update(state="done", completed_at=cloud.now(), exit_code=b["exit_code"])
        cloud.bump()
    return 200, {"ok": True}


def c_note(h, cloud, body):
    b = validate(body, {"key": F(str, True, maxlen=128, pattern=r"^[\w.:/-]+$"),
                        "value": F((str, int, float, bool, list, dict), True, nullable=True)})
    if len(json.dumps(b["value"])) > 65536:
        raise Bad("value: too large (max 64 KiB as JSON)")
    with cloud.lock:
        if b["key"] not in cloud.notes and len(cloud.notes) >= 100:
            raise Bad("too many notes")
        cloud.notes[b["key"]] = b["value"]
        cloud.bump()
    return 200, {"ok": True}


def c_fault(h, cloud, body):
    b = validate(body, {"match": F(str, True, maxlen=200),
                        "status": F(int, lo=100, hi=599), "code": F(str, maxlen=128),
                        "message": F(str, maxlen=4096), "body": F(str, maxlen=1 << 20),
                        "content_type": F(str, maxlen=128, pattern=r"^[\w!#$&^.+-]+/[\w ;=.+-]+$"),
                        "delay_s": F((int, float), lo=0, hi=120),
                        "retry_after": F((int, str), lo=0, hi=86400, maxlen=64),
                        "slow_bps": F(int, lo=1, hi=100_000_000),
                        "oversize_bytes": F(int, lo=0, hi=64 << 20),
                        "close": F(bool), "times": F(int, nullable=True, lo=1, hi=1_000_000),
                        "instance_id": F(str, pattern=INSTANCE_ID_RE.pattern)})
    if isinstance(b.get("retry_after"), str) and not re.fullmatch(r"[\w ,:+-]{1,64}",
                                                                 b["retry_after"]):
        raise Bad("retry_after: malformed")
    with cloud.lock:
        if len(cloud.faults) >= 100:
            raise Bad("too many faults")
        cloud.fault_seq += 1
        cloud.faults.append(Fault(cloud.fault_seq, b))
        cloud.bump()
        return 200, {"id": cloud.fault_seq}


def c_clear_faults(h, cloud, body):
    with cloud.lock:
        cloud.faults.clear()
        cloud.bump()
    return 200, {"ok": True}


def _query_int(h, name, default, lo, hi):
    q = dict(parse_qsl(h.query, max_num_fields=10))
    v = q.get(name)
    if v is None:
        return default
    try:
        n = float(v) if name.endswith("_s") else int(v)
    except ValueError:
        raise Bad(f"{name}: not a number")
    if not lo <= n <= hi:
        raise Bad(f"{name}: out of range")
    return n


def c_requests(h, cloud, body):
    since = _query_int(h, "since", 0, 0, 1 << 62)
    with cloud.lock:
        out = [dict(e) for e in cloud.log if e["seq"] > since]
        return 200, {"requests": out, "last": cloud.log_seq}


def c_state(h, cloud, body):
    wait = _query_int(h, "wait", None, 0, 1 << 62)
    timeout = _query_int(h, "timeout_s", 10.0, 0, 60)
    with cloud.lock:
        if wait is not None:
            cloud.cond.wait_for(lambda: cloud.generation != wait, timeout=timeout)
        return 200, cloud.state_json()


def c_tick(h, cloud, body):
    b = validate(body, {"n": F(int, lo=1, hi=100)})
    cloud.tick(b.get("n", 1))
    with cloud.lock:
        return 200, cloud.state_json()


def c_clock(h, cloud, body):
    b = validate(body, {"advance_s": F((int, float), True, lo=0, hi=10 * 365 * 86400)})
    with cloud.lock:
        cloud.clock_offset += b["advance_s"]
        cloud.bump()
        return 200, {"offset_s": cloud.clock_offset}


def c_blob(h, cloud, body):
    b = validate(body, {"url": F(str, True, maxlen=2048), "data": F(str, True, nullable=True),
                        "content_type": F(str, maxlen=256)})
    m = re.fullmatch(r"https://([A-Za-z0-9.-]+)(/[^?#\s]*)", b["url"])
    if not m:
        raise Bad("url: want https://HOST/PATH")
    key = (m.group(1).lower(), m.group(2))
    with cloud.lock:
        if b["data"] is None:
            cloud.blobs.pop(key, None)
        else:
            data = _b64bytes(b["data"])
            if len(data) > BLOB_MAX:
                raise Bad(f"data: larger than {BLOB_MAX} bytes")
            cloud.blobs[key] = (data, b.get("content_type") or "binary/octet-stream")
        cloud.bump()
    return 200, {}


CONTROL = {("POST", "reset"): c_reset, ("POST", "credentials"): c_credentials,
           ("POST", "secret"): c_secret, ("POST", "parameter"): c_parameter,
           ("POST", "asg"): c_asg, ("POST", "imds"): c_imds,
           ("POST", "runner-token"): c_runner_token, ("POST", "agent-token"): c_agent_token,
           ("POST", "jobs"): c_jobs, ("POST", "agent/claim"): c_claim,
           ("POST", "agent/complete"): c_complete, ("POST", "note"): c_note,
           ("POST", "fault"): c_fault, ("POST", "blob"): c_blob, ("POST", "stack"): c_stack,
           ("DELETE", "faults"): c_clear_faults, ("DELETE", "fault"): c_clear_faults,
           ("GET", "requests"): c_requests,
           ("GET", "state"): c_state, ("POST", "tick"): c_tick, ("POST", "clock"): c_clock}
CONTROL.update(fake_warm.CONTROL)


# ---- main ----------------------------------------------------------------------------------

def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(description="local fake of AWS + CircleCI Runner API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tick-interval", type=float, default=0.0,
                    help="seconds between automatic reconcile ticks (0 = only /_fake/tick)")
    ap.add_argument("--log-dir", help="where instance processes write <instance-id>.log")
    ap.add_argument("--max-body", type=int, default=MAX_BODY_DEFAULT)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--netns", help="bind all but the main port in this network namespace")
    ap.add_argument("--listen-tls", action="append", default=[], metavar="ADDR:PORT")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--listen-imds", action="append", default=[], metavar="ADDR:PORT")
    ap.add_argument("--dynamodb-upstream", metavar="URL",
                    help="http://HOST:PORT of a real DynamoDB emulator")
    a = ap.parse_args(argv)
    if not 0 <= a.port <= 65535 or a.tick_interval < 0 or a.max_body < 1024:
        ap.error("bad --port, --tick-interval or --max-body")
    VERBOSE = a.verbose
    Handler.max_body = a.max_body
    log_dir = os.path.abspath(a.log_dir) if a.log_dir else None
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    if a.listen_tls and not (a.tls_cert and a.tls_key):
        ap.error("--listen-tls needs --tls-cert and --tls-key")
    cloud = Cloud(log_dir)
    if a.dynamodb_upstream:
        m = re.fullmatch(r"http://([^/:]+|\[[0-9a-fA-F:]+\]):(\d+)/?", a.dynamodb_upstream)
        if not m:
            ap.error("--dynamodb-upstream: want http://HOST:PORT")
        cloud.ddb_upstream = (m.group(1).strip("[]"), int(m.group(2)))
    srv = FakeServer(("127.0.0.1", a.port), Handler, cloud)
    cloud.main_port = srv.server_address[1]
    # From here on this thread, every thread it starts and every process it launches live in
    # the world's network namespace; the main port stays reachable from where the fake began.
    if a.netns:
        enter_netns(a.netns)
    servers = [srv]
    ready = f"READY port={cloud.main_port}"
    if a.listen_tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        tls = [TlsFakeServer(parse_addr(x), Handler, cloud, ctx) for x in a.listen_tls]
        servers += tls
        ready += " tls=" + ",".join(fmt_addr(t.server_address) for t in tls)
    if a.listen_imds:
        imds = [FakeServer(parse_addr(x), Handler, cloud, kind="imds") for x in a.listen_imds]
        servers += imds
        ready += " imds=" + ",".join(fmt_addr(t.server_address) for t in imds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for i, sv in enumerate(servers):
        threading.Thread(target=sv.serve_forever, name=f"listener-{i}", daemon=True).start()
    if a.tick_interval > 0:
        def ticker():
            while not stop.wait(a.tick_interval):
                cloud.tick()
        threading.Thread(target=ticker, name="ticker", daemon=True).start()
    sys.stdout.write(ready + "\n")
    sys.stdout.flush()
    # Nothing else may reach stdout: the reader may be gone after the handshake.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    # Import botocore now, not inside the first signed request (it takes a noticeable while).
    threading.Thread(target=_warm_botocore, name="warm", daemon=True).start()
    stop.wait()
    cloud.kill_all()
    # No srv.shutdown(): it waits out serve_forever's poll interval; the daemon threads end
    # with the process.
    for sv in servers:
        sv.server_close()
    return 0


def parse_addr(s):
    """"127.0.0.1:443", "[fd00:ec2::254]:80" -> (host, port)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:]+)\]:(\d+)|([^:\[\]]+):(\d+)", s)
    if not m:
        raise SystemExit(f"fakecloud: bad address {s!r}: want ADDR:PORT or [ADDR6]:PORT")
    host = m.group(1) or m.group(3)
    return host, int(m.group(2) or m.group(4))


def fmt_addr(sa):
    host, port = sa[0], sa[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def enter_netns(name):
    """setns(2) into /run/netns/NAME for this thread; threads started later inherit it."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            err = ctypes.get_errno()
            raise SystemExit(f"fakecloud: setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _warm_botocore():
    try:
        importlib.import_module("botocore.auth")
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
