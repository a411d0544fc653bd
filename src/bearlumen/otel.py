"""`bearlumen.otel.UsageSpanProcessor`: every finished GenAI span becomes one priced usage event.

    from opentelemetry.sdk.trace import TracerProvider
    from bearlumen.otel import UsageSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(UsageSpanProcessor(client))

An app already traced with OpenTelemetry's GenAI instrumentation (the official
`opentelemetry-instrumentation-openai-v2` and GenAI utils, OpenLLMetry, OpenInference, Logfire)
is metered without touching its provider clients. A span is a GenAI call when it carries token
counts under any of the names below; the others cost one dict lookup and are left alone.

How each emitter names the counts (the full table is in docs/llm.md): the GenAI conventions'
`gen_ai.usage.input_tokens` / `output_tokens` / `cache_read.input_tokens` /
`cache_creation.input_tokens` or `cache_write.input_tokens` / `reasoning.output_tokens`;
OpenLLMetry's `gen_ai.usage.prompt_tokens` / `completion_tokens` / `cache_read_input_tokens` /
`cache_creation_input_tokens` / `reasoning_tokens` (and `llm.usage.*`); OpenInference's
`llm.token_count.prompt` / `completion` / `prompt_details.cache_read` / `cache_write` /
`completion_details.reasoning`. All of them count the cache in the input, except Logfire's
Anthropic spans, whose input is Anthropic's own `input_tokens`: Logfire keeps the provider's
usage object (JSON, in `response_data`), read here exactly as `instrument()` reads it.
A span whose input count is smaller than its cache counts cannot include them: they are added.

The key is `"{provider}:{gen_ai.response.id}"`, the key `instrument()` gives the same response,
so a call both instrumented and traced is stored once. A span without a response id (OpenInference
records none) is keyed by its trace and span ids: stored once however often it is exported.

Attribution: `client.llm.attribute(...)` in force when the span started, else OpenTelemetry
baggage (`bearlumen.end_user_id`, `bearlumen.subscription_id`, `bearlumen.agent_id`,
`bearlumen.workflow_id`), which follows a request across services. `opentelemetry-sdk` is
imported only with this module (the `integrations` extra).
"""

from __future__ import annotations

import inspect
import json
import threading
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from opentelemetry import baggage
from opentelemetry.sdk.trace import SpanProcessor

from ._llm._context import (
    Attribution,
    current_attribution,
    merged,
    metered_call,
    span_bridges,
)
from ._llm._providers import from_host, from_name
from ._llm._usage import (
    ANTHROPIC,
    OPENAI,
    TokenUsage,
    anthropic_usage,
    openai_usage,
)
from ._wire import MAX_NAME_LENGTH

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span

    from ._async_client import AsyncClient
    from ._client import Client

__all__ = ["UsageSpanProcessor"]

_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_MODEL = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
_INPUT = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
_OUTPUT = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
# Logfire keeps the provider's own usage object, JSON-encoded, beside the two scalar counts.
_LOGFIRE_RAW = ("gen_ai.usage.raw", "response_data")
_ATTRIBUTION = ("end_user_id", "subscription_id", "agent_id", "workflow_id")
_BAGGAGE = tuple((f"bearlumen.{name}", name) for name in _ATTRIBUTION)
# Attribution remembered from on_start to on_end; a span never ended must not leak it forever.
_MAX_OPEN_SPANS = 10_000
_LEFT_TO_INSTRUMENT: Attribution = {"left to": "instrument()"}  # by identity: not recorded


