"""`python -m devstack serve` runs the local stack under supervisord (what `./run.sh` does);
`python -m devstack wait` waits until the configured servers answer (each program's first step)."""

import argparse
import os
from pathlib import Path

from devstack.servers import wait_all
from devstack.supervisor import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack")
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
