"""Assignments output: schema, formula neutralisation, streaming writer."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from custseg.scoring import outputs as outputs_module
from custseg.scoring.outputs import (
    ASSIGNMENT_COLUMNS,
    ASSIGNMENTS_SCHEMA,
    CSV_SCHEMA,
    ENCODED_SCHEMA,
    TEXT_COLUMNS,
    AssignmentWriter,
    _constant,
    assignments_batch,
    assignments_table,
    csv_rows,
)
from custseg.spreadsheet import neutralise_array, neutralise_formulas, neutralise_table


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
    # min/max statistics for numbers and dates (what can prune a row group), none for text
    group = pf.metadata.row_group(1)
    stats = {
        group.column(i).path_in_schema: group.column(i).statistics for i in range(group.num_columns)
    }
    assert stats["distance"] is not None and stats["distance"].has_min_max
    assert stats["value"].min == 1.0 and stats["as_of"].has_min_max
    assert stats["customer_id"] is None and stats["segment_name"] is None
    table = pf.read()
    assert table.schema.equals(ASSIGNMENTS_SCHEMA)
    assert table.column("customer_id").to_pylist() == ["=1", "b", "c", "d"]
    assert table.column("r_score").to_pylist()[:2] == [5, None]
    assert table.column("f_score").null_count == 4
    assert table.column("value_tier").to_pylist() == ["n/a"] * 4
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and lines[0].startswith('"customer_id"')
    assert lines[1].startswith("'=1,0,'-Bargain,")  # neutralised; no quotes needed
    assert lines[1].endswith(",-3.5")  # numbers untouched (value is the last CSV column)
    back = pd.read_csv(csv_path, dtype={"customer_id": "string"})
    assert list(back.columns) == CSV_SCHEMA.names  # the run constants are not repeated
    assert back["value"].tolist()[0] == -3.5
    assert table.column("as_of").to_pylist() == [dt.date(2024, 1, 1)] * 4


def test_finish_announces_complete_files_and_never_partial_ones(tmp_path: Path) -> None:
    pq_path, csv_path = tmp_path / "p.parquet", tmp_path / "a.csv"
    seen: list[tuple[str, int]] = []

    def then(kind: str) -> None:
        path = csv_path if kind == "csv" else pq_path
        lines = path.read_text().count("\n") if kind == "csv" else pq.read_table(path).num_rows
        seen.append((kind, lines))
        # the CSV's SHA-256, computed while writing, is known once it is closed
        hashes.append(writer.csv_sha256 == hashlib.sha256(csv_path.read_bytes()).hexdigest())

    hashes: list[bool] = []
    with AssignmentWriter(pq_path, csv_path) as writer:
        assert writer.csv_sha256 is None
        writer.write(_chunk(["a", "b"], [1.0, 2.0]))
        writer.write(_chunk(["c,d"], [3.0]))  # a chunk that needs quotes
        writer.finish(then)
    # each announced once, closed and complete: the CSV (the larger, uploaded first) first
    assert seen == [("csv", 4), ("parquet", 3)]
    assert hashes == [True, True]

    broken = AssignmentWriter(tmp_path / "q.parquet", tmp_path / "b.csv")
    announced: list[bool] = []
    broken._write_now = lambda table: (_ for _ in ()).throw(OSError("disk full"))  # type: ignore[method-assign]
    broken.write(_chunk(["a"], [1.0]))
    broken.finish(lambda kind: announced.append(True))
    with pytest.raises(OSError, match="disk full"):
        broken.close()
    assert announced == []  # a failed write is never announced as a finished file


def test_the_csv_is_announced_before_the_last_chunks_parquet_is_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # finish() comes while the last chunk is being written (as after a scoring loop): the
    # CSV upload must not wait for that chunk's Parquet row group
    pq_path, csv_path = tmp_path / "p.parquet", tmp_path / "a.csv"
    events: list[str] = []
    finished = threading.Event()
    real_rows = outputs_module.csv_rows

    def csv_rows(table: pa.Table) -> pa.Buffer:
        if table.column("customer_id")[0].as_py() == "last":
            assert finished.wait(10)  # hold the last chunk's CSV until finish() is called
        return real_rows(table)

    monkeypatch.setattr(outputs_module, "csv_rows", csv_rows)

    def then(kind: str) -> None:
        lines = csv_path.read_text().count("\n") if kind == "csv" else None
        events.append(f"{kind} announced" + (f" with {lines} lines" if lines else ""))

    with AssignmentWriter(pq_path, csv_path) as writer:
        real_write_table = writer._parquet.write_table
        writer._parquet.write_table = lambda table, **kw: (  # type: ignore[method-assign]
            events.append(f"parquet {table.column('customer_id')[0].as_py()}"),
            real_write_table(table, **kw),
        )[-1]
        writer.write(_chunk(["first", "b"], [1.0, 2.0]))
        writer.write(_chunk(["last", "d"], [3.0, 4.0]))
        writer.finish(then)
        finished.set()
    assert events == [
        "parquet first",
        "csv announced with 5 lines",  # header + 4 rows: complete
        "parquet last",
        "parquet announced",
    ]
    assert writer.csv_sha256 == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert pq.read_table(pq_path).num_rows == 4


def test_empty_run_still_writes_both_files(tmp_path: Path) -> None:
    pq_path, csv_path = tmp_path / "p.parquet", tmp_path / "a.csv"
    with AssignmentWriter(pq_path, csv_path) as writer:
        pass
    assert pq.read_table(pq_path).num_rows == 0
    assert csv_path.read_text(encoding="utf-8").count("\n") == 1
    assert writer.csv_sha256 == hashlib.sha256(csv_path.read_bytes()).hexdigest()


def test_assignments_batch_equals_assignments_table() -> None:
    from custseg.model.labels import LabelCodes

    n = 7
    rng = np.random.default_rng(4)
    ids = pd.Index([f"c{i}" for i in range(n)], dtype="string", name="customer_id")
    seg = np.array([0, 1, 2, 1, 0, 3, 2])
    names = {0: "-Bargain", 1: "Loyal", 2: 'Big, "quoted" spenders'}  # 3 has no name
    distance, confidence = rng.uniform(0, 3, n), rng.uniform(0, 1, n)
    value = np.array([1.5, np.nan, -2.0, 3.0, 0.0, 1e9, 2.25])
    labels = LabelCodes(
        r_score=np.array([0, 1, 2, 3, 4, 5, 0], dtype="int8"),
        f_score=np.zeros(n, dtype="int8"),
        m_score=np.full(n, 3, dtype="int8"),
        rfm_segment=np.array([0, 1, 2, 3, 4, 5, 11], dtype="int8"),
        value_tier=np.array([0, 1, 2, 3, 0, 1, 2], dtype="int8"),
        lifecycle_stage=np.array([0, 1, 2, 3, 4, 4, 0], dtype="int8"),
    )
    words = [names.get(int(s), f"Segment {s}") for s in seg]
    pred = pd.DataFrame(
        {
            "segment_id": seg.astype("int16"),
            "segment_name": pd.array(words, dtype="string"),
            "distance": distance,
            "confidence": confidence,
        },
        index=ids,
    )
    run = {"model_version": "v1", "run_id": "r1", "as_of": dt.date(2024, 1, 1)}
    expected = assignments_table(
        pred, labels.to_frame(ids), pd.Series(value, index=ids), **run, segment_names=names
    )
    got = assignments_batch(
        ids, seg, distance, confidence, labels, value, **run, segment_names=names
    )
    assert got.schema.equals(ENCODED_SCHEMA)  # few-valued text dictionary-encoded
    assert got.cast(ASSIGNMENTS_SCHEMA).equals(expected)
    arrow_ids = pa.array(list(ids), type=pa.string())
    again = assignments_batch(
        arrow_ids, seg, distance, confidence, labels, value, **run, segment_names=names
    )
    assert again.cast(ASSIGNMENTS_SCHEMA).equals(expected)
    bare = assignments_batch(ids, seg, distance, confidence, None, None, **run)
    assert bare.column("r_score").null_count == n and bare.column("value").null_count == n
    assert bare.column("value_tier").to_pylist() == ["n/a"] * n


def test_csv_rows_quote_only_when_a_field_needs_it() -> None:
    def rows(values: list[str | None]) -> str:
        table = pa.table({"t": pa.array(values, pa.string()), "x": [1.5] * len(values)})
        return csv_rows(table).to_pybytes().decode()

    assert rows(["a b", "'=c", None]) == "a b,1.5\n'=c,1.5\n,1.5\n"
    # a comma, a quote or a line break: the chunk is written in Arrow's quoting style
    assert rows(["a", "b,c"]) == '"a",1.5\n"b,c",1.5\n'
    assert rows(['say "hi"']) == '"say ""hi""",1.5\n'
    assert rows(["two\nlines"]) == '"two\nlines",1.5\n'
    # the empty text stays told apart from a missing value
    assert rows(["", None]) == '"",1.5\n,1.5\n'
    encoded = pa.table({"t": pc.dictionary_encode(pa.array(["", "a"]))})
    assert csv_rows(encoded).to_pybytes() == b'""\n"a"\n'


