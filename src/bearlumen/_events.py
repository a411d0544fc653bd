"""A queued usage event and its JSON form, shared by the shipper and the spool.

On the hot path an event is a plain tuple (cheaper than any object); this module is the one
place that knows its layout and turns it into the wire's camelCase dict.
"""

from __future__ import annotations

import time
from typing import Any, Tuple

from pydantic_core import PydanticSerializationError, from_json, to_json

from ._types import UsageRecordInput

# (event_type, metric_name, quantity, idempotency_key, timestamp, subscription_id, end_user_id,
#  agent_id, workflow_id, metadata[, spool segment]); timestamp is a float from time.time() or a
# canonical RFC 3339 string.
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

_second_cache: list[Any] = [None, ""]


def format_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with microseconds; the date part is cached per second, which is most calls."""
    whole = int(seconds)
    if _second_cache[0] != whole:
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
        _second_cache[0] = whole
    micros = int((seconds - whole) * 1_000_000)
    return f"{_second_cache[1]}{micros:06d}Z"


def wire_event(event: QueuedEvent) -> dict[str, Any]:
    """The event as the API takes it: camelCase keys, no nulls, the timestamp as text.

    Spelled out rather than zipped with WIRE_FIELDS: the worker calls it for every event, and
    this is about twice as fast.
    """
    stamp = event[4]
    wire: dict[str, Any] = {
        "eventType": event[0],
        "metricName": event[1],
        "quantity": event[2],
        "idempotencyKey": event[3],
        "timestamp": format_timestamp(stamp) if type(stamp) is float else stamp,
    }
    if event[5] is not None:
        wire["subscriptionId"] = event[5]
    if event[6] is not None:
        wire["endUserId"] = event[6]
    if event[7] is not None:
        wire["agentId"] = event[7]
    if event[8] is not None:
        wire["workflowId"] = event[8]
    if event[9] is not None:
        wire["metadata"] = event[9]
    return wire


def encode_event(event: QueuedEvent) -> bytes:
    """One event as JSON, or ValueError when it has none (an unknown object, NaN, a surrogate).

    pydantic_core.to_json is about four times faster than json.dumps (benchmarks/RESULTS.md);
    it writes datetimes, sets and the like in their usual JSON forms, but NaN and Infinity as
    bare words, which are not JSON: whenever those words appear, the text is parsed back strictly.
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
        record["timestamp"] = format_timestamp(record["timestamp"])
    return record  # type: ignore[return-value]
