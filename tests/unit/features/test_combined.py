"""One portrait per customer: a customer table joined with an order log on DuckDB, trained
and scored as one model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseg.features import engine
from custseg.features.build import MISSING_CATEGORY, TRANSACTION_FEATURES
from custseg.features.combined import combined_contract
from custseg.features.engine import EngineLimits, Source, collect_features, stream_features
from custseg.ingest.contracts.model import builtin_contract
from custseg.model.training import train_model
from custseg.scoring.score import RunInfo, score_dataset

AS_OF = dt.date(2024, 1, 1)
CUSTOMERS, ORDERS = builtin_contract("customers"), builtin_contract("transactions")


@pytest.fixture
def limits(tmp_path: Path) -> EngineLimits:
    return EngineLimits(memory_limit_mb=128, temp_dir=tmp_path / "spill", threads=1)


def write(frame: pd.DataFrame, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = frame.assign(_row=np.arange(2, len(frame) + 2))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return [path]


def customer_table(ids: range) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:03d}" for i in ids], dtype="string"),
            "gender": pd.array(["female" if i % 2 else "male" for i in ids], dtype="string"),
            "age": rng.integers(18, 70, len(ids)).astype("float64"),
            "annual_income": rng.integers(15, 140, len(ids)).astype("float64"),
        }
    )


def order_log(ids: range) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for i in ids:
        for j in range(1 + i % 5):
            rows.append(
                {
                    "invoice_id": f"{i}-{j}",
                    "event_time": pd.Timestamp("2023-01-01")
                    + pd.Timedelta(days=int(rng.integers(0, 360))),
                    "customer_id": f"c{i:03d}",
                    "amount": float(rng.uniform(5, 200)),
                    "country": "france" if i % 3 else "spain",
                }
            )
    frame = pd.DataFrame(rows)
    for col in ("invoice_id", "customer_id", "country"):
        frame[col] = frame[col].astype("string")
    return frame


def test_the_join_keeps_every_customer_of_either_source(tmp_path: Path, limits) -> None:
    customers = write(customer_table(range(0, 40)), tmp_path / "customers.parquet")
    orders = write(order_log(range(20, 60)), tmp_path / "orders.parquet")
    features = collect_features(customers, CUSTOMERS, AS_OF, limits, orders=Source(orders, ORDERS))
    assert features.kind == "combined" and features.schema().kind == "combined"
    assert features.numeric == ["age", "annual_income", *TRANSACTION_FEATURES]
    assert features.categorical == ["gender"]
    assert list(features.extras.columns) == ["country"]
    frame = features.frame
    assert frame.index.tolist() == [f"c{i:03d}" for i in range(60)]
    no_orders, both, orders_only = frame.loc["c005"], frame.loc["c025"], frame.loc["c055"]
    # no orders: nothing bought, nothing returned; recency and tenure unknown (imputed)
    assert no_orders[["frequency", "monetary", "avg_order_value", "return_share"]].eq(0).all()
    assert no_orders[["recency_days", "tenure_days", "mean_interval_days"]].isna().all()
    assert no_orders["gender"] == "female" and no_orders["age"] > 0
    assert both["frequency"] == 1 + 25 % 5 and both["age"] > 0
    # order-only customers: no demographics
    assert np.isnan(orders_only["age"]) and orders_only["gender"] == MISSING_CATEGORY
    assert orders_only["frequency"] == 1 + 55 % 5
    assert features.value is not None and features.value.name == "monetary"
    assert features.value.loc["c005"] == 0.0 and features.value.loc["c055"] > 0


def test_a_combined_model_scores_the_union_with_both_sources_in_its_profiles(
    tmp_path: Path, limits
) -> None:
    customers = write(customer_table(range(0, 300)), tmp_path / "customers.parquet")
    orders = write(order_log(range(100, 400)), tmp_path / "orders.parquet")
    source = Source(orders, ORDERS)
    features = collect_features(customers, CUSTOMERS, AS_OF, limits, orders=source)
    contract = combined_contract(CUSTOMERS, ORDERS)
    model = train_model(features, contract=contract, k=3, seed=1)
    assert model.schema.kind == "combined"
    assert {"age", "gender", "recency_days", "monetary"} <= set(model.schema.columns)
    assert model.metadata["contract_kind"] == "combined"

    run = RunInfo(dataset="shop", run_id="r", run_date=AS_OF, as_of=AS_OF)
    result = score_dataset(
        customers[0], CUSTOMERS, model, tmp_path / "out", run=run, chunk_rows=64,
        limits=limits, orders=source,
    )  # fmt: skip
    ids = pq.read_table(result.files["assignments_parquet"]).column("customer_id").to_pylist()
    assert sorted(ids) == [f"c{i:03d}" for i in range(400)] and result.rows == 400
    assert result.metrics["labels"]["rfm_available"]
    profiles = result.files["profiles"].read_text(encoding="utf-8")
    assert '"age"' in profiles and '"recency_days"' in profiles
    assert result.profiles["value_measure"] == "monetary"


def test_ranges_of_customers_join_as_one_query(
    tmp_path: Path, limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queried by ranges of customer ids, the join gives the same rows in the same order."""
    customers = write(customer_table(range(0, 40)), tmp_path / "customers.parquet")
    orders = Source(write(order_log(range(20, 60)), tmp_path / "orders.parquet"), ORDERS)
    _, whole = stream_features(customers, CUSTOMERS, AS_OF, limits, orders=orders)
    cut = engine._bounds
    counts: list[int] = []

    def spy(ranges: engine.RangeViews, count: int) -> engine.Bounds:
        counts.append(count)
        return cut(ranges, count)

    monkeypatch.setattr(engine, "_bounds", spy)
    _, ranged = stream_features(customers, CUSTOMERS, AS_OF, limits, orders=orders, range_rows=30)
    assert pa.Table.from_batches(list(ranged)).equals(pa.Table.from_batches(list(whole)))
    assert counts == [6]  # 40 customers and 120 order lines, 30 rows per range
