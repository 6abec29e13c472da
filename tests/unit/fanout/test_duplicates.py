"""The queries that find rows copying an earlier range's row (custseg.fanout.duplicates)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.fanout.duplicates import (
    FOLDERS,
    duplicate_lines,
    duplicates_select,
    hashes_bytes,
    parts_with_copies_select,
)
from custseg.features.dialect import from_athena


def _hashes(rows: list[int], h1: list[int], h2: int = 7) -> pa.Table:
    return pa.table(
        {
            "row": pa.array(rows, pa.int64()),
            "h1": pa.array(h1, pa.int64()),
            "h2": pa.array([h2] * len(rows), pa.int64()),
        }
    )


def _view(con: duckdb.DuckDBPyConnection, tmp: Path, ranges: dict[int, pa.Table]) -> None:
    files = []
    for index, table in ranges.items():
        path = tmp / f"{index}.parquet"
        path.write_bytes(hashes_bytes(index, table))
        files.append(f"'{path}'")
    view = f"SELECT * FROM read_parquet([{', '.join(files)}])"
    con.execute(f"CREATE OR REPLACE VIEW range_hashes_r AS {view}")


def test_every_later_copy_is_named_in_its_ranges_folder_and_the_first_is_kept(
    tmp_path: Path,
) -> None:
    ranges = {
        0: _hashes([2, 3, 4], [10, 11, 12]),
        1: _hashes([5, 6, 7], [11, 13, 10]),  # copies of rows 3 and 2
        FOLDERS + 2: _hashes([8, 9], [10, 14]),  # a third copy of row 2, in folder 2
        7: _hashes([20], [10], h2=8),  # one half alike: not a copy
    }
    con = duckdb.connect()
    _view(con, tmp_path, ranges)
    found = con.execute(from_athena(duplicates_select("range_hashes_r", "bucket"))).fetchall()
    assert sorted(found) == [(5, 1, 1), (7, 1, 1), (8, FOLDERS + 2, 2)]
    held = con.execute(from_athena(parts_with_copies_select("range_hashes_r"))).fetchall()
    assert held == [(1,), (FOLDERS + 2,)]


def test_a_range_reads_its_own_lines_from_its_folder() -> None:
    def unloaded(lines: list[int], parts: list[int]) -> bytes:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"line": lines, "part": parts}), sink)
        return sink.getvalue().to_pybytes()

    files = [unloaded([9, 4, 50], [3, 3, FOLDERS + 3]), unloaded([6], [3])]
    assert duplicate_lines(files, 3).tolist() == [4, 6, 9]
    assert duplicate_lines(files, FOLDERS + 3).tolist() == [50]
    assert duplicate_lines([], 3).dtype == np.int64
