"""Score statistics travel as JSON between the fanned-out score and its reduce step."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from custseg.scoring.metrics import ScoreStats
from custseg.scoring.stats_json import StatsFormatError, dumps, loads
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
