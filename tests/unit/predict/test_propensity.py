"""Propensity: out-of-fold evidence on the real telco file, no leakage, artifact round trip,
old artifacts, persona actions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from custseg.dataset.clean_data import read_clean
from custseg.features.build import Features, build_features
from custseg.ingest.contracts.model import Contract
from custseg.ingest.pipeline import ingest_file
from custseg.model.actions import assign_actions, signals_from
from custseg.model.artifact import SegmentModel, dump_artifact, load_artifact
from custseg.model.personas import choose_action
from custseg.model.training import train_model
from custseg.predict.propensity import (
    RELIABILITY_BINS,
    fit_propensities,
    input_columns,
    outcome_use,
    predict_propensities,
)
from signing_keys import TestKey

TELCO = Path(__file__).resolve().parents[2] / "fixtures" / "telco_customer_churn.csv"
KEY = TestKey()


@pytest.fixture(scope="module")
def telco(tmp_path_factory: pytest.TempPathFactory) -> tuple[Features, Contract]:
    out = tmp_path_factory.mktemp("telco")
    result = ingest_file(TELCO, out, source_name=str(TELCO), dataset="telco", run_id="t")
    assert result.status == "accepted" and result.clean_path is not None
    clean = read_clean(result.clean_path).to_pandas()
    return build_features(clean, result.contract), result.contract


def test_telco_churn_auc_out_of_fold_is_at_least_0_83(
    telco: tuple[Features, Contract],
) -> None:
    features, contract = telco
    fitted = fit_propensities(features, contract, seed=42)
    entry = fitted.metadata["p_churn"]
    inputs = entry["inputs"]["numeric"] + entry["inputs"]["categorical"]
    assert "churn" not in inputs  # the outcome is never a feature
    assert {"tenure", "contract", "monthly_charges"} <= set(inputs)
    cv = entry["cv"]
    assert cv["folds"] == 5 and cv["stratified"] and cv["customers"] == 7043
    assert cv["auc"] >= 0.83
    assert len(cv["auc_folds"]) == 5 and min(cv["auc_folds"]) >= 0.80
    assert 0.10 <= cv["brier"] <= 0.16
    assert cv["lift"] > 2.0  # the top decile churns at more than twice the average
    assert len(cv["reliability"]) == RELIABILITY_BINS
    assert sum(b["customers"] for b in cv["reliability"]) == 7043
    for b in cv["reliability"]:  # calibrated: each populous band within 8 points
        if b["customers"] >= 300:
            assert abs(b["predicted"] - b["observed"]) < 0.08
    assert {c["model"] for c in entry["candidates"]} == {
        "logistic_regression",
        "gradient_boosting",
    }
    assert entry["model"] in {"logistic_regression", "gradient_boosting"}
    top = [d["feature"] for d in entry["drivers"][:5]]
    assert "tenure" in top or "contract" in top
    p = fitted.training["p_churn"]
    assert p.shape == (7043,) and ((p > 0) & (p < 1)).all()
    # scoring gives the same probabilities as training's final model
    again = predict_propensities({"predictions": fitted.metadata}, fitted.estimators, features)
    assert np.allclose(again["p_churn"], p)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:05d}" for i in range(n)], dtype="string"),
            "income": rng.normal(50, 15, n),
            "spending_score": rng.uniform(0, 100, n),
            "gender": pd.array(rng.choice(["female", "male"], n), dtype="string"),
            "churn": rng.random(n) < 0.3,
        }
    )


@pytest.fixture(scope="module")
def churn_contract(customer_contract: Callable[..., Contract]) -> Contract:
    return customer_contract(["income", "spending_score"], outcomes=["churn"])


def test_a_random_outcome_scores_chance_out_of_fold(
    churn_contract: Contract, customer_features: Callable[..., Features]
) -> None:
    """Evidence out of fold: on an outcome unrelated to the data the AUC is ~0.5 (fitted
    and measured on the same customers, gradient boosting would score far above)."""
    features = customer_features(_frame(1500, 1), churn_contract)
    entry = fit_propensities(features, churn_contract, seed=7).metadata["p_churn"]
    for candidate in entry["candidates"]:
        assert abs(candidate["auc"] - 0.5) < 0.06, candidate


def test_outcome_columns_are_never_inputs(
    churn_contract: Contract, customer_features: Callable[..., Features]
) -> None:
    features = customer_features(_frame(200, 2), churn_contract)
    extras = features.extras.assign(country=pd.array(["fr"] * 200, dtype="string"))
    with_attr = Features(**{**features.__dict__, "extras": extras})
    numeric, categorical = input_columns(with_attr, ["churn"])
    assert "churn" not in numeric + categorical
    assert "country" in categorical  # attributes are usable inputs


def test_too_few_positives_skips_the_outcome_with_a_reason(
    churn_contract: Contract, customer_features: Callable[..., Features]
) -> None:
    df = _frame(300, 3)
    df["churn"] = False
    df.loc[:4, "churn"] = True
    features = customer_features(df, churn_contract)
    fitted = fit_propensities(features, churn_contract)
    assert fitted.estimators == {}
    entry = fitted.metadata["p_churn"]
    assert entry["status"] == "skipped" and "5 customers with the outcome" in entry["reason"]


@pytest.fixture(scope="module")
def model_with_churn(
    customer_features: Callable[..., Features], churn_contract: Contract
) -> tuple[SegmentModel, Features]:
    df = _frame(600, 4)
    # churn depends on income: something to learn
    df["churn"] = np.random.default_rng(5).random(600) < 1 / (1 + np.exp(-(df["income"] - 60) / 5))
    features = customer_features(df, churn_contract)
    return train_model(features, contract=churn_contract, k_range=(2, 3), seed=1), features


def test_the_artifact_round_trip_keeps_the_propensity(
    model_with_churn: tuple[SegmentModel, Features],
) -> None:
    model, features = model_with_churn
    entry = model.metadata["predictions"]["p_churn"]
    assert entry["status"] == "fitted" and entry["cv"]["auc"] > 0.7
    model_bytes, meta_bytes = dump_artifact(model, KEY)
    loaded = load_artifact(
        model_bytes,
        meta_bytes,
        verifier=KEY,
        model_name=model.metadata["model_name"],
        version=model.version,
    )
    assert set(loaded.predictors) == {"p_churn"}
    p = loaded.predict_extra(features)["p_churn"]
    assert np.allclose(p, model.predict_extra(features)["p_churn"])
    assert float(np.corrcoef(p, features.frame["income"])[0, 1]) > 0.8


def test_an_artifact_without_propensity_still_loads_and_scores(
    model_with_churn: tuple[SegmentModel, Features],
) -> None:
    """A model file holding the pipeline alone (as every model trained before
    propensities) loads with no predictions and scores as before."""
    model, features = model_with_churn
    old = SegmentModel(
        pipeline=model.pipeline,
        metadata={k: v for k, v in model.metadata.items() if k != "predictions"},
    )
    model_bytes, meta_bytes = dump_artifact(old, KEY)
    assert isinstance(joblib.load(__import__("io").BytesIO(model_bytes)), type(model.pipeline))
    loaded = load_artifact(
        model_bytes,
        meta_bytes,
        verifier=KEY,
        model_name=old.metadata["model_name"],
        version=old.version,
    )
    assert loaded.predictors == {} and loaded.predict_extra(features) == {}
    assert loaded.predict(features)["segment_id"].equals(model.predict(features)["segment_id"])


def test_personas_carry_the_predicted_rate(
    model_with_churn: tuple[SegmentModel, Features],
) -> None:
    model, _ = model_with_churn
    for seg in model.metadata["segments"]:
        pred = seg["predicted"]["p_churn"]
        assert pred["use"] == "risk" and 0 < pred["segment_mean"] < 1
        assert "Predicted churn" in seg["description"]


def test_actions_use_propensity() -> None:
    without = choose_action([], 1.0)  # no propensity: the other rules
    assert without not in ("retain now", "target in campaigns")
    assert choose_action([], 1.0, risk_index=1.5) == "retain now"
    assert choose_action([], 0.5, risk_index=1.5) != "retain now"  # little value to keep
    assert choose_action([], 1.0, risk_index=1.1) == without
    assert choose_action([], 1.0, response_index=1.4) == "target in campaigns"
    assert choose_action([], 2.0, response_index=1.4) == "retain and reward"  # high value
    lapsed = [{"feature": "recency_days", "kind": "numeric", "effect": 1.0}]
    assert choose_action(lapsed, 1.0, response_index=1.4) != "target in campaigns"
    # retain now beats the observed-churn rule for a valuable segment
    churn = {"churn": {"segment_rate": 0.5, "base_rate": 0.25}}
    assert choose_action([], 1.0, churn, risk_index=2.0) == "retain now"


def test_propensity_actions_go_to_one_segment_each() -> None:
    risky = signals_from([], 1.2, risk_index=1.8)
    riskier_but_cheap = signals_from([], 0.5, risk_index=2.5)
    responsive = signals_from([], 0.9, response_index=1.6)
    chosen = [a.action for a in assign_actions([risky, riskier_but_cheap, responsive])]
    assert chosen[0] == "retain now" and chosen[2] == "target in campaigns"
    assert len(set(chosen)) == 3
    assert "predicted churn 1.8x the base" in assign_actions([risky])[0].reason


def test_outcome_use() -> None:
    assert outcome_use("churn") == "risk"
    assert outcome_use("campaign_response") == "response"
    assert outcome_use("upgraded") == "other"
