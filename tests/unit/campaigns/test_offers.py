"""What to offer: per segment the categories it buys more than the base, per customer
the top 3 of those not bought yet (DuckDB over Parquet parts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseg.campaigns.offers import (
    NO_CATEGORY,
    annotate_profiles,
    category_column,
    compute_offers,
)
from custseg.features.engine import lambda_limits

CATEGORIES = ["kitchenware", "candles", "garden", "toys", "stationery", "lighting", "textiles"]
LIKES = {0: ["kitchenware", "candles", "lighting"], 1: ["toys", "stationery", "garden"]}


def _write(tmp: Path, n: int = 400, seed: int = 3) -> tuple[list[Path], Path]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:04d}" for i in range(n)]
    segs = np.arange(n) % 2
    rows = []
    for cid, seg in zip(ids, segs, strict=True):
        for _ in range(rng.integers(1, 4)):  # 1-3 categories: 4 or more left
            liked = rng.random() < 0.8
            cat = rng.choice(LIKES[int(seg)]) if liked else rng.choice(CATEGORIES)
            rows.append((cid, str(cat), float(rng.uniform(5, 50)), False))
    rows.append((ids[0], "textiles", -10.0, True))  # a return: not a purchase
    orders = pd.DataFrame(rows, columns=["customer_id", "product_category", "amount", "is_return"])
    half = len(orders) // 2
    parts = [tmp / "part-00000.parquet", tmp / "part-00001.parquet"]
    orders.iloc[:half].to_parquet(parts[0])
    orders.iloc[half:].to_parquet(parts[1])
    never = pd.DataFrame({"customer_id": ["new1"], "segment_id": [0]})  # no orders at all
    assign = pd.concat([pd.DataFrame({"customer_id": ids, "segment_id": segs}), never])
    assign.to_parquet(tmp / "assignments.parquet")
    return parts, tmp / "assignments.parquet"


@pytest.fixture
def offers(tmp_path: Path):  # type: ignore[no-untyped-def]
    parts, assign = _write(tmp_path)
    columns = ["customer_id", "product_category", "amount", "is_return"]
    found = compute_offers(parts, assign, lambda_limits(512, tmp=tmp_path), columns=columns)
    assert found is not None
    return found, parts


def test_segments_are_offered_the_categories_they_buy_more_than_the_base(offers) -> None:  # type: ignore[no-untyped-def]
    found, _ = offers
    for seg, liked in LIKES.items():
        top = found.segment_offers(seg)
        assert {o["category"] for o in top[:3]} == set(liked)  # the highest lifts
        for o in top:
            assert o["lift"] > 1 and o["share"] > o["base_share"]


def test_every_customer_has_three_offers_they_have_not_bought(offers) -> None:  # type: ignore[no-untyped-def]
    found, parts = offers
    orders = pd.concat([pd.read_parquet(p) for p in parts])
    bought = orders[~orders["is_return"]].groupby("customer_id")["product_category"].agg(set)
    cust = found.customers.set_index("customer_id")
    assert len(cust) == 401  # every customer, the one without orders too
    assert cust[["offer_1", "offer_2", "offer_3"]].notna().all().all()
    for cid, row in cust.iterrows():
        picks = [row.offer_1, row.offer_2, row.offer_3]
        assert len(set(picks)) == 3
        assert not set(picks) & bought.get(cid, set())
    # a customer without orders gets their segment's favourites
    assert set(cust.loc["new1", ["offer_1", "offer_2", "offer_3"]]) == set(LIKES[0])


def test_profiles_name_the_offers_or_say_there_are_none(offers) -> None:  # type: ignore[no-untyped-def]
    found, _ = offers
    profiles = {"segments": [{"id": 0}, {"id": 1}]}
    annotate_profiles(profiles, found)
    assert profiles["offers"]["available"] and profiles["offers"]["column"] == "product_category"
    assert profiles["segments"][0]["offer"].startswith("offer: ")
    assert set(profiles["segments"][0]["offer"][7:].split(", ")) == set(LIKES[0])
    none: dict = {"segments": [{"id": 0}]}
    annotate_profiles(none, None)
    assert none["offers"] == {"available": False, "reason": NO_CATEGORY}


def test_an_order_log_without_a_category_column_has_no_offers(tmp_path: Path) -> None:
    # the online retail file: InvoiceNo, InvoiceDate, CustomerID, Country, Quantity, UnitPrice
    columns = ["invoice_id", "event_time", "customer_id", "country", "quantity", "unit_price"]
    assert category_column(columns) is None
    assert compute_offers([], tmp_path / "a.parquet", lambda_limits(512), columns=columns) is None
    assert category_column([*columns, "product_id"]) == "product_id"
