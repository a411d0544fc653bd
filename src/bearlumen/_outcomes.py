"""What became of each recorded event: the shipper's counters, `on_error`, and its burst logs.

Every event that enters `record()` ends in exactly one of recorded, duplicate, rejected (the
server or the encoder refused it), dropped (queue full, or client closed) or failed (deadline
passed, shutdown, or an answer that can never succeed). Producers, the worker and the senders
all count here, each under `lock`. Drops and rejections are logged once per burst by the worker
(or by a sender waiting to retry), never on the caller's thread; rejections and failures are
handed to `on_error`. A rejected or failed event lets its key go (`forget_key`), so recording it
again delivers it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, List

from ._errors import BearLumenError
from ._events import QueuedEvent, to_record_input
from ._types import UsageRecordInput

logger = logging.getLogger("bearlumen")

COUNTERS = ("sent", "recorded", "duplicate", "rejected", "dropped", "failed", "retries", "batches")
# While delivery is failing the worker reports drops at least this often (seconds).
DROP_REPORT_INTERVAL = 1.0

ErrorCallback = Callable[[List[UsageRecordInput], BaseException], Any]


class Outcomes:
    """The counters of one shipper, and the reports of what was not delivered."""

    def __init__(
        self,
        *,
        on_error: ErrorCallback | None,
        forget_key: Callable[[QueuedEvent], None],
        spooled: bool,
        max_queue_size: int,
        max_queue_bytes: int,
    ) -> None:
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.lock = threading.Lock()
        self._on_error = on_error
        self._forget_key = forget_key
        self._spooled = spooled  # what fails stays in the spool: the log says so
        self._max_queue_size = max_queue_size  # named in the drop log
        self._max_queue_bytes = max_queue_bytes
        self._dropped_unreported = 0
        self._rejected_unreported = 0
        self._first_rejection: str | None = None
        self._failing = False  # a batch was given up on: logged once until delivery recovers
        self._outage = False  # an attempt failed: logged once until delivery recovers
        self._closed_drops_logged_at = -DROP_REPORT_INTERVAL * 10

    def count_duplicate(self) -> None:
        with self.lock:
            self.counts["duplicate"] += 1

    def count_drop(self, *, after_close: bool = False) -> None:
        with self.lock:
            self.counts["dropped"] += 1
            if not after_close:  # those are logged by record() itself: no worker is left
                self._dropped_unreported += 1

    def log_drop_after_close(self) -> None:
        """No worker is left to report drops after close(): say so here, once per burst."""
        now = time.monotonic()
        if now - self._closed_drops_logged_at < DROP_REPORT_INTERVAL * 10:
            return
        self._closed_drops_logged_at = now
        logger.warning(
            "bearlumen: usage.record() called after the client was closed: the event is dropped"
            " (%d dropped in all)",
            self.counts["dropped"],
        )

    def count_delivered(self, sent: int, recorded: int, duplicate: int) -> None:
        """A batch was answered: count it (`delivery_recovered` says an outage is over)."""
        with self.lock:
            self.counts["batches"] += 1
            self.counts["sent"] += sent
            self.counts["recorded"] += recorded
            self.counts["duplicate"] += duplicate

    def delivery_recovered(self) -> None:
        if self._failing or self._outage:
            self._failing = self._outage = False
            logger.warning("bearlumen: usage delivery recovered")

    def count_retry(self) -> bool:
        """An attempt failed and will be retried; True at the first of an outage (to log it)."""
        with self.lock:
            self.counts["retries"] += 1
        if self._outage:
            return False
        self._outage = True
        return True

    def reject(self, events: list[QueuedEvent], exc: BearLumenError) -> None:
        for event in events:
            self._forget_key(event)
        with self.lock:
            self.counts["rejected"] += len(events)
            self._rejected_unreported += len(events)
            if self._first_rejection is None:
                self._first_rejection = exc.message
        self._call_on_error(events, exc)

    def give_up(self, events: list[QueuedEvent], exc: BearLumenError) -> None:
        for event in events:
            self._forget_key(event)
        with self.lock:
            self.counts["failed"] += len(events)
        if not self._failing:
            self._failing = True
            logger.error(
                "bearlumen: gave up delivering %d usage event(s): %s: %s%s",
                len(events),
                type(exc).__name__,
                exc,
                "; they stay in the spool for the next client" if self._spooled else "",
            )
        self._call_on_error(events, exc)

    def _call_on_error(self, events: list[QueuedEvent], exc: BaseException) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error([to_record_input(e) for e in events], exc)
        except Exception:
            logger.exception("bearlumen: the on_error callback raised")

    def report_bursts(self) -> None:
        """Log drops and rejections once per wake of the worker, never once per event."""
        if not (self._rejected_unreported or self._dropped_unreported):
            return
        with self.lock:  # worker and senders report; each burst is told once
            rejected, self._rejected_unreported = self._rejected_unreported, 0
            first_rejection, self._first_rejection = self._first_rejection, None
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            total = self.counts["dropped"]
        if rejected:
            logger.warning(
                "bearlumen: the server or the encoder rejected %d usage event(s), e.g.: %s",
                rejected,
                first_rejection,
            )
        if not dropped:
            return
        logger.warning(
            "bearlumen: dropped %d usage event(s) (%d in all): the queue is full"
            " (max_queue_size=%d, max_queue_bytes=%d)",
            dropped,
            total,
            self._max_queue_size,
            self._max_queue_bytes,
        )
