"""`UsageCallbackHandler`: every LangChain LLM run becomes one priced usage event.

    from bearlumen.integrations.langchain import UsageCallbackHandler

    handler = UsageCallbackHandler(client)
    chain.invoke(question, config={"callbacks": [handler], "metadata": {"end_user_id": "eu_1"}})

Reads the message's `usage_metadata`, LangChain's own normalised counts: `input_tokens` is all
input (its integrations add Anthropic's cache reads and writes), `input_token_details` has
`cache_read` and the cache writes (`cache_creation`, or split by langchain-anthropic into
`ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`), `output_token_details.reasoning`.
The provider is the run's `ls_provider` (or the message's `model_provider`), the model the one
the answer names. The key is `"{provider}:{response id}"` when `response_metadata` has the
provider's id (the key `instrument()` gives the same response), else the run id.

A run without usage (a stream that did not ask for it: `stream_usage=True` on ChatOpenAI) is
recorded `partial`, with no tokens and no price. Needs langchain-core (the `integrations` extra).
"""

from __future__ import annotations

import threading
from typing import Any, Optional
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from .._llm._context import Attribution
from .._llm._providers import from_name
from .._llm._usage import OPENAI, TokenUsage, _count, field
from ._attribution import attribution_of_run

__all__ = ["UsageCallbackHandler"]

# A run that never ends (an abandoned stream) must not keep its start for ever.
_MAX_OPEN_RUNS = 10_000


class UsageCallbackHandler(BaseCallbackHandler):
    """One `token_usage` event per LLM run of any LangChain chat model or LLM.

    Attribution: `client.llm.attribute(...)` in force when the run started, else the run's
    metadata (`end_user_id`, `subscription_id`, `agent_id`, `workflow_id`) or tags
    (`"agent_id:support-bot"`). Never raises into the chain: a failure is counted in
    `client.llm.capture_errors`.
    """

    run_inline = True  # cheap, and the run's context (attribute()) is the caller's
    raise_error = False

    def __init__(self, client: Any) -> None:
        super().__init__()
        self._llm = client.llm
        self._runs: dict[UUID, tuple[Attribution, Optional[str], Optional[str]]] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: UUID,
        tags: Optional[list[str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, tags, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        tags: Optional[list[str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, tags, metadata)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            with self._lock:
                started = self._runs.pop(run_id, None)
            attribution, provider, model = started if started is not None else ({}, None, None)
            usage = usage_of_result(response, provider, model, run_id)
            self._llm._emit(usage, attribution, usage.platform)
        except Exception as exc:
            self._llm._capture_failed(exc)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._runs.pop(run_id, None)  # the provider's error: nothing was billed we can see

    def _start(
        self, run_id: UUID, tags: Optional[list[str]], metadata: Optional[dict[str, Any]]
    ) -> None:
        try:
            attribution = attribution_of_run(metadata, tags)
            provider = metadata.get("ls_provider") if metadata else None
            model = metadata.get("ls_model_name") if metadata else None
            with self._lock:
                if len(self._runs) >= _MAX_OPEN_RUNS:
                    del self._runs[next(iter(self._runs))]  # the oldest
                self._runs[run_id] = (attribution, provider, model)
        except Exception as exc:
            self._llm._capture_failed(exc)

    def __repr__(self) -> str:
        return "<bearlumen.integrations.langchain.UsageCallbackHandler>"


def usage_of_result(
    result: Any, provider_name: Optional[str], model: Optional[str], run_id: UUID
) -> TokenUsage:
    """The usage of one LLM run's `LLMResult`: its first message that reports usage."""
    messages = [
        generation.message
        for generations in field(result, "generations") or ()
        for generation in generations
        if getattr(generation, "message", None) is not None
    ]
    message = next(
        (m for m in messages if getattr(m, "usage_metadata", None)),
        messages[0] if messages else None,
    )
    metadata = getattr(message, "response_metadata", None) or {}
    served = from_name(metadata.get("model_provider") or provider_name)
    provider, platform = served if served is not None else (OPENAI, None)
    response_id = metadata.get("id")
    if type(response_id) is not str or not response_id:
        response_id = f"langchain-run-{run_id}"
    model = metadata.get("model_name") or metadata.get("model") or model
    counts = getattr(message, "usage_metadata", None)
    if not counts:
        usage = TokenUsage(provider, response_id, model, partial=True)
    else:
        details = counts.get("input_token_details") or {}
        one_hour = _count(details, "ephemeral_1h_input_tokens")
        cache_write = (
            _count(details, "cache_creation")
            + _count(details, "ephemeral_5m_input_tokens")
            + one_hour
        )
        usage = TokenUsage(
            provider,
            response_id,
            model,
            _count(counts, "input_tokens"),
            _count(counts, "output_tokens"),
            _count(details, "cache_read"),
            cache_write,
            _count(counts.get("output_token_details"), "reasoning"),
            cache_write_1h=one_hour,
        )
    usage.platform = platform
    return usage
