"""Read what a provider says it served and billed, per UTC day and model: its own reports.

Plain httpx through the SDK's own `HttpCore` (the same retries, backoff and `Retry-After` floor
as every other call; see `_http.py`), with the provider's authentication instead of ours:

* OpenAI (`Authorization: Bearer <admin key>`, base URL with `/v1` as its SDK takes it):
  `GET /organization/usage/completions` and `/organization/usage/embeddings` with
  `start_time`/`end_time` (unix seconds), `bucket_width=1d`, `group_by=model`; each result's
  `input_tokens` (cached included), `input_cached_tokens`, `output_tokens`,
  `num_model_requests`. `GET /organization/costs` with `group_by=line_item`: `amount.value` in
  USD, the model being the part of `line_item` before its comma (`"gpt-4o-2024-08-06, input"`).
* Anthropic (`x-api-key: <admin key>`, `anthropic-version: 2023-06-01`):
  `GET /v1/organizations/usage_report/messages` with `starting_at`/`ending_at` (RFC 3339),
  `bucket_width=1d`, `group_by[]=model`; each result's `uncached_input_tokens`,
  `cache_read_input_tokens`, `cache_creation.ephemeral_5m_input_tokens` /
  `ephemeral_1h_input_tokens`, `output_tokens` (no request count).
  `GET /v1/organizations/cost_report` with `group_by[]=description`: `amount` is a decimal string
  in cents, the model in `model`.

Every report is paged: `next_page` while `has_more`. Errors are explained for the person who
runs the command: a key without the organization's admin rights, a range not served, a rate
limit that outlasted the retries.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

from .._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from .._errors import (
    AuthenticationError,
    BearLumenError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
)
from .._http import ApiKey, BearerAuth, HttpCore
from ._usage import ANTHROPIC, OPENAI

PUBLIC_BASE_URL = {OPENAI: "https://api.openai.com/v1", ANTHROPIC: "https://api.anthropic.com"}
ADMIN_KEY_ENV = {OPENAI: "OPENAI_ADMIN_KEY", ANTHROPIC: "ANTHROPIC_ADMIN_KEY"}
BASE_URL_ENV = {OPENAI: "OPENAI_BASE_URL", ANTHROPIC: "ANTHROPIC_BASE_URL"}
ANTHROPIC_VERSION = "2023-06-01"
PAGE_LIMIT = 31  # buckets per page: the most both providers serve at bucket_width=1d

# (UTC day "YYYY-MM-DD", model as the provider names it)
DayModel = Tuple[str, str]
Progress = Callable[[str], None]


class ProviderUsage:
    """One day x model as the provider reports it. `input_tokens` is ALL input (cached and
    cache writes included, as OpenAI counts it and as our events do); `requests` is None where
    the provider does not count them (Anthropic)."""

    __slots__ = ("cached_input_tokens", "cost_usd", "input_tokens", "output_tokens", "requests")

    def __init__(self) -> None:
        self.input_tokens = 0
        self.cached_input_tokens = 0
        self.output_tokens = 0
        self.requests: Optional[int] = None
        self.cost_usd = 0.0


class ReportsClient(HttpCore):
    """The provider's usage and cost reports over one pooled httpx client."""

    def __init__(
        self,
        provider: str,
        admin_key: Union[str, ApiKey],
        base_url: str,
        *,
        sleep: Optional[Callable[[float], Any]] = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        self.provider = provider
        key = ApiKey(admin_key)
        del admin_key  # from here on only the redacted ApiKey, in locals too
        super().__init__(
            api_key=key,
            base_url=base_url,
            timeout=DEFAULT_TIMEOUT,
            max_retries=max_retries,
            sleep=sleep,
        )
        if provider == ANTHROPIC:  # Anthropic's Admin API takes the key as x-api-key
            self._auth = BearerAuth(key, header="x-api-key", scheme="")

    def _headers(self, idempotency_key: Optional[str]) -> Dict[str, str]:
        headers = super()._headers(idempotency_key)
        if self.provider == ANTHROPIC:
            headers["anthropic-version"] = ANTHROPIC_VERSION
        return headers

    def __repr__(self) -> str:
        return f"ReportsClient(provider={self.provider!r}, base_url={self.base_url!r})"

    def report(
        self, start: datetime, end: datetime, progress: Optional[Progress] = None
    ) -> Dict[DayModel, ProviderUsage]:
        """Tokens, requests and cost per UTC day and model, from `start` to `end` (exclusive)."""
        figures: Dict[DayModel, ProviderUsage] = {}

        def at(day: str, model: Optional[str]) -> ProviderUsage:
            key = (day, model or "(unnamed)")
            if key not in figures:
                figures[key] = ProviderUsage()
            return figures[key]

        if self.provider == OPENAI:
            window: Dict[str, Any] = {"start_time": _unix(start), "end_time": _unix(end)}
            for kind in ("completions", "embeddings"):
                usage = {**window, "group_by": "model"}
                for day, result in self._pages(f"/organization/usage/{kind}", usage, progress):
                    row = at(day, result.get("model"))
                    row.input_tokens += _int(result, "input_tokens")
                    row.cached_input_tokens += _int(result, "input_cached_tokens")
                    row.output_tokens += _int(result, "output_tokens")
                    row.requests = (row.requests or 0) + _int(result, "num_model_requests")
            costs = {**window, "group_by": "line_item"}
            for day, result in self._pages("/organization/costs", costs, progress):
                line_item = result.get("line_item") or ""
                model = line_item.split(",", 1)[0].strip() or None
                at(day, model).cost_usd += float((result.get("amount") or {}).get("value") or 0)
            return figures
        window = {"starting_at": _rfc3339(start), "ending_at": _rfc3339(end)}
        usage = {**window, "group_by[]": "model"}
        for day, result in self._pages("/v1/organizations/usage_report/messages", usage, progress):
            row = at(day, result.get("model"))
            writes = result.get("cache_creation") or {}
            cache_read = _int(result, "cache_read_input_tokens")
            row.input_tokens += (
                _int(result, "uncached_input_tokens")
                + cache_read
                + _int(writes, "ephemeral_5m_input_tokens")
                + _int(writes, "ephemeral_1h_input_tokens")
            )
            row.cached_input_tokens += cache_read
            row.output_tokens += _int(result, "output_tokens")
        costs = {**window, "group_by[]": "description"}
        for day, result in self._pages("/v1/organizations/cost_report", costs, progress):
            model = result.get("model") or result.get("description")
            at(day, model).cost_usd += float(result.get("amount") or 0) / 100  # cents
        return figures

    def _pages(
        self, path: str, params: Dict[str, Any], progress: Optional[Progress]
    ) -> Iterator[Tuple[str, Dict[str, Any]]]:
        """(UTC day, result) of every bucket of every page of one report."""
        params = {**params, "bucket_width": "1d", "limit": PAGE_LIMIT}
        pages = 0
        while True:
            answer = self._get(path, params)
            pages += 1
            if progress is not None:
                progress(f"{self.provider} {path.rsplit('/', 1)[-1]}: page {pages}")
            for bucket in answer["data"]:
                results = bucket.get("results") if isinstance(bucket, dict) else None
                if not isinstance(results, list):
                    raise _not_a_report(self.provider, path)
                try:
                    day = _day(bucket)
                except (KeyError, TypeError, ValueError, OverflowError, OSError):
                    raise _not_a_report(self.provider, path) from None
                for result in results:
                    yield day, result
            next_page = answer.get("next_page")
            if not answer.get("has_more") or not next_page:
                return
            params = {**params, "page": next_page}

    def _get(self, path: str, params: Dict[str, Any]) -> Dict[str, Any]:
        try:
            answer = self.request("GET", path, params=params)
        except BearLumenError as exc:
            raise _explained(self.provider, path, exc) from None
        # A 200 of another shape (a proxy, another API at that URL) must not read as no usage.
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise _not_a_report(self.provider, path)
        return answer


def _not_a_report(provider: str, path: str) -> BearLumenError:
    return BearLumenError(
        f"{provider} answered {path} with a body that is not a usage or cost report (no list of"
        f' buckets in "data"). Is the provider\'s base URL right (--provider-base-url,'
        f" {BASE_URL_ENV[provider]})?"
    )


def _explained(provider: str, path: str, exc: BearLumenError) -> BearLumenError:
    """The provider's error, said so that the person running the command knows what to do."""
    said = f"{provider} answered {exc.status_code} to {path}: {exc.message}"
    fields = {"status_code": exc.status_code, "request_id": exc.request_id, "body": exc.body}
    if exc.status_code in (401, 403):
        return AuthenticationError(
            f"{said}. Its usage and cost reports need an organization admin key"
            f" ({ADMIN_KEY_ENV[provider]}, or --admin-key / admin_key=), not the API key that"
            " makes model calls",
            param="admin_key",
            **fields,
        )
    if exc.status_code in (400, 422):
        return InvalidRequestError(
            f"{said}. {provider} does not serve this range or these parameters: check --start"
            " and --end (past days only, start before end)",
            param="start",
            **fields,
        )
    if exc.status_code == 404:
        return NotFoundError(
            f"{said}. Is the provider's base URL right (--provider-base-url,"
            f" {BASE_URL_ENV[provider]})?",
            **fields,
        )
    if isinstance(exc, RateLimitError):
        return RateLimitError(
            f"{said}. Still rate limited after the retries; try again later",
            retry_after=exc.retry_after,
            **fields,
        )
    return type(exc)(said, **fields)


def _int(result: Any, name: str) -> int:
    value = result.get(name) if isinstance(result, dict) else None
    return value if type(value) is int else 0


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(bucket: Dict[str, Any]) -> str:
    """The UTC day a bucket starts: OpenAI's `start_time` (unix), Anthropic's `starting_at`."""
    if "start_time" in bucket:
        return datetime.fromtimestamp(int(bucket["start_time"]), timezone.utc).date().isoformat()
    return str(bucket["starting_at"])[:10]
