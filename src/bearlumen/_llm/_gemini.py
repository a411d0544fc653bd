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

from ._context import Attribution, current_attribution
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
    if is_async:
        setattr(models, one, _wrap_async(getattr(models, one), llm, platform))
        setattr(models, stream, _wrap_async_stream(getattr(models, stream), llm, platform))
    else:
        setattr(models, one, _wrap_sync(getattr(models, one), llm, platform))
        setattr(models, stream, _wrap_sync_stream(getattr(models, stream), llm, platform))


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


def _record(llm: LLM, response: Any, platform: Optional[str]) -> None:
    """One event for one answer; a surprise in it is counted, never raised into the app."""
    try:
        llm._emit(gemini_usage(response), current_attribution.get(), platform)
    except Exception as exc:
        llm._capture_failed(exc)


def _wrap_sync(
    generate: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(generate)
    def instrumented_generate(*args: Any, **kwargs: Any) -> Any:
        response = generate(*args, **kwargs)  # the provider's own errors pass through untouched
        _record(llm, response, platform)
        return response

    return instrumented_generate


def _wrap_async(
    generate: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(generate)
    async def instrumented_generate(*args: Any, **kwargs: Any) -> Any:
        response = await generate(*args, **kwargs)
        _record(llm, response, platform)
        return response

    return instrumented_generate


class _StreamCapture:
    """The last chunk seen; `finish()` records it once."""

    __slots__ = ("attribution", "done", "last", "llm", "platform")

    def __init__(self, llm: LLM, attribution: Attribution, platform: Optional[str]) -> None:
        self.llm = llm
        self.attribution = attribution
        self.platform = platform
        self.last: Any = None
        self.done = False

    def finish(self, complete: bool) -> None:
        if self.done or self.last is None:
            return
        self.done = True
        try:
            usage = gemini_usage(self.last, stream=True, partial=not complete)
            self.llm._emit(usage, self.attribution, self.platform)
        except Exception as exc:
            self.llm._capture_failed(exc)


def _watched(chunks: Iterator[Any], capture: _StreamCapture) -> Iterator[Any]:
    complete = False
    try:
        for chunk in chunks:
            capture.last = chunk
            yield chunk
        complete = True
    finally:
        capture.finish(complete)


async def _awatched(chunks: AsyncIterator[Any], capture: _StreamCapture) -> AsyncIterator[Any]:
    complete = False
    try:
        async for chunk in chunks:
            capture.last = chunk
            yield chunk
        complete = True
    finally:
        capture.finish(complete)


def _wrap_sync_stream(
    generate: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(generate)
    def instrumented_stream(*args: Any, **kwargs: Any) -> Any:
        chunks = generate(*args, **kwargs)
        return _watched(chunks, _StreamCapture(llm, current_attribution.get(), platform))

    return instrumented_stream


def _wrap_async_stream(
    generate: Callable[..., Any], llm: LLM, platform: Optional[str]
) -> Callable[..., Any]:
    @functools.wraps(generate)
    async def instrumented_stream(*args: Any, **kwargs: Any) -> Any:
        chunks = await generate(*args, **kwargs)
        return _awatched(chunks, _StreamCapture(llm, current_attribution.get(), platform))

    return instrumented_stream
