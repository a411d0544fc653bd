"""Backfill historical usage from a CSV with `record_batch`, 1000 events per request.

The CSV has columns timestamp,agent_id,workflow_id,model,tokens,cost_usd,request_id. Each row's
request_id is its idempotency key, so running the backfill twice records nothing twice.

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_backfill \\
        python examples/backfill.py              # writes usage-sample.csv (2500 rows), sends it
    ... python examples/backfill.py usage.csv    # or sends your own CSV
"""

from __future__ import annotations

import csv
import os
import sys
from typing import Iterator, List

import bearlumen
from bearlumen import UsageRecordInput

CHUNK = 1000  # the batch endpoint's limit


def read_events(path: str) -> Iterator[UsageRecordInput]:
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            yield {
                "event_type": "token_usage",
                "metric_name": "llm_tokens",
                "quantity": int(row["tokens"]),
                "idempotency_key": row["request_id"],
                "timestamp": row["timestamp"],
                "agent_id": row["agent_id"],
                "workflow_id": row["workflow_id"],
                "metadata": {"model": row["model"], "provider_cost_usd": float(row["cost_usd"])},
            }


def backfill(client: bearlumen.Client, path: str) -> dict[str, int]:
    totals = {"recorded": 0, "skipped": 0, "rejected": 0}
    chunk: List[UsageRecordInput] = []

    def send() -> None:
        result = client.usage.record_batch(chunk)
        totals["recorded"] += result["recorded_count"]
        totals["skipped"] += result["skipped_count"]
        totals["rejected"] += result["rejected_count"]
        for item in result["results"]:
            if item["status"] == "rejected":
                print(
                    f"row {item['index']} of this chunk rejected: {item.get('error')}",
                    file=sys.stderr,
                )
        chunk.clear()

    for event in read_events(path):
        chunk.append(event)
        if len(chunk) == CHUNK:
            send()
    if chunk:
        send()
    return totals


def write_sample(path: str, rows: int) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["timestamp", "agent_id", "workflow_id", "model", "tokens", "cost_usd", "request_id"]
        )
        for i in range(rows):
            writer.writerow(
                [f"2024-01-{1 + i % 28:02d}T12:00:00Z", f"agent-{i % 3}", f"flow-{i % 2}", "gpt-4o-mini",
                 1000 + i, f"{(1000 + i) * 0.15 / 1e6:.9f}", f"req-{i}"]
            )  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1:
        csv_path = sys.argv[1]
        if not os.path.isfile(csv_path):
            sys.exit(
                f"backfill.py: no CSV at {csv_path} (run without an argument to write a sample)"
            )
    else:
        csv_path = "usage-sample.csv"
        write_sample(csv_path, 2500)
        print(f"no CSV given: wrote a sample of 2500 rows to {csv_path}")
    with bearlumen.Client(buffered=False) as client:
        print(backfill(client, csv_path))
