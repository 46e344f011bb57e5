"""docker-compose-prod.yml, checked without a Docker engine, with the monitoring configs it mounts.

Linters (hadolint, shellcheck, the compose-spec schema, cfn-lint) run with infra_cdk's tests,
whose virtualenv installs them; these checks need only the service's own virtualenv."""

import json
import re

import pytest
import yaml

from app.settings import Settings
from tests.fixtures import ROOT

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


def test_auth_is_on_wherever_the_api_is_reachable(compose: dict) -> None:
    """AUTH=disabled is for the loopback-only local stack; every deployment turns keys on."""
    assert compose["x-docproc-env"]["AUTH"] == "enabled"
    assert Settings(_env_file=None).auth == "enabled"  # the image's default too
    entrypoint = (ROOT / "deploy/docker/entrypoint.sh").read_text()
    assert 'export API_BIND="0.0.0.0:${PORT:-8000}"' in entrypoint and '--bind "$API_BIND"' in entrypoint


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
