"""`bearlumen demo` (a simulated AI product, metered) and `bearlumen report` (cost tables).

The demo starts the embedded local server in a child process (unless `--base-url` names a
running one) and the fake LLM provider in a thread, creates end users and subscriptions, and has
agents and workflows make LLM calls through the real `openai` and `anthropic` SDKs, instrumented
with `client.llm.instrument(...)`, from a thread pool: chat completions, the Responses API and
Anthropic messages, streamed and not, with cached and reasoning tokens. It then flushes and
prints what the server computed: cost by agent, by workflow and by model (tokens by kind), the
usage summary, and the shipper's own figures. It ends as `bearlumen reconcile` does: each
provider's own usage and cost reports (the fake's, of the calls it answered) beside the metered
events, per UTC day and model, which should agree to the token and the cent (100% coverage).
Tables use rich when it is installed (the `demo` extra) and plain text otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Collection, Iterator, Sequence

from ._client import Client
from ._fake_provider import ANTHROPIC_ADMIN_KEY, OPENAI_ADMIN_KEY, USAGE_HEADER
from ._http import ApiKey
from ._llm._pricing import Pricer
from ._llm._reconcile import DEFAULT_MIN_COVERAGE, ReconciliationRow
from ._reconcile_cli import reconciliation_table

# agent -> (workflow, model, API, typical input tokens, typical output tokens,
#           share of input read from the prompt cache, share of output spent reasoning)
AGENTS = {
    "support-bot": ("customer-onboarding", "gpt-4o-mini", "chat", 1200, 300, 0.5, 0.0),
    "ticket-triage": ("support-escalation", "claude-haiku-4-5", "messages", 800, 120, 0.3, 0.0),
    "code-reviewer": ("pull-request-review", "claude-sonnet-4-6", "stream", 6000, 900, 0.7, 0.2),
    "research-agent": ("market-research", "o4-mini", "responses", 4000, 1500, 0.2, 0.6),
    "sales-assistant": ("lead-qualification", "gpt-4o", "chat-stream", 900, 400, 0.0, 0.0),
}
PROVIDER_OF_API = {
    "chat": "openai",
    "chat-stream": "openai",
    "responses": "openai",
    "messages": "anthropic",
    "stream": "anthropic",
}
CUSTOMERS = ["acme-ai", "globex-labs", "initech", "umbrella-health", "stark-analytics"]
MESSAGES = [{"role": "user", "content": "Summarise the open tickets."}]


# -- output --------------------------------------------------------------------------------


class Output:
    """Tables and progress with rich when installed, plain text otherwise."""

    def __init__(self, plain: bool = False) -> None:
        self.rich: Any = None
        if not plain:
            try:
                import rich.console

                # A log or CI has no terminal width (rich then takes 80, and cuts the model
                # names): give the lines and tables the room they need there (`table`).
                console = rich.console.Console()
                if not console.is_terminal:
                    console = rich.console.Console(width=max(console.width, 100))
                self.rich = console
            except ImportError:
                pass

    def line(self, text: str = "") -> None:
        if self.rich is not None:
            self.rich.print(text, highlight=False)
        else:
            print(text, flush=True)

    def table(
        self,
        title: str,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        text: Collection[str] = (),
    ) -> None:
        """Numbers right-aligned; the first column and those named in `text`, left."""
        cells = [[_cell(value) for value in row] for row in rows]
        left = [i == 0 or header in text for i, header in enumerate(headers)]
        if self.rich is not None:
            from rich.measure import Measurement
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for header, is_left in zip(headers, left):
                table.add_column(header, justify="left" if is_left else "right")
            for row in cells:
                table.add_row(*row)
            if not self.rich.is_terminal:  # a log has room: a cut model name helps nobody
                wide = self.rich.options.update_width(10_000)
                self.rich.width = max(
                    self.rich.width, Measurement.get(self.rich, wide, table).maximum
                )
            self.rich.print(table)
            return
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        print(f"\n{title}")
        for line in [headers, ["-" * w for w in widths], *cells]:
            print(
                "  ".join(
                    c.ljust(w) if is_left else c.rjust(w)
                    for c, w, is_left in zip(line, widths, left)
                ).rstrip(),
                flush=True,
            )

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Any]:
        if self.rich is not None:
            from rich.progress import Progress

            with Progress(console=self.rich, transient=False) as bar:
                task = bar.add_task(label, total=total)
                yield lambda done: bar.update(task, completed=done)
            return
        last = [-1]

        def report(done: int) -> None:
            tenth = done * 10 // max(total, 1)
            if tenth != last[0]:
                last[0] = tenth
                print(f"{label}: {done}/{total} ({tenth * 10}%)", flush=True)

        yield report


def _cell(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# -- the local server as a child process ---------------------------------------------------


@contextmanager
def local_server(db: str | None, faults: str | None) -> Iterator[str]:
    """`bearlumen serve` on a free loopback port in a child process; yields its base URL."""
    command = [sys.executable, "-m", "bearlumen", "serve", "--port", "0", "--db", db or ":memory:"]
    if faults:
        command += ["--faults", faults]
    with _child_server(command, "the local server") as url:
        yield url


@contextmanager
def fake_llm_provider() -> Iterator[str]:
    """The fake OpenAI + Anthropic API in a child process (its event loop off our GIL)."""
    command = [sys.executable, "-m", "bearlumen._fake_provider", "--port", "0", "--chunks", "8"]
    command += ["--text", "The three open tickets are about billing."]
    with _child_server(command, "the fake LLM provider") as url:
        yield url


@contextmanager
def _child_server(command: list[str], name: str) -> Iterator[str]:
    """Start a server that prints "... listening on URL" first; yield the URL; stop it."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        if "listening on " not in first:
            raise RuntimeError(
                f"{name} did not start; is the server extra installed?"
                ' (pip install "bearlumen[server]")'
            )
        yield first.split("listening on ", 1)[1].split()[0]
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


