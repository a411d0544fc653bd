"""JSON answers, error bodies and request ids."""

from __future__ import annotations

import itertools
import secrets
from typing import Any, Mapping

from pydantic_core import to_json
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


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
