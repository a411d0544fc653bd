"""`client.llm`: the real openai and anthropic SDKs, instrumented, against the fake provider,
metering into the real local server. Every covered call, sync and async, streamed and not."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import weakref
from typing import Any, Callable, Iterator

import anthropic
import freezegun
import genai_prices
import openai
import pydantic
import pytest

import bearlumen
from bearlumen._llm import _pricing
from bearlumen._llm._usage import field
from bearlumen._llm._wrap import NOT_ASKED
from bearlumen.testing import FakeLLMProvider

from . import _llm_fixtures
from ._llm_fixtures import stored, the_event
from .conftest import collect_what_a_test_dropped_on_purpose

USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 200,
    "cache_write_tokens": 100,
    "cache_write_1h_tokens": 40,  # of the 100 cache writes (Anthropic reports the split)
    "reasoning_tokens": 50,
}
EVENT_KEYS = {
    "provider", "platform", "model", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens", "provider_cost_usd",
    "priced", "price_source", "stream", "partial", "service_tier",
}  # fmt: skip


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(**USAGE, chunks=6) as provider:
        yield provider


@pytest.fixture(autouse=True)
def fresh_fake(fake: FakeLLMProvider) -> None:
    fake.configure(**USAGE, chunks=6, reject_stream_options=False)


oai, claude = _llm_fixtures.oai, _llm_fixtures.claude  # the shared fixtures, by name


def price(provider: str, model: str, **usage: int) -> float:
    """genai-prices' own answer. 1-hour cache writes are Anthropic's alone (OpenAI's usage has no
    such field): they cost the model's `cache_write_1h_mtok` instead of its 5-minute write
    price, or twice the input price where genai-prices has none (older versions)."""
    result = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cache_read_tokens=usage["cache_read_tokens"],
            cache_write_tokens=usage["cache_write_tokens"],
        ),
        model_ref=model,
        provider_id=provider,
    )
    one_hour = usage.get("cache_write_1h_tokens", 0) if provider != "openai" else 0
    if not one_hour:
        return float(result.total_price)
    rates = result.model_price
    one_hour_rate = getattr(rates, "cache_write_1h_mtok", None) or 2 * rates.input_mtok
    return float(
        result.total_price + one_hour * (one_hour_rate - rates.cache_write_mtok) / 1_000_000
    )


# -- every covered call ------------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "hi"}]


def _chat(c: Any, stream: bool) -> Any:
    return c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=stream)


def _responses(c: Any, stream: bool) -> Any:
    return c.responses.create(model="o4-mini", input="hi", stream=stream)


def _messages(c: Any, stream: bool) -> Any:
    return c.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES, stream=stream
    )


CALLS = {
    "openai chat.completions": ("openai", "gpt-4o", _chat),
    "openai responses": ("openai", "o4-mini", _responses),
    "anthropic messages": ("anthropic", "claude-sonnet-4-6", _messages),
}


def _drain_sync(result: Any, stream: bool) -> Any:
    if not stream:
        return result
    with result as events:
        return list(events)


async def _drain_async(result: Any, stream: bool) -> Any:
    if not stream:
        return result
    async with result as events:
        return [item async for item in events]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("call", list(CALLS))
def test_every_covered_call_records_one_priced_event_with_cached_and_reasoning_tokens(
    client: bearlumen.Client, fake: FakeLLMProvider, call: str, is_async: bool, stream: bool
) -> None:
    provider, model, make_call = CALLS[call]
    if provider == "openai":
        kind: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
        sdk = kind(api_key="sk-fake", base_url=fake.openai_base_url)
    else:
        kind = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        sdk = kind(api_key="sk-fake", base_url=fake.anthropic_base_url)
    assert client.llm.instrument(sdk) is sdk

    with client.llm.attribute(agent_id="support-bot", end_user_id="eu_1"):
        if is_async:

            async def main() -> Any:
                try:
                    return await _drain_async(await make_call(sdk, stream), stream)
                finally:
                    await sdk.close()  # its pooled sockets belong to this loop

            result = asyncio.run(main())
        else:
            result = _drain_sync(make_call(sdk, stream), stream)
    assert result  # the caller got its answer

    event = the_event(client)
    metadata = event["metadata"]
    assert set(metadata) == EVENT_KEYS
    assert event["eventType"] == "token_usage"
    assert event["metricName"] == "llm_tokens"
    assert event["agentId"] == "support-bot"
    assert event["endUserId"] == "eu_1"
    assert event["quantity"] == 1500
    response_id = result.id if not stream else _stream_response_id(provider, call, result)
    assert event["idempotencyKey"] == f"{provider}:{response_id}"
    assert metadata == {
        **metadata,
        "provider": provider,
        "model": model,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 200,
        "cache_write_tokens": 100,
        "cache_write_1h_tokens": 40 if provider == "anthropic" else 0,
        "reasoning_tokens": 50,
        "platform": None,
        "priced": True,
        "price_source": f"genai-prices {genai_prices.__version__}",
        "stream": stream,
        "partial": False,
    }
    assert metadata["provider_cost_usd"] == pytest.approx(price(provider, model, **USAGE))


def _stream_response_id(provider: str, call: str, items: list[Any]) -> str:
    if call == "openai responses":
        return str(items[-1].response.id)
    if provider == "anthropic":
        return str(items[0].message.id)
    return str(items[0].id)


def test_anthropic_stream_helper_keeps_its_type_and_records_once(
    client: bearlumen.Client, claude: anthropic.Anthropic
) -> None:
    with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES
    ) as stream:
        assert type(stream).__name__ == "MessageStream"
        assert stream.get_final_text() == "Hello from the fake provider."
        message_id = stream.get_final_message().id
    event = the_event(client)
    assert event["idempotencyKey"] == f"anthropic:{message_id}"
    assert event["metadata"]["stream"] is True
    assert event["metadata"]["input_tokens"] == 1200
    assert event["metadata"]["output_tokens"] == 300


def test_async_anthropic_stream_helper_records_once(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    claude = client.llm.instrument(
        anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
    )

    async def main() -> str:
        async with (
            claude,
            claude.messages.stream(  # the SDK's sockets are closed in this loop
                model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES
            ) as stream,
        ):
            return await stream.get_final_text()

    assert asyncio.run(main()) == "Hello from the fake provider."
    assert the_event(client)["metadata"]["partial"] is False


# -- streams: what the caller sees ------------------------------------------------------------


def _plain_chunks(fake: FakeLLMProvider, **kwargs: Any) -> list[dict[str, Any]]:
    plain = openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    with plain.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, **kwargs
    ) as stream:
        return [chunk.model_dump(exclude={"id"}) for chunk in stream]


def test_chat_stream_asks_for_usage_and_hides_the_extra_chunk(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI
) -> None:
    without_us = _plain_chunks(fake)
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert fake.last_request["stream_options"] == {"include_usage": True}
    assert type(stream) is openai.Stream
    with stream:
        seen = [chunk.model_dump(exclude={"id", "usage"}) for chunk in stream]
    assert seen == [{k: v for k, v in c.items() if k != "usage"} for c in without_us]
    assert all(chunk["choices"] for chunk in seen)
    assert the_event(client)["metadata"]["input_tokens"] == 1200


def test_chat_stream_that_asks_for_usage_itself_still_sees_the_usage_chunk(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    with oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1200
    assert the_event(client)["metadata"]["partial"] is False


def test_inject_stream_usage_false_leaves_the_request_alone_and_says_why_there_are_no_tokens(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    fake.configure(reject_stream_options=True)  # an OpenAI-compatible server refusing it
    oai = client.llm.instrument(
        openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url), inject_stream_usage=False
    )
    with oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Hello from the fake provider."
    assert "stream_options" not in fake.last_request
    event = the_event(client)
    assert event["quantity"] == 0
    assert event["metadata"]["partial"] is False  # the stream was read whole
    assert event["metadata"]["stream"] is True
    assert event["metadata"]["model"] == "gpt-4o"
    assert event["metadata"]["priced"] is False
    assert event["metadata"]["unpriced_reason"] == NOT_ASKED
    assert "provider_cost_usd" not in event["metadata"]


def test_the_providers_own_errors_pass_through_untouched(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI
) -> None:
    fake.configure(reject_stream_options=True)
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 400
    assert "stream_options is not supported" in str(caught.value)
    assert stored(client) == []
    assert client.llm.capture_errors == 0


def test_openai_stream_abandoned_halfway_and_closed_records_a_partial_event(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    first_two = [next(stream), next(stream)]
    stream.close()
    event = the_event(client)
    assert event["idempotencyKey"] == f"openai:{first_two[0].id}"
    assert event["metadata"]["partial"] is True
    assert event["metadata"]["input_tokens"] == 0


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the dropped stream's socket: the case
def test_anthropic_stream_abandoned_halfway_records_what_message_start_told(
    client: bearlumen.Client, claude: anthropic.Anthropic
) -> None:
    stream = _messages(claude, True)
    start = next(stream)
    next(stream)
    del stream  # dropped, never closed: recorded when the stream is collected
    gc.collect()
    event = the_event(client)
    assert event["idempotencyKey"] == f"anthropic:{start.message.id}"
    metadata = event["metadata"]
    assert metadata["partial"] is True
    assert metadata["input_tokens"] == 1200
    assert metadata["cache_read_tokens"] == 200
    assert metadata["priced"] is True  # what is known is priced
    collect_what_a_test_dropped_on_purpose()


def _stream_outlives_its_loop(sdk: anthropic.Anthropic) -> bool:
    """Whether a stream of this (uninstrumented) client, left by break, is still alive."""
    stream = _messages(sdk, True)
    for _event in stream:
        break
    left = weakref.ref(stream)
    del stream
    return left() is not None


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the dropped streams' sockets: the case
def test_an_anthropic_stream_left_by_break_is_recorded_when_dropped_not_at_the_next_collection(
    client: bearlumen.Client, claude: anthropic.Anthropic, fake: FakeLLMProvider
) -> None:
    # Our close on the stream once held the stream (a bound method in its own dict): a cycle,
    # freed only by the cyclic collector, so the partial call was recorded whenever that ran,
    # or at exit after the client had closed (dropped). Freed as the SDK's own stream is now.
    gc.disable()
    try:
        plain = anthropic.Anthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
        if _stream_outlives_its_loop(plain):  # older SDKs: the collector's, with us or without
            pytest.skip(f"anthropic {anthropic.__version__}'s own stream is a reference cycle")
        for _ in range(3):
            for _event in _messages(claude, True):
                break  # the stream is dropped here, never closed
        assert len(stored(client)) == 3
    finally:
        gc.enable()
    collect_what_a_test_dropped_on_purpose()


# -- attribution -------------------------------------------------------------------------------


def test_twenty_concurrent_async_tasks_each_keep_their_own_attribution(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    oai = client.llm.instrument(
        openai.AsyncOpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    )
    inside = 0  # a barrier by hand: Python 3.9 has no asyncio.Barrier

    async def one_user(index: int, gate: asyncio.Event) -> None:
        nonlocal inside
        with client.llm.attribute(end_user_id=f"eu_{index}", agent_id=f"agent-{index}"):
            inside += 1
            if inside == 20:
                gate.set()
            await gate.wait()  # all twenty are inside their own attribute() at once
            await oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                extra_headers={"X-Fake-Usage": f"input_tokens={1000 + index},cache_read_tokens=0"},
            )

    async def main() -> None:
        gate = asyncio.Event()  # made inside the loop that waits on it (Python 3.9)
        async with oai:  # its pooled sockets belong to this loop: close them inside it
            await asyncio.gather(*(one_user(i, gate) for i in range(20)))

    asyncio.run(main())
    events = stored(client)
    assert len(events) == 20
    for event in events:
        index = event["metadata"]["input_tokens"] - 1000
        assert event["endUserId"] == f"eu_{index}"
        assert event["agentId"] == f"agent-{index}"


def test_attribute_nests_and_merges_metadata(client: bearlumen.Client, oai: openai.OpenAI) -> None:
    with client.llm.attribute(end_user_id="eu_outer", metadata={"team": "search", "tier": "a"}):
        with client.llm.attribute(agent_id="inner-agent", metadata={"tier": "b"}):
            inner = _chat(oai, False)
        outer = _chat(oai, False)
    by_key = {e["idempotencyKey"]: e for e in stored(client)}
    inside = by_key[f"openai:{inner.id}"]
    assert (inside["endUserId"], inside["agentId"]) == ("eu_outer", "inner-agent")
    assert inside["metadata"]["team"] == "search" and inside["metadata"]["tier"] == "b"
    after = by_key[f"openai:{outer.id}"]
    assert (after["endUserId"], after["agentId"]) == ("eu_outer", None)
    assert after["metadata"]["tier"] == "a"


def test_a_stream_keeps_the_attribution_of_the_call_that_opened_it(
    client: bearlumen.Client, claude: anthropic.Anthropic
) -> None:
    with client.llm.attribute(agent_id="opener"):
        stream = _messages(claude, True)
    with client.llm.attribute(agent_id="reader"), stream:
        list(stream)
    assert the_event(client)["agentId"] == "opener"


def test_attribute_rejects_bad_values_at_the_call() -> None:
    client = bearlumen.Client(api_key="sk_test_x", base_url="http://127.0.0.1:9", buffered=False)
    with pytest.raises(bearlumen.InvalidRequestError) as caught:
        with client.llm.attribute(agent_id=""):
            pass
    assert caught.value.param == "agent_id"


# -- record(): explicit, idempotent ------------------------------------------------------------


def test_the_same_response_recorded_twice_is_stored_once_even_from_two_clients(
    server: Any, api_key: str, fake: FakeLLMProvider
) -> None:
    plain = openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    completion = _chat(plain, False)
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as first:
        assert first.llm.record(completion, agent_id="a")["recorded"] is True
        assert first.llm.record(completion, agent_id="a")["recorded"] is False
        first.flush()
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as second:  # "a process"
        second.llm.record(completion.model_dump(), agent_id="a")  # the same response, as a dict
        assert second.flush()["duplicate"] == 1
        events = second.usage.query()["events"]
    assert [e["idempotencyKey"] for e in events] == [f"openai:{completion.id}"]


class _Served(pydantic.BaseModel):
    """Shaped as the SDKs' models are: fields, unknown keys kept (extra="allow"), a property."""

    model_config = pydantic.ConfigDict(extra="allow")
    prompt_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + 1


