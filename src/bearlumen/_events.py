"""A queued usage event and its JSON form, shared by the shipper and the spool.

On the hot path an event is a plain tuple (cheaper than any object); this module is the one
place that knows its layout (the index names below: use them, never a bare number) and turns
it into the wire's camelCase dict.
"""

from __future__ import annotations

import operator
from typing import Any, Dict, List, Sequence, Tuple

from pydantic_core import PydanticSerializationError, from_json, to_json

from ._types import UsageRecordInput
from ._wire import THREE_DIGITS, format_epoch, second_text

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


def wire_event(event: QueuedEvent) -> dict[str, Any]:
    """The event as the API takes it: camelCase keys, no nulls, the timestamp as text.

    Spelled out rather than zipped with WIRE_FIELDS: the worker calls it for every event, and
    this is about twice as fast.
    """
    stamp = event[TIMESTAMP]
    wire: dict[str, Any] = {
        "eventType": event[EVENT_TYPE],
        "metricName": event[METRIC_NAME],
        "quantity": event[QUANTITY],
        "idempotencyKey": event[IDEMPOTENCY_KEY],
        "timestamp": format_epoch(stamp) if type(stamp) is float else stamp,
    }
    if event[SUBSCRIPTION_ID] is not None:
        wire["subscriptionId"] = event[SUBSCRIPTION_ID]
    if event[END_USER_ID] is not None:
        wire["endUserId"] = event[END_USER_ID]
    if event[AGENT_ID] is not None:
        wire["agentId"] = event[AGENT_ID]
    if event[WORKFLOW_ID] is not None:
        wire["workflowId"] = event[WORKFLOW_ID]
    if event[METADATA] is not None:
        wire["metadata"] = event[METADATA]
    return wire


def wire_events(events: Sequence[QueuedEvent]) -> List[dict[str, Any]]:
    """`wire_event` of each event, in one loop: what the worker builds for every batch.

    The same dicts, made without a call per event and with the timestamp's date part looked up
    once per second of the batch (`format_epoch`'s text, inlined); benchmarks/worker_cost.py.
    """
    wires: list[dict[str, Any]] = []
    append = wires.append
    second: int | None = None  # the whole second that `prefix` is the text of
    prefix = ""
    for event in events:
        stamp = event[TIMESTAMP]
        if type(stamp) is float:
            whole = int(stamp)
            if whole != second:
                second, prefix = whole, second_text(whole)
            micros = int((stamp - whole) * 1_000_000)
            if micros >= 0:
                stamp = f"{prefix}{THREE_DIGITS[micros // 1000]}{THREE_DIGITS[micros % 1000]}Z"
            else:  # before 1970, never from time.time(): the table has no negatives
                stamp = format_epoch(stamp)
        wire: dict[str, Any] = {
            "eventType": event[EVENT_TYPE],
            "metricName": event[METRIC_NAME],
            "quantity": event[QUANTITY],
            "idempotencyKey": event[IDEMPOTENCY_KEY],
            "timestamp": stamp,
        }
        if event[SUBSCRIPTION_ID] is not None:
            wire["subscriptionId"] = event[SUBSCRIPTION_ID]
        if event[END_USER_ID] is not None:
            wire["endUserId"] = event[END_USER_ID]
        if event[AGENT_ID] is not None:
            wire["agentId"] = event[AGENT_ID]
        if event[WORKFLOW_ID] is not None:
            wire["workflowId"] = event[WORKFLOW_ID]
        if event[METADATA] is not None:
            wire["metadata"] = event[METADATA]
        append(wire)
    return wires


def encode_event(event: QueuedEvent) -> bytes:
    """One event as JSON, or ValueError when it has none (an unknown object, NaN, a surrogate).

    pydantic_core.to_json is about four times faster than json.dumps (benchmarks/RESULTS.md);
    it writes NaN and Infinity as bare words, which are not JSON: whenever those words appear,
    the text is parsed back strictly. (record() refuses such values; events replayed from a
    spool written by an older version may still hold them.)
    """
    try:
        text = to_json(wire_event(event))
    except PydanticSerializationError as exc:
        raise ValueError(str(exc)) from None
    if b"NaN" in text or b"Infinity" in text:
        from_json(text, allow_inf_nan=False)  # ValueError when a number is NaN or infinite
    return text


def from_wire(wire: dict[str, Any]) -> QueuedEvent:
    return tuple(wire.get(name) for name in WIRE_FIELDS)


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
