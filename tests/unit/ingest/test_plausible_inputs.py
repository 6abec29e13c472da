"""Inputs that cannot be right: spreadsheet formulas in rejected rows, implausible dates,
numbers whose separators contradict their column's convention."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from custseg.features.build import default_as_of_reason
from custseg.ingest.contracts import builtin_contract
from custseg.ingest.validation import DateBounds, ParseContext, check_headers, validate_chunk


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_rejected_rows_csv_is_spreadsheet_safe_but_keeps_numbers(ingest, tmp_path: Path) -> None:
    src = _write(
        tmp_path / "formulas.csv",
        'customer_id,age,=HYPERLINK("x")\n'
        "1,30,ok\n"
        "=cmd|' /C calc'!A0,abc,@SUM(A1)\n"
        "3,-5,\tx\n"
        "+4,+,-2+3\n",
    )
    result = ingest(src)
    with open(result.rejected_rows_path, encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    header, body = lines[0], {row[0]: row for row in lines[1:]}
    assert header == ["row", "reasons", "customer_id", "age", '\'=HYPERLINK("x")']
    assert body["3"][2:] == ["'=cmd|' /C calc'!A0", "abc", "'@SUM(A1)"]
    # a number stays a number (-5 is out of range, not a formula); text is neutralised
    assert body["4"][2:] == ["3", "-5", "'\tx"]
    assert body["5"][2:] == ["+4", "'+", "'-2+3"]
    assert all(not cell.startswith(("=", "@", "\t", "\r")) for row in lines for cell in row)
    clean = pd.read_parquet(result.clean_path)
    assert clean["customer_id"].tolist() == ["1"]


UPLOADED = dt.datetime(2011, 2, 1, 9, 30, tzinfo=dt.UTC)


def _orders(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "orders.csv",
        "InvoiceNo,InvoiceDate,CustomerID,Quantity,UnitPrice\n"
        "1,2011-01-05 10:00,A,1,5.0\n"
        "2,2099-01-01 00:00,A,1,5.0\n"  # a typo'd year: after the upload
        "3,2011-02-02 08:00,B,1,5.0\n"  # within the 24 h tolerance
        "4,2011-02-02 10:00,B,1,5.0\n"  # past the tolerance
        "5,1850-06-01 00:00,C,1,5.0\n"  # before the floor
        "6,2011-01-20 12:00,C,1,5.0\n",
    )


def test_implausible_dates_reject_their_row_naming_file_row_and_column(
    ingest, tmp_path: Path
) -> None:
    result = ingest(_orders(tmp_path), upload_time=UPLOADED)
    rep = result.report
    assert result.status == "accepted"
    future = "event_time: date_in_future: after 2011-02-02 09:30 UTC (the upload time plus 24 h)"
    old = "event_time: date_too_old: before 1900-01-01"
    assert rep.rejected_by_reason[future] == 2
    assert rep.rejected_by_reason[old] == 1
    rejected = pd.read_csv(result.rejected_rows_path, dtype=str)
    assert dict(zip(rejected["row"], rejected["InvoiceNo"], strict=True)) == {
        "3": "2", "5": "4", "6": "5"
    }  # fmt: skip
    messages = [e["message"] for e in rep.row_errors]
    assert any(
        m.startswith("incoming/test/orders.csv: row 3, column event_time: date_in_future")
        for m in messages
    )
    assert any("row 6, column event_time: date_too_old" in m for m in messages)
    assert rep.to_dict()["date_bounds"] == {
        "upload_time": "2011-02-01T09:30:00+00:00",
        "future_tolerance_hours": "24",
        "not_after": "2011-02-02T09:30:00",
        "not_before": "1900-01-01",
    }
    # the default as-of date comes from the plausible events only, and says so
    clean = pd.read_parquet(result.clean_path)
    as_of, why = default_as_of_reason(clean, result.contract)
    assert as_of == dt.date(2011, 2, 3)  # the day after 2011-02-02 08:00, not 2099
    assert "the day after the last event (2011-02-02)" in why


def test_date_bounds_are_settings(ingest, tmp_path: Path) -> None:
    result = ingest(
        _orders(tmp_path),
        upload_time=UPLOADED,
        future_tolerance=dt.timedelta(0),
        date_floor=dt.date(2011, 1, 10),
    )
    reasons = result.report.rejected_by_reason
    late = "event_time: date_in_future: after 2011-02-01 09:30 UTC (the upload time plus 0 h)"
    assert reasons[late] == 3
    assert reasons["event_time: date_too_old: before 2011-01-10"] == 2


def test_a_column_that_allows_future_dates_keeps_them(tmp_path: Path) -> None:
    contract = builtin_contract("customers")
    spec = contract.column("signup_date").model_copy(update={"allow_future": True})
    contract = contract.model_copy(
        update={"columns": [spec if c.name == "signup_date" else c for c in contract.columns]}
    )
    check = check_headers(["customer_id", "signup_date", "last_purchase_date"], contract)
    raw = pd.DataFrame({"0": ["1"], "1": ["2030-01-01"], "2": ["2030-01-01"]}, dtype="str")
    ctx = ParseContext(bounds=DateBounds(upload_time=dt.datetime(2025, 1, 1)))
    val = validate_chunk(raw, check, contract, ctx)
    assert val.failures == []  # attributes never reject a row: the late date set missing
    [(reason, count)] = val.repairs["last_purchase_date"].items()
    assert reason.startswith("date_in_future") and count == 1
    assert "signup_date" not in val.repairs


def _numbers(values: dict[str, list[str]], ctx: ParseContext | None = None, contract=None):
    contract = contract or builtin_contract("customers")
    headers = ["customer_id", *values]
    n = len(next(iter(values.values())))
    raw = pd.DataFrame(
        {"0": [str(i) for i in range(n)]} | {str(i + 1): v for i, v in enumerate(values.values())},
        dtype="str",
    )
    ctx = ctx or ParseContext()
    val = validate_chunk(raw, check_headers(headers, contract), contract, ctx)
    failures = {
        (col, why.split(":")[0]): np.flatnonzero(m).tolist() for m, col, why in val.failures
    }
    return val, failures, ctx


def test_a_column_with_decimal_commas_reads_1_234_as_one_thousand() -> None:
    val, failures, ctx = _numbers({"annual_income": ["1.234,50", "1.234", "2,5", "3.5", "7"]})
    income = val.typed["annual_income"].tolist()
    assert income[:3] == [1234.5, 1234.0, 2.5] and income[4] == 7.0
    assert failures == {("annual_income", "separator_mismatch"): [3]}  # 3.5: the other way
    assert ctx.decimals == {"annual_income": ","}
    reason = next(why for _, _, why in val.failures)
    assert reason == (
        "separator_mismatch: written with a decimal point (1,234.5), but the column uses a "
        "decimal comma (1.234,5)"
    )


def test_a_column_with_decimal_points_reads_1_234_as_a_fraction() -> None:
    val, failures, ctx = _numbers({"annual_income": ["1,234.50", "1.234", "1,234", "3,5"]})
    assert val.typed["annual_income"].tolist()[:3] == [1234.5, 1.234, 1234.0]
    assert failures == {("annual_income", "separator_mismatch"): [3]}
    assert ctx.decimals == {"annual_income": "."}


def test_ambiguous_values_follow_the_files_other_columns_with_a_warning() -> None:
    val, failures, ctx = _numbers(
        {"annual_income": ["1.234", "2.500", "12"], "total_spend": ["3,5", "10", "4,25"]}
    )
    assert val.typed["annual_income"].tolist() == [1234.0, 2500.0, 12.0]
    assert val.typed["total_spend"].tolist() == [3.5, 10.0, 4.25]
    assert failures == {}
    assert ctx.decimals == {"annual_income": ",", "total_spend": ","}
    assert ctx.warnings == [
        "column annual_income: values such as '1.234' read either way; read with a decimal "
        "comma (1.234,5) as the file's other number columns. Set decimal in the contract "
        "to decide"
    ]


def test_the_contract_decides_the_separator() -> None:
    contract = builtin_contract("customers")
    contract = contract.model_copy(
        update={
            "columns": [
                c.model_copy(update={"decimal": ","}) if c.name == "annual_income" else c
                for c in contract.columns
            ]
        }
    )
    val, failures, ctx = _numbers({"annual_income": ["1.234", "0.5"]}, contract=contract)
    assert val.typed["annual_income"].tolist()[0] == 1234.0
    assert failures == {("annual_income", "separator_mismatch"): [1]}
    assert ctx.decimals == {} and ctx.warnings == []


def test_the_first_chunk_that_needs_it_decides_for_the_whole_file(ingest, tmp_path: Path) -> None:
    src = _write(
        tmp_path / "chunks.csv",
        "customer_id;annual_income\n"
        "1;12\n2;40\n"  # chunk 1: whole numbers, nothing to decide
        "3;1.234,50\n4;7\n"  # chunk 2: decides a decimal comma
        "5;1.234\n6;2.5\n",  # chunk 3: 1.234 is 1234; 2.5 contradicts the column
    )
    result = ingest(src, chunk_rows=2)
    clean = pd.read_parquet(result.clean_path)
    assert clean["annual_income"].tolist() == [12.0, 40.0, 1234.5, 7.0, 1234.0]
    rep = result.report
    assert rep.decimal_separators == {"annual_income": "decimal comma (1.234,5)"}
    [error] = [e for e in rep.row_errors if e["column"] == "annual_income"]
    assert error["row"] == 7 and error["reason"].startswith("separator_mismatch")
    assert error["message"].startswith("incoming/test/chunks.csv: row 7, column annual_income")
