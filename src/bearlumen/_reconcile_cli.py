"""`bearlumen reconcile`: the provider's own usage and cost reports beside the metered events.

    bearlumen reconcile --provider openai --start 2026-12-01 [--end 2026-12-07] [--json]

Exit status: 0 when every day x model with spend is covered to `--min-coverage`, 1 when one is
not (or on an error), so that CI or a cron job can act on it. docs/reconcile.md has the columns.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, List, Optional

from ._errors import BearLumenError
from ._http import ApiKey
from ._llm._reconcile import DEFAULT_MIN_COVERAGE, ReconciliationRow


def add_reconcile_command(commands: Any, bearlumen_client: Callable[..., Any]) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="compare metered LLM usage with the provider's own usage and cost reports",
    )
    reconcile.add_argument(
        "--provider", required=True, choices=("openai", "anthropic"), help="whose reports to read"
    )
    reconcile.add_argument("--start", required=True, help="first UTC day, inclusive (2026-12-01)")
    reconcile.add_argument(
        "--end", help="UTC day after the last, exclusive (default: through today)"
    )
    reconcile.add_argument(
        "--admin-key",
        type=ApiKey,
        help="the provider's organization admin key (default: OPENAI_ADMIN_KEY or"
        " ANTHROPIC_ADMIN_KEY)",
    )
    reconcile.add_argument(
        "--provider-base-url",
        help="the provider's API (default: OPENAI_BASE_URL or ANTHROPIC_BASE_URL, then the public"
        " API)",
    )
    reconcile.add_argument(
        "--base-url", help="Bear Lumen server (default: BEARLUMEN_BASE_URL, then the hosted API)"
    )
    reconcile.add_argument(
        "--api-key", type=ApiKey, help="Bear Lumen API key (default: BEARLUMEN_API_KEY)"
    )
    reconcile.add_argument(
        "--min-coverage",
        type=float,
        default=DEFAULT_MIN_COVERAGE,
        help="exit 1 when a day x model with spend is metered below this fraction",
    )
    reconcile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    reconcile.add_argument(
        "--plain", action="store_true", help="plain text even when rich is installed"
    )
    reconcile.set_defaults(run=lambda args: run_reconcile(args, bearlumen_client))


def run_reconcile(args: argparse.Namespace, bearlumen_client: Callable[..., Any]) -> int:
    from ._demo import Output

    out = Output(plain=args.plain or args.json)
    with bearlumen_client(args, buffered=False) as client, _progress(out) as progress:
        try:
            rows = client.llm.reconcile(
                provider=args.provider,
                start=args.start,
                end=args.end,
                admin_key=args.admin_key,
                provider_base_url=args.provider_base_url,
                progress=progress,
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            # An answer read as a dict of the API's keys was something else: a proxy or another
            # API in front answered 200 with other JSON. One line, naming what was missing.
            raise BearLumenError(_other_shape(exc, args.provider)) from exc
    if args.json:
        short = [row for row in rows if row.below(args.min_coverage)]
        print(
            json.dumps(
                {
                    "provider": args.provider,
                    "min_coverage": args.min_coverage,
                    "covered": not short,
                    "rows": [row.to_dict() for row in rows],
                },
                indent=2,
            )
        )
        return 1 if short else 0
    return 0 if reconciliation_table(out, args.provider, rows, args.min_coverage) else 1


def _other_shape(exc: Exception, provider: str) -> str:
    lacks = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else f"another shape ({exc})"
    return (
        f"an answer read for the reconciliation has {lacks}: is --base-url a Bear Lumen API,"
        f" and --provider-base-url {provider}'s?"
    )


def reconciliation_table(
    out: Any, provider: str, rows: List[ReconciliationRow], min_coverage: float
) -> bool:
    """The rows as a table (an `Output` of `_demo`: `bearlumen reconcile`'s and the demo's), then
    a line per day x model below `min_coverage`, or one saying all are covered. Returns whether
    every row with spend is covered."""
    short = [row for row in rows if row.below(min_coverage)]
    _table(out, provider, rows)
    if not rows:
        out.line(f"Neither {provider} nor the metered events show usage in this range.")
    for row in short:
        out.line(
            f"{row.day} {row.model}: metered {_percent(row.coverage)} of what"
            f" {provider} reports (below {_percent(min_coverage)}),"
            f" {_dollars(row.drift_usd)} not metered"
            + (f"; {row.unpriced_events} events unpriced" if row.unpriced_events else "")
        )
    if rows and not short:
        out.line(f"Every day x model with spend is metered to at least {_percent(min_coverage)}.")
    return not short


def _table(out: Any, provider: str, rows: List[ReconciliationRow]) -> None:
    def pair(theirs: Any, ours: Any) -> str:
        return f"{_figure(theirs)} / {_figure(ours)}"

    out.table(
        f"Metered vs {provider}'s own reports, per UTC day and model ({provider} / metered;"
        f" - where {provider}'s reports give no such figure)",
        ["day", "model", "calls", "input tokens", "output tokens", "cost (USD)", "coverage",
         "drift (USD)", "notes"],
        [
            (
                row.day,
                row.model + (f" ({row.platform})" if row.platform else ""),
                pair(row.provider_requests, row.metered_requests),
                pair(row.provider_input_tokens, row.metered_input_tokens),
                pair(row.provider_output_tokens, row.metered_output_tokens),
                pair(row.provider_cost_usd, row.metered_cost_usd),
                _percent(row.coverage),
                _figure(row.drift_usd),
                _notes(row),
            )
            for row in rows
        ],
        text=("model", "notes"),
    )  # fmt: skip


def _notes(row: ReconciliationRow) -> str:
    notes = []
    if row.partial_day:
        notes.append("partial day")
    if row.unpriced_events:
        notes.append(f"{row.unpriced_events} unpriced ({', '.join(row.unpriced_models)})")
    if row.partial_events:
        notes.append(f"{row.partial_events} cut-off streams")
    if row.platform:
        notes.append(f"billed by {row.platform}, not in the provider's reports")
    return "; ".join(notes)


def _figure(value: Any) -> str:
    """A count as `1,234`, a cost (in a `USD` column) as `17.8038`: the demo's formats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{round(value, 4) + 0.0:,.4f}"  # + 0.0: a drift of -1e-12 shows as 0.0000
    return f"{value:,}"


def _dollars(value: Optional[float]) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"


class _progress:
    """Progress of the pages read, on stderr (stdout stays the table or the JSON)."""

    def __init__(self, out: Any) -> None:
        self._status: Any = None
        self._console: Any = None
        if out.rich is not None:
            import rich.console

            console = rich.console.Console(stderr=True)
            if console.is_terminal:
                self._console = console

    def __enter__(self) -> Callable[[str], None]:
        if self._console is not None:
            self._status = self._console.status("reading the reports ...")
            self._status.__enter__()
            return lambda message: self._status.update(message)
        return lambda message: print(message, file=sys.stderr, flush=True)

    def __exit__(self, *exc_info: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc_info)
