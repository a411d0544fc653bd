"""`endpoint`: wraps a handler with what every `/v1/` route shares.

Request ids, auth (the API key names the tenant), unknown query parameters refused, body limits
and gzip, JSON parsing, `Idempotency-Key` replays and the error body. Handlers block on storage,
so they run in worker threads, never on the event loop: everything after the body is read is
one hop to a worker and one back.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from .body import parse_json, read_body
from .call import ApiRequest
from .errors import ApiError, invalid
from .replay import Claim, release, remember, replay_or_claim
from .responses import error_response, json_response
from .state import Handler, ServerState
from .store import NotFound

MAX_API_KEY_LENGTH = 512

Endpoint = Callable[[Request], Awaitable[Response]]


def tenant_of(state: ServerState, request: Request) -> int:
    """The tenant the request's bearer key stands for; 401 without a (known) key."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_API_KEY_LENGTH:
        raise ApiError(
            401, "authentication_error", "Missing API key: send Authorization: Bearer <key>"
        )
    if state.api_keys is not None and token not in state.api_keys:
        raise ApiError(401, "authentication_error", "Invalid API key")
    return state.store.database.tenant_for_key(token)


def endpoint(state: ServerState, handler: Handler, known_query: frozenset[str]) -> Endpoint:
    async def answer(request: Request) -> Response:
        request_id = state.request_ids.next()
        try:
            tenant = tenant_of(state, request)
            for name, _ in parse_qsl(request.url.query, keep_blank_values=True):
                if name not in known_query:  # parse_qsl keeps the nameless `&=` too
                    raise invalid(name or None, f"{name!r} is not a known query parameter")
            body = b""
            key = None
            if request.method in ("POST", "PATCH"):
                body = await read_body(request)
                key = request.headers.get("idempotency-key")
            # One hop to a worker thread for everything after the body is read: the replay
            # lookup and the answer's storage wait for the store's lock, and the JSON parse is
            # the biggest part of a batch's work, so none of it holds up the event loop.
            # The event loop's own executor (min(32, cores + 4) threads, shut down with the loop
            # by asyncio.run): cheaper per call than Starlette's run_in_threadpool (anyio's
            # pool of 40 behind a capacity limiter).
            return await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(_handle, state, handler, request, request_id, tenant, key, body),
            )
        except ApiError as exc:
            return error_response(request_id, exc)

    return answer


def _handle(
    state: ServerState,
    handler: Handler,
    request: Request,
    request_id: str,
    tenant: int,
    key: str | None,
    body: bytes,
) -> Response:
    """The rest of a request, in a worker thread: replay or claim, parse, handle, remember."""
    claim: Claim | None = None
    try:
        if key is not None:
            replay = replay_or_claim(state, tenant, key, request, body)
            if isinstance(replay, Response):
                return replay
            claim = replay
        call = ApiRequest(tenant, request.path_params, request.query_params, parse_json(body))
        try:
            status, answer = handler(state, call)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        response = json_response(status, answer, {"X-Request-Id": request_id})
    except ApiError as exc:
        response = error_response(request_id, exc)
    except BaseException:
        # An unexpected failure (a 500) stores no answer, but must not keep the key
        # claimed: every retry would be told 409 conflict_retry for ever.
        if claim is not None:
            release(state, claim[0], claim[1])
        raise
    if claim is not None:
        remember(state, claim, response)
    return response


def by_method(endpoints: dict[str, Endpoint]) -> Endpoint:
    """One endpoint for a path that dispatches on the method."""

    async def dispatch(request: Request) -> Response:
        return await endpoints[request.method](request)

    return dispatch
