"""bearlumen against Segment's analytics-python and PostHog's client, in one run, same sink.

Two measurements, each SDK in a fresh child process, all posting to the same loopback sink
(`_sink.py`), which can answer each POST after a delay (`--latency-ms 50`: a cross-region API):

- burst: 1 or 4 producer threads make N calls (`record`, `track`, `capture`) with the same
  payload as fast as they can, timing each call, then flush: per-call latency p50 / p99 / p99.9 /
  max, end-to-end events/s (first call until flush returns), peak RSS.
- steady: one producer at a steady rate (`--rate 2000` events/s for `--seconds 10`), then flush:
  requests the sink received per event (each request spends the API's rate limit).

Each SDK runs at its defaults and at its best settings for throughput (more consumer threads,
bigger batches, a queue that holds a burst). Every run reports what the SDK dropped (its own
account: return values, on_error, counters) and what the sink received, and checks that
received == calls - dropped: an SDK that loses events without saying so shows `LOST`.

    pip install -e ".[bench]"
    python benchmarks/peers.py [--calls 100000] [--latency-ms 50] [--rate 2000 --seconds 10]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Callable
from urllib.error import HTTPError
from urllib.request import urlopen

from _spawn import bearlumen_serve, sink, spawn

BIG_QUEUE = 1_000_000

# An SDK under test: (call(i), flush(), dropped so far)
Harness = tuple[Callable[[int], Any], Callable[[], Any], Callable[[], int]]


def make_bearlumen(url: str, best: bool) -> Harness:
    import bearlumen

    options: dict[str, Any] = {}
    if best:
        options["max_queue_size"] = BIG_QUEUE
        if "max_in_flight" in inspect.signature(bearlumen.Client).parameters:
            options["max_in_flight"] = 8  # several batches in flight (issue 14 item 1)
    client = bearlumen.Client(api_key="sk_bench", base_url=url, **options)
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

    def lost() -> int:
        stats = client.stats()
        return int(stats["dropped"] + stats["failed"] + stats["rejected"])

    return call, client.flush, lost


PROPERTIES = {
    "metric_name": "llm_tokens",
    "quantity": 1200,
    "agent_id": "support-bot",
    "workflow_id": "onboarding",
    "model": "gpt-4o-mini",
    "provider_cost_usd": 0.00042,
}


class Losses:
    """What a peer SDK said it lost: calls it refused, and batches handed to on_error."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.count += n

    def on_error(self, error: Exception, batch: list[Any]) -> None:
        self.add(len(batch))


def make_segment(url: str, best: bool) -> Harness:
    from segment.analytics import Client

    losses = Losses()
    # best: 4 consumer threads, 1000-event uploads (its 475 KB batch cap allows ~1500 of ours)
    options: dict[str, Any] = (
        {"thread": 4, "upload_size": 1000, "max_queue_size": BIG_QUEUE} if best else {}
    )
    client = Client("bench-key", host=url, on_error=losses.on_error, **options)
    track = client.track

    def call(i: int) -> Any:
        queued, _ = track(user_id="user-1", event="token_usage", properties=PROPERTIES)
        if not queued:  # queue full: logged and dropped
            losses.add(1)

    return call, client.flush, lambda: losses.count


def make_posthog(url: str, best: bool) -> Harness:
    from posthog import Posthog

    losses = Losses()
    options: dict[str, Any] = (
        {"thread": 4, "flush_at": 1000, "max_queue_size": BIG_QUEUE} if best else {}
    )
    client = Posthog(
        "bench-key",
        host=url,
        on_error=losses.on_error,
        enable_local_evaluation=False,
        **options,
    )
    capture = client.capture

    def call(i: int) -> Any:
        if capture("token_usage", distinct_id="user-1", properties=PROPERTIES) is None:
            losses.add(1)  # not queued (queue full)

    return call, client.flush, lambda: losses.count


SDKS = {"bearlumen": make_bearlumen, "segment": make_segment, "posthog": make_posthog}


def sink_counts(url: str) -> dict[str, int]:
    """The sink's counts; zeros from a server that is not the sink (`bearlumen serve`)."""
    try:
        with urlopen(url + "/stats") as answer:
            return dict(json.loads(answer.read()))
    except HTTPError:
        return {"requests": 0, "bytes": 0, "events": 0}


def burst(call: Callable[[int], Any], threads: int, calls: int) -> dict[str, Any]:
    per_thread = calls // threads
    samples: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    clock = time.perf_counter_ns

    def produce(index: int) -> None:
        append = samples[index].append
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
    latencies = sorted(ns for s in samples for ns in s)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000

    return {
        "calls": len(latencies),
        "began": began,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": latencies[-1] / 1000,
        "calls_per_s": len(latencies) / produced,
    }


