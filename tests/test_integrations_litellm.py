"""`bearlumen.integrations.litellm.UsageLogger`: real LiteLLM calls to the fake provider,
metering into the real local server. Needs the `integrations` extra."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Iterator

import genai_prices
import pytest

# LiteLLM fetches its price map from GitHub at import unless told to use its local copy: the
# tests stay on loopback.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
pytest.importorskip("litellm")

import litellm

import bearlumen
from bearlumen.integrations.litellm import UsageLogger
from bearlumen.testing import FakeLLMProvider

USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 200,
    "cache_write_tokens": 100,
    "cache_write_1h_tokens": 40,
    "reasoning_tokens": 50,
}
MESSAGES = [{"role": "user", "content": "hi"}]
# LiteLLM's own models and calls warn (pydantic about its TypedDicts, and more): theirs to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Items? .* on TypedDict class .*ReadOnly"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_(computed_)?fields' attribute"),
    # LiteLLM's sync calls leave an event loop of its own unclosed at exit.
    pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning"),
]


class WatchedLogger(UsageLogger):
    """The logger under test, saying when LiteLLM (from its own thread or task) called it."""

    def __init__(self, client: bearlumen.Client) -> None:
        super().__init__(client)
        self.called = threading.Event()

    def log_success_event(self, **arguments: Any) -> None:  # LiteLLM passes them by name
        super().log_success_event(**arguments)
        self.called.set()

    async def async_log_success_event(self, **arguments: Any) -> None:
        await super().async_log_success_event(**arguments)
        self.called.set()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(**USAGE) as provider:
        yield provider


@pytest.fixture
def logger(client: bearlumen.Client, monkeypatch: pytest.MonkeyPatch) -> WatchedLogger:
    watched = WatchedLogger(client)
    # LiteLLM copies `callbacks` into lists of its own on a call: each test starts them afresh.
    for name in (
        "input_callback",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
    ):
        monkeypatch.setattr(litellm, name, [])
    monkeypatch.setattr(litellm, "callbacks", [watched])
    return watched


def the_event(client: bearlumen.Client, logger: WatchedLogger) -> dict[str, Any]:
    assert logger.called.wait(30)
    assert client.flush(timeout=30)["complete"]
    (event,) = client.usage.query(limit=10)["events"]
    return dict(event)


def price(provider: str, model: str, one_hour: int = 0) -> float:
    usage = genai_prices.Usage(
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=200,
        cache_write_tokens=100,
        **({"cache_write_1h_tokens": one_hour} if one_hour else {}),
    )
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price)


def test_a_sync_openai_call_is_one_event_under_instruments_key(
    client: bearlumen.Client, fake: FakeLLMProvider, logger: WatchedLogger
) -> None:
    response = litellm.completion(
        model="openai/gpt-4o",
        api_base=fake.openai_base_url,
        api_key="sk-fake",
        messages=MESSAGES,
        metadata={"end_user_id": "eu_1", "agent_id": "support-bot"},
    )
    event = the_event(client, logger)
    assert event["idempotencyKey"] == f"openai:{response.id}"
    assert (event["endUserId"], event["agentId"]) == ("eu_1", "support-bot")
    metadata = event["metadata"]
    assert metadata == {
        **metadata,
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 200,
        "cache_write_tokens": 100,
        "reasoning_tokens": 50,
        "stream": False,
    }
    assert metadata["provider_cost_usd"] == pytest.approx(price("openai", "gpt-4o"))


def test_an_async_anthropic_call_counts_its_cache_once_and_keeps_the_callers_attribution(
    client: bearlumen.Client, fake: FakeLLMProvider, logger: WatchedLogger
) -> None:
    async def main() -> Any:
        with client.llm.attribute(end_user_id="eu_context"):
            response = await litellm.acompletion(
                model="anthropic/claude-sonnet-4-6",
                api_base=fake.anthropic_base_url,
                api_key="sk-fake",
                messages=MESSAGES,
            )
        # LiteLLM logs from a task of this loop: keep the loop running until it has.
        await asyncio.get_running_loop().run_in_executor(None, logger.called.wait, 30)
        return response

    response = asyncio.run(main())
    event = the_event(client, logger)
    assert event["idempotencyKey"] == f"anthropic:{response.id}"
    assert event["endUserId"] == "eu_context"
    metadata = event["metadata"]
    assert metadata == {
        **metadata,
        "provider": "anthropic",
        "input_tokens": 1200,  # LiteLLM's prompt_tokens already holds Anthropic's cache
        "cache_read_tokens": 200,
        "cache_write_tokens": 100,
        "cache_write_1h_tokens": 40,
    }
    assert metadata["provider_cost_usd"] == pytest.approx(
        price("anthropic", "claude-sonnet-4-6", one_hour=40)
    )


def test_a_stream_is_one_event_when_it_ends(
    client: bearlumen.Client, fake: FakeLLMProvider, logger: WatchedLogger
) -> None:
    chunks = litellm.completion(
        model="openai/gpt-4o",
        api_base=fake.openai_base_url,
        api_key="sk-fake",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        metadata={"tags": ["workflow_id:triage"]},
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    event = the_event(client, logger)
    assert event["metadata"]["stream"] is True
    assert event["metadata"]["input_tokens"] == 1200
