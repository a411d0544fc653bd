"""Staged usage events: stored at once, moved into the indexed `usage_events` later.

Maintaining `usage_events`' secondary indexes costs more than everything else a 1000-event batch
needs, so a batch is written to `usage_events_staged` (no index at all), which is what its
request waits for; a background thread moves staged rows into `usage_events` once a burst is
over (or when too many wait), a chunk per hold of the store's lock so that writers are never held
up long. Every read of events first moves whatever is still staged (`Store._events_complete`), so
an event is visible to queries as soon as its batch has been answered.

The idempotency keys of staged events are kept in memory (the staged table has no index to find
them by): a key is a duplicate if it is here or in `usage_events`' unique index. The memory is
bounded with the staged table (`MAX_STAGED_ROWS`). A process killed with events staged leaves
them in the table; the next start moves them all before it takes a request, so the keys are in
the index again. One process owns a database file (the store hands out `seq` itself).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from .event_row import STORED_COLUMNS

_COLUMNS = ", ".join(STORED_COLUMNS)
# A staged event's seq is its place in usage_events: moving keeps it, so ids never change.
_COPY = f"INSERT INTO usage_events ({_COLUMNS}) SELECT {_COLUMNS} FROM usage_events_staged"
_MOVE = _COPY + " WHERE seq < ? ORDER BY seq"
_FORGET = "DELETE FROM usage_events_staged WHERE seq < ?"
_MOVE_ALL = _COPY + " ORDER BY seq"
_FORGET_ALL = "DELETE FROM usage_events_staged"  # no WHERE: SQLite drops the pages at once

# The background mover: a burst is over when no batch arrived for this long; it moves at least
# this many rows (whole batches) per hold of the lock; past MAX_STAGED_ROWS it moves even during
# a burst, so the staged table, the keys in memory and the catch-up a read may have to do stay
# bounded. Then it competes with the requests for the lock: a chunk of 2000 rows holds it ~7 ms
# (10,000 held every request's staging back ~35 ms). The WAL is checkpointed after every
# CHECKPOINT_ROWS rows moved, and whenever the staged table is empty, not after each chunk (a
# checkpoint copies the indexes' hot pages again each time).
IDLE_SECONDS = 0.05
MOVE_CHUNK_ROWS = 2_000
CHECKPOINT_ROWS = 10_000
MAX_STAGED_ROWS = 200_000
CHECKPOINT_BACKSTOP_BYTES = 64 * 1024 * 1024  # of WAL (SQLite's default is 1000 pages)

_log = logging.getLogger("bearlumen.server")


class Staging:
    """The staged events' keys and batches, and the thread that moves them into the index.

    Every method but `close` expects the caller to hold the store's lock (`lock`), the one
    that serialises all use of `db`.
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, path: str | None) -> None:
        self._db = db
        self._lock = lock
        # A file's WAL is copied back into the database (checkpointed) by the mover, through a
        # connection of its own and without the store's lock: the copy and its fsync do not
        # hold up the request that happened to cross the WAL's size limit. The store's own
        # connection still checkpoints past CHECKPOINT_BACKSTOP_BYTES, should the mover lag.
        self._checkpointer = (
            None if path is None else sqlite3.connect(path, check_same_thread=False)
        )
        if self._checkpointer is not None:
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
            db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP_BYTES // page_size}")
        # tenant -> idempotency key -> seq, for every staged event that has a key
        self._keys: dict[int, dict[str, int]] = {}
        # one entry per staged batch, oldest first: (its last seq + 1, its rows, tenant, keys)
        self._batches: deque[tuple[int, int, int, list[str]]] = deque()
        self.rows = 0
        self._closing = False
        self._wake = threading.Event()  # set on each staged batch
        self._mover = threading.Thread(
            target=self._move_in_background, name="bearlumen-store-indexer", daemon=True
        )

    def start(self) -> None:
        """Move rows left by a killed process (before any request), then start the mover."""
        with self._lock:
            (self.rows,) = self._db.execute("SELECT COUNT(*) FROM usage_events_staged").fetchone()
            self.move_all()
        self._mover.start()

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._mover.is_alive():
            self._mover.join()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def seq_of(self, tenant: int) -> Callable[[str], int | None]:
        """The lookup of a staged key's seq for one tenant."""
        return self._keys.get(tenant, {}).get

    def staged(self, tenant: int, keyed: dict[str, int], end: int, count: int) -> None:
        """Note a committed batch of `count` rows up to seq `end` (exclusive); `keyed` holds
        its keys and their seqs."""
        self._keys.setdefault(tenant, {}).update(keyed)
        self._batches.append((end, count, tenant, list(keyed)))
        self.rows += count
        self._wake.set()

    def _forget(self, batches: int) -> None:
        for _ in range(batches):
            _, _, tenant, keys = self._batches.popleft()
            staged_keys = self._keys[tenant]
            for key in keys:
                del staged_keys[key]

    def move(self, min_rows: int) -> None:
        """Move the oldest staged batches, at least `min_rows` rows of them (or all there are)."""
        taken = rows = below = 0
        for end, count, _, _ in self._batches:
            taken, rows, below = taken + 1, rows + count, end
            if rows >= min_rows:
                break
        if taken == len(self._batches):
            self.move_all()
            return
        with transaction(self._db):
            self._db.execute(_MOVE, (below,))
            self._db.execute(_FORGET, (below,))
        self._forget(taken)
        self.rows -= rows

    def move_all(self) -> None:
        """Make `usage_events` complete: every read of events starts here."""
        if not self.rows:
            return
        with transaction(self._db):
            self._db.execute(_MOVE_ALL)
            self._db.execute(_FORGET_ALL)
        self._forget(len(self._batches))
        self.rows = 0

    def _move_in_background(self) -> None:
        moved_since_checkpoint = 0
        while True:
            self._wake.wait()
            self._wake.clear()
            # Still busy when another batch arrives within IDLE_SECONDS: wait for the burst to
            # end, unless the staged table is already as big as it should get.
            busy = self._wake.wait(IDLE_SECONDS)
            if self._closing:
                return
            if busy and self.rows < MAX_STAGED_ROWS:
                continue
            with self._lock:
                before = self.rows
                try:
                    self.move(MOVE_CHUNK_ROWS)
                except sqlite3.Error as exc:  # a full disk, say: the rows stay staged (their
                    # keys still count as duplicates); the next batch or read tries again
                    _log.warning("moving staged usage events into the index failed: %s", exc)
                    continue
                moved_since_checkpoint += before - self.rows
                if self.rows:
                    self._wake.set()
            if moved_since_checkpoint >= CHECKPOINT_ROWS or not self.rows:
                self._checkpoint()
                moved_since_checkpoint = 0

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database, beside the writers (PASSIVE never blocks them)."""
        if self._checkpointer is None:
            return
        try:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the store's own connection checkpoints in the end
            _log.warning("checkpointing the WAL failed: %s", exc)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (the caller holds the lock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
