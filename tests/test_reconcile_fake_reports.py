"""The fake provider's usage and cost reports (`bearlumen._fake_provider`): computed from
the calls it answered, in the formats OpenAI and Anthropic document, behind an admin key."""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import openai
import pytest

from bearlumen._fake_provider import (
    ANTHROPIC_ADMIN_KEY,
    DAY,
    OPENAI_ADMIN_KEY,
    ProviderReports,
    provider_reports,
)
from bearlumen.testing import FakeLLMProvider

MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(input_tokens=1000, output_tokens=200, cache_read_tokens=300) as provider:
        yield provider


@pytest.fixture
def reports(fake: FakeLLMProvider) -> ProviderReports:
    return provider_reports(fake)


def chat(fake: FakeLLMProvider, model: str) -> None:
    oai = openai.OpenAI(api_key="sk-proj-calls", base_url=fake.openai_base_url, max_retries=0)
    oai.chat.completions.create(model=model, messages=MESSAGES)


def get(fake: FakeLLMProvider, path: str, key: str, **params: Any) -> httpx.Response:
    headers = {"x-api-key": key} if "organizations/" in path else {"Authorization": f"Bearer {key}"}
    return httpx.get(fake.base_url + path, params=params, headers=headers)


def test_the_fake_serves_the_documented_report_formats(
    fake: FakeLLMProvider, reports: ProviderReports
) -> None:
    reports.prices.set_price("openai", "house-gpt", input_per_mtok=2.0, output_per_mtok=8.0)
    chat(fake, "house-gpt")
    day = int(time.time()) // DAY * DAY
    bearer = {"Authorization": f"Bearer {OPENAI_ADMIN_KEY}"}
    usage = httpx.get(
        f"{fake.openai_base_url}/organization/usage/completions",
        params={"start_time": day, "group_by": "model"}, headers=bearer,
    ).json()  # fmt: skip
    assert usage == {
        "object": "page",
        "data": [
            {"object": "bucket", "start_time": day, "end_time": day + DAY, "results": [
                {"object": "organization.usage.completions.result", "input_tokens": 1000,
                 "output_tokens": 200, "input_cached_tokens": 300, "input_audio_tokens": 0,
                 "output_audio_tokens": 0, "num_model_requests": 1, "project_id": None,
                 "user_id": None, "api_key_id": None, "model": "house-gpt", "batch": None},
            ]},
        ],
        "has_more": False,
        "next_page": None,
    }  # fmt: skip
    costs = httpx.get(
        f"{fake.openai_base_url}/organization/costs",
        params={"start_time": day, "group_by": "line_item"}, headers=bearer,
    ).json()["data"][0]["results"]  # fmt: skip
    assert {c["line_item"]: c["amount"] for c in costs} == {
        "house-gpt, cached input": {"value": pytest.approx(0.0006), "currency": "usd"},
        "house-gpt, input": {"value": pytest.approx(0.0014), "currency": "usd"},
        "house-gpt, output": {"value": pytest.approx(0.0016), "currency": "usd"},
    }


def test_openai_legacy_completions_and_embeddings_are_in_openais_reports(
    fake: FakeLLMProvider, reports: ProviderReports
) -> None:
    oai = openai.OpenAI(api_key="sk-proj-calls", base_url=fake.openai_base_url, max_retries=0)
    oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello")
    oai.embeddings.create(model="text-embedding-3-small", input="Hello")
    day = int(time.time()) // DAY * DAY
    path = "/v1/organization/usage/{}"
    completions = get(fake, path.format("completions"), OPENAI_ADMIN_KEY, start_time=day,
                      group_by="model").json()["data"][0]["results"]  # fmt: skip
    assert [(r["model"], r["input_tokens"], r["output_tokens"]) for r in completions] == [
        ("gpt-3.5-turbo-instruct", 1000, 200)
    ]
    embeddings = get(fake, path.format("embeddings"), OPENAI_ADMIN_KEY, start_time=day,
                     group_by="model").json()["data"][0]["results"]  # fmt: skip
    assert embeddings == [
        {"object": "organization.usage.embeddings.result", "input_tokens": 1000,
         "num_model_requests": 1, "project_id": None, "user_id": None, "api_key_id": None,
         "model": "text-embedding-3-small"},
    ]  # fmt: skip
    # Not Anthropic's: its report has no call (the fake once counted these calls there).
    anthropic_side = get(fake, "/v1/organizations/usage_report/messages", ANTHROPIC_ADMIN_KEY,
                         starting_at=time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime()))  # fmt: skip
    assert anthropic_side.status_code == 200
    assert all(not bucket["results"] for bucket in anthropic_side.json()["data"])


