"""What each path beyond openai and anthropic costs on the caller's thread, per call: the
OpenTelemetry bridge, Gemini, Bedrock Converse, the LangChain handler, the LiteLLM logger.

Each path's own code is timed around the provider's or framework's real objects, built once:
the wrapper around a provider call that returns a ready response (`google.genai`'s
`GenerateContentResponse`, botocore's Converse dict), the span processor's `on_start` +
`on_end` on real SDK spans, the LangChain handler's start and end callbacks with a real
`LLMResult`, the LiteLLM logger with a real `ModelResponse`. What it includes: reading the usage,
pricing (compiled, as in steady state), building the event and queueing it
(`usage.record`). Timed in CPU time of the calling thread (`time.thread_time`), so neither the
worker's shipping nor the other processes of a shared machine count; the fastest of 20 rounds.
A path whose package is not installed is skipped.

    pip install -e ".[dev,integrations]"
    python benchmarks/llm_paths.py [--calls 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any, Callable, Optional

import bearlumen
from bearlumen.testing import LocalServer

ROUNDS = 20


def fastest(calls: int, run: Callable[[int], None]) -> float:
    """µs per call: the fastest of ROUNDS rounds of `calls` calls, in CPU time of this thread
    (the caller's): neither the worker's shipping nor other processes on a shared machine."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.thread_time()
        run(calls)
        best = min(best, time.thread_time() - started)
    return best / calls * 1e6


def otel(client: bearlumen.Client) -> Optional[tuple[Callable[[int], None], Callable[[int], None]]]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    from bearlumen.otel import UsageSpanProcessor

    attributes = {
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 200,
    }
    bare, metered = TracerProvider(), TracerProvider()
    metered.add_span_processor(UsageSpanProcessor(client))

    def spans(provider: Any) -> Callable[[int], None]:
        tracer = provider.get_tracer("bench")

        def run(calls: int) -> None:
            for index in range(calls):
                span = tracer.start_span("chat")
                span.set_attributes(attributes)
                span.set_attribute("gen_ai.response.id", f"chatcmpl-{index}-{uuid.uuid4().hex}")
                span.end()

        return run

    return spans(bare), spans(metered)


def gemini(client: bearlumen.Client) -> Optional[Callable[[int], None]]:
    try:
        from google.genai import types
    except ImportError:
        return None
    from bearlumen._llm import _gemini

    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}}],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "candidatesTokenCount": 250,
                "thoughtsTokenCount": 50,
                "cachedContentTokenCount": 200,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r",
        }
    )

    def generate(**kwargs: Any) -> Any:
        response.response_id = uuid.uuid4().hex  # a new response each call: a new event
        return response

    wrapped = _gemini._wrap_sync(generate, client.llm, None)

    def run(calls: int) -> None:
        for _ in range(calls):
            wrapped(model="gemini-2.5-flash", contents="hi")

    return run


def bedrock(client: bearlumen.Client) -> Optional[Callable[[int], None]]:
    try:
        import botocore  # noqa: F401
    except ImportError:
        return None
    from bearlumen._llm import _bedrock

    usage = {"inputTokens": 900, "outputTokens": 300, "cacheReadInputTokens": 200}

    def converse(**kwargs: Any) -> Any:
        return {"usage": usage, "ResponseMetadata": {"RequestId": uuid.uuid4().hex}}

    wrapped = _bedrock._wrap_converse(converse, client.llm)

    def run(calls: int) -> None:
        for _ in range(calls):
            wrapped(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0", messages=[])

    return run


def langchain(client: bearlumen.Client) -> Optional[Callable[[int], None]]:
    try:
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, LLMResult
    except ImportError:
        return None
    from bearlumen.integrations.langchain import UsageCallbackHandler

    handler = UsageCallbackHandler(client)
    metadata = {"ls_provider": "openai", "ls_model_name": "gpt-4o", "end_user_id": "eu_1"}

    message = AIMessage(
        content="hi",
        usage_metadata={
            "input_tokens": 1200,
            "output_tokens": 300,
            "total_tokens": 1500,
            "input_token_details": {"cache_read": 200},
        },
        response_metadata={"id": "", "model_name": "gpt-4o"},
    )
    result = LLMResult(generations=[[ChatGeneration(message=message)]])

    def run(calls: int) -> None:
        for _ in range(calls):
            run_id = uuid.uuid4()
            message.response_metadata["id"] = f"chatcmpl-{run_id}"  # a new response each run
            handler.on_chat_model_start({}, [], run_id=run_id, metadata=metadata)
            handler.on_llm_end(result, run_id=run_id)

    return run


def litellm_logger(client: bearlumen.Client) -> Optional[Callable[[int], None]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from litellm import ModelResponse
    except ImportError:
        return None
    from bearlumen.integrations.litellm import UsageLogger

    logger = UsageLogger(client)
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 200},
    }
    response = ModelResponse(id="x", model="gpt-4o", usage=usage)
    kwargs: dict[str, Any] = {
        "litellm_params": {"custom_llm_provider": "openai", "metadata": {"end_user_id": "eu_1"}},
        "standard_logging_object": {"request_tags": []},
    }

    def run(calls: int) -> None:
        for _ in range(calls):
            response.id = f"chatcmpl-{uuid.uuid4().hex}"
            logger.log_success_event(kwargs=kwargs, response_obj=response, start_time=0, end_time=0)

    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with LocalServer() as server:
        url = server if isinstance(server, str) else server.base_url
        # The worker ships to the local server in this process while we time, on threads of
        # their own: thread_time leaves them out.
        meter = bearlumen.Client(
            api_key="sk_bench", base_url=url, flush_interval=3600, flush_at=1000,
            max_queue_size=10**7,
        )  # fmt: skip
        print(
            f"python {sys.version.split()[0]}, bearlumen {bearlumen.__version__}; {args.calls} calls, fastest of {ROUNDS} rounds"
        )
        spans = otel(meter)
        if spans is None:
            print("otel        skipped: opentelemetry-sdk is not installed")
        else:
            bare, metered = (fastest(args.calls, run) for run in spans)
            print(
                f"otel        span + GenAI attributes alone {bare:7.2f} µs | with UsageSpanProcessor {metered:7.2f} µs | processor {metered - bare:6.2f} µs/span"
            )
        completion = {
            "object": "chat.completion",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
        }

        def record(calls: int) -> None:  # the existing path, for scale on this machine now
            for _ in range(calls):
                meter.llm.record({**completion, "id": uuid.uuid4().hex})

        for name, build in (
            ("reference: client.llm.record(dict)", lambda _: record),
            ("gemini", gemini),
            ("bedrock", bedrock),
            ("langchain", langchain),
            ("litellm", litellm_logger),
        ):
            run = build(meter)
            if run is None:
                print(f"{name:<11} skipped: its package is not installed")
                continue
            run(200)  # compile the model's price, as in steady state
            print(f"{name:<11} {fastest(args.calls, run):7.2f} µs/call")
        meter.close(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
