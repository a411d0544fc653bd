"""Crash-safe mode: a write-ahead spool of usage events on local disk (`Client(spool_dir=...)`).

`record()` copies each event, as one JSON line, into the current segment: a file of fixed size
mapped into memory (`mmap`, shared). Once `record()` returns, the line is in the kernel's page
cache, so a SIGKILL or SIGTERM of the process loses nothing; and a memory copy needs no system
call, so `record()` never gives up the GIL (an `os.write` per event would, and would then wait
for the worker thread to hand it back). The worker flushes the mappings to disk (msync,
batched, never on the caller's thread) and closes segments that are full.

A segment is deleted only when every event in it was acknowledged by the server (recorded,
duplicate or rejected); events that failed for good stay on disk for the next `Client` with the
same `spool_dir`, which replays every segment it finds. The server's idempotency keys make a
replay of already-delivered events harmless (they come back as duplicates).

One process owns a spool at a time (an exclusive lock on `spool_dir/lock`); a second gets
`SpoolLockedError`. A truncated or corrupt line (a crash mid-write) is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ._errors import BearLumenError, InvalidRequestError
from ._events import encode_event, from_wire

logger = logging.getLogger("bearlumen")

SEGMENT_BYTES = 4 * 1024 * 1024  # each segment file is made this large and mapped whole


class SpoolLockedError(BearLumenError):
    """Another process owns this `spool_dir`."""


@dataclass
class _Segment:
    number: int
    path: str
    written: int = 0  # events appended
    acknowledged: int = 0  # events the server answered for (recorded, duplicate, rejected)
    sealed: bool = False  # no more appends: full, or left by an earlier process
    fd: int = -1
    mapping: mmap.mmap | None = None
    position: int = 0  # where the next line goes


@dataclass
class Spool:
    directory: str
    segments: dict[int, _Segment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._lock_file = open(os.path.join(self.directory, "lock"), "a+")  # noqa: SIM115
        try:
            import fcntl

            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolLockedError(
                f"spool_dir {self.directory!r} is in use by another process; give each process"
                " its own spool_dir"
            ) from None
        self._write_lock = threading.Lock()
        self._current: _Segment | None = None
        self._full: list[_Segment] = []  # sealed, still mapped: the worker closes them
        self._unsynced = False
        self._owner_pid = os.getpid()

    # -- recovery --------------------------------------------------------------------------

    def recover(self) -> list[tuple[Any, ...]]:
        """Events left by an earlier process, in order, each tagged with its segment number."""
        recovered: list[tuple[Any, ...]] = []
        numbers = sorted(
            int(name[8:-6])
            for name in os.listdir(self.directory)
            if name.startswith("segment-") and name.endswith(".jsonl") and name[8:-6].isdigit()
        )
        for number in numbers:
            segment = _Segment(number, self._path(number), sealed=True)
            self.segments[number] = segment
            with open(segment.path, "rb") as handle:
                lines = handle.read().rstrip(b"\0").split(b"\n")
            skipped = 0
            for line in lines[:-1]:  # the last piece has no newline: empty, or a torn write
                event = _decode(line)
                if event is None:
                    skipped += 1
                    continue
                recovered.append((*event, number))
                segment.written += 1
            if lines[-1]:
                skipped += 1
            if skipped:
                logger.warning(
                    "bearlumen: skipped %d unreadable line(s) in %s (a write cut short?)",
                    skipped,
                    segment.path,
                )
            if segment.written == 0:
                os.unlink(segment.path)
                del self.segments[number]
        self._open_new_segment((numbers[-1] + 1) if numbers else 1)
        if recovered:
            logger.warning(
                "bearlumen: replaying %d usage event(s) left in %s", len(recovered), self.directory
            )
        return recovered

    # -- the hot path ----------------------------------------------------------------------

    def append(self, event: tuple[Any, ...]) -> tuple[Any, ...]:
        """Write one event; returns it tagged with its segment. Raises if it cannot be JSON."""
        try:
            line = encode_event(event) + b"\n"
        except (ValueError, RecursionError) as exc:
            raise InvalidRequestError(f"metadata: is not JSON ({exc})", param="metadata") from None
        with self._write_lock:
            segment = self._current
            assert segment is not None
            end = segment.position + len(line)
            if end > SEGMENT_BYTES:
                segment = self._rotate(segment)
                end = len(line)
            mapping = segment.mapping
            assert mapping is not None
            mapping[segment.position : end] = line
            segment.position = end
            segment.written += 1
            self._unsynced = True
        return (*event, segment.number)

    # -- the worker ------------------------------------------------------------------------

    def sync(self) -> None:
        """Flush the mappings to disk and close full segments; called by the worker."""
        with self._write_lock:
            if not self._unsynced and not self._full:
                return
            self._unsynced = False
            full, self._full = self._full, []
            current = self._current
        for segment in full:
            _release(segment)
        if current is not None and current.mapping is not None:
            current.mapping.flush()
        self._trim()

    def acknowledge(self, events: list[tuple[Any, ...]]) -> None:
        """The server answered for these events: segments wholly answered can go."""
        for event in events:
            segment = self.segments.get(event[10])
            if segment is not None:
                segment.acknowledged += 1
        self._trim()

    def _trim(self) -> None:
        for number, segment in list(self.segments.items()):
            if segment.sealed and segment.acknowledged >= segment.written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(segment.path)
                del self.segments[number]

    def close(self) -> None:
        if os.getpid() != self._owner_pid:
            return
        with self._write_lock:
            segments = [*self._full, *([self._current] if self._current else [])]
            self._full = []
            for segment in segments:
                segment.sealed = True
        for segment in segments:
            _release(segment)
        self._current = None
        self._trim()
        self._lock_file.close()

    def _path(self, number: int) -> str:
        return os.path.join(self.directory, f"segment-{number:010d}.jsonl")

    def _rotate(self, full: _Segment) -> _Segment:
        """Called with the write lock held, about once per 4 MiB of events."""
        full.sealed = True
        self._full.append(full)
        self._open_new_segment(full.number + 1)
        assert self._current is not None
        return self._current

    def _open_new_segment(self, number: int) -> None:
        segment = _Segment(number, self._path(number))
        segment.fd = os.open(segment.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(segment.fd, SEGMENT_BYTES)
        segment.mapping = mmap.mmap(segment.fd, SEGMENT_BYTES)
        self.segments[number] = segment
        self._current = segment


def _release(segment: _Segment) -> None:
    """Flush a segment's mapping to disk and close it."""
    if segment.mapping is not None:
        segment.mapping.flush()
        segment.mapping.close()
        segment.mapping = None
    if segment.fd >= 0:
        os.close(segment.fd)
        segment.fd = -1


def _decode(line: bytes) -> tuple[Any, ...] | None:
    try:
        wire = json.loads(line)
        if not isinstance(wire, dict) or not isinstance(wire.get("eventType"), str):
            return None
        return from_wire(wire)
    except ValueError:
        return None
