"""The ingestion queue: RQ on Valkey. One job per file, its id the file id."""

import math

from redis import Redis
from rq import Queue, Retry
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry

from app.settings import Settings

PROCESS_FILE = "worker.jobs.process_file"  # by name: the API never imports worker code


def job_timeout(settings: Settings, size_bytes: int) -> int:
    """Seconds a job may run: a base plus a share per MB, capped. Never RQ's silent 180 s."""
    per_mb = settings.job_timeout_per_mb_s * math.ceil(size_bytes / (1024 * 1024))
    return min(settings.job_timeout_base_s + per_mb, settings.job_timeout_max_s)


class JobQueue:
    def __init__(self, settings: Settings, connection: Redis | None = None) -> None:
        self.settings = settings
        timeout = settings.dependency_timeout_s
        self.connection = connection or Redis.from_url(
            settings.valkey_url.get_secret_value(), socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.queue = Queue(settings.queue_name, connection=self.connection)

    def enqueue_file(self, file_id: str, size_bytes: int, request_id: str | None = None) -> None:
        """Enqueue (or re-enqueue) the file's job; transient failures retry with backoff.

        `request_id` (the upload's) goes into the job's meta: the worker logs it with the job's lines.
        """
        self.queue.enqueue(
            PROCESS_FILE,
            file_id,
            job_id=file_id,
            job_timeout=job_timeout(self.settings, size_bytes),
            retry=Retry(max=self.settings.max_attempts, interval=self.settings.retry_intervals_s),
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"process_file({file_id})",
            meta={"request_id": request_id} if request_id else None,
        )

    def cancel(self, file_id: str) -> None:
        """Drop a file's job if it is still waiting; a running one notices the file is gone."""
        self.queue.remove(file_id)

    def live_job_ids(self) -> set[str]:
        """Ids of jobs that will still run: waiting, scheduled for a retry, or deferred.

        Not the started ones: a file that is `queued` while its job counts as started lost that
        job's worker (killed, or stopped and taken back). Enqueuing it again at worst makes a
        duplicate job, which does nothing (the claim is atomic).
        """
        ids = set(self.queue.get_job_ids())
        for registry in (ScheduledJobRegistry, DeferredJobRegistry):
            ids.update(registry(queue=self.queue).get_job_ids())
        return ids

    def depth(self) -> int:
        return self.queue.count

    def close(self) -> None:
        self.connection.close()
