"""The dashboard without a browser: its aggregation (the rollup and its reads), its query string,
its sessions, and its pages' HTML (links that answer, charts with text alternatives, escaping).

The browser tests are in test_dashboard_browser.py.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from bearlumen.server.dashboard import queries
from bearlumen.server.dashboard.charts import _nice_ceiling, stacked_bars
from bearlumen.server.dashboard.pages import breakdown_csv
from bearlumen.server.dashboard.params import read_view
from bearlumen.server.dashboard.queries import OTHER, Dashboard, Figures, Period, Series
from bearlumen.server.dashboard.sessions import MAX_AGE_SECONDS, Sessions
from bearlumen.testing import LocalServer

DAY1, DAY2 = date(2026, 11, 24), date(2026, 11, 25)
BOTH = Period(DAY1, DAY2)


def llm(input_tokens: int, output_tokens: int, cost: float | None, **more: Any) -> dict[str, Any]:
    metadata = {
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": input_tokens // 2,
        "cache_write_tokens": 3,
        "reasoning_tokens": output_tokens // 5,
        "priced": cost is not None,
        **more,
    }
    if cost is not None:
        metadata["provider_cost_usd"] = cost
    return metadata


def event(key: str, ts: str, metadata: dict[str, Any] | None, **ids: str) -> dict[str, Any]:
    return {
        "eventType": "token_usage",
        "metricName": ids.pop("metric", "llm_tokens"),
        "quantity": 1,
        "idempotencyKey": key,
        "timestamp": ts,
        "metadata": metadata,
        **ids,
    }


# Six events over two days: two agents and none, two models, one call unpriced, one event
# recorded by hand (no metadata), two end users and none.
EVENTS = [
    event("a", "2026-11-24T09:15:00.000000Z", llm(100, 50, 0.25), agentId="bot",
          workflowId="triage", endUserId="eu_1", subscriptionId="sub_1"),
    event("b", "2026-11-24T09:45:00.000000Z", llm(200, 10, 0.5, model="o4-mini"),
          agentId="bot", endUserId="eu_2"),
    event("c", "2026-11-24T17:00:00.000000Z", llm(10, 10, None, model="mystery"),
          agentId="reviewer", workflowId="review", endUserId="eu_1"),
    event("d", "2026-11-25T00:00:00.000000Z", None, agentId="reviewer", metric="api_calls"),
    event("e", "2026-11-25T23:59:59.999999Z", llm(1000, 500, 1.125), endUserId="eu_2",
          subscriptionId="sub_2"),
    event("f", "2026-11-26T00:00:00.000000Z", llm(1, 1, 100.0), agentId="bot"),  # outside
]  # fmt: skip


def post(base_url: str, key: str, events: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        answer = http.post("/v1/usage/events/batch", json={"events": events})
        assert answer.status_code == 200 and answer.json()["recorded_count"] == len(events)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    local = LocalServer().start()
    yield local
    local.stop()


@pytest.fixture
def tenant(server: LocalServer) -> tuple[Dashboard, int, str]:
    """A fresh tenant holding EVENTS, and a Dashboard on the server's store."""
    key = "sk_test_" + secrets.token_hex(8)
    post(server.base_url, key, EVENTS)
    dashboard = Dashboard(server.store)
    dashboard.catch_up()  # as each page view does first
    return dashboard, server.store.database.tenant_for_key(key), key


def test_totals_add_up_the_events_of_the_period(tenant: tuple[Dashboard, int, str]) -> None:
    dashboard, who, _ = tenant
    totals, end_users = dashboard.totals(who, BOTH)
    assert totals == Figures(
        events=5,
        cost_nanos=1_875_000_000,
        unpriced=1,
        input_tokens=1310,
        cache_read_tokens=655,
        cache_write_tokens=12,
        output_tokens=570,
        reasoning_tokens=2 + 10 + 2 + 100,
    )
    assert totals.tokens == 1880 and totals.cost == 1.875
    assert end_users == 2
    day2, _ = dashboard.totals(who, Period(DAY2, DAY2))
    assert (day2.events, day2.cost_nanos) == (2, 1_125_000_000)  # 00:00 and 23:59:59.999999


