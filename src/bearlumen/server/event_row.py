"""The stored usage event's layout, in one place: the row a handler builds, the columns of the
two event tables, and what a read selects and answers.

A row has the queued event's fields (`_events.FIELDS`: the same names in the same order, so one
layout runs from the caller's `record()` to the server's row, and the same index names serve
both), the timestamp stored as `ts` (canonical text), the metadata as its JSON text, and one
more: the cost it names, in nanodollars (`COST_NANOS`). Index a row by these names, never by a
bare number.
"""

from __future__ import annotations

from .._events import (
    AGENT_ID,
    END_USER_ID,
    EVENT_TYPE,
    FIELDS,
    IDEMPOTENCY_KEY,
    METADATA,
    METRIC_NAME,
    QUANTITY,
    SUBSCRIPTION_ID,
    TIMESTAMP,
    WORKFLOW_ID,
)

__all__ = [
    "AGENT_ID",
    "COST_NANOS",
    "END_USER_ID",
    "EVENT_TYPE",
    "IDEMPOTENCY_KEY",
    "METADATA",
    "METRIC_NAME",
    "QUANTITY",
    "SUBSCRIPTION_ID",
    "TIMESTAMP",
    "WORKFLOW_ID",
]

# The row a handler builds (a list, one value per column, in this order).
ROW_COLUMNS = (*("ts" if name == "timestamp" else name for name in FIELDS), "cost_nanos")
COST_NANOS = len(FIELDS)
# Where the names are in a row, and whether each may be None.
NAME_FIELDS = (
    (EVENT_TYPE, False),
    (METRIC_NAME, False),
    (IDEMPOTENCY_KEY, True),
    (SUBSCRIPTION_ID, True),
    (END_USER_ID, True),
    (AGENT_ID, True),
    (WORKFLOW_ID, True),
)

# Both event tables (usage_events and the staged one, whose rows move as they are): what a
# statement shares (seq, tenant), the row's own columns, and when it was received.
STORED_COLUMNS = ("seq", "tenant", *ROW_COLUMNS, "received_at")
_SQL_TYPES = {
    "seq": "INTEGER PRIMARY KEY",
    "tenant": "INTEGER NOT NULL",
    "event_type": "TEXT NOT NULL",
    "metric_name": "TEXT NOT NULL",
    "quantity": "REAL NOT NULL",
    "ts": "TEXT NOT NULL",
    # provider_cost_usd in 1e-9 dollars: sums are exact
    "cost_nanos": "INTEGER NOT NULL",
    "received_at": "TEXT NOT NULL",
}
TABLE_COLUMNS = ",\n".join(f"    {name} {_SQL_TYPES.get(name, 'TEXT')}" for name in STORED_COLUMNS)

# What a read of events selects, and the key of each in the answer (docs/wire-api.md's
# StoredEvent): every stored column but the tenant and the cost.
ANSWER_KEYS = {
    "seq": "id",
    "event_type": "eventType",
    "metric_name": "metricName",
    "quantity": "quantity",
    "idempotency_key": "idempotencyKey",
    "ts": "timestamp",
    "subscription_id": "subscriptionId",
    "end_user_id": "endUserId",
    "agent_id": "agentId",
    "workflow_id": "workflowId",
    "metadata": "metadata",
    "received_at": "receivedAt",
}
READ_COLUMNS = ", ".join(ANSWER_KEYS)
assert set(ANSWER_KEYS) == set(STORED_COLUMNS) - {"tenant", "cost_nanos"}
assert ROW_COLUMNS.index("quantity") == QUANTITY and ROW_COLUMNS.index("ts") == TIMESTAMP
assert ROW_COLUMNS.index("metadata") == METADATA
