"""The deployment files in packaging/ (aws/, packer/, etc/), checked without AWS.

- cloudformation.yaml parsed with constructors for CloudFormation's short-form tags: every Ref,
  GetAtt, Sub variable, DependsOn, condition and If resolves; every parameter is used. The
  checker itself is shown to catch a dangling reference. cfn-lint runs when installed.
- IAM, in the template and in aws/iam/*.json: Allow only, no "*" in any action, the only
  Resource "*" is DescribeAutoScalingGroups (which supports no resource-level permission), and
  each role has exactly the actions it needs.
- Launch templates (IMDSv2 required, hop limit 1, shutdown terminates), the runner group (min 0,
  no desired capacity to fight the scaler, max a parameter, new instances protected), the scaler
  group, the lease table.
- User-data (the examples and the template's): no token-like value anywhere, token sources that
  are fetched with the role, and configurations that runnerd / runner-scaler check-config accept.
- The shipped example configurations; packer validate and packer fmt when packer is installed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from stack import (CfnLoader, failed_rules, launch_template_value, load_cfn,  # noqa: E402,F401
                   parameter_problems, render_user_data, user_data_template, written_file)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO  # noqa: E402

AWS = REPO / "packaging" / "aws"
CFN = AWS / "cloudformation.yaml"
IAM = AWS / "iam"
PACKER = REPO / "packaging" / "packer" / "runnerd.pkr.hcl"

DESCRIBE = "autoscaling:DescribeAutoScalingGroups"
RUNNER_ACTIONS = {"secretsmanager:GetSecretValue",
                  "autoscaling:TerminateInstanceInAutoScalingGroup"}
RUNNER_ACTIONS_SSM = {"ssm:GetParameter", "autoscaling:TerminateInstanceInAutoScalingGroup"}
SCALER_ACTIONS = {DESCRIBE, "autoscaling:SetDesiredCapacity", "autoscaling:SuspendProcesses",
                  "secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:PutItem",
                  "dynamodb:UpdateItem"}
# The stack's scaler also signals its group's CreationPolicy / rolling update.
SCALER_ACTIONS_CFN = SCALER_ACTIONS | {"cloudformation:SignalResource"}


def run(argv, timeout=120, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)


def out(r):
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


# ---- CloudFormation: parsing and references --------------------------------------------

# CfnLoader and load_cfn come from tests/fakes/stack.py (shared with the default-path tests).


@pytest.fixture(scope="module")
def cfn():
    return load_cfn(CFN.read_text())


SUB_VAR = re.compile(r"\$\{([^!}][^}]*)\}")


def cfn_problems(t):
    """Everything in template t that does not resolve, as a list of strings."""
    params = set(t.get("Parameters") or {})
    res = set(t.get("Resources") or {})
    conds = set(t.get("Conditions") or {})
    maps = t.get("Mappings") or {}
    problems, used = [], set()

    def name_ok(n, where, local=()):
        if n.startswith("AWS::") or n in local:
            return
        base = n.split(".", 1)[0]
        if "." in n:
            if base not in res:
                problems.append(f"{where}: {n}: no such resource")
        elif n in params or n in res:
            used.add(n)
        else:
            problems.append(f"{where}: {n}: no such parameter or resource")

    def walk(v, where):
        if isinstance(v, dict):
            for k, x in v.items():
                w = f"{where}.{k}"
                if k == "Ref":
                    name_ok(x, w)
                elif k == "Fn::GetAtt":
                    if not (isinstance(x, list) and len(x) == 2 and x[0] in res):
                        problems.append(f"{w}: {x}: not a resource attribute")
                elif k == "Fn::Sub":
                    text, local = (x, {}) if isinstance(x, str) else (x[0], x[1])
                    for m in SUB_VAR.finditer(text):
                        name_ok(m.group(1), w, local)
                    walk(local, w)
                elif k == "Fn::If":
                    if x[0] not in conds:
                        problems.append(f"{w}: {x[0]}: no such condition")
                    walk(x[1:], w)
                    continue
                elif k == "Condition" and isinstance(x, str):
                    if x not in conds:
                        problems.append(f"{w}: {x}: no such condition")
                elif k == "Fn::FindInMap":
                    name, *keys = x
                    if name not in maps:
                        problems.append(f"{w}: {name}: no such mapping")
                    elif isinstance(keys[0], str):
                        second = maps[name].get(keys[0])
                        if second is None:
                            problems.append(f"{w}: {name}.{keys[0]}: no such key")
                        elif isinstance(keys[1], str) and keys[1] not in second:
                            problems.append(f"{w}: {name}.{keys[0]}.{keys[1]}: no such key")
                    else:  # a Ref: every top-level key must have the second-level one
                        for top, second in maps[name].items():
                            if isinstance(keys[1], str) and keys[1] not in second:
                                problems.append(f"{w}: {name}.{top}.{keys[1]}: no such key")
                walk(x, w)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")

    for sect in ("Conditions", "Rules", "Resources", "Outputs"):
        walk(t.get(sect) or {}, sect)
    for name, r in (t.get("Resources") or {}).items():
        deps = r.get("DependsOn", [])
        for d in [deps] if isinstance(deps, str) else deps:
            if d not in res:
                problems.append(f"Resources.{name}.DependsOn: {d}: no such resource")
        if not r.get("Type", "").startswith(("AWS::", "Custom::")):
            problems.append(f"Resources.{name}: no resource type")
    for p in sorted(params - used):
        problems.append(f"Parameters.{p}: never used")
    return problems


def test_cfn_references_resolve(cfn):
    assert cfn["AWSTemplateFormatVersion"] == "2010-09-09"
    assert cfn_problems(cfn) == []


def test_cfn_checker_catches_mistakes():
    """The checker above is not vacuous: each kind of dangling reference is reported."""
    t = load_cfn("""
