"""Features in SQL on DuckDB: the same values as build.py, within bounded memory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseg.dataset.clean_data import clean_files, read_clean
from custseg.features import engine
from custseg.features.build import MISSING_CATEGORY, Features, build_features
from custseg.features.engine import (
    EngineLimits,
    FeatureEngineError,
    collect_features,
    column_kind,
    compute_features,
    lambda_limits,
    stream_features,
)
from custseg.features.sql import ColumnKind, feature_query
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role, builtin_contract

T = ColumnType


@pytest.fixture
def limits(tmp_path: Path) -> EngineLimits:
    return EngineLimits(memory_limit_mb=256, temp_dir=tmp_path / "spill", threads=2)


def assert_same(duck: Features, ref: Features) -> None:
    """DuckDB's features equal build.py's: customers, columns, numbers (1e-9 relative),
    categories, extras and the value measure."""
    assert duck.numeric == ref.numeric
    assert duck.categorical == ref.categorical
    assert duck.as_of == ref.as_of
    pd.testing.assert_index_equal(duck.frame.index, ref.frame.index)
    assert len(duck) > 0
    for col in ref.numeric:
        np.testing.assert_allclose(
            duck.frame[col].to_numpy(),
            ref.frame[col].to_numpy(),
            rtol=1e-9,
            atol=1e-9,
            err_msg=col,
        )
    for col in ref.categorical:
        assert duck.frame[col].tolist() == ref.frame[col].astype("string").tolist(), col
    assert list(duck.extras.columns) == list(ref.extras.columns)
    for col in ref.extras.columns:
        got, want = duck.extras[col], ref.extras[col]
        if pd.api.types.is_numeric_dtype(want):
            np.testing.assert_allclose(
                got.to_numpy(dtype="float64"),
                want.to_numpy(dtype="float64"),
                rtol=1e-9,
                err_msg=col,
            )
        else:
            assert got.astype("string").tolist() == want.astype("string").tolist(), col
    assert (duck.value is None) == (ref.value is None)
    if ref.value is not None and duck.value is not None:
        assert duck.value.name == ref.value.name
        np.testing.assert_allclose(duck.value.to_numpy(), ref.value.to_numpy(), rtol=1e-9)


def compare_parts(parts: list[Path], contract: Contract, as_of: dt.date, limits: EngineLimits):
    duck = collect_features(parts, contract, as_of, limits)
    tables = [pq.read_table(p) for p in parts]
    clean = pa.concat_tables(tables, promote_options="default").to_pandas()
    ref = build_features(clean, contract, as_of)
    assert_same(duck, ref)
    return duck


# ---------------------------------------------------------------- the real fixtures


@pytest.mark.parametrize(
    ("fixture", "as_of"),
    [
        ("online_retail_invoices.csv", dt.date(2011, 12, 10)),  # the day after the last
        ("online_retail_invoices.csv", dt.date(2011, 6, 1)),  # mid-log: later lines ignored
        ("transactions_small.csv", dt.date(2011, 2, 1)),
        ("transactions_small.csv", dt.date(2011, 1, 7)),
        ("mall_customers.csv", dt.date(2024, 3, 1)),
        ("telco_customer_churn.csv", dt.date(2024, 3, 1)),
    ],
)
def test_fixture_features_equal_build_py(ingest, limits, fixture: str, as_of: dt.date) -> None:
    result = ingest(fixture)
    assert result.clean_path is not None
    duck = collect_features(clean_files(result.clean_path), result.contract, as_of, limits)
    ref = build_features(read_clean(result.clean_path).to_pandas(), result.contract, as_of)
    assert_same(duck, ref)


def test_online_retail_mid_log_drops_later_customers(ingest, limits) -> None:
    result = ingest("online_retail_invoices.csv")
    parts = clean_files(result.clean_path)
    early = collect_features(parts, result.contract, dt.date(2011, 6, 1), limits)
    late = collect_features(parts, result.contract, dt.date(2011, 12, 10), limits)
    assert 0 < len(early) < len(late)
    assert early.frame["recency_days"].min() >= 1
    assert late.frame["recency_days"].min() == 1  # someone bought on the last day


# ---------------------------------------------------------------- hand-made edge cases


def order_contract() -> Contract:
    return Contract(
        kind="transactions",
        grain="transaction",
        columns=[
            ColumnSpec(name="invoice_id", type=T.ID, role=Role.INVOICE_ID),
            ColumnSpec(name="event_time", type=T.DATETIME, role=Role.EVENT_TIME),
            ColumnSpec(name="customer_id", type=T.ID, role=Role.CUSTOMER_ID),
            ColumnSpec(name="quantity", type=T.FLOAT, role=Role.QUANTITY),
            ColumnSpec(name="unit_price", type=T.FLOAT, role=Role.UNIT_PRICE),
            ColumnSpec(name="amount", type=T.FLOAT, role=Role.AMOUNT),
            ColumnSpec(name="channel", type=T.CATEGORY, role=Role.CATEGORY),
            ColumnSpec(name="country", type=T.CATEGORY, role=Role.ATTRIBUTE),
            ColumnSpec(name="responded", type=T.STRING, role=Role.OUTCOME, positive="yes"),
            ColumnSpec(name="churned", type=T.BOOLEAN, role=Role.OUTCOME),
        ],
        value_columns=["amount"],
    )


def order_log() -> pd.DataFrame:
    rows = [
        # A: two orders (one of two lines), a cancellation, a later line (ignored)
        ("1", "2024-01-01 10:00", "A", 100.0, False, "web", "uk", "yes", False),
        ("1", "2024-01-01 10:00", "A", 20.0, False, "shop", "uk", "no", False),
        ("2", "2024-01-11 09:00", "A", 50.0, False, "shop", "fr", None, True),
        ("C3", "2024-01-12 09:00", "A", -30.0, True, "web", "uk", "no", None),
        ("9", "2024-02-05 08:00", "A", 999.0, False, "web", "uk", "yes", True),
        # B: one purchase, a line without invoice (not an order) and without amount
        ("5", "2024-01-16 18:30", "B", 80.0, False, None, None, None, None),
        (None, "2024-01-17 18:30", "B", None, False, "web", "de", "maybe", False),
        # C: only returns (one flagged, one negative)
        ("C6", "2024-01-20 11:00", "C", 40.0, True, "web", "de", "yes", None),
        ("C7", "2024-01-25 11:00", "C", -5.0, False, "shop", "de", "no", None),
        # D: only after the as-of date; E: no customer id; F: event time unknown
        ("7", "2024-02-02 10:00", "D", 10.0, False, "web", "uk", "yes", False),
        ("8", "2024-01-02 10:00", None, 10.0, False, "web", "uk", "yes", False),
        ("10", None, "F", 10.0, False, "web", "uk", "yes", False),
        # G: a tie in channel (web 2, shop 2): the smaller value wins
        ("11", "2024-01-03 00:00", "G", 10.0, False, "web", "uk", None, None),
        ("12", "2024-01-04 23:59", "G", 10.0, False, "shop", "uk", None, None),
        ("12", "2024-01-04 23:59", "G", 10.0, False, "shop", "uk", None, None),
        ("13", "2024-01-31 23:59", "G", 10.0, False, "web", "uk", None, None),
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "invoice_id",
            "event_time",
            "customer_id",
            "amount",
            "is_return",
            "channel",
            "country",
            "responded",
            "churned",
        ],
    )
    df["event_time"] = pd.to_datetime(df["event_time"])
    df["quantity"] = 1.0
    df["unit_price"] = df["amount"].abs()
    df["churned"] = df["churned"].astype("boolean")
    df["_row"] = np.arange(2, len(df) + 2, dtype="int64")
    df["amount__missing"] = df["amount"].isna()
    for c in ("invoice_id", "customer_id", "channel", "country", "responded"):
        df[c] = df[c].astype("string")
    return df


def write_parts(frame: pd.DataFrame, folder: Path, cut: int) -> list[Path]:
    """``frame`` as two Parquet parts (rows before / from ``cut``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, piece in enumerate((frame.iloc[:cut], frame.iloc[cut:])):
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(piece, preserve_index=False), path)
        paths.append(path)
    return paths


