"""Validation: file-level checks on the headers, row-level checks on every chunk.

All failures are collected, never only the first: :func:`check_headers` returns every
header problem, :func:`validate_chunk` every (row, column, reason) of a chunk.

Why vectorised pandas and not pandera: the checks here *are* the type conversion
(text -> number / date / boolean with repairs such as decimal commas and thousands
separators, and per-column date-format detection), so a pandera schema would have to
re-run the same conversions to produce its failure cases, and ``lazy=True`` builds a
failure-case frame row by row, which on millions of rows with many failures costs
seconds per chunk. One boolean mask per (column, reason) gives the same information
(every failing row and column) at numpy speed, and the masks are reused to build the
rejected-rows file and the report counters.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from custseg.cleaning import NUMERIC_TYPES, normalise_column
from custseg.contracts.model import ColumnSpec, ColumnType, Contract, Role, normalise_header
from custseg.reading import FAMILY_LABELS, detect_date_format, parse_dates


@dataclass
class FileIssue:
    """A file-level failure: stable ``code``, a message, and the column if any."""

    code: str
    message: str
    column: str | None = None
    row: int | None = 1


@dataclass
class HeaderCheck:
    """How a file's headers map onto a contract."""

    positions: dict[str, int]  # canonical column -> header position
    mapped: dict[str, str]  # header as written -> canonical column
    ignored: list[str]  # headers the contract does not know (names only)
    issues: list[FileIssue] = field(default_factory=list)


def check_headers(headers: list[str], contract: Contract) -> HeaderCheck:
    """Map headers to contract columns and collect every header-level failure.

    Codes: ``no_customer_id``, ``missing_required_column``, ``duplicate_header`` (two
    headers equal after normalisation, or two mapping to one canonical column).
    """
    hmap = contract.header_map()
    positions: dict[str, int] = {}
    mapped: dict[str, str] = {}
    ignored: list[str] = []
    issues: list[FileIssue] = []
    seen_keys: dict[str, str] = {}
    for i, header in enumerate(headers):
        key = normalise_header(header)
        label = header if header else f"(column {i + 1}, no name)"
        if key and key in seen_keys:
            issues.append(
                FileIssue(
                    "duplicate_header",
                    f"header {header!r} repeats header {seen_keys[key]!r} (column {i + 1})",
                    column=header,
                )
            )
            continue
        if key:
            seen_keys[key] = header
        canonical = hmap.get(key) if key else None
        if canonical is None:
            ignored.append(label)
            continue
        if canonical in positions:
            first = headers[positions[canonical]]
            issues.append(
                FileIssue(
                    "duplicate_header",
                    f"headers {first!r} and {header!r} both mean column {canonical!r}",
                    column=canonical,
                )
            )
            continue
        positions[canonical] = i
        mapped[header] = canonical
    id_col = contract.id_column
    if id_col.name not in positions:
        accepted = ", ".join([id_col.name, *id_col.aliases[:6]])
        issues.append(
            FileIssue(
                "no_customer_id",
                f"no customer id column: expected a header such as {accepted}",
                column=id_col.name,
            )
        )
    for col in contract.columns:
        if col.required and col.role != Role.CUSTOMER_ID and col.name not in positions:
            issues.append(
                FileIssue(
                    "missing_required_column",
                    f"required column {col.name!r} is missing "
                    f"(accepted headers: {', '.join([col.name, *col.aliases[:6]])})",
                    column=col.name,
                )
            )
    if contract.is_transactions and "amount" not in positions:
        need = [c for c in ("quantity", "unit_price") if c not in positions]
        if need:
            issues.append(
                FileIssue(
                    "missing_required_column",
                    "a transaction file needs an amount column, or quantity and unit_price "
                    f"to compute it (missing: {', '.join(need)})",
                    column="amount",
                )
            )
    return HeaderCheck(positions=positions, mapped=mapped, ignored=ignored, issues=issues)


