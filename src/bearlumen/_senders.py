"""The senders: the shipper's batches in flight, each on a thread of its own, and the flush
markers that wait for them.

The worker hands each batch it takes to `Senders.send`; up to `max_in_flight` are out at once,
each delivered by a sender thread (started when every one is busy, kept until the worker ends).
Every HTTP attempt first takes its turn at the throttle (`_throttle.py`: AIMD concurrency, and a
429's Retry-After pausing every sender). A batch refused whole is halved until the culprit is
alone; each answer is counted (`_outcomes.py`) and acknowledged to the spool as it comes, in
whatever order the batches come back.

Batches are numbered in the order the worker took them: a flush marker is done once every batch
numbered before it has come back, so a later batch's answer cannot complete an earlier flush.
`abandon()` (close() gave up waiting) ends every wait and every retry at once.

A watch thread (one per shipper, from the first sender on) ticks every second while senders
exist: it reports drops and rejections as they happen, whatever the senders and the worker are
waiting for, and logs an outage once an attempt has gone `SLOW_ANSWER_WARNING` seconds without
an answer, instead of only once it times out (`timeout`, 30 s by default). It counts its own
ticks rather than reading a clock, so a user's frozen clock cannot silence it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import Any, Callable, Deque

from . import _exit_hooks, _ids
from ._batch_codec import batch_answer_reader, encode_batch, read_results
from ._clock import monotonic
from ._errors import BearLumenError, InvalidRequestError
from ._events import QueuedEvent, events_bytes
from ._http import HttpCore
from ._outcomes import DROP_REPORT_INTERVAL, WATCH_INTERVAL, Flight, Outcomes
from ._room import Room
from ._spool import Spool
from ._throttle import SendThrottle

logger = logging.getLogger("bearlumen")

# An attempt unanswered this long (seconds) is an outage, and logged as one, before its timeout.
SLOW_ANSWER_WARNING = 5.0


class Senders:
    """The batches in flight of one shipper: their threads, their turns, their order."""

    def __init__(
        self,
        http: HttpCore,
        outcomes: Outcomes,
        *,
        max_in_flight: int,
        delivery_timeout: float,
        sleep: Callable[[float], Any] | None,
        spool: Spool | None,
        queued: Callable[[], int],
        room: Room,
    ) -> None:
        self._http = http
        self._outcomes = outcomes
        self.max_in_flight = max_in_flight
        self.delivery_timeout = delivery_timeout
        # Waits between retries end early when close() gives up; tests inject their own sleep.
        self._sleep = sleep
        self._spool = spool
        self._queued = queued  # events still in the shipper's queue, for the outage's log line
        # A batch in flight holds its events and its request body in the shipper's room (against
        # max_queue_bytes) until it lands.
        self._room = room
        self._held_by_batch: dict[int, int] = {}  # a batch's number: the bytes it holds
        self.abandoned = threading.Event()  # close() gave up waiting: stop retrying now
        self._throttle = SendThrottle(max_in_flight, sleep=sleep)
        self._batches: queue.SimpleQueue[tuple[int, Flight] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self._thread_idents: set[int | None] = set()
        # The worker numbers each batch it hands to a sender thread; a flush marker is done
        # once every batch numbered before it has come back.
        self._progress = threading.Condition()  # guards the three below
        self._next_batch = 0
        self._outstanding: set[int] = set()  # numbers of the batches in flight
        self._waiting_markers: Deque[tuple[threading.Event, int]] = deque()
        # The watch: its ticks, and the tick at which each sender's current attempt began.
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._ticks = 0
        self._attempts: dict[int, int] = {}

    @property
    def events_in_flight(self) -> int:
        """Events taken off the queue and not settled yet, waiting for a sender included."""
        return self._outcomes.in_flight

    # -- the worker's side -------------------------------------------------------------------

    def send(self, flight: Flight) -> None:
        """Give the batch (counted in flight since it left the queue) to a sender thread once
        fewer than `max_in_flight` are out and its request body fits in max_queue_bytes (or
        none is out: delivery always goes on)."""
        # Its events are counted already (since record()); its body, about as large, from now.
        body_bytes = events_bytes(flight.events)
        with self._progress:
            self._progress.notify_all()
            while (
                len(self._outstanding) >= self.max_in_flight
                or (self._outstanding and self._room.held + body_bytes > self._room.max_bytes)
            ) and not self.abandoned.is_set():
                self._progress.wait(1.0)  # woken when a batch comes back; the bound is a guard
            if not self.abandoned.is_set():
                number = self._next_batch
                self._next_batch += 1
                self._outstanding.add(number)
                self._held_by_batch[number] = 2 * body_bytes
                self._room.hold(body_bytes)
                start_sender = len(self.threads) < len(self._outstanding)
                self._batches.put((number, flight))
                self._progress.notify_all()
                flight = None  # type: ignore[assignment]
        if flight is not None:  # close() gave up before a sender was free: it never goes out
            self._room.release(body_bytes)
            self._outcomes.give_up(
                flight.events, BearLumenError("The client was closed before delivery"), flight
            )
            self._outcomes.landed(flight)
            return
        if start_sender:
            sender = threading.Thread(
                target=self._send_batches, name="bearlumen-sender", daemon=True
            )
            self.threads.append(sender)
            sender.start()
            if self._watch is None:
                self._watch = threading.Thread(
                    target=self._keep_watch, name="bearlumen-watch", daemon=True
                )
                self._watch.start()

    def set_after_batches_so_far(self, done: threading.Event) -> None:
        """A flush marker: set `done` once every batch handed out so far has come back."""
        with self._progress:
            self._waiting_markers.append((done, self._next_batch))
            self._complete_markers()

    def stop(self) -> None:
        """The worker is ending: let the batches in flight come back, then end the senders."""
        self._watch_stop.set()
        for _ in self.threads:
            self._batches.put(None)
        for sender in self.threads:
            sender.join()

    # -- anyone's side -----------------------------------------------------------------------

    def abandon(self) -> int:
        """close() gave up waiting: stop retrying, end every wait for a turn or a sender, and
        count what is still in flight failed (an answer that comes later is not counted)."""
        self.abandoned.set()
        given_up = self._outcomes.abandon_flights()
        self._throttle.wake_all()
        with self._progress:
            self._progress.notify_all()
        return given_up

    def on_a_sender_thread(self) -> bool:
        return threading.get_ident() in self._thread_idents

    # -- the sender threads ------------------------------------------------------------------

    def _send_batches(self) -> None:
        """A sender thread: deliver batches, one at a time, until told to stop."""
        _exit_hooks.leave_signals_to_the_main_thread()  # inherited from the worker; said here too
        self._thread_idents.add(threading.get_ident())
        while True:
            item = self._batches.get()
            if item is None:
                return
            number, flight = item
            try:
                self._deliver(flight, flight.events)
            except Exception as exc:  # never let a sender die, never lose a batch silently
                if not flight.given_up:  # after close() gave up, e.g. its client was closed
                    logger.exception("bearlumen: unexpected error delivering a batch")
                self._outcomes.give_up(
                    flight.events, BearLumenError(f"Unexpected error in delivery: {exc}"), flight
                )
            finally:
                # Landed: its events and its body are gone (told before it leaves the in-flight
                # count, where the worker may see nothing held: see Shipper._run).
                self._room.release(self._held_by_batch.pop(number))
                self._outcomes.landed(flight)
                with self._progress:
                    self._outstanding.discard(number)
                    self._complete_markers()
                    self._progress.notify_all()

    def _complete_markers(self) -> None:
        """Flush markers whose every earlier batch came back are done (under `_progress`)."""
        oldest_out = min(self._outstanding, default=self._next_batch)
        while self._waiting_markers and self._waiting_markers[0][1] <= oldest_out:
            self._waiting_markers.popleft()[0].set()

    def _deliver(self, flight: Flight, chunk: list[QueuedEvent]) -> None:
        if flight.given_up:  # close() gave up on the batch (halving it, say): nothing to send
            return
        body, events, unencodable = encode_batch(chunk)
        for event, reason in unencodable:
            self._outcomes.reject([event], InvalidRequestError(reason, param="metadata"), flight)
        if not events:
            return
        try:
            answer = self._post_batch(body, len(events))
        except InvalidRequestError as exc:
            if exc.status_code is None:  # the request could not even be built
                self._outcomes.reject(events, exc, flight)
            elif len(events) > 1:
                # Too large (413), or one event the server could not parse so the whole batch
                # was refused (400): halve until the culprit is alone; the rest go through.
                middle = len(events) // 2
                self._deliver(flight, events[:middle])
                self._deliver(flight, events[middle:])
            else:
                self._outcomes.reject(events, exc, flight)
            return
        except BearLumenError as exc:
            self._outcomes.give_up(events, exc, flight)
            return
        self._tally(events, answer, flight)

    def _post_batch(self, body: bytes, count: int) -> Any:
        """One batch request with its retries, each attempt taking its turn at the throttle.
        `delivery_timeout` is a deadline: no retry starts past it, and an attempt's timeout is
        at most what is left of it (or an attempt begun just before would overshoot it by a
        whole `timeout`)."""
        ends_at = monotonic() + self.delivery_timeout
        per_attempt = self._http.timeout

        def attempt_timeout() -> float | None:
            left = ends_at - monotonic()
            return None if left >= per_attempt else max(0.001, left)  # None: the client's own

        retrying = self._http.retrying(
            deadline=self.delivery_timeout,
            should_stop=self.abandoned.is_set,
            sleep=self._wait_to_retry,
            on_retry=self._count_retry,
        )
        self._throttle.wait_turn(self.abandoned.is_set)
        self._attempt_begins()
        delivered = False
        try:
            answer = self._http.request(
                "POST",
                "/v1/usage/events/batch",
                content=body,
                retrying=retrying,
                idempotency_key=_ids.request_keys.next(),
                decode=batch_answer_reader(count),
                attempt_timeout=attempt_timeout,
            )
            delivered = True
            return answer
        finally:
            self._attempts.pop(threading.get_ident(), None)
            self._throttle.attempt_done(delivered)

    def _tally(self, events: list[QueuedEvent], answer: Any, flight: Flight | None = None) -> None:
        """Count what a 200 answer says of each event; an event it does not confirm is failed
        (never counted as delivered, never deleted from the spool)."""
        results = read_results(answer, len(events))
        if len(results.recorded) == len(events):
            confirmed = events  # the usual answer: every event recorded
        else:
            confirmed = [events[n] for n in (*results.recorded, *results.duplicate)]
        if not self._outcomes.count_delivered(
            flight, confirmed, len(results.recorded), len(results.duplicate)
        ):
            return  # close() gave up on these events already, and counted them failed
        if self._spool is not None:
            answered = confirmed
            if results.rejected:  # rejected ones too: a retry cannot help them
                answered = [*confirmed, *(events[n] for n, _ in results.rejected)]
            self._spool.acknowledge(answered)
        if results.unconfirmed:
            unconfirmed = [events[n] for n in results.unconfirmed]
            self._outcomes.fail_unconfirmed(unconfirmed, results.problem or "unknown", flight)
        else:
            self._outcomes.delivery_recovered()
        for index, error in results.rejected:
            message = error.get("message")
            if not isinstance(message, str) or not message:
                message = "The server rejected the event"
            param = error.get("param")
            self._outcomes.reject(
                [events[index]],
                InvalidRequestError(
                    message,
                    param=param if isinstance(param, str) else None,
                    body=error,
                ),
                flight,
            )

    def _attempt_begins(self) -> None:
        self._attempts[threading.get_ident()] = self._ticks

    def _keep_watch(self) -> None:
        """The watch thread: every second, report bursts and look for an unanswered attempt."""
        _exit_hooks.leave_signals_to_the_main_thread()
        while not self._watch_stop.wait(WATCH_INTERVAL):
            self._ticks += 1
            self._outcomes.report_bursts()
            began = min(list(self._attempts.values()), default=None)
            if began is None or (self._ticks - began) * WATCH_INTERVAL < SLOW_ANSWER_WARNING:
                continue
            if self._outcomes.begin_outage():
                logger.warning(
                    "bearlumen: usage delivery: no answer from the server after %.0fs; %d"
                    " event(s) waiting; still waiting (timeout=%ss an attempt, retrying until"
                    " delivery_timeout=%ss)",
                    (self._ticks - began) * WATCH_INTERVAL,
                    self.events_in_flight + self._queued(),
                    self._http.timeout,
                    self.delivery_timeout,
                )

    def _count_retry(self, exc: BaseException | None, delay: float) -> None:
        self._attempts.pop(threading.get_ident(), None)
        self._throttle.attempt_failed(getattr(exc, "retry_after", None))
        if self._outcomes.count_retry():
            # The first failed attempt of an outage, logged once; the retries go to DEBUG.
            logger.warning(
                "bearlumen: usage delivery failing (%s); %d event(s) waiting; retrying in %.1fs"
                " and until delivery_timeout=%ss",
                describe_failure(exc),
                self.events_in_flight + self._queued(),
                delay,
                self.delivery_timeout,
            )

    def _wait_to_retry(self, delay: float) -> None:
        """Between attempts: report drops as they happen, not once the outage is over."""
        if self._sleep is not None:  # a test's injected sleep
            self._outcomes.report_bursts()
            self._sleep(delay)
            slept_until = monotonic() + delay
        else:
            slept_until = 0.0
            deadline = monotonic() + delay
            while True:
                self._outcomes.report_bursts()
                left = deadline - monotonic()
                if left <= 0 or self.abandoned.wait(min(left, DROP_REPORT_INTERVAL)):
                    break
        # Another sender's 429 may have paused everyone, or the server may want fewer at once.
        self._throttle.wait_turn(self.abandoned.is_set, slept_until=slept_until)
        self._attempt_begins()


def describe_failure(exc: BaseException | None) -> str:
    """A failed attempt in a few words: the status and message, or the network error."""
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status_code", None)
    return f"{status} {exc}" if status is not None else f"{type(exc).__name__}: {exc}"
