"""`/v1/subscriptions`."""

from __future__ import annotations

from typing import Any

from ..._wire import SubscriptionCreate, SubscriptionUpdate
from ..call import ApiRequest
from ..errors import ApiError, invalid, validate
from ..state import ServerState
from ..store import NotFound


def create_subscription(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    data: SubscriptionCreate = validate(SubscriptionCreate, call.json_object())
    try:
        subscription = state.store.subscriptions.create_subscription(call.tenant, data.model_dump())
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc), "endUserId") from None
    return 201, subscription


def retrieve_subscription(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    return 200, state.store.subscriptions.get_subscription(call.tenant, call.path_params["id"])


def update_subscription(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    data: SubscriptionUpdate = validate(SubscriptionUpdate, call.json_object())
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    for name in ("plan_id", "billing_cycle"):
        if name in changes and changes[name] is None:
            raise invalid(SubscriptionUpdate.model_fields[name].alias, "cannot be null")
    return 200, state.store.subscriptions.update_subscription(
        call.tenant, call.path_params["id"], changes
    )


def cancel_subscription(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    return 200, state.store.subscriptions.cancel_subscription(call.tenant, call.path_params["id"])


def list_subscriptions(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    limit, offset = call.limit_offset()
    subscriptions, total = state.store.subscriptions.list_subscriptions(
        call.tenant, call.query_text("organizationId"), limit, offset
    )
    return 200, {"subscriptions": subscriptions, "total": total, "limit": limit, "offset": offset}