def test_breakdowns_by_each_dimension(tenant: tuple[Dashboard, int, str]) -> None:
    dashboard, who, _ = tenant
    by_agent = {value: f for value, f in dashboard.breakdown(who, BOTH, "agent")}
    assert list(by_agent) == ["", "bot", "reviewer"]  # by cost: 1.125, 0.75, 0
    assert (by_agent["bot"].events, by_agent["bot"].cost_nanos) == (2, 750_000_000)
    assert (by_agent["reviewer"].events, by_agent["reviewer"].unpriced) == (2, 1)
    by_model = dashboard.breakdown(who, BOTH, "model")
    assert [value for value, _ in by_model] == ["gpt-4o", "o4-mini", "mystery", ""]
    assert by_model[2][1].unpriced == 1 and by_model[3][1].tokens == 0  # the hand-made event
    top = dashboard.breakdown(who, BOTH, "end_user", limit=1)
    assert [(value, f.cost_nanos) for value, f in top] == [("eu_2", 1_625_000_000)]


def test_series_stacks_by_bucket_and_folds_the_smallest_groups(
    tenant: tuple[Dashboard, int, str],
) -> None:
    dashboard, who, _ = tenant
    daily = dashboard.series(who, BOTH, "agent", "day")
    assert daily.buckets == ["2026-11-24", "2026-11-25"]
    assert daily.groups == ["", "bot", "reviewer"]
    assert daily.cost_nanos[("2026-11-24", "bot")] == 750_000_000
    hourly = dashboard.series(who, BOTH, "model", "hour", max_groups=2)
    assert len(hourly.buckets) == 48 and hourly.buckets[9] == "2026-11-24T09"
    assert hourly.groups == ["gpt-4o", OTHER]
    assert hourly.cost_nanos[("2026-11-24T09", OTHER)] == 500_000_000  # o4-mini folded


