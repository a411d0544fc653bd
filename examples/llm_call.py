"""Meter one chat completion you already have: `client.llm.record(response)`.

No model provider is called: the response below is built locally, shaped like an OpenAI chat
completion (`completion.model_dump()`). In your app, pass the real response object instead, or
meter every call of a client with `client.llm.instrument(...)` (examples/llm_instrument.py).
The tokens are read the way OpenAI counts them and priced by genai-prices (`bearlumen[llm]`);
the event's idempotency key is `openai:<completion id>`, so recording it twice bills it once.

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_llm python examples/llm_call.py
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import bearlumen


def fake_completion() -> dict[str, Any]:
    return {
        "id": f"chatcmpl-local-{uuid.uuid4().hex[:12]}",  # a provider's ids are unique per call
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 1250, "completion_tokens": 310, "total_tokens": 1560},
    }


def meter(client: bearlumen.Client, response: Any, *, agent: str, workflow: str, user: str) -> str:
    """Record what one completion cost; returns the event's idempotency key."""
    result = client.llm.record(response, agent_id=agent, workflow_id=workflow, end_user_id=user)
    client.llm.record(response, agent_id=agent)  # a retried request is never billed twice
    return result["idempotency_key"]


if __name__ == "__main__":
    started = datetime.now(timezone.utc)
    with bearlumen.Client() as client:
        key = meter(
            client, fake_completion(), agent="support-bot", workflow="ticket-triage", user="eu_demo"
        )
        client.flush(timeout=10)
        events = client.usage.query(agent_id="support-bot", start_date=started, limit=1000)
        mine = [e for e in events["events"] if e["idempotencyKey"] == key]
        print(
            f"metered {mine[0]['quantity']:.0f} tokens costing"
            f" ${mine[0]['metadata']['provider_cost_usd']} ({len(mine)} event)"
        )
