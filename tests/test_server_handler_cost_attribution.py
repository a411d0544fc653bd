"""The local server's `/v1/cost-attribution` routes (`server/handlers/cost_attribution.py`) over
raw HTTP, against the wire contract (docs/wire-api.md, "Cost attribution"): the breakdowns and
the distinct values, their required dates and error bodies.

The SDK's side of the same calls: tests/test_resource_cost_attribution.py.
"""

from __future__ import annotations

import httpx
import pytest

from bearlumen import CostBreakdownResponse

from .conftest import api_error

ROUTES = ["by-agent", "by-workflow", "agents", "workflows"]
ALL_TIME = {"startDate": "2000-01-01T00:00:00Z", "endDate": "2100-01-01T00:00:00Z"}


def event(i: int = 0, **extra: object) -> dict[str, object]:
    return {"eventType": "token_usage", "metricName": "llm_tokens", "quantity": 10, **extra}


def test_cost_attribution_is_computed_in_sql(http: httpx.Client) -> None:
    events = [
        event(agentId="support-bot", workflowId="onboarding", metadata={"provider_cost_usd": 0.1}),
        event(agentId="support-bot", metadata={"provider_cost_usd": 0.2}),
        event(agentId="writer", workflowId="onboarding", metadata={"provider_cost_usd": 0.05}),
        event(metadata={"provider_cost_usd": 1.0}),
        event(agentId="free-bot"),
    ]
    http.post("/v1/usage/events/batch", json={"events": events})
    dates = {"startDate": "2000-01-01T00:00:00Z", "endDate": "2100-01-01T00:00:00Z"}
    by_agent = http.get("/v1/cost-attribution/by-agent", params=dates).json()
    assert [
        (i["attributionValue"], i["totalCost"], i["eventCount"]) for i in by_agent["items"]
    ] == [
        (None, 1.0, 1),
        ("support-bot", 0.3, 2),
        ("writer", 0.05, 1),
        ("free-bot", 0.0, 1),
    ]
    assert by_agent["totalCost"] == 1.35 and by_agent["groupBy"] == "agent"
    by_workflow = http.get("/v1/cost-attribution/by-workflow", params=dates).json()
    assert by_workflow["items"][0] == {
        "attributionValue": None, "totalCost": 1.2, "totalQuantity": 30.0, "eventCount": 3,
    }  # fmt: skip
    agents = http.get("/v1/cost-attribution/agents", params=dates).json()
    assert agents == {"values": ["free-bot", "support-bot", "writer"]}


@pytest.mark.parametrize("group_by", ["agent", "workflow"])
def test_a_breakdown_answers_the_contracts_keys_with_its_dates(
    http: httpx.Client, group_by: str
) -> None:
    answer = http.get(
        f"/v1/cost-attribution/by-{group_by}",
        params={"startDate": "2024-01-01", "endDate": "2024-02-01T01:00:00+01:00"},
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "items": [], "totalCost": 0, "startDate": "2024-01-01T00:00:00.000000Z",
        "endDate": "2024-02-01T00:00:00.000000Z", "groupBy": group_by,
    }  # fmt: skip
    assert set(answer.json()) == set(CostBreakdownResponse.__annotations__)


def test_costs_are_summed_exactly_in_dollars(http: httpx.Client) -> None:
    # $0.1 three times is $0.3, not the 0.30000000000000004 a float sum says: per item (summed
    # by the store) and in the total (summed by the handler).
    events = [
        event(agentId="bot", workflowId=workflow, metadata={"provider_cost_usd": 0.1})
        for workflow in ("w1", "w1", "w2")
    ]
    http.post("/v1/usage/events/batch", json={"events": events})
    by_agent = http.get("/v1/cost-attribution/by-agent", params=ALL_TIME).json()
    assert [item["totalCost"] for item in by_agent["items"]] == [0.3]
    by_workflow = http.get("/v1/cost-attribution/by-workflow", params=ALL_TIME).json()
    assert [item["totalCost"] for item in by_workflow["items"]] == [0.2, 0.1]
    assert by_workflow["totalCost"] == 0.3


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_needs_both_dates_in_order(http: httpx.Client, route: str) -> None:
    path = f"/v1/cost-attribution/{route}"
    for params, param in (
        ({}, "startDate"),
        ({"startDate": "2024-01-01"}, "endDate"),
        ({"startDate": "2024-02-01", "endDate": "2024-01-31"}, "endDate"),
        ({"startDate": "2024-01-01", "endDate": "next month"}, "endDate"),
        ({**ALL_TIME, "agentId": "bot"}, "agentId"),  # no filter but the dates
    ):
        assert api_error(http.get(path, params=params), 400, "invalid_request")["param"] == param
    assert http.get(path, params={"startDate": "2024-01-01", "endDate": "2024-01-01"}).is_success
