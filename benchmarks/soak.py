"""Soak: 8 producer threads for minutes against the local server with faults on.

Checks, and prints: the client's memory stays flat (its queue is bounded), the server never
fails on its own ("database is locked" would show as 5xx beyond the injected ones), and the
totals match exactly: events recorded by the app = events stored by the server + events the
client reported dropped (blocking on overflow makes that zero) and nothing failed. Exits 1 when
any check fails, memory included: the peak of the last third of the RSS samples may exceed the
peak of the first third (the first sample, warm-up, left out) by at most --max-growth-mb.

    python benchmarks/soak.py [--seconds 120] [--rate 20000] [--max-growth-mb 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import sys
import tempfile
import threading
import time

import httpx
from _spawn import bearlumen_serve, spawn

import bearlumen

FAULTS = "rate_429=0.05,retry_after=0.2,rate_503=0.05,rate_drop=0.02,rate_store_500=0.03,rate_latency=0.05,latency_ms=50,seed=5"


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--rate", type=int, default=6_000, help="events/s, all producers together")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:  # the database goes with the run
        db = os.path.join(folder, "soak.sqlite3")
        with spawn(bearlumen_serve("--db", db, "--faults", FAULTS)) as url:
            ok = soak(url, args)
    sys.exit(0 if ok else 1)


def soak(url: str, args: argparse.Namespace) -> bool:
    key = "sk_soak_" + secrets.token_hex(4)
    client = bearlumen.Client(api_key=key, base_url=url, max_queue_size=50_000, on_overflow="block")
    produced = [0] * args.threads
    stop = threading.Event()
    per_thread_rate = args.rate / args.threads

    def producer(index: int) -> None:
        began = time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - began) * per_thread_rate)
            for _ in range(min(due - produced[index], 1000)):  # never far behind the stop
                client.usage.record(
                    "token_usage", "llm_tokens", 1000, agent_id=f"agent-{index}",
                    metadata={"model": "gpt-4o-mini", "provider_cost_usd": 0.0001},
                )  # fmt: skip
                produced[index] += 1
            stop.wait(0.005)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(args.threads)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    samples = []
    while time.perf_counter() - start < args.seconds:
        stop.wait(min(10, args.seconds / 6))
        stats = client.stats()
        samples.append(rss_mb())
        print(
            f"t={time.perf_counter() - start:5.0f}s produced={sum(produced):>9,} queued={stats['queued']:>6,}"
            f" recorded={stats['recorded']:>9,} retries={stats['retries']:>5,} rss={samples[-1]:.1f} MB",
            flush=True,
        )
    stop.set()
    for t in threads:
        t.join()
    result = client.close(timeout=300)
    admin = httpx.get(url + "/_admin/stats").json()
    total = sum(produced)
    stored = admin["eventsStored"]
    injected = admin["faults"]["injected"]
    by_status = admin["requestsByStatus"]
    unexplained_5xx = (
        sum(v for k, v in by_status.items() if k.startswith("5"))
        - injected.get("500", 0)
        - injected.get("503", 0)
        - injected.get("store_500", 0)
    )
    print(
        f"produced {total:,} in {args.seconds:.0f}s by {args.threads} threads; stored {stored:,};"
        f" dropped {result['dropped']}; failed {result['failed']}; retries {result['retries']:,}"
    )
    print(
        f"client RSS first/peak/last sample: {samples[0]:.1f} / {max(samples):.1f} / {samples[-1]:.1f} MB;"
        f" peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB"
    )
    print(
        f"server answers by status: {by_status}; injected: {injected}; unexplained 5xx: {unexplained_5xx}"
    )
    totals_ok = (
        stored == total - result["dropped"] and result["failed"] == 0 and unexplained_5xx == 0
    )
    print("TOTALS MATCH EXACTLY" if totals_ok else "MISMATCH")
    growth = memory_growth(samples)
    memory_ok = growth <= args.max_growth_mb
    print(
        f"memory growth (peak of last third - peak of first third): {growth:.1f} MB;"
        f" {'FLAT' if memory_ok else 'GROWING'} (limit {args.max_growth_mb:g} MB)"
    )
    return totals_ok and memory_ok


def memory_growth(samples: list[float]) -> float:
    """How far memory climbed over the run: 0 when it stayed flat, or when too few samples."""
    steady = samples[1:]  # the first sample is warm-up: imports, pools, the first queue fill
    if len(steady) < 3:
        return 0.0
    third = max(1, len(steady) // 3)
    return max(steady[-third:]) - max(steady[:third])


if __name__ == "__main__":
    main()