def test_anthropic_reports_count_cache_apart_and_bill_in_cents(
    fake: FakeLLMProvider, reports: ProviderReports
) -> None:
    import anthropic

    reports.prices.set_price("anthropic", "house-claude", input_per_mtok=3.0, output_per_mtok=15.0)
    anthropic.Anthropic(api_key="sk-ant-calls", base_url=fake.anthropic_base_url).messages.create(
        model="house-claude", max_tokens=64, messages=MESSAGES
    )
    today = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
    path = "/v1/organizations/usage_report/messages"
    usage = get(fake, path, ANTHROPIC_ADMIN_KEY, starting_at=today, **{"group_by[]": "model"})
    ((result,),) = [bucket["results"] for bucket in usage.json()["data"]]
    assert result["uncached_input_tokens"] == 700  # 1000 in all, 300 of them read from cache
    assert result["cache_read_input_tokens"] == 300 and result["output_tokens"] == 200
    assert result["cache_creation"] == {
        "ephemeral_1h_input_tokens": 0,
        "ephemeral_5m_input_tokens": 0,
    }
    path = "/v1/organizations/cost_report"
    costs = get(fake, path, ANTHROPIC_ADMIN_KEY, starting_at=today, **{"group_by[]": "description"})
    items = costs.json()["data"][0]["results"]
    assert {i["token_type"]: i["amount"] for i in items} == {  # cents, as decimal strings
        "uncached_input_tokens": "0.21000000",
        "cache_read_input_tokens": "0.09000000",
        "output_tokens": "0.30000000",
    }
    assert {i["description"] for i in items} >= {"house-claude Usage - Output Tokens"}


def test_reports_page_by_buckets_and_answer_429_once_when_told(
    fake: FakeLLMProvider, reports: ProviderReports
) -> None:
    chat(fake, "gpt-4o")
    reports.page_size = 2
    reports.rate_limit_next(retry_after=3)
    start = int(time.time()) // DAY * DAY - 4 * DAY  # five days: pages of 2, 2 and 1
    path = "/v1/organization/usage/completions"
    limited = get(fake, path, OPENAI_ADMIN_KEY, start_time=start)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    pages, page = [], None
    while True:
        params = {"start_time": start, **({"page": page} if page else {})}
        answer = get(fake, path, OPENAI_ADMIN_KEY, **params).json()
        pages.append([bucket["start_time"] for bucket in answer["data"]])
        page = answer["next_page"]
        if not answer["has_more"]:
            break
    assert pages == [[start, start + DAY], [start + 2 * DAY, start + 3 * DAY], [start + 4 * DAY]]
    assert page is None


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/organization/costs", 403, "invalid_request_error"),
        ("/v1/organizations/cost_report", 401, "authentication_error"),
    ],
)
def test_reports_refuse_a_key_that_is_not_the_admin_key(
    fake: FakeLLMProvider, path: str, status: int, error: str
) -> None:
    answer = get(fake, path, "sk-normal-key", start_time=0, starting_at="2026-01-01T00:00:00Z")
    assert answer.status_code == status
    assert answer.json()["error"]["type"] == error