Parameters:
  Used: {Type: String}
  Unused: {Type: String}
Mappings:
  M:
    a: {k: v}
    b: {j: v}
Conditions:
  C: !Equals [!Ref Used, x]
Rules:
  R:
    Assertions:
      - Assert: !Equals [!Ref RuleGhost, ""]
Resources:
  A:
    Type: AWS::SNS::Topic
    DependsOn: [Nope]
    Properties:
      TopicName: !Sub "${Missing}-${AWS::Region}-${!Literal}"
      DisplayName: !If [NoCond, !GetAtt Ghost.Arn, !Ref Gone]
      Tags:
        - {Key: x, Value: !FindInMap [NoMap, a, k]}
        - {Key: y, Value: !FindInMap [M, zz, k]}
        - {Key: z, Value: !FindInMap [M, !Ref Used, k]}
""")
    problems = "\n".join(cfn_problems(t))
    for needle in ("Nope", "Missing", "NoCond", "Ghost", "Gone", "Unused", "RuleGhost", "NoMap",
                   "M.zz", "M.b.k"):
        assert needle in problems, problems
    assert "Literal" not in problems and "Region" not in problems, problems


def test_cfn_lint():
    exe = shutil.which("cfn-lint")
    if not exe:
        pytest.skip("cfn-lint is not installed (it is a Python package, not in Debian)")
    r = run([exe, CFN], timeout=300)
    assert r.returncode == 0, out(r)


# ---- IAM ----------------------------------------------------------------------------------

def listify(v):
    return v if isinstance(v, list) else [v]


def policy_problems(doc):
    problems = []
    for s in listify(doc["Statement"]):
        sid = s.get("Sid", "?")
        for bad in ("NotAction", "NotResource", "NotPrincipal"):
            if bad in s:
                problems.append(f"{sid}: {bad}")
        if s.get("Effect") != "Allow":
            problems.append(f"{sid}: Effect {s.get('Effect')}")
        acts = listify(s.get("Action", []))
        problems += [f"{sid}: wildcard action {a}" for a in acts if "*" in a]
        if "*" in listify(s.get("Resource", [])) and acts != [DESCRIBE]:
            problems.append(f"{sid}: Resource * for {acts}")
    return problems


def actions(doc):
    return {a for s in listify(doc["Statement"]) for a in listify(s["Action"])}


def test_policy_checker_catches_mistakes():
    doc = {"Statement": [{"Effect": "Allow", "Action": "autoscaling:*", "Resource": "x"},
                         {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                         {"Effect": "Deny", "NotAction": "iam:*", "Resource": "*"}]}
    p = "\n".join(policy_problems(doc))
    assert "wildcard action autoscaling:*" in p and "Resource * for ['s3:GetObject']" in p
    assert "NotAction" in p and "Effect Deny" in p


@pytest.mark.parametrize("name,want", [("runner-instance-policy.json", RUNNER_ACTIONS),
                                       ("runner-instance-policy-ssm.json", RUNNER_ACTIONS_SSM),
                                       ("scaler-policy.json", SCALER_ACTIONS)])
def test_iam_policy_files(name, want):
    doc = json.loads((IAM / name).read_text())
    assert doc["Version"] == "2012-10-17"
    assert policy_problems(doc) == []
    assert actions(doc) == want
    for s in doc["Statement"]:
        if set(listify(s["Action"])) & {"autoscaling:TerminateInstanceInAutoScalingGroup",
                                        "autoscaling:SetDesiredCapacity",
                                        "autoscaling:SuspendProcesses"}:
            for r in listify(s["Resource"]):
                assert ":autoScalingGroup:" in r and "autoScalingGroupName/" in r, r


def test_iam_trust_policy():
    doc = json.loads((IAM / "ec2-trust-policy.json").read_text())
    (s,) = doc["Statement"]
    assert s["Principal"] == {"Service": "ec2.amazonaws.com"} and s["Action"] == "sts:AssumeRole"


def role_policy(cfn, role):
    props = cfn["Resources"][role]["Properties"]
    assert "ManagedPolicyArns" not in props, f"{role}: managed policies grant more than it needs"
    (p,) = props["Policies"]
    return p["PolicyDocument"]


def test_cfn_roles_least_privilege(cfn):
    runner, scaler = role_policy(cfn, "RunnerRole"), role_policy(cfn, "ScalerRole")
    assert policy_problems(runner) == [] and policy_problems(scaler) == []
    assert actions(runner) == RUNNER_ACTIONS
    assert actions(scaler) == SCALER_ACTIONS_CFN
    by_action = {a: s["Resource"] for doc in (runner, scaler)
                 for s in listify(doc["Statement"]) for a in listify(s["Action"])}
    # The group actions name the runner group, and it is the group the template creates.
    group = cfn["Resources"]["RunnerGroup"]["Properties"]["AutoScalingGroupName"]["Fn::Sub"]
    for a in ("autoscaling:TerminateInstanceInAutoScalingGroup",
              "autoscaling:SetDesiredCapacity", "autoscaling:SuspendProcesses"):
        arn = by_action[a]["Fn::Sub"]
        assert arn.endswith(f":autoScalingGroup:*:autoScalingGroupName/{group}"), arn
    assert by_action["dynamodb:GetItem"] == {"Fn::GetAtt": ["LeaseTable", "Arn"]}
    # The signal names this stack only.
    assert by_action["cloudformation:SignalResource"]["Fn::Sub"].endswith(
        ":stack/${AWS::StackName}/*")
    # Each role reads its own secret, given as a parameter.
    assert [s["Resource"] for s in runner["Statement"]
            if s["Action"] == "secretsmanager:GetSecretValue"] == [{"Ref": "RunnerTokenSecretArn"}]
    assert [s["Resource"] for s in scaler["Statement"]
            if s["Action"] == "secretsmanager:GetSecretValue"] == [{"Ref": "CircleTokenSecretArn"}]
    for role in ("RunnerRole", "ScalerRole"):
        trust = cfn["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]


# ---- launch templates, groups, table -----------------------------------------------------

def resources_of(cfn, rtype):
    return {n: r["Properties"] for n, r in cfn["Resources"].items() if r["Type"] == rtype}


def test_cfn_launch_templates(cfn):
    lts = resources_of(cfn, "AWS::EC2::LaunchTemplate")
    assert set(lts) == {"RunnerLaunchTemplate", "ScalerLaunchTemplate"}
    for name, p in lts.items():
        d = p["LaunchTemplateData"]
        mo = d["MetadataOptions"]
        assert mo["HttpTokens"] == "required", name
        assert int(mo["HttpPutResponseHopLimit"]) == 1, name
        assert mo.get("HttpEndpoint", "enabled") == "enabled", name
        assert d["InstanceInitiatedShutdownBehavior"] == "terminate", name
        assert "Arn" in d["IamInstanceProfile"], name


def test_cfn_groups_and_table(cfn):
    g = cfn["Resources"]["RunnerGroup"]["Properties"]
    assert int(g["MinSize"]) == 0
    # Desired starts at MinSize (0); leaving it out keeps stack updates off the scaler's value.
    assert int(g.get("DesiredCapacity", 0)) == 0
    assert g["MaxSize"] == {"Ref": "RunnerMaxSize"}
    assert g["NewInstancesProtectedFromScaleIn"] is True
    assert g["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "RunnerLaunchTemplate"}
    s = cfn["Resources"]["ScalerGroup"]["Properties"]
    # One scaler, room for a second during a rolling update (the lease keeps one actuator).
    assert (int(s["MinSize"]), int(s["MaxSize"]), int(s["DesiredCapacity"])) == (1, 2, 1)
    roll = cfn["Resources"]["ScalerGroup"]["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert roll["MinInstancesInService"] == 1 and roll["MaxBatchSize"] == 1, roll
    # The roll, and the creation, wait for the new scaler to say it runs (a bad .deb or secret
    # then fails the stack, or rolls the update back with the old scaler still running).
    assert roll["WaitOnResourceSignals"] is True, roll
    sig = cfn["Resources"]["ScalerGroup"]["CreationPolicy"]["ResourceSignal"]
    assert int(sig["Count"]) == 1 and sig["Timeout"] == roll["PauseTime"], (sig, roll)
    ud = yaml.safe_load(render_user_data("ScalerLaunchTemplate", DUMMY, cfn).split("\n", 1)[1])
    cmds = [c if isinstance(c, str) else " ".join(c) for c in ud["runcmd"]]
    stack_name = DUMMY.get("AWS::StackName", "runnerd")
    assert cmds[-1] == (f"/usr/local/sbin/runnerd-bootstrap signal {stack_name} ScalerGroup "
                        "SUCCESS"), cmds
    assert "systemctl enable --now runner-scaler.service" in cmds[-2], cmds
    assert f"runnerd-bootstrap signal {stack_name} ScalerGroup FAILURE" in cmds[-2], cmds
    assert s["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "ScalerLaunchTemplate"}
    t = cfn["Resources"]["LeaseTable"]["Properties"]
    assert t["BillingMode"] == "PAY_PER_REQUEST"
    assert t["KeySchema"] == [{"AttributeName": "lease_id", "KeyType": "HASH"}]
    assert t["AttributeDefinitions"] == [{"AttributeName": "lease_id", "AttributeType": "S"}]
    profiles = resources_of(cfn, "AWS::IAM::InstanceProfile")
    assert {n: p["Roles"] for n, p in profiles.items()} == {
        "RunnerInstanceProfile": [{"Ref": "RunnerRole"}],
        "ScalerInstanceProfile": [{"Ref": "ScalerRole"}]}
    assert set(cfn["Outputs"]) >= {"RunnerGroupName", "ScalerGroupName", "LeaseTableName"}


# ---- user-data ----------------------------------------------------------------------------

# Values that stand in for the template's parameters and the examples' REPLACE_* markers.
DUMMY = {
    "AgentDownloadUrl": "https://circleci-binary-releases.s3.amazonaws.com/circleci-runner/"
                        "3.1.4/circleci-runner_linux_%a.tar.gz",
    "AgentSha256": "a" * 64,
    "RunnerTokenSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rt-AbCdEf",
    "CircleTokenSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ct-GhIjKl",
    "RunnerdDebUrl": "https://downloads.example.com/runnerd.deb",
    "RunnerdDebSha256": "b" * 64,
    "ScalerDebUrl": "https://downloads.example.com/runner-scaler.deb",
    "ScalerDebSha256": "c" * 64,
    "ResourceClass": "myorg/linux-large",
    "RunnerMaxSize": "10",
    "LeaseTable": "runnerd-LeaseTable-0123",
    "AWS::StackName": "runnerd",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
}
# The baked route: no .deb and no agent download (the AMI has both).
BAKED = dict(DUMMY, RunnerAmiId="/runnerd/ami", RunnerdDebUrl="", RunnerdDebSha256="",
             AgentSha256="")
# What a deployment on Debian's own images must give: the .debs and the agent's digest.
NEEDED = {k: DUMMY[k] for k in ("RunnerdDebUrl", "RunnerdDebSha256", "ScalerDebUrl",
                                "ScalerDebSha256", "AgentSha256")}

REPLACE = {
    "REPLACE_AGENT_TARBALL_SHA256": DUMMY["AgentSha256"],
    "REPLACE_RUNNER_TOKEN_SECRET_ARN": DUMMY["RunnerTokenSecretArn"],
    "REPLACE_CIRCLE_TOKEN_SECRET_ARN": DUMMY["CircleTokenSecretArn"],
    "REPLACE_RUNNERD_DEB_URL": DUMMY["RunnerdDebUrl"],
    "REPLACE_RUNNERD_DEB_SHA256": DUMMY["RunnerdDebSha256"],
    "REPLACE_SCALER_DEB_URL": DUMMY["ScalerDebUrl"],
    "REPLACE_SCALER_DEB_SHA256": DUMMY["ScalerDebSha256"],
    "REPLACE_RESOURCE_CLASS": DUMMY["ResourceClass"],
    "REPLACE_RUNNER_ASG_NAME": "runnerd-runners",
    "REPLACE_REGION": "us-east-1",
    "REPLACE_RUNNER_MAX_SIZE": DUMMY["RunnerMaxSize"],
    "REPLACE_LEASE_TABLE": DUMMY["LeaseTable"],
}


def cfn_user_data(cfn, lt):
    return user_data_template(cfn, lt)


def fill_sub(text):
    def one(m):
        assert m.group(1) in DUMMY, f"no dummy value for ${{{m.group(1)}}}"
        return DUMMY[m.group(1)]
    return SUB_VAR.sub(one, text)


def fill_replace(text):
    for k in sorted(REPLACE, key=len, reverse=True):
        text = text.replace(k, REPLACE[k])
    assert not re.findall(r"REPLACE_\w+", text)
    return text


# Token shapes: CircleCI personal/project tokens, AWS keys, and any long opaque string (a
# runner token is 80 hex characters). Placeholders (REPLACE_*, ${...}) are not values.
TOKENISH = [re.compile(p) for p in (
    r"CCIPAT_\w+", r"CCIPRJ_\w+", r"\bAKIA[0-9A-Z]{16}\b", r"\bASIA[0-9A-Z]{16}\b",
    r"(?i)circle[-_]?token\s*[:=]", r"(?i)aws_secret_access_key", r"(?i)aws_session_token",
    r"(?<![\w$/{])[A-Za-z0-9+/_=-]{32,}")]


# Long strings that are words, not secrets: API names, paths and IMDS paths in the bootstrap.
NOT_TOKENS = re.compile(r"(?:[A-Z][a-z]+)+|[=A-Za-z]*(?:[A-Z][a-z]+)+|(?:/?[a-z][a-z0-9.]*[-/])+"
                        r"[a-z0-9.-]*/?|(?:[A-Za-z][a-z0-9]*-)+[a-z]+"
                        r"|(?:[A-Z][a-z]+)+=(?:true|false)")


def token_findings(text):
    text = re.sub(r"REPLACE_\w+|\$\{[^}]*\}", "", text)
    return [m.group(0) for p in TOKENISH for m in p.finditer(text)
            if not NOT_TOKENS.fullmatch(m.group(0))]


def test_token_detector_catches_tokens():
    assert token_findings("id = " + "f" * 80)
    assert token_findings("CIRCLE_TOKEN=abc")
    assert token_findings("key AKIAABCDEFGHIJKLMNOP")
    assert token_findings("auth_token: CCIPAT_xyz_123")
    assert not token_findings("id = REPLACE_RUNNER_TOKEN_SECRET_ARN\nsum='${RunnerdDebSha256}'")


def user_data_variants(cfn):
    """(name, cloud-config text ready to parse) for the examples and the template's."""
    return [("user-data-runner.yaml", fill_replace((AWS / "user-data-runner.yaml").read_text())),
            ("user-data-scaler.yaml", fill_replace((AWS / "user-data-scaler.yaml").read_text())),
            ("RunnerLaunchTemplate", render_user_data("RunnerLaunchTemplate", DUMMY, cfn)),
            ("ScalerLaunchTemplate", render_user_data("ScalerLaunchTemplate", DUMMY, cfn)),
            ("RunnerLaunchTemplate, baked AMI",
             render_user_data("RunnerLaunchTemplate", BAKED, cfn))]


