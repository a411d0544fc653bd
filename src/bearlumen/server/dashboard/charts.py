"""Charts as inline SVG, drawn on the server: no script, no library, nothing fetched.

Every chart is a `<figure>`: the SVG (role="img", named by its <title> and described by its
<desc>, which states the range, the total and the largest bar), a legend, and the same figures
as a table for a screen reader or a person who wants the numbers. Colours come from the
stylesheet's `.s0`-`.s5` and `.so` (other) classes: the page's Content-Security-Policy allows no
inline style.
"""

from __future__ import annotations

from html import escape

from .format import bucket_label, money, money_axis, value_label
from .queries import OTHER, Series

WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 84, 12, 16, 48
MAX_X_LABELS = 10


def _colour(index: int, group: str) -> str:
    return "so" if group == OTHER else f"s{index % 6}"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.2, 1.6, 2, 2.4, 3, 4, 6, 8 times a power of ten that is at least
    `value`: the axis' top, divided into four steps that read well (0.3, 0.4, 0.6, ...)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** (len(f"{value:.0f}") - 1) if value >= 1 else 1.0
    while power > value:
        power /= 10
    for step in (1, 1.2, 1.6, 2, 2.4, 3, 4, 6, 8, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def stacked_bars(series: Series, chart_id: str, title: str, dimension_label: str) -> str:
    """Cost per bucket, one bar per bucket stacked by group, as a figure with its text twins."""
    totals = {
        bucket: sum(series.cost_nanos.get((bucket, group), 0) for group in series.groups)
        for bucket in series.buckets
    }
    grand_total = sum(totals.values())
    top = _nice_ceiling(max(totals.values(), default=0) / 1e9)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_w / max(1, len(series.buckets))
    bar = max(1.0, band * 0.78)
    parts = []
    for tick in range(5):  # the y axis: 0, a quarter, ... the top
        amount = top * tick / 4
        y = TOP + plot_h - plot_h * tick / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(money_axis(amount, top))}</text>"
        )
    every = max(1, -(-len(series.buckets) // MAX_X_LABELS))
    for n, bucket in enumerate(series.buckets):
        x = LEFT + band * n + (band - bar) / 2
        y = TOP + plot_h
        for index, group in enumerate(series.groups):
            nanos = series.cost_nanos.get((bucket, group), 0)
            if nanos <= 0:
                continue
            height = plot_h * (nanos / 1e9) / top
            y -= height
            tip = f"{bucket_label(bucket)}, {value_label(group)}: {money(nanos)}"
            parts.append(
                f'<rect class="{_colour(index, group)}" x="{x:.1f}" y="{y:.1f}"'
                f' width="{bar:.1f}" height="{max(height, 0.5):.1f}"><title>{escape(tip)}</title>'
                "</rect>"
            )
        if n % every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 24}"'
                f' text-anchor="middle">{escape(bucket_label(bucket, short=True))}</text>'
            )
    peak = max(series.buckets, key=lambda b: totals[b], default=None)
    span = (
        f"{bucket_label(series.buckets[0])} to {bucket_label(series.buckets[-1])}"
        if series.buckets
        else "no time"
    )
    if grand_total:
        assert peak is not None
        description = (
            f"Cost per {'hour' if 'T' in series.buckets[0] else 'day'} (UTC), {span}, stacked by"
            f" {dimension_label}. Total {money(grand_total)}; the largest bar is"
            f" {bucket_label(peak)} at {money(totals[peak])}. The table below has every figure."
        )
    else:
        description = f"No cost was recorded from {span}."
    svg = (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>'
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}"'
        f' y2="{TOP + plot_h}"/>{"".join(parts)}</svg>'
    )
    legend = "".join(
        f'<li><span class="swatch {_colour(index, group)}" aria-hidden="true"></span>'
        f"{escape(value_label(group))}</li>"
        for index, group in enumerate(series.groups)
    )
    return (
        f'<figure class="chart" id="{chart_id}">'
        f'<figcaption><h2 class="h">{escape(title)}</h2></figcaption>'
        f'<div class="chart-scroll">{svg}</div>'
        # Shown by the stylesheet only where the chart is wider than the window (a phone).
        '<p class="swipe-hint" aria-hidden="true">Swipe the chart sideways to see the whole'
        " range.</p>"
        f'<ul class="legend" aria-label="Legend">{legend}</ul>'
        f"{_data_table(series, totals, title, dimension_label)}</figure>"
    )


def _data_table(series: Series, totals: dict[str, int], title: str, dimension: str) -> str:
    """The chart's figures as a table: a row per bucket that has any cost."""
    head = "".join(f'<th scope="col">{escape(value_label(g))}</th>' for g in series.groups)
    rows = []
    for bucket in series.buckets:
        if not totals[bucket]:
            continue
        cells = "".join(
            f'<td class="num">{money(series.cost_nanos.get((bucket, group), 0))}</td>'
            for group in series.groups
        )
        rows.append(
            f'<tr><th scope="row">{escape(bucket_label(bucket))}</th>{cells}'
            f'<td class="num">{money(totals[bucket])}</td></tr>'
        )
    body = "".join(rows) or (
        f'<tr><td colspan="{len(series.groups) + 2}">No cost in this range.</td></tr>'
    )
    return (
        f'<details class="chart-data"><summary>{escape(title)}: the figures as a table</summary>'
        '<div class="scroll" tabindex="0" role="region" aria-label="Chart figures">'
        f"<table><caption>{escape(title)}, by {escape(dimension)} (USD)</caption>"
        f'<thead><tr><th scope="col">When (UTC)</th>{head}<th scope="col">Total</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div></details>"
    )
