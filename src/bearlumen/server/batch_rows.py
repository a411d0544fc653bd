"""The fast path of `POST /v1/usage/events/batch`: a valid batch's storage rows, checked by hand.

Validating a 1000-event batch with pydantic cost more than storing it; this loop over the parsed
JSON is several times cheaper. It applies the limits of `UsageEventInput` in `_wire.py` (imported
from there, never restated), and it only ever says "valid, here are the rows" or "not sure":
anything it does not recognise at once (a snake_case name, a timestamp not in the canonical form,
a value out of range) sends the whole batch down the slow path, where pydantic validates each
event and writes the error answers. So it may accept less than pydantic, never more, and the
rows it writes are the rows the slow path would write (tests/test_server_ingest.py checks both
against each other).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json

from .._constants import MAX_BATCH_SIZE
from .._timestamps import is_canonical
from .._wire import (
    COST_KEY,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_NAME_LENGTH,
    MAX_QUANTITY,
    UsageEventInput,
    is_cost,
    too_deep,
)
from .event_row import NAME_FIELDS
from .store import nanos

# The wire (camelCase) names of UsageEventInput's fields; a snake_case name takes the slow path.
_FIELDS = frozenset(field.alias or name for name, field in UsageEventInput.model_fields.items())


class _NotSure(Exception):
    """This event needs pydantic's verdict (and, if it is invalid, pydantic's error message)."""


def _name(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_NAME_LENGTH or "\x00" in value:
        raise _NotSure
    return value


def _quantity(value: Any) -> float:
    # bool is not a number on the wire; an int is compared before it becomes a float (2**53 + 1
    # would round to 2**53); NaN fails the comparison.
    kind = type(value)
    if kind is not int and kind is not float:
        raise _NotSure
    if not 0 <= value <= MAX_QUANTITY:
        raise _NotSure
    return float(value)


def _timestamp(value: Any, now: str, seen: set[str], days: set[str]) -> str:
    """`value` when it is a canonical timestamp of a real moment (`seen` holds the texts that
    were, `days` their first 20 characters, up to the fraction's dot, for this batch)."""
    if value is None:
        return now
    if type(value) is not str:
        raise _NotSure
    if value in seen:
        return value
    # Whether a canonical timestamp is a real moment depends on its first 20 characters, which a
    # batch's events mostly share: the pattern and the calendar are checked once for those.
    fraction = value[20:26]
    if not (
        len(value) == 27
        and value[26] == "Z"
        and fraction.isdigit()
        and fraction.isascii()
        and value[:20] in days
    ):
        if not is_canonical(value):
            raise _NotSure
        days.add(value[:20])
    seen.add(value)
    return value


def _metadata(value: Any, costs: dict[float, int]) -> tuple[str | None, int]:
    """The metadata as stored (compact JSON text) and the event's cost in nanodollars
    (`costs`: this batch's float costs checked so far, and their nanodollars)."""
    if value is None:
        return None, 0
    if type(value) is not dict:
        raise _NotSure
    cost = value.get(COST_KEY)
    # Keyed by float only: 1 == True == 1.0 as keys, and True is no cost.
    cost_nanos = costs.get(cost) if type(cost) is float else None
    if cost_nanos is None:
        if cost is not None and not is_cost(cost):
            raise _NotSure
        cost_nanos = nanos(cost or 0)
        if type(cost) is float:
            costs[cost] = cost_nanos
    try:
        encoded = to_json(value)
    except ValueError:
        raise _NotSure from None
    if len(encoded) > MAX_METADATA_BYTES:  # bytes of UTF-8, as the SDK measures it
        raise _NotSure
    # Nested too deep needs more opening brackets than the limit (in C); only then is it walked.
    if encoded.count(b"{") + encoded.count(b"[") > MAX_METADATA_DEPTH and too_deep(value):
        raise _NotSure
    return encoded.decode(), cost_nanos


def valid_batch_rows(body: Any, now: str) -> list[list[Any]] | None:
    """The storage rows of a batch whose every event is valid; None: take the slow path."""
    if type(body) is not dict or len(body) != 1:
        return None
    events = body.get("events")
    if type(events) is not list or not 0 < len(events) <= MAX_BATCH_SIZE:
        return None
    rows = []
    timestamps: set[str] = set()
    days: set[str] = set()
    costs: dict[float, int] = {}
    fields = _FIELDS
    try:
        for event in events:
            if type(event) is not dict or not fields.issuperset(event):
                return None
            get = event.get
            rows.append(  # laid out as event_row.ROW_COLUMNS, spelled out: the loop is hot
                [
                    get("eventType"),
                    get("metricName"),
                    _quantity(get("quantity")),
                    get("idempotencyKey"),
                    _timestamp(get("timestamp"), now, timestamps, days),
                    get("subscriptionId"),
                    get("endUserId"),
                    get("agentId"),
                    get("workflowId"),
                    *_metadata(get("metadata"), costs),
                ]
            )
        # A batch's events mostly share their names (event type, metric, agent, end user...):
        # each column's distinct values are checked once. A value that is not a str never
        # equals one, so it stays in the set and is refused there; a list is unhashable.
        for at, optional in NAME_FIELDS:
            distinct = {row[at] for row in rows}
            if optional:
                distinct.discard(None)
            for value in distinct:
                _name(value)
    except (_NotSure, TypeError):
        return None
    return rows
