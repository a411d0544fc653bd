"""`ApiRequest`: what a handler sees of one request, and the checks of its query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .._constants import DEFAULT_PAGE_SIZE, MAX_OFFSET, MAX_PAGE_SIZE
from .._timestamps import in_order
from .._wire import DATE_RULE, MAX_NAME_LENGTH, timestamp_text
from .errors import invalid


@dataclass
class ApiRequest:
    """What a handler sees of one request."""

    tenant: int
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any

    def json_object(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise invalid(None, "The request body must be a JSON object")
        return self.body

    def limit_offset(self) -> tuple[int, int]:
        return (
            self.query_int("limit", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
            self.query_int("offset", default=0, low=0, high=MAX_OFFSET),
        )

    def query_int(self, name: str, *, default: int, low: int, high: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise invalid(name, "must be an integer") from None
        if not low <= value <= high:
            raise invalid(name, f"must be an integer from {low} to {high}")
        return value

    def query_date(self, name: str, *, required: bool = False) -> str | None:
        raw = self.query.get(name)
        if raw is None:
            if required:
                raise invalid(name, "is required")
            return None
        try:
            return timestamp_text(raw, DATE_RULE)
        except ValueError as exc:
            raise invalid(name, str(exc)) from None

    def query_text(self, name: str) -> str | None:
        raw = self.query.get(name)
        if raw is not None and len(raw) > MAX_NAME_LENGTH:
            raise invalid(name, f"is longer than {MAX_NAME_LENGTH} characters")
        return raw or None

    def date_range(self, *, required: bool) -> tuple[str | None, str | None]:
        start = self.query_date("startDate", required=required)
        end = self.query_date("endDate", required=required)
        if not in_order(start, end):
            raise invalid("endDate", "must not be before startDate")
        return start, end
