"""The CDK toolchain: pinned CLI and libraries, offline and quiet settings, and `npx cdk synth` itself."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

from conftest import INFRA, ROOT

CDK_CLI_VERSION = "2.1148.1"  # the registry's `latest` (3.x) rejects the cloud assembly aws-cdk-lib 2 writes


def _names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[=<>!~ ;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_python_requirements_exact_pins_of_the_declared_ones() -> None:
    lines = [ln for ln in (INFRA / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", ln) for ln in lines), "only exact pins"
    missing = _names(INFRA / "requirements.in") - _names(INFRA / "requirements.txt")
    assert not missing, f"run infra_cdk/setup.sh freeze: {sorted(missing)} not pinned"


def test_cdk_cli_pinned_exactly() -> None:
    package = json.loads((INFRA / "package.json").read_text())
    assert package["devDependencies"]["aws-cdk"] == CDK_CLI_VERSION
    lock = json.loads((INFRA / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == CDK_CLI_VERSION
    installed = json.loads((INFRA / "node_modules" / "aws-cdk" / "package.json").read_text())
    assert installed["version"] == CDK_CLI_VERSION


def test_cdk_json_offline_quiet_and_this_virtualenv() -> None:
    cdk = json.loads((INFRA / "cdk.json").read_text())
    assert cdk["app"] == ".venv/bin/python app.py"
    assert cdk["notices"] is False
    assert cdk["context"]["cli-telemetry"] is False
    assert cdk["versionReporting"] is False
    assert not (INFRA / "cdk.context.json").exists(), "cached lookups: synthesis must not need any"


def test_repository_ignores_the_toolchain() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for entry in ("infra_cdk/.venv/", "infra_cdk/node_modules/", "infra_cdk/cdk.out/"):
        assert entry in ignored


def test_setup_is_a_quick_no_op_when_up_to_date() -> None:
    started = time.monotonic()
    result = subprocess.run([str(INFRA / "setup.sh")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stderr, result.stderr
    assert time.monotonic() - started < 10


def test_cdk_synth_quiet_smoke(tmp_path: Path) -> None:
    """The real CLI runs app.py (cdk.json) offline: no credentials, no lookups, cdk-nag clean."""
    env = {
        **os.environ,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "CDK_DISABLE_VERSION_CHECK": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20",
    }
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(tmp_path / "cdk.out")],
        cwd=INFRA,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    template = json.loads((tmp_path / "cdk.out" / "Docproc.template.json").read_text())
    assert "AWS::AutoScaling::AutoScalingGroup" in json.dumps(template)
    assert not (INFRA / "cdk.context.json").exists()
