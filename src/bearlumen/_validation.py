"""Checks on the caller's arguments, so bad input fails at the call that made it, typed and
naming the field, before anything is queued or sent.

The limits themselves live in `_wire.py`, which the local server imports too: what
`usage.record()` accepts here, the server accepts (tests/test_validation.py, and the property
in tests/test_properties.py).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from ._constants import MAX_OFFSET, MAX_PAGE_SIZE
from ._errors import InvalidRequestError
from ._events import SMALL_METADATA, SizedMetadata
from ._timestamps import in_order
from ._wire import (
    COST_KEY,
    COST_RULE,
    DATE_RULE,
    EVENT_TIME_RULE,
    MAX_EVENT_COST,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_NAME_LENGTH,
    MAX_QUANTITY,
    is_cost,
    problem_text,
    timestamp_text,
    validation_problem,
)

Model = TypeVar("Model", bound=BaseModel)

NAME_RULE = f"must be a non-empty string of at most {MAX_NAME_LENGTH} characters"
QUANTITY_RULE = "must be an int or a float from 0 to 2**53 (9007199254740992)"


def invalid(param: str | None, message: str) -> InvalidRequestError:
    """An InvalidRequestError naming the argument (`param`) and what is wrong with it."""
    return InvalidRequestError(problem_text(param, message), param=param)


# -- usage.record(): the hot path ------------------------------------------------------------
# Plain type checks, no pydantic, no allocation beyond the metadata snapshot.


def check_event(
    event_type: Any,
    metric_name: Any,
    quantity: Any,
    idempotency_key: Any,
    subscription_id: Any,
    end_user_id: Any,
    agent_id: Any,
    workflow_id: Any,
) -> bool:
    """Raise InvalidRequestError naming the first argument of `usage.record` the server would
    refuse (metadata and timestamp apart: `metadata_snapshot`, `timestamp`).

    True when a name or the key is a str subclass (a str-valued enum member): valid, but to be
    queued as its text (`exact_texts`), so that the queue holds exact str only.
    """
    checked = _CHECKED_NAMES
    subclassed = False
    # A str seen before costs one lookup; anything else, the full check (_check_name). Only
    # exact str is looked up: an object merely equal to a remembered name (a UserString, a str
    # subclass with its own __eq__) must not pass for it.
    if type(event_type) is not str or event_type not in checked:
        subclassed |= _check_name("event_type", event_type)
    if type(metric_name) is not str or metric_name not in checked:
        subclassed |= _check_name("metric_name", metric_name)
    kind = type(quantity)
    if (kind is not int and kind is not float) or not 0 <= quantity <= MAX_QUANTITY:
        _check_quantity(quantity)
    # The caller's key is new at every call: the full check, inline, never remembered.
    if idempotency_key is not None and (
        type(idempotency_key) is not str
        or not 0 < len(idempotency_key) <= MAX_NAME_LENGTH
        or "\x00" in idempotency_key
        or not idempotency_key.isascii()
    ):
        subclassed |= _check_name("idempotency_key", idempotency_key, remember=False)
    if subscription_id is not None and (
        type(subscription_id) is not str or subscription_id not in checked
    ):
        subclassed |= _check_name("subscription_id", subscription_id)
    if end_user_id is not None and (type(end_user_id) is not str or end_user_id not in checked):
        subclassed |= _check_name("end_user_id", end_user_id)
    if agent_id is not None and (type(agent_id) is not str or agent_id not in checked):
        subclassed |= _check_name("agent_id", agent_id)
    if workflow_id is not None and (type(workflow_id) is not str or workflow_id not in checked):
        subclassed |= _check_name("workflow_id", workflow_id)
    return subclassed


def _check_quantity(quantity: Any) -> None:
    kind = type(quantity)
    if kind is not int and kind is not float:  # bool is a type of its own: refused too
        raise invalid("quantity", f"{QUANTITY_RULE}, not {kind.__name__}")
    if not 0 <= quantity <= MAX_QUANTITY:  # also False for NaN
        raise invalid("quantity", QUANTITY_RULE)


# Names that passed `_check_name`: event types, metric names and ids repeat from call to call,
# and a dict lookup (the string's hash is cached in it) is a fraction of the checks. Bounded:
# emptied when full, so ids of high cardinality cost the full check and no memory.
_CHECKED_NAMES: dict[str, None] = {}
_CHECKED_NAMES_MAX = 4096


def _check_name(param: str, value: Any, *, remember: bool = True) -> bool:
    """The full check of one name: text of 1 to 255 characters, no NUL, no lone surrogate.

    A str subclass (a str-valued enum member) is text too, and goes as its text; it is checked
    in full every time, and only an exact str is remembered (`_CHECKED_NAMES`). Returns
    whether `value` is such a subclass.
    """
    if (
        not isinstance(value, str)
        or type(value).__hash__ is None  # a subclass that cannot be a key of the queue
        or not 0 < len(value) <= MAX_NAME_LENGTH
    ):
        raise invalid(param, NAME_RULE)
    if "\x00" in value or not value.isascii():
        _check_text(param, value)
    if type(value) is not str:
        return True
    if remember:
        if len(_CHECKED_NAMES) >= _CHECKED_NAMES_MAX:
            _CHECKED_NAMES.clear()
        _CHECKED_NAMES[value] = None
    return False


def exact_texts(*names: Any) -> tuple[Any, ...]:
    """Each name (or None) as an exact str: a subclass's text, which is what goes on the wire.

    The batch writer (`_batch_codec.batch_body`) finds a name repeated through a batch by
    equality, which a subclass may define as it likes; the queue only ever holds exact str.
    """
    return tuple(name if name is None or type(name) is str else str.__str__(name) for name in names)


def _check_text(param: str, value: str) -> None:
    """The slow half of a name's check: non-ASCII text is fine unless it has a lone surrogate."""
    if "\x00" in value:
        raise invalid(param, "must not contain NUL (\\x00)")
    if not _is_utf8(value):
        raise invalid(param, "must be valid Unicode text (no lone surrogates)")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def metadata_snapshot(metadata: Any, param: str = "metadata") -> dict[str, Any]:
    """A copy of the caller's metadata, checked as the server would check it.

    What is billed is what was passed at the call: the queue holds this copy, never the
    caller's dict, so a dict reused or changed after `record()` returns changes nothing.

    Small flat metadata of ASCII strings, finite floats, ints, bools and None (the usual case)
    is copied with one `dict.copy()` and bounded by lengths; anything else (nested, large,
    non-ASCII, other types) takes `_exact_snapshot`: a deep copy that checks every value, then
    the exact JSON size.
    """
    if type(metadata) is dict:
        snapshot = metadata.copy()
        # Keys repeat from call to call: when all were seen before, one pass in C over a set
        # (which compares by equality: the loop below checks that each key is an exact str).
        if len(snapshot) > _FAST_ITEMS or not (
            _CHECKED_KEYS.issuperset(snapshot) or _remember_keys(snapshot)
        ):
            return _exact_snapshot(metadata, param)
        # One pass, a few bytecodes per item: most of this function's cost. A key must be an
        # exact str: an object merely equal to a remembered key must not pass for it. Anything
        # unusual leaves for the exact path.
        chars = 0
        for key, value in snapshot.items():
            if type(key) is not str:
                return _exact_snapshot(metadata, param)
            kind = type(value)
            if kind is str:
                if not value.isascii():  # a flag, not a scan; only non-ASCII can hold a surrogate
                    return _exact_snapshot(metadata, param)
                chars += len(value)
            elif kind is float:
                if value - value:  # NaN or Infinity (finite: 0.0)
                    return _exact_snapshot(metadata, param)
            elif kind is int:
                if not -_INT64 <= value < _INT64:  # a long int: let the exact path size it
                    return _exact_snapshot(metadata, param)
            elif kind is not bool and value is not None:
                return _exact_snapshot(metadata, param)
        if chars <= _SMALL_VALUES:
            cost = snapshot.get(COST_KEY)
            # _wire.is_cost, inlined (a call is a tenth of this function's time)
            if cost is not None and not (
                (type(cost) is float or type(cost) is int) and 0 <= cost <= MAX_EVENT_COST
            ):
                raise invalid(f"{param}.{COST_KEY}", COST_RULE)
            return snapshot
    return _exact_snapshot(metadata, param)


