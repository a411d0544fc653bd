"""What `Client` and `AsyncClient` share: checking the connection options, the shipper's counts,
and waiting for delivery (`flush_after`)."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, overload

from ._constants import DEFAULT_BASE_URL
from ._errors import AuthenticationError, InvalidRequestError
from ._flushing import Handler, await_flush, flush_after_decorator
from ._http import BaseHttpCore
from ._llm import LLM
from ._outcomes import COUNTERS
from ._shipper import Shipper, is_positive_number
from ._types import FlushResult, ShipperStats


def checked_connection(
    api_key: Optional[str],
    base_url: Optional[str],
    timeout: Any,
    max_retries: Any,
    http_client: Any,
    http_client_type: type[Any],
    client: str,
) -> tuple[str, str]:
    """The API key and base URL (from the arguments or the environment), with the connection
    options checked: bad ones fail here, at construction, naming the option."""
    key = api_key if api_key is not None else os.environ.get("BEARLUMEN_API_KEY")
    if not key or not key.strip():
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
    return key.strip(), url


class BaseClient:
    """What `Client` and `AsyncClient` share: the shipper's counts and waiting for delivery."""

    _http: BaseHttpCore
    _shipper: Optional[Shipper]
    llm: LLM

    @property
    def base_url(self) -> str:
        return self._http.base_url

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
