"""packaging/aws/cloudformation.yaml against AWS's published CloudFormation resource
specification: npm @aws-cdk/cfnspec (its spec/specification.json, the pinned version that
scripts/install-deps puts in the cache outside the repo, like dynalite; conftest.cfnspec_dir).

Checked, structurally, for every resource:
- its Type is a resource type of the specification; its own keys are CloudFormation's resource
  attributes (Type, Properties, Condition, DependsOn, ...);
- every property name is one of that type's properties, every required property is there, and
  each value has the property's shape: a primitive (String, Integer, Long, Double, Boolean,
  Timestamp, Json) of its kind, a List or a Map of primitives or of property types, or a
  property type (an object) whose own property names, required properties and values are
  checked the same way, down to the leaves;
- a value that is an intrinsic function (Ref, Fn::Sub, Fn::GetAtt, ...) is not checked, except
  Fn::If, whose two branches are each checked as the value (AWS::NoValue: the property left
  out); every Fn::GetAtt names an attribute the resource's type has.
The checker is shown to catch each kind of mistake, on mutated copies of the template's text.
A cache without the pinned package fails (run scripts/install-deps): make check runs it first.
"""

import difflib
import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from stack import load_cfn  # noqa: E402

from conftest import REPO, cfnspec_dir  # noqa: E402

CFN = REPO / "packaging" / "aws" / "cloudformation.yaml"
# What a resource may hold beside its type (CloudFormation's resource attributes).
RESOURCE_KEYS = {"Type", "Properties", "Condition", "DependsOn", "Metadata", "CreationPolicy",
                 "UpdatePolicy", "DeletionPolicy", "UpdateReplacePolicy"}
INTRINSICS = {"Ref", "Condition"} | {f"Fn::{n}" for n in (
    "Base64", "Cidr", "FindInMap", "GetAtt", "GetAZs", "If", "ImportValue", "Join", "Length",
    "Select", "Split", "Sub", "ToJsonString", "Transform", "Equals", "Not", "And", "Or")}
INT = re.compile(r"-?[0-9]+")
NUMBER = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def pinned_version():
    """The version scripts/install-deps pins."""
    m = re.search(r"^CFNSPEC_VERSION=(\S+)$", (REPO / "scripts" / "install-deps").read_text(),
                  re.M)
    assert m, "scripts/install-deps pins no CFNSPEC_VERSION"
    return m.group(1)


@pytest.fixture(scope="module")
def spec():
    d = Path(cfnspec_dir())
    want = pinned_version()
    pkg = d / "package.json"
    if not pkg.exists():
        pytest.fail(f"@aws-cdk/cfnspec is not installed at {d}: run scripts/install-deps "
                    "(make check does)")
    have = json.loads(pkg.read_text())["version"]
    assert have == want, f"{d} holds @aws-cdk/cfnspec {have}, install-deps pins {want}: " \
        "run scripts/install-deps"
    return json.loads((d / "spec" / "specification.json").read_text())


def intrinsic(v):
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in INTRINSICS


