"""The worker's batch encoder writes exactly the wire format of docs/wire-api.md.

`encode_batch` writes a batch from the queued events' columns (`batch_body`) or from dicts built
in one loop (`wire_events`), the timestamp formatted inline: that is where the worker's cost per
event lies. These tests hold it to a reference written the plain way: the fields zipped with
their wire names, absent ones left out, the timestamp formatted with `:06d`. Both outputs are
decoded and compared, for every combination of optional fields and the kinds of metadata,
quantity and timestamp a queued event can hold.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import threading
import time
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bearlumen._batch_codec
import bearlumen._shipper
from bearlumen import Client
from bearlumen._batch_codec import (
    ALL_RECORDED,
    batch_answer_reader,
    batch_body,
    encode_batch,
    encode_event,
)
from bearlumen._events import (
    FIELDS,
    IDEMPOTENCY_KEY,
    METADATA,
    TIMESTAMP,
    WIRE_FIELDS,
    QueuedEvent,
    SizedMetadata,
    queued_bytes,
)
from bearlumen._shipper import Shipper, _FlushRequest
from bearlumen._timestamps import format_epoch
from bearlumen._validation import metadata_snapshot

from ._shipper_probe import held_bytes, set_held_bytes, shipper_of

OPTIONAL = ("subscription_id", "end_user_id", "agent_id", "workflow_id", "metadata")
METADATA_KINDS: list[Any] = [
    {"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50},
    {"usage": {"input": 1200, "cached": [0, 128, {"deep": [None, True, 1.5e-7]}]}, "n": None},
    {"modèle": "clé é 🦙", "日本": ["テキスト", "\u2028", '\\"quoted"'], "ctl": "\x01\t\n"},
    {"blob": "x" * 5_000, "provider_cost_usd": 0.01},  # large: a SizedMetadata snapshot
    {},
]
QUANTITIES = (150000, 0, 2**53, 0.5, 1e-300, 123456.789)
STAMPS = (
    1_700_000_000.5,
    1_700_000_000.0,
    1_732_579_200.000001,
    1_700_000_000.999999,
    4_102_444_799.999999,
    0.25,
    "2024-01-01T12:00:00.000000Z",
)


def reference_timestamp(seconds: float) -> str:
    """The timestamp as the encoder wrote it before it was made cheaper."""
    whole = int(seconds)
    date = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
    return f"{date}{int((seconds - whole) * 1_000_000):06d}Z"


def reference_wire(event: QueuedEvent) -> dict[str, Any]:
    wire = {
        name: value for name, value in zip(WIRE_FIELDS, event[: len(FIELDS)]) if value is not None
    }
    if type(wire["timestamp"]) is float:
        wire["timestamp"] = reference_timestamp(wire["timestamp"])
    return wire


def reference_batch(events: list[QueuedEvent]) -> Any:
    """The decoded body the plain encoder writes (json.dumps: an encoder independent of ours)."""
    body = json.dumps({"events": [reference_wire(e) for e in events]}, ensure_ascii=False)
    return json.loads(body)


def event(
    key: str, quantity: Any, stamp: Any, present: tuple[bool, ...], metadata: Any
) -> QueuedEvent:
    optional = dict(zip(OPTIONAL, present))
    return (
        "token_usage",
        "llm_tokens",
        quantity,
        key,
        stamp,
        "sub_1" if optional["subscription_id"] else None,
        "eu_é" if optional["end_user_id"] else None,
        "support-bot" if optional["agent_id"] else None,
        "customer-onboarding" if optional["workflow_id"] else None,
        metadata_snapshot(metadata) if optional["metadata"] else None,
    )


@pytest.fixture(params=[False, True], ids=["no-null-yet", "nulls-seen"])
def nulls_seen(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Either check the encoder picks (one word while no batch wrote null, two once one did)."""
    monkeypatch.setattr(bearlumen._batch_codec, "_nulls_seen", request.param)


def every_combination() -> list[QueuedEvent]:
    events = []
    combos = itertools.product(
        itertools.product((False, True), repeat=len(OPTIONAL)), METADATA_KINDS, STAMPS
    )
    for number, (present, metadata, stamp) in enumerate(combos):
        quantity = QUANTITIES[number % len(QUANTITIES)]
        events.append(event(f"key-{number}-é", quantity, stamp, present, metadata))
    return events


def test_every_combination_of_fields_encodes_as_the_reference_does(nulls_seen: None) -> None:
    events = every_combination()
    assert any(type(e[METADATA]) is SizedMetadata for e in events)  # the large kind is really large
    for start in range(0, len(events), 1000):
        chunk = events[start : start + 1000]
        body, good, bad = encode_batch(chunk)
        assert (good, bad) == (chunk, [])
        assert json.loads(body) == reference_batch(chunk)


