"""`/v1/cost-attribution`: costs and distinct values grouped by agent or workflow."""

from __future__ import annotations

from typing import Any

from ..call import ApiRequest
from ..state import Handler, ServerState
from ..store import dollars, nanos


def breakdown(group_by: str) -> Handler:
    """`/by-agent`, `/by-workflow`: cost per value of `<group_by>_id`."""

    def handler(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
        start, end = call.date_range(required=True)
        assert start is not None and end is not None
        items = state.store.events.cost_breakdown(call.tenant, f"{group_by}_id", start, end)
        return 200, {
            "items": items,
            "totalCost": dollars(sum(nanos(item["totalCost"]) for item in items)),
            "startDate": start,
            "endDate": end,
            "groupBy": group_by,
        }

    return handler


def distinct(group_by: str) -> Handler:
    """`/agents`, `/workflows`: the values of `<group_by>_id` seen in the range."""

    def handler(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
        start, end = call.date_range(required=True)
        assert start is not None and end is not None
        return 200, {
            "values": state.store.events.distinct_values(call.tenant, f"{group_by}_id", start, end)
        }

    return handler