def test_user_data_holds_no_token(cfn):
    raw = [("user-data-runner.yaml", (AWS / "user-data-runner.yaml").read_text()),
           ("user-data-scaler.yaml", (AWS / "user-data-scaler.yaml").read_text()),
           ("RunnerLaunchTemplate", cfn_user_data(cfn, "RunnerLaunchTemplate")),
           ("ScalerLaunchTemplate", cfn_user_data(cfn, "ScalerLaunchTemplate"))]
    for name, text in raw:
        assert token_findings(text) == [], name
    # Nor may a token be a parameter of the template (it would show in the console).
    for p in cfn["Parameters"]:
        assert not re.search(r"(?i)token$", p), p


def ini_section(text, section):
    keys, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            cur = line.strip("[]")
        elif cur == section and "=" in line and not line.startswith((";", "#")):
            k, v = line.split("=", 1)
            keys[k.strip()] = v.strip()
    return keys


def check_config(binary, text, tmp_path, name):
    conf = tmp_path / f"{name}.conf"
    conf.write_text(text)
    r = run([binary, "check-config", "-c", conf])
    assert r.returncode == 0, f"{name}:\n{text}\n{out(r)}"
    return r.stdout


def binary(build, name):
    p = build / name
    assert p.exists(), f"{p} missing: run make"
    return p


