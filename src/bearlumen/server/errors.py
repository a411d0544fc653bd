"""`ApiError`: every answer other than success, raised wherever the request goes wrong."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .._wire import problem_text, validation_problem


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


def invalid(param: str | None, message: str) -> ApiError:
    """A 400 `invalid_request` naming the field (`param`) and what is wrong with it, in the
    words the client uses (`_validation.invalid`)."""
    return ApiError(400, "invalid_request", problem_text(param, message), param)


def from_validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """The first error pydantic found, as a 400 that names its field."""
    return invalid(*validation_problem(exc, prefix))


def validate(model: Any, body: Any) -> Any:
    """`model.model_validate(body)`, failing as an `ApiError`."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
