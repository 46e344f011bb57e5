"""cdk-nag's AwsSolutions checks: clean with the acknowledgments, and every acknowledgment needed and reasoned."""

import json
import tempfile
from pathlib import Path

import pytest
from aws_cdk import App
from cdk_nag import AwsSolutionsChecks
from conftest import FULL_CONTEXT, Synth, build, violations


def test_app_registers_the_aws_solutions_pack() -> None:
    import app as cdk_app

    source = Path(cdk_app.__file__).read_text()
    assert "Validations.of(app).add_plugins(AwsSolutionsChecks(app))" in source
    assert AwsSolutionsChecks(App()).name == "AwsSolutions"


@pytest.mark.parametrize("name", ["default", "full"])
def test_synthesis_passes_every_check(name: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(name)  # synthesis itself raises on an unacknowledged finding
    report = synth.outdir / "validation-report.json"
    if report.exists():
        assert violations(synth.outdir) == set()
    assert synth.stack.acknowledgments, "the acknowledgments are recorded"


@pytest.mark.parametrize("name", ["default", "full"])
def test_every_acknowledgment_has_a_specific_reason(name: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(name)
    acks = synth.stack.acknowledgments
    assert len({(a.path, a.rule) for a in acks}) == len(acks), "an acknowledgment given twice"
    for a in acks:
        assert a.rule.startswith("AwsSolutions-"), a
        assert len(a.reason) >= 60 and a.reason[0].isupper() and a.reason.rstrip().endswith("."), a
    rules_per_reason: dict[str, set[str]] = {}
    for a in acks:  # the same finding on several constructs may share its reason; different findings may not
        rules_per_reason.setdefault(a.reason, set()).add(a.rule)
    assert all(len(rules) == 1 for rules in rules_per_reason.values()), rules_per_reason


@pytest.mark.parametrize(
    "context", [{}, FULL_CONTEXT, {"cloudFront": "true"}], ids=["default", "full", "cloudfront-over-http"]
)
def test_every_acknowledgment_is_still_needed_and_covers_all_findings(context: dict, outdirs) -> None:
    """With acknowledgments recorded but not applied, synthesis lists every finding: each must be acknowledged
    (or synthesis above would fail), and each acknowledgment must match a finding (none is stale)."""
    outdir = Path(tempfile.mkdtemp(prefix="unacknowledged-", dir=outdirs))
    app, stack = build({**context, "nagAcknowledgments": "false"}, outdir)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    findings = {(rule, path) for rule, path in violations(outdir) if rule.startswith("AwsSolutions-")}
    assert findings, "the unacknowledged synthesis found nothing: the pack did not run"
    acks = {(a.rule, a.path) for a in stack.acknowledgments}  # recorded, not applied

    def covered(finding: tuple[str, str]) -> bool:
        rule, path = finding
        return any(rule == r and (path == p or path.startswith(p + "/")) for r, p in acks)

    uncovered = sorted(f for f in findings if not covered(f))
    assert not uncovered, json.dumps(uncovered, indent=1)
    stale = sorted(
        (r, p)
        for r, p in acks
        if not any(rule == r and (path == p or path.startswith(p + "/")) for rule, path in findings)
    )
    assert not stale, "acknowledgments that match no finding:\n" + json.dumps(stale, indent=1)
