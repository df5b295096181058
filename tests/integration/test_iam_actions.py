"""Every IAM action the project names exists: checked against botocore's service models (Debian's
python3-botocore, the API operations of every AWS service it knows).

Where actions are named:
- the CloudFormation template's policy documents (any object with a Statement under Resources:
  the roles' inline policies and trust policies), both branches of an Fn::If included;
- the standalone policy files, packaging/aws/**/*.json;
- JSON policy snippets in the Markdown documentation (fenced ```json blocks with a Statement);
- SERVICE:Action mentions in the prose of the READMEs and the man pages, for the services
  botocore knows (a mention like autoscaling:EC2_INSTANCE_LAUNCHING, a lifecycle transition, is
  not an action and does not look like one).
An action SERVICE:Name is known when some botocore service whose IAM prefix is SERVICE (its
metadata's signingName, else its endpointPrefix) has an operation Name (IAM compares action
names without regard to case, and so does this); a wildcard (ec2:Describe*) must match at least
one operation. The few IAM actions that are permissions, not API operations, are allowed by
name with the reason (PERMISSION_ONLY), and shown not to be operations.
The checker is shown to catch a misspelled action, a wrong prefix and a wildcard that matches
nothing.
"""

import fnmatch
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from stack import load_cfn  # noqa: E402

from conftest import REPO  # noqa: E402

AWS = REPO / "packaging" / "aws"
# IAM actions that are permissions only, with no API operation of the name.
PERMISSION_ONLY = {
    "iam:PassRole": "checked when a role is handed to a service (an instance profile, a "
                    "launch template), never called",
}
DOCS = [REPO / "README.md", REPO / "packaging" / "README.md", REPO / "tests" / "README.md",
        *sorted((REPO / "man").glob("*.[0-9]"))]
MENTION = re.compile(r"(?<![\w:/.-])([a-z][a-z0-9-]*):([A-Z][A-Za-z0-9]*\*?)(?![\w*])")


@pytest.fixture(scope="module")
def operations():
    """IAM prefix -> the lower-cased operation names of every botocore service with it."""
    import botocore.session
    s = botocore.session.get_session()
    loader = s.get_component("data_loader")
    ops = {}
    for name in s.get_available_services():
        model = loader.load_service_model(name, "service-2")
        md = model["metadata"]
        prefix = md.get("signingName") or md["endpointPrefix"]
        ops.setdefault(prefix, set()).update(o.lower() for o in model["operations"])
    return ops


def action_problem(action, operations):
    """None when action names an operation (or matches one), else why not."""
    if action == "*":
        return None
    if action in PERMISSION_ONLY:
        return None
    prefix, sep, name = action.partition(":")
    if not sep or not name:
        return "not SERVICE:ACTION"
    if prefix not in operations:
        return f"no service has the IAM prefix {prefix}"
    names = operations[prefix]
    if "*" in name or "?" in name:
        if not fnmatch.filter(names, name.lower()):
            return f"{name} matches no {prefix} operation"
        return None
    if name.lower() not in names:
        near = [n for n in names if n.startswith(name.lower()[:6])]
        return f"{prefix} has no operation {name}" + \
            (f" (near: {', '.join(sorted(near)[:4])})" if near else "")
    return None


def listify(v):
    return v if isinstance(v, list) else [v]


def statement_actions(st, where):
    """(where, action) of a policy's statements; an Fn::If statement yields both branches."""
    out = []
    for i, s in enumerate(listify(st)):
        w = f"{where}[{i}]"
        if isinstance(s, dict) and set(s) == {"Fn::If"}:
            out += statement_actions([b for b in s["Fn::If"][1:]
                                      if b != {"Ref": "AWS::NoValue"}], f"{w} If")
            continue
        for key in ("Action", "NotAction"):
            for a in listify(s.get(key, [])):
                if isinstance(a, str):
                    out.append((f"{w}.{key}", a))
                else:  # an intrinsic in place of a name: both branches of an If
                    if isinstance(a, dict) and set(a) == {"Fn::If"}:
                        out += [(f"{w}.{key} If", b) for b in a["Fn::If"][1:]
                                if isinstance(b, str)]
                    else:
                        out.append((f"{w}.{key}", repr(a)))
    return out


