"""The assignments a scoring run writes: one row per customer, as Parquet and as CSV.

The Parquet file carries every column (:data:`ASSIGNMENT_COLUMNS`, typed by
:data:`ASSIGNMENTS_SCHEMA`), one row group per scored chunk. The CSV carries the same
columns in the same order except the three that are constant within a run
(:data:`RUN_COLUMNS`: model version, run id, as-of date); they name the run's folder and
its manifest, and repeated on every line they were a third of the CSV's bytes. The CSV is
UTF-8 (no byte-order mark), comma separated, header on the first line only, missing values
as empty fields; a field is quoted only when it must be (RFC 4180: it holds a comma, a
double quote or a line break, or it is the empty text, told apart from a missing value),
so that typical rows carry no quotes at all (10 % of the file's bytes at 1M customers).
A model with predictions adds one column per prediction at the end of both files
(:data:`PREDICTION_DOC`).

Spreadsheet safety: a CSV cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return would be run as a formula by Excel / LibreOffice / Google Sheets. In the CSV
every TEXT column is neutralised by prefixing such values with an apostrophe ``'`` (the
usual OWASP advice; spreadsheets show the apostrophe-prefixed text as plain text). Numeric
columns are never touched: ``-3.5`` stays the number ``-3.5``. The Parquet file keeps the
original text (it is read by Athena / BI tools, not by spreadsheets). The neutralising
lives in :mod:`custseg.spreadsheet` (the ingest's ``rejected_rows.csv`` uses it too).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
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

from custseg.model.labels import SCORE_COLUMNS, LabelCodes
from custseg.model.labels import TEXT_COLUMNS as LABEL_TEXT_COLUMNS
from custseg.spreadsheet import is_text, neutralise_table

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

RUN_COLUMNS: tuple[str, ...] = ("model_version", "run_id", "as_of")
"""Columns constant within a run: in the Parquet file, not in the CSV (see the module doc)."""

CSV_SCHEMA: pa.Schema = pa.schema([f for f in ASSIGNMENTS_SCHEMA if f.name not in RUN_COLUMNS])
"""The columns of ``assignments.csv``: :data:`ASSIGNMENTS_SCHEMA` without :data:`RUN_COLUMNS`."""

TEXT_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in ASSIGNMENTS_SCHEMA if pa.types.is_string(f.type)
)
"""Text columns: the ones neutralised against formula injection in the CSV."""

DICTIONARY_COLUMNS: tuple[str, ...] = tuple(
    name
    for name in ASSIGNMENTS_SCHEMA.names
    if name not in ("customer_id", "distance", "confidence", "value")
)
"""Columns Parquet-encoded with a dictionary: the few-valued ones. Ids and measures are
(almost) all distinct: a dictionary would be built and then abandoned for each of them,
which took a third of the Parquet writer's time."""

STATISTICS_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in ASSIGNMENTS_SCHEMA if not pa.types.is_string(f.type)
)
"""Columns with min/max statistics in the Parquet file: numbers and dates. A text column's
min/max prunes nothing here (each row group holds a slice of customers with about every
segment, tier and stage; ids are sorted only within a chunk, whose range spans the id
space), Athena skips row groups of a dictionary-encoded column by its dictionary, and
computing them took a quarter of the writer's time (0.09 s per 1M customers)."""

PARQUET_COMPRESSION: dict[str, str] = {
    name: "none" if name in ("distance", "confidence") else "snappy"
    for name in ASSIGNMENTS_SCHEMA.names
}
"""Snappy for every column but the two 6-decimal measures: their bytes do not compress
(8.005 MB with snappy vs 8.004 MB without, per million customers), so compressing them
only cost time."""

ENCODED_COLUMNS: tuple[str, ...] = (
    "segment_name",
    "rfm_segment",
    "value_tier",
    "lifecycle_stage",
    "model_version",
    "run_id",
)
"""Text columns with a handful of values, which :func:`assignments_batch` builds
dictionary-encoded (see :data:`ENCODED_SCHEMA`)."""

ENCODED_SCHEMA: pa.Schema = pa.schema(
    [
        f.with_type(pa.dictionary(pa.int32(), pa.string())) if f.name in ENCODED_COLUMNS else f
        for f in ASSIGNMENTS_SCHEMA
    ]
)
""":data:`ASSIGNMENTS_SCHEMA` with :data:`ENCODED_COLUMNS` dictionary-encoded: the same
values (``table.cast(ASSIGNMENTS_SCHEMA)``). The Parquet writer stores such a column from
its few distinct values instead of hashing every row's text; the file is written without
Arrow's own schema, so it reads back as plain :data:`ASSIGNMENTS_SCHEMA` columns."""


