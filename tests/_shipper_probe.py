"""The shipper's insides, for the tests that must see or steer them: one place, so that moving
code between the shipper's parts (`_shipper.py`, `_room.py`, `_senders.py`, `_outcomes.py`)
changes this file, not the tests.

Tests go through the public seams wherever one shows what they check: `client.stats()`,
`flush()`, `close()`, `on_error`, the local server's faults, an `http_client=` with a transport
of the test's own. What follows is for what no public seam shows: the bytes held against
`max_queue_bytes` at a given moment.
"""

from __future__ import annotations

from typing import Union

from bearlumen import AsyncClient, Client
from bearlumen._shipper import Shipper

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
