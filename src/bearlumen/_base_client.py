"""What `Client` and `AsyncClient` share: their options and wiring (one constructor, here),
checking the connection options, the shipper's counts, and waiting for delivery (`flush_after`).

The two differ only in their HTTP core (`_connect`), in the options one of them refuses
(`_check_options`), and in how they flush and close."""

from __future__ import annotations

import os
from typing import Any, Callable, Generic, Optional, TypeVar, Union, overload

import httpx

from ._constants import (
    DEFAULT_BASE_URL,
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
from ._errors import AuthenticationError, InvalidRequestError
from ._flushing import Handler, await_flush, flush_after_decorator
from ._http import ApiKey, AsyncHttpCore, HttpCore
from ._llm import LLM
from ._outcomes import COUNTERS, ErrorCallback
from ._shipper import Shipper, ShipperSettings, is_positive_number
from ._types import FlushResult, ShipperStats
from .resources import CostAttribution, EndUsers, Subscriptions, Usage

# The caller's own pool, if any (an httpx.Client for Client, an httpx.AsyncClient for
# AsyncClient), and the core that sends the API calls (HttpCore, AsyncHttpCore).
HttpClientT = TypeVar("HttpClientT", httpx.Client, httpx.AsyncClient)
CoreT = TypeVar("CoreT", HttpCore, AsyncHttpCore)
SleepT = Optional[Callable[[float], Any]]


def checked_connection(
    api_key: ApiKey,
    base_url: Optional[str],
    timeout: Any,
    max_retries: Any,
    http_client: Any,
    http_client_type: type[Any],
    client: str,
) -> str:
    """The base URL (from the argument or the environment), with the API key and the connection
    options checked: bad ones fail here, at construction, naming the option."""
    if not api_key:
        raise AuthenticationError(
            f"No API key: pass {client}(api_key=...) or set BEARLUMEN_API_KEY"
        )
    url = base_url or os.environ.get("BEARLUMEN_BASE_URL") or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise InvalidRequestError("base_url must start with http:// or https://", param="base_url")
    if type(max_retries) is not int or max_retries < 0:
        raise InvalidRequestError(
            f"max_retries must be an int >= 0, not {max_retries!r}", param="max_retries"
        )
    if not is_positive_number(timeout):
        raise InvalidRequestError(f"timeout must be a number > 0, not {timeout!r}", param="timeout")
    if http_client is not None and not isinstance(http_client, http_client_type):
        raise InvalidRequestError(
            f"http_client must be an httpx.{http_client_type.__name__} for {client}",
            param="http_client",
        )
    return url


class BaseClient(Generic[HttpClientT, CoreT]):
    """What `Client` and `AsyncClient` share: their constructor (each documents its options in
    its own docstring), the shipper's counts and waiting for delivery."""

    _http: CoreT
    _shipper: Optional[Shipper]
    _http_client_type: type[HttpClientT]

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: Optional[HttpClientT] = None,
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
        sleep: SleepT = None,
        spool_dir: Union[str, os.PathLike[str], None] = None,
        compress: Optional[bool] = None,
        handle_sigterm: bool = True,
    ) -> None:
        key = ApiKey.given(api_key)
        del api_key  # from here on, a traceback's locals show only the redacted ApiKey
        name = type(self).__name__
        url = checked_connection(
            key, base_url, timeout, max_retries, http_client, self._http_client_type, name
        )
        self._check_options(buffered=buffered, on_overflow=on_overflow, spool_dir=spool_dir)
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
        options = {"api_key": key, "base_url": url, "timeout": timeout}
        worker_http, worker_sleep = self._connect(
            http_client, sleep, max_retries=max_retries, compress=compress, **options
        )
        self._shipper = None
        if buffered:
            self._shipper = Shipper(
                worker_http,
                settings,
                on_error=on_error,
                sleep=worker_sleep,
                spool_dir=None if spool_dir is None else os.fspath(spool_dir),
                handle_sigterm=handle_sigterm,
            )
        self.end_users: EndUsers[CoreT] = EndUsers(self._http)
        self.subscriptions: Subscriptions[CoreT] = Subscriptions(self._http)
        self.usage: Usage[CoreT] = Usage(self._http, self._shipper)
        self.cost_attribution: CostAttribution[CoreT] = CostAttribution(self._http)
        self.llm = LLM(self.usage)  # meter OpenAI / Anthropic calls (docs/llm.md)
        if self._shipper is not None:  # the LLM calls it has queued are recorded on every way out
            self._shipper.record_first_at_exit(self.llm._record_queued_calls)
            self.llm._deferred.on_signal = self._shipper.reinstall_sigterm_after_fork
        self._closed = False

    def _check_options(
        self, *, buffered: bool, on_overflow: str, spool_dir: Union[str, os.PathLike[str], None]
    ) -> None:
        """Refuse what this client cannot do, before anything is opened."""
        raise NotImplementedError

    def _connect(
        self, http_client: Optional[HttpClientT], sleep: SleepT, **options: Any
    ) -> tuple[HttpCore, SleepT]:
        """Open `self._http` for the API calls; return the core and the sleep the shipper's
        worker thread sends and waits with."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def __repr__(self) -> str:
        # Never raises, even for a client whose construction failed: a traceback rendered with
        # locals calls it, and an exception there would hide the real one.
        http = getattr(self, "_http", None)
        if http is None:
            return f"<bearlumen.{type(self).__name__} (not constructed)>"
        mode = "buffered" if getattr(self, "_shipper", None) is not None else "unbuffered"
        return f"<bearlumen.{type(self).__name__} base_url={http.base_url!r} {mode}>"

    def stats(self) -> ShipperStats:
        """What the shipper has done: queued, sent, recorded, duplicate, rejected, dropped,
        failed, retries, batches."""
        if self._shipper is None:
            return dict(_NO_STATS)  # type: ignore[return-value]
        return self._shipper.stats()

    def _wait_for_delivery(self, timeout: Optional[float]) -> FlushResult:
        """Flush, blocking the calling thread."""
        self.llm._drain()  # LLM calls captured off their thread are recorded first
        if self._shipper is None:
            return {**_NO_STATS, "complete": True}  # type: ignore[typeddict-item]
        return self._shipper.flush(timeout)

    async def _await_delivery(self, timeout: Optional[float]) -> FlushResult:
        """Flush, letting the running event loop go on while the worker delivers."""
        self.llm._drain()  # LLM calls captured off their thread are recorded first
        if self._shipper is None:
            return {**_NO_STATS, "complete": True}  # type: ignore[typeddict-item]
        return await await_flush(self._shipper, timeout)

    @overload
    def flush_after(self, timeout: Handler) -> Handler: ...

    @overload
    def flush_after(self, timeout: Optional[float] = None) -> Callable[[Handler], Handler]: ...

    def flush_after(self, timeout: Any = None) -> Any:
        """Decorate a serverless handler (sync or async): when it returns or raises, wait until
        everything recorded so far is delivered, at most `timeout` seconds and, when the
        handler's second argument is an AWS Lambda context, at most the time the invocation
        has left (minus half a second).

            @client.flush_after()
            def handler(event, context):
                client.usage.record('token_usage', 'llm_tokens', 1200, agent_id='lambda-bot')
                return {'statusCode': 200}

        What cannot be delivered in time stays queued (and in the spool, with `spool_dir`) and
        goes out during the next invocation; a warning says how many events wait.
        """
        if callable(timeout):  # used bare: @client.flush_after
            return self.flush_after()(timeout)
        return flush_after_decorator(self._wait_for_delivery, self._await_delivery, timeout)


_NO_STATS = {"queued": 0, "in_flight": 0, **dict.fromkeys(COUNTERS, 0)}