PREDICTION_DOC = (
    "Columns after ``as_of``, one per prediction of the model (none for a model without; "
    "the model's list is :func:`custseg.scoring.predictions.prediction_columns`), float64 "
    "with 6 decimals: :data:`PREDICTION_COLUMNS`."
)

PREDICTION_COLUMNS: dict[str, str] = {
    "p_<outcome>": "One per outcome column the model's propensity was fitted on (e.g. "
    "p_churn): the calibrated probability (0..1) of the outcome. See docs/predictions.md.",
    "p_alive": "Order logs: probability that the customer is still buying (BG/NBD, 0..1; 1 "
    "for a customer with one purchase so far); empty for a customer without purchases. See "
    "docs/predictions.md.",
    "expected_purchases_90d": "Order logs: purchase days expected in the next 90 days "
    "(BG/NBD); empty when p_alive is.",
    "expected_value_12m": "Order logs: expected value of the next 12 months' purchases, "
    "discounted 1 % a month (BG/NBD x Gamma-Gamma), in the order log's currency; empty when "
    "p_alive is.",
}
"""Prediction column -> meaning (after :data:`ASSIGNMENT_COLUMNS`, only in runs of a model
that has the prediction; used for the docs)."""


def with_predictions(schema: pa.Schema, names: Sequence[str]) -> pa.Schema:
    """``schema`` with one float64 column per prediction name appended, in order."""
    for name in names:
        if name in schema.names:
            raise ValueError(f"prediction column {name!r} clashes with an assignments column")
        schema = schema.append(pa.field(name, pa.float64()))
    return schema


def _encoded(words: list[str] | tuple[str, ...], codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array(list(words), type=pa.string())
    )


def _constant(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    """``n`` times ``value``; text and dates are laid out directly in Arrow buffers
    (``pa.repeat`` of a string took ~25 ms per 250,000 rows)."""
    if type_ == pa.string() and isinstance(value, str):
        data = value.encode("utf-8")
        if (n + 1) * max(len(data), 1) < 2**31:
            offsets = np.arange(n + 1, dtype=np.int64) * len(data)
            buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data * n)]
            return pa.Array.from_buffers(pa.string(), n, buffers)
    if type_ == pa.date32() and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        days = np.full(n, (value - dt.date(1970, 1, 1)).days, dtype=np.int32)
        return pa.Array.from_buffers(pa.date32(), n, [None, pa.py_buffer(days)])
    return pa.repeat(pa.scalar(value, type=type_), n)


def _names_array(seg: np.ndarray, segment_names: Mapping[int, str] | None) -> pa.Array:
    """The segment name of each id (``Segment <id>`` for an id without a name),
    dictionary-encoded."""
    names = segment_names or {}
    k = max([*names, int(seg.max()) if seg.size else -1]) + 1
    return _encoded([names.get(i, f"Segment {i}") for i in range(k)], seg)


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


