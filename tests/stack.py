"""Real servers for the tests: Valkey, SecantusDB, PostgreSQL, moto's S3, the API
and RQ workers, each a subprocess on a free port with its data in a temp dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack import servers

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Stack:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    servers: dict[str, Proc] = field(default_factory=dict)
    server_argv: dict[str, tuple[list[str], str | None]] = field(default_factory=dict)
    keys: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def key(self, tenant: str = "default", scopes: str = "read,write,admin", mongo_db: str | None = None) -> str:
        """An API key of `tenant` with `scopes` (one per tenant, scopes and database, made on first use)."""
        db = mongo_db or self.env["MONGO_DB"]
        if (tenant, scopes, db) not in self.keys:
            self.keys[(tenant, scopes, db)] = create_key(self.env["MONGO_URL"], db, tenant, scopes.split(","))
        return self.keys[(tenant, scopes, db)]

    def auth(self, tenant: str = "default", scopes: str = "read,write,admin", mongo_db: str | None = None) -> dict:
        """Headers that authenticate as `tenant` with `scopes`."""
        return {"Authorization": f"Bearer {self.key(tenant, scopes, mongo_db)}"}

    def client(self, url: str, tenant: str = "default", scopes: str = "read,write,admin", **kw: object) -> httpx.Client:
        """An httpx client of `url` authenticated as `tenant`."""
        mongo_db = kw.pop("mongo_db", None)
        kw.setdefault("timeout", 30)
        return httpx.Client(base_url=url, headers=self.auth(tenant, scopes, mongo_db), **kw)  # type: ignore[arg-type]

    def start_server(self, name: str, argv: list[str], user: str | None = None) -> Proc:
        self.server_argv[name] = (argv, user)
        self.servers[name] = self.spawn(name, argv, user=user)
        return self.servers[name]

    def stop_server(self, name: str) -> None:
        # PostgreSQL's SIGTERM waits for every client to hang up; SIGINT is its fast shutdown
        self.servers[name].stop(sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)

    def restart_server(self, name: str) -> None:
        """Start a stopped server again: same port, same data."""
        argv, user = self.server_argv[name]
        self.servers[name] = self.spawn(name, argv, user=user)
        wait = {"valkey": servers.wait_valkey, "mongo": servers.wait_mongo, "postgres": servers.wait_postgres}
        url = {"valkey": "VALKEY_URL", "mongo": "MONGO_URL", "postgres": "DATABASE_URL"}[name]
        wait[name](self.env[url])

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.env, **(env or {})}
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=ROOT,
                start_new_session=True,
                **servers.run_as(user),
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(sig=signal.SIGINT if proc.name == "postgres" else signal.SIGTERM)


METRICS_TOKEN = "test-metrics-token"
# the benchmarks' APIs (bench/): no keys, allowed because start_api binds to 127.0.0.1; the numbers leave
# out the key lookup (one MongoDB find by _id per request)
NO_KEYS = {"AUTH": "disabled", "API_BIND": "127.0.0.1:0"}


def create_key(mongo_url: str, mongo_db: str, tenant: str, scopes: list[str], name: str = "tests") -> str:
    """A new API key, straight into MongoDB (as `python -m app.keys create` does)."""
    from pymongo import MongoClient

    from app.settings import Settings
    from app.stores.audit import CLI
    from app.stores.keys import SyncKeyStore

    cap = Settings.model_fields["max_keys_per_tenant"].default
    with MongoClient(mongo_url, tz_aware=True) as client:
        _, key = SyncKeyStore(client, mongo_db).create(tenant, name, scopes, cap=cap, actor=CLI)
    return key


def stack_dir(name: str) -> Path:
    """A fresh directory for a stack's data and logs.

    Not under pytest's tmp_path: pytest makes its base directory private (0700)
    whenever a session starts, and PostgreSQL runs as another user that must reach
    its data directory.
    """
    return Path(tempfile.mkdtemp(prefix=f"docproc-{name}-"))


def start_servers(root: Path) -> Stack:
    stack = Stack(root)
    try:
        return _start_servers(stack)
    except BaseException:
        for p in stack.procs:
            print(f"--- {p.name}\n{p.tail()}", file=sys.stderr)
        stack.stop_all()
        raise


def _start_servers(stack: Stack) -> Stack:
    root = stack.root
    ports = {k: servers.free_port() for k in ("valkey", "mongo", "postgres")}
    stack.start_server("valkey", servers.valkey_argv(ports["valkey"], root / "valkey"))
    stack.start_server("mongo", servers.mongo_argv(ports["mongo"], root / "mongo"))
    servers.init_postgres(root / "postgres")
    stack.start_server(
        "postgres",
        servers.postgres_argv(ports["postgres"], root / "postgres", durable=False),
        user=servers.postgres_user(),
    )
    stack.env.update(
        VALKEY_URL=servers.valkey_url(ports["valkey"]),
        MONGO_URL=servers.mongo_url(ports["mongo"]),
        DATABASE_URL=servers.postgres_url(ports["postgres"]),
        DATA_DIR=str(root / "data"),
        MONGO_DB="docproc_test",
        HF_HUB_OFFLINE="1",
        DO_NOT_TRACK="1",
        WORKER_METRICS_PORT="0",  # many workers on one machine; tests/test_observability.py sets its own
        AUTH="enabled",  # every API the tests start wants keys (Stack.key / Stack.client)
        METRICS_TOKEN=METRICS_TOKEN,
        # the suites query a lot; tests/test_security.py starts an API with small limits of its own
        UPLOAD_RATE="100000/minute",
        QUERY_RATE="100000/minute",
    )
    servers.wait_valkey(stack.env["VALKEY_URL"])
    servers.wait_mongo(stack.env["MONGO_URL"])
    servers.wait_postgres(stack.env["DATABASE_URL"])
    return stack


def start_api(stack: Stack, name: str = "api", env: dict[str, str] | None = None) -> tuple[Proc, str]:
    port = servers.free_port()
    proc = stack.spawn(
        name,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"API exited:\n{proc.tail()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"API not up:\n{proc.tail()}")


def rq_worker_argv(queue: str, burst: bool = True, valkey_url: str | None = None) -> list[str]:
    argv = [
        str(Path(sys.executable).parent / "rq"),
        "worker",
        "--with-scheduler",
        "--worker-class",
        "worker.rqworker.IngestWorker",
        "--url",
        valkey_url or os.environ["VALKEY_URL"],
    ]
    if burst:
        argv.append("--burst")
    return [*argv, queue]
