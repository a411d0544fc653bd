"""Did we meter what the provider billed us? Its reports beside our events, per day and model.

`reconcile()` reads the provider's usage and cost reports (`_provider_reports`) and the metered
`token_usage` events of that provider (`usage.query`, paged), groups both by UTC day and
normalised model name (`gpt-4o-2024-08-06` and `gpt-4o` are one model), and answers one
`ReconciliationRow` per day x model (x platform, for events of calls billed by Azure, Bedrock
or Vertex, which the provider's own reports never include). docs/reconcile.md says what each
column means and where the numbers cannot agree.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from .._errors import AuthenticationError, InvalidRequestError
from .._http import ApiKey, HttpCore
from .._timestamps import parse as parse_time
from ._provider_reports import (
    ADMIN_KEY_ENV,
    BASE_URL_ENV,
    PUBLIC_BASE_URL,
    Progress,
    ProviderUsage,
    ReportsClient,
)
from ._usage import ANTHROPIC, LLM_EVENT_TYPE, LLM_METRIC_NAME, OPENAI

if TYPE_CHECKING:
    from ..resources import Usage

EVENTS_PAGE_SIZE = 1000  # events per usage.query page: the most the API serves
DEFAULT_MIN_COVERAGE = 0.99

# A dated snapshot or alias suffix: gpt-4o-2024-08-06, claude-sonnet-4-5-20250929,
# gpt-3.5-turbo-0125, claude-3-5-sonnet-latest.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")

Moment = Union[str, date, datetime]


def normalize_model(name: str) -> str:
    """The model a snapshot belongs to: `gpt-4o-2024-08-06` -> `gpt-4o`."""
    return _SNAPSHOT.sub("", name.strip().lower())


@dataclasses.dataclass(frozen=True)
class ReconciliationRow:
    """One UTC day x model: what the provider reports beside what was metered.

    Tokens: `input` is all input, cached included; `cached_input` the part read from the cache.
    `coverage` is the lower of `token_coverage` and `cost_coverage` (metered / provider; None
    where the provider reports nothing to cover). `drift_usd` is provider cost - metered cost.
    `unpriced_events` were metered without a cost (a model genai-prices does not know, a stream
    cut off before its usage arrived): named in `unpriced_models`. `partial_day`: the day is not
    over (today), so both sides may still grow.
    """

    day: str
    model: str
    platform: Optional[str]
    provider_input_tokens: int
    provider_cached_input_tokens: int
    provider_output_tokens: int
    provider_requests: Optional[int]
    provider_cost_usd: Optional[float]
    metered_input_tokens: int
    metered_cached_input_tokens: int
    metered_output_tokens: int
    metered_requests: int
    metered_cost_usd: float
    unpriced_events: int
    unpriced_models: Tuple[str, ...]
    partial_events: int
    token_coverage: Optional[float]
    cost_coverage: Optional[float]
    coverage: Optional[float]
    drift_usd: Optional[float]
    partial_day: bool
    models: Tuple[str, ...]  # every name seen for this model, on either side

    @property
    def has_spend(self) -> bool:
        """Whether the provider reports anything for this row (cost or tokens)."""
        return bool(
            self.provider_cost_usd or self.provider_input_tokens or self.provider_output_tokens
        )

    def below(self, min_coverage: float) -> bool:
        """Whether this row fails `min_coverage`: spend the metering does not cover."""
        return self.has_spend and self.coverage is not None and self.coverage < min_coverage

    def to_dict(self) -> Dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["unpriced_models"] = list(self.unpriced_models)
        fields["models"] = list(self.models)
        return fields


class _Metered:
    __slots__ = (
        "cached_input",
        "cost",
        "input",
        "names",
        "output",
        "partial",
        "requests",
        "unpriced",
        "unpriced_names",
    )

    def __init__(self) -> None:
        self.input = self.cached_input = self.output = self.requests = 0
        self.unpriced = self.partial = 0
        self.cost = 0.0
        self.names: set[str] = set()
        self.unpriced_names: set[str] = set()


def reconcile(
    usage: Usage[Any],
    *,
    provider: str,
    start: Moment,
    end: Optional[Moment] = None,
    admin_key: Union[str, ApiKey, None] = None,
    provider_base_url: Optional[str] = None,
    progress: Optional[Progress] = None,
    sleep: Optional[Callable[[float], Any]] = None,
) -> List[ReconciliationRow]:
    """The rows of `client.llm.reconcile(...)`, sorted by day then model."""
    if provider not in (OPENAI, ANTHROPIC):
        raise InvalidRequestError(
            f"provider: must be 'openai' or 'anthropic', not {provider!r}", param="provider"
        )
    if not isinstance(usage._http, HttpCore):
        raise InvalidRequestError(
            "reconcile reads events synchronously: call it on a bearlumen.Client", param="client"
        )
    first, stop = day_range(start, end)
    key = ApiKey(admin_key or os.environ.get(ADMIN_KEY_ENV[provider]) or "")
    del admin_key  # from here on only the redacted ApiKey, in locals too
    if not key:
        raise AuthenticationError(
            f"no admin key for {provider}'s usage reports: pass admin_key=... (--admin-key) or"
            f" set {ADMIN_KEY_ENV[provider]}",
            param="admin_key",
        )
    base_url = (
        provider_base_url or os.environ.get(BASE_URL_ENV[provider]) or PUBLIC_BASE_URL[provider]
    )
    reports = ReportsClient(provider, key, base_url, sleep=sleep)
    try:
        reported = reports.report(first, stop, progress)
    finally:
        reports.close()
    metered = _metered(usage, provider, first, stop, progress)
    return _rows(reported, metered, time.time())


def day_range(start: Moment, end: Optional[Moment]) -> Tuple[datetime, datetime]:
    """[first day's 00:00 UTC, the 00:00 UTC after the last day): the providers' buckets are UTC
    days, so a time inside a day stands for the whole day. `end` defaults to the end of today."""
    first = _day_start(_moment("start", start))
    if end is None:
        stop = _day_start(datetime.now(timezone.utc)) + timedelta(days=1)
    else:
        moment = _moment("end", end)
        stop = _day_start(moment)
        if stop < moment:
            stop += timedelta(days=1)
    if first > datetime.now(timezone.utc):
        raise InvalidRequestError(
            "start: is in the future; the providers report past usage only", param="start"
        )
    if stop <= first:
        raise InvalidRequestError("end: must be after start (end is exclusive)", param="end")
    return first, stop


def _moment(param: str, value: Moment) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value:
        try:
            moment = parse_time(value)
        except ValueError:
            raise InvalidRequestError(
                f"{param}: must be a date (2024-01-01) or an RFC 3339 time, not {value!r}",
                param=param,
            ) from None
    else:
        raise InvalidRequestError(f"{param}: must be a date or a datetime", param=param)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # naive means UTC, as everywhere
    return moment.astimezone(timezone.utc)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _metered(
    usage: Usage[Any],
    provider: str,
    first: datetime,
    stop: datetime,
    progress: Optional[Progress],
) -> Dict[Tuple[str, str, Optional[str]], _Metered]:
    """The provider's metered events per (UTC day, normalised model, platform), paged."""
    metered: Dict[Tuple[str, str, Optional[str]], _Metered] = defaultdict(_Metered)
    offset = 0
    while True:
        page = usage.query(
            metric_name=LLM_METRIC_NAME,
            start_date=first,
            end_date=stop,
            limit=EVENTS_PAGE_SIZE,
            offset=offset,
        )
        events = page["events"]
        offset += len(events)
        for event in events:
            metadata = event.get("metadata") or {}
            if event.get("eventType") != LLM_EVENT_TYPE or metadata.get("provider") != provider:
                continue
            name = str(metadata.get("model") or "(unnamed)")
            day = event["timestamp"][:10]  # stored times are canonical UTC text
            figures = metered[(day, normalize_model(name), metadata.get("platform"))]
            figures.names.add(name)
            figures.requests += 1
            figures.input += _count(metadata, "input_tokens")
            figures.cached_input += _count(metadata, "cache_read_tokens")
            figures.output += _count(metadata, "output_tokens")
            figures.partial += bool(metadata.get("partial"))
            cost = metadata.get("provider_cost_usd")
            if isinstance(cost, (int, float)) and metadata.get("priced") is not False:
                figures.cost += cost
            else:
                figures.unpriced += 1
                figures.unpriced_names.add(name)
        if progress is not None:
            progress(f"metered events: {offset:,} of {page['total']:,} read")
        if not events or offset >= page["total"]:
            return metered


def _count(metadata: Dict[str, Any], name: str) -> int:
    value = metadata.get(name)
    return value if type(value) is int else 0


def _rows(
    reported: Dict[Tuple[str, str], ProviderUsage],
    metered: Dict[Tuple[str, str, Optional[str]], _Metered],
    now: float,
) -> List[ReconciliationRow]:
    provider_side: Dict[Tuple[str, str, Optional[str]], ProviderUsage] = {}
    key: Tuple[str, str, Optional[str]]
    provider_names: Dict[Tuple[str, str, Optional[str]], set[str]] = defaultdict(set)
    for (day, name), figures in reported.items():
        key = (day, normalize_model(name), None)
        provider_names[key].add(name)
        merged = provider_side.setdefault(key, ProviderUsage())
        merged.input_tokens += figures.input_tokens
        merged.cached_input_tokens += figures.cached_input_tokens
        merged.output_tokens += figures.output_tokens
        merged.cost_usd += figures.cost_usd
        if figures.requests is not None:
            merged.requests = (merged.requests or 0) + figures.requests
    rows = []
    for key in sorted(set(provider_side) | set(metered), key=lambda k: (k[0], k[1], k[2] or "")):
        day, model, platform = key
        ours = metered.get(key) or _Metered()
        theirs = provider_side.get(key)
        if theirs is None and platform is None:
            theirs = ProviderUsage()  # metered, but the provider reports nothing that day
        provider_tokens = theirs.input_tokens + theirs.output_tokens if theirs else 0
        token_coverage = (
            (ours.input + ours.output) / provider_tokens if theirs and provider_tokens else None
        )
        provider_cost = round(theirs.cost_usd, 10) if theirs is not None else None
        cost_coverage = ours.cost / provider_cost if provider_cost else None
        coverages = [c for c in (token_coverage, cost_coverage) if c is not None]
        day_end = datetime.fromisoformat(day).replace(tzinfo=timezone.utc) + timedelta(days=1)
        rows.append(
            ReconciliationRow(
                day=day,
                model=model,
                platform=platform,
                provider_input_tokens=theirs.input_tokens if theirs else 0,
                provider_cached_input_tokens=theirs.cached_input_tokens if theirs else 0,
                provider_output_tokens=theirs.output_tokens if theirs else 0,
                provider_requests=theirs.requests if theirs else None,
                provider_cost_usd=provider_cost,
                metered_input_tokens=ours.input,
                metered_cached_input_tokens=ours.cached_input,
                metered_output_tokens=ours.output,
                metered_requests=ours.requests,
                metered_cost_usd=round(ours.cost, 10),
                unpriced_events=ours.unpriced,
                unpriced_models=tuple(sorted(ours.unpriced_names)),
                partial_events=ours.partial,
                token_coverage=_rounded(token_coverage),
                cost_coverage=_rounded(cost_coverage),
                coverage=_rounded(min(coverages)) if coverages else None,
                drift_usd=None if provider_cost is None else round(provider_cost - ours.cost, 10),
                partial_day=day_end.timestamp() > now,
                models=tuple(sorted(ours.names | provider_names.get(key, set()))),
            )
        )
    return rows


def _rounded(value: Optional[float]) -> Optional[float]:
    # Sums of float prices differ in the last bits; 1e-9 is far below any cent.
    return None if value is None else round(value, 9)
