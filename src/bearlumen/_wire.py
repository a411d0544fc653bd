"""Pydantic models of the request bodies in docs/wire-api.md.

The local server validates what arrives with these models, and `usage.record_batch` validates the
caller's events with the same `UsageEvent` before anything is sent, so the SDK and the server
cannot disagree about what a valid event is. Fields are snake_case in Python and camelCase on the
wire (`alias_generator`); both spellings validate.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from itertools import repeat
from math import trunc
from operator import mul, sub
from typing import Any, Dict, List, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import to_json
from typing_extensions import Annotated

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
CanonicalTimestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z$",
        strict=True,
    ),
]
OptionalName = Optional[Name]
Metadata = Optional[Dict[str, Any]]


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
    """Reject metadata whose cost is not money. (Its size is checked where it is serialized.)"""
    if metadata is None:
        return None
    cost = metadata.get(COST_KEY)
    if cost is not None and not is_cost(cost):
        raise ValueError(f"metadata.{COST_KEY} {COST_RULE}")
    return metadata


def canonical_timestamp(value: str | datetime) -> str:
    """An RFC 3339 UTC timestamp with microseconds, so that stored times sort as strings."""
    if isinstance(value, str):
        if len(value) == 27 and value[10] == "T" and value[26] == "Z":
            # Already canonical (what the SDK sends): check it parses, keep it as it is.
            # fromisoformat is C and ~40x faster than strptime; 3.9 needs the offset spelled out.
            datetime.fromisoformat(value[:26] + "+00:00")
            return value
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    else:
        parsed = value
    return format_utc(parsed)


class UsageEvent(_WireModel):
    """One usage event, as `usage.record_batch` takes it and `POST /v1/usage/events` receives it."""

    event_type: Name
    metric_name: Name
    quantity: Annotated[float, Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False, strict=True)]
    idempotency_key: OptionalName = None
    # Checked in pydantic's core, no Python per event (this model validates 1000-event batches):
    # the canonical UTC text the SDK sends stays text; any other form is parsed as a datetime.
    timestamp: Optional[Union[CanonicalTimestamp, datetime]] = Field(
        default=None, union_mode="left_to_right"
    )
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

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_metadata(value)


class UsageBatch(_WireModel):
    """The envelope of `POST /v1/usage/events/batch`; events are validated one by one."""

    events: Annotated[List[Any], Field(min_length=1, max_length=MAX_BATCH_SIZE)]


# The two timestamp formatters (one for datetimes, one for time.time() seconds); both write the
# canonical form `2024-01-01T12:00:00.000000Z`, so stored times sort as strings.


def format_utc(moment: datetime) -> str:
    """The canonical text of a datetime (naive means UTC)."""
    if moment.tzinfo is None:
        pass
    elif moment.utcoffset():
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    else:
        moment = moment.replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


# (whole second, its text up to the fraction): one immutable pair, replaced in one assignment,
# so a thread never pairs one second's number with another second's text. The first holds a
# second no real time has.
_last_second: tuple[int, str] = (-(2**63), "")
# The fraction's six digits as two table lookups: `:06d` parses a format spec on every call
# and was most of the worker's cost per event (benchmarks/worker_cost.py). Index 1000 is there
# for a fraction that rounds up to 1_000_000 (written `1000000`, as `:06d` writes it).
THREE_DIGITS = tuple(f"{number:03d}" for number in range(1001))


def second_text(whole: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.` of a whole second since the epoch; the last one is cached."""
    global _last_second
    cached = _last_second
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)))
        _last_second = cached
    return cached[1]


def format_epoch(seconds: float) -> str:
    """The canonical text of a `time.time()` value; the date part is cached per second."""
    whole = int(seconds)
    cached = _last_second
    text = cached[1] if cached[0] == whole else second_text(whole)
    micros = int((seconds - whole) * 1_000_000)
    if micros < 0:  # before 1970, never from time.time(): the table has no negatives
        return f"{text}{micros:06d}Z"
    return f"{text}{THREE_DIGITS[micros // 1000]}{THREE_DIGITS[micros % 1000]}Z"


# `epoch_texts`: the canonical texts of a column of time.time() values, with no Python per
# event. Its shortcut is exact only from 2**30 s (2004) to 1e10 s (2286): there a float's
# fraction has at most 22 bits, so `(seconds - base) * 1e6` is never within rounding error of a
# whole microsecond it is not, and it truncates to the digits `format_epoch` writes.
_EPOCH_EXACT_FROM = float(2**30)
_EPOCH_EXACT_BELOW = 1e10
_SECONDS_OFFSET = 10  # the microsecond counts start at 10 s: every one has 8 digits ...
_MAX_SECONDS_SPAN = 89  # ... until 100 s, so its first two digits name its second


def epoch_texts(stamps: Sequence[float]) -> list[bytes] | None:
    """`format_epoch` of each value (exact floats all), as ASCII bytes; None where the shortcut
    is not exact.

    The microseconds since a base second are counted with three `map`s and written by
    `to_json` (C and Rust, no Python per value), as `10123456`: the first two digits say which
    second of the batch, and one `str.replace` per second turns them into that second's date
    part (`second_text`). The worker encodes every event's timestamp this way
    (benchmarks/worker_cost.py: about half the cost of formatting them one by one).
    """
    low, high = min(stamps), max(stamps)
    if not (low >= _EPOCH_EXACT_FROM and high < _EPOCH_EXACT_BELOW):  # NaN fails too
        return None
    first = int(low)
    if int(high) - first > _MAX_SECONDS_SPAN:
        return None
    base = first - _SECONDS_OFFSET
    # Exact: `seconds - base` loses nothing (the two are within a factor of two), and the
    # product truncates as `int((seconds - whole) * 1e6)` does (see the comment above).
    # (math.trunc is int() for a float, without int's look at its argument's type: half the
    # time of that map)
    micros = map(trunc, map(mul, map(sub, stamps, repeat(float(base))), repeat(1e6)))
    # "," + each count: the comma marks where a count starts. Each replacement writes "\x00"
    # (never in the counts, nor in a date) there instead, so none is replaced twice.
    text = b"," + to_json(list(micros))[1:-1]
    for offset in range(_SECONDS_OFFSET, _SECONDS_OFFSET + int(high) - first + 1):
        text = text.replace(b",%d" % offset, b"\x00" + second_text(base + offset).encode())
    texts = text.split(b"\x00")
    if len(texts) != len(stamps) + 1:  # a guard: every count was given its second
        return None
    del texts[0]  # the empty text before the first count
    return texts


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


def _timestamp_field(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (str, datetime)):
        raise ValueError("must be an RFC 3339 timestamp or a date")
    try:
        return canonical_timestamp(value)
    except (ValueError, OverflowError):  # OverflowError: outside years 1-9999 once in UTC
        raise ValueError("is not an RFC 3339 timestamp or a date") from None


class SubscriptionCreate(_WireModel):
    organization_id: Name
    plan_id: Name
    billing_cycle: BillingCycle
    start_date: Timestamp
    end_user_id: OptionalName = None
    metadata: Metadata = None

    _start = field_validator("start_date", mode="before")(lambda cls, v: _timestamp_field(v))
    _metadata = field_validator("metadata")(lambda cls, v: check_metadata(v))


class SubscriptionUpdate(_WireModel):
    plan_id: OptionalName = None
    billing_cycle: Optional[BillingCycle] = None
    metadata: Metadata = None
    end_date: Optional[Timestamp] = None

    _end = field_validator("end_date", mode="before")(lambda cls, v: _timestamp_field(v))
    _metadata = field_validator("metadata")(lambda cls, v: check_metadata(v))
