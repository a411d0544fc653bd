"""`Call`: what a handler sees of one request, and the checks of its query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .._timestamps import in_order
from .._wire import DATE_RULE, timestamp_text
from .errors import invalid


@dataclass
class Call:
    """What a handler sees of one request."""

    tenant: int
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any

    def json_object(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise invalid("The request body must be a JSON object")
        return self.body

    def limit_offset(self) -> tuple[int, int]:
        return (
            self.query_int("limit", default=100, low=1, high=1000),
            self.query_int("offset", default=0, low=0, high=2**62),
        )

    def query_int(self, name: str, *, default: int, low: int, high: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise invalid(f"{name} must be an integer", name) from None
        if not low <= value <= high:
            raise invalid(f"{name} must be between {low} and {high}", name)
        return value

    def query_date(self, name: str, *, required: bool = False) -> str | None:
        raw = self.query.get(name)
        if raw is None:
            if required:
                raise invalid(f"{name} is required", name)
            return None
        try:
            return timestamp_text(raw, DATE_RULE)
        except ValueError as exc:
            raise invalid(f"{name} {exc}", name) from None

    def query_text(self, name: str) -> str | None:
        raw = self.query.get(name)
        if raw is not None and len(raw) > 255:
            raise invalid(f"{name} is longer than 255 characters", name)
        return raw or None

    def date_range(self, *, required: bool) -> tuple[str | None, str | None]:
        start = self.query_date("startDate", required=required)
        end = self.query_date("endDate", required=required)
        if not in_order(start, end):
            raise invalid("endDate must not be before startDate", "endDate")
        return start, end
