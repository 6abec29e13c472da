"""Sniffing and streaming CSV files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseg.reading import ReadError, detect_date_format, iter_chunks, parse_dates, sniff


def _read_all(path: Path, chunk_rows: int = 1000) -> tuple[pd.DataFrame, np.ndarray, list]:
    fmt = sniff(path)
    frames, rows, bad = [], [], []
    for chunk in iter_chunks(path, fmt, chunk_rows=chunk_rows):
        frames.append(chunk.frame)
        rows.append(chunk.rows)
        bad.extend(chunk.bad)
    return pd.concat(frames, ignore_index=True), np.concatenate(rows), bad


def test_bom_semicolon_crlf(fixtures: Path) -> None:
    fmt = sniff(fixtures / "bom_semicolon_crlf.csv")
    assert fmt.encoding == "utf-8-sig"
    assert fmt.delimiter == ";"
    assert fmt.line_ending == "CRLF"
    assert fmt.headers[0] == "Customer ID"
    frame, rows, _ = _read_all(fixtures / "bom_semicolon_crlf.csv")
    assert frame["0"].tolist() == ["00042", "00043", "7"]
    assert rows.tolist() == [2, 3, 4]


def test_gzip_detected_by_magic_bytes(fixtures: Path) -> None:
    fmt = sniff(fixtures / "customers_gzip.csv")
    assert fmt.compression == "gzip"
    frame, _, _ = _read_all(fixtures / "customers_gzip.csv")
    assert frame["0"].tolist() == ["00042", "00043", "00044"]


def test_quoted_newline_is_one_row(fixtures: Path) -> None:
    frame, rows, _ = _read_all(fixtures / "quoted_newline.csv")
    assert len(frame) == 3
    assert frame.loc[0, "2"] == "1 High St\nFlat 2"
    assert frame.loc[0, "1"] == "Smith, Ann"
    assert rows.tolist() == [2, 3, 4]


def test_ragged_rows_reported_with_row_numbers(fixtures: Path) -> None:
    _, rows, bad = _read_all(fixtures / "ragged.csv")
    assert rows.tolist() == [2, 5]
    assert [(b.row, b.actual) for b in bad] == [(3, 2), (4, 4)]


def test_row_numbers_across_small_chunks(tmp_path: Path) -> None:
    body = "\n".join(f"{i},{i * 2}" for i in range(10))
    path = tmp_path / "x.csv"
    path.write_text("a,b\n" + body + "\n")
    frame, rows, _ = _read_all(path, chunk_rows=3)
    assert rows.tolist() == list(range(2, 12))
    assert frame["0"].tolist() == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    ("name", "code"),
    [("empty.csv", "empty_file"), ("single_column.csv", "no_delimiter")],
)
def test_file_level_read_errors(fixtures: Path, name: str, code: str) -> None:
    with pytest.raises(ReadError) as info:
        sniff(fixtures / name)
    assert info.value.code == code


def test_cp1252_fallback_warns(fixtures: Path) -> None:
    fmt = sniff(fixtures / "cp1252.csv")
    assert fmt.encoding == "cp1252"
    assert fmt.warnings
    frame, _, _ = _read_all(fixtures / "cp1252.csv")
    assert frame["1"].tolist() == ["Málaga", "Köln"]


def test_binary_and_broken_gzip_undecodable(tmp_path: Path) -> None:
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"id,x\n\x00\x01\x02,\xff\n")
    with pytest.raises(ReadError) as info:
        sniff(binary)
    assert info.value.code == "undecodable"
    broken = tmp_path / "g.csv"
    broken.write_bytes(gzip.compress(b"id,x\n1,2\n" * 100)[:30])
    with pytest.raises(ReadError) as info:
        sniff(broken)
    assert info.value.code == "undecodable"


def test_tab_and_pipe_delimiters(tmp_path: Path) -> None:
    for delim in ("\t", "|"):
        path = tmp_path / "d.csv"
        path.write_text(f"id{delim}name{delim}age\n1{delim}a, b{delim}3\n")
        assert sniff(path).delimiter == delim


def test_date_detection_families() -> None:
    us = pd.Series(["12/1/2010 8:26", "12/13/2010 9:00"])
    assert detect_date_format(us) == ("month_first", None)
    eu = pd.Series(["13/01/2010", "01/12/2010"])
    assert detect_date_format(eu) == ("day_first", None)
    dots = pd.Series(["01.12.2010"])
    assert detect_date_format(dots)[0] == "day_first"
    assert detect_date_format(pd.Series(["20100113"]))[0] in {"iso", "compact"}
    family, warning = detect_date_format(pd.Series(["01/02/2010", "03/04/2010"]))
    assert family == "month_first"
    assert warning is not None and "ambiguous" in warning


def test_parse_dates_us_with_time() -> None:
    out = parse_dates(pd.Series(["12/1/2010 8:26", "1/5/2011", "", "junk"]), "month_first")
    assert out.iloc[0] == pd.Timestamp("2010-12-01 08:26")
    assert out.iloc[1] == pd.Timestamp("2011-01-05")
    assert out.iloc[2:].isna().all()
    assert str(out.dtype) == "datetime64[ns]"
