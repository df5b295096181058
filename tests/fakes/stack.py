"""The CloudFormation stack (packaging/aws/cloudformation.yaml) as the tests read it: parsed with
CloudFormation's short-form tags, and its launch templates' user-data rendered the way
CloudFormation renders Fn::Sub for given parameter values (so a test runs exactly what the stack
would put on an instance), and the files a cloud-config writes."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CFN = REPO / "packaging" / "aws" / "cloudformation.yaml"
SUB_VAR = re.compile(r"\$\{([^!}][^}]*)\}")


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms, turned into their long forms."""


def _short_form(name):
    key = "Ref" if name == "Ref" else "Condition" if name == "Condition" else f"Fn::{name}"

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            v = loader.construct_scalar(node)
            if name == "GetAtt":
                v = v.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            v = loader.construct_sequence(node, deep=True)
        else:
            v = loader.construct_mapping(node, deep=True)
        return {key: v}
    return construct


for _n in ("Ref", "GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Base64",
           "Select", "Split", "GetAZs", "ImportValue", "FindInMap", "Condition", "Cidr",
           "Length", "ToJsonString", "Transform"):
    CfnLoader.add_constructor(f"!{_n}", _short_form(_n))


def load_cfn(text=None):
    return yaml.load(CFN.read_text() if text is None else text, Loader=CfnLoader)


def user_data_template(cfn, lt):
    """The launch template's user-data template (the text inside Fn::Base64 / Fn::Sub; of the
    list form [text, variables], the text)."""
    ud = cfn["Resources"][lt]["Properties"]["LaunchTemplateData"]["UserData"]
    sub = ud["Fn::Base64"]["Fn::Sub"]
    return sub[0] if isinstance(sub, list) else sub


def evaluate(node, values, cfn):
    """CloudFormation's intrinsic functions for what the templates use: Ref, Fn::Sub (both
    forms), Fn::If with the template's Conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or,
    Condition), Fn::Join, Fn::FindInMap; literals as they are."""
    if isinstance(node, (str, int, float, bool)):
        return node
    if isinstance(node, list):
        return [evaluate(x, values, cfn) for x in node]
    (fn, arg), = node.items()
    if fn == "Ref":
        if arg not in values:
            raise KeyError(f"no value for Ref {arg}")
        return values[arg]
    if fn == "Fn::Sub":
        if isinstance(arg, list):
            extra = {k: evaluate(v, values, cfn) for k, v in arg[1].items()}
            return sub(arg[0], {**values, **extra})
        return sub(arg, values)
    if fn == "Fn::If":
        cond, yes, no = arg
        return evaluate(yes if condition(cond, values, cfn) else no, values, cfn)
    if fn == "Fn::Join":
        return arg[0].join(str(evaluate(x, values, cfn)) for x in arg[1])
    if fn == "Fn::FindInMap":
        name, top, second = (evaluate(x, values, cfn) for x in arg)
        try:
            return cfn["Mappings"][name][top][second]
        except KeyError:
            raise KeyError(f"Fn::FindInMap: no {name}.{top}.{second}") from None
    raise ValueError(f"not evaluated here: {fn}")


def rule_value(node, values, cfn):
    """The rule functions of a template's Rules (Fn::Equals, Fn::Not, Fn::And, Fn::Or,
    Fn::Contains, Ref), as CloudFormation evaluates them before creating anything."""
    if isinstance(node, (str, int, float, bool)):
        return node
    if isinstance(node, list):
        return [rule_value(x, values, cfn) for x in node]
    (fn, arg), = node.items()
    if fn == "Ref":
        return values[arg]
    if fn == "Fn::Equals":
        a, b = (rule_value(x, values, cfn) for x in arg)
        return str(a) == str(b)
    if fn == "Fn::Not":
        return not rule_value(arg[0], values, cfn)
    if fn == "Fn::And":
        return all(rule_value(x, values, cfn) for x in arg)
    if fn == "Fn::Or":
        return any(rule_value(x, values, cfn) for x in arg)
    if fn == "Fn::Contains":
        return str(rule_value(arg[1], values, cfn)) in [str(x) for x in
                                                         rule_value(arg[0], values, cfn)]
    raise ValueError(f"not a rule function here: {fn}")


