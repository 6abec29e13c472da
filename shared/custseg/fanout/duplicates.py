"""Exact duplicates across the ranges of a fanned-out upload.

The single path removes every later copy of a row (equal raw text) anywhere in the file;
each range removes the copies within itself. For the copies in different ranges, the
profile step writes each range's kept rows as (``part``: the range, ``line``: the upload's
row number, ``h1``, ``h2``: a 128-bit hash of the raw text,
:func:`custseg.ingest.pipeline.exact_hashes`), and one query over every range's hashes
(:func:`duplicates_select`, on Athena) names the rows whose hash an earlier row of the
upload already has. Those ranges are profiled again without them, and the ingest step
removes them as duplicate rows: the same rows, counts and statistics as one pass.
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


def duplicates_select(table: str, bucket_column: str) -> str:
    """Athena SQL: the rows of ``table`` (hash files) whose hash an earlier row of the
    upload has, as (``line``, their range as ``bucket_column``) for an UNLOAD partitioned
    by range."""
    h1, h2 = (quote(n) for n in HASH_COLUMNS)
    line, part = quote(LINE_COLUMN), quote(PART_COLUMN)
    return (
        f"SELECT {line}, {part} AS {quote(bucket_column)} FROM ("
        f"SELECT {line}, {part}, ROW_NUMBER() OVER (PARTITION BY {h1}, {h2} ORDER BY {line}) "
        f"AS copy FROM {table}) AS numbered WHERE copy > 1"
    )


def duplicate_lines(files: list[bytes]) -> np.ndarray:
    """The sorted row numbers in a range's UNLOAD files (``line`` of each)."""
    lines = [pq.read_table(pa.BufferReader(data)).column(LINE_COLUMN).to_numpy() for data in files]
    return np.sort(np.concatenate(lines)) if lines else np.empty(0, dtype=np.int64)
