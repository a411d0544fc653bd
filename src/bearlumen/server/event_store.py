"""Stored usage events: a batch staged in one statement, and every read of events (see
store_base for the connection, staging.py for how staged rows reach the indexed table)."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import contextmanager
from functools import cache
from typing import Any, Iterator, Sequence

from .._timestamps import now as now_timestamp
from .event_row import ANSWER_KEYS, IDEMPOTENCY_KEY, READ_COLUMNS, STORED_COLUMNS
from .staging import Staging, transaction
from .store_base import Database, Filter, _json_value, _where, dollars


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


_ANSWER_KEYS = tuple(ANSWER_KEYS.values())


class EventStore:
    """The usage events of each tenant: written through the staged table, read from the index.

    An event's id is not its `seq`: seqs are one sequence across tenants, and ids made from them
    would show each tenant how many events the others record. An id is a keyed hash of the seq
    (BLAKE2b, 96 bits, under a key kept in the database file, so ids never change), which says
    nothing of the seq to anyone without the key.
    """

    def __init__(self, database: Database, path: str) -> None:
        self._database = database
        limit = _parameter_limit(database.conn)
        self._rows_per_insert = min(1000, (limit - _SHARED_VALUES) // _ROW_VALUES)
        self._keys_per_lookup = min(1000, limit - 1)
        self._staging = Staging(database.conn, database.lock, None if database.in_memory else path)
        self._staging.start()  # first moves what a killed process left staged
        with database.locked() as db:
            (max_seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM usage_events").fetchone()
        self._next_seq = int(max_seq) + 1
        self._id_hash = hashlib.blake2b(key=database.secret("event_ids"), digest_size=12)

    def close(self) -> None:
        """Stop the mover; a file is left with every event moved, complete for its readers."""
        self._staging.close()
        if not self._database.in_memory:
            with self._database.lock:
                self._staging.move_all()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The lock, with every staged event moved into usage_events: how every read begins."""
        with self._database.lock:
            self._staging.move_all()
            yield self._database.conn

    def event_id(self, seq: int) -> str:
        """The id the API shows for the event stored as `seq`."""
        digest = self._id_hash.copy()
        digest.update(seq.to_bytes(8, "little"))
        return "evt_" + digest.hexdigest()

    def record_events(self, tenant: int, rows: list[list[Any]]) -> list[tuple[str, int]]:
        """Store events exactly once per idempotency key, in one transaction.

        Each row is laid out as event_row.ROW_COLUMNS says. Returns, in order,
        ("recorded", seq) or ("duplicate", seq of the event stored first).
        """
        keys = [row[IDEMPOTENCY_KEY] for row in rows if row[IDEMPOTENCY_KEY] is not None]
        received_at = now_timestamp()
        outcomes: list[tuple[str, int]] = []
        with self._database.locked() as db:
            staged_seq = self._staging.seq_of(tenant)
            seen: dict[str, int] = {}
            unstaged = [key for key in keys if staged_seq(key) is None]
            for at in range(0, len(unstaged), self._keys_per_lookup):
                chunk = unstaged[at : at + self._keys_per_lookup]
                seen.update(db.execute(_indexed_keys_sql(len(chunk)), (tenant, *chunk)))
            values: list[Any] = []  # the new rows' own values, one after the other
            add_values = values.extend
            keyed: dict[str, int] = {}  # this batch's new keys
            first = seq = self._next_seq
            for row in rows:
                key = row[IDEMPOTENCY_KEY]
                if key is not None:
                    earlier = seen.get(key) or staged_seq(key)
                    if earlier is not None:
                        outcomes.append(("duplicate", earlier))
                        continue
                    seen[key] = keyed[key] = seq
                add_values(row)
                outcomes.append(("recorded", seq))
                seq += 1
            if seq > first:
                with transaction(db):
                    for at in range(first, seq, self._rows_per_insert):
                        count = min(self._rows_per_insert, seq - at)
                        if count < seq - first:  # part of the rows: one statement's worth
                            offset = (at - first) * _ROW_VALUES
                            chunk = values[offset : offset + count * _ROW_VALUES]
                        else:
                            chunk = values
                        db.execute(_stage_events_sql(count), [at, tenant, received_at, *chunk])
                self._next_seq = seq
                self._staging.staged(tenant, keyed, seq, seq - first)
        return outcomes

    def _event(self, row: Sequence[Any]) -> dict[str, Any]:
        """A row read with READ_COLUMNS as the API answers it (a StoredEvent)."""
        event = dict(zip(_ANSWER_KEYS, row))
        event["id"] = self.event_id(event["id"])
        event["metadata"] = _json_value(event["metadata"])
        return event

    def get_event(self, tenant: int, seq: int) -> dict[str, Any]:
        # One row by its key needs no index: look in both tables rather than move a burst.
        with self._database.locked() as db:
            row = db.execute(
                f"SELECT {READ_COLUMNS} FROM usage_events WHERE tenant = ?1 AND seq = ?2"
                f" UNION ALL SELECT {READ_COLUMNS} FROM usage_events_staged"
                " WHERE tenant = ?1 AND seq = ?2",
                (tenant, seq),
            ).fetchone()
        return self._event(row)

    def query_events(
        self, tenant: int, filters: Sequence[Filter], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        rows, total = self._database.page(
            "usage_events", READ_COLUMNS, "ts, seq", tenant, filters, limit, offset, self.read
        )
        return [self._event(row) for row in rows], total

    def aggregate_by_metric(self, tenant: int, filters: Sequence[Filter]) -> list[dict[str, Any]]:
        where, params = _where(tenant, filters)
        # `+metric_name`, the same value: grouping by the bare column, SQLite read a filtered
        # query through usage_events_by_metric (every event of the tenant, in group order)
        # rather than search the filter's own index (tests/test_server_query_plans.py).
        with self.read() as db:
            rows = db.execute(
                "SELECT metric_name, TOTAL(quantity), COUNT(*), TOTAL(cost_nanos) FROM usage_events"
                f" WHERE {where} GROUP BY +metric_name ORDER BY +metric_name",
                params,
            ).fetchall()
        return [
            {"metricName": m, "totalQuantity": q, "eventCount": n, "totalCost": dollars(c)}
            for m, q, n, c in rows
        ]

    def summarize(self, tenant: int, filters: Sequence[Filter]) -> dict[str, Any]:
        where, params = _where(tenant, filters)
        with self.read() as db:
            n, quantity, cost, metrics, first, last = db.execute(
                "SELECT COUNT(*), TOTAL(quantity), TOTAL(cost_nanos), COUNT(DISTINCT metric_name),"
                f" MIN(ts), MAX(ts) FROM usage_events WHERE {where}",
                params,
            ).fetchone()
        return {
            "totalEvents": n,
            "totalQuantity": quantity,
            "totalCost": dollars(cost),
            "metricCount": metrics,
            "firstEventAt": first,
            "lastEventAt": last,
        }

    def cost_breakdown(
        self, tenant: int, column: str, start: str, end: str
    ) -> list[dict[str, Any]]:
        where, params = _where(tenant, [("ts", ">=", start), ("ts", "<", end)])
        with self.read() as db:
            rows = db.execute(
                f"SELECT {column}, TOTAL(cost_nanos) AS total_cost, TOTAL(quantity), COUNT(*)"
                f" FROM usage_events WHERE {where} GROUP BY {column}"
                f" ORDER BY total_cost DESC, {column} IS NULL, {column}",
                params,
            ).fetchall()
        return [
            {"attributionValue": v, "totalCost": dollars(c), "totalQuantity": q, "eventCount": n}
            for v, c, q, n in rows
        ]

    def distinct_values(self, tenant: int, column: str, start: str, end: str) -> list[str]:
        where, params = _where(tenant, [("ts", ">=", start), ("ts", "<", end)])
        with self.read() as db:
            rows = db.execute(
                f"SELECT DISTINCT {column} FROM usage_events"
                f" WHERE {where} AND {column} IS NOT NULL ORDER BY {column}",
                params,
            ).fetchall()
        return [value for (value,) in rows]

    def count_events(self) -> int:
        with self._database.locked() as db:  # polled by /_admin/stats in bursts: count, not move
            (n,) = db.execute(
                "SELECT (SELECT COUNT(*) FROM usage_events)"
                " + (SELECT COUNT(*) FROM usage_events_staged)"
            ).fetchone()
        return int(n)
