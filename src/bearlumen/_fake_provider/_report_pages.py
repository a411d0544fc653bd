"""What OpenAI's and Anthropic's usage and cost reports share: UTC days as buckets, pages of
buckets behind a `next_page` token, and the price of each call by kind of token.

A report is written once (`report_body`); each provider's module gives its `Dialect` (the names
of its time parameters and how it reads them, the shape of its buckets, pages and errors, how
its admin key travels) and, per endpoint, the results of one group of calls in its own words.

Buckets are UTC days, each from 00:00 to the next 00:00, from the day of the start to the day of
the end (exclusive), never past today.
"""

from __future__ import annotations

import base64
import dataclasses
from collections import defaultdict
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .._llm._pricing import Pricer

DAY = 86_400
UNKNOWN_MODEL_PRICE = (1.0, 4.0)  # USD per million input / output tokens
_DEFAULT_LIMIT = 7  # buckets per page when the request names no `limit`

Params = Dict[str, List[str]]  # the query: each name (without `[]`) and its values


class BadRequest(ValueError):
    """A report request the provider answers 400, with this message."""


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
    embeddings: bool = False  # OpenAI's embeddings API (its usage report is one of its own)


class Dialect:
    """How one provider's report API speaks: each provider's module subclasses it."""

    provider: str  # "openai" or "anthropic": whose calls its reports count
    start: str  # the names of the query's start and end parameters
    end: str
    wrong_key: Tuple[int, str, str]  # (status, kind, message) for a key not the admin's

    def read_time(self, params: Params, name: str) -> Optional[float]:
        """The time parameter `name` in unix seconds; None when absent."""
        raise NotImplementedError

    def bucket(self, day: int, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        raise NotImplementedError

    def page(self, data: List[Dict[str, Any]], next_page: Optional[str]) -> Dict[str, Any]:
        raise NotImplementedError

    def error(self, kind: str, message: str) -> Dict[str, Any]:
        """The body of an error answer."""
        raise NotImplementedError

    def key(self, headers: Mapping[str, str]) -> str:
        """The API key the request carries, "" when none."""
        raise NotImplementedError


# The results of one group of calls: (the model, or None when not grouped by model; its
# calls; the prices) -> the bucket's results for them.
Results = Callable[[Optional[str], List[AnsweredCall], Pricer], List[Dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Report:
    """One report endpoint."""

    dialect: Dialect
    max_limit: int  # the most buckets `limit` may ask for (the API's documented limit for 1d)
    group_by: str  # the `group_by` value that splits a day's calls by model
    results: Results


def report_body(
    report: Report,
    calls: List[AnsweredCall],
    params: Params,
    *,
    now: float,
    page_size: Optional[int],
    prices: Pricer,
) -> Dict[str, Any]:
    """The page of the report that `params` asks for; raises `BadRequest`."""
    dialect = report.dialect
    start = dialect.read_time(params, dialect.start)
    if start is None:
        raise BadRequest(f"{dialect.start} is required")
    end = dialect.read_time(params, dialect.end)
    page, next_page = _bucket_starts(params, start, end, report.max_limit, now, page_size)
    by_model = report.group_by in params.get("group_by", [])
    data = []
    for day, groups in _per_day(calls, page, by_model):
        results = [item for model, group in groups for item in report.results(model, group, prices)]
        data.append(dialect.bucket(day, results))
    return dialect.page(data, next_page)


def summed_cost(prices: Pricer, calls: List[AnsweredCall]) -> Dict[str, float]:
    """The cost parts (`cost_parts`) of a group of calls, added up."""
    total: Dict[str, float] = defaultdict(float)
    for call in calls:
        for part, value in cost_parts(prices, call).items():
            total[part] += value
    return total


def cost_parts(prices: Pricer, call: AnsweredCall) -> Dict[str, float]:
    """USD by token kind: `input` (uncached), `cached_input`, `cache_write_5m`,
    `cache_write_1h`, `output`. They add up to the call's price; a model `prices` does not know
    costs `UNKNOWN_MODEL_PRICE`, because the real provider bills every model."""

    def price(i: int = 0, o: int = 0, cr: int = 0, cw: int = 0, cw1h: int = 0) -> float:
        cost, _, _ = prices.quote(call.provider, call.model, i, o, cr, cw, cw1h)
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


def int_param(params: Params, name: str, default: int) -> int:
    try:
        return int(params[name][0]) if name in params else default
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _bucket_starts(
    params: Params,
    start: float,
    end: Optional[float],
    max_limit: int,
    now: float,
    page_size: Optional[int],
) -> Tuple[List[int], Optional[str]]:
    """(this page's bucket starts, the next_page token or None on the last page)."""
    first = int(start) // DAY * DAY
    if first > now:
        raise BadRequest("start time is in the future: no usage to report")
    if end is not None and end <= start:
        raise BadRequest("end time must be after start time")
    if params.get("bucket_width", ["1d"])[0] != "1d":
        raise BadRequest("the fake provider reports bucket_width=1d only")
    limit = int_param(params, "limit", _DEFAULT_LIMIT)
    if not 1 <= limit <= max_limit:
        raise BadRequest(f"limit must be from 1 to {max_limit}")
    if page_size is not None:
        limit = min(limit, page_size)
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


def _page_token(offset: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"bucket:{offset}".encode()).decode()


def _page_offset(params: Params) -> int:
    token = params.get("page", [""])[0]
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token[5:]).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        raise BadRequest("page is not a next_page token of this report") from None
