"""`bearlumen.AsyncClient` against the local server: Client's calls as coroutine functions (each
resource's calls run on both clients in tests/test_resource_*.py), concurrency, typed errors and
retries from real server answers, and a loop that never stalls."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import warnings
from typing import Any, Awaitable, Callable, TypeVar

import httpx
import pytest

import bearlumen
from bearlumen import (
    AsyncClient,
    AuthenticationError,
    DuplicateCustomerError,
    InvalidEmailError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from bearlumen.testing import LocalServer

from .conftest import RecordingSleep, hold_batch_answers

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


# -- Client's calls, awaited ------------------------------------------------------------------


def test_async_calls_are_coroutine_functions_with_the_sync_signatures(
    server: LocalServer, api_key: str
) -> None:
    sync = bearlumen.Client(api_key=api_key, base_url=server.base_url)
    client = AsyncClient(api_key=api_key, base_url=server.base_url)
    for resource in ("end_users", "subscriptions", "usage", "cost_attribution"):
        sync_resource, async_resource = getattr(sync, resource), getattr(client, resource)
        names = [n for n in dir(type(sync_resource)) if not n.startswith("_")]
        for name in names:
            sync_call, async_call = getattr(sync_resource, name), getattr(async_resource, name)
            assert inspect.signature(sync_call) == inspect.signature(async_call), name
            assert async_call.__doc__ and async_call.__doc__ == sync_call.__doc__
            assert inspect.iscoroutinefunction(async_call) is (name != "record"), name
            assert not inspect.iscoroutinefunction(sync_call)
    assert "AsyncClient" in bearlumen.__all__
    assert repr(AsyncClient).endswith("'bearlumen.AsyncClient'>")
    sync.close()
    asyncio.run(client.aclose())


# -- concurrency ------------------------------------------------------------------------------


def test_200_concurrent_calls_under_gather(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            created = await asyncio.gather(
                *(client.end_users.create(external_id=f"user_{n}") for n in range(200))
            )
            ids = {result["endUser"]["id"] for result in created}
            assert len(ids) == 200
            assert [r["endUser"]["externalId"] for r in created] == [
                f"user_{n}" for n in range(200)
            ]
            assert (await client.end_users.list(limit=1000))["total"] == 200

    run(scenario)


# -- typed errors and retries, from real server answers ---------------------------------------


def faulty(server: LocalServer, **options: Any) -> AsyncClient:
    return AsyncClient(api_key="sk_test_faults", base_url=server.base_url, **options)


def test_each_status_maps_to_its_exception(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            with pytest.raises(InvalidEmailError) as invalid_email:
                await client.end_users.create(external_id="u", email="not-an-email")
            assert invalid_email.value.status_code == 400
            await client.end_users.create(external_id="taken")
            with pytest.raises(DuplicateCustomerError):
                await client.end_users.create(external_id="taken")
            with pytest.raises(NotFoundError) as not_found:
                await client.subscriptions.retrieve("sub_nope")
            assert not_found.value.status_code == 404

    run(scenario)


def test_bad_input_fails_at_the_call_naming_the_field_before_any_io(
    server: LocalServer, api_key: str
) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            with pytest.raises(InvalidRequestError) as bad_limit:
                await client.end_users.list(limit=0)
            assert bad_limit.value.param == "limit" and bad_limit.value.status_code is None
            with pytest.raises(InvalidRequestError) as bad_event:
                await client.usage.record_batch([{"event_type": "t", "metric_name": "m"}])  # type: ignore[typeddict-item]
            assert bad_event.value.param == "events[0].quantity"
            with pytest.raises(InvalidRequestError) as bad_date:
                await client.cost_attribution.by_agent("yesterday", "2024-02-01")
            assert bad_date.value.param == "start_date"
            with pytest.raises(InvalidRequestError):
                client.usage.record("t", "m", -1)
            assert (await client.end_users.list())["total"] == 0

    run(scenario)


def test_a_wrong_key_is_an_authentication_error() -> None:
    async def scenario(base_url: str) -> None:
        async with AsyncClient(api_key="sk_live_wrong", base_url=base_url) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.end_users.list()
        assert caught.value.status_code == 401
        assert "sk_live_wrong" not in str(caught.value) + repr(caught.value) + repr(client)

    with LocalServer(api_keys=["sk_live_right"]) as base_url:
        asyncio.run(scenario(base_url))


def test_retry_after_is_a_floor_and_the_last_answer_is_typed(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    async def scenario() -> None:
        async with faulty(fault_server, sleep=recording_sleep, max_retries=2) as client:
            fault_server.set_faults(script=["429:7", "429:7", "429:7"])
            with pytest.raises(RateLimitError) as limited:
                await client.end_users.list()
            assert limited.value.retry_after == 7.0 and limited.value.status_code == 429
            assert recording_sleep.waits == [7.0, 7.0]

            fault_server.set_faults(script=["503", "503", "503"])
            with pytest.raises(ServerError) as failed:
                await client.end_users.list()
            assert failed.value.status_code == 503

            fault_server.set_faults(script=["drop", "drop", "drop"])
            with pytest.raises(NetworkError) as dropped:
                await client.end_users.list()
            assert isinstance(dropped.value.__cause__, httpx.TransportError)

            fault_server.set_faults(script=["drop", "429:3"])
            recording_sleep.waits.clear()
            assert (await client.end_users.list())["total"] == 0
            assert len(recording_sleep.waits) == 2 and recording_sleep.waits[1] >= 3.0

    run(scenario)


def test_a_create_retried_after_store_then_500_creates_once(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    async def scenario() -> None:
        async with faulty(fault_server, sleep=recording_sleep) as client:
            fault_server.set_faults(script=["store_500"])
            created = await client.end_users.create(external_id="exactly-once")
            listed = await client.end_users.list()
        assert len(recording_sleep.waits) == 1
        assert listed["total"] == 1 and listed["endUsers"][0]["id"] == created["endUser"]["id"]

    run(scenario)


class RetryWaitSeen(logging.Handler):
    """Sets `waiting` when the client logs that it is about to wait before its next attempt."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.waiting = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying in" in record.getMessage():
            self.waiting.set()  # on the loop's thread: tenacity's before_sleep runs there


