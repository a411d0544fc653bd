"""The server's ingest fast path: it accepts only batches pydantic accepts, and stores them alike."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bearlumen._wire import UsageBatch
from bearlumen.server.batch_rows import valid_batch_rows
from bearlumen.server.errors import ApiError
from bearlumen.server.handlers.usage import _validated_row

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
