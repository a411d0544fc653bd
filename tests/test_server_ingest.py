"""The server's ingest fast path: it accepts only batches pydantic accepts, and stores them alike."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import to_json

from bearlumen import InvalidRequestError
from bearlumen._validation import metadata_snapshot
from bearlumen._wire import UsageBatch
from bearlumen.server.batch_rows import valid_batch_rows
from bearlumen.server.errors import ApiError
from bearlumen.server.handlers.usage import _validated_row
from bearlumen.server.store import Store
from bearlumen.testing import LocalServer

NOW = "2026-11-26T05:00:00.000000Z"


def slow_rows(body: Any) -> list[list[Any]] | None:
    """What the slow path stores for a batch when every event is valid; None otherwise."""
    try:
        envelope = UsageBatch.model_validate(body)
        return [_validated_row(raw, NOW) for raw in envelope.events]
    except (ValidationError, ApiError):
        return None


NAME_EDGES = ["token_usage", "a", "x" * 255, "x" * 256, "", "a\x00b", "é\u0301", "🦄", 7, ["a"]]
NUMBER_EDGES = [0, 1, -1, 2**53, 2**53 + 1, 2**60, 0.5, -0.0, 1e300, -1e-300, True, False, "1"]
NUMBER_EDGES += [float("nan"), float("inf"), 10**400]
TIMESTAMP_EDGES = [
    "2026-11-25T12:00:00.000000Z",
    "2024-02-29T23:59:59.999999Z",
    "2023-02-29T00:00:00.000000Z",  # not a real date
    "2024-01-01T00:00:00Z",  # not canonical: parsed by pydantic
    "2024-01-01T00:00:00.000000+01:00",
    "2024-01-01T00:00:00.000000Z\n",
    "2024-01-01T00:00:00.000000z",
    "\u0662024-01-01T00:00:00.000000Z",  # an Arabic-Indic digit
    "0001-01-01T00:00:00+01:00",
    # the same first 20 characters as VALID's (checked once per batch), then something else
    "2026-11-25T12:00:00.654321Z",
    "2026-11-25T12:00:00.123456z",
    "2026-11-25T12:00:00.12345\u0663Z",
    "2026-11-25T12:00:00.12345xZ",
    "2026-11-25T12:00:00.1234567",
    "2026-11-25T12:00:00.123456Z\n",
    "2026-11-25T12:00:00.",
    "yesterday",
    "",
    1700000000,
]
METADATA_EDGES: list[Any] = [{"provider_cost_usd": cost} for cost in NUMBER_EDGES]
METADATA_EDGES += [
    {},
    {"big": "x" * (16 * 1024 - 10)},
    {"big": "x" * (16 * 1024 - 9)},  # 16385 bytes as JSON
    {"big": "é" * 9000},
    {"nested": {"deep": [1, 2, {"a": None}]}, "provider_cost_usd": 0.25},
    [],
    "text",
    3,
]
names = st.one_of(st.sampled_from(NAME_EDGES), st.text(max_size=4))
numbers = st.one_of(
    st.sampled_from(NUMBER_EDGES), st.floats(allow_nan=True, allow_infinity=True), st.integers()
)
timestamps = st.sampled_from(TIMESTAMP_EDGES)
metadata = st.one_of(
    st.dictionaries(st.text(max_size=3), st.one_of(st.none(), st.integers(), st.text(max_size=3))),
    st.sampled_from(METADATA_EDGES),
)
OPTIONAL = {
    "idempotencyKey": names,
    "timestamp": timestamps,
    "subscriptionId": names,
    "endUserId": names,
    "agentId": names,
    "workflowId": names,
    "metadata": metadata,
    "idempotency_key": names,  # snake_case is valid too (the slow path's business)
    "unknown": names,
}


VALID = {
    "eventType": "token_usage",
    "metricName": "llm_tokens",
    "quantity": 1200,
    "idempotencyKey": "evt_0123456789abcdef_1",
    "timestamp": "2026-11-25T12:00:00.123456Z",
    "subscriptionId": "sub_1",
    "endUserId": "eu_1",
    "agentId": "agent",
    "workflowId": "flow",
    "metadata": {"model": "gpt-4o-mini", "provider_cost_usd": 0.00042},
}
FIELDS = {"eventType": names, "metricName": names, "quantity": numbers, **OPTIONAL}


@st.composite
def usage_events(draw: st.DrawFn) -> Any:
    """A valid event with up to two fields changed, dropped or added: edges near the limits."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, [], "event", 1]))
    event = dict(VALID)
    for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        change = draw(st.sampled_from(["value", "value", "null", "drop"]))
        if change == "drop":
            event.pop(field, None)
        else:
            event[field] = None if change == "null" else draw(FIELDS[field])
    return event


