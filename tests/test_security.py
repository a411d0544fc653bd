"""Security of the local server: auth on every route, admin routes only when enabled and only
from loopback, capped inputs. (The API key's absence from logs, reprs and errors is tested in
test_errors.py; tenant isolation in test_server.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from bearlumen.server import FaultInjector, create_app
from bearlumen.server.openapi import openapi_document
from bearlumen.server.store import Store
from bearlumen.testing import LocalServer


def every_operation() -> list[tuple[str, str]]:
    return [
        (method.upper(), path.replace("{id}", "x"))
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    ]


@pytest.mark.parametrize(("method", "path"), every_operation())
def test_every_api_route_needs_auth(server: LocalServer, method: str, path: str) -> None:
    answer = httpx.request(method, server.base_url + path, json={})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "authentication_error"


def test_admin_routes_answer_only_loopback_clients() -> None:
    # A real server here can only be reached over loopback; an ASGI test client can claim any
    # address, which is the one case that needs it.
    app = create_app(Store(":memory:"), faults=FaultInjector())
    remote = TestClient(app, client=("203.0.113.7", 40000))
    assert remote.get("/_admin/stats").status_code == 404
    assert remote.post("/_admin/faults", json={"rate_500": 1}).status_code == 404
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.get("/_admin/stats").status_code == 200


def test_field_lengths_are_capped(http: httpx.Client) -> None:
    too_long = "x" * 256
    assert http.post("/v1/end-users", json={"externalId": too_long}).status_code == 400
    answer = http.post(
        "/v1/usage/events",
        json={"eventType": "t", "metricName": "m", "quantity": 1, "agentId": too_long},
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "agentId"
    assert http.get("/v1/usage/events", params={"agentId": too_long}).status_code == 400
    assert (
        http.post(
            "/v1/end-users", headers={"Idempotency-Key": "k" * 256}, json={"externalId": "a"}
        ).status_code
        == 400
    )


def test_errors_never_echo_the_api_key() -> None:
    with LocalServer(api_keys=["sk_live_only"]) as base_url:
        answer = httpx.get(
            base_url + "/v1/end-users", headers={"Authorization": "Bearer sk_live_guess_123"}
        )
    assert answer.status_code == 401 and "sk_live_guess_123" not in answer.text


def test_keys_are_stored_only_as_hashes(tmp_path: Path) -> None:
    with LocalServer(db=str(tmp_path / "keys.sqlite3")) as base_url:
        httpx.get(
            base_url + "/v1/end-users", headers={"Authorization": "Bearer sk_live_plaintext_never"}
        )
    stored = [p.read_bytes() for p in tmp_path.iterdir()]  # the database, its WAL and index
    assert stored and not any(b"sk_live_plaintext_never" in data for data in stored)