def test_user_data_configs_are_valid(cfn, build, tmp_path):
    for name, text in user_data_variants(cfn):
        doc = yaml.safe_load(text)
        assert text.startswith("#cloud-config\n"), name
        cmds = "\n".join(c if isinstance(c, str) else " ".join(c) for c in doc["runcmd"])
        for c in doc["runcmd"]:
            if isinstance(c, list) and c[:2] in (["sh", "-ec"], ["sh", "-c"]):
                r = run(["sh", "-n", "-c", c[2]])
                assert r.returncode == 0, f"{name}: shell syntax\n{c[2]}\n{out(r)}"
        # The install is runnerd-bootstrap, the very file in packaging/aws: verified download,
        # the configuration written before it kept, every failure ending in a power-off.
        boot = written_file(text, "/usr/local/sbin/runnerd-bootstrap")
        assert boot == (AWS / "runnerd-bootstrap").read_text(), name
        assert "/usr/local/sbin/runnerd-bootstrap" in cmds, name
        assert "sha256sum -c" in boot and "--force-confold" in boot, name
        if "Scaler" in name or "scaler" in name:
            conf = written_file(text, "/etc/runnerd/scaler.conf")
            circle = ini_section(conf, "circleci")
            assert circle["token_source"] in ("secretsmanager", "ssm"), name
            assert set(circle) <= {"api_url", "token_source", "token_id", "token_key"}, name
            assert "systemctl enable --now runner-scaler" in cmds, name
            check_config(binary(build, "runner-scaler"), conf, tmp_path, name)
        else:
            conf = written_file(text, "/etc/runnerd/runnerd.conf")
            tok = ini_section(conf, "token")
            assert tok["source"] in ("secretsmanager", "ssm"), name
            assert set(tok) <= {"source", "id", "key"}, name
            shown = check_config(binary(build, "runnerd"), conf, tmp_path, name)
            assert "on_exit = poweroff" in shown and "leave_asg = true" in shown, name


