"""What an LLM call cost, from genai-prices (Pydantic's maintained price database) or an override.

genai-prices is optional (the `llm` extra) and imported on first use, so the core package stays
free of it. Without it every event carries `priced=False` and no cost, and one log line says why.

`genai_prices.calc_price` costs ~200 µs a call: too much for the caller's thread. Below the
first price tier a model's price is affine in the four token counts, so for each (provider,
model) we ask calc_price for the price of each token kind once, check that the affine formula
reproduces calc_price on a mixed sample, and then price each call with a few multiplications.
Models whose prices are not affine (a tier crossed, a failed check) go through calc_price.

What was served is priced as served: the call's price context (OpenAI's `service_tier`,
Anthropic's batch processing and `speed`, ...: genai-prices' `price_variants`) is part of the
compiled key and passed to `calc_price(price_context=...)`, and web searches are priced per
search (`web_searches`). genai-prices answers a variant it does not have with the standard
price, silently; so a context is priced only when the model has an active variant for each of
its values. Otherwise, and for web searches a model has no price for, the call is unpriced with
the reason, and its standard price is given as `estimated_cost_usd`, never as the price.

Anthropic's 1-hour cache writes have their own price (genai-prices' `cache_write_1h_mtok`: 2x
the base input price, against 1.25x for 5-minute writes). Where genai-prices has no such price
(a version too old to know them, or a model listed without one, such as some Claude models on
Bedrock and Vertex) they are priced at 2x the input price, Anthropic's rule.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import warnings
from datetime import datetime, timezone
from typing import Any, Optional, Tuple

# genai-prices' request context (`price_context`), as sorted-by-use (key, value) pairs.
Context = Tuple[Tuple[str, str], ...]
# Why a call is unpriced, and its standard price as an estimate (None when there is none).
Unpriced = Tuple[str, Optional[float]]

logger = logging.getLogger("bearlumen")

# A compiled price is re-derived after this long: genai-prices prices can depend on the date.
_RECOMPILE_AFTER = 3600.0
_PROBE = 1000  # tokens per probe: small enough to stay below every price tier
_ONE_HOUR_WRITE = 2.0  # x the base input price: Anthropic's price of a 1-hour cache write
# genai-prices' provider id for each platform that bills a provider's API itself: its "aws"
# (which also answers to "bedrock") and its "google" (Vertex AI) carry their Claude prices.
_LIBRARY_PROVIDER = {"azure": "azure", "bedrock": "aws", "vertex": "google"}


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per token of each kind, plus a fixed USD amount per call.

    `input` applies to input tokens that are neither cache reads nor cache writes,
    `cache_write` to the cache writes that are not 1-hour writes (`cache_write_1h`).
    `below_input_tokens`: valid only for calls with fewer input tokens than this (price tiers).
    """

    input: float
    output: float
    cache_read: float
    cache_write: float
    cache_write_1h: float
    per_call: float = 0.0
    below_input_tokens: float = float("inf")
    web_search: float = 0.0  # per search

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read: int,
        cache_write: int,
        cache_write_1h: int = 0,
        web_searches: int = 0,
    ) -> float:
        return (
            self.per_call
            + web_searches * self.web_search
            + (input_tokens - cache_read - cache_write) * self.input
            + cache_read * self.cache_read
            + (cache_write - cache_write_1h) * self.cache_write
            + cache_write_1h * self.cache_write_1h
            + output_tokens * self.output
        )


