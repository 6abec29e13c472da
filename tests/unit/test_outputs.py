"""Assignments output: schema, formula neutralisation, streaming writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.outputs import (
    ASSIGNMENT_COLUMNS,
    ASSIGNMENTS_SCHEMA,
    TEXT_COLUMNS,
    AssignmentWriter,
    assignments_table,
    neutralise_formulas,
)


def test_neutralise_formulas_prefixes_only_risky_text() -> None:
    s = pd.Series(["=cmd()", "+1", "-x", "@SUM(A1)", "\tz", "\rq", "ok", None], dtype="string")
    out = neutralise_formulas(s)
    assert out.tolist()[:7] == ["'=cmd()", "'+1", "'-x", "'@SUM(A1)", "'\tz", "'\rq", "ok"]
    assert out.isna().tolist()[-1]
    numbers = pd.Series([-3.5, 2.0])
    assert neutralise_formulas(numbers) is numbers


def test_schema_and_docs_agree() -> None:
    assert ASSIGNMENTS_SCHEMA.names == list(ASSIGNMENT_COLUMNS)
    assert ASSIGNMENTS_SCHEMA.field("segment_id").type == pa.int16()
    assert ASSIGNMENTS_SCHEMA.field("r_score").type == pa.int8()
    assert ASSIGNMENTS_SCHEMA.field("as_of").type == pa.date32()
    assert "value" not in TEXT_COLUMNS and "customer_id" in TEXT_COLUMNS
    assert all(text.strip() for text in ASSIGNMENT_COLUMNS.values())


def _chunk(ids: list[str], value: list[float | None]) -> pa.Table:
    index = pd.Index(ids, dtype="string", name="customer_id")
    pred = pd.DataFrame(
        {
            "segment_id": pd.array([0, 1][: len(ids)] * (len(ids) // 2 + 1), dtype="int16")[
                : len(ids)
            ],
            "segment_name": pd.array(["-Bargain", "Loyal"] * len(ids), dtype="string")[: len(ids)],
            "distance": [0.5] * len(ids),
            "confidence": [0.9] * len(ids),
        },
        index=index,
    )
    labels = pd.DataFrame(
        {
            "r_score": pd.array([5, None][: len(ids)] + [1] * max(0, len(ids) - 2), dtype="Int8"),
            "rfm_segment": pd.array(["Champions"] * len(ids), dtype="string"),
        },
        index=index,
    )
    return assignments_table(
        pred,
        labels,
        pd.Series(value, index=index, dtype="float64"),
        model_version="v1",
        run_id="r1",
        as_of=dt.date(2024, 1, 1),
    )


def test_writer_streams_row_groups_and_one_header(tmp_path: Path) -> None:
    pq_path, csv_path = tmp_path / "a" / "part-00000.parquet", tmp_path / "a.csv"
    with AssignmentWriter(pq_path, csv_path) as writer:
        writer.write(_chunk(["=1", "b"], [-3.5, None]))
        writer.write(_chunk(["c", "d"], [1.0, 2.0]))
    assert writer.rows == 4
    pf = pq.ParquetFile(pq_path)
    assert pf.metadata.num_row_groups == 2
    table = pf.read()
    assert table.schema.equals(ASSIGNMENTS_SCHEMA)
    assert table.column("customer_id").to_pylist() == ["=1", "b", "c", "d"]
    assert table.column("r_score").to_pylist()[:2] == [5, None]
    assert table.column("f_score").null_count == 4
    assert table.column("value_tier").to_pylist() == ["n/a"] * 4
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and lines[0].startswith('"customer_id"')
    assert lines[1].startswith('"\'=1",0,"\'-Bargain"')
    assert ",-3.5," in lines[1]  # numbers untouched
    back = pd.read_csv(csv_path, dtype={"customer_id": "string"})
    assert back["value"].tolist()[0] == -3.5
    assert back["as_of"].tolist() == ["2024-01-01"] * 4


def test_empty_run_still_writes_both_files(tmp_path: Path) -> None:
    pq_path, csv_path = tmp_path / "p.parquet", tmp_path / "a.csv"
    with AssignmentWriter(pq_path, csv_path):
        pass
    assert pq.read_table(pq_path).num_rows == 0
    assert csv_path.read_text(encoding="utf-8").count("\n") == 1
