"""Typed errors from real server answers, and the retry policy (timed with an injected sleep)."""

from __future__ import annotations

import logging
import platform
import traceback

import httpx
import pytest

import bearlumen
from bearlumen import (
    AuthenticationError,
    BearLumenError,
    Client,
    DuplicateCustomerError,
    InvalidEmailError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from bearlumen._http import backoff_delay
from bearlumen.testing import LocalServer

from .conftest import RecordingSleep


def faulty_client(server: LocalServer, sleep: RecordingSleep, **options: object) -> Client:
    return Client(api_key="sk_test_faults", base_url=server.base_url, sleep=sleep, **options)  # type: ignore[arg-type]


def test_no_api_key_is_an_authentication_error_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BEARLUMEN_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="BEARLUMEN_API_KEY"):
        Client()
    with pytest.raises(AuthenticationError):
        Client(api_key="")
    with pytest.raises(AuthenticationError):
        Client(api_key="   ")


def test_key_and_url_come_from_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEARLUMEN_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("BEARLUMEN_BASE_URL", server.base_url)
    with Client() as client:
        assert client.base_url == server.base_url
        assert client.end_users.list()["total"] == 0
    monkeypatch.delenv("BEARLUMEN_BASE_URL")
    with Client() as client:
        assert client.base_url == "https://api.bearlumen.com"


def test_a_wrong_key_is_an_authentication_error() -> None:
    with LocalServer(api_keys=["sk_live_right"]) as base_url:
        with Client(api_key="sk_live_wrong", base_url=base_url) as client:
            with pytest.raises(AuthenticationError) as caught:
                client.end_users.list()
    assert caught.value.status_code == 401
    assert "sk_live_wrong" not in str(caught.value) and "sk_live_wrong" not in repr(caught.value)


def test_each_status_maps_to_its_exception(client: Client) -> None:
    with pytest.raises(InvalidEmailError) as invalid_email:
        client.end_users.create(external_id="u", email="not-an-email")
    assert invalid_email.value.status_code == 400 and invalid_email.value.param == "email"
    assert isinstance(invalid_email.value, InvalidRequestError)

    client.end_users.create(external_id="taken")
    with pytest.raises(DuplicateCustomerError) as duplicate:
        client.end_users.create(external_id="taken")
    assert duplicate.value.status_code == 409

    with pytest.raises(NotFoundError) as not_found:
        client.subscriptions.retrieve("sub_missing")
    error = not_found.value
    assert error.status_code == 404 and error.request_id and error.request_id.startswith("req_")
    assert error.body["error"]["type"] == "not_found"
    assert error.message

    with pytest.raises(InvalidRequestError) as invalid:
        client.end_users.list(status="GONE")
    assert invalid.value.param == "status"


