"""Ingest one customer CSV: local file in -> clean Parquet + reports out.

Two passes over the data, memory bounded by ``chunk_rows`` (plus a few bytes per row
for whole-file de-duplication, see :func:`custseg.cleaning.dedupe_plan`):

1. stream the CSV in chunks: normalise, convert, validate, apply transaction rules;
   invalid / excluded rows go to ``rejected_rows.csv`` with their original values, the
   rest to a staging Parquet file in ``out_dir`` (typed columns + original text);
2. decide duplicates over the whole file, gather imputation values and outlier bounds
   from the kept rows (a bounded deterministic sample, exact below 200,000 rows), then
   stream the staging file into ``data.parquet``: impute, winsorise, flag, drop
   duplicates (which also go to ``rejected_rows.csv``).

Outputs in ``out_dir``: ``data.parquet`` (accepted only), ``rejected_rows.csv`` (when
any row was removed; columns ``row, reasons`` then the original columns as read),
``quality.json``, ``quality.txt``, ``contract.json``. Bad input never raises: a
file-level failure gives status ``rejected`` and an error report.

Clean Parquet columns: canonical names of the present, non-personal contract columns
(ids and categories as strings, categories lower-case; booleans as bool; numbers as
float64; dates as timestamp[ns], naive UTC), for transactions ``amount`` and
``is_return``, then ``<name>__missing`` / ``<name>__clipped`` flags for columns that had
any, then ``_row`` (original row number, header = row 1). Key-value metadata
``custseg.contract_kind``, ``custseg.contract_version`` and ``custseg.run_id``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.cleaning import (
    NUMERIC_TYPES,
    SAMPLE_K,
    RowSample,
    apply_cleaning,
    apply_transaction_rules,
    clean_columns,
    dedupe_plan,
    finalise_stats,
    join_raw,
    new_stats,
    row_hash,
    split_raw,
    update_stats,
)
from custseg.contracts.detect import detect_contract
from custseg.contracts.model import ColumnSpec, ColumnType, Contract, MissingPolicy
from custseg.quality import QualityReport, example_value
from custseg.reading import FAMILY_LABELS, FileFormat, ReadError, iter_chunks, sniff
from custseg.validation import (
    HeaderCheck,
    ParseContext,
    check_headers,
    reasons_for,
    validate_chunk,
)

CLEAN_NAME = "data.parquet"
REJECTED_NAME = "rejected_rows.csv"
REPORT_JSON = "quality.json"
REPORT_TEXT = "quality.txt"
CONTRACT_JSON = "contract.json"
_STAGE_NAME = "_stage.parquet"


@dataclass
class IngestResult:
    """What :func:`ingest_file` produced."""

    status: str  # "accepted" or "rejected" (file-level failure; no clean data)
    report: QualityReport
    contract: Contract  # used (detected or given); for a rejected file, the best guess
    clean_path: Path | None  # out_dir/data.parquet when accepted
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


class _RejectedWriter:
    """Appends removed rows to ``rejected_rows.csv`` (opened on first use)."""

    def __init__(self, path: Path, headers: list[str]) -> None:
        self.path = path
        self.headers = headers
        self.rows = 0

    def write(self, rows: np.ndarray, reasons: np.ndarray, raw: pd.DataFrame) -> None:
        if len(rows) == 0:
            return
        frame = pd.DataFrame({"row": np.asarray(rows, dtype="int64"), "reasons": reasons})
        body = raw.reset_index(drop=True)
        body.columns = pd.Index(self.headers[: body.shape[1]])
        out = pd.concat([frame, body], axis=1)
        out.to_csv(self.path, mode="a", header=self.rows == 0, index=False)
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
        pa.field("_hash", pa.uint64()),
        pa.field("_nmiss", pa.int32()),
    ]
    fields.append(pa.field("_raw", pa.large_string()))
    return pa.schema(fields)


def _write_outputs(
    report: QualityReport, contract: Contract, out_dir: Path
) -> tuple[Path, Path, Path]:
    json_path = out_dir / REPORT_JSON
    text_path = out_dir / REPORT_TEXT
    contract_path = out_dir / CONTRACT_JSON
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    text_path.write_text(report.to_text(), encoding="utf-8")
    contract_path.write_text(
        json.dumps(contract.model_dump(mode="json"), indent=2), encoding="utf-8"
    )
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
) -> IngestResult:
    """Validate and clean ``input_path`` into ``out_dir``; never raises for bad input.

    ``source_name`` is how messages name the file (e.g. the S3 key). ``contract`` None
    picks a built-in contract from the headers (:func:`detect_contract`).
    """
    t_start = time.perf_counter()
    input_path, out_dir = Path(input_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_path = out_dir / CLEAN_NAME
    rejected_path = out_dir / REJECTED_NAME
    stage_path = out_dir / _STAGE_NAME
    for stale in (clean_path, rejected_path, stage_path):
        stale.unlink(missing_ok=True)
    report = QualityReport(source=source_name, dataset=dataset, run_id=run_id)
    given = contract
    used = contract
    try:
        used, rejected_rows = _run(
            input_path, out_dir, report, given, chunk_rows, clean_path, rejected_path, stage_path
        )
    finally:
        stage_path.unlink(missing_ok=True)
    if report.status == "rejected":
        clean_path.unlink(missing_ok=True)
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
        clean_path=clean_path if report.status == "accepted" else None,
        rejected_rows_path=rejected_path if rejected_rows and rejected_path.exists() else None,
        report_json_path=json_path,
        report_text_path=text_path,
        contract_path=contract_path,
    )


def _run(
    input_path: Path,
    out_dir: Path,
    report: QualityReport,
    given: Contract | None,
    chunk_rows: int,
    clean_path: Path,
    rejected_path: Path,
    stage_path: Path,
) -> tuple[Contract, int]:
    """The pipeline; returns (contract used, rows written to rejected_rows.csv)."""
    timer = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal timer
        now = time.perf_counter()
        report.timings_ms[name] = (now - timer) * 1000
        timer = now

    # ---- sniff + contract ------------------------------------------------------------
    fmt: FileFormat | None = None
    try:
        fmt = sniff(input_path)
    except ReadError as exc:
        report.file_error(exc.code, exc.message, row=exc.row)
    except OSError as exc:
        report.file_error("undecodable", f"the file cannot be read: {exc.strerror}")
    headers = fmt.headers if fmt is not None else []
    if given is not None:
        contract, reason = given, "given by the caller"
    else:
        contract, reason = detect_contract(headers)
    report.contract_kind, report.contract_version = contract.kind, contract.version
    report.contract_reason = reason
    if fmt is None:
        return contract, 0
    report.format = fmt.to_dict()
    for w in fmt.warnings:
        report.warn(w)
    lap("sniff")
    header = check_headers(fmt.headers, contract)
    report.columns_mapped = dict(header.mapped)
    report.columns_ignored = list(header.ignored)
    if header.ignored:
        report.warn("columns not in the contract, ignored: " + ", ".join(header.ignored))
    for issue in header.issues:
        report.file_error(issue.code, issue.message, row=issue.row, column=issue.column)
    if header.issues:
        return contract, 0

    # ---- pass 1: validate and stage -----------------------------------------------------
    specs = clean_columns(contract, list(header.positions))
    amount_added = contract.is_transactions and "amount" not in header.positions
    stage_specs = specs
    if amount_added:
        stage_specs = [*specs, contract.column("amount")]
    schema = _stage_schema(specs, contract, len(headers), amount_added)
    rejected = _RejectedWriter(rejected_path, headers)
    ctx = ParseContext(delimiter=fmt.delimiter)
    tx_counts: Counter[str] = Counter()
    stage_writer: pq.ParquetWriter | None = None
    try:
        for chunk in iter_chunks(input_path, fmt, chunk_rows=chunk_rows):
            report.rows_read += len(chunk.frame) + len(chunk.bad)
            if chunk.bad:
                _reject_malformed(chunk.bad, headers, report, rejected)
            if len(chunk.frame) == 0:
                continue
            table = _pass1_chunk(
                chunk.frame, chunk.rows, header, contract, ctx, report, rejected, tx_counts,
                schema, amount_added,
            )  # fmt: skip
            if table.num_rows:
                if stage_writer is None:
                    stage_writer = pq.ParquetWriter(
                        stage_path,
                        schema,
                        compression="none",
                        use_dictionary=[n for n in schema.names if n != "_raw"],
                    )
                stage_writer.write_table(table)
    except ReadError as exc:
        report.file_error(exc.code, exc.message, row=exc.row)
    finally:
        if stage_writer is not None:
            stage_writer.close()
    for w in ctx.warnings:
        report.warn(w)
    for col, fam in ctx.date_formats.items():
        report.date_formats[col] = FAMILY_LABELS.get(fam, fam)
    for spec in specs:
        if spec.date_format:
            report.date_formats[spec.name] = spec.date_format
    if contract.is_transactions:
        report.transactions = {
            "cancellations": tx_counts["cancellations"],
            "returns": tx_counts["returns"],
            "returns_netted": tx_counts["returns_netted"],
            "returns_excluded": tx_counts["returns_excluded"],
            "negative_quantity": tx_counts["negative_quantity"],
            "non_positive_quantity": tx_counts["non_positive_quantity"],
            "non_positive_quantity_excluded": tx_counts["non_positive_quantity_excluded"],
            "non_positive_price": tx_counts["non_positive_price"],
            "non_positive_price_excluded": tx_counts["non_positive_price_excluded"],
            "amounts_computed": tx_counts["amounts_computed"],
            "amount_source": "computed (quantity x unit_price)" if amount_added else "file",
            "policy": contract.transactions.model_dump(mode="json")
            if contract.transactions
            else None,
        }
    lap("pass1")
    if report.status == "rejected":
        return contract, rejected.rows
    if report.rows_read == 0:
        report.file_error("header_only", "the file has a header but no data rows", row=2)
        return contract, 0
    if not stage_path.exists():
        report.file_error(
            "no_valid_rows",
            f"every one of the {report.rows_read:,} data rows was rejected "
            "(see rejected_rows.csv and rejected_by_reason)",
        )
        return contract, rejected.rows

    # ---- dedupe plan over the whole file ----------------------------------------------
    id_name = contract.id_column.name
    order_by = contract.dedupe_order_by
    wanted = ["_hash", id_name, "_nmiss"]
    if order_by and order_by in schema.names and not contract.is_transactions:
        wanted.append(order_by)
    keys = pq.read_table(stage_path, columns=wanted).to_pandas()
    plan = dedupe_plan(
        keys["_hash"].to_numpy(),
        keys[id_name],
        contract,
        order_by=keys[order_by] if order_by and order_by in keys.columns else None,
        n_missing=keys["_nmiss"].to_numpy(),
    )
    del keys
    report.duplicates = {"exact": plan.exact, "by_id": plan.by_id}
    report.customers = plan.customers
    lap("dedupe")

    # ---- statistics over kept rows --------------------------------------------------------
    stats = new_stats(stage_specs)
    sample = RowSample(k=SAMPLE_K)
    stat_cols = [s.name for s in stage_specs if s.type in (*NUMERIC_TYPES, ColumnType.CATEGORY,
                                                           ColumnType.BOOLEAN)]  # fmt: skip
    stage = pq.ParquetFile(stage_path)
    offset = 0
    for batch in stage.iter_batches(batch_size=chunk_rows, columns=[*stat_cols, "_row"]):
        frame = batch.to_pandas()
        keep = plan.keep[offset : offset + len(frame)]
        offset += len(frame)
        kept = frame[keep]
        update_stats(stats, kept, sample, kept["_row"])
    finalise_stats(stats, sample)
    del sample
    lap("stats")

    # ---- pass 2: clean and write ---------------------------------------------------------
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
        b"custseg.run_id": report.run_id.encode(),
    }
    out_schema = pa.schema(out_fields, metadata=metadata)
    imputed: Counter[str] = Counter()
    clipped: Counter[str] = Counter()
    offset = 0
    with pq.ParquetWriter(clean_path, out_schema) as writer:
        columns = [n for n in schema.names if n != "_raw"]
        for batch in stage.iter_batches(batch_size=chunk_rows, columns=columns):
            frame = batch.to_pandas()
            keep = plan.keep[offset : offset + len(frame)]
            offset += len(frame)
            kept = frame[keep]
            if kept.empty:
                continue
            cleaned, imp, clip = apply_cleaning(kept, stats)
            imputed.update(imp)
            clipped.update(clip)
            table = pa.Table.from_pandas(
                cleaned[out_schema.names], schema=out_schema, preserve_index=False
            )
            writer.write_table(table)
    if not plan.keep.all():  # duplicates -> rejected_rows.csv with their original text
        offset = 0
        for batch in stage.iter_batches(batch_size=chunk_rows, columns=["_row", "_raw"]):
            keep = plan.keep[offset : offset + batch.num_rows]
            why = plan.reason[offset : offset + batch.num_rows]
            offset += batch.num_rows
            if not keep.all():
                dropped = batch.to_pandas()[~keep]
                rejected.write(
                    dropped["_row"].to_numpy(),
                    why[~keep],
                    split_raw(dropped["_raw"], len(headers)),
                )
    report.rows_duplicate = plan.exact + plan.by_id
    if plan.exact:
        report.rejected_by_reason["duplicate row"] += plan.exact
    if plan.by_id:
        report.rejected_by_reason["duplicate customer id"] += plan.by_id
    report.rows_rejected = report.rows_invalid + report.rows_excluded + report.rows_duplicate
    report.rows_kept = int(plan.keep.sum())
    report.clean_columns = list(out_schema.names)
    _report_cleaning(report, stats, imputed, clipped)
    lap("pass2")
    return contract, rejected.rows


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
    raw: pd.DataFrame,
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
    typed = val.typed
    for col, reps in val.repairs.items():
        for reason, n in reps.items():
            report.repair(col, reason, n)
    failures = [(m, f"{col}: {why}") for m, col, why in val.failures]
    for mask, col, why in val.failures:
        report.rejected_by_reason[f"{col}: {why}"] += int(mask.sum())
        first = int(np.flatnonzero(mask)[0])
        pos = header.positions[col]
        report.row_error(
            int(rows[first]), col, why, example_value(raw.iloc[first, pos], personal=False)
        )
    invalid = val.invalid
    excluded = np.zeros(len(raw), dtype=bool)
    if contract.is_transactions:
        tx = apply_transaction_rules(typed, contract, ~invalid)
        tx_counts.update(tx.counts)
        for mask, text in tx.exclude_reasons:
            hit = mask & ~invalid
            if hit.any():
                report.rejected_by_reason[text] += int(hit.sum())
            excluded |= hit
        failures += tx.exclude_reasons
        typed = typed.assign(amount=tx.amount, is_return=tx.is_return)
    drop = invalid | excluded
    report.rows_invalid += int(invalid.sum())
    report.rows_excluded += int(excluded.sum())
    if drop.any():
        where = np.flatnonzero(drop)
        rejected.write(rows[where], reasons_for(failures, where), raw.iloc[where])
    keep = ~drop
    out = typed[keep].copy()
    out["_row"] = rows[keep]
    joined = join_raw(raw[keep])
    out["_hash"] = row_hash(joined)
    out["_nmiss"] = val.n_missing[keep]
    out["_raw"] = pd.array(joined, dtype="str")
    for name in schema.names:
        if name not in out:
            out[name] = None
    return pa.Table.from_pandas(out[schema.names], schema=schema, preserve_index=False)


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
