"""Cutting a large CSV upload into byte ranges that each start after a real record end.

:func:`plan_ranges` reads the object once, block by block (S3 ranged GETs through the
``read(start, end)`` it is given), and tracks whether each byte is inside a quoted field:
in RFC 4180 CSV a quote opens or closes a quoted field and an escaped quote is written
twice, so a position is inside quotes exactly when the number of quotes before it is
odd. A line feed outside quotes ends a record; one inside quotes is part of a value.
Each range is cut at the first record end at or after its nominal size, so no record
is split and a quoted newline never starts a range. The first record is the header:
every range is ingested as the header followed by its bytes.

Only the parity of the quote count is kept, so memory is a few blocks whatever the
object's size: ``read_ahead`` blocks are fetched at once (one GET stream gives about
85-90 MB/s, the S3 performance guidelines say; several keep the scan, not the network,
the limit) and scanned in order.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

QUOTE, NEWLINE = 0x22, 0x0A
DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024
READ_AHEAD = 8
"""Blocks :func:`plan_ranges` fetches at once (memory: this many blocks in flight)."""
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
    quotes = np.flatnonzero(data == QUOTE)
    feeds = np.flatnonzero(data == NEWLINE)
    # a line feed is inside quotes when an odd number of quotes comes before it (quotes
    # are few: counting them by binary search beats a running sum over every byte)
    inside_at = (np.searchsorted(quotes, feeds) & 1).astype(bool) != inside
    return feeds[~inside_at], bool(quotes.size & 1) != inside


def read_blocks(
    read: Callable[[int, int], bytes], size: int, block_bytes: int, read_ahead: int
) -> Iterator[tuple[int, bytes]]:
    """``(start, bytes)`` of each block of the object in order, ``read_ahead`` reads in
    flight on threads (``read`` must be safe to call from several threads, as a boto3
    client is). A failed read raises at its block's place; stopping early cancels the
    reads not started."""
    starts = iter(range(0, size, block_bytes))
    with ThreadPoolExecutor(max_workers=read_ahead, thread_name_prefix="split-read") as pool:
        pending: deque[tuple[int, Future[bytes]]] = deque()

        def submit() -> None:
            start = next(starts, None)
            if start is not None:
                pending.append((start, pool.submit(read, start, min(size, start + block_bytes))))

        for _ in range(read_ahead):
            submit()
        try:
            while pending:
                start, block = pending.popleft()
                submit()
                yield start, block.result()
        finally:
            for _, block in pending:
                block.cancel()


def _cut_points(
    offsets: np.ndarray, first: int, next_cut: int, target_bytes: int, size: int
) -> Iterator[int]:
    """Indexes in ``offsets`` (sorted record ends, from ``first``) where a range ends: the
    first record end at or after ``next_cut``, then ``target_bytes`` further each time;
    never the object's end."""
    at = first
    while True:
        at = max(at, int(np.searchsorted(offsets, next_cut)))
        if at >= offsets.size or int(offsets[at]) >= size:
            return
        yield at
        next_cut = int(offsets[at]) + target_bytes
        at += 1


def plan_ranges(
    read: Callable[[int, int], bytes],
    size: int,
    target_bytes: int,
    *,
    name: str = "the upload",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    read_ahead: int = READ_AHEAD,
) -> SplitPlan:
    """Ranges of about ``target_bytes`` of an object of ``size`` bytes, each cut after a
    record end. ``read(start, end)`` returns bytes ``[start, end)``; ``read_ahead`` blocks
    of ``block_bytes`` are read at once (:func:`read_blocks`). Raises :class:`SplitError`
    for a gzip object or one whose quotes never close."""
    if target_bytes < 1 or block_bytes < 1 or read_ahead < 1:
        raise ValueError("target_bytes, block_bytes and read_ahead must be positive")
    if size == 0:
        raise SplitError(f"{name}: the file is empty")
    header_end: int | None = None
    cuts: list[tuple[int, int]] = []  # (end offset, records before it)
    inside, records, next_cut = False, 0, 0
    for start, block in read_blocks(read, size, block_bytes, read_ahead):
        if start == 0 and block.startswith(GZIP_MAGIC):
            raise SplitError(f"{name}: a gzip file cannot be cut into byte ranges")
        ends, inside = record_ends(block, inside)
        offsets = ends + start + 1  # where each record after the block's ends
        first = 0
        if header_end is None and offsets.size:
            header_end, first = int(offsets[0]), 1
            next_cut = header_end + target_bytes
        for at in _cut_points(offsets, first, next_cut, target_bytes, size):
            cuts.append((int(offsets[at]), records + at - first + 1))
            next_cut = int(offsets[at]) + target_bytes
        records += offsets.size - first
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