# -- the demo ------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index] / 1000  # ns -> µs


def run_demo(args: argparse.Namespace) -> int:
    out = Output(plain=args.plain)
    if args.base_url:
        outcome = _simulate(
            args, out, args.base_url, args.api_key or os.environ.get("BEARLUMEN_API_KEY")
        )
        _dashboard(out, args.base_url.rstrip("/"), None, keep_serving=None)
        return outcome
    out.line("Starting the embedded Bear Lumen server on loopback ...")
    with local_server(args.db, args.faults) as base_url:
        out.line(
            f"Local server at {base_url}" + (f" with faults {args.faults}" if args.faults else "")
        )
        api_key = args.api_key or "sk_demo_" + secrets.token_hex(8)
        outcome = _simulate(args, out, base_url, api_key)
        # A key the demo made up for its own throwaway server is shown: the dashboard asks for it
        _dashboard(out, base_url, None if args.api_key else api_key, args.keep_serving)
        return outcome


def _dashboard(out: Output, base_url: str, demo_key: str | None, keep_serving: bool | None) -> None:
    """Where to see the costs in a browser; with --keep-serving, serve until Ctrl-C (None: the
    server is not the demo's own)."""
    sign_in = f"sign in with the API key {demo_key}" if demo_key else "sign in with your API key"
    out.line(f"See these costs in your browser: {base_url}/ ({sign_in})")
    if keep_serving is None:
        return
    if not keep_serving:
        out.line("(the server stops with the demo: run it with --keep-serving to keep it up)")
        return
    out.line("The server keeps serving; press Ctrl-C to stop it.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        out.line("Stopped.")


def _sdk_clients(client: Client, fake_url: str) -> tuple[Any, Any]:
    """The real OpenAI and Anthropic SDKs, pointed at the fake provider, metered."""
    try:
        import anthropic
        import openai
    except ImportError:
        raise SystemExit(
            "bearlumen demo drives the real openai and anthropic SDKs:"
            ' pip install "bearlumen[demo]"'
        ) from None
    oai = openai.OpenAI(api_key="sk-fake", base_url=f"{fake_url}/v1", max_retries=0)
    claude = anthropic.Anthropic(api_key="sk-fake", base_url=fake_url, max_retries=0)
    return client.llm.instrument(oai), client.llm.instrument(claude)


def _call(oai: Any, claude: Any, api: str, model: str, usage: str) -> None:
    """One LLM call the way an app makes it; the fake answers with `usage`."""
    headers = {USAGE_HEADER: usage}
    if api == "chat":
        oai.chat.completions.create(model=model, messages=MESSAGES, extra_headers=headers)
    elif api == "chat-stream":
        with oai.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, extra_headers=headers
        ) as stream:
            for _ in stream:
                pass
    elif api == "responses":
        oai.responses.create(model=model, input="Research the market.", extra_headers=headers)
    elif api == "messages":
        claude.messages.create(
            model=model, max_tokens=1024, messages=MESSAGES, extra_headers=headers
        )
    else:
        with claude.messages.stream(
            model=model, max_tokens=1024, messages=MESSAGES, extra_headers=headers
        ) as stream:
            stream.until_done()


