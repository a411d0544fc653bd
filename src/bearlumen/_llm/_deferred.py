"""Captures off the caller's thread: an instrumented call only queues what it returned.

Reading a response's usage, pricing it and recording the event cost 10-30 µs, more than the
wrapper is allowed on the caller's thread (p50 <= 5 µs beyond the provider SDK's own work;
benchmarks/llm_overhead.py). So the wrapper appends `(read, result, attribution, platform,
distinct)` to a deque (a fraction of a microsecond) and one daemon thread per `client.llm` does
the rest. The first call pays no import either: `instrument()` starts the thread, which loads
genai-prices' price data.

The caller does not wake the thread: waking a sleeping thread (`Event.set`) cost a call
20-60 µs on the machines we measured, ten times the rest of the wrapper. The thread looks at the
queue every `POLL` seconds instead, so a capture waits at most that long before it is recorded
(the shipper then sends it with its next batch, `flush_interval` 0.5 s by default). Only a
burst wakes it early: the call that finds `WAKE_AT` captures waiting, which bounds what the
queue holds between two looks.

Nothing is lost on the way:
- `client.flush()` / `close()` (and the async ones) first run what is queued, on their own
  thread (`drain()`), so an event recorded before a flush is delivered by it;
- every way out runs what is left before the shipper's last flush: the shipper asks for it
  (`Shipper.record_first_at_exit`) at exit, in a multiprocessing worker's finalizers and on
  SIGTERM (from its helper thread: a signal handler takes no lock); an exit hook of its own
  does it too, for a client without a shipper (`buffered=False`). From then on a capture (a
  stream's finalizer during interpreter shutdown) runs on the caller's thread, as it does when
  no thread can be started;
- a forked child starts with an empty queue and no thread: the parent records its own calls.

`drain()` and the thread hold one lock while they run captures, so a flush returns only once
every capture queued before it has been recorded.
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

# How often the thread looks at the queue. An idle process pays ten short wake-ups a second
# (the shipper's worker pays two); a capture waits at most this long before it is recorded.
POLL = 0.1
# A call that finds this many captures waiting wakes the thread: the queue's bound between two
# looks in a burst (each capture holds its response). Calls that come slower never wake it.
WAKE_AT = 64


class Deferred:
    """A queue of captures and the daemon thread that runs them with `run(*capture)`."""

    def __init__(self, run: Callable[..., None], name: str = "bearlumen-llm") -> None:
        self._run = run
        self._name = name
        # Run on the caller's thread by the put() that starts (or wakes) the thread: the first
        # call of a process or of a forked child (the shipper reinstalls its SIGTERM handler).
        self.on_signal: Callable[[], None] = _nothing
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
        self._run_here = False  # no thread to run captures: the caller runs its own
        self._wake_at = 1  # the queue's length at which put() signals: no thread yet

    def put(self, *capture: Any) -> None:
        """Queue one capture: the caller's whole cost."""
        pending = self._pending
        pending.append(capture)
        if len(pending) >= self._wake_at:
            self._signal()

    def start(self, first: Optional[Callable[[], Any]] = None) -> None:
        """Start the thread now (at `instrument()`), running `first` on it before anything."""
        if self._thread is None:
            self._start(first)

    def _signal(self) -> None:
        self.on_signal()
        if not self._run_here and (self._thread is not None or self._start(None)):
            if not self._wake.is_set():  # the calls after the WAKE_AT-th, until the thread runs
                self._wake.set()
            return
        self._run_here = True  # no thread can start (interpreter shutdown): run it here
        self.drain()

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
            self._wake_at = WAKE_AT
            return True

    def drain(self) -> None:
        """Run every queued capture, on this thread; returns once those queued before this
        call (and any the thread was running) are done."""
        with self._lock:
            self.run_queued()

    def run_queued(self) -> None:
        """Run every queued capture, on this thread (`drain()` holds the lock around it)."""
        pending, run = self._pending, self._run
        while pending:
            run(*pending.popleft())

    def run_on_callers_thread(self) -> None:
        """From now on each capture runs inside the call that made it (interpreter shutdown:
        the thread may never run again)."""
        self._run_here = True
        self._wake_at = 1
        self.drain()


def _nothing() -> None:
    pass


def _work(
    owner: weakref.ReferenceType[Deferred],
    wake: threading.Event,
    first: Optional[Callable[[], Any]],
) -> None:
    """The thread: holds its Deferred only while draining, so a dropped client is collected
    (and the thread ends at its next look)."""
    leave_signals_to_the_main_thread()
    if first is not None:
        with contextlib.suppress(Exception):  # an optimisation: a capture says what failed
            first()
    while True:
        if wake.wait(POLL):
            wake.clear()  # before draining: a capture queued after the drain is seen next look
        deferred = owner()
        if deferred is None:
            return
        if deferred._pending:
            deferred.drain()
        del deferred


def _drain_at_exit(owner: weakref.ReferenceType[Deferred]) -> None:
    deferred = owner()
    if deferred is not None:
        deferred.run_on_callers_thread()


def _after_fork(owner: weakref.ReferenceType[Deferred]) -> None:
    deferred = owner()
    if deferred is not None:
        deferred._pending.clear()  # the parent records its own calls
        deferred._reset()
