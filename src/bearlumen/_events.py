"""A queued usage event and its JSON form, shared by the shipper and the spool.

On the hot path an event is a plain tuple (cheaper than any object); this module is the one
place that knows its layout (the index names below: use them, never a bare number) and turns
it into the wire's camelCase dict.
"""

from __future__ import annotations

import operator
from itertools import chain, repeat
from json.encoder import encode_basestring
from typing import Any, Dict, List, Sequence, Tuple, Union

from pydantic_core import PydanticSerializationError, from_json, to_json

from ._timestamps import epoch_texts, format_epoch
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
    """`wire_event` of each event, in one loop: what the worker sends when `batch_body` declines.

    The same dicts, made without a call per event (but the timestamp's, `format_epoch`, which
    looks its date part up once per second); benchmarks/worker_cost.py --dicts.
    """
    wires: list[dict[str, Any]] = []
    append = wires.append
    for event in events:
        stamp = event[TIMESTAMP]
        if type(stamp) is float:
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


# -- the batch body, written from the queued tuples ------------------------------------------
# `batch_body` writes the JSON text of a batch without building a dict per event: building
# them (`wire_events`) cost as much as encoding them (benchmarks/worker_cost.py). Each field is
# handled as a column of the batch, in C and Rust (`zip`, `set`, `map`, `to_json`,
# `bytes.split`), with no Python per event, and the events are stitched together by one
# `bytes.join`. A field that is the same in every event of the batch (the event type, the ids,
# often the quantity) is written once. Anything unusual is left to the dicts (`wire_events`).

_NONE = type(None)
_NAMES = {str}
_OPTIONAL_NAMES = {str, _NONE}
_METADATA_KINDS = {dict, SizedMetadata, _NONE}
_FLOATS = {float}
# Written between metadata objects to find where each one ends when "},{" cannot (nested
# objects in lists, or some events without metadata): `"\u0000"` as JSON.
_METADATA_MARK = "\x00"
_METADATA_SEPARATOR = b',"\\u0000",'
_OPTIONAL_NAME_FIELDS = (
    (SUBSCRIPTION_ID, b"subscriptionId"),
    (END_USER_ID, b"endUserId"),
    (AGENT_ID, b"agentId"),
    (WORKFLOW_ID, b"workflowId"),
)
# What a batch body is text of: a constant (the same in every event) or one text per event.
_Piece = Union[bytes, List[bytes]]


def _name_texts(column: Sequence[Any], prefix: bytes, optional: bool = False) -> _Piece | None:
    """`prefix"value"` for each name of a column ("" for a None), once if all are equal.

    Names repeat, so each distinct one is escaped once; None when one is not an exact str.
    (`count` and `set` compare by equality; the names record() queues are exact str, and the
    check of each distinct value is what keeps anything else out.)
    """
    first = column[0]
    # Usually one name in every event (or None in every event): `count` compares by identity
    # first, about three times as fast as building a set.
    distinct = (first,) if column.count(first) == len(column) else set(column)
    kinds = _OPTIONAL_NAMES if optional else _NAMES
    if not all(type(name) in kinds for name in distinct):
        return None
    texts = {
        name: b"" if name is None else prefix + encode_basestring(name).encode()
        for name in distinct
    }
    if len(texts) == 1:
        return texts.popitem()[1]
    return list(map(texts.__getitem__, column))


def _number_texts(column: Sequence[Any]) -> _Piece | None:
    """`to_json` of each quantity, or None when one is not a finite JSON number (or null)."""
    text = to_json(column)[1:-1]
    # '"', '[' or '{': not a number (its text could hold a comma); N, I: NaN, Infinity.
    if b'"' in text or b"[" in text or b"{" in text or b"N" in text or b"I" in text:
        return None
    count = len(column)
    first = text.split(b",", 1)[0]
    # The same number in every event (a count of 1, say): n equal texts and n - 1 commas.
    if len(text) == count * (len(first) + 1) - 1 and text.count(first) == count:
        return first
    return text.split(b",")


def _string_texts(column: Sequence[Any]) -> list[bytes] | None:
    """Each value of a column of exact str, escaped and without its quotes (`to_json`'s
    text, split where one string ends: '","' never occurs inside an escaped string)."""
    text = to_json(column)
    # Only an array (a container) can hold '","' of its own: then check every value's type.
    if (text.find(b"[", 1) != -1 or b"{" in text) and set(map(type, column)) != _NAMES:
        return None
    if not (text.startswith(b'["') and text.endswith(b'"]')):
        return None
    texts = text[2:-2].split(b'","')
    return texts if len(texts) == len(column) else None


def _timestamp_texts(column: Sequence[Any]) -> tuple[_Piece | None, bytes]:
    """Each timestamp's text and what follows it: from time.time() floats, or the canonical
    text that record() made of a caller's timestamp (or a spool kept); (None, b"") for a mix."""
    kinds = set(map(type, column))
    if kinds == _FLOATS:
        return epoch_texts(column), b'Z"'
    if kinds == _NAMES:
        return _string_texts(column), b'"'
    return None, b""


