"""`client.llm`: meter an LLM call in one line.

    client.llm.instrument(openai.OpenAI())            # every call on it is now metered
    with client.llm.attribute(end_user_id="eu_1", agent_id="support-bot"):
        openai_client.chat.completions.create(model="gpt-4o", messages=[...])

Each call becomes one `token_usage` / `llm_tokens` event whose idempotency key is
`"{provider}:{response_id}"`, priced by genai-prices when it knows the model. Modules:
`_usage` (provider counts -> ours, the event's metadata), `_pricing`, `_context`
(`attribute()`), `_wrap` (the one wrapper around every call, sync or async), `_streams`
(watching a stream in place), `_deferred` (the capture runs off the caller's thread), one
module per provider.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Dict, List, Optional, TypeVar

from .. import _ids
from .._errors import InvalidRequestError
from .._http import ApiKey
from .._room import LLM_BLOCK_LIMIT, with_block_limit
from .._types import UsageRecordResult
from .._wire import COST_KEY
from . import _anthropic, _bedrock, _gemini, _openai
from ._context import Attribution, attribute, current_attribution, merged
from ._deferred import Deferred
from ._pricing import Pricer
from ._providers import from_host
from ._reconcile import Moment, ReconciliationRow, reconcile
from ._usage import (
    ANTHROPIC,
    AZURE,
    BEDROCK,
    LLM_EVENT_TYPE,
    LLM_METRIC_NAME,
    OPENAI,
    VERTEX,
    TokenUsage,
    from_response,
)

if TYPE_CHECKING:
    from ..resources import Usage

__all__ = ["LLM"]

logger = logging.getLogger("bearlumen")

ProviderClient = TypeVar("ProviderClient")
_MARK = "_bearlumen_llm"  # set on an instrumented provider client
_LOG_EVERY = 60.0  # seconds between two reports of failed captures
_SEEN_ELSEWHERE = 4096  # keys recorded by another path, remembered for instrument()'s capture


class LLM:
    """Meter LLM calls: `instrument(provider_client)`, `attribute(...)`, `record(response)`."""

    def __init__(self, usage: Usage[Any]) -> None:
        self._usage = usage
        self._record_bounded = with_block_limit(LLM_BLOCK_LIMIT, usage.record)  # the app waits
        self._pricer = Pricer()
        self._deferred = Deferred(self._capture)
        # What an instrumented call does with its result: queue it (`_deferred`), nothing more.
        self._record_call: Callable[
            [Callable[[Any], Optional[TokenUsage]], Any, Attribution, Optional[str], bool], None
        ] = self._deferred.put
        self._error_lock = threading.Lock()
        self._last_logged = -_LOG_EVERY
        self._not_logged = 0
        self._repeats_logged = -_LOG_EVERY
        self.capture_errors = 0
        """LLM calls whose capture failed (the exception swallowed, the event lost)."""
        self.repeated_response_ids = 0
        # Keys first recorded by the LangChain handler, the OTel bridge or record(): when
        # instrument()'s capture of the same call comes after, it is that call, not a repeat.
        self._seen_elsewhere: dict[str, None] = {}
        """Calls whose response id an earlier call of this process already had (a provider or a
        proxy repeating ids): each recorded under a key of its own, `provider:id:<unique>`."""

    def instrument(
        self, provider_client: ProviderClient, *, inject_stream_usage: bool = True
    ) -> ProviderClient:
        """Meter every call of this provider client and return it (the same object).

            client.llm.instrument(openai.OpenAI())
            client.llm.instrument(anthropic.AsyncAnthropic())

        Patches this instance only, never the provider's module: `openai.OpenAI` and
        `AsyncOpenAI` (`chat.completions.create` / `parse`, `responses.create` / `parse` /
        `retrieve`, `completions.create`, `embeddings.create`) and `anthropic.Anthropic` and
        `AsyncAnthropic` (`messages.create` / `parse` / `stream(...)`, and the same under
        `beta.messages`), streamed or not, raw (`with_raw_response`) or not, and subclasses
        and platform clients (Azure, Bedrock, Vertex) of those. The call itself only queues
        its result: the usage is read, priced and recorded on `client.llm`'s capture thread.
        Also `google.genai.Client` (`models.generate_content` / `generate_content_stream`, and
        `aio`) and a boto3 `bedrock-runtime` client (`converse` / `converse_stream`).
        A chat-completions stream that does not ask for its usage is asked
        (`stream_options={"include_usage": True}`) and the extra usage-only chunk is hidden;
        `inject_stream_usage=False` leaves the request alone, for servers that refuse it.
        Copies made by `with_options()` / `copy()` are instrumented too.
        """
        current = getattr(provider_client, _MARK, None)
        if current is self:
            return provider_client
        if current is not None:
            raise InvalidRequestError(
                "this provider client is already instrumented by another bearlumen.Client",
                param="provider_client",
            )
        sdk_class = _sdk_class(provider_client)  # the SDK's own, under any subclass of it
        provider = sdk_class.__module__.split(".", 1)[0]
        is_async = sdk_class.__name__.startswith("Async")
        platform = _platform(provider_client)
        module = {
            OPENAI: _openai,
            ANTHROPIC: _anthropic,
            "google": _gemini,  # google.genai.Client
            "botocore": _bedrock,  # boto3.client("bedrock-runtime")
        }.get(provider)
        if module is None:
            raise InvalidRequestError(
                f"cannot instrument a {type(provider_client).__name__}: expected an openai,"
                " anthropic, google-genai or boto3 bedrock-runtime client",
                param="provider_client",
            )
        try:
            module.instrument(
                provider_client,
                self,
                is_async=is_async,
                inject_stream_usage=inject_stream_usage,
                platform=platform,
            )
        except (AttributeError, TypeError) as exc:  # an SDK shaped unlike any we know
            raise InvalidRequestError(
                f"cannot instrument this {type(provider_client).__name__}: {exc}",
                param="provider_client",
            ) from None
        setattr(provider_client, _MARK, self)
        self._deferred.start(first=self._pricer.preload)  # prices loaded off the caller's path
        copy = getattr(provider_client, "copy", None)
        if callable(copy):

            def instrumented_copy(*args: Any, **kwargs: Any) -> Any:
                return self.instrument(
                    copy(*args, **kwargs), inject_stream_usage=inject_stream_usage
                )

            provider_client.copy = instrumented_copy  # type: ignore[attr-defined]
            provider_client.with_options = instrumented_copy  # type: ignore[attr-defined]
        return provider_client

    def attribute(
        self,
        *,
        end_user_id: Optional[str] = None,
        subscription_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> ContextManager[Attribution]:
        """Attribute every LLM call made inside the `with` block.

            with client.llm.attribute(end_user_id='eu_1', agent_id='support-bot'):
                openai_client.chat.completions.create(...)

        Built on `contextvars`: it follows asyncio tasks (each task sees the block it was
        created in) and nests (inner values win, metadata is merged).
        """
        return attribute(
            end_user_id=end_user_id,
            subscription_id=subscription_id,
            agent_id=agent_id,
            workflow_id=workflow_id,
            metadata=metadata,
        )

    def record(
        self,
        response: Any,
        *,
        provider: Optional[str] = None,
        end_user_id: Optional[str] = None,
        subscription_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> UsageRecordResult:
        """Record one complete (non-streamed) response, an SDK object or its dict.

            completion = openai_client.chat.completions.create(...)   # not instrumented
            client.llm.record(completion, agent_id='support-bot')

        `provider` ('openai' or 'anthropic') is inferred from the response when None. Returns
        what `usage.record` returns; recording the same response again returns
        `recorded: False`, and the server stores it once.
        """
        self._deferred.drain()  # calls captured before this one are recorded before it
        if provider not in (None, OPENAI, ANTHROPIC):
            raise InvalidRequestError(
                f"provider: must be 'openai' or 'anthropic', not {provider!r}", param="provider"
            )
        try:
            usage = from_response(response, provider)
        except ValueError as exc:
            raise InvalidRequestError(f"response: {exc}", param="response") from None
        attribution = merged(
            current_attribution.get(),
            end_user_id=end_user_id,
            subscription_id=subscription_id,
            agent_id=agent_id,
            workflow_id=workflow_id,
            metadata=metadata,
        )
        return self._emit(usage, attribution)

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
        """Price a model yourself, in USD per million tokens (a negotiated rate, a fine-tune, a
        model genai-prices does not know). Events then say `price_source: "override"`.

        `provider` is who bills the call: "openai", "anthropic", or the platform ("azure",
        "bedrock", "vertex") for a client of that platform. Cache reads and (5-minute) writes
        default to the input price; Anthropic's 1-hour cache writes to twice the input price.
        """
        self._pricer.set_price(
            provider,
            model,
            input_per_mtok=input_per_mtok,
            output_per_mtok=output_per_mtok,
            cache_read_per_mtok=cache_read_per_mtok,
            cache_write_per_mtok=cache_write_per_mtok,
            cache_write_1h_per_mtok=cache_write_1h_per_mtok,
        )

    def reconcile(
        self,
        *,
        provider: str,
        start: Moment,
        end: Optional[Moment] = None,
        admin_key: Optional[str] = None,
        provider_base_url: Optional[str] = None,
        progress: Optional[Callable[[str], None]] = None,
    ) -> List[ReconciliationRow]:
        """This tenant's metered LLM events beside the provider's own usage and cost reports,
        one row per UTC day and model, from `start` to `end` (exclusive; default: through
        today). The admin key and the provider's URL default to OPENAI_ADMIN_KEY /
        ANTHROPIC_ADMIN_KEY and OPENAI_BASE_URL / ANTHROPIC_BASE_URL. See docs/reconcile.md.

            rows = client.llm.reconcile(provider='openai', start='2026-12-01')
            short = [row for row in rows if row.below(0.99)]
        """
        key = None if admin_key is None else ApiKey(admin_key)
        del admin_key  # from here on only the redacted ApiKey, in locals too
        return reconcile(
            self._usage,
            provider=provider,
            start=start,
            end=end,
            admin_key=key,
            provider_base_url=provider_base_url,
            progress=progress,
        )

    def _drain(self) -> None:
        """Record every call captured so far (`client.flush()` and `close()` call it first)."""
        self._deferred.drain()

    def _record_queued_calls(self, final: bool) -> None:
        """Before an exit flush (the shipper calls it): record every call captured so far and,
        when the process ends for sure (`final`), every later one inside the call that made it."""
        if final:
            self._deferred.run_on_callers_thread()
        else:
            self._deferred.drain()

    def _capture(
        self,
        read: Callable[[Any], Optional[TokenUsage]],
        result: Any,
        attribution: Attribution,
        platform: Optional[str],
        distinct: bool,
    ) -> None:
        """Record what an instrumented call returned (`read(result)`: None while there is
        nothing to record yet), on the capture thread. Never raises: a failure is counted and
        logged."""
        try:
            usage = read(result)
            if usage is not None:
                self._emit(usage, attribution, platform, distinct)
        except Exception as exc:
            self._capture_failed(exc)

    def _emit(
        self,
        usage: TokenUsage,
        attribution: Attribution,
        platform: Optional[str] = None,
        distinct: bool = False,
    ) -> UsageRecordResult:
        """Record `usage`. `distinct`: it is the answer to a call of its own (an instrumented
        create), so an id seen before is the provider's repetition, not the same response."""
        response_id = usage.response_id
        if not response_id or type(response_id) is not str:
            if not distinct:
                raise InvalidRequestError("response: has no id", param="response")
            # No id (an embeddings answer; a proxy that sends none): a key of its own.
            key = f"{usage.provider}:{_ids.event_keys.next()}"
        else:
            key = f"{usage.provider}:{response_id}"
            if usage.no_usage is not None:  # keeps `provider:id` free for its counted record
                key += ":no-usage"
        usage.platform = platform
        metadata = usage.metadata(self._pricer)
        caller_metadata = attribution.get("metadata")
        if caller_metadata:
            if COST_KEY in caller_metadata and COST_KEY not in metadata:
                # Unpriced: the caller's figure must not pass for our price.
                caller_metadata = dict(caller_metadata)
                caller_metadata["caller_" + COST_KEY] = caller_metadata.pop(COST_KEY)
            metadata = {**caller_metadata, **metadata}
        if not distinct:
            # Remembered before it is recorded: instrument()'s capture of the call may run on
            # its own thread at the same moment.
            self._remember_elsewhere(key)
            result = self._record(key, usage, attribution, metadata)
            if not result["recorded"]:
                self._seen_elsewhere.pop(key, None)  # recorded before: not by this path
            return result
        result = self._record(key, usage, attribution, metadata)
        if not result["recorded"] and not result.get("dropped"):
            if self._seen_elsewhere.pop(key, 0) is None:
                return result  # the same call, recorded first by another path
            self._repeated(key)
            result = self._record(f"{key}:{_ids.event_keys.next()}", usage, attribution, metadata)
        return result

    def _remember_elsewhere(self, key: str) -> None:
        seen = self._seen_elsewhere
        seen[key] = None
        if len(seen) > _SEEN_ELSEWHERE:
            # The oldest (its instrument() capture long done); another thread changing it
            # meanwhile leaves the trim to the next key.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del seen[next(iter(seen))]

    def _record(
        self, key: str, usage: TokenUsage, attribution: Attribution, metadata: Dict[str, Any]
    ) -> UsageRecordResult:
        return self._record_bounded(
            LLM_EVENT_TYPE,
            LLM_METRIC_NAME,
            usage.input_tokens + usage.output_tokens,
            key,
            end_user_id=attribution.get("end_user_id"),
            subscription_id=attribution.get("subscription_id"),
            agent_id=attribution.get("agent_id"),
            workflow_id=attribution.get("workflow_id"),
            metadata=metadata,
        )

    def _repeated(self, key: str) -> None:
        """A response id repeated by the provider: counted, logged once per burst."""
        now = time.monotonic()
        with self._error_lock:
            self.repeated_response_ids += 1
            if now - self._repeats_logged < _LOG_EVERY:
                return
            self._repeats_logged = now
            count = self.repeated_response_ids
        logger.warning(
            "bearlumen: the provider answered a response id it had already answered (%s): the"
            " call is recorded under a key of its own (%d in all:"
            " client.llm.repeated_response_ids)",
            key,
            count,
        )

    def _capture_failed(self, exc: BaseException) -> None:
        """A bug or surprise in the capture never reaches the app. Its event is lost, so it is
        counted (`capture_errors`) and logged once per burst: the first, then at most once a
        minute with the count of those not logged."""
        now = time.monotonic()
        with self._error_lock:
            self.capture_errors += 1
            if now - self._last_logged < _LOG_EVERY:
                self._not_logged += 1
                return
            self._last_logged, not_logged, self._not_logged = now, self._not_logged, 0
        logger.warning(
            "bearlumen: could not meter an LLM call, its usage event is lost (%d more since the"
            " last report; all counted in client.llm.capture_errors)",
            not_logged,
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    def __repr__(self) -> str:
        return "<bearlumen.Client.llm>"


# The SDKs' clients for a provider's API served by another vendor, by a word in their class
# names: openai.AzureOpenAI (BaseAzureClient), openai.BedrockOpenAI, anthropic.AnthropicBedrock
# (BaseBedrockClient), anthropic.AnthropicVertex (BaseVertexClient), and their Async twins.
_PLATFORM_WORDS = (("Azure", AZURE), ("Bedrock", BEDROCK), ("Vertex", VERTEX))


def _sdk_class(provider_client: Any) -> type:
    """The first class of the provider's SDK in the client's MRO: the client's own class, or
    the one an application subclassed."""
    for klass in type(provider_client).__mro__:
        if klass.__module__.split(".", 1)[0] in (OPENAI, ANTHROPIC):
            return klass
    return type(provider_client)


def _platform(provider_client: Any) -> Optional[str]:
    """Who bills this client's calls when it is not the provider itself (None then)."""
    for klass in type(provider_client).__mro__:
        if klass.__module__.split(".", 1)[0] not in (OPENAI, ANTHROPIC):
            continue
        for word, platform in _PLATFORM_WORDS:
            if word in klass.__name__:
                return platform
    # An SDK pointed at another vendor's compatible API (Groq, Mistral, OpenRouter...)
    return from_host(str(getattr(provider_client, "base_url", "") or ""))
