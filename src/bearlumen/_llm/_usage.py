"""One LLM call's token usage, read from a provider's response, and the event it becomes.

Every provider counts differently; this module is the one place that turns their counts into
ours. `input_tokens` is ALL input, cache reads and writes included; `output_tokens` includes
reasoning. OpenAI's `prompt_tokens` / `input_tokens` already include cached tokens; Anthropic's
`input_tokens` excludes them, so its cache reads and writes are added. `cache_write` is every
cache write; `cache_write_1h` the part of it written for an hour (Anthropic's
`cache_creation.ephemeral_1h_input_tokens`), priced at its own rate.

`platform` is where a provider's API was called when it was not the provider's own endpoint
(`"azure"`, `"bedrock"`, `"vertex"`): the same API, billed by another vendor at its own prices.

What was served changes the price too, and is read here: the served `service_tier` (OpenAI's
flex, priority...; Anthropic's batch and priority), Anthropic's `speed` and `inference_geo`, and
server-side web searches. `price_context()` turns them into genai-prices' request context; the
pricer prices them when genai-prices has that variant, and says the event is unpriced otherwise.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import pydantic

from ._pricing import Pricer, Unpriced

Quote = Tuple[Optional[float], Optional[str], Optional[Unpriced]]

OPENAI = "openai"
ANTHROPIC = "anthropic"
AZURE, BEDROCK, VERTEX = "azure", "bedrock", "vertex"
# What an LLM call is recorded as (the words; `_events.EVENT_TYPE` is an index into a queued event).
LLM_EVENT_TYPE = "token_usage"
LLM_METRIC_NAME = "llm_tokens"


class TokenUsage:
    """What one call used. A plain slotted class: built on the caller's thread for every call."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "cache_write_1h",
        "geo",
        "input_tokens",
        "model",
        "no_usage",
        "output_tokens",
        "partial",
        "platform",
        "provider",
        "reasoning",
        "reported_cost",
        "response_id",
        "speed",
        "stream",
        "tier",
        "web_searches",
    )  # fmt: skip

    def __init__(
        self,
        provider: str,
        response_id: Optional[str],
        model: Optional[str],
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
        reasoning: int = 0,
        stream: bool = False,
        partial: bool = False,
        cache_write_1h: int = 0,
    ) -> None:
        self.provider = provider
        self.platform: Optional[str] = None  # set by the instrumented client that made the call
        self.response_id = response_id
        self.model = model
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cache_read = cache_read
        self.cache_write = cache_write
        self.reasoning = reasoning
        self.stream = stream
        self.partial = partial
        self.cache_write_1h = cache_write_1h
        self.tier: Optional[str] = None  # the served service_tier, as the provider names it
        self.speed: Optional[str] = None  # Anthropic's "fast" mode
        self.geo: Optional[str] = None  # Anthropic's inference_geo (data residency)
        self.web_searches = 0  # server-side web searches, billed per search
        # Why the call carries no usage (None when it does): nothing to price, never "$0".
        self.no_usage: Optional[str] = None
        # What the vendor itself billed, in USD, where its answer says (OpenRouter's
        # `usage.cost`): the price when the call was billed by that vendor.
        self.reported_cost: Optional[float] = None

    def price_context(self) -> tuple[tuple[str, str], ...]:
        """What was served beyond the standard rate, as genai-prices' price context (its
        `price_variants` keys): empty for a standard call. A value genai-prices has no variant
        for (OpenAI's "scale" tier, Anthropic's priority tier or a regional `inference_geo`)
        is passed on as well: the pricer then records the call unpriced, with the reason."""
        context: tuple[tuple[str, str], ...] = ()
        tier = self.tier
        if tier is not None and tier not in _STANDARD_TIERS:
            # Anthropic's batch tier is genai-prices' batch processing, for every provider.
            context = (("processing", "batch"),) if tier == "batch" else (("service_tier", tier),)
        if self.speed is not None and self.speed != "standard":
            context += (("speed", self.speed),)
        if self.geo is not None and self.geo not in _GLOBAL_GEOS:
            context += (("inference_geo", self.geo),)
        return context

    def metadata(self, pricer: Pricer) -> dict[str, Any]:
        """The event's metadata: the documented keys, cost present only when it is known."""
        # A stream cut off before any count arrived knows no tokens: unpriced, not "$0".
        knows_tokens = self.no_usage is None and (
            not self.partial or self.input_tokens or self.output_tokens
        )
        context = self.price_context() if self.tier or self.speed or self.geo else ()
        reported = self.reported_cost
        vendor = _REPORTED_COST_SOURCES.get(self.platform or "") if reported is not None else None
        if vendor is not None and knows_tokens:
            # The vendor's own figure for what it billed: its price, whatever the model's list.
            quote: Quote = (reported, vendor, None)
        elif self.model and knows_tokens:
            quote = pricer.quote(
                self.platform or self.provider,  # who bills the call sets its price
                self.model,
                self.input_tokens,
                self.output_tokens,
                self.cache_read,
                self.cache_write,
                self.cache_write_1h,
                self.web_searches,
                context,
            )
        else:
            quote = (None, pricer.source, None)
        cost, source, unpriced = quote
        metadata: dict[str, Any] = {
            "provider": self.provider,
            "platform": self.platform,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read,
            "cache_write_tokens": self.cache_write,
            "cache_write_1h_tokens": self.cache_write_1h,
            "reasoning_tokens": self.reasoning,
            "priced": cost is not None,
            "price_source": source,
            "stream": self.stream,
            "partial": self.partial,
            "service_tier": self.tier,
        }
        if cost is not None:
            metadata["provider_cost_usd"] = cost
        else:
            reason = self.no_usage or (unpriced[0] if unpriced else None)
            if reason is not None:
                metadata["unpriced_reason"] = reason
            if unpriced is not None and unpriced[1] is not None:
                # The standard price of what was served, for what genai-prices cannot price
                # exactly (a tier, a region): stated as an estimate, never as the price.
                metadata["estimated_cost_usd"] = unpriced[1]
        if self.web_searches:
            metadata["web_search_requests"] = self.web_searches
        if self.speed is not None:
            metadata["speed"] = self.speed
        if self.geo is not None:
            metadata["inference_geo"] = self.geo
        return metadata


