"""Property-based tests: malformed CSVs never crash ``ingest_file``.

Every input ends in an accepted run or a rejection report, with no unhandled exception,
``rows_read == rows_kept + rows_rejected``, an error naming the file when rejected, a
readable Parquet file of ``rows_kept`` rows (unique customer ids) when accepted, and no
personal value in quality.json / quality.txt. The cases come from ``tests/fuzzcases.py``
(shared with ``scripts/fuzz.py``, which runs a longer campaign: ``make fuzz``).

The second half holds one regression test per bug the fuzzing found.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from custseg.dataset.clean_data import read_clean
from custseg.ingest.contracts.inference import MAX_INFERRED_COLUMNS
from custseg.ingest.pipeline import ingest_file
from custseg.ingest.reading import parse_dates
from fuzzcases import KINDS, FuzzCase, build_case, check_case, wide_header

settings.register_profile(
    "ingest-fuzz",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
FUZZ = settings.get_profile("ingest-fuzz")


@FUZZ
@given(seed=st.integers(min_value=0, max_value=2**63 - 1), kind=st.sampled_from(KINDS))
@example(seed=0, kind="customers")
@example(seed=1, kind="transactions")
def test_malformed_files_end_in_a_run_or_a_rejection(
    seed: int, kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    case = build_case(seed, kind)
    check_case(case, tmp_path_factory.mktemp("fuzz"))


def test_header_with_100000_columns(tmp_path: Path) -> None:
    case = FuzzCase(seed=0, kind="wide", data=wide_header(100_000, rows=2))
    check_case(case, tmp_path)
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert report["status"] == "accepted" and report["rows_kept"] == 2
    inferred = MAX_INFERRED_COLUMNS  # the id and the next 249 columns; the rest ignored
    assert len(report["columns_ignored"]) == 100_000 - inferred
    assert len(report["schema"]["columns"]) == inferred
    assert any(f"the first {inferred} are inferred" in w for w in report["warnings"])
    assert all(len(w) < 2_000 for w in report["warnings"])  # warnings name a few, not all


def test_wide_header_and_no_id(tmp_path: Path) -> None:
    case = FuzzCase(seed=0, kind="wide", data=wide_header(10_000, rows=1, with_id=False))
    check_case(case, tmp_path)
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert report["schema"]["generated_id"] and report["rows_kept"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_builds_deterministically(kind: str) -> None:
    assert build_case(42, kind).data == build_case(42, kind).data
    assert build_case(7).data == build_case(7, build_case(7).kind).data


# ---- regressions: one per bug found by fuzzing -------------------------------------------


def _ingest(tmp_path: Path, data: bytes, name: str = "f.csv"):
    src = tmp_path / name
    src.write_bytes(data)
    result = ingest_file(
        src, tmp_path / "out", source_name=f"incoming/t/{name}", dataset="t", run_id="r"
    )
    rep = result.report
    assert rep.rows_read == rep.rows_kept + rep.rows_rejected
    return result


def test_regression_corrupt_gzip_is_rejected_not_raised(tmp_path: Path) -> None:
    # zlib.error ("invalid distance too far back") escaped sniff(): not an OSError
    good = gzip.compress(b"customer_id,age\n" + b"1,30\n" * 200, mtime=0)
    bad = bytearray(good)
    bad[20] ^= 0xFF
    bad[25] ^= 0x55
    result = _ingest(tmp_path, bytes(bad))
    assert result.status == "rejected"
    assert result.report.file_errors == ["undecodable"]
    assert "incoming/t/f.csv" in result.report.errors[0]["message"]


def test_regression_gzip_truncated_anywhere(tmp_path: Path) -> None:
    full = gzip.compress(b"customer_id,age\n" + b"1,30\n2,40\n" * 500, mtime=0)
    for cut in (5, 11, 30, len(full) // 2, len(full) - 3):
        result = _ingest(tmp_path, full[:cut])
        assert result.status == "rejected", cut
        assert result.report.file_errors == ["undecodable"]


def test_regression_dates_outside_the_nanosecond_range(tmp_path: Path) -> None:
    # pandas parsed 0001-01-01 / 9999-12-31 at second resolution, then the cast to
    # datetime64[ns] raised OutOfBoundsDatetime
    values = pd.Series(["0001-01-01", "9999-12-31", "2024-02-30", "2020-01-31"])
    out = parse_dates(values, "iso")
    assert out.isna().tolist() == [True, True, True, False]
    body = "customer_id,signup_date\n1,0001-01-01\n2,9999-12-31\n3,2024-02-30\n4,2020-01-31\n"
    result = _ingest(tmp_path, body.encode())
    assert result.status == "accepted"  # an attribute's bad value never rejects its row
    assert result.report.rows_kept == 4 and result.report.rows_invalid == 0
    assert sum(result.report.repaired["signup_date"].values()) == 3
    clean = read_clean(result.clean_path).to_pandas()
    assert clean["signup_date"].isna().tolist() == [True, True, True, False]
    assert clean["signup_date"].iloc[3] == pd.Timestamp("2020-01-31")


def test_regression_bare_cr_in_a_rejected_value_stays_one_record(tmp_path: Path) -> None:
    # rejected_rows.csv was written with LF line ends and left a bare CR unquoted,
    # so reading it back split the record in two
    body = 'customer_id,age,city\n1,abc,"cr\rhere"\n2,30,york\n'
    result = _ingest(tmp_path, body.encode())
    assert result.rejected_rows_path is not None
    with open(result.rejected_rows_path, newline="", encoding="utf-8") as fh:
        records = list(csv.reader(fh))
    assert len(records) == 2 and records[1][-1] == "cr\rhere"


def test_regression_ragged_row_with_a_huge_field(tmp_path: Path) -> None:
    # the invalid-row handler used csv.reader (128 KiB field limit): its error was
    # swallowed by Arrow and the whole file became a parse error quoting the row text
    big = "x" * 200_000
    body = f"customer_id,age\n1,30\n2,{big},extra\n3,40\n"
    result = _ingest(tmp_path, body.encode())
    assert result.status == "accepted"
    assert result.report.rows_kept == 2 and result.report.rows_invalid == 1
    assert big[:100] not in result.report_json_path.read_text()


def test_regression_header_with_a_huge_field(tmp_path: Path) -> None:
    # sniff() lost the whole header ("0 columns") when one header name exceeded 128 KiB
    body = f"customer_id,{'h' * 200_000}\n1,30\n"
    result = _ingest(tmp_path, body.encode())
    assert result.status == "accepted"
    (ignored,) = result.report.columns_ignored
    assert len(ignored) <= 80


def test_regression_parse_errors_do_not_quote_the_record(tmp_path: Path) -> None:
    from custseg.ingest.reading import _parse_message

    exc = ValueError("CSV parse error: Row #3: Expected 2 columns, got 3: ann@example.com,x,y")
    assert "ann@example.com" not in _parse_message(exc)
    assert "Expected 2 columns, got 3" in _parse_message(exc)


def test_regression_email_outside_the_email_column_is_masked(tmp_path: Path) -> None:
    # a broken row (or header) can shift an address into another column; report
    # examples and header names must not show it
    body = "customer_id,age,ann.smith@example.com\n1,bob.jones@example.org,3\n2,30,4\n"
    result = _ingest(tmp_path, body.encode())
    text = result.report_json_path.read_text() + result.report_text_path.read_text()
    assert "ann.smith@example.com" not in text
    assert "bob.jones@example.org" not in text
    assert "<e-mail address>" in text


def test_regression_report_json_is_strict_with_huge_numbers(tmp_path: Path) -> None:
    # 1e308 values overflowed the IQR bounds to inf, written as Infinity (not JSON)
    rows = "".join(f"{i},{v}\n" for i, v in enumerate(["1e308", "1e308", "0", "1", "-0", "1e-300"]))
    result = _ingest(tmp_path, ("customer_id,annual_income\n" + rows).encode())
    assert result.status == "accepted"

    def no_constant(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name}")

    json.loads(result.report_json_path.read_text(), parse_constant=no_constant)


def test_regression_overflowing_amount_is_rejected(tmp_path: Path) -> None:
    # quantity x unit_price overflowed to inf and was kept as an amount
    body = (
        "InvoiceNo,InvoiceDate,CustomerID,Quantity,UnitPrice\n"
        "1,2010-12-01,7,1e308,10\n"
        "2,2010-12-01,7,2,3\n"
    )
    result = _ingest(tmp_path, body.encode())
    assert result.status == "accepted" and result.contract.kind == "transactions"
    assert result.report.rows_kept == 1 and result.report.rows_invalid == 1
    clean = read_clean(result.clean_path).to_pandas()
    assert clean["amount"].tolist() == [6.0]


def test_regression_a_price_column_with_a_stray_text_keeps_its_role(tmp_path: Path) -> None:
    # "UnitPrice" read as codes (one of five values not a number) kept the name
    # unit_price without its role, and the returns rule read it as numbers
    rows = "".join(
        f"C{i % 2},2021-05-{i + 1:02d},{i + 1},{p}\n"
        for i, p in enumerate(["1858.08", 'r4797"', "4797", "2852", "1408.75", "12.5"])
    )
    result = _ingest(tmp_path, ("CustomerID,order_date,qty,UnitPrice\n" + rows).encode())
    assert result.status == "accepted"
    contract = json.loads(result.contract_path.read_text())
    roles = {c["name"]: c["role"] for c in contract["columns"]}
    assert roles["unit_price"] == "unit_price"
    assert result.report.rows_kept == 5 and result.report.rows_invalid == 1


def test_regression_a_header_only_file_without_an_id_is_rejected_not_raised(
    tmp_path: Path,
) -> None:
    # numbering the rows of a file that has none raised out of ingest_file
    result = _ingest(tmp_path, wide_header(10_000, rows=0, with_id=False))
    assert result.status == "rejected"
