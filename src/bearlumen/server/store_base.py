"""SQLite storage of the local server: the schema, what every resource's store is given
(`Database`), and the helpers of its rows. Each resource's statements are in a module of its
own (end_user_store, subscription_store, event_store); `store.Store` puts them together.

One connection, one lock: SQLite allows one writer at a time anyway, and serialising in-process
means the server never answers "database is locked". Each call is one transaction. Every filter
of the contract has an index.

Usage events are written to an unindexed staging table first and indexed later: see staging.py.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator, Sequence

from pydantic_core import from_json, to_json

from .._timestamps import now as now_timestamp
from .event_row import TABLE_COLUMNS
from .staging import transaction

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS tenants (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS end_users (
    id TEXT PRIMARY KEY,
    tenant INTEGER NOT NULL,
    external_id TEXT NOT NULL,
    email TEXT,
    name TEXT,
    metadata TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant, external_id)
);
CREATE INDEX IF NOT EXISTS end_users_by_status ON end_users (tenant, status, created_at);
CREATE INDEX IF NOT EXISTS end_users_by_created ON end_users (tenant, created_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    tenant INTEGER NOT NULL,
    organization_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    billing_cycle TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT,
    canceled_at TEXT,
    end_user_id TEXT,
    metadata TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_org
    ON subscriptions (tenant, organization_id, created_at);
CREATE INDEX IF NOT EXISTS subscriptions_by_created ON subscriptions (tenant, created_at);
CREATE TABLE IF NOT EXISTS usage_events (
{TABLE_COLUMNS}
);
CREATE UNIQUE INDEX IF NOT EXISTS usage_events_key ON usage_events (tenant, idempotency_key);
CREATE INDEX IF NOT EXISTS usage_events_by_ts ON usage_events (tenant, ts);
CREATE INDEX IF NOT EXISTS usage_events_by_metric ON usage_events (tenant, metric_name, ts);
-- Partial: an event without a subscription (agent, workflow) costs that index nothing, and a
-- filter `column = ?` implies `column IS NOT NULL`, so SQLite uses them for every such query.
-- (Files of older versions indexed every event under usage_events_by_sub, _agent, _workflow.)
DROP INDEX IF EXISTS usage_events_by_sub;
DROP INDEX IF EXISTS usage_events_by_agent;
DROP INDEX IF EXISTS usage_events_by_workflow;
CREATE INDEX IF NOT EXISTS usage_events_with_subscription
    ON usage_events (tenant, subscription_id, ts) WHERE subscription_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS usage_events_with_agent
    ON usage_events (tenant, agent_id, ts) WHERE agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS usage_events_with_workflow
    ON usage_events (tenant, workflow_id, ts) WHERE workflow_id IS NOT NULL;
-- Events stored but not yet moved into usage_events (see the module's docstring).
CREATE TABLE IF NOT EXISTS usage_events_staged (
{TABLE_COLUMNS}
);
-- Staged events' keys are looked up in memory (staging.py); files of older versions indexed them.
DROP INDEX IF EXISTS usage_events_staged_key;
-- Random keys made once per database file (the event ids' key: event_store.py).
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotent_responses (
    tenant INTEGER NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
"""

PAGE_SIZE = 16384


_UPDATABLE = {
    "end_users": frozenset({"email", "name", "metadata"}),
    "subscriptions": frozenset({"plan_id", "billing_cycle", "metadata", "end_date"}),
}


class NotFound(Exception):
    """No such id for this tenant."""


class Conflict(Exception):
    """A unique value (an end user's external id) is taken."""


NANOS_PER_DOLLAR = 1_000_000_000


def nanos(amount: float) -> int:
    return round(amount * NANOS_PER_DOLLAR)


def dollars(total_nanos: float | None) -> float:
    # TOTAL() sums as a float: exact for sums under 2**53 nanos (about $9M), never overflows.
    return round(total_nanos or 0) / NANOS_PER_DOLLAR


def _json_text(value: Any) -> str | None:
    return None if value is None else to_json(value).decode()


def _json_value(text: str | None) -> Any:
    return None if text is None else from_json(text)


# A filter is (column, operator, value); columns and operators come from this module's callers
# as constants, values are always bound parameters.
Filter = tuple[str, str, Any]