def steady(call: Callable[[int], Any], rate: float, seconds: float) -> dict[str, Any]:
    """Calls at `rate` per second, in ticks of 10 ms (a benchmark may sleep; a test may not)."""
    total = int(rate * seconds)
    per_tick = max(1, int(rate / 100))
    began = time.perf_counter()
    for done in range(0, total, per_tick):
        due = began + done / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        for i in range(done, min(total, done + per_tick)):
            call(i)
    return {"calls": total, "began": began}


def child(sdk: str, config: str, mode: str, a: float, b: float, url: str) -> None:
    call, flush, lost = SDKS[sdk](url, config == "best")
    for i in range(200):  # warm up: imports, first connection, lazy worker start
        call(i)
    flush()
    lost_before, sink_before = lost(), sink_counts(url)
    result = burst(call, int(a), int(b)) if mode == "burst" else steady(call, a, b)
    flush()
    elapsed = time.perf_counter() - result.pop("began")
    sink_after = sink_counts(url)
    print(
        json.dumps(
            {
                **result,
                "e2e_events_per_s": result["calls"] / elapsed,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "dropped": lost() - lost_before,
                "received": sink_after["events"] - sink_before["events"],
                "requests": sink_after["requests"] - sink_before["requests"],
            }
        )
    )


def run_child(sdk: str, config: str, mode: str, a: float, b: float, url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", sdk, config, mode, str(a), str(b), url],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def check(r: dict[str, Any]) -> str:
    """Did the sink get every event the SDK did not report as lost?"""
    expected = r["calls"] - r["dropped"]
    if r["received"] == expected:
        return "ok"
    return f"LOST {expected - r['received']:,}" if r["received"] < expected else "EXTRA"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the sink's answer delay")
    parser.add_argument("--rate", type=float, default=2000.0, help="steady run: events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady run: duration")
    parser.add_argument("--sdks", default="bearlumen,segment,posthog")
    parser.add_argument("--configs", default="default,best")
    parser.add_argument("--child", nargs=6, metavar=("SDK", "CONFIG", "MODE", "A", "B", "URL"))
    args = parser.parse_args()
    if args.child:
        sdk, config, mode, a, b, url = args.child
        child(sdk, config, mode, float(a), float(b), url)
        return
    sdks, configs = args.sdks.split(","), args.configs.split(",")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}"
    )
    with spawn(sink(args.latency_ms)) as url:
        print(f"# sink: {url}, answers after {args.latency_ms:g} ms; burst of {args.calls} calls")
        print(
            f"{'sdk':<10} {'config':<7} {'thr':>3} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'max µs':>9}"
            f" {'calls/s':>10} {'e2e ev/s':>10} {'RSS MB':>7} {'reqs':>6} {'dropped':>8} {'received':>9}  check"
        )
        for threads in (1, 4):
            for config in configs:
                for sdk in sdks:
                    r = run_child(sdk, config, "burst", threads, args.calls, url)
                    print(
                        f"{sdk:<10} {config:<7} {threads:>3} {r['p50_us']:>8.2f} {r['p99_us']:>8.2f} {r['p999_us']:>9.2f} {r['max_us']:>9.0f}"
                        f" {r['calls_per_s']:>10,.0f} {r['e2e_events_per_s']:>10,.0f} {r['peak_rss_mb']:>7.1f} {r['requests']:>6,}"
                        f" {r['dropped']:>8,} {r['received']:>9,}  {check(r)}",
                        flush=True,
                    )
        print(f"# steady: {args.rate:,.0f} events/s for {args.seconds:g} s, one producer")
        print(
            f"{'sdk':<10} {'config':<7} {'events':>8} {'requests':>9} {'events/req':>10} {'req/1000 ev':>11} {'dropped':>8} {'received':>9}  check"
        )
        for config in configs:
            for sdk in sdks:
                r = run_child(sdk, config, "steady", args.rate, args.seconds, url)
                per_request = r["received"] / r["requests"] if r["requests"] else 0.0
                print(
                    f"{sdk:<10} {config:<7} {r['calls']:>8,} {r['requests']:>9,} {per_request:>10.1f}"
                    f" {1000 * r['requests'] / max(1, r['calls']):>11.2f} {r['dropped']:>8,} {r['received']:>9,}  {check(r)}",
                    flush=True,
                )
    if not args.latency_ms:
        with spawn(bearlumen_serve()) as server:
            r = run_child("bearlumen", "default", "burst", 1, args.calls, server)
            print(
                f"# bearlumen into the local server (bearlumen serve, :memory:): {r['e2e_events_per_s']:,.0f} events/s end to end, "
                f"record() p50 {r['p50_us']:.2f} µs p99 {r['p99_us']:.2f} µs"
            )


if __name__ == "__main__":
    main()
