"""The buffered shipper: record() off the hot path, every event accounted for, nothing lost."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Iterator

import httpx
import pytest
from freezegun import freeze_time

from bearlumen import Client, InvalidRequestError, NetworkError
from bearlumen._types import UsageRecordInput
from bearlumen.testing import LocalServer

from ._shipper_probe import shipper_of
from .conftest import RecordingSleep


class ObservedTransport(httpx.HTTPTransport):
    """The real transport to the real server, noting which thread sends and letting a test hold
    the worker inside a request until it opens `gate`."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.gate.wait()
        return super().handle_request(request)


@pytest.fixture
def transport() -> Iterator[ObservedTransport]:
    # Closed after the test: a client never closes the `http_client` it was given.
    with ObservedTransport() as observed:
        yield observed
        observed.gate.set()


@pytest.fixture
def observed(server: LocalServer, api_key: str, transport: ObservedTransport) -> Iterator[Client]:
    # The caller's httpx.Client is the caller's to close (Client leaves it open).
    with (
        httpx.Client(transport=transport) as http,
        Client(api_key=api_key, base_url=server.base_url, http_client=http) as c,
    ):
        yield c


def stored_events(client: Client) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = client.usage.query(limit=1000, offset=len(events))
        events += page["events"]
        if len(events) >= page["total"]:
            return events


def test_record_returns_before_any_network_io(
    observed: Client, transport: ObservedTransport
) -> None:
    transport.gate.clear()  # the server is unreachable until the gate opens
    result = observed.usage.record("token_usage", "llm_tokens", 10)
    assert result["recorded"] is True and result["idempotency_key"]
    assert threading.current_thread().name not in transport.threads
    transport.gate.set()
    assert observed.flush()["recorded"] == 1
    assert transport.threads == {"bearlumen-sender"}  # the worker's sender threads


def test_flush_delivers_everything_recorded_before_it(server: LocalServer, api_key: str) -> None:
    # An interval that never passes during the test: batches go out full, or at the flush.
    client = Client(api_key=api_key, base_url=server.base_url, flush_interval=3600)
    keys = [
        client.usage.record("token_usage", "llm_tokens", i)["idempotency_key"] for i in range(2500)
    ]
    result = client.flush()
    assert result["complete"] is True
    assert (result["recorded"], result["queued"], result["failed"], result["dropped"]) == (
        2500,
        0,
        0,
        0,
    )
    assert result["batches"] == 3  # chunks of at most 1000 (the server refuses more)
    assert len(set(keys)) == 2500
    assert sorted(e["idempotencyKey"] for e in stored_events(client)) == sorted(keys)
    client.close()


def test_a_repeated_idempotency_key_is_a_duplicate_and_sent_once(client: Client) -> None:
    first = client.usage.record("token_usage", "llm_tokens", 1, idempotency_key="job-42")
    second = client.usage.record("token_usage", "llm_tokens", 1, idempotency_key="job-42")
    assert first == {"recorded": True, "idempotency_key": "job-42"}
    assert second == {"recorded": False, "idempotency_key": "job-42"}
    client.flush()
    assert client.usage.summary()["totalEvents"] == 1


def test_the_server_dedups_what_the_client_no_longer_remembers(
    server: LocalServer, api_key: str
) -> None:
    for _ in range(2):
        with Client(api_key=api_key, base_url=server.base_url) as c:
            c.usage.record("token_usage", "llm_tokens", 1, idempotency_key="from-yesterday")
            result = c.flush()
    assert (result["recorded"], result["duplicate"]) == (0, 1)


def test_the_event_is_stamped_when_recorded_not_when_delivered(client: Client) -> None:
    with freeze_time("2024-03-01 12:00:00.25"):
        client.usage.record("token_usage", "llm_tokens", 5)
    client.flush()
    assert stored_events(client)[0]["timestamp"] == "2024-03-01T12:00:00.250000Z"


