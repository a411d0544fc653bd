"""`client.usage`: record usage (buffered by default) and read it back."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, List, Optional, Union, cast

from pydantic import ValidationError

from .. import _ids
from .._constants import MAX_BATCH_SIZE, RECENT_KEYS_REMEMBERED
from .._errors import InvalidRequestError
from .._events import to_record_input
from .._http import Call, HttpCore
from .._shipper import Shipper
from .._types import (
    Metadata,
    UsageAggregation,
    UsageBatchResult,
    UsageEventList,
    UsageRecordInput,
    UsageRecordResult,
    UsageSummary,
)
from .._validation import date_param, from_validation_error, optional_int, optional_text
from .._wire import COST_KEY, MAX_EVENT_COST, MAX_NAME_LENGTH, UsageEvent, canonical_timestamp
from ._endpoint import HttpT, Resource, endpoint

_MAX_QUANTITY = 2.0**53  # beyond this a JSON number stops being exact
_MAX_FLOAT = 1.7976931348623157e308


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def _check_optional_names(**names: Any) -> None:
    for param, value in names.items():
        if value is not None and (
            type(value) is not str or not value or len(value) > MAX_NAME_LENGTH
        ):
            raise _bad(param, f"must be a non-empty string of at most {MAX_NAME_LENGTH} characters")


def _check_metadata(metadata: Any) -> None:
    if type(metadata) is not dict:
        raise _bad("metadata", "must be a dict")
    cost = metadata.get(COST_KEY)
    if cost is not None and (type(cost) not in (int, float) or not 0 <= cost <= MAX_EVENT_COST):
        raise _bad(f"metadata.{COST_KEY}", f"must be a number from 0 to {MAX_EVENT_COST:g}")


def _timestamp(value: Any) -> str:
    if not isinstance(value, (str, datetime)):
        raise _bad("timestamp", "must be an RFC 3339 string or a datetime")
    try:
        return canonical_timestamp(value)
    except ValueError:
        raise _bad("timestamp", "is not an RFC 3339 timestamp") from None


class Usage(Resource[HttpT]):
    """Track usage and query it.

    `record()` is the same plain, non-blocking call on `Client` and `AsyncClient`; the other
    methods are HTTP calls (coroutines on `AsyncClient`).
    """

    def __init__(self, http: HttpT, shipper: Optional[Shipper]) -> None:
        self._http = http
        self._shipper = shipper

    def record(
        self,
        event_type: str,
        metric_name: str,
        quantity: float,
        idempotency_key: Optional[str] = None,
        *,
        timestamp: Union[str, datetime, None] = None,
        subscription_id: Optional[str] = None,
        end_user_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
        metadata: Optional[Metadata] = None,
    ) -> UsageRecordResult:
        """Record a usage event.

            result = client.usage.record(
                event_type='token_usage', metric_name='llm_tokens', quantity=150000,
                idempotency_key='invoice-001-summary', agent_id='support-bot',
                metadata={'model': 'gpt-4-turbo', 'provider_cost_usd': 4.50})
            if not result['recorded']:
                print('Duplicate event skipped')

        Buffered (the default) it never touches the network: it checks the arguments, queues
        the event and returns; `recorded` is False only when this client already queued the
        same `idempotency_key` (or, with `dropped: True`, when a full queue refused it). A key
        is made when none is given, and returned so the event can be found later. Bad input
        raises `InvalidRequestError` naming the field.
        """
        # The hot path: plain type checks, no pydantic, no uuid, no lock, no logging.
        if type(event_type) is not str or not 0 < len(event_type) <= MAX_NAME_LENGTH:
            raise _bad("event_type", "must be a non-empty string of at most 255 characters")
        if type(metric_name) is not str or not 0 < len(metric_name) <= MAX_NAME_LENGTH:
            raise _bad("metric_name", "must be a non-empty string of at most 255 characters")
        kind = type(quantity)
        if kind is int:
            if not 0 <= quantity <= _MAX_QUANTITY:
                raise _bad("quantity", "must be >= 0 and at most 2**53")
        elif kind is float:
            if not 0.0 <= quantity <= _MAX_FLOAT:  # also false for NaN
                raise _bad("quantity", "must be a finite number >= 0")
        else:
            raise _bad("quantity", f"must be an int or a float, not {kind.__name__}")
        if not (
            subscription_id is None
            and end_user_id is None
            and agent_id is None
            and workflow_id is None
        ):
            _check_optional_names(
                subscription_id=subscription_id,
                end_user_id=end_user_id,
                agent_id=agent_id,
                workflow_id=workflow_id,
            )
        if metadata is not None:
            _check_metadata(metadata)
        stamp: Union[float, str] = time.time() if timestamp is None else _timestamp(timestamp)
        shipper = self._shipper
        if shipper is None:
            return self._record_now(
                event_type, metric_name, quantity, idempotency_key, stamp,
                subscription_id, end_user_id, agent_id, workflow_id, metadata,
            )  # fmt: skip
        given_key = idempotency_key is not None
        if not given_key:
            idempotency_key = _ids.event_keys.next()
        elif type(idempotency_key) is not str or not 0 < len(idempotency_key) <= MAX_NAME_LENGTH:
            raise _bad("idempotency_key", "must be a non-empty string of at most 255 characters")
        event = (
            event_type, metric_name, quantity, idempotency_key, stamp,
            subscription_id, end_user_id, agent_id, workflow_id, metadata,
        )  # fmt: skip
        if given_key:
            # Only a caller's key can repeat (ours never do). setdefault is atomic: of two
            # threads racing with one key, exactly one wins.
            recent = shipper.recent_keys
            if recent.setdefault(idempotency_key, event) is not event:
                return {"recorded": False, "idempotency_key": idempotency_key}
            if len(recent) > RECENT_KEYS_REMEMBERED:
                try:  # noqa: SIM105 - contextlib.suppress costs more on the hot path
                    del recent[next(iter(recent))]
                except (KeyError, RuntimeError, StopIteration):
                    pass  # another thread evicted it first
        if shipper.enqueue(event):
            return {"recorded": True, "idempotency_key": idempotency_key}
        return {"recorded": False, "idempotency_key": idempotency_key, "dropped": True}

    def _record_now(self, *event: Any) -> UsageRecordResult:
        """Unbuffered (`Client(buffered=False)`): one POST, the server's answer."""
        assert isinstance(self._http, HttpCore)  # AsyncClient is always buffered
        fields = dict(to_record_input(event))
        fields.setdefault("idempotency_key", _ids.event_keys.next())
        body = _validated_events([cast(UsageRecordInput, fields)])[0]
        answer = self._http.request("POST", "/v1/usage/events", body=body)
        return {
            "recorded": bool(answer["recorded"]),
            "idempotency_key": str(fields["idempotency_key"]),
            "event": answer["event"],
        }

    @endpoint
    def record_batch(self, events: List[UsageRecordInput]) -> Call[UsageBatchResult]:
        """Record up to 1000 events in one request, synchronously; returns per-event results.

            result = client.usage.record_batch([
                {'event_type': 'token_usage', 'metric_name': 'llm_tokens', 'quantity': 1000,
                 'idempotency_key': 'batch-1-evt-1'},
            ])
            print(f"Recorded: {result['recorded_count']}, Skipped: {result['skipped_count']}")

        Every event is checked before anything is sent: a missing or wrongly typed field raises
        `InvalidRequestError` naming the index and the field (`events[3].quantity`).
        """
        if not isinstance(events, (list, tuple)):
            raise _bad("events", "must be a list of event dicts")
        if not 0 < len(events) <= MAX_BATCH_SIZE:
            raise _bad("events", f"must hold 1 to {MAX_BATCH_SIZE} events, not {len(events)}")
        body = {"events": _validated_events(events)}
        return Call("POST", "/v1/usage/events/batch", body=body)

    @endpoint
    def query(
        self,
        subscription_id: Optional[str] = None,
        *,
        metric_name: Optional[str] = None,
        agent_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
        start_date: Union[str, datetime, None] = None,
        end_date: Union[str, datetime, None] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> Call[UsageEventList]:
        """Query usage events, oldest first."""
        params = {
            "subscriptionId": optional_text("subscription_id", subscription_id),
            "metricName": optional_text("metric_name", metric_name),
            "agentId": optional_text("agent_id", agent_id),
            "workflowId": optional_text("workflow_id", workflow_id),
            "startDate": date_param("start_date", start_date),
            "endDate": date_param("end_date", end_date),
            "limit": optional_int("limit", limit, 1, 1000),
            "offset": optional_int("offset", offset, 0, 2**62),
        }
        return Call("GET", "/v1/usage/events", params=params)

    @endpoint
    def aggregation(
        self,
        subscription_id: Optional[str] = None,
        *,
        metric_name: Optional[str] = None,
        start_date: Union[str, datetime, None] = None,
        end_date: Union[str, datetime, None] = None,
    ) -> Call[UsageAggregation]:
        """Usage totals per metric: quantity, event count and cost."""
        params = {
            "subscriptionId": optional_text("subscription_id", subscription_id),
            "metricName": optional_text("metric_name", metric_name),
            "startDate": date_param("start_date", start_date),
            "endDate": date_param("end_date", end_date),
        }
        return Call("GET", "/v1/usage/aggregation", params=params)

    @endpoint
    def summary(
        self,
        subscription_id: Optional[str] = None,
        *,
        start_date: Union[str, datetime, None] = None,
        end_date: Union[str, datetime, None] = None,
    ) -> Call[UsageSummary]:
        """High-level usage summary: events, quantity, cost, metrics, first and last event."""
        params = {
            "subscriptionId": optional_text("subscription_id", subscription_id),
            "startDate": date_param("start_date", start_date),
            "endDate": date_param("end_date", end_date),
        }
        return Call("GET", "/v1/usage/summary", params=params)


def _validated_events(events: Any) -> List[dict[str, Any]]:
    """Check every event with the wire model the server uses; camelCase bodies to send."""
    bodies = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise _bad(f"events[{index}]", "must be a dict")
        try:
            model = UsageEvent.model_validate(event, by_name=True, by_alias=False)
        except ValidationError as exc:
            raise from_validation_error(exc, prefix=f"events[{index}].") from None
        bodies.append(model.model_dump(mode="json", by_alias=True, exclude_none=True))
    return bodies
