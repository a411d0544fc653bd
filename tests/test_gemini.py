"""`client.llm.instrument(google.genai.Client(...))`: the real google-genai SDK against the fake
provider's Gemini API, metering into the real local server. Needs the `integrations` extra."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import genai_prices
import pytest

pytest.importorskip("google.genai")

from google import genai
from google.genai import types

import bearlumen
from bearlumen.testing import FakeLLMProvider

from ._llm_fixtures import stored

# All input 1200 (200 read from the cache), output 300 (50 of them thinking).
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 200,
    "reasoning_tokens": 50,
}
MODEL = "gemini-2.5-flash"
# google-genai's async client subclasses aiohttp's ClientSession, which aiohttp warns about:
# theirs to fix, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(**USAGE, chunks=4) as provider:
        yield provider


def gemini(fake: FakeLLMProvider, **options: Any) -> Any:
    options.setdefault("api_key", None if options.get("vertexai") else "fake-key")
    return genai.Client(http_options=types.HttpOptions(base_url=fake.base_url), **options)


def expected_cost() -> float:
    usage = genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200)
    return float(genai_prices.calc_price(usage, model_ref=MODEL, provider_id="google").total_price)


def _call(sdk: Any, is_async: bool, stream: bool) -> list[Any]:
    """The call's responses, as the caller sees them (one, or the stream's chunks)."""
    if not is_async:
        if stream:
            return list(sdk.models.generate_content_stream(model=MODEL, contents="hi"))
        return [sdk.models.generate_content(model=MODEL, contents="hi")]

    async def main() -> list[Any]:
        try:
            if stream:
                chunks = await sdk.aio.models.generate_content_stream(model=MODEL, contents="hi")
                return [chunk async for chunk in chunks]
            return [await sdk.aio.models.generate_content(model=MODEL, contents="hi")]
        finally:
            await sdk.aio.aclose()  # its pooled connections belong to this loop

    return asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "aio"])
def test_every_gemini_call_records_one_priced_event_with_cached_and_thinking_tokens(
    client: bearlumen.Client, fake: FakeLLMProvider, is_async: bool, stream: bool
) -> None:
    sdk = client.llm.instrument(gemini(fake))
    with client.llm.attribute(end_user_id="eu_1", agent_id="gemini-bot"):
        responses = _call(sdk, is_async, stream)
    assert "".join(r.text for r in responses) == fake.text  # the caller got its answer

    (event,) = stored(client)
    assert event["idempotencyKey"] == f"google:{responses[-1].response_id}"
    assert event["endUserId"] == "eu_1"
    assert event["agentId"] == "gemini-bot"
    assert event["quantity"] == 1500
    metadata = event["metadata"]
    assert metadata == {
        **metadata,
        "provider": "google",
        "platform": None,
        "model": MODEL,
        "input_tokens": 1200,
        "output_tokens": 300,  # candidates 250 + thoughts 50
        "cache_read_tokens": 200,
        "cache_write_tokens": 0,
        "reasoning_tokens": 50,
        "priced": True,
        "stream": stream,
        "partial": False,
    }
    assert metadata["provider_cost_usd"] == pytest.approx(expected_cost())


def test_a_vertex_ai_client_says_its_platform(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    credentials = pytest.importorskip("google.oauth2.credentials")
    sdk = client.llm.instrument(
        gemini(
            fake,
            vertexai=True,
            project="proj",
            location="us-central1",
            credentials=credentials.Credentials(token="fake-token"),
        )
    )
    sdk.models.generate_content(model=MODEL, contents="hi")
    (event,) = stored(client)
    assert event["metadata"]["platform"] == "vertex"
    assert event["metadata"]["provider_cost_usd"] == pytest.approx(expected_cost())


def test_a_stream_left_halfway_records_a_partial_event(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    sdk = client.llm.instrument(gemini(fake))
    chunks = sdk.models.generate_content_stream(model=MODEL, contents="hi")
    first = next(chunks)
    chunks.close()
    (event,) = stored(client)
    assert event["idempotencyKey"] == f"google:{first.response_id}"
    assert event["metadata"]["partial"] is True
    assert event["metadata"]["input_tokens"] == 1200  # what the first chunk told


def test_the_providers_own_errors_pass_through_and_record_nothing(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    sdk = client.llm.instrument(
        genai.Client(
            api_key="fake-key",
            http_options=types.HttpOptions(base_url=fake.base_url + "/nowhere"),
        )
    )
    with pytest.raises(genai.errors.ClientError):
        sdk.models.generate_content(model=MODEL, contents="hi")
    assert stored(client) == []
    assert client.llm.capture_errors == 0
