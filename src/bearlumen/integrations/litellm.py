"""`UsageLogger`: every successful LiteLLM call becomes one priced usage event.

    import litellm
    from bearlumen.integrations.litellm import UsageLogger

    litellm.callbacks = [UsageLogger(client)]
    litellm.completion(model="anthropic/claude-sonnet-4-6", messages=[...],
                       metadata={"end_user_id": "eu_1"})

A LiteLLM `CustomLogger`: `log_success_event` (sync calls) and `async_log_success_event`
(`acompletion`), each given the complete response, streams included. LiteLLM hands back every
provider's usage in OpenAI's shape, the cache already counted in `prompt_tokens` (Anthropic's
too), so it is read as `instrument()` reads an OpenAI response; Anthropic's 1-hour cache writes
from `prompt_tokens_details.cache_creation_token_details`. The provider is LiteLLM's
`custom_llm_provider` (`vertex_ai` is Google on Vertex, `bedrock` Bedrock), priced by
genai-prices like every other event (LiteLLM's own `response_cost` is not used: one price list
for every path). The key is `"{provider}:{response id}"`: for OpenAI the provider's id, the
key `instrument()` gives the same response; LiteLLM gives other providers' answers an id of its
own (`chatcmpl-<uuid>`), still one per response.

Attribution: `client.llm.attribute(...)` around the call (LiteLLM runs its callbacks in a copy
of the caller's context), else the call's `metadata` (`end_user_id`, ... or `bearlumen.`-prefixed)
or tags (`"agent_id:support-bot"`). Importing this module imports litellm (the `integrations`
extra).
"""

from __future__ import annotations

from typing import Any, Optional

from litellm.integrations.custom_logger import CustomLogger

from .._llm._providers import from_name
from .._llm._usage import OPENAI, TokenUsage, _count, field, openai_usage
from ._attribution import attribution_of_run

__all__ = ["UsageLogger"]


class UsageLogger(CustomLogger):
    """One `token_usage` event per successful LiteLLM call (sync, async, streamed or not).

    Never raises into LiteLLM: a failure is counted in `client.llm.capture_errors`.
    """

    def __init__(self, client: Any) -> None:
        super().__init__()
        self._llm = client.llm

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj)

    def _record(self, kwargs: dict[str, Any], response: Any) -> None:
        try:
            usage = usage_of_call(kwargs, response)
            if usage is None:
                return
            params = kwargs.get("litellm_params") or {}
            logged = kwargs.get("standard_logging_object") or {}
            attribution = attribution_of_run(
                params.get("metadata"), logged.get("request_tags") or None
            )
            self._llm._emit(usage, attribution, usage.platform)
        except Exception as exc:
            self._llm._capture_failed(exc)

    def __repr__(self) -> str:
        return "<bearlumen.integrations.litellm.UsageLogger>"


def usage_of_call(kwargs: dict[str, Any], response: Any) -> Optional[TokenUsage]:
    """The usage of one LiteLLM answer, or None when it is not a completion with usage
    (an embedding, an image: not metered here)."""
    counts = field(response, "usage")
    if counts is None or field(counts, "prompt_tokens") is None:
        return None
    provider_name = (kwargs.get("litellm_params") or {}).get("custom_llm_provider") or (
        kwargs.get("standard_logging_object") or {}
    ).get("custom_llm_provider")
    served = from_name(provider_name)
    provider, platform = served if served is not None else (OPENAI, None)
    usage = openai_usage(
        field(response, "id"),
        field(response, "model"),
        counts,
        stream=kwargs.get("stream") is True,
    )
    usage.provider = provider
    usage.platform = platform
    splits = field(field(counts, "prompt_tokens_details"), "cache_creation_token_details")
    usage.cache_write_1h = min(_count(splits, "ephemeral_1h_input_tokens"), usage.cache_write)
    return usage
