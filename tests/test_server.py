"""The local server against the wire contract (docs/wire-api.md), over real loopback HTTP."""

from __future__ import annotations

import gzip
import json
import threading

import httpx
import pytest

from bearlumen.testing import LocalServer


def event(i: int = 0, **extra: object) -> dict[str, object]:
    return {"eventType": "token_usage", "metricName": "llm_tokens", "quantity": 10, **extra}


def test_every_response_carries_a_request_id_and_errors_repeat_it(http: httpx.Client) -> None:
    ok = http.get("/v1/end-users")
    assert ok.status_code == 200 and ok.headers["x-request-id"].startswith("req_")
    bad = http.get("/v1/end-users", params={"limit": 0})
    assert bad.status_code == 400
    assert bad.json()["error"]["requestId"] == bad.headers["x-request-id"]
    missing = http.get("/v1/no-such-route")
    assert missing.status_code == 404 and "x-request-id" in missing.headers


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer " + "k" * 600])
def test_missing_or_bad_auth_is_401(server: LocalServer, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = httpx.get(server.base_url + "/v1/end-users", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_health_and_openapi_need_no_auth(server: LocalServer) -> None:
    assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}
    document = httpx.get(server.base_url + "/openapi.json").json()
    assert "/v1/usage/events/batch" in document["paths"]


def test_only_configured_keys_are_accepted_when_keys_are_given() -> None:
    with LocalServer(api_keys=["sk_live_good"]) as base_url:
        good = httpx.get(
            base_url + "/v1/end-users", headers={"Authorization": "Bearer sk_live_good"}
        )
        bad = httpx.get(base_url + "/v1/end-users", headers={"Authorization": "Bearer sk_live_bad"})
    assert good.status_code == 200
    assert bad.status_code == 401
    assert "sk_live_bad" not in bad.text


def test_tenants_never_see_each_others_data(server: LocalServer) -> None:
    alice = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer tenant-alice"})
    mallory = httpx.Client(
        base_url=server.base_url, headers={"Authorization": "Bearer tenant-mallory"}
    )
    user = alice.post("/v1/end-users", json={"externalId": "shared-name"}).json()["endUser"]
    sub = alice.post(
        "/v1/subscriptions",
        json={
            "organizationId": "o",
            "planId": "p",
            "billingCycle": "monthly",
            "startDate": "2024-01-01",
        },
    ).json()
    alice.post("/v1/usage/events/batch", json={"events": [event(agentId="a", idempotencyKey="k")]})
    assert mallory.patch(f"/v1/end-users/{user['id']}", json={"name": "x"}).status_code == 404
    assert mallory.post(f"/v1/end-users/{user['id']}/deactivate").status_code == 404
    assert mallory.get(f"/v1/subscriptions/{sub['id']}").status_code == 404
    assert mallory.post(f"/v1/subscriptions/{sub['id']}/cancel").status_code == 404
    assert mallory.get("/v1/end-users").json()["total"] == 0
    assert mallory.get("/v1/subscriptions").json()["total"] == 0
    assert mallory.get("/v1/usage/events").json()["total"] == 0
    assert mallory.get("/v1/usage/summary").json()["totalEvents"] == 0
    assert mallory.get("/v1/usage/aggregation").json()["aggregations"] == []
    dates = {"startDate": "2000-01-01", "endDate": "2100-01-01"}
    assert mallory.get("/v1/cost-attribution/by-agent", params=dates).json()["items"] == []
    assert mallory.get("/v1/cost-attribution/agents", params=dates).json()["values"] == []
    # The same external id and idempotency key are free in another tenant.
    assert mallory.post("/v1/end-users", json={"externalId": "shared-name"}).status_code == 201
    again = mallory.post("/v1/usage/events/batch", json={"events": [event(idempotencyKey="k")]})
    assert again.json()["recorded_count"] == 1


def test_gzip_request_bodies_are_accepted(http: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"events": [event(idempotencyKey="gz")]}).encode())
    response = http.post(
        "/v1/usage/events/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.json()["recorded_count"] == 1


def test_corrupt_gzip_is_400_and_a_gzip_bomb_is_413(http: httpx.Client) -> None:
    corrupt = http.post(
        "/v1/usage/events", content=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert corrupt.status_code == 400
    bomb = gzip.compress(b"[" + b" " * (11 * 1024 * 1024) + b"]")
    too_large = http.post("/v1/usage/events", content=bomb, headers={"Content-Encoding": "gzip"})
    assert too_large.status_code == 413
    assert too_large.json()["error"]["type"] == "invalid_request"


def test_oversized_body_is_413_and_stores_nothing(http: httpx.Client) -> None:
    big = {"events": [event(metadata={"blob": "x" * 15000}) for _ in range(800)]}
    response = http.post("/v1/usage/events/batch", json=big)
    assert response.status_code == 413
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 0


def test_batch_records_each_event_on_its_own(http: httpx.Client) -> None:
    events = [
        event(idempotencyKey="a"),
        event(quantity=-1),
        event(idempotencyKey="a"),
        event(quantity=float("nan")) if False else {"eventType": "t", "metricName": "m"},
        event(idempotencyKey="b", unknownField=1),
        event(metadata={"provider_cost_usd": "lots"}),
        event(idempotencyKey="c", timestamp="2024-01-01T00:00:00Z"),
    ]
    body = http.post("/v1/usage/events/batch", json={"events": events}).json()
    assert [r["status"] for r in body["results"]] == [
        "recorded", "rejected", "duplicate", "rejected", "rejected", "rejected", "recorded",
    ]  # fmt: skip
    assert [r["index"] for r in body["results"]] == list(range(7))
    assert (
        body["recorded_count"] == 2 and body["skipped_count"] == 1 and body["rejected_count"] == 4
    )
    assert body["results"][1]["error"]["param"] == "quantity"
    assert body["results"][3]["error"]["param"] == "quantity"
    assert body["results"][4]["error"]["param"] == "unknownField"
    assert body["results"][5]["error"]["param"] == "metadata"
    assert body["results"][2]["id"] == body["results"][0]["id"]
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 2


@pytest.mark.parametrize(
    "envelope",
    [
        {"events": []},
        {"events": [event()] * 1001},
        {"events": "nope"},
        {"events": [event()], "extra": 1},
        [event()],
        {},
    ],
)
def test_bad_batch_envelope_is_400_never_truncated(http: httpx.Client, envelope: object) -> None:
    response = http.post("/v1/usage/events/batch", json=envelope)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 0


def test_a_full_batch_of_1000_is_accepted(http: httpx.Client) -> None:
    response = http.post("/v1/usage/events/batch", json={"events": [event()] * 1000})
    assert response.json()["recorded_count"] == 1000


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"eventType": "t", "metricName": "m", "quantity": NaN}', b'"just a string"'],
)
def test_malformed_json_is_400(http: httpx.Client, body: bytes) -> None:
    response = http.post("/v1/usage/events", content=body)
    assert response.status_code == 400


