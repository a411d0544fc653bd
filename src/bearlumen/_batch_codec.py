"""A batch on the wire: the request body the shipper sends, and how it reads the answer.

The body is written from the queued events' columns when they are the usual kind
(`_events.batch_body`), from wire dicts otherwise, one event at a time only to set apart the
events that cannot be JSON. The answer to a batch that recorded every event is recognised by a
count of bytes instead of being decoded.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List

from pydantic_core import PydanticSerializationError, to_json

from ._events import QueuedEvent, batch_body, encode_event, wire_events

# Has a batch written a null (a None in metadata)? From then on every batch goes straight to the
# two-word check (see encode_batch), as before. Senders set it without a lock: either value is
# correct, it only picks the cheaper check.
_nulls_seen = False


def encode_batch(
    chunk: List[QueuedEvent],
) -> tuple[bytes, list[QueuedEvent], list[tuple[QueuedEvent, str]]]:
    """JSON of a batch, the events in it, and the events that cannot be JSON (with why).

    The usual batch is written from its columns (`batch_body`, about half the cost). Any
    other is encoded as a list of wire dicts in one call; only when that fails, or writes a
    NaN or an Infinity, is it encoded again one event at a time to set the bad ones apart.

    NaN and Infinity are not JSON, and the body is searched for them. Written as `null`
    instead, one word is searched for, not two: half the cost (benchmarks/worker_cost.py).
    A batch never writes null for an absent field, so a body without one holds neither; a
    body with one (metadata holding a None) is written again as before, and searched for both;
    so are all later batches, which would likely hold a None too.
    """
    global _nulls_seen
    body = batch_body(chunk)
    if body is not None:
        return body, chunk, []
    try:
        batch = {"events": wire_events(chunk)}
        if not _nulls_seen:
            body = to_json(batch, inf_nan_mode="null")
            if b"null" not in body:
                return body, chunk, []
            _nulls_seen = True
        body = to_json(batch)
    except (PydanticSerializationError, ValueError, OverflowError, RecursionError):
        pass  # an object with no JSON form, a lone surrogate, a timestamp that is no time
    else:
        if b"NaN" not in body and b"Infinity" not in body:
            return body, chunk, []
    parts: list[bytes] = []
    good: list[QueuedEvent] = []
    bad: list[tuple[QueuedEvent, str]] = []
    for event in chunk:
        try:
            parts.append(encode_event(event))
        except (ValueError, OverflowError, RecursionError) as exc:
            bad.append((event, f"the event cannot be sent as JSON: {exc}"))
            continue
        good.append(event)
    return b'{"events":[' + b",".join(parts) + b"]}", good, bad


# What `batch_answer_reader` returns for an answer that says every event was recorded.
ALL_RECORDED: Any = {"all recorded": True}
RECORDED = b'"status":"recorded"'


def batch_answer_reader(count: int) -> Callable[[bytes], Any]:
    """How the shipper decodes the answer to a batch of `count` events.

    Decoding the answer's JSON (a result per event) only to count them `recorded` cost about a
    tenth of the worker's time (benchmarks/worker_cost.py): when the text says that every event
    was recorded, a count of bytes says so instead. `"status":"recorded"` cannot occur inside a
    JSON string (its quotes would be escaped); any other status, or another spelling (spaces),
    decodes the answer in full, as before.
    """

    def read(content: bytes) -> Any:
        if (
            content.count(RECORDED) == count
            and content.startswith(b"{")
            and b'"duplicate"' not in content
            and b'"rejected"' not in content
        ):
            return ALL_RECORDED
        return json.loads(content)

    return read
