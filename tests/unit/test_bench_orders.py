"""The order-log benchmark's inputs (``scripts/bench.py``): the seeded order-log generator
and the DuckDB floor's SQL features, next to custseg's own ingest and features."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from custseg.features.build import TRANSACTION_FEATURES, build_features
from custseg.ingest.pipeline import ingest_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custseg_bench_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def orders_csv(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "orders.csv"
    bench.make_orders_csv(path, 40_000, 7, piece=20_000)
    return path


def test_order_log_shape(bench: ModuleType, orders_csv: Path, tmp_path: Path) -> None:
    df = pd.read_csv(orders_csv, dtype={"InvoiceNo": "str", "CustomerID": "Int64"})
    assert list(df.columns) == bench.ORDER_HEADERS and len(df) == 40_000
    cancel = df["InvoiceNo"].str.startswith("C")
    assert 0.02 < cancel.mean() < 0.05
    qty = df["Quantity"].dropna()
    assert (qty[cancel.reindex(qty.index)] < 0).all() and (
        qty[~cancel.reindex(qty.index)] > 0
    ).all()
    assert 0.005 < df["Quantity"].isna().mean() < 0.015
    assert 0.005 < df["Country"].isna().mean() < 0.015
    assert 15 < len(df) / df["CustomerID"].nunique() < 25
    again = tmp_path / "again.csv"
    bench.make_orders_csv(again, 40_000, 7, piece=20_000)
    assert again.read_bytes() == orders_csv.read_bytes()  # seeded


def test_floor_features_match_custseg(bench: ModuleType, orders_csv: Path, tmp_path: Path) -> None:
    res = ingest_file(
        orders_csv, tmp_path / "clean", source_name="orders.csv", dataset="b", run_id="t"
    )
    assert res.status == "accepted" and res.clean_path is not None
    assert res.contract.is_transactions
    ours = build_features(pq.read_table(str(res.clean_path)).to_pandas(), res.contract).frame
    floor = duckdb.execute(bench.FLOOR_SQL, {"csv": str(orders_csv)}).df()
    floor = floor.set_index("customer_id")
    # The floor leaves out the ~1 % lines with a blank cell that custseg imputes, and does
    # not winsorise: the customers those lines touch differ, every other one is equal.
    common = ours.index.intersection(floor.index)
    assert len(common) >= 0.99 * len(ours)
    cols = list(TRANSACTION_FEATURES)
    equal = np.isclose(ours.loc[common, cols], floor.loc[common, cols], rtol=1e-9).all(axis=1)
    assert equal.mean() > 0.9
    assert (ours.loc[common, "frequency"] == floor.loc[common, "frequency"]).mean() > 0.97
