"""Bedrock's Converse API: a boto3 `bedrock-runtime` client's `converse` and `converse_stream`.

Converse is Bedrock's own API over every model it serves, so the event's provider is
`"bedrock"`, priced at genai-prices' `aws` rates for the `modelId` the request names (a model
id or a cross-region inference profile; Converse's answer does not repeat it). The key is
`"bedrock:{RequestId}"`, botocore's `ResponseMetadata.RequestId` (the `x-amzn-RequestId`
header). Converse counts like Anthropic: `inputTokens` leaves out `cacheReadInputTokens` and
`cacheWriteInputTokens`, so ours is their sum.

`converse_stream` answers `{"stream": EventStream, ...}`; the caller keeps botocore's own
`EventStream`. We wrap the instance's `_parse_event`, through which every event passes: the
last, `metadata`, carries the usage. A stream closed before it came is recorded `partial`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._call_event import CallEvent
from ._usage import BEDROCK, TokenUsage, _count, field

if TYPE_CHECKING:
    from . import LLM


def instrument(
    client: Any, llm: LLM, *, is_async: bool, inject_stream_usage: bool, platform: Optional[str]
) -> None:
    service = client.meta.service_model.service_name
    if service != "bedrock-runtime":
        raise TypeError(f"a boto3 {service!r} client makes no LLM calls; expected bedrock-runtime")
    client.converse = _wrap_converse(client.converse, llm)
    client.converse_stream = _wrap_converse_stream(client.converse_stream, llm)


def converse_usage(
    request_id: Any, model: Any, usage: Any, *, stream: bool = False, partial: bool = False
) -> TokenUsage:
    cache_read = _count(usage, "cacheReadInputTokens")
    cache_write = _count(usage, "cacheWriteInputTokens")
    return TokenUsage(
        BEDROCK,
        request_id,
        model,
        _count(usage, "inputTokens") + cache_read + cache_write,
        _count(usage, "outputTokens"),
        cache_read,
        cache_write,
        0,
        stream,
        partial,
    )


def _request_id(response: Any) -> Any:
    return field(field(response, "ResponseMetadata"), "RequestId")


def _wrap_converse(converse: Callable[..., Any], llm: LLM) -> Callable[..., Any]:
    @functools.wraps(converse)
    def instrumented_converse(*args: Any, **kwargs: Any) -> Any:
        response = converse(*args, **kwargs)  # botocore's own errors pass through untouched
        model = kwargs.get("modelId")
        CallEvent(llm).record(
            lambda answer: converse_usage(_request_id(answer), model, answer["usage"]), response
        )
        return response

    return instrumented_converse


def _wrap_converse_stream(converse_stream: Callable[..., Any], llm: LLM) -> Callable[..., Any]:
    @functools.wraps(converse_stream)
    def instrumented_converse_stream(*args: Any, **kwargs: Any) -> Any:
        response = converse_stream(*args, **kwargs)
        try:
            request_id, model = _request_id(response), kwargs.get("modelId")

            def read(usage: Any) -> TokenUsage:  # None: closed before its usage came
                return converse_usage(request_id, model, usage, stream=True, partial=usage is None)

            _watch(response["stream"], CallEvent(llm), read)
        except Exception as exc:
            llm._capture_failed(exc)
        return response

    return instrumented_converse_stream


def _watch(stream: Any, event: CallEvent, read: Callable[[Any], TokenUsage]) -> None:
    parse, close = stream._parse_event, stream.close

    def watched_parse(raw: Any) -> Any:
        parsed = parse(raw)
        try:
            metadata = parsed.get("metadata") if type(parsed) is dict else None
            if metadata is not None:
                event.record(read, metadata.get("usage"))
        except Exception as exc:
            event.llm._capture_failed(exc)
        return parsed

    def watched_close() -> None:
        event.record(read, None)  # closed before its usage came: what is known
        close()

    stream._parse_event = watched_parse
    stream.close = watched_close
