"""Warm pools and LAUNCHING lifecycle hooks in the fake Auto Scaling, as AWS runs them
(../shared/notes/warm-pools.md; the shapes from botocore's autoscaling 2011-01-01 model).
fakecloud.py imports this module; everything here runs under the cloud's lock unless said
otherwise.

The model, per group (Asg.hooks, Asg.warm_pool, Asg.warm: the pool's instances, kept apart from
Asg.instances, so DescribeAutoScalingGroups lists the group's own instances only, as AWS does):
  - Into the pool: Warmed:Pending -> Warmed:Pending:Wait (with a LAUNCHING hook: a lifecycle
    action, answered by CompleteLifecycleAction or, after HeartbeatTimeout on the fake clock,
    by DefaultResult) -> Warmed:Pending:Proceed -> stopped: Warmed:Stopped (PoolState Stopped;
    Running stays Warmed:Running). ABANDON: Warmed:Terminating -> Warmed:Terminated.
  - Out of the pool, when desired exceeds the live instances: a Warmed:Stopped (or Running)
    instance is started into the group: Pending -> Pending:Wait (the hook fires again) ->
    Pending:Proceed -> InService; only when the pool has none ready is one launched cold
    (Pending:Wait with a hook, else Pending). ABANDON in the group: Terminating.
  - The pool's size: max(MaxGroupPreparedCapacity (unset: the group's MaxSize) - desired,
    MinSize); missing instances launch into the pool, extra ones are terminated.
  - Scale-in with ReuseOnScaleIn=true sends the instance back into the pool (stopped, then
    Warmed:Pending again); false (the default) terminates it.
  - Each instance's IMDS target-lifecycle-state: Warmed:Stopped (or Warmed:Running,
    Warmed:Hibernated) in the pool, InService once it leaves it, Terminated / Warmed:Terminated
    when it ends.
With a launch_command each instance is a process: "stopping" it is SIGTERM to its process
group (SIGKILL after stop_grace_s) and closing its IMDS listener, as an ACPI shutdown ends what
runs on it; the state changes when the process has exited. Starting it again runs the command
again with the same instance id (and a new IMDS listener): a second boot of the same disk.
"""

import base64
import json
import uuid

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LIVE = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
READY = ("Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated")
POOL_STATES = {"Stopped": "Warmed:Stopped", "Running": "Warmed:Running",
               "Hibernated": "Warmed:Hibernated"}
MAX_HOOKS = 50
HOOK_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/")


# fakecloud's own helpers and error class, bound by fakecloud at import (bind()): this module
# never imports fakecloud, which runs as __main__ (a second copy would have its own AwsError).
H = None


def bind(namespace):
    global H
    H = type("Helpers", (), {})()
    for k in ("AwsError", "q_group", "q_int", "q_bool", "q_members", "el", "query_response",
              "instance_xml", "launch_template_xml", "Bad", "F", "validate", "INSTANCE_ID_RE"):
        setattr(H, k, namespace[k])


def _err(message, code="ValidationError"):
    return H.AwsError(code, message)


class Hook:
    def __init__(self, name, transition, heartbeat_s, default_result):
        self.name, self.transition = name, transition
        self.heartbeat_s, self.default_result = heartbeat_s, default_result

    def to_json(self):
        return {"name": self.name, "transition": self.transition,
                "heartbeat_s": self.heartbeat_s, "default_result": self.default_result}


class Action:
    """One lifecycle action waiting for its answer."""

    def __init__(self, hook, now):
        self.hook = hook
        self.token = str(uuid.uuid4())
        self.started = now
        self.deadline = now + hook.heartbeat_s


class WarmPool:
    def __init__(self):
        self.min_size = 0
        self.max_prepared = None  # None: unset (the group's MaxSize counts)
        self.pool_state = "Stopped"
        self.reuse = False
        self.status = None  # "PendingDelete"

    def to_json(self):
        return {"min_size": self.min_size, "max_prepared": self.max_prepared,
                "pool_state": self.pool_state, "reuse_on_scale_in": self.reuse,
                "status": self.status}


