"""Security: the API key out of reach of tracebacks rendered with locals and of the SDK's own
log records; and the local server's auth on every route, admin routes only when enabled and only
from loopback, capped inputs. (The key's absence from log lines, reprs and error messages is
tested in test_errors.py; tenant isolation in test_server.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from bearlumen import AsyncClient, BearLumenError, Client
from bearlumen._cli import main as cli_main
from bearlumen.server import FaultInjector, create_app
from bearlumen.server.openapi import openapi_document
from bearlumen.server.store import Store
from bearlumen.testing import OPENAI_ADMIN_KEY, FakeLLMProvider, LocalServer

from .conftest import with_locals

SECRET = "sk_live_" + "k3Y" * 8


@pytest.fixture(scope="module")
def failing_urls() -> Iterator[dict[str, str]]:
    """Where a call fails: 401 (the server knows other keys), 500, and nothing listening."""
    with LocalServer() as gone:
        pass
    refusing = LocalServer(api_keys=["sk_live_someone_else"]).start()
    broken = LocalServer().start()
    broken.set_faults(rate_500=1.0)
    yield {"401": refusing.base_url, "500": broken.base_url, "network": gone}
    refusing.stop()
    broken.stop()


@pytest.mark.parametrize("answer", ["401", "500", "network"])
def test_the_key_is_in_no_frame_of_a_failed_call(failing_urls: dict[str, str], answer: str) -> None:
    url = failing_urls[answer]
    failures: list[BaseException] = []

    def fail(call: Callable[[], Any]) -> None:
        with pytest.raises(BearLumenError) as caught:
            call()
        failures.append(caught.value)

    client = Client(api_key=SECRET, base_url=url, max_retries=1, sleep=lambda s: None)
    fail(client.end_users.list)
    fail(
        lambda: client.usage.record_batch([{"event_type": "t", "metric_name": "m", "quantity": 1}])
    )
    client.close()
    unbuffered = Client(api_key=SECRET, base_url=url, max_retries=0, buffered=False)
    fail(lambda: unbuffered.usage.record("t", "m", 1))
    answer = {"id": "x1", "model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    fail(lambda: unbuffered.llm.record(answer, provider="openai"))  # the LLM path
    unbuffered.close()

    async def from_a_loop() -> None:
        async with AsyncClient(api_key=SECRET, base_url=url, max_retries=1) as client:
            with pytest.raises(BearLumenError) as caught:
                await client.end_users.list()
            failures.append(caught.value)

    asyncio.run(from_a_loop())
    # The shipper's senders: what reaches on_error after the delivery deadline.
    shipper = Client(
        api_key=SECRET, base_url=url, delivery_timeout=0.2, sleep=lambda s: None,
        on_error=lambda events, exc: failures.append(exc),
    )  # fmt: skip
    shipper.usage.record("t", "m", 1)
    shipper.close()
    assert len(failures) == 6
    for failure in failures:
        assert SECRET not in with_locals(failure)
        assert "key" in with_locals(failure).lower()  # the frames' locals were rendered


def test_the_key_is_in_no_log_record_of_the_sdk_even_rendered_with_locals(
    failing_urls: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bearlumen")

    def on_error(events: object, exc: BaseException) -> None:
        raise RuntimeError("the application's callback broke") from exc  # logged with its chain

    for url in failing_urls.values():
        with Client(
            api_key=SECRET, base_url=url, delivery_timeout=0.2, sleep=lambda s: None,
            on_error=on_error,
        ) as client:  # fmt: skip
            client.usage.record("t", "m", 1)
            client.flush()
    with_tracebacks = [r for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert len(with_tracebacks) == 3
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        if record.exc_info and record.exc_info[1]:
            assert SECRET not in with_locals(record.exc_info[1])


def test_the_sdk_log_under_richs_handler_with_locals_shows_no_key(
    failing_urls: dict[str, str],
) -> None:
    rich_logging = pytest.importorskip("rich.logging")
    console = pytest.importorskip("rich.console").Console(file=io.StringIO(), width=200)
    handler = rich_logging.RichHandler(
        console=console, rich_tracebacks=True, tracebacks_show_locals=True
    )
    logger = logging.getLogger("bearlumen")
    logger.addHandler(handler)

    def on_error(events: object, exc: BaseException) -> None:
        raise RuntimeError("the application's callback broke") from exc

    try:
        with Client(
            api_key=SECRET, base_url=failing_urls["401"], on_error=on_error,
            sleep=lambda s: None,
        ) as client:  # fmt: skip
            client.usage.record("t", "m", 1)
            client.flush()
    finally:
        logger.removeHandler(handler)
    shown = console.file.getvalue()
    assert "on_error callback raised" in shown and "locals" in shown
    assert SECRET not in shown


def test_a_construction_error_shows_no_key_in_its_frames() -> None:
    with pytest.raises(BearLumenError) as caught:
        Client(api_key=SECRET, base_url="ftp://127.0.0.1")
    assert SECRET not in with_locals(caught.value)
    with pytest.raises(BearLumenError) as caught:
        AsyncClient(api_key=SECRET, base_url="http://127.0.0.1:9", on_overflow="block")
    assert SECRET not in with_locals(caught.value)


ADMIN_SECRET = "sk-admin-" + "4dM" * 8


@pytest.mark.parametrize("failing", ["provider", "bearlumen"])
def test_a_failed_reconcile_shows_no_key_in_its_frames(
    failing_urls: dict[str, str], failing: str
) -> None:
    # The provider's reports (nothing listening) or Bear Lumen's events (500) fail: the admin
    # key passed to client.llm.reconcile() is in no frame either.
    with contextlib.ExitStack() as stack:
        if failing == "provider":
            provider_url = failing_urls["network"]
        else:  # the provider answers (to its own admin key); Bear Lumen's 500 fails the call
            provider_url = stack.enter_context(FakeLLMProvider()).openai_base_url
        client = stack.enter_context(
            Client(api_key=SECRET, base_url=failing_urls["500"], buffered=False)
        )
        with pytest.raises(BearLumenError) as caught:
            client.llm.reconcile(
                provider="openai", start="2026-12-01", provider_base_url=provider_url,
                admin_key=ADMIN_SECRET if failing == "provider" else OPENAI_ADMIN_KEY,
            )  # fmt: skip
    assert ("500" if failing == "bearlumen" else "ConnectError") in str(caught.value)
    shown = with_locals(caught.value)
    assert SECRET not in shown and ADMIN_SECRET not in shown and OPENAI_ADMIN_KEY not in shown
    assert "key = ApiKey('[redacted]')" in shown  # the frames' locals were rendered


@pytest.mark.parametrize("command", ["report", "reconcile"])
def test_a_crashed_command_shows_no_key_in_its_frames(
    proxy_url: str, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `bearlumen report --api-key` / `bearlumen reconcile --admin-key` end in a traceback (here:
    # Ctrl-C during the first request): Python's, rich's or an error tracker's, with locals,
    # shows the parsed arguments in every frame.
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("bearlumen._http.HttpCore._send_once", interrupted)
    flags = ["--start", "2026-12-01", "--end", "2026-12-02", "--base-url", proxy_url]
    if command == "reconcile":
        flags += ["--provider", "openai", "--provider-base-url", proxy_url]
    admin = ["--admin-key", ADMIN_SECRET] if command == "reconcile" else []
    monkeypatch.setattr("sys.argv", ["bearlumen", command, "--api-key", SECRET, *flags, *admin])
    del admin  # the test's own frame is in the traceback too
    with pytest.raises(KeyboardInterrupt) as caught:
        cli_main()
    shown = with_locals(caught.value)
    assert SECRET not in shown and ADMIN_SECRET not in shown
    assert "api_key=ApiKey('[redacted]')" in shown  # the frames' locals were rendered


def every_operation() -> list[tuple[str, str]]:
    return [
        (method.upper(), path.replace("{id}", "x"))
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    ]


@pytest.mark.parametrize(("method", "path"), every_operation())
def test_every_api_route_needs_auth(server: LocalServer, method: str, path: str) -> None:
    answer = httpx.request(method, server.base_url + path, json={})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "authentication_error"


def test_admin_routes_answer_only_loopback_clients() -> None:
    # A real server here can only be reached over loopback; an ASGI test client can claim any
    # address, which is the one case that needs it.
    app = create_app(Store(":memory:"), faults=FaultInjector())
    remote = TestClient(app, client=("203.0.113.7", 40000))
    assert remote.get("/_admin/stats").status_code == 404
    assert remote.post("/_admin/faults", json={"rate_500": 1}).status_code == 404
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.get("/_admin/stats").status_code == 200


def test_field_lengths_are_capped(http: httpx.Client) -> None:
    too_long = "x" * 256
    assert http.post("/v1/end-users", json={"externalId": too_long}).status_code == 400
    answer = http.post(
        "/v1/usage/events",
        json={"eventType": "t", "metricName": "m", "quantity": 1, "agentId": too_long},
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "agentId"
    assert http.get("/v1/usage/events", params={"agentId": too_long}).status_code == 400
    assert (
        http.post(
            "/v1/end-users", headers={"Idempotency-Key": "k" * 256}, json={"externalId": "a"}
        ).status_code
        == 400
    )


def test_errors_never_echo_the_api_key() -> None:
    with LocalServer(api_keys=["sk_live_only"]) as base_url:
        answer = httpx.get(
            base_url + "/v1/end-users", headers={"Authorization": "Bearer sk_live_guess_123"}
        )
    assert answer.status_code == 401 and "sk_live_guess_123" not in answer.text


def test_keys_are_stored_only_as_hashes(tmp_path: Path) -> None:
    with LocalServer(db=str(tmp_path / "keys.sqlite3")) as base_url:
        httpx.get(
            base_url + "/v1/end-users", headers={"Authorization": "Bearer sk_live_plaintext_never"}
        )
    stored = [p.read_bytes() for p in tmp_path.iterdir()]  # the database, its WAL and index
    assert stored and not any(b"sk_live_plaintext_never" in data for data in stored)
