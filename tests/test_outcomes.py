"""Every event ends in one outcome, counted once, whatever the other side answers: 200 answers
that do not confirm an event, close() while a batch is halved or still out, and the count
`queued + in_flight + recorded + duplicate + rejected + dropped + failed` at every moment.

The wrong answers come from a small standard-library server (`FakeApi`): the local server
answers correctly, and cannot be made to answer wrongly.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bearlumen import Client, InvalidRequestError
from bearlumen._batch_codec import ALL_RECORDED, batch_answer_reader, read_results
from bearlumen._types import ShipperStats
from bearlumen.testing import LocalServer

from ._shipper_probe import join_senders, on_senders_stop, shipper_of, wake_worker
from .conftest import RecordingSleep

OUTCOMES = ("queued", "in_flight", "recorded", "duplicate", "rejected", "dropped", "failed")

# What the fake answers to a batch of `n` events: (status, body).
Answer = Callable[[int], "tuple[int, bytes]"]


def accounted(stats: ShipperStats) -> int:
    """Every event counted somewhere: the invariant's left-hand side."""
    return sum(stats[name] for name in OUTCOMES)  # type: ignore[literal-required]


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up (a close() that gave up) is expected here, not a traceback on
    the run's output; any other error in a handler still prints."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeApi:
    """A batch endpoint on loopback that answers what the test says; `hold` (when given) keeps
    the answer to the request numbered `hold_request` until `release` is set."""

    def __init__(self, answer: Answer, *, hold_request: int | None = None) -> None:
        self.answer = answer
        self.hold_request = hold_request
        self.held = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                number = len(fake.batches)
                fake.batches.append(body["events"])
                if number == fake.hold_request:
                    fake.held.set()
                    fake.release.wait(30)
                status, content = fake.answer(len(body["events"]))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeApi]]:
    made: list[FakeApi] = []

    def make(answer: Answer, **options: Any) -> FakeApi:
        made.append(FakeApi(answer, **options))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def results(*entries: Any, **extra: Any) -> Answer:
    return lambda n: (200, json.dumps({"results": list(entries), **extra}).encode())


def recorded(*indexes: int) -> list[dict[str, Any]]:
    return [{"index": i, "status": "recorded", "id": f"evt_{i}"} for i in indexes]


def body(content: bytes) -> Answer:
    return lambda n: (200, content)


def all_recorded(n: int) -> tuple[int, bytes]:
    return 200, json.dumps({"results": recorded(*range(n))}, separators=(",", ":")).encode()


# name: (the answer to a batch of 4, the positions it confirms recorded)
WRONG_ANSWERS: dict[str, tuple[Answer, list[int]]] = {
    "no results": (body(b'{"ok": true}'), []),
    "empty results": (results(), []),
    "results for half": (results(*recorded(0, 1)), [0, 1]),
    "malformed entries": (
        results("x", 3, None, {"index": "2", "status": "recorded"}, *recorded(1)),
        [1],
    ),
    "an unknown index": (results(*recorded(0, 1, 2, 99)), [0, 1, 2]),
    "a repeated index": (results(*recorded(0, 0, 1, 2)), [1, 2]),
    "an unknown status": (results({"index": 3, "status": "stored"}, *recorded(0, 1, 2)), [0, 1, 2]),
    "a boolean index": (
        results({"index": True, "status": "recorded"}, *recorded(0, 2, 3)),
        [0, 2, 3],
    ),
    "not an object": (body(b"[]"), []),
    "null": (body(b"null"), []),
    "no body": (body(b""), []),
    "compact, the last index wrong": (
        body(
            b'{"results":['
            + b",".join(b'{"index":%d,"status":"recorded"}' % i for i in (0, 1, 2, 7))
            + b"]}"
        ),
        [0, 1, 2],
    ),
}


