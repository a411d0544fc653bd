"""Anthropic's Admin API usage and cost reports, as the fake provider answers them.

`GET /v1/organizations/usage_report/messages` (`starting_at` / `ending_at` in RFC 3339,
`bucket_width=1d`, `group_by[]=model`, `limit`, `page`) and `GET /v1/organizations/cost_report`
(`group_by[]=description`: one item per model and `token_type`, `amount` a decimal string in
cents). Answers are `{"data": [buckets], "has_more", "next_page"}`; authentication is
`x-api-key: <admin key>`, and any other key is answered 401.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from .._llm._pricing import Pricer
from ._report_pages import DAY, AnsweredCall, BadRequest, Dialect, Params, Report, summed_cost

ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-fake-provider"


class _Anthropic(Dialect):
    provider = "anthropic"
    start, end = "starting_at", "ending_at"
    wrong_key = (401, "authentication_error", "invalid x-api-key")

    def read_time(self, params: Params, name: str) -> Optional[float]:
        """An RFC 3339 time; one without a zone is UTC."""
        if name not in params:
            return None
        text = params[name][0]
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise BadRequest(f"{name} must be an RFC 3339 timestamp") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()

    def bucket(self, day: int, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"starting_at": _iso(day), "ending_at": _iso(day + DAY), "results": results}

    def page(self, data: List[Dict[str, Any]], next_page: Optional[str]) -> Dict[str, Any]:
        return {"data": data, "has_more": next_page is not None, "next_page": next_page}

    def error(self, kind: str, message: str) -> Dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": message}}

    def key(self, headers: Mapping[str, str]) -> str:
        return headers.get("x-api-key", "")


ANTHROPIC = _Anthropic()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(model: Optional[str], calls: List[AnsweredCall], prices: Pricer) -> List[Dict[str, Any]]:
    return [
        {
            # Anthropic's input leaves out cache reads and writes: each is counted apart.
            "uncached_input_tokens": sum(
                c.input_tokens - c.cache_read_tokens - c.cache_write_tokens for c in calls
            ),
            "cache_creation": {
                "ephemeral_1h_input_tokens": sum(c.cache_write_1h_tokens for c in calls),
                "ephemeral_5m_input_tokens": sum(
                    c.cache_write_tokens - c.cache_write_1h_tokens for c in calls
                ),
            },
            "cache_read_input_tokens": sum(c.cache_read_tokens for c in calls),
            "output_tokens": sum(c.output_tokens for c in calls),
            "server_tool_use": {"web_search_requests": 0},
            "api_key_id": None,
            "workspace_id": None,
            "model": model,
            "service_tier": None,
            "context_window": None,
        }
    ]


# token_type -> (the cost part, the words of the item's description)
_TOKEN_TYPES = {
    "uncached_input_tokens": ("input", "Input Tokens"),
    "cache_read_input_tokens": ("cached_input", "Cache Read Input Tokens"),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_write_5m", "5m Cache Write Input Tokens"),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_write_1h", "1h Cache Write Input Tokens"),
    "output_tokens": ("output", "Output Tokens"),
}


def _costs(model: Optional[str], calls: List[AnsweredCall], prices: Pricer) -> List[Dict[str, Any]]:
    parts = summed_cost(prices, calls)
    kinds = _TOKEN_TYPES.items() if model else [(None, ("", ""))]
    results = []
    for token_type, (part, words) in kinds:
        cents = (parts[part] if part else sum(parts.values())) * 100
        if not cents:  # a kind of token the day's calls did not use
            continue
        results.append(
            {
                "currency": "USD",
                "amount": f"{cents:.8f}",  # cents, as a decimal string
                "workspace_id": None,
                "description": f"{model} Usage - {words}" if model else None,
                "cost_type": "tokens" if model else None,
                "context_window": "0-200k" if model else None,
                "model": model,
                "service_tier": "standard" if model else None,
                "token_type": token_type,
            }
        )
    return results


ENDPOINTS = {
    "/v1/organizations/usage_report/messages": Report(ANTHROPIC, 31, "model", _usage),
    "/v1/organizations/cost_report": Report(ANTHROPIC, 31, "description", _costs),
}
