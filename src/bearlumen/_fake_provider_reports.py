"""The fake provider's usage and cost reports, computed from the calls it actually answered.

The providers' own reports, in the formats they document, so that reconciliation
(`bearlumen reconcile`, docs/reconcile.md) runs offline against `FakeLLMProvider`:

* OpenAI's organization Usage API, `GET /v1/organization/usage/completions` and
  `/v1/organization/usage/embeddings` (`start_time`/`end_time` in unix seconds, `bucket_width=1d`,
  `group_by=model`, `limit`, `page`), and its Costs API, `GET /v1/organization/costs`
  (`group_by=line_item`: one line item per model and token kind, `"gpt-4o, input"`,
  `"gpt-4o, cached input"`, `"gpt-4o, output"`). Answers are `{"object": "page", "data":
  [buckets], "has_more", "next_page"}`; authentication is `Authorization: Bearer <admin key>`.
* Anthropic's Admin API, `GET /v1/organizations/usage_report/messages` (`starting_at`/`ending_at`
  in RFC 3339, `bucket_width=1d`, `group_by[]=model`, `limit`, `page`) and
  `GET /v1/organizations/cost_report` (`group_by[]=description`: one item per model and
  `token_type`, `amount` a decimal string in cents). Answers are `{"data": [buckets], "has_more",
  "next_page"}`; authentication is `x-api-key: <admin key>`.

Buckets are UTC days, each from 00:00 to the next 00:00, from the day of the start to the day of
the end (exclusive), never past today. Only calls made to the provider's own API are in its
reports: a call through Azure, Bedrock or Vertex is billed by that platform, not by OpenAI or
Anthropic. The fake prices each call as genai-prices does (or at `reports.prices.set_price(...)`);
a model it cannot price costs `UNKNOWN_MODEL_PRICE` (USD per million input / output tokens),
because the real provider bills every model.

Like the real APIs, the reports need an admin key (`OPENAI_ADMIN_KEY` / `ANTHROPIC_ADMIN_KEY`
below, or `reports.admin_keys[...] = ...`): any other key is answered 403 by OpenAI's and 401 by
Anthropic's, with the provider's error body. `reports.rate_limit_next(retry_after=...)` answers
the next report request 429 with `Retry-After`; `reports.page_size` caps the buckets per page so
that paging is exercised.

    reports = provider_reports(fake)        # the ledger of one FakeLLMProvider
    reports.page_size = 2
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
import weakref
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from ._llm._pricing import Pricer

OPENAI_ADMIN_KEY = "sk-admin-fake-provider"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-fake-provider"
UNKNOWN_MODEL_PRICE = (1.0, 4.0)  # USD per million input / output tokens
DAY = 86_400

# (provider, the page's most buckets, the most `limit` may ask for): each API's documented limits
# for `bucket_width=1d`.
_DEFAULT_LIMIT = 7
_MAX_LIMIT = {"usage": 31, "openai_costs": 180, "anthropic_costs": 31}

Answer = Tuple[int, Dict[str, str], bytes]


@dataclasses.dataclass(frozen=True)
class AnsweredCall:
    """One call the fake answered, as the provider's reports count it."""

    provider: str  # "openai" or "anthropic": whose API was called
    platform: Optional[str]  # "azure", "bedrock", "vertex" when a platform's path was called
    model: str
    at: float  # unix seconds
    input_tokens: int  # ALL input, cache reads and writes included
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int