class Checker:
    """The template against the specification: problems (strings naming where) and counts."""

    def __init__(self, spec):
        self.spec = spec
        self.rtypes, self.ptypes = spec["ResourceTypes"], spec["PropertyTypes"]
        self.problems = []
        self.types = set()        # resource types checked
        self.property_types = set()
        self.names = 0            # property names checked (resources' and property types')
        self.intrinsics = 0       # values that are intrinsics (only Fn::If's branches checked)

    def bad(self, where, what):
        self.problems.append(f"{where}: {what}")

    def property_type(self, owner, name):
        return self.ptypes.get(name if name == "Tag" else f"{owner}.{name}")

    def template(self, t):
        resources = t.get("Resources") or {}
        for name, r in resources.items():
            self.resource(f"Resources.{name}", r)
        self.getatts(t, resources)
        return self

    def resource(self, where, r):
        for k in sorted(set(r) - RESOURCE_KEYS):
            self.bad(where, f"{k}: not a resource attribute "
                     f"(one of {', '.join(sorted(RESOURCE_KEYS))})")
        rtype = r.get("Type", "")
        if rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource":
            return
        rs = self.rtypes.get(rtype)
        if rs is None:
            near = difflib.get_close_matches(rtype, self.rtypes, 1)
            self.bad(where, f"{rtype}: no such resource type"
                     + (f" (did you mean {near[0]}?)" if near else ""))
            return
        self.types.add(rtype)
        self.object(f"{where}.Properties", r.get("Properties", {}), rs.get("Properties", {}),
                    rtype)

    def object(self, where, v, props, owner, label=None):
        """v against a property list: owner's (the resource type), or label's (one of its
        property types). Property types are named after the resource type they belong to."""
        label = label or owner
        if self.skip(where, v, lambda w, x: self.object(w, x, props, owner, label)):
            return
        if not isinstance(v, dict):
            self.bad(where, f"{type(v).__name__} where an object is wanted")
            return
        for k, x in v.items():
            self.names += 1
            p = props.get(k)
            if p is None:
                near = difflib.get_close_matches(k, props, 1)
                self.bad(f"{where}.{k}", f"no such property of {label}"
                         + (f" (did you mean {near[0]}?)" if near else ""))
                continue
            self.value(f"{where}.{k}", x, p, owner)
        for k, p in sorted(props.items()):
            if p.get("Required") and k not in v:
                self.bad(where, f"{k}: required by {label}, missing")

    def skip(self, where, v, again):
        """True when v is an intrinsic: Fn::If's branches are checked with again(), the others
        left alone (their value is only known at deployment)."""
        if not intrinsic(v):
            return False
        (fn, arg), = v.items()
        self.intrinsics += 1
        if fn == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            for i, branch in ((1, arg[1]), (2, arg[2])):
                if branch != {"Ref": "AWS::NoValue"}:
                    again(f"{where}[If {arg[0]} {'yes' if i == 1 else 'no'}]", branch)
        return True

    def value(self, where, v, p, owner):
        if self.skip(where, v, lambda w, x: self.value(w, x, p, owner)):
            return
        if "PrimitiveType" in p:
            self.primitive(where, v, p["PrimitiveType"])
        elif p.get("Type") in ("List", "Map"):
            container = list if p["Type"] == "List" else dict
            if not isinstance(v, container):
                self.bad(where, f"{type(v).__name__} where a {p['Type']} is wanted")
                return
            items = enumerate(v) if container is list else v.items()
            for i, x in items:
                self.item(f"{where}[{i}]", x, p, owner)
        elif "Type" in p:
            self.typed(where, v, p["Type"], owner)
        elif "PrimitiveTypes" in p or "Types" in p:
            self.either(where, v, p, owner)
        else:
            self.bad(where, f"the specification gives no type: {p}")

    def item(self, where, x, p, owner):
        if self.skip(where, x, lambda w, y: self.item(w, y, p, owner)):
            return
        if "PrimitiveItemType" in p:
            self.primitive(where, x, p["PrimitiveItemType"])
        elif "ItemType" in p:
            self.typed(where, x, p["ItemType"], owner)
        elif "PrimitiveItemTypes" in p or "ItemTypes" in p:
            self.either(where, x, {"PrimitiveTypes": p.get("PrimitiveItemTypes", []),
                                   "Types": p.get("ItemTypes", [])}, owner)
        else:
            self.bad(where, f"the specification gives no item type: {p}")

    def typed(self, where, v, name, owner):
        pt = self.property_type(owner, name)
        if pt is None:
            self.bad(where, f"the specification has no property type {owner}.{name}")
            return
        self.property_types.add(name if name == "Tag" else f"{owner}.{name}")
        if "Properties" in pt:
            self.object(where, v, pt["Properties"], owner,
                        name if name == "Tag" else f"{owner}.{name}")
        else:  # a property type that is itself a list, map or primitive
            self.value(where, v, pt, owner)

    def either(self, where, v, p, owner):
        """A property of several possible types: one of them must fit."""
        for prim in p.get("PrimitiveTypes", []):
            if self.primitive_problem(v, prim) is None:
                return
        for name in p.get("Types", []):
            trial = Checker(self.spec)
            trial.typed(where, v, name, owner)
            if not trial.problems:
                return
        self.bad(where, f"{v!r} fits none of {p.get('PrimitiveTypes', []) + p.get('Types', [])}")

    @staticmethod
    def primitive_problem(v, kind):
        scalar = isinstance(v, (str, int, float, bool))
        if kind == "String":
            # CloudFormation takes a number or a boolean for a string (it renders it).
            return None if scalar else "a string"
        if kind in ("Integer", "Long"):
            ok = (isinstance(v, int) and not isinstance(v, bool)) or \
                (isinstance(v, str) and INT.fullmatch(v))
            return None if ok else "an integer"
        if kind == "Double":
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) or \
                (isinstance(v, str) and NUMBER.fullmatch(v))
            return None if ok else "a number"
        if kind == "Boolean":
            ok = isinstance(v, bool) or (isinstance(v, str) and v.lower() in ("true", "false"))
            return None if ok else "a boolean"
        if kind == "Timestamp":
            return None if isinstance(v, str) else "a timestamp"
        if kind == "Json":
            return None if isinstance(v, (dict, list, str)) else "JSON (an object or a string)"
        return f"a {kind} (a primitive type this checker does not know)"

    def primitive(self, where, v, kind):
        want = self.primitive_problem(v, kind)
        if want:
            self.bad(where, f"{v!r}: {kind} property, wants {want}")

    def getatts(self, t, resources):
        def walk(v, where):
            if isinstance(v, dict):
                for k, x in v.items():
                    if k == "Fn::GetAtt" and isinstance(x, list) and len(x) == 2:
                        self.getatt(where, x, resources)
                    walk(x, f"{where}.{k}")
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, f"{where}[{i}]")
        for sect in ("Resources", "Outputs"):
            walk(t.get(sect) or {}, sect)

    def getatt(self, where, x, resources):
        name, attr = x
        r = resources.get(name)
        if r is None or not isinstance(attr, str):
            return  # test_packaging_files.py's reference check reports a missing resource
        rs = self.rtypes.get(r.get("Type"))
        if rs is not None and attr not in rs.get("Attributes", {}):
            self.bad(where, f"Fn::GetAtt {name}.{attr}: {r['Type']} has no attribute {attr} "
                     f"(it has {', '.join(sorted(rs.get('Attributes', {}))) or 'none'})")