def failed_rules(values, cfn=None):
    """The AssertDescriptions of the template's Rules that parameter values (the template's
    defaults fill the rest) fail: what CloudFormation would refuse the stack with."""
    cfn = cfn or load_cfn()
    values = {**parameter_defaults(cfn), **values}
    failed = []
    for name, rule in (cfn.get("Rules") or {}).items():
        if "RuleCondition" in rule and not rule_value(rule["RuleCondition"], values, cfn):
            continue
        for a in rule["Assertions"]:
            if not rule_value(a["Assert"], values, cfn):
                failed.append(f"{name}: {a.get('AssertDescription', '')}")
    return failed


def parameter_problems(values, cfn=None):
    """Parameter values that their AllowedValues / AllowedPattern refuse (the pattern must
    match the whole value, as CloudFormation's does)."""
    cfn = cfn or load_cfn()
    problems = []
    for k, v in values.items():
        p = cfn["Parameters"].get(k)
        if p is None:
            continue
        if "AllowedValues" in p and str(v) not in [str(x) for x in p["AllowedValues"]]:
            problems.append(f"{k}={v!r}: not one of {p['AllowedValues']}")
        if "AllowedPattern" in p and not re.fullmatch(p["AllowedPattern"], str(v)):
            problems.append(f"{k}={v!r}: does not match {p['AllowedPattern']}")
    return problems


def launch_hook(cfn=None):
    """The runner group's LAUNCHING lifecycle hook (LifecycleHookName, LifecycleTransition,
    HeartbeatTimeout, DefaultResult): the hook the stack's runnerd.conf names in launch_hook."""
    cfn = cfn or load_cfn()
    (h,) = cfn["Resources"]["RunnerGroup"]["Properties"]["LifecycleHookSpecificationList"]
    return h


def launch_template_value(lt, key, values, cfn=None):
    """A launch template's LaunchTemplateData[key] as CloudFormation gives it for values."""
    cfn = cfn or load_cfn()
    d = cfn["Resources"][lt]["Properties"]["LaunchTemplateData"]
    return evaluate(d[key], {**parameter_defaults(cfn), **values}, cfn)


def condition(name_or_node, values, cfn):
    node = cfn["Conditions"][name_or_node] if isinstance(name_or_node, str) else name_or_node
    (fn, arg), = node.items()
    if fn == "Fn::Equals":
        a, b = (evaluate(x, values, cfn) for x in arg)
        return str(a) == str(b)
    if fn == "Fn::Not":
        return not condition(arg[0], values, cfn)
    if fn == "Fn::And":
        return all(condition(x, values, cfn) for x in arg)
    if fn == "Fn::Or":
        return any(condition(x, values, cfn) for x in arg)
    if fn == "Condition":
        return condition(arg, values, cfn)
    raise ValueError(f"not a condition: {fn}")


def sub(text, values):
    """Fn::Sub: every ${Name} from values (parameters, resources' Ref values, AWS::...); a
    missing one is an error, as in CloudFormation. ${!Literal} stays as ${Literal}."""
    def one(m):
        if m.group(1) not in values:
            raise KeyError(f"no value for ${{{m.group(1)}}}")
        return str(values[m.group(1)])
    return SUB_VAR.sub(one, text).replace("${!", "${")


def parameter_defaults(cfn=None):
    cfn = cfn or load_cfn()
    return {k: p["Default"] for k, p in cfn["Parameters"].items() if "Default" in p}


def render_user_data(lt, values, cfn=None):
    """The user-data CloudFormation gives the launch template lt: values are the parameters
    (the template's defaults fill the rest), pseudo parameters and resources' Ref values."""
    cfn = cfn or load_cfn()
    ud = cfn["Resources"][lt]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    return evaluate(ud, {**parameter_defaults(cfn), **values}, cfn)


def written_file(cloud_config, path):
    """The content a cloud-config's write_files gives path."""
    doc = yaml.safe_load(cloud_config)
    for f in doc["write_files"]:
        if f["path"] == path:
            return f["content"]
    raise AssertionError(f"user-data writes no {path}")
