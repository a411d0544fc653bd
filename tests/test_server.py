"""The local server against the wire contract (docs/wire-api.md), over real loopback HTTP: what
every route shares (auth, request ids, bodies, idempotency, tenancy, storage, faults). Each
route's own answers and errors: tests/test_server_handler_<resource>.py."""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from bearlumen.server import event_store
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


def test_an_unknown_route_or_method_answers_the_contracts_error_body(http: httpx.Client) -> None:
    missing = http.get("/v1/no-such-route")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    assert missing.json()["error"]["requestId"] == missing.headers["x-request-id"]
    wrong = http.delete("/v1/usage/events/batch")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["type"] == "invalid_request"
    assert "DELETE is not allowed on /v1/usage/events/batch" in wrong.json()["error"]["message"]


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
    alice.close()
    mallory.close()


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


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"eventType": "t", "metricName": "m", "quantity": NaN}', b'"just a string"'],
)
def test_malformed_json_is_400(http: httpx.Client, body: bytes) -> None:
    response = http.post("/v1/usage/events", content=body)
    assert response.status_code == 400


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


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/end-users", {"limit": "1001"}, "limit"),
        ("/v1/end-users", {"limit": "x"}, "limit"),
        ("/v1/end-users", {"offset": "-1"}, "offset"),
        ("/v1/end-users", {"status": "GONE"}, "status"),
        ("/v1/usage/events", {"startDate": "yesterday"}, "startDate"),
        ("/v1/usage/summary", {"endDate": "2024-13-01"}, "endDate"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_param(
    http: httpx.Client, path: str, params: dict[str, str], param: str
) -> None:
    response = http.get(path, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


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


# -- storage: staged batches, exact strings, quantities --------------------------------------


def test_each_batch_is_visible_to_queries_as_soon_as_it_is_answered(http: httpx.Client) -> None:
    for round_ in range(1, 4):
        batch = [event(idempotencyKey=f"r{round_}-{i}", agentId=f"a{i % 3}") for i in range(1000)]
        answer = http.post("/v1/usage/events/batch", json={"events": batch})
        assert answer.json()["recorded_count"] == 1000
        assert http.get("/v1/usage/summary").json()["totalEvents"] == 1000 * round_
        by_agent = http.get("/v1/usage/events", params={"agentId": "a1", "limit": 1}).json()
        assert by_agent["total"] == 333 * round_
        last = answer.json()["results"][-1]["id"]
        page = http.get("/v1/usage/events", params={"limit": 1, "offset": 1000 * round_ - 1})
        assert page.json()["events"][0]["id"] == last


def test_duplicates_are_found_before_and_after_indexing(http: httpx.Client) -> None:
    batch = {"events": [event(idempotencyKey=f"k{i}") for i in range(600)]}
    first = http.post("/v1/usage/events/batch", json=batch).json()
    ids = [result["id"] for result in first["results"]]
    at_once = http.post("/v1/usage/events/batch", json=batch).json()  # still staged
    http.get("/v1/usage/summary")  # a read makes the indexed table complete
    later = http.post("/v1/usage/events/batch", json=batch).json()
    for answer in (at_once, later):
        assert answer["recorded_count"] == 0 and answer["skipped_count"] == 600
        assert [result["id"] for result in answer["results"]] == ids
    mixed = {"events": [event(idempotencyKey="k5"), event(idempotencyKey="new")]}
    statuses = [
        r["status"] for r in http.post("/v1/usage/events/batch", json=mixed).json()["results"]
    ]
    assert statuses == ["duplicate", "recorded"]
    assert http.get("/v1/usage/summary").json()["totalEvents"] == 601


def test_events_answered_before_a_sigkill_are_kept_once(tmp_path: Path) -> None:
    db = tmp_path / "killed.sqlite3"
    auth = {"Authorization": "Bearer sk_test_killed"}
    batch = {"events": [event(idempotencyKey=f"k{i}") for i in range(1000)]}
    first = serve(db)
    try:
        url = first.stdout.readline().split("listening on ", 1)[1].split()[0]  # type: ignore[union-attr]
        answer = httpx.post(url + "/v1/usage/events/batch", json=batch, headers=auth)
        assert answer.json()["recorded_count"] == 1000
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to move or close anything
        first.wait(10)
        first.stdout.close()  # type: ignore[union-attr]
    second = serve(db)
    try:
        url = second.stdout.readline().split("listening on ", 1)[1].split()[0]  # type: ignore[union-attr]
        assert httpx.get(url + "/v1/usage/summary", headers=auth).json()["totalEvents"] == 1000
        again = httpx.post(url + "/v1/usage/events/batch", json=batch, headers=auth).json()
        assert again["skipped_count"] == 1000
        assert [r["id"] for r in again["results"]] == [r["id"] for r in answer.json()["results"]]
    finally:
        second.terminate()
        second.wait(10)
        second.stdout.close()  # type: ignore[union-attr]


def serve(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bearlumen", "serve", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


ODD_TEXTS = ["a\x00b", "\x00", "tab\there", "line\u2028sep", "é\u0301", "🦄", "\x7f\x1b[31m"]
EVENT_TEXT_FIELDS = [
    "eventType", "metricName", "idempotencyKey", "subscriptionId", "endUserId", "agentId",
    "workflowId",
]  # fmt: skip


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_every_event_text_is_stored_exactly_or_refused(http: httpx.Client, text: str) -> None:
    for field in EVENT_TEXT_FIELDS:
        for path in ("/v1/usage/events", "/v1/usage/events/batch"):
            sent = event(**{field: text + path, "metadata": {text: text, "nested": [text]}})
            answer = http.post(path, json={"events": [sent]} if path.endswith("batch") else sent)
            if answer.status_code == 400 or (
                path.endswith("batch") and answer.json()["rejected_count"]
            ):
                error = answer.json().get("error") or answer.json()["results"][0]["error"]
                assert error["param"] == field or error["param"].startswith("metadata"), error
                continue
            assert answer.status_code in (200, 201), answer.text
            stored = http.get("/v1/usage/events", params={"limit": 1000}).json()["events"]
            matching = [e for e in stored if e[field] == text + path]
            assert len(matching) == 1, (field, path, [e[field] for e in stored][-3:])
            assert matching[0]["metadata"] == {text: text, "nested": [text]}


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_end_user_and_subscription_texts_are_stored_exactly_or_refused(
    http: httpx.Client, text: str
) -> None:
    user = http.post(
        "/v1/end-users", json={"externalId": "x" + text, "name": text, "metadata": {text: text}}
    )
    if user.status_code == 400:
        assert user.json()["error"]["param"] in ("externalId", "name", "metadata")
    else:
        stored = http.get("/v1/end-users").json()["endUsers"]
        assert [(u["externalId"], u["name"], u["metadata"]) for u in stored] == [
            ("x" + text, text, {text: text})
        ]
    subscription = http.post(
        "/v1/subscriptions",
        json={"organizationId": "o" + text, "planId": text, "billingCycle": "monthly", "startDate": "2024-01-01"},
    )  # fmt: skip
    if subscription.status_code == 400:
        assert subscription.json()["error"]["param"] in ("organizationId", "planId")
    else:
        listed = http.get("/v1/subscriptions", params={"organizationId": "o" + text}).json()
        assert [(s["organizationId"], s["planId"]) for s in listed["subscriptions"]] == [
            ("o" + text, text)
        ]
    email = "me" + text + "@example.com"
    with_email = http.post("/v1/end-users", json={"externalId": "with-email", "email": email})
    if with_email.status_code == 400:
        assert with_email.json()["error"]["param"] == "email"
    else:
        users = http.get("/v1/end-users", params={"limit": 1000}).json()["endUsers"]
        assert [u["email"] for u in users if u["externalId"] == "with-email"] == [email]


@pytest.mark.parametrize("whole", [0, 1, 2**53, 2**60, int(1e300)])
def test_a_quantity_gets_the_same_answer_as_int_and_as_float(
    http: httpx.Client, whole: int
) -> None:
    answers = []
    for quantity in (whole, float(whole)):
        answer = http.post("/v1/usage/events", json=event(quantity=quantity))
        answers.append(answer.status_code)
        if answer.status_code == 201:
            assert answer.json()["event"]["quantity"] == whole  # stored exactly
        else:
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "quantity"
    assert answers[0] == answers[1]


def test_batches_are_stored_whole_where_sqlite_binds_only_999_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python < 3.11 cannot ask SQLite its limit and assumes the oldest one: rows and keys then
    # go in several statements per batch.
    def oldest_limit(db: sqlite3.Connection) -> int:
        if hasattr(db, "setlimit"):  # 3.11+; before, the store assumes 999 by itself
            db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return 999

    monkeypatch.setattr(event_store, "_parameter_limit", oldest_limit)
    auth = {"Authorization": "Bearer sk_test_old_sqlite"}
    with LocalServer() as base_url:
        first = [event(idempotencyKey=f"k{i}", agentId="a\u00e9b") for i in range(1000)]
        answer = httpx.post(
            base_url + "/v1/usage/events/batch", json={"events": first}, headers=auth
        )
        assert answer.json()["recorded_count"] == 1000
        again = [event(idempotencyKey=f"k{i}") for i in range(500, 1500)]
        second = httpx.post(
            base_url + "/v1/usage/events/batch", json={"events": again}, headers=auth
        ).json()
        assert (second["recorded_count"], second["skipped_count"]) == (500, 500)
        assert [r["id"] for r in second["results"][:500]] == [
            r["id"] for r in answer.json()["results"][500:]
        ]
        stored = httpx.get(
            base_url + "/v1/usage/events",
            params={"agentId": "a\u00e9b", "limit": 1000},
            headers=auth,
        )
        assert stored.json()["total"] == 1000


def test_a_timestamp_outside_years_1_to_9999_in_utc_is_a_400_naming_it(http: httpx.Client) -> None:
    for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        single = http.post("/v1/usage/events", json=event(timestamp=moment))
        assert single.status_code == 400 and single.json()["error"]["param"] == "timestamp"
        batch = http.post(
            "/v1/usage/events/batch", json={"events": [event(timestamp=moment), event()]}
        )
        assert [r["status"] for r in batch.json()["results"]] == ["rejected", "recorded"]
        assert batch.json()["results"][0]["error"]["param"] == "timestamp"
        subscription = http.post(
            "/v1/subscriptions",
            json={
                "organizationId": "o",
                "planId": "p",
                "billingCycle": "monthly",
                "startDate": moment,
            },
        )
        assert (
            subscription.status_code == 400 and subscription.json()["error"]["param"] == "startDate"
        )
        summary = http.get("/v1/usage/summary", params={"startDate": moment})
        assert summary.status_code == 400 and summary.json()["error"]["param"] == "startDate"


def test_a_request_that_failed_with_500_does_not_keep_its_idempotency_key(
    fault_server: LocalServer, api_key: str
) -> None:
    store = fault_server.store
    real = store.events.record_events

    def fails_once(tenant: int, rows: list[list[object]]) -> object:
        store.events.record_events = real  # type: ignore[method-assign]
        raise RuntimeError("the disk went away")

    store.events.record_events = fails_once  # type: ignore[method-assign]
    url = fault_server.base_url + "/v1/usage/events"
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "retried-after-500"}
    # A connection per request: after an unhandled error uvicorn closes the one it answered on.
    assert httpx.post(url, json=event(), headers=headers).status_code == 500
    retried = httpx.post(url, json=event(), headers=headers)
    assert retried.status_code == 201 and retried.json()["recorded"] is True


def test_overlapping_batches_from_threads_store_each_key_once_while_reads_index(
    server: LocalServer, api_key: str
) -> None:
    keys = [f"k{i}" for i in range(600)]
    answers: list[tuple[list[str], dict[str, Any]]] = []
    done = threading.Event()
    headers = {"Authorization": f"Bearer {api_key}"}

    def post(offset: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            for round_ in range(5):
                start = (offset * 150 + round_ * 90) % 600
                mine = [keys[(start + i) % 600] for i in range(300)]
                batch = {"events": [event(idempotencyKey=k, agentId=k) for k in mine]}
                answers.append((mine, http.post("/v1/usage/events/batch", json=batch).json()))

    def read() -> None:  # every read moves what is staged: moves interleave with the writes
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            while not done.is_set():
                http.get("/v1/usage/summary")

    writers = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert sum(answer["recorded_count"] for _, answer in answers) == 600
    ids: dict[str, set[str]] = {}
    for sent, answer in answers:
        assert len(answer["results"]) == len(sent)
        for key, result in zip(sent, answer["results"]):
            ids.setdefault(key, set()).add(result["id"])
    with httpx.Client(base_url=server.base_url, headers=headers) as http:
        stored = http.get("/v1/usage/events", params={"limit": 1000}).json()
    assert stored["total"] == 600
    assert {e["idempotencyKey"]: {e["id"]} for e in stored["events"]} == ids
