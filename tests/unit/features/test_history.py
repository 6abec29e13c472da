"""An order log's repeat-purchase history (history.sql) and the holdout query, in SQL on
DuckDB, against a direct pandas computation of the same definitions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseg.dataset.clean_data import clean_files, read_clean
from custseg.features.engine import (
    EngineLimits,
    collect_features,
    first_purchase_day,
    holdout_data,
)
from custseg.features.sql import HISTORY_COLUMNS, holdout_query
from custseg.ingest.contracts.model import builtin_contract


@pytest.fixture
def limits(tmp_path: Path) -> EngineLimits:
    return EngineLimits(memory_limit_mb=256, temp_dir=tmp_path / "spill", threads=2)


def reference(clean: pd.DataFrame, cutoff: dt.date, end: dt.date) -> pd.DataFrame:
    """Per customer with a purchase before ``cutoff``: repeat purchase days, recency and
    age in days, mean repeat-day value, purchase days in [cutoff, end)."""
    lines = clean[clean["event_time"] < pd.Timestamp(end)].copy()
    lines = lines[~(lines["is_return"] | (lines["amount"] < 0))]
    lines["day"] = lines["event_time"].dt.normalize()
    days = lines.groupby(["customer_id", "day"])["amount"].sum().reset_index()
    days["first"] = days.groupby("customer_id")["day"].transform("min")
    days = days[days["first"] < pd.Timestamp(cutoff)]
    cal = days[days["day"] < pd.Timestamp(cutoff)]
    per = cal.groupby("customer_id").agg(
        n=("day", "size"), first=("first", "min"), last=("day", "max")
    )
    repeat = cal[cal["day"] > cal["first"]].groupby("customer_id")["amount"].sum()
    out = pd.DataFrame(index=per.index)
    out["_clv_frequency"] = per["n"] - 1.0
    out["_clv_recency"] = (per["last"] - per["first"]).dt.days.astype("float64")
    out["_clv_age"] = (pd.Timestamp(cutoff) - per["first"]).dt.days.astype("float64")
    out["_clv_monetary"] = repeat.reindex(out.index) / out["_clv_frequency"].replace(0, np.nan)
    hold = days[days["day"] >= pd.Timestamp(cutoff)].groupby("customer_id").size()
    out["holdout"] = hold.reindex(out.index).fillna(0).astype("float64")
    return out.sort_index()


def _online_retail(ingest) -> tuple[list[Path], pd.DataFrame]:
    result = ingest("online_retail_invoices.csv")
    assert result.clean_path is not None
    return clean_files(result.clean_path), read_clean(result.clean_path).to_pandas()


def test_features_carry_the_repeat_purchase_history(ingest, limits) -> None:
    parts, clean = _online_retail(ingest)
    as_of = dt.date(2011, 12, 10)
    features = collect_features(parts, builtin_contract("transactions"), as_of, limits)
    assert features.history is not None
    assert list(features.history.columns) == list(HISTORY_COLUMNS)
    want = reference(clean, as_of, as_of)
    got = features.history.dropna(subset=["_clv_frequency"])
    assert list(got.index) == list(want.index)
    for name in HISTORY_COLUMNS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, err_msg=name)
    assert got["_clv_frequency"].max() > 5  # the data has repeat buyers
    # customers who only returned have features but no history
    only_returns = features.history["_clv_frequency"].isna()
    assert (features.frame.loc[only_returns, "frequency"] == 0).all()
    # the history agrees with the features: first purchase = tenure, last = recency
    np.testing.assert_allclose(got["_clv_age"], features.frame.loc[got.index, "tenure_days"])
    np.testing.assert_allclose(
        got["_clv_age"] - got["_clv_recency"], features.frame.loc[got.index, "recency_days"]
    )


def test_holdout_data_groups_the_calibration_customers(ingest, limits) -> None:
    parts, clean = _online_retail(ingest)
    contract = builtin_contract("transactions")
    cutoff, end = dt.date(2011, 8, 8), dt.date(2011, 12, 10)
    data = holdout_data(parts, contract, cutoff, end, limits)
    want = reference(clean, cutoff, end)
    assert data["customers"].sum() == len(want)
    assert data["holdout_purchases"].sum() == want["holdout"].sum() > 0
    keys = ["_clv_frequency", "_clv_recency", "_clv_age"]
    assert not data.duplicated(keys).any()
    grouped = want.groupby(keys)["holdout"].agg(["size", "sum"]).reset_index()
    merged = data.merge(grouped, on=keys, validate="one_to_one")
    assert len(merged) == len(data)
    np.testing.assert_array_equal(merged["customers"], merged["size"])
    np.testing.assert_array_equal(merged["holdout_purchases"], merged["sum"])
    first = first_purchase_day(parts, contract, end, limits)
    assert first == dt.date(2010, 12, 1)


def test_holdout_data_by_ranges_of_customers_is_one_querys(ingest, limits) -> None:
    """A log queried one range of customer ids at a time (as a large one is) gives the
    groups of one query, in the same order."""
    parts, _ = _online_retail(ingest)
    contract = builtin_contract("transactions")
    cutoff, end = dt.date(2011, 8, 8), dt.date(2011, 12, 10)
    whole = holdout_data(parts, contract, cutoff, end, limits)
    ranged = holdout_data(parts, contract, cutoff, end, limits, range_rows=1_500)
    assert len(whole) > 100
    pd.testing.assert_frame_equal(ranged, whole)


def test_holdout_query_is_portable_sql() -> None:
    from custseg.features.sql import ColumnKind

    columns = {
        "customer_id": ColumnKind.TEXT,
        "event_time": ColumnKind.TIMESTAMP,
        "amount": ColumnKind.NUMBER,
        "invoice_id": ColumnKind.TEXT,
    }
    sql = holdout_query(
        builtin_contract("transactions"), columns, dt.date(2011, 8, 8), dt.date(2011, 12, 10)
    )
    assert "QUALIFY" not in sql and "FILTER" not in sql
    assert "DATE '2011-08-08'" in sql and "TIMESTAMP '2011-12-10 00:00:00'" in sql
