"""The assignments a scoring run writes: one row per customer, as Parquet and as CSV.

Both files carry the same columns in the same order (:data:`ASSIGNMENT_COLUMNS`, typed by
:data:`ASSIGNMENTS_SCHEMA`). The Parquet file is written one row group per scored chunk;
the CSV is UTF-8 (no byte-order mark), comma separated, header on the first line only,
fields quoted when needed, missing values as empty fields, dates as ``YYYY-MM-DD``.

Spreadsheet safety: a CSV cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return would be run as a formula by Excel / LibreOffice / Google Sheets. In the CSV
every TEXT column is neutralised by prefixing such values with an apostrophe ``'`` (the
usual OWASP advice; spreadsheets show the apostrophe-prefixed text as plain text). Numeric
columns are never touched: ``-3.5`` stays the number ``-3.5``. The Parquet file keeps the
original text (it is read by Athena / BI tools, not by spreadsheets).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ASSIGNMENT_COLUMNS: dict[str, str] = {
    "customer_id": "The customer's identifier exactly as in the uploaded file (text; leading "
    "zeros kept). Each customer appears exactly once per run.",
    "segment_id": "Number of the segment the customer belongs to (0 .. k-1), stable for a "
    "given model version.",
    "segment_name": "Plain-language name of the segment (from the model's personas).",
    "distance": "Distance of the customer to the centre of their segment, in the model's "
    "standardised feature space (smaller = more typical member; 6 decimals).",
    "confidence": "How clearly the customer belongs to their segment rather than the next "
    "nearest one, from 0 (on the border) to 1 (right at the centre); 6 decimals.",
    "r_score": "Recency score 1..5 (5 = bought most recently), quintile of the training "
    "data; empty when the data has no purchase recency.",
    "f_score": "Frequency score 1..5 (5 = buys most often); empty when not available.",
    "m_score": "Monetary score 1..5 (5 = spends most); empty when not available.",
    "rfm_segment": "Classic RFM group (e.g. champions, loyal, at risk) or 'n/a' when the "
    "data has no purchase history.",
    "value_tier": "Customer value tier from the value measure (high / mid / low) or 'n/a'.",
    "lifecycle_stage": "Lifecycle stage (new, active, at risk, lapsed) or 'n/a' when the "
    "data has no dates to tell.",
    "value": "The customer's value measure (net spend for transaction data, else the first "
    "value column of the contract, e.g. total charges); empty when unknown. May be negative "
    "(net returns).",
    "model_version": "Version of the segmentation model that scored this run.",
    "run_id": "Identifier of the scoring run that wrote this row.",
    "as_of": "The date the features were computed as of (recency, tenure).",
}
"""Column -> meaning, in file order (used for the README's data contract)."""

ASSIGNMENTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("segment_id", pa.int16(), nullable=False),
        pa.field("segment_name", pa.string()),
        pa.field("distance", pa.float64()),
        pa.field("confidence", pa.float64()),
        pa.field("r_score", pa.int8()),
        pa.field("f_score", pa.int8()),
        pa.field("m_score", pa.int8()),
        pa.field("rfm_segment", pa.string()),
        pa.field("value_tier", pa.string()),
        pa.field("lifecycle_stage", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("model_version", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("as_of", pa.date32()),
    ]
)
"""The Arrow schema of the assignments (Parquet and CSV), same order as the columns doc."""

assert list(ASSIGNMENTS_SCHEMA.names) == list(ASSIGNMENT_COLUMNS)

TEXT_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in ASSIGNMENTS_SCHEMA if pa.types.is_string(f.type)
)
"""Text columns: the ones neutralised against formula injection in the CSV."""

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^([=+\-@\t\r])"


def neutralise_formulas(series: pd.Series) -> pd.Series:
    """Prefix text values that a spreadsheet would run as a formula with ``'``.

    Only text is changed: a numeric series is returned unchanged (``-3.5`` stays a number).
    Missing values stay missing. Shape and index are preserved.

    >>> neutralise_formulas(pd.Series(["=cmd()", "ok", "-x"])).tolist()
    ["'=cmd()", 'ok', "'-x"]
    """
    if not (pd.api.types.is_string_dtype(series) or pd.api.types.is_object_dtype(series)):
        return series
    text = series.astype("string")
    risky = text.str.match(_FORMULA_PATTERN).fillna(False).to_numpy(dtype=bool)
    if not risky.any():
        return text
    out = text.copy()
    out[risky] = "'" + text[risky]
    return out


