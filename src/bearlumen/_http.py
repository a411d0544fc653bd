"""The one place that owns HTTP: headers, JSON, retries, timeouts and error mapping.

Resource methods describe a `Call`; `HttpCore` (sync, `httpx.Client`) or `AsyncHttpCore` (asyncio,
`httpx.AsyncClient`) runs it, and the shipper's worker calls `HttpCore.request()`; nothing else
touches httpx. Both cores share `BaseHttpCore`: they differ only in how they send and sleep. The
retry policy is built here from the client's settings with tenacity, once:

* only what `is_retryable` says (network errors, 408, 429, 5xx, 409 `conflict_retry`);
* exponential backoff with jitter, where a server's `Retry-After` is a floor, never shortened;
* bounded by `max_retries` for a synchronous call, or by a delivery deadline for the shipper;
* one `Idempotency-Key` per logical POST/PATCH, made before the first attempt and reused on
  every retry, so a retried create never creates twice;
* after the last attempt the caller gets the typed bearlumen exception, never tenacity's.

The API key lives in one `ApiKey`, whose repr and str are redacted, and reaches a request only
through `BearerAuth.auth_flow`, which httpx calls as it sends: no frame of ours (request, retry,
sender, client) holds the key or its header in a local, so a traceback rendered with locals
(`pytest -l`, rich's `show_locals`, an error tracker capturing frame variables) never shows it.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import inspect
import ipaddress
import json
import logging
import os
import platform
import random
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass
from typing import (
    Any,
    AsyncGenerator,
    Callable,
    Generator,
    Generic,
    Mapping,
    NamedTuple,
    Optional,
    TypeVar,
    cast,
)
from urllib.parse import urlsplit

import httpx
import tenacity

from . import _ids
from ._clock import monotonic
from ._constants import INITIAL_RETRY_DELAY, MAX_RETRY_DELAY
from ._errors import (
    BearLumenError,
    InvalidRequestError,
    NetworkError,
    error_from_response,
    is_retryable,
)
from ._version import __version__

logger = logging.getLogger("bearlumen")

_PYTHON = ".".join(platform.python_version_tuple()[:2])
USER_AGENT = f"bearlumen-python/{__version__} python/{_PYTHON}"


NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class ApiKey:
    """The API key, kept where neither a repr, a log line nor a traceback's locals show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | ApiKey) -> None:
        self._value: str = value._value if isinstance(value, ApiKey) else value.strip()

    @classmethod
    def given(cls, value: Optional[str]) -> ApiKey:
        """The key passed to a client, else `BEARLUMEN_API_KEY` (empty when neither is set)."""
        return cls(value if value is not None else os.environ.get("BEARLUMEN_API_KEY", ""))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "ApiKey('[redacted]')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an ApiKey is not pickled: pass the key to the client in each process")

    def header_value(self, scheme: str) -> str:
        """The key as a header carries it (`scheme` "Bearer" for Authorization, "" for a bare
        key header): called only by `BearerAuth`, as httpx sends."""
        return f"{scheme} {self._value}" if scheme else self._value


class BearerAuth(httpx.Auth):
    """Sets the key's header on each request as httpx sends it (and on a retry, which is a new
    request), from the `ApiKey` it holds: `Authorization: Bearer <key>` for Bear Lumen, or
    another header for an API that wants one (Anthropic's `x-api-key`)."""

    def __init__(
        self, api_key: ApiKey, *, header: str = "Authorization", scheme: str = "Bearer"
    ) -> None:
        self._api_key = api_key
        self._header = header
        self._scheme = scheme

    def __repr__(self) -> str:
        return f"<bearlumen.BearerAuth {self._header} [redacted]>"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._api_key.header_value(self._scheme)
        yield request


