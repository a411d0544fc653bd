"""The queued usage event's layout: the one home of the event's schema on the client.

On the hot path an event is a plain tuple (cheaper than any object). This module is the one
place that knows its layout: the fields in order (`FIELDS`; `WIRE_FIELDS` as the API spells
them) and the index names below (use them, never a bare number; the server's rows share them,
`server/event_row.py`). It also says what an event weighs against `max_queue_bytes`, and gives
it back in the caller's own shape for `on_error`. Its JSON form, one event or a batch, is
`_batch_codec`'s: nothing here writes JSON.
"""

from __future__ import annotations

import operator
from typing import Any, Dict, Sequence, Tuple

from ._timestamps import format_epoch
from ._types import UsageRecordInput

# (event_type, metric_name, quantity, idempotency_key, timestamp, subscription_id, end_user_id,
#  agent_id, workflow_id, metadata[, spool segment]); timestamp is a float from time.time() or a
# canonical RFC 3339 string; metadata is record()'s own snapshot (never the caller's dict).
QueuedEvent = Tuple[Any, ...]
FIELDS = (
    "event_type",
    "metric_name",
    "quantity",
    "idempotency_key",
    "timestamp",
    "subscription_id",
    "end_user_id",
    "agent_id",
    "workflow_id",
    "metadata",
)
WIRE_FIELDS = (
    "eventType",
    "metricName",
    "quantity",
    "idempotencyKey",
    "timestamp",
    "subscriptionId",
    "endUserId",
    "agentId",
    "workflowId",
    "metadata",
)
(
    EVENT_TYPE,
    METRIC_NAME,
    QUANTITY,
    IDEMPOTENCY_KEY,
    TIMESTAMP,
    SUBSCRIPTION_ID,
    END_USER_ID,
    AGENT_ID,
    WORKFLOW_ID,
    METADATA,
    SEGMENT,  # the spool segment holding the event (crash-safe mode only)
) = range(len(FIELDS) + 1)


# -- the queue's bytes bound (Client(max_queue_bytes=...)) ------------------------------------
# What a queued event holds in memory, roughly: the tuple, its strings and a small metadata
# dict come to about EVENT_BYTES; metadata larger than SMALL_METADATA adds its own size.
EVENT_BYTES = 512
SMALL_METADATA = 1024


class SizedMetadata(Dict[str, Any]):
    """A metadata snapshot that is large: it carries its size (bytes of JSON, roughly)."""

    __slots__ = ("size",)

    def __init__(self, items: dict[str, Any], size: int) -> None:
        super().__init__(items)
        self.size = size


def queued_bytes(event: QueuedEvent) -> int:
    """What `event` counts against `max_queue_bytes`; the same number at enqueue and dequeue."""
    metadata = event[METADATA]
    if type(metadata) is SizedMetadata:
        return EVENT_BYTES + metadata.size
    return EVENT_BYTES


_metadata_of = operator.itemgetter(METADATA)


def events_bytes(events: Sequence[QueuedEvent]) -> int:
    """`sum(map(queued_bytes, events))`, without a Python call per event when no metadata in
    them is large (the usual case: the worker settles the count once per batch)."""
    if SizedMetadata in map(type, map(_metadata_of, events)):
        return sum(map(queued_bytes, events))
    return EVENT_BYTES * len(events)


def to_record_input(event: QueuedEvent) -> UsageRecordInput:
    """The event in the shape `usage.record_batch` takes, for `on_error`."""
    record: dict[str, Any] = {
        name: value for name, value in zip(FIELDS, event) if value is not None
    }
    if isinstance(record.get("timestamp"), float):
        record["timestamp"] = format_epoch(record["timestamp"])
    if "metadata" in record:
        record["metadata"] = dict(record["metadata"])  # a plain dict, the caller's to keep
    return record  # type: ignore[return-value]
