"""Anthropic: `messages.create` (streamed or not), `messages.parse`, `messages.stream(...)`, and
the same three under `beta.messages`, sync and async. `with_raw_response` /
`with_streaming_response` go through the same methods (`_wrap`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ._streams import StreamCapture
from ._usage import ANTHROPIC, TokenUsage, anthropic_usage, read_response
from ._wrap import Meter, wrap, wrap_stream_helper

if TYPE_CHECKING:
    from . import LLM


def instrument(
    client: Any, llm: LLM, *, is_async: bool, inject_stream_usage: bool, platform: Optional[str]
) -> None:
    # inject_stream_usage is OpenAI's concern: Anthropic streams always carry their usage.
    meter = Meter(
        llm,
        is_async=is_async,
        platform=platform,
        read=_read,
        observe=_observe_event,
        stream_usage=_stream_usage,
    )
    messages = client.messages
    beta = getattr(getattr(client, "beta", None), "messages", None)
    for resource in (messages, beta):
        if resource is None:
            continue
        for name in ("create", "parse"):  # parse() posts by itself (it never streams)
            call = getattr(resource, name, None)
            if call is not None:
                setattr(resource, name, wrap(call, meter))
        stream = getattr(resource, "stream", None)
        if stream is not None:
            resource.stream = wrap_stream_helper(stream, meter)
    if client.messages is not messages:  # resources rebuilt on each access
        raise TypeError("this anthropic version builds its resources anew on each access")


def _read(message: Any) -> Optional[TokenUsage]:
    return read_response(message, ANTHROPIC)


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


# The counts a message_delta may repeat (final ones win), and what only message_start says.
_COUNTS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "output_tokens",
    "output_tokens_details",
    "server_tool_use",
    "service_tier",
    "speed",
    "inference_geo",
)


def _stream_usage(capture: StreamCapture) -> Optional[TokenUsage]:
    """message_start brings the input counts, each message_delta the output so far (and, in
    newer API versions, final input counts and server tool use too: those win when present)."""
    if capture.response_id is None:
        return None
    counts: dict[str, Any] = {}
    for usage in (capture.start_usage, capture.usage):
        if usage is None:
            continue
        for name in _COUNTS:
            value = getattr(usage, name, None)
            if value is not None:
                counts[name] = value
    return anthropic_usage(
        capture.response_id,
        capture.model,
        counts,
        stream=True,
        partial=capture.usage is None,
    )
