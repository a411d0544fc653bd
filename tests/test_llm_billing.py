"""`client.llm` bills what was served, and misses no call that costs money.

The real openai and anthropic SDKs against the fake provider, every expected cost computed by
genai-prices' own functions (`calc_price` with the price context, `extract_usage`), the events
stored by the real local server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from typing import Any, Iterator

import anthropic
import genai_prices
import openai
import pytest

import bearlumen
from bearlumen._llm._wrap import DECLINED
from bearlumen.testing import FakeLLMProvider

from . import _llm_fixtures
from ._llm_fixtures import stored, the_event

MESSAGES = [{"role": "user", "content": "hi"}]
SOURCE = f"genai-prices {genai_prices.__version__}"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(input_tokens=1000, output_tokens=100, chunks=4) as provider:
        yield provider


@pytest.fixture(autouse=True)
def fresh_fake(fake: FakeLLMProvider) -> None:
    fake.configure(
        input_tokens=1000, output_tokens=100, web_search_requests=0, omit_usage=False,
        repeat_ids=False, chunks=4,
    )  # fmt: skip


oai, claude = _llm_fixtures.oai, _llm_fixtures.claude  # the shared fixtures, by name


def price(provider: str, model: str, context: Any = None, **usage: int) -> float:
    """genai-prices' own answer for what was served."""
    options = {"price_context": context} if context else {}
    return float(
        genai_prices.calc_price(
            genai_prices.Usage(**usage), model_ref=model, provider_id=provider, **options
        ).total_price
    )


