"""What one `usage.record()` costs the caller, plain and in crash-safe mode (`spool_dir`).

One thread, N calls, each timed with perf_counter_ns, against the loopback sink (`_sink.py`),
then flush. Prints p50 / p99 / p99.9 per call and calls/s for each mode. The events are the
README's typical event (three ids, a key of the caller's and three metadata values), and the
same with nested metadata (the exact path of record()'s metadata check).

    python benchmarks/record_cost.py [--calls 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Callable

from _spawn import SINK, spawn

import bearlumen

README_METADATA = {"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50}
NESTED_METADATA = {
    "model": "gpt-4-turbo",
    "provider_cost_usd": 4.50,
    "usage": {"input": 1200, "output": 300, "cached": [0, 128]},
}


def timed_calls(
    record: Callable[..., object], keys: list[str], metadata: dict[str, object]
) -> list[int]:
    """The README's typical event recorded once per key, each call timed: ns, sorted."""
    clock = time.perf_counter_ns
    samples = []
    for key in keys:
        t0 = clock()
        record(
            event_type="token_usage",
            metric_name="llm_tokens",
            quantity=150000,
            idempotency_key=key,
            agent_id="support-bot",
            workflow_id="customer-onboarding",
            end_user_id="eu_123",
            metadata=metadata,
        )
        samples.append(clock() - t0)
    samples.sort()
    return samples


def measure(url: str, calls: int, metadata: dict[str, object], **options: object) -> str:
    # Bounds far above the run: this measures record(), not what a full queue drops.
    client = bearlumen.Client(
        api_key="sk_bench",
        base_url=url,
        max_queue_size=calls + 1000,
        max_queue_bytes=2**40,
        **options,  # type: ignore[arg-type]
    )
    record = client.usage.record
    for _ in range(200):
        record("token_usage", "llm_tokens", 1200)
    client.flush()
    keys = [f"invoice-{index}-summary" for index in range(calls)]
    began = time.perf_counter()
    samples = timed_calls(record, keys, metadata)
    produced = time.perf_counter() - began
    result = client.close(timeout=120)

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
        print(f"record() in memory         : {measure(url, args.calls, README_METADATA)}")
        print(f"  nested metadata          : {measure(url, args.calls, NESTED_METADATA)}")
        # Past the 100,000 caller keys the client remembers for duplicates (a long-running app).
        long_run = measure(url, 4 * args.calls, README_METADATA)
        print(f"  {4 * args.calls:,} calls, past the key window: {long_run}")
        with tempfile.TemporaryDirectory() as spool:
            line = measure(url, args.calls, README_METADATA, spool_dir=spool)
            print(f"record() with spool_dir    : {line}")


if __name__ == "__main__":
    main()
