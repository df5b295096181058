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
    """The launch template's user-data template (the text inside Fn::Base64 / Fn::Sub)."""
    ud = cfn["Resources"][lt]["Properties"]["LaunchTemplateData"]["UserData"]
    return ud["Fn::Base64"]["Fn::Sub"]


def sub(text, values):
    """Fn::Sub: every ${Name} from values (parameters, resources' Ref values, AWS::...); a
    missing one is an error, as in CloudFormation. ${!Literal} stays as ${Literal}."""
    def one(m):
        if m.group(1) not in values:
            raise KeyError(f"no value for ${{{m.group(1)}}}")
        return str(values[m.group(1)])
    return SUB_VAR.sub(one, text).replace("${!", "${")


def render_user_data(lt, values, cfn=None):
    return sub(user_data_template(cfn or load_cfn(), lt), values)


def written_file(cloud_config, path):
    """The content a cloud-config's write_files gives path."""
    doc = yaml.safe_load(cloud_config)
    for f in doc["write_files"]:
        if f["path"] == path:
            return f["content"]
    raise AssertionError(f"user-data writes no {path}")