def _simulate(args: argparse.Namespace, out: Output, base_url: str, api_key: str | None) -> int:
    client = Client(api_key=api_key, base_url=base_url, max_queue_size=max(100_000, args.events))
    rng = random.Random(args.seed)
    started_at = datetime.now(timezone.utc)

    customers = []
    for name in CUSTOMERS:
        user = client.end_users.create(
            external_id=f"{name}-{secrets.token_hex(3)}", name=name.replace("-", " ").title()
        )["endUser"]
        subscription = client.subscriptions.create(
            organization_id=f"org_{name}",
            plan_id=rng.choice(["plan_pro_monthly", "plan_team_monthly", "plan_enterprise"]),
            billing_cycle="monthly",
            start_date=started_at.strftime("%Y-%m-%dT00:00:00Z"),
            end_user_id=user["id"],
        )
        customers.append((user["id"], subscription["id"]))
    out.line(f"Created {len(customers)} end users with subscriptions.")

    # Plan the calls up front (what each will use), so the timed loop measures the calls.
    pricer = Pricer()  # the same prices, computed apart from the metering, to check it
    agents = list(AGENTS)
    calls = []
    expected_cost = 0.0
    for _ in range(args.events):
        agent = rng.choice(agents)
        workflow, model, api, typical_in, typical_out, cached, reasoning = AGENTS[agent]
        input_tokens = max(1, int(rng.gauss(typical_in, typical_in / 4)))
        output_tokens = max(1, int(rng.gauss(typical_out, typical_out / 4)))
        cache_read = int(input_tokens * cached * rng.random())
        reasoning_tokens = int(output_tokens * reasoning)
        usage = (
            f"input_tokens={input_tokens},output_tokens={output_tokens},"
            f"cache_read_tokens={cache_read},cache_write_tokens=0,"
            f"reasoning_tokens={reasoning_tokens}"
        )
        cost, _, _ = pricer.quote(
            PROVIDER_OF_API[api], model, input_tokens, output_tokens, cache_read, 0
        )
        expected_cost += cost or 0.0
        user_id, subscription_id = rng.choice(customers)
        calls.append((agent, workflow, api, model, usage, user_id, subscription_id))

    with fake_llm_provider() as fake_url:
        oai, claude = _sdk_clients(client, fake_url)
        out.line(
            f"Fake LLM provider at {fake_url}, called by the instrumented openai and anthropic SDKs"
        )
        latencies: list[list[int]] = [[] for _ in range(args.threads)]
        done = [0]
        done_lock = threading.Lock()
        clock = time.perf_counter_ns

        def worker(index: int) -> None:
            mine = latencies[index]
            for agent, workflow, api, model, usage, user_id, sub_id in calls[index :: args.threads]:
                t0 = clock()
                with client.llm.attribute(
                    end_user_id=user_id,
                    subscription_id=sub_id,
                    agent_id=agent,
                    workflow_id=workflow,
                ):
                    _call(oai, claude, api, model, usage)
                mine.append(clock() - t0)
                if len(mine) % 50 == 0:
                    with done_lock:
                        done[0] += 50

        out.line(f"Making {args.events:,} LLM calls from {args.threads} threads ...")
        begin = time.perf_counter()
        with out.progress(args.events, "metering LLM calls") as report:
            with ThreadPoolExecutor(args.threads) as pool:
                futures = [pool.submit(worker, i) for i in range(args.threads)]
                while wait(futures, timeout=0.1).not_done:
                    report(done[0])
                for f in futures:
                    f.result()
            report(args.events)
        called_in = time.perf_counter() - begin
        flushed = client.flush(timeout=args.flush_timeout)
        elapsed = time.perf_counter() - begin
        # The provider's own usage and cost reports, while the fake that answered is still up
        reconciled = _reconcile(client, fake_url, started_at)

    start, end = started_at - timedelta(days=1), datetime.now(timezone.utc) + timedelta(days=1)
    by_agent = client.cost_attribution.by_agent(start, end)
    by_workflow = client.cost_attribution.by_workflow(start, end)
    summary = client.usage.summary(start_date=start, end_date=end)
    by_model = _by_model(client, start, end)
    capture_errors = client.llm.capture_errors
    client.close()

    cost_tables(out, by_agent, by_workflow)
    out.table(
        "Cost by model (from the events' metadata, priced by genai-prices)",
        ["model", "calls", "input", "cache read", "output", "reasoning", "cost (USD)"],
        by_model,
    )
    summary_table(out, summary)
    every = sorted(ns for per_thread in latencies for ns in per_thread)
    out.table(
        "The shipper",
        ["measure", "value"],
        [
            ("LLM calls made by the app", args.events),
            ("events delivered and stored", flushed["recorded"]),
            ("duplicates", flushed["duplicate"]),
            ("rejected", flushed["rejected"]),
            ("dropped", flushed["dropped"]),
            ("failed", flushed["failed"]),
            ("capture errors", capture_errors),
            ("retries", flushed["retries"]),
            ("batches", flushed["batches"]),
            (
                "LLM call p50 (SDK + fake provider + metering)",
                f"{_percentile(every, 0.50) / 1000:.1f} ms",
            ),
            ("LLM call p99", f"{_percentile(every, 0.99) / 1000:.1f} ms"),
            ("LLM calls/s", int(args.events / called_in)),
            ("end-to-end events/s (until flush returned)", int(args.events / elapsed)),
        ],
    )
    covered = all(
        [reconciliation_table(out, provider, rows, DEFAULT_MIN_COVERAGE)
         for provider, rows in reconciled]
    )  # fmt: skip
    delivered = flushed["recorded"] + flushed["duplicate"]
    cost_matches = abs(summary["totalCost"] - expected_cost) < 1e-6 * max(1.0, expected_cost)
    if (
        flushed["complete"]
        and delivered == args.events
        and summary["totalEvents"] == args.events
        and cost_matches
        and covered
    ):
        out.line(
            f"All {args.events:,} events delivered exactly once;"
            f" total cost ${summary['totalCost']:,.4f}."
        )
        return 0
    out.line(
        f"NOT all events were delivered: {delivered:,} of {args.events:,} acknowledged,"
        f" {summary['totalEvents']:,} stored (complete={flushed['complete']}),"
        f" cost ${summary['totalCost']:,.4f} of ${expected_cost:,.4f} expected."
    )
    return 1


