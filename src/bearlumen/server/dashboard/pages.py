"""The dashboard's pages as HTML text, from the figures `queries.py` read.

Every value that came from an event (names, keys, metadata) passes through `html.escape`
(`_e`) on its way into the page; the rest is this module's own text. The page frame and the
sign-in form are templates shipped as package data (`templates/`, `string.Template`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import astuple
from functools import cache
from html import escape
from importlib.resources import files
from string import Template
from typing import Sequence

from .charts import stacked_bars
from .format import count, money, value_label
from .params import BREAKDOWNS, GROUPS, View, today
from .queries import Event, EventPage, Figures, Period, Series

PAGES = (("/", "Overview"), ("/breakdown", "Breakdown"), ("/events", "Events"))
EVENT_FILTER_LABELS = {
    "end_user": "End user",
    "subscription": "Subscription",
    "agent": "Agent",
    "workflow": "Workflow",
    "metric": "Metric",
}


def _e(text: object) -> str:
    return escape(str(text), quote=True)


@cache
def template(name: str) -> Template:
    return Template(files(__package__).joinpath("templates", name).read_text("utf-8"))


def _current(is_current: bool) -> str:
    return ' aria-current="page"' if is_current else ""


def page(title: str, body: str, *, current: str | None, signed_in: bool, scripts: str = "") -> str:
    nav = "".join(
        f'<li><a href="{path}"{_current(path == current)}>{label}</a></li>' for path, label in PAGES
    )
    account = (
        '<form method="post" action="/sign-out" class="account">'
        '<button type="submit" class="link">Sign out</button></form>'
        if signed_in
        else ""
    )
    return template("layout.html").substitute(
        title=_e(title),
        heading=_e(title),
        scripts=scripts,
        nav=nav if signed_in else "",
        account=account,
        body=body,
    )


def sign_in_page(error: str | None, next_path: str) -> str:
    message = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    body = template("sign_in.html").substitute(error=message, next=_e(next_path))
    return page("Sign in", body, current=None, signed_in=False)


# -- shared pieces --------------------------------------------------------------------------


def _notes(view: View) -> str:
    return "".join(f'<p class="note" role="status">{_e(note)}</p>' for note in view.notes)


def _range_form(view: View, path: str, extra: str = "") -> str:
    """The period's two dates (and the page's own controls), plus quick ranges."""
    hidden = ""
    if path == "/breakdown":
        hidden = f'<input type="hidden" name="by" value="{_e(view.by)}">'
    last = today()
    quick = []
    for label, days in (("Today", 1), ("7 days", 7), ("30 days", 30), ("90 days", 90)):
        from_day = last.fromordinal(last.toordinal() - days + 1)
        # on the overview, the bucket follows the range (hours for a day, days for a month)
        follow = {"bucket": ""} if path == "/" else {}
        link = view.link(path, period=Period(from_day, last), **follow)
        quick.append(f'<li><a href="{_e(link)}">{label}</a></li>')
    return (
        f'<form method="get" action="{path}" class="controls" aria-label="What to show">'
        f"{hidden}"
        f'<div><label for="from">From</label><input id="from" name="from" type="date"'
        f' value="{view.period.first.isoformat()}" required></div>'
        f'<div><label for="to">To (inclusive)</label><input id="to" name="to" type="date"'
        f' value="{view.period.last.isoformat()}" required></div>'
        f'{extra}<div><button type="submit">Show</button></div></form>'
        f'<ul class="quick" aria-label="Quick ranges">{"".join(quick)}</ul>'
    )


def _select(name: str, label: str, options: dict[str, str], chosen: str) -> str:
    items = "".join(
        f'<option value="{value}"{" selected" if value == chosen else ""}>{_e(text)}</option>'
        for value, text in options.items()
    )
    return (
        f'<div><label for="{name}">{label}</label>'
        f'<select id="{name}" name="{name}">{items}</select></div>'
    )


def _table(
    caption: str,
    head: Sequence[str],
    rows: list[str],
    foot: str = "",
    *,
    numeric: Sequence[int] | None = None,
    css: str = "",
) -> str:
    """A table in a box that scrolls sideways on a narrow screen; the `numeric` columns (every
    one but the first, by default) are aligned right."""
    right = range(1, len(head)) if numeric is None else numeric
    aligned = ' class="num"'
    header = "".join(
        f'<th scope="col"{aligned if i in right else ""}>{h}</th>' for i, h in enumerate(head)
    )
    body = "".join(rows) or f'<tr><td colspan="{len(head)}">No events in this range.</td></tr>'
    return (
        f'<div class="scroll" tabindex="0" role="region" aria-label="{_e(caption)}">'
        f'<table class="{css}"><caption>{_e(caption)}</caption><thead><tr>{header}</tr></thead>'
        f"<tbody>{body}</tbody>{foot}</table></div>"
    )


def _events_link(view: View, name: str, value: str) -> str:
    """A value as a link to its events (a '' value, no agent say, is plain text)."""
    if not value:
        return "(none)"
    return f'<a href="{_e(view.link("/events", filters={name: value}))}">{_e(value)}</a>'


# -- overview -------------------------------------------------------------------------------


def overview_page(view: View, figures_html: str, seq: int) -> str:
    controls = _range_form(
        view,
        "/",
        _select("group", "Stack by", GROUPS, view.group)
        + _select("bucket", "Bars per", {"hour": "hour", "day": "day"}, view.bucket),
    )
    body = (
        f"{_notes(view)}{controls}"
        '<p class="live" id="live-status" role="status" aria-live="polite">'
        "Live: new events appear here as they arrive.</p>"
        f'<div id="figures" data-seq="{seq}">{figures_html}</div>'
    )
    return page(
        "Overview",
        body,
        current="/",
        signed_in=True,
        scripts='<script src="/static/live.js" defer></script>',
    )


def overview_figures(
    view: View,
    totals: Figures,
    end_users: int,
    series: Series,
    top_end_users: list[tuple[str, Figures]],
    top_subscriptions: list[tuple[str, Figures]],
    behind: bool = False,
) -> str:
    """What the live overview redraws: the totals, the chart and the two top lists."""
    unpriced = (
        f'<p class="warn">{count(totals.unpriced)} unpriced call(s): their cost is not in the'
        f' total. See the <a href="{_e(view.link("/breakdown", by="model"))}">breakdown by'
        " model</a>.</p>"
        if totals.unpriced
        else ""
    )
    cards = "".join(
        f'<div class="card"><dt>{label}</dt><dd id="total-{key}">{value}</dd></div>'
        for key, label, value in (
            ("cost", "Cost", money(totals.cost_nanos)),
            ("tokens", "Tokens", count(totals.tokens)),
            ("events", "Events", count(totals.events)),
            ("end-users", "End users", count(end_users)),
        )
    )
    chart = stacked_bars(
        series, "cost-chart", f"Cost per {view.bucket} by {GROUPS[view.group]}", GROUPS[view.group]
    )
    return (
        f'{_partial(behind)}<dl class="cards">{cards}</dl>{unpriced}{chart}<div class="pair">'
        + _ranking(view, "Top end users by cost", "End user", "end_user", top_end_users)
        + _ranking(
            view, "Top subscriptions by cost", "Subscription", "subscription", top_subscriptions
        )
        + "</div>"
    )


def _ranking(
    view: View, caption: str, heading: str, name: str, rows: list[tuple[str, Figures]]
) -> str:
    lines = [
        f'<tr><td>{_events_link(view, name, value)}</td><td class="num">{count(f.events)}</td>'
        f'<td class="num">{count(f.tokens)}</td><td class="num">{money(f.cost_nanos)}</td></tr>'
        for value, f in rows
    ]
    return f"<section>{_table(caption, [heading, 'Events', 'Tokens', 'Cost'], lines)}</section>"


# -- breakdown ------------------------------------------------------------------------------

BREAKDOWN_COLUMNS = (
    "events",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_calls",
)


def _partial(behind: bool) -> str:
    return (
        '<p class="note">Older events are still being added up: these figures are not complete'
        " yet. They grow as you reload (the overview redraws itself).</p>"
        if behind
        else ""
    )


def breakdown_page(view: View, rows: list[tuple[str, Figures]], behind: bool = False) -> str:
    tabs = "".join(
        f'<li><a href="{_e(view.link("/breakdown", by=by))}"'
        f"{_current(by == view.by)}>By {label}</a></li>"
        for by, label in BREAKDOWNS.items()
    )
    label = BREAKDOWNS[view.by]
    lines = []
    total = Figures()
    for value, f in rows:
        total = Figures(*(a + b for a, b in zip(astuple(total), astuple(f))))
        name = _events_link(view, view.by, value) if view.by != "model" else _e(value_label(value))
        flag = (
            f' <span class="flag" title="No price known for these calls">{count(f.unpriced)}'
            " unpriced</span>"
            if f.unpriced
            else ""
        )
        lines.append(f'<tr><th scope="row">{name}{flag}</th>{_figure_cells(f)}</tr>')
    foot = f'<tfoot><tr><th scope="row">Total</th>{_figure_cells(total)}</tr></tfoot>'
    csv_link = view.link("/breakdown.csv")
    table = _table(
        f"Cost by {label}, {view.period.first} to {view.period.last}",
        [label.capitalize(), "Calls", "Input", "Cache read", "Cache write", "Output",
         "Reasoning", "Cost"],
        lines,
        foot,
    )  # fmt: skip
    body = (
        f"{_notes(view)}{_range_form(view, '/breakdown')}{_partial(behind)}"
        f'<nav aria-label="Breakdowns"><ul class="tabs">{tabs}</ul></nav>'
        '<p class="hint">Input tokens include cache reads and writes; output tokens include'
        " reasoning. Unpriced calls are counted but have no cost.</p>"
        f'{table}<p><a class="button" href="{_e(csv_link)}" download>Download CSV</a></p>'
    )
    return page("Breakdown", body, current="/breakdown", signed_in=True)


def _figure_cells(f: Figures) -> str:
    cells = (
        count(f.events), count(f.input_tokens), count(f.cache_read_tokens),
        count(f.cache_write_tokens), count(f.output_tokens), count(f.reasoning_tokens),
        money(f.cost_nanos),
    )  # fmt: skip
    return "".join(f'<td class="num">{cell}</td>' for cell in cells)


def breakdown_csv(dimension: str, rows: list[tuple[str, Figures]]) -> str:
    """The breakdown as CSV: plain numbers (cost in dollars to the nano), one row per value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([dimension, *BREAKDOWN_COLUMNS])
    for value, f in rows:
        writer.writerow(
            [
                _csv_text(value),
                f.events,
                f.input_tokens,
                f.cache_read_tokens,
                f.cache_write_tokens,
                f.output_tokens,
                f.reasoning_tokens,
                f"{f.cost:.9f}",
                f.unpriced,
            ]
        )
    return out.getvalue()


