"""The effect per segment recovers a known injected uplift, and finds none where there is
none (the seeded sample campaign of the demo)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from custseg.campaigns.effect import conversion_uplift, mean_uplift, too_small
from custseg.campaigns.measure import (
    ResultsRun,
    campaign_key,
    campaign_rows,
    measure_campaign,
    run_current_at,
    send_time,
)
from custseg.local.demo_data import CAMPAIGN_BASE_RATE, CAMPAIGN_UPLIFT, demo_campaign

SENT = dt.datetime(2026, 11, 2, 9, 0)


def _assignments(k: int = 5, per_segment: int = 1_200) -> pd.DataFrame:
    ids = [f"C{i:05d}" for i in range(k * per_segment)]
    segs = np.repeat(np.arange(k), per_segment)
    return pd.DataFrame(
        {"customer_id": ids, "segment_id": segs, "segment_name": [f"Segment {s}" for s in segs]}
    )


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """The sample's text as the ingest's campaign contract cleans it."""
    yes = {"yes": True, "no": False}
    return pd.DataFrame(
        {
            "customer_id": frame["Customer ID"],
            "campaign_id": frame["Campaign"],
            "group": frame["Group"].str.lower().replace({"holdout": "control"}),
            "event_time": pd.to_datetime(frame["Sent At"]),
            "opened": frame["Opened"].map(yes),
            "clicked": frame["Clicked"].map(yes),
            "converted": frame["Converted"].map(yes),
            "amount": pd.to_numeric(frame["Revenue"].replace("", np.nan)),
        }
    )


@pytest.fixture(scope="module")
def effect() -> dict:
    seg = _assignments()
    frame, chosen = demo_campaign(seg["customer_id"], seg["segment_id"], sent=SENT, seed=11)
    assert chosen == [0, 1]
    rows, counts = campaign_rows(_clean(frame), "fallback")
    assert counts == {"rows_without_group": 0, "repeated_customers": 0}
    return measure_campaign(rows, seg, campaign="autumn-mailing", run={"run_id": "r1"})


def test_the_injected_uplift_is_recovered_within_its_interval(effect: dict) -> None:
    by_id = {s["segment_id"]: s for s in effect["segments"]}
    for seg_id in (0, 1):
        up = by_id[seg_id]["conversion_uplift"]
        assert up["ci_low"] <= CAMPAIGN_UPLIFT <= up["ci_high"], up
        assert up["significant"] and by_id[seg_id]["verdict"] == "positive"
        inc = by_id[seg_id]["incremental_conversions"]
        treated = by_id[seg_id]["treatment"]["customers"]
        assert inc["estimate"] == pytest.approx(up["estimate"] * treated, rel=1e-4)
        rel = by_id[seg_id]["conversion_uplift_relative"]
        assert rel["ci_low"] <= CAMPAIGN_UPLIFT / CAMPAIGN_BASE_RATE <= rel["ci_high"]
        assert by_id[seg_id]["revenue_uplift"]["estimate"] > 0


def test_the_null_segments_are_not_significant(effect: dict) -> None:
    by_id = {s["segment_id"]: s for s in effect["segments"]}
    for seg_id in (2, 3, 4):
        up = by_id[seg_id]["conversion_uplift"]
        assert up["ci_low"] <= 0 <= up["ci_high"] and not up["significant"], up
        assert by_id[seg_id]["verdict"] == "no significant effect"
    assert effect["causal"] and effect["negative_segments"] == []
    assert effect["customers_unmatched"] == 0


def test_the_test_has_its_stated_size_and_power() -> None:
    """On 2,000 simulated segments of 800 customers (half treated, 8 % conversion) a null
    effect is significant about 5 % of the time, an uplift of 10 points nearly always."""
    rng = np.random.default_rng(5)
    null = power = 0
    for _ in range(2_000):
        n_t = int(rng.binomial(800, 0.5))
        n_c = 800 - n_t
        x_c = int(rng.binomial(n_c, CAMPAIGN_BASE_RATE))
        null += conversion_uplift(int(rng.binomial(n_t, CAMPAIGN_BASE_RATE)), n_t, x_c, n_c)[
            0
        ].significant
        x_t = int(rng.binomial(n_t, CAMPAIGN_BASE_RATE + CAMPAIGN_UPLIFT))
        power += conversion_uplift(x_t, n_t, x_c, n_c)[0].significant
    assert 0.03 <= null / 2_000 <= 0.075, null
    assert power / 2_000 >= 0.95, power


def test_conversion_uplift_matches_the_textbook_formula() -> None:
    absolute, relative = conversion_uplift(60, 500, 40, 500)
    se = math.sqrt(0.12 * 0.88 / 500 + 0.08 * 0.92 / 500)
    assert absolute.estimate == pytest.approx(0.04)
    assert absolute.low == pytest.approx(0.04 - 1.959964 * se, abs=1e-6)
    assert absolute.p_value == pytest.approx(math.erfc(0.04 / se / math.sqrt(2)))
    assert relative.estimate == pytest.approx(0.5)
    assert relative.low is not None and relative.low < 0.5 < (relative.high or 0)


def test_revenue_uplift_uses_welch_standard_error() -> None:
    t = np.array([0, 0, 10, 30, 0, 5.0])
    c = np.array([0, 0, 0, 10, 0, 2.0])
    absolute, _ = mean_uplift(t.sum(), (t**2).sum(), len(t), c.sum(), (c**2).sum(), len(c))
    se = math.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))
    assert absolute.estimate == pytest.approx(t.mean() - c.mean())
    assert absolute.high == pytest.approx(t.mean() - c.mean() + 1.959964 * se, abs=1e-5)


def test_small_groups_are_too_small_to_tell() -> None:
    assert too_small(3, 20, 1, 400) is not None
    assert too_small(2, 400, 1, 400) is not None  # 3 conversions in all
    assert too_small(40, 400, 30, 400) is None
    seg = _assignments(k=2, per_segment=40)
    frame, _ = demo_campaign(seg["customer_id"], seg["segment_id"], sent=SENT, seed=1)
    rows, _ = campaign_rows(_clean(frame), "c")
    doc = measure_campaign(rows, seg, campaign="c", run={})
    assert {s["verdict"] for s in doc["segments"]} == {"too small to tell"}
    assert all("too small to tell" in s["warnings"][0] for s in doc["segments"])


def test_without_control_the_result_is_labelled_not_causal() -> None:
    seg = _assignments(k=3, per_segment=500)
    frame, _ = demo_campaign(seg["customer_id"], seg["segment_id"], sent=SENT, seed=3)
    clean = _clean(frame).drop(columns=["group"])
    rows, _ = campaign_rows(clean, "c")
    doc = measure_campaign(rows, seg, campaign="c", run={})
    assert doc["causal"] is False and "no control group" in doc["method"]["note"]
    assert all(s["verdict"] == "not causal (no control group)" for s in doc["segments"])
    assert all("conversion_vs_baseline" in s for s in doc["segments"])


def test_flags_or_times_mean_conversion_and_a_holdout_flag_means_control() -> None:
    clean = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "c"],
            "holdout": [True, False, False, False],
            "converted_at": pd.to_datetime([None, "2026-11-03", None, "2026-11-04"]),
            "amount": [np.nan, 20.0, np.nan, 5.0],
        }
    )
    rows, counts = campaign_rows(clean, "spring")
    assert rows["group"].tolist() == ["control", "treatment", "treatment"]
    assert rows["converted"].tolist() == [False, True, True]
    assert rows["revenue"].tolist() == [0.0, 20.0, 5.0]
    assert set(rows["campaign_id"]) == {"spring"} and counts["repeated_customers"] == 1


def test_the_run_current_at_the_send_time_is_chosen() -> None:
    runs = [
        ResultsRun("r1", dt.datetime(2026, 10, 1, tzinfo=dt.UTC), "p1/"),
        ResultsRun("r2", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "p2/"),
        ResultsRun("r3", dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "p3/"),
    ]
    when = dt.datetime(2026, 11, 15, tzinfo=dt.UTC)
    assert run_current_at(runs, when)[0].run_id == "r2"  # type: ignore[union-attr]
    assert run_current_at(runs, None)[0].run_id == "r3"  # type: ignore[union-attr]
    early, why = run_current_at(runs, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert early is not None and early.run_id == "r1" and "before any" in why
    assert run_current_at([], when) == (None, "no committed segmentation run")
    frame = pd.DataFrame({"sent_time": pd.to_datetime(["2026-11-03 10:00", "2026-11-02 09:00"])})
    assert send_time(frame) == dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    assert campaign_key(" Autumn Mailing / 2026 ") == "autumn-mailing-2026"
