"""The buffered usage shipper: an in-memory queue, one background worker, nothing lost silently.

`usage.record()` checks its input, appends a tuple to `pending_events` (a deque: appends and
pops are thread-safe without a lock) and returns; when the queue is full (`max_queue_size`,
`max_queue_bytes`) it drops the event, or waits for room (`_room.py`). One daemon worker per
client wakes when `flush_at` events wait or `flush_interval` passes, takes up to 1000 events at
a time and hands each batch to the senders (`_senders.py`), which post it to the batch endpoint
through `HttpCore` — the same retry policy as every other call, bounded by a delivery deadline
instead of an attempt count. What became of each event is counted, logged once per burst and
handed to `on_error` by `_outcomes.py`, never on the caller's thread.

`flush()` puts a marker in the queue behind everything recorded before it; the worker hands the
marker to the senders, which complete it once the batches ahead of it are delivered or failed
for good, so flush cannot return early, and needs no count that producers would have to update.

Duplicates: a caller's idempotency key is claimed while its event is queued or in flight and let
go when it is rejected, failed or dropped; the keys belong to `Outcomes` (`claim_key`), which
decides what became of each event. Outages are logged at their first failed attempt (or once an
attempt has gone unanswered for a few seconds: the senders' watch) and at their end, once each.
close() gives up what is still queued or in flight when its wait ends: counted failed, handed to
on_error, never counted again (`Outcomes.abandon_flights`). How the queue is delivered however
the process ends (exit, multiprocessing, SIGTERM) is `_exit_hooks.py`.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import sys
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Union

from . import _exit_hooks
from ._clock import monotonic
from ._constants import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_FLUSH_AT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_BATCH_SIZE,
    MAX_IN_FLIGHT,
)
from ._errors import BearLumenError, InvalidRequestError
from ._events import (
    EVENT_BYTES,
    METADATA,
    QueuedEvent,
    SizedMetadata,
    queued_bytes,
)
from ._http import HttpCore
from ._outcomes import WATCH_INTERVAL, ErrorCallback, Flight, Outcomes
from ._room import Room
from ._senders import Senders
from ._spool import Spool
from ._types import FlushResult, ShipperStats

logger = logging.getLogger("bearlumen")


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
    """An Event that also calls `on_set` (on the shipper thread that completes the marker: the
    worker, or the sender whose batch came back last): `AsyncClient.flush` awaits a future that
    this completes, instead of blocking its event loop in `Event.wait`."""

    def __init__(self, on_set: Callable[[], object]) -> None:
        super().__init__()
        self._on_set = on_set

    def set(self) -> None:
        super().set()
        self._on_set()


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
        self._sleep = sleep  # the senders' waits between retries; tests inject their own
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
        # Before _reset: the senders acknowledge to the spool, and the outcomes name it.
        self._spool: Spool | None = None if spool_dir is None else Spool(os.fspath(spool_dir))
        self._reset()
        if self._spool is not None:
            recovered = self._spool.adopt_orphans()
            if recovered:
                self._queue_first(recovered)
                self._start_worker()
        self._record_first: weakref.WeakMethod[Callable[[bool], None]] | None = None
        _exit_hooks.watch(self, handle_sigterm=handle_sigterm)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork(weakref.ref(self)))

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (which owns nothing it inherited:
        not the parent's queue, keys, counters or threads; its senders are its own)."""
        self.pending_events: Deque[Union[QueuedEvent, _FlushRequest]] = deque()
        self.state = ShipperState.IDLE
        self._wake = threading.Event()
        self._lifecycle_lock = threading.Lock()
        # The bytes held against max_queue_bytes, and the producers waiting for room: the
        # senders hold and release a batch's bytes in it directly.
        self._room = Room(
            self.pending_events,
            max_events=self.max_queue_size,
            max_bytes=self.max_queue_bytes,
            block=self.block_on_overflow,
            wake_worker=self._wake.set,
        )
        self._worker: threading.Thread | None = None
        self._accepting = False  # True while RUNNING: the one flag record() reads
        self._sigterm_after_fork = False  # set in a forked child: reinstall at the first event
        self._adopt_at_start = False  # set in a forked child with a spool
        self._flush_asked = False  # a flush marker waits: ship part-filled batches now
        # The shipper's parts hold its queue and its wake event, never the shipper: a reference
        # back would keep a dropped idle client alive until the garbage collector.
        self._outcomes = Outcomes(
            on_error=self.on_error,
            spooled=self._spool is not None,
            max_queue_size=self.max_queue_size,
            max_queue_bytes=self.max_queue_bytes,
        )
        self._senders = Senders(
            self._http,
            self._outcomes,
            max_in_flight=self.max_in_flight,
            delivery_timeout=self.delivery_timeout,
            sleep=self._sleep,
            spool=self._spool,
            queued=functools.partial(_events_in, self.pending_events),
            room=self._room,
        )
        # record() claims a caller's key here, on the hot path: the outcomes' own method, bound
        # once, so that the call costs no more than a method of the shipper's.
        self.claim_key: Callable[[str, QueuedEvent], bool] = self._outcomes.claim_key

    # -- producers (callers' threads) ------------------------------------------------------

    def enqueue(self, event: QueuedEvent) -> bool:
        """Queue one event; False when it was dropped (queue full, or client closed)."""
        pending = self.pending_events
        room = self._room
        metadata = event[METADATA]  # queued_bytes(event), inlined: this is the hot path
        size = EVENT_BYTES + metadata.size if type(metadata) is SizedMetadata else EVENT_BYTES
        if (  # room.is_full(size), spelled out: this is the hot path
            len(pending) >= self.max_queue_size
            or (room.held + size > self.max_queue_bytes and room.held > 0)
        ) and not room.wait(size):
            self._outcomes.count_drop()
            self._outcomes.forget_key(event)
            return False
        if not self._accepting and not self._start_worker():
            self._outcomes.count_drop(after_close=True)
            self._outcomes.forget_key(event)
            self._outcomes.log_drop_after_close()
            return False
        if self._spool is not None:
            event = self._spool_append(event)
        room.held += size
        pending.append(event)
        if len(pending) >= self.flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    def _spool_append(self, event: QueuedEvent) -> QueuedEvent:
        try:
            return self._spool.append(event)  # type: ignore[union-attr]
        except BaseException:
            self._outcomes.forget_key(event)
            raise

    def reinstall_sigterm_after_fork(self) -> None:
        """A forked server worker (gunicorn's UvicornWorker) reset SIGTERM after the fork: put
        the handler back, from the main thread (only it can). Called by the first event; and,
        since client.llm records its events on its capture thread, by the first instrumented
        call, which an asyncio server makes on its main thread."""
        if self._sigterm_after_fork and threading.current_thread() is threading.main_thread():
            self._sigterm_after_fork = False
            _exit_hooks.install_sigterm_handler()

    def _start_worker(self) -> bool:
        self.reinstall_sigterm_after_fork()
        with self._lifecycle_lock:
            if self.state is ShipperState.IDLE and sys.is_finalizing():
                # A thread started now never runs, and Thread.start() waits for it for ever.
                self._outcomes.exiting = True
                self.state = ShipperState.CLOSED
                self._room.stop()
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
        """The counts, read at one moment: the worker moves events from the queue to in flight,
        and the senders from in flight to an outcome, under the lock held here, so that
        queued + in_flight + recorded + duplicate + rejected + dropped + failed is the number of
        record() calls that returned."""
        outcomes = self._outcomes
        with outcomes.lock:
            queued = _events_in(self.pending_events)
            return {"queued": queued, "in_flight": outcomes.in_flight, **outcomes.counts}  # type: ignore[typeddict-item]

    def flush(self, timeout: float | None = None, *, caller: str = "flush()") -> FlushResult:
        """Block until everything recorded before this call is delivered or failed for good
        (a batch is retried until `delivery_timeout`), or `timeout` seconds passed. While
        delivery is failing, logs once what it waits for."""
        complete = True
        worker = self._worker
        if (
            worker is threading.current_thread()
            or self._senders.on_a_sender_thread()
            or self._senders.abandoned.is_set()
        ):
            # Called from on_error (on the worker, a sender, or close() giving up), or after
            # close() gave up: waiting would wait for ever.
            complete = not _events_in(self.pending_events)
        elif worker is not None and worker.is_alive():
            request = self._queue_flush_marker(_FlushRequest())
            self._wake.set()
            complete = self._wait_telling_of_outage(request.done, timeout, caller)
        return {**self.stats(), "complete": complete}

    def _wait_telling_of_outage(
        self, done: threading.Event, timeout: float | None, caller: str
    ) -> bool:
        """Wait for `done`, at most `timeout` seconds; once delivery is failing meanwhile (or
        already), log once that the caller waits, and for how long at most. In steps of the
        watch's interval, counted rather than read from a clock (a user's frozen clock would
        never let the wait end)."""
        left = timeout
        told = False
        while True:
            if not told and self._outcomes.in_outage:
                told = True
                logger.warning(
                    "bearlumen: %s is waiting while usage delivery fails: it returns once every"
                    " event recorded before it is delivered or given up (retried until"
                    " delivery_timeout=%ss)%s",
                    caller,
                    self.delivery_timeout,
                    "; pass timeout= to wait less" if left is None else f", or in {left:.1f}s",
                )
            step = WATCH_INTERVAL if left is None else min(left, WATCH_INTERVAL)
            if done.wait(step):
                return True
            if left is not None:
                left -= step
                if left <= 0:
                    return False

    def request_flush(self, on_done: Callable[[], object]) -> bool:
        """Queue a flush marker whose completion calls `on_done` on a shipper thread, without
        waiting; False when no worker runs (then nothing recorded is pending)."""
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
        """Deliver what is queued (waiting at most `timeout`), then stop the worker; what is
        still undelivered then is counted failed and handed to on_error."""
        with self._lifecycle_lock:
            self._accepting = False
            if self.state is ShipperState.IDLE:
                self.state = ShipperState.CLOSED
            elif self.state is ShipperState.RUNNING:
                self.state = ShipperState.CLOSING
        self._room.stop()  # who waits for room drops, now: nothing more is accepted
        waited = self.shutdown_timeout if timeout is None else timeout
        result = self.flush(waited, caller="close()")
        given_up = self.give_up()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=1.0)
        if worker is None or not worker.is_alive():
            # What was dropped or rejected since the worker's last wake.
            self._outcomes.report_bursts(final=True)
        if worker is None and self._spool is not None:
            self._spool.close()  # no worker ever ran to close it
        result = {**self.stats(), "complete": result["complete"]}
        if given_up:
            logger.error(
                "bearlumen: closed with %d usage event(s) undelivered after waiting %ss (server"
                " unreachable or slow): counted failed and handed to on_error%s; %d failed in all",
                given_up,
                waited,
                "; they stay in the spool for the next client" if self._spool is not None else "",
                result["failed"],
            )
        return result

    def give_up(self) -> int:
        """Stop delivering: every event in flight or queued is counted failed now (an answer
        that comes later is not counted again) and handed to on_error; returns how many."""
        in_flight = self._senders.abandon()  # failed, and no more retries
        self._wake.set()
        return in_flight + self._fail_remaining()  # the worker may be stuck in a send

    def record_first_at_exit(self, record_pending: Callable[[bool], None]) -> None:
        """Run `record_pending(final)` before each exit flush: it records what waits elsewhere
        (client.llm's queued captures). `final` is True when the process ends for sure
        (atexit, a multiprocessing child's finalizers), False on SIGTERM (the app may go on:
        uvicorn's graceful shutdown). Held weakly: it is a method of what owns this shipper."""
        self._record_first = weakref.WeakMethod(record_pending)

    def record_pending_before_exit(self, final: bool) -> None:
        method = self._record_first
        record_pending = None if method is None else method()
        if record_pending is None:
            return
        try:
            record_pending(final)
        except Exception:  # the flush that follows must run whatever happened here
            logger.exception("bearlumen: could not record the queued LLM calls before exiting")

    def close_at_exit(self) -> None:
        """The process is ending (atexit, or a multiprocessing child's finalizers). An idle
        shipper is closed too: an event recorded after this (an app's exit hook that runs
        later, a finalizer during interpreter shutdown) is dropped and counted, instead of
        starting a worker that nothing would wait for, or that shutdown would wait on."""
        self.record_pending_before_exit(final=True)
        self._outcomes.exiting = True
        if self.state in (ShipperState.RUNNING, ShipperState.IDLE):
            self.close()

    def ship_each_event_at_once(self) -> None:
        """SIGTERM arrived: from now on ship every event at once (called in the signal handler:
        no lock, no Event)."""
        self.flush_at = 1

    def start_exit_flush(self) -> threading.Event | None:
        """SIGTERM arrived: ship every event at once, and queue a flush marker.

        Returns what to wait on (None when there is no worker). Takes no lock and sets no
        Event (safe in a signal handler). The caller wakes the worker (`wake()`).
        """
        self.ship_each_event_at_once()
        worker = self._worker
        if worker is None or not worker.is_alive() or self.state is ShipperState.CLOSED:
            return None
        return self._queue_flush_marker(_FlushRequest()).done

    def wake(self) -> None:
        self._wake.set()

    def undelivered_estimate(self) -> int:
        """Events queued or in flight; no lock, for a signal handler's log line."""
        return _events_in(self.pending_events) + self._outcomes.in_flight

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        _exit_hooks.leave_signals_to_the_main_thread()  # the senders started here inherit it
        if self._adopt_at_start:
            self._adopt_orphans()
        next_round = monotonic() + self.flush_interval
        while True:
            woken = self._wake.wait(max(0.0, next_round - monotonic()))
            self._wake.clear()
            flush_asked, self._flush_asked = self._flush_asked, False
            if not self.pending_events and not self._senders.events_in_flight:
                self._room.held = 0  # nothing held: heals a lost update (see _room.py)
            # Woken early by `flush_at` events: ship full batches only, and let the rest fill
            # up until the interval is over; so a steady trickle costs one request an interval.
            everything = not woken or flush_asked or self.state is not ShipperState.RUNNING
            try:
                if self._spool is not None:
                    self._spool.sync()
                self._drain(everything)
            except Exception:  # never let the worker die: log, and go on with the next batch
                logger.exception("bearlumen: unexpected error in the usage shipper")
            if everything:
                next_round = monotonic() + self.flush_interval
            self._outcomes.report_bursts(final=self.state is not ShipperState.RUNNING)
            if self.state is not ShipperState.RUNNING and (
                self._senders.abandoned.is_set() or not self.pending_events
            ):
                break
        self._fail_remaining()  # before waiting for the senders, which a silent server holds
        self._senders.stop()
        if self._spool is not None:
            self._spool.close()
        with self._lifecycle_lock:
            self.state = ShipperState.CLOSED
        # A flush marker queued while the senders stopped (SIGTERM's, after close() began):
        # nothing would complete it, and its waiter would wait its whole shutdown_timeout.
        self._fail_remaining()

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
        self._queue_first(recovered)

    def _queue_first(self, recovered: list[QueuedEvent]) -> None:
        """Events replayed from the spool, ahead of everything queued, and their bytes counted."""
        recovered_bytes = sum(map(queued_bytes, recovered))  # sized first: see _take_chunk
        self.pending_events.extendleft(reversed(recovered))
        self._room.held += recovered_bytes

    def _drain(self, everything: bool) -> None:
        """Hand what is queued now to the senders; what arrives meanwhile waits its round."""
        budget = len(self.pending_events)
        while budget > 0 and not self._senders.abandoned.is_set():
            # Not everything: full batches only. The budget counts too, or events recorded
            # meanwhile would send the budget's remainder as a runt batch.
            if not everything and min(budget, len(self.pending_events)) < self.flush_at:
                break
            flight, flush_request = self._take_chunk(min(MAX_BATCH_SIZE, budget))
            if flight is None and flush_request is None:
                break
            budget -= (0 if flight is None else len(flight.events)) + (flush_request is not None)
            if flight is not None:
                try:
                    self._senders.send(flight)
                except BaseException as exc:  # counted in flight: it must not stay there
                    error = BearLumenError(f"Unexpected error in delivery: {exc}")
                    self._outcomes.give_up(flight.events, error, flight)
                    self._outcomes.landed(flight)
                    raise
            if flush_request is not None:
                self._senders.set_after_batches_so_far(flush_request.done)

    def _take_chunk(self, limit: int) -> tuple[Flight | None, _FlushRequest | None]:
        """Up to `limit` events off the queue, in flight from now (None: none were queued), and
        the flush marker that ended them, if one did."""
        pending = self.pending_events
        popleft = pending.popleft
        # Only this worker takes from the left (close() too, once the worker is stuck: hence
        # the lock), so the first `count` items are there to take; a comprehension, not a loop
        # testing each item: this runs for every event. Under the outcomes' lock, so that
        # stats() sees each event either queued or in flight.
        with self._outcomes.lock:
            count = min(limit, len(pending))
            chunk: list[Any] = [popleft() for _ in range(count)]
            flush_request = None
            if _FlushRequest in map(type, chunk):  # a flush marker: the chunk ends before it
                at = next(n for n, item in enumerate(chunk) if type(item) is _FlushRequest)
                flush_request = chunk[at]
                pending.extendleft(reversed(chunk[at + 1 :]))  # back in front, in their order
                del chunk[at:]
            flight = self._outcomes.fly(chunk) if chunk else None
        # Room in max_queue_size; the chunk's bytes stay held until its batch lands.
        self._room.made()
        return flight, flush_request

    def _fail_remaining(self) -> int:
        """At shutdown: what was never sent is failed (and handed to on_error), not forgotten.
        Taken off the queue and counted failed in one step (stats() never sees them in neither
        place); the worker, or close() when the worker is stuck, whichever comes first."""
        leftover: list[QueuedEvent] = []
        markers: list[_FlushRequest] = []
        outcomes = self._outcomes
        with outcomes.lock:
            while self.pending_events:
                item = self.pending_events.popleft()
                if type(item) is _FlushRequest:
                    markers.append(item)
                else:
                    leftover.append(item)  # type: ignore[arg-type]
            outcomes.counts["failed"] += len(leftover)
            self._room.held = 0
        if leftover:
            outcomes.failed_at_close(leftover)
        for marker in markers:
            marker.done.set()
        return len(leftover)


def _events_in(pending: Deque[Union[QueuedEvent, _FlushRequest]]) -> int:
    """The events in the queue, flush markers left out; no lock."""
    return sum(1 for item in list(pending) if type(item) is not _FlushRequest)


def _after_fork(shipper_ref: weakref.ref[Shipper]) -> Callable[[], None]:
    def reset() -> None:
        shipper = shipper_ref()
        if shipper is None:
            return
        if shipper._spool is not None:
            # The parent's segments are the parent's: the child writes its own, beside them,
            # and adopts those of dead processes once its worker starts. Before _reset: the
            # child's senders acknowledge to the child's spool.
            shipper._spool = shipper._spool.for_forked_child()
        shipper._reset()
        shipper._http.reset_after_fork()
        shipper._sigterm_after_fork = shipper.handle_sigterm
        shipper._adopt_at_start = shipper._spool is not None

    return reset