class ProviderReports:
    """The calls one fake provider answered, and the reports computed from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every call and setting: a fresh ledger (for a fake shared by several tests)."""
        self.calls: List[AnsweredCall] = []
        self.admin_keys = {"openai": OPENAI_ADMIN_KEY, "anthropic": ANTHROPIC_ADMIN_KEY}
        self.page_size: Optional[int] = None  # caps `limit`, to exercise paging
        self.clock: Callable[[], float] = time.time  # when a call is answered; "now" of reports
        self.requests = 0  # report requests served, 429s included
        self.prices = Pricer()  # what the provider bills: `reports.prices.set_price(...)`
        self._rate_limits: List[float] = []

    def rate_limit_next(self, retry_after: float = 1.0, times: int = 1) -> None:
        """Answer the next `times` report requests 429 with this `Retry-After` (seconds)."""
        with self._lock:
            self._rate_limits.extend([retry_after] * times)

    def record(self, path: str, body: Mapping[str, Any], usage: Any) -> None:
        """Remember one answered call (`path` as requested, `body` with the model in it)."""
        platform = _platform_of(path)
        provider = "openai" if "/chat/completions" in path or "responses" in path else "anthropic"
        call = AnsweredCall(
            provider=provider,
            platform=platform,
            model=str(body.get("model") or ""),
            at=self.clock(),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
        )
        with self._lock:
            self.calls.append(call)

    # -- pricing ---------------------------------------------------------------------------

    def cost_parts(self, call: AnsweredCall) -> Dict[str, float]:
        """USD by token kind: `input` (uncached), `cached_input`, `cache_write_5m`,
        `cache_write_1h`, `output`. They add up to the call's price."""

        def price(i: int = 0, o: int = 0, cr: int = 0, cw: int = 0, cw1h: int = 0) -> float:
            cost, _ = self.prices.price(call.provider, call.model, i, o, cr, cw, cw1h)
            if cost is None:
                per_input, per_output = UNKNOWN_MODEL_PRICE
                return (i * per_input + o * per_output) / 1_000_000
            return cost

        base = price()
        parts = {
            "cached_input": price(call.cache_read_tokens, cr=call.cache_read_tokens) - base,
            "cache_write_5m": price(
                call.cache_write_tokens - call.cache_write_1h_tokens,
                cw=call.cache_write_tokens - call.cache_write_1h_tokens,
            )
            - base,
            "cache_write_1h": price(
                call.cache_write_1h_tokens,
                cw=call.cache_write_1h_tokens,
                cw1h=call.cache_write_1h_tokens,
            )
            - base,
            "output": price(o=call.output_tokens) - base,
        }
        total = price(
            call.input_tokens,
            call.output_tokens,
            call.cache_read_tokens,
            call.cache_write_tokens,
            call.cache_write_1h_tokens,
        )
        parts["input"] = total - sum(parts.values())
        return parts

    # -- answering -------------------------------------------------------------------------

    def answer(
        self, path: str, query: Iterable[Tuple[str, str]], headers: Mapping[str, str]
    ) -> Answer:
        """(status, headers, body) of one report request: the whole endpoint, no I/O."""
        endpoint = _ENDPOINTS.get(path)
        if endpoint is None:
            return 404, {}, b'{"error": {"message": "not found"}}'
        provider, build = endpoint
        with self._lock:
            self.requests += 1
            retry_after = self._rate_limits.pop(0) if self._rate_limits else None
            calls = [c for c in self.calls if c.provider == provider and c.platform is None]
        if retry_after is not None:
            return _error(provider, 429, "rate_limit_error", "Rate limit reached for requests",
                          {"retry-after": _seconds(retry_after)})  # fmt: skip
        denied = self._check_key(provider, headers)
        if denied is not None:
            return denied
        params: Dict[str, List[str]] = defaultdict(list)
        for name, value in query:
            params[name.replace("[]", "")].append(value)
        try:
            body = build(self, calls, params)
        except _BadRequest as exc:
            return _error(provider, 400, "invalid_request_error", str(exc))
        return 200, {}, json.dumps(body).encode()

    def _check_key(self, provider: str, headers: Mapping[str, str]) -> Optional[Answer]:
        if provider == "openai":
            authorization = headers.get("authorization", "")
            key = authorization[7:] if authorization.startswith("Bearer ") else ""
        else:
            key = headers.get("x-api-key", "")
        if key == self.admin_keys[provider]:
            return None
        if not key:
            return _error(provider, 401, "authentication_error", "No API key provided.")
        if provider == "openai":  # a valid project key without the organization's scopes
            return _error(
                provider,
                403,
                "invalid_request_error",
                "You have insufficient permissions for this operation. Missing scopes:"
                " api.usage.read. Check that you have the correct role in your organization,"
                " and if you're using a restricted API key, that it has the necessary scopes.",
            )
        return _error(provider, 401, "authentication_error", "invalid x-api-key")

    # -- the reports ---------------------------------------------------------------------

    def _buckets(
        self, params: Dict[str, List[str]], start: float, end: Optional[float], max_limit: int
    ) -> Tuple[List[int], Optional[str]]:
        """(this page's bucket starts, the next_page token or None on the last page)."""
        now = self.clock()
        first = int(start) // DAY * DAY
        if first > now:
            raise _BadRequest("start time is in the future: no usage to report")
        if end is not None and end <= start:
            raise _BadRequest("end time must be after start time")
        if params.get("bucket_width", ["1d"])[0] != "1d":
            raise _BadRequest("the fake provider reports bucket_width=1d only")
        limit = _int(params, "limit", _DEFAULT_LIMIT)
        if not 1 <= limit <= max_limit:
            raise _BadRequest(f"limit must be from 1 to {max_limit}")
        if self.page_size is not None:
            limit = min(limit, self.page_size)
        # Days from the start's to the end's (a day begun is reported), never past today's.
        last = min(end if end is not None else now, now)
        stop = max(first + DAY, -(-int(last) // DAY) * DAY)
        starts = list(range(first, stop, DAY))
        offset = _page_offset(params)
        more = offset + limit < len(starts)
        return starts[offset : offset + limit], _page_token(offset + limit) if more else None


def _per_day(
    calls: List[AnsweredCall], page: List[int], by_model: bool
) -> Iterator[Tuple[int, List[Tuple[Optional[str], List[AnsweredCall]]]]]:
    """(day, [(model or None when not grouped, its calls)]) for each bucket of the page."""
    for day in page:
        groups: Dict[Optional[str], List[AnsweredCall]] = defaultdict(list)
        for call in calls:
            if day <= call.at < day + DAY:
                groups[call.model if by_model else None].append(call)
        yield day, sorted(groups.items(), key=lambda item: str(item[0]))


def _summed(reports: ProviderReports, group: List[AnsweredCall]) -> Dict[str, float]:
    """The cost parts of a group of calls, added up."""
    total: Dict[str, float] = defaultdict(float)
    for call in group:
        for part, value in reports.cost_parts(call).items():
            total[part] += value
    return total


def _usage_completions(
    reports: ProviderReports, calls: List[AnsweredCall], params: Dict[str, List[str]]
) -> Dict[str, Any]:
    start, end = _unix(params, "start_time", required=True), _unix(params, "end_time")
    page, next_page = reports._buckets(params, start, end, _MAX_LIMIT["usage"])
    data = []
    for day, groups in _per_day(calls, page, "model" in params.get("group_by", [])):
        results = [
            {
                "object": "organization.usage.completions.result",
                "input_tokens": sum(c.input_tokens for c in group),
                "output_tokens": sum(c.output_tokens for c in group),
                "input_cached_tokens": sum(c.cache_read_tokens for c in group),
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": len(group),
                "project_id": None,
                "user_id": None,
                "api_key_id": None,
                "model": model,
                "batch": None,
            }
            for model, group in groups
        ]
        data.append(_openai_bucket(day, results))
    return _openai_page(data, next_page)


def _usage_embeddings(
    reports: ProviderReports, calls: List[AnsweredCall], params: Dict[str, List[str]]
) -> Dict[str, Any]:
    # The fake answers no embeddings requests: every bucket is empty.
    start, end = _unix(params, "start_time", required=True), _unix(params, "end_time")
    page, next_page = reports._buckets(params, start, end, _MAX_LIMIT["usage"])
    return _openai_page([_openai_bucket(day, []) for day in page], next_page)


def _openai_costs(
    reports: ProviderReports, calls: List[AnsweredCall], params: Dict[str, List[str]]
) -> Dict[str, Any]:
    start, end = _unix(params, "start_time", required=True), _unix(params, "end_time")
    page, next_page = reports._buckets(params, start, end, _MAX_LIMIT["openai_costs"])
    data = []
    for day, groups in _per_day(calls, page, "line_item" in params.get("group_by", [])):
        amounts: List[Tuple[Optional[str], float]] = []
        for model, group in groups:
            parts = _summed(reports, group)
            if model is None:
                amounts.append((None, sum(parts.values())))
                continue
            # OpenAI bills cache writes as input.
            writes = parts["cache_write_5m"] + parts["cache_write_1h"]
            amounts.append((f"{model}, cached input", parts["cached_input"]))
            amounts.append((f"{model}, input", parts["input"] + writes))
            amounts.append((f"{model}, output", parts["output"]))
        results = [
            {
                "object": "organization.costs.result",
                "amount": {"value": round(value, 10), "currency": "usd"},
                "line_item": line_item,
                "project_id": None,
            }
            for line_item, value in amounts
        ]
        data.append(_openai_bucket(day, results))
    return _openai_page(data, next_page)


def _anthropic_usage(
    reports: ProviderReports, calls: List[AnsweredCall], params: Dict[str, List[str]]
) -> Dict[str, Any]:
    start, end = _rfc3339(params, "starting_at", required=True), _rfc3339(params, "ending_at")
    page, next_page = reports._buckets(params, start, end, _MAX_LIMIT["usage"])
    data = []
    for day, groups in _per_day(calls, page, "model" in params.get("group_by", [])):
        results = [
            {
                # Anthropic's input leaves out cache reads and writes: each is counted apart.
                "uncached_input_tokens": sum(
                    c.input_tokens - c.cache_read_tokens - c.cache_write_tokens for c in group
                ),
                "cache_creation": {
                    "ephemeral_1h_input_tokens": sum(c.cache_write_1h_tokens for c in group),
                    "ephemeral_5m_input_tokens": sum(
                        c.cache_write_tokens - c.cache_write_1h_tokens for c in group
                    ),
                },
                "cache_read_input_tokens": sum(c.cache_read_tokens for c in group),
                "output_tokens": sum(c.output_tokens for c in group),
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": None,
                "workspace_id": None,
                "model": model,
                "service_tier": None,
                "context_window": None,
            }
            for model, group in groups
        ]
        data.append(_anthropic_bucket(day, results))
    return _anthropic_page(data, next_page)


# token_type -> (the cost part, the words of the item's description)
_ANTHROPIC_TOKEN_TYPES = {
    "uncached_input_tokens": ("input", "Input Tokens"),
    "cache_read_input_tokens": ("cached_input", "Cache Read Input Tokens"),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_write_5m", "5m Cache Write Input Tokens"),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_write_1h", "1h Cache Write Input Tokens"),
    "output_tokens": ("output", "Output Tokens"),
}


def _anthropic_costs(
    reports: ProviderReports, calls: List[AnsweredCall], params: Dict[str, List[str]]
) -> Dict[str, Any]:
    start, end = _rfc3339(params, "starting_at", required=True), _rfc3339(params, "ending_at")
    page, next_page = reports._buckets(params, start, end, _MAX_LIMIT["anthropic_costs"])
    data = []
    for day, groups in _per_day(calls, page, "description" in params.get("group_by", [])):
        results = []
        for model, group in groups:
            parts = _summed(reports, group)
            kinds = _ANTHROPIC_TOKEN_TYPES.items() if model else [(None, ("", ""))]
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
        data.append(_anthropic_bucket(day, results))
    return _anthropic_page(data, next_page)


_ENDPOINTS: Dict[str, Tuple[str, Callable[..., Dict[str, Any]]]] = {
    "/v1/organization/usage/completions": ("openai", _usage_completions),
    "/v1/organization/usage/embeddings": ("openai", _usage_embeddings),
    "/v1/organization/costs": ("openai", _openai_costs),
    "/v1/organizations/usage_report/messages": ("anthropic", _anthropic_usage),
    "/v1/organizations/cost_report": ("anthropic", _anthropic_costs),
}


# -- small pieces ------------------------------------------------------------------------------


class _BadRequest(ValueError):
    pass


def _openai_bucket(day: int, results: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"object": "bucket", "start_time": day, "end_time": day + DAY, "results": results}


def _openai_page(data: List[Dict[str, Any]], next_page: Optional[str]) -> Dict[str, Any]:
    return {
        "object": "page",
        "data": data,
        "has_more": next_page is not None,
        "next_page": next_page,
    }


def _anthropic_page(data: List[Dict[str, Any]], next_page: Optional[str]) -> Dict[str, Any]:
    return {"data": data, "has_more": next_page is not None, "next_page": next_page}


def _anthropic_bucket(day: int, results: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"starting_at": _iso(day), "ending_at": _iso(day + DAY), "results": results}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(params: Dict[str, List[str]], name: str, default: int) -> int:
    try:
        return int(params[name][0]) if name in params else default
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None


def _unix(params: Dict[str, List[str]], name: str, required: bool = False) -> Any:
    if name not in params:
        if required:
            raise _BadRequest(f"{name} is required")
        return None
    return float(_int(params, name, 0))


def _rfc3339(params: Dict[str, List[str]], name: str, required: bool = False) -> Any:
    if name not in params:
        if required:
            raise _BadRequest(f"{name} is required")
        return None
    text = params[name][0]
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise _BadRequest(f"{name} must be an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _page_token(offset: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"bucket:{offset}".encode()).decode()


def _page_offset(params: Dict[str, List[str]]) -> int:
    token = params.get("page", [""])[0]
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token[5:]).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        raise _BadRequest("page is not a next_page token of this report") from None


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _platform_of(path: str) -> Optional[str]:
    if path.startswith("/openai"):
        return "azure"
    if path.startswith("/projects/"):
        return "vertex"
    if path.startswith("/model/"):
        return "bedrock"
    return None


def _error(
    provider: str, status: int, kind: str, message: str, headers: Optional[Dict[str, str]] = None
) -> Answer:
    if provider == "openai":
        body: Dict[str, Any] = {
            "error": {"message": message, "type": kind, "param": None, "code": None}
        }
    else:
        body = {"type": "error", "error": {"type": kind, "message": message}}
    return status, headers or {}, json.dumps(body).encode()


# -- the hooks in _fake_provider -----------------------------------------------------------

_reports: weakref.WeakKeyDictionary[Any, ProviderReports] = weakref.WeakKeyDictionary()
_reports_lock = threading.Lock()


def provider_reports(fake: Any) -> ProviderReports:
    """The reports of one `FakeLLMProvider` (made on first use)."""
    with _reports_lock:
        reports = _reports.get(fake)
        if reports is None:
            reports = _reports[fake] = ProviderReports()
        return reports


def record_answered_call(fake: Any, path: str, body: Mapping[str, Any], usage: Any) -> None:
    provider_reports(fake).record(path, body, usage)


def reports_route(fake: Any) -> Any:
    """The Starlette endpoint answering the report requests (GET) of one fake provider."""
    from starlette.requests import Request
    from starlette.responses import Response

    async def endpoint(request: Request) -> Response:
        status, headers, content = provider_reports(fake).answer(
            request.url.path, request.query_params.multi_items(), request.headers
        )
        return Response(content, status, headers=headers, media_type="application/json")

    return endpoint


__all__ = [
    "ANTHROPIC_ADMIN_KEY",
    "OPENAI_ADMIN_KEY",
    "AnsweredCall",
    "ProviderReports",
    "provider_reports",
    "record_answered_call",
    "reports_route",
]