def policy_actions(node, where):
    """Every action of every policy document (an object with a Statement) under node."""
    out = []
    if isinstance(node, dict):
        if "Statement" in node:
            out += statement_actions(node["Statement"], f"{where}.Statement")
        for k, v in node.items():
            if k != "Statement":
                out += policy_actions(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += policy_actions(v, f"{where}[{i}]")
    return out


def template_actions(text):
    return policy_actions(load_cfn(text).get("Resources") or {}, "Resources")


def json_file_actions():
    out = []
    for f in sorted(AWS.rglob("*.json")):
        out += policy_actions(json.loads(f.read_text()), str(f.relative_to(REPO)))
    return out


def markdown_snippet_actions():
    out = []
    for f in sorted(REPO.rglob("*.md")):
        if "build" in f.relative_to(REPO).parts:
            continue
        for n, block in enumerate(re.findall(r"```json\n(.*?)```", f.read_text(), re.S)):
            try:
                doc = json.loads(block)
            except ValueError:
                continue
            out += policy_actions(doc, f"{f.relative_to(REPO)} json block {n}")
    return out


def prose_actions(operations):
    out = []
    for f in DOCS:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for m in MENTION.finditer(line):
                if m.group(1) in operations:
                    out.append((f"{f.relative_to(REPO)}:{n}", f"{m.group(1)}:{m.group(2)}"))
    return out


def problems(named, operations):
    return [f"{where}: {a}: {why}" for where, a in named
            for why in [action_problem(a, operations)] if why]


def test_template_actions_exist(operations):
    named = template_actions((AWS / "cloudformation.yaml").read_text())
    assert problems(named, operations) == []
    acts = {a for _, a in named}
    # The roles' policies are all there: the runner's hook, the scaler's warm pool (an If).
    assert {"autoscaling:CompleteLifecycleAction", "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:PutWarmPool", "autoscaling:DescribeWarmPool", "sts:AssumeRole",
            "cloudformation:SignalResource"} <= acts, acts
    print(f"\ncloudformation.yaml: {len(named)} action names, {len(acts)} distinct, all known")


def test_policy_files_actions_exist(operations):
    named = json_file_actions() + markdown_snippet_actions()
    assert problems(named, operations) == []
    files = {w.split(".json")[0] for w, _ in named}
    assert len(files) == len(list(AWS.rglob("*.json"))), files  # every file holds a policy
    print(f"\npolicy files and snippets: {len(named)} action names, "
          f"{len({a for _, a in named})} distinct, all known")


def test_documented_actions_exist(operations):
    named = prose_actions(operations)
    assert problems(named, operations) == []
    assert ("autoscaling:CompleteLifecycleAction" in {a for _, a in named}), named
    print(f"\nREADMEs and man pages: {len(named)} mentions, {len({a for _, a in named})} "
          "distinct actions, all known")


def test_permission_only_actions_are_not_operations(operations):
    """The allow-list holds only what botocore cannot know: a name that is an operation after
    all does not belong in it (a typo there would hide a typo in a policy)."""
    for action in PERMISSION_ONLY:
        prefix, _, name = action.partition(":")
        assert prefix in operations, action
        assert name.lower() not in operations[prefix], f"{action} is an API operation"


def test_checker_catches_unknown_actions(operations):
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*",
         "Action": ["autoscaling:PutWarmPools", "autoscaling:DescribeWarmPool", "ec2:Describe*",
                    "autoscaling:*", "iam:PassRole", "ec2:Nothing*", "dynamodb:GetItems"]},
        {"Fn::If": ["C", {"Effect": "Allow", "Action": "secretmanager:GetSecretValue",
                          "Resource": "*"}, {"Ref": "AWS::NoValue"}]},
        {"Effect": "Deny", "NotAction": "sts:AssumeRoles", "Resource": "*"}]}
    p = problems(policy_actions(doc, "doc"), operations)
    # (The "near" hints depend on botocore's version: compared up to them.)
    assert [x.split(" (near: ")[0] for x in p] == [
        "doc.Statement[0].Action: autoscaling:PutWarmPools: autoscaling has no operation "
        "PutWarmPools",
        "doc.Statement[0].Action: ec2:Nothing*: Nothing* matches no ec2 operation",
        "doc.Statement[0].Action: dynamodb:GetItems: dynamodb has no operation GetItems",
        "doc.Statement[1] If[0].Action: secretmanager:GetSecretValue: no service has the IAM "
        "prefix secretmanager",
        "doc.Statement[2].NotAction: sts:AssumeRoles: sts has no operation AssumeRoles",
    ], p
    assert "(near: putwarmpool)" in p[0], p
    # In the template's text too: a misspelled action in a copy of it is reported.
    text = (AWS / "cloudformation.yaml").read_text()
    assert "autoscaling:CompleteLifecycleAction\n" in text
    bad = template_actions(text.replace("autoscaling:CompleteLifecycleAction\n",
                                        "autoscaling:CompleteLifeCycleActions\n", 1))
    assert [x.split(": ", 1)[1].split(" (near: ")[0] for x in problems(bad, operations)] == [
        "autoscaling:CompleteLifeCycleActions: autoscaling has no operation "
        "CompleteLifeCycleActions"]
    # And in prose: the mention pattern finds actions, not transitions or URLs.
    found = [m.group(0) for m in MENTION.finditer(
        "needs autoscaling:PutWarmPool, not autoscaling:EC2_INSTANCE_LAUNCHING or "
        "arn:aws:autoscaling:REGION or https://x.io:Port; ec2:Describe* is fine")]
    assert found == ["autoscaling:PutWarmPool", "ec2:Describe*"], found
