"""`bearlumen.AsyncClient`: the whole API for asyncio apps, on the same resources as `Client`."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any, Optional, Union

import httpx

from ._base_client import BaseClient, SleepT
from ._errors import InvalidRequestError
from ._http import AsyncHttpCore, HttpCore
from ._types import FlushResult


class AsyncClient(BaseClient[httpx.AsyncClient, AsyncHttpCore]):
    """The Bear Lumen client for asyncio apps (FastAPI, Starlette, aiohttp).

        import bearlumen

        async with bearlumen.AsyncClient(api_key='your_api_key') as client:
            client.usage.record(event_type='token_usage', metric_name='llm_tokens', quantity=150)
            summary = await client.usage.summary()

    Every call of `Client` but `usage.record` and `stats` is a coroutine here, with the same
    arguments, results, exceptions and retries; waits between retries and `await flush()` let
    the event loop run on. `usage.record` is the same plain call as on `Client`: it queues the
    event and returns at once, and the shipper's worker thread delivers it over its own pooled
    connection. Close with `await client.aclose()` or `async with`.

    The options are `Client`'s, except that `http_client` is an `httpx.AsyncClient` (it carries
    the API calls; the worker uses its own), `record()` is always buffered, and a full queue
    drops and counts (`on_overflow='block'` would block the event loop).
    """

    _http: AsyncHttpCore
    _http_client_type = httpx.AsyncClient

    def _check_options(
        self, *, buffered: bool, on_overflow: str, spool_dir: Union[str, os.PathLike[str], None]
    ) -> None:
        if buffered is not True:
            raise InvalidRequestError(
                "AsyncClient always buffers usage.record(); for a write that waits for the"
                " server's answer, await client.usage.record_batch([...])",
                param="buffered",
            )
        if on_overflow == "block":
            raise InvalidRequestError(
                "on_overflow='block' would block the event loop; AsyncClient drops and counts",
                param="on_overflow",
            )

    def _connect(
        self, http_client: Optional[httpx.AsyncClient], sleep: SleepT, **options: Any
    ) -> tuple[HttpCore, SleepT]:
        self._http = AsyncHttpCore(http_client=http_client, sleep=sleep, **options)
        # The worker is a thread: it sends with its own blocking pool and sleeps for real.
        blocking_sleep = None if sleep is None or inspect.iscoroutinefunction(sleep) else sleep
        self._worker_http = HttpCore(sleep=blocking_sleep, **options)
        return self._worker_http, blocking_sleep

    async def flush(self, timeout: Optional[float] = None) -> FlushResult:
        """Wait until every event recorded before this call is delivered or has failed for
        good, without blocking the event loop. Returns the shipper's counts; `complete` is
        False when `timeout` (seconds) passed first."""
        return await self._await_delivery(timeout)

    async def aclose(self, timeout: Optional[float] = None) -> FlushResult:
        """Deliver what is queued (waiting at most `timeout`, default `shutdown_timeout`), stop
        the worker and release connections. Idempotent."""
        assert self._shipper is not None
        self.llm._drain()  # LLM calls captured off their thread are recorded first
        # Shipper.close waits on threads; a worker thread of the loop's pool does that waiting.
        result = await asyncio.to_thread(self._shipper.close, timeout)
        if not self._closed:
            self._closed = True
            self._worker_http.close()
            await self._http.aclose()
        return result

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