class UsageSpanProcessor(SpanProcessor):
    """Turns each finished GenAI span into one `token_usage` event on `client`.

        provider = TracerProvider()
        provider.add_span_processor(UsageSpanProcessor(client))

    `on_start` / `on_end` run on the traced call's thread: they never raise and do no I/O (the
    event is queued like any `usage.record`). `force_flush(timeout_millis)` waits for this
    client's queued events, at most that long; `shutdown()` leaves the client open (it is yours).
    """

    def __init__(self, client: Union[Client, AsyncClient]) -> None:
        self._client = client
        self._llm = client.llm
        self._open_spans: dict[int, Attribution] = {}
        self._lock = threading.Lock()
        if not span_bridges:
            span_bridges.append(True)  # instrument()'s calls now say they are metered

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        try:
            if metered_call.get():
                # A span of a call instrument() meters (an instrumentation wrapping the SDK
                # inside instrument()'s wrapper): instrument() records it, with the provider's
                # own counts, which the span may lack (openai-v2 has no cache reads).
                attribution = _LEFT_TO_INSTRUMENT
            else:
                attribution = current_attribution.get()
                carried = baggage.get_all(parent_context)  # the current context's when None
                if carried:
                    attribution = _with_baggage(attribution, carried)
                if not attribution:
                    return
            span_id = span.context.span_id
            with self._lock:
                if len(self._open_spans) >= _MAX_OPEN_SPANS:
                    del self._open_spans[next(iter(self._open_spans))]  # the oldest
                self._open_spans[span_id] = attribution
        except Exception as exc:
            self._llm._capture_failed(exc)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            context = span.context
            attribution: Attribution = {}
            if self._open_spans:
                with self._lock:
                    attribution = self._open_spans.pop(context.span_id, attribution)
                if attribution is _LEFT_TO_INSTRUMENT:
                    return
            attributes = span.attributes
            if not attributes:
                return
            # A plain copy: the SDK's mapping takes a lock per lookup, and a miss costs a
            # KeyError inside Mapping.get; most of the names we look for are misses.
            attributes = dict(attributes)
            scope = span.instrumentation_scope
            usage = usage_of_span(attributes, scope.name if scope is not None else "", context)
            if usage is not None:
                self._llm._emit(usage, attribution, usage.platform)
        except Exception as exc:
            self._llm._capture_failed(exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait for the events queued so far, at most `timeout_millis`; True when all went."""
        flush = self._client.flush
        if inspect.iscoroutinefunction(flush):
            return True  # an AsyncClient delivers from its own worker; await its flush() yourself
        try:
            result: Any = flush(timeout=timeout_millis / 1000)
            return bool(result["complete"])
        except Exception as exc:
            self._llm._capture_failed(exc)
            return False

    def shutdown(self) -> None:
        with self._lock:
            self._open_spans.clear()

    def __repr__(self) -> str:
        return "<bearlumen.otel.UsageSpanProcessor>"


def _with_baggage(attribution: Attribution, carried: Mapping[str, object]) -> Attribution:
    """The context's attribution, filled in from baggage where it says nothing. Values that are
    not valid names are left out: baggage comes from other services, and a bad value must not
    cost the event."""
    values = {}
    for key, name in _BAGGAGE:
        value = carried.get(key)
        if (
            name not in attribution
            and type(value) is str
            and 0 < len(value) <= MAX_NAME_LENGTH
            and "\x00" not in value
        ):
            values[name] = value
    return merged(attribution, **values) if values else attribution


def _first(attributes: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attributes.get(name)
        if value is not None:
            return value
    return None


def _count(attributes: Mapping[str, Any], names: tuple[str, ...]) -> Optional[int]:
    value = _first(attributes, names)
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def usage_of_span(attributes: Mapping[str, Any], scope: str, context: Any) -> Optional[TokenUsage]:
    """The usage a finished span reports, or None when it is not a GenAI call with counts."""
    input_tokens = _count(attributes, _INPUT)
    output_tokens = _count(attributes, _OUTPUT)
    if input_tokens is None and output_tokens is None:
        return None
    served = from_name(_first(attributes, _PROVIDER))
    provider, platform = served if served is not None else (OPENAI, None)
    if platform is None and provider in (OPENAI, ANTHROPIC):
        # The SDK pointed at Groq, Mistral...: that vendor's call, at its price.
        platform = from_host(attributes.get("server.address"))
    response_id = attributes.get("gen_ai.response.id")
    if type(response_id) is not str or not response_id:  # the span itself, then
        response_id = f"otel-{context.trace_id:032x}-{context.span_id:016x}"
    model = _first(attributes, _MODEL)
    if type(model) is not str:
        model = None
    stream = attributes.get("gen_ai.request.stream") is True
    usage = _logfire_usage(attributes, provider, response_id, model) if "logfire" in scope else None
    if usage is None:
        cache_read = _count(attributes, _CACHE_READ) or 0
        cache_write = _count(attributes, _CACHE_WRITE) or 0
        total_input = input_tokens or 0
        if total_input < cache_read + cache_write:  # an emitter that counts them apart
            total_input += cache_read + cache_write
        usage = TokenUsage(
            provider,
            response_id,
            model,
            total_input,
            output_tokens or 0,
            cache_read,
            cache_write,
            _count(attributes, _REASONING) or 0,
        )
    usage.provider = provider
    usage.stream = stream
    usage.platform = platform
    return usage


def _logfire_usage(
    attributes: Mapping[str, Any], provider: str, response_id: str, model: Optional[str]
) -> Optional[TokenUsage]:
    """Logfire's counts, from the provider's own usage object it keeps JSON-encoded: its scalar
    input count is Anthropic's `input_tokens`, which leaves the cache out."""
    if provider not in (OPENAI, ANTHROPIC):
        return None
    for name in _LOGFIRE_RAW:
        raw = attributes.get(name)
        if type(raw) is not str:
            continue
        try:
            decoded = json.loads(raw)
        except ValueError:
            continue
        if type(decoded) is not dict:
            continue
        usage = decoded.get("usage", decoded)
        if type(usage) is dict and ("input_tokens" in usage or "prompt_tokens" in usage):
            reader = anthropic_usage if provider == ANTHROPIC else openai_usage
            return reader(response_id, model, usage)
    return None