def init_group(asg):
    asg.hooks = {}
    asg.warm_pool = None
    asg.warm = []


def init_instance(inst):
    inst.action = None
    inst.resumed_at = None
    inst.stopped_at = None  # when it last reached Warmed:Stopped (EBS only from then on)
    inst.boots = 1
    inst.after_exit = None  # called (under the lock) when its process has exited


def group_json(asg):
    return {"warm_pool": asg.warm_pool.to_json() if asg.warm_pool else None,
            "warm_instances": [i.to_json() for i in asg.warm],
            "lifecycle_hooks": [h.to_json() for h in asg.hooks.values()]}


def instance_json(inst):
    return {"lifecycle_action": inst.action.hook.name if inst.action else None,
            "resumed_at": inst.resumed_at, "stopped_at": inst.stopped_at, "boots": inst.boots}


def launching_hook(asg):
    for h in asg.hooks.values():
        if h.transition == LAUNCHING:
            return h
    return None


def pool_target(asg):
    wp = asg.warm_pool
    if wp is None or wp.status == "PendingDelete":
        return 0
    prepared = asg.max if wp.max_prepared in (None, -1) else wp.max_prepared
    return max(prepared - asg.desired, wp.min_size)


def _wait_or(inst, asg, now, waiting, plain):
    """Enter the LAUNCHING hook's wait state when the group has one."""
    hook = launching_hook(asg)
    if hook is None:
        inst.state, inst.action = plain, None
    else:
        inst.state, inst.action = waiting, Action(hook, now)


def on_launch(cloud, inst):
    """A cold launch into the group (fakecloud's launch()): its hook's wait state."""
    if inst.state == "Pending":
        _wait_or(inst, inst.asg, cloud.now(), "Pending:Wait", "Pending")


def launch_into_pool(cloud, asg):
    inst = cloud.make_instance(asg)
    inst.identity.target_lifecycle_state = POOL_STATES[asg.warm_pool.pool_state]
    _wait_or(inst, asg, cloud.now(), "Warmed:Pending:Wait", "Warmed:Pending")
    asg.warm.append(inst)
    if asg.launch_command:
        cloud._start_instance(inst)
    return inst


def _stop(cloud, inst, then, stops):
    """Stop inst (its process, if any, after the lock is released), then set state then."""
    def done(i=inst, s=then):
        i.state = s
        i.stopped_at = cloud.now()
    if inst.proc is not None and inst.proc.poll() is None:
        inst.after_exit = done
        stops.append((inst, inst.asg.stop_grace_s))
    else:
        done()


def _restart(cloud, inst):
    inst.boots += 1
    inst.exit_code = None
    inst.stopped = False
    if inst.asg.launch_command:
        cloud._start_instance(inst)


def _end_in_pool(cloud, inst, cause):
    inst.state = "Warmed:Terminating"
    inst.cause = cause
    inst.action = None
    inst.identity.target_lifecycle_state = "Warmed:Terminated"


def resume(cloud, asg, inst):
    """A ready pool instance started into the group."""
    asg.warm.remove(inst)
    asg.instances.append(inst)
    inst.resumed_at = cloud.now()
    inst.ticks = 0
    inst.identity.target_lifecycle_state = "InService"
    _wait_or(inst, asg, cloud.now(), "Pending:Wait", "Pending")
    if inst.proc is None or inst.proc.poll() is not None:
        _restart(cloud, inst)  # stopped or hibernated: it boots again


def scale_out(cloud, asg, n):
    """desired exceeds the live instances by n: from the pool first, then cold launches."""
    ready = sorted((i for i in asg.warm if i.state in READY), key=lambda i: i.launched_at)
    for _ in range(n):
        if ready:
            resume(cloud, asg, ready.pop(0))
        else:
            cloud.launch(asg)


