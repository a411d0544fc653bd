"""Checks on the caller's arguments, so bad input fails at the call that made it, typed and
naming the field, before anything is queued or sent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from ._errors import InvalidRequestError
from ._wire import canonical_timestamp, format_utc

Model = TypeVar("Model", bound=BaseModel)


def invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidRequestError:
    """The first problem pydantic found, as an `InvalidRequestError` naming the field."""
    first = exc.errors(include_url=False)[0]
    param = prefix + ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return invalid(param, "is required")
    if first["type"] == "extra_forbidden":
        return invalid(param, "is not a known field")
    return invalid(param, first["msg"])


def validated(model: type[Model], fields: dict[str, Any]) -> dict[str, Any]:
    """Validate snake_case arguments with a wire model; return the camelCase body to send."""
    try:
        instance = model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return instance.model_dump(by_alias=True, exclude_unset=True)


def path_id(param: str, value: Any) -> str:
    """An id for a URL path, escaped so that no id can reach another route."""
    if not isinstance(value, str) or not value:
        raise invalid(param, "must be a non-empty string")
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:
        raise invalid(param, "must be valid Unicode text (no lone surrogates)") from None


def optional_text(param: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(param, "must be a non-empty string")
    return value


def optional_int(param: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise invalid(param, f"must be an integer from {low} to {high}")
    return value


def date_param(param: str, value: Any, *, required: bool = False) -> str | None:
    """A date filter as the wire takes it: `2024-01-01` or an RFC 3339 timestamp."""
    if value is None:
        if required:
            raise invalid(param, "is required")
        return None
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value:
        try:
            canonical_timestamp(value)  # only to check it: the server reads the caller's form
        except ValueError:
            raise invalid(param, "must be a date (2024-01-01) or an RFC 3339 timestamp") from None
        return value
    raise invalid(param, "must be a date, a datetime or an ISO 8601 string")
