"""Shared fixtures: one real local server for the session, a fresh tenant (API key) per test.

Each API key is its own tenant on the local server, so tests that share the server never see
each other's data. Tests that inject faults get a server of their own (`fault_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import traceback
import tracemalloc
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import freezegun
import httpx
import pytest
from hypothesis import settings

import bearlumen
from bearlumen.testing import LocalServer

# freezegun patches time for every thread; the server's event loop (asyncio) and the HTTP stack
# run in other threads of this process and must keep real time, or their timers never fire.
freezegun.configure(
    extend_ignore_list=["asyncio", "uvicorn", "anyio", "starlette", "httpcore", "httpx"]
)


# A socket or file left open is a leak a user's app would inherit: the run fails on any
# ResourceWarning. It cannot be an error inside a test (the garbage collector finds a leak in
# whichever test runs next, an innocent one), so each is recorded with the test it surfaced in,
# a last collection at the end catches the rest, and the session fails naming them all.
_leaks: list[str] = []

# Where each socket of this process was made, so that a leak report names the code that opened
# it (tracemalloc would too, at several times the run's length). Keyed by id(): a socket is
# alive when it is reported, so its id is its own.
_socket_made_at: dict[int, str] = {}
_open_socket = socket.socket.__init__
_LIBRARIES = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"])


def _remember_where_made(self: socket.socket, *args: Any, **kwargs: Any) -> None:
    _open_socket(self, *args, **kwargs)
    frames = traceback.extract_stack(limit=40)[:-1]
    ours = [f for f in frames[:-3] if not f.filename.startswith(_LIBRARIES)]
    _socket_made_at[id(self)] = "".join(traceback.format_list(ours + frames[-3:]))


socket.socket.__init__ = _remember_where_made  # type: ignore[method-assign]


def _where_made(leaked: object) -> str:
    if isinstance(leaked, socket.socket) and id(leaked) in _socket_made_at:
        return "\n    made at:\n" + _socket_made_at[id(leaked)]
    made = tracemalloc.get_object_traceback(leaked) if leaked is not None else None
    return "\n    " + "\n    ".join(made.format()) if made else ""


def _is_leak(message: warnings.WarningMessage) -> bool:
    return issubclass(message.category, ResourceWarning) or (
        issubclass(message.category, pytest.PytestUnraisableExceptionWarning)
        and "ResourceWarning" in str(message.message)
    )


def pytest_warning_recorded(
    warning_message: warnings.WarningMessage, when: str, nodeid: str, location: Any
) -> None:
    if _is_leak(warning_message):
        where = _where_made(warning_message.source)
        _leaks.append(f"{nodeid or when}: {warning_message.message}{where}")


@pytest.fixture(autouse=True)
def close_the_provider_clients_a_test_made(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """In the tests of `client.llm` (tests/test_llm*.py), the openai and anthropic clients a
    test makes are closed when it ends, as an app closes them: one a test forgot would leave
    its pooled socket to the garbage collector, to be reported as a leak in whichever test the
    collector happens to run. Not elsewhere: LangChain and LiteLLM keep the clients they make
    for later calls, in other tests too."""
    made: list[Any] = []
    if not request.module.__name__.rpartition(".")[2].startswith("test_llm"):
        yield
        return
    for sdk in ("openai", "anthropic"):
        base = sys.modules.get(f"{sdk}._base_client")
        if base is None:  # not imported: no client of it can be made in this test
            continue
        made_here = base.SyncAPIClient.__init__

        def remembering(self: Any, *args: Any, __init: Any = made_here, **kwargs: Any) -> None:
            __init(self, *args, **kwargs)
            made.append(self)

        monkeypatch.setattr(base.SyncAPIClient, "__init__", remembering)
    yield
    for provider_client in made:
        provider_client.close()


def collect_what_a_test_dropped_on_purpose() -> None:
    """For a test whose case is a stream dropped unclosed: collect its socket before the test
    ends, so the leak it means to leave is neither reported against the run nor found later."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    with warnings.catch_warnings(record=True) as late:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    for message in late:
        if _is_leak(message):
            # A socket's report says where it was made; with PYTHONTRACEMALLOC=20, any object's.
            _leaks.append(f"at the end of the run: {message.message}{_where_made(message.source)}")
    if _leaks:
        print(
            f"\n{len(_leaks)} ResourceWarning(s): a socket or file was left open", file=sys.stderr
        )
        for leak in _leaks:
            print(f"  {leak}", file=sys.stderr)
        if session.exitstatus == 0:
            session.exitstatus = 1


# In CI, property-based tests draw the same examples every run: a red CI is reproducible.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    local = LocalServer().start()
    yield local
    local.stop()


@pytest.fixture
def fault_server() -> Iterator[LocalServer]:
    local = LocalServer().start()
    yield local
    local.stop()


