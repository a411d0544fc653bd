"""Every route of docs/wire-api.md, in one table."""

from __future__ import annotations

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .endpoint import Endpoint, by_method, endpoint
from .handlers import cost_attribution, end_users, subscriptions, usage
from .openapi import openapi_document
from .responses import json_response
from .state import Handler, ServerState

_PAGING = ("limit", "offset")
_DATES = ("startDate", "endDate")

# (method, path, handler, the query parameters it takes: any other is a 400, so that a
# misspelt filter never silently returns unfiltered data)
TABLE: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("POST", "/v1/end-users", end_users.create_end_user, ()),
    ("GET", "/v1/end-users", end_users.list_end_users, ("status", *_PAGING)),
    ("PATCH", "/v1/end-users/{id}", end_users.update_end_user, ()),
    ("POST", "/v1/end-users/{id}/deactivate", end_users.deactivate_end_user, ()),
    ("POST", "/v1/end-users/{id}/reactivate", end_users.reactivate_end_user, ()),
    ("POST", "/v1/subscriptions", subscriptions.create_subscription, ()),
    ("GET", "/v1/subscriptions", subscriptions.list_subscriptions, ("organizationId", *_PAGING)),
    ("GET", "/v1/subscriptions/{id}", subscriptions.retrieve_subscription, ()),
    ("PATCH", "/v1/subscriptions/{id}", subscriptions.update_subscription, ()),
    ("POST", "/v1/subscriptions/{id}/cancel", subscriptions.cancel_subscription, ()),
    ("POST", "/v1/usage/events", usage.record_event, ()),
    (
        "GET",
        "/v1/usage/events",
        usage.query_events,
        ("subscriptionId", "metricName", "agentId", "workflowId", *_DATES, *_PAGING),
    ),
    ("POST", "/v1/usage/events/batch", usage.record_batch, ()),
    (
        "GET",
        "/v1/usage/aggregation",
        usage.usage_aggregation,
        ("subscriptionId", "metricName", *_DATES),
    ),
    ("GET", "/v1/usage/summary", usage.usage_summary, ("subscriptionId", *_DATES)),
    ("GET", "/v1/cost-attribution/by-agent", cost_attribution.breakdown("agent"), _DATES),
    ("GET", "/v1/cost-attribution/by-workflow", cost_attribution.breakdown("workflow"), _DATES),
    ("GET", "/v1/cost-attribution/agents", cost_attribution.distinct("agent"), _DATES),
    ("GET", "/v1/cost-attribution/workflows", cost_attribution.distinct("workflow"), _DATES),
]


def api_routes(state: ServerState) -> list[Route]:
    """The table's routes, plus `/health` and `/openapi.json` (which need no key)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for method, path, handler, query in TABLE:
        by_path.setdefault(path, {})[method] = endpoint(state, handler, frozenset(query))
    # One Route per path, so that a 405 lists every method the path has in `Allow`.
    routes = [
        Route(path, by_method(endpoints), methods=list(endpoints))
        for path, endpoints in by_path.items()
    ]

    async def health(request: Request) -> Response:
        return json_response(200, {"status": "ok"}, {})

    document = to_json(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    return [
        *routes,
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