def test_the_rollup_catches_up_a_few_chunks_a_read_and_with_each_new_event(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk_test_" + secrets.token_hex(8)
    post(server.base_url, key, EVENTS)
    dashboard = Dashboard(server.store)
    dashboard.catch_up()  # what earlier tests left: this test counts its own chunks
    monkeypatch.setattr(queries, "CATCH_UP_CHUNK", 2)
    monkeypatch.setattr(queries, "CHUNKS_PER_READ", 2)
    post(server.base_url, key, [event(f"more-{n}", "2026-11-24T10:00:00.000000Z",
                                      llm(1, 1, 0.125)) for n in range(6)])  # fmt: skip
    who = server.store.database.tenant_for_key(key)
    dashboard.catch_up()  # two chunks of two: four of the six new events
    partial, _ = dashboard.totals(who, BOTH)
    assert (partial.events, dashboard.behind()) == (5 + 4, True)
    seq = dashboard.catch_up()  # the last chunk
    assert dashboard.catch_up() == seq  # nothing new: the same seq (the live page stays)
    totals, _ = dashboard.totals(who, BOTH)
    assert (totals.events, totals.cost_nanos, dashboard.behind()) == (11, 2_625_000_000, False)


def test_a_tenant_sees_only_its_own_figures_and_events(
    server: LocalServer, tenant: tuple[Dashboard, int, str]
) -> None:
    dashboard, who, _ = tenant
    other_key = "sk_test_" + secrets.token_hex(8)
    post(server.base_url, other_key, [event("a", "2026-11-24T09:00:00.000000Z", llm(5, 5, 7.0),
                                            agentId="theirs")])  # fmt: skip
    other = server.store.database.tenant_for_key(other_key)
    dashboard.catch_up()
    assert dashboard.totals(other, BOTH)[0].cost_nanos == 7_000_000_000
    assert "theirs" not in {value for value, _ in dashboard.breakdown(who, BOTH, "agent")}
    theirs = dashboard.events(other, BOTH, {})
    assert [e.agent_id for e in theirs.events] == ["theirs"]
    # a page cursor of another tenant's event is no way into its events
    mine = dashboard.events(who, BOTH, {}, older_than=theirs.events[0].seq)
    assert {e.idempotency_key for e in mine.events} == {"a", "b", "c", "d", "e"}


def test_events_page_newest_first_and_back_again(tenant: tuple[Dashboard, int, str]) -> None:
    dashboard, who, _ = tenant
    pages = [dashboard.events(who, BOTH, {}, limit=2)]
    assert pages[0].newer is None
    while pages[-1].older is not None:
        pages.append(dashboard.events(who, BOTH, {}, older_than=pages[-1].older, limit=2))
    keys = [e.idempotency_key for page in pages for e in page.events]
    assert keys == ["e", "d", "c", "b", "a"]
    back = dashboard.events(who, BOTH, {}, newer_than=pages[-1].newer, limit=2)
    assert [e.idempotency_key for e in back.events] == ["c", "b"]
    assert back.newer is not None and back.older is not None
    first = dashboard.events(who, BOTH, {}, newer_than=back.newer, limit=2)
    assert [e.idempotency_key for e in first.events] == ["e", "d"] and first.newer is None
    filtered = dashboard.events(who, BOTH, {"end_user": "eu_1", "agent": "reviewer"})
    assert [e.idempotency_key for e in filtered.events] == ["c"]
    # an end user (no index of its own) is looked up in the rollup first
    assert dashboard.events(who, BOTH, {"end_user": "eu_nobody"}).events == []
    eu_2 = dashboard.events(who, BOTH, {"end_user": "eu_2"})
    assert [e.idempotency_key for e in eu_2.events] == ["e", "b"]
    assert dashboard.events(who, BOTH, {"metric": "api_calls"}).events[0].metadata is None


def test_the_charts_axis_ends_on_a_round_figure_and_an_empty_chart_says_so() -> None:
    assert [_nice_ceiling(v) for v in (0.9, 1.22, 2.1, 45, 1234)] == [1, 1.6, 2.4, 60, 1600]
    empty = stacked_bars(Series(["2026-11-24"], [], {}), "c", "Cost per day", "agent")
    assert '<desc id="c-desc">No cost was recorded from Nov 24 to Nov 24.</desc>' in empty


def test_a_bad_query_string_falls_back_to_defaults_and_says_why() -> None:
    view = read_view({"from": "2026-11-30", "to": "2026-11-01", "group": "planet",
                      "bucket": "hour", "older": "12x"})  # fmt: skip
    assert (view.period.first, view.period.last) == (date(2026, 11, 1), date(2026, 11, 30))
    assert (view.group, view.bucket, view.older_than) == ("agent", "day", None)
    assert len(view.notes) == 3  # swapped dates, the unknown group, hours over 30 days
    assert read_view({"from": "2026-11-30", "to": "2026-11-30"}).bucket == "hour"
    assert read_view({"from": "yesterday"}).notes == (
        "'from' is not a date (2026-12-06): the default was used.",
    )


def test_sessions_expire_and_close() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    session_id = sessions.open(7)
    assert sessions.tenant(session_id) == 7 and sessions.tenant("guess") is None
    now[0] += MAX_AGE_SECONDS + 1
    assert sessions.tenant(session_id) is None
    again = sessions.open(7)
    sessions.close(again)
    assert sessions.tenant(again) is None


def test_csv_keeps_a_formula_like_name_inert() -> None:
    text = breakdown_csv("agent", [("=HYPERLINK(1)", Figures(events=1, cost_nanos=1))])
    assert text.splitlines()[1].startswith("'=HYPERLINK(1),1,")
    assert text.splitlines()[1].endswith(",0.000000001,0")


# -- the pages' HTML ----------------------------------------------------------------------


class Page(HTMLParser):
    """What a page links to and names, collected while it is parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: list[str] = []
        self.label_targets: list[str] = []
        self.labelled_by: list[str] = []
        self.stack: list[str] = []
        self.svgs: list[dict[str, Any]] = []
        self.figures: list[dict[str, int]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        for name in ("href", "src", "action"):
            if name in a and not a[name].startswith("data:"):
                self.links.append(a[name])
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "label":
            self.label_targets.append(a.get("for", ""))
        if (
            "style" in a
            or (tag == "script" and "src" not in a)
            or any(n.startswith("on") for n in a)
        ):
            self.inline.append(tag)
        if tag == "svg":
            self.labelled_by += a.get("aria-labelledby", "").split()
            self.svgs.append({"role": a.get("role"), "title": 0, "desc": 0})
        if tag in ("title", "desc") and self.stack[-1:] == ["svg"]:
            self.svgs[-1][tag] += 1
        if tag == "figure":
            self.figures.append({"svg": 0, "table": 0})
        if tag in ("svg", "table") and "figure" in self.stack:
            self.figures[-1][tag] += 1
        if tag not in ("input", "link", "meta", "br", "img", "hr"):  # void: no end tag
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


@pytest.fixture
def browser_session(server: LocalServer) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client signed in to the dashboard as a fresh tenant holding EVENTS, plus an
    agent whose name is markup."""
    key = "sk_test_" + secrets.token_hex(8)
    post(server.base_url, key, [*EVENTS, event("x", "2026-11-24T12:00:00.000000Z",
                                               llm(1, 1, 0.5), agentId="<b>x</b>&")])  # fmt: skip
    with httpx.Client(base_url=server.base_url) as http:
        answer = http.post("/sign-in", data={"api_key": key, "next": "/"})
        assert answer.status_code == 303 and "bearlumen_session" in http.cookies
        yield http, key


PAGES = [
    "/?from=2026-11-24&to=2026-11-25",
    "/?from=2026-11-24&to=2026-11-24&group=end_user&bucket=hour",
    "/breakdown?from=2026-11-24&to=2026-11-25&by=model",
    "/events?from=2026-11-24&to=2026-11-25",
    "/events?from=2026-11-24&to=2026-11-25&agent=bot",
]


@pytest.mark.parametrize("path", PAGES)
def test_each_page_is_well_formed_links_only_to_what_answers_and_describes_its_charts(
    browser_session: tuple[httpx.Client, str], path: str
) -> None:
    http, key = browser_session
    answer = http.get(path)
    assert answer.status_code == 200
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    page = parse(answer.text)
    assert page.stack == [], "an element was left open"
    assert len(page.ids) == len(set(page.ids)), "ids repeat"
    assert set(page.label_targets) <= set(page.ids), "a label names no control"
    assert set(page.labelled_by) <= set(page.ids)
    assert page.inline == [], "inline style or script (the CSP would block it)"
    for svg in page.svgs:
        assert svg == {"role": "img", "title": 1, "desc": 1}
    for figure in page.figures:
        assert figure == {"svg": 1, "table": 1}, "a chart without its table"
    if path.startswith("/?"):
        assert page.figures, "the overview has its chart"
    for link in set(page.links):
        target = urljoin(str(answer.url), link)
        assert urlsplit(target).netloc == urlsplit(str(answer.url)).netloc, f"{link} leaves"
        if link in ("/sign-in", "/sign-out"):
            continue  # form actions: POST only (sign-out would end the session)
        assert http.get(target).status_code == 200, link
    assert key not in answer.text and "<b>x</b>" not in answer.text


def test_markup_in_an_agents_name_is_shown_as_text(
    browser_session: tuple[httpx.Client, str],
) -> None:
    http, _ = browser_session
    text = http.get("/breakdown?from=2026-11-24&to=2026-11-25&by=agent").text
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in text and "<b>x</b>" not in text


def test_without_a_session_pages_ask_to_sign_in_and_data_answers_401(server: LocalServer) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        answer = http.get("/events?agent=bot")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/sign-in?next=%2Fevents%3Fagent%3Dbot"
        assert http.get("/live").status_code == 401
        assert http.get("/breakdown.csv").status_code == 401
        http.cookies.set("bearlumen_session", "made-up")
        assert http.get("/").status_code == 303
        # after signing in, only a path of this server: never another site
        answer = http.post("/sign-in", data={"api_key": "sk_test_x", "next": "//evil.example/"})
        assert answer.headers["location"] == "/"
        assert http.post("/sign-in", data={"api_key": ""}).status_code == 400


def test_the_api_is_where_it_was(server: LocalServer) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/v1/usage/summary").status_code == 401  # a key, not a cookie
        assert re.match(r"text/css", http.get("/static/dashboard.css").headers["content-type"])
        assert http.get("/static/../app.py").status_code == 404


def test_serve_prints_where_the_dashboard_is(tmp_path: Path) -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "bearlumen", "serve", "--port", "0", "--db", str(tmp_path / "db")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        lines = [serve.stdout.readline() for _ in range(5)]
        (line,) = [line for line in lines if line.startswith("Cost dashboard: ")]
        url = line.split()[2]
        assert url == lines[0].split("listening on ", 1)[1].split()[0] + "/"
        answer = httpx.get(url)
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in?next=%2F"
    finally:
        serve.terminate()
        serve.wait(10)
        if serve.stdout is not None:
            serve.stdout.close()


@pytest.mark.end_to_end
def test_demo_prints_the_dashboard_and_keeps_serving_until_ctrl_c() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "bearlumen", "demo", "--events", "30", "--threads", "2", "--plain",
         "--keep-serving"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("See these costs in your browser: "):
                break
        found = re.match(r"See these costs .*: (http://127\.0\.0\.1:\d+/) \(.* key (\S+)\)", line)
        assert found, lines
        assert "All 30 events delivered exactly once" in "".join(lines)
        assert "press Ctrl-C" in demo.stdout.readline()  # the demo is over; the server is up
        with httpx.Client(base_url=found[1]) as http:
            assert http.post("/sign-in", data={"api_key": found[2]}).status_code == 303
            page = http.get("/").text  # the last 7 days: the demo metered just now
            assert '<dd id="total-events">30</dd>' in page
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
