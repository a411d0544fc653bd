"""Every call of the Python reference page, written as the page writes it, against the local server."""

from __future__ import annotations

import bearlumen
from bearlumen import (
    Client,
    CostBreakdownResponse,
    EndUser,
    Subscription,
    UsageRecordInput,
)


def test_end_users_as_the_reference_shows(client: Client) -> None:
    result = client.end_users.create(
        external_id="user_123",
        name="AI Startup Inc",
        metadata={"ai_provider": "openai"},
    )
    end_user: EndUser = result["endUser"]
    assert end_user["id"].startswith("eu_")
    assert end_user["externalId"] == "user_123" and end_user["status"] == "ACTIVE"
    assert set(end_user) == set(EndUser.__annotations__)

    result = client.end_users.update(
        end_user["id"],
        name="Updated Name",
        metadata={"plan": "enterprise"},
    )
    assert result["endUser"]["name"] == "Updated Name"
    assert result["endUser"]["metadata"] == {"plan": "enterprise"}

    result2 = client.end_users.list(
        status="ACTIVE",
        limit=50,
        offset=0,
    )
    assert [u["id"] for u in result2["endUsers"]] == [end_user["id"]]
    assert (result2["total"], result2["limit"], result2["offset"]) == (1, 50, 0)

    deactivated = client.end_users.deactivate(end_user["id"])
    assert deactivated["endUser"]["status"] == "DEACTIVATED"
    assert client.end_users.list(status="ACTIVE")["total"] == 0
    assert client.end_users.list(status="DEACTIVATED")["total"] == 1
    reactivated = client.end_users.reactivate(end_user["id"])
    assert reactivated["endUser"]["status"] == "ACTIVE"


def test_subscriptions_as_the_reference_shows(client: Client) -> None:
    subscription: Subscription = client.subscriptions.create(
        organization_id="org_123",
        plan_id="plan_pro_monthly",
        billing_cycle="monthly",
        start_date="2024-01-01T00:00:00Z",
    )
    assert subscription["id"].startswith("sub_") and subscription["status"] == "active"
    assert subscription["startDate"] == "2024-01-01T00:00:00.000000Z"
    assert set(subscription) == set(Subscription.__annotations__)

    sub = client.subscriptions.retrieve(subscription["id"])
    assert sub == subscription
    updated = client.subscriptions.update(subscription["id"], plan_id="plan_enterprise")
    assert updated["planId"] == "plan_enterprise" and updated["billingCycle"] == "monthly"
    cancelled = client.subscriptions.cancel(subscription["id"])
    assert cancelled["status"] == "canceled" and cancelled["canceledAt"] is not None

    client.subscriptions.create("org_other", "plan_x", "yearly", "2024-06-01")
    result = client.subscriptions.list(
        organization_id="org_123",
        limit=20,
        offset=0,
    )
    assert [s["id"] for s in result["subscriptions"]] == [subscription["id"]]
    assert client.subscriptions.list()["total"] == 2


def test_subscription_linked_to_an_end_user(client: Client) -> None:
    user = client.end_users.create(external_id="linked")["endUser"]
    sub = client.subscriptions.create(
        "org", "plan", "monthly", "2024-01-01", end_user_id=user["id"]
    )
    assert sub["endUserId"] == user["id"]


