"""Property-based: whatever a caller passes, bearlumen answers with a typed error or accepts and
delivers it, exactly as given; nothing it accepts is refused later. Each test stands alone."""

from __future__ import annotations

import json
import math
import secrets
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus as HttpStatus
from json import loads
from typing import Any, Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic.alias_generators import to_camel
from pydantic_core import to_json

from bearlumen import BearLumenError, Client, InvalidRequestError
from bearlumen.testing import LocalServer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

text = st.text(max_size=300) | st.text(
    alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20
)
odd_text = st.sampled_from(
    ["\ud800", "\x00", "é" * 300, "'; DROP TABLE usage_events; --", "🦙" * 70, " "]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | text
    | odd_text
    | st.binary(max_size=8)
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
anything = (
    json_like | st.builds(object) | st.sets(st.integers(), max_size=3) | st.just(float("nan"))
)


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"d": value}
    return value


metadata = (
    st.none()
    | st.dictionaries(text | odd_text, anything, max_size=5)
    | st.builds(deep, st.integers(300, 1200))
    | st.builds(lambda n: {"blob": "x" * n}, st.integers(15_000, 40_000))
    | st.builds(lambda c: {"provider_cost_usd": c}, anything)
    | anything
)


@pytest.fixture(scope="module")
def prop_client(server: LocalServer) -> Iterator[Client]:
    with Client(
        api_key="sk_test_props_" + secrets.token_hex(4), base_url=server.base_url
    ) as client:
        yield client


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def mostly(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Valid nine times in ten, so that many examples are accepted and must then be delivered."""
    return st.integers(0, 9).flatmap(lambda roll: invalid if roll == 0 else valid)


name = st.text(min_size=1, max_size=255)  # NUL included: record() must refuse it, not cut it
unicode_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)  # no surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=20,
)
# Flat metadata one value away from valid: each takes record()'s fast path up to that value.
trap_metadata = st.builds(
    lambda key, value: {"model": "gpt-4o", key: value},
    st.sampled_from(["note", "provider_cost_usd", "\x00"]),
    st.sampled_from(
        [
            float("nan"),
            float("inf"),
            -float("inf"),
            datetime(2024, 1, 1),
            Decimal("0.5"),
            {1, 2},
            (1, 2),
            b"x",
            "\ud800",
            2**70,
            -1.0,
            1e10,
            True,
            "x" * 17_000,
            "é" * 1_000,
            HttpStatus.OK,
        ]
    ),
)
json_metadata = st.dictionaries(unicode_text, json_values, max_size=5) | st.builds(
    lambda n: {"blob": "é" * n}, st.integers(7_000, 9_000)
)


# Each example is a client and a few dozen events over loopback: no shrinking (a failure is
# reported as drawn, with every event's arguments), or a failure takes minutes to report.
@settings(SETTINGS, max_examples=25, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_accepted_by_record_implies_accepted_by_the_server(
    server: LocalServer, data: st.DataObject
) -> None:
    """Whatever a caller passes, record() raises a typed error or queues an event that the
    server then stores exactly: never rejected later, never changed on the way."""
    with Client(api_key="sk_test_props_" + secrets.token_hex(6), base_url=server.base_url) as c:
        accepted: dict[str, dict[str, Any]] = {}
        for index in range(data.draw(st.integers(20, 40))):
            arguments = data.draw(
                st.fixed_dictionaries(
                    {
                        "event_type": mostly(name, odd_text | anything),
                        "metric_name": mostly(name, anything),
                        "quantity": mostly(
                            st.integers(0, 2**53) | st.floats(0, 2**53),
                            st.integers() | st.floats() | anything,
                        ),
                        "agent_id": mostly(st.none() | name, odd_text | anything),
                        "timestamp": mostly(st.none() | st.datetimes(), text | anything),
                        "metadata": mostly(
                            st.none() | json_metadata, metadata | trap_metadata | trap_metadata
                        ),
                    }
                )
            )
            key = f"prop-{index}"
            try:
                result = c.usage.record(idempotency_key=key, **arguments)
            except BearLumenError as exc:
                assert exc.status_code is None  # refused at the call, not by a server
                continue
            assert result == {"recorded": True, "idempotency_key": key}
            accepted[key] = arguments
        result = c.flush(timeout=120)
        assert result["complete"] and result["failed"] == 0
        assert result["rejected"] == 0 and result["recorded"] == len(accepted)
        stored = {e["idempotencyKey"]: e for e in c.usage.query(limit=1000)["events"]}
    assert set(stored) == set(accepted)
    for key, arguments in accepted.items():
        event = stored[key]
        assert (event["eventType"], event["metricName"]) == (
            arguments["event_type"],
            arguments["metric_name"],
        )
        assert event["quantity"] == arguments["quantity"]
        assert event["agentId"] == arguments["agent_id"]
        expected = arguments["metadata"]
        assert event["metadata"] == (None if expected is None else loads(to_json(expected)))


@SETTINGS
@given(
    events=st.lists(
        st.dictionaries(
            st.sampled_from(["event_type", "metric_name", "quantity", "metadata", "x"]), anything
        ),
        max_size=3,
    )
    | anything
)
def test_record_batch_takes_anything_and_answers_typed(prop_client: Client, events: Any) -> None:
    try:
        result = prop_client.usage.record_batch(events)
    except BearLumenError:
        return
    assert result["recorded_count"] + result["skipped_count"] + result["rejected_count"] == len(
        events
    )


CALLS: list[tuple[str, Callable[[Client, Any, Any], Any]]] = [
    ("end_users.create", lambda c, a, b: c.end_users.create(a, email=b, name=b, metadata=b)),
    ("end_users.update", lambda c, a, b: c.end_users.update(a, email=b, name=b, metadata=b)),
    ("end_users.list", lambda c, a, b: c.end_users.list(status=a, limit=b, offset=b)),
    ("end_users.deactivate", lambda c, a, b: c.end_users.deactivate(a)),
    (
        "subscriptions.create",
        lambda c, a, b: c.subscriptions.create(a, a, b, b, end_user_id=a, metadata=b),
    ),
    ("subscriptions.retrieve", lambda c, a, b: c.subscriptions.retrieve(a)),
    (
        "subscriptions.update",
        lambda c, a, b: c.subscriptions.update(a, plan_id=b, billing_cycle=b, end_date=b),
    ),
    (
        "subscriptions.list",
        lambda c, a, b: c.subscriptions.list(organization_id=a, limit=b, offset=b),
    ),
    (
        "usage.query",
        lambda c, a, b: c.usage.query(a, metric_name=a, start_date=b, end_date=b, limit=b),
    ),
    ("usage.aggregation", lambda c, a, b: c.usage.aggregation(a, start_date=b, end_date=a)),
    ("usage.summary", lambda c, a, b: c.usage.summary(a, start_date=a, end_date=b)),
    ("cost_attribution.by_agent", lambda c, a, b: c.cost_attribution.by_agent(a, b)),
    ("cost_attribution.list_workflows", lambda c, a, b: c.cost_attribution.list_workflows(b, a)),
]


@SETTINGS
@given(
    call=st.sampled_from(CALLS),
    first=text | odd_text | anything,
    second=anything | st.dates() | st.datetimes(),
)
def test_every_resource_call_answers_typed(
    prop_client: Client,
    call: tuple[str, Callable[[Client, Any, Any], Any]],
    first: Any,
    second: Any,
) -> None:
    try:
        result = call[1](prop_client, first, second)
    except BearLumenError as exc:
        assert exc.status_code is None or exc.status_code < 500, (call[0], exc)
        return
    assert isinstance(result, dict)


def test_quantities_at_the_edges(prop_client: Client) -> None:
    for quantity in (0, 0.0, 2**53, float(2**53), 5e-324, math.pi):
        assert prop_client.usage.record("t", "m", quantity)["recorded"] is True
    # One limit for int and float alike: above 2**53 a JSON number stops being exact.
    for too_large in (2**53 + 1, float(2**54), 1e300, math.inf):
        with pytest.raises(InvalidRequestError, match="quantity"):
            prop_client.usage.record("t", "m", too_large)
    assert prop_client.flush()["failed"] == 0


# -- client and server: one set of rules, stated both ways ------------------------------------


def nested_metadata(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"d": value}
    return value


def sized_metadata(size: int) -> dict[str, Any]:
    return {"blob": "x" * (size - len('{"blob":""}'))}


edge_name = st.sampled_from(["", "x" * 255, "x" * 256, "a\x00b", "é" * 255, "\ud800", " "])
edge_time = st.sampled_from(
    [
        "2024-01-01T00:00:00.000000Z",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.5+05:30",
        "2024-01-01",
        "2024-02-30T00:00:00.000000Z",
        "2024-13-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T01:00:00+01:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:30:00-01:00",
        "2024-01-01T00:00:00.000000Z\n",
        " 2024-01-01T00:00:00Z ",
        "yesterday",
        "",
    ]
)
edge_metadata = (
    st.builds(nested_metadata, st.integers(30, 34))
    | st.builds(sized_metadata, st.integers(16_380, 16_390))
    | st.builds(
        lambda cost: {"provider_cost_usd": cost},
        st.sampled_from([0, 0.5, -0.01, 1e9, 1e9 + 1, True, "1", None]),
    )
    | st.dictionaries(unicode_text, json_values, max_size=4)
)
json_event = st.fixed_dictionaries(
    {
        "event_type": mostly(st.text(min_size=1, max_size=20), edge_name),
        "metric_name": mostly(st.text(min_size=1, max_size=20), edge_name | st.integers()),
        "quantity": st.sampled_from([0, 1, 2.5, 2**53, 2**53 + 1, -1, 1e300, True, "1", None])
        | st.integers(0, 2**60)
        | st.floats(allow_nan=False, allow_infinity=False),
    },
    optional={
        "idempotency_key": mostly(st.text(min_size=1, max_size=40), edge_name),
        "timestamp": edge_time | st.integers(0, 2**40) | st.datetimes().map(str),
        "agent_id": mostly(st.text(min_size=1, max_size=20), edge_name | st.none()),
        "end_user_id": edge_name | st.lists(st.integers(), max_size=1),
        "metadata": st.none() | edge_metadata | st.lists(st.integers(), max_size=1),
    },
)


@SETTINGS
@given(event=json_event)
def test_the_client_and_the_server_accept_exactly_the_same_events(
    prop_client: Client, http: httpx.Client, event: dict[str, Any]
) -> None:
    """What record() refuses the server refuses, and what it accepts the server accepts: one
    set of rules (`_wire.py`, `_timestamps.py`), asked of each side with the same event (the
    server's with raw JSON, as any other client would send it)."""
    try:
        prop_client.usage.record(**event)
        client_accepts = True
    except InvalidRequestError:
        client_accepts = False
    wire = {to_camel(name): value for name, value in event.items() if value is not None}
    answer = http.post(
        "/v1/usage/events",
        content=json.dumps(wire),  # ensure_ascii: a lone surrogate travels as its escape
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code in (200, 201, 400), answer.text
    assert client_accepts == (answer.status_code != 400), answer.text
