"""A batch on the wire: the request body the shipper sends, and how it reads the answer.

The body is written from the queued events' columns when they are the usual kind
(`_events.batch_body`), from wire dicts otherwise, one event at a time only to set apart the
events that cannot be JSON. The answer to a batch that recorded every event is recognised by a
count of bytes instead of being decoded.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, NamedTuple, Sequence

from pydantic_core import PydanticSerializationError, to_json

from ._events import QueuedEvent, batch_body, encode_event, wire_events

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