def test_a_retry_after_wait_does_not_block_the_loop(fault_server: LocalServer) -> None:
    attempts: list[str] = []

    async def count(request: httpx.Request) -> None:
        attempts.append(request.url.path)

    async def scenario() -> None:
        seen = RetryWaitSeen()
        logger = logging.getLogger("bearlumen")
        level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(seen)
        try:
            async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
                async with faulty(fault_server, http_client=http) as client:
                    fault_server.set_faults(script=["429:0.5"])
                    listing = asyncio.ensure_future(client.end_users.list())
                    await seen.waiting.wait()
                    # This coroutine ran during the half-second wait, before the second
                    # attempt: the default sleep is asyncio.sleep. A blocking sleep would let
                    # it run only once the second attempt was under way.
                    assert attempts == ["/v1/end-users"]
                    assert (await listing)["total"] == 0
                    assert len(attempts) == 2
        finally:
            logger.removeHandler(seen)
            logger.setLevel(level)

    run(scenario)


# -- flush, close, options --------------------------------------------------------------------


def test_flush_against_a_slow_server_keeps_the_loop_running(
    fault_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with faulty(fault_server) as client:
            arrived, release = hold_batch_answers(fault_server, monkeypatch)
            for n in range(10):
                client.usage.record("token_usage", "llm_tokens", n + 1)
            flushing = asyncio.ensure_future(client.flush())
            # The server holds the batch until this coroutine, on the same loop, lets it go:
            # a flush that blocked the loop would be over (the server tired of waiting) by now.
            await arrived.wait()
            assert not flushing.done()
            release.set()
            result = await flushing
            assert result["complete"] is True and result["recorded"] == 10

    run(scenario)


def test_flush_gives_up_at_its_timeout_and_delivers_later(fault_server: LocalServer) -> None:
    async def scenario() -> None:
        async with faulty(fault_server) as client:
            fault_server.set_faults(script=["429:1"])
            client.usage.record("token_usage", "llm_tokens", 1)
            early = await client.flush(timeout=0.05)
            assert early["complete"] is False and early["recorded"] == 0
            late = await client.flush()
            assert late["complete"] is True and late["recorded"] == 1 and late["retries"] == 1

    run(scenario)


def test_flush_with_nothing_recorded_returns_at_once(server: LocalServer, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_key=api_key, base_url=server.base_url) as client:
            result = await client.flush()
            assert result["complete"] is True and result["queued"] == 0

    run(scenario)


def test_aclose_delivers_what_is_queued_and_is_idempotent(
    server: LocalServer, api_key: str
) -> None:
    async def scenario() -> None:
        client = AsyncClient(api_key=api_key, base_url=server.base_url)
        for _ in range(5):
            client.usage.record("token_usage", "llm_tokens", 1)
        closed = await client.aclose()
        assert closed["complete"] is True and closed["recorded"] == 5
        assert (await client.aclose())["recorded"] == 5
        assert client.usage.record("token_usage", "llm_tokens", 1).get("dropped") is True

    run(scenario)
    with bearlumen.Client(api_key=api_key, base_url=server.base_url) as reader:
        assert reader.usage.summary()["totalEvents"] == 5


def test_options_are_checked_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEARLUMEN_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match=r"AsyncClient\(api_key"):
        AsyncClient()
    checks: list[tuple[dict[str, Any], str]] = [
        ({"http_client": httpx.Client()}, "http_client"),
        ({"buffered": False}, "buffered"),
        ({"on_overflow": "block"}, "on_overflow"),
        ({"max_retries": -1}, "max_retries"),
        ({"flush_at": 0}, "flush_at"),
        ({"base_url": "ftp://x"}, "base_url"),
    ]
    for options, param in checks:
        with pytest.raises(InvalidRequestError) as caught:
            AsyncClient(api_key="k", **options)
        assert caught.value.param == param
    with pytest.raises(InvalidRequestError) as wrong_kind:
        bearlumen.Client(api_key="k", http_client=httpx.AsyncClient())  # type: ignore[arg-type]
    assert wrong_kind.value.param == "http_client"