def test_order_log_edge_cases_equal_build_py(tmp_path: Path, limits) -> None:
    parts = write_parts(order_log(), tmp_path / "data", cut=7)
    duck = compare_parts(parts, order_contract(), dt.date(2024, 2, 1), limits)
    frame = duck.frame
    assert list(frame.index) == ["A", "B", "C", "G"]
    assert frame.loc["A", "frequency"] == 2 and frame.loc["A", "monetary"] == 140.0
    assert frame.loc["B", "frequency"] == 1  # the line without an invoice is no order
    assert frame.loc["C", "frequency"] == 0 and frame.loc["C", "return_share"] == 1.0
    assert frame.loc["C", "avg_order_value"] == 0.0 and frame.loc["C", "recency_days"] == 7
    assert frame.loc["G", "channel"] == "shop"  # tie: alphabetically first
    assert frame.loc["B", "channel"] == "web" and frame.loc["C", "channel"] == "shop"
    assert duck.extras.loc["A", "responded"] == 1.0 and duck.extras.loc["A", "churned"] == 1.0
    assert pd.isna(duck.extras.loc["G", "country"]) is False


def test_order_log_without_invoice_or_amount(tmp_path: Path, limits) -> None:
    """One order = one (customer, timestamp); amount = quantity x unit_price."""
    log = order_log().drop(columns=["invoice_id", "amount", "is_return"])
    log["quantity"] = [2.0, 1.0, 1.0, -1.0, 1.0, 3.0, 1.0, 1.0, -2.0, 1, 1, 1, 1, 1, 1, 1]
    contract = order_contract()
    contract.columns = [c for c in contract.columns if c.name not in ("invoice_id", "amount")]
    parts = write_parts(log, tmp_path / "data", cut=3)
    duck = compare_parts(parts, contract, dt.date(2024, 2, 1), limits)
    assert duck.frame.loc["G", "frequency"] == 3  # the two lines at 23:59 are one order


