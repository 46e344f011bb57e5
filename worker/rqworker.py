"""The RQ worker class: `rq worker --worker-class worker.rqworker.IngestWorker`.

Jobs run inside the worker process (RQ's SimpleWorker) rather than in a forked
child per job: the embedding model then loads once per process instead of once
per file, and torch's thread pools are never inherited across a fork. A job
that crashes the process is handled like a killed worker: supervisord (or the
Auto Scaling group) starts a new one.
"""

from typing import Any

from rq.worker import SimpleWorker

from worker.resources import resources


class IngestWorker(SimpleWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        resources()  # connect and load the model before taking the first job
        return super().work(*args, **kwargs)
