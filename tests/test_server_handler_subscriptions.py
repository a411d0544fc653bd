"""The local server's `/v1/subscriptions` routes (`server/handlers/subscriptions.py`) over raw
HTTP, against the wire contract (docs/wire-api.md, "Subscriptions"): status codes, answers,
error bodies.

The SDK's side of the same calls: tests/test_resource_subscriptions.py. Paging bounds, tenancy
and the checks every route shares: tests/test_server.py and tests/test_validation.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bearlumen import Subscription

from .conftest import api_error

SUBSCRIPTION_KEYS = set(Subscription.__annotations__)
PLAN = {"organizationId": "org", "planId": "plan_pro", "billingCycle": "monthly",
        "startDate": "2024-01-01"}  # fmt: skip


def test_each_route_answers_its_status_and_the_subscription(http: httpx.Client) -> None:
    created = http.post("/v1/subscriptions", json={**PLAN, "metadata": {"seats": 5}})
    assert created.status_code == 201
    subscription = created.json()
    assert set(subscription) == SUBSCRIPTION_KEYS and subscription["id"].startswith("sub_")
    assert (subscription["status"], subscription["startDate"]) == (
        "active", "2024-01-01T00:00:00.000000Z",
    )  # fmt: skip
    path = f"/v1/subscriptions/{subscription['id']}"
    for method, suffix, body in (
        ("GET", "", None),
        ("PATCH", "", {"planId": "plan_team", "endDate": "2025-01-01T12:00:00+02:00"}),
        ("POST", "/cancel", None),
        ("POST", "/cancel", None),  # again: harmless
    ):
        answer = http.request(method, path + suffix, json=body)
        assert answer.status_code == 200, (method, suffix, answer.text)
        assert set(answer.json()) == SUBSCRIPTION_KEYS
    final = answer.json()
    assert (final["status"], final["planId"], final["endDate"]) == (
        "canceled", "plan_team", "2025-01-01T10:00:00.000000Z",
    )  # fmt: skip
    assert final["canceledAt"] and final["metadata"] == {"seats": 5}
    listed = http.get("/v1/subscriptions")
    assert listed.status_code == 200
    assert listed.json() == {"subscriptions": [final], "total": 1, "limit": 100, "offset": 0}


def test_list_filters_by_organization_and_pages(http: httpx.Client) -> None:
    for org in ("org_a", "org_b", "org_a", "org_a"):
        http.post("/v1/subscriptions", json={**PLAN, "organizationId": org})
    page = http.get("/v1/subscriptions", params={"organizationId": "org_a", "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 100, 1)
    assert [s["organizationId"] for s in page["subscriptions"]] == ["org_a", "org_a"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", None), ("PATCH", "", {"planId": "p"}), ("POST", "/cancel", None)],
)
def test_an_unknown_id_is_404_not_found(
    http: httpx.Client, method: str, suffix: str, body: object
) -> None:
    answer = http.request(method, f"/v1/subscriptions/sub_missing{suffix}", json=body)
    api_error(answer, 404, "not_found")


def test_an_unknown_end_user_is_404_naming_end_user_id(http: httpx.Client) -> None:
    answer = http.post("/v1/subscriptions", json={**PLAN, "endUserId": "eu_missing"})
    assert api_error(answer, 404, "not_found")["param"] == "endUserId"
    user = http.post("/v1/end-users", json={"externalId": "u"}).json()["endUser"]
    linked = http.post("/v1/subscriptions", json={**PLAN, "endUserId": user["id"]})
    assert linked.status_code == 201 and linked.json()["endUserId"] == user["id"]
    assert http.get("/v1/subscriptions").json()["total"] == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("plan", None),
        ({k: v for k, v in PLAN.items() if k != "planId"}, "planId"),
        ({**PLAN, "billingCycle": "weekly"}, "billingCycle"),
        ({**PLAN, "startDate": "2024-02-30"}, "startDate"),
        ({**PLAN, "organizationId": 7}, "organizationId"),
        ({**PLAN, "status": "canceled"}, "status"),  # not a field a caller sets
    ],
)
def test_a_bad_create_body_is_400_naming_the_field(
    http: httpx.Client, body: Any, param: str | None
) -> None:
    answer = http.post("/v1/subscriptions", json=body)
    assert api_error(answer, 400, "invalid_request")["param"] == param
    assert http.get("/v1/subscriptions").json()["total"] == 0


def test_a_bad_patch_body_is_400_naming_the_field(http: httpx.Client) -> None:
    subscription = http.post("/v1/subscriptions", json=PLAN).json()
    path = f"/v1/subscriptions/{subscription['id']}"
    for body, param in (
        ({"planId": None}, "planId"),  # required on create: cannot be cleared
        ({"billingCycle": None}, "billingCycle"),
        ({"billingCycle": "daily"}, "billingCycle"),
        ({"endDate": "soon"}, "endDate"),
        ({"organizationId": "other"}, "organizationId"),
    ):
        assert api_error(http.patch(path, json=body), 400, "invalid_request")["param"] == param
    assert http.get(path).json() == subscription
    cleared = http.patch(path, json={"endDate": None, "metadata": None})
    assert cleared.status_code == 200 and cleared.json()["endDate"] is None
