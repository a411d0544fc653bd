"""`bearlumen.integrations.langchain.UsageCallbackHandler`: real LangChain chat models
(langchain-openai, langchain-anthropic) against the fake provider, metering into the real local
server. Needs the `integrations` extra and the two LangChain provider packages."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import genai_prices
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

import langchain_anthropic
import langchain_openai

import bearlumen
from bearlumen.integrations.langchain import UsageCallbackHandler
from bearlumen.testing import FakeLLMProvider

USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 200,
    "cache_write_tokens": 100,
    "reasoning_tokens": 50,
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(**USAGE) as provider:
        yield provider


def chat_openai(fake: FakeLLMProvider, **options: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model="gpt-4o", api_key="sk-fake", base_url=fake.openai_base_url, **options
    )


def stored(client: bearlumen.Client) -> list[dict[str, Any]]:
    assert client.flush(timeout=30)["complete"]
    return list(client.usage.query(limit=100)["events"])


def price(provider: str, model: str) -> float:
    usage = genai_prices.Usage(
        input_tokens=1200, output_tokens=300, cache_read_tokens=200, cache_write_tokens=100
    )
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price)


COUNTS = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 200,
    "cache_write_tokens": 100,
    "reasoning_tokens": 50,
    "priced": True,
}


def test_a_chat_openai_run_is_one_event_under_instruments_key(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    message = chat_openai(fake).invoke(
        "hi",
        config={
            "callbacks": [UsageCallbackHandler(client)],
            "metadata": {"end_user_id": "eu_1"},
            "tags": ["agent_id:support-bot"],
        },
    )
    (event,) = stored(client)
    assert event["idempotencyKey"] == f"openai:{message.response_metadata['id']}"
    assert (event["endUserId"], event["agentId"]) == ("eu_1", "support-bot")
    metadata = event["metadata"]
    assert metadata == {**metadata, **COUNTS, "provider": "openai", "model": "gpt-4o"}
    assert metadata["provider_cost_usd"] == pytest.approx(price("openai", "gpt-4o"))


def test_an_async_chat_anthropic_run_reads_langchains_split_cache_writes(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    model = langchain_anthropic.ChatAnthropic(
        model="claude-sonnet-4-6", api_key="sk-fake", base_url=fake.anthropic_base_url
    )
    handler = UsageCallbackHandler(client)

    async def main() -> Any:
        with client.llm.attribute(end_user_id="eu_context"):  # wins over the run's metadata
            return await model.ainvoke(
                "hi", config={"callbacks": [handler], "metadata": {"end_user_id": "eu_meta"}}
            )

    message = asyncio.run(main())
    (event,) = stored(client)
    assert event["idempotencyKey"] == f"anthropic:{message.response_metadata['id']}"
    assert event["endUserId"] == "eu_context"
    metadata = event["metadata"]
    assert metadata == {**metadata, **COUNTS, "provider": "anthropic", "model": "claude-sonnet-4-6"}
    assert metadata["provider_cost_usd"] == pytest.approx(price("anthropic", "claude-sonnet-4-6"))


def test_a_streamed_run_asking_for_usage_is_one_priced_event(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    chunks = list(
        chat_openai(fake, stream_usage=True).stream(
            "hi", config={"callbacks": [UsageCallbackHandler(client)]}
        )
    )
    assert "".join(str(chunk.content) for chunk in chunks) == fake.text
    (event,) = stored(client)
    assert event["metadata"] == {**event["metadata"], **COUNTS}


def test_a_streamed_run_without_usage_is_recorded_partial_and_unpriced(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    list(chat_openai(fake).stream("hi", config={"callbacks": [UsageCallbackHandler(client)]}))
    (event,) = stored(client)
    assert event["idempotencyKey"].startswith("openai:langchain-run-")
    assert event["metadata"]["partial"] is True
    assert event["metadata"]["priced"] is False


def test_instrumenting_chat_openais_root_client_meters_each_call_once(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    """ChatOpenAI calls `with_raw_response.create` on its `root_client`, which `instrument()`
    meters, streamed or not. With the handler too, an invoked call is still one event (both give
    it the provider's id); a streamed run carries no provider id, so use one or the other."""
    chat = chat_openai(fake, stream_usage=True)
    client.llm.instrument(chat.root_client)
    invoked = chat.invoke("hi", config={"callbacks": [UsageCallbackHandler(client)]})
    chunks = list(chat.stream("hi"))
    assert "".join(str(chunk.content) for chunk in chunks) == fake.text
    assert client.llm.capture_errors == 0
    events = stored(client)
    first, second = sorted(events, key=lambda event: event["metadata"]["stream"])
    assert first["idempotencyKey"] == f"openai:{invoked.response_metadata['id']}"
    assert second["idempotencyKey"].startswith("openai:chatcmpl-")
    for event, stream in ((first, False), (second, True)):
        assert event["metadata"] == {**event["metadata"], **COUNTS, "stream": stream}
