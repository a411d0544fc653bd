"""The dashboard's figures: a rollup of each tenant's events by day and hour, and every read.

Summing a million events' metadata on each page view takes seconds (a `json_extract` per row),
so the dashboard keeps `dashboard_rollup`: per tenant, dimension (the tenant's `total`, and each
agent, workflow, model, end user and subscription) and UTC day, the events, the cost, the
unpriced calls and the tokens of each kind; and the same per hour for the total and the
dimensions an hourly chart stacks by. A page view first rolls up the events stored since the last
one (`catch_up`: `seq` above the watermark, a search of the primary key), a chunk per hold of the
store's lock, so that catching up on a large file never holds writers up for long; then it reads
rollup rows, whatever the number of events (benchmarks/dashboard_queries.py). A stored event
never changes, so what was rolled up stays true. Periods are whole days, so everything but an
hourly chart reads the daily rows: a month of 500 end users is 15,000 of them, where hourly ones
would be up to 360,000.

The tokens are client.llm's metadata keys (see bearlumen/_llm/_usage.py): `input_tokens` is all
input, cache reads and writes included; `output_tokens` includes reasoning. An event without them
(one recorded by hand) counts as an event and its cost, with no tokens. A call is unpriced when its
metadata says `"priced": false` (no price was known for its model).

The Events page reads `usage_events` itself, newest first, a page at a time by keyset (a page
ends at an event's (ts, seq)), through the index of whichever filter it has
(tests/test_server_query_plans.py).
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any, Iterator, Sequence

from ..staging import transaction
from ..store import Store, dollars

ROLLUP_VERSION = 3
# Events rolled up per hold of the store's lock: 10,000 held it ~0.4 s on a shared 2-core machine
# (50,000 held it 2 s, and every batch of the API waited that long).
CATCH_UP_CHUNK = 10_000
# A read catches up this many chunks at most: the first view of a large file answers with what is
# rolled up so far (the page says the figures are partial), and each later read, or poll of the
# live overview, adds more.
CHUNKS_PER_READ = 10

# dimension -> the column of temp.dashboard_new it groups by (a chart can stack by the HOURLY ones
# but the total)
HOURLY = ("total", "agent", "workflow", "model", "end_user")
DIMENSIONS = {
    "total": "''",
    "agent": "agent_id",
    "workflow": "workflow_id",
    "model": "model",
    "end_user": "end_user_id",
    "subscription": "subscription_id",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dashboard_rollup (
    tenant INTEGER NOT NULL,
    dimension TEXT NOT NULL,
    span TEXT NOT NULL,          -- 'day' or 'hour'
    bucket TEXT NOT NULL,        -- 2026-12-06 or 2026-12-06T13 (UTC): the start of ts
    value TEXT NOT NULL,         -- '' when the event has none
    events INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    PRIMARY KEY (tenant, dimension, span, bucket, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dashboard_rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    last_seq INTEGER NOT NULL    -- every event up to this seq is in dashboard_rollup
);
"""

