"""`on_overflow="block"` never stalls an app: on an event loop's thread (and on the LLM path) a
record() that finds the queue full waits a little, once; after a drop the next ones drop at once
until the worker has made room again. Checked with a real uvicorn app whose Bear Lumen server is
down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import bearlumen

from .conftest import end_process_group, unused_loopback_url

SHUTDOWN_TIMEOUT = 2.0

# A handler that records 20 events per request, as a busy app does, with nothing listening at
# URL: the queue (10 events) is full after the first request and stays full.
APP = """
import os
import bearlumen

client = bearlumen.Client(
    api_key="sk_test_block", base_url=os.environ["URL"], on_overflow="block",
    max_queue_size=10, max_in_flight=1, flush_at=10,
    shutdown_timeout=float(os.environ["SHUTDOWN_TIMEOUT"]),
)

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                os.write(1, b"ready\\n")
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/work":
        for i in range(20):
            client.usage.record("token_usage", "llm_tokens", i)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The app under uvicorn, on a loopback socket handed over by its file descriptor."""
    (tmp_path / "block_app.py").write_text(textwrap.dedent(APP))
    listening = socket.create_server(("127.0.0.1", 0))
    listening.set_inheritable(True)
    env = {**os.environ, "URL": unused_loopback_url(), "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}
    command = [
        sys.executable, "-m", "uvicorn", "block_app:app", "--fd", str(listening.fileno()),
        "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, pass_fds=[listening.fileno()], start_new_session=True,
    )  # fmt: skip
    host, port = listening.getsockname()
    listening.close()  # the app's now: once it ends, connections are refused, not left waiting
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process, f"http://{host}:{port}"
    finally:
        end_process_group(process)


def test_block_mode_on_an_event_loop_keeps_the_app_answering_and_sigterm_ends_it(
    app_server: tuple[subprocess.Popen[str], str],
) -> None:
    process, base_url = app_server
    stop_load = threading.Event()
    served = threading.Semaphore(0)

    def load() -> None:  # /work back to back, until the test is done
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while not stop_load.is_set():
                try:
                    http.get("/work")
                except httpx.HTTPError:  # the server is shutting down
                    return
                served.release()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for _ in range(5):  # the queue is full and the handler records on
            assert served.acquire(timeout=30)
        # Under load, /ping answers within a second, every time (ReadTimeout otherwise).
        with httpx.Client(base_url=base_url, timeout=1.0) as http:
            for _ in range(10):
                assert http.get("/ping").status_code == 200
                assert served.acquire(timeout=30)  # and /work goes on between the pings
        process.send_signal(signal.SIGTERM)  # while the load goes on
        # Ends within shutdown_timeout (+ a margin): TimeoutExpired otherwise.
        process.wait(timeout=SHUTDOWN_TIMEOUT + 5)
    finally:
        stop_load.set()
        loader.join(30)
    assert process.stderr is not None
    log = process.stderr.read()
    assert "dropped" in log and "the queue is full" in log, log  # counted and logged


def test_block_mode_on_the_llm_path_is_bounded_then_drops_and_counts() -> None:
    # Nothing listening: one batch retried for ever, one waiting for a sender, the queue full.
    client = bearlumen.Client(
        api_key="sk_test_block", base_url=unused_loopback_url(), on_overflow="block",
        max_queue_size=1, max_in_flight=1, flush_at=1, shutdown_timeout=0.5,
    )  # fmt: skip
    for i in range(3):  # a plain record() waits for room: these fill what can be filled
        assert client.usage.record("token_usage", "llm_tokens", i)["recorded"] is True
    results: list[bearlumen.UsageRecordResult] = []

    def llm_calls() -> None:  # an app's metered calls: each waits on its recording
        for i in range(5):
            response = {"id": f"chatcmpl-{i}", "model": "gpt-4o", "usage": {"prompt_tokens": 7}}
            results.append(client.llm.record(response, provider="openai"))

    caller = threading.Thread(target=llm_calls)
    caller.start()
    caller.join(20)  # LLM_BLOCK_LIMIT (1 s) for the first, none for the rest
    stalled = caller.is_alive()
    result = client.close()  # frees a stalled caller, so the test ends either way
    caller.join(10)
    assert not stalled, "an LLM call stalled behind the full queue"
    assert [r.get("dropped") for r in results] == [True] * 5
    assert result["dropped"] == 5
