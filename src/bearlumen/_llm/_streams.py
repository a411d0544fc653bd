"""Watching a provider's stream without replacing it.

The caller keeps the SDK's own stream object (its type, iteration, `with` / `async with`, and
helpers such as Anthropic's `MessageStream`). We swap the iterator the stream reads from for a
generator that looks at each item on its way past, and wrap the instance's `close`. The event is
recorded once: when the iteration ends, when the stream is closed, or when an abandoned stream
is collected, whichever comes first.
"""

from __future__ import annotations

import weakref
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
        "distinct",
        "done",
        "ended",
        "hide_usage_chunk",
        "llm",
        "model",
        "platform",
        "reader",
        "request",
        "response_id",
        "start_usage",
        "tier",
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
        self.tier: Any = None  # the served service_tier, where a chunk says it
        self.hide_usage_chunk = hide_usage_chunk
        self.done = False
        self.ended = False  # read to its end, not closed or dropped before
        self.request: Optional[str] = None  # how the usage was asked for (_wrap.ASKED...)
        self.distinct = True  # a new response (create), not a read of one (retrieve)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.llm._record_call(self.reader, self, self.attribution, self.platform, self.distinct)


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
        capture.ended = True
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
        capture.ended = True
    finally:
        capture.finish()


def watch(stream: Any, capture: StreamCapture, observe: Observer) -> None:
    """Make a stream (openai.Stream / AsyncStream, anthropic.Stream / AsyncStream) report its
    usage: the iterator its __iter__ / __aiter__ reads from is watched, its close finishes.
    A tracer's wrapper around the SDK's stream (OpenTelemetry's openai-v2 keeps it in
    `.stream` and passes attribute reads through, not writes) is looked into."""
    for _ in range(3):
        held = getattr(stream, "__dict__", {})
        if "_iterator" in held or "stream" not in held:
            break
        stream = held["stream"]
    inner = stream._iterator  # the generator its __iter__ and __next__ read from
    original_close = _close_of(stream)
    if hasattr(inner, "__anext__"):

        async def aclose() -> None:
            capture.finish()
            closing = original_close()  # None once the stream is gone
            if closing is not None:
                await closing

        stream._iterator = _awatched(inner, capture, observe)
        stream.close = aclose
        return

    def close() -> None:
        capture.finish()
        original_close()

    stream._iterator = _watched(inner, capture, observe)
    stream.close = close


def _close_of(stream: Any) -> Callable[[], Any]:
    """The stream's own close, reached without a reference to the stream: `stream.close` is a
    bound method, and kept in the stream's own dict (where our close goes) it would make the
    stream a reference cycle, freed only by the cyclic collector. A stream left by `break`
    would then record its partial call late, or at exit after the client closed (dropped)."""
    if "close" in vars(stream):  # someone else's close on the instance: call it as it is
        bound: Callable[[], Any] = stream.close
        return bound
    unbound, ref = type(stream).close, weakref.ref(stream)

    def original_close() -> Any:
        target = ref()
        return None if target is None else unbound(target)

    return original_close


awatch = watch  # one function for both kinds of stream
