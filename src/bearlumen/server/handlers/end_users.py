"""`/v1/end-users`."""

from __future__ import annotations

import re
from typing import Any

from ..._wire import EndUserCreate, EndUserUpdate
from ..call import ApiRequest
from ..errors import ApiError, invalid, validate
from ..state import ServerState
from ..store import Conflict

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_email(email: str | None) -> None:
    if email is not None and not _EMAIL.match(email):
        raise ApiError(400, "invalid_email", f"{email!r} is not a valid email address", "email")


def create_end_user(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    data: EndUserCreate = validate(EndUserCreate, call.json_object())
    _check_email(data.email)
    try:
        user = state.store.end_users.create_end_user(
            call.tenant, data.external_id, data.email, data.name, data.metadata
        )
    except Conflict as exc:
        raise ApiError(409, "duplicate_customer", str(exc), "externalId") from None
    return 201, {"endUser": user}


def update_end_user(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    data: EndUserUpdate = validate(EndUserUpdate, call.json_object())
    _check_email(data.email)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    user = state.store.end_users.update_end_user(call.tenant, call.path_params["id"], changes)
    return 200, {"endUser": user}


def list_end_users(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    status = call.query.get("status")
    if status not in (None, "ACTIVE", "DEACTIVATED"):
        raise invalid("status", "must be ACTIVE or DEACTIVATED")
    limit, offset = call.limit_offset()
    users, total = state.store.end_users.list_end_users(call.tenant, status, limit, offset)
    return 200, {"endUsers": users, "total": total, "limit": limit, "offset": offset}


def deactivate_end_user(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    user = state.store.end_users.set_end_user_status(
        call.tenant, call.path_params["id"], "DEACTIVATED"
    )
    return 200, {"endUser": user}


def reactivate_end_user(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    user = state.store.end_users.set_end_user_status(call.tenant, call.path_params["id"], "ACTIVE")
    return 200, {"endUser": user}
