"""One definition per resource method, for both clients.

A resource method is written once, as the `Call` it makes:

    class EndUsers(Resource[HttpT]):
        @endpoint
        def reactivate(self, end_user_id: str) -> Call[EndUserResponse]:
            \"\"\"Restore a deactivated end user.\"\"\"
            return Call("POST", f"/v1/end-users/{path_id('end_user_id', end_user_id)}/reactivate")

On `Client` (`EndUsers[HttpCore]`) `client.end_users.reactivate(id)` returns the answer; on
`AsyncClient` (`EndUsers[AsyncHttpCore]`) it is a coroutine function with the same arguments.
Arguments are checked when the call is made (on `AsyncClient`: when the coroutine runs), before
any I/O. mypy sees both: `__get__` is overloaded on the transport the resource was made with.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from typing import Any, Callable, Coroutine, Generic, TypeVar, Union, overload

from .._http import AsyncHttpCore, Call, HttpCore

if sys.version_info >= (3, 10):
    from typing import Concatenate, ParamSpec
else:  # pragma: no cover - typing_extensions comes with pydantic
    from typing_extensions import Concatenate, ParamSpec

Params = ParamSpec("Params")
ResultT = TypeVar("ResultT")
HttpT = TypeVar("HttpT", HttpCore, AsyncHttpCore)


class Resource(Generic[HttpT]):
    """A group of API calls (`client.end_users`, ...) bound to one client's transport."""

    def __init__(self, http: HttpT) -> None:
        self._http: HttpT = http


class endpoint(Generic[Params, ResultT]):
    """Turns a method that returns a `Call[R]` into a call that returns `R` (`Client`) or a
    coroutine function returning `R` (`AsyncClient`)."""

    def __init__(self, describe: Callable[Concatenate[Any, Params], Call[ResultT]]) -> None:
        self._describe = describe
        self.__doc__ = describe.__doc__
        self.__name__ = describe.__name__
        self._sync = _sync_method(describe)
        self._async = _async_method(describe)

    @overload
    def __get__(self, resource: None, owner: Any) -> endpoint[Params, ResultT]: ...

    @overload
    def __get__(self, resource: Resource[HttpCore], owner: Any) -> Callable[Params, ResultT]: ...

    @overload
    def __get__(
        self, resource: Resource[AsyncHttpCore], owner: Any
    ) -> Callable[Params, Coroutine[Any, Any, ResultT]]: ...

    def __get__(self, resource: Resource[Any] | None, owner: Any) -> Any:
        if resource is None:
            return self
        method = self._async if isinstance(resource._http, AsyncHttpCore) else self._sync
        return types.MethodType(method, resource)


def _sync_method(describe: Callable[..., Call[Any]]) -> Callable[..., Any]:
    @functools.wraps(describe)
    def run(resource: Resource[HttpCore], *args: Any, **kwargs: Any) -> Any:
        return resource._http.call(describe(resource, *args, **kwargs))

    return _with_result_signature(run, describe)


def _async_method(describe: Callable[..., Call[Any]]) -> Callable[..., Any]:
    @functools.wraps(describe)
    async def run(resource: Resource[AsyncHttpCore], *args: Any, **kwargs: Any) -> Any:
        return await resource._http.call(describe(resource, *args, **kwargs))

    return _with_result_signature(run, describe)


def _with_result_signature(
    run: Callable[..., Any], describe: Callable[..., Any]
) -> Callable[..., Any]:
    """`help()` and IDEs show the method's own arguments and its result type, not `Call[...]`."""
    signature = inspect.signature(describe)
    returns: Union[str, Any] = signature.return_annotation
    if isinstance(returns, str) and returns.startswith("Call[") and returns.endswith("]"):
        returns = returns[len("Call[") : -1]
    run.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
    return run
