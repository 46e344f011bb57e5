"""supervisord for the local stack (`./run.sh`): the embedded servers, the API, one RQ worker per
core and the watchdog, each restarted when it dies; `serve` writes the configuration and execs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.settings import LOCAL_MONGO_PORT
from devstack.servers import (
    ROOT,
    init_postgres,
    mongo_argv,
    mongo_url,
    postgres_argv,
    postgres_url,
    postgres_user,
    valkey_argv,
    valkey_url,
)


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
    wait for them (`python -m devstack wait`) and are stopped first on shutdown. Every program
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
    wait = f"{py} -m devstack wait"
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
        "mongo": int(os.environ.get("LOCAL_MONGO_PORT", LOCAL_MONGO_PORT)),
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
        # unless it binds to loopback (app/api/auth.py check_bind)
        "AUTH": os.environ.get("AUTH", "disabled"),
        "API_BIND": api_bind,
    }
    from app.api.auth import is_loopback  # the API's own rule (FastAPI is imported only here)

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
        else "AUTH enabled: create a key with  .venv/bin/docproc keys create --tenant default --name me "
        "--scopes read,write"
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
