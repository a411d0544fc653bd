"""Waiting for delivery from the caller's side: inside an event loop without blocking it, and
when a serverless handler returns (`flush_after`).

A serverless platform freezes (AWS Lambda) or throttles (Cloud Run) the process as soon as the
handler returns, so the worker cannot ship in the background between invocations: the handler
must wait for delivery before it returns. `flush_after` does that wait, bounded by the caller's
`timeout` and by the time the Lambda invocation has left (minus a margin, so the handler still
returns before the platform kills it). What is not delivered by then stays queued (and in the
spool, with `spool_dir`) and goes out during the next invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, TypeVar

from ._constants import LAMBDA_TIME_MARGIN
from ._errors import InvalidRequestError
from ._shipper import Shipper
from ._types import FlushResult

logger = logging.getLogger("bearlumen")

Handler = TypeVar("Handler", bound=Callable[..., Any])
BlockingFlush = Callable[[Optional[float]], FlushResult]
AwaitedFlush = Callable[[Optional[float]], Awaitable[FlushResult]]


async def await_flush(shipper: Shipper, timeout: Optional[float]) -> FlushResult:
    """`Shipper.flush` for an event loop: the worker completes a future when the flush marker
    is reached, so the loop runs on while it waits.

    The timeout is kept by a timer thread, not by the loop: a test's `freeze_time` stops the
    loop's clock (freezegun patches the `time.monotonic` that asyncio reads, unless
    `real_asyncio=True`), and a loop timer would then never fire."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[bool] = loop.create_future()

    def settle(complete: bool) -> None:  # on the worker, a sender or the timer thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, outcome, complete)

    complete = True
    if shipper.request_flush(functools.partial(settle, True)):
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, settle, (False,))
            timer.daemon = True
            timer.start()
        try:
            complete = await outcome
        finally:
            if timer is not None:
                timer.cancel()
    return {**shipper.stats(), "complete": complete}


def _resolve(future: asyncio.Future[bool], complete: bool) -> None:
    if not future.done():  # the first of delivery and timeout settles it; or it was cancelled
        future.set_result(complete)


def check_timeout(timeout: Any) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise InvalidRequestError(
            f"timeout must be None or a number >= 0, not {timeout!r}", param="timeout"
        )
    return float(timeout)


def flush_budget(
    timeout: Optional[float], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Optional[float]:
    """Seconds `flush_after` may wait: `timeout`, and at most what a Lambda invocation has left.

    The context is the handler's second argument (`handler(event, context)`) or its `context`
    keyword; anything with `get_remaining_time_in_millis()` counts as one.
    """
    context = args[1] if len(args) > 1 else kwargs.get("context")
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return timeout
    try:
        left = max(0.0, float(remaining_ms()) / 1000.0 - LAMBDA_TIME_MARGIN)
    except Exception:  # a context that cannot say: fall back to `timeout` alone
        return timeout
    return left if timeout is None else min(timeout, left)


def flush_after_decorator(
    blocking_flush: BlockingFlush, awaited_flush: AwaitedFlush, timeout: Optional[float]
) -> Callable[[Handler], Handler]:
    """The decorator behind `Client.flush_after` and `AsyncClient.flush_after`."""
    timeout = check_timeout(timeout)

    def decorate(handler: Handler) -> Handler:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(*args, **kwargs)
                finally:
                    _report(await awaited_flush(flush_budget(timeout, args, kwargs)))

            return run_async  # type: ignore[return-value]

        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                _report(blocking_flush(flush_budget(timeout, args, kwargs)))

        return run  # type: ignore[return-value]

    return decorate


def _report(result: FlushResult) -> None:
    if not result["complete"]:
        logger.warning(
            "bearlumen: the handler returned with %d usage event(s) not yet delivered (out of"
            " time); they stay queued and go out during the next invocation",
            result["queued"] + result["in_flight"],
        )