class _Dynamic(_Served):
    """A model that answers any name (as some frameworks' wrappers do)."""

    def __getattr__(self, name: str) -> Any:
        return f"dynamic {name}" if not name.startswith("_") else super().__getattr__(name)


@pytest.mark.parametrize(
    "name", ["prompt_tokens", "cost", "total", "absent", "model_fields_set", "__class__"]
)
@pytest.mark.parametrize("kind", [_Served, _Dynamic])
def test_a_response_object_is_read_as_getattr_reads_it(kind: type, name: str) -> None:
    # The capture reads SDK models through a shortcut (their fields in __dict__, unknown keys
    # in __pydantic_extra__): each answer must be getattr's.
    served = kind.model_validate({"prompt_tokens": 7, "cost": 0.25})
    assert field(served, name) == getattr(served, name, None)


def test_record_reads_dicts_of_both_providers(client: bearlumen.Client) -> None:
    client.llm.record(
        {
            "id": "msg_dict_1",
            "type": "message",
            "model": "claude-haiku-4-5",
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 0,
                "output_tokens": 3,
            },
        }
    )
    client.llm.record(
        {"id": "x1", "model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
        provider="openai",
        workflow_id="wf",
    )
    by_key = {e["idempotencyKey"]: e for e in stored(client)}
    assert by_key["anthropic:msg_dict_1"]["metadata"]["input_tokens"] == 15
    assert by_key["anthropic:msg_dict_1"]["quantity"] == 18
    assert by_key["openai:x1"]["quantity"] == 9
    assert by_key["openai:x1"]["workflowId"] == "wf"


@pytest.mark.parametrize(
    ("response", "provider", "param"),
    [
        ({"id": "x", "usage": {"prompt_tokens": 1}}, None, "response"),  # provider unknowable
        ({"id": "x", "object": "response", "status": "queued"}, None, "response"),  # pending
        ({"object": "chat.completion", "usage": {"prompt_tokens": 1}}, None, "response"),  # no id
        ({"id": "x", "usage": {}}, "mistral", "provider"),
    ],
)
def test_record_rejects_what_it_cannot_read_with_a_typed_error(
    client: bearlumen.Client, response: Any, provider: Any, param: str
) -> None:
    with pytest.raises(bearlumen.InvalidRequestError) as caught:
        client.llm.record(response, provider=provider)
    assert caught.value.param == param
    assert client.stats()["queued"] == 0


# -- prices ------------------------------------------------------------------------------------


def test_an_unknown_model_is_recorded_unpriced_never_at_zero(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    oai.chat.completions.create(model="our-own-finetune-7b", messages=MESSAGES)
    metadata = the_event(client)["metadata"]
    assert metadata["priced"] is False
    assert "provider_cost_usd" not in metadata
    assert metadata["price_source"] == f"genai-prices {genai_prices.__version__}"
    assert metadata["input_tokens"] == 1200


def test_set_price_overrides_genai_prices(client: bearlumen.Client, oai: openai.OpenAI) -> None:
    client.llm.set_price(
        "openai", "our-own-finetune-7b", input_per_mtok=1.0, output_per_mtok=4.0,
        cache_read_per_mtok=0.5,
    )  # fmt: skip
    oai.chat.completions.create(model="our-own-finetune-7b", messages=MESSAGES)
    metadata = the_event(client)["metadata"]
    assert metadata["price_source"] == "override"
    # 900 uncached + 100 cache writes at $1, 200 cache reads at $0.5, 300 output at $4 per MTok
    assert metadata["provider_cost_usd"] == pytest.approx((1000 * 1 + 200 * 0.5 + 300 * 4) / 1e6)


def test_by_agent_totals_equal_the_sum_of_recorded_costs(
    client: bearlumen.Client, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    plan: list[tuple[str, Callable[[], Any]]] = [
        ("support-bot", lambda: _chat(oai, False)),
        ("support-bot", lambda: list(_chat(oai, True))),
        ("research", lambda: _responses(oai, False)),
        ("research", lambda: _messages(claude, False)),
        ("reviewer", lambda: list(_messages(claude, True))),
    ]
    for agent, call in plan:
        with client.llm.attribute(agent_id=agent):
            call()
    events = stored(client)
    assert len(events) == len(plan)
    expected: dict[str, float] = {}
    for event in events:
        expected[event["agentId"]] = (
            expected.get(event["agentId"], 0.0) + event["metadata"]["provider_cost_usd"]
        )
    by_agent = client.cost_attribution.by_agent("2000-01-01", "2100-01-01")
    assert {i["attributionValue"]: i["totalCost"] for i in by_agent["items"]} == pytest.approx(
        expected
    )
    assert by_agent["totalCost"] == pytest.approx(sum(expected.values()))


# -- never break the app -----------------------------------------------------------------------


def test_a_failure_inside_the_capture_is_logged_once_and_swallowed(
    client: bearlumen.Client,
    oai: openai.OpenAI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_price(*args: Any) -> Any:
        raise ZeroDivisionError("a bug in pricing")

    monkeypatch.setattr(client.llm._pricer, "quote", broken_price)
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        answers = [_chat(oai, False), _chat(oai, False)]
        with _chat(oai, True) as stream:
            chunks = list(stream)
    assert [a.choices[0].message.content for a in answers] == ["Hello from the fake provider."] * 2
    assert len(chunks) == 6
    client.flush()  # the capture runs off the caller's thread: flush() runs what is queued
    assert client.llm.capture_errors == 3
    logged = [r for r in caplog.records if "could not meter" in r.getMessage()]
    assert len(logged) == 1 and "a bug in pricing" in logged[0].exc_text


def test_without_genai_prices_events_are_unpriced_and_it_is_said_once(
    server: Any,
    api_key: str,
    oai: openai.OpenAI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import fails
    monkeypatch.setattr(_pricing, "_imported", None)  # as in a process that never tried
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as client:
        with caplog.at_level(logging.WARNING, logger="bearlumen"):
            client.llm.record(_chat(oai.with_options(), False))
            client.llm.record(_messages_plain(), provider="anthropic")
        events = stored(client)
    said = [r for r in caplog.records if "genai-prices is not installed" in r.getMessage()]
    assert len(said) == 1
    for event in events:
        assert event["metadata"]["priced"] is False
        assert event["metadata"]["price_source"] is None
        assert "provider_cost_usd" not in event["metadata"]


def _messages_plain() -> dict[str, Any]:
    return {
        "id": "msg_plain",
        "type": "message",
        "model": "claude-haiku-4-5",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }


# -- instrument() itself -----------------------------------------------------------------------


def test_instrument_patches_the_instance_not_the_module(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI
) -> None:
    assert client.llm.instrument(oai) is oai  # twice: still wrapped once
    other = openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    _chat(other, False)  # not instrumented: not metered
    _chat(oai, False)
    copy = oai.with_options(timeout=5)
    _chat(copy, False)  # a copy of an instrumented client is metered too
    assert len(stored(client)) == 2


def test_instrument_rejects_what_it_cannot_meter(client: bearlumen.Client) -> None:
    with pytest.raises(bearlumen.InvalidRequestError) as caught:
        client.llm.instrument(object())
    assert caught.value.param == "provider_client"

    class Unfamiliar:  # an SDK version shaped unlike any we know
        __module__ = "openai._client"

    with pytest.raises(bearlumen.InvalidRequestError, match="cannot instrument this Unfamiliar"):
        client.llm.instrument(Unfamiliar())


def test_openai_on_httpx2_and_bearlumen_on_httpx_share_one_process(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    _chat(oai, False)
    ours = type(client._http._http_client).__module__.split(".")[0]
    theirs = {klass.__module__.split(".")[0] for klass in type(oai._client).__mro__}
    assert ours == "httpx"
    assert theirs & {"httpx", "httpx2"}  # httpx2 from openai 3 and anthropic 2 on
    assert the_event(client)["metadata"]["priced"] is True


def test_fake_llm_provider_fixture_is_registered(fake_llm_provider: FakeLLMProvider) -> None:
    fake_llm_provider.configure(input_tokens=42, output_tokens=8)
    claude = anthropic.Anthropic(api_key="sk-fake", base_url=fake_llm_provider.anthropic_base_url)
    message = _messages(claude, False)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (42, 8)


def test_openai_stream_helpers_go_through_create_and_are_metered(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    helper = getattr(oai.chat.completions, "stream", None) or oai.beta.chat.completions.stream
    with helper(model="gpt-4o", messages=MESSAGES) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")
    assert text == "Hello from the fake provider."
    if hasattr(oai.responses, "stream"):
        with oai.responses.stream(model="o4-mini", input="hi") as events:
            assert events.get_final_response().status == "completed"
    events = stored(client)
    assert {e["metadata"]["stream"] for e in events} == {True}
    assert {e["metadata"]["partial"] for e in events} == {False}
    assert len(events) == (2 if hasattr(oai.responses, "stream") else 1)


def test_failed_captures_are_logged_once_per_burst_and_all_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = bearlumen.Client(api_key="sk_test_x", base_url="http://127.0.0.1:9", buffered=False)
    with freezegun.freeze_time("2026-01-01 00:00:00") as clock, caplog.at_level(logging.WARNING):
        for _ in range(5):
            client.llm._capture_failed(ValueError("surprise"))
        clock.tick(61)
        client.llm._capture_failed(ValueError("surprise"))
    logged = [r.getMessage() for r in caplog.records if "could not meter" in r.getMessage()]
    assert len(logged) == 2
    assert "(0 more since the last report" in logged[0]
    assert "(4 more since the last report" in logged[1]
    assert client.llm.capture_errors == 6


# The dropped stream's socket is left for the collector on purpose: that is the case under test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_async_stream_dropped_halfway_is_recorded_when_collected(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    claude = client.llm.instrument(
        anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
    )

    async def main() -> str:
        stream = await claude.messages.create(
            model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES, stream=True
        )
        start = await stream.__anext__()
        return str(start.message.id)  # the stream is dropped, never closed

    message_id = asyncio.run(main())  # the loop finalizes what was left open
    gc.collect()
    event = the_event(client)
    assert event["idempotencyKey"] == f"anthropic:{message_id}"
    assert event["metadata"]["partial"] is True
    assert event["metadata"]["input_tokens"] == 1200
    collect_what_a_test_dropped_on_purpose()


# -- Anthropic's 1-hour cache writes ----------------------------------------------------------

ONE_HOUR = {
    "input_tokens": 3000,  # all input: 2000 uncached, 1000 cache writes
    "output_tokens": 100,
    "cache_read_tokens": 0,
    "cache_write_tokens": 1000,
    "cache_write_1h_tokens": 600,  # of which 400 for 5 minutes
    "reasoning_tokens": 0,
}
# claude-sonnet-4-6 on Anthropic's price list, USD per MTok: input 3, 5-minute cache write 3.75
# (1.25x), 1-hour cache write 6 (2x), output 15.
ONE_HOUR_COST = (2000 * 3 + 400 * 3.75 + 600 * 6 + 100 * 15) / 1e6


@pytest.mark.parametrize(
    "how", ["json", "stream", "stream helper", "async json", "async stream helper"]
)
def test_anthropic_one_hour_cache_writes_are_priced_at_their_own_rate(
    client: bearlumen.Client, fake: FakeLLMProvider, how: str
) -> None:
    fake.configure(**ONE_HOUR)
    kwargs: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": MESSAGES}
    if how.startswith("async"):
        claude: Any = client.llm.instrument(
            anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
        )

        async def main() -> None:
            try:
                if how == "async json":
                    await claude.messages.create(**kwargs)
                else:
                    async with claude.messages.stream(**kwargs) as stream:
                        await stream.get_final_message()
            finally:
                await claude.close()

        asyncio.run(main())
    else:
        claude = client.llm.instrument(
            anthropic.Anthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
        )
        if how == "json":
            claude.messages.create(**kwargs)
        elif how == "stream":
            list(claude.messages.create(**kwargs, stream=True))
        else:
            with claude.messages.stream(**kwargs) as stream:
                stream.get_final_message()
    metadata = the_event(client)["metadata"]
    assert (metadata["cache_write_tokens"], metadata["cache_write_1h_tokens"]) == (1000, 600)
    assert metadata["input_tokens"] == 3000
    assert metadata["provider_cost_usd"] == pytest.approx(ONE_HOUR_COST)
    assert metadata["provider_cost_usd"] == pytest.approx(
        price("anthropic", "claude-sonnet-4-6", **ONE_HOUR)
    )
    # What it was billed before: every write at the 5-minute rate, 1.35 cents short per MTok.
    assert metadata["provider_cost_usd"] > (2000 * 3 + 1000 * 3.75 + 100 * 15) / 1e6


def test_a_response_without_the_cache_split_prices_every_write_at_the_five_minute_rate(
    client: bearlumen.Client,
) -> None:
    """Older API versions and SDKs (anthropic 0.x before the field) send no `cache_creation`."""
    client.llm.record(
        {
            "id": "msg_old_api",
            "type": "message",
            "model": "claude-sonnet-4-6",
            "usage": {
                "input_tokens": 2000,
                "cache_creation_input_tokens": 1000,
                "cache_read_input_tokens": 0,
                "output_tokens": 100,
            },
        }
    )
    metadata = the_event(client)["metadata"]
    assert metadata["cache_write_1h_tokens"] == 0
    assert metadata["provider_cost_usd"] == pytest.approx((2000 * 3 + 1000 * 3.75 + 100 * 15) / 1e6)


def test_set_price_sets_the_one_hour_write_rate_or_derives_it_as_twice_the_input(
    client: bearlumen.Client, fake: FakeLLMProvider, claude: anthropic.Anthropic
) -> None:
    fake.configure(**ONE_HOUR)
    client.llm.set_price(
        "anthropic", "claude-negotiated", input_per_mtok=2.0, output_per_mtok=10.0,
        cache_write_per_mtok=2.5, cache_write_1h_per_mtok=3.5,
    )  # fmt: skip
    client.llm.set_price(
        "anthropic", "claude-derived", input_per_mtok=2.0, output_per_mtok=10.0,
        cache_write_per_mtok=2.5,
    )  # fmt: skip
    for model in ("claude-negotiated", "claude-derived"):
        claude.messages.create(model=model, max_tokens=100, messages=MESSAGES)
    costs = {e["metadata"]["model"]: e["metadata"]["provider_cost_usd"] for e in stored(client)}
    assert costs == pytest.approx(
        {
            "claude-negotiated": (2000 * 2 + 400 * 2.5 + 600 * 3.5 + 100 * 10) / 1e6,
            "claude-derived": (2000 * 2 + 400 * 2.5 + 600 * 4.0 + 100 * 10) / 1e6,
        }
    )


# -- OpenAI structured outputs: parse() posts by itself ----------------------------------------


class Verdict(pydantic.BaseModel):
    label: str
    confidence: float
    reasons: list[str]


def _parse_calls(sdk: Any) -> dict[str, Callable[[], Any]]:
    """Every parse() the installed openai has, by name: each returns the parsed response."""
    calls: dict[str, Callable[[], Any]] = {
        "chat.completions.parse": lambda: sdk.chat.completions.parse(
            model="gpt-4o", messages=MESSAGES, response_format=Verdict
        ),
    }
    beta_chat = getattr(getattr(sdk, "beta", None), "chat", None)
    if beta_chat is not None and hasattr(beta_chat.completions, "parse"):
        calls["beta.chat.completions.parse"] = lambda: beta_chat.completions.parse(
            model="gpt-4o", messages=MESSAGES, response_format=Verdict
        )
    if hasattr(getattr(sdk, "responses", None), "parse"):
        calls["responses.parse"] = lambda: sdk.responses.parse(
            model="o4-mini", input="hi", text_format=Verdict
        )
    return calls


def _parsed(response: Any) -> Any:
    if hasattr(response, "output_parsed"):
        return response.output_parsed
    return response.choices[0].message.parsed


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_every_parse_helper_is_metered_once_per_response(
    client: bearlumen.Client, fake: FakeLLMProvider, is_async: bool
) -> None:
    kind: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
    sdk = client.llm.instrument(kind(api_key="sk-fake", base_url=fake.openai_base_url))
    calls = _parse_calls(sdk)
    if is_async:

        async def main() -> list[Any]:
            try:
                return [await call() for call in calls.values()]
            finally:
                await sdk.close()

        responses = asyncio.run(main())
    else:
        responses = [call() for call in calls.values()]
    assert [type(_parsed(r)) for r in responses] == [Verdict] * len(calls)
    assert len(calls) >= 2  # chat.completions.parse everywhere; responses.parse from 1.66
    events = stored(client)
    assert sorted(e["idempotencyKey"] for e in events) == sorted(
        f"openai:{r.id}" for r in responses
    )
    for event in events:
        metadata = event["metadata"]
        assert metadata["priced"] is True
        assert (metadata["input_tokens"], metadata["output_tokens"]) == (1200, 300)
        assert metadata["provider_cost_usd"] == pytest.approx(
            price("openai", metadata["model"], **USAGE)
        )


def test_a_parse_of_a_client_left_alone_is_not_metered(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    plain = openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    for call in _parse_calls(plain).values():
        call()
    assert stored(client) == []


def test_async_openai_stream_helpers_go_through_create_and_are_metered(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    sdk = client.llm.instrument(
        openai.AsyncOpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    )

    async def main() -> list[str]:
        ids = []
        try:
            helper = getattr(sdk.chat.completions, "stream", None)
            helper = helper or sdk.beta.chat.completions.stream
            async with helper(model="gpt-4o", messages=MESSAGES) as stream:
                ids.append((await stream.get_final_completion()).id)
            if hasattr(sdk.responses, "stream"):
                async with sdk.responses.stream(model="o4-mini", input="hi") as events:
                    ids.append((await events.get_final_response()).id)
        finally:
            await sdk.close()
        return ids

    ids = asyncio.run(main())
    events = stored(client)
    assert sorted(e["idempotencyKey"] for e in events) == sorted(f"openai:{i}" for i in ids)
    assert {e["metadata"]["stream"] for e in events} == {True}
    assert {e["metadata"]["partial"] for e in events} == {False}


def test_structured_output_streams_are_metered_through_create(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    """`stream(response_format=...)`, the streaming twin of parse(): it goes through `create`."""
    helper = getattr(oai.chat.completions, "stream", None) or oai.beta.chat.completions.stream
    with helper(model="gpt-4o", messages=MESSAGES, response_format=Verdict) as stream:
        completion = stream.get_final_completion()
    ids = [completion.id]
    assert type(completion.choices[0].message.parsed) is Verdict
    if hasattr(oai.responses, "stream"):
        with oai.responses.stream(model="o4-mini", input="hi", text_format=Verdict) as events:
            response = events.get_final_response()
        assert type(response.output_parsed) is Verdict
        ids.append(response.id)
    events = stored(client)
    assert sorted(e["idempotencyKey"] for e in events) == sorted(f"openai:{i}" for i in ids)
    assert {(e["metadata"]["stream"], e["metadata"]["priced"]) for e in events} == {(True, True)}


_UNBUILT_UNTIL_USED = """
import asyncio, sys, openai, bearlumen
base_url, api_key, provider_url = sys.argv[1:]
messages = [{"role": "user", "content": "hi"}]
unused = ("beta", "responses")
with bearlumen.Client(api_key=api_key, base_url=base_url) as client:
    sdk = client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=provider_url))
    aio = client.llm.instrument(openai.AsyncOpenAI(api_key="sk-fake", base_url=provider_url))
    print(*[f"openai.resources.{name}" in sys.modules for name in unused])
    print(*[type(vars(sdk).get(name)).__module__.startswith("openai") for name in unused])
    ids = [sdk.beta.chat.completions.create(model="gpt-4o", messages=messages).id]
    ids.append(sdk.responses.create(model="o4-mini", input="hi").id)
    print(type(sdk.beta).__name__, isinstance(aio.beta, openai.resources.beta.AsyncBeta))

    async def main():
        async with aio:
            return (await aio.beta.chat.completions.create(model="gpt-4o", messages=messages)).id

    ids.append(asyncio.run(main()))
print(*ids)
"""


def test_instrument_leaves_beta_and_responses_unbuilt_and_their_later_calls_are_metered(
    client: bearlumen.Client, server: Any, api_key: str, fake: FakeLLMProvider
) -> None:
    """Building `client.beta` imports all of openai's beta resources (as much CPU as `import
    openai`), `client.responses` a seventh of that: instrument() leaves them to their first
    use, which still meters their calls."""
    done = subprocess.run(
        [sys.executable, "-c", _UNBUILT_UNTIL_USED, server.base_url, api_key, fake.openai_base_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported, built, first_use, ids = done.stdout.splitlines()
    assert built == "False False"  # instrument() built neither...
    if not openai.__version__.startswith("1."):  # (1.x imports beta with any resource it builds)
        assert imported == "False False"  # ...nor imported them
    assert first_use == "Beta True"  # after its first use, `client.beta` is the SDK's own
    events = stored(client)
    assert sorted(e["idempotencyKey"] for e in events) == sorted(f"openai:{i}" for i in ids.split())
    assert all(e["metadata"]["priced"] for e in events)
