"""`client.cost_attribution` (`resources/cost_attribution.py`) against the local server, on
`Client` and `AsyncClient` alike (the `any_client` fixture): each report with the reference's
keys over its period, and its typed errors.

Elsewhere: the reference page's example as written (tests/test_reference.py), every date's range
(tests/test_validation.py), the routes over raw HTTP
(tests/test_server_handler_cost_attribution.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from bearlumen import AsyncClient, CostBreakdownResponse
from bearlumen._types import CostBreakdownItem
from bearlumen.testing import LocalServer

from .conftest import AnyClient, assert_each_names_its_field

JANUARY = {"start_date": "2024-01-01", "end_date": "2024-02-01"}


def test_cost_attribution_as_the_reference_shows(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            for agent, workflow, cost in [
                ("support-bot", "customer-onboarding", 4.5),
                ("analyst", "refunds", 1.25),
            ]:
                client.usage.record(
                    "token_usage", "llm_tokens", 100, agent_id=agent, workflow_id=workflow,
                    timestamp="2024-01-15T00:00:00Z", metadata={"provider_cost_usd": cost},
                )  # fmt: skip
            await client.flush()
            period = {"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-02-01T00:00:00Z"}
            result: CostBreakdownResponse = await client.cost_attribution.by_agent(**period)
            lines = [f"{i['attributionValue']}: ${i['totalCost']}" for i in result["items"]]
            assert lines == ["support-bot: $4.5", "analyst: $1.25"]
            assert result["totalCost"] == 5.75
            by_workflow = await client.cost_attribution.by_workflow(**period)
            assert by_workflow["items"][0]["attributionValue"] == "customer-onboarding"
            agents = await client.cost_attribution.list_agents(**period)
            assert agents["values"] == ["analyst", "support-bot"]
            workflows = await client.cost_attribution.list_workflows(**period)
            assert workflows["values"] == ["customer-onboarding", "refunds"]

    asyncio.run(scenario())


def spend(any_client: AnyClient, *events: tuple[str | None, str | None, float, str]) -> None:
    """Events of (agent, workflow, cost, timestamp), recorded at once."""
    any_client.usage.record_batch(
        [
            {"event_type": "chat", "metric_name": "llm_tokens", "quantity": 10,
             "agent_id": agent, "workflow_id": workflow, "timestamp": timestamp,
             "metadata": {"provider_cost_usd": cost}}
            for agent, workflow, cost, timestamp in events
        ]
    )  # fmt: skip


def test_breakdowns_answer_the_reference_keys_most_expensive_first(any_client: AnyClient) -> None:
    spend(
        any_client,
        ("writer", "blog", 0.5, "2024-01-10T00:00:00Z"),
        ("support-bot", "refunds", 2.0, "2024-01-11T00:00:00Z"),
        ("support-bot", None, 1.0, "2024-01-12T00:00:00Z"),
        (None, "blog", 0.25, "2024-01-13T00:00:00Z"),
    )
    for group_by, report in (
        ("agent", any_client.cost_attribution.by_agent(**JANUARY)),
        ("workflow", any_client.cost_attribution.by_workflow(**JANUARY)),
    ):
        assert set(report) == set(CostBreakdownResponse.__annotations__)
        assert (report["groupBy"], report["totalCost"]) == (group_by, 3.75)
        assert (report["startDate"], report["endDate"]) == (
            "2024-01-01T00:00:00.000000Z", "2024-02-01T00:00:00.000000Z",
        )  # fmt: skip
        for item in report["items"]:
            assert set(item) == set(CostBreakdownItem.__annotations__)
    by_agent = any_client.cost_attribution.by_agent(**JANUARY)["items"]
    assert [(i["attributionValue"], i["totalCost"], i["eventCount"]) for i in by_agent] == [
        ("support-bot", 3.0, 2), ("writer", 0.5, 1), (None, 0.25, 1),
    ]  # fmt: skip
    by_workflow = any_client.cost_attribution.by_workflow(**JANUARY)["items"]
    # refunds $2.00, no workflow $1.00, blog $0.50 + $0.25
    assert [(i["attributionValue"], i["totalQuantity"]) for i in by_workflow] == [
        ("refunds", 10),
        (None, 10),
        ("blog", 20),
    ]  # fmt: skip


def test_each_report_counts_its_start_and_not_its_end(any_client: AnyClient) -> None:
    spend(
        any_client,
        ("early", "first", 1.0, "2023-12-31T23:59:59Z"),
        ("start", "on-start", 1.0, "2024-01-01T00:00:00Z"),
        ("end", "on-end", 1.0, "2024-02-01T00:00:00Z"),
    )
    reports = any_client.cost_attribution
    assert reports.list_agents(**JANUARY) == {"values": ["start"]}
    assert reports.list_workflows(**JANUARY) == {"values": ["on-start"]}
    assert [i["attributionValue"] for i in reports.by_agent(**JANUARY)["items"]] == ["start"]
    assert reports.by_workflow(**JANUARY)["totalCost"] == 1.0
    empty = reports.by_agent("2025-01-01", "2025-02-01")
    assert (empty["items"], empty["totalCost"]) == ([], 0)
    assert reports.list_workflows("2025-01-01", "2025-02-01") == {"values": []}


BAD_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("start_date", lambda reports: reports.by_agent(None, "2024-02-01")),
    ("end_date", lambda reports: reports.by_workflow("2024-01-01", None)),
    ("start_date", lambda reports: reports.list_agents("", "2024-02-01")),
    ("end_date", lambda reports: reports.list_workflows("2024-01-01", 20240201)),
]


def test_both_dates_are_required_and_named_before_any_request(any_client: AnyClient) -> None:
    assert_each_names_its_field(any_client.cost_attribution, BAD_CALLS)
