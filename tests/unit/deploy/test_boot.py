"""The AWS instances' settings (infra_cdk/docproc_infra/scripts/boot.sh) are valid for the app."""

import json
import os
import re
import subprocess
import sys

import pytest

from app.settings import Settings
from tests.fixtures import ROOT


def test_boot_settings_are_valid_for_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """boot.sh turns the stack's secrets into the container's settings: the app must accept them."""
    boot = (ROOT / "infra_cdk/docproc_infra/scripts/boot.sh").read_text()
    script = re.search(r"<<'PY'\n(.*?)\nPY\n", boot, re.S).group(1)
    env = {
        "AWS_REGION": "us-east-1",
        "S3_BUCKET": "bucket",
        "S3_PREFIX": "uploads/",
        "QUEUE_NAME": "ingest",
        "VALKEY_HOST": "valkey.example",
        "VALKEY_PORT": "6479",
        "API_WORKERS": "2",
        "CLOUDWATCH_METRICS": "true",
        "MONGO_SECRET": json.dumps({"username": "u", "password": "p/w@", "host": "docdb.example", "port": 27117}),
        "VALKEY_SECRET": "token",
        "POSTGRES_SECRET": json.dumps({"username": "u", "password": "p", "host": "aurora.example", "port": 5532}),
        "PATH": os.environ["PATH"],
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    settings_env = dict(line.split("=", 1) for line in out.splitlines())
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    s = Settings(_env_file=None)
    assert s.storage == "s3" and s.s3_bucket == "bucket" and s.s3_region == "us-east-1"
    assert "tls=true" in s.mongo_url.get_secret_value() and "replicaSet=rs0" in s.mongo_url.get_secret_value()
    assert s.valkey_url.get_secret_value().startswith("rediss://")
    assert "sslmode=verify-full" in s.database_url.get_secret_value()
    assert s.auth == "enabled"