def assignments_batch(
    customer_id: pa.Array | pa.ChunkedArray | pd.Index,
    segment_id: np.ndarray,
    distance: np.ndarray,
    confidence: np.ndarray,
    labels: LabelCodes | None,
    value: np.ndarray | None,
    *,
    model_version: str,
    run_id: str,
    as_of: dt.date,
    segment_names: Mapping[int, str] | None = None,
    predictions: Mapping[str, np.ndarray] | None = None,
) -> pa.Table:
    """One chunk of assignments as an Arrow table with :data:`ENCODED_SCHEMA` (the
    values of :data:`ASSIGNMENTS_SCHEMA`, few-valued text dictionary-encoded), from
    aligned arrays: what :func:`assignments_table` builds from frames.

    ``customer_id``: the ids (Arrow strings or a string index); ``segment_id``,
    ``distance``, ``confidence``: from ``SegmentModel.assign``; ``labels``: from
    ``labels.label_codes`` or ``None``; ``value``: float64 (NaN unknown) or ``None``;
    ``segment_names``: id -> name (``Segment <id>`` for ids it lacks); ``predictions``:
    column name -> float64 per customer (e.g. ``p_churn``, ``p_alive``; NaN unknown),
    appended in that order (:func:`with_predictions`), 6 decimals.
    """
    n = len(segment_id)
    seg = np.asarray(segment_id, dtype="int16")
    if isinstance(customer_id, pd.Index):
        customer_id = pa.array(customer_id.astype("string"), type=pa.string())
    ids = customer_id if customer_id.type == pa.string() else customer_id.cast(pa.string())
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    columns: dict[str, pa.Array] = {}
    for name in SCORE_COLUMNS:
        if labels is None:
            columns[name] = pa.nulls(n, type=pa.int8())
            continue
        scores = np.asarray(labels.column(name), dtype="int8")
        missing = scores == 0
        columns[name] = (
            pa.nulls(n, type=pa.int8())
            if missing.all()
            else pa.array(scores, type=pa.int8(), mask=missing if missing.any() else None)
        )
    for name in LABEL_TEXT_COLUMNS:
        if labels is None:
            columns[name] = _encoded(["n/a"], np.zeros(n, dtype=np.int32))
            continue
        columns[name] = _encoded(LabelCodes.VOCABULARY[name], labels.column(name))
    arrays = [
        ids,
        pa.array(seg, type=pa.int16()),
        _names_array(seg, segment_names),
        pa.array(np.round(np.asarray(distance, dtype="float64"), 6), pa.float64()),
        pa.array(np.round(np.asarray(confidence, dtype="float64"), 6), pa.float64()),
        *(columns[c] for c in SCORE_COLUMNS),
        *(columns[c] for c in LABEL_TEXT_COLUMNS),
        pa.nulls(n, type=pa.float64())
        if value is None
        else pa.array(np.asarray(value, dtype="float64"), from_pandas=True),
        _encoded([model_version], np.zeros(n, dtype=np.int32)),
        _encoded([run_id], np.zeros(n, dtype=np.int32)),
        _constant(as_of, n, pa.date32()),
    ]
    extra = dict(predictions or {})
    arrays += [
        pa.array(np.round(np.asarray(v, dtype="float64"), 6), pa.float64(), from_pandas=True)
        for v in extra.values()
    ]
    return pa.Table.from_arrays(arrays, schema=with_predictions(ENCODED_SCHEMA, list(extra)))


_CSV_HEADER = pacsv.WriteOptions(include_header=True, quoting_style="none")
_CSV_PLAIN = pacsv.WriteOptions(include_header=False, quoting_style="none")
_CSV_QUOTED = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def _has_empty_text(table: pa.Table) -> bool:
    """Whether a text column holds the empty text (which only quotes tell from missing)."""
    for col in table.columns:
        if not is_text(col.type) or len(col) == 0:
            continue
        values = col.combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.dictionary
        shortest = pc.min(pc.binary_length(values)).as_py()
        if shortest == 0:
            return True
    return False


def csv_rows(table: pa.Table) -> pa.Buffer:
    """``table``'s rows as CSV (no header): unquoted when no field needs quotes, else
    Arrow's "needed" style (every text field quoted) for this chunk. Arrow refuses a
    comma, quote or line break in an unquoted field rather than write a broken row, so
    the choice is exact, and made on the chunk's buffer before anything reaches the file.
    """
    if not _has_empty_text(table):
        out = pa.BufferOutputStream()
        try:
            pacsv.write_csv(table, out, write_options=_CSV_PLAIN)
            return out.getvalue()
        except pa.ArrowInvalid:
            pass  # a field needs quotes
    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, write_options=_CSV_QUOTED)
    return out.getvalue()


def _csv_chunk(table: pa.Table, names: Sequence[str] = CSV_SCHEMA.names) -> pa.Table:
    """The CSV columns (``names``) of an assignments chunk, text neutralised. A number
    column with no value at all (e.g. the RFM scores of a customer table) is passed as
    Arrow's null type: the same empty fields, without formatting a number per row first."""
    table = neutralise_table(table.select(list(names)))
    columns = [
        pa.nulls(len(col), pa.null())
        if len(col) and col.null_count == len(col) and not pa.types.is_string(col.type)
        else col
        for col in table.columns
    ]
    return pa.table(columns, names=table.column_names)


