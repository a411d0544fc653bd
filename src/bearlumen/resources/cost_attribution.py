"""`client.cost_attribution`."""

from __future__ import annotations

from datetime import date
from typing import Union, cast

from .._http import HttpCore
from .._types import AttributionValues, CostBreakdownResponse
from .._validation import date_param

DateLike = Union[str, date]


class CostAttribution:
    """Analyze costs (`metadata['provider_cost_usd']` of usage events) by agent or workflow.

    `start_date` is inclusive, `end_date` exclusive; both are required.
    """

    def __init__(self, http: HttpCore) -> None:
        self._http = http

    def _get(self, path: str, start_date: DateLike, end_date: DateLike) -> object:
        params = {
            "startDate": date_param("start_date", start_date, required=True),
            "endDate": date_param("end_date", end_date, required=True),
        }
        return self._http.request("GET", f"/v1/cost-attribution/{path}", params=params)

    def by_agent(self, start_date: DateLike, end_date: DateLike) -> CostBreakdownResponse:
        """Cost breakdown grouped by agent, most expensive first.

        result = client.cost_attribution.by_agent(
            start_date='2024-01-01T00:00:00Z', end_date='2024-02-01T00:00:00Z')
        for item in result['items']:
            print(f"{item['attributionValue']}: ${item['totalCost']}")
        """
        return cast(CostBreakdownResponse, self._get("by-agent", start_date, end_date))

    def by_workflow(self, start_date: DateLike, end_date: DateLike) -> CostBreakdownResponse:
        """Cost breakdown grouped by workflow, most expensive first."""
        return cast(CostBreakdownResponse, self._get("by-workflow", start_date, end_date))

    def list_agents(self, start_date: DateLike, end_date: DateLike) -> AttributionValues:
        """The unique agent identifiers seen in the period, sorted."""
        return cast(AttributionValues, self._get("agents", start_date, end_date))

    def list_workflows(self, start_date: DateLike, end_date: DateLike) -> AttributionValues:
        """The unique workflow identifiers seen in the period, sorted."""
        return cast(AttributionValues, self._get("workflows", start_date, end_date))