def _finite_json(value: Any) -> bytes | None:
    """`to_json(value)`, or None when it holds NaN or an infinity (which are not JSON).

    The words are searched for; only when one is found (in a string, say) is it written again
    with those numbers as null, to tell: a word inside a string is the same text both ways.
    """
    text = to_json(value)
    if (b"NaN" in text or b"Infinity" in text) and text != to_json(value, inf_nan_mode="null"):
        return None
    return text


def _metadata_texts(column: Sequence[Any]) -> tuple[_Piece, _Piece, _Piece] | None:
    """The metadata of each event as `(before, texts, after)`; None when it is not JSON here.

    The usual batch, metadata in every event, is one `to_json` of them all, split where one
    object ends and the next begins.
    """
    kinds = set(map(type, column))
    if kinds == {_NONE}:
        return b"", b"", b""
    if not kinds <= _METADATA_KINDS:
        return None
    count = len(column)
    if _NONE not in kinds:
        text = _finite_json(column)
        if text is None:
            return None
        texts = text[2:-2].split(b"},{")
        if len(texts) == count:
            return b',"metadata":{', texts, b"}"
    # Nested objects in lists, or events without metadata: a mark between each two.
    text = _finite_json(list(chain.from_iterable(zip(column, repeat(_METADATA_MARK)))))
    if text is None:
        return None
    texts = text[1 : -len(_METADATA_SEPARATOR)].split(_METADATA_SEPARATOR)
    if len(texts) != count:
        return None
    if _NONE in kinds:
        texts = [b"" if text == b"null" else b',"metadata":' + text for text in texts]
        return b"", texts, b""
    return b',"metadata":', texts, b""


def batch_body(events: Sequence[QueuedEvent]) -> bytes | None:
    """`to_json({"events": wire_events(events)})`, the same JSON, about twice as fast; or None
    when an event is not the usual kind (then the caller encodes the wire dicts: the general path).

    The usual kind: names and keys exact str; quantities JSON numbers; timestamps all floats
    from time.time() (2004 to 2286, at most 89 s apart) or all text; metadata a dict or None;
    all of it valid UTF-8. NaN, Infinity, a mix of float and text timestamps, objects with no
    JSON form: None. Names are escaped as `to_json` escapes them, and quantities, metadata
    and keys are written by `to_json` itself, so the text is the dicts' byte for byte
    (tests/test_batch_body.py).
    """
    if not events:
        return None
    columns = list(zip(*events))
    if len(columns) < len(FIELDS):
        return None
    try:
        pieces = _event_pieces(columns)
        if pieces is None:
            return None
        return _join_events(_merge_constants(pieces), len(events))
    except (PydanticSerializationError, ValueError, TypeError, OverflowError, RecursionError):
        return None  # a lone surrogate, NaN in a timestamp: the dicts' way sets the event apart


def _event_pieces(columns: Sequence[Sequence[Any]]) -> list[_Piece] | None:
    """The texts an event is made of, in order (constants and columns); None: not usual."""
    metadata = _metadata_texts(columns[METADATA])
    pieces = [
        _name_texts(columns[EVENT_TYPE], b'{"eventType":'),
        _name_texts(columns[METRIC_NAME], b',"metricName":'),
        b',"quantity":',
        _number_texts(columns[QUANTITY]),
        b',"idempotencyKey":"',
        _string_texts(columns[IDEMPOTENCY_KEY]),
        b'","timestamp":"',
        *_timestamp_texts(columns[TIMESTAMP]),
        *(
            _name_texts(columns[index], b',"%s":' % field, optional=True)
            for index, field in _OPTIONAL_NAME_FIELDS
        ),
        *(metadata or (None,)),
        b"}",
    ]
    if any(piece is None for piece in pieces):
        return None
    return pieces


def _merge_constants(pieces: list[_Piece]) -> list[_Piece]:
    """The pieces with each run of constants made one: the fewer per event, the cheaper."""
    merged: list[_Piece] = []
    for piece in pieces:
        last = merged[-1] if merged else None
        if type(piece) is bytes and type(last) is bytes:
            merged[-1] = last + piece
        else:
            merged.append(piece)
    return merged


def _join_events(pieces: list[_Piece], count: int) -> bytes:
    """The batch's text: each event's pieces in order, events separated by commas."""
    last = pieces[-1]  # a constant: every event ends with "}"
    assert type(last) is bytes
    pieces[-1] = last + b","
    # Each piece into every len(pieces)-th place of one list: extended slice assignment is C,
    # and about twice as fast as interleaving with zip and chain (benchmarks/worker_cost.py).
    width = len(pieces)
    texts: list[bytes] = [b""] * (width * count)
    for place, piece in enumerate(pieces):
        texts[place::width] = [piece] * count if isinstance(piece, bytes) else piece
    texts[-1] = texts[-1][:-1] + b"]}"
    texts[0] = b'{"events":[' + texts[0]
    return b"".join(texts)


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
