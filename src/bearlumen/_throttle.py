"""How hard the shipper may press the API: attempts in flight (AIMD) and Retry-After pauses.

Several batches may be in flight at once, each on its own sender thread, but every HTTP attempt
first takes a turn here. While the server refuses (429, 5xx, a dropped connection) the number
of attempts allowed at once halves with each failure, down to one; each delivered batch lets one
more through again, up to `max_in_flight` (additive increase, multiplicative decrease, as TCP
does). A 429's `Retry-After` pauses every sender, not just the one that got it: a server that
asks for quiet gets quiet.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ._clock import monotonic


class SendThrottle:
    """Turns for HTTP attempts, shared by the sender threads of one shipper."""

    def __init__(
        self,
        max_in_flight: int,
        *,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.limit = float(max_in_flight)  # attempts allowed at once; adapts
        self.sending = 0  # attempts under way now
        self.paused_until = 0.0  # on `clock`: no attempt starts before this
        self._clock = clock
        self._sleep = sleep  # a test's injected sleep: pauses are slept through it, once each
        self._slept_until = 0.0  # on `clock`: how far injected sleeps have served the pauses
        self._changed = threading.Condition()

    def wait_turn(self, should_stop: Callable[[], bool], *, slept_until: float = 0.0) -> None:
        """Block until a pause is over and fewer than `limit` attempts are under way.

        `should_stop` (the shipper giving up) ends the wait at once: the attempt then goes
        ahead and fails fast or is the last. `slept_until`: the caller has already waited (on
        an injected sleep) until this moment of `clock`.
        """
        with self._changed:
            self._slept_until = max(self._slept_until, slept_until)
            while not should_stop():
                left = self.paused_until - self._clock()
                if left > 0 and self.paused_until > self._slept_until:
                    if self._sleep is None:
                        self._changed.wait(left)
                        continue
                    self._slept_until = self.paused_until
                    self._changed.release()
                    try:
                        self._sleep(left)
                    finally:
                        self._changed.acquire()
                elif self.sending < int(self.limit):
                    break
                else:
                    self._changed.wait(1.0)  # woken by a finished attempt; the bound is a guard
            self.sending += 1

    def attempt_failed(self, retry_after: float | None) -> None:
        """An attempt failed and will be retried: back off, and pause all if the server asked."""
        with self._changed:
            self.sending -= 1
            self.limit = max(1.0, self.limit / 2)
            if retry_after is not None and retry_after > 0:
                self.paused_until = max(self.paused_until, self._clock() + retry_after)
            self._changed.notify_all()

    def attempt_done(self, delivered: bool) -> None:
        """The last attempt of a batch ended; one more may go at once after a delivery."""
        with self._changed:
            self.sending -= 1
            if delivered:
                self.limit = min(float(self.max_in_flight), self.limit + 1.0)
            self._changed.notify_all()

    def pause_left(self) -> float:
        return max(0.0, self.paused_until - self._clock())

    def wake_all(self) -> None:
        """Make every waiter look again (the clock moved, or the shipper is giving up)."""
        with self._changed:
            self._changed.notify_all()
