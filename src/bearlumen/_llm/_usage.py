"""One LLM call's token usage, read from a provider's response, and the event it becomes.

Every provider counts differently; this module is the one place that turns their counts into
ours. `input_tokens` is ALL input, cache reads and writes included; `output_tokens` includes
reasoning. OpenAI's `prompt_tokens` / `input_tokens` already include cached tokens; Anthropic's
`input_tokens` excludes them, so its cache reads and writes are added. `cache_write` is every
cache write; `cache_write_1h` the part of it written for an hour (Anthropic's
`cache_creation.ephemeral_1h_input_tokens`), priced at its own rate.

`platform` is where a provider's API was called when it was not the provider's own endpoint
(`"azure"`, `"bedrock"`, `"vertex"`): the same API, billed by another vendor at its own prices.
"""

from __future__ import annotations

from typing import Any, Optional

from ._pricing import Pricer

OPENAI = "openai"
ANTHROPIC = "anthropic"
AZURE, BEDROCK, VERTEX = "azure", "bedrock", "vertex"
EVENT_TYPE = "token_usage"
METRIC_NAME = "llm_tokens"


class TokenUsage:
    """What one call used. A plain slotted class: built on the caller's thread for every call."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "cache_write_1h",
        "input_tokens",
        "model",
        "output_tokens",
        "partial",
        "platform",
        "provider",
        "reasoning",
        "response_id",
        "stream",
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

    def metadata(self, pricer: Pricer) -> dict[str, Any]:
        """The event's metadata: the documented keys, cost present only when it is known."""
        # A stream cut off before any count arrived knows no tokens: unpriced, not "$0".
        knows_tokens = not self.partial or self.input_tokens or self.output_tokens
        cost, source = (
            pricer.price(
                self.platform or self.provider,  # who bills the call sets its price
                self.model,
                self.input_tokens,
                self.output_tokens,
                self.cache_read,
                self.cache_write,
                self.cache_write_1h,
            )
            if self.model and knows_tokens
            else (None, pricer.source)
        )
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
        }
        if cost is not None:
            metadata["provider_cost_usd"] = cost
        return metadata


def field(obj: Any, name: str) -> Any:
    """`obj.name` for the SDKs' objects, `obj[name]` for plain dicts; None when absent."""
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def _count(obj: Any, name: str) -> int:
    value = field(obj, name)
    return value if type(value) is int else 0


def openai_usage(
    response_id: Any, model: Any, usage: Any, *, stream: bool = False, partial: bool = False
) -> TokenUsage:
    """From an OpenAI usage object: chat completions' (`prompt_tokens`, `completion_tokens`) or
    the Responses API's (`input_tokens`, `output_tokens`); both count cached tokens as input."""
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
    return TokenUsage(
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


def anthropic_usage(
    response_id: Any, model: Any, usage: Any, *, stream: bool = False, partial: bool = False
) -> TokenUsage:
    """From an Anthropic usage object, whose `input_tokens` leaves out cache reads and writes.

    `cache_creation_input_tokens` counts every cache write; `cache_creation` (absent from older
    API versions and SDKs) splits it into 5-minute and 1-hour writes."""
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    # Never more 1-hour writes than writes: a surprise in the split cannot bill a call twice.
    cache_write_1h = (
        min(_count(field(usage, "cache_creation"), "ephemeral_1h_input_tokens"), cache_write)
        if cache_write
        else 0  # most calls write nothing: the split is not read
    )
    return TokenUsage(
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


def from_response(response: Any, provider: Optional[str]) -> TokenUsage:
    """The usage of one complete (non-streamed) response, object or dict.

    Raises ValueError naming what is missing when it is not a response we can read.
    """
    if provider is None:
        provider = infer_provider(response)
    usage = field(response, "usage")
    if usage is None:
        raise ValueError("the response has no usage")
    reader = openai_usage if provider == OPENAI else anthropic_usage
    return reader(field(response, "id"), field(response, "model"), usage)


def infer_provider(response: Any) -> str:
    module = type(response).__module__
    if module.startswith("openai"):
        return OPENAI
    if module.startswith("anthropic"):
        return ANTHROPIC
    if type(response) is dict:
        kind = response.get("object")
        if kind in ("chat.completion", "response"):
            return OPENAI
        if response.get("type") == "message":
            return ANTHROPIC
    raise ValueError(
        f"cannot tell the provider of a {type(response).__name__}; pass provider='openai'"
        " or provider='anthropic'"
    )