def _remember_keys(snapshot: dict[Any, Any]) -> bool:
    """True when every key is short ASCII text (remembered, so the next snapshot with these keys
    skips this loop); False: take the exact path."""
    for key in snapshot:
        if type(key) is not str or len(key) > _SHORT_KEY or not key.isascii():
            return False
    if len(_CHECKED_KEYS) >= _CHECKED_NAMES_MAX:
        _CHECKED_KEYS.clear()
    _CHECKED_KEYS.update(snapshot)
    return True


# Metadata keys that passed `_remember_keys`; bounded like _CHECKED_NAMES.
_CHECKED_KEYS: set[str] = set()
_FAST_ITEMS = 16
_SHORT_KEY = 32
_SMALL_VALUES = 512
_INT64 = 2**63
# The fast path's bound, without encoding: its keys and string values fit in SMALL_METADATA
# characters, each at most 6 bytes of JSON escaped, plus 30 for a number (at most 24), quotes,
# colon and comma per item; far under the server's limit.
assert _FAST_ITEMS * _SHORT_KEY + _SMALL_VALUES <= SMALL_METADATA
assert 6 * SMALL_METADATA + 30 * _FAST_ITEMS < MAX_METADATA_BYTES


def _exact_snapshot(metadata: Any, param: str) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise invalid(param, f"must be a dict, not {type(metadata).__name__}")
    try:
        snapshot: dict[str, Any] = _json_copy(metadata, 1)
    except _NotJson as exc:
        raise invalid(param + "".join(reversed(exc.where)), exc.reason) from None
    size = len(to_json(snapshot))  # cannot fail: the copy holds only JSON values
    if size > MAX_METADATA_BYTES:
        raise invalid(param, f"is {size} bytes as JSON, over the limit of {MAX_METADATA_BYTES}")
    cost = snapshot.get(COST_KEY)
    if cost is not None and not is_cost(cost):
        raise invalid(f"{param}.{COST_KEY}", COST_RULE)
    return SizedMetadata(snapshot, size) if size > SMALL_METADATA else snapshot


