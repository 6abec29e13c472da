"""A run's predictions: prediction columns in the assignments, value at risk across chunks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from custseg.scoring.outputs import (
    ASSIGNMENTS_SCHEMA,
    AssignmentWriter,
    assignments_batch,
)
from custseg.scoring.predictions import PredictionStats, RiskMeasure, risk_measure

META = {"predictions": {"p_churn": {"kind": "propensity", "use": "risk", "status": "fitted"}}}


def test_risk_measure_prefers_lifetime_value_columns() -> None:
    assert risk_measure(META, ["p_churn"]) == RiskMeasure("value", "p_churn", inverse=False)
    clv = risk_measure(META, ["p_churn", "expected_value_12m", "p_alive"])
    assert clv is not None and clv.text == "expected_value_12m x (1 - p_alive)"
    assert risk_measure({}, []) is None


def test_top_customers_across_chunks_equal_the_global_top(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 5_000
    ids = pd.Index([f"c{i:05d}" for i in range(n)])
    seg = rng.integers(0, 3, n)
    value, p = rng.gamma(2, 100, n), rng.random(n)
    stats = PredictionStats(["p_churn"], risk_measure(META, ["p_churn"]), top_n=50)
    for start in range(0, n, 700):
        part = slice(start, start + 700)
        stats.update(ids[part], seg[part], value[part], {"p_churn": p[part]})
    at_risk = value * p
    expected = ids[np.argsort(-at_risk)[:50]]
    assert list(stats.top["customer_id"]) == list(expected)
    assert np.isclose(stats.value_at_risk_doc()["total"], at_risk.sum())
    ranking = stats.priority({0: "a", 1: "b", 2: "c"}, {})
    sums = [at_risk[seg == s].sum() for s in range(3)]
    assert [r["id"] for r in ranking] == list(np.argsort(sums)[::-1])
    doc = stats.metrics_doc(META, {})
    assert np.isclose(doc["p_churn"]["mean"], p.mean())
    written = stats.write_top(tmp_path / "value_at_risk.csv", {0: "a", 1: "b", 2: "c"})
    back = pd.read_csv(tmp_path / "value_at_risk.csv")
    assert written == 50 and list(back["rank"]) == list(range(1, 51))
    assert back["value_at_risk"].is_monotonic_decreasing


def test_prediction_columns_are_appended_to_both_files(tmp_path: Path) -> None:
    ids = pd.Index(["a", "b"])
    table = assignments_batch(
        ids,
        np.array([0, 1]),
        np.array([0.5, 0.25]),
        np.array([0.9, 0.1]),
        None,
        np.array([10.0, 20.0]),
        model_version="v1",
        run_id="r1",
        as_of=dt.date(2024, 1, 1),
        predictions={"p_churn": np.array([0.1234567, 0.9])},
    )
    with AssignmentWriter(tmp_path / "a.parquet", tmp_path / "a.csv", ["p_churn"]) as writer:
        writer.write(table)
    back = pq.read_table(tmp_path / "a.parquet")
    assert back.schema.names == [*ASSIGNMENTS_SCHEMA.names, "p_churn"]
    assert back.column("p_churn").to_pylist() == [0.123457, 0.9]
    csv = pd.read_csv(tmp_path / "a.csv")
    assert list(csv.columns)[-2:] == ["value", "p_churn"]
