"""Machine instructions per `usage.record()` call, counted by valgrind's callgrind.

Wall-clock figures (record_cost.py) move with whatever else the machine does; an instruction
count does not, so this is the before/after figure for a change to the hot path on a busy
machine. Each line runs the statement N times and 0 times under callgrind and divides the
difference by N. No worker runs (the shipper is told it already accepts), so the count is
record() alone: the caller's thread, as the README's typical event costs it.

    python benchmarks/record_instructions.py [--calls 5000]

Needs `valgrind` (Debian: apt install valgrind). Slow: about a minute per line.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

SETUP = """
import bearlumen
from bearlumen import _validation
client = bearlumen.Client(api_key="sk_bench", base_url="http://127.0.0.1:9",
                          max_queue_size=10**7, max_queue_bytes=2**40)
shipper = client._shipper
shipper._accepting = True  # no worker: count record() alone
record = client.usage.record
metadata = {"model": "gpt-4-turbo", "provider": "openai", "provider_cost_usd": 4.50}
next_key = iter([f"invoice-{i}-summary" for i in range(%(calls)d)]).__next__
event = ("token_usage", "llm_tokens", 150000, "k", 1.0, None, "eu_123", "support-bot",
         "customer-onboarding", metadata)
# The heap left by the imports out of the cyclic GC's sight: otherwise whether a full collection
# of it falls inside the N calls moves the count by ~4,000 a call (28,173 against 24,201 for the
# same record(), after an unrelated change to what `import bearlumen` loads).
import gc
gc.collect()
gc.freeze()
"""
README_EVENT = (
    "record(event_type='token_usage', metric_name='llm_tokens', quantity=150000, "
    "idempotency_key=next_key(), agent_id='support-bot', workflow_id='customer-onboarding', "
    "end_user_id='eu_123'%s)"
)
LINES = [
    ("record(), the README's typical event", README_EVENT % ", metadata=metadata"),
    ("record(), the same without metadata", README_EVENT % ""),
    (
        "  of which check_event()",
        "_validation.check_event('token_usage', 'llm_tokens', 150000, 'invoice-1-summary', "
        "None, 'eu_123', 'support-bot', 'customer-onboarding')",
    ),
    ("  of which metadata_snapshot()", "_validation.metadata_snapshot(metadata)"),
    ("  of which claim_key() (with next_key())", "shipper.claim_key(next_key(), event)"),
    ("  of which enqueue()", "shipper.enqueue(event)"),
]


def instructions(setup: str, statement: str, calls: int) -> int:
    code = f"{setup}\nfor _ in range({calls}):\n    {statement}\n"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=True,
        # str hashes are salted per process, and dict probing follows them: a fixed salt makes
        # the count repeatable (about ±3% between salts otherwise).
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    setup = SETUP % {"calls": 2 * args.calls}
    empty = instructions(setup, "pass", args.calls)
    print(f"# CPython {sys.version.split()[0]}; instructions per call, {args.calls:,} calls")
    for label, statement in LINES:
        per_call = (instructions(setup, statement, args.calls) - empty) / args.calls
        print(f"{label:45s}: {per_call:8,.0f}")


if __name__ == "__main__":
    main()
