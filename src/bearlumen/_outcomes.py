"""What became of each recorded event: the shipper's counters, `on_error`, and its burst logs.

Every event that enters `record()` ends in exactly one of recorded, duplicate, rejected (the
server or the encoder refused it), dropped (queue full, or client closed) or failed (deadline
passed, shutdown, an answer that can never succeed, or an answer that does not confirm it).
Producers, the worker and the senders all count here, each under `lock`. Drops, rejections and
unconfirmed events are logged once per burst by the worker (or by a sender waiting to retry),
never on the caller's thread; rejections and failures are handed to `on_error`.

Duplicates are an outcome too, so the caller keys live here: a caller's idempotency key is
claimed (`claim_key`) while its event is queued or in flight and stays claimed once recorded; a
rejected, failed or dropped event lets its key go (`forget_key`), so recording it again
delivers it.

Between the queue and its outcome an event is in flight: the worker takes a batch off the queue
and counts it `in_flight` under `lock` (`Flight`), and every outcome of an event in flight is
counted in the same step that takes it out of `in_flight`, so that at every moment

    queued + in_flight + recorded + duplicate + rejected + dropped + failed == calls to record()

(`stats()` reads the queue and the counters under `lock`). An event is settled once: a batch
given up by close() (`abandon_flights`) has its unsettled events counted failed there, and
whatever answer comes back for them later is not counted again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, List

from ._clock import monotonic
from ._constants import RECENT_KEYS_REMEMBERED
from ._errors import BearLumenError
from ._events import IDEMPOTENCY_KEY, QueuedEvent, to_record_input
from ._types import UsageRecordInput

logger = logging.getLogger("bearlumen")

COUNTERS = ("sent", "recorded", "duplicate", "rejected", "dropped", "failed", "retries", "batches")
# While delivery is failing the worker reports drops at least this often (seconds).
DROP_REPORT_INTERVAL = 1.0
# The first drops of a burst are logged at once, later ones at most this often (seconds), each
# line with the count since the last one and in all.
DROP_LOG_EVERY = 5.0
# The senders' watch ticks this often (seconds): drops are reported, unanswered attempts seen.
WATCH_INTERVAL = 1.0

ErrorCallback = Callable[[List[UsageRecordInput], BaseException], Any]


class Flight:
    """A batch taken off the queue: in flight until each of its events is settled, once."""

    __slots__ = ("events", "given_up", "settled_ids", "unsettled")

    def __init__(self, events: list[QueuedEvent]) -> None:
        self.events = events
        self.settled_ids: set[int] = set()  # filled only when the batch is settled in parts
        self.unsettled = len(events)
        self.given_up = False  # close() gave up on it: its unsettled events were failed then


class Outcomes:
    """The counters of one shipper, its caller keys, and the reports of what was not delivered."""

    def __init__(
        self,
        *,
        on_error: ErrorCallback | None,
        spooled: bool,
        max_queue_size: int,
        max_queue_bytes: int,
    ) -> None:
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.lock = threading.Lock()
        self.in_flight = 0  # events taken off the queue and not settled yet (under `lock`)
        self._flights: set[Flight] = set()  # the batches in flight, for abandon_flights
        self._unconfirmed_unreported = 0
        self._first_unconfirmed: str | None = None
        self._on_error = on_error
        self._recent_keys: dict[str, Any] = {}  # the newer generation of caller keys
        self._older_keys: dict[str, Any] = {}
        self._spooled = spooled  # what fails stays in the spool: the log says so
        self._max_queue_size = max_queue_size  # named in the drop log
        self._max_queue_bytes = max_queue_bytes
        self._dropped_unreported = 0
        self._rejected_unreported = 0
        self._first_rejection: str | None = None
        self._failing = False  # a batch was given up on: logged once until delivery recovers
        self._outage = False  # an attempt failed: logged once until delivery recovers
        self._closed_drops_logged_at = -DROP_REPORT_INTERVAL * 10
        self.exiting = False  # the process is ending: the exit hook closed the client
        self._drops_logged_at: float | None = None  # when drops were last logged

    # -- caller keys (on the hot path: record() claims one per call with a caller's key) --------

    def claim_key(self, key: str, event: QueuedEvent) -> bool:
        """Claim a caller's idempotency key for `event`; False (and counted) for a duplicate.

        A key is taken while its event is queued or in flight, and stays taken once the server
        recorded it; when the event is rejected, failed or dropped the key is let go, so the
        same event may be recorded again. setdefault is atomic: of two threads racing with one
        key, exactly one wins.

        The keys are remembered in two generations of dicts, the older dropped whole when the
        newer is full: evicting one oldest key at a time makes `next(iter(keys))` walk the
        dict's deleted slots, 49 µs a call once 100,000 keys were seen (benchmarks/RESULTS.md).
        """
        keys = self._recent_keys
        if key in self._older_keys or keys.setdefault(key, event) is not event:
            with self.lock:
                self.counts["duplicate"] += 1
            return False
        if len(keys) >= RECENT_KEYS_REMEMBERED // 2:
            self._older_keys, self._recent_keys = keys, {}
        return True

    def forget_key(self, event: QueuedEvent) -> None:
        """The event was not delivered after all: a retry with its key must not be a "duplicate"."""
        key = event[IDEMPOTENCY_KEY]
        for keys in (self._recent_keys, self._older_keys):
            if keys.get(key) is event:
                keys.pop(key, None)

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
            "bearlumen: usage.record() called after the client was closed%s: the event is"
            " dropped (%d dropped in all)",
            " by the process's exit (an exit hook or a finalizer that runs later)"
            if self.exiting
            else "",
            self.counts["dropped"],
        )

    # -- in flight ---------------------------------------------------------------------------

    def fly(self, events: list[QueuedEvent]) -> Flight:
        """A batch leaves the queue for the senders (the caller holds `lock`, so that `stats()`
        never sees its events in neither place)."""
        flight = Flight(events)
        self.in_flight += len(events)
        self._flights.add(flight)
        return flight

    def landed(self, flight: Flight) -> None:
        """Its sender is done with the batch (every event settled, or given up by close())."""
        with self.lock:
            self._flights.discard(flight)

    def _settle(self, flight: Flight | None, events: list[QueuedEvent]) -> list[QueuedEvent]:
        """Of `events`, those not settled yet, now settled (under `lock`): the caller counts
        exactly these, in the same step."""
        if flight is None:
            return events
        if flight.given_up or not flight.unsettled:
            return []
        if events is not flight.events or flight.settled_ids:
            # In parts (halved, or some events set apart): remember which are settled.
            settled = flight.settled_ids
            events = [event for event in events if id(event) not in settled]
            settled.update(map(id, events))
        flight.unsettled -= len(events)
        self.in_flight -= len(events)
        return events

    def abandon_flights(self) -> int:
        """close() gave up waiting: every event still in flight is failed now, and handed to
        on_error, whatever answer may come back for it later; returns how many."""
        abandoned: list[QueuedEvent] = []
        with self.lock:
            for flight in list(self._flights):
                if flight.given_up or not flight.unsettled:
                    continue
                settled = flight.settled_ids
                left = [event for event in flight.events if id(event) not in settled]
                flight.given_up = True
                flight.unsettled = 0
                self.in_flight -= len(left)
                self.counts["failed"] += len(left)
                abandoned += left
        if abandoned:
            closed = BearLumenError("The client was closed before the server answered")
            self._let_go(abandoned, closed, log=False)  # the caller logs the count
        return len(abandoned)

    def failed_at_close(self, events: list[QueuedEvent]) -> None:
        """Events still queued when the client closed, already counted failed: on to on_error."""
        self._let_go(events, BearLumenError("The client was closed before delivery"), log=False)

    # -- outcomes ------------------------------------------------------------------------------

    def count_delivered(
        self,
        flight: Flight | None,
        events: list[QueuedEvent],
        recorded: int,
        duplicate: int,
    ) -> bool:
        """A batch was answered: count `events`, which the server confirmed recorded or
        duplicate (`delivery_recovered` says an outage is over). False when close() had given
        them up already (then nothing is counted)."""
        with self.lock:
            if len(self._settle(flight, events)) < len(events):
                return False  # given up by close() meanwhile, and counted failed there
            self.counts["batches"] += 1
            self.counts["sent"] += len(events)
            self.counts["recorded"] += recorded
            self.counts["duplicate"] += duplicate
        return True

    def delivery_recovered(self) -> None:
        if self._failing or self._outage:
            self._failing = self._outage = False
            logger.warning("bearlumen: usage delivery recovered")

    def count_retry(self) -> bool:
        """An attempt failed and will be retried; True at the first of an outage (to log it)."""
        with self.lock:
            self.counts["retries"] += 1
        return self.begin_outage()

    def begin_outage(self) -> bool:
        """An attempt failed, or has gone unanswered too long: True at the first of an outage
        (the caller logs it); its end is logged once by delivery_recovered."""
        if self._outage:
            return False
        self._outage = True
        return True

    @property
    def in_outage(self) -> bool:
        return self._outage

    def reject(
        self, events: list[QueuedEvent], exc: BearLumenError, flight: Flight | None = None
    ) -> None:
        with self.lock:
            events = self._settle(flight, events)
            if not events:
                return
            self.counts["rejected"] += len(events)
            self._rejected_unreported += len(events)
            if self._first_rejection is None:
                self._first_rejection = exc.message
        for event in events:
            self.forget_key(event)
        self._call_on_error(events, exc)

    def fail_unconfirmed(
        self, events: list[QueuedEvent], problem: str, flight: Flight | None = None
    ) -> None:
        """A 200 answer that does not confirm these events (no result for them, or one that
        cannot be read): failed, handed to on_error, and logged once per burst."""
        exc = BearLumenError(f"The server's answer did not confirm the event: {problem}")
        with self.lock:
            events = self._settle(flight, events)
            if not events:
                return
            self.counts["failed"] += len(events)
            self._unconfirmed_unreported += len(events)
            if self._first_unconfirmed is None:
                self._first_unconfirmed = problem
        self._let_go(events, exc, log=False)

    def give_up(
        self, events: list[QueuedEvent], exc: BearLumenError, flight: Flight | None = None
    ) -> None:
        with self.lock:
            events = self._settle(flight, events)
            if not events:
                return
            self.counts["failed"] += len(events)
        self._let_go(events, exc)

    def _let_go(self, events: list[QueuedEvent], exc: BearLumenError, *, log: bool = True) -> None:
        """Failed events (already counted): their keys go, the log says so once an outage,
        on_error gets them."""
        for event in events:
            self.forget_key(event)
        if log and not self._failing:
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

    def report_bursts(self, *, final: bool = False) -> None:
        """Log drops, rejections and unconfirmed events once per wake of the worker (or tick of
        the senders' watch), never once per event. Drops go at most every DROP_LOG_EVERY
        seconds while they continue (the first at once); `final` (at close) tells all."""
        if not (
            self._rejected_unreported or self._dropped_unreported or self._unconfirmed_unreported
        ):
            return
        now = monotonic()
        logged_at = self._drops_logged_at
        drops_due = final or logged_at is None or now - logged_at >= DROP_LOG_EVERY
        with self.lock:  # worker and senders report; each burst is told once
            rejected, self._rejected_unreported = self._rejected_unreported, 0
            first_rejection, self._first_rejection = self._first_rejection, None
            dropped = self._dropped_unreported if drops_due else 0
            self._dropped_unreported -= dropped
            unconfirmed, self._unconfirmed_unreported = self._unconfirmed_unreported, 0
            first_unconfirmed, self._first_unconfirmed = self._first_unconfirmed, None
            total = self.counts["dropped"]
        if unconfirmed:
            logger.error(
                "bearlumen: the server's answer did not confirm %d usage event(s) (%s): counted"
                " failed and handed to on_error%s",
                unconfirmed,
                first_unconfirmed,
                "; they stay in the spool for the next client" if self._spooled else "",
            )
        if rejected:
            logger.warning(
                "bearlumen: the server or the encoder rejected %d usage event(s), e.g.: %s",
                rejected,
                first_rejection,
            )
        if not dropped:
            return
        self._drops_logged_at = now
        logger.warning(
            "bearlumen: dropped %d usage event(s) (%d in all): the queue is full"
            " (max_queue_size=%d, max_queue_bytes=%d)",
            dropped,
            total,
            self._max_queue_size,
            self._max_queue_bytes,
        )
