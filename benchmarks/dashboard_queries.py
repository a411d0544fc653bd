"""How long each query behind the dashboard's pages takes on a store of 1 million events.

Fills a temporary SQLite store (a file, WAL, as `bearlumen serve --db` keeps it) with one
tenant's LLM-call events over 30 days, through the store's own batch path (`record_events`,
1000 rows a call, each with its idempotency key and client.llm's metadata): 8 agents, 6
workflows, 6 models (one of them unpriced), 500 end users, 100 subscriptions. Then times:

- the rollup's one-time catch-up on the whole file (what the first page view after an upgrade,
  or after opening an old file, pays once), and its catch-up after a 1000-event batch (what a
  live page pays per poll while events arrive);
- each page's queries, best and median of 5 runs: the overview's (totals, the chart by each
  grouping, daily and hourly, the top end users and subscriptions), the breakdowns, the events
  page first, filtered and paged.

The temporary database is deleted at the end.

    python benchmarks/dashboard_queries.py [--events 1000000] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from typing import Any, Callable

from bearlumen.server.dashboard.queries import CATCH_UP_CHUNK, CHUNKS_PER_READ, Dashboard, Period
from bearlumen.server.store import Store, nanos

AGENTS = [f"agent-{n}" for n in range(8)]
WORKFLOWS = [f"workflow-{n}" for n in range(6)]
MODELS = ["gpt-4o-mini", "gpt-4o", "o4-mini", "claude-haiku-4-5", "claude-sonnet-4-6", "mystery"]
LAST_DAY = date(2026, 11, 30)


def rows(count: int, days: int, seed: int = 1) -> list[list[Any]]:
    """`count` storage rows, in the order of EventStore.record_events' docstring."""
    rng = random.Random(seed)
    first = LAST_DAY - timedelta(days=days - 1)
    seconds = days * 86400
    made = []
    for n in range(count):
        at = first.toordinal() * 86400 + n * seconds // count  # in time order, as they arrive
        day = date.fromordinal(at // 86400)
        second = at % 86400
        ts = f"{day.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.000000Z"
        agent = rng.randrange(len(AGENTS))
        model = MODELS[agent % len(MODELS)]
        priced = model != "mystery"
        cost = rng.random() / 100 if priced else None
        metadata = {
            "provider": "openai",
            "model": model,
            "input_tokens": rng.randrange(100, 5000),
            "output_tokens": rng.randrange(10, 1500),
            "cache_read_tokens": rng.randrange(0, 100),
            "cache_write_tokens": 0,
            "reasoning_tokens": rng.randrange(0, 50),
            "priced": priced,
        }
        if cost is not None:
            metadata["provider_cost_usd"] = cost
        user = rng.randrange(500)
        made.append(
            [
                "token_usage",
                "llm_tokens",
                float(metadata["input_tokens"] + metadata["output_tokens"]),
                f"openai:resp_{n:08d}",
                ts,
                f"sub_{user % 100:03d}",
                f"eu_{user:03d}",
                AGENTS[agent],
                WORKFLOWS[agent % len(WORKFLOWS)],
                json.dumps(metadata),
                nanos(cost or 0),
            ]
        )
    return made


def timed(label: str, action: Callable[[], object], runs: int = 5) -> None:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    print(f"{label:<52} best {min(times):8.1f} ms  median {statistics.median(times):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bearlumen-dashboard-bench-")
    try:
        store = Store(os.path.join(folder, "bench.sqlite3"))
        tenant = store.database.tenant_for_key("sk_bench_dashboard")
        began = time.perf_counter()
        made = rows(args.events, args.days)
        built = time.perf_counter() - began
        began = time.perf_counter()
        for at in range(0, len(made), 1000):
            store.record_events(tenant, made[at : at + 1000])
        store.count_events()
        stored = time.perf_counter() - began
        del made
        print(f"# CPython {platform.python_version()}, {os.cpu_count()} cores, SQLite "
              f"{__import__('sqlite3').sqlite_version}; shared machine")  # fmt: skip
        print(f"# {args.events:,} events over {args.days} days: rows built in {built:.1f} s,"
              f" stored in {stored:.1f} s")  # fmt: skip
        dashboard = Dashboard(store)
        dashboard.events(tenant, Period(LAST_DAY, LAST_DAY), {})  # moves what is staged
        began = time.perf_counter()
        dashboard.catch_up(max_chunks=1)
        print(f"{f'rollup: one chunk (a page view adds up to {CHUNKS_PER_READ})':<52} "
              f"{(time.perf_counter() - began) * 1000:8.0f} ms  ({CATCH_UP_CHUNK:,} events)")  # fmt: skip
        began = time.perf_counter()
        dashboard.catch_up(max_chunks=10**9)
        print(f"{'rollup: the rest of the whole file (once)':<52} "
              f"{(time.perf_counter() - began) * 1000:8.0f} ms")  # fmt: skip
        last = rows(1000, 1, seed=2)
        for n, row in enumerate(last):
            row[3] = f"late-{n}"
        store.record_events(tenant, last)
        timed("rollup: catch-up after a 1000-event batch (live)", dashboard.catch_up, runs=1)

        month = Period(LAST_DAY - timedelta(days=args.days - 1), LAST_DAY)
        week = Period(LAST_DAY - timedelta(days=6), LAST_DAY)
        day = Period(LAST_DAY, LAST_DAY)
        print(f"# overview, {args.days} days")
        timed("totals and distinct end users", lambda: dashboard.totals(tenant, month))
        for group in ("agent", "workflow", "model", "end_user"):
            timed(
                f"chart per day by {group}",
                lambda g=group: dashboard.series(tenant, month, g, "day"),
            )  # type: ignore[misc]
        timed(
            "chart per hour by agent, 7 days",
            lambda: dashboard.series(tenant, week, "agent", "hour"),
        )
        timed(
            "chart per hour by end user, 1 day",
            lambda: dashboard.series(tenant, day, "end_user", "hour"),
        )
        timed("top 10 end users", lambda: dashboard.breakdown(tenant, month, "end_user", 10))
        timed(
            "top 10 subscriptions", lambda: dashboard.breakdown(tenant, month, "subscription", 10)
        )

        def whole_overview() -> None:
            dashboard.catch_up()
            dashboard.totals(tenant, month)
            dashboard.series(tenant, month, "agent", "day")
            dashboard.breakdown(tenant, month, "end_user", 10)
            dashboard.breakdown(tenant, month, "subscription", 10)

        timed("the whole overview page's queries", whole_overview)
        print(f"# breakdowns, {args.days} days")
        for dimension in ("agent", "workflow", "model"):
            timed(
                f"breakdown by {dimension}",
                lambda d=dimension: dashboard.breakdown(tenant, month, d),
            )  # type: ignore[misc]
        print(f"# events page (50 a page), {args.days} days")
        timed("newest", lambda: dashboard.events(tenant, month, {}))
        first = dashboard.events(tenant, month, {})
        timed(
            "the next page (keyset)",
            lambda: dashboard.events(tenant, month, {}, older_than=first.older),
        )
        for name, value in (("agent", "agent-3"), ("workflow", "workflow-2"),
                            ("metric", "llm_tokens"), ("subscription", "sub_042"),
                            ("end_user", "eu_123")):  # fmt: skip
            timed(
                f"filtered by {name}",
                lambda n=name, v=value: dashboard.events(tenant, month, {n: v}),
            )  # type: ignore[misc]
        timed("filtered by an end user with no events",
              lambda: dashboard.events(tenant, month, {"end_user": "eu_nobody"}), runs=1)  # fmt: skip
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