def test_parts_with_different_columns_are_read_by_name(tmp_path: Path, limits) -> None:
    """A part without a category column (an earlier upload) reads it as missing."""
    log = order_log()
    first = log.iloc[:7].drop(columns=["channel"])
    folder = tmp_path / "data"
    folder.mkdir()
    parts = [folder / "part-00000.parquet", folder / "part-00001.parquet"]
    pq.write_table(pa.Table.from_pandas(first, preserve_index=False), parts[0])
    pq.write_table(pa.Table.from_pandas(log.iloc[7:], preserve_index=False), parts[1])
    duck = compare_parts(parts, order_contract(), dt.date(2024, 2, 1), limits)
    assert duck.frame.loc["A", "channel"] == MISSING_CATEGORY
    assert duck.frame.loc["G", "channel"] == "shop"


def customer_contract() -> Contract:
    return Contract(
        kind="customers",
        grain="customer",
        columns=[
            ColumnSpec(name="customer_id", type=T.ID, role=Role.CUSTOMER_ID),
            ColumnSpec(name="age", type=T.INTEGER, role=Role.NUMERIC),
            ColumnSpec(name="income", type=T.FLOAT, role=Role.NUMERIC),
            ColumnSpec(name="gender", type=T.CATEGORY, role=Role.CATEGORY),
            ColumnSpec(name="senior", type=T.BOOLEAN, role=Role.CATEGORY),
            ColumnSpec(name="joined", type=T.DATE, role=Role.NUMERIC),
            ColumnSpec(name="country", type=T.CATEGORY, role=Role.ATTRIBUTE),
            ColumnSpec(name="last_seen", type=T.DATETIME, role=Role.ATTRIBUTE),
            ColumnSpec(name="lifetime", type=T.FLOAT, role=Role.ATTRIBUTE),
            ColumnSpec(name="churn", type=T.BOOLEAN, role=Role.OUTCOME),
            ColumnSpec(name="response", type=T.STRING, role=Role.OUTCOME),
        ],
        value_columns=["total", "lifetime"],
    )