def scale_in(cloud, asg, inst, stops):
    """inst was picked to go: back into the pool with ReuseOnScaleIn, else terminated.
    Returns False when fakecloud's own handling applies (terminate)."""
    wp = asg.warm_pool
    if wp is None or not wp.reuse or wp.status == "PendingDelete":
        return False
    asg.instances.remove(inst)
    asg.warm.append(inst)
    inst.identity.target_lifecycle_state = POOL_STATES[wp.pool_state]
    inst.state = "Warmed:Pending"  # stopped first, then through the hook again
    inst.cause = "reused"

    def back(i=inst, a=asg):
        _wait_or(i, a, cloud.now(), "Warmed:Pending:Wait", "Warmed:Pending")
        _restart(cloud, i)
    if inst.proc is not None and inst.proc.poll() is None:
        inst.after_exit = back
        stops.append((inst, asg.stop_grace_s))
    else:
        back()
    return True


def _answer(cloud, inst, result, cause="abandoned"):
    """CONTINUE or ABANDON for inst's action (a call, or the heartbeat's DefaultResult)."""
    inst.action = None
    if inst.state == "Pending:Wait":
        if result == "CONTINUE":
            inst.state = "Pending:Proceed"
        else:
            cloud.mark_terminating(inst, cause)
    elif inst.state == "Warmed:Pending:Wait":
        if result == "CONTINUE":
            inst.state = "Warmed:Pending:Proceed"
        else:
            _end_in_pool(cloud, inst, cause)


def tick(cloud, asg, now, stops, ended):
    """One reconcile step's warm-pool part, before fakecloud's scale-out/in (resume first).
    Like the group's own step, what began terminating before this step ends first."""
    for inst in list(asg.warm):
        if inst.state == "Warmed:Terminating":
            inst.state = "Warmed:Terminated"
            inst.ended_at = now
            asg.warm.remove(inst)
            cloud.terminated.append(inst)
            ended.append((inst, asg.stop_grace_s))
    for inst in list(asg.instances) + list(asg.warm):
        if inst.action is not None and now >= inst.action.deadline:
            _answer(cloud, inst, inst.action.hook.default_result, "heartbeat-timeout")
    for inst in list(asg.instances):
        if inst.state == "Pending:Proceed":
            inst.state = "InService"
    for inst in list(asg.warm):
        if inst.state == "Warmed:Pending" and inst.after_exit is None:
            inst.state = "Warmed:Pending:Proceed"
        elif inst.state == "Warmed:Pending:Proceed" and inst.after_exit is None:
            pool = asg.warm_pool.pool_state if asg.warm_pool else "Stopped"
            if pool == "Running":
                inst.state = "Warmed:Running"
            else:
                _stop(cloud, inst, POOL_STATES[pool], stops)


def refill(cloud, asg):
    """After the group's scaling: the pool to its size."""
    keep = [i for i in asg.warm if not i.state.startswith("Warmed:Terminat")]
    want = pool_target(asg)
    for _ in range(want - len(keep)):
        launch_into_pool(cloud, asg)
    if len(keep) > want:
        for inst in sorted(keep, key=lambda i: i.launched_at, reverse=True)[:len(keep) - want]:
            _end_in_pool(cloud, inst, "pool-shrunk")
    wp = asg.warm_pool
    if wp is not None and wp.status == "PendingDelete" and not asg.warm:
        asg.warm_pool = None


def process_exited(inst):
    """fakecloud's process waiter, under the lock: what a stop was waiting for."""
    cb, inst.after_exit = inst.after_exit, None
    if cb is not None:
        cb()


# ---- the API (Query protocol), under the lock -----------------------------------------------

def _group(cloud, params, region):
    return H.q_group(cloud, params, region)


def _hook_name(params, required=True):
    name = params.get("LifecycleHookName")
    if not name:
        if required:
            raise _err("1 validation error detected: Value null at 'lifecycleHookName' failed "
                       "to satisfy constraint: Member must not be null")
        return None
    if len(name) > 255 or not set(name) <= HOOK_NAME_CHARS:
        raise _err(f"1 validation error detected: Value '{name}' at 'lifecycleHookName' "
                   "failed to satisfy constraint: Member must satisfy regular expression "
                   "pattern: [A-Za-z0-9\\-_\\/]+")
    return name


