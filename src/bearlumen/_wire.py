"""Pydantic models of the request bodies in docs/wire-api.md.

The local server validates what arrives with these models, and `usage.record_batch` validates the
caller's events with the same `UsageEventInput` before anything is sent, so the SDK and the server
cannot disagree about what a valid event is. Fields are snake_case in Python and camelCase on the
wire (`alias_generator`); both spellings validate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import to_json
from typing_extensions import Annotated

from . import _timestamps
from ._constants import MAX_BATCH_SIZE

# The limits of an event, in one place: `usage.record()` checks them at the call and the server
# checks them again, so an event the SDK accepts is never refused later for its content.
MAX_NAME_LENGTH = 255  # characters of a name, an id or an idempotency key
# Names and ids never hold NUL (C code downstream would cut the text there); lone surrogates
# cannot be UTF-8 at all and are refused everywhere.
NAME_PATTERN = r"^[^\x00]*$"
# Quantity: 0 to 2**53, int or float alike; above 2**53 a JSON number stops being exact.
MAX_QUANTITY = 2**53
# Metadata: a JSON object of at most this many bytes, as compact UTF-8 JSON written by
# pydantic_core.to_json (what the SDK sends and the server stores), ...
MAX_METADATA_BYTES = 16 * 1024
# ... nested at most this deep (the metadata object itself is depth 1).
MAX_METADATA_DEPTH = 32
COST_KEY = "provider_cost_usd"
MAX_EVENT_COST = 1e9  # dollars; keeps the stored nanodollars inside a 64-bit integer

Name = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN, strict=True)
]
OptionalName = Optional[Name]
EventTimestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Metadata = Optional[Dict[str, Any]]


def problem_text(param: str | None, message: str) -> str:
    """The text of an invalid request, client's and server's alike: `param: what is wrong`."""
    return f"{param}: {message}" if param else message


def validation_problem(exc: ValidationError, prefix: str = "") -> tuple[str | None, str]:
    """The first problem pydantic found, as (the field's path, what is wrong with it): the one
    reading of a pydantic error, for the client and the server. An error of the whole value
    (no location) names the field `prefix` names, or none."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    param = prefix + path if path else prefix.rstrip(".") or None
    if first["type"] == "missing":
        return param, "is required"
    if first["type"] == "extra_forbidden":
        return param, "is not a known field"
    return param, first["msg"].replace("Value error, ", "", 1)


class _WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


COST_RULE = f"must be a number from 0 to {MAX_EVENT_COST:g}"


def is_cost(value: Any) -> bool:
    """True when `value` can be the event's `provider_cost_usd` (money: finite, 0 to 1e9)."""
    return type(value) in (int, float) and 0 <= value <= MAX_EVENT_COST  # NaN compares False


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Reject metadata whose cost is not money."""
    if metadata is None:
        return None
    cost = metadata.get(COST_KEY)
    if cost is not None and not is_cost(cost):
        raise ValueError(f"metadata.{COST_KEY} {COST_RULE}")
    return metadata


def check_event_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Refuse an event's metadata whose cost is not money, nested too deep or too large as
    JSON: the server's rules, and record()'s (`_validation.metadata_snapshot`, which also
    refuses every value with no exact JSON form, naming its path)."""
    if metadata is None:
        return None
    check_metadata(metadata)
    if too_deep(metadata):
        raise ValueError(f"is nested more than {MAX_METADATA_DEPTH} levels deep")
    try:
        size = len(to_json(metadata))
    except ValueError:  # no JSON form (a set, an object): the client refuses it by its path
        return metadata  # (_validation.metadata_snapshot); JSON from the wire always has one
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"is {size} bytes as JSON, over the limit of {MAX_METADATA_BYTES}")
    return metadata


_CONTAINERS = (dict, list, tuple)


def too_deep(metadata: dict[str, Any]) -> bool:
    """True when a dict or list in `metadata` is nested deeper than MAX_METADATA_DEPTH (the
    metadata object itself is depth 1); a cycle is too deep. Level by level, bounded."""
    level: list[Any] = [metadata]
    for _ in range(MAX_METADATA_DEPTH):
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, _CONTAINERS)
        ]
        if not level:
            return False
    return True


