"""Training: k on evidence, determinism, preprocessing, the mall table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseg.features.build import Features, build_features
from custseg.ingest.contracts.model import Contract
from custseg.model.training import K_RULE, build_preprocessor, choose_k, k_choice, train_model

DATA = Path(__file__).resolve().parents[2] / "fixtures"  # copies of the shared real files
CENTRES = [(20, 20), (20, 80), (55, 50), (90, 20), (90, 80)]


@pytest.fixture(scope="module")
def mall_contract(customer_contract: Callable[..., Contract]) -> Contract:
    return customer_contract(["age", "annual_income", "spending_score"], integers={"age"})


def blobs(n_per: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for inc, score in CENTRES:
        parts.append(
            pd.DataFrame(
                {
                    "annual_income": rng.normal(inc, 5, n_per),
                    "spending_score": rng.normal(score, 5, n_per),
                    "age": np.full(n_per, 40.0),  # no structure beyond the blobs
                    "gender": rng.choice(["female", "male"], n_per),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "customer_id", pd.array([f"{i:05d}" for i in range(len(df))], dtype="string"))
    df["gender"] = df["gender"].astype("string")
    return df


@pytest.fixture(scope="module")
def features_of(
    customer_features: Callable[..., Features], mall_contract: Contract
) -> Callable[[pd.DataFrame], Features]:
    return lambda df: customer_features(df, mall_contract)


def test_k_chosen_on_evidence_and_deterministic(
    mall_contract: Contract, features_of: Callable[[pd.DataFrame], Features]
) -> None:
    f = features_of(blobs())
    model = train_model(f, contract=mall_contract, k_range=(3, 6), seed=7)
    md = model.metadata
    assert model.k == 5 == md["k"]
    assert md["k_rule"] == K_RULE
    assert [r["k"] for r in md["k_evidence"]] == list(range(3, 7))
    assert sum(r["chosen"] for r in md["k_evidence"]) == 1
    assert md["quality"]["silhouette"] > 0.4
    assert md["status"] == "champion-eligible" and md["gates"]["passed"]
    # ids by size, segments follow the blobs
    pred = model.predict(f)
    assert pred["segment_id"].dtype == "int16" and pred["confidence"].between(0, 1).all()
    blob = np.repeat(np.arange(5), 60)
    crosstab = pd.crosstab(blob, pred["segment_id"].to_numpy())
    assert (crosstab.max(axis=1) >= 57).all()  # each blob (almost) in one segment
    again = train_model(f, contract=mall_contract, k_range=(3, 6), seed=7)
    assert again.predict(f).equals(pred)
    assert again.metadata["segments"] == md["segments"]
    assert again.metadata["k_evidence"] == md["k_evidence"]


def test_fixed_k_and_version(
    mall_contract: Contract, features_of: Callable[[pd.DataFrame], Features]
) -> None:
    f = features_of(blobs(n_per=20))
    model = train_model(f, contract=mall_contract, k=3, version="v-test", model_name="mall")
    assert model.k == 3 and model.version == "v-test"
    assert model.metadata["model_name"] == "mall"
    assert "fixed" in model.metadata["k_rule"]
    assert len(model.segment_names()) == 3
    auto = train_model(f, contract=mall_contract, k=2)
    assert auto.version.startswith("v") and len(auto.version) > 10


def test_choose_k_rule() -> None:
    ev = [
        {"k": 2, "silhouette": 0.40, "davies_bouldin": 1.0, "min_share": 0.4},
        {"k": 3, "silhouette": 0.60, "davies_bouldin": 0.8, "min_share": 0.01},  # tiny segment
        {"k": 4, "silhouette": 0.50, "davies_bouldin": 0.9, "min_share": 0.10},
        {"k": 5, "silhouette": 0.495, "davies_bouldin": 0.7, "min_share": 0.10},  # tie, lower DB
    ]
    assert choose_k(ev) == 5
    assert choose_k([{**r, "min_share": 0.0} for r in ev]) == 3  # none eligible: all count


def test_two_segments_must_justify_themselves_against_three_to_eight() -> None:
    ev = [
        {"k": 2, "silhouette": 0.50, "davies_bouldin": 1.0, "min_share": 0.4},
        {"k": 3, "silhouette": 0.44, "davies_bouldin": 0.8, "min_share": 0.2},
        {"k": 4, "silhouette": 0.46, "davies_bouldin": 0.9, "min_share": 0.10},
        {"k": 5, "silhouette": 0.40, "davies_bouldin": 0.7, "min_share": 0.10},
    ]
    assert choose_k(ev) == 4  # within 0.05 of k = 2's silhouette: the best of k >= 3
    assert "over k = 2 (0.500)" in k_choice(ev, 4)
    clear = [{**r, "silhouette": r["silhouette"] - 0.1} if r["k"] > 2 else r for r in ev]
    assert choose_k(clear) == 2  # two segments far better than any other k
    assert k_choice(clear, 2).startswith("k = 2: the best silhouette (0.500; next best k = 4")


def test_categoricals_are_downweighted_and_unknown_ignored(
    features_of: Callable[[pd.DataFrame], Features],
) -> None:
    f = features_of(blobs(n_per=10))
    pre = build_preprocessor(f.frame, f.numeric, f.categorical).fit(f.frame)
    x = pre.transform(f.frame)
    names = list(pre.get_feature_names_out())
    onehot = [i for i, n in enumerate(names) if n.startswith("gender")]
    assert onehot and set(np.unique(x[:, onehot])) <= {0.0, 0.5}
    unseen = f.frame.head(2).copy()
    unseen["gender"] = "other"
    assert np.allclose(pre.transform(unseen)[:, onehot], 0.0)


def test_skewed_amounts_are_log_scaled(
    mall_contract: Contract, features_of: Callable[[pd.DataFrame], Features]
) -> None:
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame(
        {
            "customer_id": pd.array([str(i) for i in range(n)], dtype="string"),
            "annual_income": rng.lognormal(3, 1.2, n),
            "spending_score": rng.uniform(0, 100, n),
            "age": rng.uniform(18, 70, n),
            "gender": pd.array(["female"] * n, dtype="string"),
        }
    )
    model = train_model(features_of(df), contract=mall_contract, k_range=(2, 4))
    assert model.metadata["preprocessing"]["log_scaled"] == ["annual_income"]
    x = model.transform(features_of(df).frame)
    assert np.abs(x).max() <= 3.0 + 1e-9


def test_mall_real_file_separates_income_and_spending(
    mall_contract: Contract, features_of: Callable[[pd.DataFrame], Features]
) -> None:
    raw = pd.read_csv(DATA / "mall_customers.csv", dtype=str).rename(
        columns={
            "CustomerID": "customer_id",
            "Genre": "gender",
            "Age": "age",
            "Annual_Income": "annual_income",
            "Spending_Score": "spending_score",
        }
    )
    for c in ("age", "annual_income", "spending_score"):
        raw[c] = raw[c].astype("float64")
    raw["gender"] = raw["gender"].str.lower()
    f = features_of(raw)
    model = train_model(f, contract=mall_contract)
    md = model.metadata
    assert 5 <= md["k"] <= 6
    assert md["quality"]["silhouette"] > 0.35
    pred = model.predict(f).join(f.frame)
    corners = {
        "rich_spender": (pred["annual_income"] > 70) & (pred["spending_score"] > 60),
        "rich_saver": (pred["annual_income"] > 70) & (pred["spending_score"] < 40),
        "poor_spender": (pred["annual_income"] < 40) & (pred["spending_score"] > 60),
        "poor_saver": (pred["annual_income"] < 40) & (pred["spending_score"] < 40),
    }
    majority = {k: pred.loc[m, "segment_id"].mode().iloc[0] for k, m in corners.items()}
    assert len(set(majority.values())) == 4  # each corner its own segment
    for name, mask in corners.items():
        assert (pred.loc[mask, "segment_id"] == majority[name]).mean() > 0.8
    names = model.segment_names()
    assert len(set(names.values())) == md["k"]
    assert any("High-income" in n and "big spenders" in n for n in names.values())


def test_a_model_is_fitted_on_a_bounded_sample_and_says_so(mall_contract: Contract) -> None:
    f = build_features(blobs(n_per=60), mall_contract)
    model = train_model(f, contract=mall_contract, k=5, seed=7, max_customers=150)
    sample = model.metadata["training"]["source"]["sample"]
    assert sample["customers"] == 300 and sample["fitted_on"] == 150
    assert "smallest hashes" in sample["method"]
    # scoring still covers every customer: the model predicts the whole data
    assert len(model.predict(f)) == 300
