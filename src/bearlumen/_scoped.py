"""A call run with a context variable set for its duration, and reset after, however it ends."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Callable, TypeVar

Value = TypeVar("Value")
Result = TypeVar("Result")


def scoped(
    var: ContextVar[Value], value: Value, call: Callable[..., Result]
) -> Callable[..., Result]:
    """`call`, with `var` set to `value` while it runs (a synchronous call: a coroutine
    function's body would run after the reset)."""

    def call_scoped(*args: Any, **kwargs: Any) -> Result:
        token = var.set(value)
        try:
            return call(*args, **kwargs)
        finally:
            var.reset(token)

    return call_scoped
