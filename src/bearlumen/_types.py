"""Typed shapes of what the SDK takes and returns.

Results are plain dicts with exactly the wire contract's keys (docs/wire-api.md); these TypedDicts
let `mypy --strict` and IDEs see those keys. `Optional[...]` rather than `X | None` because the
annotations of a TypedDict are evaluated at run time on Python 3.9.
"""

from typing import Any, Dict, List, Optional

from typing_extensions import Literal, TypedDict

Metadata = Dict[str, Any]


class EndUser(TypedDict):
    """An end user: a customer of your AI product whose usage you meter."""

    id: str
    externalId: str
    email: Optional[str]
    name: Optional[str]
    metadata: Optional[Metadata]
    status: Literal["ACTIVE", "DEACTIVATED"]
    createdAt: str
    updatedAt: str


class EndUserResponse(TypedDict):
    """What `end_users.create`, `update`, `deactivate` and `reactivate` return."""

    endUser: EndUser


class EndUserList(TypedDict):
    """A page of end users (`end_users.list`); `total` counts every match."""

    endUsers: List[EndUser]
    total: int
    limit: int
    offset: int


class Subscription(TypedDict):
    """A subscription: which plan an organization is on, and since when."""

    id: str
    organizationId: str
    planId: str
    billingCycle: Literal["monthly", "yearly"]
    status: Literal["active", "canceled"]
    startDate: str
    endDate: Optional[str]
    canceledAt: Optional[str]
    endUserId: Optional[str]
    metadata: Optional[Metadata]
    createdAt: str
    updatedAt: str


class SubscriptionList(TypedDict):
    """A page of subscriptions (`subscriptions.list`); `total` counts every match."""

    subscriptions: List[Subscription]
    total: int
    limit: int
    offset: int


class _UsageRecordRequired(TypedDict):
    event_type: str
    metric_name: str
    quantity: float


class UsageRecordInput(_UsageRecordRequired, total=False):
    """One event for `usage.record_batch`: the keyword arguments of `usage.record` as a dict."""

    idempotency_key: Optional[str]
    timestamp: Optional[str]
    subscription_id: Optional[str]
    end_user_id: Optional[str]
    agent_id: Optional[str]
    workflow_id: Optional[str]
    metadata: Optional[Metadata]


class UsageEvent(TypedDict):
    """A stored usage event: the input fields in camelCase plus `id` and `receivedAt`."""

    id: str
    eventType: str
    metricName: str
    quantity: float
    idempotencyKey: Optional[str]
    timestamp: str
    subscriptionId: Optional[str]
    endUserId: Optional[str]
    agentId: Optional[str]
    workflowId: Optional[str]
    metadata: Optional[Metadata]
    receivedAt: str


class _UsageRecordResultRequired(TypedDict):
    recorded: bool
    idempotency_key: str


class UsageRecordResult(_UsageRecordResultRequired, total=False):
    """What `usage.record` returns.

    Buffered (the default): `recorded` is True once the event is queued for delivery, False when
    this client already queued an event with the same `idempotency_key`. Unbuffered: the server's
    answer, with the stored `event`. `dropped` is True when a full queue refused the event.
    """

    event: UsageEvent
    dropped: bool


class _BatchItemRequired(TypedDict):
    index: int
    status: Literal["recorded", "duplicate", "rejected"]


class UsageBatchItemResult(_BatchItemRequired, total=False):
    """One event's result in `usage.record_batch`, by its `index` in the batch."""

    id: str
    error: Dict[str, Any]


class UsageBatchResult(TypedDict):
    """What `usage.record_batch` returns: counts, and one result per event in order."""

    recorded_count: int
    skipped_count: int
    rejected_count: int
    results: List[UsageBatchItemResult]


class UsageEventList(TypedDict):
    """A page of usage events (`usage.query`), oldest first; `total` counts every match."""

    events: List[UsageEvent]
    total: int
    limit: int
    offset: int


class MetricAggregation(TypedDict):
    """One metric's totals in `usage.aggregation`."""

    metricName: str
    totalQuantity: float
    eventCount: int
    totalCost: float


class UsageAggregation(TypedDict):
    """Aggregated usage by metric (`usage.aggregation`)."""

    aggregations: List[MetricAggregation]
    startDate: Optional[str]
    endDate: Optional[str]


class UsageSummary(TypedDict):
    """High-level usage summary (`usage.summary`)."""

    totalEvents: int
    totalQuantity: float
    totalCost: float
    metricCount: int
    firstEventAt: Optional[str]
    lastEventAt: Optional[str]
    startDate: Optional[str]
    endDate: Optional[str]


class CostBreakdownItem(TypedDict):
    """One agent's or workflow's costs; `attributionValue` is None for events without one."""

    attributionValue: Optional[str]
    totalCost: float
    totalQuantity: float
    eventCount: int


class CostBreakdownResponse(TypedDict):
    """Cost breakdown grouped by agent or workflow, most expensive first."""

    items: List[CostBreakdownItem]
    totalCost: float
    startDate: str
    endDate: str
    groupBy: Literal["agent", "workflow"]


class AttributionValues(TypedDict):
    """The unique agent or workflow identifiers seen in a period, sorted."""

    values: List[str]


class ShipperStats(TypedDict):
    """`client.stats()`: what the background shipper has done since the client was made.

    queued: events waiting in memory now; in_flight: events taken from the queue and not yet
    answered (in a batch sent, or waiting for a free sender); sent: events handed to the server
    in a batch that got an answer; recorded / duplicate / rejected: the server's verdict per
    event; dropped: events refused because the queue was full; failed: events given up on
    (delivery deadline passed, shutdown, or an answer that can never succeed); retries: extra
    attempts; batches: requests that got an answer.
    """

    queued: int
    in_flight: int
    sent: int
    recorded: int
    duplicate: int
    rejected: int
    dropped: int
    failed: int
    retries: int
    batches: int


class FlushResult(ShipperStats):
    """`client.flush()`: `complete` is False when the timeout passed first."""

    complete: bool


class UsageRecordServerResponse(TypedDict):
    """The server's answer to `POST /v1/usage/events`."""

    recorded: bool
    event: UsageEvent
