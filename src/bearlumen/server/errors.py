"""`ApiError`: every answer other than success, raised wherever the request goes wrong."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    """An answer other than success; becomes the contract's error body."""

    def __init__(
        self, status: int, kind: str, message: str, param: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.param, self.extra = (
            status,
            kind,
            message,
            param,
            extra,
        )


def invalid(message: str, param: str | None = None) -> ApiError:
    """A 400 `invalid_request` naming the field (`param`) that made it."""
    return ApiError(400, "invalid_request", message, param)


def from_validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """The first error pydantic found, as a 400 that names its field."""
    first = exc.errors(include_url=False)[0]
    param = prefix + ".".join(str(p) for p in first["loc"]) if first["loc"] else prefix or None
    if first["type"] == "missing":
        message = f"{param} is required"
    elif first["type"] == "extra_forbidden":
        message = f"{param} is not a known field"
    else:
        message = f"{param}: {first['msg']}" if param else first["msg"]
    return invalid(message, param.rstrip(".") if param else None)


def validate(model: Any, body: Any) -> Any:
    """`model.model_validate(body)`, failing as an `ApiError`."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