@pytest.mark.parametrize("name", list(WRONG_ANSWERS))
def test_an_answer_that_does_not_confirm_an_event_fails_it_once(
    fake_api: Callable[..., FakeApi], api_key: str, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    answer, confirmed = WRONG_ANSWERS[name]
    fake = fake_api(answer)
    failures: list[tuple[list[Any], BaseException]] = []
    client = Client(
        api_key=api_key, base_url=fake.base_url, flush_interval=3600,
        on_error=lambda events, exc: failures.append((events, exc)),
    )  # fmt: skip
    for i in range(4):
        client.usage.record("t", "m", 1, f"key-{i}")
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        result = client.flush()
        client.close()
    unconfirmed = [f"key-{i}" for i in range(4) if i not in confirmed]
    assert (result["recorded"], result["failed"]) == (len(confirmed), len(unconfirmed))
    assert accounted(result) == 4 and (result["queued"], result["in_flight"]) == (0, 0)
    handed = [event["idempotency_key"] for events, _ in failures for event in events]
    assert sorted(handed) == unconfirmed  # each once
    assert all("did not confirm" in str(exc) for _, exc in failures)
    told = [r.getMessage() for r in caplog.records if "did not confirm" in r.getMessage()]
    assert len(told) == (1 if unconfirmed else 0)
    if unconfirmed:
        assert f"did not confirm {len(unconfirmed)} usage event(s)" in told[0]


def test_a_thousand_unreadable_results_are_told_in_one_short_line(
    fake_api: Callable[..., FakeApi], api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Every index a float (another API version, a proxy re-encoding the JSON): the log line and
    # on_error's error say how many and show one, not a thousand.
    def answer(n: int) -> tuple[int, bytes]:
        floats = [{"index": float(i), "status": "recorded"} for i in range(n)]
        return 200, json.dumps({"results": floats}).encode()

    failures: list[BaseException] = []
    client = Client(
        api_key=api_key, base_url=fake_api(answer).base_url, flush_interval=3600,
        on_error=lambda events, exc: failures.append(exc),
    )  # fmt: skip
    for i in range(1000):
        client.usage.record("t", "m", 1, f"key-{i}")
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        assert client.flush()["failed"] == 1000
        client.close()
    (told,) = [r.getMessage() for r in caplog.records if "did not confirm" in r.getMessage()]
    assert "1000 result(s) for no event of the batch (the first: {'index': 0.0" in told
    assert len(told) < 400 and all(len(str(exc)) < 300 for exc in failures)


def test_a_rejected_result_is_rejected_with_the_servers_error(
    fake_api: Callable[..., FakeApi], api_key: str
) -> None:
    error = {"type": "invalid_request_error", "message": "quantity is wrong", "param": "quantity"}
    fake = fake_api(results(*recorded(0), {"index": 1, "status": "rejected", "error": error}))
    failures: list[BaseException] = []
    with Client(
        api_key=api_key, base_url=fake.base_url, on_error=lambda events, exc: failures.append(exc)
    ) as client:
        client.usage.record("t", "m", 1)
        client.usage.record("t", "m", 2)
        result = client.flush()
    assert (result["recorded"], result["rejected"], result["failed"]) == (1, 1, 0)
    assert len(failures) == 1 and isinstance(failures[0], InvalidRequestError)
    assert failures[0].param == "quantity" and "quantity is wrong" in str(failures[0])


def test_the_spool_keeps_only_what_the_server_did_not_confirm(
    fake_api: Callable[..., FakeApi], server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    fake = fake_api(results(*recorded(0, 1)))  # confirms the first two of four
    with Client(api_key=api_key, base_url=fake.base_url, spool_dir=spool) as client:
        for i in range(4):
            client.usage.record("t", "m", 1, f"spooled-{i}")
        assert client.flush()["failed"] == 2
    # The segment was not deleted: the next client replays the two the answer did not confirm
    # (a segment goes whole, once every event in it is answered for: the two confirmed ones
    # come again too, and a server that had them answers them as duplicates).
    with Client(api_key=api_key, base_url=server.base_url, spool_dir=spool) as client:
        client.flush()
        stored = {e["idempotencyKey"] for e in client.usage.query()["events"]}
    assert {"spooled-2", "spooled-3"} <= stored


def test_an_answer_of_the_servers_own_form_is_read_by_bytes_and_any_other_in_full() -> None:
    _, exact = all_recorded(3)
    assert batch_answer_reader(3)(exact) is ALL_RECORDED
    assert read_results(ALL_RECORDED, 3).recorded == range(3)
    for wrong in (b'{"ok":true}', b'{"results":[]}', exact.replace(b'"index":2', b'"index":5')):
        assert batch_answer_reader(3)(wrong) == json.loads(wrong)
        assert read_results(json.loads(wrong), 3).unconfirmed


# -- close() while a batch is halved or out ---------------------------------------------------


def too_large_when_more_than(limit: int) -> Answer:
    """413 for a batch of more than `limit` events (halved by the senders), else all recorded."""

    def answer(n: int) -> tuple[int, bytes]:
        if n > limit:
            error = {"error": {"type": "invalid_request_error", "message": "too large"}}
            return 413, json.dumps(error).encode()
        return all_recorded(n)

    return answer


@pytest.mark.parametrize("held_half", ["first", "second"])
def test_close_while_a_batch_is_halved_counts_each_event_once(
    fake_api: Callable[..., FakeApi], api_key: str, caplog: pytest.LogCaptureFixture, held_half: str
) -> None:
    # 8 events, refused whole (413) and halved; one half's answer is held (the first: the second
    # half is not sent yet; the second: the first half was recorded). Meanwhile every event is
    # in exactly one place. close() gives up on what is out, counted failed once; the answer
    # that comes later is not counted, and the halving stops (going on would send over closed
    # connections: a "client has been closed" traceback, and the batch failed whole again).
    fake = fake_api(too_large_when_more_than(4), hold_request=1 if held_half == "first" else 2)
    recorded_first = 0 if held_half == "first" else 4
    failures: list[list[Any]] = []
    client = Client(
        api_key=api_key, base_url=fake.base_url, flush_interval=3600,
        on_error=lambda events, exc: failures.append(events),
    )  # fmt: skip
    for i in range(8):
        client.usage.record("t", "m", 1, f"half-{i}")
    client.flush(timeout=0)
    assert fake.held.wait(30)
    halving = client.stats()
    assert (halving["recorded"], halving["in_flight"]) == (recorded_first, 8 - recorded_first)
    assert accounted(halving) == 8
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        result = client.close(timeout=0)  # closes the client's connections too
        fake.release.set()
        join_senders(client)
    final = client.stats()
    assert (result["recorded"], result["failed"]) == (recorded_first, 8 - recorded_first)
    assert accounted(result) == 8
    assert {k: final[k] for k in OUTCOMES} == {k: result[k] for k in OUTCOMES}  # type: ignore[literal-required]
    assert sorted(e["idempotency_key"] for events in failures for e in events) == [
        f"half-{i}" for i in range(recorded_first, 8)
    ]
    assert not [r for r in caplog.records if r.exc_info]  # no "client has been closed" traceback
    assert len(fake.batches) == (2 if held_half == "first" else 3)  # nothing sent after close


# -- the invariant, under load -----------------------------------------------------------------


def test_every_call_is_accounted_for_at_every_moment_under_load(
    fault_server: LocalServer, api_key: str, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(rate_503=0.2, rate_drop=0.1, seed=3)
    client = Client(
        api_key=api_key, base_url=fault_server.base_url, sleep=recording_sleep,
        flush_at=50, max_queue_size=400, max_in_flight=4,
    )  # fmt: skip
    calls = threading.Lock()
    begun = [0]  # calls begun, and returned: a sample's bounds (each only grows)
    done = [0]
    stop = threading.Event()
    seen: list[tuple[int, int, int]] = []

    def produce(worker: int) -> None:
        for i in range(1500):
            with calls:
                begun[0] += 1
            # Every fifth key repeats the one before it: a duplicate of the client's own.
            client.usage.record("t", "m", 1, f"load-{worker}-{i - (i % 5 == 4)}")
            with calls:
                done[0] += 1

    def sample() -> None:
        while not stop.is_set():
            with calls:
                low = done[0]
            total = accounted(client.stats())
            with calls:
                high = begun[0]
            seen.append((low, total, high))

    producers = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(120)
    result = client.close(timeout=60)
    stop.set()
    sampler.join(30)
    assert len(seen) > 100
    assert [s for s in seen if not s[0] <= s[1] <= s[2]] == []
    assert accounted(result) == 6000
    assert result["duplicate"] > 0 and result["dropped"] > 0  # both kinds happened


def test_flush_from_on_error_while_close_gives_up_does_not_wait_for_ever(
    fake_api: Callable[..., FakeApi], api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # close() gives up on a batch whose answer is held, and calls on_error on the closing
    # thread. A flush() from there, once the worker has stopped delivering (it waits for its
    # senders, one held by the silent answer), must not wait for a marker no one will reach.
    fake = fake_api(all_recorded, hold_request=0)
    flushed: list[bool] = []
    worker_stopping = threading.Event()

    def on_error(events: list[Any], exc: BaseException) -> None:
        wake_worker(client)  # close() wakes it only once on_error has returned
        assert worker_stopping.wait(30)
        flushed.append(client.flush()["complete"])

    client = Client(api_key=api_key, base_url=fake.base_url, flush_interval=3600, on_error=on_error)
    on_senders_stop(client, monkeypatch, worker_stopping.set)
    client.usage.record("t", "m", 1)
    client.flush(timeout=0)
    assert fake.held.wait(30)
    closing = threading.Thread(target=client.close, kwargs={"timeout": 0}, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive() and flushed == [True]


def test_a_sigterm_flush_asked_while_close_stops_the_senders_is_answered_not_waited_out(
    server: LocalServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM's helper queues a flush marker and waits for it (up to shutdown_timeout). Queued
    # after the worker's last sweep, while it stopped its senders, the marker was never
    # answered: the process took its whole shutdown_timeout to end (a helper's uvicorn trial).
    stopping, go = threading.Event(), threading.Event()

    def hold_the_stop() -> None:
        stopping.set()
        assert go.wait(30)

    client = Client(api_key=api_key, base_url=server.base_url, flush_interval=3600)
    client.usage.record("t", "m", 1)
    client.flush(timeout=30)  # the worker runs
    on_senders_stop(client, monkeypatch, hold_the_stop)
    client.close(timeout=0)  # gives up at once, and stops waiting for the held worker
    assert stopping.wait(30)
    done = shipper_of(client).start_exit_flush()  # what the SIGTERM helper does now
    go.set()
    assert done is None or done.wait(10)
