"""Several batches in flight: exactly once, flush never early, batches that fill up, and a
server that asks for quiet (Retry-After) or struggles (AIMD) gets it from every sender."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Tuple

import httpx
import pytest

from bearlumen import Client
from bearlumen.testing import LocalServer

from ._shipper_probe import (
    CHILD_PATH,
    join_senders,
    on_hand_out,
    wait_for_batches,
    wait_for_senders,
)
from .conftest import RecordingSleep


class HeldTransport(httpx.HTTPTransport):
    """The real transport to the real server; the first batch request waits until `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.first_entered = threading.Event()
        self.release = threading.Event()
        self._first = threading.Lock()
        self.batch_requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/batch"):
            self.batch_requests += 1
            if self._first.acquire(blocking=False):
                self.first_entered.set()
                self.release.wait(60)
        return super().handle_request(request)


HeldClient = Callable[..., Tuple[Client, HeldTransport]]


@pytest.fixture
def held_client(server: LocalServer, api_key: str) -> Iterator[HeldClient]:
    """Makes clients whose first batch request is held (`HeldTransport`); the interval never
    passes during a test, so batches go out full, or at a flush. Their connections are closed
    after the test (a client never closes an `http_client` it was given)."""
    transports: list[HeldTransport] = []

    def make(**options: Any) -> tuple[Client, HeldTransport]:
        transport = HeldTransport()
        transports.append(transport)
        client = Client(
            api_key=api_key,
            base_url=server.base_url,
            http_client=httpx.Client(transport=transport),
            flush_interval=3600,
            **options,
        )
        return client, transport

    yield make
    for transport in transports:
        transport.release.set()
        transport.close()


def test_every_event_is_stored_once_with_many_batches_in_flight_through_faults(
    fault_server: LocalServer, api_key: str, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(
        script=["503", "429:1", "drop", "store_500", "latency:200", "store_500", "drop"],
        rate_429=0.05, rate_503=0.1, rate_drop=0.1, rate_store_500=0.1, retry_after=0.5, seed=5,
    )  # fmt: skip
    client = Client(
        api_key=api_key,
        base_url=fault_server.base_url,
        sleep=recording_sleep,
        flush_at=100,
        max_in_flight=8,
    )
    for i in range(4000):
        client.usage.record("token_usage", "llm_tokens", 1, metadata={"provider_cost_usd": 0.01})
        if i % 500 == 499:
            client.flush()  # flush markers between batches in flight, too
    result = client.close(timeout=60)
    fault_server.set_faults()
    with Client(api_key=api_key, base_url=fault_server.base_url) as reader:
        summary = reader.usage.summary()
    assert result["complete"] and (result["failed"], result["dropped"], result["rejected"]) == (
        0,
        0,
        0,
    )
    assert result["recorded"] == 4000 and result["duplicate"] == 0
    assert summary["totalEvents"] == 4000 and summary["totalCost"] == 40.0
    assert result["retries"] >= 6  # the script's faults at least


def test_flush_waits_for_an_earlier_batch_that_is_still_in_flight(held_client: HeldClient) -> None:
    client, transport = held_client(flush_at=1000, max_in_flight=4)
    for _ in range(1000):  # batch 0: held inside its request
        client.usage.record("token_usage", "llm_tokens", 1)
    assert transport.first_entered.wait(30)
    client.usage.record("token_usage", "llm_tokens", 1)  # batch 1: goes through at once
    flushed = threading.Event()
    results: list[Any] = []

    def flush() -> None:
        results.append(client.flush())
        flushed.set()

    flusher = threading.Thread(target=flush)
    flusher.start()
    wait_for_batches(client, sent=2, in_flight={0})  # batch 1 came back; batch 0 has not
    assert client.stats()["recorded"] == 1
    assert not flushed.is_set()  # a later batch's answer must not complete an earlier flush
    transport.release.set()
    flusher.join(60)
    assert results[0]["complete"] and results[0]["recorded"] == 1001
    client.close()


def test_woken_by_flush_at_only_full_batches_go_and_the_rest_waits_for_the_interval(
    held_client: HeldClient,
) -> None:
    client, transport = held_client(flush_at=1000)
    transport.release.set()
    for _ in range(1500):
        client.usage.record("token_usage", "llm_tokens", 1)
    assert transport.first_entered.wait(30)
    wait_for_batches(client, sent=1, in_flight=set())
    stats = client.stats()
    assert (stats["recorded"], stats["queued"]) == (1000, 500)  # no half-empty request
    assert client.flush()["recorded"] == 1500
    assert transport.batch_requests == 2
    client.close()


def test_records_arriving_while_the_worker_hands_out_batches_never_make_a_runt_batch(
    server: LocalServer, api_key: str, monkeypatch: Any
) -> None:
    client = Client(api_key=api_key, base_url=server.base_url, flush_at=1000, flush_interval=3600)
    sizes: list[int] = []
    all_recorded = threading.Event()

    def record_while_handing_out(batch: list[Any]) -> None:
        # Producers keep recording while the worker hands a batch out. Recording here, on the
        # worker's own thread, makes that interleaving happen every time, not by luck.
        sizes.append(len(batch))
        more = {1: 1500, 2: 1000}.get(len(sizes), 0)
        for _ in range(more):
            client.usage.record("token_usage", "llm_tokens", 1)
        if len(sizes) == 2:
            all_recorded.set()

    on_hand_out(client, monkeypatch, record_while_handing_out)
    for _ in range(1000):
        client.usage.record("token_usage", "llm_tokens", 1)
    # Flush once the worker has recorded all 3,500: a flush marker queued while it still records
    # would land among those events and rightly cut a batch short there.
    assert all_recorded.wait(30)
    assert client.flush()["recorded"] == 3500
    # The second round's budget was 1500: 1000 went, and the 500 left over waited to fill up
    # instead of going out alone while 1000 more arrived behind them.
    assert sizes == [1000, 1000, 1000, 500]
    client.close()


def test_events_in_flight_when_close_gives_up_are_failed_once_and_the_log_says_how_many(
    server: LocalServer, api_key: str, caplog: Any
) -> None:
    transport = HeldTransport()
    failures: list[tuple[list[Any], BaseException]] = []
    client = Client(
        api_key=api_key, base_url=server.base_url, http_client=httpx.Client(transport=transport),
        flush_interval=3600, on_error=lambda events, exc: failures.append((events, exc)),
    )  # fmt: skip
    for _ in range(10):
        client.usage.record("token_usage", "llm_tokens", 1)
    client.flush(timeout=0)  # ship the part-filled batch now, without waiting for it
    assert transport.first_entered.wait(30)
    wait_for_batches(client, sent=1, in_flight={0})
    stats = client.stats()
    assert (stats["queued"], stats["in_flight"], stats["sent"]) == (0, 10, 0)
    with caplog.at_level(logging.ERROR, logger="bearlumen"):
        result = client.close(timeout=0)
    assert result["complete"] is False
    assert (result["in_flight"], result["failed"], result["recorded"]) == (0, 10, 0)
    assert [len(events) for events, _ in failures] == [10]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(
        "bearlumen: closed with 10 usage event(s) undelivered"  # not "0": they were out
    )
    # The server answers after all: nothing is counted twice, nothing reaches on_error again.
    transport.release.set()
    join_senders(client)
    stats = client.stats()
    assert (stats["failed"], stats["recorded"], stats["in_flight"]) == (10, 0, 0)
    assert len(failures) == 1
    transport.close()


def test_a_batch_waiting_for_a_free_sender_counts_as_in_flight(
    server: LocalServer, held_client: HeldClient
) -> None:
    client, transport = held_client(flush_at=1000, max_in_flight=1)
    for _ in range(2500):
        client.usage.record("token_usage", "llm_tokens", 1)
    assert transport.first_entered.wait(30)  # the first batch is held at the server's door
    # The worker took the second batch and waits for the one sender.
    assert wait_for_senders(client, lambda *_: client.stats()["in_flight"] == 2000)
    stats = client.stats()
    assert (stats["queued"], stats["in_flight"]) == (500, 2000)  # none unaccounted for
    transport.release.set()
    assert client.flush()["recorded"] == 2500
    assert client.stats()["in_flight"] == 0
    client.close()


def test_a_retry_after_pauses_a_sender_that_was_never_refused(
    fault_server: LocalServer, api_key: str
) -> None:
    # Batch 0 is answered 429 "retry after 30 s". Batch 1, handed to a second sender while batch
    # 0 waits to retry, must sit out the same pause before its first attempt.
    fault_server.set_faults(script=["429:30"])
    waits: list[tuple[int, float]] = []  # each injected wait, with the thread that waited
    first_waits = threading.Event()
    second_waits = threading.Event()

    def sleep(seconds: float) -> None:
        waits.append((threading.get_ident(), seconds))
        if len(waits) == 1:  # batch 0's sender, before its retry: held until the second waits
            first_waits.set()
            second_waits.wait(60)
        else:
            second_waits.set()

    client = Client(
        api_key=api_key,
        base_url=fault_server.base_url,
        sleep=sleep,
        flush_at=1000,
        flush_interval=3600,
        max_in_flight=2,
    )
    try:
        for _ in range(1000):
            client.usage.record("token_usage", "llm_tokens", 1)
        assert first_waits.wait(30)
        for _ in range(1000):
            client.usage.record("token_usage", "llm_tokens", 1)
        # Batch 1 waited for the pause, or came back without waiting.
        assert wait_for_senders(
            client, lambda handed, out: second_waits.is_set() or (handed == 2 and out == {0})
        )
        assert len(waits) == 2 and waits[0][0] != waits[1][0]  # two senders waited ...
        assert waits[0][1] >= 30 and 0 < waits[1][1] <= 30  # ... the second for what was left
        result = client.flush()
        assert (result["recorded"], result["retries"], result["failed"]) == (2000, 1, 0)
    finally:
        second_waits.set()  # batch 0's sender goes on, whatever failed above
        client.close()


HELD_CHILD = """
import os, threading, httpx, bearlumen
from bearlumen import _spool
from tests._shipper_probe import wait_for_senders
_spool.SEGMENT_BYTES = 16 * 1024  # about one batch a segment: later ones can be trimmed first

class HoldFirstBatch(httpx.HTTPTransport):
    first = threading.Lock()
    def handle_request(self, request):
        if request.url.path.endswith("/batch") and self.first.acquire(blocking=False):
            threading.Event().wait()  # batch 0 never comes back
        return super().handle_request(request)

client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          spool_dir=os.environ["SPOOL"], flush_at=100, flush_interval=3600,
                          max_in_flight=4, http_client=httpx.Client(transport=HoldFirstBatch()))
for batch in range(4):  # four batches of 100, each woken by flush_at
    for i in range(100):
        client.usage.record("token_usage", "llm_tokens", 1, f"evt-{batch}-{i}")
    wait_for_senders(client, lambda handed, out: handed == batch + 1)
# batches 1-3 came back, acknowledged before batch 0
wait_for_senders(client, lambda handed, out: out == {0})
print("ready", client.stats()["recorded"], flush=True)
threading.Event().wait()
"""


def test_batches_acknowledged_out_of_order_survive_a_sigkill(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    env = {
        **os.environ, "KEY": api_key, "URL": server.base_url, "SPOOL": str(spool),
        "PYTHONPATH": CHILD_PATH,
    }  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", HELD_CHILD], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["ready", "300"]
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    # The next client replays what the server never answered for, and nothing is counted twice.
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=spool) as client:
        result = client.flush()
        summary = client.usage.summary()
    assert result["recorded"] == 100  # batch 0, which the killed process never got back
    assert summary["totalEvents"] == 400
    assert not list(spool.rglob("segment-*"))


def test_the_senders_connections_are_closed_with_the_client(
    server: LocalServer, api_key: str
) -> None:
    # Up to four senders at once, each on a connection of the client's pool: closing the client
    # closes them all, none is left for the garbage collector.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        client = Client(api_key=api_key, base_url=server.base_url, flush_at=1000, max_in_flight=4)
        for _ in range(4000):  # four batches, woken by flush_at: up to four senders at once
            client.usage.record("token_usage", "llm_tokens", 1)
        assert client.flush()["recorded"] == 4000
        client.close()
        del client
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
