"""Campaign results uploaded to a dataset are measured against the segments each
customer had when the campaign was sent: the injected uplift is recovered, the effect
written and announced, and segments of negative uplift flagged in the next run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from support import assignments, get, get_json, mall_like_csv, seed_models, upload_in_a_new_second

from custseg.aws import bus
from custseg.local.demo_data import CAMPAIGN_UPLIFT, demo_campaign, write_demo_campaign

DATASET = "mall"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every event the functions publish (the emulated bus has no rule for the new ones)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    original = bus.EventBus.publish

    def spy(self: bus.EventBus, detail_type: str, detail: dict[str, Any]) -> None:
        seen.append((detail_type, detail))
        original(self, detail_type, detail)

    monkeypatch.setattr(bus.EventBus, "publish", spy)
    return seen


def _scored(stack: Any, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    customers = mall_like_csv(tmp_path / "customers.csv", range(1, 4001), seed=5)
    upload_in_a_new_second(stack, customers, f"incoming/{DATASET}/customers.csv")
    assert [i.error for i in stack.drain() if i.error] == []
    latest = get_json(stack, stack.results_bucket, f"segments/{DATASET}/latest.json")
    assert latest is not None
    return latest, assignments(stack, latest["prefix"])


def test_a_campaign_upload_is_measured_per_segment(
    stack: Any,
    champions: dict[str, bytes],
    tmp_path: Path,
    published: list[tuple[str, dict[str, Any]]],
) -> None:
    seed_models(stack, champions, DATASET)
    latest, seg = _scored(stack, tmp_path)
    largest = seg["segment_id"].value_counts().index[:2].tolist()
    frame, chosen = demo_campaign(
        seg["customer_id"],
        seg["segment_id"],
        sent=dt.datetime.now(dt.UTC),
        seed=7,
        uplift_segments=largest,
    )
    campaign = write_demo_campaign(tmp_path / "campaign.csv", frame)
    upload_in_a_new_second(stack, campaign, f"incoming/{DATASET}/campaign.csv")
    assert [i.error for i in stack.drain() if i.error] == []

    prefix = f"segments/{DATASET}/campaigns/autumn-mailing/"
    effect = get_json(stack, stack.results_bucket, prefix + "effect.json")
    assert effect is not None and effect["causal"]
    assert effect["segments_run"]["run_id"] == latest["run_id"]
    assert effect["customers_matched"] == len(seg) and effect["customers_unmatched"] == 0
    for s in effect["segments"]:
        if s["verdict"] == "too small to tell":  # a segment of a few customers
            assert s["treatment"]["customers"] < 30 or s["control"]["customers"] < 30, s
            continue
        up = s["conversion_uplift"]
        if s["segment_id"] in chosen:
            assert up["ci_low"] <= CAMPAIGN_UPLIFT <= up["ci_high"] and up["significant"], s
        else:
            assert not up["significant"] and s["verdict"] == "no significant effect", s
    lines = get(stack, stack.results_bucket, prefix + "effect/segments.jsonl").splitlines()
    assert len(lines) == len(effect["segments"])
    assert b"<svg" in get(stack, stack.results_bucket, prefix + "report.html")
    measured = [d for t, d in published if t == bus.EFFECT_MEASURED]
    assert [(d["campaign"], d["segments_run_id"]) for d in measured] == [
        ("autumn-mailing", latest["run_id"])
    ]
    # the campaign part is never scored as customers: the newest run still has them all
    after = get_json(stack, stack.results_bucket, f"segments/{DATASET}/latest.json")
    assert after is not None and len(assignments(stack, after["prefix"])) == len(seg)


def test_negative_uplift_is_flagged_in_the_next_run(
    stack: Any, champions: dict[str, bytes], tmp_path: Path
) -> None:
    seed_models(stack, champions, DATASET)
    _, seg = _scored(stack, tmp_path)
    target = int(seg["segment_id"].value_counts().index[0])  # the largest segment
    frame, _ = demo_campaign(
        seg["customer_id"],
        seg["segment_id"],
        sent=dt.datetime.now(dt.UTC),
        seed=3,
        uplift_segments=[target],
        uplift=-0.07,  # the campaign put them off
        name="pushy",
    )
    upload_in_a_new_second(
        stack, write_demo_campaign(tmp_path / "pushy.csv", frame), f"incoming/{DATASET}/p.csv"
    )
    assert [i.error for i in stack.drain() if i.error] == []
    index = get_json(stack, stack.results_bucket, f"segments/{DATASET}/campaigns/index.json")
    assert index is not None
    assert [n["segment_id"] for n in index["campaigns"]["pushy"]["negative"]] == [target]
    latest = get_json(stack, stack.results_bucket, f"segments/{DATASET}/latest.json")
    assert latest is not None
    profiles = get_json(stack, stack.results_bucket, latest["prefix"] + "profiles.json") or {}
    flagged = {s["id"]: s.get("campaign_flags") for s in profiles["segments"]}
    assert flagged[target] and flagged[target][0].startswith("stop campaign pushy for them")
    assert all(not v for k, v in flagged.items() if k != target)
    assert b"stop campaign pushy" in get(
        stack, stack.results_bucket, latest["prefix"] + "report.html"
    )
    assert profiles["offers"]["available"] is False  # a customer table: no categories
