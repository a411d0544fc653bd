"""What is billed is what was recorded: record() snapshots its input and refuses, at the call,
everything the server would refuse later — the same limits, from `_wire.py`."""

from __future__ import annotations

import enum
import math
from collections import UserString
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest
from pydantic import ValidationError
from pydantic_core import to_json

from bearlumen import Client, InvalidRequestError, _validation
from bearlumen._constants import MAX_OFFSET, MAX_PAGE_SIZE
from bearlumen._validation import metadata_snapshot
from bearlumen._wire import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_NAME_LENGTH,
    MAX_QUANTITY,
    UsageEventInput,
)
from bearlumen.server import errors as server_errors
from bearlumen.testing import LocalServer


@pytest.fixture
def tenant(server: LocalServer, api_key: str) -> Iterator[Client]:
    with Client(api_key=api_key, base_url=server.base_url) as client:
        yield client


def stored_by_key(client: Client) -> dict[str, dict[str, Any]]:
    assert client.flush()["complete"]
    return {event["idempotencyKey"]: event for event in client.usage.query(limit=1000)["events"]}


# -- the snapshot ----------------------------------------------------------------------------


def test_a_handler_reusing_one_metadata_dict_bills_each_event_with_its_own_values(
    tenant: Client,
) -> None:
    metadata: dict[str, Any] = {"model": "gpt-4o", "provider_cost_usd": 0.0}
    for index, customer in enumerate(["acme", "globex", "initech"]):
        metadata["customer"] = customer
        metadata["provider_cost_usd"] = index + 0.5
        tenant.usage.record("token_usage", "llm_tokens", 10, f"call-{customer}", metadata=metadata)
    stored = stored_by_key(tenant)
    assert {key: event["metadata"]["customer"] for key, event in stored.items()} == {
        "call-acme": "acme",
        "call-globex": "globex",
        "call-initech": "initech",
    }
    assert [stored[f"call-{c}"]["metadata"]["provider_cost_usd"] for c in ("acme", "initech")] == [
        0.5,
        2.5,
    ]


def test_nested_metadata_changed_after_the_call_changes_nothing(tenant: Client) -> None:
    usage = {"input": 10, "tags": ["a"]}
    metadata: dict[str, Any] = {"usage": usage, "provider_cost_usd": 1.25}
    tenant.usage.record("t", "m", 1, "nested", metadata=metadata)
    usage["input"] = 999
    usage["tags"].append(object())  # would not even be JSON
    metadata["provider_cost_usd"] = float("nan")
    stored = stored_by_key(tenant)["nested"]
    assert stored["metadata"] == {"usage": {"input": 10, "tags": ["a"]}, "provider_cost_usd": 1.25}


def test_the_snapshot_is_a_copy_even_on_the_fast_path() -> None:
    metadata = {"model": "gpt-4o", "provider_cost_usd": 4.5}
    snapshot = metadata_snapshot(metadata)
    assert snapshot == metadata and snapshot is not metadata


# -- refused at the call, naming the key -----------------------------------------------------


