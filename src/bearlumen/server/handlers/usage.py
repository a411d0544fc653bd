"""`/v1/usage`: recording events (one, or a batch validated in one call) and reading them."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import ValidationError
from pydantic_core import to_json

from ..._wire import COST_KEY, UsageBatch, UsageEventInput
from ..batch_rows import valid_batch_rows
from ..call import ApiRequest
from ..errors import ApiError, from_validation_error, invalid, validate
from ..state import ServerState
from ..store import Filter, nanos, now_timestamp


def _event_row(event: UsageEventInput, now: str) -> list[Any]:
    """A validated event as a storage row (laid out as event_row.ROW_COLUMNS)."""
    metadata_text = None
    cost = 0
    if event.metadata is not None:
        metadata_text = to_json(event.metadata).decode()
        cost = nanos(event.metadata.get(COST_KEY) or 0)
    return [
        event.event_type,
        event.metric_name,
        event.quantity,
        event.idempotency_key,
        event.timestamp or now,
        event.subscription_id,
        event.end_user_id,
        event.agent_id,
        event.workflow_id,
        metadata_text,
        cost,
    ]


def _validated_row(raw: Any, now: str) -> list[Any]:
    if not isinstance(raw, dict):
        raise invalid(None, "An event must be a JSON object")
    try:
        event = UsageEventInput.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return _event_row(event, now)


def record_event(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    row = _validated_row(call.json_object(), now_timestamp())
    ((outcome, seq),) = state.store.events.record_events(call.tenant, [row])
    event = state.store.events.get_event(call.tenant, seq)
    return (201 if outcome == "recorded" else 200), {
        "recorded": outcome == "recorded",
        "event": event,
    }


def record_batch(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    now = now_timestamp()
    rows = valid_batch_rows(call.body, now)  # None: some event needs a closer look
    if rows is not None:
        outcomes = state.store.events.record_events(call.tenant, rows)
        return 200, _every_event_stored(outcomes, state.store.events.event_id)
    rows, results, accepted_at = _rows_one_by_one(call, now)
    recorded = 0
    if rows:
        outcomes = state.store.events.record_events(call.tenant, rows)
        for position, (outcome, seq) in zip(accepted_at, outcomes):
            result = results[position]
            result["id"] = state.store.events.event_id(seq)
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


def _every_event_stored(outcomes: list[tuple[str, int]], event_id: Callable[[int], str]) -> bytes:
    """The answer to a batch whose events were all valid, as the JSON bytes `to_json` would
    write for it (tests/test_server_ingest.py compares them), built from text rather than from
    1000 dicts."""
    results = ",".join(
        [
            f'{{"index":{index},"status":"{outcome}","id":"{event_id(seq)}"}}'
            for index, (outcome, seq) in enumerate(outcomes)
        ]
    )
    recorded = sum(1 for outcome, _ in outcomes if outcome == "recorded")
    skipped = len(outcomes) - recorded
    return (
        f'{{"recorded_count":{recorded},"skipped_count":{skipped},"rejected_count":0,'
        f'"results":[{results}]}}'
    ).encode()


def _rows_one_by_one(
    call: ApiRequest, now: str
) -> tuple[list[list[Any]], list[dict[str, Any]], list[int]]:
    """The slow path: each event on its own, so a bad one is rejected alone."""
    envelope: UsageBatch = validate(UsageBatch, call.json_object())
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


def _usage_filters(call: ApiRequest, *names: str) -> tuple[list[Filter], dict[str, str | None]]:
    """The filters named, and the date range as the answer repeats it."""
    columns = {
        "subscriptionId": "subscription_id",
        "metricName": "metric_name",
        "agentId": "agent_id",
        "workflowId": "workflow_id",
    }
    filters: list[Filter] = [(columns[name], "=", call.query_text(name)) for name in names]
    start, end = call.date_range(required=False)
    filters += [("ts", ">=", start), ("ts", "<", end)]
    return filters, {"startDate": start, "endDate": end}


def query_events(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    filters, _ = _usage_filters(call, "subscriptionId", "metricName", "agentId", "workflowId")
    limit, offset = call.limit_offset()
    events, total = state.store.events.query_events(call.tenant, filters, limit, offset)
    return 200, {"events": events, "total": total, "limit": limit, "offset": offset}


def usage_aggregation(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    filters, dates = _usage_filters(call, "subscriptionId", "metricName")
    return 200, {
        "aggregations": state.store.events.aggregate_by_metric(call.tenant, filters),
        **dates,
    }


def usage_summary(state: ServerState, call: ApiRequest) -> tuple[int, Any]:
    filters, dates = _usage_filters(call, "subscriptionId")
    return 200, {**state.store.events.summarize(call.tenant, filters), **dates}
