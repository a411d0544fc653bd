"""Every route of docs/wire-api.md, in one table: what serves it, and what openapi.json says."""

from __future__ import annotations

from typing import NamedTuple

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .endpoint import Endpoint, by_method, endpoint
from .handlers import cost_attribution, end_users, subscriptions, usage
from .responses import json_response
from .state import Handler, ServerState

_PAGING = ("limit", "offset")
_DATES = ("startDate", "endDate")


class ApiRoute(NamedTuple):
    """One route of docs/wire-api.md: what serves it, and what openapi.json says of it."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    status: int  # on success
    answer: str  # the answer's schema: a name in openapi.py's components
    # The query parameters it takes (any other is a 400, so that a misspelt filter never
    # silently returns unfiltered data), and those of them it requires.
    query: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    body: str | None = None  # the request body's model (`_wire`), if it takes one


# Every route, once: the server serves this table, and openapi.json is written from it.
TABLE: list[ApiRoute] = [
    ApiRoute("POST", "/v1/end-users", end_users.create_end_user, "createEndUser", 201,
             "EndUserResponse", body="EndUserCreate"),
    ApiRoute("GET", "/v1/end-users", end_users.list_end_users, "listEndUsers", 200,
             "EndUserList", ("status", *_PAGING)),
    ApiRoute("PATCH", "/v1/end-users/{id}", end_users.update_end_user, "updateEndUser", 200,
             "EndUserResponse", body="EndUserUpdate"),
    ApiRoute("POST", "/v1/end-users/{id}/deactivate", end_users.deactivate_end_user,
             "deactivateEndUser", 200, "EndUserResponse"),
    ApiRoute("POST", "/v1/end-users/{id}/reactivate", end_users.reactivate_end_user,
             "reactivateEndUser", 200, "EndUserResponse"),
    ApiRoute("POST", "/v1/subscriptions", subscriptions.create_subscription,
             "createSubscription", 201, "Subscription", body="SubscriptionCreate"),
    ApiRoute("GET", "/v1/subscriptions", subscriptions.list_subscriptions, "listSubscriptions",
             200, "SubscriptionList", ("organizationId", *_PAGING)),
    ApiRoute("GET", "/v1/subscriptions/{id}", subscriptions.retrieve_subscription,
             "retrieveSubscription", 200, "Subscription"),
    ApiRoute("PATCH", "/v1/subscriptions/{id}", subscriptions.update_subscription,
             "updateSubscription", 200, "Subscription", body="SubscriptionUpdate"),
    ApiRoute("POST", "/v1/subscriptions/{id}/cancel", subscriptions.cancel_subscription,
             "cancelSubscription", 200, "Subscription"),
    ApiRoute("POST", "/v1/usage/events", usage.record_event, "recordUsageEvent", 201,
             "UsageRecordResponse", body="UsageEventInput"),
    ApiRoute("GET", "/v1/usage/events", usage.query_events, "queryUsageEvents", 200,
             "UsageEventList",
             ("subscriptionId", "metricName", "agentId", "workflowId", *_DATES, *_PAGING)),
    ApiRoute("POST", "/v1/usage/events/batch", usage.record_batch, "recordUsageBatch", 200,
             "UsageBatchResult", body="UsageBatch"),
    ApiRoute("GET", "/v1/usage/aggregation", usage.usage_aggregation, "usageAggregation", 200,
             "UsageAggregation", ("subscriptionId", "metricName", *_DATES)),
    ApiRoute("GET", "/v1/usage/summary", usage.usage_summary, "usageSummary", 200,
             "UsageSummary", ("subscriptionId", *_DATES)),
    ApiRoute("GET", "/v1/cost-attribution/by-agent", cost_attribution.breakdown("agent"),
             "costByAgent", 200, "CostBreakdownResponse", _DATES, _DATES),
    ApiRoute("GET", "/v1/cost-attribution/by-workflow", cost_attribution.breakdown("workflow"),
             "costByWorkflow", 200, "CostBreakdownResponse", _DATES, _DATES),
    ApiRoute("GET", "/v1/cost-attribution/agents", cost_attribution.distinct("agent"),
             "listAgents", 200, "AttributionValues", _DATES, _DATES),
    ApiRoute("GET", "/v1/cost-attribution/workflows", cost_attribution.distinct("workflow"),
             "listWorkflows", 200, "AttributionValues", _DATES, _DATES),
]  # fmt: skip


def api_routes(state: ServerState) -> list[Route]:
    """The table's routes, plus `/health` and `/openapi.json` (which need no key)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for route in TABLE:
        by_path.setdefault(route.path, {})[route.method] = endpoint(
            state, route.handler, frozenset(route.query)
        )
    # One Route per path, so that a 405 lists every method the path has in `Allow`.
    routes = [
        Route(path, by_method(endpoints), methods=list(endpoints))
        for path, endpoints in by_path.items()
    ]

    async def health(request: Request) -> Response:
        return json_response(200, {"status": "ok"}, {})

    from .openapi import openapi_document  # written from TABLE: it imports this module

    document = to_json(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    return [
        *routes,
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
