"""`_timestamps`: the one canonical text of a time, and the one way to it for client and server."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from bearlumen import Client, InvalidRequestError
from bearlumen._timestamps import canonical, format_epoch, format_utc, in_order, is_canonical

EAST = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ("2024-01-01T12:00:00.000000Z", "2024-01-01T12:00:00.000000Z"),
        ("2024-01-01T12:00:00Z", "2024-01-01T12:00:00.000000Z"),
        ("2024-01-01T13:00:00.500+01:00", "2024-01-01T12:00:00.500000Z"),
        (" 2024-01-01T12:00:00z ", "2024-01-01T12:00:00.000000Z"),
        ("2024-01-01", "2024-01-01T00:00:00.000000Z"),
        # RFC 3339 forms that Python 3.9's fromisoformat refused: read alike on every Python.
        ("2024-01-01T12:00:00.1Z", "2024-01-01T12:00:00.100000Z"),
        ("2024-01-01t13:00:00.1234567+0100", "2024-01-01T12:00:00.123456Z"),
        ("2024-01-01 12:00", "2024-01-01T12:00:00.000000Z"),
        (datetime(2024, 1, 1, 12), "2024-01-01T12:00:00.000000Z"),  # naive means UTC
        (datetime(2024, 1, 1, 13, tzinfo=EAST), "2024-01-01T12:00:00.000000Z"),
    ],
)
def test_every_form_of_a_moment_has_one_canonical_text(given: object, text: str) -> None:
    assert canonical(given) == text
    assert is_canonical(text)


@pytest.mark.parametrize(
    "given",
    [
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "9999-12-31T23:30:00-01:00",  # year 10000 in UTC
        datetime(1, 1, 1, tzinfo=EAST),
        "2024-02-30T00:00:00.000000Z",
        "2024-01-01T12:00:00+24:00",
        # What Python 3.11's fromisoformat reads and 3.9's does not: refused on every Python.
        "2024-W01-1T00:00:00.000000Z",
        "20240101T120000Z",
        "2024-01-01_12:00:00",
        "yesterday",
        "",
        1_700_000_000,
        date(2024, 1, 1),  # a date is a filter's, turned into text by the client first
        None,
    ],
)
def test_what_is_no_moment_of_years_1_to_9999_is_a_value_error(given: object) -> None:
    with pytest.raises(ValueError):
        canonical(given)


def test_the_canonical_check_wants_ascii_digits_and_a_real_date() -> None:
    assert not is_canonical("2024-02-30T00:00:00.000000Z")
    assert not is_canonical("\uff12024-01-01T00:00:00.000000Z")  # a fullwidth digit 2
    assert not is_canonical("2024-01-01T00:00:00.000000Z\n")


def test_the_writers_agree() -> None:
    moment = datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=timezone.utc)
    assert format_epoch(moment.timestamp()) == format_utc(moment) == "2023-11-14T22:13:20.500000Z"
    with pytest.raises(ValueError):  # never an OverflowError
        format_utc(datetime(1, 1, 1, tzinfo=EAST))


def test_order_is_checked_only_between_two_given_times() -> None:
    assert in_order("2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z")
    assert not in_order("2024-01-02T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z")
    assert in_order(None, "2024-01-01T00:00:00.000000Z") and in_order("x", None)


def test_a_timestamp_is_refused_at_the_call_alike_on_every_python(client: Client) -> None:
    """An ISO week date, as long as the canonical text and with its T and Z, passed the client's
    old check as it was (Python 3.11 reads week dates) and was rejected by the server once sent:
    one event lost as `rejected`. Then it was refused on 3.9 and 3.10 and accepted on 3.11: the
    same code behaved by the Python it ran on. It is refused at the call, everywhere."""
    with pytest.raises(InvalidRequestError) as raised:
        client.usage.record("t", "m", 1, "week", timestamp="2024-W01-1T00:00:00.000000Z")
    assert raised.value.param == "timestamp"
    client.usage.record("t", "m", 1, "tenth", timestamp="2024-01-01T12:00:00.1Z")
    result = client.flush(timeout=30)
    assert (result["recorded"], result["rejected"]) == (1, 0)
    (event,) = client.usage.query()["events"]
    assert event["timestamp"] == "2024-01-01T12:00:00.100000Z"
