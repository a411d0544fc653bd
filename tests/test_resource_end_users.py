"""`client.end_users` (`resources/end_users.py`) against the local server, on `Client` and
`AsyncClient` alike (the `any_client` fixture): each call's answer with the reference's keys,
and its typed errors.

Elsewhere: the reference page's example as written (tests/test_reference.py), the status of
each error type (tests/test_errors.py), the paging bounds and id rules every resource shares
(tests/test_validation.py), the routes over raw HTTP (tests/test_server_handler_end_users.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from bearlumen import (
    AsyncClient,
    Client,
    EndUser,
    InvalidEmailError,
    InvalidRequestError,
    NotFoundError,
)
from bearlumen.testing import LocalServer

from .conftest import AnyClient, assert_each_names_its_field

END_USER_KEYS = set(EndUser.__annotations__)


def test_end_users_as_the_reference_shows(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            result = await client.end_users.create(
                external_id="user_123", name="AI Startup Inc", metadata={"ai_provider": "openai"}
            )
            end_user: EndUser = result["endUser"]
            assert end_user["id"].startswith("eu_") and end_user["status"] == "ACTIVE"
            updated = await client.end_users.update(
                end_user["id"], name="Updated Name", metadata={"plan": "enterprise"}
            )
            assert updated["endUser"]["name"] == "Updated Name"
            listed = await client.end_users.list(status="ACTIVE", limit=50, offset=0)
            assert [u["id"] for u in listed["endUsers"]] == [end_user["id"]]
            assert (listed["total"], listed["limit"], listed["offset"]) == (1, 50, 0)
            deactivated = await client.end_users.deactivate(end_user["id"])
            assert deactivated["endUser"]["status"] == "DEACTIVATED"
            assert (await client.end_users.list(status="ACTIVE"))["total"] == 0
            reactivated = await client.end_users.reactivate(end_user["id"])
            assert reactivated["endUser"]["status"] == "ACTIVE"

    asyncio.run(scenario())


def test_every_call_answers_the_end_user_with_the_reference_keys(any_client: AnyClient) -> None:
    end_users = any_client.end_users
    created = end_users.create(
        "user_1", email="ops@example.com", name="Acme", metadata={"tier": "gold"}
    )
    user = created["endUser"]
    assert set(created) == {"endUser"} and set(user) == END_USER_KEYS
    assert (user["externalId"], user["email"], user["name"], user["status"]) == (
        "user_1", "ops@example.com", "Acme", "ACTIVE",
    )  # fmt: skip
    assert user["metadata"] == {"tier": "gold"}

    answers = [
        end_users.update(user["id"], email="new@example.com"),
        end_users.deactivate(user["id"]),
        end_users.reactivate(user["id"]),
    ]
    for answer in answers:
        assert set(answer) == {"endUser"} and set(answer["endUser"]) == END_USER_KEYS
        assert answer["endUser"]["id"] == user["id"]
    assert [a["endUser"]["status"] for a in answers] == ["ACTIVE", "DEACTIVATED", "ACTIVE"]
    # Only the fields given change; the others keep their values.
    assert answers[0]["endUser"]["email"] == "new@example.com"
    assert answers[0]["endUser"]["name"] == "Acme"
    assert answers[0]["endUser"]["metadata"] == {"tier": "gold"}

    listed = end_users.list()
    assert set(listed) == {"endUsers", "total", "limit", "offset"}
    assert (listed["total"], listed["limit"], listed["offset"]) == (1, 100, 0)  # the defaults
    assert listed["endUsers"] == [answers[-1]["endUser"]]


def test_metadata_given_to_update_replaces_the_old(any_client: AnyClient) -> None:
    user = any_client.end_users.create("u", metadata={"plan": "pro", "seats": 3})["endUser"]
    updated = any_client.end_users.update(user["id"], metadata={"plan": "enterprise"})
    assert updated["endUser"]["metadata"] == {"plan": "enterprise"}


def test_list_filters_by_status_and_pages_in_creation_order(any_client: AnyClient) -> None:
    end_users = any_client.end_users
    ids = [end_users.create(f"user_{n}")["endUser"]["id"] for n in range(4)]
    end_users.deactivate(ids[1])
    active = end_users.list(status="ACTIVE")
    assert [u["id"] for u in active["endUsers"]] == [ids[0], ids[2], ids[3]]
    assert [u["id"] for u in end_users.list(status="DEACTIVATED")["endUsers"]] == [ids[1]]
    page = end_users.list(limit=2, offset=1)
    assert [u["id"] for u in page["endUsers"]] == ids[1:3]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert end_users.list(offset=4)["endUsers"] == []


def test_an_unknown_end_user_or_another_tenants_is_not_found(
    any_client: AnyClient, server: LocalServer, api_key: str
) -> None:
    end_users = any_client.end_users
    with Client(api_key=api_key + "_other", base_url=server.base_url) as other:
        theirs = other.end_users.create("theirs")["endUser"]["id"]
        for end_user_id in ("eu_missing", theirs):
            for call, kwargs in (
                (end_users.update, {"name": "x"}),
                (end_users.deactivate, {}),
                (end_users.reactivate, {}),
            ):
                with pytest.raises(NotFoundError) as caught:
                    call(end_user_id, **kwargs)
                assert caught.value.status_code == 404 and caught.value.request_id
        assert other.end_users.list()["endUsers"][0]["name"] is None  # untouched


def test_update_to_an_email_that_is_no_address_is_an_invalid_email_error(
    any_client: AnyClient,
) -> None:
    user_id = any_client.end_users.create("u", email="a@example.com")["endUser"]["id"]
    with pytest.raises(InvalidEmailError) as caught:
        any_client.end_users.update(user_id, email="not-an-email")
    assert (caught.value.status_code, caught.value.param) == (400, "email")
    assert isinstance(caught.value, InvalidRequestError)
    assert any_client.end_users.list()["endUsers"][0]["email"] == "a@example.com"


BAD_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("external_id", lambda end_users: end_users.create("")),
    ("external_id", lambda end_users: end_users.create(None)),
    ("external_id", lambda end_users: end_users.create("x" * 256)),
    ("email", lambda end_users: end_users.create("u", email=42)),
    ("name", lambda end_users: end_users.create("u", name=7)),
    ("metadata", lambda end_users: end_users.create("u", metadata=["not", "a", "dict"])),
    ("end_user_id", lambda end_users: end_users.update("", name="x")),
    ("metadata", lambda end_users: end_users.update("eu_x", metadata="plan=pro")),
    ("name", lambda end_users: end_users.update("eu_x", name="x" * 256)),
    ("end_user_id", lambda end_users: end_users.deactivate(None)),
    ("end_user_id", lambda end_users: end_users.reactivate(42)),
    ("limit", lambda end_users: end_users.list(limit="10")),
    ("offset", lambda end_users: end_users.list(offset=1.5)),
]


def test_bad_arguments_name_the_field_before_any_request(any_client: AnyClient) -> None:
    assert_each_names_its_field(any_client.end_users, BAD_CALLS)
    assert any_client.end_users.list()["total"] == 0


def test_a_status_other_than_active_or_deactivated_is_refused_by_the_server(
    any_client: AnyClient,
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        any_client.end_users.list(status="active")
    assert (caught.value.param, caught.value.status_code) == ("status", 400)
