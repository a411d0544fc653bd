"""The outermost ASGI layer: injects faults, counts answers by status, fills in X-Request-Id."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError
from .faults import Fault
from .responses import error_response
from .state import ServerState


class OutermostMiddleware:
    """Counts statuses, fills in X-Request-Id on framework answers, and injects faults."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        fault = state.faults.choose(scope["path"]) if state.faults is not None else None
        if fault is not None and fault.kind == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            fault = None
        if fault is not None and fault.kind == "drop":
            _drop_connection(send)
            state.statuses[0] += 1  # 0: answered with nothing
            return
        if fault is not None and fault.kind in ("429", "500", "503", "307"):
            await self._answer_fault(fault, scope, receive, send)
            return
        replace_with_500 = fault is not None and fault.kind == "store_500"
        counted = not scope["path"].startswith("/_admin/")

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                if replace_with_500:
                    state.statuses[500] += 1
                    return
                if counted:
                    state.statuses[message["status"]] += 1
                names = {name.lower() for name, _ in message.get("headers", [])}
                if b"x-request-id" not in names:
                    message = dict(message)
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", state.request_ids.next().encode()),
                    ]
            elif message["type"] == "http.response.body" and replace_with_500:
                if not message.get("more_body", False):
                    error = ApiError(500, "server_error", "Injected fault: stored, then failed")
                    await error_response(state.request_ids.next(), error)(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, send_counted)

    async def _answer_fault(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        # Drain the request body first, as a real server would before answering.
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False) and message["type"] == "http.request"
        if fault.kind == "307":
            self.state.statuses[307] += 1
            headers = [
                (b"location", b"/"),
                (b"content-length", b"0"),
                (b"x-request-id", self.state.request_ids.next().encode()),
            ]
            await send({"type": "http.response.start", "status": 307, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if fault.kind == "429":
            error = ApiError(
                429, "rate_limited", "Injected fault: rate limited", retryAfter=fault.retry_after
            )
        else:
            error = ApiError(int(fault.kind), "server_error", f"Injected fault: {fault.kind}")
        self.state.statuses[error.status] += 1
        await error_response(self.state.request_ids.next(), error)(scope, receive, send)


def _drop_connection(send: Send) -> None:
    """Close the TCP connection with no answer at all.

    ASGI has no message for this, so reach uvicorn's transport through its bound `send`; the
    cycle is marked disconnected so uvicorn does not try to write a 500 afterwards.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("the drop fault needs uvicorn's h11 or httptools protocol")
    transport.abort()
    cycle.disconnected = True  # type: ignore[union-attr]