def customer_table() -> pd.DataFrame:
    rows = [
        (
            "c2",
            30.0,
            1e3,
            "Female ",
            True,
            "2020-01-01",
            "uk",
            "2024-01-31 23:00",
            5.0,
            1 > 0,
            "Yes",
        ),
        ("c1", 40.0, None, "male", False, "2019-06-30", None, "2024-01-01 00:00", 7.5, False, "no"),
        ("c3", None, 500.0, "", None, None, "fr", None, None, None, "perhaps"),
        (None, 50.0, 10.0, "x", True, "2020-01-01", "uk", None, 1.0, True, "yes"),
        ("c1", 41.0, 2000.0, "MALE", True, "2019-06-30", "de", "2024-02-02 12:00", 8.0, True, "1"),
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "age",
            "income",
            "gender",
            "senior",
            "joined",
            "country",
            "last_seen",
            "lifetime",
            "churn",
            "response",
        ],
    )
    for c in ("joined", "last_seen"):
        df[c] = pd.to_datetime(df[c])
    for c in ("senior", "churn"):
        df[c] = df[c].astype("boolean")
    for c in ("customer_id", "gender", "country", "response"):
        df[c] = df[c].astype("string")
    df["_row"] = np.arange(2, len(df) + 2, dtype="int64")
    return df


def test_customer_table_edge_cases_equal_build_py(tmp_path: Path, limits) -> None:
    parts = write_parts(customer_table(), tmp_path / "data", cut=3)
    duck = compare_parts(parts, customer_contract(), dt.date(2024, 2, 1), limits)
    frame = duck.frame
    assert list(frame.index) == ["c1", "c2", "c3"]
    assert duck.numeric == ["age", "income", "senior", "days_since_joined"]
    assert frame.loc["c1", "age"] == 41.0  # the last row of a repeated id (second part)
    assert frame.loc["c2", "gender"] == "female" and frame.loc["c3", "gender"] == MISSING_CATEGORY
    assert frame.loc["c2", "days_since_joined"] == 1492
    assert duck.extras.loc["c2", "days_since_last_seen"] == 0  # 23:00 the day before: 0 days
    assert duck.extras.loc["c1", "days_since_last_seen"] == -2  # 36 h after as-of: floor
    assert duck.value is not None and duck.value.name == "lifetime"


# ---------------------------------------------------------------- bounded memory


