"""The local server's event ids: unique, stable, and telling one tenant nothing of another's
volume (they were `evt_` + the hex of one sequence shared by every tenant)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from bearlumen.server.store import Store
from bearlumen.testing import LocalServer

EVENT = {"eventType": "t", "metricName": "m", "quantity": 1}


def tenant(server: LocalServer) -> httpx.Client:
    key = "sk_test_ids_" + secrets.token_hex(6)
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})


def test_an_event_id_does_not_show_how_many_events_other_tenants_recorded(
    server: LocalServer,
) -> None:
    with tenant(server) as watcher, tenant(server) as busy:
        before = watcher.post("/v1/usage/events", json=EVENT).json()["event"]["id"]
        answer = busy.post("/v1/usage/events/batch", json={"events": [EVENT] * 40}).json()
        after = watcher.post("/v1/usage/events", json=EVENT).json()["event"]["id"]
    busy_ids = [result["id"] for result in answer["results"]]
    ids = [before, *busy_ids, after]
    assert all(re.fullmatch(r"evt_[0-9a-f]{24}", event_id) for event_id in ids), ids
    assert len(set(ids)) == len(ids)
    # Read as numbers, ids stored one after the other are neither in order nor close together:
    # nothing counts the 40 events between the watcher's two.
    numbers = [int(event_id[4:], 16) for event_id in ids]
    assert numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True)
    assert min(abs(a - b) for a, b in zip(numbers, numbers[1:])) > 2**32


def test_event_ids_stay_the_same_when_the_server_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / "events.sqlite3")
    row = ["t", "m", 1.0, "k", "2024-01-01T00:00:00.000000Z", None, None, None, None, None, 0]
    store = Store(path)
    try:
        ((_, seq),) = store.events.record_events(1, [row])
        (event,), _ = store.events.query_events(1, [], 10, 0)
    finally:
        store.close()
    again = Store(path)
    try:
        (event_again,), _ = again.events.query_events(1, [], 10, 0)
        assert event_again["id"] == event["id"] == again.events.event_id(seq)
    finally:
        again.close()
