"""OpenAI's organization Usage API and Costs API, as the fake provider answers them.

`GET /v1/organization/usage/completions` and `/v1/organization/usage/embeddings` (`start_time` /
`end_time` in unix seconds, `bucket_width=1d`, `group_by=model`, `limit`, `page`), and
`GET /v1/organization/costs` (`group_by=line_item`: one line item per model and token kind,
`"gpt-4o, input"`, `"gpt-4o, cached input"`, `"gpt-4o, output"`). Answers are `{"object":
"page", "data": [buckets], "has_more", "next_page"}`; authentication is `Authorization: Bearer
<admin key>`, and a key without the organization's scopes is answered 403.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from .._llm._pricing import Pricer
from ._report_pages import DAY, AnsweredCall, Dialect, Params, Report, int_param, summed_cost

OPENAI_ADMIN_KEY = "sk-admin-fake-provider"


class _OpenAI(Dialect):
    provider = "openai"
    start, end = "start_time", "end_time"
    # A valid project key without the organization's scopes.
    wrong_key = (
        403,
        "invalid_request_error",
        "You have insufficient permissions for this operation. Missing scopes: api.usage.read."
        " Check that you have the correct role in your organization, and if you're using a"
        " restricted API key, that it has the necessary scopes.",
    )

    def read_time(self, params: Params, name: str) -> Optional[float]:
        return float(int_param(params, name, 0)) if name in params else None

    def bucket(self, day: int, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"object": "bucket", "start_time": day, "end_time": day + DAY, "results": results}

    def page(self, data: List[Dict[str, Any]], next_page: Optional[str]) -> Dict[str, Any]:
        return {
            "object": "page",
            "data": data,
            "has_more": next_page is not None,
            "next_page": next_page,
        }

    def error(self, kind: str, message: str) -> Dict[str, Any]:
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def key(self, headers: Mapping[str, str]) -> str:
        authorization = headers.get("authorization", "")
        return authorization[7:] if authorization.startswith("Bearer ") else ""


OPENAI = _OpenAI()


def _completions(
    model: Optional[str], calls: List[AnsweredCall], prices: Pricer
) -> List[Dict[str, Any]]:
    calls = [call for call in calls if not call.embeddings]
    if not calls:
        return []
    return [
        {
            "object": "organization.usage.completions.result",
            "input_tokens": sum(c.input_tokens for c in calls),
            "output_tokens": sum(c.output_tokens for c in calls),
            "input_cached_tokens": sum(c.cache_read_tokens for c in calls),
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": len(calls),
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": model,
            "batch": None,
        }
    ]


def _embeddings(
    model: Optional[str], calls: List[AnsweredCall], prices: Pricer
) -> List[Dict[str, Any]]:
    calls = [call for call in calls if call.embeddings]
    if not calls:
        return []
    return [
        {
            "object": "organization.usage.embeddings.result",
            "input_tokens": sum(c.input_tokens for c in calls),
            "num_model_requests": len(calls),
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": model,
        }
    ]


def _costs(model: Optional[str], calls: List[AnsweredCall], prices: Pricer) -> List[Dict[str, Any]]:
    parts = summed_cost(prices, calls)
    amounts: List[Tuple[Optional[str], float]]
    if model is None:
        amounts = [(None, sum(parts.values()))]
    else:
        writes = parts["cache_write_5m"] + parts["cache_write_1h"]  # billed as input
        amounts = [
            (f"{model}, cached input", parts["cached_input"]),
            (f"{model}, input", parts["input"] + writes),
            (f"{model}, output", parts["output"]),
        ]
    return [
        {
            "object": "organization.costs.result",
            "amount": {"value": round(value, 10), "currency": "usd"},
            "line_item": line_item,
            "project_id": None,
        }
        for line_item, value in amounts
    ]


ENDPOINTS = {
    "/v1/organization/usage/completions": Report(OPENAI, 31, "model", _completions),
    "/v1/organization/usage/embeddings": Report(OPENAI, 31, "model", _embeddings),
    "/v1/organization/costs": Report(OPENAI, 180, "line_item", _costs),
}