def test_a_callers_async_http_client_carries_the_calls(server: LocalServer, api_key: str) -> None:
    seen: list[str] = []

    async def remember(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async def scenario() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [remember]}) as http:
            client = AsyncClient(api_key=api_key, base_url=server.base_url, http_client=http)
            assert (await client.end_users.list())["total"] == 0
            await client.aclose()
            assert not http.is_closed  # the caller's client is the caller's to close

    run(scenario)
    assert seen == ["/v1/end-users"]


def test_one_client_serves_one_event_loop_after_another(server: LocalServer, api_key: str) -> None:
    # A Lambda handler that calls asyncio.run per invocation, with the client made at import.
    client = AsyncClient(api_key=api_key, base_url=server.base_url)

    async def invocation(n: int) -> int:
        await client.end_users.create(external_id=f"user_{n}")
        return (await client.end_users.list())["total"]

    assert [asyncio.run(invocation(n)) for n in range(3)] == [1, 2, 3]
    asyncio.run(client.aclose())


def test_async_client_takes_every_option_of_client() -> None:
    sync_options = inspect.signature(bearlumen.Client).parameters
    async_options = inspect.signature(bearlumen.AsyncClient).parameters
    assert list(async_options) == list(sync_options)
    for name, option in sync_options.items():
        if name != "http_client":  # an httpx.AsyncClient there
            assert async_options[name].default == option.default, name


def test_a_client_used_in_a_second_loop_leaves_no_socket_of_the_first_open(
    server: LocalServer, api_key: str
) -> None:
    client = AsyncClient(api_key=api_key, base_url=server.base_url)

    async def invocation(last: bool) -> None:
        await client.end_users.list()
        if last:
            await client.aclose()  # in the loop its pool belongs to

    asyncio.run(invocation(last=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        asyncio.run(invocation(last=True))  # a fresh pool for this loop; the first's is dropped
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_handler_that_never_closes_the_client_leaves_no_socket_open_after_each_loop(
    server: LocalServer, api_key: str
) -> None:
    # The serverless pattern: one client at module level, `asyncio.run` per invocation, and no
    # `aclose()` ever; each loop's pool is closed as `asyncio.run` shuts that loop down.
    module = {"client": AsyncClient(api_key=api_key, base_url=server.base_url)}

    async def invocation() -> None:
        await module["client"].end_users.list()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):
            asyncio.run(invocation())
        module.clear()  # the last loop's pool too: closed when its loop ended
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_pool_the_caller_passed_in_stays_open_when_the_loop_ends(
    server: LocalServer, api_key: str
) -> None:
    http = httpx.AsyncClient()
    client = AsyncClient(api_key=api_key, base_url=server.base_url, http_client=http)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.end_users.list())
        loop.run_until_complete(loop.shutdown_asyncgens())  # what asyncio.run does at its end
        assert not http.is_closed  # the caller's to close, not ours
        loop.run_until_complete(http.aclose())
    finally:
        loop.close()
