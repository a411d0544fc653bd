"""The dashboard in a real browser: headless Chromium (Debian's), driven by Playwright, against a
local server holding known events. Every figure the pages show is checked against the API's own
answer for the same range; the README's screenshot (docs/dashboard.png) is taken here.

One browser for the module; each test opens its own context (its own cookies). Under CI=true a
missing Chromium or Playwright fails the module rather than skipping it.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from bearlumen.server.dashboard.format import count, money
from bearlumen.server.store import nanos
from bearlumen.testing import LocalServer

# A real browser: CI's end-to-end job (pytest -m end_to_end), with Debian's Chromium.
pytestmark = pytest.mark.end_to_end

# Debian's chromium; BEARLUMEN_CHROMIUM names another build (chromium-browser, google-chrome)
CHROMIUM = os.environ.get("BEARLUMEN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra is not installed
    sync_playwright = None  # type: ignore[assignment]
_missing = (
    "playwright is not installed (pip install -e '.[dev]')"
    if sync_playwright is None
    else None
    if os.path.exists(CHROMIUM)
    else f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
)
if _missing:
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests cannot run: {_missing}", pytrace=False)
    pytest.skip(_missing, allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
FIRST, LAST = "2026-11-23", "2026-11-29"  # the week of the known events
RANGE = f"from={FIRST}&to={LAST}"
# agent -> (workflow, model, typical input tokens, output, share read from cache, reasoning)
AGENTS = {
    "support-bot": ("customer-onboarding", "gpt-4o-mini", 1200, 300, 0.5, 0.0),
    "ticket-triage": ("support-escalation", "claude-haiku-4-5", 800, 120, 0.3, 0.0),
    "code-reviewer": ("pull-request-review", "claude-sonnet-4-6", 6000, 900, 0.7, 0.2),
    "research-agent": ("market-research", "o4-mini", 4000, 1500, 0.2, 0.6),
    "sales-assistant": ("lead-qualification", "gpt-4o", 900, 400, 0.0, 0.0),
}
PRICE_PER_TOKEN = {"gpt-4o-mini": 0.3e-6, "claude-haiku-4-5": 1.5e-6, "claude-sonnet-4-6": 5e-6,
                   "o4-mini": 2e-6, "gpt-4o": 4e-6}  # fmt: skip
CUSTOMERS = ["acme-ai", "globex-labs", "initech", "umbrella-health", "stark-analytics"]


def known_events(seed: int = 7, n: int = 400) -> list[dict[str, Any]]:
    """A week of an AI product's LLM calls, as client.llm records them (a few unpriced)."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        agent = rng.choice(list(AGENTS))
        workflow, model, typical_in, typical_out, cached, reasoning = AGENTS[agent]
        input_tokens = max(1, int(rng.gauss(typical_in, typical_in / 4)))
        output_tokens = max(1, int(rng.gauss(typical_out, typical_out / 4)))
        priced = i % 50 != 0
        metadata: dict[str, Any] = {
            "provider": "anthropic" if model.startswith("claude") else "openai",
            "model": model if priced else "custom-finetune",
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": int(input_tokens * cached * rng.random()),
            "cache_write_tokens": rng.choice([0, 0, 0, 64]),
            "reasoning_tokens": int(output_tokens * reasoning),
            "priced": priced,
        }
        if priced:
            metadata["provider_cost_usd"] = round(
                (input_tokens + 4 * output_tokens) * PRICE_PER_TOKEN[model], 9
            )
        day = 23 + int(7 * rng.random() ** 0.7)  # busier towards the end of the week
        customer = rng.randrange(len(CUSTOMERS))
        events.append(
            {
                "eventType": "token_usage",
                "metricName": "llm_tokens",
                "quantity": input_tokens + output_tokens,
                "idempotencyKey": f"openai:resp_{seed}_{i:04d}",
                "timestamp": f"2026-11-{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00.000000Z",
                "endUserId": f"eu_{CUSTOMERS[customer]}",
                "subscriptionId": f"sub_{CUSTOMERS[customer]}_pro",
                "agentId": agent,
                "workflowId": workflow,
                "metadata": metadata,
            }
        )
    return events


class Tenant:
    """One API key, its events, and raw HTTP to the API as it."""

    def __init__(self, server: LocalServer, events: list[dict[str, Any]]) -> None:
        self.key = "sk_test_" + secrets.token_hex(8)
        self.events = events
        self.http = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {self.key}"}
        )
        for at in range(0, len(events), 1000):
            answer = self.http.post(
                "/v1/usage/events/batch", json={"events": events[at : at + 1000]}
            )
            assert answer.status_code == 200 and answer.json()["rejected_count"] == 0

    def all_events(self, **params: str) -> list[dict[str, Any]]:
        """Every event the API's query returns, page after page."""
        events: list[dict[str, Any]] = []
        while True:
            page = self.api("/v1/usage/events", limit="1000", offset=str(len(events)), **params)
            events += page["events"]
            if len(events) >= page["total"]:
                return events

    def api(self, path: str, **params: str) -> Any:
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()