def backoff_delay(
    attempt: int,
    exc: BaseException | None,
    *,
    initial: float = INITIAL_RETRY_DELAY,
    maximum: float = MAX_RETRY_DELAY,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential with "equal jitter" (half fixed, half random), capped at `maximum`; a server's
    `Retry-After` on the failure is a floor, even above the cap.
    """
    base = min(maximum, initial * 2.0 ** (attempt - 1))
    delay = base / 2 + jitter() * base / 2
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None and retry_after > delay:
        return float(retry_after)
    return delay


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _stop_before_deadline(tenacity.stop.stop_base):
    """tenacity's `stop_before_delay` on the real clock (`_clock.py`): tenacity reads
    `time.monotonic`, which a user's `freeze_time` stops, and a frozen deadline never passes."""

    def __init__(self, seconds: float) -> None:
        self.ends_at = monotonic() + seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return monotonic() + retry_state.upcoming_sleep >= self.ends_at


ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Call(Generic[ResultT]):
    """One logical API call as a resource method describes it, whatever the transport.

    `ResultT` is the TypedDict the answer decodes to: it is never checked at run time, it only
    carries the resource method's result type through `HttpCore.call` / `AsyncHttpCore.call`.
    """

    method: str
    path: str
    params: Optional[Mapping[str, Any]] = None
    body: Any = None


class _Outgoing(NamedTuple):
    """A request ready to send: built once per logical call, the same bytes on every attempt."""

    method: str
    url: str
    params: Mapping[str, Any]
    content: Optional[bytes]
    headers: Mapping[str, str]


class BaseHttpCore:
    """Everything about a call but how it is sent and how it sleeps: configuration, headers,
    encoding, the idempotency key, the retry policy and error mapping. `HttpCore` (httpx.Client)
    and `AsyncHttpCore` (httpx.AsyncClient) add only their send and their sleep."""

    _http_client: Any  # httpx.Client or httpx.AsyncClient: the subclass says which
    default_sleep: Callable[[float], Any]

    def __init__(
        self,
        *,
        api_key: ApiKey,
        base_url: str,
        timeout: float,
        max_retries: int,
        http_client: Any = None,
        sleep: Callable[[float], Any] | None = None,
        compress: bool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.sleep = sleep if sleep is not None else self.default_sleep
        self._auth = BearerAuth(api_key)
        self._owns_http_client = http_client is None
        self._http_client = http_client if http_client is not None else self._new_http_client()
        self._warned_plain_http = threading.Event()
        # gzip request bodies over 1 KiB; by default everywhere but on loopback.
        self.compress = not is_loopback_url(self.base_url) if compress is None else compress

    def _new_http_client(self) -> Any:
        raise NotImplementedError

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {  # no Authorization: BearerAuth sets it as httpx sends
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _warn_if_plain_http(self) -> None:
        if self._warned_plain_http.is_set():
            return
        self._warned_plain_http.set()
        if self.base_url.startswith("http://") and not is_loopback_url(self.base_url):
            host = urlsplit(self.base_url).hostname
            message = (
                f"bearlumen is sending the API key over plain http:// to {host};"
                " use https:// for anything but a local server"
            )
            warnings.warn(message, stacklevel=4)
            logger.warning(message)

    def retry_policy(
        self,
        *,
        max_retries: int | None = None,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_retry: Callable[[BaseException | None, float], None] | None = None,
    ) -> dict[str, Any]:
        """The retry policy, as the arguments of `tenacity.Retrying` or `AsyncRetrying` (all but
        `sleep`): attempts (`max_retries`) or a time budget (`deadline`, seconds)."""
        if deadline is not None:
            stop: Any = _stop_before_deadline(deadline)
        else:
            retries = self.max_retries if max_retries is None else max_retries
            stop = tenacity.stop_after_attempt(retries + 1)
        if should_stop is not None:
            stop = stop | (lambda state: should_stop())

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return backoff_delay(state.attempt_number, exc)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.upcoming_sleep
            logger.debug(
                "bearlumen: attempt %d failed (%s); retrying in %.2fs",
                state.attempt_number,
                type(exc).__name__ if exc else "?",
                delay,
            )
            if on_retry is not None:
                on_retry(exc, delay)

        return {
            "stop": stop,
            "wait": wait,
            "retry": tenacity.retry_if_exception(is_retryable),
            "reraise": True,
            "before_sleep": before_sleep,
        }

    def _prepare(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        content: bytes | None,
        idempotency_key: str | None,
    ) -> _Outgoing:
        """Encode one logical call; its `Idempotency-Key` is made here, before any attempt."""
        self._warn_if_plain_http()
        if body is not None:
            content = encode_json(body)
        if method in ("POST", "PATCH") and idempotency_key is None:
            idempotency_key = _ids.request_keys.next()
        headers = self._headers(idempotency_key)
        if content is not None:
            headers["Content-Type"] = "application/json"
            if self.compress and len(content) > 1024:
                # Level 1: on a 1000-event batch about the ratio of level 5 (42 vs 47) at 40%
                # of its CPU time, which the worker shares with the caller's threads.
                content = gzip.compress(content, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return _Outgoing(method, self.base_url + path, query, content, headers)


def _build_request(
    http_client: httpx.Client | httpx.AsyncClient, outgoing: _Outgoing
) -> httpx.Request:
    method, url, params, content, headers = outgoing
    try:
        return http_client.build_request(
            method, url, params=params, content=content, headers=headers
        )
    except (httpx.InvalidURL, UnicodeError, TypeError, ValueError) as exc:
        raise InvalidRequestError(f"The request cannot be built: {exc}") from None


def _network_error(exc: httpx.TransportError, url: str) -> NetworkError:
    said = f"{type(exc).__name__} talking to {urlsplit(url).netloc}: {exc}"
    if isinstance(exc, httpx.ConnectError) and is_loopback_url(url):
        # Nothing listens there: most often a local server that is not running (yet).
        said += " (is the local server running? `bearlumen serve --port <port>` starts one)"
    return NetworkError(said)


def _decode_answer(response: httpx.Response, decode: Callable[[bytes], Any] | None = None) -> Any:
    """The decoded JSON of a success (by `decode` when given), or the typed exception of a
    failure."""
    if response.status_code >= 400:
        raise error_from_response(response)
    if response.status_code >= 300:  # the API never redirects: never take one for an answer
        raise BearLumenError(
            f"The server answered {response.status_code} (a redirect), not a result",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        )
    if not response.content:
        return None
    try:
        return response.json() if decode is None else decode(response.content)
    except ValueError:
        raise BearLumenError(
            "The server answered with a body that is not JSON",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
            body=response.text,
        ) from None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context, made at the first client: making one loads the CA bundle
    (~60 ms, most of what `Client()` cost), which each client paid before, even on loopback.
    A context is safe to share between clients and threads; SSL_CERT_FILE and SSL_CERT_DIR are
    read when it is made, as httpx reads them."""
    return httpx.create_ssl_context()


def connection_limits() -> httpx.Limits:
    # Keep-alive as many as may be open: with fewer, a burst of answers leaves more idle
    # connections than httpcore keeps, and it closes them while requests queue for new ones
    # (measured: 398 connects for 400 gathered calls at 10 of 20).
    return httpx.Limits(max_connections=20, max_keepalive_connections=20)


class HttpCore(BaseHttpCore):
    """Sends requests for one `Client` (and the shipper of either client): one pooled
    `httpx.Client`, one retry policy, blocking sleeps between attempts."""

    _http_client: httpx.Client
    default_sleep = staticmethod(time.sleep)

    def _new_http_client(self) -> httpx.Client:
        # TCP_NODELAY: httpx writes headers and body separately, and with Nagle's algorithm the
        # body's last segment waits for the peer's delayed ACK (~40 ms a request on Linux).
        transport = httpx.HTTPTransport(
            verify=tls_context(), limits=connection_limits(), socket_options=NO_DELAY
        )
        return httpx.Client(timeout=self.timeout, transport=transport)

    def reset_after_fork(self) -> None:
        """A forked child must not share its parent's sockets: open a fresh pool, leave the old."""
        if self._owns_http_client:
            self._http_client = self._new_http_client()

    def close(self) -> None:
        if self._owns_http_client:
            self._http_client.close()

    def retrying(
        self,
        *,
        max_retries: int | None = None,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        sleep: Callable[[float], Any] | None = None,
        on_retry: Callable[[BaseException | None, float], None] | None = None,
    ) -> tenacity.Retrying:
        """The retry policy with a blocking sleep (see `BaseHttpCore.retry_policy`)."""
        policy = self.retry_policy(
            max_retries=max_retries, deadline=deadline, should_stop=should_stop, on_retry=on_retry
        )
        return tenacity.Retrying(sleep=sleep or self.sleep, **policy)

    def call(self, call: Call[ResultT]) -> ResultT:
        """Run a resource method's call; return its answer."""
        return cast(
            ResultT, self.request(call.method, call.path, params=call.params, body=call.body)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        retrying: tenacity.Retrying | None = None,
        idempotency_key: str | None = None,
        decode: Callable[[bytes], Any] | None = None,
        attempt_timeout: Callable[[], float | None] | None = None,
    ) -> Any:
        """Send one logical call, with retries; return the decoded JSON answer (decoded by
        `decode` when given: the shipper reads a batch's answer its own, cheaper way); an attempt's
        timeout is `attempt_timeout()` unless None (the rest of the shipper's deadline)."""
        outgoing = self._prepare(method, path, params, body, content, idempotency_key)
        policy = retrying if retrying is not None else self.retrying()
        return policy(self._send_once, outgoing, decode, attempt_timeout)

    def _send_once(
        self,
        outgoing: _Outgoing,
        decode: Callable[[bytes], Any] | None = None,
        attempt_timeout: Callable[[], float | None] | None = None,
    ) -> Any:
        request = _build_request(self._http_client, outgoing)
        timeout = None if attempt_timeout is None else attempt_timeout()
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response = self._http_client.send(request, auth=self._auth)
        except httpx.TransportError as exc:
            raise _network_error(exc, outgoing.url) from exc
        return _decode_answer(response, decode)


class AsyncHttpCore(BaseHttpCore):
    """Sends requests for one `AsyncClient`: one pooled `httpx.AsyncClient`, the same retry
    policy as `HttpCore`, waits between attempts that yield to the event loop."""

    _http_client: httpx.AsyncClient
    default_sleep = staticmethod(asyncio.sleep)
    _loop: Optional[asyncio.AbstractEventLoop] = None  # the loop our pool's sockets belong to
    _pool_closer: Optional[AsyncGenerator[None, None]] = None  # closes the pool as `_loop` ends

    def _new_http_client(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            verify=tls_context(), limits=connection_limits(), socket_options=NO_DELAY
        )
        return httpx.AsyncClient(timeout=self.timeout, transport=transport)

    async def _http_client_for_this_loop(self) -> httpx.AsyncClient:
        """Pooled connections belong to the loop that opened them. A client that outlives its
        loop (a handler calling `asyncio.run` once per invocation) opens a fresh pool in the
        next loop, and each pool we own is closed in its own loop as that loop ends."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and self._owns_http_client:
                self._http_client = self._new_http_client()
            self._loop = loop
            if self._owns_http_client:
                # Started here, so this loop holds it; `asyncio.run` closes a loop's async
                # generators before the loop itself, and that closes the pool while its
                # sockets can still be closed properly. (A loop closed without
                # `shutdown_asyncgens` drops it unrun: the pool is then closed only by the GC.)
                self._pool_closer = _close_at_loop_end(self._http_client)
                await self._pool_closer.__anext__()
        return self._http_client

    async def aclose(self) -> None:
        if self._owns_http_client and self._loop in (None, asyncio.get_running_loop()):
            closer, self._pool_closer = self._pool_closer, None
            if closer is not None:
                await closer.aclose()  # its `finally` closes the pool
            else:
                await self._http_client.aclose()

    async def _sleep(self, seconds: float) -> None:
        # An injected sleep (tests) may be a plain function; the default is asyncio.sleep.
        waited = self.sleep(seconds)
        if inspect.isawaitable(waited):
            await waited

    async def call(self, call: Call[ResultT]) -> ResultT:
        """Run a resource method's call; return its answer."""
        return cast(
            ResultT, await self.request(call.method, call.path, params=call.params, body=call.body)
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one logical call, with retries; return the decoded JSON answer."""
        outgoing = self._prepare(method, path, params, body, None, idempotency_key)
        policy = tenacity.AsyncRetrying(sleep=self._sleep, **self.retry_policy())
        return await policy(self._send_once, outgoing)

    async def _send_once(self, outgoing: _Outgoing) -> Any:
        http_client = await self._http_client_for_this_loop()
        request = _build_request(http_client, outgoing)
        try:
            response = await http_client.send(request, auth=self._auth)
        except httpx.TransportError as exc:
            raise _network_error(exc, outgoing.url) from exc
        return _decode_answer(response)


async def _close_at_loop_end(http_client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Parked at its `yield` until its loop shuts down its async generators (or `aclose()`)."""
    try:
        yield
    finally:
        await http_client.aclose()


def encode_json(body: Any) -> bytes:
    """Strict JSON: NaN, infinities and non-JSON objects are an `InvalidRequestError`."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"The request cannot be sent as JSON: {exc}") from None
