"""A large upload ingested range by range, with the cleaning statistics merged from the
ranges' profiles, gives the clean rows of one pass over the whole file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.fanout import profile
from custseg.fanout.ranges import plan_ranges
from custseg.ingest.cleaning import RowSample
from custseg.ingest.pipeline import IngestResult, RangeIngest, ingest_file

ORDERS = Path(__file__).resolve().parents[2] / "fixtures" / "online_retail_invoices.csv"
UPLOAD = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


def _ingest(
    path: Path, out: Path, ranged: RangeIngest | None = None
) -> tuple[IngestResult, pa.Table]:
    result = ingest_file(
        path, out, source_name=path.name, dataset="d", run_id="r", upload_time=UPLOAD, ranged=ranged
    )
    assert result.clean_path is not None
    parts = sorted(result.clean_path.glob("*.parquet"))
    return result, pa.concat_tables([pq.read_table(p) for p in parts])


def test_ranges_cleaned_with_merged_statistics_equal_the_whole_file(tmp_path: Path) -> None:
    data = ORDERS.read_bytes()
    whole_result, whole = _ingest(ORDERS, tmp_path / "whole")
    plan = plan_ranges(lambda s, e: data[s:e], len(data), len(data) // 5, name="orders.csv")
    assert len(plan.ranges) == 5
    files, profiles = [], []
    for rng in plan.ranges:
        path = tmp_path / f"range-{rng.index}.csv"
        path.write_bytes(plan.header + data[rng.start : rng.end])
        ranged = RangeIngest(row_offset=rng.first_record)
        _, own = _ingest(path, tmp_path / f"profile-{rng.index}", ranged)
        assert ranged.profile is not None
        stats, sample = ranged.profile
        profiles.append(
            (profile.profile_doc(stats), profile.sample_from_bytes(profile.sample_bytes(sample)))
        )
        files.append((path, rng.first_record, own))
    # each range's own statistics flag outliers at other bounds than the whole file's
    alone = pa.concat_tables([own for _, _, own in files], promote_options="default")
    flags = [c for c in whole.column_names if c.endswith("__clipped")]
    assert flags
    assert alone.select(flags).to_pylist() != whole.select(flags).to_pylist()
    merged = profile.merge(profiles, whole_result.contract)
    parts = []
    for i, (path, offset, _) in enumerate(files):
        cleaning = profile.cleaning(merged, whole_result.contract)
        _, part = _ingest(path, tmp_path / f"clean-{i}", RangeIngest(offset, cleaning))
        parts.append(part.replace_schema_metadata(whole.schema.metadata))
    assert pa.concat_tables(parts).equals(whole)


def test_merged_row_sample_is_the_sample_of_the_union() -> None:
    rows = np.arange(2, 5002)
    values = {"x": rows.astype("float64")}
    whole = RowSample(k=300)
    whole.update({"x": values["x"]}, rows)
    left, right = RowSample(k=300), RowSample(k=300)
    left.update({"x": values["x"][:1700]}, rows[:1700])
    right.update({"x": values["x"][1700:]}, rows[1700:])
    merged = left.merge(right)
    assert sorted(merged.keys.tolist()) == sorted(whole.keys.tolist())
    assert sorted(merged.column("x").tolist()) == sorted(whole.column("x").tolist())
