"""Every query of the wire API is answered from an index: no scan of a whole table or index.

docs/wire-api.md's lists, aggregations, summaries and cost breakdowns filter a tenant's events
by subscription, metric, agent, workflow and time range; each filter has an index (store.py),
and this test asks SQLite, through `EXPLAIN QUERY PLAN`, how it runs every SELECT the server
sends while it answers each of those routes. A dropped or reshaped index that leaves a filter
without one fails here.
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any, Iterator

import httpx
import pytest

from bearlumen.testing import LocalServer

EVENT = {
    "eventType": "token_usage",
    "metricName": "llm_tokens",
    "quantity": 3,
    "timestamp": "2026-11-25T12:00:00.000000Z",
    "subscriptionId": "sub_1",
    "endUserId": "eu_1",
    "agentId": "support-bot",
    "workflowId": "triage",
    "metadata": {"provider_cost_usd": 0.25},
}
DATES = {"startDate": "2026-11-01T00:00:00Z", "endDate": "2026-12-01T00:00:00Z"}


class PlanRecorder:
    """The store's connection, plus the query plan of every SELECT run through it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.plans: list[tuple[str, list[str]]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = self._db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            self.plans.append((sql, [row[-1] for row in rows]))
        return self._db.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture(scope="module")
def tenant() -> Iterator[tuple[httpx.Client, Any]]:
    """A server of this module's own (its store's connection is wrapped), with one tenant's
    events."""
    server = LocalServer().start()
    key = "sk_test_" + secrets.token_hex(8)
    try:
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            events = [{**EVENT, "idempotencyKey": f"k{i}"} for i in range(20)]
            assert http.post("/v1/usage/events/batch", json={"events": events}).status_code == 200
            yield http, server.store
    finally:
        server.stop()


@pytest.fixture
def planned(tenant: tuple[httpx.Client, Any]) -> Iterator[tuple[httpx.Client, PlanRecorder]]:
    http, store = tenant
    recorder = PlanRecorder(store._db)
    store._db = recorder
    try:
        yield http, recorder
    finally:
        store._db = recorder._db


# route, its query, the index that must answer it
ROUTES: list[tuple[str, dict[str, str], str]] = [
    ("/v1/usage/events", {}, "usage_events_by_ts"),
    ("/v1/usage/events", DATES, "usage_events_by_ts"),
    ("/v1/usage/events", {"subscriptionId": "sub_1"}, "usage_events_with_subscription"),
    ("/v1/usage/events", {"metricName": "llm_tokens", **DATES}, "usage_events_by_metric"),
    ("/v1/usage/events", {"agentId": "support-bot"}, "usage_events_with_agent"),
    ("/v1/usage/events", {"workflowId": "triage", **DATES}, "usage_events_with_workflow"),
    ("/v1/usage/events", {"agentId": "support-bot", **DATES}, "usage_events_with_agent"),
    ("/v1/usage/events", {"subscriptionId": "sub_1", **DATES}, "usage_events_with_subscription"),
    ("/v1/usage/aggregation", {}, "usage_events_by_ts"),
    ("/v1/usage/aggregation", DATES, "usage_events_by_ts"),
    ("/v1/usage/aggregation", {"subscriptionId": "sub_1"}, "usage_events_with_subscription"),
    ("/v1/usage/aggregation", {"metricName": "llm_tokens"}, "usage_events_by_metric"),
    (
        "/v1/usage/aggregation",
        {"subscriptionId": "sub_1", **DATES},
        "usage_events_with_subscription",
    ),
    ("/v1/usage/aggregation", {"metricName": "llm_tokens", **DATES}, "usage_events_by_metric"),
    ("/v1/usage/summary", {}, "usage_events_by_ts"),
    ("/v1/usage/summary", {"subscriptionId": "sub_1"}, "usage_events_with_subscription"),
    ("/v1/usage/summary", DATES, "usage_events_by_ts"),
    ("/v1/usage/summary", {"subscriptionId": "sub_1", **DATES}, "usage_events_with_subscription"),
    ("/v1/cost-attribution/by-agent", DATES, "usage_events_by_ts"),
    ("/v1/cost-attribution/by-workflow", DATES, "usage_events_by_ts"),
    ("/v1/cost-attribution/agents", DATES, "usage_events_with_agent"),
    ("/v1/cost-attribution/workflows", DATES, "usage_events_with_workflow"),
    ("/v1/end-users", {"status": "ACTIVE"}, "end_users_by_status"),
    ("/v1/end-users", {}, "end_users_by_created"),
    ("/v1/subscriptions", {"organizationId": "org_1"}, "subscriptions_by_org"),
    ("/v1/subscriptions", {}, "subscriptions_by_created"),
]


