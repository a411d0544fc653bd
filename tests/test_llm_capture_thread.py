"""`client.llm`'s capture thread: an instrumented call only queues what it returned, and the
thread records it without being woken by the call (waking a sleeping thread costs the call
more than the rest of the wrapper); a burst wakes it; at interpreter shutdown the call that
made a capture records it.

The thread is coordinated with events (a generous timeout only guards a hang), never with
sleeps.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any, List, Tuple

import httpx
import pytest

import bearlumen
from bearlumen._llm import _deferred
from bearlumen._llm._deferred import WAKE_AT, Deferred
from bearlumen.testing import FakeLLMProvider, LocalServer

GUARD = 30.0  # seconds: only a hang reaches it


class CountedEvent(threading.Event):
    """The thread's wake-up event, counting the calls that set it."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


class Recorder:
    """A Deferred's `run`: notes each capture and the thread that ran it."""

    def __init__(self, expected: int) -> None:
        self.ran: List[Tuple[Any, int]] = []
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, capture: Any) -> None:
        self.ran.append((capture, threading.get_ident()))
        if len(self.ran) >= self.expected:
            self.done.set()


def counted(deferred: Deferred) -> CountedEvent:
    """Give a Deferred, before its thread starts, a wake-up event that counts its sets."""
    deferred._wake = wake = CountedEvent()
    return wake


def test_a_call_does_not_wake_the_thread_which_records_it_at_its_next_look() -> None:
    recorder = Recorder(expected=3)
    deferred = Deferred(recorder, name="test-capture")
    wake = counted(deferred)
    deferred.start()
    for capture in ("a", "b", "c"):
        deferred.put(capture)
    assert recorder.done.wait(GUARD)
    assert [capture for capture, _ in recorder.ran] == ["a", "b", "c"]
    assert all(thread != threading.get_ident() for _, thread in recorder.ran)
    assert wake.sets == 0  # the calls never paid a wake-up


def test_a_burst_wakes_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deferred, "POLL", 3600.0)  # it would not look again for an hour
    recorder = Recorder(expected=WAKE_AT)
    deferred = Deferred(recorder, name="test-capture")
    wake = counted(deferred)
    deferred.start()
    for index in range(WAKE_AT - 1):
        deferred.put(index)
    assert wake.sets == 0 and not recorder.ran
    deferred.put(WAKE_AT - 1)  # the WAKE_AT-th capture waiting
    assert wake.sets == 1
    assert recorder.done.wait(GUARD)  # woken: it ran the burst, not an hour later
    assert [capture for capture, _ in recorder.ran] == list(range(WAKE_AT))


def test_after_the_exit_hook_a_capture_runs_in_the_call_that_made_it() -> None:
    recorder = Recorder(expected=1)
    deferred = Deferred(recorder, name="test-capture")
    deferred.start()
    deferred.put("before")
    deferred.run_on_callers_thread()  # what the exit hook does: runs what is queued...
    assert [capture for capture, _ in recorder.ran] == ["before"]
    deferred.put("during shutdown")  # ...then a finalizer's capture runs here, at once
    assert recorder.ran[-1] == ("during shutdown", threading.get_ident())


ABANDONED_STREAM = """
import os, openai, bearlumen
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          shutdown_timeout=1.0)
oai = client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=os.environ["PROVIDER"]))
oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
stream = oai.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
)
for chunk in stream:
    break  # left open: the stream's finalizer records the partial call at shutdown
"""


def test_a_stream_abandoned_at_exit_is_counted_dropped_and_the_process_ends(
    server: LocalServer, api_key: str
) -> None:
    with FakeLLMProvider(chunks=4) as fake:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(ABANDONED_STREAM)],
            env={**os.environ, "KEY": api_key, "URL": server.base_url,
                 "PROVIDER": fake.openai_base_url},
            capture_output=True, text=True, timeout=1.0 + 5,  # shutdown_timeout + 5 s
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The completed call is delivered by the exit hooks; the partial one, captured after the
    # client closed, is dropped and said so, never lost in silence nor a hang.
    assert "the event is dropped (1 dropped in all)" in done.stderr
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as reader:
        events = reader.usage.query(limit=10)["events"]
    assert [e["metadata"]["partial"] for e in events] == [False]


# -- every way a process ends records what the capture thread has not run yet -----------------