class Model(str, enum.Enum):
    GPT = "gpt-4o"


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({"when": datetime(2024, 1, 1, tzinfo=timezone.utc)}, "metadata.when"),
        ({"price": Decimal("0.10")}, "metadata.price"),
        ({"tags": {"a", "b"}}, "metadata.tags"),
        ({"raw": b"bytes"}, "metadata.raw"),
        ({"obj": object()}, "metadata.obj"),
        ({"model": Model.GPT}, "metadata.model"),  # an enum is not its value: say which
        ({"score": float("nan")}, "metadata.score"),
        ({"deep": {"er": [1.0, math.inf]}}, "metadata.deep.er[1]"),
        ({"text": "a\ud800b"}, "metadata.text"),
        ({"\udcff": 1}, "metadata"),
        ({1: "one"}, "metadata[1]"),
        ({"provider_cost_usd": -1}, "metadata.provider_cost_usd"),
        ({"provider_cost_usd": True}, "metadata.provider_cost_usd"),
        ({"provider_cost_usd": "4.50"}, "metadata.provider_cost_usd"),
        ({"blob": "x" * 20_000}, "metadata"),
        ([("a", 1)], "metadata"),
    ],
)
def test_metadata_with_no_faithful_json_form_is_refused_at_the_call(
    tenant: Client, metadata: Any, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tenant.usage.record("t", "m", 1, metadata=metadata)
    assert caught.value.param == param
    assert tenant.stats()["queued"] == 0  # nothing reached the queue


def test_the_metadata_size_limit_is_the_servers_to_the_byte(tenant: Client) -> None:
    def of_size(size: int) -> dict[str, str]:
        filler = "é" * 10  # two bytes each: the limit is in bytes of JSON, not characters
        metadata = {"blob": ""}
        while len(to_json(metadata)) + 20 <= size:
            metadata["blob"] += filler
        metadata["blob"] += "x" * (size - len(to_json(metadata)))
        assert len(to_json(metadata)) == size
        return metadata

    tenant.usage.record("t", "m", 1, "at-the-limit", metadata=of_size(MAX_METADATA_BYTES))
    with pytest.raises(InvalidRequestError, match="16384") as caught:
        tenant.usage.record("t", "m", 1, "over", metadata=of_size(MAX_METADATA_BYTES + 1))
    assert caught.value.param == "metadata"
    assert list(stored_by_key(tenant)) == ["at-the-limit"]
    assert tenant.stats()["rejected"] == 0


def test_metadata_nesting_is_limited(tenant: Client) -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": 1}
        for _ in range(depth - 1):
            value = {"d": value}
        return value

    tenant.usage.record("t", "m", 1, "deep-enough", metadata=nested(MAX_METADATA_DEPTH))
    with pytest.raises(InvalidRequestError, match="nested"):
        tenant.usage.record("t", "m", 1, "too-deep", metadata=nested(MAX_METADATA_DEPTH + 1))
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(InvalidRequestError, match="nested"):
        tenant.usage.record("t", "m", 1, metadata=cycle)
    assert list(stored_by_key(tenant)) == ["deep-enough"]


def test_documented_conversions_and_exact_values_arrive_as_given(tenant: Client) -> None:
    metadata = {
        "pair": (1, "a"),  # the one conversion (docs/configuration.md): a tuple is a JSON array
        "nul": "a\x00b",
        "big": 2**70,
        "nested": {"ok": [None, True, -0.5, "ü🦙"]},
        "provider_cost_usd": 0.00042,
    }
    tenant.usage.record("t", "m", 1, "exact", metadata=metadata)
    assert stored_by_key(tenant)["exact"]["metadata"] == {**metadata, "pair": [1, "a"]}


class UnhashableText(str):
    """A str subclass with __eq__ and no __hash__: it cannot be a key of the client's memory."""

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"event_type": "a\x00b"}, "event_type"),
        ({"metric_name": "\ud800"}, "metric_name"),
        ({"idempotency_key": "k\ud800"}, "idempotency_key"),
        ({"agent_id": "bot\x00"}, "agent_id"),
        ({"workflow_id": ""}, "workflow_id"),
        ({"end_user_id": "x" * 256}, "end_user_id"),
        ({"subscription_id": 7}, "subscription_id"),
        ({"quantity": 2**53 + 1}, "quantity"),
        ({"quantity": 1e300}, "quantity"),
        ({"quantity": float("nan")}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": Decimal(1)}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"event_type": ["t"]}, "event_type"),  # unhashable
        ({"agent_id": {"id": "bot"}}, "agent_id"),
        ({"workflow_id": None, "end_user_id": ["eu"]}, "end_user_id"),
        ({"idempotency_key": UnhashableText("k")}, "idempotency_key"),
    ],
)
def test_names_quantities_and_timestamps_are_refused_as_the_server_would(
    tenant: Client, arguments: dict[str, Any], param: str
) -> None:
    call = {"event_type": "t", "metric_name": "m", "quantity": 1, **arguments}
    for _ in range(2):  # every time: a refused name is never remembered as checked
        with pytest.raises(InvalidRequestError) as caught:
            tenant.usage.record(**call)
        assert caught.value.param == param
    assert tenant.stats()["queued"] == 0


class Metric(str, enum.Enum):
    TOKENS = "enum_tokens"  # no other test records this name: the first call sees it new


def test_a_str_enum_name_is_text_and_goes_as_its_value_whatever_was_seen_before(
    tenant: Client,
) -> None:
    tenant.usage.record("t", Metric.TOKENS, 1, "enum-first")
    tenant.usage.record("t", "enum_tokens", 1, "plain")
    tenant.usage.record(Metric.TOKENS, Metric.TOKENS, 1, "enum-after")
    stored = stored_by_key(tenant)
    assert [stored[key]["metricName"] for key in ("enum-first", "plain", "enum-after")] == [
        "enum_tokens"
    ] * 3
    assert stored["enum-after"]["eventType"] == "enum_tokens"


