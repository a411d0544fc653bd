"""The spool's segment format: how a record is framed and checked, and how a segment is read back.

A segment file (`segment-<number>.spool`, format version 2) is

    header   MAGIC (b"BLSPOOL"), the VERSION byte (2), and END: 8 bytes, little-endian, the
             offset just past the last record written (rewritten after each record)
    records  each `<crc32> <json>\\n`: the CRC32 of the JSON in 8 lowercase hex digits, a space,
             the event's JSON exactly as it is replayed, a newline

then zeros to the end of the file (segments are reserved at full size and written through a
memory mapping). JSON never holds a raw newline, so a damaged record costs only itself: the next
one starts after the next newline. END tells zeros or a cut where records were written from the
never-written rest. The header is written before the file's blocks are reserved, so a segment is
never all zeros unless it was overwritten. Segments of 0.1.0 (`segment-<number>.jsonl`, version
1) are JSON lines from the first byte, without a header or checksums; they are read too, so
events a 0.1.0 process left in a spool are delivered.
docs/reliability.md ("The spool's format") says the same for people.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from ._batch_codec import from_wire
from ._events import QueuedEvent

MAGIC = b"BLSPOOL"
VERSION = 2
END_AT = len(MAGIC) + 1  # where END starts in the header
HEADER_BYTES = END_AT + 8
SUFFIX = ".spool"
LEGACY_SUFFIX = ".jsonl"  # 0.1.0's segments


def header(end: int) -> bytes:
    return MAGIC + bytes([VERSION]) + end.to_bytes(8, "little")


def frame(text: bytes) -> bytes:
    """One record: the event's JSON `text` behind its checksum, ending in a newline."""
    return b"%08x %s\n" % (zlib.crc32(text), text)


@dataclass
class Damage:
    """What reading one segment file had to skip."""

    records: int = 0  # records that failed their checksum, or that are not an event
    zeroed: int = 0  # bytes of zeros where records were written
    zeroed_header: bool = False  # so where its records ended is unknown
    missing: int = 0  # bytes cut off the end of the file
    torn: int = 0  # a last record cut short: its process died inside record(), which never returned
    foreign: str = ""  # why the file is not a segment at all
    newer_version: int = 0  # a segment of a later format: left for a client that reads it

    @property
    def damaged(self) -> bool:
        """Damage that is not a crash mid-record: the file is kept aside for inspection."""
        return bool(
            self.foreign or self.records or self.zeroed or self.zeroed_header or self.missing
        )

    def details(self) -> str:
        parts = [self.foreign] if self.foreign else []
        if self.zeroed_header:
            parts.append(
                "its header is overwritten with zeros (how many records it held is unknown)"
            )
        if self.records:
            parts.append(f"{self.records} damaged record(s) skipped")
        if self.zeroed:
            parts.append(f"{self.zeroed} byte(s) overwritten with zeros")
        if self.missing:
            parts.append(f"{self.missing} byte(s) missing at its end (the file was cut short)")
        if self.torn:
            parts.append(f"{self.torn} record(s) cut short by a crash inside record()")
        return ", ".join(parts)


def parse_segment(data: bytes, *, legacy: bool) -> tuple[list[QueuedEvent], Damage]:
    """The intact events of one segment file, in order, and what had to be skipped."""
    damage = Damage()
    end: int | None = None
    if legacy:
        body = data
    else:
        if not data:
            return [], damage  # created, and its process killed before the header went in
        magic, version = data[: len(MAGIC)], data[len(MAGIC) : END_AT]
        if magic == MAGIC and version and version[0] != VERSION:
            damage.newer_version = version[0]
            return [], damage
        if magic == MAGIC and len(data) >= HEADER_BYTES:
            end = int.from_bytes(data[END_AT:HEADER_BYTES], "little")
        elif magic == MAGIC:
            damage.foreign = "it was cut short inside its header"
            return [], damage
        elif data[:HEADER_BYTES].strip(b"\0"):
            damage.foreign = "it is not a bearlumen spool segment"
            return [], damage
        else:
            damage.zeroed_header = True  # its records, if any are left, carry their checksums
        body = data[HEADER_BYTES:]
    body_start = len(data) - len(body)
    written = body.rstrip(b"\0")
    pieces = written.split(b"\n")
    last = pieces.pop()  # after the last newline: nothing, or a record cut short
    decode = _decode_json if legacy else _decode
    events: list[QueuedEvent] = []
    for piece in pieces:
        record = piece.lstrip(b"\0")
        damage.zeroed += len(piece) - len(record)
        if record:
            event = decode(record)
            if event is None:
                damage.records += 1
                damage.zeroed += record.count(b"\0")  # JSON never holds a raw NUL
            else:
                events.append(event)
    written_end = body_start + len(written)
    record = last.lstrip(b"\0")
    damage.zeroed += len(last) - len(record)
    if record:
        if end is not None and written_end <= end:
            damage.records += 1  # inside what was written: its newline was damaged
            damage.zeroed += record.count(b"\0")
        else:
            damage.torn += 1
    if end is not None:
        damage.missing = max(0, end - len(data))
        damage.zeroed += max(0, min(end, len(data)) - written_end)
    return events, damage


def _decode(record: bytes) -> QueuedEvent | None:
    """A record's event if its checksum matches, else None."""
    text = record[9:]
    if record[8:9] != b" " or record[:8] != b"%08x" % zlib.crc32(text):
        return None
    return _decode_json(text)


def _decode_json(text: bytes) -> QueuedEvent | None:
    try:
        wire = json.loads(text)
    except (ValueError, RecursionError):  # a line of "[[[[..." in a segment without checksums
        return None
    if not isinstance(wire, dict) or not isinstance(wire.get("eventType"), str):
        return None
    return from_wire(wire)


def segment_name(name: str) -> tuple[int, bool] | None:
    """(number, legacy) of `segment-<number>.spool` or 0.1.0's `segment-<number>.jsonl`."""
    stem, _, suffix = name.rpartition(".")
    if not stem.startswith("segment-") or not stem[8:].isdigit():
        return None
    if "." + suffix == SUFFIX:
        return int(stem[8:]), False
    if "." + suffix == LEGACY_SUFFIX:
        return int(stem[8:]), True
    return None


def segment_file(number: int, *, legacy: bool = False) -> str:
    return f"segment-{number:010d}{LEGACY_SUFFIX if legacy else SUFFIX}"
