"""A run's predictions: the prediction columns in the assignments, value at risk across
chunks; customer-value predictions through training and scoring on the real order-log
fixture (fitted into the artifact, written per customer, summed per segment, checked on a
holdout); a model with both kinds of prediction, each reader taking its own entries; a
model without predictions still scores (no prediction columns)."""

from __future__ import annotations

import copy
import datetime as dt
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from custseg.dataset.clean_data import clean_files
from custseg.features.build import Features
from custseg.features.engine import (
    EngineLimits,
    collect_features,
    first_purchase_day,
    holdout_data,
    source_columns,
)
from custseg.features.sql import HOLDOUT_HISTORY_COLUMNS, holdout_query
from custseg.ingest.contracts.model import Contract
from custseg.ingest.pipeline import ingest_file
from custseg.model.artifact import PREDICTIONS, SegmentModel
from custseg.model.training import train_model
from custseg.predict.clv import HOLDOUT_MISS_WATCH, HOLDOUT_RULE
from custseg.predict.propensity import fitted_entries
from custseg.scoring.metrics import Thresholds, evaluate
from custseg.scoring.outputs import (
    ASSIGNMENTS_SCHEMA,
    PREDICTION_COLUMNS,
    AssignmentWriter,
    assignments_batch,
)
from custseg.scoring.predictions import (
    AT_RISK_CSV,
    CLV_COLUMNS,
    HoldoutGroups,
    PredictionStats,
    RiskMeasure,
    ValueTotals,
    holdout_check,
    holdout_window,
    predict_chunk,
    prediction_columns,
    risk_measure,
)
from custseg.scoring.score import RunInfo, ScoreResult, score_dataset

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
AS_OF = dt.date(2011, 12, 10)

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


@dataclass
class Shop:
    clean: Path
    contract: Contract
    model: SegmentModel
    limits: EngineLimits
    tmp: Path
    features: Features


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    tmp = tmp_path_factory.mktemp("shop")
    result = ingest_file(
        FIXTURES / "online_retail_invoices.csv",
        tmp / "ingest",
        source_name="incoming/shop/online_retail_invoices.csv",
        dataset="shop",
        run_id="run-1",
    )
    assert result.clean_path is not None
    limits = EngineLimits(memory_limit_mb=256, temp_dir=tmp / "spill", threads=2)
    features = collect_features(clean_files(result.clean_path), result.contract, AS_OF, limits)
    model = train_model(features, contract=result.contract, k=3, seed=1, model_name="shop")
    return Shop(result.clean_path, result.contract, model, limits, tmp, features)


def _score(shop: Shop, model: SegmentModel, name: str) -> ScoreResult:
    run = RunInfo(dataset="shop", run_id=name, run_date=AS_OF, as_of=AS_OF)
    return score_dataset(
        shop.clean,
        shop.contract,
        model,
        shop.tmp / name,
        run=run,
        chunk_rows=1000,
        limits=shop.limits,
    )


@pytest.fixture(scope="module")
def scored(shop: Shop) -> ScoreResult:
    return _score(shop, shop.model, "with")