class Pricer:
    """Prices token usage: overrides first, then genai-prices; None when the model is unknown."""

    def __init__(self) -> None:
        self._overrides: dict[tuple[str, str], Price] = {}
        # (provider, model, context) -> (compiled price or None for "use calc_price", compiled
        # at, why genai-prices cannot price what was served or None)
        self._compiled: dict[tuple[str, str, Context], _Entry] = {}
        self._unknown: dict[tuple[str, str], float] = {}
        self._said_unknown: set[tuple[str, str]] = set()  # unknown models already logged
        self._library: Any = None  # the genai_prices module, False when it is not installed
        self.source: Optional[str] = None

    def set_price(
        self,
        provider: str,
        model: str,
        *,
        input_per_mtok: float,
        output_per_mtok: float,
        cache_read_per_mtok: Optional[float] = None,
        cache_write_per_mtok: Optional[float] = None,
        cache_write_1h_per_mtok: Optional[float] = None,
    ) -> None:
        """Price `model` yourself (USD per million tokens). Cache reads and writes default to
        the input price, 1-hour cache writes to twice the input price (Anthropic's rule)."""
        per = 1_000_000
        self._overrides[(provider, model)] = Price(
            input=input_per_mtok / per,
            output=output_per_mtok / per,
            cache_read=(input_per_mtok if cache_read_per_mtok is None else cache_read_per_mtok)
            / per,
            cache_write=(input_per_mtok if cache_write_per_mtok is None else cache_write_per_mtok)
            / per,
            cache_write_1h=(
                _ONE_HOUR_WRITE * input_per_mtok
                if cache_write_1h_per_mtok is None
                else cache_write_1h_per_mtok
            )
            / per,
        )

    def quote(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read: int,
        cache_write: int,
        cache_write_1h: int = 0,
        web_searches: int = 0,
        context: Context = (),
    ) -> tuple[Optional[float], Optional[str], Optional[Unpriced]]:
        """(cost in USD or None when unknown, the price's source, None or (why unpriced,
        standard price as an estimate)) of a call as it was served. `provider` is who bills the
        call: "openai", "anthropic", or the platform ("azure", "bedrock", "vertex"); `context`
        is genai-prices' price context, `web_searches` the server-side searches it ran."""
        override = self._overrides.get((provider, model))
        if override is not None:
            cost = override.cost(
                input_tokens, output_tokens, cache_read, cache_write, cache_write_1h
            )
            if context or web_searches:  # set_price() gives a model's standard token rates
                served = ", ".join(f"{k}={v}" for k, v in context) or "web searches"
                return None, "override", (f"set_price() has no price for {served}", cost)
            return cost, "override", None
        library = self._library if self._library is not None else self._load()
        if library is False:
            return None, None, None
        provider = _LIBRARY_PROVIDER.get(provider, provider)
        key = (provider, model, context)
        entry = self._compiled.get(key)
        now = time.monotonic()
        if entry is None or now - entry[1] > _RECOMPILE_AFTER:
            unknown_at = self._unknown.get((provider, model))
            if unknown_at is not None and now - unknown_at < _RECOMPILE_AFTER:
                return None, self.source, None
            entry = self._compile(library, provider, model, context, now)
            if entry is None:
                return None, self.source, None
        compiled, _, unserved = entry
        if unserved is not None:  # priced at the standard rate, as an estimate only
            standard, _, _ = self.quote(
                provider, model, input_tokens, output_tokens, cache_read, cache_write,
                cache_write_1h,
            )  # fmt: skip
            return None, self.source, (unserved, standard)
        if web_searches and (compiled is None or not compiled.web_search):
            standard, _, _ = self.quote(
                provider, model, input_tokens, output_tokens, cache_read, cache_write,
                cache_write_1h, 0, context,
            )  # fmt: skip
            reason = f"{self.source} has no web search price for {model!r} at {provider!r}"
            return None, self.source, (reason, standard)
        if compiled is not None and input_tokens < compiled.below_input_tokens:
            cost = compiled.cost(
                input_tokens, output_tokens, cache_read, cache_write, cache_write_1h, web_searches
            )
        else:
            cost = _calc(
                library, provider, model, input_tokens, output_tokens, cache_read, cache_write,
                cache_write_1h, web_searches, context,
            )  # fmt: skip
        return round(cost, 12), self.source, None

    def preload(self) -> None:
        """Import genai-prices and read its price data now (tens of milliseconds, once per
        process): done on the capture thread when a client is instrumented, so the first
        call does not pay it."""
        with _loading:  # a fork waits for it (see `_loading`)
            library = self._library if self._library is not None else self._load()
            if library is not False:
                library.calc_price(
                    library.Usage(input_tokens=1), model_ref="gpt-4o", provider_id="openai"
                )

    def _load(self) -> Any:
        library, self.source = _library()
        self._library = library
        return library

    def _compile(
        self, library: Any, provider: str, model: str, context: Context, now: float
    ) -> Optional[_Entry]:
        key = (provider, model, context)

        def price_of(**usage: int) -> float:
            return _calc(library, provider, model, context=context, **usage)

        try:
            per_call = _calc(library, provider, model)
        except LookupError:
            self._unknown[(provider, model)] = now
            if (provider, model) not in self._said_unknown:  # once per model, not per call
                self._said_unknown.add((provider, model))
                logger.warning(
                    "bearlumen: genai-prices (%s) has no price for model %r at provider %r: its"
                    " LLM events carry their tokens but no provider_cost_usd (priced=False);"
                    " client.llm.set_price(...) prices it",
                    self.source,
                    model,
                    provider,
                )
            return None
        unserved = _unserved(library, provider, model, context) if context else None
        if unserved is not None:
            entry: _Entry = (None, now, f"{self.source} has no price for {unserved} on {model!r}")
            self._compiled[key] = entry
            return entry
        compiled: Optional[Price] = None
        try:
            per_call = price_of()
            compiled = Price(
                input=(price_of(input_tokens=_PROBE) - per_call) / _PROBE,
                output=(price_of(output_tokens=_PROBE) - per_call) / _PROBE,
                cache_read=(price_of(input_tokens=_PROBE, cache_read=_PROBE) - per_call) / _PROBE,
                cache_write=(price_of(input_tokens=_PROBE, cache_write=_PROBE) - per_call) / _PROBE,
                cache_write_1h=(
                    price_of(input_tokens=_PROBE, cache_write=_PROBE, cache_write_1h=_PROBE)
                    - per_call
                )
                / _PROBE,
                per_call=per_call,
                below_input_tokens=_first_tier(library, provider, model, context),
                web_search=(
                    (price_of(web_searches=_PROBE) - per_call) / _PROBE
                    if _knows_key(library, "web_searches")
                    else 0.0
                ),
            )
            sample = {
                "input_tokens": 900,
                "output_tokens": 70,
                "cache_read": 300,
                "cache_write": 200,
                "cache_write_1h": 80,
                "web_searches": 2 if compiled.web_search else 0,
            }
            if abs(compiled.cost(**sample) - price_of(**sample)) > 1e-12:
                compiled = None  # not affine: price every call with calc_price
        except Exception:  # a price the probes cannot read: calc_price stays exact
            compiled = None
        entry = (compiled, now, None)
        self._compiled[key] = entry
        return entry


