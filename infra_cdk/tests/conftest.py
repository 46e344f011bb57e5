"""Synthesized stacks shared by the tests: jsii costs seconds per synthesis, so each configuration
is synthesized once per session, with cdk-nag's AwsSolutions checks on (a finding fails synthesis)."""

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parent.parent
ROOT = INFRA.parent

# quiet and offline: no telemetry, no end-of-life banner for this machine's Node, no IMDS probing
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_DEPRECATED", "quiet")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

# every optional feature on: HTTPS on the ALB, CloudFront in front, Route 53 records
FULL_CONTEXT = {
    "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
    "cloudFront": "true",
    "cloudFrontCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/66666666-7777-8888-9999-000000000000",
    "domainName": "docproc.example.com",
    "hostedZoneId": "Z0123456789ABCDEFGHIJ",
    "hostedZoneName": "example.com",
    "region": "eu-west-1",
    "azs": "eu-west-1b,eu-west-1c",
    "account": "123456789012",
}


@dataclass
class Synth:
    stack: object  # docproc_infra.stack.DocprocStack
    template: dict
    outdir: Path

    @property
    def resources(self) -> dict:
        return self.template["Resources"]

    def of_type(self, cfn_type: str) -> dict:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def one(self, cfn_type: str) -> dict:
        found = self.of_type(cfn_type)
        assert len(found) == 1, f"{len(found)} {cfn_type}"
        return next(iter(found.values()))


def cdk_json_context() -> dict:
    return json.loads((INFRA / "cdk.json").read_text())["context"]


def build(context: dict[str, str], outdir: Path):
    """The app as app.py builds it (cdk.json's feature flags plus `context`), not yet synthesized."""
    from aws_cdk import App

    import app as cdk_app

    app = App(context={**cdk_json_context(), **context}, outdir=str(outdir))
    return app, cdk_app.build(app)


def synthesize(context: dict[str, str], outdir: Path) -> Synth:
    app, stack = build(context, outdir)
    app.synth()  # runs the validation plugins: cdk-nag findings raise here
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return Synth(stack, template, outdir)


def violations(outdir: Path) -> set[tuple[str, str]]:
    """(rule, construct path) of every finding in a synthesis' validation report."""
    report = json.loads((outdir / "validation-report.json").read_text())
    return {
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }


@pytest.fixture(scope="session")
def outdirs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="docproc-cdk-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def default(outdirs: Path) -> Synth:
    """The stack as `cdk deploy` builds it with no context given."""
    return synthesize({}, outdirs / "default")


@pytest.fixture(scope="session")
def full(outdirs: Path) -> Synth:
    return synthesize(FULL_CONTEXT, outdirs / "full")
