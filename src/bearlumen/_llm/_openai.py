"""OpenAI: `chat.completions.create` / `.parse` and `responses.create` / `.parse`, sync and async,
streamed or not (the `stream(...)` helpers call `create`), and the same under `beta.chat` where
the installed openai has it."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._context import current_attribution
from ._streams import Observer, StreamCapture, awatch, watch
from ._usage import OPENAI, TokenUsage, openai_usage

if TYPE_CHECKING:
    from . import LLM


def instrument(
    client: Any, llm: LLM, *, is_async: bool, inject_stream_usage: bool, platform: Optional[str]
) -> None:
    wrap = _wrap_async if is_async else _wrap_sync
    completions = client.chat.completions
    # `parse()` posts by itself, not through `create`: wrapped the same way (it never streams).
    for resource in (completions, _beta_completions(client)):
        for name in ("create", "parse"):
            call = getattr(resource, name, None)
            if call is not None:
                observe = _observe_chat_chunk
                setattr(resource, name, wrap(call, llm, observe, inject_stream_usage, platform))
    responses = getattr(client, "responses", None)  # openai < 1.66 has no Responses API
    if responses is not None:
        # The Responses API always streams its usage (in response.completed): nothing to inject.
        for name in ("create", "parse"):
            call = getattr(responses, name, None)
            if call is not None:
                setattr(responses, name, wrap(call, llm, _observe_response_event, False, platform))
    if client.chat.completions is not completions:  # resources rebuilt on each access
        raise TypeError("this openai version builds its resources anew on each access")


def _beta_completions(client: Any) -> Any:
    """`client.beta.chat.completions` when it is a resource of its own (openai 1.x has its
    `parse` there; later versions keep a second instance of `chat.completions`), else None."""

    def lookup() -> Any:
        return getattr(getattr(getattr(client, "beta", None), "chat", None), "completions", None)

    completions = lookup()
    if completions is None or completions is client.chat.completions:
        return None
    if lookup() is not completions:
        raise TypeError("this openai version builds its resources anew on each access")
    return completions


def _stream_options(kwargs: dict[str, Any], inject: bool) -> bool:
    """Ask a chat-completions stream for its usage unless the caller chose; True if we did."""
    if not inject or kwargs.get("stream") is not True:
        return False
    options = kwargs.get("stream_options")
    if isinstance(options, dict):
        if "include_usage" in options:
            return False
        kwargs["stream_options"] = {**options, "include_usage": True}
    else:  # absent, or the SDK's "not given" sentinel
        kwargs["stream_options"] = {"include_usage": True}
    return True


def _wrap_sync(
    create: Callable[..., Any],
    llm: LLM,
    observe: Observer,
    inject: bool,
    platform: Optional[str],
) -> Callable[..., Any]:
    @functools.wraps(create)
    def instrumented_create(*args: Any, **kwargs: Any) -> Any:
        injected = _stream_options(kwargs, inject)
        result = create(*args, **kwargs)  # the provider's own errors pass through untouched
        try:
            if kwargs.get("stream") is True:
                capture = StreamCapture(
                    llm, current_attribution.get(), _stream_usage, injected, platform
                )
                watch(result, capture, observe)
            else:
                llm._emit(_usage_of(result), current_attribution.get(), platform)
        except Exception as exc:
            llm._capture_failed(exc)
        return result

    return instrumented_create


def _wrap_async(
    create: Callable[..., Any],
    llm: LLM,
    observe: Observer,
    inject: bool,
    platform: Optional[str],
) -> Callable[..., Any]:
    @functools.wraps(create)
    async def instrumented_create(*args: Any, **kwargs: Any) -> Any:
        injected = _stream_options(kwargs, inject)
        result = await create(*args, **kwargs)
        try:
            if kwargs.get("stream") is True:
                capture = StreamCapture(
                    llm, current_attribution.get(), _stream_usage, injected, platform
                )
                awatch(result, capture, observe)
            else:
                llm._emit(_usage_of(result), current_attribution.get(), platform)
        except Exception as exc:
            llm._capture_failed(exc)
        return result

    return instrumented_create


def _usage_of(response: Any) -> TokenUsage:
    return openai_usage(response.id, response.model, response.usage)


# -- chat completions stream: usage arrives in a last chunk with empty `choices` ------------


def _observe_chat_chunk(capture: StreamCapture, chunk: Any) -> bool:
    if capture.response_id is None:
        capture.response_id = chunk.id
        capture.model = chunk.model
    usage = chunk.usage
    if usage is None:
        return False
    capture.usage = usage
    # The usage-only chunk exists because we asked for it: the caller never sees it.
    return capture.hide_usage_chunk and not chunk.choices


def _stream_usage(capture: StreamCapture) -> Optional[TokenUsage]:
    """What a chat-completions or Responses stream showed, once it ended (both APIs)."""
    if capture.response_id is None:
        return None  # nothing arrived: nothing known to record
    if capture.usage is None:
        return TokenUsage(OPENAI, capture.response_id, capture.model, stream=True, partial=True)
    return openai_usage(capture.response_id, capture.model, capture.usage, stream=True)


# -- Responses API stream: each lifecycle event carries the response, the last one its usage --


def _observe_response_event(capture: StreamCapture, event: Any) -> bool:
    response = getattr(event, "response", None)
    if response is not None:
        capture.response_id = response.id
        capture.model = response.model
        if response.usage is not None:
            capture.usage = response.usage
    return False