_Entry = Tuple[Optional[Price], float, Optional[str]]


def _unserved(library: Any, provider: str, model: str, context: Context) -> Optional[str]:
    """The first `key=value` of `context` that genai-prices has no active price variant for
    (it would answer the standard price without a word), or None when it prices them all."""
    try:
        calculation = library.calc_price(
            library.Usage(input_tokens=0), model_ref=model, provider_id=provider
        )
        info, models = calculation.model, calculation.provider.models
    except Exception:  # a genai-prices without price variants
        return ", ".join(f"{k}={v}" for k, v in context)
    now = datetime.now(timezone.utc)
    wanted = dict(context)
    own = any(info is candidate for candidate in models)  # a variant applies on its own provider
    for name, value in context:
        if not own or not any(
            variant.when.get(name) == value
            and all(wanted.get(k) == v for k, v in variant.when.items())
            and (variant.constraint is None or variant.constraint.active(now))
            for variant in getattr(info, "price_variants", None) or ()
        ):
            return f"{name}={value}"
    return None


# Held while genai-prices is imported and its price data first read (`_library`,
# `Pricer.preload`), and by every fork of this process until it is done: a fork in the middle
# (gunicorn --preload forks its workers right after the app module instrumented a client, whose
# capture thread is importing) left the child the import's module lock held by a thread it does
# not have, and the child's first priced call waited for ever.
_loading = threading.RLock()
_imported: Optional[tuple[Any, Optional[str]]] = None


