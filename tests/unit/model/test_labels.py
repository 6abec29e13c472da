"""Rule-based labels: RFM rule table and edges, value tier, lifecycle, customer tables."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from custseg.features.build import TRANSACTION_FEATURES, Features
from custseg.model.labels import (
    RFM_RULES,
    RFM_SEGMENTS,
    LabelEdges,
    assign_labels,
    fit_label_edges,
    fm_score,
    label_codes,
    segment_for,
)


def tx_features(**cols: list[float]) -> Features:
    n = len(next(iter(cols.values())))
    data = {c: cols.get(c, [1.0] * n) for c in TRANSACTION_FEATURES}
    ids = pd.Index([f"c{i:03d}" for i in range(n)], dtype="string", name="customer_id")
    frame = pd.DataFrame(data, index=ids, dtype="float64")
    return Features(
        frame=frame,
        numeric=list(TRANSACTION_FEATURES),
        categorical=[],
        as_of=dt.date(2024, 1, 1),
        value=frame["monetary"].rename("monetary"),
        extras=pd.DataFrame(index=ids),
    )


def test_rule_table_covers_every_cell_once() -> None:
    for r in range(1, 6):
        for fm in range(1, 6):
            assert sum(rule.matches(r, fm) for rule in RFM_RULES) == 1, (r, fm)
    assert set(RFM_SEGMENTS) == {
        "Champions", "Loyal Customers", "Potential Loyalists", "New Customers", "Promising",
        "Need Attention", "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("r", "fm", "segment"),
    [
        (5, 5, "Champions"),
        (5, 4, "Champions"),
        (4, 4, "Loyal Customers"),
        (3, 5, "Loyal Customers"),
        (5, 3, "Potential Loyalists"),
        (4, 2, "Potential Loyalists"),
        (5, 1, "New Customers"),
        (4, 1, "Promising"),
        (3, 3, "Need Attention"),
        (3, 2, "About to Sleep"),
        (3, 1, "About to Sleep"),
        (2, 4, "At Risk"),
        (1, 3, "At Risk"),
        (2, 5, "Can't Lose Them"),
        (1, 5, "Can't Lose Them"),
        (2, 2, "Hibernating"),
        (1, 2, "Lost"),
        (1, 1, "Lost"),
    ],
)
def test_segment_edges(r: int, fm: int, segment: str) -> None:
    assert segment_for(r, fm) == segment


def test_fm_rounds_half_up() -> None:
    assert fm_score(4, 5) == 5 and fm_score(3, 4) == 4 and fm_score(1, 2) == 2
    assert fm_score(3, 3) == 3


def test_scores_at_their_edges() -> None:
    values = [float(v) for v in range(1, 11)]  # quintile edges 2.8, 4.6, 6.4, 8.2
    f = tx_features(recency_days=values, frequency=values, monetary=values)
    edges = fit_label_edges(f)
    assert edges.r_edges == pytest.approx([2.8, 4.6, 6.4, 8.2])
    # a value equal to an edge falls in the lower bin; R is reversed (recent = 5)
    probe = tx_features(
        recency_days=[2.8, 2.81, 8.2, 8.21, 1.0],
        frequency=[2.8, 2.81, 8.2, 8.21, 100.0],
        monetary=[2.8, 2.81, 8.2, 8.21, -5.0],
    )
    labels = assign_labels(probe, edges)
    assert labels["r_score"].tolist() == [5, 4, 2, 1, 5]
    assert labels["f_score"].tolist() == [1, 2, 4, 5, 5]
    assert labels["m_score"].tolist() == [1, 2, 4, 5, 1]
    # (R, FM): (5, 1) (4, 2) (2, 4) (1, 5) (5, round_half_up(3) = 3)
    assert labels["rfm_segment"].tolist() == [
        "New Customers",
        "Potential Loyalists",
        "At Risk",
        "Can't Lose Them",
        "Potential Loyalists",
    ]
    assert str(labels["r_score"].dtype) == "Int8"


def test_value_tier_and_lifecycle() -> None:
    n = 100
    rng = np.random.default_rng(0)
    freq = rng.integers(1, 10, n).astype(float)
    f = tx_features(
        recency_days=list(rng.integers(1, 365, n).astype(float)),
        frequency=list(freq),
        monetary=[float(v) for v in range(1, n + 1)],
        tenure_days=list(rng.integers(100, 400, n).astype(float)),
        mean_interval_days=[30.0] * n,
    )
    edges = fit_label_edges(f)
    assert edges.new_max_tenure == 30.0
    assert edges.active_max_recency is not None and edges.lapsed_min_recency is not None
    assert edges.active_max_recency >= 60 and edges.lapsed_min_recency >= 120
    probe = tx_features(
        recency_days=[5.0, edges.active_max_recency, edges.active_max_recency + 1, 1000.0, 10.0],
        frequency=[3.0] * 5,
        monetary=[100.0, 80.5, 80.6, 50.0, np.nan],
        tenure_days=[400.0, 400.0, 400.0, 1000.0, 30.0],
        mean_interval_days=[30.0] * 5,
    )
    assert edges.value_edges == pytest.approx([50.5, 80.2])
    labels = assign_labels(probe, edges)
    assert labels["value_tier"].tolist() == ["high", "high", "high", "low", "n/a"]
    assert labels["lifecycle_stage"].tolist() == ["active", "active", "at risk", "lapsed", "new"]
    assert labels.loc["c004", "rfm_segment"] == "n/a"  # no monetary value
    assert pd.isna(labels.loc["c004", "m_score"])
    round_trip = LabelEdges.from_dict(edges.to_dict())
    assert round_trip == edges


def customer_features(numeric: dict[str, list[float]], value: str | None) -> Features:
    n = len(next(iter(numeric.values())))
    ids = pd.Index([f"{i:04d}" for i in range(n)], dtype="string", name="customer_id")
    frame = pd.DataFrame(numeric, index=ids, dtype="float64")
    return Features(
        frame=frame,
        numeric=list(numeric),
        categorical=[],
        as_of=dt.date(2024, 1, 1),
        value=None if value is None else frame[value].rename(value),
        extras=pd.DataFrame(index=ids),
    )


def test_customer_table_labels_say_what_they_cannot() -> None:
    f = customer_features(
        {"tenure": [float(v) for v in range(1, 73)], "monthly_charges": [50.0] * 72},
        "monthly_charges",
    )
    edges = fit_label_edges(f)
    assert edges.tenure_feature == "tenure"
    assert "rfm" in edges.unavailable and "lifecycle_stage" in edges.unavailable
    labels = assign_labels(f, edges)
    assert set(labels["lifecycle_stage"]) == {"new", "active"}
    assert (labels["rfm_segment"] == "n/a").all() and labels["r_score"].isna().all()
    assert set(labels["value_tier"]) <= {"high", "mid", "low"}

    bare = customer_features({"age": [20.0, 30.0, 40.0]}, None)
    edges = fit_label_edges(bare)
    assert set(edges.unavailable) == {"rfm", "value_tier", "lifecycle_stage"}
    labels = assign_labels(bare, edges)
    assert (labels[["rfm_segment", "value_tier", "lifecycle_stage"]] == "n/a").all().all()


def test_customer_table_with_rfm_columns() -> None:
    n = 50
    f = customer_features(
        {
            "recency_days": [float(v) for v in range(n)],
            "orders": [float(v % 7 + 1) for v in range(n)],
            "total_spend": [float(v * 10) for v in range(n)],
        },
        "total_spend",
    )
    edges = fit_label_edges(f)
    assert "rfm" not in edges.unavailable
    labels = assign_labels(f, edges)
    assert labels["rfm_segment"].isin(RFM_SEGMENTS).all()
    assert set(labels["lifecycle_stage"]) <= {"active", "at risk", "lapsed"}


def _reference_labels(features: Features, edges: LabelEdges) -> pd.DataFrame:
    """The labels as they were computed before the codes (one text object per customer),
    kept here to pin the codes to the same answers."""
    frame = features.frame
    index = frame.index
    n = len(frame)

    def col(name: str | None) -> np.ndarray | None:
        for source in (frame, features.extras):
            if name and name in source.columns:
                return source[name].reindex(index).to_numpy(dtype="float64", na_value=np.nan)
        return None

    def score(values: np.ndarray, cut: list[float], reverse: bool) -> pd.Series:
        below = np.searchsorted(np.asarray(cut, dtype="float64"), values, side="left")
        out = pd.array(np.clip((5 - below) if reverse else (1 + below), 1, 5).astype("int8"))
        out = pd.array(out, dtype="Int8")
        out[~np.isfinite(values)] = pd.NA
        return pd.Series(out)

    value = None if features.value is None else features.value.to_numpy(dtype="float64")
    out = pd.DataFrame(index=index)
    r_vals, f_vals = col(edges.recency_feature), col(edges.frequency_feature)
    na = pd.array([pd.NA] * n, dtype="Int8")
    seg = np.full(n, "n/a", dtype=object)
    if (
        edges.r_edges
        and edges.f_edges
        and edges.m_edges
        and r_vals is not None
        and (f_vals is not None and value is not None)
    ):
        r = score(r_vals, edges.r_edges, True)
        f = score(f_vals, edges.f_edges, False)
        m = score(value, edges.m_edges, False)
        known = (r.notna() & f.notna() & m.notna()).to_numpy()
        for i in np.flatnonzero(known):
            seg[i] = segment_for(int(r[i]), fm_score(int(f[i]), int(m[i])))
        out["r_score"], out["f_score"], out["m_score"] = r.values, f.values, m.values
    else:
        out["r_score"], out["f_score"], out["m_score"] = na, na.copy(), na.copy()
    out["rfm_segment"] = pd.array(seg, dtype="string")
    tier = np.full(n, "n/a", dtype=object)
    if edges.value_edges is not None and value is not None:
        mid, high = edges.value_edges
        tier = np.where(value > high, "high", np.where(value > mid, "mid", "low"))
        tier = np.where(np.isfinite(value), tier, "n/a")
    out["value_tier"] = pd.array(tier, dtype="string")
    stage = np.full(n, "n/a", dtype=object)
    tenure = col(edges.tenure_feature) if edges.new_max_tenure is not None else None
    recency = col(edges.recency_feature) if edges.lapsed_min_recency is not None else None
    if recency is not None:
        ok = np.isfinite(recency)
        stage[ok] = "active"
        stage[ok & (recency > edges.active_max_recency)] = "at risk"
        stage[ok & (recency > edges.lapsed_min_recency)] = "lapsed"
    if tenure is not None:
        ok = np.isfinite(tenure)
        if recency is None:
            stage[ok] = "active"
        stage[ok & (tenure <= edges.new_max_tenure)] = "new"
    out["lifecycle_stage"] = pd.array(stage, dtype="string")
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_codes_give_the_reference_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500

    def noisy(values: np.ndarray) -> list[float]:
        values = values.astype(float)
        values[rng.random(n) < 0.1] = np.nan  # missing values everywhere
        return list(values)

    train = tx_features(
        recency_days=noisy(rng.integers(1, 365, n)),
        frequency=noisy(rng.integers(1, 6, n)),  # heavy ties: coinciding edges
        monetary=noisy(rng.normal(200, 150, n).round(1)),
        tenure_days=noisy(rng.integers(1, 800, n)),
        mean_interval_days=noisy(rng.integers(5, 90, n)),
    )
    edges = fit_label_edges(train)
    probe = tx_features(
        recency_days=noisy(rng.integers(0, 500, n)),
        frequency=noisy(rng.integers(0, 8, n)),
        monetary=noisy(rng.normal(200, 200, n).round(0)),
        tenure_days=noisy(rng.integers(0, 900, n)),
        mean_interval_days=noisy(rng.integers(5, 90, n)),
    )
    got = assign_labels(probe, edges)
    pd.testing.assert_frame_equal(got, _reference_labels(probe, edges))
    codes = label_codes(probe, edges)
    pd.testing.assert_frame_equal(codes.to_frame(probe.frame.index), got)
    pd.testing.assert_frame_equal(
        codes.take(np.arange(n) % 3 == 0).to_frame(probe.frame.index[::3]), got.iloc[::3]
    )
    customers = customer_features(
        {"tenure": noisy(rng.integers(1, 72, n)), "charges": noisy(rng.normal(70, 30, n))},
        "charges",
    )
    customer_edges = fit_label_edges(customers)
    pd.testing.assert_frame_equal(
        assign_labels(customers, customer_edges), _reference_labels(customers, customer_edges)
    )
