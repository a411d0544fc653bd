"""The worker writes a batch's JSON from the queued tuples (`batch_body`), not from dicts.

Its text must be the JSON the dicts gave (`to_json({"events": wire_events(...)})`): for the
usual batch byte for byte, and for anything it leaves to the dicts (NaN from an old spool, a
timestamp before 2004, an object with no JSON form) the dicts' own encoding. The bodies are
compared decoded strictly (1, 1.0 and true differ; so do 0.0 and -0.0), and for events made by
the real `usage.record()`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from bearlumen import Client, InvalidRequestError
from bearlumen._batch_codec import batch_body, encode_batch, encode_event, from_wire, wire_events
from bearlumen._events import IDEMPOTENCY_KEY, METADATA, SizedMetadata
from bearlumen._timestamps import epoch_texts, format_epoch
from bearlumen._validation import metadata_snapshot

from ._shipper_probe import take_queued

NOW = 1_764_100_000.123456  # 2025-11-25


def strict(body: bytes) -> Any:
    """The body decoded with every number's type and exact value kept."""
    return json.loads(
        body,
        parse_int=lambda text: ("int", int(text)),
        parse_float=lambda text: ("float", float(text).hex()),
    )


def dicts_body(events: list[Any]) -> bytes:
    """What the worker sent before: a dict per event, encoded by pydantic_core."""
    return to_json({"events": wire_events(events)})


def queued(
    key: str = "invoice-1-summary",
    *,
    quantity: Any = 150000,
    stamp: Any = NOW,
    names: tuple[Any, ...] = ("token_usage", "llm_tokens"),
    ids: tuple[Any, ...] = (None, "eu_123", "support-bot", "customer-onboarding"),
    metadata: Any = None,
) -> tuple[Any, ...]:
    """An event as `usage.record()` queues it (metadata: record()'s own snapshot)."""
    if metadata is not None:
        metadata = metadata_snapshot(metadata)
    return (*names, quantity, key, stamp, *ids, metadata)


