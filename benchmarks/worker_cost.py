"""What the background worker spends per event, stage by stage, in one thread and without HTTP.

For N batches of 1000 of the README's typical event (as `record()` queues it: a float timestamp,
three ids, a key of the caller's and a metadata snapshot), each stage the worker and its
senders run per batch is timed on its own and printed as ns/event (the best of a few rounds,
and in the thread's CPU time, not wall time: the machine is often shared, and time spent
waiting for a core is not the worker's cost):

- take:   `Shipper._take_chunk` pops the batch off the queue (its bytes stay held until it lands)
- encode: `encode_batch`, the request body
- answer: reading the server's answer as a sender does (`batch_answer_reader`)
- tally:  `Senders._tally`, counting the per-event results

The answer is what the local server sends for a batch it recorded whole. The issue's goal for
the worker's whole cost is <= 1 µs per event (issue 14, item 3).

`--dicts` encodes the way the worker did before `batch_body` (a dict per event, then
`to_json`), which is still its way for any batch `batch_body` leaves alone: the before and the
after from one tree, back to back.

    python benchmarks/worker_cost.py [--batches 200] [--rounds 5] [--dicts]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import bearlumen
import bearlumen._batch_codec
from bearlumen._batch_codec import batch_answer_reader, encode_batch
from bearlumen._events import QueuedEvent
from bearlumen._shipper import Shipper
from bearlumen._validation import metadata_snapshot

README_METADATA = {"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50}
NESTED_METADATA = {
    "model": "gpt-4-turbo",
    "provider_cost_usd": 4.50,
    "usage": {"input": 1200, "output": 300, "cached": [0, 128]},
}
BATCH = 1000


def make_batch(batch: int, metadata: dict[str, Any]) -> list[QueuedEvent]:
    """1000 events as `usage.record()` queues them (same tuple, same metadata snapshot)."""
    start = time.time()
    return [
        (
            "token_usage",
            "llm_tokens",
            150000,
            f"invoice-{batch}-{index}-summary",
            start + index * 1e-6,  # a batch spans about a millisecond, as in a burst
            None,
            "eu_123",
            "support-bot",
            "customer-onboarding",
            metadata_snapshot(metadata),
        )
        for index in range(BATCH)
    ]


def best_of(rounds: int, run: Callable[[], int]) -> float:
    """The lowest ns per event of `rounds` runs; `run` returns the nanoseconds it measured."""
    return min(run() for _ in range(rounds))


def measure(batches: list[list[QueuedEvent]], shipper: Shipper, rounds: int) -> dict[str, float]:
    events = len(batches) * BATCH
    clock = time.thread_time_ns
    answer_body = json.dumps(
        {
            "recorded_count": BATCH,
            "skipped_count": 0,
            "rejected_count": 0,
            "results": [{"index": index, "status": "recorded"} for index in range(BATCH)],
        },
        separators=(",", ":"),
    ).encode()

    def take() -> int:
        spent = 0
        for chunk in batches:
            shipper.pending_events.extend(chunk)
            shipper._room.held += 512 * len(chunk)
            t0 = clock()
            taken, _ = shipper._take_chunk(BATCH)
            spent += clock() - t0
            assert taken is not None and len(taken.events) == BATCH
            shipper._outcomes.landed(taken)
        return spent

    def encode() -> int:
        t0 = clock()
        for chunk in batches:
            encode_batch(chunk)
        return clock() - t0

    def answer() -> int:
        t0 = clock()
        for chunk in batches:
            batch_answer_reader(len(chunk))(answer_body)
        return clock() - t0

    decoded = batch_answer_reader(BATCH)(answer_body)

    def tally() -> int:
        t0 = clock()
        for chunk in batches:
            shipper._senders._tally(chunk, decoded)
        return clock() - t0

    stages = {"take": take, "encode": encode, "answer": answer, "tally": tally}
    return {name: best_of(rounds, run) / events for name, run in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dicts", action="store_true", help="encode as before batch_body")
    args = parser.parse_args()
    if args.dicts:
        bearlumen._batch_codec.batch_body = lambda chunk: None  # type: ignore[assignment]
    # No worker ever starts (nothing is recorded), so nothing is sent to this address.
    client = bearlumen.Client(api_key="sk_bench", base_url="http://127.0.0.1:9")
    shipper = client._shipper
    assert shipper is not None
    how = "dicts, as before batch_body" if args.dicts else "batch_body"
    print(f"# {args.batches} batches of {BATCH}; ns/event, best of {args.rounds} rounds; {how}")
    for label, metadata in (
        ("README event", README_METADATA),
        ("nested metadata", NESTED_METADATA),
    ):
        batches = [make_batch(number, metadata) for number in range(args.batches)]
        cost = measure(batches, shipper, args.rounds)
        stages = "  ".join(f"{name} {ns:6.0f}" for name, ns in cost.items())
        print(f"{label:16}: {stages}  total {sum(cost.values()):6.0f} ns/event")
    client.close()


if __name__ == "__main__":
    main()
