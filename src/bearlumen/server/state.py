"""`ServerState`: what every route of one server shares; `Handler`: the shape of a route."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from .call import ApiRequest
from .faults import FaultInjector
from .responses import RequestIds
from .store import Store


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


# A route's handler: plain, blocking (it runs in the thread pool), returns (status, body).
Handler = Callable[[ServerState, ApiRequest], "tuple[int, Any]"]
