"""Crash-safe mode: a write-ahead spool of usage events on local disk (`Client(spool_dir=...)`).

`record()` copies each event, as one JSON line, into the current segment: a file of fixed size
mapped into memory (`mmap`, shared). Once `record()` returns, the line is in the kernel's page
cache, so a SIGKILL or SIGTERM of the process loses nothing; and a memory copy needs no system
call, so `record()` never gives up the GIL (an `os.write` per event would, and would then wait
for the worker thread to hand it back). The worker flushes the mappings to disk (msync,
batched, never on the caller's thread) and closes segments that are full.

Each segment's disk space is reserved (`posix_fallocate`) before it is mapped: writing into a
mapping whose blocks the disk cannot supply kills the process with SIGBUS. When the disk is
full the spool says so once and keeps new events in memory only (they are still delivered),
trying again every few seconds; an event larger than a segment is kept in memory the same way.

Many processes may share one `spool_dir` (gunicorn workers, Celery prefork, forked children):
each process writes its own segments under `spool_dir/v2-owner-<pid>-<random>/`, next to a `lock`
file it holds with `flock` for as long as it lives. The kernel drops that lock when the process
dies, however it dies, so a live client that can take the lock knows the owner is gone: it
adopts the owner's segments, replays them, and keeps holding the lock while it does, so no other
client replays them too. A client adopts what it finds when it is created, and a forked child
(a pre-forking server's worker) when its worker thread starts.

A segment is deleted only when every event in it was acknowledged by the server (recorded,
duplicate or rejected); events that failed for good stay on disk, and the lock is let go at
close, so the next client adopts them. The server's idempotency keys make a replay of
already-delivered events harmless (they come back as duplicates). Segments written straight
into `spool_dir` by earlier versions (with `spool_dir/lock`) are adopted the same way.

A replay must never bill what was not recorded, so each record carries a CRC32 of the JSON it
sends, and the segment's header says how far it was written (the format: docs/reliability.md,
"The spool's format"). A record that fails its checksum, a zeroed or missing region, a file that
cannot be read or is not a segment: each is skipped, counted and logged once with the file's
path, and every intact record around it is replayed. A damaged file is kept for inspection in
`spool_dir/damaged/` (once its intact events are answered for), never deleted and never read
again. Segments of 0.1.0 (`segment-*.jsonl`, JSON lines without a checksum) are still read.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ._batch_codec import encode_event
from ._errors import InvalidRequestError
from ._events import SEGMENT, QueuedEvent
from ._spool_format import (
    END_AT,
    HEADER_BYTES,
    frame,
    header,
    parse_segment,
    segment_file,
    segment_name,
)

logger = logging.getLogger("bearlumen")

SEGMENT_BYTES = 4 * 1024 * 1024  # each segment file is made this large and mapped whole
RETRY_DISK_EVERY = 5.0  # seconds between attempts to reserve a segment once the disk was full
# An owner's directory. Those of the format before checksums were `owner-*`: still adopted, but
# never made, so that a process of an older version, which adopts `owner-*` directories only,
# never takes a directory of segments it cannot read.
OWNER_PREFIX = "v2-owner-"
OLDER_OWNER_PREFIX = "owner-"
DAMAGED_DIR = "damaged"  # spool_dir/damaged/: files that could not be wholly read, kept

# Reserves a segment's blocks (Linux and most Unixes; not macOS); tests inject a full disk here.
_allocate: Callable[[int, int, int], None] | None = getattr(os, "posix_fallocate", None)


@dataclass(eq=False)
class _Owner:
    """One process's part of a spool: a directory, its held lock, and its segments."""

    path: str
    lock_fd: int
    legacy: bool = False  # spool_dir itself, as earlier versions wrote it
    segments: dict[int, _Segment] = field(default_factory=dict)


@dataclass(eq=False)
class _Segment:
    owner: _Owner
    number: int
    path: str
    written: int = 0  # events appended
    acknowledged: int = 0  # events the server answered for (recorded, duplicate, rejected)
    sealed: bool = False  # no more appends: full, or left by an earlier process
    damaged: bool = False  # once answered for, kept in spool_dir/damaged/ rather than deleted
    fd: int = -1
    mapping: mmap.mmap | None = None
    position: int = HEADER_BYTES  # where the next record goes