EDGES = {"eventType": NAME_EDGES, "metricName": NAME_EDGES, "quantity": NUMBER_EDGES}
EDGES.update({field: NAME_EDGES for field in ("idempotencyKey", "subscriptionId", "endUserId")})
EDGES.update({"agentId": NAME_EDGES, "workflowId": NAME_EDGES, "idempotency_key": NAME_EDGES})
EDGES.update({"timestamp": TIMESTAMP_EDGES, "metadata": METADATA_EDGES, "unknown": ["x"]})


@pytest.mark.parametrize("field", sorted(EDGES))
def test_each_edge_of_each_field_gets_the_slow_paths_verdict(field: str) -> None:
    for value in [*EDGES[field], None, "missing"]:
        changed = {k: v for k, v in VALID.items() if k != field}
        if value != "missing":
            changed[field] = value
        body = {"events": [VALID, changed]}
        fast, slow = valid_batch_rows(body, NOW), slow_rows(body)
        if fast is not None or field != "timestamp":  # the canonical form only, or pydantic
            assert fast == slow, (field, value)


@settings(max_examples=400, deadline=None)
@given(st.lists(usage_events(), min_size=1, max_size=5), st.sampled_from(["events", "other"]))
def test_the_fast_path_accepts_only_valid_batches_and_stores_what_the_slow_path_would(
    events: list[Any], envelope: str
) -> None:
    body = {envelope: events}
    fast = valid_batch_rows(body, NOW)
    if fast is not None:
        assert fast == slow_rows(body)
    elif envelope == "events" and all(type(e) is dict and VALID.keys() >= e.keys() for e in events):
        # camelCase fields only: the fast path says "not sure" only when the slow path refuses,
        # or for a timestamp not in the canonical form
        slow = slow_rows(body)
        assert slow is None or any(
            row[4] != event.get("timestamp") for row, event in zip(slow, events)
        ), events


def test_the_fast_path_takes_the_batches_the_sdk_sends() -> None:
    event = VALID
    body = {"events": [event, {**event, "timestamp": None, "metadata": None}]}
    rows = valid_batch_rows(body, NOW)
    assert rows is not None and rows == slow_rows(body)
    assert rows[1][4] == NOW  # no timestamp: the time it arrived
    assert valid_batch_rows({"events": [event] * 1001}, NOW) is None  # over the limit


# -- the staged table: keys found in memory while staged, in the index once moved -----------


def rows_for(keys: list[str], agent: str = "agent") -> list[list[Any]]:
    body = {"events": [{**VALID, "idempotencyKey": key, "agentId": agent} for key in keys]}
    rows = valid_batch_rows(body, NOW)
    assert rows is not None
    return rows


