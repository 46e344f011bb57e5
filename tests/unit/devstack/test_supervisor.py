"""The local stack's supervisord layout: one single-threaded worker per core, each with its metrics port."""

import configparser
import re
from pathlib import Path

from devstack import supervisor


def test_one_single_threaded_worker_per_core_each_with_its_metrics_port(tmp_path: Path) -> None:
    assert supervisor.worker_layout(cores=2) == (2, 1)
    assert supervisor.worker_layout(cores=8, workers=2) == (2, 4)
    assert supervisor.worker_layout(cores=2, workers=4) == (4, 1)
    assert supervisor.worker_layout(cores=2, threads=2) == (2, 2)  # EMBEDDING_THREADS wins
    env = {"VALKEY_URL": "redis://127.0.0.1:1/0", "WORKER_METRICS_PORT": "9200"}
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(supervisor.supervisor_conf(tmp_path, {}, set(), env, "127.0.0.1:1", 1, workers=3, threads=1))
    workers = [s for s in conf.sections() if s.startswith("program:worker")]
    assert workers == ["program:worker-0", "program:worker-1", "program:worker-2"]
    commands = [conf[w]["command"] for w in workers]
    assert [re.search(r"WORKER_METRICS_PORT=(\d+)", c).group(1) for c in commands] == ["9200", "9201", "9202"]
    assert all("EMBEDDING_THREADS=1 " in c and "/rq worker " in c for c in commands)
    env["WORKER_METRICS_PORT"] = "0"  # off stays off for every worker
    off = supervisor.supervisor_conf(tmp_path, {}, set(), env, "127.0.0.1:1", 1, workers=2, threads=1)
    assert off.count("WORKER_METRICS_PORT=0 ") == 2
