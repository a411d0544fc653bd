"""How fast can a pure-Python `record()` be on this interpreter? Floors beside the real call.

Issue 11 asks for `record()` at p50 <= 1.5 µs for the README's typical event. This prints the
p50 / p99 of four functions with `usage.record`'s signature, called exactly as record_cost.py
calls `record()` (keyword arguments, one clock read around each call), in the same process:

- empty:      the call alone, no body;
- skeleton:   the timestamp, the queued tuple, the key claimed in a dict, the deque append and
              the result dict: what any queueing record() does, with no check at all;
- min checks: the skeleton plus the least the contract needs checked at the call (type and
              length of each name, the key, the quantity's range, a metadata copy with each
              value's type), and none of the rest (byte bounds, cost check, queue bounds, key
              generations, an exact-str guard, a worker to start);
- record():   the real call, in memory (no worker runs: the queue just grows).

The gap between "min checks" and the goal is what no rearrangement of the real call can close
in pure Python (benchmarks/RESULTS.md).

    python benchmarks/record_floor.py [--calls 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import deque
from typing import Any, Callable, Optional

from record_cost import timed_calls

import bearlumen

METADATA = {"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50}
NAMES = {"token_usage", "llm_tokens", "support-bot", "customer-onboarding", "eu_123"}
_now = time.time
pending: deque[tuple[Any, ...]] = deque()
claimed: dict[str, tuple[Any, ...]] = {}


def empty(
    event_type: str,
    metric_name: str,
    quantity: float,
    idempotency_key: Optional[str] = None,
    *,
    timestamp: Any = None,
    subscription_id: Optional[str] = None,
    end_user_id: Optional[str] = None,
    agent_id: Optional[str] = None,
    workflow_id: Optional[str] = None,
    metadata: Optional[dict[str, Any]] = None,
) -> Any:
    return None


def skeleton(
    event_type: str,
    metric_name: str,
    quantity: float,
    idempotency_key: Optional[str] = None,
    *,
    timestamp: Any = None,
    subscription_id: Optional[str] = None,
    end_user_id: Optional[str] = None,
    agent_id: Optional[str] = None,
    workflow_id: Optional[str] = None,
    metadata: Optional[dict[str, Any]] = None,
) -> Any:
    event = (
        event_type, metric_name, quantity, idempotency_key, _now(),
        subscription_id, end_user_id, agent_id, workflow_id, metadata,
    )  # fmt: skip
    if claimed.setdefault(idempotency_key, event) is not event:  # type: ignore[arg-type]
        return {"recorded": False, "idempotency_key": idempotency_key}
    pending.append(event)
    return {"recorded": True, "idempotency_key": idempotency_key}


def min_checks(
    event_type: str,
    metric_name: str,
    quantity: float,
    idempotency_key: Optional[str] = None,
    *,
    timestamp: Any = None,
    subscription_id: Optional[str] = None,
    end_user_id: Optional[str] = None,
    agent_id: Optional[str] = None,
    workflow_id: Optional[str] = None,
    metadata: Optional[dict[str, Any]] = None,
) -> Any:
    if (
        type(event_type) is not str
        or event_type not in NAMES
        or type(metric_name) is not str
        or metric_name not in NAMES
        or (type(quantity) is not int and type(quantity) is not float)
        or not 0 <= quantity <= 2**53
        or (
            idempotency_key is not None
            and (
                type(idempotency_key) is not str
                or not 0 < len(idempotency_key) <= 255
                or "\x00" in idempotency_key
                or not idempotency_key.isascii()
            )
        )
        or (
            subscription_id is not None
            and (type(subscription_id) is not str or subscription_id not in NAMES)
        )
        or (end_user_id is not None and (type(end_user_id) is not str or end_user_id not in NAMES))
        or (agent_id is not None and (type(agent_id) is not str or agent_id not in NAMES))
        or (workflow_id is not None and (type(workflow_id) is not str or workflow_id not in NAMES))
    ):
        raise ValueError("not the benchmark's event")
    if metadata is not None:
        metadata = metadata.copy()
        for key, value in metadata.items():
            kind = type(value)
            if type(key) is not str or (kind is str and not value.isascii()):
                raise ValueError("not the benchmark's metadata")
            if kind is float and value - value:
                raise ValueError("not the benchmark's metadata")
    return skeleton(
        event_type, metric_name, quantity, idempotency_key,
        subscription_id=subscription_id, end_user_id=end_user_id, agent_id=agent_id,
        workflow_id=workflow_id, metadata=metadata,
    )  # fmt: skip


def percentiles(record: Callable[..., Any], calls: int, tag: str) -> tuple[float, float]:
    samples = timed_calls(record, [f"invoice-{tag}-{n}-summary" for n in range(calls)], METADATA)
    return samples[calls // 2] / 1000, samples[int(calls * 0.99)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = bearlumen.Client(
        api_key="sk_bench",
        base_url="http://127.0.0.1:9",
        max_queue_size=10**8,
        max_queue_bytes=2**40,
    )
    shipper = client._shipper
    shipper._accepting = True  # no worker: the caller's thread alone, as for the floors
    rows = [("empty", empty), ("skeleton", skeleton), ("min checks", min_checks)]
    rows.append(("record()", client.usage.record))
    best: dict[str, tuple[float, float]] = {}
    for round_ in range(args.rounds):  # interleaved, so a busy spell hits every row alike
        for name, record in rows:
            result = percentiles(record, args.calls, f"{round_}-{name}")
            if name not in best or result[0] < best[name][0]:
                best[name] = result
            pending.clear()
            claimed.clear()
            shipper.pending_events.clear()
            gc.collect()
    print(f"# CPython {sys.version.split()[0]}; {args.calls:,} calls, best p50 of {args.rounds}")
    for name, _ in rows:
        p50, p99 = best[name]
        print(f"{name:10s}: p50 {p50:.2f} µs  p99 {p99:.2f} µs")


if __name__ == "__main__":
    main()
