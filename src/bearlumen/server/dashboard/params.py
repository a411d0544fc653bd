"""A page's query string read (forgivingly: a bad value falls back to its default, and says so)
and written back into links."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import urlencode

from .queries import EVENT_FILTERS, Period

GROUPS = {"agent": "agent", "workflow": "workflow", "model": "model", "end_user": "end user"}
BREAKDOWNS = {"agent": "agent", "workflow": "workflow", "model": "model"}
MAX_DAYS = 366
MAX_HOURLY_DAYS = 7  # 168 bars; more are drawn per day
DEFAULT_DAYS = 7
MAX_FILTER_LENGTH = 255


def today() -> date:
    return datetime.now(timezone.utc).date()


@dataclass(frozen=True)
class View:
    """What a page shows: the period, the chart's grouping and bucket, the breakdown's
    dimension, the events' filters and page."""

    period: Period
    group: str = "agent"
    bucket: str = "day"
    by: str = "agent"
    filters: dict[str, str] = field(default_factory=dict)
    older_than: int | None = None
    newer_than: int | None = None
    notes: tuple[str, ...] = ()

    def link(self, path: str, **changes: object) -> str:
        """`path` with this view's query string, `changes` applied (the page cursor dropped
        unless `changes` sets one)."""
        view = replace(self, **{"older_than": None, "newer_than": None, **changes})  # type: ignore[arg-type]
        query: dict[str, object] = {
            "from": view.period.first.isoformat(),
            "to": view.period.last.isoformat(),
        }
        if path == "/":
            query.update(group=view.group, bucket=view.bucket)
        elif path.startswith("/breakdown"):
            query["by"] = view.by
        elif path == "/events":
            query.update(view.filters)
            if view.older_than is not None:
                query["older"] = view.older_than
            if view.newer_than is not None:
                query["newer"] = view.newer_than
        return f"{path}?{urlencode(query)}"


def read_view(query: Mapping[str, str]) -> View:
    notes: list[str] = []
    last = _date(query.get("to"), "to", notes) or today()
    first = _date(query.get("from"), "from", notes) or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        notes.append("The range ended before it began: its two dates were swapped.")
        first, last = last, first
    if (last - first).days + 1 > MAX_DAYS:
        notes.append(f"A range is at most {MAX_DAYS} days: it starts later.")
        first = last - timedelta(days=MAX_DAYS - 1)
    period = Period(first, last)
    group = _choice(query.get("group"), GROUPS, "agent", "group", notes)
    by = _choice(query.get("by"), BREAKDOWNS, "agent", "by", notes)
    default_bucket = "hour" if period.days <= 2 else "day"
    bucket = _choice(query.get("bucket"), {"hour": 1, "day": 1}, default_bucket, "bucket", notes)
    if bucket == "hour" and period.days > MAX_HOURLY_DAYS:
        notes.append(f"Hourly bars are drawn for up to {MAX_HOURLY_DAYS} days: these are daily.")
        bucket = "day"
    filters = {name: query[name][:MAX_FILTER_LENGTH] for name in EVENT_FILTERS if query.get(name)}
    return View(
        period,
        group,
        bucket,
        by,
        filters,
        _seq(query.get("older")),
        _seq(query.get("newer")),
        tuple(notes),
    )


def _date(raw: str | None, name: str, notes: list[str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        notes.append(f"{name!r} is not a date (2026-12-06): the default was used.")
        return None


def _choice(
    raw: str | None, choices: Mapping[str, object], default: str, name: str, notes: list[str]
) -> str:
    if raw is None or raw == "":
        return default
    if raw not in choices:
        notes.append(f"{name!r} cannot be {raw[:40]!r}: {default!r} was used.")
        return default
    return raw


def _seq(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() and len(raw) < 19 else None
