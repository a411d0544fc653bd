"""`/_admin/stats` and `/_admin/faults`: loopback only, and only when faults are allowed."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .body import parse_json
from .errors import ApiError
from .faults import FaultSettings
from .responses import json_response
from .state import ServerState

_LOOPBACK_HOSTS = ("127.", "::1", "localhost")


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    return host.startswith(_LOOPBACK_HOSTS)


def admin_routes(state: ServerState) -> list[Route]:
    async def stats(request: Request) -> Response:
        if not _is_loopback(request):
            return Response(status_code=404)
        events = await run_in_threadpool(state.store.events.count_events)
        body = {
            "requestsByStatus": {str(k): v for k, v in sorted(state.statuses.items())},
            "eventsStored": events,
            "faults": state.faults.settings() if state.faults else None,
        }
        return json_response(200, body, {})

    async def faults(request: Request) -> Response:
        if not _is_loopback(request) or state.faults is None:
            return Response(status_code=404)
        try:
            settings = FaultSettings.from_mapping(parse_json(await request.body()) or {})
        except (ValueError, TypeError, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            return json_response(
                400, {"error": {"type": "invalid_request", "message": message}}, {}
            )
        state.faults.configure(settings)
        return json_response(200, state.faults.settings(), {})

    return [
        Route("/_admin/stats", stats, methods=["GET"]),
        Route("/_admin/faults", faults, methods=["POST"]),
    ]