class AssignmentWriter:
    """Streams assignment chunks to one Parquet file and one CSV file (without
    :data:`RUN_COLUMNS`).

    ``predictions``: the names of the prediction columns every chunk carries after the
    assignments columns (:func:`with_predictions`; none by default).

    Each :meth:`write` call appends one Parquet row group and CSV rows (the CSV header is
    written once, even when nothing is written); it takes a table of
    :data:`ENCODED_SCHEMA` (:func:`assignments_batch`) or :data:`ASSIGNMENTS_SCHEMA`
    (:func:`assignments_table`). Use as a context manager; both files exist (possibly with
    zero rows) after :meth:`close`; the Parquet file reads back as
    :data:`ASSIGNMENTS_SCHEMA`.

    Writing happens on one background thread (Arrow releases the GIL while encoding and
    compressing), so the next chunk is scored while the previous one is written. At most
    one chunk is pending: memory stays bounded. An error in the background surfaces at
    the next :meth:`write` or at :meth:`close`.

    The CSV's SHA-256 is computed from the bytes as they are written (:attr:`csv_sha256`,
    hex, once the CSV is closed): an upload can hand it to S3, which verifies it, instead
    of reading the 88 MB file (at 1M customers) once more to hash it.
    """

    def __init__(self, parquet_path: Path, csv_path: Path, predictions: Sequence[str] = ()) -> None:
        parquet_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.parquet_path = parquet_path
        self.csv_path = csv_path
        self.rows = 0
        self.schema = with_predictions(ASSIGNMENTS_SCHEMA, predictions)
        self.encoded_schema = with_predictions(ENCODED_SCHEMA, predictions)
        csv_schema = with_predictions(CSV_SCHEMA, predictions)
        self._csv_names = csv_schema.names
        self._parquet = pq.ParquetWriter(
            str(parquet_path),
            self.encoded_schema,
            compression={
                **PARQUET_COMPRESSION,
                **{name: "none" for name in predictions},  # 6-decimal measures: see above
            },
            use_dictionary=list(DICTIONARY_COLUMNS),
            write_statistics=list(STATISTICS_COLUMNS),
            store_schema=False,  # read back as ASSIGNMENTS_SCHEMA (see ENCODED_SCHEMA)
        )
        # the CSV is written chunk by chunk into one stream (header first), so that each
        # chunk can carry its own column types: see _csv_chunk
        self._csv = pa.OSFile(str(csv_path), "wb")
        self._csv_digest = hashlib.sha256()
        self.csv_sha256: str | None = None
        try:
            header = pa.BufferOutputStream()
            pacsv.write_csv(csv_schema.empty_table(), header, write_options=_CSV_HEADER)
            self._write_csv(header.getvalue())
        except BaseException:
            self._parquet.close()
            self._csv.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assignments")
        self._pending: Future[None] | None = None
        # set by finish() (the caller's thread) once no chunk is to come; read, and the CSV
        # announced, only on the writer thread
        self._then: Callable[[str], None] | None = None
        self._finishing = False

    def _write_csv(self, data: pa.Buffer) -> None:
        self._csv.write(data)
        self._csv_digest.update(memoryview(data))  # releases the GIL (large buffers)

    def _close_csv(self) -> None:
        if not self._csv.closed:
            self._csv.close()
            self.csv_sha256 = self._csv_digest.hexdigest()

    def _announce_csv(self) -> None:
        """Close the CSV and announce it (writer thread; once: until close(), only this
        closes the CSV)."""
        if self._csv.closed:
            return
        self._close_csv()
        if self._then is not None:
            self._then("csv")

    def _write_now(self, table: pa.Table) -> None:
        # the CSV first: it is the larger file, the one whose upload a caller waits for
        self._write_csv(csv_rows(_csv_chunk(table, self._csv_names)))
        if self._finishing:
            # finish() came while this chunk was being written, so it is the last one: the
            # CSV is complete, and its upload need not wait for this chunk's Parquet
            self._announce_csv()
        self._parquet.write_table(table, row_group_size=table.num_rows)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a background error

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.encoded_schema):
            if not table.schema.equals(self.schema):
                table = table.cast(self.schema)
            table = table.cast(self.encoded_schema)
        self._wait()
        self._pending = self._pool.submit(self._write_now, table)
        self.rows += table.num_rows

    def finish(self, then: Callable[[str], None] | None = None) -> None:
        """Close both files on the background thread once the last chunk is written,
        calling ``then("csv")`` as soon as the CSV is closed and ``then("parquet")`` once
        the Parquet file is (e.g. to start uploading each), while the caller goes on. No
        :meth:`write` may follow. When the last chunk is still being written, the CSV is
        closed and announced as soon as that chunk's CSV rows are in, before its Parquet
        row group is encoded.

        ``then`` is not called for a file whose writing failed; the error surfaces at
        :meth:`close`, which still has to be called (it waits for all of this).
        """
        previous = self._pending
        self._then = then
        self._finishing = True  # after _then: the writer thread reads them in this order

        def close_files() -> None:
            if previous is not None:
                previous.result()  # a failed write: no close-and-announce of partial files
            self._announce_csv()
            self._parquet.close()
            if self._then is not None:
                self._then("parquet")

        self._pending = self._pool.submit(close_files)

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            self._parquet.close()
            self._close_csv()

    def __enter__(self) -> AssignmentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
