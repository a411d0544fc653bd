"""Watching a provider's stream without replacing it.

The caller keeps the SDK's own stream object (its type, iteration, `with` / `async with`, and
helpers such as Anthropic's `MessageStream`). We swap the iterator the stream reads from for a
generator that looks at each item on its way past, and wrap the instance's `close`. The event is
recorded once: when the iteration ends, when the stream is closed, or when an abandoned stream
is collected, whichever comes first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Optional

from ._context import Attribution
from ._usage import TokenUsage

if TYPE_CHECKING:
    from . import LLM

# Reads the state of a watched stream into its usage once it ends.
UsageReader = Callable[["StreamCapture"], Optional[TokenUsage]]


class StreamCapture:
    """What one stream has shown so far; `finish()` records it exactly once."""

    __slots__ = (
        "attribution",
        "done",
        "hide_usage_chunk",
        "llm",
        "model",
        "platform",
        "reader",
        "response_id",
        "start_usage",
        "usage",
    )  # fmt: skip

    def __init__(
        self,
        llm: LLM,
        attribution: Attribution,
        reader: UsageReader,
        hide_usage_chunk: bool,
        platform: Optional[str] = None,
    ) -> None:
        self.llm = llm
        self.platform = platform
        self.attribution = attribution
        self.reader = reader
        self.response_id: Any = None
        self.model: Any = None
        self.usage: Any = None  # the final usage, once it arrived
        self.start_usage: Any = None  # usage known from the start (Anthropic's message_start)
        self.hide_usage_chunk = hide_usage_chunk
        self.done = False

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            usage = self.reader(self)
            if usage is not None:
                self.llm._emit(usage, self.attribution, self.platform)
        except Exception as exc:
            self.llm._capture_failed(exc)


# Looks at one item of the stream; True means "hide it from the caller".
Observer = Callable[[StreamCapture, Any], bool]


def _watched(inner: Iterator[Any], capture: StreamCapture, observe: Observer) -> Iterator[Any]:
    try:
        for item in inner:
            try:
                hide = observe(capture, item)
            except Exception as exc:
                capture.llm._capture_failed(exc)
                hide = False
            if not hide:
                yield item
    finally:
        capture.finish()


async def _awatched(
    inner: AsyncIterator[Any], capture: StreamCapture, observe: Observer
) -> AsyncIterator[Any]:
    try:
        async for item in inner:
            try:
                hide = observe(capture, item)
            except Exception as exc:
                capture.llm._capture_failed(exc)
                hide = False
            if not hide:
                yield item
    finally:
        capture.finish()


def watch(stream: Any, capture: StreamCapture, observe: Observer) -> None:
    """Make a sync stream (openai.Stream, anthropic.Stream) report its usage."""
    inner = stream._iterator  # the generator its __iter__ and __next__ read from
    original_close = stream.close

    def close() -> None:
        capture.finish()
        original_close()

    stream._iterator = _watched(inner, capture, observe)
    stream.close = close


def awatch(stream: Any, capture: StreamCapture, observe: Observer) -> None:
    """Make an async stream (openai.AsyncStream, anthropic.AsyncStream) report its usage."""
    inner = stream._iterator
    original_close = stream.close

    async def close() -> None:
        capture.finish()
        await original_close()

    stream._iterator = _awatched(inner, capture, observe)
    stream.close = close
