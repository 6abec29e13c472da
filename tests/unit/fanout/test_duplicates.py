"""The query that finds rows copying an earlier range's row (custseg.fanout.duplicates)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from custseg.fanout.duplicates import duplicate_lines, duplicates_select, hashes_bytes
from custseg.features.dialect import from_athena


def _hashes(rows: list[int], keys: list[int]) -> pa.Table:
    h = pa.array(keys, type=pa.int64())
    return pa.table(
        {
            "row": pa.array(rows, type=pa.int64()),
            "h1": h,
            "h2": pa.array([7] * len(keys), pa.int64()),
        }
    )


def test_every_later_copy_is_named_with_its_range_and_the_first_is_kept(tmp_path) -> None:
    ranges = [
        _hashes([2, 3, 4], [10, 11, 12]),
        _hashes([5, 6, 7], [11, 13, 10]),  # copies of rows 3 and 2
        _hashes([8, 9], [10, 14]),  # a third copy of row 2
    ]
    files = []
    for index, table in enumerate(ranges):
        path = tmp_path / f"{index}.parquet"
        path.write_bytes(hashes_bytes(index, table))
        files.append(f"'{path}'")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW range_hashes_r AS SELECT * FROM read_parquet([{', '.join(files)}])")
    found = con.execute(from_athena(duplicates_select("range_hashes_r", "bucket"))).fetchall()
    assert sorted(found) == [(5, 1), (7, 1), (8, 2)]
    # a half alike is not a copy
    other = tmp_path / "other.parquet"
    table = pa.table(
        {
            "row": pa.array([20], pa.int64()),
            "h1": pa.array([10], pa.int64()),
            "h2": pa.array([8], pa.int64()),
        }
    )
    other.write_bytes(hashes_bytes(3, table))
    files.append(f"'{other}'")
    view = f"SELECT * FROM read_parquet([{', '.join(files)}])"
    con.execute(f"CREATE OR REPLACE VIEW range_hashes_r AS {view}")
    found = con.execute(from_athena(duplicates_select("range_hashes_r", "bucket"))).fetchall()
    assert sorted(found) == [(5, 1), (7, 1), (8, 2)]


def test_a_ranges_unloaded_files_give_its_sorted_lines() -> None:
    def unloaded(lines: list[int]) -> bytes:
        return hashes_bytes(0, _hashes(lines, lines))

    assert duplicate_lines([unloaded([9, 4]), unloaded([6])]).tolist() == [4, 6, 9]
    assert duplicate_lines([]).dtype == np.int64
