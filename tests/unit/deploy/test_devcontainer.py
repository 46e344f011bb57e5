"""The devcontainer: its compose file, servers and setup script."""

import json
import re
import subprocess

import yaml

from tests.fixtures import ROOT


def test_devcontainer() -> None:
    config = json.loads((ROOT / ".devcontainer/devcontainer.json").read_text())
    dev_compose = yaml.safe_load((ROOT / ".devcontainer" / config["dockerComposeFile"][0]).read_text())
    services = dev_compose["services"]
    assert config["service"] in services and set(config["runServices"]) == set(services)
    assert {"mongo", "valkey", "postgres"} <= set(services)
    dev = services[config["service"]]
    assert re.fullmatch(r"mcr\.microsoft\.com/devcontainers/python:1-3\.12-\w+", dev["image"])
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert config["workspaceFolder"] in {v.split(":")[1] for v in dev["volumes"]}
    env = dev["environment"]  # ./run.sh uses these servers instead of starting its own
    assert env["MONGO_URL"].startswith("mongodb://mongo:") and env["VALKEY_URL"].startswith("redis://valkey:")
    assert "@postgres:5432/" in env["DATABASE_URL"] and env["API_BIND"] == "0.0.0.0:8000"
    assert env["AUTH"] == "enabled"  # not a loopback bind: the API would refuse AUTH=disabled
    assert 8000 in config["forwardPorts"]
    assert all(s.get("healthcheck") for s in services.values())
    post_create = ROOT / config["postCreateCommand"].split()[-1]
    text = post_create.read_text()
    assert "poppler-utils tesseract-ocr" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "--no-deps -r requirements.txt -r requirements-dev.txt" in text
    assert subprocess.run(["bash", "-n", str(post_create)]).returncode == 0
