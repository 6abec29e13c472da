"""Ingest one customer CSV: local file in -> clean Parquet + reports out.

One pass over the CSV, then passes over a local staging file; memory bounded by
``chunk_rows`` (plus ~3 bytes per row for whole-file de-duplication, see
:func:`_dedupe`):

1. stream the CSV in chunks (Arrow): normalise, convert, validate (pyarrow.compute,
   once per distinct value for low-cardinality columns), apply transaction rules;
   invalid / excluded rows go to ``rejected_rows.csv`` with their original values;
   every chunk is appended to an uncompressed Arrow IPC staging file in ``out_dir``
   (typed columns, a validity flag and the original text, no copies);
2. decide duplicates over the whole file: only rows whose customer id (customer
   tables) or numeric key (transaction tables) repeats can be duplicates, so only their
   raw text is hashed;
3. gather imputation values and outlier bounds from the kept rows (a bounded
   deterministic sample, exact below 200,000 rows);
4. stream the staging file into the clean data, ``data/part-00000.parquet`` and
   ``data/part-00001.parquet`` (:data:`CLEAN_PARTS` files of consecutive rows, encoded
   at once on two threads; snappy, one row group per chunk, dictionary-encoded
   categories): impute, flag outliers, drop duplicates (which also go to
   ``rejected_rows.csv``). Read them with :func:`custseg.dataset.clean_data.read_clean`.

Outputs in ``out_dir``: ``data/`` (accepted only), ``rejected_rows.csv`` (when
any row was removed; columns ``row, reasons`` then the original columns as read),
``quality.json``, ``quality.txt``, ``contract.json`` and ``contract.yaml`` (the contract
used, inferred from the file where no contract pins it; see
:mod:`custseg.ingest.contracts.inference`). Bad input never raises: a
file-level failure gives status ``rejected`` and an error report.

Clean Parquet columns: canonical names of the present, non-personal contract columns
(ids and categories as strings, categories lower-case; booleans as bool; numbers as
float64; dates as timestamp[ns], naive UTC), for transactions ``amount`` and
``is_return``, then ``<name>__missing`` / ``<name>__clipped`` flags for columns that had
any, then ``_row`` (original row number, header = row 1). Key-value metadata
``custseg.contract_kind``, ``custseg.contract_version`` and ``custseg.run_id``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.parquet as pq

from custseg.ingest.cleaning import (
    NUMERIC_TYPES,
    REASON_CODES,
    SAMPLE_K,
    ColumnStats,
    DedupePlan,
    RowSample,
    apply_transaction_rules,
    clean_columns,
    clean_table,
    decide_candidates,
    finalise_stats,
    join_raw,
    mix64,
    new_stats,
    repeated,
    row_hash,
    split_raw,
    text_hash64,
    to_np_bool,
    update_stats,
)
from custseg.ingest.contracts.detect import detect_contract
from custseg.ingest.contracts.inference import (
    ROW_ID,
    Inference,
    contract_yaml,
    infer_contract,
    known_contract,
    read_sample,
)
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, MissingPolicy
from custseg.ingest.quality import QualityReport, example_value
from custseg.ingest.reading import (
    FAMILY_LABELS,
    FileFormat,
    RawChunk,
    ReadError,
    ReadLimits,
    iter_chunks,
    sniff,
)
from custseg.ingest.validation import (
    DECIMAL_LABELS,
    DEFAULT_DATE_FLOOR,
    DEFAULT_FUTURE_TOLERANCE,
    DateBounds,
    HeaderCheck,
    ParseContext,
    check_headers,
    few_distinct,
    reasons_for,
    typed_frame,
    validate_chunk,
)
from custseg.jsonsafe import json_safe
from custseg.layout import CLEAN_DATA_DIR, LEGACY_CLEAN_FILE, clean_part_name
from custseg.prefetch import prefetch
from custseg.spreadsheet import neutralise_array

CLEAN_PARTS = 2  # the clean data's Parquet files, written at once (see _write_clean)
REJECTED_NAME = "rejected_rows.csv"
REPORT_JSON = "quality.json"
REPORT_TEXT = "quality.txt"
CONTRACT_JSON = "contract.json"
_STAGE_NAME = "_stage.arrow"
_ROWID_NAME = "_with_row_ids.csv"  # the upload with a generated row_id column
CONTRACT_YAML = "contract.yaml"
_NULL_MARK = np.uint64(0x9E3779B97F4A7C15)  # mixed into the hash of a missing id
_RAW_COLUMNS_MAX = 256  # wider files stage their raw text joined in one column


@dataclass
class RangeIngest:
    """One byte range of a larger upload, ingested on its own (the fanned-out path,
    docs/fanout.md).

    ``row_offset``: records of the upload before the range, so that row numbers (in
    ``_row``, ``rejected_rows.csv`` and errors) are the upload's. ``cleaning``: the
    finalised statistics of the whole upload (:func:`custseg.fanout.profile.finalised`)
    to impute and clip with, instead of the range's own. ``duplicate_rows``: the upload's
    row numbers (sorted) of rows in this range whose exact copy is an earlier row of
    another range: removed as exact duplicates ("duplicate row"), as the single path
    removes every later copy of a row. ``ingest_file`` sets ``profile`` to the range's
    statistics before they are finalised (mergeable with the other ranges') and, with
    ``hash_rows``, ``hashes`` to its kept rows' :func:`_exact_hashes`.
    """

    row_offset: int = 0
    cleaning: dict[str, ColumnStats] | None = None
    duplicate_rows: np.ndarray | None = None
    hash_rows: bool = False
    profile: tuple[dict[str, ColumnStats], RowSample] | None = None
    hashes: pa.Table | None = None


@dataclass
class IngestResult:
    """What :func:`ingest_file` produced."""

    status: str  # "accepted" or "rejected" (file-level failure; no clean data)
    report: QualityReport
    contract: Contract  # used (detected or given); for a rejected file, the best guess
    clean_path: Path | None  # out_dir/data/ (part-00000.parquet, ...) when accepted
    rejected_rows_path: Path | None  # out_dir/rejected_rows.csv when any row was removed
    report_json_path: Path
    report_text_path: Path
    contract_path: Path


def _arrow_type(spec: ColumnSpec) -> pa.DataType:
    if spec.type in NUMERIC_TYPES:
        return pa.float64()
    if spec.type == ColumnType.BOOLEAN:
        return pa.bool_()
    if spec.type in (ColumnType.DATE, ColumnType.DATETIME):
        return pa.timestamp("ns")
    return pa.string()


def _spreadsheet_safe(values: pd.Series | list[str]) -> list[str] | pd.Series:
    """Text cells a spreadsheet would run as formulas prefixed with ``'``, as in
    ``assignments.csv`` (:func:`custseg.spreadsheet.neutralise_array`); numbers kept."""
    if isinstance(values, list):
        arr = pa.array(values, type=pa.string())
        return [str(v) for v in neutralise_array(arr, keep_numbers=True).to_pylist()]
    arr = pa.array(values.astype("str").array, from_pandas=True)
    safe = neutralise_array(arr, keep_numbers=True)
    return pd.Series(safe.to_pandas(), index=values.index, dtype=object)


class _RejectedWriter:
    """Appends removed rows to ``rejected_rows.csv`` (opened on first use).

    Every cell, header included, is spreadsheet-safe (see :func:`_spreadsheet_safe`).
    """

    def __init__(self, path: Path, headers: list[str]) -> None:
        self.path = path
        self.headers = list(_spreadsheet_safe(headers))
        self.rows = 0

    def write(self, rows: np.ndarray, reasons: np.ndarray, raw: pd.DataFrame) -> None:
        if len(rows) == 0:
            return
        frame = pd.DataFrame(
            {
                "row": np.asarray(rows, dtype="int64"),
                "reasons": _spreadsheet_safe(pd.Series(reasons, dtype=object)),
            }
        )
        body = raw.reset_index(drop=True)
        body = pd.DataFrame({i: _spreadsheet_safe(body[c]) for i, c in enumerate(body.columns)})
        body.columns = pd.Index(self.headers[: body.shape[1]])
        out = pd.concat([frame, body], axis=1)
        # CRLF line ends, so values holding a bare CR (or LF) are quoted too
        out.to_csv(self.path, mode="a", header=self.rows == 0, index=False, lineterminator="\r\n")
        self.rows += len(rows)


def _stage_schema(
    specs: list[ColumnSpec], contract: Contract, n_raw: int, amount_added: bool
) -> pa.Schema:
    fields = [pa.field(s.name, _arrow_type(s)) for s in specs]
    if contract.is_transactions:
        if amount_added:
            fields.append(pa.field("amount", pa.float64()))
        fields.append(pa.field("is_return", pa.bool_()))
    fields += [
        pa.field("_row", pa.int64()),
        pa.field("_key", pa.uint64()),
        pa.field("_nmiss", pa.int32()),
        pa.field("_valid", pa.bool_()),
    ]
    if n_raw <= _RAW_COLUMNS_MAX:
        fields += [pa.field(f"_raw{i}", pa.string()) for i in range(n_raw)]
    else:
        fields.append(pa.field("_raw", pa.large_string()))
    return pa.schema(fields)


class _Stage:
    """The staging file: an uncompressed Arrow IPC file, one record batch per chunk.

    Holds every row read (``_valid`` False for rows rejected in pass 1, whose other
    columns are then meaningless): the typed columns, ``_row``, ``_key``, ``_nmiss`` and
    the raw text (``_raw0``, ``_raw1``, ... or one joined ``_raw`` for very wide files).
    Staging rejected rows too avoids copying every chunk to filter a few rows out.
    Reading selects columns and loads one batch at a time (no memory map, so resident
    memory stays bounded by a chunk).
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._sink: Any = None
        self._writer: Any = None
        self.rows = 0
        self.valid_rows = 0
        self._valid: list[np.ndarray] = []

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, self.schema)
        self._writer.write_table(table.combine_chunks(), max_chunksize=max(table.num_rows, 1))
        valid = to_np_bool(table.column("_valid"))
        self._valid.append(valid)
        self.rows += table.num_rows
        self.valid_rows += int(valid.sum())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()

    @property
    def batch_rows(self) -> list[int]:
        """Rows of each staged batch, in order."""
        return [len(v) for v in self._valid]

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The staged batches in order, restricted to ``columns``."""
        with self.reader(columns) as batch:
            for i in range(len(self._valid)):
                yield batch(i)

    @contextlib.contextmanager
    def reader(self, columns: list[str]) -> Iterator[Callable[[int], pa.RecordBatch]]:
        """Random access: a function of a batch number giving that staged batch,
        restricted to ``columns``."""
        fields = [self.schema.get_field_index(c) for c in columns]
        options = pa.ipc.IpcReadOptions(included_fields=sorted(fields), use_threads=False)
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source, options=options)
            yield lambda i: reader.get_batch(i).select(columns)

    def read(self, columns: list[str]) -> pa.Table:
        batches = list(self.batches(columns))
        if not batches:
            return self.schema.empty_table().select(columns)
        return pa.Table.from_batches(batches).combine_chunks()

    @property
    def valid_batches(self) -> list[np.ndarray]:
        """Per staged batch, in order: which of its rows passed pass 1 (bool)."""
        return list(self._valid)

    @property
    def valid(self) -> np.ndarray:
        """Per staged row: passed pass 1 (bool)."""
        return np.concatenate(self._valid) if self._valid else np.zeros(0, dtype=bool)

    def gather(self, column: str, positions: np.ndarray) -> pa.Array:
        """The values of ``column`` at the sorted stage ``positions``."""
        return self.take([column], positions).column(0).combine_chunks()

    def take(self, columns: list[str], positions: np.ndarray) -> pa.Table:
        """The rows at the sorted stage ``positions``, restricted to ``columns``."""
        parts: list[pa.RecordBatch] = []
        offset = 0
        for batch in self.batches(columns):
            lo, hi = np.searchsorted(positions, [offset, offset + batch.num_rows])
            if hi > lo:
                parts.append(batch.take(pa.array(positions[lo:hi] - offset)))
            offset += batch.num_rows
        return pa.Table.from_batches(parts, schema=self.schema.empty_table().select(columns).schema)

    def raw_columns(self) -> list[str]:
        return [n for n in self.schema.names if n.startswith("_raw")]


def _write_outputs(
    report: QualityReport, contract: Contract, out_dir: Path
) -> tuple[Path, Path, Path]:
    json_path = out_dir / REPORT_JSON
    text_path = out_dir / REPORT_TEXT
    contract_path = out_dir / CONTRACT_JSON
    json_path.write_text(
        json.dumps(json_safe(report.to_dict()), indent=2, default=str, allow_nan=False),
        encoding="utf-8",
    )
    text_path.write_text(report.to_text(), encoding="utf-8")
    contract_path.write_text(
        json.dumps(contract.model_dump(mode="json"), indent=2), encoding="utf-8"
    )
    (out_dir / CONTRACT_YAML).write_text(contract_yaml(contract), encoding="utf-8")
    return json_path, text_path, contract_path


def ingest_file(
    input_path: Path,
    out_dir: Path,
    *,
    source_name: str,
    dataset: str,
    run_id: str,
    contract: Contract | None = None,
    chunk_rows: int = 250_000,
    upload_time: dt.datetime | None = None,
    future_tolerance: dt.timedelta = DEFAULT_FUTURE_TOLERANCE,
    date_floor: dt.date = DEFAULT_DATE_FLOOR,
    limits: ReadLimits | None = None,
    known: Sequence[Contract] = (),
    ranged: RangeIngest | None = None,
) -> IngestResult:
    """Validate and clean ``input_path`` into ``out_dir``; never raises for bad input.

    ``source_name`` is how messages name the file (e.g. the S3 key). ``contract`` None
    infers one from the file (:mod:`custseg.ingest.contracts.inference`), unless one of
    ``known`` (the contracts of the dataset's earlier uploads) names every header of the
    file: then that one reads it, so a small daily file reads like its history.
    ``upload_time`` (default: now, UTC), ``future_tolerance`` and ``date_floor``: dates
    after the upload time plus the tolerance, or before the floor, reject their row
    (:class:`custseg.ingest.validation.DateBounds`).
    ``limits`` (default :class:`ReadLimits`) bound what the file may hold.
    ``ranged``: the file is one range of a larger upload (:class:`RangeIngest`).
    """
    bounds = DateBounds(
        upload_time=upload_time or dt.datetime.now(dt.UTC),
        future_tolerance=future_tolerance,
        floor=date_floor,
    )
    t_start = time.perf_counter()
    input_path, out_dir = Path(input_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_dir = out_dir / CLEAN_DATA_DIR
    rejected_path = out_dir / REJECTED_NAME
    stage_path = out_dir / _STAGE_NAME
    shutil.rmtree(clean_dir, ignore_errors=True)
    for stale in (out_dir / LEGACY_CLEAN_FILE, rejected_path, stage_path):
        stale.unlink(missing_ok=True)
    report = QualityReport(source=source_name, dataset=dataset, run_id=run_id)
    report.date_bounds = bounds.to_dict()
    given = contract
    used = contract
    try:
        used, rejected_rows = _run(
            input_path,
            out_dir,
            report,
            given,
            chunk_rows,
            clean_dir,
            rejected_path,
            stage_path,
            bounds,
            limits or ReadLimits(),
            known,
            ranged,
        )
    finally:
        stage_path.unlink(missing_ok=True)
        (out_dir / _ROWID_NAME).unlink(missing_ok=True)
    if report.status == "rejected":
        shutil.rmtree(clean_dir, ignore_errors=True)
        report.rows_kept = 0
        report.customers = 0
        report.rows_rejected = report.rows_read
        report.rows_invalid = report.rows_read - report.rows_duplicate - report.rows_excluded
    report.timings_ms["total"] = (time.perf_counter() - t_start) * 1000
    report.check_invariant()
    json_path, text_path, contract_path = _write_outputs(report, used, out_dir)
    return IngestResult(
        status=report.status,
        report=report,
        contract=used,
        clean_path=clean_dir if report.status == "accepted" else None,
        rejected_rows_path=rejected_path if rejected_rows and rejected_path.exists() else None,
        report_json_path=json_path,
        report_text_path=text_path,
        contract_path=contract_path,
    )


def decide_contract(
    input_path: Path,
    *,
    source_name: str,
    contract: Contract | None = None,
    limits: ReadLimits | None = None,
    known: Sequence[Contract] = (),
) -> tuple[Contract, list[dict[str, Any]]]:
    """The contract :func:`ingest_file` reads ``input_path`` with (same arguments), and
    the file errors that reject the file before its rows are read (empty list: none).

    The fanned-out path decides an upload's contract once, from the upload's head, with
    this (docs/fanout.md): each range is then read with it.
    """
    report = QualityReport(source=source_name, dataset="", run_id="")
    used, fmt = _sniff_contract(input_path, report, contract, limits or ReadLimits(), known)
    if fmt is not None:
        _check_header(fmt, used, report)
    return used, list(report.errors)


class _Laps:
    """Times the pipeline's steps into ``report.timings_ms`` (ms since the last lap)."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        self.timer = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.report.timings_ms[name] = (now - self.timer) * 1000
        self.timer = now


@dataclass
class _Staged:
    """What pass 1 leaves for the later passes."""

    specs: list[ColumnSpec]  # the contract's columns present in the file
    stage_specs: list[ColumnSpec]  # those plus a computed ``amount``
    schema: pa.Schema  # the staging file's
    stage: _Stage
    rejected: _RejectedWriter
    stats: dict[str, Any]  # of the rows that passed pass 1
    sample: RowSample
    stat_cols: list[str]
    copies_elsewhere: bool = False  # rows removed as copies of rows in other ranges


def _run(
    input_path: Path,
    out_dir: Path,
    report: QualityReport,
    given: Contract | None,
    chunk_rows: int,
    clean_dir: Path,
    rejected_path: Path,
    stage_path: Path,
    bounds: DateBounds,
    limits: ReadLimits,
    known: Sequence[Contract],
    ranged: RangeIngest | None = None,
) -> tuple[Contract, int]:
    """The pipeline; returns (contract used, rows written to rejected_rows.csv)."""
    lap = _Laps(report)
    contract, fmt = _sniff_contract(input_path, report, given, limits, known)
    if fmt is None:
        return contract, 0
    if report.schema.get("generated_id"):
        try:
            input_path = _with_row_ids(input_path, fmt, out_dir / _ROWID_NAME)
            fmt = sniff(input_path, limits)
        except ReadError as exc:
            report.file_error(exc.code, exc.message, row=exc.row)
            return contract, 0
    lap("sniff")
    header = _check_header(fmt, contract, report)
    if header is None:
        return contract, 0
    staged = _pass1(
        input_path, fmt, header, contract, chunk_rows, rejected_path, stage_path, bounds, report,
        ranged.row_offset if ranged else 0,
    )  # fmt: skip
    lap("pass1")
    if not _pass1_left_rows(report, staged):
        return contract, staged.rejected.rows
    _release_memory()
    plan, dropped_from = _dedupe(staged.stage, contract)
    copies = ranged.duplicate_rows if ranged is not None else None
    if copies is not None and _drop_rows(staged.stage, plan, copies):
        dropped_from = None  # not all of them candidates: written from the stage
        staged.copies_elsewhere = True
    _release_memory()
    report.duplicates = {"exact": plan.exact, "by_id": plan.by_id}
    report.customers = plan.customers
    lap("dedupe")
    stats = _kept_stats(staged, plan, ranged)
    if ranged is not None and ranged.hash_rows:
        ranged.hashes = _exact_hashes(staged.stage, plan.keep)
    lap("stats")
    out_schema = _clean_schema(staged.stage_specs, stats, contract, report.run_id)
    imputed, clipped = _write_clean(staged, plan, stats, out_schema, clean_dir)
    if plan.exact or plan.by_id:  # duplicates -> rejected_rows.csv with their original text
        _reject_duplicates(staged.stage, plan, len(fmt.headers), staged.rejected, dropped_from)
    _report_kept(report, plan, out_schema)
    _report_cleaning(report, stats, imputed, clipped)
    lap("pass2")
    return contract, staged.rejected.rows


def _sniff_contract(
    input_path: Path,
    report: QualityReport,
    given: Contract | None,
    limits: ReadLimits,
    known: Sequence[Contract] = (),
) -> tuple[Contract, FileFormat | None]:
    """Sniff the file's format and infer its contract from a sample of its rows (a given
    contract pins the columns it lists, see :mod:`custseg.ingest.contracts.inference`);
    the format is None when the file cannot be read (a file error reported)."""
    fmt: FileFormat | None = None
    try:
        fmt = sniff(input_path, limits)
    except ReadError as exc:
        report.file_error(exc.code, exc.message, row=exc.row)
    except OSError as exc:
        report.file_error("undecodable", f"the file cannot be read: {exc.strerror}")
    if fmt is None:
        contract, reason = (given, "given by the caller") if given else detect_contract([])
    else:
        inference = _infer(input_path, fmt, given, known)
        contract, reason = inference.contract, inference.reason
        report.schema = inference.to_dict()
        for w in inference.warnings:
            report.warn(w)
    report.contract_kind, report.contract_version = contract.kind, contract.version
    report.contract_reason = reason
    if fmt is not None:
        report.format = fmt.to_dict()
        for w in fmt.warnings:
            report.warn(w)
    return contract, fmt


def _infer(
    input_path: Path, fmt: FileFormat, given: Contract | None, known: Sequence[Contract] = ()
) -> Inference:
    """The inferred contract of the file (a sample of its first rows); a known contract
    that names every header reads the file as the dataset's earlier uploads were read."""
    try:
        sample = read_sample(input_path, fmt)
    except ReadError:  # the full read reports it, with its row
        sample = pd.DataFrame(
            {str(i): pd.Series([], dtype=object) for i in range(len(fmt.headers))}
        )
    reason = None
    earlier = known_contract(fmt.headers, known) if given is None else None
    if earlier is not None:
        given = earlier
        reason = f"the dataset's {earlier.kind} contract (an earlier upload with these headers)"
    elif given is None:  # campaign results are recognised by their headers, then inferred
        detected, why = detect_contract(fmt.headers)
        if detected.kind == "campaign":
            given, reason = detected, f"{why}; other columns inferred"
    inference = infer_contract(fmt.headers, sample, given)
    if reason is not None:
        inference.reason = reason
    return inference


def _with_row_ids(input_path: Path, fmt: FileFormat, out_path: Path) -> Path:
    """A copy of the file with a first column ``row_id``: each row's number in the file
    (header = row 1), the stable id of a table without a customer id column. Rows with
    the wrong number of fields are copied as they are (the ingest rejects them)."""
    with out_path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([ROW_ID, *fmt.headers])
        for chunk in iter_chunks(input_path, fmt, chunk_rows=100_000):
            rows: list[tuple[int, list[Any]]] = []
            if len(chunk):
                cols = [chunk.table.column(i).to_pylist() for i in range(chunk.table.num_columns)]
                rows += [
                    (int(r), [str(r), *(v for v in vals)])
                    for r, *vals in zip(chunk.rows, *cols, strict=True)
                ]
            rows += [(b.row, [str(b.row), *b.fields]) for b in chunk.bad]
            writer.writerows(values for _, values in sorted(rows, key=lambda t: t[0]))
    return out_path


def _check_header(fmt: FileFormat, contract: Contract, report: QualityReport) -> HeaderCheck | None:
    """Map the headers to the contract's columns; None when they fail it (file errors
    reported)."""
    header = check_headers(fmt.headers, contract)
    report.columns_mapped = dict(header.mapped)
    report.columns_ignored = list(header.ignored)
    if header.ignored:
        names = ", ".join(header.ignored[:20])
        more = len(header.ignored) - 20
        report.warn(
            "columns not in the contract, ignored: "
            + names
            + (f" and {more:,} more (see columns_ignored)" if more > 0 else "")
        )
    for issue in header.issues:
        report.file_error(issue.code, issue.message, row=issue.row, column=issue.column)
    return None if header.issues else header


def _pass1(
    input_path: Path,
    fmt: FileFormat,
    header: HeaderCheck,
    contract: Contract,
    chunk_rows: int,
    rejected_path: Path,
    stage_path: Path,
    bounds: DateBounds,
    report: QualityReport,
    row_offset: int = 0,
) -> _Staged:
    """Pass 1: validate every chunk, write its rejected rows, stage it and fold its valid
    rows into the statistics; report what the parsing found."""
    specs = clean_columns(contract, list(header.positions))
    amount_added = contract.is_transactions and "amount" not in header.positions
    stage_specs = [*specs, contract.column("amount")] if amount_added else specs
    schema = _stage_schema(specs, contract, len(fmt.headers), amount_added)
    # Statistics of the rows that pass pass 1, folded in as they are staged: when the
    # dedupe drops none of them (the usual case) they are the statistics of the kept rows
    # and the statistics pass over the staging file is skipped.
    staged = _Staged(
        specs=specs,
        stage_specs=stage_specs,
        schema=schema,
        stage=_Stage(stage_path, schema),
        rejected=_RejectedWriter(rejected_path, fmt.headers),
        stats=new_stats(stage_specs),
        sample=RowSample(k=SAMPLE_K + _SAMPLE_RESERVE),
        stat_cols=[
            s.name
            for s in stage_specs
            if s.type in (*NUMERIC_TYPES, ColumnType.CATEGORY, ColumnType.BOOLEAN)
        ],
    )
    ctx = ParseContext(delimiter=fmt.delimiter, bounds=bounds)
    tx_counts: Counter[str] = Counter()
    _validate_and_stage(
        input_path, fmt, header, contract, chunk_rows, ctx, report, tx_counts, staged,
        amount_added, row_offset,
    )  # fmt: skip
    _report_parsing(report, ctx, specs)
    if contract.is_transactions:
        report.transactions = _transactions_summary(tx_counts, contract, amount_added)
    return staged


def _validate_and_stage(
    input_path: Path,
    fmt: FileFormat,
    header: HeaderCheck,
    contract: Contract,
    chunk_rows: int,
    ctx: ParseContext,
    report: QualityReport,
    tx_counts: Counter[str],
    staged: _Staged,
    amount_added: bool,
    row_offset: int = 0,
) -> None:
    """Pass 1's loop over the file's chunks; a read error becomes a file error.

    Three chunks at once: the next one is parsed on a thread (prefetch), this one
    validated on the caller's, the previous one staged and folded into the statistics on
    a third (the only thread that touches the stage and the statistics; at most one
    chunk waits for it). Pass 1 at 1M rows: 0.93 -> 0.75 s (alternated runs).
    """
    headers, stage, rejected = fmt.headers, staged.stage, staged.rejected
    staging = ThreadPoolExecutor(1, thread_name_prefix="stage")
    pending: Future[None] | None = None
    try:
        chunks = _shifted(iter_chunks(input_path, fmt, chunk_rows=chunk_rows), row_offset)
        for chunk in prefetch(chunks):
            report.rows_read += len(chunk) + len(chunk.bad)
            if chunk.bad:
                _reject_malformed(chunk.bad, headers, report, rejected)
            if len(chunk) == 0:
                continue
            table = _pass1_chunk(
                chunk.table, chunk.rows, header, contract, ctx, report, rejected, tx_counts,
                staged.schema, amount_added,
            )  # fmt: skip
            if table.num_rows:
                if pending is not None:
                    pending.result()
                pending = staging.submit(
                    _stage_and_fold, stage, staged.stats, staged.sample, table, staged.stat_cols
                )
        if pending is not None:
            pending.result()
    except ReadError as exc:
        report.file_error(exc.code, exc.message, row=exc.row)
    finally:
        staging.shutdown(wait=True)
        stage.close()


def _shifted(chunks: Iterator[RawChunk], row_offset: int) -> Iterator[RawChunk]:
    """The chunks with their row numbers (valid and malformed records) moved by
    ``row_offset``: a range's rows numbered as in the whole upload."""
    for chunk in chunks:
        if row_offset:
            chunk.rows = chunk.rows + row_offset
            chunk.bad = [dataclasses.replace(b, row=b.row + row_offset) for b in chunk.bad]
        yield chunk


def _report_parsing(report: QualityReport, ctx: ParseContext, specs: list[ColumnSpec]) -> None:
    """Report the warnings, date formats and decimal separators pass 1 found or used."""
    for w in ctx.warnings:
        report.warn(w)
    for col, fam in ctx.date_formats.items():
        report.date_formats[col] = FAMILY_LABELS.get(fam, fam)
    for spec in specs:
        if spec.date_format:
            report.date_formats[spec.name] = spec.date_format
        decimal = spec.decimal or ctx.decimals.get(spec.name)
        if decimal:
            report.decimal_separators[spec.name] = DECIMAL_LABELS[decimal]


_TX_COUNTS = (
    "cancellations",
    "returns",
    "returns_netted",
    "returns_excluded",
    "negative_quantity",
    "non_positive_quantity",
    "non_positive_quantity_excluded",
    "non_positive_price",
    "non_positive_price_excluded",
    "amounts_computed",
)


def _transactions_summary(
    tx_counts: Counter[str], contract: Contract, amount_added: bool
) -> dict[str, Any]:
    """The quality report's ``transactions`` section: the transaction rules' counts, where
    the amount came from and the policy applied."""
    summary: dict[str, Any] = {name: tx_counts[name] for name in _TX_COUNTS}
    summary["amount_source"] = "computed (quantity x unit_price)" if amount_added else "file"
    summary["policy"] = (
        contract.transactions.model_dump(mode="json") if contract.transactions else None
    )
    return summary


def _pass1_left_rows(report: QualityReport, staged: _Staged) -> bool:
    """Whether the file goes on after pass 1: False when it was rejected, had no data
    rows or no valid one (a file error reported)."""
    if report.status == "rejected":
        return False
    if report.rows_read == 0:
        report.file_error("header_only", "the file has a header but no data rows", row=2)
        return False
    if staged.stage.valid_rows == 0:
        report.file_error(
            "no_valid_rows",
            f"every one of the {report.rows_read:,} data rows was rejected "
            "(see rejected_rows.csv and rejected_by_reason)",
        )
        return False
    return True


def _kept_stats(
    staged: _Staged, plan: DedupePlan, ranged: RangeIngest | None = None
) -> dict[str, Any]:
    """The finalised statistics of the kept rows: pass 1's, less the exact duplicates the
    dedupe removed (:func:`_without_duplicates`), else folded again over the staged rows
    the plan keeps. For a
    range: ``ranged.profile`` gets them before they are finalised, and the whole
    upload's (``ranged.cleaning``) are used when given."""
    kept = _without_duplicates(staged, plan)
    stats, sample = kept if kept is not None else _fold_kept(staged, plan)
    if ranged is not None:
        ranged.profile = (copy.deepcopy(stats), sample)
        if ranged.cleaning is not None:
            staged.sample = RowSample(k=0)
            return {n: ranged.cleaning.get(n, st) for n, st in stats.items()}
    finalise_stats(stats, sample)
    staged.sample = RowSample(k=0)  # free the sample: only the finalised values are used
    return stats


def _drop_rows(stage: _Stage, plan: DedupePlan, rows: np.ndarray) -> int:
    """Remove the kept staged rows whose upload row number is among ``rows`` as exact
    duplicates (in ``plan``, in place); how many."""
    offset, dropped = 0, 0
    for batch in stage.batches(["_row"]):
        numbers = batch.column(0).to_numpy()
        where = np.flatnonzero(np.isin(numbers, rows) & plan.keep[offset : offset + len(numbers)])
        plan.keep[where + offset] = False
        plan.code[where + offset] = 1
        dropped += where.size
        offset += len(numbers)
    plan.exact += dropped
    return dropped


HASH_SCHEMA = pa.schema([("row", pa.int64()), ("h1", pa.int64()), ("h2", pa.int64())])
"""The columns of :func:`_exact_hashes`: the upload's row number and two 64-bit hashes (as
signed integers, which Athena and Parquet hold)."""


def _exact_hashes(stage: _Stage, keep: np.ndarray) -> pa.Table:
    """Per kept staged row: its row number, :func:`~custseg.ingest.cleaning.text_hash64`
    of its joined raw text and ``_key``, the bits of its converted values. Exact copies
    hash equal; rows with other text collide with odds of about 2^-64 even when every
    converted value is equal."""
    tables, offset = [], 0
    raw_cols = stage.raw_columns()
    for batch in stage.batches(["_row", "_key", *raw_cols]):
        table = pa.Table.from_batches([batch]).filter(pa.array(keep[offset : offset + len(batch)]))
        offset += batch.num_rows
        h1 = text_hash64(_joined_raw(table, raw_cols)).view(np.int64)
        h2 = table.column("_key").to_numpy().view(np.int64)
        tables.append(pa.table([table.column("_row"), h1, h2], schema=HASH_SCHEMA))
    return pa.concat_tables(tables) if tables else HASH_SCHEMA.empty_table()


_SAMPLE_RESERVE = 4_096
"""Rows pass 1's sample holds beyond ``SAMPLE_K``: the rows that replace sampled rows the
dedupe removes (:func:`_without_duplicates`)."""


def _without_duplicates(
    staged: _Staged, plan: DedupePlan
) -> tuple[dict[str, Any], RowSample] | None:
    """Pass 1's statistics and sample without the rows the dedupe removed, when every
    one of them is an exact duplicate (a copy of a row that stays) and the sample's
    reserve replaces those it held: the statistics of the kept rows, without folding
    them again. None when that cannot be told (repeated ids removed, reserve used up)."""
    stage = staged.stage
    dropped = np.flatnonzero(stage.valid & ~plan.keep)
    if plan.by_id or dropped.size > plan.exact or staged.copies_elsewhere:
        return None
    if not dropped.size:  # the sample's reserve let go; the statistics as they are
        sample = staged.sample.without(dropped, SAMPLE_K)
        return None if sample is None else (staged.stats, sample)
    table = stage.take([*staged.stat_cols, "_row"], dropped)
    rows = table.column("_row").to_numpy()
    sample = staged.sample.without(rows, SAMPLE_K)
    if sample is None:
        return None
    gone = new_stats(staged.stage_specs)
    update_stats(gone, table, RowSample(k=table.num_rows), rows)
    stats = {name: st.without_copies(gone[name]) for name, st in staged.stats.items()}
    return stats, sample


def _fold_kept(staged: _Staged, plan: DedupePlan) -> tuple[dict[str, Any], RowSample]:
    """The statistics and sample of the staged rows the plan keeps, folded again."""
    stats = new_stats(staged.stage_specs)
    sample = RowSample(k=SAMPLE_K)
    offset = 0
    for batch in staged.stage.batches([*staged.stat_cols, "_row"]):
        keep = plan.keep[offset : offset + batch.num_rows]
        offset += batch.num_rows
        _fold_stats(stats, sample, pa.Table.from_batches([batch]), keep)
    return stats, sample


def _clean_schema(
    stage_specs: list[ColumnSpec], stats: dict[str, Any], contract: Contract, run_id: str
) -> pa.Schema:
    """The clean Parquet's schema: the columns, ``is_return`` for transactions, the
    ``__missing`` / ``__clipped`` flags the statistics call for, ``_row``; with the
    contract and run in its key-value metadata."""
    out_fields = [pa.field(s.name, _arrow_type(s)) for s in stage_specs]
    if contract.is_transactions:
        out_fields.append(pa.field("is_return", pa.bool_()))
    for s in stage_specs:
        st = stats[s.name]
        if st.flags_missing:
            out_fields.append(pa.field(f"{s.name}__missing", pa.bool_()))
        if st.will_clip:
            out_fields.append(pa.field(f"{s.name}__clipped", pa.bool_()))
    out_fields.append(pa.field("_row", pa.int64()))
    metadata = {
        b"custseg.contract_kind": contract.kind.encode(),
        b"custseg.contract_version": contract.version.encode(),
        b"custseg.run_id": run_id.encode(),
    }
    return pa.schema(out_fields, metadata=metadata)


def _part_turns(batches: int) -> tuple[list[list[int]], list[int], dict[int, int]]:
    """The staged batches of each of the (at most :data:`CLEAN_PARTS`) clean parts
    (consecutive batches), the order to clean them in (taking turns between the parts:
    0, h, 1, h+1, ...) and the part of each batch."""
    parts = [[int(b) for b in p] for p in np.array_split(np.arange(batches), CLEAN_PARTS)]
    parts = [p for p in parts if p]
    turns = [p[i] for i in range(max(map(len, parts), default=0)) for p in parts if i < len(p)]
    part_of = {b: k for k, p in enumerate(parts) for b in p}
    return parts, turns, part_of


def _write_clean(
    staged: _Staged,
    plan: DedupePlan,
    stats: dict[str, Any],
    out_schema: pa.Schema,
    clean_dir: Path,
) -> tuple[Counter[str], Counter[str]]:
    """Pass 2: clean the kept staged rows into the clean Parquet parts; returns the
    counts of imputed and clipped values per column.

    Categories dictionary-encoded, unique ids and numbers plain; snappy; one row group
    per chunk; min/max statistics for numbers, dates and flags only: the rows keep the
    upload's order, so a text column's min/max spans about every value in each row
    group and prunes nothing (Athena skips row groups of a dictionary-encoded column by
    its dictionary), and they took a sixth of the encoding time (0.05 s per 1M rows).

    The clean data is CLEAN_PARTS Parquet files of consecutive rows (part 0 the first
    half of the chunks, part 1 the second), written at once, each by its own thread:
    Arrow encodes a file's row groups one after another, on one core, and the encoding
    was most of pass 2 (0.30-0.39 s of 0.33-0.43 at 1M rows). The chunks are cleaned in
    turns (0, h, 1, h+1, ...) so that both writers are kept busy; reading the parts in
    name order gives the rows in the upload's order.
    """
    imputed: Counter[str] = Counter()
    clipped: Counter[str] = Counter()
    stage = staged.stage
    id_cols = {s.name for s in staged.stage_specs if s.type == ColumnType.ID}
    dictionary = [f.name for f in out_schema if pa.types.is_string(f.type)]
    dictionary = [name for name in dictionary if name not in id_cols]
    statistics = [f.name for f in out_schema if not pa.types.is_string(f.type)]
    columns = [n for n in staged.schema.names if n in out_schema.names]
    sizes = stage.batch_rows
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parts, turns, part_of = _part_turns(len(sizes))
    clean_dir.mkdir(parents=True, exist_ok=True)
    with stage.reader(columns) as staged_batch:
        # numbers with few distinct values (ages, tenures, scores) dictionary-encoded too,
        # and the row numbers delta-encoded: 28.7 -> 21.1 MB at 1M rows, as fast to write
        # and faster to read (the uploads and the scoring read it)
        if sizes:
            dictionary += few_valued_numbers(staged_batch(0), list(out_schema.names))
        with contextlib.ExitStack() as files:
            writers = [
                files.enter_context(
                    pq.ParquetWriter(
                        clean_dir / clean_part_name(k),
                        out_schema,
                        compression="snappy",
                        use_dictionary=dictionary,
                        write_statistics=statistics,
                        column_encoding={"_row": "DELTA_BINARY_PACKED"},
                    )
                )
                for k in range(max(len(parts), 1))
            ]
            background = files.enter_context(
                ThreadPoolExecutor(len(writers), thread_name_prefix="clean-writer")
            )
            # Each chunk is encoded and compressed on its part's thread (Arrow releases
            # the GIL) while the next ones are cleaned; at most one chunk waits per part.
            pending: dict[int, Future[None]] = {}
            for b in turns:
                keep = plan.keep[offsets[b] : offsets[b + 1]]
                if not keep.any():
                    continue
                kept = pa.Table.from_batches([staged_batch(b)])
                if not keep.all():
                    kept = kept.filter(pa.array(keep))
                cleaned, imp, clip = clean_table(kept, stats)
                imputed.update(imp)
                clipped.update(clip)
                k = part_of[b]
                if k in pending:
                    pending.pop(k).result()
                pending[k] = background.submit(
                    writers[k].write_table, cleaned.select(out_schema.names).cast(out_schema)
                )
            for future in pending.values():
                future.result()
    return imputed, clipped


def _report_kept(report: QualityReport, plan: DedupePlan, out_schema: pa.Schema) -> None:
    """Report the duplicates removed, the rows rejected and kept, and the clean columns."""
    report.rows_duplicate = plan.exact + plan.by_id
    if plan.exact:
        report.rejected_by_reason["duplicate row"] += plan.exact
    if plan.by_id:
        report.rejected_by_reason["duplicate customer id"] += plan.by_id
    report.rows_rejected = report.rows_invalid + report.rows_excluded + report.rows_duplicate
    report.rows_kept = int(plan.keep.sum())
    report.clean_columns = list(out_schema.names)


def _reject_malformed(
    bad: list[Any], headers: list[str], report: QualityReport, rejected: _RejectedWriter
) -> None:
    width = len(headers)
    rows = np.asarray([b.row for b in bad], dtype="int64")
    reasons = np.asarray(
        [f"row: has {b.actual} fields, expected {b.expected}" for b in bad], dtype=object
    )
    padded = [(b.fields + [""] * width)[:width] for b in bad]
    raw = pd.DataFrame(padded, columns=[str(i) for i in range(width)])
    rejected.write(rows, reasons, raw)
    report.rows_invalid += len(bad)
    report.rejected_by_reason["row: wrong number of fields"] += len(bad)
    for b in bad[:3]:
        report.row_error(b.row, "(row)", f"has {b.actual} fields, expected {b.expected}", None)


def _pass1_chunk(
    raw: pa.Table,
    rows: np.ndarray,
    header: HeaderCheck,
    contract: Contract,
    ctx: ParseContext,
    report: QualityReport,
    rejected: _RejectedWriter,
    tx_counts: Counter[str],
    schema: pa.Schema,
    amount_added: bool,
) -> pa.Table:
    """Validate one raw chunk; write its rejected rows; return the rows to stage."""
    val = validate_chunk(raw, header, contract, ctx)
    arrays = dict(val.arrays)
    n = raw.num_rows
    for col, reps in val.repairs.items():
        for reason, count in reps.items():
            report.repair(col, reason, count)
    failures = [(m, f"{col}: {why}") for m, col, why in val.failures]
    for mask, col, why in val.failures:
        report.rejected_by_reason[f"{col}: {why}"] += int(mask.sum())
        first = int(np.flatnonzero(mask)[0])
        value = raw.column(header.positions[col])[first].as_py()
        report.row_error(int(rows[first]), col, why, example_value(value, personal=False))
    invalid = val.invalid
    excluded = np.zeros(n, dtype=bool)
    if contract.is_transactions:
        tx_cols = [c for c in ("invoice_id", "quantity", "unit_price", "amount") if c in arrays]
        typed = typed_frame({c: arrays[c] for c in tx_cols}, None, n)
        tx = apply_transaction_rules(typed, contract, ~invalid)
        overflow = np.isinf(tx.amount) & ~invalid  # e.g. quantity 1e308 x price 10
        if overflow.any():
            why = "amount: not a finite number (quantity x unit_price overflows)"
            failures.append((overflow, why))
            report.rejected_by_reason[why] += int(overflow.sum())
            first = int(np.flatnonzero(overflow)[0])
            report.row_error(int(rows[first]), "amount", why.split(": ", 1)[1], None)
            invalid = invalid | overflow
        tx_counts.update(tx.counts)
        for mask, text in tx.exclude_reasons:
            hit = mask & ~invalid
            if hit.any():
                report.rejected_by_reason[text] += int(hit.sum())
            excluded |= hit
        failures += tx.exclude_reasons
        arrays["amount"] = pa.array(tx.amount, type=pa.float64(), from_pandas=True)
        arrays["is_return"] = pa.array(tx.is_return, type=pa.bool_())
    drop = invalid | excluded
    report.rows_invalid += int(invalid.sum())
    report.rows_excluded += int(excluded.sum())
    if drop.any():
        where = np.flatnonzero(drop)
        rejected.write(
            rows[where], reasons_for(failures, where), raw.take(pa.array(where)).to_pandas()
        )
    arrays["_row"] = pa.array(rows, type=pa.int64())
    arrays["_nmiss"] = pa.array(val.n_missing, type=pa.int32())
    arrays["_valid"] = pa.array(~drop, type=pa.bool_())
    arrays["_key"] = pa.array(_dedupe_key(arrays, contract), type=pa.uint64())
    if "_raw" in schema.names:
        arrays["_raw"] = join_raw(raw)
    else:
        for i in range(raw.num_columns):
            arrays[f"_raw{i}"] = raw.column(i)
    columns = [arrays[f.name] if f.name in arrays else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


_FEW_MAX = 256  # distinct values among the first FEW_PROBE that make a Parquet dictionary


def few_valued_numbers(batch: pa.RecordBatch, names: list[str]) -> list[str]:
    """The float columns of ``batch`` among ``names`` whose first rows hold few distinct
    values (at most 256 of 4,096): Parquet stores them best as a dictionary. A column with
    many values is left plain: a dictionary would fill Parquet's page limit and be
    abandoned, which costs more than it saves."""
    return [
        name
        for name in names
        if name in batch.schema.names
        and pa.types.is_floating(batch.schema.field(name).type)
        and few_distinct(batch.column(name), _FEW_MAX)
    ]


def _stage_and_fold(
    stage: _Stage, stats: dict[str, Any], sample: RowSample, table: pa.Table, stat_cols: list[str]
) -> None:
    """Stage a validated chunk and fold its valid rows into the statistics."""
    stage.write(table)
    valid = to_np_bool(table.column("_valid"))
    _fold_stats(stats, sample, table.select([*stat_cols, "_row"]), valid)


def _fold_stats(
    stats: dict[str, Any], sample: RowSample, staged: pa.Table, keep: np.ndarray
) -> None:
    """Fold the rows of a staged chunk (its statistics columns and ``_row``) where
    ``keep`` into ``stats``."""
    kept = staged if keep.all() else staged.filter(pa.array(keep))
    update_stats(stats, kept, sample, kept.column("_row").to_numpy())


def _dedupe_key(arrays: dict[str, pa.Array], contract: Contract) -> np.ndarray:
    """A cheap 64-bit key per row: rows with equal raw text always have equal keys.

    Exact duplicates are then looked for only among rows whose key repeats (see
    :func:`_dedupe`). Customer tables need no key (an exact duplicate repeats the
    customer id, which the dedupe reads anyway): zeros. Transaction tables mix the bits
    of the converted numbers, booleans and timestamps (never the text).
    """
    n = len(arrays["_row"])
    key = np.zeros(n, dtype=np.uint64)
    if not contract.is_transactions:
        return key
    for name, arr in arrays.items():
        if name.startswith("_"):
            continue
        if pa.types.is_floating(arr.type):
            bits = np.asarray(arr.to_numpy(zero_copy_only=False), dtype="float64").view(np.uint64)
        elif pa.types.is_timestamp(arr.type):
            bits = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy().view(np.uint64)
        elif pa.types.is_boolean(arr.type):
            bits = pc.fill_null(arr.cast(pa.uint64()), 2).to_numpy()
        else:
            continue
        key = mix64(key ^ bits)
    return key


def _id_hash(ids: pa.Array) -> np.ndarray:
    """64-bit hash per id; a missing id hashes apart from the empty text."""
    nulls = to_np_bool(ids.is_null()).astype(np.uint64) * _NULL_MARK
    hashes: np.ndarray = text_hash64(ids) ^ nulls
    return hashes


def _dedupe(
    stage: _Stage, contract: Contract
) -> tuple[DedupePlan, tuple[np.ndarray, pa.Table] | None]:
    """The whole-file dedupe plan (over stage positions) from the staged rows; and, when
    they are few, the candidates' stage positions and rows (see :func:`_candidate_hashes`).

    Finds the candidate rows whose customer id (customer tables) or ``_key`` (transaction
    tables) repeats, by 64-bit hash, one partition of hashes at a time (see
    :class:`_HashPartitions`). Only those can be duplicates, so only their raw text is
    hashed, one staged batch at a time (exact duplicates share
    :func:`custseg.ingest.cleaning.row_hash`), and only their hashes, recency and missing
    counts are kept. Memory: a chunk and a partition, plus 2 bytes per row (the plan's
    ``keep`` and ``code``) and the candidates.
    """
    id_name = contract.id_column.name
    total = stage.rows
    with tempfile.TemporaryDirectory(prefix="_dedupe-", dir=stage.path.parent) as spill:
        parts = _HashPartitions(total, Path(spill))
        customers = _scan_hashes(stage, id_name, contract.is_transactions, parts)
        cand_stage, cand_first = parts.repeated()
    cand_codes = cand_stage  # transactions: the ids play no part in the decision
    null_code = -1
    if not contract.is_transactions:
        cand_codes, null_code = _candidate_codes(stage, id_name, cand_stage, cand_first)
    del cand_first

    def at_cand(name: str) -> np.ndarray:
        gathered: np.ndarray = stage.gather(name, cand_stage).to_numpy(zero_copy_only=False)
        return gathered

    cand_hash, cand_table = _candidate_hashes(stage, cand_stage, total)
    order_by = contract.dedupe_order_by
    order = None
    if not contract.is_transactions and cand_stage.size and order_by in stage.schema.names:
        order = stage.gather(str(order_by), cand_stage).to_pandas().to_numpy()
    plan = decide_candidates(
        stage.valid,
        cand_stage,
        cand_hash,
        contract,
        cand_codes,
        order_by=order,
        n_missing=at_cand("_nmiss") if cand_stage.size else None,
    )
    if customers is None:  # customer tables: every valid row not a candidate is one
        kept = cand_codes[plan.keep[cand_stage]]
        kept = kept[kept != null_code]
        customers = stage.valid_rows - cand_stage.size + np.unique(kept).size
    plan.customers = customers
    return plan, (cand_stage, cand_table) if cand_table is not None else None


def _release_memory() -> None:
    """Hand the memory Arrow's allocator keeps for reuse back to the system: after pass 1
    it holds ~200 MB of freed chunks, which the dedupe's arrays would otherwise come on
    top of."""
    pa.default_memory_pool().release_unused()


_PART_ROWS = 1 << 20  # about this many rows per partition of the dedupe's hashes
_PART_BITS_MAX = 8  # at most 256 partitions (files open at once)


class _HashPartitions:
    """The 64-bit hashes of the valid staged rows with their stage positions, split by the
    hash's top bits into partitions of about :data:`_PART_ROWS` rows each (equal hashes
    fall in the same partition), spilled to one file each in ``folder`` when there is
    more than one. Finding the repeated hashes then holds one partition at a time:
    memory bounded by the partition, not the file."""

    def __init__(self, rows: int, folder: Path) -> None:
        self.bits = min(_PART_BITS_MAX, max(0, int(np.ceil(np.log2(max(rows, 1) / _PART_ROWS)))))
        pos = np.uint32 if rows < 2**32 else np.int64
        self.dtype = np.dtype([("hash", np.uint64), ("pos", pos)])
        self.paths = [folder / f"part-{p:03d}.bin" for p in range(1 << self.bits)]
        self._memory: list[np.ndarray] = []
        self._files = contextlib.ExitStack()
        self._handles = [
            self._files.enter_context(path.open("wb")) for path in self.paths if self.bits
        ]

    def add(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        """Add the hashes of the rows at the stage ``positions``."""
        records = np.empty(hashes.size, dtype=self.dtype)
        records["hash"], records["pos"] = hashes, positions
        if not self.bits:
            self._memory.append(records)
            return
        part = (hashes >> np.uint64(64 - self.bits)).astype(np.uint8)
        order = np.argsort(part, kind="stable")  # a radix sort for 8-bit values
        bounds = np.concatenate([[0], np.cumsum(np.bincount(part, minlength=len(self.paths)))])
        records = records[order]
        for p, handle in enumerate(self._handles):
            if bounds[p + 1] > bounds[p]:
                records[bounds[p] : bounds[p + 1]].tofile(handle)

    def _partitions(self) -> Iterator[np.ndarray]:
        self._files.close()
        if not self.bits:
            yield np.concatenate(self._memory) if self._memory else np.empty(0, self.dtype)
            self._memory = []
            return
        for path in self.paths:
            yield np.fromfile(path, dtype=self.dtype)
            path.unlink()

    def repeated(self) -> tuple[np.ndarray, np.ndarray]:
        """The sorted stage positions (int64) whose hash occurs more than once, and
        their hashes."""
        found = [records[repeated(records["hash"])] for records in self._partitions()]
        hits = np.concatenate(found) if found else np.empty(0, self.dtype)
        hits = hits[np.argsort(hits["pos"], kind="stable")]
        return hits["pos"].astype(np.int64), hits["hash"].copy()


def _scan_hashes(
    stage: _Stage, id_name: str, transactions: bool, parts: _HashPartitions
) -> int | None:
    """One pass over the staged batches: the dedupe hash of each valid row into
    ``parts`` (transactions: ``_key``; customer tables: the id's, :func:`_id_hash`).
    Transactions: returns the number of distinct customer ids of the valid rows (exact
    text; a missing id is none), which no dedupe changes (an exact duplicate keeps its
    first row); customer tables: None."""
    distinct = _DistinctIds()
    offset = 0
    columns = [id_name, "_key"] if transactions else [id_name]
    for valid, batch in zip(stage.valid_batches, stage.batches(columns), strict=True):
        where = np.flatnonzero(valid)
        if transactions:
            ids = batch.column(0)
            distinct.add(ids if where.size == len(valid) else ids.filter(pa.array(valid)))
            hashes = batch.column(1).to_numpy()[where]
        else:
            hashes = _id_hash(batch.column(0))[where]
        parts.add(hashes, where + offset)
        offset += len(valid)
    return distinct.count() if transactions else None


class _DistinctIds:
    """The distinct values of a text column met batch by batch (each batch's distinct
    values, merged when they outgrow the distinct values so far): memory per distinct
    value, not per row."""

    def __init__(self, merge_at: int = 1 << 20) -> None:
        self._parts: list[pa.Array] = []
        self._merge_at = merge_at  # values held before a merge, at least
        self._merged = 0  # values in the first part (distinct) after the last merge
        self._size = 0

    def add(self, values: pa.Array) -> None:
        unique = pc.unique(values)
        self._parts.append(unique)
        self._size += len(unique)
        if self._size > max(self._merge_at, 2 * self._merged):
            self._merge()

    def _merge(self) -> None:
        if len(self._parts) > 1:
            self._parts = [pc.unique(pa.concat_arrays(self._parts))]
        self._merged = self._size = sum(len(p) for p in self._parts)

    def count(self) -> int:
        """The distinct values, a missing one not counted."""
        self._merge()
        return sum(len(p) - p.null_count for p in self._parts)


def _candidate_codes(
    stage: _Stage, id_name: str, cand_stage: np.ndarray, first: np.ndarray
) -> tuple[np.ndarray, int]:
    """Id codes of the candidate rows of a customer table (at the sorted stage positions
    ``cand_stage``, whose ids' :func:`_id_hash` is ``first``) and the code of a missing
    id (-1: none).

    Equal ids are those equal in ``first`` and in a second, independent 64-bit hash
    (128 bits: a collision is less likely than a disk error); the ids' text is never
    held.
    """
    second, nulls = _second_id_hash(stage, id_name, cand_stage)
    order = np.lexsort((second, first))
    starts = np.ones(cand_stage.size, dtype=bool)
    starts[1:] = (first[order][1:] != first[order][:-1]) | (second[order][1:] != second[order][:-1])
    del second
    codes = np.empty(cand_stage.size, dtype=np.int64)
    codes[order] = np.cumsum(starts, dtype=np.int64) - 1
    null_code = int(codes[nulls[0]]) if nulls.size else -1
    return codes, null_code


def _second_id_hash(
    stage: _Stage, id_name: str, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A hash of the ids at the sorted stage ``positions`` independent of
    :func:`_id_hash` (pandas' keyed SipHash), one staged batch at a time; and which of
    those positions hold a missing id."""
    out = np.empty(positions.size, dtype=np.uint64)
    nulls: list[np.ndarray] = []
    done = 0
    offset = 0
    for batch in stage.batches([id_name]):
        lo, hi = np.searchsorted(positions, [offset, offset + batch.num_rows])
        if hi > lo:
            ids = batch.column(0).take(pa.array(positions[lo:hi] - offset))
            values = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
            out[done : done + hi - lo] = pd.util.hash_array(values, hash_key="custseg-id-hash2")
            nulls.append(done + np.flatnonzero(to_np_bool(ids.is_null())))
            done += hi - lo
        offset += batch.num_rows
    return out, np.concatenate(nulls) if nulls else np.empty(0, dtype=np.int64)


_KEEP_RAW_BYTES = 64 << 20  # candidates' raw text kept for rejected_rows.csv up to this


def _candidate_hashes(
    stage: _Stage, cand_stage: np.ndarray, total: int
) -> tuple[np.ndarray, pa.Table | None]:
    """:func:`custseg.ingest.cleaning.row_hash` of the raw text of the staged rows at the sorted
    positions ``cand_stage``, joined and hashed one staged batch at a time; and those
    rows (``_row`` and raw text) when they take at most 64 MiB, so that the usual few
    duplicates are written without reading the stage again (None: more)."""
    if not cand_stage.size:
        return np.empty(0, dtype=np.uint64), None
    hit_all = np.zeros(total, dtype=bool)
    hit_all[cand_stage] = True
    hashes: list[np.ndarray] = []
    kept: list[pa.Table] | None = []
    kept_bytes = 0
    offset = 0
    raw_cols = stage.raw_columns()
    for batch in stage.batches(["_row", *raw_cols]):
        hit = hit_all[offset : offset + batch.num_rows]
        offset += batch.num_rows
        if hit.any():
            table = pa.Table.from_batches([batch]).filter(pa.array(hit))
            hashes.append(row_hash(_joined_raw(table, raw_cols)))
            kept_bytes += table.nbytes
            if kept is not None and kept_bytes <= _KEEP_RAW_BYTES:
                kept.append(table)
            else:
                kept = None  # too many: written from the stage again
    return np.concatenate(hashes), pa.concat_tables(kept) if kept else None


def _reject_duplicates(
    stage: _Stage,
    plan: DedupePlan,
    width: int,
    rejected: _RejectedWriter,
    kept: tuple[np.ndarray, pa.Table] | None,
) -> None:
    """Write the rows the dedupe dropped to ``rejected_rows.csv`` with their original
    text, in file order: from ``kept`` (the candidates' stage positions and rows, see
    :func:`_candidate_hashes`) when given, else one staged batch at a time."""
    raw_cols = stage.raw_columns()
    if kept is not None:
        cand_stage, table = kept
        dropped = np.flatnonzero(plan.code > 0)
        at = np.searchsorted(cand_stage, dropped)  # every dropped row is a candidate
        _write_dropped(table.take(pa.array(at)), plan.code[dropped], raw_cols, width, rejected)
        return
    offset = 0
    for batch in stage.batches(["_row", *raw_cols]):
        code = plan.code[offset : offset + batch.num_rows]
        offset += batch.num_rows
        where = np.flatnonzero(code > 0)
        if where.size:
            taken = pa.Table.from_batches([batch]).take(pa.array(where))
            _write_dropped(taken, code[where], raw_cols, width, rejected)


def _joined_raw(table: pa.Table, raw_cols: list[str]) -> pa.Array:
    """Each staged row's raw text as one value (:func:`~custseg.ingest.cleaning.join_raw`;
    a very wide file's ``_raw`` is joined already)."""
    if raw_cols == ["_raw"]:
        return table.column("_raw").combine_chunks()
    return join_raw(table.select(raw_cols))


def _write_dropped(
    taken: pa.Table, code: np.ndarray, raw_cols: list[str], width: int, rejected: _RejectedWriter
) -> None:
    why = np.asarray(REASON_CODES, dtype=object)[code]
    if raw_cols == ["_raw"]:
        raw = split_raw(pd.Series(taken.column("_raw").to_pylist(), dtype=object), width)
    else:
        raw = taken.select(raw_cols).to_pandas()
    rejected.write(taken.column("_row").to_numpy(), why, raw)


def _report_cleaning(
    report: QualityReport, stats: dict[str, Any], imputed: Counter[str], clipped: Counter[str]
) -> None:
    for name, st in stats.items():
        spec = st.spec
        if st.missing and spec.missing_policy in (MissingPolicy.FLAG, MissingPolicy.KEEP):
            report.flagged_missing[name] = st.missing
        if imputed.get(name):
            value = st.fill
            if isinstance(value, float):
                value = round(value, 6)
            elif not isinstance(value, bool):
                value = example_value(value, personal=False)
            report.imputations[name] = {
                "count": int(imputed[name]),
                "method": spec.missing_policy.value,
                "value": value,
            }
        if st.numeric and spec.outliers.method.value != "none" and st.moments.n:
            report.outliers[name] = {
                "method": spec.outliers.method.value,
                "count": int(clipped.get(name, 0)),
                "lower": st.lower,
                "upper": st.upper,
                "min": st.moments.min,
                "max": st.moments.max,
            }
