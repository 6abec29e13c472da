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

import datetime as dt
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from custseg.ingest.cleaning import (
    MISSING_TOKENS,
    NUMERIC_TYPES,
    as_text,
    normalise_text,
    to_np_bool,
    weighted_count,
)
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role, normalise_header
from custseg.ingest.quality import example_value, safe_name
from custseg.ingest.reading import FAMILY_LABELS, detect_date_format, parse_dates


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
        label = safe_name(header) if header else f"(column {i + 1}, no name)"
        if key and key in seen_keys:
            issues.append(
                FileIssue(
                    "duplicate_header",
                    f"header {safe_name(header)!r} repeats header "
                    f"{safe_name(seen_keys[key])!r} (column {i + 1})",
                    column=safe_name(header),
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
                    f"headers {safe_name(first)!r} and {safe_name(header)!r} both mean "
                    f"column {canonical!r}",
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
        if len(need) == 1:
            issues.append(
                FileIssue(
                    "missing_required_column",
                    "a transaction file needs an amount column, or quantity and unit_price "
                    f"to compute it (missing: {', '.join(need)})",
                    column="amount",
                )
            )
    return HeaderCheck(positions=positions, mapped=mapped, ignored=ignored, issues=issues)


DEFAULT_FUTURE_TOLERANCE = dt.timedelta(days=1)
DEFAULT_DATE_FLOOR = dt.date(1900, 1, 1)


@dataclass(frozen=True)
class DateBounds:
    """The dates a file can plausibly hold: none after its upload time plus a tolerance
    (clocks and time zones differ; naive times are read as UTC), none before a floor.

    ``upload_time``: when the file was uploaded (the S3 object's LastModified in the
    functions, the time of the run for the local CLI); naive means UTC. A value outside
    the bounds fails its row with ``date_in_future`` or ``date_too_old``.
    """

    upload_time: dt.datetime
    future_tolerance: dt.timedelta = DEFAULT_FUTURE_TOLERANCE
    floor: dt.date = DEFAULT_DATE_FLOOR

    @property
    def latest(self) -> pd.Timestamp:
        """The last plausible instant (naive UTC)."""
        when = pd.Timestamp(self.upload_time)
        if when.tzinfo is not None:
            when = when.tz_convert("UTC").tz_localize(None)
        return when + pd.Timedelta(self.future_tolerance)

    @property
    def earliest(self) -> pd.Timestamp:
        return pd.Timestamp(self.floor)

    def to_dict(self) -> dict[str, str]:
        return {
            "upload_time": pd.Timestamp(self.upload_time).isoformat(),
            "future_tolerance_hours": f"{self.future_tolerance.total_seconds() / 3600:g}",
            "not_after": self.latest.isoformat(),
            "not_before": self.earliest.date().isoformat(),
        }

    def future_reason(self) -> str:
        hours = self.future_tolerance.total_seconds() / 3600
        return (
            f"date_in_future: after {self.latest:%Y-%m-%d %H:%M} UTC "
            f"(the upload time plus {hours:g} h)"
        )

    def old_reason(self) -> str:
        return f"date_too_old: before {self.earliest.date().isoformat()}"


@dataclass
class ParseContext:
    """State carried across chunks: detected date families and their warnings, and the
    plausible dates (``bounds``; None checks none)."""

    delimiter: str = ","
    date_formats: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    bounds: DateBounds | None = None
    decimals: dict[str, str] = field(default_factory=dict)  # column -> "." or ","
    decimal_evidence: dict[str, str] = field(default_factory=dict)  # decided by own values


@dataclass
class ChunkValidation:
    """Result of validating one chunk.

    ``arrays``: canonical non-personal columns converted, as Arrow arrays (float64 for
    numbers, bool, string for ids / categories, timestamp[ns]; missing or invalid values
    are null); ``typed``: the same as a pandas DataFrame (float64 with NaN, nullable
    ``boolean``, ``str`` with NA, ``datetime64[ns]``), built on first use;
    ``failures``: (mask, column, reason) per failed check; ``invalid``: rows failing any
    check; ``repairs``: column -> reason -> count; ``n_missing``: missing values per row.
    """

    arrays: dict[str, pa.Array]
    failures: list[tuple[np.ndarray, str, str]]
    invalid: np.ndarray
    repairs: dict[str, Counter[str]]
    n_missing: np.ndarray
    index: pd.Index | None = None
    _typed: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def typed(self) -> pd.DataFrame:
        if self._typed is None:
            self._typed = typed_frame(self.arrays, self.index, len(self.invalid))
        return self._typed


def typed_frame(arrays: dict[str, pa.Array], index: pd.Index | None, n: int) -> pd.DataFrame:
    """Converted Arrow columns as pandas (see :class:`ChunkValidation`)."""
    cols: dict[str, pd.Series | np.ndarray | pd.api.extensions.ExtensionArray] = {}
    for name, arr in arrays.items():
        if pa.types.is_boolean(arr.type):
            cols[name] = arr.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
        elif pa.types.is_floating(arr.type):
            cols[name] = np.asarray(arr.to_numpy(zero_copy_only=False), dtype="float64")
        else:
            cols[name] = arr.to_pandas()
    frame = pd.DataFrame({k: pd.Series(v).reset_index(drop=True) for k, v in cols.items()})
    if index is not None:
        frame.index = index
    elif not cols:
        frame = pd.DataFrame(index=pd.RangeIndex(n))
    return frame


DECIMAL_POINT = "."
DECIMAL_COMMA = ","
DECIMAL_LABELS = {
    DECIMAL_POINT: "decimal point (1,234.5)",
    DECIMAL_COMMA: "decimal comma (1.234,5)",
}
_CURRENCY = r"[\s$€£¥%]"
_EXPONENT = r"([eE][+-]?\d+)?"
# a number as written under each convention (currency symbols and spaces removed): an
# integer part, plain or grouped in thousands, then an optional fraction and exponent
_FORMS = {
    DECIMAL_POINT: rf"^[+-]?((\d+|[1-9]\d{{0,2}}(,\d{{3}})+)(\.\d*)?|\.\d+){_EXPONENT}$",
    DECIMAL_COMMA: rf"^[+-]?((\d+|[1-9]\d{{0,2}}(\.\d{{3}})+)(,\d*)?|,\d+){_EXPONENT}$",
}
# a plain decimal number, which Arrow's string -> float64 cast always accepts
_PLAIN_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def _other(convention: str) -> str:
    return DECIMAL_COMMA if convention == DECIMAL_POINT else DECIMAL_POINT


def mismatch_reason(convention: str) -> str:
    """The failure of a value written in the other convention than its column's."""
    return (
        f"separator_mismatch: written with a {DECIMAL_LABELS[_other(convention)]}, but the "
        f"column uses a {DECIMAL_LABELS[convention]}"
    )


def separator_evidence(values: pa.Array) -> tuple[int, int, int, str | None]:
    """What a column's distinct present ``values`` say about its decimal separator:
    ``(point, comma, ambiguous, example)`` counts of values that only a decimal point
    reads, only a decimal comma reads, and both read differently (``1,234``, ``1.234``);
    ``example`` is an ambiguous value (for the warning)."""
    text = pc.replace_substring_regex(values, _CURRENCY, "")
    point = to_np_bool(pc.match_substring_regex(text, _FORMS[DECIMAL_POINT]))
    comma = to_np_bool(pc.match_substring_regex(text, _FORMS[DECIMAL_COMMA]))
    separator = to_np_bool(pc.match_substring_regex(text, r"[.,]"))
    ambiguous = point & comma & separator
    example = None
    if ambiguous.any():
        example = example_value(text[int(np.flatnonzero(ambiguous)[0])].as_py(), False)
    return (
        int((point & ~comma).sum()),
        int((comma & ~point).sum()),
        int(ambiguous.sum()),
        example,
    )


def _parse_in(
    part: pa.Array, convention: str, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Read ``part`` (present values) in the column's ``convention``: ``(numbers (NaN
    where not read), mismatch (written in the other convention), repairs)``."""
    text = pc.replace_substring_regex(part, _CURRENCY, "")
    ok = to_np_bool(pc.match_substring_regex(text, _FORMS[convention]))
    grouping = DECIMAL_COMMA if convention == DECIMAL_POINT else DECIMAL_POINT
    grouped = to_np_bool(pc.match_substring(text, grouping)) & ok
    plain = pc.replace_substring(text, grouping, "")
    decimal_comma = np.zeros(len(part), dtype=bool)
    if convention == DECIMAL_COMMA:
        decimal_comma = to_np_bool(pc.match_substring(plain, DECIMAL_COMMA)) & ok
        plain = pc.replace_substring(plain, DECIMAL_COMMA, DECIMAL_POINT)
    readable = pc.if_else(pa.array(ok), plain, pa.scalar(None, plain.type))
    out = np.array(pc.cast(readable, pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")
    mismatch = ~ok & to_np_bool(pc.match_substring_regex(text, _FORMS[_other(convention)]))
    repairs: dict[str, int] = {}
    if grouped.any():
        repairs["thousands separator removed"] = weighted_count(grouped, weights)
    if decimal_comma.any():
        repairs["decimal comma read"] = weighted_count(decimal_comma, weights)
    stripped = to_np_bool(pc.not_equal(pc.binary_length(text), pc.binary_length(part))) & ok
    if stripped.any():
        repairs["currency symbol or spaces removed"] = weighted_count(stripped, weights)
    return out, mismatch, repairs


def _to_number(
    values: pd.Series | pa.Array,
    missing: np.ndarray,
    convention: str | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """Text -> float64 (NaN where missing, unparseable or not finite), with counted
    repairs, and the mask of values written in the other decimal convention.

    ``convention``: the column's decimal separator (``.`` or ``,``; None: not decided,
    read as ``.``). With a decimal point, plain numbers are cast by Arrow and only the
    others (thousands separators, currency symbols, junk) go through the regex repairs;
    with a decimal comma every value does (``1.234`` is 1234 there).
    """
    arr = values if isinstance(values, pa.Array) else pa.array(values.array, from_pandas=True)
    convention = convention or DECIMAL_POINT
    n = len(arr)
    out = np.full(n, np.nan)
    if convention == DECIMAL_POINT:
        present = pc.if_else(pa.array(missing), pa.scalar(None, arr.type), arr)
        try:  # fast path: every present value is a number Arrow can read
            cast = pc.cast(present, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            plain = pc.match_substring_regex(present, _PLAIN_NUMBER)
            cast = pc.cast(pc.if_else(plain, present, pa.scalar(None, arr.type)), pa.float64())
        out = np.array(cast.to_numpy(zero_copy_only=False), dtype="float64", copy=True)
    todo = np.flatnonzero(np.isnan(out) & ~missing)
    mismatch = np.zeros(n, dtype=bool)
    repairs: dict[str, int] = {}
    if len(todo):
        part = arr.take(pa.array(todo))
        read, wrong, repairs = _parse_in(
            part, convention, None if weights is None else weights[todo]
        )
        out[todo] = read
        mismatch[todo] = wrong
    with np.errstate(invalid="ignore"):
        inf = np.isinf(out)
    out[inf] = np.nan
    return out, repairs, mismatch


def _bool_array(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.bool_(), mask=~valid)


_DICT_MIN_ROWS = 1024  # below this, converting every value directly is as cheap
_DICT_MAX_SHARE = 0.25  # convert distinct values when at most this share of the rows


FEW_PROBE = 4096
"""Values looked at (the first ones) to tell whether a column has few distinct values."""


def few_distinct(values: pa.Array | pa.ChunkedArray, most: float) -> bool:
    """Whether the first :data:`FEW_PROBE` values of a column hold at most ``most``
    distinct values: a cheap look at its cardinality, used to convert a column's distinct
    values once (here) and to store a column as a Parquet dictionary (the ingest)."""
    return int(pc.count_distinct(values.slice(0, FEW_PROBE)).as_py()) <= most


def _convert_column(
    spec: ColumnSpec,
    raw: pa.Array | pa.ChunkedArray,
    ctx: ParseContext,
    failures: list[tuple[np.ndarray, str, str]],
    repairs: Counter[str],
) -> tuple[pa.Array, np.ndarray]:
    """Convert one column; append failures; return (typed Arrow array, missing mask).

    A column with few distinct values (categories, ages, dates, ...) is converted once
    per distinct value and expanded back to its rows: same result, a fraction of the work.
    """
    text = as_text(raw)
    n = len(text)
    if (
        spec.type != ColumnType.ID
        and n >= _DICT_MIN_ROWS
        and few_distinct(text, _DICT_MAX_SHARE * min(n, FEW_PROBE))
    ):
        enc = pc.dictionary_encode(text)
        if len(enc.dictionary) <= _DICT_MAX_SHARE * n:
            idx = enc.indices
            pos = np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.intp)
            weights = np.bincount(pos, minlength=len(enc.dictionary))
            local: list[tuple[np.ndarray, str, str]] = []
            typed, missing = _convert_values(spec, enc.dictionary, ctx, local, repairs, weights)
            failures.extend((mask[pos], col, why) for mask, col, why in local)
            return typed.take(idx), missing[pos]
    return _convert_values(spec, text, ctx, failures, repairs, None)


def _convert_values(
    spec: ColumnSpec,
    text: pa.Array,
    ctx: ParseContext,
    failures: list[tuple[np.ndarray, str, str]],
    repairs: Counter[str],
    weights: np.ndarray | None,
) -> tuple[pa.Array, np.ndarray]:
    """:func:`_convert_column` on the values ``text`` (each held by ``weights`` rows)."""
    values, missing, norm_repairs = normalise_text(text, spec, weights)
    repairs.update(norm_repairs)
    n = len(values)
    typed: pa.Array
    if spec.type in (ColumnType.ID, ColumnType.CATEGORY, ColumnType.STRING):
        typed = pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)
        if not pa.types.is_string(typed.type):
            typed = pc.cast(typed, pa.string())
        if spec.allowed is not None and spec.type == ColumnType.CATEGORY:
            allowed = sorted({a.strip().lower() for a in spec.allowed})
            ok = to_np_bool(pc.is_in(values, value_set=pa.array(allowed, type=values.type)))
            bad = ~ok & ~missing
            if bad.any():
                failures.append((bad, spec.name, "value not allowed"))
    elif spec.type == ColumnType.BOOLEAN:
        trues = {v.strip().lower() for v in spec.true_values}
        falses = {v.strip().lower() for v in spec.false_values}
        if spec.positive:
            trues.add(spec.positive.strip().lower())
        is_t = to_np_bool(pc.is_in(values, value_set=pa.array(sorted(trues), type=values.type)))
        is_f = to_np_bool(pc.is_in(values, value_set=pa.array(sorted(falses), type=values.type)))
        bad = ~(is_t | is_f) & ~missing
        if bad.any():
            failures.append((bad, spec.name, "not a yes/no value"))
        typed = _bool_array(is_t, is_t | is_f)
    elif spec.type in NUMERIC_TYPES:
        convention = spec.decimal or ctx.decimals.get(spec.name)
        num, rep, mismatch = _to_number(values, missing, convention, weights)
        repairs.update(rep)
        if mismatch.any():
            failures.append((mismatch, spec.name, mismatch_reason(convention or DECIMAL_POINT)))
        bad = np.isnan(num) & ~missing & ~mismatch
        if bad.any():
            failures.append((bad, spec.name, "not a number"))
        if spec.type == ColumnType.INTEGER:
            with np.errstate(invalid="ignore"):
                frac = ~np.isnan(num) & (np.floor(num) != num)
            if frac.any():
                failures.append((frac, spec.name, "not a whole number"))
        with np.errstate(invalid="ignore"):
            low = num < spec.min if spec.min is not None else np.zeros(n, dtype=bool)
            high = num > spec.max if spec.max is not None else np.zeros(n, dtype=bool)
        out_of_range = low | high
        if out_of_range.any():
            policy = spec.out_of_range
            if policy == "clip":
                num = np.clip(num, spec.min, spec.max)
                repairs["out of range, clipped to [min, max]"] += weighted_count(
                    out_of_range, weights
                )
            elif policy == "null":
                num[out_of_range] = np.nan
                missing = missing | out_of_range
                repairs["out of range, set missing"] += weighted_count(out_of_range, weights)
            else:
                failures.append((out_of_range, spec.name, f"out of range [{spec.min}, {spec.max}]"))
        typed = pa.array(num, type=pa.float64(), from_pandas=True)
    else:  # DATE / DATETIME
        text = pd.Series(values.to_pandas(), dtype="str")
        fmt = spec.date_format or ctx.date_formats.get(spec.name)
        if fmt is None:
            family, warning = detect_date_format(text[~missing])
            if family is not None:
                fmt = family
                ctx.date_formats[spec.name] = family
                if warning:
                    ctx.warnings.append(f"column {spec.name}: {warning}")
        if fmt is None:
            parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        else:
            parsed = parse_dates(text.where(~missing, ""), fmt)
        bad = parsed.isna().to_numpy(dtype=bool) & ~missing
        if bad.any():
            label = FAMILY_LABELS.get(fmt or "", fmt or "a recognised date format")
            failures.append((bad, spec.name, f"not a date (expected {label})"))
        if spec.type == ColumnType.DATE:
            parsed = parsed.dt.normalize()
        if ctx.bounds is not None:
            _check_bounds(spec, parsed, ctx.bounds, failures)
        typed = pa.array(parsed.to_numpy(dtype="datetime64[ns]"), type=pa.timestamp("ns"),
                         from_pandas=True)  # fmt: skip
    return typed, missing


def _check_bounds(
    spec: ColumnSpec,
    parsed: pd.Series,
    bounds: DateBounds,
    failures: list[tuple[np.ndarray, str, str]],
) -> None:
    """Fail the dates outside ``bounds`` (a column with ``allow_future`` may be late)."""
    times = parsed.to_numpy(dtype="datetime64[ns]")
    with np.errstate(invalid="ignore"):
        old = ~np.isnat(times) & (times < bounds.earliest.to_datetime64())
        late = ~np.isnat(times) & (times > bounds.latest.to_datetime64())
    if old.any():
        failures.append((old, spec.name, bounds.old_reason()))
    if late.any() and not spec.allow_future:
        failures.append((late, spec.name, bounds.future_reason()))


PARALLEL = True
"""Convert a chunk's columns on two threads (Arrow's kernels release the GIL; the ingest
runs one thread ahead parsing and one behind staging): pass 1 at 1M rows 0.87 -> 0.77 s.
The result is the same as one after the other (each column has state of its own,
merged in column order; tested)."""
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(2, thread_name_prefix="validate")
        return _POOL


@dataclass
class _Converted:
    array: pa.Array
    missing: np.ndarray
    failures: list[tuple[np.ndarray, str, str]]
    repairs: Counter[str]
    date_formats: dict[str, str]
    warnings: list[str]


def _convert_alone(
    spec: ColumnSpec, raw: pa.Array | pa.ChunkedArray, ctx: ParseContext
) -> _Converted:
    """:func:`_convert_column` with state of its own (safe on any thread): the column's
    failures, repairs, and what it adds to the parse context, for the caller to merge in
    column order."""
    known = ctx.date_formats.get(spec.name)
    local = ParseContext(
        delimiter=ctx.delimiter,
        date_formats={spec.name: known} if known else {},
        bounds=ctx.bounds,
        decimals={k: v for k, v in ctx.decimals.items() if k == spec.name},
    )
    failures: list[tuple[np.ndarray, str, str]] = []
    repairs: Counter[str] = Counter()
    array, missing = _convert_column(spec, raw, local, failures, repairs)
    if spec.derive == "age_from_birth_year" and ctx.bounds is not None:
        array = _age_from_birth_year(array, ctx.bounds.upload_time.year)
    if failures and never_rejects(spec):
        array, missing = _failures_to_missing(array, missing, failures, repairs)
        failures = []
    return _Converted(array, missing, failures, repairs, local.date_formats, local.warnings)


def never_rejects(spec: ColumnSpec) -> bool:
    """Whether a bad value of ``spec`` becomes missing (counted) instead of rejecting its
    row: outcomes, attributes and inferred columns (typed from a sample of the file)."""
    return spec.role in (Role.OUTCOME, Role.ATTRIBUTE) or (
        not spec.required and spec.description.startswith("inferred:")
    )


def _failures_to_missing(
    array: pa.Array,
    missing: np.ndarray,
    failures: list[tuple[np.ndarray, str, str]],
    repairs: Counter[str],
) -> tuple[pa.Array, np.ndarray]:
    """The values that failed a check set missing; each reason counted as a repair."""
    bad = np.zeros(len(missing), dtype=bool)
    for mask, _, why in failures:
        repairs[f"{why}, set missing"] += int((mask & ~bad).sum())
        bad |= mask
    array = pc.if_else(pa.array(bad), pa.scalar(None, array.type), array)
    return array, missing | bad


def _age_from_birth_year(array: pa.Array, year: int) -> pa.Array:
    """Ages from birth years: ``year - value`` (missing stays missing)."""
    years = np.asarray(array.to_numpy(zero_copy_only=False), dtype="float64")
    return pa.array(year - years, type=pa.float64(), from_pandas=True)


_EVIDENCE_PROBE = 16_384  # values looked at first to decide a column's decimal separator
_SEPARATOR_BYTES = np.array([ord("."), ord(",")], dtype=np.uint8)


def _with_separator(spec: ColumnSpec, raw: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The distinct trimmed values of a column holding a ``.`` or ``,`` that are not
    missing tokens. A column without either byte anywhere (whole numbers, the usual
    case) is told by one numpy pass over its bytes."""
    text = as_text(raw)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64 if pa.types.is_large_string(
        text.type) else np.int32)[text.offset : text.offset + len(text) + 1]  # fmt: skip
    data = text.buffers()[2]
    if data is None or len(text) == 0:
        return text.slice(0, 0)
    used = np.frombuffer(data, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    if not np.isin(used, _SEPARATOR_BYTES).any():
        return text.slice(0, 0)
    text = text.filter(pc.match_substring_regex(text, r"[.,]"))
    text = pc.utf8_trim_whitespace(pc.unique(text))
    tokens = MISSING_TOKENS | {t.strip().lower() for t in spec.missing_tokens}
    missing = pc.is_in(pc.utf8_lower(text), value_set=pa.array(sorted(tokens), type=text.type))
    return text.filter(pc.invert(missing))


def decide_decimals(
    columns: list[tuple[ColumnSpec, pa.Array | pa.ChunkedArray]], ctx: ParseContext
) -> None:
    """Decide the decimal separator of each number column not decided yet, once per file.

    A column is decided by the first chunk holding a value whose reading depends on it
    (a ``.`` or ``,``): by the values only one convention reads (``3,5``, ``1.234,50``,
    ``0.5``, ``1,234,567``; the majority when both occur); when every such value reads
    both ways (``1,234``, ``1.234``), by the file's other columns decided so far, then by
    the delimiter (``;``: decimal comma), else a decimal point, with a warning. The
    decision is kept for the rest of the file (``ctx.decimals``); a contract's
    ``decimal`` overrides it.
    """
    undecided = [
        (spec, raw)
        for spec, raw in columns
        if spec.type in NUMERIC_TYPES and spec.decimal is None and spec.name not in ctx.decimals
    ]
    ambiguous: list[tuple[str, str | None]] = []
    for spec, raw in undecided:
        # the first values usually decide (a cheap look); else every value is looked at
        point, comma, unsure, example = separator_evidence(
            _with_separator(spec, as_text(raw).slice(0, _EVIDENCE_PROBE))
        )
        if point == comma and len(raw) > _EVIDENCE_PROBE:
            point, comma, unsure, example = separator_evidence(_with_separator(spec, raw))
        if point or comma:
            if point == comma:
                ambiguous.append((spec.name, example))
                continue
            ctx.decimals[spec.name] = DECIMAL_POINT if point > comma else DECIMAL_COMMA
            ctx.decimal_evidence[spec.name] = ctx.decimals[spec.name]
        elif unsure:
            ambiguous.append((spec.name, example))
    for name, example in ambiguous:
        known = set(ctx.decimal_evidence.values())
        if len(known) == 1:
            ctx.decimals[name] = known.pop()
            why = "as the file's other number columns"
        elif ctx.delimiter == ";":
            ctx.decimals[name] = DECIMAL_COMMA
            why = "as usual in semicolon-delimited files"
        else:
            ctx.decimals[name] = DECIMAL_POINT
            why = "by default"
        shown = f" such as {example!r}" if example else ""
        ctx.warnings.append(
            f"column {name}: values{shown} read either way; read with a "
            f"{DECIMAL_LABELS[ctx.decimals[name]]} {why}. Set decimal in the contract to decide"
        )


def validate_chunk(
    raw: pd.DataFrame | pa.Table, header: HeaderCheck, contract: Contract, ctx: ParseContext
) -> ChunkValidation:
    """Convert and check every contract column of a raw chunk.

    ``raw`` has one text column per header position, named "0", "1", ... (see
    :class:`custseg.ingest.reading.RawChunk`): an Arrow table or a pandas DataFrame.
    Personal-role columns are not converted and never reach ``typed``. Required columns
    with missing values, and columns whose missing policy is ``reject``, fail with
    ``required value missing``.
    """
    index = raw.index if isinstance(raw, pd.DataFrame) else None
    n = len(raw) if isinstance(raw, pd.DataFrame) else raw.num_rows
    failures: list[tuple[np.ndarray, str, str]] = []
    repairs: dict[str, Counter[str]] = {}
    arrays: dict[str, pa.Array] = {}
    n_missing = np.zeros(n, dtype="int32")
    todo: list[tuple[ColumnSpec, pa.Array | pa.ChunkedArray]] = []
    for spec in contract.columns:
        if spec.name not in header.positions:
            continue
        if spec.role == Role.PERSONAL or spec.type == ColumnType.STRING:
            continue
        key = str(header.positions[spec.name])
        if isinstance(raw, pd.DataFrame):
            col_raw: pa.Array | pa.ChunkedArray = pa.array(
                raw[key].astype("str").array, from_pandas=True
            )
        else:
            col_raw = raw.column(key)
        todo.append((spec, col_raw))
    decide_decimals(todo, ctx)
    if PARALLEL and len(todo) > 1:
        converted = list(_pool().map(lambda item: _convert_alone(item[0], item[1], ctx), todo))
    else:
        converted = [_convert_alone(spec, col_raw, ctx) for spec, col_raw in todo]
    for (spec, _), one in zip(todo, converted, strict=True):
        failures.extend(one.failures)
        ctx.date_formats.update(one.date_formats)
        ctx.warnings.extend(one.warnings)
        if one.repairs:
            repairs[spec.name] = one.repairs
        arrays[spec.name] = one.array
        n_missing += one.missing.astype("int32")
        if one.missing.any() and spec.missing_policy.value == "reject":
            failures.append((one.missing, spec.name, "required value missing"))
    invalid = np.zeros(n, dtype=bool)
    for mask, _, _ in failures:
        invalid |= mask
    return ChunkValidation(
        arrays=arrays,
        failures=failures,
        invalid=invalid,
        repairs=repairs,
        n_missing=n_missing,
        index=index,
    )


def reasons_for(failures: list[tuple[np.ndarray, str]], rows: np.ndarray) -> np.ndarray:
    """The "column: reason; column: reason" text of the rows at positions ``rows``."""
    out = np.full(len(rows), "", dtype=object)
    for mask, text in failures:
        hit = mask[rows]
        if hit.any():
            out[hit] = out[hit] + np.where(out[hit] == "", "", "; ") + text
    return out