# ---- the shipped example configurations ------------------------------------------------

@pytest.mark.parametrize("conf,prog", [("runnerd.conf", "runnerd"),
                                       ("scaler.conf", "runner-scaler")])
def test_example_configs_keys_are_valid(conf, prog, build, tmp_path):
    """Every key the example shows (commented out) is a key the program accepts."""
    text = (REPO / "packaging" / "etc" / conf).read_text()
    uncommented = re.sub(r"(?m)^;", "", text)
    assert uncommented != text
    check_config(binary(build, prog), uncommented, tmp_path, conf)


def test_packer_files_agree():
    conf = (REPO / "packaging" / "packer" / "runnerd.conf").read_text()
    assert token_findings(conf) == []
    assert ini_section(conf, "token")["source"] in ("secretsmanager", "ssm")
    hcl = PACKER.read_text()
    assert "RUNNERD_NO_START=1" in hcl and "runnerd prepare" in hcl
    assert "--force-confold" in hcl


def test_packer_config_is_valid(build, tmp_path):
    conf = fill_replace((REPO / "packaging" / "packer" / "runnerd.conf").read_text())
    check_config(binary(build, "runnerd"), conf, tmp_path, "packer-runnerd")


# ---- packer ----------------------------------------------------------------------------

@pytest.fixture
def packer():
    exe = shutil.which("packer")
    if not exe:
        pytest.skip("packer is not installed (Debian's packer package; scripts/install-deps)")
    return exe


def packer_env():
    return dict(os.environ, CHECKPOINT_DISABLE="1", PACKER_NO_COLOR="1")


