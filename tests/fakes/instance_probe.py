#!/usr/bin/python3
"""A stand-in for the program that boots on a fakecloud instance (an ASG launch_command).

usage: instance_probe.py OUTDIR MODE
  exit[:CODE]  report, then exit with CODE (default 0) without leaving the group; the ASG
               marks the instance unhealthy and replaces it
  leave        report, call TerminateInstanceInAutoScalingGroup on itself with
               ShouldDecrementDesiredCapacity=true, using the role credentials botocore
               fetches from this instance's IMDS, then exit 0
  wait         report, then wait for SIGTERM (scale-in or termination), record it, exit 0

The report OUTDIR/<FAKE_INSTANCE_ID>.json is written atomically. It records what the process
saw through its own IMDS endpoint (plain urllib, IMDSv2). SIGTERM is blocked before the first
IMDS request. A test that has seen that request in the fake's log therefore knows the SIGTERM
will be recorded and not lost.
"""

import json
import os
import signal
import sys
import urllib.request


def imds(base, path, token):
    req = urllib.request.Request(f"{base}/latest/{path}",
                                 headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read(65536).decode()


def write_report(outdir, iid, report):
    tmp = os.path.join(outdir, f".{iid}.tmp")
    with open(tmp, "w") as f:
        json.dump(report, f)
    os.replace(tmp, os.path.join(outdir, f"{iid}.json"))


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    outdir, mode = sys.argv[1], sys.argv[2]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    env_iid = os.environ["FAKE_INSTANCE_ID"]
    base = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
    report = {"env_instance_id": env_iid, "imds_endpoint": base, "pid": os.getpid(),
              "mode": mode}
    try:
        req = urllib.request.Request(f"{base}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with urllib.request.urlopen(req, timeout=5) as r:
            token = r.read(4096).decode()
        report["imds_instance_id"] = imds(base, "meta-data/instance-id", token)
        report["region"] = imds(base, "meta-data/placement/region", token)
        report["availability_zone"] = imds(base, "meta-data/placement/availability-zone", token)
        report["target_lifecycle_state"] = imds(
            base, "meta-data/autoscaling/target-lifecycle-state", token)
        if mode == "leave":
            import botocore.session
            session = botocore.session.get_session()  # credentials: the IMDS role, via env
            client = session.create_client("autoscaling", region_name=report["region"],
                                           endpoint_url=os.environ["FAKE_CLOUD_URL"])
            out = client.terminate_instance_in_auto_scaling_group(
                InstanceId=report["imds_instance_id"], ShouldDecrementDesiredCapacity=True)
            report["terminate_status"] = out["Activity"]["StatusCode"]
            report["access_key_prefix"] = session.get_credentials().access_key[:4]
    except Exception as e:  # the report says what went wrong; the test asserts on it
        report["error"] = repr(e)
        write_report(outdir, env_iid, report)
        return 3
    write_report(outdir, env_iid, report)
    if mode == "wait":
        sig = signal.sigwait({signal.SIGTERM})
        report["signal"] = signal.Signals(sig).name
        write_report(outdir, env_iid, report)
        return 0
    if mode.startswith("exit"):
        return int(mode.partition(":")[2] or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
