"""The shipper's insides, for the tests that must see or steer them: one place, so that moving
code between the shipper's parts (`_shipper.py`, `_room.py`, `_senders.py`, `_outcomes.py`)
changes this file, not the tests.

Tests go through the public seams wherever one shows what they check: `client.stats()`,
`flush()`, `close()`, `on_error`, the local server's faults, an `http_client=` with a transport
of the test's own. What follows is for what no public seam shows, or cannot show without a
sleep: the bytes held against `max_queue_bytes` at a given moment; the batches handed to the
senders and those not back yet (waited for on the senders' own condition, which is notified at
each hand-out and each answer, so a test holds until a batch is out or back without polling);
the moment an answer that came after close() has been counted (the sender threads have ended);
the worker's own thread at a given step (to record while it hands a batch out, or to act as it
stops its senders), which is how a test makes a rare interleaving happen every time.

Child processes import this module too (the repository's root on their `sys.path`: see
`CHILD_PATH`), so that their scripts reach the shipper through the same few names.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, Callable, List, Union

from bearlumen import AsyncClient, Client
from bearlumen._events import QueuedEvent
from bearlumen._shipper import Shipper

if TYPE_CHECKING:  # child processes import this module without pytest's weight
    import pytest

# For a child process's environment: PYTHONPATH with the repository's root first, so that its
# script can `from tests._shipper_probe import ...`.
CHILD_PATH = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
)

AnyClient = Union[Client, AsyncClient]


def shipper_of(client: AnyClient) -> Shipper:
    """The client's shipper (there is none only with `buffered=False`)."""
    shipper = client._shipper
    assert shipper is not None
    return shipper


def held_bytes(shipper: Shipper) -> int:
    """The bytes held against `max_queue_bytes` now: the events queued, the batches in flight."""
    return shipper._room.held


def set_held_bytes(shipper: Shipper, held: int) -> None:
    """What `enqueue` would have counted for events a test puts in the queue by hand."""
    shipper._room.held = held


def take_queued(client: AnyClient) -> List[QueuedEvent]:
    """Every event queued now, taken off the queue (a worker that never sends leaves them)."""
    pending = shipper_of(client).pending_events
    events = list(pending)
    pending.clear()
    return events  # type: ignore[return-value]  # no flush marker: nothing called flush()


def wake_worker(client: AnyClient) -> None:
    """Wake the worker now (it otherwise sleeps until `flush_interval` or `flush_at`)."""
    shipper_of(client).wake()


def wait_for_senders(
    client: AnyClient, until: Callable[[int, AbstractSet[int]], bool], timeout: float = 60
) -> bool:
    """Wait until `until(handed_out, out)` holds: `handed_out` the batches the worker has handed
    to the senders so far, `out` the numbers (0, 1, ... in hand-out order) of those not back.
    Looked at again at each hand-out and each answer; False if `timeout` passed first."""
    senders = shipper_of(client)._senders
    with senders._progress:
        return senders._progress.wait_for(
            lambda: until(senders._next_batch, senders._outstanding), timeout=timeout
        )


def wait_for_batches(client: AnyClient, *, sent: int, in_flight: AbstractSet[int]) -> None:
    """Until `sent` batches were handed to senders and those numbered `in_flight` are still out."""
    assert wait_for_senders(client, lambda handed, out: handed == sent and out == in_flight)


def join_senders(client: AnyClient, timeout: float = 30) -> None:
    """After close(): wait until the sender threads have ended, each answer they were waiting
    for counted (or not counted, if close() gave up on it first)."""
    for sender in shipper_of(client)._senders.threads:
        sender.join(timeout)
        assert not sender.is_alive()


def shipper_threads(client: AnyClient) -> List[threading.Thread]:
    """The client's worker thread and sender threads started so far."""
    shipper = shipper_of(client)
    assert shipper._worker is not None
    return [shipper._worker, *shipper._senders.threads]


def on_hand_out(
    client: AnyClient, monkeypatch: pytest.MonkeyPatch, hook: Callable[[List[Any]], None]
) -> None:
    """Call `hook(events)` on the worker's thread each time it is about to hand a batch to the
    senders (after it took the batch off the queue)."""
    senders = shipper_of(client)._senders
    hand_out = senders.send

    def hooked(flight: Any) -> None:
        hook(flight.events)
        hand_out(flight)

    monkeypatch.setattr(senders, "send", hooked)


def on_senders_stop(
    client: AnyClient, monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]
) -> None:
    """Call `hook()` on the worker's thread as it stops its senders: it has failed what it never
    sent and now waits for the batches still out, its last step before it ends."""
    senders = shipper_of(client)._senders
    stop = senders.stop

    def hooked() -> None:
        hook()
        stop()

    monkeypatch.setattr(senders, "stop", hooked)
