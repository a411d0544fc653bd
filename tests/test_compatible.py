"""OpenAI-compatible vendors: the real openai SDK with a vendor's `base_url` is metered as that
vendor's call (`platform`), at its price where genai-prices knows the model there, unpriced
(never $0) where it does not. The requests travel to the fake provider on loopback: a transport
sends what the SDK addressed to the vendor's host there instead."""

from __future__ import annotations

import importlib
from typing import Any, Iterator

import genai_prices
import openai
import pytest

import bearlumen
from bearlumen.testing import FakeLLMProvider

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(input_tokens=1000, output_tokens=100) as provider:
        yield provider


def _transport_to(fake: FakeLLMProvider) -> Any:
    """An HTTP transport of the openai SDK's own httpx that sends every request to the fake
    provider, the path kept from its `/v1/` on (Groq's `/openai/v1/...`, OpenRouter's
    `/api/v1/...`)."""
    base = next(k for k in openai.DefaultHttpxClient.__mro__ if k.__module__.startswith("httpx"))
    httpx = importlib.import_module(base.__module__.split(".")[0])  # httpx2 for openai 3
    target = httpx.URL(fake.base_url)

    class ToTheFake(httpx.HTTPTransport):  # type: ignore[misc, name-defined]
        def handle_request(self, request: Any) -> Any:
            path = request.url.path
            request.url = request.url.copy_with(
                scheme=target.scheme,
                host=target.host,
                port=target.port,
                path=path[path.index("/v1/") :],
            )
            request.headers["host"] = f"{target.host}:{target.port}"
            return super().handle_request(request)

    return ToTheFake()


def vendor_client(client: bearlumen.Client, fake: FakeLLMProvider, base_url: str) -> Any:
    sdk = openai.OpenAI(
        api_key="sk-fake",
        base_url=base_url,
        http_client=openai.DefaultHttpxClient(transport=_transport_to(fake)),
    )
    return client.llm.instrument(sdk)


def the_event(client: bearlumen.Client) -> dict[str, Any]:
    assert client.flush(timeout=30)["complete"]
    (event,) = client.usage.query(limit=10)["events"]
    return dict(event)


@pytest.mark.parametrize(
    ("base_url", "platform", "model"),
    [
        ("https://api.groq.com/openai/v1", "groq", "llama-3.3-70b-versatile"),
        ("https://api.mistral.ai/v1", "mistral", "mistral-large-latest"),
        ("https://api.deepseek.com/v1", "deepseek", "deepseek-chat"),
        ("https://openrouter.ai/api/v1", "openrouter", "openai/gpt-4o"),
        ("https://api.together.xyz/v1", "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("https://api.x.ai/v1", "x-ai", "grok-3"),
    ],
)
def test_a_compatible_vendor_is_named_and_priced_at_its_own_price(
    client: bearlumen.Client, fake: FakeLLMProvider, base_url: str, platform: str, model: str
) -> None:
    with vendor_client(client, fake, base_url) as sdk:
        completion = sdk.chat.completions.create(model=model, messages=MESSAGES)
    event = the_event(client)
    assert event["idempotencyKey"] == f"openai:{completion.id}"
    metadata = event["metadata"]
    assert (metadata["provider"], metadata["platform"], metadata["model"]) == (
        "openai",
        platform,
        model,
    )
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, output_tokens=100),
        model_ref=model,
        provider_id=platform,
    ).total_price
    assert metadata["provider_cost_usd"] == pytest.approx(float(expected))


def test_a_model_the_vendor_is_not_known_to_serve_is_unpriced_never_zero(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    with vendor_client(client, fake, "https://api.fireworks.ai/inference/v1") as sdk:
        sdk.chat.completions.create(model="accounts/acme/models/our-fine-tune", messages=MESSAGES)
    metadata = the_event(client)["metadata"]
    assert metadata["platform"] == "fireworks"
    assert metadata["priced"] is False
    assert "provider_cost_usd" not in metadata
    assert metadata["input_tokens"] == 1000


def test_a_self_hosted_server_is_the_openai_api_and_unpriced_for_a_model_openai_does_not_sell(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    """A vLLM server (here the fake itself, on loopback) has no vendor and no price list."""
    with client.llm.instrument(openai.OpenAI(api_key="x", base_url=fake.openai_base_url)) as sdk:
        sdk.chat.completions.create(model="meta-llama/Llama-3.1-8B-Instruct", messages=MESSAGES)
    metadata = the_event(client)["metadata"]
    assert (metadata["provider"], metadata["platform"]) == ("openai", None)
    assert metadata["priced"] is False
    assert "provider_cost_usd" not in metadata


@pytest.mark.parametrize("stream", [False, True])
def test_openrouters_own_usage_cost_is_the_price_and_says_so(
    client: bearlumen.Client, fake: FakeLLMProvider, stream: bool
) -> None:
    """OpenRouter states what it billed (`usage.cost`, in USD): that is the price, not the list
    price of the model, and `price_source` says where it came from."""
    headers = {"X-Fake-Usage": "cost_usd=0.00123"}
    with vendor_client(client, fake, "https://openrouter.ai/api/v1") as sdk:
        answer = sdk.chat.completions.create(
            model="openai/gpt-4o", messages=MESSAGES, stream=stream, extra_headers=headers
        )
        for _ in answer if stream else ():
            pass
    metadata = the_event(client)["metadata"]
    assert (metadata["platform"], metadata["stream"]) == ("openrouter", stream)
    assert metadata["provider_cost_usd"] == 0.00123
    assert metadata["price_source"] == "openrouter usage.cost"
    assert metadata["input_tokens"] == 1000


def test_a_usage_cost_from_another_vendor_is_not_taken_for_the_price(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    """Only OpenRouter's `cost` is known to be what the vendor billed."""
    with vendor_client(client, fake, "https://api.groq.com/openai/v1") as sdk:
        sdk.chat.completions.create(
            model="llama-3.3-70b-versatile",
            messages=MESSAGES,
            extra_headers={"X-Fake-Usage": "cost_usd=9.5"},
        )
    metadata = the_event(client)["metadata"]
    assert metadata["price_source"].startswith("genai-prices")
    assert metadata["provider_cost_usd"] != 9.5