def check(text, spec):
    return Checker(spec).template(load_cfn(text))


def test_template_matches_the_resource_specification(spec):
    c = check(CFN.read_text(), spec)
    assert c.problems == [], "\n".join(c.problems)
    # Everything the stack creates was checked, the warm pool and the hooks among them.
    t = load_cfn(CFN.read_text())
    assert c.types == {r["Type"] for r in t["Resources"].values()}
    assert {"AWS::AutoScaling::WarmPool", "AWS::AutoScaling::AutoScalingGroup"} <= c.types
    assert {"AWS::AutoScaling::WarmPool.InstanceReusePolicy",
            "AWS::AutoScaling::AutoScalingGroup.LifecycleHookSpecification",
            "AWS::EC2::LaunchTemplate.LaunchTemplateData"} <= c.property_types
    print(f"\ncfnspec {spec['ResourceSpecificationVersion']}: {len(c.types)} resource types, "
          f"{len(c.property_types)} property types, {c.names} property names checked "
          f"({c.intrinsics} values were intrinsics: Fn::If's branches checked, the rest not "
          "evaluated)")


# Each mutation of the template's text, and what the checker must say about it.
MUTATIONS = [
    # A resource type that does not exist.
    ("Type: AWS::AutoScaling::WarmPool\n", "Type: AWS::AutoScaling::WarmPools\n",
     "Resources.RunnerWarmPool: AWS::AutoScaling::WarmPools: no such resource type"),
    # A misspelled property of a resource.
    ("      NewInstancesProtectedFromScaleIn: true\n",
     "      NewInstancesProtectedFromScaleln: true\n",
     "Resources.RunnerGroup.Properties.NewInstancesProtectedFromScaleln: no such property of "
     "AWS::AutoScaling::AutoScalingGroup (did you mean NewInstancesProtectedFromScaleIn?)"),
    # A misspelled property of a property type (nested).
    ("        ReuseOnScaleIn: false\n", "        ReuseOnScaleln: false\n",
     "Resources.RunnerWarmPool.Properties.InstanceReusePolicy.ReuseOnScaleln: no such property "
     "of AWS::AutoScaling::WarmPool.InstanceReusePolicy"),
    # ... in a list of property types.
    ("          HeartbeatTimeout: 1800\n", "          HeartBeatTimeout: 1800\n",
     "Resources.RunnerGroup.Properties.LifecycleHookSpecificationList[0].HeartBeatTimeout: no "
     "such property of AWS::AutoScaling::AutoScalingGroup.LifecycleHookSpecification"),
    # ... three levels down, in a branch of Fn::If (the first of the two launch templates).
    ("              AssociatePublicIpAddress: true\n",
     "              AssociatePublicIPAddress: true\n",
     "Resources.RunnerLaunchTemplate.Properties.LaunchTemplateData.NetworkInterfaces"
     "[If PublicIp yes][0].AssociatePublicIPAddress: no such property of "
     "AWS::EC2::LaunchTemplate.NetworkInterface (did you mean AssociatePublicIpAddress?)"),
    # A required property left out (of a resource, and of a property type).
    ("      AutoScalingGroupName: !Ref RunnerGroup\n", "",
     "Resources.RunnerWarmPool.Properties: AutoScalingGroupName: required by "
     "AWS::AutoScaling::WarmPool, missing"),
    ("          LifecycleTransition: autoscaling:EC2_INSTANCE_LAUNCHING\n", "",
     "Resources.RunnerGroup.Properties.LifecycleHookSpecificationList[0]: LifecycleTransition: "
     "required by AWS::AutoScaling::AutoScalingGroup.LifecycleHookSpecification, missing"),
    # Values of the wrong shape.
    ("          HeartbeatTimeout: 1800\n", "          HeartbeatTimeout: half an hour\n",
     "LifecycleHookSpecificationList[0].HeartbeatTimeout: 'half an hour': Integer property"),
    ("        ReuseOnScaleIn: false\n", "        ReuseOnScaleIn: [false]\n",
     "InstanceReusePolicy.ReuseOnScaleIn: [False]: Boolean property"),
    ("      VPCZoneIdentifier: !Ref Subnets\n      LifecycleHookSpecificationList:\n",
     "      VPCZoneIdentifier: {Subnets: x}\n      LifecycleHookSpecificationList:\n",
     "Resources.RunnerGroup.Properties.VPCZoneIdentifier: dict where a List is wanted"),
    ("      InstanceReusePolicy:\n        ReuseOnScaleIn: false\n",
     "      InstanceReusePolicy: false\n",
     "Resources.RunnerWarmPool.Properties.InstanceReusePolicy: bool where an object is wanted"),
    # An attribute the type does not have; a key that is not a resource attribute.
    ("Version: !GetAtt RunnerLaunchTemplate.LatestVersionNumber\n",
     "Version: !GetAtt RunnerLaunchTemplate.LatestVersion\n",
     "Fn::GetAtt RunnerLaunchTemplate.LatestVersion: AWS::EC2::LaunchTemplate has no attribute "
     "LatestVersion"),
    ("    Condition: HasWarmPool\n", "    Conditon: HasWarmPool\n",
     "Resources.RunnerWarmPool: Conditon: not a resource attribute"),
]


