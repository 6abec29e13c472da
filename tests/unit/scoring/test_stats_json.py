"""Score statistics travel as JSON between the fanned-out score and its reduce step."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from custseg.scoring.metrics import ScoreStats
from custseg.scoring.predictions import (
    BucketPredictions,
    HoldoutGroups,
    PredictionStats,
    ValueTotals,
    risk_measure,
)
from custseg.scoring.stats_json import (
    StatsFormatError,
    dumps,
    dumps_predictions,
    loads,
    loads_predictions,
)
from custseg.stats import stable_hash


def _chunk(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = pd.Series([f"c{seed}-{i}" for i in range(n)], dtype="string")
    value = rng.gamma(2.0, 50.0, n)
    value[::7] = np.nan  # unknown values stay unknown
    return {
        "frame": pd.DataFrame(
            {
                "x": rng.normal(0, 1, n),
                "y": rng.uniform(0, 10, n),
                "colour": pd.array(rng.choice(["red", "blue"], n), dtype="string"),
            }
        ),
        "segment_id": rng.integers(0, 3, n),
        "distance": rng.uniform(0, 2, n),
        "confidence": rng.uniform(0, 1, n),
        "hashes": stable_hash(ids),
        "value": value,
        "extras": pd.DataFrame({"churn": rng.integers(0, 2, n).astype("float64")}),
    }


def _stats() -> ScoreStats:
    return ScoreStats(
        k=3,
        numeric=["x", "y"],
        categorical=["colour"],
        outcomes=["churn"],
        baseline_edges={"x": [-3.0, 0.0, 3.0], "y": [0.0, 5.0, 10.0]},
        sample_k=40,
        segment_sample_k=8,
    )


def test_decoded_statistics_merge_to_what_the_originals_merge_to() -> None:
    parts = [_stats().update(**_chunk(150, seed)) for seed in range(3)]
    direct = parts[0].merge(parts[1]).merge(parts[2])
    texts = [dumps(p) for p in parts]
    assert all(json.loads(t)["format"] == "custseg-score-stats/1" for t in texts)
    decoded = [loads(t) for t in texts]
    merged = decoded[0].merge(decoded[1]).merge(decoded[2])
    assert merged.customers == direct.customers == 450
    assert (merged.seg_counts == direct.seg_counts).all()
    assert np.array_equal(merged.value_sum, direct.value_sum)
    assert merged.categories == direct.categories
    assert merged.histograms["x"].counts == direct.histograms["x"].counts
    pd.testing.assert_frame_equal(merged.sample_rows(), direct.sample_rows())
    for s in range(3):
        for f in ("x", "y"):
            assert merged.seg_moments[s][f] == direct.seg_moments[s][f]
    assert dumps(merged) == dumps(direct)  # byte for byte


def test_a_document_cannot_name_another_class() -> None:
    doc = json.loads(dumps(_stats()))
    doc["stats"]["class"] = "Popen"
    with pytest.raises(StatsFormatError, match="unknown class 'Popen'"):
        loads(json.dumps(doc), "stats/bucket=3.json")


@pytest.mark.parametrize("text", ["{", '{"format": "other"}'])
def test_foreign_documents_are_refused_by_name(text: str) -> None:
    with pytest.raises(StatsFormatError, match=r"stats/bucket=1\.json"):
        loads(text, "stats/bucket=1.json")


def _predictions(seed: int) -> BucketPredictions:
    """One bucket's prediction statistics: an order log's (value at risk from the
    customer-value columns, totals per segment, holdout groups)."""
    rng = np.random.default_rng(seed)
    n = 120
    ids = pd.Index([f"c{seed}-{i:03d}" for i in range(n)], dtype="string")
    seg = rng.integers(0, 3, n)
    forecasts = {
        "p_alive": rng.uniform(0, 1, n),
        "expected_purchases_90d": rng.gamma(1.0, 1.0, n),
        "expected_value_12m": rng.gamma(2.0, 80.0, n),
    }
    forecasts["expected_value_12m"][::9] = np.nan  # customers without purchases
    value = rng.gamma(2.0, 50.0, n)
    columns = list(forecasts)
    stats = PredictionStats([], risk_measure({}, columns), top_n=25)
    stats.update(ids, seg, value, forecasts)
    totals = ValueTotals()
    totals.update(seg, forecasts, value)
    holdout = HoldoutGroups()
    holdout.update(
        pd.DataFrame(
            {
                "_holdout_frequency": rng.integers(0, 4, n).astype("float64"),
                "_holdout_recency": np.zeros(n),
                "_holdout_age": rng.integers(1, 3, n).astype("float64") * 100,
                "_holdout_purchases": rng.integers(0, 3, n).astype("float64"),
            }
        )
    )
    return BucketPredictions(stats, totals, holdout)


def test_prediction_statistics_travel_exactly() -> None:
    parts = [_predictions(seed) for seed in range(3)]
    direct = parts[0].merge(parts[1]).merge(parts[2])
    texts = [dumps_predictions(p) for p in parts]
    assert all(json.loads(t)["format"] == "custseg-prediction-stats/1" for t in texts)
    decoded = [loads_predictions(t) for t in texts]
    merged = decoded[0].merge(decoded[1]).merge(decoded[2])
    assert merged.stats.measure == direct.stats.measure is not None
    assert merged.stats.top is not None and direct.stats.top is not None
    assert len(merged.stats.top) == 25
    assert list(merged.stats.top["customer_id"]) == list(direct.stats.top["customer_id"])
    assert merged.stats.risk_known == direct.stats.risk_known
    assert merged.value_totals is not None and direct.value_totals is not None
    assert np.array_equal(merged.value_totals.expected_value, direct.value_totals.expected_value)
    pd.testing.assert_frame_equal(merged.holdout.groups, direct.holdout.groups)
    assert merged.holdout.groups["customers"].sum() == 360
    with pytest.raises(StatsFormatError, match="not a custseg-prediction-stats/1"):
        loads_predictions(dumps(_stats()), "predictions/00001.json")
