"""Users' clocks are theirs: inside freezegun's `freeze_time` (or time-machine's `travel`) the
shipper retries, honours `flush(timeout=)`, ships every `flush_interval` and gives up at
`delivery_timeout` as it does on the real clock (`bearlumen._clock`)."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import subprocess
import sys
import threading
from typing import Iterator

import freezegun
import httpx
import pytest

import bearlumen._clock
from bearlumen import Client
from bearlumen.testing import LocalServer

from .conftest import hold_first_batch, unused_loopback_url


class Frozen:
    """A clock stopped the way a user's test stops it, and moved on the way it moves it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Frozen:
        if self.kind == "freezegun":
            self._move = self._stack.enter_context(freezegun.freeze_time(FROZEN_AT)).tick
        else:
            time_machine = pytest.importorskip("time_machine")
            self._move = self._stack.enter_context(time_machine.travel(FROZEN_AT, tick=False)).shift
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def move(self, seconds: float) -> None:
        self._move(datetime.timedelta(seconds=seconds))


FROZEN_AT = "2026-01-01 00:00:00"


@pytest.fixture(params=["freezegun", "time-machine"])
def frozen(request: pytest.FixtureRequest) -> Frozen:
    return Frozen(request.param)


def test_a_retry_inside_a_frozen_clock_goes_on_and_delivers_everything(
    fault_server: LocalServer, api_key: str, frozen: Frozen
) -> None:
    # The real backoff, not an injected sleep: its wait is the loop that a frozen clock stopped.
    fault_server.set_faults(script=["503"])
    with frozen, Client(api_key=api_key, base_url=fault_server.base_url) as client:
        for i in range(100):
            client.usage.record("token_usage", "llm_tokens", i)
        result = client.flush(timeout=10)
    assert result["complete"] is True
    assert (result["recorded"], result["failed"], result["retries"]) == (100, 0, 1)
    assert fault_server.events_stored() == 100


def test_a_frozen_clock_moved_past_delivery_timeout_does_not_give_up_a_batch(
    fault_server: LocalServer, api_key: str, frozen: Frozen, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_server.set_faults(script=["503"])
    arrived, release = hold_first_batch(fault_server, monkeypatch)
    with frozen, Client(api_key=api_key, base_url=fault_server.base_url) as client:
        client.usage.record("token_usage", "llm_tokens", 1)
        client.flush(timeout=0)  # the worker sends it now
        assert arrived.wait(30)
        frozen.move(3600)  # the user's test jumps an hour ahead, past delivery_timeout=600
        release.set()  # the batch is answered 503, and retried: only real seconds count
        result = client.flush(timeout=10)
    assert (result["recorded"], result["failed"], result["retries"]) == (1, 0, 1)


def test_delivery_timeout_and_flush_timeout_pass_inside_a_frozen_clock(
    fault_server: LocalServer, api_key: str, frozen: Frozen
) -> None:
    fault_server.set_faults(rate_503=1.0)
    with (
        frozen,
        Client(api_key=api_key, base_url=fault_server.base_url, delivery_timeout=0.5) as client,
    ):
        client.usage.record("token_usage", "llm_tokens", 1)
        assert client.flush(timeout=0)["complete"] is False  # returns at once, server down
        # The deadline passes on the real clock: the event is given up, and flush sees it end.
        result = client.flush(timeout=10)
        assert result["complete"] is True and result["failed"] == 1


class BatchSeen(httpx.HTTPTransport):
    """The real transport, telling the test when a batch request goes out."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/batch"):
            self.sent.set()
        return super().handle_request(request)


@pytest.fixture
def batch_seen() -> Iterator[BatchSeen]:
    with BatchSeen() as transport:
        yield transport


def test_flush_interval_ships_inside_a_frozen_clock(
    server: LocalServer, api_key: str, frozen: Frozen, batch_seen: BatchSeen
) -> None:
    with contextlib.ExitStack() as stack:
        stack.enter_context(frozen)
        http = stack.enter_context(httpx.Client(transport=batch_seen))
        client = stack.enter_context(
            Client(api_key=api_key, base_url=server.base_url, http_client=http, flush_interval=0.1)
        )
        client.usage.record("token_usage", "llm_tokens", 1)  # far below flush_at
        assert batch_seen.sent.wait(30)  # no flush(): the interval alone sends it


ASYNC_FLUSH = """
import asyncio, sys, freezegun, bearlumen

async def flush_with_the_server_down():
    client = bearlumen.AsyncClient(api_key="sk_test_clock", base_url=sys.argv[1])
    try:
        client.usage.record("token_usage", "llm_tokens", 1)
        return (await client.flush(timeout=0.2))["complete"]
    finally:
        await client.aclose(timeout=0)

with freezegun.freeze_time("2026-01-01"):
    print("complete:", asyncio.run(flush_with_the_server_down()))
"""


def test_an_async_flush_timeout_passes_inside_a_frozen_clock() -> None:
    # In a process of its own, with freezegun as a user has it: the event loop's clock stops
    # too (this suite's conftest lets asyncio keep real time, and a frozen loop here would stop
    # the session's server as well), so a loop timer would never fire.
    done = subprocess.run(
        [sys.executable, "-c", ASYNC_FLUSH, unused_loopback_url()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "complete: False", done.stderr  # returned, undelivered


def test_imported_inside_a_frozen_clock_the_clock_is_still_real() -> None:
    try:
        with freezegun.freeze_time(FROZEN_AT):
            clock = importlib.reload(bearlumen._clock).monotonic  # as if first imported here
            before = clock()
            threading.Event().wait(0.01)
            assert clock() > before  # it moves: not the frozen stand-in
    finally:
        importlib.reload(bearlumen._clock)