def test_each_key_is_stored_once_whether_staged_partly_moved_or_moved_before_a_restart(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "events.sqlite3"))
    store.events._staging.close()  # no background mover: this test decides when rows move
    first = store.events.record_events(1, rows_for([f"a{i}" for i in range(300)]))
    second = store.events.record_events(1, rows_for([f"b{i}" for i in range(300)], agent="other"))
    assert [outcome for outcome, _ in first + second] == ["recorded"] * 600
    seqs = {f"a{i}": seq for i, (_, seq) in enumerate(first)}
    seqs.update({f"b{i}": seq for i, (_, seq) in enumerate(second)})

    def replayed(keys: list[str]) -> None:
        outcomes = store.events.record_events(1, rows_for(keys))
        assert outcomes == [("duplicate", seqs[key]) for key in keys]

    mixed = ["a0", "b299", "a299", "b0", "a0"]
    replayed(mixed)  # both batches staged
    with store._lock:
        store.events._staging.move(1)  # the oldest batch only: a* indexed, b* still staged
    assert store.events._staging.rows == 300
    replayed(mixed)
    assert store.events.record_events(2, rows_for(["a0"])) == [("recorded", 601)]  # another tenant
    # visible to queries while part is staged: a read makes usage_events complete
    events, total = store.events.query_events(1, [("agent_id", "=", "other")], 1000, 0)
    assert total == 300 and {e["idempotencyKey"] for e in events} == {f"b{i}" for i in range(300)}
    assert store.events._staging.rows == 0
    replayed(mixed)
    new = store.events.record_events(1, rows_for(["c0", "a1", "c0"]))
    assert new == [("recorded", 602), ("duplicate", seqs["a1"]), ("duplicate", 602)]
    store._db.close()  # as a SIGKILL would leave it: "c0" still staged, never moved

    again = Store(str(tmp_path / "events.sqlite3"))
    try:
        seqs["c0"] = 602
        assert again.events.record_events(1, rows_for(["c0", "b5", "a7"])) == [
            ("duplicate", seqs[key]) for key in ("c0", "b5", "a7")
        ]
        assert again.events.summarize(1, [])["totalEvents"] == 601
        assert again.events.record_events(1, rows_for(["d0"])) == [("recorded", 603)]
    finally:
        again.close()


def test_rows_split_over_several_statements_keep_their_seqs_and_values(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "events.sqlite3"))
    try:
        store.events._rows_per_insert = 7  # as on an SQLite that binds few parameters per statement
        keys = [f"k{i}" for i in range(20)]
        rows = rows_for(keys)
        rows[13][0] = "a\x00b"  # each text stored exactly, wherever its row falls
        outcomes = store.events.record_events(1, [*rows[:10], rows[0], *rows[10:]])
        assert [outcome for outcome, _ in outcomes] == ["recorded"] * 10 + ["duplicate"] + [
            "recorded"
        ] * 10
        assert [seq for _, seq in outcomes] == [*range(1, 11), 1, *range(11, 21)]
        events, total = store.events.query_events(1, [], 100, 0)
        assert total == 20
        assert [(e["id"], e["idempotencyKey"]) for e in events] == [
            (store.events.event_id(seq), key) for seq, key in zip(range(1, 21), keys)
        ]
        assert events[13]["eventType"] == "a\x00b" and events[12]["eventType"] == "token_usage"
    finally:
        store.close()


