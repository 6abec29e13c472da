"""Stability against the previous run, fanned out: each bucket compares its customers
with the previous run's parts (holding only its own customers) and the reduce merges the
buckets' transitions with the previous run's summary read part by part; the result is
the single path's, which reads the whole previous run in one pass."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.scoring.metrics import PreviousAssignments, PreviousSummary, ScoreStats, build_metrics
from custseg.scoring.score import RunInfo
from custseg.stats import stable_hash

RUN = RunInfo(dataset="d", run_id="r", run_date=dt.date(2024, 1, 2), as_of=dt.date(2024, 1, 1))


class StubModel:
    k = 4
    version = "v-now"
    metadata: ClassVar[dict] = {"training": {}, "segments": []}

    def segment_names(self) -> dict[int, str]:
        return {i: f"Now {i}" for i in range(self.k)}


def _previous_parts(folder: Path, rng: np.random.Generator) -> list[Path]:
    """Customers c0..c899 of a previous run in 3 parts; segment 4 only in the last part
    (the previous model had 5 segments)."""
    folder.mkdir()
    paths = []
    for part, (lo, hi, k) in enumerate([(0, 300, 4), (300, 600, 3), (600, 900, 5)]):
        seg = rng.integers(0, k, hi - lo)
        table = pa.table(
            {
                "customer_id": pa.array([f"c{i}" for i in range(lo, hi)]),
                "segment_id": pa.array(seg, type=pa.int16()),
                "segment_name": pa.array([f"Old {s}" for s in seg]),
                "model_version": pa.array(["v-old"] * (hi - lo)),
            }
        )
        paths.append(folder / f"part-{part:05d}.parquet")
        pq.write_table(table, paths[-1])
    return paths


def _scored(ids: list[str], rng: np.random.Generator) -> dict:
    n = len(ids)
    return {
        "frame": pd.DataFrame({"x": rng.normal(size=n)}),
        "segment_id": rng.integers(0, 4, n),
        "distance": rng.random(n),
        "confidence": rng.random(n),
        "hashes": stable_hash(pd.Series(ids, dtype="string")),
    }


def _stats(track: bool) -> ScoreStats:
    return ScoreStats(k=4, numeric=["x"], categorical=[], track_previous=track)


def test_bucketed_stability_equals_one_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    parts = _previous_parts(tmp_path / "previous", rng)
    # this run: c200..c1099 (c0..c199 gone, c900..c1099 new), scored in 4 buckets
    ids = [f"c{i}" for i in range(200, 1100)]
    buckets = [_scored(ids[b::4], rng) for b in range(4)]
    whole = PreviousAssignments.load(tmp_path / "previous")
    one = _stats(True)
    for chunk in buckets:
        one.update(**chunk, previous=whole.lookup(chunk["hashes"]))
    merged = None
    for chunk in buckets:
        held: PreviousAssignments | None = None
        for path in parts:
            part = PreviousAssignments.load(path, keep=np.unique(chunk["hashes"]))
            held = part if held is None else held.merge(part)
        assert held is not None and held.hashes.size <= len(chunk["hashes"])
        bucket = _stats(True).update(**chunk, previous=held.lookup(chunk["hashes"]))
        merged = bucket if merged is None else merged.merge(bucket)
    assert merged is not None
    summary = PreviousSummary.load(parts[2])
    summary = summary.merge(PreviousSummary.load(parts[0])).merge(PreviousSummary.load(parts[1]))
    doc1 = build_metrics(one, StubModel(), run=RUN, as_of=RUN.as_of, previous=whole.summary)
    doc2 = build_metrics(merged, StubModel(), run=RUN, as_of=RUN.as_of, previous=summary)
    assert doc2["stability"] == doc1["stability"]
    stability = doc1["stability"]
    assert stability["previous_customers"] == 900
    assert stability["common_customers"] == 700
    assert (stability["new_customers"], stability["gone_customers"]) == (200, 200)
    assert len(stability["previous_segment_sizes"]) == 5
    assert stability["previous_model_version"] == "v-old" and stability["same_model"] is False


def test_previous_summaries_merged_equal_one_pass(tmp_path: Path) -> None:
    parts = _previous_parts(tmp_path / "previous", np.random.default_rng(5))
    whole = PreviousSummary.load(tmp_path / "previous")
    merged = PreviousSummary.load(parts[1]).merge(PreviousSummary.load(parts[2]))
    merged = PreviousSummary.load(parts[0]).merge(merged)
    assert merged.customers == whole.customers == 900
    assert merged.segment_sizes == whole.segment_sizes
    assert sum(whole.segment_sizes) == 900
    assert merged.names == whole.names == {i: f"Old {i}" for i in range(5)}
    assert merged.model_version == whole.model_version == "v-old"
    # the single path's summary (read with the customer ids) is the same
    held = PreviousAssignments.load(tmp_path / "previous")
    assert held.summary.segment_sizes == whole.segment_sizes
    assert held.customers == 900


def test_an_empty_previous_run_has_no_segment_sizes(tmp_path: Path) -> None:
    empty = pa.table(
        {"customer_id": pa.array([], pa.string()), "segment_id": pa.array([], pa.int16())}
    )
    pq.write_table(empty, tmp_path / "part-00000.parquet")
    summary = PreviousSummary.load(tmp_path / "part-00000.parquet")
    assert (summary.customers, summary.segment_sizes, summary.model_version) == (0, [], None)
    held = PreviousAssignments.load(tmp_path / "part-00000.parquet", keep=np.array([1], "uint64"))
    assert held.lookup(np.array([1], "uint64")).tolist() == [-1]
