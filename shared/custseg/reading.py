"""Reading customer CSV files: sniff the format, then stream raw string chunks.

What is detected (never from the file name):

- compression: gzip by its magic bytes ``1f 8b``; a zip archive (``PK``) is refused;
- encoding: UTF-8 with or without a byte-order mark; UTF-16 with a BOM; otherwise
  cp1252 with a warning. The whole file is checked (streamed, constant memory), so a
  bad byte at the end is caught before any data is converted. Bytes that are neither
  UTF-8 nor cp1252, or NUL bytes in a file without a UTF-16 BOM, make it undecodable;
- delimiter: one of ``,`` ``;`` tab ``|``, the one that splits the header and the first
  records into the most, consistent, fields (quotes respected);
- line ends: LF, CRLF or CR.

Values are read as text, always (ids keep their leading zeros); conversion to numbers
and dates happens per contract in :mod:`custseg.validation`.

Row numbers: the header is row 1 and the first data record is row 2. A row is a CSV
*record*: a quoted value holding a line break does not start a new row, so a record
spanning three lines still counts as one row. Blank lines are skipped and not counted.

Dates (:func:`detect_date_format`, :func:`parse_dates`) come in families: ISO 8601
(``2010-12-01``, ``2010-12-01T08:26:00Z``), compact ``YYYYMMDD``, US month-first
(``12/1/2010 8:26``) and European day-first (``13/01/2010``, ``01.12.2010``). A
column's family is detected from its values unless the contract gives ``date_format``;
when every value fits both month-first and day-first the choice is reported as a warning.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SAMPLE_BYTES = 256 * 1024
MAX_HEADER_BYTES = 32 * 1024 * 1024  # the longest header line sniff() reads in full
_CHECK_BLOCK = 4 * 1024 * 1024


class ReadError(Exception):
    """A file-level reading failure with a stable ``code`` (see :mod:`custseg.quality`)."""

    def __init__(self, code: str, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.row = row


@dataclass
class FileFormat:
    """What :func:`sniff` found out about a file."""

    encoding: str  # "utf-8", "utf-8-sig" (BOM), "utf-16", "cp1252"
    delimiter: str
    compression: str | None  # "gzip" or None
    headers: list[str]  # header names as written (BOM and surrounding spaces removed)
    size_bytes: int
    line_ending: str = "LF"  # "LF", "CRLF" or "CR"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "bom": self.encoding in {"utf-8-sig", "utf-16"},
            "delimiter": DELIMITER_NAMES.get(self.delimiter, self.delimiter),
            "compression": self.compression,
            "line_ending": self.line_ending,
            "size_bytes": self.size_bytes,
            "columns": len(self.headers),
            "warnings": list(self.warnings),
        }


@dataclass
class BadRecord:
    """A record the CSV parser could not split into the header's number of fields."""

    row: int
    fields: list[str]
    expected: int
    actual: int


@dataclass
class RawChunk:
    """Up to ``chunk_rows`` records as text.

    ``table`` (Arrow) has one ``string`` column per header position, named ``"0"``,
    ``"1"``, ... (positions, because header names may repeat); ``frame`` is the same as a
    pandas DataFrame (built on first use). ``rows`` holds each record's original row
    number (int64, header = 1). ``bad`` lists malformed records met since the previous
    chunk.
    """

    table: pa.Table
    rows: np.ndarray
    bad: list[BadRecord]
    _frame: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = self.table.to_pandas()
        return self._frame

    def __len__(self) -> int:
        return self.table.num_rows