@dataclass
class ParseContext:
    """State carried across chunks: detected date families and their warnings."""

    delimiter: str = ","
    date_formats: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ChunkValidation:
    """Result of validating one chunk.

    ``typed``: canonical non-personal columns converted (float64 for numbers, nullable
    ``boolean``, ``str`` for ids / categories with missing as NA, ``datetime64[ns]``);
    ``failures``: (mask, column, reason) per failed check; ``invalid``: rows failing any
    check; ``repairs``: column -> reason -> count; ``examples``: (column, reason) ->
    (first failing position, example value or None for personal data).
    """

    typed: pd.DataFrame
    failures: list[tuple[np.ndarray, str, str]]
    invalid: np.ndarray
    repairs: dict[str, Counter[str]]
    n_missing: np.ndarray


_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_EU_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$")
_CURRENCY = re.compile(r"[\s$€£¥%]")


def _to_number(
    values: pd.Series, missing: np.ndarray, delimiter: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Text -> float64 (NaN where missing or unparseable), with counted repairs."""
    arr = pc.if_else(pa.array(missing), pa.scalar(None, pa.large_string()),
                     pc.cast(pa.array(values.array), pa.large_string()))  # fmt: skip
    try:  # fast path: every present value is a plain number
        out = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype("float64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = pd.to_numeric(values.where(~missing, ""), errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan, copy=True
        )
    repairs: dict[str, int] = {}
    bad = np.isnan(out) & ~missing
    if bad.any():
        idx = np.flatnonzero(bad)
        part = values.iloc[idx]
        stripped = part.str.replace(_CURRENCY, "", regex=True)
        thousands = stripped.str.match(_THOUSANDS).to_numpy(dtype=bool)
        decimal = stripped.str.match(_DECIMAL_COMMA).to_numpy(dtype=bool) & (delimiter != ",")
        eu = stripped.str.match(_EU_THOUSANDS).to_numpy(dtype=bool) & (delimiter != ",")
        fixed = stripped.where(~thousands, stripped.str.replace(",", "", regex=False))
        fixed = fixed.where(~eu, fixed.str.replace(".", "", regex=False))
        decimal |= eu
        fixed = fixed.where(~decimal, fixed.str.replace(",", ".", regex=False))
        conv = pd.to_numeric(fixed, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        ok = ~np.isnan(conv)
        out[idx[ok]] = conv[ok]
        if (thousands & ok).any():
            repairs["thousands separator removed"] = int((thousands & ok).sum())
        if (decimal & ok).any():
            repairs["decimal comma read"] = int((decimal & ok).sum())
        if (eu & ok).any():
            repairs["thousands separator removed"] = int(((eu | thousands) & ok).sum())
        other = ok & ~thousands & ~decimal
        if other.any():
            repairs["currency symbol or spaces removed"] = int(other.sum())
    with np.errstate(invalid="ignore"):
        inf = np.isinf(out)
    out[inf] = np.nan
    return out, repairs


def _convert_column(
    spec: ColumnSpec,
    raw: pd.Series,
    ctx: ParseContext,
    failures: list[tuple[np.ndarray, str, str]],
    repairs: Counter[str],
) -> tuple[pd.Series, np.ndarray]:
    """Convert one column; append failures; return (typed series, missing mask)."""
    norm = normalise_column(raw, spec)
    repairs.update(norm.repairs)
    missing = norm.missing.copy()
    values = norm.values
    index = raw.index
    typed: pd.Series
    if spec.type in (ColumnType.ID, ColumnType.CATEGORY, ColumnType.STRING):
        typed = values.astype("str").where(~missing, None)
        if spec.allowed is not None and spec.type == ColumnType.CATEGORY:
            allowed = {a.strip().lower() for a in spec.allowed}
            bad = ~values.isin(list(allowed)).to_numpy(dtype=bool) & ~missing
            if bad.any():
                failures.append((bad, spec.name, "value not allowed"))
    elif spec.type == ColumnType.BOOLEAN:
        trues = {v.strip().lower() for v in spec.true_values}
        falses = {v.strip().lower() for v in spec.false_values}
        if spec.positive:
            trues.add(spec.positive.strip().lower())
        is_t = values.isin(list(trues)).to_numpy(dtype=bool)
        is_f = values.isin(list(falses)).to_numpy(dtype=bool)
        bad = ~(is_t | is_f) & ~missing
        if bad.any():
            failures.append((bad, spec.name, "not a yes/no value"))
        arr = pd.array(np.where(is_t, True, False), dtype="boolean")
        arr[~(is_t | is_f)] = pd.NA
        typed = pd.Series(arr, index=index)
    elif spec.type in NUMERIC_TYPES:
        num, rep = _to_number(values, missing, ctx.delimiter)
        repairs.update(rep)
        bad = np.isnan(num) & ~missing
        if bad.any():
            failures.append((bad, spec.name, "not a number"))
        if spec.type == ColumnType.INTEGER:
            with np.errstate(invalid="ignore"):
                frac = ~np.isnan(num) & (np.floor(num) != num)
            if frac.any():
                failures.append((frac, spec.name, "not a whole number"))
        with np.errstate(invalid="ignore"):
            low = num < spec.min if spec.min is not None else np.zeros(len(num), dtype=bool)
            high = num > spec.max if spec.max is not None else np.zeros(len(num), dtype=bool)
        out_of_range = low | high
        if out_of_range.any():
            policy = spec.out_of_range
            if policy == "clip":
                num = np.clip(num, spec.min, spec.max)
                repairs["out of range, clipped to [min, max]"] += int(out_of_range.sum())
            elif policy == "null":
                num[out_of_range] = np.nan
                missing = missing | out_of_range
                repairs["out of range, set missing"] += int(out_of_range.sum())
            else:
                failures.append((out_of_range, spec.name, f"out of range [{spec.min}, {spec.max}]"))
        typed = pd.Series(num, index=index, dtype="float64")
    else:  # DATE / DATETIME
        fmt = spec.date_format or ctx.date_formats.get(spec.name)
        if fmt is None:
            family, warning = detect_date_format(values[~missing])
            if family is not None:
                fmt = family
                ctx.date_formats[spec.name] = family
                if warning:
                    ctx.warnings.append(f"column {spec.name}: {warning}")
        if fmt is None:
            parsed = pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")
        else:
            parsed = parse_dates(values.where(~missing, ""), fmt)
        bad = parsed.isna().to_numpy(dtype=bool) & ~missing
        if bad.any():
            label = FAMILY_LABELS.get(fmt or "", fmt or "a recognised date format")
            failures.append((bad, spec.name, f"not a date (expected {label})"))
        if spec.type == ColumnType.DATE:
            parsed = parsed.dt.normalize()
        typed = parsed
    return typed, missing


def validate_chunk(
    raw: pd.DataFrame, header: HeaderCheck, contract: Contract, ctx: ParseContext
) -> ChunkValidation:
    """Convert and check every contract column of a raw chunk.

    ``raw`` has one ``str`` column per header position (see
    :class:`custseg.reading.RawChunk`). Personal-role columns are not converted and
    never reach ``typed``. Required columns with missing values, and columns whose
    missing policy is ``reject``, fail with ``required value missing``.
    """
    n = len(raw)
    failures: list[tuple[np.ndarray, str, str]] = []
    repairs: dict[str, Counter[str]] = {}
    typed: dict[str, pd.Series] = {}
    n_missing = np.zeros(n, dtype="int32")
    for spec in contract.columns:
        if spec.name not in header.positions:
            continue
        if spec.role == Role.PERSONAL or spec.type == ColumnType.STRING:
            continue
        col_raw = raw[str(header.positions[spec.name])]
        rep: Counter[str] = Counter()
        series, missing = _convert_column(spec, col_raw, ctx, failures, rep)
        if rep:
            repairs[spec.name] = rep
        typed[spec.name] = series
        n_missing += missing.astype("int32")
        if missing.any() and spec.missing_policy.value == "reject":
            failures.append((missing, spec.name, "required value missing"))
    frame = pd.DataFrame(typed, index=raw.index)
    invalid = np.zeros(n, dtype=bool)
    for mask, _, _ in failures:
        invalid |= mask
    return ChunkValidation(
        typed=frame, failures=failures, invalid=invalid, repairs=repairs, n_missing=n_missing
    )


def reasons_for(failures: list[tuple[np.ndarray, str]], rows: np.ndarray) -> np.ndarray:
    """The "column: reason; column: reason" text of the rows at positions ``rows``."""
    out = np.full(len(rows), "", dtype=object)
    for mask, text in failures:
        hit = mask[rows]
        if hit.any():
            out[hit] = out[hit] + np.where(out[hit] == "", "", "; ") + text
    return out
