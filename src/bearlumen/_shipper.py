"""The buffered usage shipper: an in-memory queue, one background worker, nothing lost silently.

`usage.record()` checks its input, appends a tuple to `pending_events` (a deque: appends and
pops are thread-safe without a lock) and returns. One daemon worker per client wakes when
`flush_at` events wait or `flush_interval` passes, takes up to 1000 events at a time, encodes
them and posts them to the batch endpoint through `HttpCore` — the same retry policy as every
other call, bounded by a delivery deadline instead of an attempt count.

Accounting: every event that enters `record()` ends in exactly one of recorded, duplicate,
rejected (the server or the encoder refused it), dropped (queue full, or client closed) or
failed (deadline passed, shutdown, or an answer that can never succeed). Drops and failures are
logged once per burst by the worker, never on the caller's thread, and handed to `on_error`.

`flush()` puts a marker in the queue behind everything recorded before it; the worker completes
the marker once the events ahead of it are delivered or failed for good, so flush cannot return
early, and needs no count that producers would have to update.

Duplicates: a caller's idempotency key is claimed (`claim_key`) while its event is queued or in
flight and stays claimed once recorded; a rejected, failed or dropped event lets its key go, so
recording it again delivers it. Outages are logged at their first failed attempt and at their
end, once each. How the queue is delivered however the process ends (exit, multiprocessing,
SIGTERM) is `_exit_hooks.py`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Union

from . import _exit_hooks, _ids
from ._batch_codec import ALL_RECORDED, batch_answer_reader, encode_batch
from ._constants import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_FLUSH_AT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_BATCH_SIZE,
    RECENT_KEYS_REMEMBERED,
)
from ._errors import BearLumenError, InvalidRequestError
from ._events import (
    EVENT_BYTES,
    IDEMPOTENCY_KEY,
    METADATA,
    QueuedEvent,
    SizedMetadata,
    events_bytes,
    queued_bytes,
    to_record_input,
)
from ._http import HttpCore
from ._spool import Spool
from ._throttle import SendThrottle
from ._types import FlushResult, ShipperStats, UsageRecordInput

logger = logging.getLogger("bearlumen")

# on_overflow="block" on a thread running an asyncio loop waits at most this long, then drops:
# every task on the loop would wait with it, and the worker may be waiting for a dead server.
LOOP_BLOCK_LIMIT = 0.1  # seconds
# While delivery is failing the worker reports drops at least this often (seconds).
DROP_REPORT_INTERVAL = 1.0

ErrorCallback = Callable[[List[UsageRecordInput], BaseException], Any]


class ShipperState(enum.Enum):
    IDLE = "idle"  # no worker yet: it starts with the first recorded event
    RUNNING = "running"  # the worker ships whatever is queued
    CLOSING = "closing"  # close() was called: deliver what is queued, accept nothing new
    CLOSED = "closed"  # the worker has stopped; record() drops and counts


class _FlushRequest:
    """A marker in the queue: done once every event ahead of it is delivered or failed."""

    __slots__ = ("done",)

    def __init__(self, on_done: Callable[[], object] | None = None) -> None:
        self.done = threading.Event() if on_done is None else _CallbackEvent(on_done)


class _CallbackEvent(threading.Event):
    """An Event that also calls `on_set` (on the worker): `AsyncClient.flush` awaits a future
    that this completes, instead of blocking its event loop in `Event.wait`."""

    def __init__(self, on_set: Callable[[], object]) -> None:
        super().__init__()
        self._on_set = on_set

    def set(self) -> None:
        super().set()
        self._on_set()


COUNTERS = ("sent", "recorded", "duplicate", "rejected", "dropped", "failed", "retries", "batches")


@dataclass(frozen=True)
class ShipperSettings:
    """How the shipper batches, bounds and retries; checked once, at construction."""

    flush_at: int = DEFAULT_FLUSH_AT
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    on_overflow: str = "drop"
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        def require(ok: bool, name: str, what: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise InvalidRequestError(f"{name} {what}, not {value!r}", param=name)

        require(
            type(self.flush_at) is int and 1 <= self.flush_at <= MAX_BATCH_SIZE,
            "flush_at",
            f"must be an int from 1 to {MAX_BATCH_SIZE}",
        )
        require(
            type(self.max_queue_size) is int and self.max_queue_size >= 1,
            "max_queue_size",
            "must be an int >= 1",
        )
        require(
            type(self.max_in_flight) is int and 1 <= self.max_in_flight <= MAX_IN_FLIGHT,
            "max_in_flight",
            f"must be an int from 1 to {MAX_IN_FLIGHT}",
        )
        require(
            type(self.max_queue_bytes) is int and self.max_queue_bytes >= 1,
            "max_queue_bytes",
            "must be an int >= 1",
        )
        require(self.on_overflow in ("drop", "block"), "on_overflow", "must be 'drop' or 'block'")
        for name in ("flush_interval", "delivery_timeout", "shutdown_timeout"):
            require(is_positive_number(getattr(self, name)), name, "must be a number > 0")


MAX_IN_FLIGHT = 64  # sender threads at most; far beyond what one API key is allowed to send


def is_positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


class Shipper:
    """The queue and worker behind buffered `usage.record()`; one per `Client`."""

    def __init__(
        self,
        http: HttpCore,
        settings: ShipperSettings,
        *,
        on_error: ErrorCallback | None = None,
        sleep: Callable[[float], Any] | None = None,
        spool_dir: str | None = None,
        handle_sigterm: bool = True,
    ) -> None:
        self._http = http
        # Waits between retries end early when close() gives up; tests inject their own sleep.
        self._sleep = sleep
        # Copied to attributes: the hot path reads them on every record().
        self.flush_at = settings.flush_at
        self.flush_interval = settings.flush_interval
        self.max_queue_size = settings.max_queue_size
        self.max_queue_bytes = settings.max_queue_bytes
        self.block_on_overflow = settings.on_overflow == "block"
        self.delivery_timeout = settings.delivery_timeout
        self.shutdown_timeout = settings.shutdown_timeout
        self.max_in_flight = settings.max_in_flight
        self.on_error = on_error
        self.handle_sigterm = handle_sigterm
        self._reset()
        self._spool: Spool | None = None
        if spool_dir is not None:
            self._spool = Spool(os.fspath(spool_dir))
            recovered = self._spool.adopt_orphans()
            if recovered:
                self.pending_events.extend(recovered)
                self.queued_bytes = sum(map(queued_bytes, recovered))
                self._start_worker()
        _exit_hooks.watch(self, handle_sigterm=handle_sigterm)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork(weakref.ref(self)))

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (which owns nothing it inherited)."""
        self.pending_events: Deque[Union[QueuedEvent, _FlushRequest]] = deque()
        # What the queued events hold (`_events.queued_bytes`), against max_queue_bytes. Producers
        # add and the worker subtracts without a lock: `+=` / `-=` on an attribute, with no call
        # between the read and the write, is not interrupted by a thread switch in CPython >=
        # 3.10; on 3.9 a rare lost update is healed whenever the worker empties the queue.
        self.queued_bytes = 0
        self.recent_keys: dict[str, Any] = {}  # the newer generation of caller keys
        self._older_keys: dict[str, Any] = {}
        self.state = ShipperState.IDLE
        self._wake = threading.Event()
        self._abandon = threading.Event()  # close() gave up waiting: stop retrying now
        self._lifecycle_lock = threading.Lock()
        self._space = threading.Condition()
        self._blocked_producers = 0
        self._worker: threading.Thread | None = None
        self._accepting = False  # True while RUNNING: the one flag record() reads
        self._counts_lock = threading.Lock()
        self._dropped_unreported = 0
        self._rejected_unreported = 0
        self._first_rejection: str | None = None
        self._failing = False  # a batch was given up on: logged once until delivery recovers
        self._outage = False  # an attempt failed: logged once until delivery recovers
        self._closed_drops_logged_at = -DROP_REPORT_INTERVAL * 10
        self._sigterm_after_fork = False  # set in a forked child: reinstall at the first event
        self._adopt_at_start = False  # set in a forked child with a spool
        self.counts = dict.fromkeys(COUNTERS, 0)
        # Batches in flight: the worker numbers each batch it hands to a sender thread; a flush
        # marker is done once every batch numbered before it has come back.
        self._throttle = SendThrottle(self.max_in_flight, sleep=self._sleep)
        self._batches: queue.SimpleQueue[tuple[int, list[QueuedEvent]] | None] = queue.SimpleQueue()
        self._senders: list[threading.Thread] = []
        self._sender_idents: set[int | None] = set()
        self._progress = threading.Condition()  # guards the four below
        self._next_batch = 0
        self._outstanding: set[int] = set()  # numbers of the batches in flight
        self._events_in_flight = 0  # events in those batches
        self._waiting_markers: Deque[tuple[_FlushRequest, int]] = deque()
        self._flush_asked = False  # a flush marker waits: ship part-filled batches now
        self._ack_lock = threading.Lock()  # the spool is told of answers by one thread at a time

    # -- producers (callers' threads) ------------------------------------------------------

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
        keys = self.recent_keys
        if key in self._older_keys or keys.setdefault(key, event) is not event:
            with self._counts_lock:
                self.counts["duplicate"] += 1
            return False
        if len(keys) >= RECENT_KEYS_REMEMBERED // 2:
            self._older_keys, self.recent_keys = keys, {}
        return True

    def enqueue(self, event: QueuedEvent) -> bool:
        """Queue one event; False when it was dropped (queue full, or client closed)."""
        pending = self.pending_events
        metadata = event[METADATA]  # queued_bytes(event), inlined: this is the hot path
        size = EVENT_BYTES + metadata.size if type(metadata) is SizedMetadata else EVENT_BYTES
        if (  # self._is_full(size), spelled out: this is the hot path
            len(pending) >= self.max_queue_size
            or (self.queued_bytes + size > self.max_queue_bytes and self.queued_bytes > 0)
        ) and not self._wait_for_space(size):
            self._forget_key(event)
            return False
        if not self._accepting and not self._start_worker():
            self._count_drop(after_close=True)
            self._forget_key(event)
            self._log_drop_after_close()
            return False
        if self._spool is not None:
            event = self._spool_append(event)
        self.queued_bytes += size
        pending.append(event)
        if len(pending) >= self.flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    def _spool_append(self, event: QueuedEvent) -> QueuedEvent:
        try:
            return self._spool.append(event)  # type: ignore[union-attr]
        except BaseException:
            self._forget_key(event)
            raise

    def _forget_key(self, event: QueuedEvent) -> None:
        """The event was not delivered after all: a retry with its key must not be a "duplicate"."""
        key = event[IDEMPOTENCY_KEY]
        for keys in (self.recent_keys, self._older_keys):
            if keys.get(key) is event:
                keys.pop(key, None)

    def _is_full(self, size: int) -> bool:
        """No room for an event of `size` bytes (an empty queue takes any one event)."""
        return len(self.pending_events) >= self.max_queue_size or (
            self.queued_bytes + size > self.max_queue_bytes and self.queued_bytes > 0
        )

    def _wait_for_space(self, size: int) -> bool:
        if not self.block_on_overflow:
            self._count_drop()
            return False
        # On an event loop's thread every task would wait with us: wait briefly, then drop.
        limit = LOOP_BLOCK_LIMIT if _on_event_loop() else None
        deadline = None if limit is None else time.monotonic() + limit
        with self._space:
            self._blocked_producers += 1
            try:
                while self._is_full(size):
                    left = 0.5 if deadline is None else deadline - time.monotonic()
                    if left <= 0 or self.state in (ShipperState.CLOSING, ShipperState.CLOSED):
                        self._count_drop()
                        return False
                    self._wake.set()
                    self._space.wait(min(left, 0.5))
            finally:
                self._blocked_producers -= 1
        return True

    def _count_drop(self, *, after_close: bool = False) -> None:
        with self._counts_lock:
            self.counts["dropped"] += 1
            if not after_close:  # those are logged by record() itself: no worker is left
                self._dropped_unreported += 1

    def _log_drop_after_close(self) -> None:
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

    def _start_worker(self) -> bool:
        if self._sigterm_after_fork:
            # A forked server worker (gunicorn's UvicornWorker) reset SIGTERM after the fork.
            self._sigterm_after_fork = False
            _exit_hooks.install_sigterm_handler()
        with self._lifecycle_lock:
            if self.state is ShipperState.IDLE:
                self._worker = threading.Thread(
                    target=self._run, name="bearlumen-shipper", daemon=True
                )
                self.state = ShipperState.RUNNING
                self._accepting = True
                self._worker.start()
            return self.state is ShipperState.RUNNING

    # -- control ---------------------------------------------------------------------------

    def stats(self) -> ShipperStats:
        queued = sum(1 for item in list(self.pending_events) if type(item) is not _FlushRequest)
        in_flight = self._events_in_flight
        with self._counts_lock:
            return {"queued": queued, "in_flight": in_flight, **self.counts}  # type: ignore[typeddict-item]

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Block until everything recorded before this call is delivered or failed for good."""
        complete = True
        worker = self._worker
        if worker is threading.current_thread() or threading.get_ident() in self._sender_idents:
            # Called from on_error, on the worker or a sender: waiting would wait for ever.
            complete = not self.pending_events
        elif worker is not None and worker.is_alive():
            request = self._queue_flush_marker(_FlushRequest())
            self._wake.set()
            complete = request.done.wait(timeout)
        return {**self.stats(), "complete": complete}

    def request_flush(self, on_done: Callable[[], object]) -> bool:
        """Queue a flush marker whose completion calls `on_done` on the worker, without waiting;
        False when no worker runs (then nothing recorded is pending)."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            return False
        self._queue_flush_marker(_FlushRequest(on_done))
        self._wake.set()
        return True

    def _queue_flush_marker(self, request: _FlushRequest) -> _FlushRequest:
        """Behind everything recorded so far; part-filled batches go at once until it is done.
        Takes no lock and sets no Event (SIGTERM's handler calls it): the caller wakes the
        worker."""
        self.pending_events.append(request)
        self._flush_asked = True
        return request

    def close(self, timeout: float | None = None) -> FlushResult:
        """Deliver what is queued (waiting at most `timeout`), then stop the worker."""
        with self._lifecycle_lock:
            self._accepting = False
            if self.state is ShipperState.IDLE:
                self.state = ShipperState.CLOSED
            elif self.state is ShipperState.RUNNING:
                self.state = ShipperState.CLOSING
        result = self.flush(self.shutdown_timeout if timeout is None else timeout)
        # Whatever is still undelivered now is given up: stop retrying and account for it.
        self._abandon.set()
        self._wake.set()
        self._throttle.wake_all()
        with self._progress:
            self._progress.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=1.0)
        with self._space:
            self._space.notify_all()
        if worker is None or not worker.is_alive():
            self._report_bursts()  # what was dropped or rejected since the worker's last wake
        if worker is None and self._spool is not None:
            self._spool.close()  # no worker ever ran to close it
        result = {**self.stats(), "complete": result["complete"]}
        if not result["complete"]:
            logger.error(
                "bearlumen: closed with %d usage events undelivered (server unreachable or slow);"
                " %d failed in all",
                result["queued"] + result["in_flight"],
                result["failed"],
            )
        return result

    def close_at_exit(self) -> None:
        """The process is ending (atexit, or a multiprocessing child's finalizers)."""
        if self.state is ShipperState.RUNNING:
            self.close()

    def start_exit_flush(self) -> threading.Event | None:
        """SIGTERM arrived: from now on ship every event at once, and queue a flush marker.

        Returns what to wait on (None when there is no worker). Called in a signal handler, so
        it takes no lock and sets no Event: the interrupted code may hold any of them. The
        caller wakes the worker (`wake()`) from another thread.
        """
        self.flush_at = 1
        worker = self._worker
        if worker is None or not worker.is_alive():
            return None
        return self._queue_flush_marker(_FlushRequest()).done

    def wake(self) -> None:
        self._wake.set()

    def queued_estimate(self) -> int:
        """Events still queued; no lock, for a signal handler's log line."""
        return sum(1 for item in list(self.pending_events) if type(item) is not _FlushRequest)

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        _exit_hooks.leave_signals_to_the_main_thread()  # the senders started here inherit it
        if self._adopt_at_start:
            self._adopt_orphans()
        next_round = time.monotonic() + self.flush_interval
        while True:
            woken = self._wake.wait(max(0.0, next_round - time.monotonic()))
            self._wake.clear()
            flush_asked, self._flush_asked = self._flush_asked, False
            # Woken early by `flush_at` events: ship full batches only, and let the rest fill
            # up until the interval is over; so a steady trickle costs one request an interval.
            everything = not woken or flush_asked or self.state is not ShipperState.RUNNING
            try:
                if self._spool is not None:
                    with self._ack_lock:
                        self._spool.sync()
                self._drain(everything)
            except Exception:  # never let the worker die: log, and go on with the next batch
                logger.exception("bearlumen: unexpected error in the usage shipper")
            if everything:
                next_round = time.monotonic() + self.flush_interval
            self._report_bursts()
            if self.state is not ShipperState.RUNNING and (
                self._abandon.is_set() or not self.pending_events
            ):
                break
        self._stop_senders()
        self._fail_remaining()
        if self._spool is not None:
            self._spool.close()
        with self._lifecycle_lock:
            self.state = ShipperState.CLOSED

    def _adopt_orphans(self) -> None:
        """In a forked child (a pre-forking server's worker), on the worker thread: replay what
        dead processes left in the spool. Put first, ahead of any flush marker already queued,
        so that a flush or close waits for them too."""
        self._adopt_at_start = False
        try:
            recovered = self._spool.adopt_orphans() if self._spool is not None else []
        except Exception:
            logger.exception("bearlumen: could not replay the spool's orphaned segments")
            return
        recovered_bytes = sum(map(queued_bytes, recovered))  # sized first: see _take_chunk
        self.pending_events.extendleft(reversed(recovered))
        self.queued_bytes += recovered_bytes

    def _drain(self, everything: bool) -> None:
        """Hand what is queued now to the senders; what arrives meanwhile waits its round."""
        budget = len(self.pending_events)
        while budget > 0 and not self._abandon.is_set():
            # Not everything: full batches only. The budget counts too, or events recorded
            # meanwhile would send the budget's remainder as a runt batch.
            if not everything and min(budget, len(self.pending_events)) < self.flush_at:
                break
            chunk, flush_request = self._take_chunk(min(MAX_BATCH_SIZE, budget))
            if not chunk and flush_request is None:
                break
            budget -= len(chunk) + (flush_request is not None)
            if chunk:
                self._send_in_background(chunk)
            if flush_request is not None:
                with self._progress:
                    self._waiting_markers.append((flush_request, self._next_batch))
                    self._complete_markers()

    def _take_chunk(self, limit: int) -> tuple[list[QueuedEvent], _FlushRequest | None]:
        pending = self.pending_events
        popleft = pending.popleft
        # Only this worker takes from the left, so the first `count` items are there to take;
        # a comprehension, not a loop testing each item: this runs for every event.
        count = min(limit, len(pending))
        chunk: list[Any] = [popleft() for _ in range(count)]
        flush_request = None
        if _FlushRequest in map(type, chunk):  # a flush marker: the chunk ends before it
            at = next(n for n, item in enumerate(chunk) if type(item) is _FlushRequest)
            flush_request = chunk[at]
            pending.extendleft(reversed(chunk[at + 1 :]))  # back in front, in their order
            del chunk[at:]
        if chunk:
            # Sized first, then one `-=`: a producer's `+=` that runs while events_bytes does (a
            # thread switch inside the call) would be lost if the old total were read before it.
            taken_bytes = events_bytes(chunk)
            if pending:
                self.queued_bytes -= taken_bytes
            else:
                self.queued_bytes = 0
        if self._blocked_producers:
            with self._space:
                self._space.notify_all()
        return chunk, flush_request

    # -- batches in flight -------------------------------------------------------------------

    def _send_in_background(self, chunk: list[QueuedEvent]) -> None:
        """Give the batch to a sender thread once fewer than `max_in_flight` are out."""
        with self._progress:
            # Out of the queue, so counted in flight from now, waiting for a sender included.
            self._events_in_flight += len(chunk)
            self._progress.notify_all()
            while len(self._outstanding) >= self.max_in_flight:
                if self._abandon.is_set():
                    self._events_in_flight -= len(chunk)
                    break
                self._progress.wait(1.0)  # woken when a batch comes back; the bound is a guard
            else:
                number = self._next_batch
                self._next_batch += 1
                self._outstanding.add(number)
                start_sender = len(self._senders) < len(self._outstanding)
                self._batches.put((number, chunk))
                self._progress.notify_all()
                chunk = []
        if chunk:  # close() gave up while every sender was busy: this batch never goes out
            self._give_up(chunk, BearLumenError("The client was closed before delivery"))
            return
        if start_sender:
            sender = threading.Thread(
                target=self._send_batches, name="bearlumen-sender", daemon=True
            )
            self._senders.append(sender)
            sender.start()

    def _send_batches(self) -> None:
        """A sender thread: deliver batches, one at a time, until told to stop."""
        self._sender_idents.add(threading.get_ident())
        while True:
            item = self._batches.get()
            if item is None:
                self._http.close_connection_of_this_thread()
                return
            number, chunk = item
            try:
                self._deliver(chunk)
            except Exception as exc:  # never let a sender die, never lose a batch silently
                logger.exception("bearlumen: unexpected error delivering a batch")
                self._give_up(chunk, BearLumenError(f"Unexpected error in delivery: {exc}"))
            finally:
                with self._progress:
                    self._outstanding.discard(number)
                    self._events_in_flight -= len(chunk)
                    self._complete_markers()
                    self._progress.notify_all()

    def _complete_markers(self) -> None:
        """Flush markers whose every earlier batch came back are done (under `_progress`)."""
        oldest_out = min(self._outstanding, default=self._next_batch)
        while self._waiting_markers and self._waiting_markers[0][1] <= oldest_out:
            self._waiting_markers.popleft()[0].done.set()

    def _stop_senders(self) -> None:
        """The worker is ending: let the batches in flight come back, then end the senders."""
        for _ in self._senders:
            self._batches.put(None)
        for sender in self._senders:
            sender.join()

    def _fail_remaining(self) -> None:
        """At shutdown: what was never sent is failed (and handed to on_error), not forgotten."""
        leftover: list[QueuedEvent] = []
        while self.pending_events:
            item = self.pending_events.popleft()
            if type(item) is _FlushRequest:
                item.done.set()
            else:
                leftover.append(item)  # type: ignore[arg-type]
        if leftover:
            self._give_up(leftover, BearLumenError("The client was closed before delivery"))

    def _deliver(self, chunk: list[QueuedEvent]) -> None:
        body, events, unencodable = encode_batch(chunk)
        for event, reason in unencodable:
            self._reject([event], InvalidRequestError(reason, param="metadata"))
        if not events:
            return
        try:
            answer = self._post_batch(body, len(events))
        except InvalidRequestError as exc:
            if exc.status_code is None:  # the request could not even be built
                self._reject(events, exc)
            elif len(events) > 1:
                # Too large (413), or one event the server could not parse so the whole batch
                # was refused (400): halve until the culprit is alone; the rest go through.
                middle = len(events) // 2
                self._deliver(events[:middle])
                self._deliver(events[middle:])
            else:
                self._reject(events, exc)
            return
        except BearLumenError as exc:
            self._give_up(events, exc)
            return
        self._tally(events, answer)

    def _post_batch(self, body: bytes, count: int) -> Any:
        """One batch request with its retries, each attempt taking its turn at the throttle."""
        retrying = self._http.retrying(
            deadline=self.delivery_timeout,
            should_stop=self._abandon.is_set,
            sleep=self._wait_to_retry,
            on_retry=self._count_retry,
        )
        self._throttle.wait_turn(self._abandon.is_set)
        delivered = False
        try:
            answer = self._http.request(
                "POST",
                "/v1/usage/events/batch",
                content=body,
                retrying=retrying,
                idempotency_key=_ids.request_keys.next(),
                decode=batch_answer_reader(count),
                own_connection=True,
            )
            delivered = True
            return answer
        finally:
            self._throttle.attempt_done(delivered)

    def _tally(self, events: list[QueuedEvent], answer: Any) -> None:
        recorded = duplicate = 0
        rejected: list[tuple[QueuedEvent, dict[str, Any]]] = []
        if answer is ALL_RECORDED:
            recorded = len(events)
            answer = {}
        for result in answer.get("results", ()):
            status = result.get("status")
            if status == "recorded":
                recorded += 1
            elif status == "duplicate":
                duplicate += 1
            else:
                rejected.append((events[result["index"]], result.get("error") or {}))
        with self._counts_lock:
            self.counts["batches"] += 1
            self.counts["sent"] += len(events)
            self.counts["recorded"] += recorded
            self.counts["duplicate"] += duplicate
        if self._spool is not None:
            with self._ack_lock:
                self._spool.acknowledge(events)  # rejected ones too: a retry cannot help them
        if self._failing or self._outage:
            self._failing = self._outage = False
            logger.warning("bearlumen: usage delivery recovered")
        for event, error in rejected:
            self._reject(
                [event],
                InvalidRequestError(
                    error.get("message") or "The server rejected the event",
                    param=error.get("param"),
                    body=error,
                ),
            )

    def _count_retry(self, exc: BaseException | None, delay: float) -> None:
        self._throttle.attempt_failed(getattr(exc, "retry_after", None))
        with self._counts_lock:
            self.counts["retries"] += 1
        if not self._outage:
            # The first failed attempt of an outage, logged once; the retries go to DEBUG.
            self._outage = True
            logger.warning(
                "bearlumen: usage delivery failing (%s); %d event(s) waiting; retrying in %.1fs"
                " and until delivery_timeout=%ss",
                describe_failure(exc),
                self._events_in_flight + self.queued_estimate(),
                delay,
                self.delivery_timeout,
            )

    def _wait_to_retry(self, delay: float) -> None:
        """Between attempts: report drops as they happen, not once the outage is over."""
        if self._sleep is not None:  # a test's injected sleep
            self._report_bursts()
            self._sleep(delay)
            slept_until = time.monotonic() + delay
        else:
            slept_until = 0.0
            deadline = time.monotonic() + delay
            while True:
                self._report_bursts()
                left = deadline - time.monotonic()
                if left <= 0 or self._abandon.wait(min(left, DROP_REPORT_INTERVAL)):
                    break
        # Another sender's 429 may have paused everyone, or the server may want fewer at once.
        self._throttle.wait_turn(self._abandon.is_set, slept_until=slept_until)

    def _reject(self, events: list[QueuedEvent], exc: BearLumenError) -> None:
        for event in events:
            self._forget_key(event)
        with self._counts_lock:
            self.counts["rejected"] += len(events)
            self._rejected_unreported += len(events)
            if self._first_rejection is None:
                self._first_rejection = exc.message
        self._call_on_error(events, exc)

    def _give_up(self, events: list[QueuedEvent], exc: BearLumenError) -> None:
        for event in events:
            self._forget_key(event)
        with self._counts_lock:
            self.counts["failed"] += len(events)
        if not self._failing:
            self._failing = True
            logger.error(
                "bearlumen: gave up delivering %d usage event(s): %s: %s%s",
                len(events),
                type(exc).__name__,
                exc,
                "; they stay in the spool for the next client" if self._spool else "",
            )
        self._call_on_error(events, exc)

    def _call_on_error(self, events: list[QueuedEvent], exc: BaseException) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error([to_record_input(e) for e in events], exc)
        except Exception:
            logger.exception("bearlumen: the on_error callback raised")

    def _report_bursts(self) -> None:
        """Log drops and rejections once per wake of the worker, never once per event."""
        if not (self._rejected_unreported or self._dropped_unreported):
            return
        with self._counts_lock:  # worker and senders report; each burst is told once
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
            self.max_queue_size,
            self.max_queue_bytes,
        )


def _on_event_loop() -> bool:
    """Is this thread running an asyncio event loop?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def describe_failure(exc: BaseException | None) -> str:
    """A failed attempt in a few words: the status and message, or the network error."""
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status_code", None)
    return f"{status} {exc}" if status is not None else f"{type(exc).__name__}: {exc}"


def _after_fork(shipper_ref: weakref.ref[Shipper]) -> Callable[[], None]:
    def reset() -> None:
        shipper = shipper_ref()
        if shipper is None:
            return
        shipper._reset()
        shipper._http.reset_after_fork()
        shipper._sigterm_after_fork = shipper.handle_sigterm
        if shipper._spool is not None:
            # The parent's segments are the parent's: the child writes its own, beside them,
            # and adopts those of dead processes once its worker starts.
            shipper._spool = shipper._spool.for_forked_child()
            shipper._adopt_at_start = shipper._spool is not None

    return reset