_MEASURES = (
    "events",
    "cost_nanos",
    "unpriced",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
_SUMS = ", ".join(f"SUM({m})" for m in _MEASURES)
_LIST = ", ".join(_MEASURES)

# The chunk's events, then its sums per hour and value of one dimension at a time.
_TEMPORARY = (
    "CREATE TEMP TABLE IF NOT EXISTS dashboard_new (tenant INTEGER, hour TEXT, agent_id TEXT,"
    " workflow_id TEXT, model TEXT, end_user_id TEXT, subscription_id TEXT, cost_nanos INTEGER,"
    " unpriced INTEGER, input_tokens INTEGER, cache_read_tokens INTEGER,"
    " cache_write_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS dashboard_hourly"
    f" (tenant INTEGER, hour TEXT, value TEXT, {_LIST})",
)


def _count(key: str) -> str:
    return f"CAST(COALESCE(json_extract(metadata, '$.{key}'), 0) AS INTEGER)"


# Each new event's metadata is read once, into the temporary table the dimensions group.
_FILL_NEW = f"""
INSERT INTO temp.dashboard_new
SELECT tenant, substr(ts, 1, 13), agent_id, workflow_id,
       CAST(json_extract(metadata, '$.model') AS TEXT), end_user_id, subscription_id, cost_nanos,
       CASE WHEN json_extract(metadata, '$.priced') = 0 THEN 1 ELSE 0 END,
       {_count("input_tokens")}, {_count("cache_read_tokens")}, {_count("cache_write_tokens")},
       {_count("output_tokens")}, {_count("reasoning_tokens")}
FROM usage_events WHERE seq > ? AND seq <= ?
"""


def _sum_by_hour(column: str) -> str:
    return (
        "INSERT INTO temp.dashboard_hourly SELECT tenant, hour, COALESCE("
        f"{column}, ''), COUNT(*), {', '.join(f'SUM({m})' for m in _MEASURES[1:])}"
        f" FROM temp.dashboard_new GROUP BY tenant, hour, COALESCE({column}, '')"
    )


def _add_to_rollup(span: str) -> str:
    """Add the chunk's hourly sums to the rollup's rows of `span` (its dimension is ?1)."""
    bucket, sums, group = (
        ("hour", _LIST, "")
        if span == "hour"
        else ("substr(hour, 1, 10)", _SUMS, " GROUP BY tenant, substr(hour, 1, 10), value")
    )
    updates = ", ".join(f"{m} = {m} + excluded.{m}" for m in _MEASURES)
    # `WHERE true`: SQLite's documented way to tell the upsert's ON from a join's
    return (
        f"INSERT INTO dashboard_rollup (tenant, dimension, span, bucket, value, {_LIST})"
        f" SELECT tenant, ?1, '{span}', {bucket}, value, {sums} FROM temp.dashboard_hourly"
        f" WHERE true{group}"
        f" ON CONFLICT (tenant, dimension, span, bucket, value) DO UPDATE SET {updates}"
    )


_SUM_BY_HOUR = {dimension: _sum_by_hour(column) for dimension, column in DIMENSIONS.items()}
_ADD_HOURS, _ADD_DAYS = _add_to_rollup("hour"), _add_to_rollup("day")


@dataclass(frozen=True)
class Figures:
    """What a set of events adds up to."""

    events: int = 0
    cost_nanos: int = 0
    unpriced: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def cost(self) -> float:
        """In dollars."""
        return dollars(self.cost_nanos)

    @property
    def tokens(self) -> int:
        """All tokens: input (cache reads and writes included) and output (reasoning included)."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def of(cls, row: Sequence[Any]) -> Figures:
        return cls(*(int(value or 0) for value in row))


assert [f.name for f in fields(Figures)] == list(_MEASURES)


@dataclass(frozen=True)
class Period:
    """Whole UTC days, `first` to `last` inclusive."""

    first: date
    last: date

    def bounds(self, span: str) -> tuple[str, str]:
        """The first bucket of the period, and the first after it, as the rollup writes them."""
        first, after = self.first.isoformat(), _day_after(self.last)
        return (f"{first}T00", f"{after}T00") if span == "hour" else (first, after)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def buckets(self, bucket: str) -> list[str]:
        """Every hour (`2026-12-06T13`) or day (`2026-12-06`) of the period, in order."""
        days = [self.first + timedelta(days=n) for n in range(self.days)]
        if bucket == "day":
            return [day.isoformat() for day in days]
        return [f"{day.isoformat()}T{hour:02d}" for day in days for hour in range(24)]


@dataclass(frozen=True)
class Series:
    """Cost per time bucket, stacked by the values of one dimension."""

    buckets: list[str]
    groups: list[str]  # largest cost first; OTHER last when the rest were folded into it
    cost_nanos: dict[tuple[str, str], int]  # (bucket, group) -> cost


OTHER = "(other)"
NONE = ""  # the value of an event that has no agent (workflow, model, ...)


@dataclass(frozen=True)
class Event:
    seq: int
    timestamp: str
    event_type: str
    metric_name: str
    quantity: float
    idempotency_key: str | None
    subscription_id: str | None
    end_user_id: str | None
    agent_id: str | None
    workflow_id: str | None
    metadata: str | None  # JSON text, as stored
    cost_nanos: int

    @property
    def cost(self) -> float:
        return dollars(self.cost_nanos)


_EVENT_COLUMNS = (
    "seq, ts, event_type, metric_name, quantity, idempotency_key, subscription_id, end_user_id,"
    " agent_id, workflow_id, metadata, cost_nanos"
)

# Events page filter name -> column (each of these but end_user_id has an index of its own:
# a filter by end user walks the tenant's events by time until it has a page)
EVENT_FILTERS = {
    "end_user": "end_user_id",
    "subscription": "subscription_id",
    "agent": "agent_id",
    "workflow": "workflow_id",
    "metric": "metric_name",
}


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    newer: int | None  # the seq to page back from (None: this is the newest page)
    older: int | None  # the seq to page on from (None: nothing older)


class Dashboard:
    """The dashboard's reads of one store (its connection, under its lock)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        with self._locked() as db:
            for statement in _TEMPORARY:
                db.execute(statement)
            try:
                row = db.execute("SELECT version FROM dashboard_rollup_state").fetchone()
            except sqlite3.OperationalError:  # no such table: a file the dashboard never read
                row = None
            if row is None or row[0] != ROLLUP_VERSION:  # none yet, or of another definition
                with transaction(db):
                    db.execute("DROP TABLE IF EXISTS dashboard_rollup")
                    db.execute("DROP TABLE IF EXISTS dashboard_rollup_state")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(
                        "INSERT INTO dashboard_rollup_state (id, version, last_seq)"
                        " VALUES (1, ?, 0)",
                        (ROLLUP_VERSION,),
                    )

    # -- the store's connection ------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._store._lock:
            yield self._store._db

    @contextmanager
    def _complete(self) -> Iterator[sqlite3.Connection]:
        """The connection, with every stored event in usage_events (the store's own reads)."""
        with self._store._events_complete() as db:
            yield db

    # -- the rollup ------------------------------------------------------------------------

    def catch_up(self, max_chunks: int | None = None) -> int:
        """Roll up the events stored since the last call, `max_chunks` chunks of them at most
        (CHUNKS_PER_READ by default); the seq now rolled up to.

        A chunk of CATCH_UP_CHUNK events per hold of the lock; the returned seq changes exactly
        when events were rolled up (the live overview's cue to draw itself again)."""
        chunks, most = 0, CHUNKS_PER_READ if max_chunks is None else max_chunks
        while True:
            with self._complete() as db:
                (done,) = db.execute("SELECT last_seq FROM dashboard_rollup_state").fetchone()
                (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM usage_events").fetchone()
                if last <= done or chunks >= most:
                    return int(done)
                chunks += 1
                upto = min(last, done + CATCH_UP_CHUNK)
                with transaction(db):
                    db.execute("DELETE FROM temp.dashboard_new")
                    db.execute(_FILL_NEW, (done, upto))
                    for dimension, sum_by_hour in _SUM_BY_HOUR.items():
                        db.execute("DELETE FROM temp.dashboard_hourly")
                        db.execute(sum_by_hour)
                        if dimension in HOURLY:
                            db.execute(_ADD_HOURS, (dimension,))
                        db.execute(_ADD_DAYS, (dimension,))
                    db.execute("DELETE FROM temp.dashboard_new")
                    db.execute("DELETE FROM temp.dashboard_hourly")
                    db.execute("UPDATE dashboard_rollup_state SET last_seq = ?", (upto,))
                if upto == last:
                    return int(upto)

    @staticmethod
    def _days_with(
        db: sqlite3.Connection, tenant: int, dimension: str, value: str, period: Period
    ) -> tuple[str, str] | None:
        """The first day of the period with an event of `value`, and the day after the last;
        None when it has none; ("", "~") (no narrowing) when the rollup is not complete."""
        (done,) = db.execute("SELECT last_seq FROM dashboard_rollup_state").fetchone()
        (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM usage_events").fetchone()
        if last > done:
            return ("", "~")
        first, final = db.execute(
            "SELECT MIN(bucket), MAX(bucket) FROM dashboard_rollup WHERE tenant = ?"
            " AND dimension = ? AND span = 'day' AND bucket >= ? AND bucket < ? AND value = ?",
            (tenant, dimension, *period.bounds("day"), value),
        ).fetchone()
        return None if first is None else (first, _day_after_text(final))

    def behind(self) -> bool:
        """Whether some stored events are not rolled up yet (the figures are partial)."""
        with self._locked() as db:
            (done,) = db.execute("SELECT last_seq FROM dashboard_rollup_state").fetchone()
            (last,) = db.execute(
                "SELECT MAX((SELECT COALESCE(MAX(seq), 0) FROM usage_events),"
                " (SELECT COALESCE(MAX(seq), 0) FROM usage_events_staged))"
            ).fetchone()
        return bool(last > done)

    def _rollup(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._locked() as db:
            return db.execute(sql, params).fetchall()

    # -- the overview and the breakdowns ---------------------------------------------------

    def totals(self, tenant: int, period: Period) -> tuple[Figures, int]:
        """The period's figures, and how many distinct end users its events name."""
        with self._locked() as db:
            figures = db.execute(
                f"SELECT {_SUMS} FROM dashboard_rollup WHERE tenant = ? AND dimension = 'total'"
                " AND span = 'day' AND bucket >= ? AND bucket < ?",
                (tenant, *period.bounds("day")),
            ).fetchone()
            (end_users,) = db.execute(
                "SELECT COUNT(DISTINCT value) FROM dashboard_rollup WHERE tenant = ?"
                " AND dimension = 'end_user' AND span = 'day' AND bucket >= ? AND bucket < ?"
                " AND value != ''",
                (tenant, *period.bounds("day")),
            ).fetchone()
        return Figures.of(figures), int(end_users)

    def breakdown(
        self, tenant: int, period: Period, dimension: str, limit: int = -1
    ) -> list[tuple[str, Figures]]:
        """Each value of `dimension` ('' for none) with its figures, largest cost first."""
        assert dimension in DIMENSIONS, dimension
        rows = self._rollup(
            f"SELECT value, {_SUMS} FROM dashboard_rollup WHERE tenant = ? AND dimension = ?"
            " AND span = 'day' AND bucket >= ? AND bucket < ? GROUP BY value"
            " ORDER BY SUM(cost_nanos) DESC, value = '', value LIMIT ?",
            (tenant, dimension, *period.bounds("day"), limit),
        )
        return [(row[0], Figures.of(row[1:])) for row in rows]

    def series(
        self, tenant: int, period: Period, dimension: str, bucket: str, max_groups: int = 6
    ) -> Series:
        """Cost per hour or day, by value of `dimension`: the `max_groups` - 1 costliest values
        on their own and the rest as OTHER (all of them when there are no more than
        `max_groups`)."""
        assert dimension in HOURLY[1:] and bucket in ("hour", "day"), (dimension, bucket)
        # The ranking in SQL, then the buckets of the values shown: OTHER is the bucket's total
        # less theirs (summing 15,000 rows of a month's end users in Python took 250 ms)
        ranked = [value for value, _ in self.breakdown(tenant, period, dimension, max_groups + 1)]
        shown = ranked if len(ranked) <= max_groups else ranked[: max_groups - 1]
        span = (tenant, dimension, bucket, *period.bounds(bucket))
        rows = self._rollup(
            "SELECT bucket, value, cost_nanos FROM dashboard_rollup WHERE tenant = ?"
            " AND dimension = ? AND span = ? AND bucket >= ? AND bucket < ?"
            f" AND value IN ({', '.join('?' * len(shown)) or 'NULL'})",
            (*span, *shown),
        )
        costs: dict[tuple[str, str], int] = {(when, value): int(cost) for when, value, cost in rows}
        groups = shown
        if len(shown) < len(ranked):
            groups = [*shown, OTHER]
            totals = self._rollup(
                "SELECT bucket, cost_nanos FROM dashboard_rollup WHERE tenant = ?"
                " AND dimension = 'total' AND span = ? AND bucket >= ? AND bucket < ?",
                (tenant, *span[2:]),
            )
            for when, total in totals:
                rest = int(total) - sum(costs.get((when, value), 0) for value in shown)
                if rest:
                    costs[when, OTHER] = rest
        return Series(period.buckets(bucket), groups, costs)

    # -- events ----------------------------------------------------------------------------

    def events(
        self,
        tenant: int,
        period: Period,
        filters: dict[str, str],
        *,
        older_than: int | None = None,
        newer_than: int | None = None,
        limit: int = 50,
    ) -> EventPage:
        """A page of events, newest first: the newest, or those just older than the event
        `older_than` (or just newer than `newer_than`), that match `filters`
        (EVENT_FILTERS' names)."""
        clauses = ["tenant = ?"]
        params: list[Any] = [tenant]
        for name, value in filters.items():
            clauses.append(f"{EVENT_FILTERS[name]} = ?")
            params.append(value)
        low, high = (">=", period.first.isoformat()), ("<", _day_after(period.last))
        with self._complete() as db:
            cursor = older_than if older_than is not None else newer_than
            backwards = newer_than is not None
            if cursor is not None:
                found = db.execute(
                    "SELECT ts FROM usage_events WHERE tenant = ? AND seq = ?", (tenant, cursor)
                ).fetchone()
                if found is None:  # not this tenant's event: the first page
                    cursor, backwards = None, False
                else:
                    # (ts, seq) beyond the cursor's, spelt as one bound on ts and a filter:
                    # with a row value, or two upper bounds, SQLite left the filter's index
                    # for the time index (tests/test_server_query_plans.py)
                    ts = found[0]
                    if backwards:
                        low = max(low, (">=", ts), key=lambda bound: bound[1])
                        clauses.append("NOT (ts = ? AND seq <= ?)")
                    else:
                        high = min(high, ("<=", ts), key=lambda bound: bound[1])
                        clauses.append("NOT (ts = ? AND seq >= ?)")
                    params += [ts, cursor]
            if "end_user" in filters:  # no index of its own: narrow the walk by the rollup
                days = self._days_with(db, tenant, "end_user", filters["end_user"], period)
                if days is None:
                    return EventPage([], None, None)
                low = max(low, (">=", days[0]), key=lambda bound: bound[1])
                high = min(high, ("<", days[1]), key=lambda bound: bound[1])
            clauses += [f"ts {low[0]} ?", f"ts {high[0]} ?"]
            params += [low[1], high[1]]
            order = "ts, seq" if backwards else "ts DESC, seq DESC"
            rows = db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM usage_events WHERE {' AND '.join(clauses)}"
                f" ORDER BY {order} LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        events = [Event(*row) for row in rows]
        if not events:
            return EventPage([], None, None)
        at_newest = (backwards and not more) or (cursor is None and not backwards)
        at_oldest = not backwards and not more
        return EventPage(
            events,
            None if at_newest else events[0].seq,
            None if at_oldest else events[-1].seq,
        )


def _day_after_text(day: str) -> str:
    return _day_after(date.fromisoformat(day))


def _day_after(day: date) -> str:
    return (day + timedelta(days=1)).isoformat()
