"""cdk-nag acknowledgments: each finding that stays is acknowledged next to its resource, with the reason."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


@dataclass(frozen=True)
class Ack:
    path: str  # the construct acknowledged, and so its children
    rule: str  # cdk-nag's finding id, e.g. AwsSolutions-IAM5[Resource::*]
    reason: str


class Acknowledgments:
    """The stack's acknowledgments. With `apply=False` (-c nagAcknowledgments=false) they are only recorded,
    not applied: synthesis then lists every finding, which the tests use to prove each one is still needed."""

    def __init__(self, *, apply: bool) -> None:
        self.apply = apply
        self.recorded: list[Ack] = []

    def ack(self, scope: IConstruct, rule: str, reason: str) -> None:
        """Acknowledge one finding on one construct (and its children), with the reason it stays."""
        self.recorded.append(Ack(scope.node.path, rule, reason))
        if self.apply:
            Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def flat(scope: IConstruct, value: str) -> str:
    """A value as cdk-nag names it in a finding id: references flattened to <Logical.Attr>, <AWS::Region>.

    The same rendering as cdk-nag's flattenCfnReference, so an acknowledgment matches its finding
    whatever the account, region or partition of the synthesis.
    """

    def visit(node: object) -> str:
        if isinstance(node, str):
            return node.replace("${", "<").replace("}", ">")
        if isinstance(node, dict):
            if "Fn::Join" in node:
                delimiter, items = node["Fn::Join"]
                return delimiter.join(visit(i) for i in items)
            if "Fn::Sub" in node:
                return visit(node["Fn::Sub"])
            if "Fn::GetAtt" in node:
                resource, attribute = node["Fn::GetAtt"]
                return f"<{visit(resource)}.{visit(attribute)}>"
            if "Ref" in node:
                return f"<{visit(node['Ref'])}>"
        return json.dumps(node, separators=(",", ":"))

    return visit(Stack.of(scope).resolve(value))