# -- wrong bill: priced as served --------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "model", "tier"),
    [
        ("chat", "gpt-4o", "priority"),
        ("chat", "o4-mini", "flex"),
        ("responses", "o4-mini", "flex"),
        ("responses", "gpt-4o", "priority"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_served_service_tier_is_priced_at_its_own_rate(
    client: bearlumen.Client, oai: openai.OpenAI, api: str, model: str, tier: str, stream: bool
) -> None:
    if api == "chat":
        result = oai.chat.completions.create(
            model=model, messages=MESSAGES, service_tier=tier, stream=stream
        )
    else:
        result = oai.responses.create(model=model, input="hi", service_tier=tier, stream=stream)
    if stream:
        list(result)
    metadata = the_event(client)["metadata"]
    assert metadata["service_tier"] == tier
    expected = price("openai", model, {"service_tier": tier}, input_tokens=1000, output_tokens=100)
    assert expected != price("openai", model, input_tokens=1000, output_tokens=100)
    assert metadata["provider_cost_usd"] == pytest.approx(expected, abs=1e-12)
    assert metadata["priced"] is True


def test_a_tier_genai_prices_has_no_price_for_is_unpriced_with_a_stated_estimate(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, service_tier="flex")
    metadata = the_event(client)["metadata"]
    assert metadata["service_tier"] == "flex"
    assert metadata["priced"] is False
    assert "provider_cost_usd" not in metadata
    assert metadata["unpriced_reason"] == f"{SOURCE} has no price for service_tier=flex on 'gpt-4o'"
    standard = price("openai", "gpt-4o", input_tokens=1000, output_tokens=100)
    assert metadata["estimated_cost_usd"] == pytest.approx(standard, abs=1e-12)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_web_searches_are_billed_as_genai_prices_extract_usage_prices_them(
    client: bearlumen.Client, fake: FakeLLMProvider, claude: anthropic.Anthropic, stream: bool
) -> None:
    fake.configure(web_search_requests=3)
    plain = anthropic.Anthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
    answer = plain.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
    expected = float(
        genai_prices.extract_usage(answer.model_dump(), provider_id="anthropic")
        .calc_price()
        .total_price
    )
    if stream:
        with claude.messages.stream(
            model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES
        ) as events:
            events.until_done()
    else:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
    metadata = the_event(client)["metadata"]
    assert metadata["web_search_requests"] == 3
    assert metadata["provider_cost_usd"] == pytest.approx(expected, abs=1e-12)
    assert expected > price("anthropic", "claude-sonnet-4-6", input_tokens=1000, output_tokens=100)


@pytest.mark.parametrize(
    ("options", "context"),
    [({"speed": "fast"}, {"speed": "fast"}), ({"service_tier": "batch"}, {"processing": "batch"})],
)
def test_anthropic_fast_mode_and_batch_are_priced_as_served(
    client: bearlumen.Client, claude: anthropic.Anthropic, options: Any, context: Any
) -> None:
    claude.messages.create(
        model="claude-opus-4-8", max_tokens=10, messages=MESSAGES, extra_body=options
    )
    metadata = the_event(client)["metadata"]
    expected = price("anthropic", "claude-opus-4-8", context, input_tokens=1000, output_tokens=100)
    assert expected != price("anthropic", "claude-opus-4-8", input_tokens=1000, output_tokens=100)
    assert metadata["provider_cost_usd"] == pytest.approx(expected, abs=1e-12)
    assert metadata["service_tier"] == ("batch" if "service_tier" in options else "standard")


def test_anthropic_data_residency_is_not_presented_as_the_standard_price(
    client: bearlumen.Client, claude: anthropic.Anthropic
) -> None:
    claude.messages.create(
        model="claude-opus-4-8",
        max_tokens=10,
        messages=MESSAGES,
        extra_body={"inference_geo": "us"},
    )
    metadata = the_event(client)["metadata"]
    assert metadata["inference_geo"] == "us"
    assert metadata["priced"] is False and "provider_cost_usd" not in metadata
    assert "inference_geo=us" in metadata["unpriced_reason"]
    standard = price("anthropic", "claude-opus-4-8", input_tokens=1000, output_tokens=100)
    assert metadata["estimated_cost_usd"] == pytest.approx(standard, abs=1e-12)


def test_a_response_without_usage_is_unpriced_and_leaves_its_key_to_the_counted_record(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI
) -> None:
    fake.configure(omit_usage=True)
    answer = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.usage is None
    with client.llm.attribute(metadata={"provider_cost_usd": 1.5}):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    events = {event["idempotencyKey"]: event for event in stored(client)}
    unpriced = events[f"openai:{answer.id}:no-usage"]
    assert unpriced["quantity"] == 0
    assert unpriced["metadata"]["priced"] is False
    assert unpriced["metadata"]["unpriced_reason"] == "the response carried no usage"
    assert "provider_cost_usd" not in unpriced["metadata"]
    # The caller's own figure on an unpriced event is renamed: no one reads it as our price.
    renamed = [e for e in events.values() if "caller_provider_cost_usd" in e["metadata"]]
    assert len(renamed) == 1 and "provider_cost_usd" not in renamed[0]["metadata"]
    # The same response, its usage known later, is recorded and priced under `openai:<id>`.
    counted = answer.model_dump()
    counted["usage"] = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    assert client.llm.record(counted)["recorded"] is True
    event = {e["idempotencyKey"]: e for e in stored(client)}[f"openai:{answer.id}"]
    assert event["metadata"]["provider_cost_usd"] == pytest.approx(
        price("openai", "gpt-4o", input_tokens=1000, output_tokens=100), abs=1e-12
    )


def test_a_background_response_is_metered_once_when_retrieved_complete(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    queued = oai.responses.create(model="o4-mini", input="hi", background=True)
    assert queued.status == "queued" and queued.usage is None
    assert stored(client) == []  # nothing known yet: not a $0 event, and the key stays free
    for _ in range(2):  # polled until done, and once more
        done = oai.responses.retrieve(queued.id)
    assert done.status == "completed"
    event = the_event(client)
    assert event["idempotencyKey"] == f"openai:{queued.id}"
    assert event["metadata"]["provider_cost_usd"] == pytest.approx(
        price("openai", "o4-mini", input_tokens=1000, output_tokens=100), abs=1e-12
    )


# -- missed bill -------------------------------------------------------------------------------


def test_azure_streams_take_the_first_non_empty_id(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    azure = client.llm.instrument(
        openai.AzureOpenAI(api_key="k", base_url=fake.azure_base_url, api_version="2024-10-21")
    )
    for _ in range(3):
        chunks = list(
            azure.chat.completions.create(model="gpt-4o-2024-08-06", messages=MESSAGES, stream=True)
        )
        assert chunks[0].id == "" and chunks[-1].choices  # Azure's chunks, our usage one hidden
    events = stored(client)
    assert len(events) == 3
    assert all(e["idempotencyKey"].startswith("openai:chatcmpl-") for e in events)
    assert all(e["metadata"]["priced"] and e["metadata"]["input_tokens"] == 1000 for e in events)


def _beta_calls(claude: Any) -> None:
    claude.messages.parse(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
    claude.beta.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
    claude.beta.messages.parse(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
    for _ in claude.beta.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES, stream=True
    ):
        pass
    with claude.beta.messages.stream(
        model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES
    ) as events:
        events.until_done()


def test_anthropic_parse_and_every_beta_messages_call_are_metered(
    client: bearlumen.Client, claude: anthropic.Anthropic
) -> None:
    _beta_calls(claude)
    events = stored(client)
    assert len(events) == 5
    assert all(e["metadata"]["provider_cost_usd"] > 0 for e in events)
    assert client.llm.capture_errors == 0


def test_async_anthropic_beta_stream_helper_is_metered(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    async def main() -> None:
        claude = client.llm.instrument(
            anthropic.AsyncAnthropic(api_key="sk-fake", base_url=fake.anthropic_base_url)
        )
        async with claude.beta.messages.stream(
            model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES
        ) as events:
            await events.until_done()
        await claude.messages.parse(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
        await claude.close()

    asyncio.run(main())
    assert len(stored(client)) == 2


def test_embeddings_and_legacy_completions_are_metered(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    vectors = oai.embeddings.create(model="text-embedding-3-small", input="hi")
    assert len(vectors.data[0].embedding) == 3
    oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    chunks = list(oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True))
    assert all(chunk.choices for chunk in chunks)  # the usage chunk we asked for is hidden
    events = {e["metadata"]["model"] + str(e["metadata"]["stream"]): e for e in stored(client)}
    assert len(events) == 3
    embedding = events["text-embedding-3-smallFalse"]["metadata"]
    assert embedding["provider_cost_usd"] == pytest.approx(
        price("openai", "text-embedding-3-small", input_tokens=1000), abs=1e-12
    )
    for key in ("gpt-3.5-turbo-instructFalse", "gpt-3.5-turbo-instructTrue"):
        assert events[key]["metadata"]["provider_cost_usd"] == pytest.approx(
            price("openai", "gpt-3.5-turbo-instruct", input_tokens=1000, output_tokens=100),
            abs=1e-12,
        )


def test_raw_responses_are_metered_and_their_chunks_are_the_uninstrumented_ones(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI, claude: Any
) -> None:
    plain = openai.OpenAI(api_key="sk-fake", base_url=fake.openai_base_url)
    expected = [
        c.choices[0].delta.content
        for c in plain.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        ).parse()
    ]
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "Hello from the fake provider."
    stream = oai.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ).parse()
    assert [c.choices[0].delta.content for c in stream] == expected  # no IndexError
    claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES
    ).parse()
    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES
    ) as response:
        response.parse()
    events = stored(client)
    assert len(events) == 4
    tokens = [e["metadata"]["input_tokens"] for e in events if not e["metadata"]["stream"]]
    assert tokens == [1000, 1000, 1000]
    assert client.llm.capture_errors == 0


def test_a_streaming_response_read_as_bytes_is_left_alone_and_counted_as_not_metered(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI
) -> None:
    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert "stream_options" not in fake.last_request  # the bytes are the caller's, as sent
    assert len(lines) == 4
    assert stored(client) == []
    assert client.llm.capture_errors == 1


def test_a_subclass_of_a_provider_client_is_metered(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    class MyOpenAI(openai.AsyncOpenAI):
        pass

    async def main() -> None:
        oai = client.llm.instrument(MyOpenAI(api_key="sk-fake", base_url=fake.openai_base_url))
        await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        await oai.close()

    asyncio.run(main())
    assert the_event(client)["metadata"]["input_tokens"] == 1000


@pytest.mark.parametrize(
    ("values", "param"),
    [
        ({"metadata": {"x": object()}}, "metadata.x"),
        ({"metadata": {"big": "x" * 200_000}}, "metadata"),
        ({"end_user_id": ""}, "end_user_id"),
        ({"agent_id": "a\x00b"}, "agent_id"),
    ],
)
def test_attribution_is_checked_at_attribute_with_the_rules_of_record(
    client: bearlumen.Client, values: Any, param: str
) -> None:
    with pytest.raises(bearlumen.InvalidRequestError) as caught:
        with client.llm.attribute(**values):
            pass
    assert caught.value.param == param
    with pytest.raises(bearlumen.InvalidRequestError) as by_record:
        client.usage.record("token_usage", "llm_tokens", 1, **values)
    assert by_record.value.param == param


def test_repeated_response_ids_are_logged_counted_and_each_call_kept(
    client: bearlumen.Client,
    fake: FakeLLMProvider,
    oai: openai.OpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.configure(repeat_ids=True)
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        answers = [oai.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(3)]
    assert len({a.id for a in answers}) == 1
    keys = sorted(e["idempotencyKey"] for e in stored(client))
    assert len(keys) == 3
    assert keys[0] == f"openai:{answers[0].id}"
    assert all(key.startswith(f"openai:{answers[0].id}:") for key in keys[1:])
    assert client.llm.repeated_response_ids == 2
    assert len([r for r in caplog.records if "already answered" in r.getMessage()]) == 1
    # A response recorded twice by hand is still one response: not a repetition.
    assert client.llm.record(answers[0])["recorded"] is False
    assert client.llm.repeated_response_ids == 2


def test_recording_by_hand_a_response_just_captured_is_a_duplicate_not_a_second_call(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    with client.llm._deferred._lock:  # the capture thread has not run yet
        answer = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert client.llm.record(answer)["recorded"] is False  # the captured call went first
    assert len(stored(client)) == 1
    assert client.llm.repeated_response_ids == 0


def test_include_usage_false_is_the_callers_choice_and_the_event_says_why(
    client: bearlumen.Client, fake: FakeLLMProvider, oai: openai.OpenAI
) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True,
            stream_options={"include_usage": False},
        )
    )  # fmt: skip
    assert fake.last_request["stream_options"] == {"include_usage": False}
    assert all(chunk.choices for chunk in chunks)
    metadata = the_event(client)["metadata"]
    assert metadata["partial"] is False and metadata["priced"] is False
    assert metadata["unpriced_reason"] == DECLINED
    assert metadata["input_tokens"] == 0


# -- the wrapper's cost: captures run off the caller's thread, and none is lost ----------------

_EXIT_WITHOUT_FLUSH = """
import sys, threading, openai, bearlumen
base_url, api_key, provider_url = sys.argv[1:]
client = bearlumen.Client(api_key=api_key, base_url=base_url)
oai = client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=provider_url))
for _ in range(3):
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
names = {t.name for t in threading.enumerate()}
print("capture thread" if "bearlumen-llm" in names else "no capture thread")
# no flush, no close: the exit hooks record the queued captures, then deliver them
"""


def test_calls_captured_off_the_callers_thread_are_delivered_by_a_process_that_just_exits(
    server: Any, api_key: str, fake: FakeLLMProvider
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITHOUT_FLUSH, server.base_url, api_key, fake.openai_base_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "capture thread"
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as reader:
        events = reader.usage.query(limit=10)["events"]
    assert len(events) == 3
    assert all(e["metadata"]["priced"] for e in events)


def test_a_forked_child_does_not_record_its_parents_queued_captures(
    client: bearlumen.Client, oai: openai.OpenAI
) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    deferred = client.llm._deferred
    with deferred._lock:  # the capture thread holds off: the parent's capture stays queued
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        pid = os.fork()
        if pid == 0:  # the child: its queue starts empty, its own calls are its own
            os._exit(0 if not deferred._pending and deferred._thread is None else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(stored(client)) == 1  # the parent's call, recorded by the parent


def test_recorded_by_hand_a_batch_output_line_and_responses_web_searches_are_priced_as_served(
    client: bearlumen.Client,
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    line = {
        "id": "batch_req_1",
        "custom_id": "request-1",
        "response": {
            "status_code": 200,
            "body": {"id": "chatcmpl-b1", "object": "chat.completion", "model": "gpt-4o",
                     "service_tier": "default", "choices": [], "usage": usage},
        },
    }  # fmt: skip
    searched = {
        "id": "resp_w1", "object": "response", "model": "gpt-4o", "status": "completed",
        "output": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}] * 2,
        "usage": {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100},
    }  # fmt: skip
    client.llm.record(line)
    client.llm.record(searched)
    events = {e["idempotencyKey"]: e["metadata"] for e in stored(client)}
    batch = events["openai:chatcmpl-b1"]
    assert batch["service_tier"] == "batch"
    assert batch["provider_cost_usd"] == pytest.approx(
        price("openai", "gpt-4o", {"processing": "batch"}, input_tokens=1000, output_tokens=100),
        abs=1e-12,
    )
    web = events["openai:resp_w1"]
    assert web["web_search_requests"] == 2
    assert web["provider_cost_usd"] == pytest.approx(
        price("openai", "gpt-4o", input_tokens=1000, output_tokens=100, web_searches=2), abs=1e-12
    )
