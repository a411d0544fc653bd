"""`client.cost_attribution`."""

from __future__ import annotations

from datetime import date
from typing import Any, Union

from .._http import Call
from .._types import AttributionValues, CostBreakdownResponse
from .._validation import date_range
from ._endpoint import HttpT, Resource, endpoint

DateLike = Union[str, date]


class CostAttribution(Resource[HttpT]):
    """Analyze costs (`metadata['provider_cost_usd']` of usage events) by agent or workflow.

    `start_date` is inclusive, `end_date` exclusive; both are required.
    """

    @endpoint
    def by_agent(self, start_date: DateLike, end_date: DateLike) -> Call[CostBreakdownResponse]:
        """Cost breakdown grouped by agent, most expensive first.

        result = client.cost_attribution.by_agent(
            start_date='2024-01-01T00:00:00Z', end_date='2024-02-01T00:00:00Z')
        for item in result['items']:
            print(f"{item['attributionValue']}: ${item['totalCost']}")
        """
        return _period("by-agent", start_date, end_date)

    @endpoint
    def by_workflow(self, start_date: DateLike, end_date: DateLike) -> Call[CostBreakdownResponse]:
        """Cost breakdown grouped by workflow, most expensive first."""
        return _period("by-workflow", start_date, end_date)

    @endpoint
    def list_agents(self, start_date: DateLike, end_date: DateLike) -> Call[AttributionValues]:
        """The unique agent identifiers seen in the period, sorted."""
        return _period("agents", start_date, end_date)

    @endpoint
    def list_workflows(self, start_date: DateLike, end_date: DateLike) -> Call[AttributionValues]:
        """The unique workflow identifiers seen in the period, sorted."""
        return _period("workflows", start_date, end_date)


def _period(path: str, start_date: DateLike, end_date: DateLike) -> Call[Any]:
    """A GET of one report over [start_date, end_date)."""
    params = date_range(start_date, end_date, required=True)
    return Call("GET", f"/v1/cost-attribution/{path}", params=params)
