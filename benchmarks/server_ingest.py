"""Events per second persisted by the local server from 1000-event batches.

Starts `bearlumen serve` (SQLite file in a temporary folder, WAL) as its own process, then
posts pre-encoded 1000-event batches from 1 and from 4 client threads, each event with its own
idempotency key, and divides the events stored (checked on the server afterwards) by the time.
Also prints the server's CPU time per 1000 events (steadier than events/s on a shared machine),
a sustained run long enough to pass the store's staging bound (`MAX_STAGED_ROWS`), so that
moving staged events into the indexed table is paid for inside the measurement, and a last run
with an `Idempotency-Key` header on each batch, as the SDK sends (the server stores each answer).

    python benchmarks/server_ingest.py [--batches 100] [--sustained-batches 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import tempfile
import threading
import time

import httpx
from _spawn import bearlumen_serve, cpu_seconds, spawn_child

from bearlumen._http import NO_DELAY


def batch_body(prefix: str, n: int) -> bytes:
    events = [
        {
            "eventType": "token_usage",
            "metricName": "llm_tokens",
            "quantity": 1200 + i,
            "idempotencyKey": f"{prefix}-{i}",
            "timestamp": "2026-11-25T12:00:00.000000Z",
            "agentId": f"agent-{i % 5}",
            "workflowId": f"flow-{i % 3}",
            "endUserId": "eu_bench",
            "metadata": {"model": "gpt-4o-mini", "provider_cost_usd": 0.00042},
        }
        for i in range(n)
    ]
    return json.dumps({"events": events}).encode()


def run(url: str, clients: int, batches: int, request_keys: bool = False) -> float:
    key = "sk_bench_" + secrets.token_hex(4)
    bodies = [
        batch_body(f"{c}-{b}", 1000) for c in range(clients) for b in range(batches // clients)
    ]
    per_client = [bodies[c::clients] for c in range(clients)]
    barrier = threading.Barrier(clients + 1)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post_all(client: int, mine: list[bytes]) -> None:
        transport = httpx.HTTPTransport(socket_options=NO_DELAY)
        with httpx.Client(headers=headers, timeout=60, transport=transport) as http:
            barrier.wait()
            for number, body in enumerate(mine):
                # The SDK sends an Idempotency-Key with each batch: the server then stores the
                # answer, to replay it to a retry.
                extra = {"Idempotency-Key": f"{key}-{client}-{number}"} if request_keys else {}
                answer = http.post(url + "/v1/usage/events/batch", content=body, headers=extra)
                assert answer.status_code == 200 and answer.json()["recorded_count"] == 1000, (
                    answer.text[:200]
                )

    threads = [threading.Thread(target=post_all, args=(c, m)) for c, m in enumerate(per_client)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    stored = httpx.get(url + "/v1/usage/summary", headers=headers).json()["totalEvents"]
    assert stored == len(bodies) * 1000, stored
    return stored / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--sustained-batches", type=int, default=400)
    parser.add_argument("--db", default=None, help="SQLite file (default: a temporary file)")
    args = parser.parse_args()
    # A temporary database is removed afterwards: ~0.5 GB a run (it once filled the disk).
    with tempfile.TemporaryDirectory() as folder:
        db = args.db or os.path.join(folder, "ingest.sqlite3")
        measure(db, args)


def measure(db: str, args: argparse.Namespace) -> None:
    with spawn_child(bearlumen_serve("--db", db)) as (url, server):
        print(
            f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores; db {db}"
        )
        runs = [
            (1, args.batches, False),
            (4, args.batches, False),
            (4, args.sustained_batches, False),
        ]
        runs.append((4, args.batches, True))
        for clients, batches, request_keys in runs:
            cpu_before = cpu_seconds(server.pid)
            rate = run(url, clients, batches, request_keys)
            cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1000 / batches
            keyed = ", Idempotency-Key per batch as the SDK sends" if request_keys else ""
            print(
                f"server ingest, {clients} client(s), {batches} x 1000-event batches{keyed}:"
                f" {rate:,.0f} events/s (server CPU {cpu_ms:.1f} ms per 1000 events)"
            )


if __name__ == "__main__":
    main()
