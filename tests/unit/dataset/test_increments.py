"""A daily order file added to the history moves recency and frequency as it should."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from custseg.dataset.clean_data import read_clean
from custseg.dataset.merge import merge_parts
from custseg.features.build import build_features

HEADER = "InvoiceNo,InvoiceDate,CustomerID,Quantity,UnitPrice\n"
HISTORY = HEADER + (
    "1001,2026-01-05 10:00,A1,2,5.0\n"
    "1002,2026-01-20 10:00,A1,1,10.0\n"
    "1003,2026-01-10 10:00,B2,1,7.0\n"
)
# the next day's file: a new order of A1, and one line the history holds already
DAY = HEADER + "1004,2026-02-01 09:00,A1,3,4.0\n1003,2026-01-10 10:00,B2,1,7.0\n"


def _clean(tmp_path: Path, ingest: Any, name: str, text: str, **kwargs: Any) -> Any:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = ingest(path, upload_time=dt.datetime(2026, 2, 2, tzinfo=dt.UTC), **kwargs)
    assert result.status == "accepted"
    assert result.clean_path is not None
    return result


def test_an_increment_moves_recency_and_frequency(tmp_path: Path, ingest: Any) -> None:
    first = _clean(tmp_path, ingest, "history.csv", HISTORY)
    history, contract = first.clean_path, first.contract
    # the day's two lines alone would read as a customer table: the log's contract pins it
    day = _clean(tmp_path, ingest, "day.csv", DAY, contract=contract).clean_path
    as_of = dt.date(2026, 2, 2)

    before = build_features(read_clean(history).to_pandas(), contract, as_of).frame
    merged = merge_parts([history, day], "transactions", tmp_path / "merged")
    after = build_features(read_clean(merged).to_pandas(), contract, as_of).frame

    assert before.loc["A1", "recency_days"] == 13  # last order 2026-01-20
    assert after.loc["A1", "recency_days"] == 1  # the new order of 2026-02-01
    assert (before.loc["A1", "frequency"], after.loc["A1", "frequency"]) == (2, 3)
    assert after.loc["A1", "monetary"] == before.loc["A1", "monetary"] + 12.0
    # the repeated line of B2 is the same order: nothing moves
    assert after.loc["B2"].equals(before.loc["B2"])
