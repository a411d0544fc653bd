"""`client.subscriptions` (`resources/subscriptions.py`) against the local server, on `Client`
and `AsyncClient` alike (the `any_client` fixture): each call's answer with the reference's
keys, and its typed errors.

Elsewhere: the reference page's example as written (tests/test_reference.py), every time
argument's range (tests/test_validation.py), the routes over raw HTTP
(tests/test_server_handler_subscriptions.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from bearlumen import AsyncClient, Client, NotFoundError, Subscription
from bearlumen.testing import LocalServer

from .conftest import AnyClient, assert_each_names_its_field

SUBSCRIPTION_KEYS = set(Subscription.__annotations__)


def test_subscriptions_as_the_reference_shows(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            subscription: Subscription = await client.subscriptions.create(
                organization_id="org_123",
                plan_id="plan_pro_monthly",
                billing_cycle="monthly",
                start_date="2024-01-01T00:00:00Z",
            )
            assert subscription["id"].startswith("sub_") and subscription["status"] == "active"
            assert await client.subscriptions.retrieve(subscription["id"]) == subscription
            updated = await client.subscriptions.update(
                subscription["id"], plan_id="plan_enterprise"
            )
            assert updated["planId"] == "plan_enterprise"
            cancelled = await client.subscriptions.cancel(subscription["id"])
            assert cancelled["status"] == "canceled" and cancelled["canceledAt"] is not None
            await client.subscriptions.create("org_other", "plan_x", "yearly", "2024-06-01")
            page = await client.subscriptions.list(organization_id="org_123", limit=20, offset=0)
            assert [s["id"] for s in page["subscriptions"]] == [subscription["id"]]
            assert (await client.subscriptions.list())["total"] == 2

    asyncio.run(scenario())


def test_every_call_answers_the_subscription_with_the_reference_keys(
    any_client: AnyClient,
) -> None:
    subscriptions = any_client.subscriptions
    user = any_client.end_users.create("owner")["endUser"]
    created = subscriptions.create(
        "org_1", "plan_pro", "yearly", "2024-03-01", end_user_id=user["id"],
        metadata={"seats": 5},
    )  # fmt: skip
    assert set(created) == SUBSCRIPTION_KEYS
    assert (created["organizationId"], created["planId"], created["billingCycle"]) == (
        "org_1", "plan_pro", "yearly",
    )  # fmt: skip
    assert created["startDate"] == "2024-03-01T00:00:00.000000Z"  # a date is its midnight, UTC
    assert (created["endUserId"], created["metadata"]) == (user["id"], {"seats": 5})
    assert (created["status"], created["endDate"], created["canceledAt"]) == ("active", None, None)

    answers = [
        subscriptions.retrieve(created["id"]),
        subscriptions.update(created["id"], billing_cycle="monthly", end_date="2025-03-01"),
        subscriptions.cancel(created["id"]),
    ]
    for answer in answers:
        assert set(answer) == SUBSCRIPTION_KEYS and answer["id"] == created["id"]
    assert answers[0] == created
    # Only the fields given change; the others keep their values.
    updated = answers[1]
    assert (updated["billingCycle"], updated["endDate"]) == (
        "monthly",
        "2025-03-01T00:00:00.000000Z",
    )
    assert (updated["planId"], updated["metadata"]) == ("plan_pro", {"seats": 5})
    assert (answers[2]["status"], answers[2]["billingCycle"]) == ("canceled", "monthly")

    listed = subscriptions.list()
    assert set(listed) == {"subscriptions", "total", "limit", "offset"}
    assert (listed["total"], listed["limit"], listed["offset"]) == (1, 100, 0)  # the defaults
    assert listed["subscriptions"] == [answers[2]]


def test_canceling_twice_is_harmless_and_keeps_the_first_cancel_time(
    any_client: AnyClient,
) -> None:
    subscription_id = any_client.subscriptions.create("org", "plan", "monthly", "2024-01-01")["id"]
    first = any_client.subscriptions.cancel(subscription_id)
    again = any_client.subscriptions.cancel(subscription_id)
    assert again["status"] == "canceled" and again["canceledAt"] == first["canceledAt"]


def test_list_filters_by_organization_and_pages_in_creation_order(any_client: AnyClient) -> None:
    subscriptions = any_client.subscriptions
    ids = [
        subscriptions.create(org, "plan", "monthly", "2024-01-01")["id"]
        for org in ("org_a", "org_b", "org_a", "org_a")
    ]
    org_a = subscriptions.list(organization_id="org_a")
    assert [s["id"] for s in org_a["subscriptions"]] == [ids[0], ids[2], ids[3]]
    assert org_a["total"] == 3
    page = subscriptions.list(organization_id="org_a", limit=1, offset=1)
    assert [s["id"] for s in page["subscriptions"]] == [ids[2]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert subscriptions.list(organization_id="org_none")["subscriptions"] == []


def test_an_unknown_subscription_or_another_tenants_is_not_found(
    any_client: AnyClient, server: LocalServer, api_key: str
) -> None:
    subscriptions = any_client.subscriptions
    with Client(api_key=api_key + "_other", base_url=server.base_url) as other:
        theirs = other.subscriptions.create("org", "plan", "monthly", "2024-01-01")["id"]
        for subscription_id in ("sub_missing", theirs):
            for call, kwargs in (
                (subscriptions.retrieve, {}),
                (subscriptions.update, {"plan_id": "plan_free"}),
                (subscriptions.cancel, {}),
            ):
                with pytest.raises(NotFoundError) as caught:
                    call(subscription_id, **kwargs)
                assert caught.value.status_code == 404 and caught.value.request_id
        assert other.subscriptions.retrieve(theirs)["status"] == "active"  # untouched


def test_a_subscription_for_an_unknown_end_user_is_not_found(any_client: AnyClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        any_client.subscriptions.create("org", "plan", "monthly", "2024-01-01", end_user_id="eu_x")
    assert caught.value.param == "endUserId"
    assert any_client.subscriptions.list()["total"] == 0


def test_ids_cannot_reach_another_route(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.subscriptions.retrieve("../end-users")


BAD_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("organization_id", lambda subs: subs.create("", "plan", "monthly", "2024-01-01")),
    ("plan_id", lambda subs: subs.create("org", 5, "monthly", "2024-01-01")),
    ("billing_cycle", lambda subs: subs.create("org", "plan", "Monthly", "2024-01-01")),
    ("start_date", lambda subs: subs.create("org", "plan", "monthly", None)),
    ("end_user_id", lambda subs: subs.create("org", "p", "monthly", "2024-01-01", end_user_id="")),
    ("metadata", lambda subs: subs.create("org", "p", "monthly", "2024-01-01", metadata=[1])),
    ("subscription_id", lambda subs: subs.retrieve("")),
    ("subscription_id", lambda subs: subs.update(None, plan_id="p")),
    ("plan_id", lambda subs: subs.update("sub_x", plan_id="p" * 256)),
    ("billing_cycle", lambda subs: subs.update("sub_x", billing_cycle="weekly")),
    ("metadata", lambda subs: subs.update("sub_x", metadata="seats=5")),
    ("subscription_id", lambda subs: subs.cancel(7)),
    ("organization_id", lambda subs: subs.list(organization_id="")),
]


def test_bad_arguments_name_the_field_before_any_request(any_client: AnyClient) -> None:
    assert_each_names_its_field(any_client.subscriptions, BAD_CALLS)
    assert any_client.subscriptions.list()["total"] == 0