def op_put_lifecycle_hook(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    name = _hook_name(params)
    old = asg.hooks.get(name)
    trans = params.get("LifecycleTransition") or (old.transition if old else None)
    if trans not in (LAUNCHING, TERMINATING):
        raise _err("Invalid value for Lifecycle Transition; valid values are "
                   f"{LAUNCHING} or {TERMINATING}" if trans else
                   "LifecycleTransition is required to create a lifecycle hook")
    hb = H.q_int(params, "HeartbeatTimeout", "heartbeatTimeout")
    hb = hb if hb is not None else (old.heartbeat_s if old else 3600)
    if not 30 <= hb <= 7200:
        raise _err("Heartbeat timeout must be between 30 and 7200 seconds")
    dr = params.get("DefaultResult") or (old.default_result if old else "ABANDON")
    if dr not in ("CONTINUE", "ABANDON"):
        raise _err(f"Invalid value for DefaultResult: {dr}; valid values are CONTINUE or "
                   "ABANDON")
    if old is None and len(asg.hooks) >= MAX_HOOKS:
        raise H.AwsError("LimitExceeded", f"Maximum of {MAX_HOOKS} lifecycle hooks per group "
                       "reached")
    if old is None:
        asg.hooks[name] = Hook(name, trans, hb, dr)
    else:  # in place: the actions waiting on it take the new settings
        old.transition, old.heartbeat_s, old.default_result = trans, hb, dr
    return H.query_response("PutLifecycleHook", None, rid)


def op_delete_lifecycle_hook(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    name = _hook_name(params)
    if asg.hooks.pop(name, None) is None:
        raise _err(f"No Lifecycle Hook found with name {name} for group {asg.name}")
    # Its waiting actions are answered with CONTINUE, as AWS does when a hook goes.
    for inst in list(asg.instances) + list(asg.warm):
        if inst.action is not None and inst.action.hook.name == name:
            _answer(cloud, inst, "CONTINUE")
    return H.query_response("DeleteLifecycleHook", None, rid)


def op_describe_lifecycle_hooks(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    names = H.q_members(params, "LifecycleHookNames")
    hooks = [h for h in asg.hooks.values() if not names or h.name in names]
    members = [H.el("member", [H.el("LifecycleHookName", h.name),
                             H.el("AutoScalingGroupName", asg.name),
                             H.el("LifecycleTransition", h.transition),
                             H.el("HeartbeatTimeout", h.heartbeat_s),
                             H.el("GlobalTimeout", min(172800, 100 * h.heartbeat_s)),
                             H.el("DefaultResult", h.default_result)]) for h in hooks]
    return H.query_response("DescribeLifecycleHooks", [H.el("LifecycleHooks", members)], rid)


def _action_instance(cloud, asg, params):
    iid = params.get("InstanceId")
    token = params.get("LifecycleActionToken")
    if not iid and not token:
        raise _err("Either InstanceId or LifecycleActionToken must be specified")
    for inst in list(asg.instances) + list(asg.warm):
        if inst.action is None:
            continue
        if (iid and inst.id == iid) or (token and inst.action.token == token):
            return inst
    raise _err("No active Lifecycle Action found with "
               + (f"instance ID {iid}" if iid else f"token {token}"))


def op_complete_lifecycle_action(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    name = _hook_name(params)
    result = params.get("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise _err("1 validation error detected: Value "
                   + (f"'{result}'" if result else "null")
                   + " at 'lifecycleActionResult' failed to satisfy constraint: "
                   "Member must be CONTINUE or ABANDON")
    if name not in asg.hooks:
        raise _err(f"No Lifecycle Hook found with name {name} for group {asg.name}")
    inst = _action_instance(cloud, asg, params)
    if inst.action.hook.name != name:
        raise _err(f"No active Lifecycle Action found with instance ID {inst.id} for hook "
                   f"{name}")
    _answer(cloud, inst, result)
    return H.query_response("CompleteLifecycleAction", [], rid)


def op_record_heartbeat(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    _hook_name(params)
    inst = _action_instance(cloud, asg, params)
    inst.action.deadline = cloud.now() + inst.action.hook.heartbeat_s
    return H.query_response("RecordLifecycleActionHeartbeat", [], rid)


def _page(params, items, limit_max, key):
    mr = H.q_int(params, "MaxRecords", "maxRecords")
    mr = limit_max if mr is None else mr
    if not 1 <= mr <= limit_max:
        raise _err(f"1 validation error detected: Value '{mr}' at 'maxRecords' failed to "
                   f"satisfy constraint: Member must have value less than or equal to "
                   f"{limit_max}")
    start = 0
    tok = params.get("NextToken")
    if tok:
        try:
            d = json.loads(base64.b64decode(tok, validate=True))
            if d.get("k") != key or not 0 < int(d["o"]) <= len(items):
                raise ValueError
            start = int(d["o"])
        except (ValueError, KeyError, TypeError):
            raise H.AwsError("InvalidNextToken", f"The token '{tok}' is invalid.")
    nxt = None
    if start + mr < len(items):
        nxt = base64.b64encode(json.dumps({"o": start + mr, "k": key}).encode()).decode()
    return items[start:start + mr], nxt


def op_describe_instances(cloud, params, region, rid):
    """DescribeAutoScalingInstances: group and pool instances of every group in the region."""
    ids = H.q_members(params, "InstanceIds")
    if len(ids) > 50:
        raise _err("The number of instance ids that may be passed in is limited to 50")
    found = []
    for asg in sorted((a for a in cloud.asgs.values() if a.region == region),
                      key=lambda a: a.name):
        for inst in asg.instances + asg.warm:
            if not ids or inst.id in ids:
                found.append(inst)
    page, nxt = _page(params, found, 50, "dai:" + region + ":" + ",".join(sorted(ids)))
    members = [H.el("member", [H.el("InstanceId", i.id),
                             H.el("InstanceType", i.asg.instance_type),
                             H.el("AutoScalingGroupName", i.asg.name),
                             H.el("AvailabilityZone", i.az),
                             H.el("LifecycleState", i.state),
                             H.el("HealthStatus", i.health.upper()),
                             H.launch_template_xml(i.asg),
                             H.el("ProtectedFromScaleIn", i.protected)]) for i in page]
    out = [H.el("AutoScalingInstances", members)]
    if nxt:
        out.append(H.el("NextToken", nxt))
    return H.query_response("DescribeAutoScalingInstances", out, rid)


def op_put_warm_pool(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    mn = H.q_int(params, "MinSize", "minSize")
    mx = H.q_int(params, "MaxGroupPreparedCapacity", "maxGroupPreparedCapacity")
    state = params.get("PoolState")
    reuse = H.q_bool(params, "InstanceReusePolicy.ReuseOnScaleIn", "reuseOnScaleIn")
    if mn is not None and mn < 0:
        raise _err(f"1 validation error detected: Value '{mn}' at 'minSize' failed to satisfy "
                   "constraint: Member must have value greater than or equal to 0")
    if mx is not None and mx < -1:
        raise _err(f"1 validation error detected: Value '{mx}' at 'maxGroupPreparedCapacity' "
                   "failed to satisfy constraint: Member must have value greater than or "
                   "equal to -1")
    if state is not None and state not in POOL_STATES:
        raise _err(f"1 validation error detected: Value '{state}' at 'poolState' failed to "
                   "satisfy constraint: Member must satisfy enum value set: "
                   "[Hibernated, Running, Stopped]")
    if mx not in (None, -1) and mn is not None and mn > mx:
        raise _err("MinSize cannot be greater than MaxGroupPreparedCapacity")
    if asg.warm_pool is not None and asg.warm_pool.status == "PendingDelete":
        raise _err(f"The warm pool of {asg.name} is being deleted")
    wp = asg.warm_pool or WarmPool()
    # Like AWS, every call sets the whole configuration: what it leaves out is the default.
    wp.min_size = mn or 0
    wp.max_prepared = None if mx in (None, -1) else mx
    wp.pool_state = state or "Stopped"
    wp.reuse = bool(reuse)
    asg.warm_pool = wp
    for inst in asg.warm:
        if not inst.state.startswith("Warmed:Terminat"):
            inst.identity.target_lifecycle_state = POOL_STATES[wp.pool_state]
    return H.query_response("PutWarmPool", [], rid)


def op_delete_warm_pool(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    if asg.warm_pool is None:
        raise _err(f"No warm pool found for Auto Scaling group {asg.name}")
    asg.warm_pool.status = "PendingDelete"
    for inst in asg.warm:
        if not inst.state.startswith("Warmed:Terminat"):
            _end_in_pool(cloud, inst, "pool-deleted")
    return H.query_response("DeleteWarmPool", [], rid)


def op_describe_warm_pool(cloud, params, region, rid):
    asg = _group(cloud, params, region)
    page, nxt = _page(params, list(asg.warm), 50, "dwp:" + asg.name)
    out = []
    wp = asg.warm_pool
    if wp is not None:
        conf = []
        if wp.max_prepared is not None:
            conf.append(H.el("MaxGroupPreparedCapacity", wp.max_prepared))
        conf += [H.el("MinSize", wp.min_size), H.el("PoolState", wp.pool_state)]
        if wp.status:
            conf.append(H.el("Status", wp.status))
        conf.append(H.el("InstanceReusePolicy", [H.el("ReuseOnScaleIn", wp.reuse)]))
        out.append(H.el("WarmPoolConfiguration", conf))
    out.append(H.el("Instances", [H.instance_xml(i) for i in page]))
    if nxt:
        out.append(H.el("NextToken", nxt))
    return H.query_response("DescribeWarmPool", out, rid)


QUERY_OPS = {"PutLifecycleHook": op_put_lifecycle_hook,
             "DeleteLifecycleHook": op_delete_lifecycle_hook,
             "DescribeLifecycleHooks": op_describe_lifecycle_hooks,
             "CompleteLifecycleAction": op_complete_lifecycle_action,
             "RecordLifecycleActionHeartbeat": op_record_heartbeat,
             "DescribeAutoScalingInstances": op_describe_instances,
             "PutWarmPool": op_put_warm_pool,
             "DeleteWarmPool": op_delete_warm_pool,
             "DescribeWarmPool": op_describe_warm_pool}


# ---- control ---------------------------------------------------------------------------------

PLACES = ("Pending:Wait", "InService", "Warmed:Pending:Wait", "Warmed:Stopped")


def c_lifecycle(h, cloud, body):
    """POST /_fake/lifecycle {instance_id, state}: put an instance record (one without a
    process: the main identity's, in tests that run runnerd themselves) where AWS would have
    it: waiting on the group's LAUNCHING hook in the pool or in the group (a fresh lifecycle
    action), stopped in the pool, or in service. The identity's target state is the test's to
    set (POST /_fake/imds)."""
    b = H.validate(body, {"instance_id": H.F(str, True, pattern=H.INSTANCE_ID_RE.pattern),
                          "state": H.F(str, True, choices=PLACES)})
    with cloud.lock:
        inst = cloud.find_instance(b["instance_id"])
        if inst is None:
            raise H.Bad(f"no live instance {b['instance_id']}")
        if inst.proc is not None:
            raise H.Bad("the instance has a process: the model moves it")
        asg = inst.asg
        want_pool = b["state"].startswith("Warmed:")
        if want_pool and inst in asg.instances:
            asg.instances.remove(inst)
            asg.warm.append(inst)
        elif not want_pool and inst in asg.warm:
            asg.warm.remove(inst)
            asg.instances.append(inst)
            inst.resumed_at = cloud.now()
        inst.action = None
        if b["state"].endswith(":Wait"):
            hook = launching_hook(asg)
            if hook is None:
                raise H.Bad(f"group {asg.name} has no {LAUNCHING} hook")
            inst.action = Action(hook, cloud.now())
        inst.state = b["state"]
        cloud.bump()
        return 200, inst.to_json()


CONTROL = {("POST", "lifecycle"): c_lifecycle}
