"""The local Bear Lumen API: every route of docs/wire-api.md on Starlette, storage in `Store`.

Handlers are plain functions of a `Call` (tenant, parsed body, query) that return
`(status, body)`; `_endpoint` wraps each one with what every route shares: request ids, auth,
body limits and gzip, JSON parsing, `Idempotency-Key` replays and the error body. Storage calls
block, so handlers run in Starlette's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import secrets
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import parse_qsl

from pydantic import ValidationError
from pydantic_core import from_json, to_json
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._wire import (
    COST_KEY,
    MAX_METADATA_BYTES,
    EndUserCreate,
    EndUserUpdate,
    SubscriptionCreate,
    SubscriptionUpdate,
    UsageBatch,
    UsageEvent,
    ValidUsageBatch,
    canonical_timestamp,
    format_utc,
)
from .faults import Fault, FaultInjector, FaultSettings
from .openapi import openapi_document
from .store import Conflict, NotFound, Store, dollars, event_id, nanos, now_timestamp

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_API_KEY_LENGTH = 512
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOOPBACK_HOSTS = ("127.", "::1", "localhost")


class ApiError(Exception):
    """An answer other than success; becomes the contract's error body."""

    def __init__(
        self, status: int, kind: str, message: str, param: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.param, self.extra = (
            status,
            kind,
            message,
            param,
            extra,
        )


def _invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request", message, param)


class RequestIds:
    """`req_<random>_<counter>`: unique per server without a uuid per request."""

    def __init__(self) -> None:
        self._prefix = "req_" + secrets.token_hex(6) + "_"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


def error_response(request_id: str, error: ApiError) -> Response:
    body: dict[str, Any] = {
        "type": error.kind,
        "message": error.message,
        "requestId": request_id,
        "param": error.param,
        **error.extra,
    }
    headers = {"X-Request-Id": request_id}
    if error.status == 429:
        headers["Retry-After"] = _seconds_text(body.get("retryAfter", 1))
    return json_response(error.status, {"error": body}, headers)


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def json_response(status: int, body: Any, headers: Mapping[str, str]) -> Response:
    return Response(to_json(body), status, dict(headers), media_type="application/json")


def _validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    first = exc.errors(include_url=False)[0]
    param = prefix + ".".join(str(p) for p in first["loc"]) if first["loc"] else prefix or None
    if first["type"] == "missing":
        message = f"{param} is required"
    elif first["type"] == "extra_forbidden":
        message = f"{param} is not a known field"
    else:
        message = f"{param}: {first['msg']}" if param else first["msg"]
    return _invalid(message, param.rstrip(".") if param else None)


@dataclass
class Call:
    """What a handler sees of one request."""

    tenant: int
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any

    def json_object(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise _invalid("The request body must be a JSON object")
        return self.body

    def limit_offset(self) -> tuple[int, int]:
        return (
            self.query_int("limit", default=100, low=1, high=1000),
            self.query_int("offset", default=0, low=0, high=2**62),
        )

    def query_int(self, name: str, *, default: int, low: int, high: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _invalid(f"{name} must be an integer", name) from None
        if not low <= value <= high:
            raise _invalid(f"{name} must be between {low} and {high}", name)
        return value

    def query_date(self, name: str, *, required: bool = False) -> str | None:
        raw = self.query.get(name)
        if raw is None:
            if required:
                raise _invalid(f"{name} is required", name)
            return None
        try:
            return canonical_timestamp(raw)
        except ValueError:
            raise _invalid(
                f"{name} must be a date (2024-01-01) or an RFC 3339 timestamp", name
            ) from None

    def query_text(self, name: str) -> str | None:
        raw = self.query.get(name)
        if raw is not None and len(raw) > 255:
            raise _invalid(f"{name} is longer than 255 characters", name)
        return raw or None

    def date_range(self, *, required: bool) -> tuple[str | None, str | None]:
        start = self.query_date("startDate", required=required)
        end = self.query_date("endDate", required=required)
        if start is not None and end is not None and end < start:
            raise _invalid("endDate must not be before startDate", "endDate")
        return start, end


Handler = Callable[["ServerState", Call], "tuple[int, Any]"]


@dataclass
class ServerState:
    store: Store
    api_keys: frozenset[str] | None
    faults: FaultInjector | None
    request_ids: RequestIds
    statuses: Counter[int]
    in_flight: set[tuple[int, str]]
    in_flight_lock: threading.Lock


# -- handlers: end users -------------------------------------------------------------------


def _check_email(email: str | None) -> None:
    if email is not None and not _EMAIL.match(email):
        raise ApiError(400, "invalid_email", f"{email!r} is not a valid email address", "email")


def _validate(model: Any, body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def create_end_user(state: ServerState, call: Call) -> tuple[int, Any]:
    data: EndUserCreate = _validate(EndUserCreate, call.json_object())
    _check_email(data.email)
    try:
        user = state.store.create_end_user(
            call.tenant, data.external_id, data.email, data.name, data.metadata
        )
    except Conflict as exc:
        raise ApiError(409, "duplicate_customer", str(exc), "externalId") from None
    return 201, {"endUser": user}


def update_end_user(state: ServerState, call: Call) -> tuple[int, Any]:
    data: EndUserUpdate = _validate(EndUserUpdate, call.json_object())
    _check_email(data.email)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    user = state.store.update_end_user(call.tenant, call.path_params["id"], changes)
    return 200, {"endUser": user}


def list_end_users(state: ServerState, call: Call) -> tuple[int, Any]:
    status = call.query.get("status")
    if status not in (None, "ACTIVE", "DEACTIVATED"):
        raise _invalid("status must be ACTIVE or DEACTIVATED", "status")
    limit, offset = call.limit_offset()
    users, total = state.store.list_end_users(call.tenant, status, limit, offset)
    return 200, {"endUsers": users, "total": total, "limit": limit, "offset": offset}


def deactivate_end_user(state: ServerState, call: Call) -> tuple[int, Any]:
    user = state.store.set_end_user_status(call.tenant, call.path_params["id"], "DEACTIVATED")
    return 200, {"endUser": user}


def reactivate_end_user(state: ServerState, call: Call) -> tuple[int, Any]:
    user = state.store.set_end_user_status(call.tenant, call.path_params["id"], "ACTIVE")
    return 200, {"endUser": user}


# -- handlers: subscriptions ---------------------------------------------------------------


def create_subscription(state: ServerState, call: Call) -> tuple[int, Any]:
    data: SubscriptionCreate = _validate(SubscriptionCreate, call.json_object())
    try:
        subscription = state.store.create_subscription(call.tenant, data.model_dump())
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc), "endUserId") from None
    return 201, subscription


def retrieve_subscription(state: ServerState, call: Call) -> tuple[int, Any]:
    return 200, state.store.get_subscription(call.tenant, call.path_params["id"])


def update_subscription(state: ServerState, call: Call) -> tuple[int, Any]:
    data: SubscriptionUpdate = _validate(SubscriptionUpdate, call.json_object())
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    for name in ("plan_id", "billing_cycle"):
        if name in changes and changes[name] is None:
            raise _invalid(f"{name} cannot be null", SubscriptionUpdate.model_fields[name].alias)
    return 200, state.store.update_subscription(call.tenant, call.path_params["id"], changes)


def cancel_subscription(state: ServerState, call: Call) -> tuple[int, Any]:
    return 200, state.store.cancel_subscription(call.tenant, call.path_params["id"])


def list_subscriptions(state: ServerState, call: Call) -> tuple[int, Any]:
    limit, offset = call.limit_offset()
    subscriptions, total = state.store.list_subscriptions(
        call.tenant, call.query_text("organizationId"), limit, offset
    )
    return 200, {"subscriptions": subscriptions, "total": total, "limit": limit, "offset": offset}


# -- handlers: usage -----------------------------------------------------------------------


def _event_row(event: UsageEvent, now: str) -> list[Any]:
    """A validated event as a storage row; ApiError when its metadata is too large to store."""
    metadata_text = None
    cost = 0
    if event.metadata is not None:
        metadata_text = to_json(event.metadata).decode()
        if len(metadata_text) > MAX_METADATA_BYTES:
            raise _invalid(f"metadata is larger than {MAX_METADATA_BYTES} bytes", "metadata")
        cost = nanos(event.metadata.get(COST_KEY) or 0)
    return [
        event.event_type,
        event.metric_name,
        event.quantity,
        event.idempotency_key,
        _stamp(event.timestamp, now),
        event.subscription_id,
        event.end_user_id,
        event.agent_id,
        event.workflow_id,
        metadata_text,
        cost,
    ]


def _stamp(timestamp: str | datetime | None, now: str) -> str:
    if timestamp is None:
        return now
    if isinstance(timestamp, str):
        try:  # the pattern admits 2024-02-30: only a real date may be stored
            datetime.fromisoformat(timestamp[:26])
        except ValueError:
            raise _invalid(f"timestamp {timestamp!r} is not a real date", "timestamp") from None
        return timestamp
    return format_utc(timestamp)


def _validated_row(raw: Any, now: str) -> list[Any]:
    if not isinstance(raw, dict):
        raise _invalid("An event must be a JSON object")
    try:
        event = UsageEvent.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return _event_row(event, now)


def record_event(state: ServerState, call: Call) -> tuple[int, Any]:
    row = _validated_row(call.json_object(), now_timestamp())
    ((outcome, seq),) = state.store.record_events(call.tenant, [row])
    event = state.store.get_event(call.tenant, seq)
    return (201 if outcome == "recorded" else 200), {
        "recorded": outcome == "recorded",
        "event": event,
    }


def _all_valid_rows(body: Any, now: str) -> list[list[Any]] | None:
    """The fast path: all events valid, checked in one call; None means take the slow path."""
    try:
        batch = ValidUsageBatch.model_validate(body)
        return [_event_row(event, now) for event in batch.events]
    except (ValidationError, ApiError):
        return None


def record_batch(state: ServerState, call: Call) -> tuple[int, Any]:
    now = now_timestamp()
    rows = _all_valid_rows(call.body, now)
    results: list[dict[str, Any]]
    accepted_at: Sequence[int]
    if rows is not None:
        results = [{"index": index, "status": "recorded"} for index in range(len(rows))]
        accepted_at = range(len(rows))
    else:
        rows, results, accepted_at = _rows_one_by_one(call, now)
    recorded = 0
    if rows:
        outcomes = state.store.record_events(call.tenant, rows)
        for position, (outcome, seq) in zip(accepted_at, outcomes):
            result = results[position]
            result["id"] = event_id(seq)
            if outcome == "recorded":
                recorded += 1
            else:
                result["status"] = "duplicate"
    return 200, {
        "recorded_count": recorded,
        "skipped_count": len(rows) - recorded,
        "rejected_count": len(results) - len(rows),
        "results": results,
    }


def _rows_one_by_one(
    call: Call, now: str
) -> tuple[list[list[Any]], list[dict[str, Any]], list[int]]:
    """The slow path: each event on its own, so a bad one is rejected alone."""
    envelope: UsageBatch = _validate(UsageBatch, call.json_object())
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    accepted_at: list[int] = []
    for index, raw in enumerate(envelope.events):
        try:
            rows.append(_validated_row(raw, now))
        except ApiError as exc:
            error = {"type": exc.kind, "message": exc.message, "param": exc.param}
            results.append({"index": index, "status": "rejected", "error": error})
            continue
        accepted_at.append(len(results))
        results.append({"index": index, "status": "recorded"})
    return rows, results, accepted_at


def _usage_filters(
    call: Call, *names: str
) -> tuple[list[tuple[str, str, Any]], dict[str, str | None]]:
    """The filters named, and the date range as the answer repeats it."""
    columns = {
        "subscriptionId": "subscription_id",
        "metricName": "metric_name",
        "agentId": "agent_id",
        "workflowId": "workflow_id",
    }
    filters = [(columns[name], "=", call.query_text(name)) for name in names]
    start, end = call.date_range(required=False)
    filters += [("ts", ">=", start), ("ts", "<", end)]
    return filters, {"startDate": start, "endDate": end}


def query_events(state: ServerState, call: Call) -> tuple[int, Any]:
    filters, _ = _usage_filters(call, "subscriptionId", "metricName", "agentId", "workflowId")
    limit, offset = call.limit_offset()
    events, total = state.store.query_events(call.tenant, filters, limit, offset)
    return 200, {"events": events, "total": total, "limit": limit, "offset": offset}


def usage_aggregation(state: ServerState, call: Call) -> tuple[int, Any]:
    filters, dates = _usage_filters(call, "subscriptionId", "metricName")
    return 200, {"aggregations": state.store.aggregate_by_metric(call.tenant, filters), **dates}


def usage_summary(state: ServerState, call: Call) -> tuple[int, Any]:
    filters, dates = _usage_filters(call, "subscriptionId")
    return 200, {**state.store.summarize(call.tenant, filters), **dates}


# -- handlers: cost attribution ------------------------------------------------------------


def _breakdown(group_by: str) -> Handler:
    def handler(state: ServerState, call: Call) -> tuple[int, Any]:
        start, end = call.date_range(required=True)
        assert start is not None and end is not None
        items = state.store.cost_breakdown(call.tenant, f"{group_by}_id", start, end)
        return 200, {
            "items": items,
            "totalCost": dollars(sum(nanos(item["totalCost"]) for item in items)),
            "startDate": start,
            "endDate": end,
            "groupBy": group_by,
        }

    return handler


def _distinct(group_by: str) -> Handler:
    def handler(state: ServerState, call: Call) -> tuple[int, Any]:
        start, end = call.date_range(required=True)
        assert start is not None and end is not None
        return 200, {
            "values": state.store.distinct_values(call.tenant, f"{group_by}_id", start, end)
        }

    return handler


# -- the shared wrapper --------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "invalid_request", f"Request body is over {MAX_BODY_BYTES} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "invalid_request", f"Request body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip" and body:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error:
            raise _invalid("Request body is not valid gzip") from None
        if len(body) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise ApiError(413, "invalid_request", f"Request body is over {MAX_BODY_BYTES} bytes")
    elif encoding not in ("identity", "gzip"):
        raise ApiError(415, "invalid_request", f"Unsupported Content-Encoding {encoding!r}")
    return body


def _tenant(state: ServerState, request: Request) -> int:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_API_KEY_LENGTH:
        raise ApiError(
            401, "authentication_error", "Missing API key: send Authorization: Bearer <key>"
        )
    if state.api_keys is not None and token not in state.api_keys:
        raise ApiError(401, "authentication_error", "Invalid API key")
    return state.store.tenant_for_key(token)


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError:
        raise _invalid("The request body is not valid JSON") from None


def _endpoint(
    state: ServerState, handler: Handler, known_query: frozenset[str]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        request_id = state.request_ids.next()
        claimed: tuple[int, str, str] | None = None
        try:
            tenant = _tenant(state, request)
            for name, _ in parse_qsl(request.url.query, keep_blank_values=True):
                if name not in known_query:  # parse_qsl keeps the nameless `&=` too
                    raise _invalid(f"Unknown query parameter {name!r}", name)
            body_bytes = b""
            if request.method in ("POST", "PATCH"):
                body_bytes = await _read_body(request)
                key = request.headers.get("idempotency-key")
                if key is not None:
                    replay = _replay_or_claim(state, tenant, key, request, body_bytes)
                    if isinstance(replay, Response):
                        return replay
                    claimed = replay
            call = Call(tenant, request.path_params, request.query_params, _parse_json(body_bytes))
            try:
                status, body = await run_in_threadpool(handler, state, call)
            except NotFound as exc:
                raise ApiError(404, "not_found", str(exc)) from None
            response = json_response(status, body, {"X-Request-Id": request_id})
        except ApiError as exc:
            response = error_response(request_id, exc)
        if claimed is None:
            return response
        try:
            # Stored before the key is released, so a concurrent retry either waits (409
            # conflict_retry) or replays this answer; it never runs the request a second time.
            if response.status_code < 500 and response.status_code != 429:
                await run_in_threadpool(
                    state.store.store_response,
                    *claimed,
                    response.status_code,
                    bytes(response.body),
                )
        finally:
            _release(state, claimed[0], claimed[1])
        return response

    return endpoint


def _replay_or_claim(
    state: ServerState, tenant: int, key: str, request: Request, body: bytes
) -> Response | tuple[int, str, str]:
    """Replay the stored answer to a key, or claim the key for this request.

    The key is claimed before the stored answers are read: an answer is stored before its key
    is released, so whoever holds the claim sees every answer that will ever be stored for it.
    """
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise _invalid(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            "Idempotency-Key",
        )
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    with state.in_flight_lock:
        if (tenant, key) in state.in_flight:
            raise ApiError(
                409, "conflict_retry", "A request with this Idempotency-Key is in progress"
            )
        state.in_flight.add((tenant, key))
    try:
        stored = state.store.stored_response(tenant, key)
    except BaseException:
        _release(state, tenant, key)
        raise
    if stored is None:
        return (tenant, key, fingerprint)
    _release(state, tenant, key)
    stored_fingerprint, status, stored_body = stored
    if stored_fingerprint != fingerprint:
        raise _invalid("This Idempotency-Key was used with a different request", "Idempotency-Key")
    return Response(
        stored_body,
        status,
        {"X-Request-Id": state.request_ids.next(), "Idempotent-Replayed": "true"},
        media_type="application/json",
    )


def _by_method(
    endpoints: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        return await endpoints[request.method](request)

    return dispatch


def _release(state: ServerState, tenant: int, key: str) -> None:
    with state.in_flight_lock:
        state.in_flight.discard((tenant, key))


# -- routes that need no tenant ------------------------------------------------------------


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    return host.startswith(_LOOPBACK_HOSTS)


def _admin_routes(state: ServerState) -> list[Route]:
    async def stats(request: Request) -> Response:
        if not _is_loopback(request):
            return Response(status_code=404)
        events = await run_in_threadpool(state.store.count_events)
        body = {
            "requestsByStatus": {str(k): v for k, v in sorted(state.statuses.items())},
            "eventsStored": events,
            "faults": state.faults.settings() if state.faults else None,
        }
        return json_response(200, body, {})

    async def faults(request: Request) -> Response:
        if not _is_loopback(request) or state.faults is None:
            return Response(status_code=404)
        try:
            settings = FaultSettings.from_mapping(_parse_json(await request.body()) or {})
        except (ValueError, TypeError, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            return json_response(
                400, {"error": {"type": "invalid_request", "message": message}}, {}
            )
        state.faults.configure(settings)
        return json_response(200, state.faults.settings(), {})

    return [
        Route("/_admin/stats", stats, methods=["GET"]),
        Route("/_admin/faults", faults, methods=["POST"]),
    ]


def create_app(
    store: Store,
    *,
    api_keys: frozenset[str] | None = None,
    faults: FaultInjector | None = None,
) -> ASGIApp:
    """The ASGI application; `faults` None means no fault injection and no admin routes."""
    state = ServerState(store, api_keys, faults, RequestIds(), Counter(), set(), threading.Lock())
    paging, dates = ("limit", "offset"), ("startDate", "endDate")
    # (method, path, handler, the query parameters it takes: any other is a 400, so that a
    # misspelt filter never silently returns unfiltered data)
    table: list[tuple[str, str, Handler, tuple[str, ...]]] = [
        ("POST", "/v1/end-users", create_end_user, ()),
        ("GET", "/v1/end-users", list_end_users, ("status", *paging)),
        ("PATCH", "/v1/end-users/{id}", update_end_user, ()),
        ("POST", "/v1/end-users/{id}/deactivate", deactivate_end_user, ()),
        ("POST", "/v1/end-users/{id}/reactivate", reactivate_end_user, ()),
        ("POST", "/v1/subscriptions", create_subscription, ()),
        ("GET", "/v1/subscriptions", list_subscriptions, ("organizationId", *paging)),
        ("GET", "/v1/subscriptions/{id}", retrieve_subscription, ()),
        ("PATCH", "/v1/subscriptions/{id}", update_subscription, ()),
        ("POST", "/v1/subscriptions/{id}/cancel", cancel_subscription, ()),
        ("POST", "/v1/usage/events", record_event, ()),
        (
            "GET",
            "/v1/usage/events",
            query_events,
            ("subscriptionId", "metricName", "agentId", "workflowId", *dates, *paging),
        ),
        ("POST", "/v1/usage/events/batch", record_batch, ()),
        (
            "GET",
            "/v1/usage/aggregation",
            usage_aggregation,
            ("subscriptionId", "metricName", *dates),
        ),
        ("GET", "/v1/usage/summary", usage_summary, ("subscriptionId", *dates)),
        ("GET", "/v1/cost-attribution/by-agent", _breakdown("agent"), dates),
        ("GET", "/v1/cost-attribution/by-workflow", _breakdown("workflow"), dates),
        ("GET", "/v1/cost-attribution/agents", _distinct("agent"), dates),
        ("GET", "/v1/cost-attribution/workflows", _distinct("workflow"), dates),
    ]
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for method, path, handler, query in table:
        by_path.setdefault(path, {})[method] = _endpoint(state, handler, frozenset(query))
    # One Route per path, so that a 405 lists every method the path has in `Allow`.
    routes = [
        Route(path, _by_method(endpoints), methods=list(endpoints))
        for path, endpoints in by_path.items()
    ]

    async def health(request: Request) -> Response:
        return json_response(200, {"status": "ok"}, {})

    document = to_json(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if faults is not None:
        routes += _admin_routes(state)
    app = Starlette(routes=routes)
    return _Outermost(app, state)


class _Outermost:
    """Counts statuses, fills in X-Request-Id on framework answers, and injects faults."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        fault = state.faults.choose(scope["path"]) if state.faults is not None else None
        if fault is not None and fault.kind == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            fault = None
        if fault is not None and fault.kind == "drop":
            _drop_connection(send)
            state.statuses[0] += 1  # 0: answered with nothing
            return
        if fault is not None and fault.kind in ("429", "500", "503"):
            await self._answer_fault(fault, scope, receive, send)
            return
        replace_with_500 = fault is not None and fault.kind == "store_500"
        counted = not scope["path"].startswith("/_admin/")

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                if replace_with_500:
                    state.statuses[500] += 1
                    return
                if counted:
                    state.statuses[message["status"]] += 1
                names = {name.lower() for name, _ in message.get("headers", [])}
                if b"x-request-id" not in names:
                    message = dict(message)
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", state.request_ids.next().encode()),
                    ]
            elif message["type"] == "http.response.body" and replace_with_500:
                if not message.get("more_body", False):
                    error = ApiError(500, "server_error", "Injected fault: stored, then failed")
                    await error_response(state.request_ids.next(), error)(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, send_counted)

    async def _answer_fault(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        # Drain the request body first, as a real server would before answering.
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False) and message["type"] == "http.request"
        if fault.kind == "429":
            error = ApiError(
                429, "rate_limited", "Injected fault: rate limited", retryAfter=fault.retry_after
            )
        else:
            error = ApiError(int(fault.kind), "server_error", f"Injected fault: {fault.kind}")
        self.state.statuses[error.status] += 1
        await error_response(self.state.request_ids.next(), error)(scope, receive, send)


def _drop_connection(send: Send) -> None:
    """Close the TCP connection with no answer at all.

    ASGI has no message for this, so reach uvicorn's transport through its bound `send`; the
    cycle is marked disconnected so uvicorn does not try to write a 500 afterwards.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("the drop fault needs uvicorn's h11 or httptools protocol")
    transport.abort()
    cycle.disconnected = True  # type: ignore[union-attr]
