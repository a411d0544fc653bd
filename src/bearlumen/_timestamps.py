"""Timestamps: their one canonical text, every way to it, and their one range.

The canonical text is RFC 3339 in UTC with microseconds, `2024-01-01T12:00:00.000000Z`: stored
times sort as strings, and the SDK sends nothing else. The client (`usage.record()`, every date
argument), the wire models and the local server all parse and write times here, so what one
accepts the other accepts, and a time that is no moment of years 1 to 9999 in UTC is a
`ValueError` everywhere (never an `OverflowError`: `0001-01-01T00:00:00+01:00` is in year 0 in
UTC), which each caller turns into its own "invalid request" naming the field.

- parse: `canonical(value)` (RFC 3339 text, a date, or a datetime), `is_canonical(text)`
- format: `format_utc(datetime)`, `format_epoch(seconds)`, `now()`; for the worker's batches
  `epoch_texts(seconds...)`, and the pieces it and the batch writer share (`second_text`,
  `THREE_DIGITS`)
- range: `in_order(start, end)` for a pair of canonical texts
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from itertools import repeat
from math import trunc
from operator import mul, sub
from typing import Any, Sequence

from pydantic_core import to_json

# The canonical text. ASCII digits only: a Unicode digit (which `\d` admits) is not canonical.
CANONICAL_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z$"
)
_CANONICAL = re.compile(CANONICAL_PATTERN, re.ASCII)


def is_canonical(text: str) -> bool:
    """True when `text` is the canonical text of a real moment (the pattern admits 2024-02-30)."""
    if _CANONICAL.fullmatch(text) is None:
        return False
    try:
        # fromisoformat is C and ~40x faster than strptime; 3.9 needs the offset spelled out.
        datetime.fromisoformat(text[:26] + "+00:00")
    except ValueError:
        return False
    return True


# RFC 3339's date-time (T, t or a space between date and time; Z, z or an offset, with or
# without its colon; seconds and their fraction optional, any number of fraction digits), or a
# date alone. Read by this pattern, not by `datetime.fromisoformat`, which reads more on each
# newer Python (3.11: week dates, "20240101T1200"; 3.9: a fraction of 3 or 6 digits only), so
# that one text is accepted or refused alike on every Python this package runs on.
_MOMENT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?",
    re.ASCII,
)


def parse(text: str) -> datetime:
    """The moment RFC 3339 text (or a date alone, its midnight) names; naive when it has no
    offset. ValueError when it is not such text or names no real moment."""
    found = _MOMENT.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time (2024-01-01T12:00:00Z) or a date")
    year, month, day, hour, minute, second, fraction, utc, sign, off_h, off_m = found.groups()
    zone = None
    if utc is not None:
        zone = timezone.utc
    elif sign is not None:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        zone = timezone(-offset if sign == "-" else offset)  # ValueError from 24:00 on
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "")[:6].ljust(6, "0")),  # beyond microseconds: cut, as 3.11 cuts
        zone,
    )


def canonical(value: Any) -> str:
    """The canonical text of RFC 3339 / ISO 8601 text (a date alone means its midnight, UTC)
    or of a datetime (naive means UTC); ValueError when it is neither, or no moment of years 1
    to 9999 in UTC."""
    if isinstance(value, str):
        if len(value) == 27 and is_canonical(value):  # what the SDK sends: kept as it is
            return value
        moment = parse(value)
    elif isinstance(value, datetime):
        moment = value
    else:
        raise ValueError(f"a {type(value).__name__} is not a timestamp")
    return format_utc(moment)


def in_order(start: str | None, end: str | None) -> bool:
    """False only when both canonical texts are given and `end` is before `start`."""
    return start is None or end is None or start <= end


# -- writing ------------------------------------------------------------------------------


def format_utc(moment: datetime) -> str:
    """The canonical text of a datetime (naive means UTC); ValueError outside years 1-9999 UTC."""
    if moment.tzinfo is None:
        pass
    elif moment.utcoffset():
        try:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"{moment} is outside years 1 to 9999 in UTC") from None
    else:
        moment = moment.replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def now() -> str:
    """The canonical text of this moment (what the server stamps an event received without
    one, and every row it writes)."""
    return format_utc(datetime.now(timezone.utc))


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
    """`format_epoch` of each value (exact floats all), as ASCII bytes without the final `Z`;
    None where the shortcut is not exact.

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