class EqualToEverything(str):
    """A str subclass that claims to equal any other string, with that string's hash."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("model")


def test_only_an_exact_str_passes_for_a_name_or_a_key_seen_before(tenant: Client) -> None:
    tenant.usage.record("chat", "m", 1, metadata={"model": "gpt-4o"})  # both now remembered
    with pytest.raises(InvalidRequestError) as caught:
        tenant.usage.record(UserString("chat"), "m", 1)  # equal to "chat", but not text
    assert caught.value.param == "event_type"
    with pytest.raises(InvalidRequestError) as caught:
        tenant.usage.record("chat", "m", 1, metadata={UserString("model"): "gpt-4o"})
    assert caught.value.param.startswith("metadata")
    # "Equal" to the remembered key "model", and 20,000 characters: over the server's limit.
    with pytest.raises(InvalidRequestError) as caught:
        tenant.usage.record("chat", "m", 1, metadata={EqualToEverything("k" * 20_000): 1})
    assert caught.value.param.startswith("metadata")
    # A str subclass is text (checked in full every time) and never remembered, so it cannot
    # pass an empty name off as one it equals.
    tenant.usage.record(EqualToEverything("chat"), "m", 1, "odd-name")
    with pytest.raises(InvalidRequestError) as caught:
        tenant.usage.record("", "m", 1)
    assert caught.value.param == "event_type"
    assert tenant.flush()["recorded"] == 2
    assert tenant.stats()["rejected"] == 0


def test_names_and_keys_seen_are_remembered_within_a_bound(tenant: Client) -> None:
    """record() remembers names and metadata keys it checked, so a repeat costs one lookup;
    ids of high cardinality (an end user per call) must not make that memory grow."""
    for index in range(3 * _validation._CHECKED_NAMES_MAX):
        tenant.usage.record(
            "t", "m", 1, end_user_id=f"user-{index}", metadata={f"key-{index}": index}
        )
    assert 0 < len(_validation._CHECKED_NAMES) <= _validation._CHECKED_NAMES_MAX
    assert 0 < len(_validation._CHECKED_KEYS) <= _validation._CHECKED_NAMES_MAX
    assert tenant.flush()["recorded"] == 3 * _validation._CHECKED_NAMES_MAX


def test_quantity_has_one_limit_for_int_and_float(tenant: Client) -> None:
    tenant.usage.record("t", "m", MAX_QUANTITY, "int-max")
    tenant.usage.record("t", "m", float(MAX_QUANTITY), "float-max")
    stored = stored_by_key(tenant)
    assert stored["int-max"]["quantity"] == stored["float-max"]["quantity"] == 2.0**53


def test_record_batch_applies_the_same_metadata_rules(tenant: Client) -> None:
    good = {"event_type": "t", "metric_name": "m", "quantity": 1}
    with pytest.raises(InvalidRequestError) as caught:
        tenant.usage.record_batch([good, {**good, "metadata": {"when": datetime(2024, 1, 1)}}])
    assert caught.value.param == "events[1].metadata.when"


def test_the_server_refuses_what_record_refuses(http: Any) -> None:
    """The other side of the same rules (`_wire.py`): a name with NUL or a quantity over 2**53
    sent straight to the server is refused there, never stored cut short or rounded."""
    answer = http.post(
        "/v1/usage/events/batch",
        json={
            "events": [
                {"eventType": "a\x00b", "metricName": "m", "quantity": 1},
                {"eventType": "t", "metricName": "m", "quantity": 2**53 + 2},
                {"eventType": "t", "metricName": "m", "quantity": 1e300},
                {"eventType": "t", "metricName": "m", "quantity": 2**53 + 1},  # a float rounds it
            ]
        },
    ).json()
    assert [r["status"] for r in answer["results"]] == ["rejected"] * 4
    # The same quantity alone, in a batch the server's fast path would otherwise take whole.
    answer = http.post(
        "/v1/usage/events/batch",
        json={"events": [{"eventType": "t", "metricName": "m", "quantity": 2**53 + 1}]},
    ).json()
    assert [r["status"] for r in answer["results"]] == ["rejected"]


@pytest.mark.parametrize("dots", [".", ".."])
def test_an_id_of_dots_cannot_reach_another_route(tenant: Client, dots: str) -> None:
    # "/v1/subscriptions/." resolves to "/v1/subscriptions/": retrieve() answered with the list.
    with pytest.raises(InvalidRequestError) as caught:
        tenant.subscriptions.retrieve(dots)
    assert caught.value.param == "subscription_id"
    with pytest.raises(InvalidRequestError) as caught:
        tenant.end_users.deactivate(dots)
    assert caught.value.param == "end_user_id"


def test_a_str_subclass_name_is_sent_as_its_own_text_beside_other_names(tenant: Client) -> None:
    # In one batch with plain names it equals: still billed under its own text, not theirs.
    for key in ("plain-1", "plain-2"):
        tenant.usage.record("chat", "m", 1, key, agent_id="bot")
    tenant.usage.record(EqualToEverything("odd"), "m", 1, "odd", agent_id=Agent.BOT)
    assert tenant.flush()["recorded"] == 3
    stored = stored_by_key(tenant)
    assert [stored[key]["eventType"] for key in ("plain-1", "plain-2", "odd")] == [
        "chat",
        "chat",
        "odd",
    ]
    assert stored["odd"]["agentId"] == "bot"


class Agent(str, enum.Enum):
    BOT = "bot"


# -- one rule per concept: every time argument, the metadata's depth ---------------------------

YEAR_ZERO = "0001-01-01T00:00:00+01:00"  # year 1 where it was said, year 0 in UTC
PAST_9999 = "9999-12-31T23:30:00-01:00"  # year 10000 in UTC
ONE_HOUR_EAST = timezone(timedelta(hours=1))

# Every call that takes a time, with the parameter that names it.
TIME_CALLS: list[tuple[str, Callable[[Client, Any], Any]]] = [
    ("timestamp", lambda c, t: c.usage.record("t", "m", 1, timestamp=t)),
    ("events[0].timestamp", lambda c, t: c.usage.record_batch([{**EVENT, "timestamp": t}])),
    ("start_date", lambda c, t: c.usage.query(start_date=t)),
    ("end_date", lambda c, t: c.usage.query(end_date=t)),
    ("start_date", lambda c, t: c.usage.aggregation(start_date=t)),
    ("end_date", lambda c, t: c.usage.summary(end_date=t)),
    ("start_date", lambda c, t: c.cost_attribution.by_agent(t, "2024-01-01")),
    ("end_date", lambda c, t: c.cost_attribution.list_workflows("2024-01-01", t)),
    ("start_date", lambda c, t: c.subscriptions.create("org", "plan", "monthly", t)),
    ("end_date", lambda c, t: c.subscriptions.update("sub_x", end_date=t)),
]
EVENT = {"event_type": "t", "metric_name": "m", "quantity": 1}


@pytest.mark.parametrize(
    ("param", "call"), TIME_CALLS, ids=[f"{n}-{p}" for n, (p, _) in enumerate(TIME_CALLS)]
)
@pytest.mark.parametrize(
    "moment",
    [
        YEAR_ZERO,
        PAST_9999,
        datetime(1, 1, 1, tzinfo=ONE_HOUR_EAST),
        "2024-02-30T00:00:00Z",
        "yesterday",
    ],
    ids=["year-0", "year-10000", "year-0-datetime", "february-30", "yesterday"],
)
def test_every_time_out_of_range_is_refused_at_the_call_naming_it(
    tenant: Client, param: str, call: Callable[[Client, Any], Any], moment: Any
) -> None:
    """One parse of every time the client takes: what is no moment of years 1 to 9999 in UTC
    is an InvalidRequestError naming the argument, before anything is sent (it was a bare
    OverflowError from the queries, and record_batch sent it to be rejected by the server)."""
    with pytest.raises(InvalidRequestError) as caught:
        call(tenant, moment)
    assert caught.value.param == param
    assert caught.value.status_code is None  # refused by the client, not by a server


@pytest.mark.parametrize(
    "call",
    [
        lambda c, s, e: c.usage.query(start_date=s, end_date=e),
        lambda c, s, e: c.usage.aggregation(start_date=s, end_date=e),
        lambda c, s, e: c.usage.summary(start_date=s, end_date=e),
        lambda c, s, e: c.cost_attribution.by_agent(s, e),
        lambda c, s, e: c.cost_attribution.list_agents(s, e),
    ],
    ids=["query", "aggregation", "summary", "by_agent", "list_agents"],
)
def test_an_end_date_before_the_start_date_names_end_date(
    tenant: Client, call: Callable[[Client, Any, Any], Any]
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        call(tenant, "2024-02-01", datetime(2024, 1, 31, 23, 0, tzinfo=ONE_HOUR_EAST))
    assert caught.value.param == "end_date"
    assert caught.value.status_code is None
    # The same moment written two ways is in order.
    call(tenant, "2024-02-01", datetime(2024, 2, 1, 1, 0, tzinfo=ONE_HOUR_EAST))


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": [1]}  # the list is one level deeper than its dict
    for _ in range(depth - 2):
        value = {"d": value}
    return value


@pytest.mark.parametrize("path", ["/v1/usage/events", "/v1/usage/events/batch"])
def test_the_server_refuses_metadata_nested_deeper_than_record_allows(
    tenant: Client, http: Any, path: str
) -> None:
    tenant.usage.record("t", "m", 1, metadata=nested(MAX_METADATA_DEPTH))
    with pytest.raises(InvalidRequestError, match="nested"):
        tenant.usage.record("t", "m", 1, metadata=nested(MAX_METADATA_DEPTH + 1))

    def post(metadata: Any, count: int = 1) -> list[str]:
        event = {"eventType": "t", "metricName": "m", "quantity": 1, "metadata": metadata}
        if path.endswith("batch"):  # one event alone, or among valid ones (the fast path)
            body = {"events": [event] + [{**event, "metadata": None}] * (count - 1)}
            return [r["status"] for r in http.post(path, json=body).json()["results"]][:1]
        answer = http.post(path, json=event)
        return ["recorded" if answer.status_code == 201 else answer.json()["error"]["param"]]

    expected_refusal = ["rejected"] if path.endswith("batch") else ["metadata"]
    assert post(nested(MAX_METADATA_DEPTH)) == ["recorded"]
    assert post(nested(MAX_METADATA_DEPTH + 1)) == expected_refusal
    assert post(nested(41), count=3) == expected_refusal


# -- one rule per limit, and one reading of pydantic's errors ----------------------------------


def test_paging_and_name_limits_are_the_same_rule_on_both_sides(tenant: Client, http: Any) -> None:
    lists = [tenant.usage.query, tenant.subscriptions.list, tenant.end_users.list]
    routes = ["/v1/usage/events", "/v1/subscriptions", "/v1/end-users"]
    for call, route in zip(lists, routes):
        call(limit=MAX_PAGE_SIZE, offset=MAX_OFFSET)
        assert http.get(route, params={"limit": MAX_PAGE_SIZE, "offset": MAX_OFFSET}).is_success
        for param, value in (("limit", 0), ("limit", MAX_PAGE_SIZE + 1), ("offset", -1),
                             ("offset", MAX_OFFSET + 1)):  # fmt: skip
            with pytest.raises(InvalidRequestError) as caught:
                call(**{param: value})
            assert (caught.value.param, caught.value.status_code) == (param, None)
            answer = http.get(route, params={param: value})
            assert (answer.status_code, answer.json()["error"]["param"]) == (400, param)
    assert http.get(routes[0], params={"metricName": "m" * MAX_NAME_LENGTH}).is_success
    refused = http.get(routes[0], params={"metricName": "m" * (MAX_NAME_LENGTH + 1)})
    assert refused.json()["error"]["param"] == "metricName"


@pytest.mark.parametrize("prefix", ["", "events[3]."])
def test_client_and_server_read_a_pydantic_error_alike(prefix: str) -> None:
    """One mapping (`_wire.validation_problem`): the same field and words on both sides, also
    for an error of the whole value, which has no location."""
    for value in ({"eventType": "t"}, {**SERVER_EVENT, "extra": 1}, [], "text"):
        with pytest.raises(ValidationError) as caught:
            UsageEventInput.model_validate(value)
        client = _validation.from_validation_error(caught.value, prefix)
        server = server_errors.from_validation_error(caught.value, prefix)
        assert (client.param, client.message) == (server.param, server.message)
    assert (client.param, server.param) == ((prefix.rstrip(".") or None),) * 2


SERVER_EVENT = {"eventType": "t", "metricName": "m", "quantity": 1}
