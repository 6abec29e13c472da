"""Inputs that cannot be right: spreadsheet formulas in rejected rows, implausible dates,
numbers whose separators contradict their column's convention."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_rejected_rows_csv_is_spreadsheet_safe_but_keeps_numbers(ingest, tmp_path: Path) -> None:
    src = _write(
        tmp_path / "formulas.csv",
        "customer_id,age,=HYPERLINK(\"x\")\n"
        "1,30,ok\n"
        "=cmd|' /C calc'!A0,abc,@SUM(A1)\n"
        "3,-5,\tx\n"
        "+4,+,-2+3\n",
    )
    result = ingest(src)
    with open(result.rejected_rows_path, encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    header, body = lines[0], {row[0]: row for row in lines[1:]}
    assert header == ["row", "reasons", "customer_id", "age", "'=HYPERLINK(\"x\")"]
    assert body["3"][2:] == ["'=cmd|' /C calc'!A0", "abc", "'@SUM(A1)"]
    # a number stays a number (-5 is out of range, not a formula); text is neutralised
    assert body["4"][2:] == ["3", "-5", "'\tx"]
    assert body["5"][2:] == ["+4", "'+", "'-2+3"]
    assert all(not cell.startswith(("=", "@", "\t", "\r")) for row in lines for cell in row)
    clean = pd.read_parquet(result.clean_path)
    assert clean["customer_id"].tolist() == ["1"]
