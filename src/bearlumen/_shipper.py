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
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Union

from pydantic_core import PydanticSerializationError, to_json

from . import _ids
from ._constants import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_FLUSH_AT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_BATCH_SIZE,
)
from ._errors import BearLumenError, InvalidRequestError
from ._events import QueuedEvent, encode_event, to_record_input, wire_event
from ._http import HttpCore
from ._spool import Spool
from ._types import FlushResult, ShipperStats, UsageRecordInput

logger = logging.getLogger("bearlumen")

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


def encode_batch(
    chunk: List[QueuedEvent],
) -> tuple[bytes, list[QueuedEvent], list[tuple[QueuedEvent, str]]]:
    """JSON of a batch, the events in it, and the events that cannot be JSON (with why).

    The whole chunk is encoded in one call; only when that fails, or writes a NaN or an
    Infinity, is it encoded again one event at a time to set the bad ones apart.
    """
    try:
        body = to_json({"events": [wire_event(event) for event in chunk]})
    except PydanticSerializationError:
        pass  # an object with no JSON form, or a lone surrogate: find it below
    else:
        if b"NaN" not in body and b"Infinity" not in body:
            return body, chunk, []
    parts: list[bytes] = []
    good: list[QueuedEvent] = []
    bad: list[tuple[QueuedEvent, str]] = []
    for event in chunk:
        try:
            parts.append(encode_event(event))
        except (ValueError, RecursionError) as exc:
            bad.append((event, f"the event cannot be sent as JSON: {exc}"))
            continue
        good.append(event)
    return b'{"events":[' + b",".join(parts) + b"]}", good, bad


COUNTERS = ("sent", "recorded", "duplicate", "rejected", "dropped", "failed", "retries", "batches")


