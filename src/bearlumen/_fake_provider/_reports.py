"""The fake provider's usage and cost reports, computed from the calls it actually answered.

The providers' own reports, in the formats they document (`_openai_reports`,
`_anthropic_reports`), so that reconciliation (`bearlumen reconcile`, docs/reconcile.md) runs
offline against `FakeLLMProvider`.

Only calls made to the provider's own API are in its reports: a call through Azure, Bedrock or
Vertex is billed by that platform, not by OpenAI or Anthropic. The fake prices each call as
genai-prices does (or at `reports.prices.set_price(...)`); a model it cannot price costs
`UNKNOWN_MODEL_PRICE` (USD per million input / output tokens), because the real provider bills
every model.

Like the real APIs, the reports need an admin key (`OPENAI_ADMIN_KEY` / `ANTHROPIC_ADMIN_KEY`,
or `reports.admin_keys[...] = ...`): any other key is answered 403 by OpenAI's and 401 by
Anthropic's, with the provider's error body. `reports.rate_limit_next(retry_after=...)` answers
the next report request 429 with `Retry-After`; `reports.page_size` caps the buckets per page so
that paging is exercised.

    reports = provider_reports(fake)        # the ledger of one FakeLLMProvider
    reports.page_size = 2
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .._llm._pricing import Pricer
from ._anthropic_reports import ANTHROPIC_ADMIN_KEY
from ._anthropic_reports import ENDPOINTS as _ANTHROPIC_ENDPOINTS
from ._openai_reports import ENDPOINTS as _OPENAI_ENDPOINTS
from ._openai_reports import OPENAI_ADMIN_KEY
from ._report_pages import (
    DAY,
    UNKNOWN_MODEL_PRICE,
    AnsweredCall,
    BadRequest,
    Dialect,
    Params,
    report_body,
)

Answer = Tuple[int, Dict[str, str], bytes]  # (status, headers, body)

_ENDPOINTS = {**_OPENAI_ENDPOINTS, **_ANTHROPIC_ENDPOINTS}


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

    def record(self, provider: str, path: str, body: Mapping[str, Any], usage: Any) -> None:
        """Remember one answered call (`provider` whose API answered it, `path` as requested,
        `body` with the model in it)."""
        platform = _platform_of(path)
        embeddings = path.endswith("/embeddings")  # input tokens only, as its answer says
        call = AnsweredCall(
            provider=provider,
            platform=platform,
            model=str(body.get("model") or ""),
            at=self.clock(),
            input_tokens=usage.input_tokens,
            output_tokens=0 if embeddings else usage.output_tokens,
            cache_read_tokens=0 if embeddings else usage.cache_read_tokens,
            cache_write_tokens=0 if embeddings else usage.cache_write_tokens,
            cache_write_1h_tokens=0 if embeddings else usage.cache_write_1h_tokens,
            embeddings=embeddings,
        )
        with self._lock:
            self.calls.append(call)

    def answer(
        self, path: str, query: Iterable[Tuple[str, str]], headers: Mapping[str, str]
    ) -> Answer:
        """(status, headers, body) of one report request: the whole endpoint, no I/O."""
        report = _ENDPOINTS.get(path)
        if report is None:
            return 404, {}, b'{"error": {"message": "not found"}}'
        dialect = report.dialect
        with self._lock:
            self.requests += 1
            retry_after = self._rate_limits.pop(0) if self._rate_limits else None
            calls = [c for c in self.calls if c.provider == dialect.provider and c.platform is None]
        if retry_after is not None:
            return _error(dialect, 429, "rate_limit_error", "Rate limit reached for requests",
                          {"retry-after": _seconds(retry_after)})  # fmt: skip
        key = dialect.key(headers)
        if key != self.admin_keys[dialect.provider]:
            if not key:
                return _error(dialect, 401, "authentication_error", "No API key provided.")
            return _error(dialect, *dialect.wrong_key)
        params: Params = defaultdict(list)
        for name, value in query:
            params[name.replace("[]", "")].append(value)
        try:
            body = report_body(
                report, calls, params, now=self.clock(), page_size=self.page_size,
                prices=self.prices,
            )  # fmt: skip
        except BadRequest as exc:
            return _error(dialect, 400, "invalid_request_error", str(exc))
        return 200, {}, json.dumps(body).encode()


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
    dialect: Dialect, status: int, kind: str, message: str, headers: Optional[Dict[str, str]] = None
) -> Answer:
    return status, headers or {}, json.dumps(dialect.error(kind, message)).encode()


# -- the hooks of the fake's app ----------------------------------------------------------------

_reports: weakref.WeakKeyDictionary[Any, ProviderReports] = weakref.WeakKeyDictionary()
_reports_lock = threading.Lock()


def provider_reports(fake: Any) -> ProviderReports:
    """The reports of one `FakeLLMProvider` (made on first use)."""
    with _reports_lock:
        reports = _reports.get(fake)
        if reports is None:
            reports = _reports[fake] = ProviderReports()
        return reports


def record_answered_call(
    fake: Any, provider: str, path: str, body: Mapping[str, Any], usage: Any
) -> None:
    provider_reports(fake).record(provider, path, body, usage)


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
    "DAY",
    "OPENAI_ADMIN_KEY",
    "UNKNOWN_MODEL_PRICE",
    "AnsweredCall",
    "ProviderReports",
    "provider_reports",
    "record_answered_call",
    "reports_route",
]