def test_training_stores_the_fitted_model_in_the_artifact(shop: Shop) -> None:
    clv = shop.model.metadata[PREDICTIONS]["clv"]
    assert clv["kind"] == "clv"
    assert clv["time_unit_days"] == 1.0 and clv["monthly_discount"] == 0.01
    assert set(clv["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(clv["gamma_gamma"]) == {"p", "q", "gamma"}
    assert clv["gamma_gamma"]["q"] > 1
    assert clv["fitted_on"]["repeat_buyers"] > 1000
    assert shop.model.prediction("clv") == clv


def test_assignments_carry_the_predictions(scored: ScoreResult) -> None:
    table = pq.read_table(scored.files["assignments_parquet"]).to_pandas()
    p = table["p_alive"].dropna()
    assert len(p) > 0.9 * len(table)  # customers who only returned have none
    assert ((p > 0) & (p <= 1)).all()
    assert (table["expected_purchases_90d"].dropna() >= 0).all()
    assert (table["expected_value_12m"].dropna() > 0).all()
    missing = table["p_alive"].isna()
    assert table.loc[missing, "expected_value_12m"].isna().all()
    # more past purchase days, more expected purchases (same model, same as-of)
    corr = np.corrcoef(table.loc[~missing, "value"], table.loc[~missing, "expected_value_12m"])
    assert corr[0, 1] > 0.5
    header = scored.files["assignments_csv"].read_text(encoding="utf-8").splitlines()[0]
    assert header.endswith('"value","p_alive","expected_purchases_90d","expected_value_12m"')


def test_profiles_compare_expected_and_past_value_per_segment(scored: ScoreResult) -> None:
    clv = scored.profiles["predictions"]["clv"]
    table = pq.read_table(scored.files["assignments_parquet"]).to_pandas()
    assert clv["base"]["customers"] == int(table["expected_value_12m"].notna().sum())
    assert clv["base"]["expected_value_12m_total"] == pytest.approx(
        table["expected_value_12m"].sum(), rel=1e-6
    )
    segs = clv["segments"]
    assert sum(s["expected_value_share"] for s in segs) == pytest.approx(1.0)
    assert sum(s["past_value_share"] for s in segs) == pytest.approx(1.0)
    for s in segs:
        rows = table[(table["segment_id"] == s["id"]) & table["expected_value_12m"].notna()]
        assert s["customers"] == len(rows)
        assert s["expected_value_12m_mean"] == pytest.approx(rows["expected_value_12m"].mean())


def test_metrics_hold_the_holdout_check(scored: ScoreResult) -> None:
    clv = scored.metrics["predictions"]["clv"]
    assert clv["available"] and clv["model"]["bgnbd"]
    holdout = clv["holdout"]
    assert holdout["evaluated"] and holdout["rule"] == HOLDOUT_RULE
    assert holdout["first_purchase"] == "2010-12-01"
    assert holdout["holdout_days"] == round(374 / 3)
    assert holdout["calibration_end"] == "2011-08-07"
    assert holdout["actual_total"] > 0 and holdout["predicted_total"] > 0
    assert abs(holdout["miss"]) < 0.5
    assert [b["frequency"] for b in holdout["by_frequency"]][-1] == "7+"
    assert sum(b["customers"] for b in holdout["by_frequency"]) == holdout["customers"]
    html = scored.files["report"].read_text(encoding="utf-8")
    assert "Expected value in the next 12 months" in html
    assert "Where will next year" in html and "-day holdout" in html


def test_a_model_without_predictions_still_scores(shop: Shop, scored: ScoreResult) -> None:
    metadata = copy.deepcopy(shop.model.metadata)
    del metadata[PREDICTIONS]
    old = SegmentModel(pipeline=shop.model.pipeline, metadata=metadata)
    result = _score(shop, old, "without")
    table = pq.read_table(result.files["assignments_parquet"])
    assert table.column_names == ASSIGNMENTS_SCHEMA.names  # no prediction columns
    assert result.metrics["predictions"] == {"clv": {"available": False}}
    assert "value_at_risk" not in result.metrics and AT_RISK_CSV not in result.files
    assert "predictions" not in result.profiles
    assert "Expected value in the next 12 months" not in result.files["report"].read_text()
    # the segments are the same as with the predictions
    with_ = pq.read_table(scored.files["assignments_parquet"]).column("segment_id")
    assert table.column("segment_id").equals(with_)


def test_an_unavailable_fit_is_recorded_and_not_applied(shop: Shop) -> None:
    metadata = copy.deepcopy(shop.model.metadata)
    metadata[PREDICTIONS] = {"clv": {"unavailable": "3 repeat buyers: the fit needs 10"}}
    assert SegmentModel(pipeline=shop.model.pipeline, metadata=metadata).prediction("clv") is None


def test_a_short_history_is_not_checked(shop: Shop) -> None:
    doc = holdout_check(clean_files(shop.clean), shop.contract, dt.date(2011, 3, 1), shop.limits)
    assert not doc["evaluated"]
    assert "spans 90 days, fewer than the 180" in doc["reason"]


def test_a_missed_holdout_gives_watch() -> None:
    metrics = {
        "customers": 100,
        "predictions": {"clv": {"holdout": {"evaluated": True, "miss": -0.35}}},
    }
    verdict, reasons = evaluate(metrics, Thresholds())
    assert verdict == "watch"
    assert reasons == ["predicted repeat purchases missed the holdout: relative miss 0.35 > 0.2"]
    assert evaluate(metrics, Thresholds(holdout_miss_watch=0.5))[0] == "ok"


def test_the_order_log_run_ranks_value_at_risk_by_customer_value(scored: ScoreResult) -> None:
    at_risk = scored.metrics["value_at_risk"]
    assert at_risk["measure"] == "expected_value_12m x (1 - p_alive)"
    table = pq.read_table(scored.files["assignments_parquet"]).to_pandas()
    expected = table["expected_value_12m"] * (1 - table["p_alive"])
    assert at_risk["customers"] == int(expected.notna().sum())
    assert at_risk["total"] == pytest.approx(expected.sum(), rel=1e-4)  # files: 6 decimals
    top = pd.read_csv(scored.files["value_at_risk"], dtype={"customer_id": "string"})
    first = table.loc[expected.idxmax()]
    assert top.loc[0, "customer_id"] == first["customer_id"]
    assert top.loc[0, "value"] == pytest.approx(first["expected_value_12m"], abs=0.01)
    assert top.loc[0, "risk"] == pytest.approx(1 - first["p_alive"], abs=1e-6)
    assert [p["rank"] for p in scored.profiles["priority"]] == [1, 2, 3]


class _Constant:
    """A stand-in propensity estimator: the same probability for every customer."""

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.tile([0.7, 0.3], (len(x), 1))


def _with_churn(model: SegmentModel) -> SegmentModel:
    """``model`` with a fitted churn propensity beside its ``clv`` entry."""
    metadata = copy.deepcopy(model.metadata)
    entry: dict[str, Any] = {
        "kind": "propensity",
        "outcome": "churn",
        "status": "fitted",
        "use": "risk",
        "inputs": {"numeric": [], "categorical": []},
        "calibration": {"slope": 1.0, "intercept": 0.0},
    }
    metadata[PREDICTIONS] = {"p_churn": entry, **metadata[PREDICTIONS]}
    return SegmentModel(model.pipeline, metadata, predictors={"p_churn": _Constant()})


def test_one_list_of_prediction_columns_for_both_kinds(shop: Shop) -> None:
    both = _with_churn(shop.model)
    assert prediction_columns(both) == ["p_churn", *CLV_COLUMNS]
    assert prediction_columns(shop.model) == list(CLV_COLUMNS)
    # each reader takes its own entries: the propensity reader skips clv ...
    assert list(fitted_entries(both.metadata, both.predictors)) == ["p_churn"]
    # ... and the customer-value reader the propensities
    assert both.prediction("clv") == shop.model.prediction("clv")
    assert risk_measure(both.metadata, prediction_columns(both)) == RiskMeasure(
        "expected_value_12m", "p_alive", inverse=True
    )
    chunk = predict_chunk(both, shop.features, prediction_columns(both))
    assert list(chunk) == ["p_churn", *CLV_COLUMNS]
    assert np.allclose(chunk["p_churn"], 0.3)
    assert np.isfinite(chunk["p_alive"]).mean() > 0.9
    # a chunk without the order history still gets every column (unknown: NaN)
    bare = predict_chunk(both, replace(shop.features, history=None), prediction_columns(both))
    assert np.isnan(bare["p_alive"]).all() and np.allclose(bare["p_churn"], 0.3)
    # every prediction column is documented
    for name in prediction_columns(both):
        assert name in PREDICTION_COLUMNS or name.startswith("p_"), name
    assert set(CLV_COLUMNS) <= set(PREDICTION_COLUMNS)


def test_a_model_with_both_kinds_scores_both(shop: Shop, scored: ScoreResult) -> None:
    result = _score(shop, _with_churn(shop.model), "both")
    table = pq.read_table(result.files["assignments_parquet"])
    assert table.column_names == [*ASSIGNMENTS_SCHEMA.names, "p_churn", *CLV_COLUMNS]
    csv_header = result.files["assignments_csv"].read_text(encoding="utf-8").splitlines()[0]
    assert csv_header.replace('"', "").endswith("value,p_churn," + ",".join(CLV_COLUMNS))
    predictions = result.metrics["predictions"]
    assert set(predictions) == {"p_churn", "clv"}
    assert predictions["p_churn"]["kind"] == "propensity"
    assert predictions["p_churn"]["mean"] == pytest.approx(0.3)
    assert predictions["clv"] == scored.metrics["predictions"]["clv"]
    # the customer value wins over value x p_churn
    assert result.metrics["value_at_risk"] == scored.metrics["value_at_risk"]
    assert result.profiles["predictions"] == scored.profiles["predictions"]
    html = result.files["report"].read_text(encoding="utf-8")
    assert "<h2>Predictions</h2>" in html and "Expected value in the next 12 months" in html
    assert "Where the value at risk is" in html


def test_a_run_by_ranges_of_customers_writes_the_same_files(
    shop: Shop, scored: ScoreResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order log longer than the engine's ``RANGE_ROWS`` lines is scored one range of
    customer ids at a time (DuckDB's memory follows a range): the same files, byte for
    byte (assignments, profiles, metrics, predictions, value at risk, report) as one
    query over every customer."""
    from custseg.features import engine

    counts: list[int] = []
    bounds = engine._bounds

    def spy(ranges: engine.RangeViews, count: int) -> engine.Bounds:
        counts.append(count)
        return bounds(ranges, count)

    monkeypatch.setattr(engine, "RANGE_ROWS", 4_000)
    monkeypatch.setattr(engine, "_bounds", spy)
    run = RunInfo(dataset="shop", run_id="with", run_date=AS_OF, as_of=AS_OF)
    out = shop.tmp / "ranged"
    ranged = score_dataset(
        shop.clean, shop.contract, shop.model, out, run=run, chunk_rows=1000, limits=shop.limits
    )
    assert counts and counts[0] >= 5
    assert ranged.rows == scored.rows and "value_at_risk" in scored.files
    assert ranged.files.keys() == scored.files.keys()
    for name, path in scored.files.items():
        assert ranged.files[name].read_bytes() == path.read_bytes(), name


# -- the fanned-out path: per-bucket folds merged -------------------------------------------


def _fold(ids: pd.Index, seg: np.ndarray, value: np.ndarray, p: np.ndarray) -> PredictionStats:
    stats = PredictionStats(["p_churn"], risk_measure(META, ["p_churn"]), top_n=50)
    for start in range(0, len(ids), 300):  # chunks, as a single run folds them
        part = slice(start, start + 300)
        stats.update(ids[part], seg[part], value[part], {"p_churn": p[part]})
    return stats


def test_prediction_stats_of_buckets_merged_equal_one_pass() -> None:
    """Customers split into buckets by a hash, folded and merged: the same sums, total
    and top customers (ties, here 400 customers with no risk, broken by customer id
    whatever the buckets) as one pass in customer order."""
    rng = np.random.default_rng(3)
    n = 2_000
    ids = pd.Index([f"c{i:05d}" for i in range(n)], dtype="string")
    seg = rng.integers(0, 4, n)
    value, p = rng.gamma(2, 100, n), rng.random(n)
    p[rng.choice(n, 1_960, replace=False)] = 0.0  # the top 50 ends in a tie at 0
    whole = _fold(ids, seg, value, p)
    bucket = np.array([zlib.crc32(i.encode()) % 3 for i in ids])
    merged = None
    for b in (2, 0, 1):
        on = bucket == b
        part = _fold(ids[on], seg[on], value[on], p[on])
        merged = part if merged is None else merged.merge(part)
    assert merged is not None and whole.top is not None and merged.top is not None
    assert list(merged.top["customer_id"]) == list(whole.top["customer_id"])
    assert list(whole.top["customer_id"])[-5:] == sorted(list(whole.top["customer_id"])[-5:])
    assert merged.risk_known == whole.risk_known == n
    assert np.allclose(merged.risk_sum, whole.risk_sum, rtol=1e-12)
    assert np.allclose(merged.sums["p_churn"], whole.sums["p_churn"], rtol=1e-12)
    assert np.array_equal(merged.counts["p_churn"], whole.counts["p_churn"])


def test_value_totals_merge_adds_per_segment() -> None:
    forecasts = {
        "expected_value_12m": np.array([10.0, np.nan, 30.0]),
        "p_alive": np.array([0.5, np.nan, 1.0]),
        "expected_purchases_90d": np.array([1.0, np.nan, 2.0]),
    }
    a, b = ValueTotals(), ValueTotals()
    a.update(np.array([0, 1, 0]), forecasts, np.array([5.0, 6.0, 7.0]))
    b.update(np.array([2]), {k: v[:1] for k, v in forecasts.items()}, None)
    both = a.merge(b)
    assert both.customers.tolist() == [2.0, 0.0, 1.0]  # the customer without history not
    assert both.expected_value.tolist() == [40.0, 0.0, 10.0]
    assert both.past_value.tolist() == [12.0, 0.0, 0.0]


def test_holdout_groups_of_customers_merged_equal_the_holdout_query(shop: Shop) -> None:
    """The fanned-out holdout check: each customer's history (the per-customer query),
    grouped per bucket and merged, is the single path's grouped data, and gives the same
    check."""
    import duckdb

    parts = clean_files(shop.clean)
    window = holdout_window(first_purchase_day(parts, shop.contract, AS_OF, shop.limits), AS_OF)
    assert window.cutoff is not None
    con = duckdb.connect()
    files = ", ".join(f"'{p}'" for p in parts)
    con.execute(f"CREATE VIEW clean AS SELECT * FROM read_parquet([{files}])")
    sql = holdout_query(shop.contract, source_columns(con), window.cutoff, AS_OF, per_customer=True)
    rows = con.sql(sql).df()
    assert list(rows.columns) == ["customer_id", *HOLDOUT_HISTORY_COLUMNS]
    merged = HoldoutGroups()
    for b in range(3):
        groups = HoldoutGroups()
        groups.update(rows[rows["customer_id"].map(lambda c: zlib.crc32(c.encode()) % 3) == b])
        merged = merged.merge(groups)
    expected = holdout_data(parts, shop.contract, window.cutoff, AS_OF, shop.limits)
    pd.testing.assert_frame_equal(merged.groups, expected)
    check = holdout_check(parts, shop.contract, AS_OF, shop.limits)
    assert window.evaluate(merged.groups, miss_watch=HOLDOUT_MISS_WATCH) == check
    assert check["evaluated"]
