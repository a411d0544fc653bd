"""`client.llm.attribute(...)`: who an LLM call is for, carried by a context variable.

A `ContextVar` follows the code that runs: each asyncio task starts with a copy of its creator's
context, and a thread pool's worker does not inherit it unless the caller copies the context.
Nested blocks add to the outer one: inner values win, metadata is merged.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Dict, Iterator, Optional

from .._errors import InvalidRequestError
from .._wire import MAX_NAME_LENGTH

# One attribution: the keyword arguments of usage.record it fills in (None values left out).
Attribution = Dict[str, Any]

_NONE: Attribution = {}
current_attribution: ContextVar[Attribution] = ContextVar(
    "bearlumen_llm_attribution", default=_NONE
)


def check(**values: Any) -> None:
    """Raise at the call that made it, not later inside a provider call's capture."""
    for name, value in values.items():
        if value is None:
            continue
        if name == "metadata":
            if type(value) is not dict:
                raise InvalidRequestError("metadata: must be a dict", param="metadata")
        elif type(value) is not str or not 0 < len(value) <= MAX_NAME_LENGTH:
            raise InvalidRequestError(
                f"{name}: must be a non-empty string of at most {MAX_NAME_LENGTH} characters",
                param=name,
            )


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
    check(
        end_user_id=end_user_id,
        subscription_id=subscription_id,
        agent_id=agent_id,
        workflow_id=workflow_id,
        metadata=metadata,
    )
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
