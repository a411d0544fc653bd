"""`flush_after`: a serverless handler (sync or async, on either client) returns only once what
it recorded is delivered, bounded by its timeout and by the Lambda invocation's time left."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bearlumen
from bearlumen import AsyncClient, Client
from bearlumen._constants import LAMBDA_TIME_MARGIN
from bearlumen._flushing import flush_budget
from bearlumen.testing import LocalServer

from .conftest import hold_batch_answers


class FakeLambdaContext:
    """What AWS Lambda passes as a handler's second argument, with a fixed time left."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.function_name = "meter-chat"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def stored(server: LocalServer, api_key: str) -> int:
    with Client(api_key=api_key, base_url=server.base_url) as reader:
        return reader.usage.summary()["totalEvents"]


def test_a_sync_handler_returns_after_its_events_are_delivered(
    server: LocalServer, api_key: str
) -> None:
    client = Client(api_key=api_key, base_url=server.base_url, flush_interval=60)

    @client.flush_after()
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        """The handler's own docstring."""
        for _ in range(event["calls"]):
            client.usage.record("token_usage", "llm_tokens", 100, agent_id="lambda-bot")
        return {"statusCode": 200}

    # flush_interval=60: without flush_after the worker would not ship for a minute.
    assert handler({"calls": 3}, FakeLambdaContext(30_000)) == {"statusCode": 200}
    assert client.stats()["recorded"] == 3 and client.stats()["queued"] == 0
    assert handler.__name__ == "handler" and handler.__doc__ == "The handler's own docstring."
    assert stored(server, api_key) == 3
    client.close()


def test_a_handler_that_raises_still_delivers_and_the_error_propagates(
    server: LocalServer, api_key: str
) -> None:
    client = Client(api_key=api_key, base_url=server.base_url, flush_interval=60)

    @client.flush_after
    def handler(event: object, context: object) -> None:
        client.usage.record("token_usage", "llm_tokens", 1)
        raise ValueError("the LLM call failed")

    with pytest.raises(ValueError, match="the LLM call failed"):
        handler({}, None)
    assert client.stats()["recorded"] == 1
    client.close()


def test_an_async_handler_on_async_client(server: LocalServer, api_key: str) -> None:
    client = AsyncClient(api_key=api_key, base_url=server.base_url, flush_interval=60)

    @client.flush_after(timeout=30)
    async def handler(event: dict[str, Any], context: object) -> str:
        summary = await client.usage.summary()
        client.usage.record("token_usage", "llm_tokens", 7)
        return f"seen {summary['totalEvents']}"

    async def invoke_twice() -> list[str]:
        return [await handler({}, FakeLambdaContext(10_000)), await handler({}, None)]

    assert asyncio.run(invoke_twice()) == ["seen 0", "seen 1"]
    assert client.stats()["recorded"] == 2
    asyncio.run(client.aclose())