# Tiers billed at the standard rate: OpenAI's "default" (what "auto" resolves to when it says
# so) and Anthropic's "standard". Regions that are not a residency premium: Anthropic's.
_STANDARD_TIERS = frozenset({"default", "auto", "standard"})
_GLOBAL_GEOS = frozenset({"global", "not_available"})
# Vendors whose answer states what they billed, and the `price_source` that then says so.
_REPORTED_COST_SOURCES = {"openrouter": "openrouter usage.cost"}
NO_USAGE = "the response carried no usage"


def field(obj: Any, name: str) -> Any:
    """`obj.name` for the SDKs' objects, `obj[name]` for plain dicts; None when absent."""
    if obj is None:
        return None
    kind = type(obj)
    if kind is dict:
        return obj.get(name)
    on_class = _MODEL_CLASS_NAMES.get(kind, _UNSEEN)
    if on_class is _UNSEEN:
        on_class = _learn_class(kind)
    if on_class is None or name in on_class:
        return getattr(obj, name, None)
    # A pydantic model: its fields are in __dict__, what else the API sent (extra="allow") in
    # __pydantic_extra__. Asked for a name it lacks (OpenAI's usage has no `cost`; older SDKs
    # no `speed`), `getattr` goes through pydantic's __getattr__ and an exception: 3-5 µs, and
    # a capture asks several times.
    value = obj.__dict__.get(name, _UNSEEN)
    if value is not _UNSEEN:
        return value
    extra = getattr(obj, "__pydantic_extra__", None)
    return extra.get(name) if extra else None


_UNSEEN: Any = object()
# For each pydantic model class with pydantic's own attribute lookup: the names its class
# holds (properties, methods), which `getattr` reads; None for any other class.
_MODEL_CLASS_NAMES: dict[type, Optional[frozenset[str]]] = {}


def _learn_class(kind: type) -> Optional[frozenset[str]]:
    plain_model = (
        issubclass(kind, pydantic.BaseModel)
        and kind.__getattr__ is pydantic.BaseModel.__getattr__  # type: ignore[attr-defined]
        and kind.__getattribute__ is object.__getattribute__
    )
    on_class = frozenset(dir(kind)) if plain_model else None
    _MODEL_CLASS_NAMES[kind] = on_class  # a race writes the same answer twice
    return on_class


def _count(obj: Any, name: str) -> int:
    value = field(obj, name)
    return value if type(value) is int else 0


def openai_usage(
    response_id: Any,
    model: Any,
    usage: Any,
    *,
    stream: bool = False,
    partial: bool = False,
    tier: Any = None,
) -> TokenUsage:
    """From an OpenAI usage object: chat completions' (`prompt_tokens`, `completion_tokens`) or
    the Responses API's (`input_tokens`, `output_tokens`); both count cached tokens as input.
    `tier` is the response's `service_tier`: what was served, which sets the price."""
    if usage is None:
        unknown = TokenUsage(OPENAI, response_id, model, stream=stream, partial=partial)
        unknown.no_usage = NO_USAGE
        unknown.tier = tier if type(tier) is str else None
        return unknown
    prompt = field(usage, "prompt_tokens")
    if prompt is not None:
        input_details = field(usage, "prompt_tokens_details")
        output_details = field(usage, "completion_tokens_details")
        output = _count(usage, "completion_tokens")
    else:
        prompt = field(usage, "input_tokens")
        input_details = field(usage, "input_tokens_details")
        output_details = field(usage, "output_tokens_details")
        output = _count(usage, "output_tokens")
    counted = TokenUsage(
        OPENAI,
        response_id,
        model,
        prompt if type(prompt) is int else 0,
        output,
        _count(input_details, "cached_tokens"),
        _count(input_details, "cache_write_tokens"),
        _count(output_details, "reasoning_tokens"),
        stream,
        partial,
    )
    if type(tier) is str:
        counted.tier = tier
    cost = field(usage, "cost")  # OpenRouter's price of the call (other vendors send none)
    if type(cost) in (float, int) and cost >= 0:
        counted.reported_cost = float(cost)
    return counted


