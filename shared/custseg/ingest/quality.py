"""The data-quality report of one ingested file (JSON + a short human text).

Row accounting, always true and asserted by :func:`custseg.ingest.pipeline.ingest_file`::

    rows_read == rows_kept + rows_rejected
    rows_rejected == rows_invalid + rows_duplicate + rows_excluded

- ``rows_invalid``: rows that failed validation and could not be repaired (wrong type,
  out of range, value not allowed, required value missing, malformed record);
- ``rows_duplicate``: exact duplicate rows, and repeated customer ids in a customer
  table (the contract's dedupe rule keeps one);
- ``rows_excluded``: transaction rows the contract excludes (e.g. non-positive price).

Every removed row is listed in ``rejected_rows.csv`` with its row number and reasons.
``rejected_by_reason`` counts rows per reason (a row failing two checks counts under
both, so its sum can exceed ``rows_rejected``).

Personal data never appears here: reasons and errors name columns, never values of
personal-role columns; examples of other values are truncated to 20 characters.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FILE_ERROR_CODES = (
    "empty_file",  # zero bytes (or only blanks / a byte-order mark)
    "header_only",  # a header but no data rows
    "undecodable",  # not text in UTF-8 / UTF-16 / cp1252; binary; zip; broken gzip
    "no_delimiter",  # no , ; tab | delimiter found: a single column
    "no_customer_id",  # no header maps to the contract's customer id column
    "missing_required_column",  # another required column is missing
    "duplicate_header",  # two headers map to one canonical column (or are equal)
    "parse_error",  # the CSV parser gave up mid-file
    "no_valid_rows",  # every data row was rejected
    "too_large",  # above a size limit: the upload, or a gzip's decompressed size / ratio
    "header_too_wide",  # the header has more columns or bytes than the limit
    "row_too_long",  # a line is longer than the limit
    "mixed_encoding",  # some lines UTF-8, others another code page
)

MAX_ROW_ERRORS = 50
MAX_FILE_ERRORS = 20  # file-level errors kept in full; the rest are counted by code
EXAMPLE_CHARS = 20


MAX_NAME_CHARS = 80
# an e-mail address anywhere in a text (personal data even outside a personal column,
# e.g. when a broken row shifts it into another column or a header)
_EMAIL = re.compile(r"[^\s@,;|\"']+@[^\s@,;|\"']+\.[^\s@,;|\"']+")
EMAIL_MASK = "<e-mail address>"


def redact(text: str) -> str:
    """``text`` with anything that looks like an e-mail address masked."""
    return _EMAIL.sub(EMAIL_MASK, text) if "@" in text else text


def example_value(value: Any, personal: bool) -> str | None:
    """A value safe to show in a report: None for personal data, else at most 20 chars.

    Values that look like e-mail addresses are masked whatever their column.
    """
    if personal or value is None:
        return None
    text = redact(str(value))
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def safe_name(header: str) -> str:
    """A header name safe and short enough for a report (e-mail-like text masked)."""
    text = redact(header)
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 1] + "…"


@dataclass
class QualityReport:
    """Everything one ingestion learned about a file. ``to_dict()`` is JSON-safe."""

    source: str
    dataset: str
    run_id: str
    contract_kind: str = ""
    contract_version: str = ""
    contract_reason: str = ""
    status: str = "accepted"
    format: dict[str, Any] = field(default_factory=dict)
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    rows_invalid: int = 0
    rows_duplicate: int = 0
    rows_excluded: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    repaired: dict[str, Counter[str]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=lambda: {"exact": 0, "by_id": 0})
    imputations: dict[str, dict[str, Any]] = field(default_factory=dict)
    flagged_missing: dict[str, int] = field(default_factory=dict)
    outliers: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, Any] | None = None
    columns_mapped: dict[str, str] = field(default_factory=dict)
    columns_ignored: list[str] = field(default_factory=list)
    clean_columns: list[str] = field(default_factory=list)
    date_formats: dict[str, str] = field(default_factory=dict)
    date_bounds: dict[str, str] = field(default_factory=dict)
    decimal_separators: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)  # the schema inference's findings
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_counts: Counter[str] = field(default_factory=Counter)  # every file-level error
    file_errors: list[str] = field(default_factory=list)
    row_errors: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    customers: int = 0

    # ---- building -----------------------------------------------------------------
    def file_error(
        self, code: str, message: str, row: int | None = None, column: str | None = None
    ) -> None:
        """Record a file-level failure (the file is then rejected).

        The first :data:`MAX_FILE_ERRORS` are kept in full; every one is counted by code
        (``error_counts``), so a flood of errors (a header of 100,000 equal names) keeps
        the report small.
        """
        self.error_counts[code] += 1
        if len(self.errors) < MAX_FILE_ERRORS:
            full = f"{self.source}: {message}"
            self.errors.append({"code": code, "message": full, "row": row, "column": column})
        if code not in self.file_errors:
            self.file_errors.append(code)
        self.status = "rejected"

    def repair(self, column: str, reason: str, n: int) -> None:
        if n:
            self.repaired.setdefault(column, Counter())[reason] += int(n)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def row_error(self, row: int, column: str, reason: str, example: str | None) -> None:
        if len(self.row_errors) < MAX_ROW_ERRORS:
            msg = f"{self.source}: row {row}, column {column}: {reason}"
            if example is not None:
                msg += f" (value {example!r})"
            self.row_errors.append(
                {"row": int(row), "column": column, "reason": reason, "message": msg}
            )

    @property
    def errors_omitted(self) -> int:
        """File-level errors counted but not kept in ``errors``."""
        return sum(self.error_counts.values()) - len(self.errors)

    def check_invariant(self) -> None:
        """Raise AssertionError when the row accounting does not add up (a bug)."""
        assert self.rows_read == self.rows_kept + self.rows_rejected, (
            f"rows_read {self.rows_read} != kept {self.rows_kept} + rejected {self.rows_rejected}"
        )
        assert self.rows_rejected == self.rows_invalid + self.rows_duplicate + self.rows_excluded

    # ---- output -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dataset": self.dataset,
            "run_id": self.run_id,
            "contract": {
                "kind": self.contract_kind,
                "version": self.contract_version,
                "reason": self.contract_reason,
            },
            "status": self.status,
            "format": dict(self.format),
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_rejected": self.rows_rejected,
            "rows_invalid": self.rows_invalid,
            "rows_duplicate": self.rows_duplicate,
            "rows_excluded": self.rows_excluded,
            "customers": self.customers,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "repaired": {c: dict(sorted(r.items())) for c, r in sorted(self.repaired.items())},
            "duplicates": dict(self.duplicates),
            "imputations": dict(self.imputations),
            "flagged_missing": dict(self.flagged_missing),
            "outliers": dict(self.outliers),
            "transactions": None if self.transactions is None else dict(self.transactions),
            "columns_mapped": dict(self.columns_mapped),
            "columns_ignored": list(self.columns_ignored),
            "clean_columns": list(self.clean_columns),
            "date_formats": dict(self.date_formats),
            "date_bounds": dict(self.date_bounds),
            "decimal_separators": dict(self.decimal_separators),
            "warnings": list(self.warnings),
            "schema": dict(self.schema),
            "errors": list(self.errors),
            "errors_omitted": self.errors_omitted,
            "error_counts": dict(sorted(self.error_counts.items())),
            "file_errors": list(self.file_errors),
            "row_errors": list(self.row_errors),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }

    def to_text(self) -> str:
        """A short human summary; the first line is a one-line verdict."""
        lines: list[str] = []
        if self.status == "rejected":
            first = self.errors[0]["message"] if self.errors else "rejected"
            lines.append(f"REJECTED {self.source}: {first.removeprefix(self.source + ': ')}")
        else:
            lines.append(
                f"ACCEPTED {self.source}: {self.rows_kept:,} of {self.rows_read:,} rows kept, "
                f"{self.rows_rejected:,} rejected ({self.customers:,} customers)"
            )
        lines.append(
            f"dataset {self.dataset}, run {self.run_id}, contract {self.contract_kind} "
            f"v{self.contract_version}"
        )
        if self.format:
            fmt = self.format
            lines.append(
                f"format: {fmt.get('encoding')}, {fmt.get('delimiter')}-delimited, "
                f"{fmt.get('compression') or 'uncompressed'}"
            )
        for err in self.errors[1:]:
            lines.append(f"error: {err['message']}")
        if self.errors_omitted:
            counts = ", ".join(f"{code} {n:,}" for code, n in self.error_counts.most_common())
            lines.append(
                f"error: ... and {self.errors_omitted:,} more file-level errors not listed "
                f"(all {sum(self.error_counts.values()):,} by code: {counts})"
            )
        if self.rows_rejected:
            lines.append(
                f"rejected: {self.rows_invalid:,} invalid, {self.rows_duplicate:,} duplicate, "
                f"{self.rows_excluded:,} excluded by contract"
            )
            for reason, n in self.rejected_by_reason.most_common(8):
                lines.append(f"  {n:,} x {reason}")
        for col, imp in self.imputations.items():
            lines.append(f"imputed {col}: {imp['count']:,} value(s) with {imp['method']}")
        for col, out in self.outliers.items():
            if out.get("count"):
                lines.append(
                    f"outliers {col}: {out['count']:,} outside "
                    f"[{out['lower']:.6g}, {out['upper']:.6g}] (flagged, values kept)"
                )
        if self.transactions:
            tx = self.transactions
            lines.append(
                f"transactions: {tx.get('cancellations', 0):,} cancellations, "
                f"{tx.get('returns_netted', 0):,} returns netted, "
                f"{tx.get('returns_excluded', 0):,} returns excluded, "
                f"{tx.get('non_positive_quantity', 0):,} quantity <= 0, "
                f"{tx.get('non_positive_price', 0):,} price <= 0"
            )
        if self.columns_ignored:
            more = len(self.columns_ignored) - 20
            lines.append(
                "ignored columns: "
                + ", ".join(self.columns_ignored[:20])
                + (f" and {more:,} more" if more > 0 else "")
            )
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for e in self.row_errors[:5]:
            lines.append(f"example: {e['message']}")
        return "\n".join(lines) + "\n"
