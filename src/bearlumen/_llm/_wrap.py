"""One wrapper for every instrumented call, sync or async: `Meter` says how one kind of call is
metered, `wrap()` puts it around the SDK's bound method, `wrap_stream_helper()` around a
helper that returns a stream manager (Anthropic's `messages.stream(...)`).

What a call returns decides how it is read:
- a response: read by `Meter.read` (None while a background response is still pending);
- a stream (`stream=True`): watched in place (`_streams`), read when it ends;
- a raw response (`with_raw_response`, the SDKs' `X-Stainless-Raw-Response: true` header): its
  `parse()` is cached by the SDK, so we parse it and the caller's `parse()` returns the very
  object we read (a stream we watch);
- a streamed raw response (`with_streaming_response`, the header's "stream" value): its body is
  the caller's to read, so the call is metered when the caller calls `parse()`; a body read
  another way (`iter_lines()`, `json()`) is not metered and is counted as a capture error when
  the response is closed. Such a request is never asked for its stream usage: the caller
  reads the bytes exactly as sent.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._context import Attribution, current_attribution, marked, span_bridges
from ._streams import Observer, StreamCapture, UsageReader, watch
from ._usage import TokenUsage

if TYPE_CHECKING:
    from . import LLM

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"  # openai's and anthropic's (Stainless SDKs)

# How a stream's request stands towards its usage (chat and legacy completions ask for it).
ASKED = "asked"  # the caller asked (`include_usage: True`), or the API always sends it
INJECTED = "injected"  # we asked: the usage-only chunk is hidden from the caller
DECLINED = "stream_options.include_usage was False: the provider sent no usage"
NOT_ASKED = "the request did not ask for the stream's usage (stream_options not sent)"


class Meter:
    """How one kind of call is metered: `read` a complete response, `observe` each item of its
    stream and `stream_usage` read the stream once it ends; `inject` asks a chat-completions
    stream for its usage; `distinct` is True for calls that each make a new response (create),
    False for reads of one that exists (`responses.retrieve`)."""

    __slots__ = (
        "distinct", "inject", "is_async", "llm", "observe", "platform", "read", "stream_usage",
    )  # fmt: skip

    def __init__(
        self,
        llm: LLM,
        *,
        is_async: bool,
        platform: Optional[str],
        read: Callable[[Any], Optional[TokenUsage]],
        observe: Optional[Observer] = None,
        stream_usage: Optional[UsageReader] = None,
        inject: Optional[bool] = None,
        distinct: bool = True,
    ) -> None:
        self.llm = llm
        self.is_async = is_async
        self.platform = platform
        self.read = read
        self.observe = observe
        self.stream_usage = stream_usage
        self.inject = inject  # None: the API always streams its usage
        self.distinct = distinct

    def prepare(self, kwargs: dict[str, Any]) -> Optional[str]:
        """Before the request: None for a call that does not stream, else how its usage was
        asked for (ASKED, INJECTED, DECLINED or NOT_ASKED); may add `stream_options`."""
        if kwargs.get("stream") is not True:
            return None
        if self.inject is None:
            return ASKED
        options = kwargs.get("stream_options")
        if isinstance(options, dict) and "include_usage" in options:
            return ASKED if options["include_usage"] else DECLINED
        if not self.inject or _raw_mode(kwargs) == "stream":
            return NOT_ASKED
        kwargs["stream_options"] = (
            {**options, "include_usage": True}
            if isinstance(options, dict)
            else {"include_usage": True}  # absent, or the SDK's "not given" sentinel
        )
        return INJECTED

    def returned(self, result: Any, kwargs: dict[str, Any], stream: Optional[str]) -> None:
        """After the request: meter what it returned. Never raises."""
        try:
            attribution = current_attribution.get()
            headers = kwargs.get("extra_headers")
            if type(headers) is dict and RAW_RESPONSE_HEADER in headers:
                if headers[RAW_RESPONSE_HEADER] == "stream":
                    self._on_parse(result, attribution, stream)
                    return
                result = result.parse()  # cached: the caller's parse() returns this object
            self.take(result, attribution, stream)
        except Exception as exc:
            self.llm._capture_failed(exc)

    def take(self, result: Any, attribution: Attribution, stream: Optional[str]) -> None:
        if stream is None:
            self.llm._record_call(self.read, result, attribution, self.platform, self.distinct)
        else:
            self.watch(result, attribution, stream)

    def watch(self, stream: Any, attribution: Attribution, request: str) -> None:
        assert self.observe is not None and self.stream_usage is not None
        capture = StreamCapture(
            self.llm, attribution, self.stream_usage, request == INJECTED, self.platform
        )
        capture.request = request
        capture.distinct = self.distinct
        watch(stream, capture, self.observe)

    def _on_parse(self, response: Any, attribution: Attribution, stream: Optional[str]) -> None:
        """`with_streaming_response`: meter the call when the caller parses the body."""
        parse, close = response.parse, response.close
        parsed: list[bool] = []

        def take(result: Any, to: Any) -> None:
            if to is None and not parsed:  # parse(to=...) is the caller's own type: not ours
                parsed.append(True)
                try:
                    self.take(result, attribution, stream)
                except Exception as exc:
                    self.llm._capture_failed(exc)

        def unparsed() -> None:
            if not parsed:
                parsed.append(False)
                self.llm._capture_failed(
                    RuntimeError(
                        "a with_streaming_response body was read without parse(): not metered"
                    )
                )

        if self.is_async:

            async def aparse(*, to: Any = None) -> Any:
                result = await parse(to=to)
                take(result, to)
                return result

            async def aclose() -> None:
                unparsed()
                await close()

            response.parse, response.close = aparse, aclose
        else:

            def sync_parse(*, to: Any = None) -> Any:
                result = parse(to=to)
                take(result, to)
                return result

            def sync_close() -> None:
                unparsed()
                close()

            response.parse, response.close = sync_parse, sync_close


def _raw_mode(kwargs: dict[str, Any]) -> Optional[str]:
    headers = kwargs.get("extra_headers")
    return headers.get(RAW_RESPONSE_HEADER) if type(headers) is dict else None


def wrap(call: Callable[..., Any], meter: Meter) -> Callable[..., Any]:
    """`call` metered by `meter`: the provider's own errors pass through untouched, and nothing
    of the capture ever raises into the caller.

    The common call (a response, no raw-response header) takes a fast path that only queues
    the result for the capture thread: every step here is paid on the caller's thread."""
    # The SDK's method itself unless an OpenTelemetry bridge exists (`metered_call`): a frame
    # less per call, which counts most when the CPU's caches are cold (calls far apart).
    plain, marking = call, marked(call, meter.is_async)
    prepare, returned, llm = meter.prepare, meter.returned, meter.llm
    read, platform, distinct = meter.read, meter.platform, meter.distinct
    get_attribution = current_attribution.get
    if meter.is_async:

        async def instrumented_async(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("stream") is True or "extra_headers" in kwargs:
                stream = prepare(kwargs)
                result = await (marking if span_bridges else plain)(*args, **kwargs)
                returned(result, kwargs, stream)
                return result
            result = await (marking if span_bridges else plain)(*args, **kwargs)
            try:
                llm._record_call(read, result, get_attribution(), platform, distinct)
            except Exception as exc:
                llm._capture_failed(exc)
            return result

        return functools.wraps(plain)(instrumented_async)

    def instrumented(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("stream") is True or "extra_headers" in kwargs:
            stream = prepare(kwargs)
            result = (marking if span_bridges else plain)(*args, **kwargs)
            returned(result, kwargs, stream)
            return result
        result = (marking if span_bridges else plain)(*args, **kwargs)
        try:
            llm._record_call(read, result, get_attribution(), platform, distinct)
        except Exception as exc:
            llm._capture_failed(exc)
        return result

    return functools.wraps(plain)(instrumented)


def wrap_stream_helper(helper: Callable[..., Any], meter: Meter) -> Callable[..., Any]:
    """A helper that returns a stream manager (Anthropic's `MessageStreamManager` and its beta
    and async twins): the manager makes its request when entered, through a name-mangled
    private attribute (`_<Manager>__api_request`, stable since anthropic 0.2x), which we wrap
    so the raw stream it opens is watched."""

    @functools.wraps(helper)
    def instrumented_stream(*args: Any, **kwargs: Any) -> Any:
        manager = helper(*args, **kwargs)
        try:
            name = next(n for n in vars(manager) if n.endswith("__api_request"))
            request = getattr(manager, name)
            attribution = current_attribution.get()

            def watched(raw_stream: Any) -> Any:
                try:
                    meter.watch(raw_stream, attribution, ASKED)
                except Exception as exc:
                    meter.llm._capture_failed(exc)
                return raw_stream

            if meter.is_async:  # a coroutine, awaited on entry

                async def watched_async() -> Any:
                    return watched(await request)

                setattr(manager, name, watched_async())
            else:
                setattr(manager, name, lambda: watched(request()))
        except Exception as exc:
            meter.llm._capture_failed(exc)
        return manager

    return instrumented_stream