def _open_binary(path: Path, compression: str | None) -> BinaryIO:
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _detect_compression(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _check_encoding(path: Path, compression: str | None, encoding: str) -> bool:
    """Decode the whole file incrementally; True when every byte decodes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with _open_binary(path, compression) as fh:
            while True:
                block = fh.read(_CHECK_BLOCK)
                if not block:
                    decoder.decode(b"", final=True)
                    return True
                decoder.decode(block)
    except (UnicodeDecodeError, EOFError, OSError, zlib.error):
        return False


@contextlib.contextmanager
def _field_limit(chars: int) -> Iterator[None]:
    """Let the ``csv`` module read fields of up to ``chars`` characters (default 128 KiB)."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, chars + 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _records(text: str, delimiter: str, limit: int = 200) -> list[list[str]]:
    out: list[list[str]] = []
    with _field_limit(len(text)):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            for rec in reader:
                if not rec or all(not v.strip() for v in rec):
                    continue
                out.append(rec)
                if len(out) >= limit:
                    break
        except csv.Error:
            pass
    return out


def split_record(text: str, delimiter: str) -> list[str]:
    """The fields of one CSV record's text (any field length; never raises)."""
    with _field_limit(len(text)):
        try:
            return next(csv.reader([text], delimiter=delimiter), [])
        except csv.Error:
            return text.split(delimiter)


_ARROW_ROW_TEXT = re.compile(r"((?:Expected|expected) \d+ columns?, got \d+)\s*:.*", re.DOTALL)


def _parse_message(exc: Exception) -> str:
    """Arrow's parse error without the record text it quotes (it may be personal data)."""
    return _ARROW_ROW_TEXT.sub(r"\1", str(exc))[:300]


def sniff_delimiter(text: str) -> str | None:
    """The delimiter that splits ``text`` into the most consistent fields, or None."""
    best: tuple[float, int, str] | None = None
    for delim in DELIMITERS:
        recs = _records(text, delim)
        if not recs:
            continue
        width = len(recs[0])
        if width < 2:
            continue
        body = recs[1:]
        consistency = 1.0 if not body else sum(len(r) == width for r in body) / float(len(body))
        if consistency < 0.2:  # ragged rows are reported later, row by row
            continue
        score = (consistency, width, delim)
        if best is None or score[:2] > best[:2]:
            best = score
    return None if best is None else best[2]


def sniff(path: Path) -> FileFormat:
    """Detect compression, encoding, delimiter and headers of a CSV file.

    Raises :class:`ReadError` with code ``empty_file``, ``undecodable`` or
    ``no_delimiter``. Never raises anything else for bad content.
    """
    size = path.stat().st_size
    if size == 0:
        raise ReadError("empty_file", "the file is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    compression = _detect_compression(head)
    if head[:2] == b"PK":
        raise ReadError(
            "undecodable", "the file is a zip archive (or an Excel workbook), not a CSV"
        )
    try:
        with _open_binary(path, compression) as fh:
            sample = fh.read(SAMPLE_BYTES)
            # a header longer than the sample (e.g. 100,000 columns): read on to its end
            while b"\n" not in sample and b"\r" not in sample and len(sample) < MAX_HEADER_BYTES:
                block = fh.read(SAMPLE_BYTES)
                if not block:
                    break
                sample += block
            more = bool(fh.read(1))
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise ReadError("undecodable", f"the file is not valid gzip: {exc}") from None
    warnings: list[str] = []
    if sample.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    if encoding != "utf-16" and b"\x00" in sample:
        raise ReadError("undecodable", "the file holds NUL bytes: it is binary, not CSV text")
    if not _check_encoding(path, compression, encoding):
        if encoding == "utf-8" and _check_encoding(path, compression, "cp1252"):
            encoding = "cp1252"
            warnings.append(
                "the file is not valid UTF-8; it was read as Windows-1252 (cp1252): "
                "check accented characters"
            )
        else:
            raise ReadError(
                "undecodable",
                f"the file cannot be decoded as {encoding} or Windows-1252 text",
            )
    text = sample.decode(encoding, errors="ignore")
    if more:  # cut the sample at its last line end so no record is half read
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut > 0:
            text = text[:cut]
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ReadError("empty_file", "the file holds no text (only blanks or a byte-order mark)")
    line_ending = "CRLF" if "\r\n" in text else ("CR" if "\r" in text else "LF")
    delimiter = sniff_delimiter(text)
    if delimiter is None:
        first = _records(text, ",", limit=1)
        n = len(first[0]) if first else 0
        raise ReadError(
            "no_delimiter",
            f"no delimiter found (tried comma, semicolon, tab, pipe): the header has {n} "
            "column(s); a customer file needs at least two",
            row=1,
        )
    headers = [h.strip() for h in _records(text, delimiter, limit=1)[0]]
    return FileFormat(
        encoding=encoding,
        delimiter=delimiter,
        compression=compression,
        headers=headers,
        size_bytes=size,
        line_ending=line_ending,
        warnings=warnings,
    )


def _row_numbers(start_valid: int, count: int, bad_rows: np.ndarray) -> np.ndarray:
    """Row numbers of valid records ``start_valid .. start_valid+count-1`` (0-based).

    ``bad_rows`` are the (sorted) row numbers of skipped malformed records. Valid record
    k sits after every bad record whose number is below its own: with
    ``adj_i = bad_i - 2 - i`` (valid records before bad record i), the number is
    ``k + 2 + #{i: adj_i <= k}``.
    """
    ks = np.arange(start_valid, start_valid + count, dtype="int64")
    if bad_rows.size == 0:
        return ks + 2
    adj = bad_rows - 2 - np.arange(bad_rows.size, dtype="int64")
    return ks + 2 + np.searchsorted(adj, ks, side="right")


def iter_chunks(path: Path, fmt: FileFormat, chunk_rows: int = 250_000) -> Iterator[RawChunk]:
    """Stream the records of ``path`` as :class:`RawChunk` of at most ``chunk_rows`` rows.

    Memory stays proportional to ``chunk_rows`` (plus pyarrow's 4 MB read blocks).
    Raises :class:`ReadError` (``parse_error``) when the parser gives up.
    """
    names = [str(i) for i in range(len(fmt.headers))]
    bad: list[BadRecord] = []
    width = len(names)
    delimiter = fmt.delimiter

    def on_invalid(row: Any) -> str:
        fields = split_record(row.text, delimiter)
        number = int(row.number) if row.number is not None else -1
        bad.append(BadRecord(number, list(fields), width, int(row.actual_columns)))
        return "skip"

    read_opts = pacsv.ReadOptions(
        column_names=names,
        skip_rows=1,
        block_size=4 << 20,
        use_threads=False,
        encoding="utf8" if fmt.encoding in {"utf-8", "utf-8-sig"} else fmt.encoding,
    )
    parse_opts = pacsv.ParseOptions(
        delimiter=delimiter,
        newlines_in_values=True,
        invalid_row_handler=on_invalid,
    )
    conv_opts = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    source: Any = pa.input_stream(str(path), compression=fmt.compression)
    try:
        reader = pacsv.open_csv(
            source, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts
        )
    except (pa.ArrowInvalid, OSError) as exc:  # OSError: corrupt or truncated gzip
        if "Empty CSV file" in str(exc):
            return
        raise ReadError("parse_error", f"the CSV cannot be parsed: {_parse_message(exc)}") from None
    valid_seen = 0
    bad_numbers: list[int] = []
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(batches: list[pa.RecordBatch]) -> RawChunk:
        nonlocal valid_seen
        table = pa.Table.from_batches(batches, schema=batches[0].schema).combine_chunks()
        n = table.num_rows
        new_bad = list(bad)
        bad.clear()
        bad_numbers.extend(b.row for b in new_bad if b.row >= 0)
        bad_numbers.sort()
        rows = _row_numbers(valid_seen, n, np.asarray(bad_numbers, dtype="int64"))
        valid_seen += n
        return RawChunk(table=table, rows=rows, bad=new_bad)

    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= chunk_rows:
                table = pa.Table.from_batches(pending)
                head = table.slice(0, chunk_rows)
                rest = table.slice(chunk_rows)
                yield flush(head.to_batches() or [batch.slice(0, 0)])
                pending = rest.to_batches()
                pending_rows = rest.num_rows
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise ReadError("parse_error", f"the CSV cannot be parsed: {_parse_message(exc)}") from None
    if pending_rows or bad:
        yield flush(pending or [pa.RecordBatch.from_pylist([], schema=reader.schema)])


# --------------------------------------------------------------------------------------
# dates

DATE_FAMILIES: dict[str, list[str]] = {
    "iso": ["ISO8601"],
    "compact": ["%Y%m%d", "%Y%m%d%H%M%S", "%Y%m%d %H%M%S"],
    "month_first": [
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
        "%m/%d/%Y",
        "%m/%d/%y %H:%M",
        "%m/%d/%y",
        "%m-%d-%Y %H:%M:%S",
        "%m-%d-%Y %H:%M",
        "%m-%d-%Y",
    ],
    "day_first": [
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M",
        "%d/%m/%Y",
        "%d/%m/%y",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
        "%d.%m.%Y",
        "%d.%m.%y",
        "%d-%m-%Y %H:%M:%S",
        "%d-%m-%Y %H:%M",
        "%d-%m-%Y",
    ],
}
FAMILY_LABELS = {
    "iso": "ISO 8601 (YYYY-MM-DD)",
    "compact": "compact YYYYMMDD",
    "month_first": "US month-first (MM/DD/YYYY)",
    "day_first": "European day-first (DD/MM/YYYY or DD.MM.YYYY)",
}


_NS_MIN = pd.Timestamp.min.ceil("D")  # 1677-09-22: a day start, so normalising stays in range
_NS_MAX = pd.Timestamp.max  # 2262-04-11 23:47:16.854775807


def parse_dates(values: pd.Series, family_or_format: str) -> pd.Series:
    """Parse text to ``datetime64[ns]`` (naive UTC); unparseable or blank -> NaT.

    ``family_or_format`` is a family of :data:`DATE_FAMILIES` or a strftime format.
    Dates outside what ``datetime64[ns]`` holds (before 1677-09-21 or after
    2262-04-11, e.g. 0001-01-01 or 9999-12-31) do not parse: NaT.
    """
    formats = DATE_FAMILIES.get(family_or_format, [family_or_format])
    text = values.astype("str")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    todo = text.str.len() > 0
    for fmt in formats:
        if not todo.any():
            break
        part = text[todo]
        if fmt == "ISO8601":
            parsed = pd.to_datetime(part, format="ISO8601", errors="coerce", utc=True)
            parsed = parsed.dt.tz_convert(None)
        else:
            parsed = pd.to_datetime(part, format=fmt, errors="coerce")
        ok = parsed.notna() & (parsed >= _NS_MIN) & (parsed <= _NS_MAX)
        if ok.any():
            out.loc[ok[ok].index] = parsed[ok].astype("datetime64[ns]")
            todo.loc[ok[ok].index] = False
    return out


def detect_date_format(values: pd.Series, max_values: int = 1000) -> tuple[str | None, str | None]:
    """Pick the date family that parses most of ``values`` (blank values ignored).

    Returns ``(family, warning)``; family None when nothing parses. When month-first
    and day-first parse every sampled value equally well the choice (month-first) is
    stated in the warning, never made silently.
    """
    text = values.astype("str").str.strip()
    uniq = pd.Series(text[text.str.len() > 0].unique()[:max_values], dtype="str")
    if uniq.empty:
        return None, None
    scores = {fam: int(parse_dates(uniq, fam).notna().sum()) for fam in DATE_FAMILIES}
    best = max(scores.values())
    if best == 0:
        return None, None
    winners = [fam for fam, s in scores.items() if s == best]
    if "month_first" in winners and "day_first" in winners:
        return "month_first", (
            "dates are ambiguous: every value fits both month-first (MM/DD/YYYY) and "
            "day-first (DD/MM/YYYY); month-first was chosen. Set date_format in the "
            "contract to decide"
        )
    return winners[0], None