@pytest.mark.parametrize("old,new,want", MUTATIONS, ids=[m[2].split(":")[0] + " " + str(i)
                                                         for i, m in enumerate(MUTATIONS)])
def test_checker_catches_mistakes(spec, old, new, want):
    """The checker is not vacuous: a copy of the template with one mistake is reported, with
    where it is, and nothing else is."""
    text = CFN.read_text()
    assert old in text, f"the template no longer holds {old!r}: update this mutation"
    problems = check(text.replace(old, new, 1), spec).problems
    assert len(problems) == 1 and want in problems[0], "\n".join(problems) or "no problem found"


def test_checker_checks_each_branch_of_if_and_skips_other_intrinsics(spec):
    t = load_cfn("""
Conditions:
  C: !Equals [a, b]
Resources:
  Pool:
    Type: AWS::AutoScaling::WarmPool
    Properties:
      AutoScalingGroupName: !Sub "${AWS::StackName}-x"
      MinSize: !If [C, 1, "two"]
      MaxGroupPreparedCapacity: !Ref AWS::NoValue
      PoolState: !Join ["", [Stop, ped]]
      InstanceReusePolicy: !If [C, !Ref AWS::NoValue, {ReuseOnScaleIn: true, ReuseOnScale: 1}]
""")
    c = Checker(spec).template(t)
    assert sorted(c.problems) == [
        "Resources.Pool.Properties.InstanceReusePolicy[If C no].ReuseOnScale: no such property of "
        "AWS::AutoScaling::WarmPool.InstanceReusePolicy (did you mean ReuseOnScaleIn?)",
        "Resources.Pool.Properties.MinSize[If C no]: 'two': Integer property, wants an integer",
    ], c.problems


def test_spec_is_the_pinned_package(spec):
    """The specification read is @aws-cdk/cfnspec's (AWS's resource specification, with its own
    version), holding the types the stack uses."""
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", spec["ResourceSpecificationVersion"])
    assert len(spec["ResourceTypes"]) > 500 and len(spec["PropertyTypes"]) > 2000
    assert os.path.isfile(os.path.join(cfnspec_dir(), "spec", "specification.json"))