class Spool:
    """This process's segments under `directory`, and the ones it adopted from dead owners."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._write_lock = threading.Lock()
        # sync() (the worker) and acknowledge() (each sender's thread) count and trim segments:
        # one thread at a time, apart from the write lock that record() takes.
        self._trim_lock = threading.Lock()
        self._current: _Segment | None = None  # None: the disk is full, events stay in memory
        self._full: list[_Segment] = []  # sealed, still mapped: the worker closes them
        self._unsynced = False
        self._owner_pid = os.getpid()
        self._next_number = 1
        self._retry_disk_at = 0.0
        self._warned_oversized = False
        try:
            # 0700: the events name end users and carry their metadata; a group has no business
            # reading them. (A directory that exists already keeps the mode its owner gave it.)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._own = _claim_new_owner(directory)
        except OSError as exc:
            raise _unusable(directory, exc) from None
        self._owners: list[_Owner] = [self._own]
        try:
            self._current = self._new_segment()
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                self._release_owner(self._own)
                raise _unusable(directory, exc) from None
            self._memory_only(exc)

    def for_forked_child(self) -> Spool | None:
        """In a forked child: let go of the parent's files (never its lock), open our own."""
        for owner in self._owners:
            for segment in owner.segments.values():
                if segment.mapping is not None:
                    segment.mapping.close()  # unmaps in the child only; the parent keeps it
                if segment.fd >= 0:
                    os.close(segment.fd)
            os.close(owner.lock_fd)  # close, not unlock: the lock is shared with the parent
        try:
            return Spool(self.directory)
        except InvalidRequestError as exc:
            logger.warning("bearlumen: a forked child runs without a spool: %s", exc)
            return None

    # -- adoption --------------------------------------------------------------------------

    def adopt_orphans(self) -> list[QueuedEvent]:
        """Events left by processes that are gone, in order, each tagged with its segment.

        Never raises for what it finds on disk: whatever cannot be read is skipped and logged,
        and everything else is replayed."""
        recovered: list[QueuedEvent] = []
        for path, legacy in self._orphan_candidates():
            owner = _try_lock(path, legacy=legacy)
            if owner is None:
                continue  # alive, or adopted by another client just now
            try:
                recovered += self._read_segments(owner)
            except OSError as exc:  # a directory that cannot be listed, for one
                logger.warning("bearlumen: the spool cannot read %s (%s): skipped", path, exc)
            except Exception:  # a surprise in what is on disk never stops a client starting
                logger.exception("bearlumen: the spool could not replay %s: skipped", path)
            if owner.segments:
                self._owners.append(owner)
            else:
                self._release_owner(owner)
        if recovered:
            logger.warning(
                "bearlumen: replaying %d usage event(s) left in %s", len(recovered), self.directory
            )
        return recovered

    def _orphan_candidates(self) -> list[tuple[str, bool]]:
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        found = [(self.directory, True)] if any(segment_name(n) for n in names) else []
        for name in names:
            path = os.path.join(self.directory, name)
            if name.startswith((OWNER_PREFIX, OLDER_OWNER_PREFIX)) and path != self._own.path:
                found.append((path, False))
        return found

    def _read_segments(self, owner: _Owner) -> list[QueuedEvent]:
        recovered: list[QueuedEvent] = []
        found = [parsed for parsed in map(segment_name, os.listdir(owner.path)) if parsed]
        for number, legacy in sorted(found):
            path = os.path.join(owner.path, segment_file(number, legacy=legacy))
            try:
                data = _read_file(path)
            except FileNotFoundError:
                continue
            except OSError as exc:  # unreadable: left in place, for the next client to try
                logger.warning(
                    "bearlumen: the spool segment %s cannot be read (%s): its events are not"
                    " replayed; it is left in place and tried again by the next client",
                    path,
                    exc.strerror or exc,
                )
                continue
            events, damage = parse_segment(data, legacy=legacy)
            if damage.newer_version:
                logger.warning(
                    "bearlumen: the spool segment %s is in format version %d, which this version"
                    " of bearlumen cannot read: left in place for one that can",
                    path,
                    damage.newer_version,
                )
                continue
            segment = _Segment(owner, number, path, written=len(events), sealed=True)
            segment.damaged = damage.damaged
            recovered += [(*event, segment) for event in events]
            if damage.damaged or damage.torn:
                logger.warning(
                    "bearlumen: the spool segment %s %s: %s; its %d intact event(s) are replayed%s",
                    path,
                    "is damaged" if damage.damaged else "ends in a record cut short",
                    damage.details(),
                    len(events),
                    f" and the file is kept in {os.path.join(self.directory, DAMAGED_DIR)}"
                    if damage.damaged
                    else "",
                )
            if segment.written:
                owner.segments[number] = segment
            else:
                self._discard(segment)
        return recovered

    # -- the hot path ----------------------------------------------------------------------

    def append(self, event: QueuedEvent) -> QueuedEvent:
        """Write one event; returns it tagged with its segment (untagged: kept in memory only).

        Raises InvalidRequestError if it cannot be JSON.
        """
        try:
            text = encode_event(event)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequestError(f"metadata: is not JSON ({exc})", param="metadata") from None
        record = frame(text)
        if len(record) > SEGMENT_BYTES - HEADER_BYTES:
            self._oversized(len(record))
            return event
        with self._write_lock:
            segment = self._current
            if segment is None:
                return event  # the disk is full: memory only, until the worker finds space
            end = segment.position + len(record)
            if end > SEGMENT_BYTES:
                segment = self._rotate(segment)
                if segment is None:
                    return event
                end = segment.position + len(record)
            mapping = segment.mapping
            assert mapping is not None
            mapping[segment.position : end] = record
            mapping[END_AT:HEADER_BYTES] = end.to_bytes(8, "little")  # after the record it counts
            segment.position = end
            segment.written += 1
            self._unsynced = True
        return (*event, segment)

    # -- the worker ------------------------------------------------------------------------

    def sync(self) -> None:
        """Flush the mappings to disk and close full segments; called by the worker."""
        with self._trim_lock:
            self._sync()

    def _sync(self) -> None:
        if self._current is None and time.monotonic() >= self._retry_disk_at:
            self._retry_disk()
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

    def acknowledge(self, events: list[QueuedEvent]) -> None:
        """The server answered for these events: segments wholly answered can go."""
        with self._trim_lock:
            for event in events:
                if len(event) > SEGMENT:  # kept in memory only when it has no segment
                    event[SEGMENT].acknowledged += 1
            self._trim()

    def _trim(self) -> None:
        for owner in list(self._owners):
            for number, segment in list(owner.segments.items()):
                if segment.sealed and segment.acknowledged >= segment.written:
                    self._discard(segment)
                    del owner.segments[number]
            if owner is not self._own and not owner.segments:
                self._owners.remove(owner)
                self._release_owner(owner)

    def _discard(self, segment: _Segment) -> None:
        """A segment answered for: deleted, or kept in spool_dir/damaged/ if it was damaged."""
        if not segment.damaged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment.path)
            return
        owner = segment.owner
        part = "legacy" if owner.legacy else os.path.basename(owner.path)
        name = f"{part}-{os.path.basename(segment.path)}"
        try:
            kept = os.path.join(self.directory, DAMAGED_DIR)
            with contextlib.suppress(FileExistsError):
                os.mkdir(kept, 0o700)
            target = os.path.join(kept, name)
            while os.path.exists(target):  # never replace one kept earlier
                target = os.path.join(kept, f"{secrets.token_hex(2)}-{name}")
            os.rename(segment.path, target)
        except OSError as exc:
            logger.warning(
                "bearlumen: could not move the damaged spool segment %s aside (%s)",
                segment.path,
                exc.strerror or exc,
            )

    def close(self) -> None:
        if os.getpid() != self._owner_pid:
            return
        with self._write_lock:
            segments = [*self._full, *([self._current] if self._current else [])]
            self._full = []
            self._current = None
            self._retry_disk_at = float("inf")  # a closed spool takes no more disk
            for segment in segments:
                segment.sealed = True
        for segment in segments:
            _release(segment)
        self._trim()
        # What failed for good stays on disk; letting the locks go hands it to the next client.
        for owner in self._owners:
            self._release_owner(owner)
        self._owners = []

    def _rotate(self, full: _Segment) -> _Segment | None:
        """Called with the write lock held, about once per 4 MiB of events."""
        full.sealed = True
        self._full.append(full)
        try:
            self._current = self._new_segment()
        except OSError as exc:
            self._memory_only(exc)
        return self._current

    def _new_segment(self) -> _Segment:
        number = self._next_number
        segment = _Segment(self._own, number, os.path.join(self._own.path, segment_file(number)))
        fd = os.open(segment.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # The header goes in before the blocks are reserved: a segment of ours is never all
            # zeros, so one that is was overwritten.
            os.write(fd, header(HEADER_BYTES))
            _reserve(fd, SEGMENT_BYTES)
            segment.mapping = mmap.mmap(fd, SEGMENT_BYTES)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(segment.path)
            raise
        segment.fd = fd
        self._next_number = number + 1
        self._own.segments[number] = segment
        return segment

    def _memory_only(self, exc: OSError) -> None:
        self._current = None
        self._retry_disk_at = time.monotonic() + RETRY_DISK_EVERY
        logger.error(
            "bearlumen: the spool cannot reserve disk space in %s (%s): new usage events are"
            " kept in memory only (still delivered, not crash-safe) until it can",
            self.directory,
            exc.strerror or exc,
        )

    def _retry_disk(self) -> None:
        try:
            segment = self._new_segment()
        except OSError:
            self._retry_disk_at = time.monotonic() + RETRY_DISK_EVERY
            return
        with self._write_lock:
            self._current = segment
        logger.warning("bearlumen: the spool in %s writes to disk again", self.directory)

    def _oversized(self, size: int) -> None:
        if not self._warned_oversized:
            self._warned_oversized = True
            logger.warning(
                "bearlumen: a usage event of %d bytes is larger than a spool segment (%d);"
                " it is kept in memory only",
                size,
                SEGMENT_BYTES,
            )

    def _release_owner(self, owner: _Owner) -> None:
        """Let go of an owner's lock, removing its directory first when nothing but the lock is
        left in it. A file left there (unreadable, or of a newer format) keeps the lock file, so
        the next client adopts the directory and tries again."""
        if not owner.legacy and not owner.segments:
            with contextlib.suppress(OSError):
                if os.listdir(owner.path) == ["lock"]:
                    os.unlink(os.path.join(owner.path, "lock"))
                    os.rmdir(owner.path)
        with contextlib.suppress(OSError):
            os.close(owner.lock_fd)


# Errors that mean "no room", which the spool survives by keeping events in memory.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _reserve(fd: int, size: int) -> None:
    """Give the file `size` bytes of real disk blocks, so writes through a mapping cannot fail."""
    if _allocate is not None:
        try:
            _allocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    # A system or filesystem that cannot reserve blocks: the file is only sized, and a full
    # disk there can still end in SIGBUS (the one case the reservation cannot rule out).
    os.ftruncate(fd, size)


def _read_file(path: str) -> bytes:
    """A segment's bytes (tests inject an unreadable file here: they run as root). Anything but
    a regular file (a FIFO, whose open() would wait for a writer; a link to a device, whose
    read() might never end) is an OSError too: opened without waiting, and never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return handle.read()


def _claim_new_owner(directory: str) -> _Owner:
    """A new owner directory with its lock already held, then renamed into view: a directory
    named v2-owner-* whose lock is free is always a dead owner's."""
    name = f"{OWNER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    staging = os.path.join(directory, "." + name)
    os.mkdir(staging, 0o700)
    fd = os.open(os.path.join(staging, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    _lock(fd)
    path = os.path.join(directory, name)
    os.rename(staging, path)
    return _Owner(path, fd)


def _try_lock(path: str, *, legacy: bool) -> _Owner | None:
    """The owner at `path` if it is dead (its lock could be taken), else None."""
    flags = os.O_RDWR | (os.O_CREAT if legacy else 0)
    try:
        fd = os.open(os.path.join(path, "lock"), flags, 0o600)
    except FileNotFoundError:
        return None  # removed by the client that adopted it
    except OSError as exc:
        logger.warning(
            "bearlumen: the spool cannot open %s (%s): the segments there are not replayed",
            os.path.join(path, "lock"),
            exc.strerror or exc,
        )
        return None
    try:
        _lock(fd)
    except OSError:
        os.close(fd)
        return None
    if not legacy and not os.path.exists(os.path.join(path, "lock")):
        os.close(fd)  # adopted and removed between our open and our lock
        return None
    return _Owner(path, fd, legacy=legacy)


def _lock(fd: int) -> None:
    """Take the lock on `fd` or raise OSError; the kernel drops it when the process dies."""
    import fcntl  # POSIX only: imported here so that bearlumen itself imports anywhere

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unusable(directory: str, exc: OSError) -> InvalidRequestError:
    return InvalidRequestError(
        f"spool_dir {directory!r} cannot be used: {exc.strerror or exc}", param="spool_dir"
    )


def _release(segment: _Segment) -> None:
    """Flush a segment's mapping to disk and close it."""
    if segment.mapping is not None:
        segment.mapping.flush()
        segment.mapping.close()
        segment.mapping = None
    if segment.fd >= 0:
        os.close(segment.fd)
        segment.fd = -1