QUEUED_AT_SIGTERM = """
import os, time, openai, bearlumen
from bearlumen._llm import _deferred
_deferred.POLL = 3600.0  # the capture thread would not look at its queue again for an hour
client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          flush_interval=3600)
oai = client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=os.environ["PROVIDER"]))
for _ in range(3):
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
print("queued", len(client.llm._deferred._pending), flush=True)
while True:  # until killed; awake now and then, as an app's main thread is, to run handlers
    time.sleep(0.05)
"""


def test_calls_still_queued_for_the_capture_thread_are_delivered_on_sigterm(
    server: LocalServer, api_key: str
) -> None:
    with FakeLLMProvider() as fake, subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(QUEUED_AT_SIGTERM)],
        env={**os.environ, "KEY": api_key, "URL": server.base_url,
             "PROVIDER": fake.openai_base_url},
        stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "queued 3"
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == -signal.SIGTERM  # ends as it would have
    assert len(stored(server, api_key)) == 3


QUEUED_IN_A_POOL_WORKER = """
import multiprocessing, os, sys, openai, bearlumen
from bearlumen._llm import _deferred

def call(n):
    _deferred.POLL = 3600.0  # the capture thread would not look at its queue again for an hour
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    return len(client.llm._deferred._pending)

client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"],
                          flush_interval=3600)
oai = client.llm.instrument(openai.OpenAI(api_key="sk-fake", base_url=os.environ["PROVIDER"]))
if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(1) as pool:
        print("queued", max(pool.map(call, range(4), chunksize=1)), flush=True)
        pool.close()
        pool.join()  # the worker ends with os._exit, after multiprocessing's finalizers
"""


def test_calls_still_queued_when_a_pool_worker_ends_are_delivered(
    server: LocalServer, api_key: str, tmp_path: Any
) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    script = tmp_path / "pool_job.py"
    script.write_text(textwrap.dedent(QUEUED_IN_A_POOL_WORKER))
    with FakeLLMProvider() as fake:
        done = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, "KEY": api_key, "URL": server.base_url,
                 "PROVIDER": fake.openai_base_url},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) >= 1  # the worker ended with captures still queued
    assert len(stored(server, api_key)) == 4


def stored(server: LocalServer, api_key: str) -> List[Any]:
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as reader:
        events: List[Any] = reader.usage.query(limit=100)["events"]
    return events


ASYNC_LLM_APP = """
import os, openai, bearlumen

client = bearlumen.Client(api_key=os.environ["KEY"], base_url=os.environ["URL"])
oai = client.llm.instrument(
    openai.AsyncOpenAI(api_key="sk-fake", base_url=os.environ["PROVIDER"], max_retries=0)
)

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print("ready", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    answer = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": answer.id.encode()})
"""


def test_gunicorn_preloaded_uvicorn_worker_making_only_llm_calls_delivers_them_on_sigterm(
    server: LocalServer, api_key: str, tmp_path: Any
) -> None:
    # The app records nothing itself: its events are recorded on the capture thread, which
    # cannot put back the SIGTERM handler gunicorn's worker reset after the fork; uvicorn then
    # re-raised SIGTERM with the default, and the worker died with its last events (0 of 40
    # in a helper's trial). The first instrumented call, on the event loop's main thread, does.
    (tmp_path / "llm_app.py").write_text(textwrap.dedent(ASYNC_LLM_APP))
    sock = socket.create_server(("127.0.0.1", 0))
    sock.set_inheritable(True)
    host, port = sock.getsockname()
    with sock, FakeLLMProvider() as fake:
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "1",
             "--preload", "--bind", f"fd://{sock.fileno()}", "llm_app:app"],
            cwd=tmp_path, pass_fds=[sock.fileno()], start_new_session=True, text=True,
            env={**os.environ, "KEY": api_key, "URL": server.base_url,
                 "PROVIDER": fake.openai_base_url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert gunicorn.stdout is not None
            assert gunicorn.stdout.readline().strip() == "ready"
            with httpx.Client(base_url=f"http://{host}:{port}") as http:
                for _ in range(20):
                    assert http.get("/").status_code == 200
            gunicorn.send_signal(signal.SIGTERM)  # right after the last answer
            assert gunicorn.wait(60) == 0, gunicorn.stderr.read()  # type: ignore[union-attr]
        finally:
            if gunicorn.poll() is None:
                os.killpg(gunicorn.pid, signal.SIGKILL)
                gunicorn.wait()
            for stream in (gunicorn.stdout, gunicorn.stderr):
                if stream is not None:
                    stream.close()
    assert len(stored(server, api_key)) == 20
