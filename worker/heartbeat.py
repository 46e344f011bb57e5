"""A processing file's heartbeat: a thread that renews the claim's lease while the job runs.

Every `HEARTBEAT_INTERVAL_S` it extends the lease (app/lease.py) to `HEARTBEAT_TIMEOUT_S`
from now; the watchdog takes back a file whose lease expired (its worker was killed or
stopped). A renewal carries the claim (app/fencing.py): when it no longer matches (the
file was deleted or taken back meanwhile), `lost` is set and the job stops at its next
checkpoint.
"""

import logging
import threading
from types import TracebackType

from app.fencing import Claim
from app.stores.files import SyncFileStore

log = logging.getLogger("worker.heartbeat")


class Heartbeat:
    def __init__(self, files: SyncFileStore, claim: Claim, interval_s: float, lease_s: float) -> None:
        self.files = files
        self.claim = claim
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.file_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.files.renew(self.claim, self.lease_s):
                    self.lost.set()
                    return
            except Exception:
                log.warning("heartbeat for %s failed", self.claim.file_id, exc_info=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
