"""The local server's storage: every resource's store on one SQLite connection.

The schema and the database they share are in store_base.py; each resource's statements in a
store of its own (end_user_store, subscription_store, event_store), composed here. The names
other modules import from here are re-exported.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import ContextManager

from .._timestamps import now as now_timestamp
from .end_user_store import EndUserStore
from .event_store import EventStore
from .store_base import (
    Conflict,
    Database,
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


class Store:
    """All persistent state of one local server: one database, and a store per resource on it
    (`database` holds tenants and stored replays too)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.database = Database(path)
        self.end_users = EndUserStore(self.database)
        self.subscriptions = SubscriptionStore(self.database, self.end_users)
        self.events = EventStore(self.database, path)

    def close(self) -> None:
        self.events.close()
        self.database.close()

    # What server/dashboard reads the store through: the connection (tests swap it for one
    # that records query plans), its lock, and a read that first moves staged events.

    @property
    def _db(self) -> sqlite3.Connection:
        return self.database.conn

    @_db.setter
    def _db(self, connection: sqlite3.Connection) -> None:
        self.database.conn = connection

    @property
    def _lock(self) -> threading.Lock:
        return self.database.lock

    def _events_complete(self) -> ContextManager[sqlite3.Connection]:
        return self.events.read()
