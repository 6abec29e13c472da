"""Personas: names from standardised differences, unique names, actions, descriptions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from custseg.features.build import TRANSACTION_FEATURES, Features
from custseg.model.personas import ACTIONS, choose_action, describe_segments, unique_names


def tx_features() -> tuple[Features, np.ndarray]:
    """Three synthetic groups: loyal big spenders, lapsed one-timers, new buyers."""
    rng = np.random.default_rng(0)
    n = 100
    groups = {
        #        recency freq monetary aov tenure interval return_share
        0: (10, 20, 5000, 250, 700, 30, 0.01),
        1: (300, 1, 50, 50, 320, 320, 0.0),
        2: (15, 1, 120, 120, 20, 20, 0.0),
    }
    rows, labels = [], []
    for g, centre in groups.items():
        for _ in range(n):
            rows.append([v * rng.uniform(0.9, 1.1) for v in centre])
            labels.append(g)
    ids = pd.Index([f"{i:04d}" for i in range(len(rows))], dtype="string", name="customer_id")
    frame = pd.DataFrame(rows, columns=list(TRANSACTION_FEATURES), index=ids)
    frame["frequency"] = frame["frequency"].round()
    extras = pd.DataFrame(
        {
            "country": pd.array(["uk"] * 200 + ["fr"] * 100, dtype="string"),
            "churn": [0.0] * 100 + [1.0] * 100 + [0.0] * 100,
        },
        index=ids,
    )
    f = Features(
        frame=frame,
        numeric=list(TRANSACTION_FEATURES),
        categorical=[],
        as_of=dt.date(2024, 1, 1),
        value=frame["monetary"].rename("monetary"),
        extras=extras,
    )
    return f, np.asarray(labels)


def test_transaction_personas_are_plain_and_sensible() -> None:
    f, labels = tx_features()
    segs = describe_segments(f, labels, 3, log_features=["frequency", "monetary"])
    names = [s["name"] for s in segs]
    assert len(set(names)) == 3
    assert "big spenders" in names[0].lower() and segs[0]["action"] == "retain and reward"
    assert names[1].lower().startswith("lapsed")
    assert segs[1]["action"] == "prevent churn"  # lapsed, low value, every one churned
    assert "churn rate 3.0x the base" in segs[1]["action_reason"]
    assert "new" in names[2].lower() and segs[2]["action"] == "nurture"
    assert abs(sum(s["share"] for s in segs) - 1) < 1e-9
    assert abs(sum(s["value_share"] for s in segs) - 1) < 1e-9
    assert segs[0]["value_share"] > 0.9
    desc = segs[1]["description"]
    assert "100 customers" in desc and "Churn rate 100%" in desc and "Suggested action" in desc
    assert segs[2]["attributes"]["country"] == ["fr", 1.0]
    assert all(s["action"] in ACTIONS for s in segs)
    assert segs[0]["traits"][0]["effect"] != 0 and "_word" not in segs[0]["traits"][0]


def test_names_unique_when_traits_collide() -> None:
    def t(word: str, effect: float, noun: bool = False) -> dict:
        from custseg.model.personas import Word

        return {"feature": word, "kind": "numeric", "effect": effect, "_word": Word(word, noun)}

    same = [t("lapsed", 2.0), t("one-time", 1.5)]
    names = unique_names(
        [
            [*same, t("regular", 0.9)],
            [*same, t("occasional", 0.8)],
            [*same],
            [],
            [],
        ],
        "buyers",
    )
    assert len(set(names)) == 5
    assert names[0] == "Lapsed one-time regular buyers"
    assert names[1] == "Lapsed one-time occasional buyers"
    assert names[3] == "Mainstream buyers (segment 3)" and names[4].endswith("(segment 4)")
    assert names == unique_names(
        [[*same, t("regular", 0.9)], [*same, t("occasional", 0.8)], [*same], [], []], "buyers"
    )


def test_customer_table_vocabulary_and_categories() -> None:
    n = 200
    ids = pd.Index([str(i) for i in range(n)], dtype="string", name="customer_id")
    group = np.repeat([0, 1], n // 2)
    frame = pd.DataFrame(
        {
            "annual_income": np.where(group == 0, 120.0, 30.0) + np.arange(n) % 5,
            "spending_score": np.where(group == 0, 15.0, 60.0) + np.arange(n) % 7,
            "contract": pd.array(
                np.where(group == 0, "two year", "month-to-month"), dtype="string"
            ),
        },
        index=ids,
    )
    f = Features(
        frame=frame,
        numeric=["annual_income", "spending_score"],
        categorical=["contract"],
        as_of=dt.date(2024, 1, 1),
        value=frame["spending_score"],
        extras=pd.DataFrame(index=ids),
    )
    segs = describe_segments(f, group, 2)
    assert segs[0]["name"].startswith("High-income") and "cautious spenders" in segs[0]["name"]
    assert segs[0]["action"] == "upsell"  # high income, low spend
    assert segs[0]["top_categories"]["contract"] == ["two year", 1.0]
    assert segs[1]["name"] != segs[0]["name"]


def test_action_rules() -> None:
    def trait(feature: str, effect: float) -> dict:
        return {"feature": feature, "kind": "numeric", "effect": effect}

    assert choose_action([trait("recency_days", 1.0)], 1.2) == "win back"
    assert choose_action([trait("recency_days", 1.0)], 0.2) == "reactivate cheaply"
    assert choose_action([], 2.0) == "retain and reward"
    assert choose_action([trait("tenure_days", -1.0)], 1.0) == "nurture"
    assert choose_action([trait("annual_income", 1.0)], 0.3) == "upsell"
    assert choose_action([trait("annual_income", -1.0)], 2.0) == "reward with value offers"
    assert choose_action([], 0.3) == "reduce cost to serve"
    response = {"response": {"segment_rate": 0.3, "base_rate": 0.1}}
    assert choose_action([], 1.0, response) == "invite to campaigns"
    churn = {"churn": {"segment_rate": 0.5, "base_rate": 0.25}}
    assert choose_action([], 1.0, churn) == "prevent churn"