README = {"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50}


def assert_same_as_the_dicts(events: list[Any], *, from_columns: bool = True) -> None:
    body = encode_batch(events)[0]
    assert encode_batch(events) == (body, events, [])
    assert strict(body) == strict(dicts_body(events))
    if from_columns:
        assert batch_body(events) is not None, "the usual batch must not fall back to the dicts"
        assert body == dicts_body(events)


def test_the_readme_batch_is_written_byte_for_byte_as_the_dicts_were() -> None:
    events = [
        queued(f"invoice-{n}-summary", stamp=NOW + n * 1e-6, metadata=README) for n in range(1000)
    ]
    assert_same_as_the_dicts(events)


@pytest.mark.parametrize(
    "metadata",
    [
        README,
        {},
        {"n": None, "ok": True, "no": False, "big": 2**70, "neg": -(2**63), "f": -0.0},
        {"tiny": 1e-7, "huge": 1e16, "third": 1 / 3, "sub": 5e-324, "cost": 1e9},
        {"usage": {"input": 1200, "cached": [0, 128, {"deep": [None, True, 1.5e-7]}]}},
        {"list of objects": [{"a": 1}, {"b": 2}], "text": "},{"},  # "},{" not only between
        {"mark": ["x", "\x00", "y"], "quote": '"\\u0000"'},  # the mark's text: see below
        {"NaN": "Infinity", "words": ["NaN", "-Infinity"]},  # the words, but in strings
        {"modèle": "clé é 🦙", "日本": ["テキスト", "\u2028"], "ctl": "\x01\t\n\x7f", "q": '\\"'},
        {"blob": "x" * 5_000, "provider_cost_usd": 0.01},  # a SizedMetadata snapshot
    ],
)
def test_any_metadata_record_accepts_is_written_as_the_dicts_were(metadata: Any) -> None:
    events = [queued(f"k{n}", stamp=NOW + n, metadata=metadata) for n in range(5)]
    assert_same_as_the_dicts(events)
    # ... and mixed with events that have none, or other metadata (found apart by a mark
    # between them: metadata holding the mark's own text is left to the dicts)
    mixed = [*events[:2], queued("none"), queued("readme", metadata=README), *events[2:]]
    assert_same_as_the_dicts(mixed, from_columns="mark" not in metadata)
    assert_same_as_the_dicts([queued("none")] * 3)


def test_a_large_metadata_snapshot_is_written_whole() -> None:
    event = queued(metadata={"blob": "x" * 5_000})
    assert type(event[METADATA]) is SizedMetadata
    assert_same_as_the_dicts([event, queued("k2")])


@pytest.mark.parametrize(
    "quantities",
    [
        [150000] * 4,  # the same in every event: written once
        [1, 1.0, 1, 1.0],  # equal, but an int and a float: each its own text
        [0, -0.0, 0.0, 2**53],
        [1e-7, 1e16, 123456.789, 5e-324],
        [1, 11, 1, 11],
        [10, 1, 0, 100],
        [True, 1, None, False],  # never from record(); still the dicts' text, whatever it is
    ],
)
def test_quantities_keep_their_type_and_text(quantities: list[Any]) -> None:
    events = [queued(f"k{n}", quantity=q) for n, q in enumerate(quantities)]
    assert_same_as_the_dicts(events)


@pytest.mark.parametrize(
    "text",
    ["plain", 'a","b', "\\", '"', "é 🦙", "\x01\x1f", "\u2028\u2029", "},{", "\\u0000", "[1]"],
)
def test_names_ids_and_keys_are_escaped_as_the_dicts_were(text: str) -> None:
    events = [
        queued(text, names=(text, "m")),
        queued(text + "2", names=("t", text), ids=(text, None, text, None)),
        queued("k3", ids=(None, text + "x", None, text)),
    ]
    assert_same_as_the_dicts(events)


def test_timestamps_given_by_the_caller_are_written_as_given() -> None:
    events = [queued(f"k{n}", stamp=f"2024-01-01T12:00:00.00000{n}Z") for n in range(3)]
    assert_same_as_the_dicts(events)


def test_a_batch_spanning_many_seconds_has_each_events_own_second() -> None:
    stamps = [
        NOW + offset + fraction for offset in (0, 88, 3, 1, 45) for fraction in (0, 0.5, 0.876543)
    ]
    assert_same_as_the_dicts([queued(f"k{n}", stamp=s) for n, s in enumerate(stamps)])


@pytest.mark.parametrize(
    "events, why",
    [
        ([queued(stamp=NOW), queued("k2", stamp=NOW + 90)], "more than 89 seconds apart"),
        ([queued(stamp=1.5)], "before 2004: the shortcut would not be exact"),
        ([queued(stamp=NOW), queued("k2", stamp="2024-01-01T12:00:00.000000Z")], "a mix"),
        ([queued(quantity=float("nan"))], "NaN, from an older spool"),
        ([queued(metadata={"x": 1}), (*queued()[:9], {"x": float("inf")})], "Infinity"),
        ([queued(metadata={"NaN": "NaN"}), (*queued()[:9], {"x": float("nan")})], "NaN too"),
        ([queued(names=("\ud800", "m"))], "a lone surrogate"),
        ([queued(key=None)], "no key"),  # type: ignore[arg-type]
        ([queued(stamp=1_764_100_000)], "an int timestamp"),
        ([(*queued()[:9], {"when": object()})], "no JSON form"),
        ([(*queued()[:9], ["not", "an", "object"])], "not an object"),
    ],
)
def test_anything_unusual_is_left_to_the_dicts(events: list[Any], why: str) -> None:
    assert batch_body(events) is None, why
    body, good, bad = encode_batch(events)
    kept = [json.loads(encode_event(event)) for event in good]
    assert json.loads(body)["events"] == kept
    assert len(good) + len(bad) == len(events)


def test_nan_is_set_apart_and_the_rest_still_sent() -> None:
    plain = [queued(f"k{n}", metadata=README) for n in range(4)]
    nan = queued("nan", quantity=float("nan"))
    body, good, bad = encode_batch([plain[0], nan, *plain[1:]])
    assert good == plain and [event[IDEMPOTENCY_KEY] for event, _ in bad] == ["nan"]
    assert body == batch_body(plain) == dicts_body(plain)


def test_events_replayed_from_a_spool_are_written_as_the_dicts_were() -> None:
    events = [queued(f"k{n}", stamp=NOW + n, metadata=README) for n in range(3)]
    replayed = [(*from_wire(json.loads(encode_event(e))), "segment-1") for e in events]
    assert_same_as_the_dicts(replayed)
    assert strict(batch_body(replayed) or b"") == strict(batch_body(events) or b"")


# -- timestamps ------------------------------------------------------------------------------


def reference_timestamp(seconds: float) -> bytes:
    whole = int(seconds)
    date = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
    return f"{date}{int((seconds - whole) * 1_000_000):06d}".encode()


EDGES = [
    float(2**30),
    math.nextafter(1e10, 0),
    NOW,
    1_764_100_000.0,
    1_764_100_000.999999,
    math.nextafter(1_764_100_001.0, 0),
    math.nextafter(1_764_100_000.0, 2e9),
    4_102_444_799.999999,
]


def test_epoch_texts_of_the_edges_are_format_epochs() -> None:
    for stamp in EDGES:
        assert epoch_texts([stamp]) == [reference_timestamp(stamp)]
        assert epoch_texts([stamp]) == [format_epoch(stamp)[:-1].encode()]


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=2**30, max_value=9_999_999_900, allow_nan=False),
    st.lists(st.floats(min_value=0, max_value=89.999999), min_size=1, max_size=50),
)
def test_epoch_texts_of_any_times_are_format_epochs(start: float, offsets: list[float]) -> None:
    stamps = [start + offset for offset in offsets]
    texts = epoch_texts(stamps)
    if int(max(stamps)) - int(min(stamps)) > 89:
        assert texts is None
    else:
        assert texts == [reference_timestamp(stamp) for stamp in stamps]