def test_a_valid_batchs_answer_is_the_json_the_slow_path_writes_and_replays_byte_for_byte(
    http: httpx.Client,
) -> None:
    fast = [{**VALID, "idempotencyKey": f"fast-{i}"} for i in range(3)]
    first = http.post("/v1/usage/events/batch", json={"events": fast})
    # the same events again, and one new: two duplicates, two recorded (fast path)
    again = {"events": [fast[2], fast[0], {**VALID, "idempotencyKey": "fast-3"}, VALID]}
    headers = {"Idempotency-Key": "batch-replayed"}
    second = http.post("/v1/usage/events/batch", json=again, headers=headers)
    # a timestamp not in the canonical form is valid but takes the slow path (dicts, to_json)
    slow = {"events": [{**VALID, "idempotencyKey": "slow-0", "timestamp": "2024-01-01T00:00:00Z"}]}
    slow_answer = http.post("/v1/usage/events/batch", json=slow)
    for answer in (first, second, slow_answer):
        assert answer.status_code == 200
        assert answer.content == to_json(answer.json())  # compact, keys in the contract's order
    first_ids = [r["id"] for r in first.json()["results"]]
    assert second.json() == {
        "recorded_count": 2,
        "skipped_count": 2,
        "rejected_count": 0,
        "results": [
            {"index": 0, "status": "duplicate", "id": first_ids[2]},
            {"index": 1, "status": "duplicate", "id": first_ids[0]},
            {"index": 2, "status": "recorded", "id": second.json()["results"][2]["id"]},
            {"index": 3, "status": "recorded", "id": second.json()["results"][3]["id"]},
        ],
    }
    assert list(slow_answer.json()["results"][0]) == list(second.json()["results"][0])
    replay = http.post("/v1/usage/events/batch", json=again, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == second.content
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 6


def test_a_batch_retried_while_its_first_try_is_stored_is_told_409_then_replayed(
    fault_server: LocalServer, api_key: str
) -> None:
    """The key is claimed in the worker thread, before the store is touched: a retry that comes
    while the first try is being stored never runs the batch a second time."""
    store = fault_server.store
    real = store.events.record_events
    inside, release = threading.Event(), threading.Event()

    def held(tenant: int, rows: list[list[Any]]) -> list[tuple[str, int]]:
        inside.set()
        assert release.wait(30)
        return real(tenant, rows)

    store.events.record_events = held  # type: ignore[method-assign]
    batch = {"events": [{**VALID, "idempotencyKey": f"held-{i}"} for i in range(5)]}
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "held-batch"}
    url = fault_server.base_url + "/v1/usage/events/batch"
    first: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: first.append(httpx.post(url, json=batch, headers=headers))
    )
    sender.start()
    try:
        assert inside.wait(30)
        retry = httpx.post(url, json=batch, headers=headers)
        assert retry.status_code == 409 and retry.json()["error"]["type"] == "conflict_retry"
    finally:
        release.set()
        sender.join(30)
    assert first[0].status_code == 200 and first[0].json()["recorded_count"] == 5
    replay = httpx.post(url, json=batch, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == first[0].content
    auth = {"Authorization": headers["Authorization"]}
    summary = httpx.get(fault_server.base_url + "/v1/usage/summary", headers=auth)
    assert summary.json()["totalEvents"] == 5


# -- the metadata limit: bytes of UTF-8, as the SDK counts them ------------------------------


def metadata_of(size: int) -> dict[str, str]:
    """Metadata whose compact JSON is exactly `size` bytes of UTF-8, nearly all of them in
    two-byte characters."""
    room = size - len(to_json({"note": ""}))
    metadata = {"note": "x" * (room % 2) + "é" * (room // 2)}
    assert len(to_json(metadata)) == size
    return metadata


def test_metadata_over_16_kib_of_utf8_is_refused_though_under_16_ki_characters(
    http: httpx.Client,
) -> None:
    """docs/wire-api.md: 16 KiB of JSON. Two-byte characters make 16 KiB + 1 byte of JSON out of
    about 8 Ki characters: refused by the server as by record(), on both of the batch's paths
    and by the single-event route; 16 KiB exactly is stored by all three, as record() takes it."""
    limit = 16 * 1024
    over, at_limit = metadata_of(limit + 1), metadata_of(limit)
    assert len(to_json(over).decode()) < limit  # the characters alone would pass
    with pytest.raises(InvalidRequestError, match="metadata"):
        metadata_snapshot(over)
    assert metadata_snapshot(at_limit) == at_limit

    slow_stamp = "2024-01-01T00:00:00Z"  # valid but not canonical: the slow path
    for name, metadata, stored in (("over", over, False), ("at", at_limit, True)):
        for path, stamp in (("fast", VALID["timestamp"]), ("slow", slow_stamp)):
            event = {**VALID, "idempotencyKey": f"{name}-{path}", "timestamp": stamp}
            answer = http.post(
                "/v1/usage/events/batch", json={"events": [{**event, "metadata": metadata}]}
            )
            assert answer.status_code == 200
            (result,) = answer.json()["results"]
            if stored:
                assert result["status"] == "recorded", result
            else:
                assert result["status"] == "rejected"
                assert result["error"]["param"] == "metadata"
                assert str(limit) in result["error"]["message"]
        single = {**VALID, "idempotencyKey": f"{name}-single", "metadata": metadata}
        answer = http.post("/v1/usage/events", json=single)
        assert answer.status_code == (201 if stored else 400), answer.text
    events = http.get("/v1/usage/events", params={"limit": 100}).json()["events"]
    assert sorted(e["idempotencyKey"] for e in events) == ["at-fast", "at-single", "at-slow"]
    assert all(e["metadata"] == at_limit for e in events)
