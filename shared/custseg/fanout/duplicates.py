"""Exact duplicates across the ranges of a fanned-out upload.

The single path removes every later copy of a row (equal raw text) anywhere in the file;
each range removes the copies within itself. For the copies in different ranges, the
profile step writes each range's kept rows as (``part``: the range, ``line``: the upload's
row number, ``h1``: a 64-bit hash of the raw text, ``h2``: one of the converted values'
bits; ``custseg.ingest.pipeline._exact_hashes``), and queries over every range's hashes
(on Athena) name the ranges holding rows whose hashes an earlier row of the upload already
has (:func:`parts_with_copies_select`) and unload those rows (:func:`duplicates_select`).
Those ranges are profiled again without them, and the ingest step removes them as
duplicate rows: the same rows, counts and statistics as one pass.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.features.sql import quote

PART_COLUMN = "part"
LINE_COLUMN = "line"
HASH_COLUMNS = ("h1", "h2")


def hashes_bytes(index: int, hashes: pa.Table) -> bytes:
    """A range's kept rows' hashes as Parquet, with the range's index as ``part``."""
    table = pa.table(
        {
            PART_COLUMN: pa.array(np.full(hashes.num_rows, index, dtype=np.int32)),
            LINE_COLUMN: hashes.column("row"),
            **{name: hashes.column(name) for name in HASH_COLUMNS},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


FOLDERS = 100
"""Folders the duplicates are unloaded into (a range's copies in folder ``part % 100``):
Athena writes at most 100 partitions in one statement."""


def _copies(table: str) -> str:
    """The rows of ``table`` whose hash an earlier row of the upload has."""
    h1, h2 = (quote(n) for n in HASH_COLUMNS)
    line, part = quote(LINE_COLUMN), quote(PART_COLUMN)
    return (
        f"SELECT {line}, {part} FROM ("
        f"SELECT {line}, {part}, ROW_NUMBER() OVER (PARTITION BY {h1}, {h2} ORDER BY {line}) "
        f"AS copy FROM {table}) AS numbered WHERE copy > 1"
    )


def duplicates_select(table: str, bucket_column: str) -> str:
    """Athena SQL: the copies in ``table`` (hash files) as (``line``, ``part``) with their
    folder (``part`` modulo :data:`FOLDERS`) as ``bucket_column``, for an UNLOAD
    partitioned by it."""
    part = quote(PART_COLUMN)
    return (
        f"SELECT {quote(LINE_COLUMN)}, {part}, CAST(MOD({part}, {FOLDERS}) AS INTEGER) AS "
        f"{quote(bucket_column)} FROM ({_copies(table)}) AS copies"
    )


def parts_with_copies_select(table: str) -> str:
    """Athena SQL: the ranges holding copies, one row each (``part``, in order)."""
    part = quote(PART_COLUMN)
    return f"SELECT {part} FROM ({_copies(table)}) AS copies GROUP BY {part} ORDER BY {part}"


def duplicate_lines(files: list[bytes], index: int) -> np.ndarray:
    """The sorted row numbers of range ``index`` in its folder's UNLOAD files."""
    lines = []
    for data in files:
        table = pq.read_table(pa.BufferReader(data), columns=[LINE_COLUMN, PART_COLUMN])
        part = table.column(PART_COLUMN).to_numpy()
        lines.append(table.column(LINE_COLUMN).to_numpy()[part == index])
    return np.sort(np.concatenate(lines)) if lines else np.empty(0, dtype=np.int64)
