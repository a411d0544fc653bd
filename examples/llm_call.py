"""Meter one chat completion: tokens and cost from the response's `usage` block.

No model provider is called: the response below is built locally, shaped like an OpenAI chat
completion. In your app, pass the real response object instead.

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_llm python examples/llm_call.py
"""

from __future__ import annotations

from dataclasses import dataclass

import bearlumen

# Dollars per million tokens: (input, output).
PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class ChatCompletion:
    id: str
    model: str
    usage: Usage


def fake_completion() -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-local-1",
        model="gpt-4o-mini",
        usage=Usage(prompt_tokens=1250, completion_tokens=310, total_tokens=1560),
    )


def meter(
    client: bearlumen.Client, response: ChatCompletion, *, agent: str, workflow: str, user: str
) -> str:
    """Record what one completion cost; returns the idempotency key (the completion's id)."""
    price_in, price_out = PRICES[response.model]
    cost = (
        response.usage.prompt_tokens * price_in + response.usage.completion_tokens * price_out
    ) / 1e6
    result = client.usage.record(
        event_type="token_usage",
        metric_name="llm_tokens",
        quantity=response.usage.total_tokens,
        idempotency_key=response.id,  # a retried request is never billed twice
        agent_id=agent,
        workflow_id=workflow,
        end_user_id=user,
        metadata={
            "model": response.model,
            "provider": "openai",
            "input_tokens": response.usage.prompt_tokens,
            "output_tokens": response.usage.completion_tokens,
            "provider_cost_usd": round(cost, 9),
        },
    )
    return result["idempotency_key"]


if __name__ == "__main__":
    with bearlumen.Client() as client:
        key = meter(
            client, fake_completion(), agent="support-bot", workflow="ticket-triage", user="eu_demo"
        )
        client.flush()
        event = client.usage.query(agent_id="support-bot", limit=1000)["events"]
        mine = [e for e in event if e["idempotencyKey"] == key]
        print(
            f"metered {mine[0]['quantity']:.0f} tokens costing ${mine[0]['metadata']['provider_cost_usd']}"
        )