def test_single_event_and_its_duplicate(http: httpx.Client) -> None:
    first = http.post("/v1/usage/events", json=event(idempotencyKey="once", agentId="bot"))
    assert first.status_code == 201
    stored = first.json()["event"]
    assert first.json()["recorded"] is True and stored["id"].startswith("evt_")
    assert stored["agentId"] == "bot" and stored["timestamp"] and stored["receivedAt"]
    second = http.post("/v1/usage/events", json=event(idempotencyKey="once", quantity=99))
    assert second.json() == {"recorded": False, "event": stored}


def test_concurrent_submits_of_one_key_record_it_once(server: LocalServer, api_key: str) -> None:
    start = threading.Barrier(8)
    results: list[bool] = []

    def submit() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {api_key}"}) as c:
            start.wait()
            answer = c.post(server.base_url + "/v1/usage/events", json=event(idempotencyKey="race"))
            results.append(answer.json()["recorded"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_idempotency_key_header_replays_the_first_answer(http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "create-once"}
    first = http.post("/v1/end-users", json={"externalId": "u1"}, headers=headers)
    replay = http.post("/v1/end-users", json={"externalId": "u1"}, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other_body = http.post("/v1/end-users", json={"externalId": "u2"}, headers=headers)
    assert other_body.status_code == 400
    assert http.get("/v1/end-users").json()["total"] == 1


def test_date_filters_are_inclusive_start_exclusive_end(http: httpx.Client) -> None:
    stamps = ["2024-01-01T00:00:00Z", "2024-01-15T12:00:00+02:00", "2024-02-01T00:00:00Z"]
    events = [event(timestamp=s, metadata={"provider_cost_usd": 1.25}) for s in stamps]
    http.post("/v1/usage/events/batch", json={"events": events})
    january = {"startDate": "2024-01-01", "endDate": "2024-02-01"}
    listed = http.get("/v1/usage/events", params=january).json()
    assert [e["timestamp"] for e in listed["events"]] == [
        "2024-01-01T00:00:00.000000Z",
        "2024-01-15T10:00:00.000000Z",
    ]
    summary = http.get("/v1/usage/summary", params=january).json()
    assert summary["totalEvents"] == 2 and summary["totalCost"] == 2.5
    assert summary["firstEventAt"] == "2024-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/end-users", {"limit": "1001"}, "limit"),
        ("/v1/end-users", {"limit": "x"}, "limit"),
        ("/v1/end-users", {"offset": "-1"}, "offset"),
        ("/v1/end-users", {"status": "GONE"}, "status"),
        ("/v1/usage/events", {"startDate": "yesterday"}, "startDate"),
        ("/v1/usage/summary", {"endDate": "2024-13-01"}, "endDate"),
        ("/v1/cost-attribution/by-agent", {"endDate": "2024-01-01"}, "startDate"),
        ("/v1/cost-attribution/workflows", {"startDate": "2024-01-01"}, "endDate"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_param(
    http: httpx.Client, path: str, params: dict[str, str], param: str
) -> None:
    response = http.get(path, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_paging(http: httpx.Client) -> None:
    for i in range(5):
        http.post("/v1/end-users", json={"externalId": f"user-{i}"})
    page = http.get("/v1/end-users", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 2
    assert [u["externalId"] for u in page["endUsers"]] == ["user-2", "user-3"]


def test_cost_attribution_is_computed_in_sql(http: httpx.Client) -> None:
    events = [
        event(agentId="support-bot", workflowId="onboarding", metadata={"provider_cost_usd": 0.1}),
        event(agentId="support-bot", metadata={"provider_cost_usd": 0.2}),
        event(agentId="writer", workflowId="onboarding", metadata={"provider_cost_usd": 0.05}),
        event(metadata={"provider_cost_usd": 1.0}),
        event(agentId="free-bot"),
    ]
    http.post("/v1/usage/events/batch", json={"events": events})
    dates = {"startDate": "2000-01-01T00:00:00Z", "endDate": "2100-01-01T00:00:00Z"}
    by_agent = http.get("/v1/cost-attribution/by-agent", params=dates).json()
    assert [
        (i["attributionValue"], i["totalCost"], i["eventCount"]) for i in by_agent["items"]
    ] == [
        (None, 1.0, 1),
        ("support-bot", 0.3, 2),
        ("writer", 0.05, 1),
        ("free-bot", 0.0, 1),
    ]
    assert by_agent["totalCost"] == 1.35 and by_agent["groupBy"] == "agent"
    by_workflow = http.get("/v1/cost-attribution/by-workflow", params=dates).json()
    assert by_workflow["items"][0] == {
        "attributionValue": None, "totalCost": 1.2, "totalQuantity": 30.0, "eventCount": 3,
    }  # fmt: skip
    agents = http.get("/v1/cost-attribution/agents", params=dates).json()
    assert agents == {"values": ["free-bot", "support-bot", "writer"]}


def test_injection_strings_are_just_strings(http: httpx.Client) -> None:
    nasty = "x' OR '1'='1"
    http.post("/v1/usage/events/batch", json={"events": [event(agentId=nasty)]})
    assert http.get("/v1/usage/events", params={"agentId": nasty}).json()["total"] == 1
    assert http.get("/v1/usage/events", params={"agentId": "x"}).json()["total"] == 0


def test_data_survives_a_restart_with_a_file_database(tmp_path: object) -> None:
    db = str(tmp_path) + "/bearlumen.sqlite3"  # type: ignore[operator]
    auth = {"Authorization": "Bearer sk_test_restart"}
    with LocalServer(db=db) as base_url:
        httpx.post(base_url + "/v1/usage/events", json=event(idempotencyKey="kept"), headers=auth)
    with LocalServer(db=db) as base_url:
        again = httpx.post(
            base_url + "/v1/usage/events", json=event(idempotencyKey="kept"), headers=auth
        )
        fresh = httpx.post(
            base_url + "/v1/usage/events", json=event(idempotencyKey="new"), headers=auth
        )
    assert again.json()["recorded"] is False
    assert (
        fresh.json()["recorded"] is True
        and fresh.json()["event"]["id"] != again.json()["event"]["id"]
    )


def test_admin_routes_exist_only_when_faults_are_allowed() -> None:
    with LocalServer(allow_faults=False) as base_url:
        assert httpx.get(base_url + "/_admin/stats").status_code == 404
        assert httpx.post(base_url + "/_admin/faults", json={}).status_code == 404


def test_scripted_faults_then_stats(fault_server: LocalServer, api_key: str) -> None:
    admin = httpx.post(
        fault_server.base_url + "/_admin/faults", json={"script": ["429:2.5", "503", "drop", "ok"]}
    )
    assert admin.status_code == 200
    auth = {"Authorization": f"Bearer {api_key}"}
    url = fault_server.base_url + "/v1/end-users"
    limited = httpx.get(url, headers=auth)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2.5"
    assert limited.json()["error"]["retryAfter"] == 2.5
    assert httpx.get(url, headers=auth).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, headers=auth)
    assert httpx.get(url, headers=auth).status_code == 200
    stats = httpx.get(fault_server.base_url + "/_admin/stats").json()
    assert stats["requestsByStatus"] == {"0": 1, "200": 1, "429": 1, "503": 1}


def test_store_then_500_commits_the_request(fault_server: LocalServer, api_key: str) -> None:
    fault_server.set_faults(script=["store_500"])
    auth = {"Authorization": f"Bearer {api_key}"}
    url = fault_server.base_url + "/v1/usage/events"
    failed = httpx.post(url, json=event(idempotencyKey="k"), headers=auth)
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
    assert httpx.post(url, json=event(idempotencyKey="k"), headers=auth).json()["recorded"] is False


def test_seeded_fault_rates_are_repeatable(fault_server: LocalServer, api_key: str) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}

    def run() -> list[int]:
        fault_server.set_faults(rate_503=0.3, rate_429=0.2, retry_after=0, seed=42)
        return [
            httpx.get(fault_server.base_url + "/v1/end-users", headers=auth).status_code
            for _ in range(30)
        ]

    first = run()
    assert first == run()
    assert {200, 429, 503} <= set(first)


def test_bad_fault_settings_are_rejected(fault_server: LocalServer) -> None:
    for bad in ({"rate_500": 2}, {"nonsense": 1}, {"script": ["explode"]}):
        assert httpx.post(fault_server.base_url + "/_admin/faults", json=bad).status_code == 400
