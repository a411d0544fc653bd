"""bearlumen against Segment's analytics-python and PostHog's client, in one run, same sink.

For each SDK and 1 or 4 producer threads, a fresh child process makes N calls (`record`,
`track`, `capture`) with the same payload, timing each call; then flushes and reports:
per-call latency p50 / p99 / p99.9 / max, end-to-end events/s (first call until flush returns),
and peak RSS. All SDKs post to the same loopback sink (`_sink.py`), which answers at once.
Queues are sized so that no SDK drops (each reports what it dropped anyway).

    pip install -e ".[bench]"
    python benchmarks/peers.py [--calls 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from _spawn import SINK, bearlumen_serve, spawn

QUEUE = 1_000_000


def make_bearlumen(url: str) -> tuple[Callable[[int], Any], Callable[[], Any], Callable[[], int]]:
    import bearlumen

    client = bearlumen.Client(api_key="sk_bench", base_url=url, max_queue_size=QUEUE)
    record = client.usage.record

    def call(i: int) -> Any:
        return record(
            event_type="token_usage",
            metric_name="llm_tokens",
            quantity=1200,
            agent_id="support-bot",
            workflow_id="onboarding",
            metadata={"model": "gpt-4o-mini", "provider_cost_usd": 0.00042},
        )

    return call, lambda: client.flush(), lambda: client.stats()["dropped"]


PROPERTIES = {
    "metric_name": "llm_tokens",
    "quantity": 1200,
    "agent_id": "support-bot",
    "workflow_id": "onboarding",
    "model": "gpt-4o-mini",
    "provider_cost_usd": 0.00042,
}


def make_segment(url: str) -> tuple[Callable[[int], Any], Callable[[], Any], Callable[[], int]]:
    from segment.analytics import Client

    client = Client("bench-key", host=url, max_queue_size=QUEUE, upload_size=100)
    track = client.track

    def call(i: int) -> Any:
        return track(
            user_id="user-1",
            event="token_usage",
            properties=PROPERTIES,
        )

    return call, client.flush, lambda: 0


def make_posthog(url: str) -> tuple[Callable[[int], Any], Callable[[], Any], Callable[[], int]]:
    from posthog import Posthog

    client = Posthog("bench-key", host=url, max_queue_size=QUEUE, enable_local_evaluation=False)
    capture = client.capture

    def call(i: int) -> Any:
        return capture(
            "token_usage",
            distinct_id="user-1",
            properties=PROPERTIES,
        )

    return call, client.flush, lambda: 0


SDKS = {"bearlumen": make_bearlumen, "segment": make_segment, "posthog": make_posthog}


def child(sdk: str, threads: int, calls: int, url: str) -> None:
    call, flush, dropped = SDKS[sdk](url)
    for i in range(200):  # warm up: imports, first connection, lazy worker start
        call(i)
    flush()
    per_thread = calls // threads
    samples: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    clock = time.perf_counter_ns

    def produce(index: int) -> None:
        mine = samples[index]
        append = mine.append
        start.wait()
        for i in range(per_thread):
            t0 = clock()
            call(i)
            append(clock() - t0)

    workers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    produced = time.perf_counter() - began
    flush()
    elapsed = time.perf_counter() - began
    latencies = sorted(ns for s in samples for ns in s)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000

    print(
        json.dumps(
            {
                "sdk": sdk,
                "threads": threads,
                "calls": len(latencies),
                "p50_us": pct(0.50),
                "p99_us": pct(0.99),
                "p999_us": pct(0.999),
                "max_us": latencies[-1] / 1000,
                "calls_per_s": len(latencies) / produced,
                "e2e_events_per_s": len(latencies) / elapsed,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "dropped": dropped(),
            }
        )
    )


def run_child(sdk: str, threads: int, calls: int, url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", sdk, str(threads), str(calls), url],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--sdks", default="bearlumen,segment,posthog")
    parser.add_argument("--child", nargs=4, metavar=("SDK", "THREADS", "CALLS", "URL"))
    args = parser.parse_args()
    if args.child:
        sdk, threads, calls, url = args.child
        child(sdk, int(threads), int(calls), url)
        return
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}"
    )
    header = f"{'sdk':<10} {'thr':>3} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'max µs':>9} {'calls/s':>10} {'e2e ev/s':>10} {'RSS MB':>7} {'drop':>5}"
    rows = []
    with spawn(SINK) as sink:
        print(f"# sink: {sink}, {args.calls} calls per run")
        print(header)
        for threads in (1, 4):
            for sdk in args.sdks.split(","):
                r = run_child(sdk, threads, args.calls, sink)
                rows.append(r)
                print(
                    f"{sdk:<10} {threads:>3} {r['p50_us']:>8.2f} {r['p99_us']:>8.2f} {r['p999_us']:>9.2f} {r['max_us']:>9.0f}"
                    f" {r['calls_per_s']:>10,.0f} {r['e2e_events_per_s']:>10,.0f} {r['peak_rss_mb']:>7.1f} {r['dropped']:>5}",
                    flush=True,
                )
    with spawn(bearlumen_serve()) as server:
        r = run_child("bearlumen", 1, args.calls, server)
        print(
            f"# bearlumen into the local server (bearlumen serve, :memory:): {r['e2e_events_per_s']:,.0f} events/s end to end, "
            f"record() p50 {r['p50_us']:.2f} µs p99 {r['p99_us']:.2f} µs"
        )


if __name__ == "__main__":
    main()
