"""`bearlumen.Client`: the blocking client (its options and wiring are `BaseClient`'s), and the
shipper's lifecycle."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import httpx

from ._base_client import BaseClient, SleepT
from ._errors import InvalidRequestError
from ._http import HttpCore
from ._types import FlushResult


class Client(BaseClient[httpx.Client, HttpCore]):
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
    _http_client_type = httpx.Client

    def _check_options(
        self, *, buffered: bool, on_overflow: str, spool_dir: Union[str, os.PathLike[str], None]
    ) -> None:
        if spool_dir is not None and not buffered:
            raise InvalidRequestError("spool_dir needs buffered=True", param="spool_dir")

    def _connect(
        self, http_client: Optional[httpx.Client], sleep: SleepT, **options: Any
    ) -> tuple[HttpCore, SleepT]:
        self._http = HttpCore(http_client=http_client, sleep=sleep, **options)
        return self._http, sleep  # the API calls and the worker share one pool

    def flush(self, timeout: Optional[float] = None) -> FlushResult:
        """Block until every event recorded before this call is delivered or has failed for good.

        Returns the shipper's counts; `complete` is False when `timeout` (seconds) passed first.
        With the server unreachable a batch is retried until `delivery_timeout` (10 minutes by
        default), so a bare flush() may wait that long: it logs a warning at once; pass
        `timeout` to wait less.
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
