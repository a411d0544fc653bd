"""Crash-safe mode: a write-ahead spool of usage events on local disk (`Client(spool_dir=...)`).

`record()` appends each event as one JSON line to the current segment file with a single
unbuffered `os.write`, so once `record()` returns the event is in the operating system's hands:
a SIGKILL or SIGTERM of the process loses nothing. The worker fsyncs (batched, never on the
caller's thread) and rotates segments. A segment is deleted only when every event in it was
acknowledged by the server (recorded, duplicate or rejected); events that failed for good stay on
disk for the next `Client` with the same `spool_dir`, which replays every segment it finds. The
server's idempotency keys make a replay of already-delivered events harmless (duplicates).

One process owns a spool at a time (an exclusive lock on `spool_dir/lock`); a second gets
`SpoolLockedError`. A truncated or corrupt line (a crash mid-write) is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ._errors import BearLumenError, InvalidRequestError

logger = logging.getLogger("bearlumen")

SEGMENT_BYTES = 8 * 1024 * 1024  # rotate the current segment past this size
_WIRE_FIELDS = (
    "eventType",
    "metricName",
    "quantity",
    "idempotencyKey",
    "timestamp",
    "subscriptionId",
    "endUserId",
    "agentId",
    "workflowId",
    "metadata",
)
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


class SpoolLockedError(BearLumenError):
    """Another process owns this `spool_dir`."""


@dataclass
class _Segment:
    number: int
    path: str
    written: int = 0  # events appended
    acknowledged: int = 0  # events the server answered for (recorded, duplicate, rejected)
    sealed: bool = False  # no more appends: rotated away, or left by an earlier process
    size: int = 0


@dataclass
class Spool:
    directory: str
    format_timestamp: Any
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
        self._fd = -1
        self._current: _Segment | None = None
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
                lines = handle.read().split(b"\n")
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
        wire = {name: value for name, value in zip(_WIRE_FIELDS, event) if value is not None}
        stamp = event[4]
        if type(stamp) is float:
            wire["timestamp"] = self.format_timestamp(stamp)
        try:
            line = (_encode(wire) + "\n").encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidRequestError(f"metadata: is not JSON ({exc})", param="metadata") from None
        with self._write_lock:
            segment = self._current
            assert segment is not None
            os.write(self._fd, line)
            segment.written += 1
            segment.size += len(line)
            self._unsynced = True
        return (*event, segment.number)

    # -- the worker ------------------------------------------------------------------------

    def sync(self) -> None:
        """fsync what was appended, and rotate a full segment; called by the worker."""
        if not self._unsynced:
            return
        with self._write_lock:
            self._unsynced = False
            fd = self._fd
            rotate = self._current is not None and self._current.size >= SEGMENT_BYTES
        os.fsync(fd)
        if rotate:
            with self._write_lock:
                assert self._current is not None
                old_fd, self._current.sealed = self._fd, True
                self._open_new_segment(self._current.number + 1)
            os.fsync(old_fd)
            os.close(old_fd)
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
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
            if self._current is not None:
                self._current.sealed = True
        self._trim()
        self._lock_file.close()

    def _path(self, number: int) -> str:
        return os.path.join(self.directory, f"segment-{number:010d}.jsonl")

    def _open_new_segment(self, number: int) -> None:
        segment = _Segment(number, self._path(number))
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.segments[number] = segment
        self._current = segment


def _decode(line: bytes) -> tuple[Any, ...] | None:
    try:
        wire = json.loads(line)
        if not isinstance(wire, dict) or not isinstance(wire.get("eventType"), str):
            return None
        return tuple(wire.get(name) for name in _WIRE_FIELDS)
    except ValueError:
        return None
