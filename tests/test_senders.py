"""An outage is visible at once: an attempt the server never answers, a flush() that waits on a
dead server, drops that go on for minutes; and the delivery deadline is a deadline."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Iterator

import pytest

import bearlumen._outcomes
import bearlumen._senders
from bearlumen import Client
from bearlumen._outcomes import DROP_LOG_EVERY, Outcomes
from bearlumen.testing import LocalServer


class LogWaiter(logging.Handler):
    """Sets `seen` when a bearlumen record containing `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.seen.set()


@pytest.fixture
def log_waiter() -> Iterator[Any]:
    logger = logging.getLogger("bearlumen")
    added: list[LogWaiter] = []

    def make(text: str) -> LogWaiter:
        added.append(LogWaiter(text))
        logger.addHandler(added[-1])
        return added[-1]

    yield make
    for handler in added:
        logger.removeHandler(handler)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that takes connections and never answers: listening, never accepting."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"


def test_an_attempt_the_server_never_answers_is_logged_before_it_times_out(
    silent_url: str, api_key: str, log_waiter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SLOW_ANSWER_WARNING is 5 s; at 0 the watch's next tick (1 s) tells, and the test is short.
    monkeypatch.setattr(bearlumen._senders, "SLOW_ANSWER_WARNING", 0.0)
    waiter = log_waiter("no answer from the server")
    client = Client(api_key=api_key, base_url=silent_url, timeout=60, flush_interval=3600)
    client.usage.record("t", "m", 1)
    client.flush(timeout=0)
    assert waiter.seen.wait(30)
    stats = client.stats()
    assert (stats["retries"], stats["in_flight"]) == (0, 1)  # the first attempt is still out
    assert "1 event(s) waiting" in waiter.messages[0] and "timeout=60" in waiter.messages[0]
    client.close(timeout=0)


def test_flush_tells_at_once_that_it_waits_on_a_failing_delivery(
    api_key: str, log_waiter: Any
) -> None:
    with LocalServer() as dead_url:
        pass  # nothing listens there any more
    failing = log_waiter("usage delivery failing")
    waiting = log_waiter("flush() is waiting while usage delivery fails")
    client = Client(api_key=api_key, base_url=dead_url, flush_interval=3600)
    client.usage.record("t", "m", 1)
    client.flush(timeout=0)
    assert failing.seen.wait(30)
    assert client.flush(timeout=0.1)["complete"] is False
    assert waiting.seen.is_set()
    assert "delivery_timeout=600.0s" in waiting.messages[0]
    client.close(timeout=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_drops_are_logged_at_once_then_at_most_every_few_seconds_with_their_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(bearlumen._outcomes, "monotonic", clock)
    outcomes = Outcomes(
        on_error=None, spooled=False,
        max_queue_size=10, max_queue_bytes=1000,
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="bearlumen")

    def drop_and_report(drops: int, seconds_later: float) -> None:
        clock.now += seconds_later
        for _ in range(drops):
            outcomes.count_drop()
        outcomes.report_bursts()

    drop_and_report(3, 0)  # the first drops: at once
    for _ in range(4):
        drop_and_report(1000, 1)  # every second while they go on: not a line each
    drop_and_report(1000, 1)  # five seconds on: one line, with everything since the first
    drop_and_report(1, 60)  # a new burst after a quiet minute: at once
    drop_and_report(2, 1)
    outcomes.report_bursts(final=True)  # at close: whatever is left
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert [line.split(":")[1].split("(")[0].strip() for line in lines] == [
        "dropped 3 usage event",
        "dropped 5000 usage event",
        "dropped 1 usage event",
        "dropped 2 usage event",
    ]
    assert "(5003 in all)" in lines[1] and DROP_LOG_EVERY == 5.0


def test_the_delivery_deadline_cuts_short_an_attempt_that_would_overshoot_it(
    silent_url: str, api_key: str
) -> None:
    # Each attempt may take 60 s, the delivery deadline is half a second: the first attempt
    # must end at the deadline (counted failed) instead of waiting its whole minute.
    failures: list[BaseException] = []
    client = Client(
        api_key=api_key, base_url=silent_url, timeout=60, delivery_timeout=0.5,
        on_error=lambda events, exc: failures.append(exc),
    )  # fmt: skip
    client.usage.record("t", "m", 1)
    result = client.flush(timeout=30)  # a guard: without the cut, still waiting at 30 s
    assert result["complete"] and (result["failed"], result["in_flight"]) == (1, 0)
    assert len(failures) == 1 and "Timeout" in str(failures[0])
    client.close(timeout=0)
