#!/usr/bin/env python3
"""The image's HEALTHCHECK, one per role (the entrypoint writes the role to
/tmp/docproc-role, or to $DOCPROC_ROLE_FILE).

- api: GET /health on the local port answers 200 (liveness; it touches no dependency).
- worker: an RQ worker registered from this container's host name exists in Valkey; RQ
  keeps the registration alive while the worker waits and while it runs a job.
- watchdog: the process is PID 1's child; nothing more to check.

Exit 0 when healthy, 1 otherwise (Docker's convention).
"""

import os
import socket
import sys
import urllib.request
from pathlib import Path

ROLE_FILE = Path(os.environ.get("DOCPROC_ROLE_FILE", "/tmp/docproc-role"))


def api_healthy() -> bool:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    with urllib.request.urlopen(url, timeout=4) as response:
        return response.status == 200


def worker_healthy() -> bool:
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(os.environ["VALKEY_URL"], socket_timeout=3, socket_connect_timeout=3)
    host = socket.gethostname()
    return any(w.hostname == host for w in Worker.all(connection=connection))


def main() -> int:
    role = ROLE_FILE.read_text().strip() if ROLE_FILE.exists() else "api"
    checks = {"api": api_healthy, "worker": worker_healthy}
    try:
        healthy = checks.get(role, lambda: True)()
    except Exception as exc:  # noqa: BLE001 - whatever failed, the container is not healthy
        print(f"{role}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