if hasattr(os, "register_at_fork"):  # taken by the forking thread: released by it on both sides
    os.register_at_fork(
        before=_loading.acquire,
        after_in_parent=_loading.release,
        after_in_child=_loading.release,
    )


def _library() -> tuple[Any, Optional[str]]:
    """(the genai_prices module or False, "genai-prices X.Y.Z"), imported once per process;
    its absence is logged once per process, not once per client."""
    global _imported
    with _loading:
        if _imported is None:
            try:
                import genai_prices

                _imported = (genai_prices, f"genai-prices {genai_prices.__version__}")
            except ImportError:
                logger.warning(
                    "bearlumen: genai-prices is not installed, so LLM events carry no"
                    ' provider_cost_usd (priced=False); pip install "bearlumen[llm]"'
                )
                _imported = (False, None)
        return _imported


def _calc(
    library: Any,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
    web_searches: int = 0,
    context: Context = (),
) -> float:
    counts = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }
    knows_one_hour = cache_write_1h > 0 and _knows_one_hour_writes(library)
    if knows_one_hour:
        counts["cache_write_1h_tokens"] = cache_write_1h
    if web_searches:
        counts["web_searches"] = web_searches
    usage = library.Usage(**counts)
    options: dict[str, Any] = {"price_context": dict(context)} if context else {}
    cost = float(
        library.calc_price(usage, model_ref=model, provider_id=provider, **options).total_price
    )
    five_minute_cost = cost
    if knows_one_hour:
        five_minute_cost = _calc(
            library, provider, model, input_tokens, output_tokens, cache_read, cache_write, 0,
            web_searches, context,
        )  # fmt: skip
    if cache_write_1h and cost == five_minute_cost:
        # No price of its own for 1-hour writes (an older genai-prices, or a model it lists
        # without one): Anthropic's rule, twice the input price, at the unit prices of a call of
        # this size (a tier applies to the whole call).
        per_call = _calc(library, provider, model, context=context)
        input_price = (
            _calc(library, provider, model, input_tokens=input_tokens, context=context) - per_call
        )
        write_price = (
            _calc(
                library,
                provider,
                model,
                input_tokens=input_tokens,
                cache_write=input_tokens,
                context=context,
            )
            - per_call
        )
        cost += cache_write_1h * (_ONE_HOUR_WRITE * input_price - write_price) / input_tokens
    return cost


_one_hour_writes: dict[int, bool] = {}
_known_keys: dict[tuple[int, str], bool] = {}


def _knows_one_hour_writes(library: Any) -> bool:
    """Whether this genai-prices takes `cache_write_1h_tokens` (0.1.13 and 0.2.x do; 0.0.61,
    the last for Python 3.9, rejects it; an unknown key only warns in newer versions)."""
    known = _one_hour_writes.get(id(library))
    if known is None:
        known = _knows_key(library, "cache_write_1h_tokens", cache_write_tokens=1)
        _one_hour_writes[id(library)] = known
    return known


def _knows_key(library: Any, key: str, **with_counts: int) -> bool:
    """Whether this genai-prices takes the usage key `key` (an unknown key raises in older
    versions and only warns in newer ones)."""
    known = _known_keys.get((id(library), key))
    if known is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                library.Usage(**with_counts, **{key: 1})
            known = True
        except Exception:
            known = False
        _known_keys[(id(library), key)] = known
    return known


def _first_tier(library: Any, provider: str, model: str, context: Context = ()) -> float:
    """The input-token count from which a tier price applies (inf when the model has none)."""
    from genai_prices.types import TieredPrices

    options: dict[str, Any] = {"price_context": dict(context)} if context else {}
    model_price = library.calc_price(
        library.Usage(input_tokens=0, output_tokens=0),
        model_ref=model,
        provider_id=provider,
        **options,
    ).model_price
    values = (
        vars(model_price).values()
        if hasattr(model_price, "__dict__")
        else (getattr(model_price, f.name) for f in dataclasses.fields(model_price))
    )
    starts = [
        tier.start for value in values if isinstance(value, TieredPrices) for tier in value.tiers
    ]
    return float(min(starts)) if starts else float("inf")