def _where(tenant: int, filters: Sequence[Filter]) -> tuple[str, list[Any]]:
    clauses = ["tenant = ?"]
    params: list[Any] = [tenant]
    for column, operator, value in filters:
        if value is not None:
            clauses.append(f"{column} {operator} ?")
            params.append(value)
    return " AND ".join(clauses), params


class RowLayout:
    """A table's row as it is selected and as it is answered: (column, answer key) pairs in one
    order, the one home of that order, so no store reads a row by position. The JSON columns'
    values are decoded."""

    def __init__(self, *fields: tuple[str, str], json_keys: tuple[str, ...] = ()) -> None:
        self.columns = ", ".join(column for column, _ in fields)
        self._keys = tuple(key for _, key in fields)
        self._json_keys = json_keys

    def answer(self, row: Sequence[Any]) -> dict[str, Any]:
        answer = dict(zip(self._keys, row))
        for key in self._json_keys:
            answer[key] = _json_value(answer[key])
        return answer


class Database:
    """The connection, its lock and transactions, tenants, stored replays and kept secrets: what
    every resource's store (end users, subscriptions, usage events) is given, one of each per
    server (`store.Store` puts them together)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.in_memory = path == ":memory:"
        # 16 KiB pages for a new file (one that exists keeps its own): a 1000-event batch is
        # staged, moved and checkpointed in a quarter as many pages, so as many fewer WAL frames
        # and page writes; stage + move + checkpoint take 7.0 ms per 1000 events (4 KiB pages: 8.4).
        self.conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        if not self.in_memory:
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.executescript(_SCHEMA)
        self._tenants: dict[str, int] = {}

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The lock and one transaction (BEGIN IMMEDIATE ... COMMIT)."""
        with self.lock, transaction(self.conn) as db:
            yield db

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The lock, for a read."""
        with self.lock:
            yield self.conn

    def page(
        self,
        table: str,
        columns: str,
        order: str,
        tenant: int,
        filters: Sequence[Filter],
        limit: int,
        offset: int,
        read: Callable[[], ContextManager[sqlite3.Connection]] | None = None,
    ) -> tuple[list[Any], int]:
        """One page of a tenant's rows and the count of all that match (one read, one lock);
        `read` gives the connection for it (`locked` unless the store says otherwise)."""
        where, params = _where(tenant, filters)
        with (read or self.locked)() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()
            rows = db.execute(
                f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return rows, total

    @staticmethod
    def update(
        db: sqlite3.Connection, table: str, tenant: int, row_id: str, changes: dict[str, Any]
    ) -> None:
        """Set the changed fields (their names are the columns; metadata is stored as JSON)."""
        assignments = ["updated_at = ?"]
        params: list[Any] = [now_timestamp()]
        for column, value in changes.items():
            assert column in _UPDATABLE[table], column  # names come from pydantic models
            assignments.append(f"{column} = ?")
            params.append(_json_text(value) if column == "metadata" else value)
        db.execute(
            f"UPDATE {table} SET {', '.join(assignments)} WHERE tenant = ? AND id = ?",
            (*params, tenant, row_id),
        )

    def secret(self, name: str) -> bytes:
        """A random key kept in the database: made the first time, the same ever after."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
                (name, secrets.token_bytes(16)),
            )
            (value,) = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
        return bytes(value)

    # -- tenants ---------------------------------------------------------------------------

    def tenant_for_key(self, api_key: str) -> int:
        """The tenant an API key stands for; keys are stored only as SHA-256 hashes."""
        key_hash = hashlib.sha256(api_key.encode()).hexdigest()
        tenant = self._tenants.get(key_hash)
        if tenant is None:
            with self.transaction() as db:
                db.execute("INSERT OR IGNORE INTO tenants (key_hash) VALUES (?)", (key_hash,))
                (tenant,) = db.execute(
                    "SELECT id FROM tenants WHERE key_hash = ?", (key_hash,)
                ).fetchone()
            self._tenants[key_hash] = tenant
        return tenant

    # -- idempotent replays ----------------------------------------------------------------

    def stored_response(self, tenant: int, key: str) -> tuple[str, int, bytes] | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT fingerprint, status, body FROM idempotent_responses"
                " WHERE tenant = ? AND key = ?",
                (tenant, key),
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def store_response(
        self, tenant: int, key: str, fingerprint: str, status: int, body: bytes
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO idempotent_responses"
                " (tenant, key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, key, fingerprint, status, body, now_timestamp()),
            )
