"""Meter every OpenAI and Anthropic call in one line: `client.llm.instrument(...)`.

Runs offline: the SDKs talk to bearlumen's fake provider (`bearlumen.testing.FakeLLMProvider`),
which answers like OpenAI and Anthropic with fixed token usage. In your app, drop the fake and
the base_url arguments. Needs `pip install -e ".[demo]"` (openai, anthropic, genai-prices).

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_llm python examples/llm_instrument.py
"""

from __future__ import annotations

from datetime import datetime, timezone

import anthropic
import openai

import bearlumen
from bearlumen.testing import FakeLLMProvider


def main() -> None:
    fake = FakeLLMProvider(input_tokens=1200, output_tokens=300, cache_read_tokens=400)
    started = datetime.now(timezone.utc)
    with fake, bearlumen.Client() as client:
        oai = client.llm.instrument(openai.OpenAI(api_key="sk-...", base_url=fake.openai_base_url))
        claude = client.llm.instrument(
            anthropic.Anthropic(api_key="sk-ant-...", base_url=fake.anthropic_base_url)
        )
        messages = [{"role": "user", "content": "Where is my order?"}]

        with client.llm.attribute(end_user_id="eu_42", agent_id="support-bot"):
            completion = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
            with oai.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            ) as stream:
                chunks = list(stream)
            answer = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)

        with client.llm.attribute(agent_id="escalation-agent", workflow_id="refunds"):
            message = claude.messages.create(
                model="claude-haiku-4-5", max_tokens=512, messages=messages
            )

        client.flush(timeout=10)
        # Each event's key is the provider's response id: list this run's three, not whatever
        # else this API key recorded before.
        keys = [f"openai:{completion.id}", f"openai:{chunks[0].id}", f"anthropic:{message.id}"]
        events = client.usage.query(start_date=started, limit=1000)["events"]
        by_key = {event["idempotencyKey"]: event for event in events}
        for key in keys:
            event, meta = by_key[key], by_key[key]["metadata"]
            print(
                f"{event['agentId']}: {meta['provider']} {meta['model']}"
                f" in={meta['input_tokens']} (cached {meta['cache_read_tokens']})"
                f" out={meta['output_tokens']} stream={meta['stream']}"
                f" cost=${meta['provider_cost_usd']:.6f} ({meta['price_source']})"
            )
        print(f"streamed answer: {answer}")


if __name__ == "__main__":
    main()
