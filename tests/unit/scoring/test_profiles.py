"""Segment profiles: sizes and shares, comparisons with the base, traits."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from custseg.scoring.metrics import ScoreStats
from custseg.scoring.profiles import build_profiles, feature_label, profile_frame
from custseg.stats import stable_hash


class StubModel:
    k = 3
    version = "v-test"
    metadata: ClassVar[dict[str, Any]] = {
        "segments": [
            {"id": 0, "name": "Big spenders", "description": "Spend a lot.", "action": "retain"},
            {
                "id": 1,
                "name": "Bargain hunters",
                "description": "Wait for sales.",
                "action": "upsell",
            },
            {"id": 2, "name": "Sleepers", "description": "Rarely buy.", "action": "win back"},
        ],
        "training": {"value_measure": "spend"},
    }

    def segment_names(self) -> dict[int, str]:
        return {s["id"]: s["name"] for s in self.metadata["segments"]}


def _stats(chunks: int = 3) -> ScoreStats:
    rng = np.random.default_rng(1)
    stats = ScoreStats(k=3, numeric=["spend", "age"], categorical=["channel"], segment_sample_k=40)
    for c in range(chunks):
        n = 150
        seg = rng.integers(0, 3, n)
        spend = np.where(seg == 0, 500.0, 50.0) + rng.normal(0, 5, n)
        channel = np.where(seg == 1, "web", rng.choice(["store", "web"], n))
        frame = pd.DataFrame(
            {
                "spend": spend,
                "age": rng.normal(40, 8, n),
                "channel": pd.array(channel, dtype="string"),
            }
        )
        ids = pd.Series([f"{c}-{i}" for i in range(n)], dtype="string")
        stats.update(
            frame,
            seg,
            rng.uniform(0, 1, n),
            rng.uniform(0, 1, n),
            hashes=stable_hash(ids),
            value=spend,
        )
    return stats


def test_shares_sum_to_one_and_base_section() -> None:
    stats = _stats()
    p = build_profiles(stats, StubModel())
    segs = p["segments"]
    assert [s["name"] for s in segs] == ["Big spenders", "Bargain hunters", "Sleepers"]
    assert sum(s["size"] for s in segs) == p["customers"] == p["base"]["customers"] == 450
    assert sum(s["share"] for s in segs) == pytest.approx(1.0)
    assert sum(s["value_share"] for s in segs) == pytest.approx(1.0)
    assert p["base"]["numeric"]["spend"]["mean"] == pytest.approx(stats.value_sum.sum() / 450)
    assert p["value_measure"] == "spend"
    for s in segs:
        assert s["description"] and s["action"]
        for f in ("spend", "age"):
            e = s["numeric"][f]
            assert e["q1"] <= e["median"] <= e["q3"]
            assert {"mean", "diff", "index", "std_diff"} <= set(e)
        shares = [row["share"] for row in s["categorical"]["channel"]]
        assert sum(shares) == pytest.approx(1.0)  # two channels: top 5 covers all


def test_comparisons_and_traits_point_at_the_difference() -> None:
    p = build_profiles(_stats(), StubModel())
    big, bargain, _ = p["segments"]
    assert big["numeric"]["spend"]["std_diff"] > 1
    assert big["numeric"]["spend"]["index"] > 150
    assert big["traits"][0].startswith("much higher spend")
    web = bargain["categorical"]["channel"][0]
    assert web["value"] == "web" and web["share"] == 1.0 and web["index"] > 130
    assert any("channel is often web" in t for t in bargain["traits"])
    frame = profile_frame(p)
    assert list(frame.index) == ["Big spenders", "Bargain hunters", "Sleepers"]
    assert frame.loc["Big spenders", "spend"] > 1


def test_quartiles_do_not_depend_on_chunking() -> None:
    # the same customers in one chunk or three give the same medians (hash samples)
    rng = np.random.default_rng(3)
    n = 300
    seg = rng.integers(0, 3, n)
    frame = pd.DataFrame(
        {
            "spend": rng.gamma(2, 40, n),
            "age": rng.normal(40, 8, n),
            "channel": pd.array(rng.choice(["a", "b"], n), dtype="string"),
        }
    )
    hashes = stable_hash(pd.Series([str(i) for i in range(n)], dtype="string"))
    args = (np.zeros(n), np.zeros(n))

    def stats_of(parts: list[slice]) -> ScoreStats:
        st = ScoreStats(k=3, numeric=["spend", "age"], categorical=["channel"], segment_sample_k=30)
        for sl in parts:
            st.update(
                frame.iloc[sl].reset_index(drop=True),
                seg[sl],
                *(a[sl] for a in args),
                hashes=hashes[sl],
                value=frame["spend"].to_numpy()[sl],
            )
        return st

    one = build_profiles(stats_of([slice(0, n)]), StubModel())
    three = build_profiles(stats_of([slice(0, 100), slice(100, 180), slice(180, n)]), StubModel())
    for a, b in zip(one["segments"], three["segments"], strict=True):
        assert a["numeric"]["spend"]["median"] == b["numeric"]["spend"]["median"]
        assert a["quantiles_exact"] is False  # ~100 customers per segment > 30 sampled


def test_feature_labels_are_plain_words() -> None:
    assert feature_label("mean_interval_days") == "time between orders"
    assert feature_label("days_since_signup_date") == "time since signup date"


def test_durations_and_years_are_written_for_people() -> None:
    from custseg.model.personas import human_value

    assert human_value("days_since_signup_date", 1446.0) == "4.0 years"
    assert human_value("recency_days", 12.0) == "12 days"
    assert human_value("recency", 90.0) == "3 months"
    assert human_value("tenure_days", 1.0) == "1 day"
    assert human_value("year_birth", 1975.0) == "1975"
    assert human_value("income", 51234.0) == "51,234"
