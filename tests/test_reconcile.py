"""Reconciliation against the fake provider's own reports and the local server's events:
`client.llm.reconcile(...)`, `bearlumen reconcile`, and the fake's report endpoints."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import anthropic
import openai
import pytest

import bearlumen
from bearlumen._cli import main
from bearlumen._fake_provider import (
    ANTHROPIC_ADMIN_KEY,
    DAY,
    OPENAI_ADMIN_KEY,
    ProviderReports,
    provider_reports,
)
from bearlumen._llm import _reconcile
from bearlumen._llm._reconcile import ReconciliationRow, normalize_model
from bearlumen.testing import FakeLLMProvider, LocalServer

from .conftest import RecordingSleep

MESSAGES = [{"role": "user", "content": "Summarise the open tickets."}]


def today() -> str:
    """The UTC day now, read when a test needs it (a run may cross midnight UTC)."""
    return datetime.now(timezone.utc).date().isoformat()


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(input_tokens=1000, output_tokens=200, cache_read_tokens=300) as provider:
        yield provider


@pytest.fixture
def fake(shared_fake: FakeLLMProvider) -> FakeLLMProvider:
    provider_reports(shared_fake).reset()  # each test sees only the calls it made
    return shared_fake


@pytest.fixture
def reports(fake: FakeLLMProvider) -> ProviderReports:
    return provider_reports(fake)


def metered_openai(client: bearlumen.Client, fake: FakeLLMProvider) -> Any:
    return client.llm.instrument(
        openai.OpenAI(api_key="sk-proj-calls", base_url=fake.openai_base_url, max_retries=0)
    )


def metered_anthropic(client: bearlumen.Client, fake: FakeLLMProvider) -> Any:
    return client.llm.instrument(
        anthropic.Anthropic(api_key="sk-ant-calls", base_url=fake.anthropic_base_url)
    )


def chat(oai: Any, model: str, usage: str | None = None) -> None:
    headers = {"x-fake-usage": usage} if usage else {}
    oai.chat.completions.create(model=model, messages=MESSAGES, extra_headers=headers)


def reconciled(
    client: bearlumen.Client, fake: FakeLLMProvider, provider: str = "openai", **options: Any
) -> list[ReconciliationRow]:
    client.flush(timeout=10)
    base_url = fake.openai_base_url if provider == "openai" else fake.anthropic_base_url
    admin_key = OPENAI_ADMIN_KEY if provider == "openai" else ANTHROPIC_ADMIN_KEY
    options.setdefault("start", today())
    options.setdefault("admin_key", admin_key)
    return client.llm.reconcile(provider=provider, provider_base_url=base_url, **options)


def only(rows: list[ReconciliationRow], model: str) -> ReconciliationRow:
    (row,) = [r for r in rows if r.model == model]
    return row


def cli(server: LocalServer, api_key: str, fake: FakeLLMProvider, *args: str) -> tuple[int, str]:
    """`bearlumen reconcile --provider openai --json ...` in this process: (status, stdout)."""
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(
            ["reconcile", "--provider", "openai", "--start", today(), "--json",
             "--provider-base-url", fake.openai_base_url, "--base-url", server.base_url,
             "--api-key", api_key, *args]
        )  # fmt: skip
    return status, stdout.getvalue()


# -- coverage --------------------------------------------------------------------------------


def test_every_call_instrumented_covers_every_row_fully(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    oai, claude = metered_openai(client, fake), metered_anthropic(client, fake)
    chat(oai, "gpt-4o")
    chat(oai, "gpt-4o-2024-08-06")  # a dated snapshot: the same model's row
    oai.responses.create(model="gpt-4o-mini", input="Research the market.")
    with oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as s:
        for _ in s:
            pass
    claude.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES) as s:
        s.until_done()

    rows = reconciled(client, fake)
    assert [(r.model, r.provider_requests, r.metered_requests) for r in rows] == [
        ("gpt-4o", 2, 2),
        ("gpt-4o-mini", 2, 2),
    ]
    assert only(rows, "gpt-4o").models == ("gpt-4o", "gpt-4o-2024-08-06")
    claude_rows = reconciled(client, fake, "anthropic")
    assert [r.model for r in claude_rows] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    for row in rows + claude_rows:
        assert row.coverage == row.token_coverage == row.cost_coverage == 1.0
        assert row.drift_usd == 0.0 and row.unpriced_events == 0
        assert row.provider_cost_usd and row.provider_cost_usd > 0
        assert row.day == today() and row.partial_day
        assert not row.below(0.99)


def test_an_uninstrumented_call_is_the_exact_shortfall_and_the_command_exits_1(
    server: LocalServer, api_key: str, client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    oai = metered_openai(client, fake)
    chat(oai, "gpt-4o", "input_tokens=1000,output_tokens=200,cache_read_tokens=300")
    chat(oai, "gpt-4o", "input_tokens=1000,output_tokens=200,cache_read_tokens=300")
    plain = openai.OpenAI(api_key="sk-proj-calls", base_url=fake.openai_base_url)
    chat(plain, "gpt-4o", "input_tokens=700,output_tokens=50,cache_read_tokens=0")
    client.flush(timeout=10)

    status, stdout = cli(server, api_key, fake, "--admin-key", OPENAI_ADMIN_KEY)
    assert status == 1
    (row,) = json.loads(stdout)["rows"]
    assert row["provider_input_tokens"] - row["metered_input_tokens"] == 700
    assert row["provider_output_tokens"] - row["metered_output_tokens"] == 50
    assert (row["provider_requests"], row["metered_requests"]) == (3, 2)
    missed_cost = client.llm._pricer.quote("openai", "gpt-4o", 700, 50, 0, 0)[0]
    assert row["provider_cost_usd"] - row["metered_cost_usd"] == pytest.approx(missed_cost)
    assert row["drift_usd"] == pytest.approx(missed_cost)
    assert row["coverage"] == pytest.approx(
        min(2400 / 3150, 1 - missed_cost / row["provider_cost_usd"])
    )
    # The same range with a bar it clears exits 0.
    assert (
        cli(server, api_key, fake, "--admin-key", OPENAI_ADMIN_KEY, "--min-coverage", "0.5")[0] == 0
    )


def test_an_abandoned_stream_shows_as_unpriced_and_short(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    oai = metered_openai(client, fake)
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()  # the user left: the provider billed the whole call, its usage never came

    (row,) = reconciled(client, fake)
    assert (row.partial_events, row.unpriced_events, row.unpriced_models) == (1, 1, ("gpt-4o",))
    assert row.provider_input_tokens == 1000 and row.metered_input_tokens == 0
    assert row.coverage == 0.0 and row.below(0.99)


def test_an_unpriced_model_is_counted_named_and_short_on_cost(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    chat(metered_openai(client, fake), "acme-house-model-1")

    (row,) = reconciled(client, fake)
    assert (row.unpriced_events, row.unpriced_models) == (1, ("acme-house-model-1",))
    assert row.token_coverage == 1.0  # every token metered ...
    assert row.cost_coverage == 0.0 and row.coverage == 0.0  # ... none of it priced
    assert row.drift_usd == row.provider_cost_usd == pytest.approx((1000 * 1.0 + 200 * 4.0) / 1e6)


# -- the reports as the providers document them ------------------------------------------------


def test_hand_checked_rows_match_the_providers_documented_formulas(
    client: bearlumen.Client, fake: FakeLLMProvider, reports: ProviderReports
) -> None:
    """OpenAI: `input_tokens` includes `input_cached_tokens`; the cost's line items are the
    uncached input, the cached input and the output at their prices. Anthropic: input is
    `uncached_input_tokens` + `cache_read_input_tokens` + `cache_creation.*`, and the cost
    report's `amount` is a decimal string of cents."""
    prices = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "cache_read_per_mtok": 0.5}
    client.llm.set_price("openai", "house-gpt", **prices)
    reports.prices.set_price("openai", "house-gpt", **prices)
    oai = metered_openai(client, fake)
    chat(oai, "house-gpt", "input_tokens=1000,output_tokens=100,cache_read_tokens=400")
    chat(oai, "house-gpt", "input_tokens=3000,output_tokens=500,cache_read_tokens=0")

    (row,) = reconciled(client, fake)
    assert (row.provider_input_tokens, row.provider_cached_input_tokens) == (4000, 400)
    assert (row.provider_output_tokens, row.provider_requests) == (600, 2)
    # (4000 - 400) x $2/M + 400 x $0.5/M + 600 x $8/M
    assert row.provider_cost_usd == pytest.approx(0.0072 + 0.0002 + 0.0048)
    assert row.metered_cost_usd == pytest.approx(0.0122) and row.coverage == 1.0

    claude_prices = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3}
    claude_prices["cache_write_per_mtok"] = 3.75
    client.llm.set_price("anthropic", "house-claude", **claude_prices)
    reports.prices.set_price("anthropic", "house-claude", **claude_prices)
    metered_anthropic(client, fake).messages.create(
        model="house-claude", max_tokens=64, messages=MESSAGES,
        extra_headers={"x-fake-usage": "input_tokens=1000,output_tokens=50,cache_read_tokens=200,cache_write_tokens=100"},
    )  # fmt: skip
    (row,) = reconciled(client, fake, "anthropic")
    assert (row.provider_input_tokens, row.provider_cached_input_tokens) == (1000, 200)
    assert row.provider_requests is None  # Anthropic's usage report counts no requests
    # 700 x $3/M + 200 x $0.3/M + 100 x $3.75/M + 50 x $15/M
    assert row.provider_cost_usd == pytest.approx(0.0021 + 0.00006 + 0.000375 + 0.00075)
    assert row.coverage == 1.0


