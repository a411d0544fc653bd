"""`_http.py`, the one place that owns HTTP, through the clients: what each request carries, one
idempotency key per logical call across its retries, what counts as an answer, what is refused
before anything is sent, and failures mapped to bearlumen's exceptions."""

from __future__ import annotations

import asyncio
import http.server
import threading
from typing import Any, Callable, Iterator, List, Tuple

import httpx
import pytest

from bearlumen import AsyncClient, BearLumenError, Client, InvalidRequestError, NetworkError
from bearlumen.testing import LocalServer


@pytest.fixture
def recording() -> Iterator[Callable[..., tuple[Client, list[httpx.Request]]]]:
    """Makes unbuffered clients whose every request, as sent, is kept (a caller's pool's hook)."""
    pools: list[httpx.Client] = []

    def make(api_key: str, base_url: str, **options: Any) -> tuple[Client, list[httpx.Request]]:
        sent: list[httpx.Request] = []
        pools.append(httpx.Client(event_hooks={"request": [sent.append]}))
        client = Client(
            api_key=api_key, base_url=base_url, http_client=pools[-1], buffered=False, **options
        )
        return client, sent

    yield make
    for pool in pools:
        pool.close()


Recording = Callable[..., Tuple[Client, List[httpx.Request]]]


def test_each_request_carries_the_key_who_sends_it_and_json(
    server: LocalServer, api_key: str, recording: Recording
) -> None:
    client, sent = recording(api_key, server.base_url)
    client.end_users.create(external_id="u1")
    client.end_users.list(limit=5)
    create, listing = sent
    for request in sent:
        assert request.headers["Authorization"] == f"Bearer {api_key}"
        assert request.headers["User-Agent"].startswith("bearlumen-python/")
        assert request.headers["Accept"] == "application/json"
    assert (
        create.headers["Content-Type"] == "application/json" and create.headers["Idempotency-Key"]
    )
    assert "Idempotency-Key" not in listing.headers and listing.url.params["limit"] == "5"
    assert "status" not in listing.url.params  # options left at None are not sent


def test_async_requests_carry_the_same_headers(server: LocalServer, api_key: str) -> None:
    sent: list[httpx.Request] = []

    async def keep(request: httpx.Request) -> None:
        sent.append(request)

    async def scenario() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [keep]}) as pool:
            async with AsyncClient(
                api_key=api_key, base_url=server.base_url, http_client=pool
            ) as c:
                await c.end_users.create(external_id="u1")

    asyncio.run(scenario())
    (create,) = sent
    assert create.headers["Authorization"] == f"Bearer {api_key}"
    assert create.headers["User-Agent"].startswith("bearlumen-python/")
    assert create.headers["Idempotency-Key"]


def test_a_retried_create_reuses_its_idempotency_key_and_creates_once(
    fault_server: LocalServer, api_key: str, recording: Recording
) -> None:
    client, sent = recording(api_key, fault_server.base_url, sleep=lambda seconds: None)
    fault_server.set_faults(script=["store_500"])  # stored, then answered 500: retried
    created = client.end_users.create(external_id="u1")
    client.end_users.create(external_id="u2")
    first, retry, second = (r.headers["Idempotency-Key"] for r in sent)
    assert first == retry != second  # one key per logical call, the same on each attempt
    listed = client.end_users.list()
    assert listed["total"] == 2 and created["endUser"]["externalId"] == "u1"


def test_a_body_that_cannot_be_json_is_refused_before_anything_is_sent(
    server: LocalServer, api_key: str, recording: Recording
) -> None:
    client, sent = recording(api_key, server.base_url)
    with pytest.raises(InvalidRequestError):
        client.end_users.create(external_id="u1", metadata={"ratio": float("nan")})
    with pytest.raises(InvalidRequestError):
        client.end_users.create(external_id="u1", metadata={"when": object()})
    assert sent == []


class NotAnApi(http.server.BaseHTTPRequestHandler):
    """What a captive portal or a misrouted proxy answers: 200 and a page of HTML."""

    def do_GET(self) -> None:
        page = b"<html>Sign in to the hotel wifi</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_an_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotAnApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_answer_that_is_not_json_is_a_typed_error_with_its_body(not_an_api: str) -> None:
    with Client(api_key="k", base_url=not_an_api, buffered=False) as client:
        with pytest.raises(BearLumenError) as caught:
            client.end_users.list()
    assert caught.value.status_code == 200 and "not JSON" in caught.value.message
    assert caught.value.body == "<html>Sign in to the hotel wifi</html>"


def test_no_answer_in_time_is_a_network_error_naming_the_host_with_its_cause(
    fault_server: LocalServer, api_key: str
) -> None:
    fault_server.set_faults(script=["latency:1000"])
    with Client(
        api_key=api_key, base_url=fault_server.base_url, buffered=False, timeout=0.05,
        max_retries=0,
    ) as client:  # fmt: skip
        with pytest.raises(NetworkError) as caught:
            client.end_users.list()
    assert "ReadTimeout" in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
