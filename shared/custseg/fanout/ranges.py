"""Cutting a large CSV upload into byte ranges that each start after a real record end.

:func:`plan_ranges` reads the object once, block by block (S3 ranged GETs through the
``read(start, end)`` it is given), and tracks whether each byte is inside a quoted field:
in RFC 4180 CSV a quote opens or closes a quoted field and an escaped quote is written
twice, so a position is inside quotes exactly when the number of quotes before it is
odd. A line feed outside quotes ends a record; one inside quotes is part of a value.
Each range is cut at the first record end at or after its nominal size, so no record
is split and a quoted newline never starts a range. The first record is the header:
every range is ingested as the header followed by its bytes.

Only the parity of the quote count is kept (a uint8 running sum wraps at 256 and keeps
its parity), so memory is one block whatever the object's size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

QUOTE, NEWLINE = 0x22, 0x0A
DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024
HEAD_MAX_BYTES = 256 * 1024 * 1024
"""The most of an upload :func:`head_end` reads (a file without record ends is not read
whole to find its head)."""
GZIP_MAGIC = b"\x1f\x8b"


class SplitError(ValueError):
    """The object cannot be split at record ends (the message names the object and why)."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of the object: whole records, ``first_record`` of them
    before it (the header not counted), ``records`` in it."""

    index: int
    start: int
    end: int
    first_record: int
    records: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ByteRange:
        return cls(**{k: int(d[k]) for k in ("index", "start", "end", "first_record", "records")})


@dataclass(frozen=True)
class SplitPlan:
    """The header bytes (the first record, its line end included) and the ranges."""

    header: bytes
    ranges: list[ByteRange]

    @property
    def records(self) -> int:
        return sum(r.records for r in self.ranges)


def record_ends(block: bytes, inside: bool) -> tuple[np.ndarray, bool]:
    """(offsets in ``block`` of the line feeds that end a record, whether the block ends
    inside quotes), given whether it starts inside quotes."""
    data = np.frombuffer(block, dtype=np.uint8)
    parity = np.cumsum(data == QUOTE, dtype=np.uint8) & 1  # quotes up to and including i
    if inside:
        parity ^= 1
    feeds = np.flatnonzero(data == NEWLINE)
    ends = feeds[parity[feeds] == 0] if feeds.size else feeds
    return ends, bool(parity[-1]) if data.size else inside


def plan_ranges(
    read: Callable[[int, int], bytes],
    size: int,
    target_bytes: int,
    *,
    name: str = "the upload",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> SplitPlan:
    """Ranges of about ``target_bytes`` of an object of ``size`` bytes, each cut after a
    record end. ``read(start, end)`` returns bytes ``[start, end)``. Raises
    :class:`SplitError` for a gzip object or one whose quotes never close."""
    if target_bytes < 1 or block_bytes < 1:
        raise ValueError("target_bytes and block_bytes must be positive")
    if size == 0:
        raise SplitError(f"{name}: the file is empty")
    header_end: int | None = None
    cuts: list[tuple[int, int]] = []  # (end offset, records before it)
    inside, records, next_cut = False, 0, 0
    for start in range(0, size, block_bytes):
        block = read(start, min(size, start + block_bytes))
        if start == 0 and block.startswith(GZIP_MAGIC):
            raise SplitError(f"{name}: a gzip file cannot be cut into byte ranges")
        ends, inside = record_ends(block, inside)
        for offset in (ends + start + 1).tolist():
            if header_end is None:
                header_end, next_cut = offset, offset + target_bytes
                continue
            records += 1
            if offset >= next_cut and offset < size:
                cuts.append((offset, records))
                next_cut = offset + target_bytes
    if inside:
        raise SplitError(f"{name}: a quoted field opened near the end is never closed")
    if header_end is None:
        raise SplitError(f"{name}: no record after the header line")
    last = read(size - 1, size)
    if last != b"\n":
        records += 1  # the last record has no line end
    ranges = _ranges(header_end, size, cuts, records)
    return SplitPlan(read(0, header_end), ranges)


def head_end(
    read: Callable[[int, int], bytes],
    size: int,
    *,
    head_records: int,
    head_bytes: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    max_bytes: int = HEAD_MAX_BYTES,
) -> int:
    """Where the object's head ends: the first record end after the header, at least
    ``head_records`` records and beyond ``head_bytes`` bytes (``size`` when there is
    none). Reads the object from its start only as far as that record end, and never
    past ``max_bytes``: there the head ends at the last record end read (``max_bytes``
    when there is none, a line the reader's limits then reject)."""
    if block_bytes < 1:
        raise ValueError("block_bytes must be positive")
    inside, records, last = False, -1, 0  # the first record end closes the header
    stop = min(size, max(max_bytes, head_bytes))
    for start in range(0, stop, block_bytes):
        ends, inside = record_ends(read(start, min(stop, start + block_bytes)), inside)
        for offset in (ends + start + 1).tolist():
            records += 1
            last = int(offset)
            if records >= max(head_records, 1) and offset > head_bytes:
                return last
    if stop < size:
        return last or stop
    return size


def _ranges(
    header_end: int, size: int, cuts: list[tuple[int, int]], records: int
) -> list[ByteRange]:
    bounds = [(header_end, 0), *cuts, (size, records)]
    out: list[ByteRange] = []
    for (start, before), (end, upto) in itertools.pairwise(bounds):
        if end > start:
            out.append(ByteRange(len(out), start, end, before, upto - before))
    return out
