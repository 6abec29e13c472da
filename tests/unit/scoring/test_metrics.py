"""Metrics: PSI, verdict rules, lift, mergeable run statistics, previous-run lookup."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseg.scoring.metrics import (
    METRIC_DOCS,
    THRESHOLD_DOCS,
    PreviousAssignments,
    ScoreStats,
    Thresholds,
    build_metrics,
    evaluate,
    psi,
    summarise_quality,
    thresholds_table,
)
from custseg.scoring.score import RunInfo
from custseg.stats import Histogram, Moments, stable_hash


class StubModel:
    """The parts of SegmentModel that metrics use."""

    def __init__(self, k: int = 2, metadata: dict[str, Any] | None = None) -> None:
        self.k = k
        self.version = "v-test"
        self.metadata = metadata or {"training": {}, "segments": []}

    def segment_names(self) -> dict[int, str]:
        return {i: f"Seg {i}" for i in range(self.k)}


RUN = RunInfo(dataset="d", run_id="r", run_date=dt.date(2024, 1, 2), as_of=dt.date(2024, 1, 1))


def test_psi_is_zero_for_same_data_and_large_for_shifted() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(50, 10, 5000)
    hist = Histogram.from_quantiles(base, bins=10)
    same = Histogram(edges=hist.edges).update(base)
    other = Histogram(edges=hist.edges).update(rng.normal(50, 10, 5000))
    shifted = Histogram(edges=hist.edges).update(base * 1.4)
    assert psi(same.counts, hist.counts) == pytest.approx(0.0, abs=1e-12)
    assert psi(other.counts, hist.counts) < 0.02
    assert psi(shifted.counts, hist.counts) > 1.0


def _metrics(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "customers": 1000,
        "drift": {
            "numeric": {"income": {"psi": 0.01}, "age": {"psi": 0.02}},
            "categorical": {"gender": {"psi": 0.0}},
            "segment_shares": {"max_abs_diff": 0.01, "psi": 0.001},
        },
        "cluster_quality": {"silhouette_drop": 0.0, "distance_ratio": 1.0},
        "stability": {"available": False},
    }
    doc.update(overrides)
    return doc


def test_verdict_rules_name_the_feature() -> None:
    assert evaluate(_metrics()) == ("ok", [])
    m = _metrics()
    m["drift"]["numeric"]["income"]["psi"] = 0.87
    verdict, reasons = evaluate(m)
    assert verdict == "retrain" and reasons == ["income drifted: PSI 0.87 > 0.25"]
    m["drift"]["numeric"]["income"]["psi"] = 0.15
    assert evaluate(m) == ("watch", ["income drifted: PSI 0.15 > 0.1"])
    m = _metrics(cluster_quality={"silhouette_drop": 0.2, "distance_ratio": 1.3})
    verdict, reasons = evaluate(m)
    assert verdict == "retrain" and "silhouette" in reasons[0] and "distance" in reasons[1]
    m = _metrics(stability={"available": True, "same_model": True, "changed_share": 0.3})
    assert evaluate(m)[0] == "watch"
    m["stability"]["same_model"] = False  # other model version: ids not comparable
    assert evaluate(m)[0] == "ok"
    assert evaluate(_metrics(customers=5))[0] == "watch"
    strict = Thresholds.from_mapping({"psi_watch": 0.001, "psi_retrain": 0.015})
    assert evaluate(_metrics(), strict)[0] == "retrain"


def test_thresholds_from_mapping_and_docs() -> None:
    t = Thresholds.from_mapping({"psi_retrain": "0.3", "min_customers": 10})
    assert t.psi_retrain == 0.3 and t.min_customers == 10 and t.psi_watch == 0.1
    with pytest.raises(ValueError, match="unknown threshold"):
        Thresholds.from_mapping({"psi_typo": 1})
    assert set(THRESHOLD_DOCS) == set(Thresholds().to_dict())
    assert "`psi_retrain` | 0.25" in thresholds_table()
    assert "verdict" in METRIC_DOCS and "outcomes.<column>" in METRIC_DOCS


def _chunk(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = pd.Series([f"c{seed}-{i}" for i in range(n)], dtype="string")
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "y": rng.uniform(0, 10, n),
            "colour": pd.array(rng.choice(["red", "blue", "green"], n), dtype="string"),
        }
    )
    return {
        "frame": frame,
        "segment_id": rng.integers(0, 3, n),
        "distance": rng.uniform(0, 2, n),
        "confidence": rng.uniform(0, 1, n),
        "hashes": stable_hash(ids),
        "value": rng.gamma(2.0, 50.0, n),
        "extras": pd.DataFrame({"churn": rng.integers(0, 2, n).astype("float64")}),
    }


def _stats() -> ScoreStats:
    return ScoreStats(
        k=3,
        numeric=["x", "y"],
        categorical=["colour"],
        outcomes=["churn"],
        baseline_edges={"x": [-3.0, -1.0, 0.0, 1.0, 3.0], "y": [0.0, 5.0, 10.0]},
        sample_k=50,
        segment_sample_k=10,
    )


def test_merged_chunk_statistics_equal_one_pass() -> None:
    chunks = [_chunk(120, s) for s in range(4)]
    one = _stats()
    for c in chunks:  # sequential updates
        one.update(**c)
    parts = []
    for c in chunks:  # independent workers, merged afterwards in another order
        parts.append(_stats().update(**c))
    merged = parts[3].merge(parts[1]).merge(parts[0].merge(parts[2]))
    assert merged.customers == one.customers == 480
    assert (merged.seg_counts == one.seg_counts).all()
    np.testing.assert_allclose(merged.value_sum, one.value_sum)
    for s in range(3):
        for f in ("x", "y"):
            a, b = merged.seg_moments[s][f], one.seg_moments[s][f]
            assert a.n == b.n and a.mean == pytest.approx(b.mean) and a.m2 == pytest.approx(b.m2)
    assert merged.categories == one.categories
    assert merged.histograms["x"].counts == one.histograms["x"].counts
    np.testing.assert_allclose(merged.outcome_pos["churn"], one.outcome_pos["churn"])
    pd.testing.assert_frame_equal(merged.sample_rows(), one.sample_rows())
    for s in range(3):
        pd.testing.assert_frame_equal(merged.segment_sample(s), one.segment_sample(s))
    assert len(one.sample_rows()) == 50
    # base moments are the merge of the segments and equal a direct computation
    all_x = np.concatenate([c["frame"]["x"].to_numpy() for c in chunks])
    assert one.base_moments()["x"].mean == pytest.approx(all_x.mean())
    assert one.base_moments()["x"].std == pytest.approx(Moments().update(all_x).std)


def test_outcome_lift_on_a_hand_made_example() -> None:
    # segment 0: 4 customers, 3 churned; segment 1: 6 customers, 1 churned; one unknown
    seg = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    churn = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0, np.nan])
    n = seg.size
    ids = pd.Series([f"id{i}" for i in range(n)], dtype="string")
    stats = ScoreStats(k=2, numeric=["x"], categorical=[], outcomes=["churn"])
    stats.update(
        pd.DataFrame({"x": np.arange(n, dtype="float64")}),
        seg,
        np.ones(n),
        np.ones(n),
        hashes=stable_hash(ids),
        value=np.full(n, 10.0),
        extras=pd.DataFrame({"churn": churn}),
    )
    m = build_metrics(stats, StubModel(k=2), run=RUN, as_of=dt.date(2024, 1, 1))
    doc = m["outcomes"]["churn"]
    assert doc["customers"] == 10 and doc["positives"] == 4
    assert doc["overall_rate"] == pytest.approx(0.4)
    s0, s1 = doc["by_segment"]
    assert (s0["customers"], s0["positives"], s0["rate"]) == (4, 3, 0.75)
    assert s0["lift"] == pytest.approx(0.75 / 0.4, abs=1e-4)
    assert s1["rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert s1["lift"] == pytest.approx((1 / 6) / 0.4, abs=1e-4)
    assert doc["lift_spread"] == pytest.approx(0.75 / (1 / 6), abs=1e-3)
    assert m["value"]["top10_share"] == pytest.approx(20 / 110, abs=1e-4)  # 2 of 11 equal values
    assert [s["customers"] for s in m["segments"]] == [4, 7]
    assert m["stability"]["available"] is False


def test_previous_assignments_lookup(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": pa.array(["a", "b", "c"]),
            "segment_id": pa.array([0, 1, 1], type=pa.int16()),
            "segment_name": pa.array(["Zero", "One", "One"]),
            "model_version": pa.array(["v1"] * 3),
        }
    )
    pq.write_table(table, tmp_path / "part-00000.parquet")
    prev = PreviousAssignments.load(tmp_path)  # a directory of parts
    assert prev.customers == 3 and prev.model_version == "v1"
    assert prev.names == {0: "Zero", 1: "One"}
    found = prev.lookup(stable_hash(pd.Series(["c", "zz", "a"], dtype="string")))
    assert found.tolist() == [1, -1, 0]


def test_summarise_quality_of_an_ingest_report() -> None:
    q = {
        "rows_read": 100,
        "rows_kept": 90,
        "rows_rejected": 10,
        "rejected_by_reason": {"age: out of range": 3, "customer_id: required value missing": 7},
        "columns_ignored": ["notes"],
    }
    s = summarise_quality(q)
    assert s["reject_share"] == 0.1
    assert s["top_reasons"][0] == {"reason": "customer_id: required value missing", "rows": 7}
    assert summarise_quality(None) == {"available": False}


def _same_stats(a: ScoreStats, b: ScoreStats) -> None:
    """Equal in every field, exactly (floats bit for bit, counters in the same order)."""
    assert a.customers == b.customers
    for name in ("seg_counts", "value_sum", "value_known", "rfm_grid", "transitions"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("seg_moments", "distance", "confidence", "histograms"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("categories", "labels"):
        mine, theirs = getattr(a, name), getattr(b, name)
        assert list(mine) == list(theirs)
        for key in mine:
            assert list(mine[key].items()) == list(theirs[key].items()), (name, key)
    pd.testing.assert_frame_equal(a.sample_rows(), b.sample_rows())
    assert sorted(a.segment_samples) == sorted(b.segment_samples)
    for s in a.segment_samples:
        pd.testing.assert_frame_equal(a.segment_sample(s), b.segment_sample(s))


def test_codes_and_frames_give_the_same_statistics() -> None:
    from custseg.features.build import CategoryCodes
    from custseg.model.labels import LabelCodes

    plain, coded = _stats(), _stats()
    rng = np.random.default_rng(9)
    for seed in range(5):
        c = _chunk(300, seed)
        n = len(c["frame"])
        c["frame"].loc[::17, "x"] = np.nan
        labels = LabelCodes(
            r_score=rng.integers(0, 6, n).astype("int8"),
            f_score=rng.integers(0, 6, n).astype("int8"),
            m_score=rng.integers(0, 6, n).astype("int8"),
            rfm_segment=rng.integers(0, 12, n).astype("int8"),
            value_tier=rng.integers(0, 4, n).astype("int8"),
            lifecycle_stage=rng.integers(2, 5, n).astype("int8"),
        )
        plain.update(**c, labels=labels.to_frame(c["frame"].index))
        codes = {"colour": CategoryCodes.from_values(c["frame"]["colour"])}
        coded.update(**c, labels=labels, codes=codes)
    _same_stats(coded, plain)
    assert len(plain.sample_rows()) == 50


def test_rows_lost_at_ingest_above_the_threshold_make_the_verdict_watch() -> None:
    lost = {
        "available": True,
        "rows_read": 1000,
        "rows_rejected": 300,
        "reject_share": 0.3,
        "top_reasons": [{"reason": "orders: not a whole number", "rows": 290}],
    }
    verdict, reasons = evaluate(_metrics(data_quality=lost))
    assert verdict == "watch"
    assert reasons == [
        "30% of the uploaded rows were rejected at ingest (mostly 290 x orders: not a whole "
        "number) > 10%: the segments describe only the rows kept"
    ]
    assert evaluate(_metrics(data_quality={**lost, "reject_share": 0.05})) == ("ok", [])


def test_a_model_that_failed_its_gates_makes_the_verdict_watch() -> None:
    failed = {"gates": {"passed": False, "reasons": ["silhouette 0.080 below the floor 0.15"]}}
    verdict, reasons = evaluate(_metrics(model=failed))
    assert verdict == "watch"
    assert "did not pass its quality gates (silhouette 0.080 below the floor 0.15)" in reasons[0]
    assert evaluate(_metrics(model={"gates": {"passed": True, "reasons": []}})) == ("ok", [])
