"""Segments ranked as targets from size, value share, growth and outcome rates."""

from __future__ import annotations

from typing import Any

from custseg.scoring.ranking import rank_segments


def _profiles() -> dict[str, Any]:
    return {
        "segments": [
            {"id": 0, "name": "big", "size": 500, "share": 0.5, "value_share": 0.2},
            {"id": 1, "name": "valuable", "size": 300, "share": 0.3, "value_share": 0.7},
            {"id": 2, "name": "small", "size": 200, "share": 0.2, "value_share": 0.1},
        ]
    }


def _metrics(**extra: Any) -> dict[str, Any]:
    return {"outcomes": {}, "stability": {"available": False}, **extra}


def test_value_and_size_rank_the_segments_when_nothing_else_is_known() -> None:
    ranked = rank_segments(_profiles(), _metrics())
    by_id = {s["id"]: s for s in ranked["segments"]}
    assert ranked["ranking"]["order"] == [1, 0, 2]
    assert by_id[1]["rank"] == 1 and by_id[2]["rank"] == 3
    assert ranked["ranking"]["components_missing"] == ["growth", "outcome"]
    assert by_id[2]["attractiveness"] == 0.0 and 0 < by_id[1]["attractiveness"] <= 100
    assert ranked["ranking"]["weights"] == {"value": 0.5833, "size": 0.4167}


def test_growth_and_churn_move_a_segment_up_or_down() -> None:
    stability = {"available": True, "same_model": True, "previous_segment_sizes": [500, 300, 50]}
    churn = {
        "churn": {
            "by_segment": [
                {"id": 0, "lift": 1.0},
                {"id": 1, "lift": 1.9},  # valuable, but leaving
                {"id": 2, "lift": 0.2},
            ]
        }
    }
    ranked = rank_segments(_profiles(), _metrics(stability=stability, outcomes=churn))
    by_id = {s["id"]: s for s in ranked["segments"]}
    assert by_id[2]["attractiveness_parts"]["growth"]["raw"] == 3.0  # 50 -> 200 customers
    assert by_id[1]["attractiveness_parts"]["outcome"]["raw"] == 0.1  # 2 - lift: bad news
    # the small segment: lowest value and size, but fastest growth and fewest churners
    assert by_id[2]["attractiveness"] == 40.0  # 0 without growth and outcomes
    assert by_id[1]["attractiveness"] < 45  # value share alone no longer carries it
    assert ranked["ranking"]["components_missing"] == []