def neutralise_array(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Arrow version of :func:`neutralise_formulas` for a string array (vectorised).

    A cheap match runs first; the rewrite only when some value needs it.
    """
    risky = pc.match_substring_regex(values, pattern=_FORMULA_PATTERN)
    if not pc.any(risky).as_py():
        return values
    return pc.replace_substring_regex(values, pattern=_FORMULA_PATTERN, replacement=r"'\1")


def neutralise_table(table: pa.Table) -> pa.Table:
    """``table`` with every string column neutralised (numbers and dates untouched)."""
    columns = [
        neutralise_array(col) if pa.types.is_string(col.type) else col for col in table.columns
    ]
    return pa.table(columns, schema=table.schema)


def _constant(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, type=type_), n)


def _int8(values: pd.Series | None, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, type=pa.int8())
    return pa.array(values.astype("Int8"), type=pa.int8())


def _text(values: pd.Series | None, n: int, default: str = "n/a") -> pa.Array:
    if values is None:
        return _constant(default, n, pa.string())
    return pa.array(values.astype("string").fillna(default), type=pa.string())


def assignments_table(
    predictions: pd.DataFrame,
    labels: pd.DataFrame | None,
    value: pd.Series | None,
    *,
    model_version: str,
    run_id: str,
    as_of: dt.date,
    segment_names: Mapping[int, str] | None = None,
) -> pa.Table:
    """One chunk of assignments as an Arrow table with :data:`ASSIGNMENTS_SCHEMA`.

    ``predictions``: index ``customer_id``; ``segment_id``, ``segment_name``, ``distance``,
    ``confidence`` (from ``SegmentModel.predict``). ``labels``: same index; ``r_score``,
    ``f_score``, ``m_score`` (Int8), ``rfm_segment``, ``value_tier``, ``lifecycle_stage``
    (from ``labels.assign_labels``) or ``None``. ``value``: the value measure, same index,
    or ``None``. All inputs must already be aligned on the same index order.
    ``segment_names`` (id -> name, e.g. ``model.segment_names()``) builds the name column
    from the ids (vectorised) instead of converting ``predictions["segment_name"]``.
    """
    n = len(predictions)
    lab = labels if labels is not None else pd.DataFrame(index=predictions.index)

    def col(name: str) -> pd.Series | None:
        return lab[name] if name in lab.columns else None

    value_arr = (
        pa.nulls(n, type=pa.float64())
        if value is None
        else pa.array(value.to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)
    )
    seg = predictions["segment_id"].to_numpy(dtype="int16")
    if segment_names and n and int(seg.min()) >= 0 and int(seg.max()) in segment_names:
        k = max(segment_names) + 1
        words = pa.array([segment_names.get(i, f"Segment {i}") for i in range(k)], pa.string())
        names_arr = pc.take(words, pa.array(seg.astype("int32")))
    else:
        names_arr = pa.array(predictions["segment_name"].astype("string"), type=pa.string())
    arrays = [
        pa.array(predictions.index.astype("string"), type=pa.string()),
        pa.array(seg, type=pa.int16()),
        names_arr,
        pa.array(np.round(predictions["distance"].to_numpy(dtype="float64"), 6), pa.float64()),
        pa.array(np.round(predictions["confidence"].to_numpy(dtype="float64"), 6), pa.float64()),
        _int8(col("r_score"), n),
        _int8(col("f_score"), n),
        _int8(col("m_score"), n),
        _text(col("rfm_segment"), n),
        _text(col("value_tier"), n),
        _text(col("lifecycle_stage"), n),
        value_arr,
        _constant(model_version, n, pa.string()),
        _constant(run_id, n, pa.string()),
        _constant(as_of, n, pa.date32()),
    ]
    return pa.Table.from_arrays(arrays, schema=ASSIGNMENTS_SCHEMA)


class AssignmentWriter:
    """Streams assignment chunks to one Parquet file and one CSV file.

    Each :meth:`write` call appends one Parquet row group and CSV rows (the CSV header is
    written once, even when nothing is written). Use as a context manager; both files
    exist (possibly with zero rows) after :meth:`close`.

    Writing happens on one background thread (Arrow releases the GIL while encoding and
    compressing), so the next chunk is scored while the previous one is written. At most
    one chunk is pending: memory stays bounded. An error in the background surfaces at
    the next :meth:`write` or at :meth:`close`.
    """

    def __init__(self, parquet_path: Path, csv_path: Path) -> None:
        parquet_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.parquet_path = parquet_path
        self.csv_path = csv_path
        self.rows = 0
        self._parquet = pq.ParquetWriter(
            str(parquet_path), ASSIGNMENTS_SCHEMA, compression="snappy"
        )
        self._csv = pacsv.CSVWriter(
            str(csv_path),
            ASSIGNMENTS_SCHEMA,
            write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed"),
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assignments")
        self._pending: Future[None] | None = None

    def _write_now(self, table: pa.Table) -> None:
        self._parquet.write_table(table, row_group_size=table.num_rows)
        self._csv.write_table(neutralise_table(table))

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a background error

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if not table.schema.equals(ASSIGNMENTS_SCHEMA):
            table = table.cast(ASSIGNMENTS_SCHEMA)
        self._wait()
        self._pending = self._pool.submit(self._write_now, table)
        self.rows += table.num_rows

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            self._parquet.close()
            self._csv.close()

    def __enter__(self) -> AssignmentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