def _csv_text(value: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: an agent's name is the
    # application's input, so such a name is written behind a quote mark.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# -- events ---------------------------------------------------------------------------------


def events_page(view: View, result: EventPage, known: dict[str, list[str]]) -> str:
    fields = []
    lists = []
    for name, label in EVENT_FILTER_LABELS.items():
        fields.append(
            f'<div><label for="f-{name}">{label}</label><input id="f-{name}" name="{name}"'
            f' value="{_e(view.filters.get(name, ""))}" list="known-{name}" maxlength="255"'
            ' autocomplete="off"></div>'
        )
        options = "".join(f'<option value="{_e(v)}"></option>' for v in known.get(name, []) if v)
        lists.append(f'<datalist id="known-{name}">{options}</datalist>')
    active = ", ".join(
        f"{EVENT_FILTER_LABELS[name].lower()} {_e(value)}" for name, value in view.filters.items()
    )
    clear = _e(view.link("/events", filters={}))
    shown = (
        f'<p class="hint">Showing events of {active}. <a href="{clear}">Clear the filters</a></p>'
        if active
        else ""
    )
    rows = [_event_row(event) for event in result.events]
    paging = []
    if result.newer is not None:
        newer = _e(view.link("/events", newer_than=result.newer))
        paging.append(f'<a href="{newer}" rel="prev">← Newer</a>')
    if result.older is not None:
        older = _e(view.link("/events", older_than=result.older))
        paging.append(f'<a href="{older}" rel="next">Older →</a>')
    table = _table(
        "Latest events, newest first",
        ["Time (UTC)", "Metric", "Quantity", "Cost", "End user", "Agent", "Workflow",
         "Idempotency key", "Metadata"],
        rows,
        numeric=(2, 3),
        css="events",
    )  # fmt: skip
    body = (
        f"{_notes(view)}{_range_form(view, '/events', ''.join(fields))}{''.join(lists)}{shown}"
        f'{table}<nav class="paging" aria-label="Pages of events">{" ".join(paging)}</nav>'
    )
    return page("Events", body, current="/events", signed_in=True)


def _event_row(event: Event) -> str:
    metadata = "(none)"
    if event.metadata is not None:
        parsed = json.loads(event.metadata)
        summary = str(parsed.get("model") or "show")
        pretty = json.dumps(parsed, indent=2, sort_keys=True)
        metadata = f"<details><summary>{_e(summary)}</summary><pre>{_e(pretty)}</pre></details>"
    cells = (
        f'<td class="nowrap">{_e(event.timestamp[:19].replace("T", " "))}</td>',
        f"<td>{_e(event.metric_name)}</td>",
        f'<td class="num">{_e(f"{event.quantity:,g}")}</td>',
        f'<td class="num">{money(event.cost_nanos)}</td>',
        f'<td class="nowrap">{_e(value_label(event.end_user_id or ""))}</td>',
        f'<td class="nowrap">{_e(value_label(event.agent_id or ""))}</td>',
        f'<td class="nowrap">{_e(value_label(event.workflow_id or ""))}</td>',
        f'<td class="key"><code>{_e(event.idempotency_key or "(none)")}</code></td>',
        f"<td>{metadata}</td>",
    )
    return f"<tr>{''.join(cells)}</tr>"
