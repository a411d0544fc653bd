"""`bearlumen.otel.UsageSpanProcessor`: GenAI spans, as each instrumentation emits them, become
one priced usage event each in the real local server. Needs the `integrations` extra."""

from __future__ import annotations

import json
from typing import Any, Iterator

import genai_prices
import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider

import bearlumen
from bearlumen.otel import UsageSpanProcessor
from bearlumen.testing import LocalServer

# One call: 1200 input tokens of which 200 read from and 100 written to the cache, 300 output
# tokens of which 50 reasoning.
TOTAL = {"input_tokens": 1200, "output_tokens": 300, "cache_read": 200, "cache_write": 100}


@pytest.fixture
def tracer_provider(client: bearlumen.Client) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(UsageSpanProcessor(client))
    yield provider
    provider.shutdown()


def emit(provider: TracerProvider, scope: str, attributes: dict[str, Any]) -> Any:
    """One span, as the instrumentation named `scope` ends it: attributes set, then ended."""
    span = provider.get_tracer(scope).start_span("chat")
    span.set_attributes(attributes)
    span.end()
    return span


def the_event(client: bearlumen.Client) -> dict[str, Any]:
    assert client.flush(timeout=30)["complete"]
    events = client.usage.query(limit=100)["events"]
    assert len(events) == 1, events
    return dict(events[0])


def price(provider: str, model: str, cache_write: int = 100, **_: Any) -> float:
    usage = genai_prices.Usage(
        input_tokens=1200, output_tokens=300, cache_read_tokens=200, cache_write_tokens=cache_write
    )
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price)


def assert_priced(event: dict[str, Any], provider: str, model: str, **expected: Any) -> None:
    metadata = event["metadata"]
    counts = {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 200,
        "cache_write_tokens": 100,
        "reasoning_tokens": 50,
        **expected,
    }
    assert metadata == {
        **metadata,
        "provider": provider,
        "model": model,
        **counts,
        "priced": True,
        "price_source": f"genai-prices {genai_prices.__version__}",
    }
    assert event["quantity"] == counts["input_tokens"] + counts["output_tokens"]
    genai_provider = {"bedrock": "aws"}.get(provider, provider)
    expected_cost = price(genai_provider, model, cache_write=counts["cache_write_tokens"])
    assert metadata["provider_cost_usd"] == pytest.approx(expected_cost)


# -- one test per dialect, spans as each instrumentation sets them ---------------------------