def test_every_combination_the_columns_write_encodes_as_the_reference_does() -> None:
    # The same, for the batches `batch_body` writes itself (timestamps all floats from 2004
    # on and within 89 s, or all text): held to the json.dumps reference, an encoder
    # independent of ours.
    events = every_combination()
    floats = [e for e in events if type(e[TIMESTAMP]) is float and e[TIMESTAMP] >= 2**30]
    seconds = {int(e[TIMESTAMP]) for e in floats}
    chunks = [[e for e in floats if int(e[TIMESTAMP]) == s] for s in seconds]
    chunks.append([e for e in events if type(e[TIMESTAMP]) is str])
    assert sum(map(len, chunks)) > len(events) // 2
    for chunk in chunks:
        body = batch_body(chunk)
        assert body is not None
        assert json.loads(body) == reference_batch(chunk)
        assert encode_batch(chunk) == (body, chunk, [])


def test_no_null_is_sent_for_an_absent_field(nulls_seen: None) -> None:
    chunk = [event("k", 1, 1_700_000_000.5, (False,) * len(OPTIONAL), None)]
    body = encode_batch(chunk)[0]
    assert json.loads(body)["events"] == [
        {
            "eventType": "token_usage",
            "metricName": "llm_tokens",
            "quantity": 1,
            "idempotencyKey": "k",
            "timestamp": "2023-11-14T22:13:20.500000Z",
        }
    ]
    assert b"null" not in body


def test_a_batch_with_an_event_that_cannot_be_json_encodes_the_rest_as_the_reference(
    nulls_seen: None,
) -> None:
    events = every_combination()[:300]
    poisoned = [*events[:100], event("bad", 1, 1.5, (True,) * 5, {}), *events[100:]]
    poisoned[100] = (*poisoned[100][:METADATA], {"when": object()})
    poisoned.insert(200, (*events[0][:METADATA], {"score": float("nan")}))
    body, good, bad = encode_batch(poisoned)
    assert good == events
    assert [e[IDEMPOTENCY_KEY] for e, _ in bad] == ["bad", events[0][IDEMPOTENCY_KEY]]
    assert json.loads(body) == reference_batch(events)
    assert [json.loads(encode_event(e)) for e in events] == reference_batch(events)["events"]


def test_nan_and_infinity_are_never_sent_whichever_check_runs(nulls_seen: None) -> None:
    plain = [event(f"k{n}", 1, 1_700_000_000.5, (True,) * 5, {"cost": 0.5}) for n in range(5)]
    nan = event("nan", float("nan"), 1.5, (False,) * 5, None)
    inf = (*event("inf", 1, 1.5, (False,) * 5, None)[:METADATA], {"score": -float("inf")})
    body, good, bad = encode_batch([plain[0], nan, *plain[1:3], inf, *plain[3:]])
    assert good == plain and [e[IDEMPOTENCY_KEY] for e, _ in bad] == ["nan", "inf"]
    assert json.loads(body) == reference_batch(plain)
    assert b"NaN" not in body and b"Infinity" not in body and b"null" not in body


def test_a_batch_spanning_many_seconds_in_any_order_has_each_events_own_second(
    nulls_seen: None,
) -> None:
    draw = random.Random(14)
    stamps = [1_700_000_000 + draw.randrange(5) + draw.random() for _ in range(1000)]
    chunk = [event(f"k{n}", 1, s, (False,) * 5, None) for n, s in enumerate(stamps)]
    assert json.loads(encode_batch(chunk)[0]) == reference_batch(chunk)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_799.999, allow_nan=False))