def synthetic_order_log(rows: int, customers: int, seed: int = 7) -> pa.Table:
    """An order log of ``rows`` lines (~4 lines per invoice, 5 % returns), made in Arrow."""
    rng = np.random.default_rng(seed)
    invoice = np.arange(rows, dtype=np.int64) // 4
    customer = rng.integers(0, customers, size=rows // 4 + 1)[invoice]
    start = np.datetime64("2023-01-01T00:00:00", "s").astype(np.int64)
    seconds = start + rng.integers(0, 365 * 86400, size=rows // 4 + 1)[invoice]
    amount = np.round(rng.gamma(2.0, 15.0, size=rows), 2)
    returned = rng.random(rows) < 0.05
    amount[returned] = -amount[returned]
    return pa.table(
        {
            "invoice_id": pa.array(invoice).cast(pa.string()),
            "event_time": pa.array(seconds.astype("datetime64[s]")).cast(pa.timestamp("ns")),
            "customer_id": pa.array(customer).cast(pa.string()),
            "amount": pa.array(amount),
            "is_return": pa.array(returned),
            "_row": pa.array(np.arange(rows, dtype=np.int64) + 2),
        }
    )


@pytest.mark.slow
def test_one_million_lines_in_64_mb(tmp_path: Path) -> None:
    table = synthetic_order_log(1_000_000, customers=200_000)
    part = tmp_path / "part-00000.parquet"
    pq.write_table(table, part, row_group_size=100_000)
    contract = builtin_contract("transactions")
    as_of = dt.date(2023, 10, 1)
    spill = tmp_path / "spill"
    batches = list(
        compute_features(
            [part],
            contract,
            as_of,
            memory_limit_mb=64,
            temp_dir=spill,
            batch_rows=50_000,
            threads=1,
        )
    )
    assert all(b.num_rows <= 50_000 for b in batches)
    got = pa.Table.from_batches(batches).to_pandas().set_index("customer_id")

    df = table.to_pandas()
    df = df[df["event_time"] < pd.Timestamp(as_of)]
    buys = df[~df["is_return"]]
    monetary = (
        buys.groupby("customer_id")["amount"]
        .sum()
        .sub(df[df["is_return"]].groupby("customer_id")["amount"].sum().abs(), fill_value=0.0)
    )
    frequency = buys.groupby("customer_id")["invoice_id"].nunique()
    last = buys.groupby("customer_id")["event_time"].max().dt.normalize()
    assert got.index.is_monotonic_increasing and set(got.index) == set(df["customer_id"])
    np.testing.assert_allclose(got["monetary"], monetary.reindex(got.index), rtol=1e-9)
    np.testing.assert_array_equal(got["frequency"], frequency.reindex(got.index, fill_value=0))
    recency = (pd.Timestamp(as_of) - last).dt.days.reindex(got.index).dropna()
    np.testing.assert_array_equal(got.loc[recency.index, "recency_days"], recency)


def test_a_query_beyond_memory_and_spill_space_names_the_limits(tmp_path: Path) -> None:
    part = tmp_path / "part-00000.parquet"
    pq.write_table(synthetic_order_log(1_000_000, customers=500_000), part)
    limits = EngineLimits(32, tmp_path / "spill", threads=1, max_temp_mb=1)
    contract = builtin_contract("transactions")
    with pytest.raises(FeatureEngineError, match=r"memory limit 32 MB, spill directory .*spill"):
        collect_features([part], contract, dt.date(2024, 1, 1), limits)


# ---------------------------------------------------------------- engine and SQL


def test_batches_stream_in_customer_order(ingest, limits) -> None:
    result = ingest("online_retail_invoices.csv")
    query, batches = stream_features(
        clean_files(result.clean_path),
        result.contract,
        dt.date(2011, 12, 10),
        limits,
        batch_rows=1000,
    )
    sizes, ids = [], []
    for batch in batches:
        sizes.append(batch.num_rows)
        ids += batch.column("customer_id").to_pylist()
    assert max(sizes) <= 1000 and len(sizes) >= 5
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert batches is not None and query.value == "monetary"


def test_lambda_limits_take_a_share_of_the_function_memory(tmp_path: Path) -> None:
    limits = lambda_limits(3008, tmp=tmp_path, threads=2, max_temp_mb=4096)
    assert limits.memory_limit_mb == 1804 and limits.max_temp_mb == 4096
    assert limits.temp_dir == tmp_path / "duckdb-spill"
    assert lambda_limits(10240, share=0.5, tmp=tmp_path).memory_limit_mb == 5120
    with pytest.raises(ValueError, match="below the 32 MB"):
        lambda_limits(40, tmp=tmp_path)
    with pytest.raises(ValueError, match="share must be in"):
        lambda_limits(1024, share=1.5)


def test_bad_inputs_name_the_problem(tmp_path: Path, limits) -> None:
    contract = order_contract()
    with pytest.raises(ValueError, match="no clean Parquet parts"):
        collect_features([], contract, dt.date(2024, 1, 1), limits)
    with pytest.raises(FileNotFoundError, match=r"part-00009\.parquet"):
        collect_features([tmp_path / "part-00009.parquet"], contract, dt.date(2024, 1, 1), limits)
    parts = write_parts(order_log().drop(columns=["event_time"]), tmp_path / "d", cut=3)
    with pytest.raises(ValueError, match="needs an event_time column"):
        collect_features(parts, contract, dt.date(2024, 1, 1), limits)
    with pytest.raises(ValueError, match="batch_rows must be at least 1"):
        stream_features(parts, contract, dt.date(2024, 1, 1), limits, batch_rows=0)
    broken = tmp_path / "part-00000.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(FeatureEngineError, match=r"cannot read the clean Parquet parts"):
        collect_features([broken], contract, dt.date(2024, 1, 1), limits)


def test_text_amounts_are_read_as_numbers(tmp_path: Path, limits) -> None:
    log = order_log()
    log["amount"] = log["amount"].astype("string")
    parts = write_parts(log, tmp_path / "data", cut=7)
    duck = compare_parts(parts, order_contract(), dt.date(2024, 2, 1), limits)
    assert len(duck) == 4


def test_duckdb_types_map_to_kinds() -> None:
    assert column_kind("BOOLEAN") == ColumnKind.BOOLEAN
    for name in ("DOUBLE", "BIGINT", "INTEGER", "DECIMAL(18,3)", "UBIGINT", "FLOAT"):
        assert column_kind(name) == ColumnKind.NUMBER, name
    for name in ("TIMESTAMP_NS", "TIMESTAMP", "DATE", "TIMESTAMP WITH TIME ZONE"):
        assert column_kind(name) == ColumnKind.TIMESTAMP, name
    assert column_kind("VARCHAR") == ColumnKind.TEXT


@pytest.mark.parametrize("kind", ["transactions", "customers"])
def test_the_sql_is_portable(kind: str) -> None:
    """No DuckDB-only syntax in the feature SQL (it is translated to Athena's dialect)."""
    contract = builtin_contract(kind)
    columns = {c.name: ColumnKind.TEXT for c in contract.columns}
    columns.update({"event_time": ColumnKind.TIMESTAMP, "amount": ColumnKind.NUMBER})
    columns["_row"] = ColumnKind.NUMBER
    sql = feature_query(contract, columns, dt.date(2024, 1, 1)).sql.upper()
    for construct in ("QUALIFY", "::", "READ_PARQUET", "EXCLUDE", "EPOCH(", "LIST_", "$"):
        assert construct not in sql, construct
    assert sql.count("(") == sql.count(")")


def _table(batches) -> pa.Table:
    return pa.Table.from_batches(list(batches))


@pytest.fixture
def range_counts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of ranges each ranged query was asked to cut."""
    counts: list[int] = []
    cut = engine._bounds

    def spy(ranges: engine.RangeViews, count: int) -> engine.Bounds:
        counts.append(count)
        return cut(ranges, count)

    monkeypatch.setattr(engine, "_bounds", spy)
    return counts


def test_ranges_of_customers_give_the_rows_of_one_query(ingest, limits, range_counts) -> None:
    """A source of more than ``range_rows`` lines is queried one range of customer ids at a
    time: the same rows, values, order and batches as one query over every customer."""
    result = ingest("online_retail_invoices.csv")
    parts, as_of = clean_files(result.clean_path), dt.date(2011, 12, 10)
    query, whole = stream_features(parts, result.contract, as_of, limits, batch_rows=700)
    one = list(whole)
    assert range_counts == []
    ranged_query, ranged = stream_features(
        parts, result.contract, as_of, limits, batch_rows=700, range_rows=3_000
    )
    batches = list(ranged)
    assert range_counts == [8]  # about 24,000 clean lines, 3,000 per range
    assert [b.num_rows for b in batches] == [b.num_rows for b in one]
    assert all(b.num_rows == 700 for b in one[:-1]) and len(one) > 3
    assert _table(batches).equals(_table(one))
    assert ranged_query.numeric == query.numeric and ranged_query.history == query.history


def test_ranges_keep_the_edge_cases(tmp_path: Path, limits, range_counts) -> None:
    parts = write_parts(order_log(), tmp_path / "data", cut=7)
    as_of = dt.date(2024, 2, 1)
    _, whole = stream_features(parts, order_contract(), as_of, limits)
    _, ranged = stream_features(parts, order_contract(), as_of, limits, range_rows=2)
    assert _table(ranged).equals(_table(whole)) and range_counts == [8]


def test_range_rows_must_be_positive(tmp_path: Path, limits) -> None:
    parts = write_parts(order_log(), tmp_path / "data", cut=7)
    with pytest.raises(ValueError, match="range_rows must be at least 1, not 0"):
        stream_features(parts, order_contract(), dt.date(2024, 2, 1), limits, range_rows=0)
