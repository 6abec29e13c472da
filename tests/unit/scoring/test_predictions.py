"""Customer-value predictions through training and scoring, on the real order-log fixture:
fitted into the artifact, written per customer, summed per segment, checked on a holdout;
a model without them still scores (prediction columns empty)."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from custseg.dataset.clean_data import clean_files
from custseg.features.engine import EngineLimits, collect_features
from custseg.ingest.contracts.model import Contract
from custseg.ingest.pipeline import ingest_file
from custseg.model.artifact import PREDICTIONS, SegmentModel
from custseg.model.training import train_model
from custseg.predict.clv import HOLDOUT_RULE, PREDICTION_NAMES
from custseg.scoring.metrics import Thresholds, evaluate
from custseg.scoring.predictions import holdout_check
from custseg.scoring.score import RunInfo, ScoreResult, score_dataset

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
AS_OF = dt.date(2011, 12, 10)


@dataclass
class Shop:
    clean: Path
    contract: Contract
    model: SegmentModel
    limits: EngineLimits
    tmp: Path


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
    return Shop(result.clean_path, result.contract, model, limits, tmp)


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
    for name in PREDICTION_NAMES:
        assert table.column(name).null_count == table.num_rows
    assert result.metrics["predictions"] == {"clv": {"available": False}}
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