def test_any_time_is_formatted_as_the_reference_does(seconds: float) -> None:
    assert format_epoch(seconds) == reference_timestamp(seconds)
    chunk = [event("k", 1, seconds, (False,) * 5, None)]
    assert json.loads(encode_batch(chunk)[0])["events"][0]["timestamp"] == reference_timestamp(
        seconds
    )


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_batches_encoded_by_many_threads_at_once_keep_every_timestamp(
    eager_thread_switches: None,
) -> None:
    # Senders encode batches concurrently and share the per-second cache: a pairing of one
    # second's number with another second's text would show as a wrong date part here.
    start = threading.Barrier(8)
    wrong: list[tuple[Any, Any]] = []

    def encode_many(seed: int) -> None:
        draw = random.Random(seed)
        chunks = [
            [
                event("k", 1, 1_700_000_000 + draw.randrange(40) + 0.25, (False,) * 5, None)
                for _ in range(50)
            ]
            for _ in range(40)
        ]
        start.wait()
        for chunk in chunks:
            decoded = json.loads(encode_batch(chunk)[0])
            if decoded != reference_batch(chunk):
                wrong.append((chunk, decoded))

    threads = [threading.Thread(target=encode_many, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


# -- reading the answer to a batch -----------------------------------------------------------


def answer(statuses: list[str], *, separators: tuple[str, str] = (",", ":")) -> bytes:
    results = [
        {"index": n, "status": s, **({"error": {"message": "bad"}} if s == "rejected" else {})}
        for n, s in enumerate(statuses)
    ]
    body = {
        "recorded_count": statuses.count("recorded"),
        "skipped_count": statuses.count("duplicate"),
        "rejected_count": statuses.count("rejected"),
        "results": results,
    }
    return json.dumps(body, separators=separators).encode()


def test_an_answer_recording_every_event_is_read_without_decoding_it() -> None:
    assert batch_answer_reader(3)(answer(["recorded"] * 3)) is ALL_RECORDED


@pytest.mark.parametrize(
    "statuses, count, separators",
    [
        (["recorded", "duplicate", "recorded"], 3, (",", ":")),
        (["recorded", "rejected", "recorded"], 3, (",", ":")),
        (["recorded"] * 2, 3, (",", ":")),  # fewer results than events
        (["recorded"] * 4, 3, (",", ":")),
        (["recorded"] * 3, 3, (", ", ": ")),  # another spelling: decoded, counted the same
        ([], 3, (",", ":")),
    ],
)
def test_any_other_answer_is_decoded_in_full(
    statuses: list[str], count: int, separators: tuple[str, str]
) -> None:
    body = answer(statuses, separators=separators)
    assert batch_answer_reader(count)(body) == json.loads(body)


def test_a_status_quoted_inside_a_message_is_not_counted() -> None:
    # Two recorded and one rejected whose message quotes a recorded result: not "all recorded".
    body = answer(["recorded", "rejected", "recorded"]).replace(
        b'"message":"bad"', b'"message":' + json.dumps('{"status":"recorded"}').encode()
    )
    assert body.count(b'"status":"recorded"') == 2  # the quoted one is escaped
    body = body.replace(b'"status":"rejected"', b'"status":"refused"')  # not even "rejected"
    assert batch_answer_reader(3)(body) == json.loads(body)


# -- taking a batch off the queue ------------------------------------------------------------


def test_a_batch_taken_ends_at_a_flush_marker_and_leaves_what_follows_in_order() -> None:
    client = Client(api_key="sk_test_take", base_url="http://127.0.0.1:9")  # never sends
    shipper = shipper_of(client)
    events = [event(f"k{n}", 1, 1.5, (False,) * 5, None) for n in range(6)]
    events[1] = event("large", 1, 1.5, (False,) * 4 + (True,), {"blob": "x" * 5_000})
    assert type(events[1][METADATA]) is SizedMetadata
    marker = _FlushRequest()
    shipper.pending_events.extend([*events[:3], marker, *events[3:]])
    set_held_bytes(shipper, sum(map(queued_bytes, events)))
    flight, flush_request = shipper._take_chunk(1000)
    assert flight is not None and flight.events == events[:3] and flush_request is marker
    assert list(shipper.pending_events) == events[3:]
    # Taken is not gone: their bytes count until their batch lands (test_memory_bound.py).
    assert held_bytes(shipper) == sum(map(queued_bytes, events))
    flight, flush_request = shipper._take_chunk(2)
    assert flight is not None and (flight.events, flush_request) == (events[3:5], None)
    assert list(shipper.pending_events) == events[5:]
    client.close(timeout=0.1)


def sized_event(key: str) -> QueuedEvent:
    """An event whose metadata is large enough to be queued with its size (`SizedMetadata`)."""
    return event(key, 1, 1.5, (False,) * 4 + (True,), {"blob": "x" * 5_000})


@pytest.fixture
def idle_shipper() -> Iterator[Shipper]:
    """The shipper of a client whose worker never started: the test drives it by hand."""
    client = Client(api_key="sk_test_take", base_url="http://127.0.0.1:9")  # never sends
    yield shipper_of(client)
    client.close(timeout=0.1)


def test_an_event_queued_while_orphans_are_sized_stays_counted(
    idle_shipper: Shipper, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same race when a forked worker puts a dead process's spooled events back in the queue.
    shipper = idle_shipper
    orphans = [sized_event(f"orphan{n}") for n in range(2)]
    late = sized_event("late")

    class SpoolWithOrphans:
        def adopt_orphans(self) -> list[QueuedEvent]:
            return list(orphans)

    real_queued_bytes = bearlumen._shipper.queued_bytes

    def sized_while_a_producer_runs(one: QueuedEvent) -> int:
        if late not in shipper.pending_events:  # what enqueue() does, once
            set_held_bytes(shipper, held_bytes(shipper) + real_queued_bytes(late))
            shipper.pending_events.append(late)
        return real_queued_bytes(one)

    monkeypatch.setattr(shipper, "_spool", SpoolWithOrphans())
    monkeypatch.setattr(bearlumen._shipper, "queued_bytes", sized_while_a_producer_runs)
    shipper._adopt_orphans()
    monkeypatch.undo()
    assert list(shipper.pending_events) == [*orphans, late]
    assert held_bytes(shipper) == sum(map(queued_bytes, [*orphans, late]))
