"""`client.usage`: record usage (buffered by default) and read it back."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, List, Optional, Union, cast

from pydantic import ValidationError

from .. import _ids
from .._constants import MAX_BATCH_SIZE
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
from .._validation import (
    check_event,
    date_range,
    event_timestamp,
    exact_texts,
    from_validation_error,
    invalid,
    metadata_snapshot,
    optional_text,
    page,
)
from .._wire import UsageEventInput
from ._endpoint import HttpT, Resource, endpoint


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
        raises `InvalidRequestError` naming the field (`metadata.when`): whatever the server
        would refuse is refused here. The event keeps the metadata as it is at this call (a
        copy), whatever happens to the caller's dict afterwards.
        """
        # The hot path: plain type checks, no pydantic, no uuid, no lock, no logging.
        if check_event(
            event_type,
            metric_name,
            quantity,
            idempotency_key,
            subscription_id,
            end_user_id,
            agent_id,
            workflow_id,
        ):  # a str subclass among them (an enum member): queued as its text
            (
                event_type, metric_name, idempotency_key,
                subscription_id, end_user_id, agent_id, workflow_id,
            ) = exact_texts(
                event_type, metric_name, idempotency_key,
                subscription_id, end_user_id, agent_id, workflow_id,
            )  # fmt: skip
        if metadata is not None:
            metadata = metadata_snapshot(metadata)  # billed as passed to this call
        stamp: Union[float, str] = time.time() if timestamp is None else event_timestamp(timestamp)
        shipper = self._shipper
        if shipper is None:
            return self._record_now(
                event_type, metric_name, quantity, idempotency_key, stamp,
                subscription_id, end_user_id, agent_id, workflow_id, metadata,
            )  # fmt: skip
        given_key = idempotency_key is not None
        if idempotency_key is None:
            idempotency_key = _ids.event_keys.next()
        event = (
            event_type, metric_name, quantity, idempotency_key, stamp,
            subscription_id, end_user_id, agent_id, workflow_id, metadata,
        )  # fmt: skip
        # Only a caller's key can repeat (ours never do); the shipper owns the duplicate policy.
        if given_key and not shipper.claim_key(idempotency_key, event):
            return {"recorded": False, "idempotency_key": idempotency_key}
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
            raise invalid("events", "must be a list of event dicts")
        if not 0 < len(events) <= MAX_BATCH_SIZE:
            raise invalid("events", f"must hold 1 to {MAX_BATCH_SIZE} events, not {len(events)}")
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
            **date_range(start_date, end_date),
            **page(limit, offset),
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
            **date_range(start_date, end_date),
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
            **date_range(start_date, end_date),
        }
        return Call("GET", "/v1/usage/summary", params=params)


def _validated_events(events: Any) -> List[dict[str, Any]]:
    """Check every event with the wire model the server uses; camelCase bodies to send."""
    bodies = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise invalid(f"events[{index}]", "must be a dict")
        try:
            model = UsageEventInput.model_validate(event, by_name=True, by_alias=False)
        except ValidationError as exc:
            raise from_validation_error(exc, prefix=f"events[{index}].") from None
        if model.metadata is not None:
            # The same rules as record(): no value changes form on its way to JSON.
            checked = metadata_snapshot(model.metadata, f"events[{index}].metadata")
            model = model.model_copy(update={"metadata": dict(checked)})
        bodies.append(model.model_dump(mode="json", by_alias=True, exclude_none=True))
    return bodies
