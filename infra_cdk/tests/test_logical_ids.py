"""logical_ids.py: CDK's ID scheme re-done in Python, and parts left out of the IDs (on a small stack)."""

import pytest
from aws_cdk import App, CfnElement, Names, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from docproc_infra import logical_ids

# a construct path below the stack, for each case of CDK's makeUniqueId
PATHS = [
    ["Bucket"],  # one component: the id itself, no hash
    ["Bucket", "Resource"],  # Resource: in the hash, not in the readable part
    ["Outer", "Default", "Inner"],  # Default: in neither
    ["Vpc", "VpcSubnet", "Subnet"],  # a component that ends the one before it is not repeated
    ["with spaces:and-dashes", "x_y.z"],  # only letters and digits are kept
    ["L" * 250, "Tail"],  # the readable part stops at 240 characters
]


class PartlessStack(Stack):
    def _allocate_logical_id(self, cfn_element: CfnElement) -> str:
        return logical_ids.logical_id(cfn_element)


def _bucket_at(stack: Stack, path: list[str], part: str | None = None) -> s3.CfnBucket:
    scope: Construct = logical_ids.Part(stack, part) if part else stack
    for component in path[:-1]:
        scope = scope.node.try_find_child(component) or Construct(scope, component)
    return s3.CfnBucket(scope, path[-1])


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "/".join(p)[:40])
def test_make_unique_id_is_cdks(path: list[str]) -> None:
    stack = Stack(App(), "St")
    bucket = _bucket_at(stack, path)
    assert logical_ids.make_unique_id(path) == stack.resolve(bucket.logical_id)
    assert logical_ids.unique_id(bucket) == Names.unique_id(bucket)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "/".join(p)[:40])
def test_a_part_is_left_out_of_the_logical_id(path: list[str]) -> None:
    plain, parted = Stack(App(), "St"), PartlessStack(App(), "St")
    expected = plain.resolve(_bucket_at(plain, path).logical_id)
    in_part = _bucket_at(parted, path, part="Group")
    assert in_part.node.path == "St/Group/" + "/".join(path)
    assert parted.resolve(in_part.logical_id) == expected
    assert logical_ids.unique_id(in_part) == Names.unique_id(_bucket_at(Stack(App(), "St"), path))


def test_the_same_id_in_two_parts_is_refused() -> None:
    app = App()
    stack = PartlessStack(app, "St")
    _bucket_at(stack, ["Bucket"], part="One")
    _bucket_at(stack, ["Bucket"], part="Two")
    with pytest.raises(RuntimeError, match="already contains 'Bucket'"):
        app.synth()
