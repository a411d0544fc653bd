"""A batch on the wire: the request body the shipper sends, and how it reads the answer.

Everything that turns queued events (`_events`' tuples) into JSON lives here, so the ways a body
can be written, which must agree byte for byte, are side by side (tests/test_batch_body.py,
tests/test_wire_encoding.py):

- one event's wire form (`wire_event`, `encode_event`, and back: `from_wire`), which is also the
  spool's line;
- a batch's body (`encode_batch`): written from the queued events' columns when they are the
  usual kind (`batch_body`, no dict per event), from wire dicts otherwise (`wire_events`), one
  event at a time only to set apart the events that cannot be JSON;
- the answer: one that says every event was recorded is recognised by a count of bytes instead
  of being decoded (`batch_answer_reader`); any other is read result by result (`read_results`).
"""

from __future__ import annotations

import json
from itertools import chain, repeat
from json.encoder import encode_basestring
from typing import Any, Callable, List, NamedTuple, Sequence, Union

from pydantic_core import PydanticSerializationError, from_json, to_json

from ._events import (
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
    WIRE_FIELDS,
    WORKFLOW_ID,
    QueuedEvent,
    SizedMetadata,
)
from ._timestamps import epoch_texts, format_epoch

# -- one event on the wire: an element of a batch, and a line of the spool ---------------------


def wire_event(event: QueuedEvent) -> dict[str, Any]:
    """The event as the API takes it: camelCase keys, no nulls, the timestamp as text.

    Spelled out rather than zipped with WIRE_FIELDS, about twice as fast: in crash-safe mode
    record() writes every event's spool line with it (`encode_event`). The worker's batches
    use `wire_events`, the same dicts made in one loop.
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
    """A wire dict (a spool's line, parsed) as a queued event: what `wire_event` wrote, back."""
    return tuple(wire.get(name) for name in WIRE_FIELDS)


# -- the request body ---------------------------------------------------------------------

# Has a batch written a null (a None in metadata)? From then on every batch goes straight to the
# two-word check (see encode_batch): a body with a null cannot tell a None from a NaN. Senders set
# it without a lock: either value is correct, it only picks the cheaper check.
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
    body with one (metadata holding a None) is written again with NaN and Infinity as they are,
    and searched for both; so are all later batches, which would likely hold a None too.
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


# -- the answer ---------------------------------------------------------------------------
# What `batch_answer_reader` returns for an answer that says every event was recorded.
ALL_RECORDED: Any = {"all recorded": True}
RECORDED = b'"status":"recorded"'
STATUSES = ("recorded", "duplicate", "rejected")


def batch_answer_reader(count: int) -> Callable[[bytes], Any]:
    """How the shipper decodes the answer to a batch of `count` events.

    Decoding the answer's JSON (a result per event) only to count them `recorded` cost about a
    tenth of the worker's time (benchmarks/worker_cost.py): when the text says that every event
    was recorded, a count of bytes says so instead. `"status":"recorded"` cannot occur inside a
    JSON string (its quotes would be escaped). The text must also be the server's own compact
    form, its results starting at index 0 and ending at index `count - 1`. Any other status,
    another spelling (spaces), or another shape decodes the answer in full, and `read_results`
    checks every result. (Read by bytes, results whose indexes repeat or skip while the first
    and the last are right are not caught: that is the server's own answer, counts and all,
    with its numbers scrambled; checking each index would cost the worker more than the
    decoding this saves.)
    """
    first = b'"results":[{"index":0,'
    last = b'{"index":%d,' % (count - 1)

    def read(content: bytes) -> Any:
        if (
            content.count(RECORDED) == count
            and content.startswith(b"{")
            and content.find(first, 0, 256) > 0  # near the start: not a whole scan more
            and content.find(last, len(content) - 256) > 0  # near the end
            and b'"duplicate"' not in content
            and b'"rejected"' not in content
        ):
            return ALL_RECORDED
        return json.loads(content)

    return read


class BatchResults(NamedTuple):
    """A batch's answer, event by event (positions in the batch that was sent)."""

    recorded: Sequence[int]
    duplicate: Sequence[int]
    rejected: Sequence[tuple[int, dict[str, Any]]]  # with the server's error, when it gave one
    unconfirmed: Sequence[int]  # no readable result for them: the answer does not confirm them
    problem: str | None  # what was wrong with the answer, when something was


def read_results(answer: Any, count: int) -> BatchResults:
    """Each of `count` events' result in a 200 answer, trusting only what the answer confirms.

    An event is confirmed by exactly one result whose `index` is its position and whose
    `status` is recorded, duplicate or rejected. An answer that is no object or has no
    `results` list confirms none; an event with no result, with a result that cannot be read,
    or with two results for its index is unconfirmed.
    """
    if answer is ALL_RECORDED:
        return BatchResults(range(count), (), (), (), None)
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        problem = "it has no results" if isinstance(answer, dict) else "it is not a JSON object"
        return BatchResults((), (), (), range(count), problem)
    by_index: dict[int, Any] = {}
    repeated: set[int] = set()
    strays: list[Any] = []  # results for no event of the batch: told by their count and one
    for result in results:
        index = result.get("index") if isinstance(result, dict) else None
        if type(index) is not int or not 0 <= index < count:
            strays.append(result)
        elif index in by_index:
            repeated.add(index)
        else:
            by_index[index] = result
    recorded: list[int] = []
    duplicate: list[int] = []
    rejected: list[tuple[int, dict[str, Any]]] = []
    unconfirmed: list[int] = []
    for index in range(count):
        result = by_index.get(index)
        status = None if result is None or index in repeated else result.get("status")
        if status == "recorded":
            recorded.append(index)
        elif status == "duplicate":
            duplicate.append(index)
        elif status == "rejected":
            error = result.get("error")  # type: ignore[union-attr]
            rejected.append((index, error if isinstance(error, dict) else {}))
        else:
            unconfirmed.append(index)
    problems = []
    if strays:
        problems.append(
            f"{len(strays)} result(s) for no event of the batch (the first: {_brief(strays[0])})"
        )
    if repeated:
        problems.append(f"{len(repeated)} event(s) answered twice")
    missing = sum(1 for index in unconfirmed if index not in by_index)
    if missing:
        problems.append(f"no result for {missing} of {count} event(s)")
    if len(unconfirmed) > missing + len(repeated):
        problems.append("a result with no known status")
    return BatchResults(
        recorded, duplicate, rejected, unconfirmed, "; ".join(problems) if problems else None
    )


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