def test_genai_conventions_latest_names(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    """opentelemetry-util-genai (under the official instrumentations), current conventions:
    gen_ai.provider.name, cache_read / cache_write, reasoning.output_tokens; input has cache."""
    emit(
        tracer_provider,
        "opentelemetry.util.genai.handler",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-6",
            "gen_ai.response.model": "claude-sonnet-4-6",
            "gen_ai.response.id": "msg_latest_1",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 200,
            "gen_ai.usage.cache_write.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 50,
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "anthropic:msg_latest_1"
    assert_priced(event, "anthropic", "claude-sonnet-4-6")


def test_genai_conventions_older_names(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    """opentelemetry-instrumentation-openai-v2 before the GenAI utils: gen_ai.system and
    cache_creation.input_tokens."""
    emit(
        tracer_provider,
        "opentelemetry.instrumentation.openai_v2",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.response.id": "chatcmpl-older",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 200,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 50,
            "server.address": "api.openai.com",
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "openai:chatcmpl-older"
    assert_priced(event, "openai", "gpt-4o-2024-08-06")


def test_openllmetry_anthropic(client: bearlumen.Client, tracer_provider: TracerProvider) -> None:
    """OpenLLMetry names the system "Anthropic", adds the cache to the input count itself and
    names the cache counts gen_ai.usage.cache_*_input_tokens."""
    emit(
        tracer_provider,
        "opentelemetry.instrumentation.anthropic",
        {
            "llm.request.type": "chat",
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-sonnet-4-6",
            "gen_ai.response.model": "claude-sonnet-4-6",
            "gen_ai.response.id": "msg_openllmetry",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "llm.usage.total_tokens": 1500,
            "gen_ai.usage.cache_read_input_tokens": 200,
            "gen_ai.usage.cache_creation_input_tokens": 100,
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "anthropic:msg_openllmetry"
    assert_priced(event, "anthropic", "claude-sonnet-4-6", reasoning_tokens=0)


def test_openllmetry_openai_older_names(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    """OpenLLMetry's OpenAI spans of 2024-25: prompt / completion tokens, reasoning_tokens."""
    emit(
        tracer_provider,
        "opentelemetry.instrumentation.openai.v1",
        {
            "llm.request.type": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "o4-mini",
            "gen_ai.response.model": "o4-mini-2025-04-16",
            "gen_ai.response.id": "chatcmpl-openllmetry",
            "gen_ai.usage.prompt_tokens": 1200,
            "gen_ai.usage.completion_tokens": 300,
            "llm.usage.total_tokens": 1500,
            "gen_ai.usage.cache_read_input_tokens": 200,
            "gen_ai.usage.reasoning_tokens": 50,
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "openai:chatcmpl-openllmetry"
    assert_priced(event, "openai", "o4-mini-2025-04-16", cache_write_tokens=0)


def test_openinference_has_no_response_id_so_the_span_is_the_key(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    span = emit(
        tracer_provider,
        "openinference.instrumentation.openai",
        {
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.system": "openai",
            "llm.model_name": "gpt-4o-2024-08-06",
            "llm.token_count.prompt": 1200,
            "llm.token_count.completion": 300,
            "llm.token_count.total": 1500,
            "llm.token_count.prompt_details.cache_read": 200,
            "llm.token_count.prompt_details.cache_write": 100,
            "llm.token_count.completion_details.reasoning": 50,
        },
    )
    event = the_event(client)
    ids = span.get_span_context()
    assert event["idempotencyKey"] == f"openai:otel-{ids.trace_id:032x}-{ids.span_id:016x}"
    assert_priced(event, "openai", "gpt-4o-2024-08-06")


def test_logfire_anthropic_input_leaves_the_cache_out_and_is_completed_from_its_raw_usage(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    """Logfire sets gen_ai.usage.input_tokens to Anthropic's own input_tokens (no cache) and
    keeps the whole usage object, JSON-encoded, in response_data."""
    raw_usage = {
        "input_tokens": 900,
        "cache_read_input_tokens": 200,
        "cache_creation_input_tokens": 100,
        "output_tokens": 300,
        "output_tokens_details": {"thinking_tokens": 50},
    }
    emit(
        tracer_provider,
        "logfire",
        {
            "gen_ai.system": "anthropic",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "claude-sonnet-4-6",
            "gen_ai.response.model": "claude-sonnet-4-6",
            "gen_ai.response.id": "msg_logfire",
            "gen_ai.usage.input_tokens": 900,
            "gen_ai.usage.output_tokens": 300,
            "response_data": json.dumps({"message": {"role": "assistant"}, "usage": raw_usage}),
            "logfire.msg_template": "Message with {request_data[model]!r}",
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "anthropic:msg_logfire"
    assert_priced(event, "anthropic", "claude-sonnet-4-6")


def test_logfire_openai_reads_cache_and_reasoning_from_its_raw_usage(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    raw_usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 50},
    }
    emit(
        tracer_provider,
        "logfire",
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.response.id": "chatcmpl-logfire",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "response_data": json.dumps({"message": {}, "usage": raw_usage}),
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "openai:chatcmpl-logfire"
    assert_priced(event, "openai", "gpt-4o-2024-08-06", cache_write_tokens=0)


def test_an_emitter_counting_input_without_the_cache_is_caught_by_the_counts(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    """An input count smaller than the cache counts cannot include them."""
    emit(
        tracer_provider,
        "some.anthropic.instrumentation",
        {
            "gen_ai.system": "anthropic",
            "gen_ai.response.model": "claude-sonnet-4-6",
            "gen_ai.response.id": "msg_apart",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 900,
            "gen_ai.usage.cache_creation.input_tokens": 200,
        },
    )
    metadata = the_event(client)["metadata"]
    assert metadata["input_tokens"] == 1200
    assert metadata["cache_read_tokens"] == 900


def test_the_openai_sdk_pointed_at_groq_is_groqs_call_at_groqs_price(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    emit(
        tracer_provider,
        "opentelemetry.util.genai.handler",
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.response.model": "llama-3.3-70b-versatile",
            "gen_ai.response.id": "chatcmpl-groq",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
            "server.address": "api.groq.com",
        },
    )
    event = the_event(client)
    assert event["idempotencyKey"] == "openai:chatcmpl-groq"  # instrument()'s key for it
    assert event["metadata"]["provider"] == "openai"  # the API
    assert event["metadata"]["platform"] == "groq"  # who served and billed it
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, output_tokens=100),
        model_ref="llama-3.3-70b-versatile",
        provider_id="groq",
    ).total_price
    assert event["metadata"]["provider_cost_usd"] == pytest.approx(float(expected))


def test_spans_without_token_counts_are_left_alone(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    emit(tracer_provider, "opentelemetry.instrumentation.httpx", {"http.method": "POST"})
    emit(tracer_provider, "opentelemetry.util.genai.handler", {"gen_ai.provider.name": "openai"})
    assert client.flush(timeout=30)["complete"]
    assert client.usage.query(limit=10)["events"] == []
    assert client.llm.capture_errors == 0


# -- attribution -----------------------------------------------------------------------------


def test_the_attribution_in_force_when_the_span_started_wins_over_baggage(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    tracer = tracer_provider.get_tracer("opentelemetry.util.genai.handler")
    token = context.attach(
        baggage.set_baggage(
            "bearlumen.workflow_id",
            "wf_from_baggage",
            baggage.set_baggage("bearlumen.end_user_id", "eu_from_baggage"),
        )
    )
    try:
        with client.llm.attribute(end_user_id="eu_1", agent_id="support-bot"):
            span = tracer.start_span("chat")
        span.set_attributes(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.response.model": "gpt-4o",
                "gen_ai.response.id": "chatcmpl-attributed",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 5,
            }
        )
        span.end()  # outside the attribute() block: the start's attribution still holds
    finally:
        context.detach(token)
    event = the_event(client)
    assert event["endUserId"] == "eu_1"
    assert event["agentId"] == "support-bot"
    assert event["workflowId"] == "wf_from_baggage"


def test_baggage_attributes_a_span_and_a_bad_value_is_left_out(
    client: bearlumen.Client, tracer_provider: TracerProvider
) -> None:
    carried = baggage.set_baggage("bearlumen.end_user_id", "eu_remote")
    carried = baggage.set_baggage("bearlumen.agent_id", "x" * 300, context=carried)
    span = tracer_provider.get_tracer("t").start_span("chat", context=carried)
    span.set_attributes(
        {
            "gen_ai.system": "openai",
            "gen_ai.response.model": "gpt-4o",
            "gen_ai.response.id": "chatcmpl-baggage",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
        }
    )
    span.end()
    event = the_event(client)
    assert event["endUserId"] == "eu_remote"
    assert event.get("agentId") is None  # 300 characters: not a name; the event still recorded


# -- the SpanProcessor contract ---------------------------------------------------------------


def test_on_end_never_raises_and_counts_what_it_could_not_record(
    client: bearlumen.Client, tracer_provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug of ours")

    # client.llm records through its own bounded reference to usage.record, taken at start.
    monkeypatch.setattr(client.llm, "_record_bounded", broken)
    emit(
        tracer_provider,
        "t",
        {"gen_ai.system": "openai", "gen_ai.response.id": "x", "gen_ai.usage.input_tokens": 1},
    )
    assert client.llm.capture_errors == 1


def test_force_flush_honours_its_timeout(fault_server: LocalServer, api_key: str) -> None:
    fault_server.set_faults(script=["latency:1500"])
    with bearlumen.Client(api_key=api_key, base_url=fault_server.base_url) as slow_client:
        processor = UsageSpanProcessor(slow_client)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        emit(
            provider,
            "t",
            {
                "gen_ai.system": "openai",
                "gen_ai.response.id": "slow",
                "gen_ai.usage.input_tokens": 1,
            },
        )
        assert processor.force_flush(timeout_millis=50) is False  # the server is still answering
        assert provider.force_flush(timeout_millis=30_000) is True
        provider.shutdown()
        assert slow_client.usage.query(limit=10)["events"][0]["idempotencyKey"] == "openai:slow"


# -- the real official instrumentation, against the fake provider ------------------------------


@pytest.fixture
def openai_v2(tracer_provider: TracerProvider) -> Iterator[None]:
    """opentelemetry-instrumentation-openai-v2 instrumenting the openai module (it patches the
    module's classes, so it is undone after the test)."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    instrumentor = instrumentation.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    yield
    instrumentor.uninstrument()


def test_the_official_openai_instrumentation_is_metered_under_instruments_key(
    client: bearlumen.Client, openai_v2: None, fake_llm_provider: Any
) -> None:
    openai = pytest.importorskip("openai")
    fake_llm_provider.configure(input_tokens=1200, output_tokens=300)
    sdk = openai.OpenAI(api_key="sk-fake", base_url=fake_llm_provider.openai_base_url)
    with sdk, client.llm.attribute(end_user_id="eu_1"):
        completion = sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    event = the_event(client)
    assert event["idempotencyKey"] == f"openai:{completion.id}"  # what instrument() would use
    assert event["endUserId"] == "eu_1"
    assert event["metadata"]["input_tokens"] == 1200
    assert event["metadata"]["provider_cost_usd"] == pytest.approx(
        float(
            genai_prices.calc_price(
                genai_prices.Usage(input_tokens=1200, output_tokens=300),
                model_ref="gpt-4o",
                provider_id="openai",
            ).total_price
        )
    )


def test_one_call_seen_by_instrument_the_otel_bridge_and_record_is_stored_once(
    client: bearlumen.Client, openai_v2: None, fake_llm_provider: Any, api_key: str, server: Any
) -> None:
    openai = pytest.importorskip("openai")
    sdk = client.llm.instrument(
        openai.OpenAI(api_key="sk-fake", base_url=fake_llm_provider.openai_base_url)
    )
    with sdk:
        completion = sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert client.llm.record(completion)["recorded"] is False  # this client already has it
    # Another process recording it too: the server stores it once.
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as other:
        assert other.llm.record(completion)["recorded"] is True
        assert other.flush(timeout=30)["complete"]
    event = the_event(client)
    assert event["idempotencyKey"] == f"openai:{completion.id}"


@pytest.mark.parametrize("stream", [False, True])
def test_a_span_of_a_call_instrument_meters_is_left_to_instrument(
    client: bearlumen.Client, openai_v2: None, fake_llm_provider: Any, stream: bool
) -> None:
    """The official instrumentation wraps the SDK inside `instrument()`'s wrapper, so its span
    ends first; it does not report cache reads. The bridge leaves that call to `instrument()`,
    whose event has them."""
    openai = pytest.importorskip("openai")
    fake_llm_provider.configure(input_tokens=1200, output_tokens=300, cache_read_tokens=200)
    sdk = client.llm.instrument(
        openai.OpenAI(api_key="sk-fake", base_url=fake_llm_provider.openai_base_url)
    )
    try:
        with sdk:
            answer = sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=stream
            )
            for _ in answer if stream else ():
                pass
    finally:
        fake_llm_provider.configure(cache_read_tokens=0)  # the fake is shared by the module
    event = the_event(client)
    assert event["metadata"]["cache_read_tokens"] == 200
    assert event["metadata"]["input_tokens"] == 1200
