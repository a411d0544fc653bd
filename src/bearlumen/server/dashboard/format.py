"""How the dashboard writes money, counts, times and missing values (one place for all pages)."""

from __future__ import annotations

from datetime import date

NANOS_PER_DOLLAR = 1_000_000_000
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def money(nanos: int) -> str:
    """Dollars to the hundredth of a cent: one LLM call costs a fraction of a cent."""
    return f"${nanos / NANOS_PER_DOLLAR:,.4f}"


def money_axis(dollars: float, top: float) -> str:
    """An axis label: as few decimals as the axis' scale needs."""
    if top >= 10:
        return f"${dollars:,.0f}"
    if top >= 0.1:
        return f"${dollars:,.2f}"
    if top >= 0.01:
        return f"${dollars:,.4f}"
    return f"${dollars:,.6f}"


def count(number: int) -> str:
    return f"{number:,}"


def value_label(value: str) -> str:
    """An agent, workflow, model, end user or subscription as shown; '' is an event without."""
    return value if value else "(none)"


def bucket_label(bucket: str, *, short: bool = False) -> str:
    """`2026-12-06` -> `Dec 6`; `2026-12-06T13` -> `Dec 6, 13:00` (short: `13h` unless 00h)."""
    day = date.fromisoformat(bucket[:10])
    text = f"{_MONTHS[day.month - 1]} {day.day}"
    if len(bucket) == 10:
        return text
    hour = bucket[11:13]
    if short:
        return text if hour == "00" else f"{hour}h"
    return f"{text}, {hour}:00"