def test_constant_columns() -> None:
    for value, type_ in (("v1", pa.string()), ("", pa.string()), ("é€", pa.string()),
                         (dt.date(1969, 12, 31), pa.date32())):  # fmt: skip
        for n in (0, 1, 1000):
            got = _constant(value, n, type_)
            got.validate(full=True)
            assert got.equals(pa.repeat(pa.scalar(value, type=type_), n))


def test_neutralise_array_checks_first_bytes_of_any_layout() -> None:
    values = pa.array(["ok", None, "", "é=", "=x", "a", "-1", "\tz", "b@"])
    expected = ["ok", None, "", "é=", "'=x", "a", "'-1", "'\tz", "b@"]
    assert neutralise_array(values).to_pylist() == expected
    for start in range(len(expected)):  # slices start inside the buffers
        for stop in range(start, len(expected) + 1):
            got = neutralise_array(values[start:stop])
            assert got.to_pylist() == expected[start:stop]
    chunked = pa.chunked_array([values[:4], values[4:]])
    assert neutralise_array(chunked).to_pylist() == expected
    encoded = pa.chunked_array([pc.dictionary_encode(values[:4]), pc.dictionary_encode(values[4:])])
    assert neutralise_array(encoded).to_pylist() == expected
    assert neutralise_array(encoded.chunk(1)).to_pylist() == expected[4:]
    safe = pa.array(["a", None, "b"])
    assert neutralise_array(safe) is safe
    assert neutralise_array(pa.array(["=a"], pa.large_string())).to_pylist() == ["'=a"]


