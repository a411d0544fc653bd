"""SQLite storage of the local server: the schema, what every resource's store shares
(`StoreBase`), and the helpers of its rows. Each resource's statements are in a module of its
own (end_user_store, subscription_store, event_store); `store.Store` is all of them together.

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
from functools import cache
from typing import Any, Iterator, Sequence

from pydantic_core import from_json, to_json

from .._timestamps import now as now_timestamp
from .event_row import STORED_COLUMNS, TABLE_COLUMNS
from .staging import Staging, transaction

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


def _parameter_limit(db: sqlite3.Connection) -> int:
    """How many `?` one statement may bind (32766 since SQLite 3.32)."""
    try:
        return int(db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except AttributeError:  # Python < 3.11 cannot ask: the smallest limit SQLite ever had
        return 999


# Rows are bound as parameters of one multi-row INSERT, never passed through JSON (json_each
# cuts a text at NUL) nor executemany: that releases and retakes the GIL once per row, and
# behind a thread validating the next batch each retake waited, 38 ms per 1000 rows against
# 18 ms for one statement (and 52 ms for json_each). Each text is stored exactly. What every
# row of a statement shares is bound once: ?1 the first row's seq (row k's is ?1 + k), ?2 the
# tenant, ?3 the time received; the row's own values follow, _ROW_VALUES to a row.
_ROW_VALUES = len(STORED_COLUMNS) - 3
_SHARED_VALUES = 3


@cache
def _stage_events_sql(count: int) -> str:
    rows = []
    for k in range(count):
        first = _SHARED_VALUES + 1 + k * _ROW_VALUES
        own = ", ".join(f"?{n}" for n in range(first, first + _ROW_VALUES))
        rows.append(f"(?1 + {k}, ?2, {own}, ?3)")
    columns = ", ".join(STORED_COLUMNS)
    return f"INSERT INTO usage_events_staged ({columns}) VALUES " + ", ".join(rows)


@cache
def _indexed_keys_sql(count: int) -> str:
    return (
        "SELECT idempotency_key, seq FROM usage_events"
        f" WHERE tenant = ? AND idempotency_key IN ({', '.join('?' * count)})"
    )


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


class StoreBase:
    """The connection, its lock and transactions, tenants and stored replays: what every
    resource's store (end users, subscriptions, usage events) is built on."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._in_memory = path == ":memory:"
        # 16 KiB pages for a new file (one that exists keeps its own): a 1000-event batch is
        # staged, moved and checkpointed in a quarter as many pages, so as many fewer WAL frames
        # and page writes; stage + move + checkpoint took 7.0 ms per 1000 events against 8.4.
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        if not self._in_memory:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._tenants: dict[str, int] = {}
        limit = _parameter_limit(self._db)
        self._rows_per_insert = min(1000, (limit - _SHARED_VALUES) // _ROW_VALUES)
        self._keys_per_lookup = min(1000, limit - 1)
        self._staging = Staging(self._db, self._lock, None if self._in_memory else path)
        self._staging.start()  # first moves what a killed process left staged
        (max_seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM usage_events").fetchone()
        self._next_seq = int(max_seq) + 1

    def close(self) -> None:
        self._staging.close()
        with self._lock:
            if not self._in_memory:  # leave the file complete for other readers of it
                self._staging.move_all()
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._db) as db:
            yield db

    def _page(
        self,
        table: str,
        columns: str,
        order: str,
        tenant: int,
        filters: Sequence[Filter],
        limit: int,
        offset: int,
    ) -> tuple[list[Any], int]:
        """One page of a tenant's rows and the count of all that match (one read, one lock)."""
        where, params = _where(tenant, filters)
        with self._events_complete():
            (total,) = self._db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {where}", params
            ).fetchone()
            rows = self._db.execute(
                f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return rows, total

    @staticmethod
    def _update(
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

    def _secret(self, name: str) -> bytes:
        """A random key kept in the database: made the first time, the same ever after."""
        with self._transaction() as db:
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
            with self._transaction() as db:
                db.execute("INSERT OR IGNORE INTO tenants (key_hash) VALUES (?)", (key_hash,))
                (tenant,) = db.execute(
                    "SELECT id FROM tenants WHERE key_hash = ?", (key_hash,)
                ).fetchone()
            self._tenants[key_hash] = tenant
        return tenant

    @contextmanager
    def _events_complete(self) -> Iterator[sqlite3.Connection]:
        """The lock, with every staged event moved into usage_events: how every read begins."""
        with self._lock:
            self._staging.move_all()
            yield self._db

    # -- idempotent replays ----------------------------------------------------------------

    def stored_response(self, tenant: int, key: str) -> tuple[str, int, bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, status, body FROM idempotent_responses"
                " WHERE tenant = ? AND key = ?",
                (tenant, key),
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def store_response(
        self, tenant: int, key: str, fingerprint: str, status: int, body: bytes
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO idempotent_responses"
                " (tenant, key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, key, fingerprint, status, body, now_timestamp()),
            )