# What a timestamp argument or field may be, and what a date filter or date field may be.
EVENT_TIME_RULE = "must be an RFC 3339 timestamp or a datetime"
DATE_RULE = "must be a date (2024-01-01), an RFC 3339 timestamp or a datetime"


def timestamp_text(value: Any, rule: str) -> str | None:
    """A timestamp or date's canonical text (`_timestamps.canonical`), None kept; anything else,
    or a time that is no moment of years 1 to 9999 in UTC, is ValueError(rule): the one check
    of every time the client takes and the server receives."""
    if value is None:
        return None
    if isinstance(value, (str, datetime)):
        try:
            return _timestamps.canonical(value)
        except ValueError:
            pass
    raise ValueError(rule)


class UsageEventInput(_WireModel):
    """One usage event, as `usage.record_batch` takes it and `POST /v1/usage/events` receives it."""

    event_type: Name
    metric_name: Name
    quantity: Annotated[float, Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False, strict=True)]
    idempotency_key: OptionalName = None
    # Always its canonical text once validated (`_timestamps`, as record() and the server's
    # fast path read it); the canonical text the SDK sends is kept as it is.
    timestamp: Optional[EventTimestamp] = None
    subscription_id: OptionalName = None
    end_user_id: OptionalName = None
    agent_id: OptionalName = None
    workflow_id: OptionalName = None
    metadata: Metadata = None

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity_as_given(cls, value: Any) -> Any:
        # Checked before it becomes a float: 2**53 + 1 would round to 2**53 and pass.
        if type(value) is int and not 0 <= value <= MAX_QUANTITY:
            raise ValueError(f"must be from 0 to 2**53 ({MAX_QUANTITY})")
        return value

    _timestamp = field_validator("timestamp", mode="before")(
        lambda cls, v: timestamp_text(v, EVENT_TIME_RULE)
    )
    _metadata = field_validator("metadata")(lambda cls, v: check_event_metadata(v))


class UsageBatch(_WireModel):
    """The envelope of `POST /v1/usage/events/batch`; events are validated one by one."""

    events: Annotated[List[Any], Field(min_length=1, max_length=MAX_BATCH_SIZE)]


Email = Annotated[
    str, Field(max_length=MAX_NAME_LENGTH, strict=True, json_schema_extra={"format": "email"})
]
# What a date parameter or field accepts: `2024-01-01` or an RFC 3339 timestamp.
DATE_OR_TIMESTAMP_SCHEMA: Dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
}
Timestamp = Annotated[str, Field(json_schema_extra=DATE_OR_TIMESTAMP_SCHEMA)]


class EndUserCreate(_WireModel):
    external_id: Name
    email: Optional[Email] = None
    name: OptionalName = None
    metadata: Metadata = None

    _metadata = field_validator("metadata")(lambda cls, v: check_metadata(v))


class EndUserUpdate(_WireModel):
    email: Optional[Email] = None
    name: OptionalName = None
    metadata: Metadata = None

    _metadata = field_validator("metadata")(lambda cls, v: check_metadata(v))


BillingCycle = Literal["monthly", "yearly"]


class SubscriptionCreate(_WireModel):
    organization_id: Name
    plan_id: Name
    billing_cycle: BillingCycle
    start_date: Timestamp
    end_user_id: OptionalName = None
    metadata: Metadata = None

    _start = field_validator("start_date", mode="before")(
        lambda cls, v: timestamp_text(v, DATE_RULE)
    )
    _metadata = field_validator("metadata")(lambda cls, v: check_metadata(v))


class SubscriptionUpdate(_WireModel):
    plan_id: OptionalName = None
    billing_cycle: Optional[BillingCycle] = None
    metadata: Metadata = None
    end_date: Optional[Timestamp] = None

    _end = field_validator("end_date", mode="before")(lambda cls, v: timestamp_text(v, DATE_RULE))
    _metadata = field_validator("metadata")(lambda cls, v: check_metadata(v))
