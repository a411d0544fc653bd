"""JSON answers, error bodies and request ids."""

from __future__ import annotations

import itertools
import secrets
from typing import Any, Awaitable, Callable, Mapping

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response

from .errors import ApiError


class RequestIds:
    """`req_<random>_<counter>`: unique per server without a uuid per request."""

    def __init__(self) -> None:
        self._prefix = "req_" + secrets.token_hex(6) + "_"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


def json_response(status: int, body: Any, headers: Mapping[str, str]) -> Response:
    """`body` as JSON; `bytes` are JSON already (a handler that wrote its answer itself)."""
    content = body if type(body) is bytes else to_json(body)
    return Response(content, status, dict(headers), media_type="application/json")


def error_response(request_id: str, error: ApiError) -> Response:
    body: dict[str, Any] = {
        "type": error.kind,
        "message": error.message,
        "requestId": request_id,
        "param": error.param,
        **error.extra,
    }
    headers = {"X-Request-Id": request_id}
    if error.status == 429:
        headers["Retry-After"] = _seconds_text(body.get("retryAfter", 1))
    return json_response(error.status, {"error": body}, headers)


def unrouted_handlers(
    request_ids: RequestIds,
) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Starlette's answers to a path no route has (404) or a method the route lacks (405), in
    the contract's error body instead of Starlette's plain text."""

    async def unrouted(request: Request, exc: Exception) -> Response:
        method, path = request.method, request.url.path
        headers = getattr(exc, "headers", None) or {}
        if getattr(exc, "status_code", 404) == 405:
            allowed = headers.get("Allow", "")
            error = ApiError(
                405, "invalid_request", f"{method} is not allowed on {path} (allowed: {allowed})"
            )
        else:
            error = ApiError(404, "not_found", f"no route {method} {path} (docs/wire-api.md)")
        response = error_response(request_ids.next(), error)
        response.headers.update(headers)  # Allow, on a 405
        return response

    return {404: unrouted, 405: unrouted}


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