def anthropic_usage(
    response_id: Any, model: Any, usage: Any, *, stream: bool = False, partial: bool = False
) -> TokenUsage:
    """From an Anthropic usage object, whose `input_tokens` leaves out cache reads and writes.

    `cache_creation_input_tokens` counts every cache write; `cache_creation` (absent from older
    API versions and SDKs) splits it into 5-minute and 1-hour writes. What was served is in
    the usage too: `service_tier` (standard, priority, batch), `speed`, `inference_geo` and
    `server_tool_use.web_search_requests` (web fetches are not billed beyond their tokens)."""
    if usage is None:
        unknown = TokenUsage(ANTHROPIC, response_id, model, stream=stream, partial=partial)
        unknown.no_usage = NO_USAGE
        return unknown
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    # Never more 1-hour writes than writes: a surprise in the split cannot bill a call twice.
    cache_write_1h = (
        min(_count(field(usage, "cache_creation"), "ephemeral_1h_input_tokens"), cache_write)
        if cache_write
        else 0  # most calls write nothing: the split is not read
    )
    counted = TokenUsage(
        ANTHROPIC,
        response_id,
        model,
        _count(usage, "input_tokens") + cache_read + cache_write,
        _count(usage, "output_tokens"),
        cache_read,
        cache_write,
        _count(field(usage, "output_tokens_details"), "thinking_tokens"),
        stream,
        partial,
        cache_write_1h,
    )
    tier, speed, geo = (
        field(usage, "service_tier"),
        field(usage, "speed"),
        field(usage, "inference_geo"),
    )
    counted.tier = tier if type(tier) is str else None
    counted.speed = speed if type(speed) is str else None
    counted.geo = geo if type(geo) is str else None
    tools = field(usage, "server_tool_use")
    if tools is not None:
        counted.web_searches = _count(tools, "web_search_requests")
    return counted


def from_response(response: Any, provider: Optional[str]) -> TokenUsage:
    """The usage of one complete (non-streamed) response, object or dict.

    Raises ValueError naming what is missing when it is not a response we can read, or when
    it is not complete yet (a Responses API answer to `background=True`, still queued).
    """
    usage = read_response(response, provider)
    if usage is None:
        raise ValueError(
            f"the response is {field(response, 'status')}, not complete: record it once it is"
        )
    return usage


# A Responses API answer still being worked on (`background=True`): its usage comes later.
_PENDING = frozenset({"queued", "in_progress"})


def read_response(response: Any, provider: Optional[str]) -> Optional[TokenUsage]:
    """The usage of one complete response (chat completion, Responses API response, legacy
    completion, embeddings list, Anthropic message, or an OpenAI Batch API output line); None
    while a background response is still pending."""
    if provider is None:
        provider = infer_provider(response)
    if provider != OPENAI:
        return anthropic_usage(
            field(response, "id"), field(response, "model"), field(response, "usage")
        )
    tier = field(response, "service_tier")
    batch_body = field(field(response, "response"), "body")
    if batch_body is not None and field(response, "custom_id") is not None:
        response, tier = batch_body, "batch"  # a line of a Batch API output file
    if field(response, "status") in _PENDING:
        return None
    usage = openai_usage(
        field(response, "id"), field(response, "model"), field(response, "usage"), tier=tier
    )
    output = field(response, "output")
    if output:  # the Responses API: each web search the model ran is an output item, billed
        usage.web_searches = sum(1 for item in output if field(item, "type") == "web_search_call")
    return usage


def infer_provider(response: Any) -> str:
    module = type(response).__module__
    if module.startswith("openai"):
        return OPENAI
    if module.startswith("anthropic"):
        return ANTHROPIC
    if type(response) is dict:
        kind = response.get("object")
        if kind in ("chat.completion", "response", "text_completion", "list") or (
            "custom_id" in response and "response" in response
        ):
            return OPENAI
        if response.get("type") == "message":
            return ANTHROPIC
    raise ValueError(
        f"cannot tell the provider of a {type(response).__name__}; pass provider='openai'"
        " or provider='anthropic'"
    )
