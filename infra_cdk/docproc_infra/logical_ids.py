"""Logical IDs as deployed: the stack's parts (network, data stores, fleets, ...) stay out of them.

Every resource was first deployed as a direct child of the stack, and CDK derives a logical ID from the
construct path. A part would add its own id to the path, and to CloudFormation a new logical ID is a new
resource: the old one is deleted or orphaned (a database, a retained bucket), or the deploy fails because
it still holds the CIDR, security-group rule, port or DNS name that the new one needs. So a `Part` is not
part of its resources' IDs. Ids inside parts must therefore be unique across the stack, as they were
before. CDK refuses a duplicate logical ID at synthesis.
tests/test_stateful_baseline.py checks the IDs against the deployed baseline.
"""

from __future__ import annotations

import hashlib
import re

from aws_cdk import CfnElement, CfnResource, Names, Stack
from constructs import Construct, IConstruct


class Part(Construct):
    """A group of the stack's resources, for the code's sake: it takes no part in their logical IDs."""


def logical_id(element: CfnElement) -> str:
    """The logical ID CDK allocates (Stack.allocateLogicalId), computed from the path without its parts."""
    stack = Stack.of(element)
    scopes = element.node.scopes
    return make_unique_id([s.node.id for s in scopes[scopes.index(stack) + 1 :] if not isinstance(s, Part)])


def unique_id(construct: IConstruct) -> str:
    """Names.uniqueId (the stack's id and the path below it) without the parts, as some names embed it."""
    return make_unique_id([s.node.id for s in construct.node.scopes[1:] if not isinstance(s, Part)])


def keep_unique_id_prefix(resource: CfnResource, owner: IConstruct) -> None:
    """For a logical ID that CDK overrides with Names.uniqueId(owner) plus a suffix (rds.DatabaseSecret's):
    the same ID with the parts left out."""
    overridden = Stack.of(resource).resolve(resource.logical_id)
    prefix = Names.unique_id(owner)
    assert overridden.startswith(prefix), (overridden, prefix)
    resource.override_logical_id(unique_id(owner) + overridden.removeprefix(prefix))


# CDK's makeUniqueId (aws-cdk-lib core/lib/private/uniqueid.ts), which has been the same since CDK v1.
_HIDDEN_ID = "Default"  # a construct's default child adds nothing to an ID
_HIDDEN_FROM_HUMAN_ID = "Resource"  # part of the hash, not of the readable part


def make_unique_id(components: list[str]) -> str:
    components = [c for c in components if c != _HIDDEN_ID]
    if not components:
        raise ValueError("no components to make an ID of")
    if len(components) == 1 and len(_alphanumeric(components[0])) <= 255:
        return _alphanumeric(components[0])
    digest = hashlib.md5("/".join(components).encode(), usedforsecurity=False).hexdigest()[:8].upper()
    human: list[str] = []
    for component in components:
        if not human or not human[-1].endswith(component):
            human.append(component)
    return "".join(_alphanumeric(c) for c in human if c != _HIDDEN_FROM_HUMAN_ID)[:240] + digest


def _alphanumeric(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)
