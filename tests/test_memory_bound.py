"""`max_queue_bytes` bounds what the client holds for delivery: the events queued, the events in
flight and their request bodies, until each batch lands (benchmarks/memory_bound.py measures
the RSS this keeps, with the server down)."""

from __future__ import annotations

import pytest

from bearlumen import Client
from bearlumen.testing import LocalServer

from .conftest import hold_first_batch

METADATA = {"prompt": "x" * 8_000}  # about 8.5 KB an event, with the event's own 512


def test_a_batch_in_flight_and_its_body_count_against_max_queue_bytes_until_it_lands(
    fault_server: LocalServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrived, release = hold_first_batch(fault_server, monkeypatch)
    # Four events fit; three in flight hold their bytes twice (the events, and the body).
    with Client(
        api_key=api_key, base_url=fault_server.base_url, max_queue_bytes=40_000,
        flush_interval=3600,
    ) as client:  # fmt: skip
        for i in range(3):
            assert client.usage.record("t", "m", 1, f"first-{i}", metadata=METADATA)["recorded"]
        client.flush(timeout=0)  # the worker takes the three and sends them: held by the server
        assert arrived.wait(30)
        # The queue is empty, but the batch in flight leaves no room for a fourth.
        late = client.usage.record("t", "m", 1, "late", metadata=METADATA)
        assert late == {"recorded": False, "idempotency_key": "late", "dropped": True}
        release.set()
        assert client.flush(timeout=30)["recorded"] == 3
        # Landed: its bytes are free again.
        assert client.usage.record("t", "m", 1, "late", metadata=METADATA)["recorded"] is True
        result = client.flush(timeout=30)
    assert (result["recorded"], result["dropped"]) == (4, 1)
