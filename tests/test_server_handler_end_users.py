"""The local server's `/v1/end-users` routes (`server/handlers/end_users.py`) over raw HTTP,
against the wire contract (docs/wire-api.md, "End users"): status codes, answers, error bodies.

The SDK's side of the same calls: tests/test_resource_end_users.py. Paging bounds, tenancy and
the checks every route shares: tests/test_server.py and tests/test_validation.py.
"""

from __future__ import annotations

import httpx
import pytest

from bearlumen import EndUser

from .conftest import api_error

END_USER_KEYS = set(EndUser.__annotations__)


def test_each_route_answers_its_status_and_the_end_user(http: httpx.Client) -> None:
    created = http.post(
        "/v1/end-users",
        json={"externalId": "u1", "email": "a@example.com", "name": "A", "metadata": {"k": 1}},
    )
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json"
    user = created.json()["endUser"]
    assert set(created.json()) == {"endUser"} and set(user) == END_USER_KEYS
    assert user["id"].startswith("eu_") and user["status"] == "ACTIVE"
    assert user["createdAt"].endswith("Z") and user["updatedAt"].endswith("Z")
    for method, path, body, status in (
        ("PATCH", f"/v1/end-users/{user['id']}", {"name": "B"}, "ACTIVE"),
        ("POST", f"/v1/end-users/{user['id']}/deactivate", None, "DEACTIVATED"),
        ("POST", f"/v1/end-users/{user['id']}/deactivate", None, "DEACTIVATED"),  # again
        ("POST", f"/v1/end-users/{user['id']}/reactivate", None, "ACTIVE"),
    ):
        answer = http.request(method, path, json=body)
        assert answer.status_code == 200, (path, answer.text)
        assert set(answer.json()["endUser"]) == END_USER_KEYS
        assert answer.json()["endUser"]["status"] == status
    listed = http.get("/v1/end-users")
    assert listed.status_code == 200
    assert set(listed.json()) == {"endUsers", "total", "limit", "offset"}
    (only,) = listed.json()["endUsers"]
    assert (only["name"], only["email"], only["metadata"]) == ("B", "a@example.com", {"k": 1})


def test_paging(http: httpx.Client) -> None:
    for i in range(5):
        http.post("/v1/end-users", json={"externalId": f"user-{i}"})
    page = http.get("/v1/end-users", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 2
    assert [u["externalId"] for u in page["endUsers"]] == ["user-2", "user-3"]


def test_patch_changes_the_fields_sent_and_null_clears_one(http: httpx.Client) -> None:
    user = http.post(
        "/v1/end-users", json={"externalId": "u", "name": "A", "metadata": {"plan": "pro"}}
    ).json()["endUser"]
    path = f"/v1/end-users/{user['id']}"
    replaced = http.patch(path, json={"metadata": {"seats": 3}}).json()["endUser"]
    assert (replaced["name"], replaced["metadata"]) == ("A", {"seats": 3})  # replaced, not merged
    cleared = http.patch(path, json={"name": None}).json()["endUser"]
    assert (cleared["name"], cleared["metadata"]) == (None, {"seats": 3})
    unchanged = http.patch(path, json={}).json()["endUser"]
    assert {k: v for k, v in unchanged.items() if k != "updatedAt"} == {
        k: v for k, v in cleared.items() if k != "updatedAt"
    }


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("PATCH", "", {"name": "x"}), ("POST", "/deactivate", None), ("POST", "/reactivate", None)],
)
def test_an_unknown_id_is_404_not_found(
    http: httpx.Client, method: str, suffix: str, body: object
) -> None:
    answer = http.request(method, f"/v1/end-users/eu_missing{suffix}", json=body)
    api_error(answer, 404, "not_found")


def test_a_taken_external_id_is_409_and_a_bad_email_400_each_naming_the_field(
    http: httpx.Client,
) -> None:
    user = http.post("/v1/end-users", json={"externalId": "taken"}).json()["endUser"]
    taken = http.post("/v1/end-users", json={"externalId": "taken", "name": "other"})
    assert api_error(taken, 409, "duplicate_customer")["param"] == "externalId"
    for answer in (
        http.post("/v1/end-users", json={"externalId": "new", "email": "no-at-sign"}),
        http.patch(f"/v1/end-users/{user['id']}", json={"email": "a@b"}),
    ):
        assert api_error(answer, 400, "invalid_email")["param"] == "email"
    listed = http.get("/v1/end-users").json()
    assert listed["total"] == 1 and listed["endUsers"][0]["email"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([{"externalId": "u"}], None),
        ({}, "externalId"),
        ({"externalId": 5}, "externalId"),
        ({"externalId": ""}, "externalId"),
        ({"externalId": "u", "colour": "red"}, "colour"),
        ({"externalId": "u", "metadata": [1]}, "metadata"),
        ({"externalId": "u", "name": "n" * 256}, "name"),
    ],
)
def test_a_bad_create_body_is_400_naming_the_field(
    http: httpx.Client, body: object, param: str | None
) -> None:
    answer = http.post("/v1/end-users", json=body)
    assert api_error(answer, 400, "invalid_request")["param"] == param
    assert http.get("/v1/end-users").json()["total"] == 0


def test_a_bad_patch_body_is_400_naming_the_field(http: httpx.Client) -> None:
    user = http.post("/v1/end-users", json={"externalId": "u"}).json()["endUser"]
    path = f"/v1/end-users/{user['id']}"
    for body, param in (
        ({"externalId": "other"}, "externalId"),  # not a field PATCH can change
        ({"metadata": "plan=pro"}, "metadata"),
        ("name=x", None),
    ):
        assert api_error(http.patch(path, json=body), 400, "invalid_request")["param"] == param


def test_an_unknown_query_parameter_is_400_never_ignored(http: httpx.Client) -> None:
    http.post("/v1/end-users", json={"externalId": "u"})
    answer = http.get("/v1/end-users", params={"state": "DEACTIVATED"})  # for `status`
    assert api_error(answer, 400, "invalid_request")["param"] == "state"