def test_packer_validate(packer, tmp_path):
    # A full validate works offline with Debian's packer 1.6 (builders built in, no AWS call);
    # it checks that the files to upload exist, so give it a .deb path that exists.
    deb = tmp_path / "runnerd_0.0.0_amd64.deb"
    deb.write_bytes(b"!<arch>\n")
    r = run([packer, "validate", "-var", f"deb={deb}", PACKER], env=packer_env(), cwd=tmp_path)
    assert r.returncode == 0, out(r)
    # And it fails when something is wrong: the check is real.
    r = run([packer, "validate", "-var", f"deb={tmp_path}/missing.deb", PACKER],
            env=packer_env(), cwd=tmp_path)
    assert r.returncode != 0 and "missing.deb" in r.stdout + r.stderr, out(r)
    r = run([packer, "fmt", "-check", PACKER], env=packer_env())
    assert r.returncode == 0, "packer fmt would change the template:\n" + out(r)
    # Either architecture (-var arch=arm64 bakes from Debian's arm64 image), and no other.
    r = run([packer, "validate", "-var", f"deb={deb}", "-var", "arch=arm64", PACKER],
            env=packer_env(), cwd=tmp_path)
    assert r.returncode == 0, out(r)
    r = run([packer, "validate", "-var", f"deb={deb}", "-var", "arch=x86_64", PACKER],
            env=packer_env(), cwd=tmp_path)
    assert r.returncode != 0 and "x86_64" in r.stdout + r.stderr, out(r)


def test_packer_source_image_follows_arch():
    hcl = PACKER.read_text()
    assert 'name                = "debian-12-${var.arch}-*"' in hcl
    assert "architecture        = local.ec2_arch" in hcl
    assert re.search(r'ec2_arch\s*=\s*\{ amd64 = "x86_64", arm64 = "arm64" \}\[var.arch\]', hcl)


