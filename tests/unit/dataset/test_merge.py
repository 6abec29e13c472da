"""Merging the clean parts of a dataset: customers upsert, orders union without repeats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from custseg.dataset.clean_data import read_clean
from custseg.dataset.merge import EngineLimits, merge_parts


def write_part(path: Path, table: pa.Table) -> Path:
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-00000.parquet")
    return path


def customers(ids: list[str], ages: list[float]) -> pa.Table:
    return pa.table(
        {
            "_row": pa.array(range(len(ids)), pa.int64()),
            "customer_id": ids,
            "age": pa.array(ages, pa.float64()),
            "age__missing": [False] * len(ids),
        }
    )


def test_customer_tables_upsert_the_latest_row(tmp_path: Path) -> None:
    a = write_part(tmp_path / "a", customers(["1", "2", "3"], [20, 30, 40]))
    b = write_part(tmp_path / "b", customers(["3", "4"], [41, 50]))
    out = merge_parts([a, b], "customers", tmp_path / "out")
    merged = read_clean(out)
    assert merged.column("customer_id").to_pylist() == ["1", "2", "3", "4"]
    assert merged.column("age").to_pylist() == [20, 30, 41, 50]
    assert merged.column("_row").to_pylist() == [0, 1, 2, 3]
    assert merged.schema == pq.read_schema(str(b / "part-00000.parquet"))


def orders(rows: list[tuple[str, str, float]]) -> pa.Table:
    return pa.table(
        {
            "_row": pa.array(range(len(rows)), pa.int64()),
            "customer_id": [r[0] for r in rows],
            "event_time": pa.array(
                [dt.datetime.fromisoformat(r[1]) for r in rows], pa.timestamp("ns")
            ),
            "amount": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def test_order_logs_union_without_rows_an_earlier_part_holds(tmp_path: Path) -> None:
    day1 = [("1", "2026-01-01", 5.0), ("1", "2026-01-01", 5.0), ("2", "2026-01-02", 7.0)]
    day2 = [("2", "2026-01-02", 7.0), ("1", "2026-01-01", 5.0), ("3", "2026-01-03", 9.0)]
    day3 = [("1", "2026-01-01", 5.0), ("1", "2026-01-01", 5.0), ("1", "2026-01-01", 5.0)]
    parts = [
        write_part(tmp_path / n, orders(r)) for n, r in (("a", day1), ("b", day2), ("c", day3))
    ]
    out = merge_parts(parts, "transactions", tmp_path / "out", limits=EngineLimits(256, tmp_path))
    rows = read_clean(out).to_pylist()
    got = [(r["customer_id"], r["event_time"].date().isoformat(), r["amount"]) for r in rows]
    # day 1's two equal lines stay (the ingest kept both); day 2 repeats lines of day 1;
    # day 3 holds that line three times, one more than any earlier part
    assert got == [*day1, ("3", "2026-01-03", 9.0), ("1", "2026-01-01", 5.0)]


def test_one_part_is_copied_as_it_is(tmp_path: Path) -> None:
    a = write_part(tmp_path / "a", customers(["1"], [20]))
    out = merge_parts([a], "customers", tmp_path / "out")
    assert (out / "part-00000.parquet").read_bytes() == (a / "part-00000.parquet").read_bytes()
