"""Bear Lumen: meter what your LLM calls cost, per end user, subscription, agent and workflow.

import bearlumen

client = bearlumen.Client(api_key='your_api_key')
client.usage.record(event_type='token_usage', metric_name='llm_tokens', quantity=150000,
                    agent_id='support-bot', metadata={'provider_cost_usd': 4.50})

In an asyncio app, `bearlumen.AsyncClient` has the same calls as coroutines (`record` stays a
plain, non-blocking call).

`bearlumen.testing` (a local server for tests: `LocalServer`, the pytest fixtures) is imported
on first use, so that `import bearlumen` never imports the server's dependencies.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ._async_client import AsyncClient
from ._client import Client
from ._errors import (
    AuthenticationError,
    BearLumenError,
    DuplicateCustomerError,
    InvalidEmailError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SpoolLockedError,
)
from ._types import (
    AttributionValues,
    CostBreakdownItem,
    CostBreakdownResponse,
    EndUser,
    EndUserList,
    EndUserResponse,
    FlushResult,
    MetricAggregation,
    ShipperStats,
    Subscription,
    SubscriptionList,
    UsageAggregation,
    UsageBatchItemResult,
    UsageBatchResult,
    UsageEvent,
    UsageEventList,
    UsageRecordInput,
    UsageRecordResult,
    UsageSummary,
)
from ._version import __version__

__all__ = [
    "AsyncClient",
    "AttributionValues",
    "AuthenticationError",
    "BearLumenError",
    "Client",
    "CostBreakdownItem",
    "CostBreakdownResponse",
    "DuplicateCustomerError",
    "EndUser",
    "EndUserList",
    "EndUserResponse",
    "FlushResult",
    "InvalidEmailError",
    "InvalidRequestError",
    "MetricAggregation",
    "NetworkError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "ShipperStats",
    "Subscription",
    "SubscriptionList",
    "UsageAggregation",
    "UsageBatchItemResult",
    "UsageBatchResult",
    "UsageEvent",
    "UsageEventList",
    "UsageRecordInput",
    "UsageRecordResult",
    "UsageSummary",
    "__version__",
]

# Public names say `bearlumen.Client`, not `bearlumen._client.Client`, in reprs and tracebacks.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = "bearlumen"
del _name, _value
SpoolLockedError.__module__ = "bearlumen"
_DEPRECATED = {"SpoolLockedError": SpoolLockedError}
del SpoolLockedError


def __getattr__(name: str) -> Any:
    """`bearlumen.testing`, imported on first use; deprecated names, with a warning."""
    if name == "testing":
        return importlib.import_module(".testing", __name__)  # also sets bearlumen.testing
    if name in _DEPRECATED:
        warnings.warn(
            f"bearlumen.{name} is deprecated and never raised: processes share a spool_dir",
            DeprecationWarning,
            stacklevel=2,
        )
        return _DEPRECATED[name]
    raise AttributeError(f"module 'bearlumen' has no attribute {name!r}")
