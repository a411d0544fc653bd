"""The exceptions bearlumen raises, all in one place.

    BearLumenError                   every error the SDK raises
    ├── InvalidRequestError          400 / 413 / 422 `invalid_request`, or bad input caught locally
    │   └── InvalidEmailError        400 `invalid_email`
    ├── DuplicateCustomerError       409 `duplicate_customer`
    ├── AuthenticationError          401, or no API key at all
    ├── NotFoundError                404, including another tenant's ids
    ├── RateLimitError               429 after the retries; `retry_after` in seconds
    ├── ServerError                  5xx (and 408 / 409 `conflict_retry`) after the retries
    ├── NetworkError                 no answer: refused, reset, timed out; the cause is chained
    └── SpoolLockedError             deprecated, never raised: processes share a `spool_dir`;
                                     it exists for code written for 0.1.0 that catches it
                                     (`bearlumen.SpoolLockedError` resolves, with a
                                     DeprecationWarning, and is not in `__all__`)

Every exception carries `message`, `status_code` (None when no answer came back), `request_id`
and the raw `body` where one came back. `error_from_response` is the one function that turns an
HTTP answer into one of these; nothing else in the package maps status codes.
"""

from __future__ import annotations

from typing import Any, Mapping

import httpx

__all__ = [
    "AuthenticationError",
    "BearLumenError",
    "DuplicateCustomerError",
    "InvalidEmailError",
    "InvalidRequestError",
    "NetworkError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "SpoolLockedError",
    "error_from_response",
    "is_retryable",
    "parse_retry_after",
]


class BearLumenError(Exception):
    """Base class of every error bearlumen raises."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # The server's Retry-After on any retryable answer: a floor for the next wait.
        self.retry_after = retry_after
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.param = param

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request_id={self.request_id})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code!r})"


class InvalidRequestError(BearLumenError):
    """Request parameters are invalid; `param` names the offending field where known."""


class InvalidEmailError(InvalidRequestError):
    """Email format is invalid."""


class DuplicateCustomerError(BearLumenError):
    """An end user with this external ID already exists."""


class AuthenticationError(BearLumenError):
    """API key is invalid or missing."""


class NotFoundError(BearLumenError):
    """Requested resource does not exist (or belongs to another API key)."""


class RateLimitError(BearLumenError):
    """Too many requests; `retry_after` is how long the server asked us to wait, in seconds."""


class ServerError(BearLumenError):
    """The server failed (5xx) or asked for a retry, and the retries ran out."""


class NetworkError(BearLumenError):
    """No answer came back: connection refused or reset, DNS failure, timeout."""


class SpoolLockedError(BearLumenError):
    """Deprecated and never raised: processes share a `spool_dir`, each in its own part, so
    none is refused one. It exists so that code written for 0.1.0, which raised it when a
    second process opened a `spool_dir`, runs unchanged; it will be removed."""


# Statuses worth another try; 409 only with `conflict_retry` (see `is_retryable`).
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """True for the failures the contract says to retry: network errors and transient statuses."""
    if isinstance(exc, NetworkError):
        return True
    if not isinstance(exc, BearLumenError) or exc.status_code is None:
        return False
    if exc.status_code == 409:
        return _error_type(exc.body) == "conflict_retry"
    return exc.status_code in _RETRYABLE_STATUSES


def _error_type(body: Any) -> str | None:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            kind = error.get("type")
            return kind if isinstance(kind, str) else None
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds form); None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def error_from_response(response: httpx.Response) -> BearLumenError:
    """Build the exception the contract's status table names for an error answer."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text or None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    status = response.status_code
    kind = error.get("type")
    message = error.get("message") or f"HTTP {status} from {response.request.url.path}"
    param = error.get("param") if isinstance(error.get("param"), str) else None
    request_id = error.get("requestId") or response.headers.get("x-request-id")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None and status == 429:
        raw = error.get("retryAfter")
        retry_after = float(raw) if isinstance(raw, (int, float)) and raw >= 0 else None
    fields: dict[str, Any] = {
        "status_code": status,
        "request_id": request_id,
        "body": body,
        "param": param,
        "retry_after": retry_after,
    }
    if status == 429:
        return RateLimitError(message, **fields)
    if status == 401:
        return AuthenticationError(message, **fields)
    if status == 404:
        return NotFoundError(message, **fields)
    if status == 409 and kind == "duplicate_customer":
        return DuplicateCustomerError(message, **fields)
    if kind == "invalid_email":
        return InvalidEmailError(message, **fields)
    if status in (400, 413, 422):
        return InvalidRequestError(message, **fields)
    if status >= 500 or status in (408, 409):
        return ServerError(message, **fields)
    return BearLumenError(message, **fields)
