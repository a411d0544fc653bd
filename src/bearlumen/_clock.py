"""The clock the SDK's own waits run on: the real one, whatever a user's test has frozen.

freezegun's `freeze_time` replaces `time.monotonic` (and `time.time`, `time.perf_counter`) in
the `time` module and in every loaded module whose globals hold the real function: it compares
each module attribute's id with the real functions' ids. A frozen monotonic clock stops every
loop that waits "until a deadline": one 503 inside `freeze_time` stopped the retries until
`close()`, and `delivery_timeout` never passed. Retry backoff, the delivery deadline,
`flush_interval` and the block limit measure real seconds going by, so they read `monotonic`
below: a `functools.partial` of the real function, which no freezer's scan recognises (its id is
not the real function's), so it stays real wherever it is imported. time-machine leaves the
monotonic clock alone. `threading`'s waits (`Event.wait(timeout)`, which `flush(timeout=)` uses)
keep real time on their own: freezegun skips the `threading` module.

What is the user's stays the user's: an event's timestamp is read from `time.time()` as the
test set it, so events recorded in a frozen test carry the frozen time.

The real function is taken when bearlumen is first imported (the pytest plugin imports it before
any test runs). Imported inside a frozen block, where `time.monotonic` is already a stand-in,
the kernel's monotonic clock is read instead (`clock_gettime`, which freezers leave alone).
"""

from __future__ import annotations

import functools
import time
import types
from typing import Callable

monotonic: Callable[[], float] = functools.partial(time.monotonic)
if not isinstance(time.monotonic, types.BuiltinFunctionType) and hasattr(time, "clock_gettime"):
    monotonic = functools.partial(time.clock_gettime, time.CLOCK_MONOTONIC)