def test_bad_arguments_fail_before_any_request(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.end_users.create(external_id=123)  # type: ignore[arg-type]
    assert caught.value.param == "external_id" and caught.value.status_code is None
    with pytest.raises(InvalidRequestError, match="billing_cycle"):
        client.subscriptions.create("org", "plan", "weekly", "2024-01-01")
    with pytest.raises(InvalidRequestError, match="limit"):
        client.end_users.list(limit=0)
    with pytest.raises(InvalidRequestError, match="start_date"):
        client.cost_attribution.by_agent(start_date="last tuesday", end_date="2024-01-01")
    with pytest.raises(InvalidRequestError, match="end_user_id"):
        client.end_users.deactivate("")


def test_rate_limit_error_after_the_retries_carries_retry_after(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(script=["429:7", "429:7", "429:7"])
    with faulty_client(fault_server, recording_sleep, max_retries=2) as client:
        with pytest.raises(RateLimitError) as caught:
            client.end_users.list()
    assert caught.value.retry_after == 7.0 and caught.value.status_code == 429
    # Retry-After is a floor: never shortened, even above the backoff's cap.
    assert recording_sleep.waits == [7.0, 7.0]


def test_retries_ride_through_transient_failures(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(script=["503", "429:3", "drop", "500"])
    with faulty_client(fault_server, recording_sleep, max_retries=4) as client:
        assert client.end_users.list()["total"] == 0
    assert len(recording_sleep.waits) == 4
    assert recording_sleep.waits[1] >= 3.0
    assert all(0 < w <= 30 for w in recording_sleep.waits)


def test_server_error_and_network_error_after_the_retries(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(script=["503", "503"])
    with faulty_client(fault_server, recording_sleep, max_retries=1) as client:
        with pytest.raises(ServerError) as server_error:
            client.end_users.list()
        assert server_error.value.status_code == 503
        fault_server.set_faults(script=["drop", "drop"])
        with pytest.raises(NetworkError) as network_error:
            client.end_users.list()
    assert network_error.value.status_code is None
    assert isinstance(network_error.value.__cause__, httpx.TransportError)
    assert not isinstance(network_error.value, ServerError)


def test_connection_refused_is_a_network_error(recording_sleep: RecordingSleep) -> None:
    with LocalServer() as base_url:
        pass  # the port is free again: nothing listens there now
    with (
        Client(
            api_key="sk_test_x", base_url=base_url, sleep=recording_sleep, max_retries=2
        ) as client,
        pytest.raises(NetworkError) as caught,
    ):
        client.usage.summary()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(recording_sleep.waits) == 2
    assert "is the local server running? `bearlumen serve" in caught.value.message  # loopback


def test_max_retries_zero_disables_retries(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(script=["503"])
    with faulty_client(fault_server, recording_sleep, max_retries=0) as client:
        with pytest.raises(ServerError):
            client.end_users.list()
    assert recording_sleep.waits == []


def test_client_errors_are_not_retried(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    with faulty_client(fault_server, recording_sleep) as client, pytest.raises(NotFoundError):
        client.subscriptions.retrieve("sub_nope")
    assert recording_sleep.waits == []


def test_a_create_retried_after_store_then_500_creates_once(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(script=["store_500"])
    with faulty_client(fault_server, recording_sleep) as client:
        created = client.end_users.create(external_id="exactly-once")
        listed = client.end_users.list()
    assert len(recording_sleep.waits) == 1
    assert listed["total"] == 1 and listed["endUsers"][0]["id"] == created["endUser"]["id"]


def test_backoff_is_exponential_with_jitter_and_retry_after_is_a_floor() -> None:
    assert backoff_delay(1, None, jitter=lambda: 0.0) == 0.25
    assert backoff_delay(1, None, jitter=lambda: 1.0) == 0.5
    assert backoff_delay(3, None, jitter=lambda: 1.0) == 2.0
    assert backoff_delay(20, None, jitter=lambda: 1.0) == 30.0
    limited = RateLimitError("slow down", retry_after=45.0)
    assert backoff_delay(1, limited, jitter=lambda: 1.0) == 45.0
    short = RateLimitError("slow down", retry_after=0.1)
    assert backoff_delay(4, short, jitter=lambda: 1.0) == 4.0


class RecordingTransport(httpx.HTTPTransport):
    """The real transport, noting each request it sends (to the real local server), and
    optionally sending every request to `redirect_to` whatever host its URL names."""

    def __init__(self, redirect_to: str | None = None) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []
        self.hosts: list[str] = []  # as the client addressed them
        self.redirect_to = httpx.URL(redirect_to) if redirect_to else None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        self.hosts.append(request.url.host)
        if self.redirect_to is not None:
            request.url = request.url.copy_with(
                scheme=self.redirect_to.scheme,
                host=self.redirect_to.host,
                port=self.redirect_to.port,
            )
        return super().handle_request(request)


def test_requests_carry_user_agent_and_one_idempotency_key_per_call(
    fault_server: LocalServer, recording_sleep: RecordingSleep
) -> None:
    fault_server.set_faults(script=["503"])  # the first attempt fails and is retried
    transport = RecordingTransport()
    http = httpx.Client(transport=transport)
    client = Client(
        api_key="sk_test_h", base_url=fault_server.base_url,
        http_client=http, sleep=recording_sleep,
    )  # fmt: skip
    client.end_users.create(external_id="a")
    client.end_users.create(external_id="b")
    seen = transport.sent
    version = ".".join(platform.python_version_tuple()[:2])
    assert (
        seen[0].headers["user-agent"]
        == f"bearlumen-python/{bearlumen.__version__} python/{version}"
    )
    keys = [r.headers["idempotency-key"] for r in seen]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]  # the retry reused its call's key
    assert seen[0].headers["authorization"] == "Bearer sk_test_h"
    assert client.end_users.list()["total"] == 2
    client.close()
    http.close()  # the caller's httpx.Client: Client leaves it open


def test_plain_http_to_a_remote_host_warns_once(server: LocalServer) -> None:
    # The client believes it talks to a remote host; the transport delivers to the local server.
    transport = RecordingTransport(redirect_to=server.base_url)
    http = httpx.Client(transport=transport)
    client = Client(
        api_key="sk_live_secret", base_url="http://metering.example.com",
        http_client=http,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="plain http") as warned:
        client.end_users.list()
        client.end_users.list()
    assert len(warned) == 1 and "sk_live_secret" not in str(warned[0].message)
    assert transport.hosts == ["metering.example.com"] * 2
    client.close()
    http.close()  # the caller's httpx.Client: Client leaves it open


def test_the_api_key_never_appears_in_logs_reprs_or_errors(
    fault_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk_live_TOPSECRET_do_not_leak"
    caplog.set_level(logging.DEBUG)
    fault_server.set_faults(
        script=["429:0", "503", "drop", "drop", "drop", "drop", "drop", "drop", "drop", "drop"]
    )
    failures: list[BaseException] = []
    delivered: list[object] = []
    client = Client(
        api_key=secret, base_url=fault_server.base_url, max_retries=1, sleep=lambda s: None,
        delivery_timeout=0.05, on_error=lambda events, exc: delivered.append(exc),
    )  # fmt: skip
    for call in (
        client.end_users.list,
        client.end_users.list,
        lambda: client.subscriptions.retrieve("x"),
    ):
        try:
            call()
        except BearLumenError as exc:
            failures.append(exc)
    client.usage.record("t", "m", 1)
    client.flush(timeout=10)
    client.close()
    texts = [repr(client), str(client.stats())]
    for exc in failures + delivered:  # type: ignore[operator]
        texts += [
            str(exc),
            repr(exc),
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        ]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert failures and len(caplog.records) > 3
    assert not [t for t in texts if secret in t or "TOPSECRET" in t]


def test_an_id_of_a_slash_is_not_found_not_an_empty_answer(client: bearlumen.Client) -> None:
    # Sent as %2F; a server that redirected "//" to the list route once made this return None.
    with pytest.raises(bearlumen.NotFoundError):
        client.subscriptions.retrieve("/")
    with pytest.raises(bearlumen.NotFoundError):
        client.end_users.update("/", name="x")


def test_a_redirect_is_an_error_never_an_empty_result(
    fault_server: LocalServer, api_key: str
) -> None:
    # A misconfigured proxy in front of the API answers 307: the server's fault plays it.
    fault_server.set_faults(script=["307"])
    with bearlumen.Client(api_key=api_key, base_url=fault_server.base_url) as client:
        with pytest.raises(bearlumen.BearLumenError, match="307") as caught:
            client.usage.summary()
        assert client.usage.summary()["totalEvents"] == 0  # the next call is answered
    assert caught.value.status_code == 307
