"""The reference page's flow, end to end: end user, subscription, usage, costs.

bearlumen serve &                      # or point BEARLUMEN_BASE_URL at the hosted API
BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_quickstart python examples/quickstart.py
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import bearlumen

started = datetime.now(timezone.utc)
client = bearlumen.Client()  # BEARLUMEN_API_KEY and BEARLUMEN_BASE_URL from the environment

result = client.end_users.create(
    external_id=f"user_{uuid.uuid4().hex[:8]}",
    name="AI Startup Inc",
    metadata={"ai_provider": "openai"},
)
end_user_id = result["endUser"]["id"]
print("end user:", end_user_id)

subscription = client.subscriptions.create(
    organization_id="org_123",
    plan_id="plan_pro_monthly",
    billing_cycle="monthly",
    start_date="2024-01-01T00:00:00Z",
    end_user_id=end_user_id,
)
print("subscription:", subscription["id"], subscription["status"])

result = client.usage.record(
    event_type="token_usage",
    metric_name="llm_tokens",
    quantity=150000,
    idempotency_key=f"invoice-001-summary-{end_user_id}",
    agent_id="support-bot",
    workflow_id="customer-onboarding",
    subscription_id=subscription["id"],
    end_user_id=end_user_id,
    metadata={"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50},
)
print("queued:", result["recorded"], result["idempotency_key"])

# record() only queued the event; flush() waits until the server has it.
delivered = client.flush(timeout=10)
print(f"delivered: {delivered['recorded']} recorded, {delivered['failed']} failed")

# This run's costs: whatever else the key recorded before is left out.
costs = client.cost_attribution.by_agent(start_date=started, end_date=started + timedelta(days=1))
for item in costs["items"]:
    print(f"{item['attributionValue']}: ${item['totalCost']}")
print(f"Total: ${costs['totalCost']}")

summary = client.usage.summary(subscription_id=subscription["id"])
print("events for the subscription:", summary["totalEvents"])
client.close()
