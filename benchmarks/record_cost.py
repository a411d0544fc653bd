"""What one `usage.record()` costs the caller, plain and in crash-safe mode (`spool_dir`).

One thread, N calls, each timed with perf_counter_ns, against the loopback sink (`_sink.py`),
then flush. Prints p50 / p99 / p99.9 per call and calls/s for each mode.

    python benchmarks/record_cost.py [--calls 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _spawn import SINK, spawn

import bearlumen


def measure(url: str, calls: int, **options: object) -> str:
    client = bearlumen.Client(
        api_key="sk_bench", base_url=url, max_queue_size=calls + 1000, **options
    )  # type: ignore[arg-type]
    record = client.usage.record
    for _ in range(200):
        record("token_usage", "llm_tokens", 1200)
    client.flush()
    clock = time.perf_counter_ns
    samples = []
    began = time.perf_counter()
    for _ in range(calls):
        t0 = clock()
        record(
            event_type="token_usage",
            metric_name="llm_tokens",
            quantity=1200,
            agent_id="support-bot",
            workflow_id="onboarding",
            metadata={"model": "gpt-4o-mini", "provider_cost_usd": 0.00042},
        )
        samples.append(clock() - t0)
    produced = time.perf_counter() - began
    result = client.close(timeout=120)
    samples.sort()

    def pct(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000

    return (
        f"p50 {pct(0.5):.2f} µs  p99 {pct(0.99):.2f} µs  p99.9 {pct(0.999):.2f} µs  "
        f"{calls / produced:,.0f} calls/s  delivered {result['sent']:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    with spawn(SINK) as url:
        print(f"record() in memory         : {measure(url, args.calls)}")
        with tempfile.TemporaryDirectory() as spool:
            print(f"record() with spool_dir    : {measure(url, args.calls, spool_dir=spool)}")


if __name__ == "__main__":
    main()
