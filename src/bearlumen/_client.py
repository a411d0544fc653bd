"""`bearlumen.Client`: configuration, the resources, and the shipper's lifecycle."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

import httpx

from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_FLUSH_AT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
)
from ._errors import AuthenticationError, InvalidRequestError
from ._http import HttpCore
from ._llm import LLM
from ._shipper import COUNTERS, ErrorCallback, Shipper, ShipperSettings, is_positive_number
from ._types import FlushResult, ShipperStats
from .resources import CostAttribution, EndUsers, Subscriptions, Usage


class Client:
    """The Bear Lumen client.

        import bearlumen
        client = bearlumen.Client(api_key='your_api_key')

    `api_key` falls back to the `BEARLUMEN_API_KEY` environment variable and `base_url` to
    `BEARLUMEN_BASE_URL`, then to the hosted API. Every call but `usage.record` is a plain
    synchronous HTTP call with retries; `usage.record` queues the event for a background worker
    (unless `buffered=False`) and returns at once. Call `flush()` to wait for delivery, and
    `close()` (or use `with Client(...) as client:`) when done; a process exiting normally
    flushes on its way out, waiting at most `shutdown_timeout` seconds.
    """

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
        on_overflow: str = "drop",
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        on_error: Optional[ErrorCallback] = None,
        sleep: Optional[Callable[[float], Any]] = None,
        spool_dir: Union[str, os.PathLike[str], None] = None,
        compress: Optional[bool] = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("BEARLUMEN_API_KEY")
        if not key or not key.strip():
            raise AuthenticationError(
                "No API key: pass Client(api_key=...) or set BEARLUMEN_API_KEY"
            )
        url = base_url or os.environ.get("BEARLUMEN_BASE_URL") or DEFAULT_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise InvalidRequestError(
                "base_url must start with http:// or https://", param="base_url"
            )
        if type(max_retries) is not int or max_retries < 0:
            raise InvalidRequestError(
                f"max_retries must be an int >= 0, not {max_retries!r}", param="max_retries"
            )
        if not is_positive_number(timeout):
            raise InvalidRequestError(
                f"timeout must be a number > 0, not {timeout!r}", param="timeout"
            )
        settings = ShipperSettings(
            flush_at=flush_at,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            on_overflow=on_overflow,
            delivery_timeout=delivery_timeout,
            shutdown_timeout=shutdown_timeout,
        )
        self._http = HttpCore(
            api_key=key.strip(),
            base_url=url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client,
            compress=compress,
            **({"sleep": sleep} if sleep is not None else {}),
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
            )
        self.end_users = EndUsers(self._http)
        self.subscriptions = Subscriptions(self._http)
        self.usage = Usage(self._http, self._shipper)
        self.cost_attribution = CostAttribution(self._http)
        self.llm = LLM(self.usage)  # meter OpenAI / Anthropic calls (docs/llm.md)
        self._closed = False

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def flush(self, timeout: Optional[float] = None) -> FlushResult:
        """Block until every event recorded before this call is delivered or has failed for good.

        Returns the shipper's counts; `complete` is False when `timeout` (seconds) passed first.
        """
        if self._shipper is None:
            return {**_NO_STATS, "complete": True}  # type: ignore[typeddict-item]
        return self._shipper.flush(timeout)

    def stats(self) -> ShipperStats:
        """What the shipper has done: queued, sent, recorded, duplicate, rejected, dropped,
        failed, retries, batches."""
        if self._shipper is None:
            return dict(_NO_STATS)  # type: ignore[return-value]
        return self._shipper.stats()

    def close(self, timeout: Optional[float] = None) -> FlushResult:
        """Deliver what is queued (waiting at most `timeout`, default `shutdown_timeout`), stop
        the worker and release connections. Idempotent."""
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


_NO_STATS = {"queued": 0, **dict.fromkeys(COUNTERS, 0)}
