"""`client.usage` (`resources/usage.py`) against the local server, on `Client` and `AsyncClient`
alike (the `any_client` fixture): `record()`'s answer, `record_batch()` and the three reads with
the reference's keys, and their typed errors.

Elsewhere: the reference page's example as written (tests/test_reference.py); what `record()`
accepts, refuses and copies (tests/test_validation.py); its queue and delivery
(tests/test_shipper.py, tests/test_outcomes.py); the routes over raw HTTP
(tests/test_server_handler_usage.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from bearlumen import AsyncClient, Client, UsageRecordInput
from bearlumen._types import MetricAggregation, UsageEvent, UsageSummary
from bearlumen.testing import LocalServer

from .conftest import AnyClient, assert_each_names_its_field

STORED_EVENT_KEYS = set(UsageEvent.__annotations__)


def test_usage_as_the_reference_shows(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            # record() is the same plain call as on Client: no await, nothing sent yet.
            result = client.usage.record(
                event_type="token_usage",
                metric_name="llm_tokens",
                quantity=150000,
                idempotency_key="invoice-001-summary",
                agent_id="support-bot",
                workflow_id="customer-onboarding",
                metadata={"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.5},
            )
            assert result["recorded"] is True
            again = client.usage.record("token_usage", "llm_tokens", 1, "invoice-001-summary")
            assert not again["recorded"]
            events: list[UsageRecordInput] = [
                {"event_type": "token_usage", "metric_name": "llm_tokens", "quantity": 1000,
                 "idempotency_key": "batch-1-evt-1"},
                {"event_type": "token_usage", "metric_name": "llm_tokens", "quantity": 2000,
                 "idempotency_key": "batch-1-evt-2"},
            ]  # fmt: skip
            batch = await client.usage.record_batch(events)
            assert (batch["recorded_count"], batch["skipped_count"]) == (2, 0)
            flushed = await client.flush()
            assert flushed["recorded"] == 1 and flushed["complete"] is True
            assert client.stats()["recorded"] == 1

            sub = await client.subscriptions.create("org_123", "plan", "monthly", "2024-01-01")
            await client.usage.record_batch(
                [
                    {"event_type": "token_usage", "metric_name": "llm_tokens", "quantity": 10,
                     "subscription_id": sub["id"], "timestamp": "2024-01-10T00:00:00Z"},
                    {"event_type": "token_usage", "metric_name": "images", "quantity": 2,
                     "subscription_id": sub["id"], "timestamp": "2024-01-20T00:00:00Z"},
                ]
            )  # fmt: skip
            page = await client.usage.query(
                subscription_id=sub["id"],
                metric_name="llm_tokens",
                start_date="2024-01-01",
                end_date="2024-01-31",
                limit=100,
            )
            assert [e["quantity"] for e in page["events"]] == [10]
            aggregation = await client.usage.aggregation(
                subscription_id=sub["id"], start_date="2024-01-01", end_date="2024-01-31"
            )
            metrics = [a["metricName"] for a in aggregation["aggregations"]]
            assert metrics == ["images", "llm_tokens"]
            summary = await client.usage.summary(
                subscription_id=sub["id"], start_date="2024-01-01", end_date="2024-01-31"
            )
            assert summary["totalEvents"] == 2 and summary["metricCount"] == 2

    asyncio.run(scenario())


def event(n: int, **fields: Any) -> UsageRecordInput:
    return {"event_type": "chat", "metric_name": "llm_tokens", "quantity": n, **fields}  # type: ignore[typeddict-item]


def test_record_answers_the_key_its_event_is_stored_under(any_client: AnyClient) -> None:
    given = any_client.usage.record("chat", "llm_tokens", 3, "my-key")
    made = any_client.usage.record("chat", "llm_tokens", 4)
    assert given == {"recorded": True, "idempotency_key": "my-key"}
    assert set(made) == {"recorded", "idempotency_key"} and made["recorded"] is True
    assert any_client.flush()["recorded"] == 2
    stored = any_client.usage.query()["events"]
    assert [(e["idempotencyKey"], e["quantity"]) for e in stored] == [
        ("my-key", 3), (made["idempotency_key"], 4),
    ]  # fmt: skip


def test_record_unbuffered_answers_with_the_stored_event(server: LocalServer, api_key: str) -> None:
    with Client(api_key=api_key, base_url=server.base_url, buffered=False) as client:
        first = client.usage.record("chat", "llm_tokens", 5, "once", agent_id="bot")
        again = client.usage.record("chat", "llm_tokens", 5, "once", agent_id="bot")
    assert (first["recorded"], first["idempotency_key"]) == (True, "once")
    assert set(first["event"]) == STORED_EVENT_KEYS
    assert (first["event"]["agentId"], first["event"]["quantity"]) == ("bot", 5)
    assert again["recorded"] is False and again["event"] == first["event"]


def test_record_batch_answers_each_event_in_order(any_client: AnyClient) -> None:
    answer = any_client.usage.record_batch([event(1, idempotency_key="a"), event(2)])
    assert set(answer) == {"recorded_count", "skipped_count", "rejected_count", "results"}
    assert (answer["recorded_count"], answer["skipped_count"], answer["rejected_count"]) == (
        2,
        0,
        0,
    )
    assert [(r["index"], r["status"]) for r in answer["results"]] == [
        (0, "recorded"),
        (1, "recorded"),
    ]
    first_id = answer["results"][0]["id"]
    assert first_id.startswith("evt_")

    # A key seen before is skipped and answered with the event it is; the others are recorded.
    again = any_client.usage.record_batch([event(3), event(1, idempotency_key="a")])
    assert (again["recorded_count"], again["skipped_count"]) == (1, 1)
    assert [r["status"] for r in again["results"]] == ["recorded", "duplicate"]
    assert again["results"][1]["id"] == first_id
    assert any_client.usage.query()["total"] == 3


def test_query_answers_stored_events_oldest_first_by_every_filter(any_client: AnyClient) -> None:
    any_client.usage.record_batch(
        [
            event(1, agent_id="bot", workflow_id="onboarding", timestamp="2024-01-02T00:00:00Z"),
            event(2, agent_id="bot", timestamp="2024-01-01T00:00:00Z"),
            event(3, workflow_id="onboarding", timestamp="2024-01-03T00:00:00Z"),
            {**event(4), "metric_name": "images", "timestamp": "2024-01-04T00:00:00Z"},
        ]
    )
    everything = any_client.usage.query()
    assert set(everything) == {"events", "total", "limit", "offset"}
    assert (everything["total"], everything["limit"], everything["offset"]) == (4, 100, 0)
    assert [e["quantity"] for e in everything["events"]] == [2, 1, 3, 4]
    for stored in everything["events"]:
        assert set(stored) == STORED_EVENT_KEYS and stored["id"].startswith("evt_")

    def quantities(**filters: Any) -> list[float]:
        return [e["quantity"] for e in any_client.usage.query(**filters)["events"]]

    assert quantities(agent_id="bot") == [2, 1]
    assert quantities(workflow_id="onboarding") == [1, 3]
    assert quantities(agent_id="bot", workflow_id="onboarding") == [1]
    assert quantities(metric_name="images") == [4]
    assert quantities(start_date="2024-01-02", end_date="2024-01-04") == [1, 3]
    assert quantities(limit=2, offset=1) == [1, 3]


def test_aggregation_and_summary_answer_the_reference_keys(any_client: AnyClient) -> None:
    empty = any_client.usage.summary()
    assert set(empty) == set(UsageSummary.__annotations__)
    assert (empty["totalEvents"], empty["totalCost"], empty["firstEventAt"]) == (0, 0, None)
    any_client.usage.record_batch(
        [
            event(10, timestamp="2024-01-05T00:00:00Z", metadata={"provider_cost_usd": 0.25}),
            event(5, timestamp="2024-01-06T00:00:00Z", metadata={"provider_cost_usd": 0.5}),
            {**event(2), "metric_name": "images", "timestamp": "2024-01-07T00:00:00Z"},
        ]
    )
    aggregation = any_client.usage.aggregation(start_date="2024-01-01")
    assert set(aggregation) == {"aggregations", "startDate", "endDate"}
    assert (aggregation["startDate"], aggregation["endDate"]) == (
        "2024-01-01T00:00:00.000000Z",
        None,
    )
    for metric in aggregation["aggregations"]:
        assert set(metric) == set(MetricAggregation.__annotations__)
    assert [
        (m["metricName"], m["totalQuantity"], m["eventCount"], m["totalCost"])
        for m in aggregation["aggregations"]
    ] == [("images", 2, 1, 0), ("llm_tokens", 15, 2, 0.75)]

    summary = any_client.usage.summary(end_date="2024-01-07")
    assert (summary["totalEvents"], summary["totalQuantity"], summary["totalCost"]) == (2, 15, 0.75)
    assert (summary["metricCount"], summary["firstEventAt"], summary["lastEventAt"]) == (
        1, "2024-01-05T00:00:00.000000Z", "2024-01-06T00:00:00.000000Z",
    )  # fmt: skip
    assert summary["endDate"] == "2024-01-07T00:00:00.000000Z"


BAD_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("events", lambda usage: usage.record_batch([])),
    ("events", lambda usage: usage.record_batch([event(1)] * 1001)),
    ("events", lambda usage: usage.record_batch(event(1))),
    ("events[1]", lambda usage: usage.record_batch([event(1), "chat"])),
    ("events[0].quantity", lambda usage: usage.record_batch([event(-1)])),
    ("events[0].colour", lambda usage: usage.record_batch([{**event(1), "colour": "red"}])),
    ("events[2].agent_id", lambda usage: usage.record_batch([event(1), event(2), event(3, agent_id="")])),
    ("subscription_id", lambda usage: usage.query("")),
    ("metric_name", lambda usage: usage.query(metric_name=5)),
    ("agent_id", lambda usage: usage.query(agent_id="")),
    ("workflow_id", lambda usage: usage.query(workflow_id=["a"])),
    ("subscription_id", lambda usage: usage.aggregation(subscription_id=1)),
    ("metric_name", lambda usage: usage.aggregation(metric_name="")),
    ("subscription_id", lambda usage: usage.summary("")),
]  # fmt: skip


def test_bad_arguments_name_the_field_before_any_request(any_client: AnyClient) -> None:
    assert_each_names_its_field(any_client.usage, BAD_CALLS)
    assert any_client.usage.query()["total"] == 0
