"""The queued event (`_events.py`): its timestamps, its layout, and what it weighs in the queue."""

from __future__ import annotations

import logging
import random
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Iterator

import pytest

from bearlumen import Client
from bearlumen._batch_codec import wire_event
from bearlumen._events import (
    EVENT_BYTES,
    FIELDS,
    IDEMPOTENCY_KEY,
    METADATA,
    SEGMENT,
    TIMESTAMP,
    to_record_input,
)
from bearlumen._timestamps import format_epoch, format_utc
from bearlumen.testing import LocalServer

from ._shipper_probe import held_bytes, shipper_of


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Switch threads as often as the interpreter allows, so that races show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


# -- timestamps ------------------------------------------------------------------------------


def utc_text(seconds: float) -> str:
    return format_utc(datetime.fromtimestamp(seconds, timezone.utc))


def test_the_epoch_formatter_writes_the_canonical_form() -> None:
    for seconds in (0.0, 1.5, 1_700_000_000.999999, 1_732_579_200.000001, 4_102_444_799.25):
        assert format_epoch(seconds) == utc_text(seconds)[:20] + format_epoch(seconds)[20:]
        assert format_epoch(seconds)[:19] == utc_text(seconds)[:19]
    assert format_epoch(1_700_000_000.5) == "2023-11-14T22:13:20.500000Z"


def test_the_epoch_formatter_is_right_under_many_threads(eager_thread_switches: None) -> None:
    # Many different seconds from many threads at once: a cache written in two steps would pair
    # one second's number with another's text (a timestamp 20 s off).
    start = threading.Barrier(16)
    wrong: list[tuple[float, str]] = []

    def format_many(seed: int) -> None:
        draw = random.Random(seed)
        stamps = [1_700_000_000 + draw.randrange(40) + 0.25 for _ in range(3000)]
        start.wait()
        for stamp in stamps:
            text = format_epoch(stamp)
            if text[:19] != utc_text(stamp)[:19]:
                wrong.append((stamp, text))

    threads = [threading.Thread(target=format_many, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_timestamps_stored_under_16_threads_and_two_clients_fall_in_the_recording_window(
    server: LocalServer, api_key: str, eager_thread_switches: None
) -> None:
    clients = [Client(api_key=api_key, base_url=server.base_url, flush_at=50) for _ in range(2)]
    windows: dict[str, tuple[float, float]] = {}
    start = threading.Barrier(16)

    def record(index: int) -> None:
        client = clients[index % 2]
        start.wait()
        for n in range(100):
            key = f"thread-{index}-event-{n}"
            before = time.time()
            client.usage.record("token_usage", "llm_tokens", 1, key)
            windows[key] = (before, time.time())

    threads = [threading.Thread(target=record, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        assert client.close()["recorded"] == 800
    with Client(api_key=api_key, base_url=server.base_url) as reader:
        stored = []
        while len(stored) < 1600:
            stored += reader.usage.query(limit=1000, offset=len(stored))["events"]
    assert len(stored) == 1600
    for event in stored:
        before, after = windows[event["idempotencyKey"]]
        # Stored to the microsecond, cut (not rounded): within [before - 1 us, after].
        assert utc_text(before - 1e-6) <= event["timestamp"] <= utc_text(after), event


# -- the layout ------------------------------------------------------------------------------


def test_the_named_indexes_are_the_layout() -> None:
    event = tuple(f"<{name}>" for name in FIELDS)
    assert event[IDEMPOTENCY_KEY] == "<idempotency_key>" and event[METADATA] == "<metadata>"
    assert len(FIELDS) == SEGMENT  # the spool appends its segment after the fields
    stamped = (*event[:TIMESTAMP], 1_700_000_000.5, *event[TIMESTAMP + 1 : METADATA], {"k": 1})
    wire = wire_event(stamped)
    assert wire["timestamp"] == "2023-11-14T22:13:20.500000Z" and wire["metadata"] == {"k": 1}
    assert to_record_input(stamped)["idempotency_key"] == "<idempotency_key>"


# -- the queue's bytes bound -----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_queue_is_bounded_in_bytes_while_the_server_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound = 1024 * 1024
    client = Client(
        api_key="sk_test_down",
        base_url=f"http://127.0.0.1:{closed_port()}",
        max_queue_bytes=bound,
        delivery_timeout=600,
        flush_interval=600,  # nothing leaves the queue while recording, however slow the box
    )
    shipper = shipper_of(client)
    metadata = {"prompt": "x" * 10_000, "provider_cost_usd": 0.01}
    answers = []
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        for n in range(400):
            answers.append(client.usage.record("t", "m", 1, f"big-{n}", metadata=metadata))
            assert held_bytes(shipper) <= bound
        result = client.close(timeout=0.2)
    dropped = [a for a in answers if a.get("dropped")]
    accepted = [a for a in answers if a["recorded"]]
    # Each event weighs ~10.5 KB: about 97 fit.
    assert len(accepted) <= bound // (10_000 + EVENT_BYTES) + 1
    assert len(dropped) == 400 - len(accepted) >= 200
    assert result["dropped"] == len(dropped)
    assert result["failed"] == len(accepted)  # never delivered: failed, not lost
    assert "max_queue_bytes=1048576" in caplog.text


def test_small_events_are_bounded_by_count_not_bytes() -> None:
    client = Client(
        api_key="sk_test_down",
        base_url=f"http://127.0.0.1:{closed_port()}",
        max_queue_size=50,
        max_queue_bytes=50 * EVENT_BYTES,
        flush_interval=600,
    )
    answers = [client.usage.record("t", "m", 1, metadata={"model": "m"}) for _ in range(60)]
    assert sum(1 for a in answers if a["recorded"]) == 50
    assert client.close(timeout=0.1)["dropped"] == 10


def test_an_empty_queue_takes_any_one_event() -> None:
    client = Client(
        api_key="sk_test_down",
        base_url=f"http://127.0.0.1:{closed_port()}",
        max_queue_bytes=1,
        flush_interval=600,
    )
    assert client.usage.record("t", "m", 1, metadata={"blob": "x" * 5000})["recorded"] is True
    assert client.usage.record("t", "m", 1).get("dropped") is True
    client.close(timeout=0.1)
