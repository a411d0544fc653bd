"""`bearlumen.Client`: configuration, the resources, and the shipper's lifecycle."""

from __future__ import annotations

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
from ._http import HttpCore
from ._llm import LLM
from ._outcomes import ErrorCallback
from ._shipper import Shipper, ShipperSettings
from ._types import FlushResult
from .resources import CostAttribution, EndUsers, Subscriptions, Usage


class Client(BaseClient):
    """The Bear Lumen client.

        import bearlumen
        client = bearlumen.Client(api_key='your_api_key')

    `api_key` falls back to the `BEARLUMEN_API_KEY` environment variable and `base_url` to
    `BEARLUMEN_BASE_URL`, then to the hosted API. Every call but `usage.record` is a plain
    synchronous HTTP call with retries; `usage.record` queues the event for a background worker
    (unless `buffered=False`) and returns at once. Call `flush()` to wait for delivery, and
    `close()` (or use `with Client(...) as client:`) when done; a process exiting normally
    flushes on its way out, waiting at most `shutdown_timeout` seconds; so does a process ended
    by SIGTERM or by `multiprocessing` (`handle_sigterm=False` leaves SIGTERM alone).
    """

    _http: HttpCore

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: Optional[httpx.Client] = None,
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
            api_key, base_url, timeout, max_retries, http_client, httpx.Client, "Client"
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
        self._http = HttpCore(
            api_key=key,
            base_url=url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client,
            compress=compress,
            sleep=sleep,
        )
        self._shipper: Optional[Shipper] = None
        if spool_dir is not None and not buffered:
            raise InvalidRequestError("spool_dir needs buffered=True", param="spool_dir")
        if buffered:
            self._shipper = Shipper(
                self._http,
                settings,
                on_error=on_error,
                sleep=sleep,
                spool_dir=None if spool_dir is None else os.fspath(spool_dir),
                handle_sigterm=handle_sigterm,
            )
        self.end_users = EndUsers(self._http)
        self.subscriptions = Subscriptions(self._http)
        self.usage = Usage(self._http, self._shipper)
        self.cost_attribution = CostAttribution(self._http)
        self.llm = LLM(self.usage)  # meter OpenAI / Anthropic calls (docs/llm.md)
        self._closed = False

    def flush(self, timeout: Optional[float] = None) -> FlushResult:
        """Block until every event recorded before this call is delivered or has failed for good.

        Returns the shipper's counts; `complete` is False when `timeout` (seconds) passed first.
        """
        return self._wait_for_delivery(timeout)

    def close(self, timeout: Optional[float] = None) -> FlushResult:
        """Deliver what is queued (waiting at most `timeout`, default `shutdown_timeout`), stop
        the worker and release connections. Idempotent."""
        self.llm._drain()  # LLM calls captured off their thread are recorded first
        result = self._shipper.close(timeout) if self._shipper is not None else self.flush()
        if not self._closed:
            self._closed = True
            self._http.close()
        return result

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "buffered" if self._shipper is not None else "unbuffered"
        return f"<bearlumen.Client base_url={self._http.base_url!r} {mode}>"
