"""The clean data of several parts of one kind, merged as the dataset state says.

Runs on DuckDB, out of core (``memory_limit``, spill directory: the
:class:`~custseg.features.engine.EngineLimits` of the feature engine, e.g.
:func:`~custseg.features.engine.lambda_limits` of a function): a dataset of many parts
never has to fit in memory. The result is written as clean Parquet parts with the newest
part's schema (Arrow types kept exactly), so everything that reads one clean run reads a
merged state the same way.

- customers: the latest row of each customer (by part order, then row order) is kept;
- transactions: a row equal in every column to a row of an earlier part is dropped
  (an overlapping export, a file uploaded twice); rows repeated within one part are kept
  as often as that part holds them (the ingest's own dedupe has ruled on them).

Rows come out in part order, then row order; ``_row`` is renumbered from 0.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from custseg.dataset.clean_data import clean_files
from custseg.features.engine import EngineLimits
from custseg.layout import clean_part_name

ROW = "_row"
PART = "_part"
_BATCH_ROWS = 250_000


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _source_sql(parts: Sequence[Path]) -> str:
    """Every part's rows, with its index as ``_part`` (columns united by name)."""
    selects = []
    for i, part in enumerate(parts):
        files = ", ".join("'" + str(f).replace("'", "''") + "'" for f in clean_files(part))
        selects.append(f"SELECT *, {i} AS {PART} FROM read_parquet([{files}])")
    return " UNION ALL BY NAME ".join(selects)


def _customers_sql(source: str, id_column: str) -> str:
    return f"""
        SELECT * EXCLUDE (_keep) FROM (
            SELECT *, row_number() OVER (
                PARTITION BY {_quote(id_column)} ORDER BY {PART} DESC, {ROW} DESC
            ) AS _keep
            FROM ({source})
        ) WHERE _keep = 1
        ORDER BY {PART}, {ROW}"""


def _transactions_sql(source: str, columns: Sequence[str]) -> str:
    identity = ", ".join(_quote(c) for c in columns)
    return f"""
        SELECT * EXCLUDE (_occurrence, _first) FROM (
            SELECT *, row_number() OVER (
                PARTITION BY {identity}, _occurrence ORDER BY {PART}, {ROW}
            ) AS _first
            FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY {PART}, {identity} ORDER BY {ROW}
                ) AS _occurrence
                FROM ({source})
            )
        ) WHERE _first = 1
        ORDER BY {PART}, {ROW}"""


def identity_columns(schema: pa.Schema) -> list[str]:
    """The columns that make a row what it is (not its position or cleaning marks)."""
    return [
        n
        for n in schema.names
        if n not in {ROW, PART} and not n.endswith(("__missing", "__clipped"))
    ]


def merge_parts(
    parts: Sequence[Path],
    kind: str,
    out_dir: Path,
    *,
    id_column: str = "customer_id",
    limits: EngineLimits | None = None,
) -> Path:
    """Merge the clean data of ``parts`` (oldest first; each a part directory or file)
    into clean Parquet parts under ``out_dir``; returns ``out_dir``.

    One part is copied as it is (nothing to merge).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        for i, f in enumerate(clean_files(parts[0])):
            (out_dir / clean_part_name(i)).write_bytes(f.read_bytes())
        return out_dir
    import duckdb

    limits = limits or EngineLimits(1024, Path(tempfile.gettempdir()) / "duckdb-spill", 2)
    schema = pq.read_schema(str(clean_files(parts[-1])[0]))  # the newest part's columns
    source = _source_sql(parts)
    if kind == "customers":
        sql = _customers_sql(source, id_column)
    else:
        sql = _transactions_sql(source, identity_columns(schema))
    limits.temp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": limits.threads})
    try:
        con.execute(f"SET memory_limit = '{int(limits.memory_limit_mb)}MB'")
        con.execute("SET temp_directory = ?", [str(limits.temp_dir)])
        if limits.max_temp_mb is not None:
            con.execute(f"SET max_temp_directory_size = '{int(limits.max_temp_mb)}MB'")
        con.execute("SET preserve_insertion_order = true")
        reader = con.execute(sql).to_arrow_reader(_BATCH_ROWS)
        _write(reader, schema, out_dir / clean_part_name(0))
    finally:
        con.close()
    return out_dir


def _write(reader: pa.RecordBatchReader, schema: pa.Schema, path: Path) -> None:
    """The merged rows as one clean Parquet file of ``schema`` (``_row`` renumbered)."""
    offset = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in reader:
            columns = []
            for field in schema:
                if field.name == ROW:
                    values = pa.array(range(offset, offset + batch.num_rows), pa.int64())
                    columns.append(values.cast(field.type))
                elif field.name in batch.schema.names:
                    columns.append(batch.column(field.name).cast(field.type))
                else:
                    columns.append(pa.nulls(batch.num_rows, field.type))
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            offset += batch.num_rows