def test_cfn_first_deployment_defaults(cfn):
    """What a first deployment meets (issue 12): the scaler on Debian's own image, never the
    runners' baked one; secret ARNs complete (IAM matches them exactly); the baked route needs
    no .deb or agent URL; a root volume CI can use; the public-IP choice; terminate on
    shutdown."""
    p = cfn["Parameters"]
    res = cfn["Resources"]
    # The scaler's image is its own parameter, Debian's for the architecture by default.
    for arch in ("amd64", "arm64"):
        assert launch_template_value("ScalerLaunchTemplate", "ImageId",
                                     {"Architecture": arch}, cfn) == \
            f"resolve:ssm:/aws/service/debian/release/12/latest/{arch}"
        assert launch_template_value("ScalerLaunchTemplate", "ImageId",
                                     {"Architecture": arch, "RunnerAmiId": "/runnerd/ami"},
                                     cfn) == \
            f"resolve:ssm:/aws/service/debian/release/12/latest/{arch}"
    assert p["ScalerAmiId"]["Default"] == ""
    for name in ("RunnerTokenSecretArn", "CircleTokenSecretArn"):
        pat = re.compile(p[name]["AllowedPattern"])
        assert pat.fullmatch("arn:aws:secretsmanager:us-east-1:123456789012:secret:"
                             "cci-runner-secrets-AbC123")
        assert pat.fullmatch("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:"
                             "team/runner-token-x1y2z3")
        for partial in ("arn:aws:secretsmanager:us-east-1:123456789012:secret:cci-runner-secrets",
                        "cci-runner-secrets", "arn:aws:secretsmanager:::secret:x-AbC123"):
            assert not pat.fullmatch(partial), (name, partial)
    for name in ("RunnerdDebUrl", "RunnerdDebSha256", "ScalerDebUrl", "ScalerDebSha256",
                 "AgentSha256"):
        assert p[name]["Default"] == "" and re.fullmatch(p[name]["AllowedPattern"], ""), name
    lt = res["RunnerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    [bdm] = lt["BlockDeviceMappings"]
    assert bdm["Ebs"]["VolumeType"] == "gp3" and bdm["Ebs"]["VolumeSize"] == \
        {"Ref": "RunnerRootVolumeSize"} and bdm["Ebs"]["Encrypted"] is True
    assert int(p["RunnerRootVolumeSize"]["Default"]) >= 30
    for name in ("RunnerLaunchTemplate", "ScalerLaunchTemplate"):
        d = res[name]["Properties"]["LaunchTemplateData"]
        assert d["InstanceInitiatedShutdownBehavior"] == "terminate", name
        assert "NetworkInterfaces" in d and "SecurityGroupIds" in d, name
    # The baked route: the user-data carries no download line, and its runnerd.conf is valid
    # (test_user_data_configs_are_valid checks it with check-config).
    baked = written_file(render_user_data("RunnerLaunchTemplate", BAKED, cfn),
                         "/etc/runnerd/runnerd.conf")
    assert "download_url" not in baked and "sha256 =" not in baked, baked


def test_bootstrap_script_syntax():
    r = run(["sh", "-n", AWS / "runnerd-bootstrap"])
    assert r.returncode == 0, out(r)
    r = run(["bash", "-n", AWS / "runnerd-bootstrap"])
    assert r.returncode == 0, out(r)
    text = (AWS / "runnerd-bootstrap").read_text()
    assert "${" not in text  # it sits in a CloudFormation Fn::Sub
    # Credentials reach curl on standard input only (-K -), never its command line.
    assert "-K -" in text and "--user" not in text


def test_packer_build_fails_when_runnerd_runs(tmp_path):
    """The bake's own check, run as the provisioner runs it (sh -e): a runnerd that is running
    on the build instance fails the build (a negated `! systemctl is-active` never would)."""
    lines = re.findall(r'^\s*"(.*is-active.*)",\s*$', PACKER.read_text(), re.M)
    assert len(lines) == 1, lines
    check = lines[0].encode().decode("unicode_escape")
    stub = tmp_path / "systemctl"
    for status, want_fail in ((0, True), (3, False)):
        stub.write_text(f"#!/bin/sh\nexit {status}\n")
        stub.chmod(0o755)
        r = run(["sh", "-ec", check], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
        assert (r.returncode != 0) == want_fail, (status, out(r))


# ---- architectures (issue 14) -----------------------------------------------------------

# Instance types by AWS's naming, and the architecture each runs. Graviton: the processor
# letter g after the generation (c7g, c6gn, im4gn, x2gd, g5g), and a1; everything else x86-64.
INSTANCE_TYPES = {
    "amd64": ["c6i.large", "c5.xlarge", "m7i-flex.large", "c7i-flex.2xlarge", "c7a.4xlarge",
              "t3.micro", "t3a.nano", "m5zn.large", "g4dn.xlarge", "g6e.2xlarge", "gr6.4xlarge",
              "inf2.xlarge", "p5.48xlarge", "x2iezn.2xlarge", "z1d.metal", "u-6tb1.56xlarge",
              "u7i-12tb.224xlarge", "r8i.large", "i4i.metal", "d3en.xlarge", "trn1.2xlarge"],
    "arm64": ["c7g.large", "c7gn.16xlarge", "c6gd.medium", "c8g.metal-24xl", "m7g.xlarge",
              "m6g.large", "r8g.large", "t4g.micro", "t4g.nano", "a1.medium", "g5g.xlarge",
              "im4gn.large", "is4gen.xlarge", "i4g.large", "x2gd.medium", "x8g.large",
              "hpc7g.4xlarge", "c6gn.metal"],
}
TYPE_PARAM = {"amd64": "RunnerInstanceTypeAmd64", "arm64": "RunnerInstanceTypeArm64"}
OTHER = {"amd64": "arm64", "arm64": "amd64"}


def deploy_problems(values, cfn):
    """Everything CloudFormation would refuse values for before creating anything: parameter
    constraints, then the template's Rules."""
    return parameter_problems(values, cfn) + failed_rules(values, cfn)


def test_architecture_parameter(cfn):
    p = cfn["Parameters"]["Architecture"]
    assert p["AllowedValues"] == ["amd64", "arm64"] and p["Default"] == "amd64"
    assert deploy_problems({"Architecture": "x86_64"}, cfn)
    assert deploy_problems({"Architecture": "aarch64"}, cfn)
    # The template's defaults and what Debian's images lack deploy, for either architecture.
    for arch in ("amd64", "arm64"):
        assert deploy_problems({"Architecture": arch, **NEEDED}, cfn) == [], arch


def test_what_the_images_lack_is_required(cfn):
    """Deployments that could only loop are refused before anything launches: the defaults
    alone (Debian's images hold neither package nor agent), baked runners with the scaler on
    Debian's image but no scaler .deb, and an AMI id where a parameter name belongs."""
    rule = "WhatTheImagesLack:"
    assert any(x.startswith(rule) and "RunnerdDebUrl" in x for x in deploy_problems({}, cfn))
    assert any(x.startswith(rule) and "ScalerDebUrl" in x for x in deploy_problems({}, cfn))
    no_agent = dict(NEEDED, AgentSha256="")
    assert any("AgentSha256" in x for x in failed_rules(no_agent, cfn)), no_agent
    baked_no_scaler = {"RunnerAmiId": "/runnerd/ami", "ScalerDebUrl": "", "ScalerDebSha256": ""}
    assert any(x.startswith(rule) and "ScalerDebUrl" in x
               for x in deploy_problems(baked_no_scaler, cfn))
    assert deploy_problems(dict(baked_no_scaler, ScalerDebUrl=DUMMY["ScalerDebUrl"],
                                ScalerDebSha256=DUMMY["ScalerDebSha256"]), cfn) == []
    # Both images baked: nothing to download.
    assert deploy_problems({"RunnerAmiId": "/runnerd/ami", "ScalerAmiId": "/runnerd/scaler"},
                           cfn) == []
    for p in ("RunnerAmiId", "ScalerAmiId"):
        assert any(p in x for x in parameter_problems({p: "ami-0123456789abcdef0"}, cfn)), p
        assert parameter_problems({p: "/runnerd/ami:3"}, cfn) == [], p


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_instance_type_patterns_follow_aws_naming(cfn, arch):
    """Each architecture's parameter takes its types and refuses the other's: the check is
    AWS's naming rule, so a new family is known without a list to update."""
    for t in INSTANCE_TYPES[arch]:
        assert parameter_problems({TYPE_PARAM[arch]: t}, cfn) == [], t
    for t in INSTANCE_TYPES[OTHER[arch]]:
        assert parameter_problems({TYPE_PARAM[arch]: t}, cfn), f"{TYPE_PARAM[arch]} took {t}"
    for junk in ("c6i", "C6I.LARGE", "c6i.large ", "c6i.large;x", ".large", "c7g large"):
        assert parameter_problems({TYPE_PARAM[arch]: junk}, cfn), junk
    assert parameter_problems({TYPE_PARAM[arch]: ""}, cfn) == []


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_instance_type_checked_against_architecture(cfn, arch):
    """The deployments the issue names are refused before anything launches: c6i.* with arm64,
    c7g.* with amd64, however the type is given; and a type for the architecture not deployed
    is refused rather than silently ignored."""
    other = OTHER[arch]
    ok = {"Architecture": arch, TYPE_PARAM[arch]: INSTANCE_TYPES[arch][0], **NEEDED}
    assert deploy_problems(ok, cfn) == []
    # The other architecture's type in this architecture's parameter: its pattern refuses it.
    bad = {"Architecture": arch, TYPE_PARAM[arch]: INSTANCE_TYPES[other][0]}
    assert any(TYPE_PARAM[arch] in x for x in deploy_problems(bad, cfn)), bad
    # In its own parameter, with this architecture: the Rule refuses it.
    bad = {"Architecture": arch, TYPE_PARAM[other]: INSTANCE_TYPES[other][0]}
    problems = deploy_problems(bad, cfn)
    assert any(x.startswith("InstanceTypeMatchesArchitecture:") for x in problems), bad
    assert any(f"Architecture is {arch}" in x for x in problems), problems


def test_launch_templates_follow_the_architecture(cfn):
    """What each architecture's launch templates hold: Debian's image for it (EC2 resolves the
    public parameter at launch), the runners' type (given or the architecture's default) and
    the scaler's; every default type is one its architecture's parameter would accept."""
    want = {"amd64": ("c6i.large", "t3.micro"), "arm64": ("c7g.large", "t4g.micro")}
    for arch, (runner_type, scaler_type) in want.items():
        v = {"Architecture": arch}
        for lt in ("RunnerLaunchTemplate", "ScalerLaunchTemplate"):
            assert launch_template_value(lt, "ImageId", v, cfn) == \
                f"resolve:ssm:/aws/service/debian/release/12/latest/{arch}", (arch, lt)
        assert launch_template_value("RunnerLaunchTemplate", "InstanceType", v, cfn) == \
            runner_type
        assert launch_template_value("ScalerLaunchTemplate", "InstanceType", v, cfn) == \
            scaler_type
        for t in (runner_type, scaler_type):
            assert parameter_problems({TYPE_PARAM[arch]: t}, cfn) == [], (arch, t)
        given = INSTANCE_TYPES[arch][2]
        assert launch_template_value("RunnerLaunchTemplate", "InstanceType",
                                     {**v, TYPE_PARAM[arch]: given}, cfn) == given
        # A baked runner AMI: the runners take it, the scaler keeps Debian's.
        baked = {**v, "RunnerAmiId": "/runnerd/ami-arm64"}
        assert launch_template_value("RunnerLaunchTemplate", "ImageId", baked, cfn) == \
            "resolve:ssm:/runnerd/ami-arm64"
        assert launch_template_value("ScalerLaunchTemplate", "ImageId", baked, cfn) == \
            f"resolve:ssm:/aws/service/debian/release/12/latest/{arch}"
    for name in ("RunnerAmiId", "ScalerAmiId"):
        for good in ("", "/runnerd/ami", "runnerd-ami", "/runnerd/ami:3",
                     "arn:aws:ssm:us-east-1:123456789012:parameter/runnerd/ami"):
            assert parameter_problems({name: good}, cfn) == [], (name, good)
        for bad in ("ami 0123", "{{resolve:ssm:/x}}", "/x;y"):
            assert parameter_problems({name: bad}, cfn), (name, bad)


def test_arm64_user_data_takes_the_arm64_agent(cfn, build, tmp_path):
    """The agent URL keeps %a: runnerd on an arm64 runner expands it to arm64 and checks the
    download against AgentSha256, which the parameter's description says is the tarball of
    Architecture. The arm64 deployment's user-data is the amd64 one's: nothing in it depends on
    the architecture but that expansion."""
    arm = render_user_data("RunnerLaunchTemplate", dict(DUMMY, Architecture="arm64"), cfn)
    amd = render_user_data("RunnerLaunchTemplate", dict(DUMMY, Architecture="amd64"), cfn)
    assert arm == amd
    conf = written_file(arm, "/etc/runnerd/runnerd.conf")
    assert "download_url = https://circleci-binary-releases.s3.amazonaws.com/circleci-runner/" \
        "3.1.4/circleci-runner_linux_%a.tar.gz" in conf, conf
    shown = check_config(binary(build, "runnerd"), conf, tmp_path, "arm64-runner")
    assert "circleci-runner_linux_%a.tar.gz" in shown, shown
    desc = " ".join(cfn["Parameters"]["AgentSha256"]["Description"].split())
    assert "for Architecture" in desc and "circleci-runner_linux_arm64.tar.gz" in desc, desc
    assert "agent-sha256 3.1.4 arm64" in desc, desc
