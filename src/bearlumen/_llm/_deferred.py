"""Captures off the caller's thread: an instrumented call only queues what it returned.

Reading a response's usage, pricing it and recording the event cost 10-30 µs, more than the
wrapper is allowed on the caller's thread (p50 <= 5 µs beyond the provider SDK's own work;
benchmarks/llm_overhead.py). So the wrapper appends `(read, result, attribution, platform,
distinct)` to a deque (a fraction of a microsecond) and one daemon thread per `client.llm` does
the rest. The first call pays no import either: `instrument()` starts the thread, which loads
genai-prices' price data.

Nothing is lost on the way:
- `client.flush()` / `close()` (and the async ones) first run what is queued, on their own
  thread (`drain()`), so an event recorded before a flush is delivered by it;
- an exit hook runs what is left when the process ends; it is registered after the shipper's,
  so it runs before the shipper closes (atexit is last in, first out);
- when no thread can be started (interpreter shutdown), the capture runs on the caller's thread;
- a forked child starts with an empty queue and no thread: the parent records its own calls.

`drain()` and the thread hold one lock while they run captures, so a flush returns only once
every capture queued before it has been recorded. The thread is woken only when it may be idle:
the producer appends, then reads `idle`; the drainer sets `idle`, then looks at the queue; so one
of the two always sees the other's write (the GIL orders them). After draining, the thread
lingers awake a little (`LINGER`) with `idle` False, so a busy app's calls need not wake it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import threading
import weakref
from typing import Any, Callable, Deque, Optional, Tuple

from .._exit_hooks import leave_signals_to_the_main_thread

Capture = Tuple[Any, ...]  # the arguments of the function that records one call

# After its last capture the thread stays awake for LINGER seconds, looking at the queue every
# LINGER_POLL: calls that keep coming (an app serving many users) find it awake and append
# without waking it. Waking a sleeping thread (`Event.set`) costs the caller 15-40 µs, several
# times the rest of the wrapper; a process whose calls are further apart lets it sleep, and pays
# that on calls that take 100 ms and more.
LINGER = 0.05
LINGER_POLL = 0.002


class Deferred:
    """A queue of captures and the daemon thread that runs them with `run(*capture)`."""

    def __init__(self, run: Callable[..., None], name: str = "bearlumen-llm") -> None:
        self._run = run
        self._name = name
        self._pending: Deque[Capture] = collections.deque()
        self._reset()
        owner = weakref.ref(self)
        atexit.register(_drain_at_exit, owner)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _after_fork(owner))

    def _reset(self) -> None:
        self._lock = threading.Lock()  # held while captures run: drain() waits for the thread
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.idle = True

    def put(self, *capture: Any) -> None:
        """Queue one capture: the caller's whole cost."""
        self._pending.append(capture)
        if self.idle:
            self.idle = False
            self._signal()

    def start(self, first: Optional[Callable[[], Any]] = None) -> None:
        """Start the thread now (at `instrument()`), running `first` on it before anything."""
        if self._thread is None:
            self._start(first)

    def _signal(self) -> None:
        if self._thread is None and not self._start(None):
            self.drain()  # no thread can start (interpreter shutdown): run it here
            return
        self._wake.set()

    def _start(self, first: Optional[Callable[[], Any]]) -> bool:
        with self._start_lock:
            if self._thread is not None:
                return True
            thread = threading.Thread(
                target=_work,
                args=(weakref.ref(self), self._wake, first),
                name=self._name,
                daemon=True,
            )
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                return False
            self._thread = thread
            return True

    def drain(self) -> None:
        """Run every queued capture, on this thread; returns once those queued before this
        call (and any the thread was running) are done."""
        pending, run = self._pending, self._run
        with self._lock:
            while True:
                try:
                    capture = pending.popleft()
                except IndexError:
                    self.idle = True
                    if not pending:
                        return
                    self.idle = False
                    continue
                run(*capture)


def _work(
    owner: weakref.ReferenceType[Deferred],
    wake: threading.Event,
    first: Optional[Callable[[], Any]],
) -> None:
    """The thread: holds its Deferred only while draining, so a dropped client is collected."""
    leave_signals_to_the_main_thread()
    if first is not None:
        with contextlib.suppress(Exception):  # an optimisation: a capture says what failed
            first()
    while True:
        wake.wait()
        wake.clear()
        while True:
            deferred = owner()
            if deferred is None:
                return
            deferred.drain()
            deferred.idle = False  # lingering: producers append without waking the thread
            pending = deferred._pending
            del deferred
            for _ in range(int(LINGER / LINGER_POLL)):
                if pending:
                    break
                if wake.wait(LINGER_POLL):
                    wake.clear()
            if pending:
                continue
            deferred = owner()
            if deferred is None:
                return
            deferred.idle = True  # then look at the queue, as drain() does
            del deferred
            if not pending:
                break


def _drain_at_exit(owner: weakref.ReferenceType[Deferred]) -> None:
    deferred = owner()
    if deferred is not None:
        deferred.drain()


def _after_fork(owner: weakref.ReferenceType[Deferred]) -> None:
    deferred = owner()
    if deferred is not None:
        deferred._pending.clear()  # the parent records its own calls
        deferred._reset()
