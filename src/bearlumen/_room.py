"""Room in the shipper's queue: the bounds `max_queue_size` and `max_queue_bytes`, and the
producers that wait for room under `on_overflow="block"`.

What the client holds for delivery counts against max_queue_bytes (`Room.held`): the events
queued (`_events.queued_bytes`) and, for each batch in flight, its events and its request body;
an event's bytes leave only when its batch lands. The shipper's `enqueue` adds an event's bytes
and the senders add and release a batch's, without a lock: `+=` / `-=` on an attribute, with no
call between the read and the write, is not interrupted by a thread switch in CPython >= 3.10;
on 3.9 a rare lost update is healed whenever the worker wakes to nothing queued or in flight
(it sets `held` to 0).

A full queue drops the event (counted by the shipper), or under on_overflow="block" waits for
room (`wait`): until there is room, or for at most the bound of this call's path, then drops.
On an event loop's thread every task would wait with the caller, and on the path of a metered
LLM call (`client.llm`, which sets `block_limit`) the app waits for its call: both waits are
bounded. Once a bounded wait ended in a drop, the next bounded ones drop at once until room is
made (the worker takes from the queue, or a batch lands): one wait per burst, not one per event
(20 records in a handler stalled its loop 2 s each time). Whatever waits ends once the shipper
closes (`stop`).
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from typing import Any, Callable, Optional, Sized, TypeVar

from ._clock import monotonic
from ._scoped import scoped

RecordResult = TypeVar("RecordResult")

# on_overflow="block" on a thread running an asyncio loop waits at most this long, then drops:
# every task on the loop would wait with it, and the worker may be waiting for a dead server.
LOOP_BLOCK_LIMIT = 0.1  # seconds
# ... and on the path of a metered LLM call (`client.llm`), which the app is waiting for.
LLM_BLOCK_LIMIT = 1.0  # seconds
# How long on_overflow="block" may wait on this call's path; None: until there is room.
# `client.llm` sets LLM_BLOCK_LIMIT around its recording (read only once the queue is full).
block_limit: ContextVar[Optional[float]] = ContextVar("bearlumen_block_limit", default=None)
# A producer waiting for room looks again at least this often (seconds): the worker it wakes
# may have been asleep, and a notification may come between its look and its wait.
_LOOK_AGAIN = 0.5


def with_block_limit(
    limit: float, record: Callable[..., RecordResult]
) -> Callable[..., RecordResult]:
    """`record` (`usage.record`) whose on_overflow="block" waits at most `limit` seconds, then
    drops (counted, logged), and drops at once while the queue stays full."""
    return scoped(block_limit, limit, record)


class Room:
    """The byte budget of one shipper's queue, and the producers waiting for room in it."""

    __slots__ = (
        "_bounded_drop_at",
        "_made",
        "_pending",
        "_space",
        "_stopped",
        "_waiting",
        "_wake_worker",
        "block",
        "held",
        "max_bytes",
        "max_events",
    )

    def __init__(
        self,
        pending: Sized,
        *,
        max_events: int,
        max_bytes: int,
        block: bool,
        wake_worker: Callable[[], Any],
    ) -> None:
        self._pending = pending  # the shipper's queue: its length counts against max_events
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.block = block  # on_overflow="block": wait for room instead of dropping
        self._wake_worker = wake_worker
        self.held = 0  # bytes queued and in flight (see the module docstring)
        self._space = threading.Condition()
        self._waiting = 0  # producers in `wait`: only then is room made known to anyone
        # A bounded wait that ended in a drop was at this count of the times room was made
        # (events taken, batches landed); until the count moves, bounded waits drop at once.
        self._made = 0
        self._bounded_drop_at = -1
        self._stopped = False

    def is_full(self, size: int) -> bool:
        """No room for an event of `size` bytes (an empty queue takes any one event)."""
        return len(self._pending) >= self.max_events or (
            self.held + size > self.max_bytes and self.held > 0
        )

    def wait(self, size: int) -> bool:
        """The queue is full: wait for room for an event of `size` bytes under on_overflow=
        "block" (at most the bound of this call's path); False: drop the event."""
        if not self.block:
            return False
        limit = LOOP_BLOCK_LIMIT if _on_event_loop() else block_limit.get()
        if limit is not None and self._bounded_drop_at == self._made:
            return False
        deadline = None if limit is None else monotonic() + limit
        with self._space:
            self._waiting += 1
            try:
                while self.is_full(size):
                    left = _LOOK_AGAIN if deadline is None else deadline - monotonic()
                    if left <= 0 or self._stopped:
                        if limit is not None:
                            self._bounded_drop_at = self._made
                        return False
                    self._wake_worker()
                    self._space.wait(min(left, _LOOK_AGAIN))
            finally:
                self._waiting -= 1
        return True

    def hold(self, size: int) -> None:
        """A batch's request body goes out: held until its batch lands (`release`)."""
        self.held += size

    def release(self, size: int) -> None:
        """A batch landed: what its events and its body held is free."""
        self.held -= size
        if self.held < 0:  # the worker's heal (see the module docstring) came before this
            self.held = 0
        self.made()

    def made(self) -> None:
        """Room was made (events left the queue, or a batch landed): wake who waits for it."""
        self._made += 1  # bounded waits may wait again
        if self._waiting:
            with self._space:
                self._space.notify_all()

    def stop(self) -> None:
        """The shipper is closing: whoever waits for room drops its event, and so will anyone
        who finds the queue full from now on."""
        with self._space:
            self._stopped = True
            self._space.notify_all()


def _on_event_loop() -> bool:
    """Is this thread running an asyncio event loop?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
