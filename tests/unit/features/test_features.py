"""Features: hand-computed transaction features, customer tables, schema conformance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from custseg.features.build import (
    MISSING_CATEGORY,
    TRANSACTION_FEATURES,
    CategoryCodes,
    Features,
    FeatureSchema,
    build_features,
    build_features_arrow,
    default_as_of,
)
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role

DATA = Path(__file__).resolve().parents[2] / "fixtures"  # copies of the shared real files
T = ColumnType


def transactions_contract() -> Contract:
    return Contract(
        kind="transactions",
        grain="transaction",
        columns=[
            ColumnSpec(name="invoice_id", type=T.ID, role=Role.INVOICE_ID),
            ColumnSpec(name="event_time", type=T.DATETIME, role=Role.EVENT_TIME),
            ColumnSpec(name="customer_id", type=T.ID, role=Role.CUSTOMER_ID),
            ColumnSpec(name="country", type=T.CATEGORY, role=Role.ATTRIBUTE),
            ColumnSpec(name="channel", type=T.CATEGORY, role=Role.CATEGORY),
            ColumnSpec(name="quantity", type=T.FLOAT, role=Role.QUANTITY),
            ColumnSpec(name="unit_price", type=T.FLOAT, role=Role.UNIT_PRICE),
            ColumnSpec(name="amount", type=T.FLOAT, role=Role.AMOUNT),
        ],
        value_columns=["amount"],
    )


def clean_transactions() -> pd.DataFrame:
    rows = [
        # customer A: three orders (one with two lines), one return; one event after as-of
        ("1", "2024-01-01 10:00", "A", "uk", "web", 100.0, False),
        ("1", "2024-01-01 10:00", "A", "uk", "web", 20.0, False),
        ("2", "2024-01-11 09:00", "A", "uk", "shop", 50.0, False),
        ("C3", "2024-01-12 09:00", "A", "uk", "web", -30.0, True),
        ("4", "2024-01-21 12:00", "A", "uk", "web", 30.0, False),
        ("9", "2024-02-05 08:00", "A", "uk", "web", 999.0, False),  # after as-of: ignored
        # customer B: a single purchase
        ("5", "2024-01-16 18:30", "B", "fr", "shop", 80.0, False),
        # customer C: only a return (bought before the window)
        ("C6", "2024-01-20 11:00", "C", "de", "web", -40.0, True),
        # customer D: only after the as-of date: absent
        ("7", "2024-02-02 10:00", "D", "uk", "web", 10.0, False),
    ]
    df = pd.DataFrame(
        rows,
        columns=["invoice_id", "event_time", "customer_id", "country", "channel", "amount", "r"],
    )
    df["event_time"] = pd.to_datetime(df["event_time"])
    df["is_return"] = df.pop("r").astype(bool)
    df["quantity"] = 1.0
    df["unit_price"] = df["amount"].abs()
    df["_row"] = np.arange(len(df), dtype="int64")
    df["amount__clipped"] = False
    for c in ("invoice_id", "customer_id", "country", "channel"):
        df[c] = df[c].astype("string")
    return df


def test_transaction_features_hand_computed() -> None:
    f = build_features(clean_transactions(), transactions_contract(), as_of=dt.date(2024, 2, 1))
    assert f.as_of == dt.date(2024, 2, 1)
    assert list(f.frame.index) == ["A", "B", "C"]  # D only buys after the as-of date
    assert f.numeric == list(TRANSACTION_FEATURES)
    assert f.categorical == ["channel"]
    a = f.frame.loc["A"]
    assert a["recency_days"] == 11  # last purchase Jan 21 -> Feb 1
    assert a["tenure_days"] == 31  # first purchase Jan 1
    assert a["frequency"] == 3  # invoices 1, 2, 4; the cancellation C3 is no order
    assert a["monetary"] == pytest.approx(120 + 50 + 30 - 30)  # returns netted, Feb ignored
    assert a["avg_order_value"] == pytest.approx(200 / 3)  # gross / orders
    assert a["mean_interval_days"] == pytest.approx(20 / 2)  # Jan 1 .. Jan 21 over 2 gaps
    assert a["return_share"] == pytest.approx(30 / 200)
    assert a["channel"] == "web"
    b = f.frame.loc["B"]  # single purchase: interval defined as tenure
    assert (b["recency_days"], b["tenure_days"], b["frequency"]) == (16, 16, 1)
    assert b["mean_interval_days"] == b["tenure_days"]
    assert b["monetary"] == b["avg_order_value"] == 80
    assert b["return_share"] == 0
    c = f.frame.loc["C"]  # only a return
    assert c["frequency"] == 0 and c["monetary"] == -40 and c["return_share"] == 1
    assert c["avg_order_value"] == 0 and c["recency_days"] == 12
    assert f.value is not None and f.value.loc["A"] == 170
    assert f.extras.loc["B", "country"] == "fr"
    assert f.frame.index.dtype == "string"
    assert f.frame[TRANSACTION_FEATURES[0]].dtype == "float64"


def test_as_of_respected_and_default() -> None:
    clean, contract = clean_transactions(), transactions_contract()
    assert default_as_of(clean, contract) == dt.date(2024, 2, 6)  # day after the last event
    early = build_features(clean, contract, as_of=dt.date(2024, 1, 12))
    assert list(early.frame.index) == ["A"]
    assert early.frame.loc["A", "frequency"] == 2  # invoices 1 and 2 only
    assert early.frame.loc["A", "monetary"] == 170
    full = build_features(clean, contract)
    assert full.as_of == dt.date(2024, 2, 6)
    assert full.frame.loc["D", "recency_days"] == 4
    assert full.frame.loc["A", "monetary"] == 170 + 999


def test_without_invoice_or_amount_columns() -> None:
    clean = clean_transactions().drop(columns=["invoice_id", "amount"])
    clean["quantity"] = np.where(clean["is_return"], -1.0, 1.0)
    f = build_features(clean, transactions_contract(), as_of=dt.date(2024, 2, 1))
    # orders are distinct timestamps; amount = quantity * unit_price
    assert f.frame.loc["A", "frequency"] == 3
    assert f.frame.loc["A", "monetary"] == pytest.approx(170)


@pytest.fixture(scope="module")
def mall_like_contract(customer_contract: Callable[..., Contract]) -> Contract:
    return customer_contract(
        ["age", "annual_income", "spending_score"],
        integers={"age"},
        extra=[
            ColumnSpec(name="member", type=T.BOOLEAN, role=Role.CATEGORY),
            ColumnSpec(name="signup_date", type=T.DATE, role=Role.NUMERIC),
            ColumnSpec(name="email", type=T.STRING, role=Role.PERSONAL),
            ColumnSpec(name="country", type=T.CATEGORY, role=Role.ATTRIBUTE),
        ],
        outcomes=["churn"],
        value_columns=["total_spend", "spending_score"],
    )


def clean_customers() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "customer_id": pd.array(["007", "002", "010"], dtype="string"),
            "gender": pd.array(["female", None, "male"], dtype="string"),
            "age": [19.0, 35.0, np.nan],
            "annual_income": [15.0, 60.0, 120.0],
            "spending_score": [80.0, 50.0, 10.0],
            "member": [True, False, True],
            "signup_date": pd.to_datetime(["2024-01-01", "2023-12-01", "2024-01-31"]),
            "country": pd.array(["uk", "fr", "uk"], dtype="string"),
            "churn": [False, True, False],
            "age__missing": [False, False, True],
            "_row": np.arange(3, dtype="int64"),
        }
    )
    return df


def test_customer_table_features(mall_like_contract: Contract) -> None:
    f = build_features(clean_customers(), mall_like_contract, as_of=dt.date(2024, 2, 1))
    assert f.numeric == [
        "age",
        "annual_income",
        "spending_score",
        "member",
        "days_since_signup_date",
    ]
    assert f.categorical == ["gender"]
    assert list(f.frame.index) == ["002", "007", "010"]  # leading zeros survive
    assert f.frame.loc["007", "member"] == 1.0 and f.frame.loc["002", "member"] == 0.0
    assert f.frame.loc["007", "days_since_signup_date"] == 31
    assert f.frame.loc["002", "gender"] == MISSING_CATEGORY
    assert np.isnan(f.frame.loc["010", "age"])
    assert "email" not in f.frame.columns and "churn" not in f.frame.columns
    assert f.extras.loc["002", "churn"] == 1.0 and f.extras.loc["010", "country"] == "uk"
    assert f.value is not None and f.value.name == "spending_score"
    assert f.value.loc["010"] == 10.0


def test_schema_conformance_for_scoring(mall_like_contract: Contract) -> None:
    train = build_features(clean_customers(), mall_like_contract, as_of=dt.date(2024, 2, 1))
    schema = train.schema()
    assert schema.to_dict()["categories"]["gender"][0] in {"female", "male", MISSING_CATEGORY}
    new = clean_customers().drop(columns=["annual_income", "gender"])
    scored = build_features(new, mall_like_contract, as_of=dt.date(2024, 3, 1), schema=schema)
    assert list(scored.frame.columns) == schema.columns
    assert scored.frame["annual_income"].isna().all()
    assert (scored.frame["gender"] == MISSING_CATEGORY).all()
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_online_retail_real_file() -> None:
    raw = pd.read_csv(DATA / "online_retail_invoices.csv", dtype=str)
    raw = raw.rename(
        columns={
            "InvoiceNo": "invoice_id",
            "InvoiceDate": "event_time",
            "CustomerID": "customer_id",
            "Country": "country",
            "Quantity": "quantity",
            "UnitPrice": "unit_price",
        }
    )
    raw = raw[raw["customer_id"].notna() & (raw["customer_id"] != "(blank)")].copy()
    raw["event_time"] = pd.to_datetime(raw["event_time"], format="%m/%d/%Y %H:%M")
    raw["quantity"] = raw["quantity"].astype("float64")
    raw["unit_price"] = raw["unit_price"].astype("float64")
    cancel = raw["invoice_id"].str.startswith("C")
    raw = raw[(raw["unit_price"] > 0) & (cancel | (raw["quantity"] > 0))].copy()
    raw["amount"] = raw["quantity"] * raw["unit_price"]
    raw["is_return"] = raw["invoice_id"].str.startswith("C") | (raw["amount"] < 0)
    f = build_features(raw, transactions_contract())
    assert f.as_of == dt.date(2011, 12, 10)
    assert 4000 < len(f.frame) <= 4373
    assert f.frame["recency_days"].min() == 1
    assert (f.frame["return_share"].between(0, 1)).all()
    assert f.frame[list(TRANSACTION_FEATURES)].notna().all().all()


# -- the Arrow path gives the pandas path's features ------------------------------------


def messy_customers() -> pd.DataFrame:
    """Customer rows as a clean file may hold them: repeated and missing ids, categories
    with stray case and blanks, missing numbers, dates, attributes and outcomes."""
    df = pd.DataFrame(
        {
            "customer_id": pd.array(
                ["b7", "a1", "c3", "a1", None, "0009", "b7", "z", "é2", "m"], dtype="string"
            ),
            "gender": pd.array(
                [" Female", "male", None, "MALE ", "female", "", "  ", "Other", "male", None],
                dtype="string",
            ),
            "age": [19.0, 35.0, np.nan, 40.0, 22.0, 61.0, np.nan, 33.0, 27.0, 45.0],
            "annual_income": np.arange(10, dtype="int64") * 1000,  # integers without gaps
            "spending_score": pd.array([80, None, 10, 5, 7, 9, 1, 2, 3, 4], dtype="Int64"),
            "member": [True, False, True, True, False, False, True, True, False, True],
            "signup_date": pd.to_datetime(
                ["2024-01-01", "2023-12-01", None, "2023-02-28"] * 2 + ["2022-05-05", "2021-01-31"]
            ),
            "country": pd.array(
                ["uk", "fr", None, "uk", "de", "fr", "uk", "uk", "es", "fr"], dtype="string"
            ),
            "churn": [False, True, False, None, True, False, True, False, None, True],
            "age__missing": [False, False, True, False, False, False, True, False, False, False],
            "_row": np.arange(10, dtype="int64"),
        }
    )
    return df


def assert_same_features(got: Features, expected: Features) -> None:
    pd.testing.assert_frame_equal(got.frame, expected.frame)
    pd.testing.assert_frame_equal(got.extras, expected.extras)
    if expected.value is None:
        assert got.value is None
    else:
        assert got.value is not None
        pd.testing.assert_series_equal(got.value, expected.value)
    assert (got.numeric, got.categorical, got.as_of) == (
        expected.numeric,
        expected.categorical,
        expected.as_of,
    )
    assert set(got.codes) == set(got.categorical)
    for name, codes in got.codes.items():  # the codes spell the frame's column
        words = np.asarray(codes.values, dtype=object)[codes.codes]
        assert list(words) == got.frame[name].tolist()
        assert len(set(codes.values)) == len(codes.values)


@pytest.mark.parametrize("dictionary", [False, True])
@pytest.mark.parametrize("with_schema", [False, True])
def test_arrow_features_equal_pandas_features(
    dictionary: bool, with_schema: bool, mall_like_contract: Contract
) -> None:
    as_of = dt.date(2024, 2, 1)
    table = pa.Table.from_pandas(messy_customers(), preserve_index=False)
    schema = None
    if with_schema:  # a model trained on other columns: missing numbers and categories
        schema = FeatureSchema(
            numeric=["age", "spending_score", "tenure", "member"],
            categorical=["gender", "contract"],
            categories={"gender": ["male", "female"], "contract": ["monthly"]},
        )
    expected = build_features(table.to_pandas(), mall_like_contract, as_of, schema)
    if dictionary:  # category columns as the score job reads them
        index = table.schema.get_field_index("gender")
        table = table.set_column(index, "gender", pc.dictionary_encode(table.column("gender")))
    for data in (table, table.to_batches()[0]):
        got = build_features_arrow(data, mall_like_contract, as_of, schema)
        assert_same_features(got, expected)
    assert list(got.frame.index) == sorted({"b7", "a1", "c3", "0009", "z", "é2", "m"})


def test_arrow_features_of_real_files_and_fallbacks(mall_like_contract: Contract) -> None:
    raw = pd.read_csv(DATA / "mall_customers.csv", dtype={"CustomerID": "string"})
    raw = raw.rename(
        columns={
            "CustomerID": "customer_id",
            "Genre": "gender",
            "Age": "age",
            "Annual_Income": "annual_income",
            "Spending_Score": "spending_score",
        }
    )
    raw["gender"] = raw["gender"].astype("string")
    table = pa.Table.from_pandas(raw, preserve_index=False)
    as_of = dt.date(2024, 1, 1)
    expected = build_features(table.to_pandas(), mall_like_contract, as_of)
    assert_same_features(build_features_arrow(table, mall_like_contract, as_of), expected)
    # integer ids: the pandas path (text of the numbers), same result
    numeric_ids = table.set_column(0, "customer_id", pa.array(np.arange(len(raw)) * 7))
    expected = build_features(numeric_ids.to_pandas(), mall_like_contract, as_of)
    assert_same_features(build_features_arrow(numeric_ids, mall_like_contract, as_of), expected)


def test_arrow_features_of_transactions_use_the_pandas_path() -> None:
    clean = clean_transactions()
    table = pa.Table.from_pandas(clean, preserve_index=False)
    as_of = dt.date(2024, 2, 1)
    expected = build_features(table.to_pandas(), transactions_contract(), as_of)
    got = build_features_arrow(table, transactions_contract(), as_of)
    pd.testing.assert_frame_equal(got.frame, expected.frame)
    assert set(got.codes) == set(got.categorical)


def test_category_codes() -> None:
    codes = CategoryCodes.from_values(pd.Series(["b", None, "a", "b"], dtype="string"))
    assert codes.values == ["b", "a", MISSING_CATEGORY]
    assert codes.codes.tolist() == [0, 2, 1, 0]
    again = CategoryCodes.from_values(pd.Series([MISSING_CATEGORY, None], dtype="string"))
    assert again.values == [MISSING_CATEGORY] and again.codes.tolist() == [0, 0]
    assert codes.take(np.array([True, False, False, True])).codes.tolist() == [0, 0]


def test_arrow_features_of_chunks_with_their_own_dictionaries(mall_like_contract: Contract) -> None:
    as_of = dt.date(2024, 2, 1)
    table = pa.Table.from_pandas(messy_customers(), preserve_index=False)
    expected = build_features(table.to_pandas(), mall_like_contract, as_of)
    parts = []
    for start, stop in ((0, 4), (4, 10)):  # each part encoded on its own, as row groups are
        part = table.slice(start, stop - start)
        index = part.schema.get_field_index("gender")
        parts.append(part.set_column(index, "gender", pc.dictionary_encode(part.column("gender"))))
    chunked = pa.concat_tables(parts)
    assert chunked.column("gender").num_chunks == 2
    assert_same_features(build_features_arrow(chunked, mall_like_contract, as_of), expected)
