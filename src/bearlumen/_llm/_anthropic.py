"""Anthropic: `messages.create`, sync and async, streamed or not, and `messages.stream(...)`."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._context import Attribution, current_attribution
from ._streams import StreamCapture, awatch, watch
from ._usage import TokenUsage, anthropic_usage

if TYPE_CHECKING:
    from . import LLM

# The request the stream helper's manager makes when entered (a name-mangled private attribute
# of anthropic's MessageStreamManager / AsyncMessageStreamManager, stable since 0.2x).
_SYNC_REQUEST = "_MessageStreamManager__api_request"
_ASYNC_REQUEST = "_AsyncMessageStreamManager__api_request"


def instrument(
    client: Any, llm: LLM, *, is_async: bool, inject_stream_usage: bool, platform: Optional[str]
) -> None:
    # inject_stream_usage is OpenAI's concern: Anthropic streams always carry their usage.
    messages = client.messages
    create, stream = messages.create, messages.stream
    if is_async:
        messages.create = _wrap_async_create(create, llm, platform)
        messages.stream = _wrap_async_stream_helper(stream, llm, platform)
    else:
        messages.create = _wrap_sync_create(create, llm, platform)
        messages.stream = _wrap_sync_stream_helper(stream, llm, platform)
    if client.messages is not messages:  # resources rebuilt on each access
        raise TypeError("this anthropic version builds its resources anew on each access")


def _capture(llm: LLM, attribution: Attribution, platform: Optional[str]) -> StreamCapture:
    return StreamCapture(llm, attribution, _stream_usage, False, platform)


def _wrap_sync_create(
    create: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(create)
    def instrumented_create(*args: Any, **kwargs: Any) -> Any:
        result = create(*args, **kwargs)  # the provider's own errors pass through untouched
        try:
            if kwargs.get("stream") is True:
                watch(result, _capture(llm, current_attribution.get(), platform), _observe_event)
            else:
                llm._emit(_usage_of(result), current_attribution.get(), platform)
        except Exception as exc:
            llm._capture_failed(exc)
        return result

    return instrumented_create


def _wrap_async_create(
    create: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(create)
    async def instrumented_create(*args: Any, **kwargs: Any) -> Any:
        result = await create(*args, **kwargs)
        try:
            if kwargs.get("stream") is True:
                awatch(result, _capture(llm, current_attribution.get(), platform), _observe_event)
            else:
                llm._emit(_usage_of(result), current_attribution.get(), platform)
        except Exception as exc:
            llm._capture_failed(exc)
        return result

    return instrumented_create


def _wrap_sync_stream_helper(
    stream: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(stream)
    def instrumented_stream(*args: Any, **kwargs: Any) -> Any:
        manager = stream(*args, **kwargs)
        try:
            make_request = getattr(manager, _SYNC_REQUEST)
            attribution = current_attribution.get()

            def watched_request() -> Any:
                raw_stream = make_request()
                try:
                    watch(raw_stream, _capture(llm, attribution, platform), _observe_event)
                except Exception as exc:
                    llm._capture_failed(exc)
                return raw_stream

            setattr(manager, _SYNC_REQUEST, watched_request)
        except Exception as exc:
            llm._capture_failed(exc)
        return manager

    return instrumented_stream


def _wrap_async_stream_helper(
    stream: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(stream)
    def instrumented_stream(*args: Any, **kwargs: Any) -> Any:
        manager = stream(*args, **kwargs)
        try:
            request = getattr(manager, _ASYNC_REQUEST)  # a coroutine, awaited on entry
            attribution = current_attribution.get()

            async def watched_request() -> Any:
                raw_stream = await request
                try:
                    awatch(raw_stream, _capture(llm, attribution, platform), _observe_event)
                except Exception as exc:
                    llm._capture_failed(exc)
                return raw_stream

            setattr(manager, _ASYNC_REQUEST, watched_request())
        except Exception as exc:
            llm._capture_failed(exc)
        return manager

    return instrumented_stream


def _usage_of(message: Any) -> TokenUsage:
    return anthropic_usage(message.id, message.model, message.usage)


def _observe_event(capture: StreamCapture, event: Any) -> bool:
    kind = event.type
    if kind == "message_start":
        message = event.message
        capture.response_id = message.id
        capture.model = message.model
        capture.start_usage = message.usage
    elif kind == "message_delta":
        capture.usage = event.usage  # cumulative: the last one holds the final counts
    return False


def _stream_usage(capture: StreamCapture) -> Optional[TokenUsage]:
    """message_start brings the input counts, each message_delta the output so far (and, in
    newer API versions, final input counts too: those win when present)."""
    if capture.response_id is None:
        return None
    counts: dict[str, Any] = {}
    for usage in (capture.start_usage, capture.usage):
        if usage is None:
            continue
        for name in (
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation",
            "output_tokens",
            "output_tokens_details",
        ):
            value = getattr(usage, name, None)
            if value is not None:
                counts[name] = value
    creation = counts.get("cache_creation")
    if creation is not None and not isinstance(creation, dict):
        counts["cache_creation"] = {
            "ephemeral_1h_input_tokens": getattr(creation, "ephemeral_1h_input_tokens", 0)
        }
    details = counts.get("output_tokens_details")
    if details is not None and not isinstance(details, dict):
        counts["output_tokens_details"] = {
            "thinking_tokens": getattr(details, "thinking_tokens", 0)
        }
    return anthropic_usage(
        capture.response_id,
        capture.model,
        counts,
        stream=True,
        partial=capture.usage is None,
    )
