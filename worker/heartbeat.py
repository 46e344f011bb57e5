"""A processing file's heartbeat: a thread that stamps `heartbeat_at` while the job runs.

The watchdog requeues a file whose heartbeat stopped (its worker was killed).
When the stamp no longer applies (the file was deleted or requeued meanwhile),
`lost` is set and the job stops at its next checkpoint.
"""

import logging
import threading
from types import TracebackType

from app.stores.files import SyncFileStore

log = logging.getLogger("worker.heartbeat")


class Heartbeat:
    def __init__(self, files: SyncFileStore, file_id: str, interval_s: float) -> None:
        self.files = files
        self.file_id = file_id
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{file_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.files.heartbeat(self.file_id):
                    self.lost.set()
                    return
            except Exception:
                log.warning("heartbeat for %s failed", self.file_id, exc_info=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
