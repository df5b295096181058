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
    Condition), Fn::Join; literals as they are."""
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
    raise ValueError(f"not evaluated here: {fn}")


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
