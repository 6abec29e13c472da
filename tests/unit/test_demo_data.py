"""The generated demo data: deterministic, realistic headers, and the dirt is counted."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pandas as pd
import pytest

from custseg.dataset.clean_data import read_clean
from custseg.ingest.contracts import builtin_contract, normalise_header
from custseg.local.demo_data import (
    CUSTOMER_CANONICAL,
    CUSTOMER_HEADERS,
    DIRT,
    ORDER_CANONICAL,
    ORDER_HEADERS,
    write_demo_data,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=7)


def _read(path: Path, sep: str) -> pd.DataFrame:
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def test_same_seed_same_bytes_other_seed_other_data(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    again = write_demo_data(tmp_path / "again", seed=7)
    other = write_demo_data(tmp_path / "other", seed=8)
    for first, second, third in zip(demo, again, other, strict=True):
        assert first.read_bytes() == second.read_bytes()
        assert first.read_bytes() != third.read_bytes()


def test_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    write_demo_data(tmp_path)
    assert time.perf_counter() - started < 2.0


def test_customers_file_looks_like_a_crm_export(demo: tuple[Path, Path]) -> None:
    customers, _ = demo
    raw = customers.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
    assert b"\r\n" in raw[:2000]  # Windows line ends
    frame = _read(customers, ",")
    assert list(frame.columns) == CUSTOMER_HEADERS
    assert 5_000 <= len(frame) <= 5_100
    ids = frame["Customer ID"]
    assert ids.str.fullmatch(r"\d{5}").all()
    assert ids.str.startswith("0").all()  # leading zeros, as text
    assert ids.nunique() == 5_000
    dirt = DIRT["customers"]
    assert frame.duplicated().sum() == dirt["exact_duplicate_rows"]
    repeated = frame.drop_duplicates()["Customer ID"].duplicated().sum()
    assert repeated == dirt["repeated_customer_ids"]
    gender = set(frame["Gender"])
    assert {"Female", "female", " Female ", "F", "Male", "M"} <= gender
    ages = pd.to_numeric(frame["Age"], errors="coerce")
    assert (ages > 120).sum() + (ages < 0).sum() == len(dirt["impossible_ages"])
    assert "abc" in set(frame["Annual Income"]) and "n/a" in set(frame["Annual Income"])
    income = pd.to_numeric(frame["Annual Income"], errors="coerce")
    assert (income >= 1_000_000).sum() == len(dirt["extreme_incomes"])
    for col in ("Age", "Annual Income", "Spending Score", "Total Spend"):
        blank = (frame[col] == "").mean()
        assert 0.003 < blank < 0.03, col
    text = frame[["Full Name", "City"]].stack()
    assert text.str.startswith("=").sum() == dirt["formula_values"]


def test_orders_file_looks_like_a_european_invoice_export(demo: tuple[Path, Path]) -> None:
    _, orders = demo
    first = orders.read_text(encoding="utf-8").splitlines()[0]
    assert first == ";".join(ORDER_HEADERS)
    frame = _read(orders, ";")
    assert 27_000 <= len(frame) <= 34_000
    known = frame[frame["CustomerID"] != ""]
    assert 1_900 <= known["CustomerID"].nunique() <= 2_000
    assert known["CustomerID"].str.fullmatch(r"0\d{4}").all()
    when = pd.to_datetime(frame["InvoiceDate"], format="%d.%m.%Y %H:%M")
    assert when.max() <= pd.Timestamp("2026-10-31 23:59")
    assert when.min() >= pd.Timestamp("2025-05-01")
    assert (when.dt.day > 12).any()  # day-first is unambiguous
    assert frame["UnitPrice"].str.contains(",").all()  # decimal commas
    cancel = frame["InvoiceNo"].str.startswith("C")
    qty = pd.to_numeric(frame["Quantity"])
    assert cancel.mean() > 0.02
    assert (qty[cancel] < 0).all() and (qty[~cancel] >= 0).all()
    assert (frame["UnitPrice"] == "0,00").sum() == DIRT["orders"]["zero_price_rows"]
    assert qty.max() >= 1_000  # bulk outliers
    assert frame.duplicated().sum() == DIRT["orders"]["exact_duplicate_rows"]
    assert (frame["CustomerID"] == "").sum() == DIRT["orders"]["guest_orders"]


def test_orders_give_rfm_variety(demo: tuple[Path, Path]) -> None:
    _, orders = demo
    frame = _read(orders, ";")
    frame = frame[(frame["CustomerID"] != "") & ~frame["InvoiceNo"].str.startswith("C")]
    when = pd.to_datetime(frame["InvoiceDate"], format="%d.%m.%Y %H:%M")
    per = frame.assign(when=when).groupby("CustomerID")["when"].agg(["min", "max", "count"])
    end = pd.Timestamp("2026-11-01")
    recency = (end - per["max"]).dt.days
    tenure = (end - per["min"]).dt.days
    assert ((recency < 30) & (per["count"] >= 20)).sum() > 100  # champions
    assert ((tenure < 90) & (per["count"] <= 5)).sum() > 50  # new
    assert ((recency.between(120, 260)) & (per["count"] >= 8)).sum() > 50  # at risk
    assert (recency > 300).sum() > 100  # lapsed


def test_every_header_maps_through_the_default_contracts() -> None:
    for kind, headers, canonical in (
        ("customers", CUSTOMER_HEADERS, CUSTOMER_CANONICAL),
        ("transactions", ORDER_HEADERS, ORDER_CANONICAL),
    ):
        hmap = builtin_contract(kind).header_map()
        for header in headers:
            assert hmap.get(normalise_header(header)) == canonical[header], (kind, header)
            # "do not exactly match the canonical names"
            assert header != canonical[header]


def test_formula_cell_is_quoted_like_a_spreadsheet_would(demo: tuple[Path, Path]) -> None:
    customers, _ = demo
    with customers.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert any(cell.startswith("=HYPERLINK(") for row in rows for cell in row)


def test_ingest_accepts_both_files_and_counts_the_dirt(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    ingest = pytest.importorskip("custseg.ingest.pipeline")
    customers, orders = demo
    res = ingest.ingest_file(
        customers, tmp_path / "c", source_name="customers.csv", dataset="demo", run_id="t"
    )
    rep = res.report
    assert res.status == "accepted", rep.to_text()
    assert res.contract.kind == "customers"
    assert rep.rows_read == rep.rows_kept + rep.rows_rejected
    assert rep.rows_read == len(_read(customers, ","))
    assert rep.rows_duplicate >= DIRT["customers"]["exact_duplicate_rows"]
    assert rep.rows_rejected >= (
        DIRT["customers"]["exact_duplicate_rows"]
        + DIRT["customers"]["repeated_customer_ids"]
        + len(DIRT["customers"]["impossible_ages"])
    )
    assert rep.rows_kept < 5_000
    clean = read_clean(res.clean_path).to_pandas()
    assert clean["customer_id"].is_unique
    assert "00042" in set(clean["customer_id"])  # leading zeros survive
    for personal in ("name", "email", "phone"):
        assert personal not in clean.columns
    genders = set(clean["gender"].dropna())
    assert {"female", "male"} <= genders
    assert not {"f", "m", " female "} & genders
    assert clean["age"].max() <= 120

    res = ingest.ingest_file(
        orders, tmp_path / "o", source_name="orders.csv", dataset="demo_orders", run_id="t"
    )
    rep = res.report
    assert res.status == "accepted", rep.to_text()
    assert res.contract.kind == "transactions"
    assert rep.rows_read == rep.rows_kept + rep.rows_rejected
    assert rep.rows_read == len(_read(orders, ";"))
    assert rep.rows_rejected >= (
        DIRT["orders"]["guest_orders"]
        + DIRT["orders"]["exact_duplicate_rows"]
        + DIRT["orders"]["zero_price_rows"]
    )
    clean = read_clean(res.clean_path).to_pandas()
    assert clean["is_return"].sum() > 0
    assert (clean.loc[clean["is_return"], "amount"] < 0).all()
    assert clean["event_time"].max() <= pd.Timestamp("2026-10-31 23:59")
    assert clean["event_time"].dt.month.nunique() == 12