def test_an_async_handler_on_the_sync_client_does_not_block_its_loop(
    fault_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(api_key="sk_test_flush_after", base_url=fault_server.base_url)

    @client.flush_after()
    async def handler(event: object, context: object) -> None:
        client.usage.record("token_usage", "llm_tokens", 1)

    async def scenario() -> None:
        arrived, release = hold_batch_answers(fault_server, monkeypatch)
        handling = asyncio.ensure_future(handler({}, None))
        # The server holds the batch until this coroutine, on the same loop, lets it go: a
        # handler whose flush blocked the loop would be over (the server tired of waiting).
        await arrived.wait()
        assert not handling.done()
        release.set()
        await handling

    asyncio.run(scenario())
    assert client.stats()["recorded"] == 1
    client.close()


def test_a_sync_handler_on_async_client(server: LocalServer, api_key: str) -> None:
    client = AsyncClient(api_key=api_key, base_url=server.base_url, flush_interval=60)

    @client.flush_after()
    def handler(event: object, context: object) -> int:
        client.usage.record("token_usage", "llm_tokens", 1)
        return 1

    assert handler({}, FakeLambdaContext(5_000)) == 1
    assert client.stats()["recorded"] == 1
    asyncio.run(client.aclose())


def test_with_little_time_left_the_handler_returns_and_the_next_invocation_delivers(
    fault_server: LocalServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk_test_lambda"
    client = Client(api_key=key, base_url=fault_server.base_url, spool_dir=tmp_path / "spool")

    @client.flush_after()
    def handler(event: dict[str, int], context: FakeLambdaContext) -> str:
        client.usage.record("token_usage", "llm_tokens", event["tokens"])
        return "ok"

    # The first batch is answered 429 "retry after 1 s", and the invocation has less than the
    # margin left: the handler must return without waiting.
    fault_server.set_faults(script=["429:1"])
    with caplog.at_level(logging.WARNING, logger="bearlumen"):
        assert handler({"tokens": 5}, FakeLambdaContext(int(LAMBDA_TIME_MARGIN * 1000))) == "ok"
    assert client.stats()["recorded"] == 0
    assert "1 usage event(s) not yet delivered" in caplog.text
    assert list((tmp_path / "spool").iterdir())  # the event waits in the spool too

    # The next invocation, with time to spare, delivers both.
    assert handler({"tokens": 6}, FakeLambdaContext(30_000)) == "ok"
    assert client.stats()["recorded"] == 2 and client.stats()["retries"] == 1
    client.close()
    assert stored(fault_server, key) == 2


def test_the_budget_is_the_timeout_and_the_lambda_time_left_minus_a_margin() -> None:
    context = FakeLambdaContext(10_000)
    assert flush_budget(None, ({}, context), {}) == 10.0 - LAMBDA_TIME_MARGIN
    assert flush_budget(2.0, ({}, context), {}) == 2.0
    assert flush_budget(None, (), {"context": context}) == 10.0 - LAMBDA_TIME_MARGIN
    assert flush_budget(None, ({}, FakeLambdaContext(100)), {}) == 0.0
    assert flush_budget(3.0, ({}, object()), {}) == 3.0  # not a Lambda context
    assert flush_budget(None, ({},), {}) is None


def test_a_bad_timeout_is_refused_when_decorating() -> None:
    client = Client(api_key="k", base_url="http://127.0.0.1:9")
    for bad in (-1, "soon", True):
        with pytest.raises(bearlumen.InvalidRequestError) as caught:
            client.flush_after(bad)  # type: ignore[call-overload]
        assert caught.value.param == "timeout"
    client.close()


def test_a_callable_object_such_as_an_asgi_adapter_can_be_wrapped(
    server: LocalServer, api_key: str
) -> None:
    client = Client(api_key=api_key, base_url=server.base_url, flush_interval=60)

    class Adapter:  # what Mangum(app) is: an object called as handler(event, context)
        def __call__(self, event: object, context: object) -> str:
            client.usage.record("token_usage", "llm_tokens", 3)
            return "done"

    handler = client.flush_after()(Adapter())
    assert handler({}, FakeLambdaContext(10_000)) == "done"
    assert client.stats()["recorded"] == 1
    client.close()


INVOCATION = """
import os, signal, sys
import bearlumen

client = bearlumen.Client(base_url=sys.argv[1], spool_dir=sys.argv[2])


class Context:
    def get_remaining_time_in_millis(self):
        return int(sys.argv[3])


@client.flush_after()
def handler(event, context):
    client.usage.record("token_usage", "llm_tokens", 5, idempotency_key=event)
    return "ok"


print(handler(sys.argv[4], Context()), client.stats()["recorded"], flush=True)
if sys.argv[5] == "killed":
    os.kill(os.getpid(), signal.SIGKILL)  # what Lambda does to the runtime after a timeout
"""


def test_what_a_killed_invocation_could_not_deliver_the_next_process_replays(
    server: LocalServer, api_key: str, tmp_path: Path
) -> None:
    spool = str(tmp_path / "spool")
    env = {**os.environ, "BEARLUMEN_API_KEY": api_key}

    def invoke(
        base_url: str, remaining_ms: int, key: str, end: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", INVOCATION, base_url, spool, str(remaining_ms), key, end],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    # The first invocation cannot reach the server (nothing listens on port 9) and has no time
    # to wait; then its runtime is killed. Its event survives in the spool in /tmp.
    first = invoke("http://127.0.0.1:9", 100, "evt-first", "killed")
    assert first.stdout.split() == ["ok", "0"] and first.returncode == -signal.SIGKILL
    # The next invocation, in a fresh process on the same spool, delivers both before it returns.
    second = invoke(server.base_url, 10_000, "evt-second", "returned")
    assert second.stdout.split() == ["ok", "2"], second.stderr
    assert stored(server, api_key) == 2
