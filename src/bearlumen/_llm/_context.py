"""`client.llm.attribute(...)`: who an LLM call is for, carried by a context variable.

A `ContextVar` follows the code that runs: each asyncio task starts with a copy of its creator's
context, and a thread pool's worker does not inherit it unless the caller copies the context.
Nested blocks add to the outer one: inner values win, metadata is merged.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterator, Optional

from .._scoped import scoped
from .._validation import check_event, metadata_snapshot

# One attribution: the keyword arguments of usage.record it fills in (None values left out).
Attribution = Dict[str, Any]

_NONE: Attribution = {}
current_attribution: ContextVar[Attribution] = ContextVar(
    "bearlumen_llm_attribution", default=_NONE
)

# True while a call `instrument()` meters runs: the OpenTelemetry bridge leaves the spans that
# start inside it to `instrument()`, whose counts are the provider's own (cache reads too).
# Set only once a bridge exists (`span_bridges`, appended to by UsageSpanProcessor): without
# one, a call pays a truth test, not the variable's set and reset.
metered_call: ContextVar[bool] = ContextVar("bearlumen_metered_call", default=False)
span_bridges: list[object] = []


def marked(call: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """`call`, run with `metered_call` True: what an instrumented call runs while an
    OpenTelemetry bridge exists (`span_bridges`), and the SDK's own method otherwise."""
    if is_async:

        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            token = metered_call.set(True)
            try:
                return await call(*args, **kwargs)
            finally:
                metered_call.reset(token)

        return marked_async
    return scoped(metered_call, True, call)


def check(
    end_user_id: Any, subscription_id: Any, agent_id: Any, workflow_id: Any, metadata: Any
) -> Optional[Dict[str, Any]]:
    """Raise at the call that made it, not later inside a provider call's capture: the same
    checks as `usage.record()`'s (names, and metadata as the server would take it). Returns
    the metadata's checked copy: a dict changed after `attribute()` changes nothing."""
    check_event(
        "token_usage", "llm_tokens", 0, None, subscription_id, end_user_id, agent_id, workflow_id
    )
    return None if metadata is None else metadata_snapshot(metadata)


def merged(outer: Attribution, **values: Any) -> Attribution:
    """`outer` with `values` on top; metadata dicts merged key by key."""
    result = dict(outer)
    for name, value in values.items():
        if value is None:
            continue
        if name == "metadata" and outer.get("metadata"):
            value = {**outer["metadata"], **value}
        result[name] = value
    return result


@contextmanager
def attribute(
    *,
    end_user_id: Optional[str] = None,
    subscription_id: Optional[str] = None,
    agent_id: Optional[str] = None,
    workflow_id: Optional[str] = None,
    metadata: Optional[Dict[str, Any]] = None,
) -> Iterator[Attribution]:
    metadata = check(end_user_id, subscription_id, agent_id, workflow_id, metadata)
    token = current_attribution.set(
        merged(
            current_attribution.get(),
            end_user_id=end_user_id,
            subscription_id=subscription_id,
            agent_id=agent_id,
            workflow_id=workflow_id,
            metadata=metadata,
        )
    )
    try:
        yield current_attribution.get()
    finally:
        current_attribution.reset(token)
