"""Meter every OpenAI and Anthropic call in one line: `client.llm.instrument(...)`.

Runs offline: the SDKs talk to bearlumen's fake provider (`bearlumen.testing.FakeLLMProvider`),
which answers like OpenAI and Anthropic with fixed token usage. In your app, drop the fake and
the base_url arguments. Needs `pip install -e ".[demo]"` (openai, anthropic, genai-prices).

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_llm python examples/llm_instrument.py
"""

from __future__ import annotations

import anthropic
import openai

import bearlumen
from bearlumen.testing import FakeLLMProvider


def main() -> None:
    fake = FakeLLMProvider(input_tokens=1200, output_tokens=300, cache_read_tokens=400)
    with fake, bearlumen.Client() as client:
        oai = client.llm.instrument(openai.OpenAI(api_key="sk-...", base_url=fake.openai_base_url))
        claude = client.llm.instrument(
            anthropic.Anthropic(api_key="sk-ant-...", base_url=fake.anthropic_base_url)
        )
        messages = [{"role": "user", "content": "Where is my order?"}]

        with client.llm.attribute(end_user_id="eu_42", agent_id="support-bot"):
            oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
            with oai.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            ) as stream:
                answer = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

        with client.llm.attribute(agent_id="escalation-agent", workflow_id="refunds"):
            claude.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=messages)

        client.flush()
        for event in client.usage.query(limit=10)["events"]:
            meta = event["metadata"]
            print(
                f"{event['agentId']}: {meta['provider']} {meta['model']}"
                f" in={meta['input_tokens']} (cached {meta['cache_read_tokens']})"
                f" out={meta['output_tokens']} stream={meta['stream']}"
                f" cost=${meta['provider_cost_usd']:.6f} ({meta['price_source']})"
            )
        print(f"streamed answer: {answer}")


if __name__ == "__main__":
    main()