def test_every_argument_reaches_the_server(client: Client) -> None:
    client.usage.record(
        "token_usage", "llm_tokens", 1.5, "key-1", timestamp="2024-05-05T05:05:05+02:00",
        subscription_id="sub_1", end_user_id="eu_1", agent_id="bot", workflow_id="flow",
        metadata={"model": "m", "nested": {"a": [1, 2]}, "provider_cost_usd": 0.25},
    )  # fmt: skip
    client.flush()
    (stored,) = stored_events(client)
    assert stored["timestamp"] == "2024-05-05T03:05:05.000000Z"
    assert stored["quantity"] == 1.5 and stored["idempotencyKey"] == "key-1"
    assert (stored["subscriptionId"], stored["endUserId"], stored["agentId"], stored["workflowId"]) == (
        "sub_1", "eu_1", "bot", "flow",
    )  # fmt: skip
    assert stored["metadata"] == {"model": "m", "nested": {"a": [1, 2]}, "provider_cost_usd": 0.25}


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"event_type": "", "metric_name": "m", "quantity": 1}, "event_type"),
        ({"event_type": 5, "metric_name": "m", "quantity": 1}, "event_type"),
        ({"event_type": "t", "metric_name": None, "quantity": 1}, "metric_name"),
        ({"event_type": "t", "metric_name": "m" * 256, "quantity": 1}, "metric_name"),
        ({"event_type": "t", "metric_name": "m", "quantity": -1}, "quantity"),
        ({"event_type": "t", "metric_name": "m", "quantity": float("nan")}, "quantity"),
        ({"event_type": "t", "metric_name": "m", "quantity": float("inf")}, "quantity"),
        ({"event_type": "t", "metric_name": "m", "quantity": "10"}, "quantity"),
        ({"event_type": "t", "metric_name": "m", "quantity": True}, "quantity"),
        ({"event_type": "t", "metric_name": "m", "quantity": 10**30}, "quantity"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "agent_id": ""}, "agent_id"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "workflow_id": 3}, "workflow_id"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "metadata": []}, "metadata"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "metadata": {"provider_cost_usd": "1"}},
         "metadata.provider_cost_usd"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "metadata": {"provider_cost_usd": -2}},
         "metadata.provider_cost_usd"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "timestamp": "soon"}, "timestamp"),
        ({"event_type": "t", "metric_name": "m", "quantity": 1, "idempotency_key": ""}, "idempotency_key"),
    ],
)  # fmt: skip
def test_bad_input_raises_at_the_call_and_queues_nothing(
    client: Client, arguments: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.usage.record(**arguments)
    assert caught.value.param == param and param in str(caught.value)
    assert client.stats()["queued"] == 0 and client.flush()["sent"] == 0


def enqueue_unchecked(client: Client, key: str, metadata: dict[str, object]) -> None:
    """Queue an event record() would refuse, as a spool written by an older version may replay
    it: only the worker's own checks stand between it and the server."""
    shipper_of(client).enqueue(("t", "m", 1, key, time.time(), None, None, None, None, metadata))


def test_one_bad_event_never_costs_the_others_their_delivery(
    server: LocalServer, api_key: str
) -> None:
    failures: list[tuple[list[UsageRecordInput], BaseException]] = []
    with Client(
        api_key=api_key, base_url=server.base_url, on_error=lambda e, x: failures.append((e, x))
    ) as c:
        c.usage.record("t", "m", 1, "good-1")
        enqueue_unchecked(c, "not-json", {"when": object()})
        enqueue_unchecked(c, "not-a-number", {"score": float("nan")})
        c.usage.record("t", "m", 1, "nan-in-text", metadata={"note": "NaN and Infinity"})
        enqueue_unchecked(c, "too-big", {"blob": "x" * 20_000})
        c.usage.record("t", "m", 1, "good-2")
        result = c.flush()
        stored = stored_events(c)
    assert (result["recorded"], result["rejected"], result["failed"]) == (3, 3, 0)
    assert sorted(e["idempotencyKey"] for e in stored) == ["good-1", "good-2", "nan-in-text"]
    rejected = {events[0]["idempotency_key"]: exc for events, exc in failures}
    assert set(rejected) == {"not-json", "not-a-number", "too-big"}
    assert all(isinstance(exc, InvalidRequestError) for exc in rejected.values())
    assert rejected["too-big"].param == "metadata"


def test_a_full_queue_drops_the_new_event_and_counts_it(
    server: LocalServer,
    api_key: str,
    transport: ObservedTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport.gate.clear()
    # The worker moves events only when told to (flush): an interval passing between the
    # records below would empty the queue and make room for the ones meant to be dropped.
    client = Client(
        api_key=api_key, base_url=server.base_url, max_queue_size=3, flush_interval=3600,
        http_client=httpx.Client(transport=transport),
    )  # fmt: skip
    client.usage.record("t", "m", 0)
    client.flush(timeout=0.01)  # wakes the worker, which takes the event and waits at the gate
    assert transport.entered.wait(30)
    kept = [client.usage.record("t", "m", i) for i in range(1, 4)]
    dropped = [client.usage.record("t", "m", i) for i in range(4, 6)]
    assert all(r["recorded"] for r in kept)
    assert all(r["recorded"] is False and r.get("dropped") for r in dropped)
    assert client.stats()["dropped"] == 2
    refused = client.usage.record("t", "m", 9, "mine-1")
    assert refused["recorded"] is False and refused.get("dropped")
    transport.gate.set()
    assert client.flush()["recorded"] == 4
    # A dropped event was never queued: the same key may be recorded again.
    assert client.usage.record("t", "m", 9, "mine-1")["recorded"] is True
    result = client.close()
    assert (result["recorded"], result["dropped"]) == (5, 3)
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 1 and "3 usage event(s)" in drop_logs[0].getMessage()


def test_block_on_overflow_waits_for_space_instead(
    server: LocalServer, api_key: str, transport: ObservedTransport
) -> None:
    transport.gate.clear()
    # Space is made only by the flush below: an interval passing while the producer waits would
    # hand the queued events to a second sender and let it through while the worker is "held".
    client = Client(
        api_key=api_key, base_url=server.base_url, max_queue_size=2, on_overflow="block",
        flush_interval=3600, http_client=httpx.Client(transport=transport),
    )  # fmt: skip
    client.usage.record("t", "m", 0)
    client.flush(timeout=0.01)
    assert transport.entered.wait(30)
    client.usage.record("t", "m", 1)
    client.usage.record("t", "m", 2)
    returned = threading.Event()

    def producer() -> None:
        client.usage.record("t", "m", 3)
        returned.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not returned.wait(0.2)  # still blocked: the queue is full and the worker is held
    transport.gate.set()
    client.flush()  # the worker takes what is queued: room for the blocked producer
    thread.join(30)
    result = client.close()
    assert returned.is_set() and (result["recorded"], result["dropped"]) == (4, 0)


def test_flush_gives_up_at_its_timeout(observed: Client, transport: ObservedTransport) -> None:
    transport.gate.clear()
    observed.usage.record("t", "m", 1)
    assert observed.flush(timeout=0.05)["complete"] is False
    transport.gate.set()
    assert observed.flush()["complete"] is True


def test_exactly_once_through_429_503_drops_and_store_then_500(
    fault_server: LocalServer, api_key: str, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(
        script=["429:4", "503", "drop", "store_500", "ok", "store_500", "drop", "429:2"],
        rate_503=0.1, rate_drop=0.1, rate_store_500=0.1, seed=11,
    )  # fmt: skip
    # One batch at a time, so the waits line up with the script (test_inflight.py has many).
    client = Client(
        api_key=api_key,
        base_url=fault_server.base_url,
        sleep=recording_sleep,
        flush_at=500,
        max_in_flight=1,
    )
    for i in range(5000):
        client.usage.record("token_usage", "llm_tokens", i, metadata={"provider_cost_usd": 0.001})
    result = client.close(timeout=60)
    fault_server.set_faults()
    with Client(api_key=api_key, base_url=fault_server.base_url) as reader:
        summary = reader.usage.summary()
    assert result["complete"] and (result["failed"], result["rejected"], result["dropped"]) == (
        0,
        0,
        0,
    )
    assert result["recorded"] + result["duplicate"] == 5000
    assert result["duplicate"] == 0  # a replayed batch answers as first recorded
    assert summary["totalEvents"] == 5000 and summary["totalCost"] == 5.0
    assert result["retries"] == len(recording_sleep.waits) >= 7  # the script's seven faults
    assert recording_sleep.waits[0] >= 4.0  # never before the server's Retry-After


def test_delivery_gives_up_at_the_deadline_and_reports(api_key: str) -> None:
    with LocalServer() as base_url:
        pass  # nothing listens there any more
    failures: list[tuple[list[UsageRecordInput], BaseException]] = []
    client = Client(
        api_key=api_key, base_url=base_url, delivery_timeout=0.2,
        on_error=lambda events, exc: failures.append((events, exc)),
    )  # fmt: skip
    client.usage.record("t", "m", 7, "lost-cause")
    result = client.flush()
    assert (result["failed"], result["recorded"]) == (1, 0)
    ((events, exc),) = failures
    assert events[0]["idempotency_key"] == "lost-cause" and events[0]["quantity"] == 7
    assert isinstance(exc, NetworkError)
    client.close()


def test_a_failing_on_error_callback_never_reaches_the_caller(
    server: LocalServer, api_key: str
) -> None:
    def broken(events: object, exc: object) -> None:
        raise RuntimeError("callback bug")

    with Client(api_key=api_key, base_url=server.base_url, on_error=broken) as c:
        enqueue_unchecked(c, "bad", {"x": object()})
        c.usage.record("t", "m", 1)
        assert c.flush()["recorded"] == 1
        c.usage.record("t", "m", 2)
        assert c.flush()["recorded"] == 2


def test_flush_from_on_error_does_not_wait_for_itself(server: LocalServer, api_key: str) -> None:
    seen: list[bool] = []
    clients: list[Client] = []
    client = Client(
        api_key=api_key, base_url=server.base_url,
        on_error=lambda events, exc: seen.append(clients[0].flush(timeout=30)["complete"]),
    )  # fmt: skip
    clients.append(client)
    enqueue_unchecked(client, "bad", {"bad": object()})
    assert client.flush(timeout=30)["complete"] is True and seen == [True]
    client.close()


def test_record_after_close_is_dropped_counted_and_says_so(
    server: LocalServer, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client(api_key=api_key, base_url=server.base_url)
    client.usage.record("t", "m", 1)
    client.close()
    late = client.usage.record("t", "m", 2, "too-late")
    assert late == {"recorded": False, "idempotency_key": "too-late", "dropped": True}
    client.usage.record("t", "m", 3)
    stats = client.stats()
    assert (stats["recorded"], stats["dropped"]) == (1, 2)
    said = [
        r.getMessage() for r in caplog.records if "after the client was closed" in r.getMessage()
    ]
    assert len(said) == 1  # once per burst, not per event


def test_unbuffered_record_returns_the_servers_answer(server: LocalServer, api_key: str) -> None:
    with Client(api_key=api_key, base_url=server.base_url, buffered=False) as c:
        first = c.usage.record("token_usage", "llm_tokens", 3, "k", agent_id="bot")
        again = c.usage.record("token_usage", "llm_tokens", 3, "k")
        assert first["recorded"] is True and first["event"]["agentId"] == "bot"
        assert again["recorded"] is False and again["event"]["id"] == first["event"]["id"]
        assert c.stats()["sent"] == 0


def test_record_batch_checks_every_event_before_sending(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.usage.record_batch(
            [
                {"event_type": "t", "metric_name": "m", "quantity": 1},
                {"event_type": "t", "quantity": 1},
            ]  # type: ignore[list-item]
        )
    assert caught.value.param == "events[1].metric_name"
    with pytest.raises(InvalidRequestError, match=r"events\[0\].quantity"):
        client.usage.record_batch([{"event_type": "t", "metric_name": "m", "quantity": "1"}])  # type: ignore[list-item]
    with pytest.raises(InvalidRequestError, match="1 to 1000"):
        client.usage.record_batch([{"event_type": "t", "metric_name": "m", "quantity": 1}] * 1001)
    with pytest.raises(InvalidRequestError, match="1 to 1000"):
        client.usage.record_batch([])
    assert client.usage.summary()["totalEvents"] == 0


def test_stats_reports_every_counter(client: Client) -> None:
    assert set(client.stats()) == {
        "queued", "in_flight", "sent", "recorded", "duplicate", "rejected", "dropped", "failed", "retries", "batches",
    }  # fmt: skip


def test_gzip_bodies_arrive_whole(server: LocalServer, api_key: str) -> None:
    encodings: list[str | None] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            encodings.append(request.headers.get("content-encoding"))
            return super().handle_request(request)

    with httpx.Client(transport=Recording()) as http_client:
        with Client(
            api_key=api_key, base_url=server.base_url, compress=True, http_client=http_client
        ) as c:
            for i in range(1500):
                c.usage.record("token_usage", "llm_tokens", i, metadata={"note": "x" * 100})
            assert c.flush()["recorded"] == 1500
            batch = c.usage.record_batch(
                [{"event_type": "t", "metric_name": "m", "quantity": 1}] * 50
            )
            assert batch["recorded_count"] == 50 and c.usage.summary()["totalEvents"] == 1550
        assert not http_client.is_closed  # the caller's pool: the caller's to close
    assert encodings[:3] == ["gzip", "gzip", "gzip"]  # two shipper batches, one record_batch


# -- idempotency keys: taken while queued or in flight, kept once recorded ---------------------


class TamperingTransport(httpx.HTTPTransport):
    """The real transport to the real server, which spoils the quantity of the events whose key
    is in `spoil`, so that the server rejects them: a rejection of an event record() accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.spoil: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        for key in self.spoil:
            body = body.replace(
                b'"quantity":1,"idempotencyKey":"' + key.encode(),
                b'"quantity":-1,"idempotencyKey":"' + key.encode(),
            )
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
        spoiled = httpx.Request(request.method, request.url, headers=headers, content=body)
        return super().handle_request(spoiled)


def test_a_recorded_key_stays_a_duplicate_and_the_duplicate_is_counted(client: Client) -> None:
    assert client.usage.record("t", "m", 1, "once")["recorded"] is True
    assert client.flush()["recorded"] == 1
    again = client.usage.record("t", "m", 1, "once")
    assert again == {"recorded": False, "idempotency_key": "once"}
    stats = client.stats()
    assert (stats["recorded"], stats["duplicate"], stats["sent"]) == (1, 1, 1)


def test_a_rejected_key_may_be_recorded_again_and_is_delivered(
    server: LocalServer, api_key: str
) -> None:
    transport = TamperingTransport()
    transport.spoil.add("fix-me")
    with (
        httpx.Client(transport=transport) as http,
        Client(api_key=api_key, base_url=server.base_url, http_client=http) as client,
    ):
        client.usage.record("t", "m", 1, "fix-me")
        assert client.flush()["rejected"] == 1
        transport.spoil.clear()
        assert client.usage.record("t", "m", 1, "fix-me")["recorded"] is True
        result = client.flush()
        assert (result["rejected"], result["recorded"]) == (1, 1)
        assert [e["idempotencyKey"] for e in stored_events(client)] == ["fix-me"]


def test_a_failed_key_may_be_recorded_again_and_is_delivered(
    fault_server: LocalServer, api_key: str, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(rate_503=1.0)
    with Client(
        api_key=api_key, base_url=fault_server.base_url, delivery_timeout=0.2,
        sleep=recording_sleep,
    ) as client:  # fmt: skip
        client.usage.record("t", "m", 1, "try-again")
        assert client.flush()["failed"] == 1
        fault_server.set_faults()
        assert client.usage.record("t", "m", 1, "try-again")["recorded"] is True
        result = client.flush()
        assert (result["failed"], result["recorded"]) == (1, 1)


# -- outages are visible at once -----------------------------------------------------------


class HeldSleep:
    """An injected sleep that parks the worker between retries until the test lets it go."""

    def __init__(self) -> None:
        self.sleeping = threading.Semaphore(0)
        self.proceed = threading.Semaphore(0)

    def __call__(self, seconds: float) -> None:
        self.sleeping.release()
        self.proceed.acquire()


def test_an_outage_is_logged_at_once_drops_while_it_lasts_and_its_end_once(
    fault_server: LocalServer, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bearlumen")
    fault_server.set_faults(rate_503=1.0)
    held = HeldSleep()
    # No interval round: one passing while the first batch is held would send the late events on
    # a second sender, whose sleep would then take the test's turns (or wait for ever).
    client = Client(
        api_key=api_key, base_url=fault_server.base_url, max_queue_size=2, flush_interval=3600,
        sleep=held,
    )  # fmt: skip
    client.usage.record("t", "m", 1)
    client.flush(timeout=0)  # wakes the worker: its first attempt fails, then it waits
    assert held.sleeping.acquire(timeout=30)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1 and "delivery failing (503" in messages[0]
    assert "1 event(s) waiting" in messages[0]
    for i in range(5):  # two fit in the queue, three are dropped
        client.usage.record("t", "m", 1, f"late-{i}")
    held.proceed.release()  # another failed attempt; drops are reported before the next wait
    assert held.sleeping.acquire(timeout=30)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [m for m in messages if "dropped 3 usage event(s)" in m]
    assert len([m for m in messages if "delivery failing" in m]) == 1  # not per attempt
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and all(
        r.levelno == logging.DEBUG for r in retries if "attempt" in r.getMessage()
    )
    fault_server.set_faults()
    held.proceed.release()
    assert client.flush()["recorded"] == 3
    recovered = [r for r in caplog.records if "delivery recovered" in r.getMessage()]
    assert len(recovered) == 1
    client.close()


# -- on_overflow="block" on an event loop ----------------------------------------------------


def test_block_on_overflow_never_freezes_an_event_loop(
    api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalServer() as dead_url:
        pass  # the worker retries for ever, so the queue never drains
    client = Client(
        api_key=api_key, base_url=dead_url, max_queue_size=2, on_overflow="block",
        shutdown_timeout=0.5,
    )  # fmt: skip
    outcome: dict[str, Any] = {}

    async def app() -> None:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:  # what every other task on the loop experiences
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = loop.time()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        outcome["results"] = []
        for i in range(8):
            outcome["results"].append(client.usage.record("t", "m", 1, f"loop-{i}"))
            await asyncio.sleep(0)
        done.set()
        await ticking
        outcome["worst_gap"] = max(gaps)

    runner = threading.Thread(target=asyncio.run, args=(app(),))
    runner.start()
    runner.join(60)
    frozen = runner.is_alive()
    client.close()  # also frees a frozen loop, so the test ends either way
    runner.join(10)
    assert not frozen, "record() froze the event loop"
    dropped = [r for r in outcome["results"] if r.get("dropped")]
    # Two fit in the queue and a few went out in the worker's batch; the rest were dropped.
    assert dropped and client.stats()["dropped"] == len(dropped)
    # Each full-queue record() held the loop for at most LOOP_BLOCK_LIMIT (0.1 s), not for ever.
    assert outcome["worst_gap"] < 2.0
    assert any("dropped" in r.getMessage() for r in caplog.records)


def test_a_batch_over_the_servers_body_limit_is_halved_until_it_fits(
    fault_server: LocalServer, api_key: str
) -> None:
    # 1000 events of ~12 KB metadata make a ~12 MB body; the server caps bodies at 10 MiB and
    # answers 413 before reading it. Halved, each 500-event half fits.
    with Client(
        api_key=api_key,
        base_url=fault_server.base_url,
        compress=False,
        flush_at=1000,
        flush_interval=600,  # one chunk of exactly 1000: the worker wakes only when all wait
    ) as c:
        for n in range(1000):
            c.usage.record("t", "m", 1, f"large-{n}", metadata={"prompt": f"{n:06d}" * 2000})
        result = c.flush()
    assert (result["recorded"], result["rejected"], result["failed"]) == (1000, 0, 0)
    assert result["batches"] == 2
    by_status = httpx.get(fault_server.base_url + "/_admin/stats").json()["requestsByStatus"]
    assert (by_status.get("413"), by_status.get("200")) == (1, 2)
    assert fault_server.events_stored() == 1000


def test_caller_keys_are_remembered_across_a_generation_and_then_let_go(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bearlumen._outcomes.RECENT_KEYS_REMEMBERED", 4)  # generations of 2
    for key in ("k1", "k2", "k3"):
        assert client.usage.record("t", "m", 1, key)["recorded"] is True
    assert client.usage.record("t", "m", 1, "k1")["recorded"] is False  # the older generation
    for key in ("k4", "k5"):
        assert client.usage.record("t", "m", 1, key)["recorded"] is True
    # k1 has left the window: the client queues it, and the server answers it as a duplicate.
    assert client.usage.record("t", "m", 1, "k1")["recorded"] is True
    result = client.flush()
    assert (result["recorded"], result["duplicate"]) == (5, 2)
