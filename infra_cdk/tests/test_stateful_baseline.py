"""The stack's resources keep their logical IDs, and the stateful ones their properties, as deployed.

To CloudFormation a new logical ID is a new resource: the old one is deleted (a database, a log group),
or kept but orphaned (a retained bucket), and a secret comes back with a new password. Beyond the data,
a renamed subnet, security-group rule, listener or Route 53 record fails the deploy, since its twin
under the old ID still holds the CIDR, the rule, the port or the name.

The baseline in data/ was synthesized from the stack as deployed. Regenerating it is a deliberate act
(data/README.md):

    infra_cdk/.venv/bin/python infra_cdk/tests/test_stateful_baseline.py
"""

import json
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import FULL_CONTEXT, Synth, synthesize

DATA = Path(__file__).resolve().parent / "data"
STATEFUL_BASELINE = DATA / "stateful_baseline.json"
LOGICAL_IDS = DATA / "logical_ids.json"

# every configuration the other tests synthesize (test_nag's nagAcknowledgments=false runs build the same
# templates, minus the acknowledgments), plus another stack name and more instances: some IDs embed the
# stack's name (the Aurora secret's), and the instance counts decide how many DBInstance IDs there are
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "default": {},
    "full": FULL_CONTEXT,
    "cloudfront-over-http": {"cloudFront": "true"},
    "image": {"ecrRepository": "team/docproc", "imageTag": "v1.2.3", "nagAcknowledgments": "true"},
    "renamed-and-scaled": {"stackName": "DocprocStaging", "docdbInstances": "3", "auroraReaders": "2"},
}

# what holds data, or what a data store is made of and would be rebuilt with (subnet and parameter groups)
STATEFUL_TYPES = frozenset(
    {
        "AWS::DocDB::DBCluster",
        "AWS::DocDB::DBInstance",
        "AWS::DocDB::DBSubnetGroup",
        "AWS::DocDB::DBClusterParameterGroup",
        "AWS::RDS::DBCluster",
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBSubnetGroup",
        "AWS::RDS::DBClusterParameterGroup",
        "AWS::RDS::DBParameterGroup",
        "AWS::ElastiCache::ReplicationGroup",
        "AWS::ElastiCache::SubnetGroup",
        "AWS::ElastiCache::ParameterGroup",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::SecretsManager::Secret",
        "AWS::SecretsManager::SecretTargetAttachment",
        "AWS::Logs::LogGroup",
    }
)
# Compared exactly, nothing normalized: no stateful resource carries an asset hash or a value that varies
# between syntheses (references are Ref/Fn::GetAtt of logical IDs). A CDK upgrade that changes one of their
# defaults fails here as well, on purpose.
COMPARED = ("Type", "Properties", "DeletionPolicy", "UpdateReplacePolicy")


def stateful(template: dict) -> dict[str, dict]:
    return {
        logical_id: {key: resource[key] for key in COMPARED if key in resource}
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in STATEFUL_TYPES
    }


def logical_ids(template: dict) -> dict[str, str]:
    return {logical_id: resource["Type"] for logical_id, resource in template["Resources"].items()}


@pytest.fixture(scope="module")
def templates(default: Synth, full: Synth, outdirs: Path) -> dict[str, dict]:
    shared = {"default": default, "full": full}  # the session's syntheses of the same contexts
    assert CONFIGURATIONS["default"] == {} and CONFIGURATIONS["full"] == FULL_CONTEXT
    return {
        name: (shared[name] if name in shared else synthesize(context, outdirs / f"baseline-{name}")).template
        for name, context in CONFIGURATIONS.items()
    }


def _baseline(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_stateful_resources_keep_their_logical_ids_and_properties(name: str, templates: dict) -> None:
    expected = _baseline(STATEFUL_BASELINE)[name]
    actual = stateful(templates[name])
    missing, added = sorted(expected.keys() - actual.keys()), sorted(actual.keys() - expected.keys())
    assert not missing and not added, f"{name}: logical IDs gone {missing}, new {added}"
    changed = sorted(k for k in expected if expected[k] != actual[k])

    def text(resource: dict) -> str:
        return json.dumps(resource, sort_keys=True)

    assert not changed, f"{name}: changed " + "\n".join(
        f"{k}:\n  baseline {text(expected[k])}\n  now      {text(actual[k])}" for k in changed
    )


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_no_resource_is_renamed_or_gone(name: str, templates: dict) -> None:
    """Every logical ID of the baseline is still there, with its type; new resources may be added."""
    expected = _baseline(LOGICAL_IDS)[name]
    actual = logical_ids(templates[name])
    gone = sorted(f"{k} ({t})" for k, t in expected.items() if actual.get(k) != t)
    assert not gone, f"{name}: logical IDs gone or retyped (each would be replaced): {gone}"


def regenerate() -> None:
    """Synthesize every configuration and write both baselines (a deliberate act: see data/README.md)."""
    with tempfile.TemporaryDirectory(prefix="docproc-baseline-") as tmp:
        templates = {name: synthesize(context, Path(tmp) / name).template for name, context in CONFIGURATIONS.items()}
    DATA.mkdir(exist_ok=True)
    for path, extract in ((STATEFUL_BASELINE, stateful), (LOGICAL_IDS, logical_ids)):
        content = {name: extract(template) for name, template in templates.items()}
        path.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app.py and docproc_infra, as pytest.ini
    regenerate()