# -- events made by the real record() --------------------------------------------------------


@pytest.fixture(scope="module")
def idle_client() -> Iterator[Client]:
    """A client whose worker never sends: the test takes what record() queued itself."""
    client = Client(api_key="sk_test_body", base_url="http://127.0.0.1:9", flush_interval=3600)
    yield client
    take_queued(client)
    client.close(timeout=0.1)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
name = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)
number = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e-7, 1e16, 5e-324, 2**53]),
)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), number, text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
event_spec = st.fixed_dictionaries(
    {
        "event_type": st.one_of(st.just("token_usage"), name),
        "metric_name": st.just("llm_tokens") | name,
        "quantity": st.one_of(
            st.integers(0, 2**53),
            st.floats(0, 2**53, allow_nan=False),
            st.sampled_from([0, -0.0, 1e-7, 1e16, 5e-324]),
        ),
    },
    optional={
        "idempotency_key": name,
        "timestamp": st.datetimes(
            min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)
        ).map(lambda moment: moment.replace(tzinfo=timezone(timedelta(hours=2)))),
        "subscription_id": name,
        "end_user_id": name,
        "agent_id": st.just("support-bot") | name,
        "workflow_id": name,
        "metadata": st.dictionaries(text, json_value, max_size=5)
        | st.just(README)
        | st.dictionaries(st.sampled_from(["model", "provider", "n"]), number, max_size=3),
    },
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(event_spec, min_size=1, max_size=12))
def test_whatever_record_accepts_is_sent_as_the_dicts_were(
    idle_client: Client, specs: list[dict[str, Any]]
) -> None:
    for spec in specs:
        with contextlib.suppress(InvalidRequestError):  # refused at the call: never queued
            idle_client.usage.record(**spec)
    events = take_queued(idle_client)
    assume(events)
    body, good, bad = encode_batch(events)
    assert (good, bad) == (events, [])
    assert strict(body) == strict(dicts_body(events))
    for event in events:  # one by one: the usual kind, so written from the columns ...
        single = batch_body([event])
        if single is None:  # ... unless its metadata holds the mark's own text
            assert b'"\\u0000"' in dicts_body([event])
        else:
            assert single == dicts_body([event])
            # the spool's line for it (one home: the same bytes as in the batch)
            assert single == b'{"events":[' + encode_event(event) + b"]}"