def _reconcile(
    client: Client, fake_url: str, started_at: datetime
) -> list[tuple[str, list[ReconciliationRow]]]:
    """`client.llm.reconcile(...)` of each provider, against the fake's reports of the calls it
    answered (its URLs as each SDK takes them, its admin keys), from the day the demo started."""
    return [
        (
            provider,
            client.llm.reconcile(
                provider=provider,
                start=started_at,
                admin_key=admin_key,
                provider_base_url=base_url,
            ),
        )
        for provider, admin_key, base_url in (
            ("openai", OPENAI_ADMIN_KEY, f"{fake_url}/v1"),
            ("anthropic", ANTHROPIC_ADMIN_KEY, fake_url),
        )
    ]


def _by_model(client: Client, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Per model: calls, tokens by kind and cost, summed from the stored events' metadata."""
    totals: dict[str, list[Any]] = {}
    offset = 0
    while True:
        page = client.usage.query(start_date=start, end_date=end, limit=1000, offset=offset)
        for event in page["events"]:
            metadata = event["metadata"] or {}
            row = totals.setdefault(str(metadata.get("model")), [0, 0, 0, 0, 0, 0.0])
            row[0] += 1
            row[1] += metadata.get("input_tokens", 0)
            row[2] += metadata.get("cache_read_tokens", 0)
            row[3] += metadata.get("output_tokens", 0)
            row[4] += metadata.get("reasoning_tokens", 0)
            row[5] += metadata.get("provider_cost_usd", 0.0)
        offset += len(page["events"])
        if len(page["events"]) < 1000:
            break
    ordered = sorted(totals.items(), key=lambda item: -item[1][5])
    return [(model, *row[:5], round(row[5], 6)) for model, row in ordered]


# -- report --------------------------------------------------------------------------------


def cost_tables(out: Output, by_agent: Any, by_workflow: Any) -> None:
    """Cost by agent and by workflow: the demo's tables, and the report's."""
    for title, breakdown, heading in (
        ("Cost by agent", by_agent, "agent"),
        ("Cost by workflow", by_workflow, "workflow"),
    ):
        out.table(
            title,
            [heading, "cost (USD)", "tokens", "calls"],
            [
                (
                    i["attributionValue"],
                    i["totalCost"],
                    _quantity(i["totalQuantity"]),
                    i["eventCount"],
                )
                for i in breakdown["items"]
            ],
        )


def summary_table(out: Output, summary: Any) -> None:
    """The usage summary in words, not the API's camelCase keys."""
    out.table(
        "Usage summary",
        ["measure", "value"],
        [
            ("events", summary["totalEvents"]),
            ("tokens", _quantity(summary["totalQuantity"])),
            ("cost (USD)", summary["totalCost"]),
            ("metrics", summary["metricCount"]),
            ("first event", summary["firstEventAt"]),
            ("last event", summary["lastEventAt"]),
        ],
    )


def _quantity(value: float) -> Any:
    """A whole quantity (tokens, calls) as an integer: `500`, not `500.0000`."""
    return int(value) if float(value).is_integer() else value


def run_report(args: argparse.Namespace) -> int:
    from ._cli import bearlumen_client, checked_answer
    from ._types import CostBreakdownResponse, UsageSummary

    with bearlumen_client(args, buffered=False) as client:
        window = {"start_date": args.start, "end_date": args.end}
        by_agent = checked_answer(
            client.cost_attribution.by_agent(**window),
            CostBreakdownResponse,
            "cost_attribution.by_agent",
        )
        by_workflow = checked_answer(
            client.cost_attribution.by_workflow(**window),
            CostBreakdownResponse,
            "cost_attribution.by_workflow",
        )
        summary = checked_answer(client.usage.summary(**window), UsageSummary, "usage.summary")
    if args.json:
        print(
            json.dumps(
                {"byAgent": by_agent, "byWorkflow": by_workflow, "summary": summary}, indent=2
            )
        )
        return 0
    out = Output(plain=args.plain)
    cost_tables(out, by_agent, by_workflow)
    summary_table(out, summary)
    return 0


def add_demo_commands(commands: Any) -> None:
    demo = commands.add_parser("demo", help="meter a simulated AI product against a local server")
    demo.add_argument("--events", type=int, default=2_000, help="LLM calls to make (default 2000)")
    demo.add_argument("--threads", type=int, default=8, help="threads making calls (default 8)")
    demo.add_argument(
        "--faults", metavar="SPEC", help="server faults, e.g. rate_429=0.2,retry_after=0.2"
    )
    demo.add_argument("--db", help="SQLite file for the local server (default: in memory)")
    demo.add_argument("--base-url", help="use this running server instead of starting one")
    demo.add_argument(
        "--api-key", type=ApiKey, help="API key (default: BEARLUMEN_API_KEY, or a fresh test key)"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    demo.add_argument(
        "--flush-timeout", type=float, default=300.0, help="seconds to wait for delivery"
    )
    demo.add_argument("--plain", action="store_true", help="plain text even when rich is installed")
    demo.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep the local server up after the demo, to see its costs in the dashboard",
    )
    demo.set_defaults(run=run_demo)

    report = commands.add_parser("report", help="cost attribution and usage summary of a server")
    report.add_argument("--start", required=True, help="start date, inclusive (2024-01-01)")
    report.add_argument("--end", required=True, help="end date, exclusive")
    report.add_argument(
        "--base-url", help="server (default: BEARLUMEN_BASE_URL, then the hosted API)"
    )
    report.add_argument("--api-key", type=ApiKey, help="API key (default: BEARLUMEN_API_KEY)")
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report.add_argument(
        "--plain", action="store_true", help="plain text even when rich is installed"
    )
    report.set_defaults(run=run_report)