@pytest.mark.parametrize(("route", "query", "index"), ROUTES)
def test_each_query_of_the_wire_api_searches_an_index(
    planned: tuple[httpx.Client, PlanRecorder], route: str, query: dict[str, str], index: str
) -> None:
    http, recorder = planned
    answer = http.get(route, params=query)
    assert answer.status_code == 200, answer.text
    assert recorder.plans, "the route ran no SELECT"
    for sql, plan in recorder.plans:
        table = [
            step
            for step in plan
            if " usage_events" in step or " end_users" in step or " subscriptions" in step
        ]
        assert table, (sql, plan)
        for step in table:
            # SEARCH: a lookup by the index's leading columns; SCAN: every row (or entry)
            assert step.startswith("SEARCH "), (sql, plan)
            assert "INDEX " + index in step, (sql, plan)


def test_a_batch_finds_its_keys_and_a_single_event_its_row_by_index(
    planned: tuple[httpx.Client, PlanRecorder],
) -> None:
    http, recorder = planned
    answer = http.post("/v1/usage/events", json={**EVENT, "idempotencyKey": "one"})
    assert answer.status_code == 201
    again = http.post(
        "/v1/usage/events/batch", json={"events": [{**EVENT, "idempotencyKey": "k1"}]}
    )
    assert again.json()["skipped_count"] == 1
    steps = [step for _, plan in recorder.plans for step in plan]
    assert any("INDEX usage_events_key (tenant=? AND idempotency_key=?)" in s for s in steps), steps
    assert all(not s.startswith("SCAN") for s in steps), steps


# -- the dashboard (server/dashboard/queries.py) --------------------------------------------
# Its overview and breakdowns read the rollup by its primary key (tenant, dimension, span,
# bucket, ...); the Events page reads usage_events through the index of its filter, and a page's
# cursor by the primary key.

_ROLLUP = "USING PRIMARY KEY (tenant=? AND dimension=? AND span=? AND bucket>? AND bucket<?)"
DASHBOARD_PAGES: list[tuple[str, dict[str, str], str]] = [
    ("/", {}, _ROLLUP),
    ("/", {"group": "model", "bucket": "hour"}, _ROLLUP),
    ("/live", {"seen": "0"}, _ROLLUP),
    ("/breakdown", {"by": "workflow"}, _ROLLUP),
    ("/breakdown.csv", {"by": "model"}, _ROLLUP),
    ("/events", {}, "usage_events_by_ts"),
    ("/events", {"agent": "support-bot"}, "usage_events_with_agent"),
    ("/events", {"workflow": "triage"}, "usage_events_with_workflow"),
    ("/events", {"subscription": "sub_1"}, "usage_events_with_subscription"),
    ("/events", {"metric": "llm_tokens"}, "usage_events_by_metric"),
    ("/events", {"end_user": "eu_1"}, "usage_events_by_ts"),  # narrowed by the rollup first
    ("/events", {"agent": "support-bot", "older": "5"}, "usage_events_with_agent"),
    ("/events", {"newer": "5"}, "usage_events_by_ts"),
]


@pytest.fixture(scope="module")
def signed_in(tenant: tuple[httpx.Client, Any]) -> Iterator[httpx.Client]:
    """The dashboard, signed in as the module's tenant."""
    http, _ = tenant
    with httpx.Client(base_url=str(http.base_url)) as browser:
        key = http.headers["authorization"].split()[1]
        assert browser.post("/sign-in", data={"api_key": key}).status_code == 303
        yield browser


@pytest.mark.parametrize(("page", "query", "index"), DASHBOARD_PAGES)
def test_each_query_of_the_dashboard_searches_an_index(
    planned: tuple[httpx.Client, PlanRecorder],
    signed_in: httpx.Client,
    page: str,
    query: dict[str, str],
    index: str,
) -> None:
    _, recorder = planned
    answer = signed_in.get(page, params={"from": "2026-11-01", "to": "2026-11-30", **query})
    assert answer.status_code == 200, answer.text
    searched = set()
    for sql, plan in recorder.plans:
        for step in plan:
            if " dashboard_rollup_state" in step:
                continue  # its one row
            if " dashboard_rollup" in step or " usage_events" in step:
                assert step.startswith("SEARCH "), (sql, plan)
                searched.add(step)
    assert any(index in step for step in searched), searched
    # the rest of the events' tables is read by their primary key: a page's cursor, and the
    # newest seq of each (MAX(seq), the last row: a bare SEARCH)
    last_rows = ("SEARCH usage_events", "SEARCH usage_events_staged")
    assert all(index in step or "PRIMARY KEY" in step or step in last_rows for step in searched), (
        searched
    )


def test_the_dashboards_rollup_reads_only_the_new_events(
    planned: tuple[httpx.Client, PlanRecorder],
) -> None:
    from bearlumen.server.dashboard.queries import _FILL_NEW

    _, recorder = planned
    plan = [row[-1] for row in recorder.execute("EXPLAIN QUERY PLAN " + _FILL_NEW, (0, 10))]
    assert plan == ["SEARCH usage_events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]
