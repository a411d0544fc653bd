"""The local server's `/v1/usage` routes (`server/handlers/usage.py`) over raw HTTP, against the
wire contract (docs/wire-api.md, "Usage events"): recording one event or a batch (each event on
its own), the three reads, status codes and error bodies.

The SDK's side of the same calls: tests/test_resource_usage.py. The batch fast path
(`batch_rows.py`, `staging.py`): tests/test_server_ingest.py. Paging bounds, name limits,
metadata depth and the checks every route shares: tests/test_server.py, tests/test_validation.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bearlumen._types import MetricAggregation, UsageEvent, UsageSummary

from .conftest import api_error

STORED_EVENT_KEYS = set(UsageEvent.__annotations__)


def event(i: int = 0, **extra: object) -> dict[str, object]:
    return {"eventType": "token_usage", "metricName": "llm_tokens", "quantity": 10, **extra}


def test_batch_records_each_event_on_its_own(http: httpx.Client) -> None:
    events = [
        event(idempotencyKey="a"),
        event(quantity=-1),
        event(idempotencyKey="a"),
        event(quantity=float("nan")) if False else {"eventType": "t", "metricName": "m"},
        event(idempotencyKey="b", unknownField=1),
        event(metadata={"provider_cost_usd": "lots"}),
        event(idempotencyKey="c", timestamp="2024-01-01T00:00:00Z"),
    ]
    body = http.post("/v1/usage/events/batch", json={"events": events}).json()
    assert [r["status"] for r in body["results"]] == [
        "recorded", "rejected", "duplicate", "rejected", "rejected", "rejected", "recorded",
    ]  # fmt: skip
    assert [r["index"] for r in body["results"]] == list(range(7))
    assert (
        body["recorded_count"] == 2 and body["skipped_count"] == 1 and body["rejected_count"] == 4
    )
    assert body["results"][1]["error"]["param"] == "quantity"
    assert body["results"][3]["error"]["param"] == "quantity"
    assert body["results"][4]["error"]["param"] == "unknownField"
    assert body["results"][5]["error"]["param"] == "metadata"
    assert body["results"][2]["id"] == body["results"][0]["id"]
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 2


@pytest.mark.parametrize(
    "envelope",
    [
        {"events": []},
        {"events": [event()] * 1001},
        {"events": "nope"},
        {"events": [event()], "extra": 1},
        [event()],
        {},
    ],
)
def test_bad_batch_envelope_is_400_never_truncated(http: httpx.Client, envelope: object) -> None:
    response = http.post("/v1/usage/events/batch", json=envelope)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 0


def test_a_full_batch_of_1000_is_accepted(http: httpx.Client) -> None:
    response = http.post("/v1/usage/events/batch", json={"events": [event()] * 1000})
    assert response.json()["recorded_count"] == 1000


def test_single_event_and_its_duplicate(http: httpx.Client) -> None:
    first = http.post("/v1/usage/events", json=event(idempotencyKey="once", agentId="bot"))
    assert first.status_code == 201
    stored = first.json()["event"]
    assert first.json()["recorded"] is True and stored["id"].startswith("evt_")
    assert stored["agentId"] == "bot" and stored["timestamp"] and stored["receivedAt"]
    assert set(stored) == STORED_EVENT_KEYS
    second = http.post("/v1/usage/events", json=event(idempotencyKey="once", quantity=99))
    assert second.status_code == 200  # found, not created
    assert second.json() == {"recorded": False, "event": stored}


def test_date_filters_are_inclusive_start_exclusive_end(http: httpx.Client) -> None:
    stamps = ["2024-01-01T00:00:00Z", "2024-01-15T12:00:00+02:00", "2024-02-01T00:00:00Z"]
    events = [event(timestamp=s, metadata={"provider_cost_usd": 1.25}) for s in stamps]
    http.post("/v1/usage/events/batch", json={"events": events})
    january = {"startDate": "2024-01-01", "endDate": "2024-02-01"}
    listed = http.get("/v1/usage/events", params=january).json()
    assert [e["timestamp"] for e in listed["events"]] == [
        "2024-01-01T00:00:00.000000Z",
        "2024-01-15T10:00:00.000000Z",
    ]
    summary = http.get("/v1/usage/summary", params=january).json()
    assert summary["totalEvents"] == 2 and summary["totalCost"] == 2.5
    assert summary["firstEventAt"] == "2024-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([event()], None),
        ({"eventType": "t", "quantity": 1}, "metricName"),
        (event(quantity="10"), "quantity"),
        (event(quantity=-1), "quantity"),
        (event(eventType=""), "eventType"),
        (event(timestamp="2024-02-30T00:00:00Z"), "timestamp"),
        (event(metadata={"provider_cost_usd": -1}), "metadata"),
        (event(event_type="snake"), "event_type"),
    ],
)
def test_a_bad_event_is_400_naming_the_field_and_stores_nothing(
    http: httpx.Client, body: Any, param: str | None
) -> None:
    answer = http.post("/v1/usage/events", json=body)
    assert api_error(answer, 400, "invalid_request")["param"] == param
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 0


def test_the_reads_answer_the_contracts_keys_and_repeat_their_dates(http: httpx.Client) -> None:
    empty = http.get("/v1/usage/summary").json()
    assert set(empty) == set(UsageSummary.__annotations__)
    assert empty == {
        "totalEvents": 0, "totalQuantity": 0, "totalCost": 0, "metricCount": 0,
        "firstEventAt": None, "lastEventAt": None, "startDate": None, "endDate": None,
    }  # fmt: skip
    assert http.get("/v1/usage/aggregation").json() == {
        "aggregations": [], "startDate": None, "endDate": None,
    }  # fmt: skip
    http.post(
        "/v1/usage/events/batch",
        json={"events": [event(timestamp="2024-01-02T00:00:00Z", subscriptionId="sub_1",
                               metadata={"provider_cost_usd": 0.5})]},
    )  # fmt: skip
    dates = {"startDate": "2024-01-01", "endDate": "2024-01-03T00:00:00+01:00"}
    canonical = {
        "startDate": "2024-01-01T00:00:00.000000Z",
        "endDate": "2024-01-02T23:00:00.000000Z",
    }
    listed = http.get("/v1/usage/events", params={**dates, "subscriptionId": "sub_1"}).json()
    assert set(listed) == {"events", "total", "limit", "offset"}
    assert set(listed["events"][0]) == STORED_EVENT_KEYS
    aggregation = http.get("/v1/usage/aggregation", params=dates).json()
    assert {k: aggregation[k] for k in canonical} == canonical
    (metric,) = aggregation["aggregations"]
    assert set(metric) == set(MetricAggregation.__annotations__)
    assert (metric["metricName"], metric["totalCost"], metric["eventCount"]) == (
        "llm_tokens",
        0.5,
        1,
    )
    summary = http.get("/v1/usage/summary", params=dates).json()
    assert {k: summary[k] for k in canonical} == canonical
    assert summary["firstEventAt"] == summary["lastEventAt"] == "2024-01-02T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/usage/events", "endUserId"),  # not a filter of the contract's
        ("/v1/usage/aggregation", "agentId"),
        ("/v1/usage/aggregation", "limit"),
        ("/v1/usage/summary", "metricName"),
    ],
)
def test_a_query_parameter_a_read_does_not_take_is_400_never_ignored(
    http: httpx.Client, path: str, param: str
) -> None:
    answer = http.get(path, params={param: "1"})
    assert api_error(answer, 400, "invalid_request")["param"] == param


def test_a_batch_of_only_good_events_answers_each_in_order(http: httpx.Client) -> None:
    answer = http.post(
        "/v1/usage/events/batch",
        json={"events": [event(idempotencyKey="x"), event(), event(idempotencyKey="x")]},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["recorded_count"], body["skipped_count"], body["rejected_count"]) == (2, 1, 0)
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, "recorded"), (1, "recorded"), (2, "duplicate"),
    ]  # fmt: skip
    assert body["results"][2]["id"] == body["results"][0]["id"]