def test_csv_chunks_write_what_one_csv_writer_writes(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    chunks = [_chunk(["=1", "b"], [-3.5, None]), _chunk(["c", "d"], [None, None])]
    chunks.append(chunks[0].cast(ENCODED_SCHEMA))  # both kinds of table, same files
    chunks.append(_chunk(["e,f", 'g"h'], [1.0, 2.0]))  # text that needs quotes
    pq_path, csv_path = tmp_path / "p.parquet", tmp_path / "a.csv"
    with AssignmentWriter(pq_path, csv_path) as writer:
        for chunk in chunks:
            writer.write(chunk)
    one = tmp_path / "one.csv"
    with pacsv.CSVWriter(
        str(one),
        CSV_SCHEMA,
        write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed"),
    ) as csv:
        for chunk in chunks:
            csv.write_table(neutralise_table(chunk.select(CSV_SCHEMA.names)))
    # the same records as one writer quoting every text field (fewer quotes)
    text = {f.name: f.type for f in CSV_SCHEMA if pa.types.is_string(f.type)}
    options = pacsv.ConvertOptions(column_types=text, strings_can_be_null=False)
    assert pacsv.read_csv(csv_path, convert_options=options).equals(
        pacsv.read_csv(one, convert_options=options)
    )
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + sum(c.num_rows for c in chunks)
    assert '"' not in "".join(lines[1:7])  # chunks whose text needs no quotes carry none
    assert lines[7].startswith('"e,f",') and lines[8].startswith('"g""h",')
    back = pq.read_table(pq_path)
    assert back.schema.equals(ASSIGNMENTS_SCHEMA)
    assert back.equals(pa.concat_tables([c.cast(ASSIGNMENTS_SCHEMA) for c in chunks]))
