"""`client.llm` on the cloud platforms' clients: Azure OpenAI, Anthropic on Bedrock and on
Vertex AI. The same APIs, billed by another vendor at its own prices: each call is priced with
genai-prices' entry for that vendor (`azure`, `aws`, `google`) and says so (`platform`).

The real SDK clients talk to the fake provider, which serves the platforms' URL shapes. Bedrock
streams in AWS's binary event-stream framing (decoded with botocore), which the fake does not
speak: Bedrock is tested unstreamed, and its streams go through the same code as Vertex's."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterator

import anthropic
import genai_prices
import openai
import pytest

import bearlumen
from bearlumen._llm._pricing import Pricer
from bearlumen.testing import FakeLLMProvider

from ._llm_fixtures import stored

MESSAGES = [{"role": "user", "content": "hi"}]
USAGE = {"input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 200}
AZURE_API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(**USAGE) as provider:
        yield provider


def library_price(provider_id: str, model: str) -> float:
    usage = genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200)
    return float(
        genai_prices.calc_price(usage, model_ref=model, provider_id=provider_id).total_price
    )


def _azure(fake: FakeLLMProvider, is_async: bool) -> Any:
    kind: Any = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
    return kind(api_key="sk-fake", api_version=AZURE_API_VERSION, base_url=fake.azure_base_url)


def _vertex(fake: FakeLLMProvider, is_async: bool) -> Any:
    kind: Any = anthropic.AsyncAnthropicVertex if is_async else anthropic.AnthropicVertex
    return kind(
        region="us-east5", project_id="acme-ml", access_token="ya29.fake", base_url=fake.base_url
    )


def _bedrock(fake: FakeLLMProvider, is_async: bool) -> Any:
    kind: Any = anthropic.AsyncAnthropicBedrock if is_async else anthropic.AnthropicBedrock
    try:  # an API key (Bearer auth) needs no AWS credentials nor boto3
        return kind(api_key="bedrock-fake", aws_region="us-east-1", base_url=fake.base_url)
    except TypeError:
        pytest.skip("this anthropic's AnthropicBedrock signs with AWS credentials (boto3) only")


def _run(sdk: Any, is_async: bool, call: Any) -> Any:
    """`call(sdk)` returns the answer (sync) or a coroutine of it (async)."""
    if not is_async:
        return call(sdk)

    async def main() -> Any:
        try:
            return await call(sdk)
        finally:
            await sdk.close()

    return asyncio.run(main())


async def _drain_async(stream: Any) -> list[Any]:
    async with stream as events:
        return [event async for event in events]


# (platform, genai-prices' provider id, make the client, the model as the call names it, call)
CASES = {
    "azure chat.completions": (
        "azure", "azure", _azure, "gpt-4o-2024-08-06",
        lambda c, m, stream: c.chat.completions.create(model=m, messages=MESSAGES, stream=stream),
    ),
    "azure responses": (
        "azure", "azure", _azure, "gpt-4o-mini",
        lambda c, m, stream: c.responses.create(model=m, input="hi", stream=stream),
    ),
    "vertex messages": (
        "vertex", "google", _vertex, "claude-3-5-sonnet-v2@20241022",
        lambda c, m, stream: c.messages.create(
            model=m, max_tokens=100, messages=MESSAGES, stream=stream
        ),
    ),
    "bedrock messages": (
        "bedrock", "aws", _bedrock, "anthropic.claude-3-5-sonnet-20240620-v1:0",
        lambda c, m, stream: c.messages.create(model=m, max_tokens=100, messages=MESSAGES),
    ),
    "bedrock cross-region profile": (
        "bedrock", "aws", _bedrock, "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        lambda c, m, stream: c.messages.create(model=m, max_tokens=100, messages=MESSAGES),
    ),
}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_platform_client_is_metered_and_priced_at_the_platforms_price(
    client: bearlumen.Client, fake: FakeLLMProvider, case: str, is_async: bool, stream: bool
) -> None:
    platform, provider_id, make, model, call = CASES[case]
    if stream and platform == "bedrock":
        pytest.skip("the fake provider does not speak Bedrock's event-stream framing")
    sdk = client.llm.instrument(make(fake, is_async))

    def run(c: Any) -> Any:
        result = call(c, model, stream)
        if not stream:
            return result
        if is_async:

            async def drained() -> list[Any]:
                return await _drain_async(await result)

            return drained()
        with result as events:
            return list(events)

    answer = _run(sdk, is_async, run)
    assert answer
    (event,) = stored(client)
    metadata = event["metadata"]
    assert metadata["platform"] == platform
    assert metadata["provider"] == ("openai" if platform == "azure" else "anthropic")
    assert metadata["model"] == model  # as the response names it: what reaches pricing
    assert (metadata["input_tokens"], metadata["output_tokens"]) == (1200, 300)
    assert metadata["priced"] is True
    assert metadata["provider_cost_usd"] == pytest.approx(library_price(provider_id, model))
    assert metadata["stream"] is stream


def test_a_vertex_stream_helper_is_metered_at_googles_price(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    claude = client.llm.instrument(_vertex(fake, False))
    model = "claude-sonnet-4-5@20250929"
    with claude.messages.stream(model=model, max_tokens=100, messages=MESSAGES) as stream:
        assert stream.get_final_text() == "Hello from the fake provider."
    (event,) = stored(client)
    assert event["metadata"]["platform"] == "vertex"
    assert event["metadata"]["provider_cost_usd"] == pytest.approx(library_price("google", model))


def test_bedrocks_regional_price_is_not_anthropics(client: bearlumen.Client) -> None:
    """What makes the platform matter: the same Claude costs 10% more in a Bedrock region."""
    pricer = Pricer()
    bedrock, _, _ = pricer.quote(
        "bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", 1000, 100, 0, 0
    )
    direct, _, _ = pricer.quote("anthropic", "claude-sonnet-4-5-20250929", 1000, 100, 0, 0)
    assert bedrock == pytest.approx(direct * 1.1)


def test_an_azure_deployment_name_genai_prices_cannot_map_is_recorded_unpriced_and_said_once(
    client: bearlumen.Client, fake: FakeLLMProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Azure's own answers name the underlying model; a proxy answering with the deployment
    name cannot be priced: the tokens are recorded, no cost, and the log says why once."""
    azure = client.llm.instrument(_azure(fake, False))
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        for _ in range(3):
            azure.chat.completions.create(model="support-bot-prod", messages=MESSAGES)
    events = stored(client)
    assert len(events) == 3
    for event in events:
        metadata = event["metadata"]
        assert (metadata["platform"], metadata["priced"]) == ("azure", False)
        assert "provider_cost_usd" not in metadata
        assert metadata["input_tokens"] == 1200
    said = [r.getMessage() for r in caplog.records if "has no price" in r.getMessage()]
    assert len(said) == 1 and "'support-bot-prod' at provider 'azure'" in said[0]


def test_set_price_for_a_platform_prices_its_calls_only(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    client.llm.set_price("azure", "support-bot-prod", input_per_mtok=2.0, output_per_mtok=8.0)
    azure = client.llm.instrument(_azure(fake, False))
    direct = client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url))
    azure.chat.completions.create(model="support-bot-prod", messages=MESSAGES)
    direct.chat.completions.create(model="support-bot-prod", messages=MESSAGES)
    by_platform = {e["metadata"]["platform"]: e["metadata"] for e in stored(client)}
    assert by_platform["azure"]["provider_cost_usd"] == pytest.approx((1200 * 2 + 300 * 8) / 1e6)
    assert by_platform["azure"]["price_source"] == "override"
    assert by_platform[None]["priced"] is False  # openai's own API: not the azure override


def test_a_copy_of_a_platform_client_keeps_its_platform(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    vertex = client.llm.instrument(_vertex(fake, False))
    vertex.with_options(timeout=5).messages.create(
        model="claude-3-5-sonnet-v2@20241022", max_tokens=100, messages=MESSAGES
    )
    (event,) = stored(client)
    assert event["metadata"]["platform"] == "vertex"
