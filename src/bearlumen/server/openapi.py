"""The OpenAPI document of the local server, written from its route table (`routes.TABLE`) and
the same models and types the SDK uses."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from .. import _types as types
from .._constants import MAX_OFFSET, MAX_PAGE_SIZE
from .._wire import (
    DATE_OR_TIMESTAMP_SCHEMA,
    MAX_NAME_LENGTH,
    EndUserCreate,
    EndUserUpdate,
    SubscriptionCreate,
    SubscriptionUpdate,
    UsageBatch,
    UsageEventInput,
)
from .routes import TABLE

_REQUEST_MODELS: list[type[BaseModel]] = [
    EndUserCreate,
    EndUserUpdate,
    SubscriptionCreate,
    SubscriptionUpdate,
    UsageEventInput,
    UsageBatch,
]
_RESPONSE_TYPES: dict[str, Any] = {
    "EndUserResponse": types.EndUserResponse,
    "EndUserList": types.EndUserList,
    "Subscription": types.Subscription,
    "SubscriptionList": types.SubscriptionList,
    "UsageRecordResponse": types.UsageRecordServerResponse,
    "UsageBatchResult": types.UsageBatchResult,
    "UsageEventList": types.UsageEventList,
    "UsageAggregation": types.UsageAggregation,
    "UsageSummary": types.UsageSummary,
    "CostBreakdownResponse": types.CostBreakdownResponse,
    "AttributionValues": types.AttributionValues,
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "requestId"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "requestId": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "retryAfter": {"type": "number"},
            },
        }
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_TEXT = {"type": "string", "maxLength": MAX_NAME_LENGTH}
_DATE = DATE_OR_TIMESTAMP_SCHEMA
# Each query parameter's schema, by its name (routes.TABLE says which route takes which).
_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "status": {"enum": ["ACTIVE", "DEACTIVATED"]},
    "organizationId": _TEXT,
    "subscriptionId": _TEXT,
    "metricName": _TEXT,
    "agentId": _TEXT,
    "workflowId": _TEXT,
    "startDate": _DATE,
    "endDate": _DATE,
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
}
_ERRORS = {
    str(code): {"description": text, "content": _json(_ref("Error"))}
    for code, text in [
        (400, "Invalid request"),
        (401, "Missing or invalid API key"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Payload too large"),
        (429, "Rate limited"),
    ]
}


def _operation(
    operation_id: str,
    status: int,
    response: str,
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "parameters": parameters or [],
        "responses": {
            str(status): {"description": "Success", "content": _json(_ref(response))},
            **_ERRORS,
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return operation


def _link(operation: dict[str, Any], status: str, pointer: str, targets: list[str]) -> None:
    operation["responses"][status]["links"] = {
        target[0].upper() + target[1:]: {
            "operationId": target,
            "parameters": {"id": f"$response.body{pointer}"},
        }
        for target in targets
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, request_schemas = models_json_schema(
        [(m, "validation") for m in _REQUEST_MODELS],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(request_schemas.get("$defs", {}))
    for name, typed in _RESPONSE_TYPES.items():
        schema = TypeAdapter(typed).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    schemas["Error"] = _ERROR
    paths: dict[str, Any] = {}
    for route in TABLE:
        parameters = [_ID] if "{id}" in route.path else []
        parameters += [
            _query(name, _QUERY_SCHEMAS[name], name in route.required) for name in route.query
        ]
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route.operation_id, route.status, route.answer, body=route.body, parameters=parameters
        )
    # Links let stateful testing (and readers) follow an id from the answer that made it.
    _link(paths["/v1/end-users"]["post"], "201", "#/endUser/id",
          ["updateEndUser", "deactivateEndUser", "reactivateEndUser"])  # fmt: skip
    _link(paths["/v1/subscriptions"]["post"], "201", "#/id",
          ["retrieveSubscription", "updateSubscription", "cancelSubscription"])  # fmt: skip
    # A duplicate usage event is answered 200 with the earlier event.
    paths["/v1/usage/events"]["post"]["responses"]["200"] = paths["/v1/usage/events"]["post"][
        "responses"
    ]["201"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bear Lumen API (local server)", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