# -- paging, rate limits, keys, ranges ------------------------------------------------------


def test_pages_of_both_reports_and_of_the_events_are_all_read(
    client: bearlumen.Client,
    fake: FakeLLMProvider,
    reports: ProviderReports,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports.page_size = 1  # one day a page
    monkeypatch.setattr(_reconcile, "EVENTS_PAGE_SIZE", 2)
    oai = metered_openai(client, fake)
    for _ in range(5):
        chat(oai, "gpt-4o")
    four_days_ago = (datetime.now(timezone.utc) - timedelta(days=4)).date().isoformat()
    said: list[str] = []

    (row,) = reconciled(client, fake, start=four_days_ago, progress=said.append)
    assert (row.provider_requests, row.metered_requests, row.coverage) == (5, 5, 1.0)
    for report in ("completions", "embeddings", "costs"):  # five days, one a page
        assert f"openai {report}: page 5" in said and f"openai {report}: page 6" not in said
    assert [m for m in said if m.startswith("metered")] == [
        "metered events: 2 of 5 read", "metered events: 4 of 5 read", "metered events: 5 of 5 read"
    ]  # fmt: skip


def test_a_429_from_a_report_is_retried_after_its_retry_after(
    client: bearlumen.Client,
    fake: FakeLLMProvider,
    reports: ProviderReports,
    recording_sleep: RecordingSleep,
) -> None:
    chat(metered_openai(client, fake), "gpt-4o")
    client.flush(timeout=10)
    reports.rate_limit_next(retry_after=7)

    rows = _reconcile.reconcile(
        client.usage, provider="openai", start=today(), admin_key=OPENAI_ADMIN_KEY,
        provider_base_url=fake.openai_base_url, sleep=recording_sleep,
    )  # fmt: skip
    assert [r.coverage for r in rows] == [1.0]
    assert len(recording_sleep.waits) == 1 and recording_sleep.waits[0] >= 7  # a floor

    reports.rate_limit_next(retry_after=1, times=10)  # more than the retries
    with pytest.raises(bearlumen.RateLimitError, match="Still rate limited after the retries"):
        _reconcile.reconcile(
            client.usage, provider="openai", start=today(), admin_key=OPENAI_ADMIN_KEY,
            provider_base_url=fake.openai_base_url, sleep=recording_sleep,
        )  # fmt: skip


@pytest.mark.parametrize(("provider", "status"), [("openai", 403), ("anthropic", 401)])
def test_a_non_admin_key_is_explained_and_never_shown(
    client: bearlumen.Client, fake: FakeLLMProvider, provider: str, status: int
) -> None:
    with pytest.raises(bearlumen.AuthenticationError) as raised:
        reconciled(client, fake, provider, admin_key="sk-proj-not-an-admin-key")
    message = str(raised.value)
    assert raised.value.status_code == status and raised.value.param == "admin_key"
    assert "need an organization admin key" in message
    assert f"{provider.upper()}_ADMIN_KEY" in message and "--admin-key" in message
    assert "sk-proj-not-an-admin-key" not in message + repr(raised.value)


def test_without_an_admin_key_the_command_names_the_flag_and_the_variable(
    server: LocalServer,
    api_key: str,
    fake: FakeLLMProvider,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    assert cli(server, api_key, fake)[0] == 1
    assert "pass admin_key=... (--admin-key) or set OPENAI_ADMIN_KEY" in capsys.readouterr().err


def test_keys_and_urls_come_from_the_environment_by_default(
    server: LocalServer,
    api_key: str,
    client: bearlumen.Client,
    fake: FakeLLMProvider,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chat(metered_openai(client, fake), "gpt-4o")
    client.flush(timeout=10)
    for name, value in (
        ("OPENAI_ADMIN_KEY", OPENAI_ADMIN_KEY), ("OPENAI_BASE_URL", fake.openai_base_url),
        ("BEARLUMEN_BASE_URL", server.base_url), ("BEARLUMEN_API_KEY", api_key),
    ):  # fmt: skip
        monkeypatch.setenv(name, value)

    assert main(["reconcile", "--provider", "openai", "--start", today(), "--plain"]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o" in out and "100.0%" in out and "partial day" in out
    assert "Every day x model with spend is metered to at least 99.0%." in out


def test_a_range_the_provider_does_not_serve_is_explained(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    with pytest.raises(bearlumen.InvalidRequestError, match="start: is in the future") as raised:
        reconciled(client, fake, start=tomorrow)
    assert raised.value.param == "start"
    with pytest.raises(bearlumen.InvalidRequestError, match="end: must be after start"):
        reconciled(client, fake, start=today(), end=today())
    # What the provider itself refuses is said as its refusal of the range.
    from bearlumen._llm._provider_reports import ReportsClient

    later = datetime.now(timezone.utc) + timedelta(days=3)
    reports_client = ReportsClient("openai", OPENAI_ADMIN_KEY, fake.openai_base_url)
    with pytest.raises(bearlumen.InvalidRequestError, match="does not serve this range"):
        reports_client.report(later, later + timedelta(days=1))
    reports_client.close()


@pytest.mark.parametrize(
    "proxy_url", [b"{}", b'{"data": "not what the API answers"}', b'{"data": [{}]}'], indirect=True
)
def test_a_200_that_is_not_a_report_is_an_error_naming_the_url_never_no_usage(
    client: bearlumen.Client, proxy_url: str
) -> None:
    # A proxy or another API at the provider's URL: read as a report, it would say "no usage"
    # and every metered call would look like an overcount.
    with pytest.raises(bearlumen.BearLumenError, match="not a usage or cost report") as raised:
        client.llm.reconcile(
            provider="openai", start=today(), admin_key=OPENAI_ADMIN_KEY,
            provider_base_url=proxy_url,
        )  # fmt: skip
    assert "--provider-base-url, OPENAI_BASE_URL" in raised.value.message


def test_a_past_day_is_whole_and_today_is_partial(
    client: bearlumen.Client, fake: FakeLLMProvider, reports: ProviderReports
) -> None:
    reports.clock = lambda: time.time() - DAY  # the provider answered this call yesterday
    chat(openai.OpenAI(api_key="sk-proj-calls", base_url=fake.openai_base_url), "gpt-4o")
    reports.clock = time.time
    chat(metered_openai(client, fake), "gpt-4o")
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()

    rows = reconciled(client, fake, start=yesterday)
    assert [(r.day, r.partial_day, r.coverage) for r in rows] == [
        (yesterday, False, 0.0), (today(), True, 1.0)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o", "gpt-4o"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("GPT-4o", "gpt-4o"),
    ],
)
def test_model_names_are_matched_without_their_snapshot_dates(name: str, model: str) -> None:
    assert normalize_model(name) == model


def test_calls_billed_by_a_platform_get_rows_of_their_own_that_never_fail(
    client: bearlumen.Client, fake: FakeLLMProvider
) -> None:
    azure = client.llm.instrument(
        openai.AzureOpenAI(
            api_key="sk-azure", api_version="2024-10-21", base_url=fake.azure_base_url
        )
    )
    chat(azure, "gpt-4o")  # Azure bills it: it is not in OpenAI's own reports
    chat(metered_openai(client, fake), "gpt-4o")

    direct, on_azure = reconciled(client, fake)
    assert (direct.platform, direct.provider_requests, direct.coverage) == (None, 1, 1.0)
    assert (on_azure.platform, on_azure.metered_requests) == ("azure", 1)
    assert on_azure.provider_requests is None and on_azure.provider_cost_usd is None
    assert on_azure.coverage is None and not on_azure.below(0.99)