def test_usage_as_the_reference_shows(client: Client) -> None:
    result = client.usage.record(
        event_type="token_usage",
        metric_name="llm_tokens",
        quantity=150000,
        idempotency_key="invoice-001-summary",
        agent_id="support-bot",
        workflow_id="customer-onboarding",
        metadata={
            "model": "gpt-4-turbo",
            "provider": "openai",
            "provider_cost_usd": 4.50,
        },
    )
    assert result["recorded"] is True
    again = client.usage.record(
        event_type="token_usage",
        metric_name="llm_tokens",
        quantity=150000,
        idempotency_key="invoice-001-summary",
    )
    assert not again["recorded"]

    events: list[UsageRecordInput] = [
        {
            "event_type": "token_usage",
            "metric_name": "llm_tokens",
            "quantity": 1000,
            "idempotency_key": "batch-1-evt-1",
        },
        {
            "event_type": "token_usage",
            "metric_name": "llm_tokens",
            "quantity": 2000,
            "idempotency_key": "batch-1-evt-2",
        },
    ]
    batch = client.usage.record_batch(events)
    assert (batch["recorded_count"], batch["skipped_count"]) == (2, 0)
    assert client.flush()["recorded"] == 1

    sub = client.subscriptions.create("org_123", "plan", "monthly", "2024-01-01")
    client.usage.record_batch(
        [
            {"event_type": "token_usage", "metric_name": "llm_tokens", "quantity": 10,
             "subscription_id": sub["id"], "timestamp": "2024-01-10T00:00:00Z"},
            {"event_type": "token_usage", "metric_name": "images", "quantity": 2,
             "subscription_id": sub["id"], "timestamp": "2024-01-20T00:00:00Z"},
            {"event_type": "token_usage", "metric_name": "llm_tokens", "quantity": 99,
             "subscription_id": sub["id"], "timestamp": "2024-02-01T00:00:00Z"},
        ]
    )  # fmt: skip
    events_page = client.usage.query(
        subscription_id=sub["id"],
        metric_name="llm_tokens",
        start_date="2024-01-01",
        end_date="2024-01-31",
        limit=100,
    )
    assert [e["quantity"] for e in events_page["events"]] == [10]
    aggregation = client.usage.aggregation(
        subscription_id=sub["id"],
        start_date="2024-01-01",
        end_date="2024-01-31",
    )
    assert [(a["metricName"], a["totalQuantity"]) for a in aggregation["aggregations"]] == [
        ("images", 2.0),
        ("llm_tokens", 10.0),
    ]
    summary = client.usage.summary(
        subscription_id=sub["id"],
        start_date="2024-01-01",
        end_date="2024-01-31",
    )
    assert summary["totalEvents"] == 2 and summary["metricCount"] == 2


def test_cost_attribution_as_the_reference_shows(client: Client) -> None:
    for agent, workflow, cost in [
        ("support-bot", "customer-onboarding", 4.5),
        ("support-bot", "refunds", 0.5),
        ("analyst", "customer-onboarding", 1.25),
    ]:
        client.usage.record(
            "token_usage", "llm_tokens", 100, agent_id=agent, workflow_id=workflow,
            timestamp="2024-01-15T00:00:00Z", metadata={"provider_cost_usd": cost},
        )  # fmt: skip
    client.flush()
    result: CostBreakdownResponse = client.cost_attribution.by_agent(
        start_date="2024-01-01T00:00:00Z",
        end_date="2024-02-01T00:00:00Z",
    )
    lines = [f"{item['attributionValue']}: ${item['totalCost']}" for item in result["items"]]
    assert lines == ["support-bot: $5.0", "analyst: $1.25"]
    assert f"Total: ${result['totalCost']}" == "Total: $6.25"
    by_workflow = client.cost_attribution.by_workflow(
        start_date="2024-01-01T00:00:00Z",
        end_date="2024-02-01T00:00:00Z",
    )
    assert by_workflow["items"][0]["attributionValue"] == "customer-onboarding"
    agents = client.cost_attribution.list_agents(
        start_date="2024-01-01T00:00:00Z",
        end_date="2024-02-01T00:00:00Z",
    )
    assert agents["values"] == ["analyst", "support-bot"]
    workflows = client.cost_attribution.list_workflows(
        start_date="2024-01-01T00:00:00Z",
        end_date="2024-02-01T00:00:00Z",
    )
    assert workflows["values"] == ["customer-onboarding", "refunds"]
    outside = client.cost_attribution.by_agent(start_date="2024-02-01", end_date="2024-03-01")
    assert outside["items"] == [] and outside["totalCost"] == 0


def test_every_name_of_the_reference_is_exported() -> None:
    names = [
        "Client", "EndUser", "Subscription", "UsageRecordInput", "CostBreakdownResponse",
        "BearLumenError", "InvalidEmailError", "DuplicateCustomerError", "InvalidRequestError",
        "AuthenticationError", "NotFoundError", "RateLimitError", "NetworkError",
    ]  # fmt: skip
    for name in names:
        assert name in bearlumen.__all__ and hasattr(bearlumen, name)
    assert repr(bearlumen.Client).endswith("'bearlumen.Client'>")
    for exception in names[5:]:
        assert issubclass(getattr(bearlumen, exception), bearlumen.BearLumenError)


def test_usage_record_input_matches_the_wire_model() -> None:
    from bearlumen._wire import UsageEventInput

    assert set(UsageRecordInput.__annotations__) == set(UsageEventInput.model_fields)
