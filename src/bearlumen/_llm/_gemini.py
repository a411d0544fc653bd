"""Gemini: `google.genai.Client` (Gemini API and Vertex AI), `models.generate_content` and
`generate_content_stream`, and their `aio` twins.

We wrap the instance's `_generate_content` / `_generate_content_stream`, the methods the public
ones call once per request: automatic function calling and automatic continuation make several
requests inside one public call, each a response of its own with its own usage and id, each one
event. (A google-genai without them would be wrapped at the public methods.)

Gemini's counts: `prompt_token_count` is all input, the cached part
(`cached_content_token_count`) included; tool-use prompts (`tool_use_prompt_token_count`) are
input too. `candidates_token_count` leaves out the thinking (`thoughts_token_count`), which is
billed as output: our output is their sum. No cache writes are reported: an explicit cache is
created (and billed) by another call.

A stream yields `GenerateContentResponse` chunks, a bare generator in the SDK: we hand back a
generator that looks at each chunk on its way. Every chunk carries the usage so far; the last
one the final counts.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Optional

from ._call_event import CallEvent
from ._providers import GOOGLE
from ._usage import VERTEX, TokenUsage, _count, field

if TYPE_CHECKING:
    from . import LLM


def instrument(
    client: Any, llm: LLM, *, is_async: bool, inject_stream_usage: bool, platform: Optional[str]
) -> None:
    # inject_stream_usage is OpenAI's concern: Gemini's chunks always carry their usage.
    platform = VERTEX if getattr(client, "vertexai", False) is True else None
    if is_async:  # a google.genai.client.AsyncClient (`client.aio`) given by itself
        _patch(client.models, llm, platform, is_async=True)
        return
    _patch(client.models, llm, platform, is_async=False)
    _patch(client.aio.models, llm, platform, is_async=True)


def _patch(models: Any, llm: LLM, platform: Optional[str], *, is_async: bool) -> None:
    one = "_generate_content" if hasattr(models, "_generate_content") else "generate_content"
    stream = (
        "_generate_content_stream"
        if hasattr(models, "_generate_content_stream")
        else "generate_content_stream"
    )
    watch = _awatched if is_async else _watched

    def recorded(response: Any) -> Any:
        CallEvent(llm, platform).record(gemini_usage, response)
        return response

    def watched(chunks: Any) -> Any:
        return watch(chunks, CallEvent(llm, platform))

    setattr(models, one, _wrap(getattr(models, one), recorded, is_async))
    setattr(models, stream, _wrap(getattr(models, stream), watched, is_async))


def gemini_usage(response: Any, *, stream: bool = False, partial: bool = False) -> TokenUsage:
    """From a `GenerateContentResponse` (object or dict) and its `usage_metadata`."""
    metadata = field(response, "usage_metadata")
    thoughts = _count(metadata, "thoughts_token_count")
    return TokenUsage(
        GOOGLE,
        field(response, "response_id"),
        field(response, "model_version"),
        _count(metadata, "prompt_token_count") + _count(metadata, "tool_use_prompt_token_count"),
        _count(metadata, "candidates_token_count") + thoughts,
        _count(metadata, "cached_content_token_count"),
        0,
        thoughts,
        stream,
        partial,
    )


def _wrap(
    generate: Callable[..., Any], returned: Callable[[Any], Any], is_async: bool
) -> Callable[..., Any]:
    """`generate`, its result handed to `returned` (which records it or watches it) on its way
    back to the caller; the provider's own errors pass through untouched."""
    if is_async:

        @functools.wraps(generate)
        async def instrumented_async(*args: Any, **kwargs: Any) -> Any:
            return returned(await generate(*args, **kwargs))

        return instrumented_async

    @functools.wraps(generate)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        return returned(generate(*args, **kwargs))

    return instrumented


def _streamed_usage(complete: bool) -> Callable[[Any], TokenUsage]:
    """Reads the last chunk of a stream: every chunk carries the usage so far."""
    return functools.partial(gemini_usage, stream=True, partial=not complete)


def _watched(chunks: Iterator[Any], event: CallEvent) -> Iterator[Any]:
    last, complete = None, False
    try:
        for last in chunks:
            yield last
        complete = True
    finally:
        if last is not None:
            event.record(_streamed_usage(complete), last)


async def _awatched(chunks: AsyncIterator[Any], event: CallEvent) -> AsyncIterator[Any]:
    last, complete = None, False
    try:
        async for last in chunks:
            yield last
        complete = True
    finally:
        if last is not None:
            event.record(_streamed_usage(complete), last)
