"""Memory with the server down: does the client stay within `max_queue_bytes`?

Each run is a fresh child process: a `Client` with the default bounds (64 MiB `max_queue_bytes`,
8 batches in flight) whose base URL has nothing listening, fed `--events` events each carrying
`--metadata-kb` KB of metadata (each its own string, as real metadata is). The child prints its
RSS before the first event and its peak RSS (`ru_maxrss`) once every batch that can be in flight
has been taken and encoded, and what the client holds (queued, in flight, dropped).
`--tracemalloc` also prints the memory Python itself has allocated then (tracemalloc's count,
which leaves out the interpreter's own and the allocator's slack; its bookkeeping inflates RSS).

    python benchmarks/memory_bound.py [--events 30000] [--metadata-kb 10] [--max-queue-mb 64]
                                      [--tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def unused_loopback_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        host, port = sock.getsockname()
    return f"http://{host}:{port}"


def child(events: int, metadata_kb: int, max_queue_mb: int, settle: float, traced: bool) -> None:
    import tracemalloc

    import bearlumen

    if traced:
        tracemalloc.start()

    client = bearlumen.Client(
        api_key="sk_bench_memory",
        base_url=unused_loopback_url(),
        max_queue_bytes=max_queue_mb * 2**20,
        shutdown_timeout=0.1,
    )
    before = rss_mb()
    for i in range(events):
        blob = os.urandom(metadata_kb * 512).hex()  # metadata_kb KB of text, a new string each
        client.usage.record("token_usage", "llm_tokens", i, metadata={"blob": blob, "i": i})
    # The senders take and encode their batches while the worker waits for one to come back.
    waited = threading.Event()
    waited.wait(settle)
    stats = client.stats()
    report = {
        "rss_before_mb": round(before, 1),
        "rss_now_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **{name: stats[name] for name in ("queued", "in_flight", "dropped")},  # type: ignore[literal-required]
    }
    if traced:
        report["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    client.close(timeout=0.1)
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--metadata-kb", type=int, default=10)
    parser.add_argument("--max-queue-mb", type=int, default=64)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--tracemalloc", action="store_true", help="also count Python's memory")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.events, args.metadata_kb, args.max_queue_mb, args.settle, args.tracemalloc)
        return
    command = [
        sys.executable, __file__, "--child", "--events", str(args.events),
        "--metadata-kb", str(args.metadata_kb), "--max-queue-mb", str(args.max_queue_mb),
        "--settle", str(args.settle), *(["--tracemalloc"] if args.tracemalloc else []),
    ]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"{args.events} events x {args.metadata_kb} KB metadata, server down,"
        f" max_queue_bytes={args.max_queue_mb} MiB: peak RSS {report['peak_rss_mb']} MB"
        f" (RSS before the first event {report['rss_before_mb']} MB, at the end"
        f" {report['rss_now_mb']} MB); queued {report['queued']}, in flight"
        f" {report['in_flight']}, dropped {report['dropped']}"
        + (f"; Python's own allocations {report['traced_mb']} MB" if "traced_mb" in report else "")
        + f"  [{time.perf_counter() - began:.1f} s]"
    )


if __name__ == "__main__":
    main()