def newest_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As the Events page lists them: by time, newest first, then the last stored first."""
    ordered = sorted(enumerate(events), key=lambda pair: (pair[1]["timestamp"], pair[0]))
    return [event for _, event in reversed(ordered)]


def dates(first: str, last: str) -> dict[str, str]:
    """The API's range for the dashboard's days `first` to `last` inclusive."""
    return {"startDate": f"{first}T00:00:00Z", "endDate": f"2026-11-{int(last[-2:]) + 1}T00:00:00Z"}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    local = LocalServer().start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def acme(server: LocalServer) -> Iterator[Tenant]:
    tenant = Tenant(server, known_events())
    yield tenant
    tenant.http.close()


@pytest.fixture(scope="module")
def other(server: LocalServer) -> Iterator[Tenant]:
    events = [
        {**event, "agentId": "other-tenant-agent", "endUserId": "eu_other_tenant",
         "subscriptionId": "sub_other_tenant"}
        for event in known_events(seed=11, n=12)
    ]  # fmt: skip
    tenant = Tenant(server, events)
    yield tenant
    tenant.http.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        # launch() runs Chromium on a fresh, temporary user-data-dir of its own
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def signed_in(browser: Browser, server: LocalServer, key: str, **options: Any) -> BrowserContext:
    context = browser.new_context(base_url=server.base_url, **options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/")
    assert page.url.startswith(f"{server.base_url}/sign-in")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}/")
    page.close()
    return context


@pytest.fixture(scope="module")
def acme_session(browser: Browser, server: LocalServer, acme: Tenant) -> Any:
    """The cookies of one sign-in, for the contexts of the tests that read acme's pages."""
    context = signed_in(browser, server, acme.key)
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def acme_page(browser: Browser, server: LocalServer, acme_session: Any) -> Iterator[Page]:
    context = browser.new_context(
        base_url=server.base_url,
        storage_state=acme_session,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def text(page: Page, selector: str) -> str:
    return page.inner_text(selector).strip()


def table_rows(page: Page, selector: str) -> list[list[str]]:
    """The table's body rows as the text of their cells (th and td)."""
    return page.eval_on_selector(
        selector,
        "t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.innerText.trim()))",
    )


def test_signing_in_sets_an_opaque_http_only_strict_cookie(
    browser: Browser, server: LocalServer, acme: Tenant
) -> None:
    context = signed_in(browser, server, acme.key)
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert acme.key not in cookie["value"] and len(cookie["value"]) >= 40
    page = context.new_page()
    page.goto("/")
    assert page.evaluate("document.cookie") == ""  # no script can read it
    page.click("text=Sign out")
    page.wait_for_url("**/sign-in")
    page.goto("/events")
    assert "/sign-in" in page.url  # the session is over on the server, not only in the browser
    context.close()


def test_a_wrong_key_is_refused_without_echoing_it(browser: Browser) -> None:
    with LocalServer(api_keys=["sk_test_only_this_one"]) as base_url:
        context = browser.new_context(base_url=base_url)
        page = context.new_page()
        page.goto("/sign-in")
        page.fill("#api_key", "sk_test_wrong_secret")
        page.click("button[type=submit]")
        assert "does not accept that key" in text(page, ".error")
        assert "sk_test_wrong_secret" not in page.content() and "sk_test" not in page.url
        assert context.cookies() == []
        context.close()


def test_the_overview_shows_the_apis_totals(acme_page: Page, acme: Tenant) -> None:
    acme_page.goto(f"/?{RANGE}&group=agent")
    summary = acme.api("/v1/usage/summary", **dates(FIRST, LAST))
    assert text(acme_page, "#total-cost") == money(nanos(summary["totalCost"]))
    assert text(acme_page, "#total-events") == count(summary["totalEvents"])
    assert text(acme_page, "#total-tokens") == count(int(summary["totalQuantity"]))
    assert text(acme_page, "#total-end-users") == count(len(CUSTOMERS))
    unpriced = sum(1 for e in acme.events if not e["metadata"]["priced"])
    assert f"{unpriced} unpriced call(s)" in text(acme_page, ".warn")
    # the chart: one series per agent, in the API's order of cost; its table adds up
    by_agent = acme.api("/v1/cost-attribution/by-agent", **dates(FIRST, LAST))["items"]
    legend = acme_page.eval_on_selector_all(".legend li", "items => items.map(i => i.innerText)")
    assert [item.strip() for item in legend] == [i["attributionValue"] for i in by_agent]
    acme_page.click("summary:has-text('the figures as a table')")
    rows = table_rows(acme_page, "#cost-chart table")
    assert len(rows) == 7  # a bar per day of the week
    shown_total = sum(float(row[-1].lstrip("$").replace(",", "")) for row in rows)
    assert shown_total == pytest.approx(summary["totalCost"], abs=0.0001 * len(rows))
    svg = acme_page.locator("#cost-chart svg")
    assert "stacked by agent" in svg.locator("desc").text_content() or ""
    assert svg.get_attribute("role") == "img"


def test_changing_the_range_and_the_grouping(acme_page: Page, acme: Tenant) -> None:
    acme_page.goto(f"/?{RANGE}")
    acme_page.fill("#from", "2026-11-28")
    acme_page.fill("#to", "2026-11-28")
    acme_page.select_option("#group", "model")
    acme_page.select_option("#bucket", "hour")
    acme_page.click("form.controls button[type=submit]")
    acme_page.wait_for_url("**from=2026-11-28**")
    summary = acme.api("/v1/usage/summary", **dates("2026-11-28", "2026-11-28"))
    assert text(acme_page, "#total-cost") == money(nanos(summary["totalCost"]))
    assert text(acme_page, "#total-events") == count(summary["totalEvents"])
    day = [e for e in acme.events if e["timestamp"].startswith("2026-11-28")]
    models = {e["metadata"]["model"] for e in day}
    legend = {i.strip() for i in acme_page.locator(".legend li").all_inner_texts()}
    assert legend == models
    hours = {e["timestamp"][11:13] for e in day}
    assert acme_page.locator("#cost-chart table tbody tr").count() == len(hours)
    assert "per hour" in (acme_page.locator("#cost-chart svg desc").text_content() or "")


def test_the_breakdown_and_its_csv_match_the_api(acme_page: Page, acme: Tenant) -> None:
    acme_page.goto(f"/breakdown?{RANGE}&by=agent")
    by_agent = acme.api("/v1/cost-attribution/by-agent", **dates(FIRST, LAST))["items"]
    rows = table_rows(acme_page, "table")
    names = [re.sub(r" \d+ unpriced$", "", r[0]) for r in rows]  # the flag is checked below
    assert [(name, r[1], r[7]) for name, r in zip(names, rows)] == [
        (i["attributionValue"], count(i["eventCount"]), money(nanos(i["totalCost"])))
        for i in by_agent
    ]
    with acme_page.expect_download() as download_info:
        acme_page.click("text=Download CSV")
    download = download_info.value
    assert download.suggested_filename == f"bearlumen-cost-by-agent-{FIRST}-to-{LAST}.csv"
    downloaded = list(csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8"))))
    assert [(r["agent"], int(r["events"]), float(r["cost_usd"])) for r in downloaded] == [
        (i["attributionValue"], i["eventCount"], pytest.approx(i["totalCost"], abs=1e-9))
        for i in by_agent
    ]
    for row in downloaded:  # the tokens of each kind, from the events' metadata
        mine = [e["metadata"] for e in acme.events if e["agentId"] == row["agent"]]
        for column in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                       "output_tokens", "reasoning_tokens"):  # fmt: skip
            assert int(row[column]) == sum(m[column] for m in mine), column
        assert int(row["unpriced_calls"]) == sum(1 for m in mine if not m["priced"])
    # by model: the unpriced model is flagged
    acme_page.click("text=By model")
    acme_page.wait_for_url("**by=model**")
    flagged = acme_page.locator("tbody th:has(.flag)").all_inner_texts()
    assert [f.split()[0] for f in flagged] == ["custom-finetune"]


def test_following_a_filter_to_the_events(acme_page: Page, acme: Tenant) -> None:
    acme_page.goto(f"/?{RANGE}")
    acme_page.click("text=Top end users by cost >> xpath=../.. >> tbody tr >> nth=0 >> a")
    acme_page.wait_for_url("**/events?**end_user=**")
    top_user = acme_page.locator("#f-end_user").input_value()
    expected = [e for e in acme.events if e["endUserId"] == top_user]
    keys: list[str] = []
    while True:  # every page, older and older
        rows = table_rows(acme_page, "table")
        assert {row[4] for row in rows} == {top_user}
        keys += [row[7] for row in rows]
        older = acme_page.locator("a[rel=next]")
        if older.count() == 0:
            break
        older.click()
        acme_page.wait_for_load_state()
    # newest first; events of the same second in the order they were stored (seq)
    assert keys == [e["idempotencyKey"] for e in newest_first(expected)]
    # a filter typed into the form: agent and metric, against the API's own query
    acme_page.goto(f"/events?{RANGE}")
    acme_page.fill("#f-agent", "code-reviewer")
    acme_page.fill("#f-metric", "llm_tokens")
    acme_page.click("form.controls button[type=submit]")
    acme_page.wait_for_url("**agent=code-reviewer**")
    api = acme.all_events(agentId="code-reviewer", metricName="llm_tokens", **dates(FIRST, LAST))
    api.sort(key=lambda e: (e["timestamp"], e["id"]), reverse=True)
    rows = table_rows(acme_page, "table")
    assert [row[7] for row in rows] == [e["idempotencyKey"] for e in api[:50]]
    assert {row[5] for row in rows} == {"code-reviewer"}
    acme_page.locator("tbody tr >> nth=0 >> summary").click()
    assert (
        '"model": "claude-sonnet-4-6"' in acme_page.locator("tbody tr >> nth=0 >> pre").inner_text()
    )


def test_a_second_tenant_sees_none_of_the_firsts_data(
    browser: Browser, server: LocalServer, acme: Tenant, other: Tenant
) -> None:
    context = signed_in(browser, server, other.key)
    page = context.new_page()
    seen = []
    for path in (f"/?{RANGE}&group=end_user", f"/breakdown?{RANGE}&by=agent",
                 f"/breakdown?{RANGE}&by=workflow", f"/events?{RANGE}"):  # fmt: skip
        page.goto(path)
        seen.append(page.content())
    assert text(page, "tbody tr >> nth=0 >> td >> nth=5") == "other-tenant-agent"
    page.goto(f"/?{RANGE}")
    assert text(page, "#total-events") == count(len(other.events))
    everything = "".join(seen)
    for name in [*CUSTOMERS, *AGENTS]:
        assert name not in everything.replace("other-tenant", ""), name
    assert acme.events[0]["idempotencyKey"] not in everything
    answer = context.request.get(f"/breakdown.csv?{RANGE}&by=agent")
    assert answer.ok and "support-bot" not in answer.text()
    context.close()


def test_the_overview_updates_live_while_events_arrive(
    browser: Browser, server: LocalServer
) -> None:
    live = Tenant(server, known_events(seed=3, n=1))
    context = signed_in(browser, server, live.key)
    page = context.new_page()
    page.goto(f"/?{RANGE}")
    assert text(page, "#total-events") == "1"
    page.evaluate("window.notReloaded = true")
    more = [{**e, "idempotencyKey": f"live-{i}"} for i, e in enumerate(known_events(seed=5, n=4))]
    assert live.http.post("/v1/usage/events/batch", json={"events": more}).status_code == 200
    expect(page.locator("#total-events")).to_have_text("5")  # no reload: the script redraws
    expect(page.locator("#live-status")).to_contain_text("updated at")
    assert page.evaluate("window.notReloaded") is True
    context.close()
    live.http.close()


def test_keyboard_reaches_every_control_and_the_skip_link_works(acme_page: Page) -> None:
    acme_page.goto(f"/?{RANGE}")
    acme_page.keyboard.press("Tab")
    assert acme_page.evaluate("document.activeElement.className") == "skip"
    acme_page.keyboard.press("Enter")
    assert acme_page.evaluate("document.activeElement.id") == "main"
    reached = set()
    for _ in range(40):
        acme_page.keyboard.press("Tab")
        reached.add(
            acme_page.evaluate("document.activeElement.id || document.activeElement.innerText")
        )
    assert {"from", "to", "group", "bucket"} <= reached
    acme_page.goto(f"/?{RANGE}")
    for _ in range(3):
        acme_page.keyboard.press("Tab")
    assert acme_page.evaluate("document.activeElement.innerText") == "Overview"


def test_readable_at_desktop_and_phone_width_and_the_readme_screenshot(
    acme_page: Page,
) -> None:
    page = acme_page
    # the phone's screenshot is for a person to look at (BEARLUMEN_PHONE_SCREENSHOT=path)
    phone = os.environ.get("BEARLUMEN_PHONE_SCREENSHOT")
    for width, height, path in ((1280, 900, str(ROOT / "docs" / "dashboard.png")),
                                (390, 844, phone)):  # fmt: skip
        page.set_viewport_size({"width": width, "height": height})
        for page_path in (f"/?{RANGE}", f"/breakdown?{RANGE}", f"/events?{RANGE}"):
            page.goto(page_path)
            # nothing wider than the window: wide tables and the chart scroll inside their box
            assert page.evaluate("document.documentElement.scrollWidth") <= width, page_path
        page.goto(f"/?{RANGE}")
        # where the chart is wider than the window (a phone), a line under it says to swipe it
        assert page.locator(".swipe-hint").first.is_visible() == (width < 640)
        if path:
            page.screenshot(path=path, full_page=path == phone)