@pytest.fixture
def api_key() -> str:
    return "sk_test_" + secrets.token_hex(8)


@pytest.fixture
def client(server: LocalServer, api_key: str) -> Iterator[bearlumen.Client]:
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as c:
        yield c


class AnyClient:
    """One tenant's `Client` or `AsyncClient`, called alike: `any_client.end_users.list()` is
    the answer, awaited on the client's own event loop when the client is async. The resources
    are written once for both (`resources/_endpoint.py`): a test of a resource's calls runs on
    both (the `any_client` fixture), so that neither can drift."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._target = target
        self._loop = loop

    @property
    def is_async(self) -> bool:
        return self._loop is not None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):  # a resource: `client.end_users`
            return AnyClient(attribute, self._loop)
        if self._loop is None:
            return attribute
        loop = self._loop

        def run(*args: Any, **kwargs: Any) -> Any:
            async def awaited() -> Any:
                answer = attribute(*args, **kwargs)
                return await answer if inspect.isawaitable(answer) else answer

            return loop.run_until_complete(awaited())

        return run


def assert_each_names_its_field(target: Any, bad_calls: list[tuple[str, Any]]) -> None:
    """Each `(param, call)` of `bad_calls`, `call(target)`, raises `InvalidRequestError` naming
    `param`, from the client itself (no status: nothing was sent)."""
    for param, call in bad_calls:
        with pytest.raises(bearlumen.InvalidRequestError) as caught:
            call(target)
        assert (caught.value.param, caught.value.status_code) == (param, None), param


@pytest.fixture(params=["Client", "AsyncClient"])
def any_client(
    request: pytest.FixtureRequest, server: LocalServer, api_key: str
) -> Iterator[AnyClient]:
    if request.param == "Client":
        with bearlumen.Client(api_key=api_key, base_url=server.base_url) as sync:
            yield AnyClient(sync)
        return
    # One loop for the client's life, as in an app (a loop per call costs 0.1 s a call).
    loop = asyncio.new_event_loop()
    client = bearlumen.AsyncClient(api_key=api_key, base_url=server.base_url)
    try:
        yield AnyClient(client, loop)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


@pytest.fixture
def http(server: LocalServer, api_key: str) -> Iterator[httpx.Client]:
    """Raw HTTP to the local server as one tenant, for tests of the wire contract itself."""
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {api_key}"}
    ) as c:
        yield c


def api_error(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The contract's error body of a raw HTTP answer (docs/wire-api.md, "Errors"), after
    checking its status, its type and that it repeats the answer's request id."""
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"type", "message", "requestId", "param"}
    assert error["type"] == kind and error["message"]
    assert error["requestId"] == answer.headers["x-request-id"]
    return error


def with_locals(exc: BaseException) -> str:
    """The exception and its whole chain as a traceback that shows every frame's locals, as
    `pytest -l`, rich's `show_locals` and error trackers capturing frame variables do."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


@pytest.fixture
def proxy_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that answers every GET 200 with JSON of another shape (a proxy, a captive
    portal, another API's version); parametrize it indirectly for another body."""
    body = getattr(request, "param", b'{"data": "not what the API answers"}')

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()


class RecordingSleep:
    """An injected sleep: remembers every wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    return RecordingSleep()


def hold_batch_answers(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, threading.Event]:
    """From inside an event loop: the server holds each batch request until `release` is set,
    and sets `arrived` on this loop when one comes. A loop that something blocked while it
    waited for delivery cannot see `arrived`, nor release the batch (the server gives up after
    30 s and answers): the test then finds the wait already over, instead of hanging."""
    injector = server.fault_injector
    assert injector is not None
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    release = threading.Event()
    choose = injector.choose

    def choose_and_hold(path: str) -> Any:
        if path.endswith("/batch"):
            loop.call_soon_threadsafe(arrived.set)
            release.wait(30)
        return choose(path)

    monkeypatch.setattr(injector, "choose", choose_and_hold)
    return arrived, release


def end_process_group(process: subprocess.Popen[str]) -> None:
    """After a test: a server process (started with `start_new_session=True`) and its children
    are killed if still running, and its pipes closed, even when the test failed."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def hold_first_batch(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event]:
    """The server holds the first batch request until `release` is set, and sets `arrived` when it comes."""
    injector = server.fault_injector
    assert injector is not None
    arrived, release = threading.Event(), threading.Event()
    choose = injector.choose

    def choose_and_hold(path: str) -> Any:
        if path.endswith("/batch") and not arrived.is_set():
            arrived.set()
            release.wait(30)
        return choose(path)

    monkeypatch.setattr(injector, "choose", choose_and_hold)
    return arrived, release


def unused_loopback_url() -> str:
    """A loopback address where nothing listens: connections are refused at once."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        host, port = sock.getsockname()
    return f"http://{host}:{port}"