@dataclass(frozen=True)
class ShipperSettings:
    """How the shipper batches, bounds and retries; checked once, at construction."""

    flush_at: int = DEFAULT_FLUSH_AT
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    on_overflow: str = "drop"
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT

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
    ) -> None:
        self._http = http
        # Waits between retries end early when close() gives up; tests inject their own sleep.
        self._sleep = sleep
        # Copied to attributes: the hot path reads them on every record().
        self.flush_at = settings.flush_at
        self.flush_interval = settings.flush_interval
        self.max_queue_size = settings.max_queue_size
        self.block_on_overflow = settings.on_overflow == "block"
        self.delivery_timeout = settings.delivery_timeout
        self.shutdown_timeout = settings.shutdown_timeout
        self.on_error = on_error
        self._reset()
        self._spool: Spool | None = None
        if spool_dir is not None:
            self._spool = Spool(os.fspath(spool_dir))
            recovered = self._spool.recover()
            if recovered:
                self.pending_events.extend(recovered)
                self._start_worker()
        self_ref = weakref.ref(self)
        atexit.register(_close_at_exit, self_ref)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork(self_ref))

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (which owns nothing it inherited)."""
        self.pending_events: Deque[Union[QueuedEvent, _FlushRequest]] = deque()
        self.recent_keys: dict[str, Any] = {}
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
        self._rejected_unreported = 0  # worker only
        self._first_rejection: str | None = None
        self._failing = False
        self.counts = dict.fromkeys(COUNTERS, 0)

    # -- producers (callers' threads) ------------------------------------------------------

    def enqueue(self, event: QueuedEvent) -> bool:
        """Queue one event; False when it was dropped (queue full, or client closed)."""
        pending = self.pending_events
        if len(pending) >= self.max_queue_size and not self._wait_for_space():
            self._forget_key(event)
            return False
        if not self._accepting and not self._start_worker():
            self._count_drop()
            self._forget_key(event)
            return False
        if self._spool is not None:
            event = self._spool_append(event)
        pending.append(event)
        if len(pending) >= self.flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    def _spool_append(self, event: QueuedEvent) -> QueuedEvent:
        try:
            return self._spool.append(event)  # type: ignore[union-attr]
        except InvalidRequestError:
            self._forget_key(event)
            raise

    def _forget_key(self, event: QueuedEvent) -> None:
        """The event was not queued after all: a retry with its key must not be a "duplicate"."""
        if self.recent_keys.get(event[3]) is event:
            self.recent_keys.pop(event[3], None)

    def _wait_for_space(self) -> bool:
        if not self.block_on_overflow:
            self._count_drop()
            return False
        with self._space:
            self._blocked_producers += 1
            try:
                while len(self.pending_events) >= self.max_queue_size:
                    if self.state in (ShipperState.CLOSING, ShipperState.CLOSED):
                        self._count_drop()
                        return False
                    self._wake.set()
                    self._space.wait(0.5)
            finally:
                self._blocked_producers -= 1
        return True

    def _count_drop(self) -> None:
        with self._counts_lock:
            self.counts["dropped"] += 1
            self._dropped_unreported += 1

    def _start_worker(self) -> bool:
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
        with self._counts_lock:
            return {"queued": queued, **self.counts}  # type: ignore[typeddict-item]

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Block until everything recorded before this call is delivered or failed for good."""
        complete = True
        worker = self._worker
        if worker is threading.current_thread():
            # Called from on_error, on the worker itself: waiting for it would wait for ever.
            complete = not self.pending_events
        elif worker is not None and worker.is_alive():
            request = _FlushRequest()
            self.pending_events.append(request)
            self._wake.set()
            complete = request.done.wait(timeout)
        return {**self.stats(), "complete": complete}

    def request_flush(self, on_done: Callable[[], object]) -> bool:
        """Queue a flush marker whose completion calls `on_done` on the worker, without waiting;
        False when no worker runs (then nothing recorded is pending)."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            return False
        self.pending_events.append(_FlushRequest(on_done))
        self._wake.set()
        return True

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
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=1.0)
        with self._space:
            self._space.notify_all()
        if worker is None or not worker.is_alive():
            self._report_bursts()  # what was dropped or rejected since the worker's last wake
        result = {**self.stats(), "complete": result["complete"]}
        if not result["complete"]:
            logger.error(
                "bearlumen: closed with %d usage events undelivered (server unreachable or slow);"
                " %d failed in all",
                result["queued"],
                result["failed"],
            )
        return result

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                if self._spool is not None:
                    self._spool.sync()
                self._drain()
            except Exception:  # never let the worker die: log, and go on with the next batch
                logger.exception("bearlumen: unexpected error in the usage shipper")
            self._report_bursts()
            if self.state is not ShipperState.RUNNING and (
                self._abandon.is_set() or not self.pending_events
            ):
                break
        self._fail_remaining()
        if self._spool is not None:
            self._spool.close()
        with self._lifecycle_lock:
            self.state = ShipperState.CLOSED

    def _drain(self) -> None:
        while self.pending_events and not self._abandon.is_set():
            chunk, flush_request = self._take_chunk()
            if chunk:
                self._deliver(chunk)
            if flush_request is not None:
                flush_request.done.set()

    def _take_chunk(self) -> tuple[list[QueuedEvent], _FlushRequest | None]:
        chunk: list[QueuedEvent] = []
        popleft = self.pending_events.popleft
        flush_request = None
        while len(chunk) < MAX_BATCH_SIZE:
            try:
                item = popleft()
            except IndexError:
                break
            if type(item) is _FlushRequest:
                flush_request = item
                break
            chunk.append(item)  # type: ignore[arg-type]
        if self._blocked_producers:
            with self._space:
                self._space.notify_all()
        return chunk, flush_request

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
        retrying = self._http.retrying(
            deadline=self.delivery_timeout,
            should_stop=self._abandon.is_set,
            sleep=self._sleep or self._abandon.wait,
            on_retry=self._count_retry,
        )
        try:
            answer = self._http.request(
                "POST",
                "/v1/usage/events/batch",
                content=body,
                retrying=retrying,
                idempotency_key=_ids.request_keys.next(),
            )
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

    def _tally(self, events: list[QueuedEvent], answer: Any) -> None:
        recorded = duplicate = 0
        rejected: list[tuple[QueuedEvent, dict[str, Any]]] = []
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
            self._spool.acknowledge(events)  # rejected ones too: a retry cannot help them
        if self._failing:
            self._failing = False
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
        with self._counts_lock:
            self.counts["retries"] += 1

    def _reject(self, events: list[QueuedEvent], exc: BearLumenError) -> None:
        with self._counts_lock:
            self.counts["rejected"] += len(events)
        self._rejected_unreported += len(events)
        if self._first_rejection is None:
            self._first_rejection = exc.message
        self._call_on_error(events, exc)

    def _give_up(self, events: list[QueuedEvent], exc: BearLumenError) -> None:
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
        if self._rejected_unreported:
            logger.warning(
                "bearlumen: the server or the encoder rejected %d usage event(s), e.g.: %s",
                self._rejected_unreported,
                self._first_rejection,
            )
            self._rejected_unreported, self._first_rejection = 0, None
        if not self._dropped_unreported:
            return
        with self._counts_lock:
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            total = self.counts["dropped"]
        logger.warning(
            "bearlumen: dropped %d usage event(s) (%d in all): the queue is full"
            " (max_queue_size=%d) or the client is closed",
            dropped,
            total,
            self.max_queue_size,
        )


def _close_at_exit(shipper_ref: weakref.ref[Shipper]) -> None:
    shipper = shipper_ref()
    if shipper is not None and shipper.state is ShipperState.RUNNING:
        shipper.close()


def _after_fork(shipper_ref: weakref.ref[Shipper]) -> Callable[[], None]:
    def reset() -> None:
        shipper = shipper_ref()
        if shipper is not None:
            shipper._reset()
            shipper._http.reset_after_fork()
            if shipper._spool is not None:
                # The spool (and its lock) belong to the parent; the child runs without one.
                shipper._spool = None
                logger.warning("bearlumen: a forked child does not share its parent's spool_dir")

    return reset
