"""`bearlumen.AsyncClient`: the whole API for asyncio apps, on the same resources as `Client`."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any, Callable, Optional, Union

import httpx

from ._base_client import BaseClient, checked_connection
from ._constants import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_FLUSH_AT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
)
from ._errors import InvalidRequestError
from ._http import AsyncHttpCore, HttpCore
from ._llm import LLM
from ._outcomes import ErrorCallback
from ._shipper import Shipper, ShipperSettings
from ._types import FlushResult
from .resources import CostAttribution, EndUsers, Subscriptions, Usage


class AsyncClient(BaseClient):
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

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: Optional[httpx.AsyncClient] = None,
        buffered: bool = True,
        flush_at: int = DEFAULT_FLUSH_AT,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        on_overflow: str = "drop",
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        on_error: Optional[ErrorCallback] = None,
        sleep: Optional[Callable[[float], Any]] = None,
        spool_dir: Union[str, os.PathLike[str], None] = None,
        compress: Optional[bool] = None,
        handle_sigterm: bool = True,
    ) -> None:
        key, url = checked_connection(
            api_key, base_url, timeout, max_retries, http_client, httpx.AsyncClient, "AsyncClient"
        )
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
        settings = ShipperSettings(
            flush_at=flush_at,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            on_overflow=on_overflow,
            delivery_timeout=delivery_timeout,
            shutdown_timeout=shutdown_timeout,
            max_in_flight=max_in_flight,
        )
        self._http = AsyncHttpCore(
            api_key=key,
            base_url=url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client,
            compress=compress,
            sleep=sleep,
        )
        # The worker is a thread: it sends with its own blocking pool and sleeps for real.
        blocking_sleep = None if sleep is None or inspect.iscoroutinefunction(sleep) else sleep
        self._worker_http = HttpCore(
            api_key=key,
            base_url=url,
            timeout=timeout,
            max_retries=max_retries,
            compress=compress,
            sleep=blocking_sleep,
        )
        self._shipper: Optional[Shipper] = Shipper(
            self._worker_http,
            settings,
            on_error=on_error,
            sleep=blocking_sleep,
            spool_dir=None if spool_dir is None else os.fspath(spool_dir),
            handle_sigterm=handle_sigterm,
        )
        self.end_users = EndUsers(self._http)
        self.subscriptions = Subscriptions(self._http)
        self.usage = Usage(self._http, self._shipper)
        self.cost_attribution = CostAttribution(self._http)
        self.llm = LLM(self.usage)  # meter OpenAI / Anthropic calls (docs/llm.md)
        self._closed = False

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

    def __repr__(self) -> str:
        return f"<bearlumen.AsyncClient base_url={self._http.base_url!r} buffered>"
