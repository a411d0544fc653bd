"""`ServerState`: what every route of one server shares; `Handler`: the shape of a route."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .call import Call
from .faults import FaultInjector
from .responses import RequestIds
from .store import Store

_T = TypeVar("_T")

# Threads that run handlers; see `ServerState.run_blocking`.
WORKER_THREADS = 2


@dataclass
class ServerState:
    store: Store
    api_keys: frozenset[str] | None
    faults: FaultInjector | None
    request_ids: RequestIds = field(default_factory=RequestIds)
    statuses: Counter[int] = field(default_factory=Counter)
    # (tenant, Idempotency-Key) of requests being handled now: see replay.py
    in_flight: set[tuple[int, str]] = field(default_factory=set)
    in_flight_lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: ThreadPoolExecutor | None = field(default=None, repr=False)
    _workers_pid: int = field(default=0, repr=False)

    async def run_blocking(self, function: Callable[..., _T], *args: Any) -> _T:
        """`function(*args)` in one of the server's worker threads.

        A few threads, not Starlette's pool of 40: the work holds the GIL or waits for the
        store's one lock, so more threads only take turns at both, and each switch costs.
        """
        if self._workers is None or self._workers_pid != os.getpid():  # a fork gets its own
            self._workers = ThreadPoolExecutor(WORKER_THREADS, "bearlumen-server-worker")
            self._workers_pid = os.getpid()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, functools.partial(function, *args))


# A route's handler: plain, blocking (it runs in the thread pool), returns (status, body).
Handler = Callable[[ServerState, Call], "tuple[int, Any]"]