class _NotJson(Exception):
    """A value with no exact JSON form; `where` collects its path on the way out."""

    def __init__(self, reason: str, where: str = "") -> None:
        self.reason = reason
        self.where = [where] if where else []


_NOT_JSON = (
    "has no exact JSON form: pass a str, int, float, bool, None, list or dict"
    " (for a datetime its isoformat(), for a Decimal str() or float(), as you mean it)"
)


def _json_copy(value: Any, depth: int) -> Any:
    """A deep copy made only of JSON values, or _NotJson for the first value that is not one.

    Nothing changes form silently: a datetime, a Decimal, a set, bytes, an enum member or a
    numpy scalar is refused (the caller decides its text), never converted. A tuple becomes a
    list: JSON has one kind of array (docs/configuration.md).
    """
    kind = type(value)
    if kind is str:
        if not value.isascii() and not _is_utf8(value):
            raise _NotJson("must be valid Unicode text (no lone surrogates)")
        return value
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if value - value != 0.0:
            raise _NotJson("must be a finite number (NaN and Infinity are not JSON)")
        return value
    is_array = kind is list or kind is tuple
    if not is_array and not isinstance(value, dict):
        raise _NotJson(f"is a {kind.__name__}: it {_NOT_JSON}")
    if depth > MAX_METADATA_DEPTH:
        raise _NotJson(f"is nested more than {MAX_METADATA_DEPTH} levels deep")
    if is_array:
        copied = []
        for index, item in enumerate(value):
            try:
                copied.append(_json_copy(item, depth + 1))
            except _NotJson as exc:
                exc.where.append(f"[{index}]")
                raise
        return copied
    copy = {}
    for key, item in list(value.items()):
        if type(key) is not str:
            raise _NotJson("keys must be strings", f"[{key!r}]")
        if not key.isascii() and not _is_utf8(key):
            raise _NotJson(f"key {key!r} is not valid Unicode text (a lone surrogate)")
        try:
            copy[key] = _json_copy(item, depth + 1)
        except _NotJson as exc:
            exc.where.append(f".{key}")
            raise
    return copy


def event_timestamp(value: Any) -> str:
    """An event's timestamp (RFC 3339 text or a datetime) in the canonical form."""
    return cast(str, _timestamp_arg("timestamp", value, EVENT_TIME_RULE))  # value is not None


def _timestamp_arg(param: str, value: Any, rule: str) -> str | None:
    """`_wire.timestamp_text`, its ValueError an InvalidRequestError naming `param`: the one
    way every time argument of the client (record's, every query's) is read."""
    try:
        return timestamp_text(value, rule)
    except ValueError as exc:
        raise invalid(param, str(exc)) from None


# -- the synchronous calls -------------------------------------------------------------------


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidRequestError:
    """The first problem pydantic found, as an `InvalidRequestError` naming the field."""
    return invalid(*validation_problem(exc, prefix))


def validated(model: type[Model], fields: dict[str, Any]) -> dict[str, Any]:
    """Validate snake_case arguments with a wire model; return the camelCase body to send."""
    try:
        given = {k: v for k, v in fields.items() if v is not None}
        # By name: a required argument passed as None is named as the caller wrote it.
        instance = model.model_validate(given, by_name=True, by_alias=False)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return instance.model_dump(by_alias=True, exclude_unset=True)


def path_id(param: str, value: Any) -> str:
    """An id for a URL path, escaped so that no id can reach another route."""
    if not isinstance(value, str) or not value:
        raise invalid(param, "must be a non-empty string")
    if value in (".", ".."):  # a dot segment: the URL would resolve to another route
        raise invalid(param, "must not be '.' or '..'")
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


def page(limit: Any, offset: Any) -> dict[str, int | None]:
    """A list's `limit` and `offset` (docs/wire-api.md), checked as the server checks them."""
    return {
        "limit": optional_int("limit", limit, 1, MAX_PAGE_SIZE),
        "offset": optional_int("offset", offset, 0, MAX_OFFSET),
    }


def optional_int(param: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise invalid(param, f"must be an integer from {low} to {high}")
    return value


def date_range(start_date: Any, end_date: Any, *, required: bool = False) -> dict[str, Any]:
    """The `startDate` and `endDate` of a query, each a date (`2024-01-01`), an RFC 3339
    timestamp or a datetime, sent as canonical text; `end_date` must not be before
    `start_date`."""
    start = _date_param("start_date", start_date, required)
    end = _date_param("end_date", end_date, required)
    if not in_order(start, end):
        raise invalid("end_date", "must not be before start_date")
    return {"startDate": start, "endDate": end}


def _date_param(param: str, value: Any, required: bool) -> str | None:
    if value is None and required:
        raise invalid(param, "is required")
    if isinstance(value, date) and not isinstance(value, datetime):
        value = value.isoformat()  # a date alone: its midnight, UTC
    return _timestamp_arg(param, value, DATE_RULE)
