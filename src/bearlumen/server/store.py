"""The local server's storage: every resource's store on one SQLite connection.

The schema and what they share are in store_base.py; each resource's statements in its own
module. The names other modules import from here are re-exported.
"""

from __future__ import annotations

from .._timestamps import now as now_timestamp
from .event_store import EventStore
from .store_base import (
    Conflict,
    Filter,
    NotFound,
    dollars,
    nanos,
)
from .subscription_store import SubscriptionStore

__all__ = [
    "Conflict",
    "Filter",
    "NotFound",
    "Store",
    "dollars",
    "nanos",
    "now_timestamp",
]


class Store(SubscriptionStore, EventStore):  # subscriptions are built on end users
    """All persistent state of one local server."""
