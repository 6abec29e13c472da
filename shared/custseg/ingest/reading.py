"""Reading customer CSV files: sniff the format, then stream raw string chunks.

What is detected (never from the file name):

- compression: gzip by its magic bytes ``1f 8b``; a zip archive (``PK``) is refused;
- encoding: UTF-8 with or without a byte-order mark; UTF-16 with a BOM; otherwise the
  code page that charset-normalizer finds plausible and whose accented letters belong
  to one language's alphabet (e.g. cp1250 for Polish, cp1252 for French), with a
  warning. The whole file is checked (streamed, constant memory), so a bad byte at the
  end is caught before any data is converted. A file that is mostly UTF-8 with some
  lines in another code page is refused (``mixed_encoding``) naming those lines; NUL
  bytes anywhere in a file without a UTF-16 BOM make it undecodable;
- delimiter: one of ``,`` ``;`` tab ``|``, the one that splits the header and the first
  records into the most, consistent, fields (quotes respected);
- line ends: LF, CRLF or CR.

Limits (:class:`ReadLimits`, stack parameters in the deployed stack) keep memory
bounded whatever a file holds: a gzip upload's decompressed size and compression ratio
(``too_large``, measured while decompressing), the header's width in columns and bytes
(``header_too_wide``) and a line's length (``row_too_long``).

Values are read as text, always (ids keep their leading zeros); conversion to numbers
and dates happens per contract in :mod:`custseg.ingest.validation`.

Row numbers: the header is row 1 and the first data record is row 2. A row is a CSV
*record*: a quoted value holding a line break does not start a new row, so a record
spanning three lines still counts as one row. Blank lines are skipped and not counted.
Problems found in the bytes (NUL, a foreign code page, a line too long) are named by
their *line* number as an editor shows it (line 1 is the header).

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

import charset_normalizer
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SAMPLE_BYTES = 256 * 1024
MIB = 1024 * 1024
_CHECK_BLOCK = 4 * MIB
_READ_BLOCK = 4 * MIB  # pyarrow's read block; grown to hold the longest line
_CHUNK_BYTES = 64 * MIB  # a chunk ends at chunk_rows rows or this many bytes of values
_RATIO_FLOOR = 64 * MIB  # the compression ratio counts once this much is decompressed
_DETECT_SAMPLE = 64 * 1024  # bytes of non-UTF-8 lines given to charset-normalizer
_BAD_LINES_NAMED = 5  # lines named in a mixed-encoding rejection


@dataclass(frozen=True)
class ReadLimits:
    """What one file may hold; beyond it the file is rejected with a clear code.

    In the deployed stack these are stack parameters (see
    :class:`custseg.aws.settings.Settings`).
    """

    max_decompressed_bytes: int = 2048 * MIB  # a gzip upload, decompressed (too_large)
    max_compression_ratio: float = 100.0  # decompressed / compressed bytes (too_large)
    max_columns: int = 100_000  # header fields (header_too_wide)
    max_header_bytes: int = 4 * MIB  # the header line (header_too_wide)
    max_row_bytes: int = 16 * MIB  # any line of the file (row_too_long)


class ReadError(Exception):
    """A file-level reading failure with a stable ``code`` (see :mod:`custseg.ingest.quality`)."""

    def __init__(self, code: str, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.row = row


@dataclass
class FileFormat:
    """What :func:`sniff` found out about a file."""

    encoding: str  # "utf-8", "utf-8-sig" (BOM), "utf-16", or a detected code page
    delimiter: str
    compression: str | None  # "gzip" or None
    headers: list[str]  # header names as written (BOM and surrounding spaces removed)
    size_bytes: int
    line_ending: str = "LF"  # "LF", "CRLF" or "CR"
    warnings: list[str] = field(default_factory=list)
    read_block: int = _READ_BLOCK  # bytes pyarrow reads at once: more than any line

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
        return int(self.table.num_rows)


def _open_binary(path: Path, compression: str | None) -> BinaryIO:
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _detect_compression(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _mib(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


def _limit(n: float) -> str:
    """A limit as set, in MiB (``16 MiB``, ``0.5 MiB``)."""
    return f"{n / MIB:,.6g} MiB"


def _check_inflation(out_bytes: int, in_bytes: int, limits: ReadLimits) -> None:
    """Raise ``too_large`` when a gzip stream has expanded beyond the limits."""
    if out_bytes > limits.max_decompressed_bytes:
        raise ReadError(
            "too_large",
            f"the gzip file decompresses to more than {_limit(limits.max_decompressed_bytes)} "
            "(MaxDecompressedMiB): split it into several files, or raise MaxDecompressedMiB "
            "in the stack parameters together with the function's memory and storage",
        )
    ratio = out_bytes / max(in_bytes, 1)
    if out_bytes >= _RATIO_FLOOR and ratio > limits.max_compression_ratio:
        raise ReadError(
            "too_large",
            f"the gzip file expands more than {limits.max_compression_ratio:,.6g} times "
            f"(MaxCompressionRatio): its first {_mib(in_bytes)} became {_mib(out_bytes)}. "
            "Customer data does not compress this well; upload the CSV uncompressed or "
            "raise MaxCompressionRatio in the stack parameters",
        )


def _line_end(sample: bytes) -> bytes:
    """The byte that ends lines: LF, or CR in a file with CR line ends only."""
    return b"\r" if b"\n" not in sample and b"\r" in sample else b"\n"


def _line_at(path: Path, compression: str | None, offset: int, line_end: bytes) -> int:
    """The line number (1 = the header) of the byte at ``offset`` (decompressed)."""
    count = 0
    pos = 0
    with _open_binary(path, compression) as fh:
        while pos < offset:
            block = fh.read(min(_CHECK_BLOCK, offset - pos))
            if not block:
                break
            count += block.count(line_end)
            pos += len(block)
    return count + 1


@dataclass
class _Scan:
    """What one pass over every byte of a file found (see :func:`_scan`)."""

    decoded: bool  # every byte decodes with the encoding
    longest: int  # a line at least this long exists; none is longer than max(longest, block)


def _first_end(block: bytes) -> int:
    ends = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


class _Scanner:
    """The checks of :func:`_scan` on one block at a time."""

    def __init__(
        self,
        path: Path,
        compression: str | None,
        encoding: str,
        limits: ReadLimits,
        line_end: bytes,
    ) -> None:
        self.path = path
        self.compression = compression
        self.limits = limits
        self.line_end = line_end
        self.decoder = codecs.getincrementaldecoder(encoding)()
        self.utf8 = encoding in ("utf-8", "utf-8-sig")
        self.decoded = True
        self.check_nul = encoding != "utf-16"
        self.total = 0  # decompressed bytes seen
        self.line_start = 0  # offset where the open line began
        self.longest = 0

    def feed(self, block: bytes, compressed: int) -> None:
        if self.compression == "gzip":
            _check_inflation(self.total + len(block), compressed, self.limits)
        if self.check_nul and b"\x00" in block:
            line = self._line(self.total + block.index(b"\x00"))
            raise ReadError(
                "undecodable",
                f"the file holds NUL bytes (first on line {line:,}): it is binary, not CSV text",
            )
        first = _first_end(block)
        end = self.total + len(block)
        # the line open at the block's start ends in it (first) or runs on past it
        open_line = (self.total + first if first >= 0 else end) - self.line_start
        if open_line > self.limits.max_row_bytes:
            raise ReadError(
                "row_too_long",
                f"line {self._line(self.line_start):,} is longer than "
                f"{_limit(self.limits.max_row_bytes)} (MaxRowMiB): no customer record is "
                "this long. Check that every quote is closed and that lines end with LF, "
                "CRLF or CR",
            )
        if first >= 0:  # lines inside the block are shorter than the block
            self.longest = max(self.longest, open_line)
            self.line_start = self.total + max(block.rfind(b"\n"), block.rfind(b"\r")) + 1
        if self.decoded and not self._ascii_at_boundary(block):
            try:
                self.decoder.decode(block)
            except UnicodeDecodeError:
                self.decoded = False
        self.total = end

    def _ascii_at_boundary(self, block: bytes) -> bool:
        """True when decoding ``block`` can be skipped: UTF-8 text, nothing pending from
        the block before (nor a BOM to strip), and only ASCII bytes, which always decode."""
        return self.utf8 and self.decoder.getstate() == (b"", 0) and block.isascii()

    def finish(self) -> _Scan:
        if self.decoded:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.decoded = False
        return _Scan(self.decoded, max(self.longest, self.total - self.line_start))

    def _line(self, offset: int) -> int:
        return _line_at(self.path, self.compression, offset, self.line_end)


def _scan(
    path: Path, compression: str | None, encoding: str, limits: ReadLimits, line_end: bytes
) -> _Scan:
    """Stream the whole file once (constant memory): decode it, and enforce the limits.

    Raises :class:`ReadError`: ``too_large`` (a gzip stream expands beyond the limits,
    measured while decompressing), ``row_too_long`` (a line longer than the limit),
    ``undecodable`` (NUL bytes outside UTF-16; broken gzip). Lines are measured between
    LF / CR bytes in blocks no longer than the row limit, so only the lines that cross a
    block boundary need counting.
    """
    scanner = _Scanner(path, compression, encoding, limits, line_end)
    block_size = max(1, min(_CHECK_BLOCK, limits.max_row_bytes))
    try:
        with contextlib.ExitStack() as files:
            raw = files.enter_context(open(path, "rb"))
            fh: BinaryIO = raw
            if compression == "gzip":  # raw.tell(): the compressed bytes consumed
                fh = files.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[assignment]
            while block := fh.read(block_size):
                scanner.feed(block, raw.tell())
    except (EOFError, OSError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise ReadError("undecodable", f"the file is not valid gzip: {exc}") from None
    return scanner.finish()


def _decodes(path: Path, compression: str | None, encoding: str) -> bool:
    """Decode the whole file incrementally; True when every byte decodes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with _open_binary(path, compression) as fh:
            while block := fh.read(_CHECK_BLOCK):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except (UnicodeDecodeError, EOFError, OSError, zlib.error):
        return False
    return True


@dataclass
class _Utf8Profile:
    """The lines of a not-quite-UTF-8 file that hold non-ASCII bytes."""

    utf8_lines: int = 0  # decode as UTF-8
    bad_lines: int = 0  # do not
    bad_numbers: list[int] = field(default_factory=list)  # the first few, 1 = header
    sample: bytearray = field(default_factory=bytearray)  # some bad lines, for detection


def _profile_utf8(path: Path, compression: str | None, line_end: bytes) -> _Utf8Profile:
    """Sort the lines holding non-ASCII bytes into UTF-8 and not (streamed, line-aligned
    blocks; lines are known to be within the row limit)."""
    prof = _Utf8Profile()
    line_no = 0
    carry = b""
    with _open_binary(path, compression) as fh:
        while True:
            block = fh.read(_CHECK_BLOCK)
            unit = carry + block
            if block:
                cut = unit.rfind(line_end)
                carry, unit = (unit[cut + 1 :], unit[: cut + 1]) if cut >= 0 else (unit, b"")
            else:
                carry = b""
            if unit and not unit.isascii():
                _profile_lines(unit, line_end, line_no, prof)
            line_no += unit.count(line_end)
            if not block:
                return prof


def _profile_lines(unit: bytes, line_end: bytes, before: int, prof: _Utf8Profile) -> None:
    for i, line in enumerate(unit.split(line_end)):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            prof.utf8_lines += 1
        except UnicodeDecodeError:
            prof.bad_lines += 1
            if len(prof.bad_numbers) < _BAD_LINES_NAMED:
                prof.bad_numbers.append(before + i + 1)
            if len(prof.sample) < _DETECT_SAMPLE:
                prof.sample += line + b"\n"


# Letters of the languages customer files are written in: a decoding whose accented
# letters all come from one of them is the plausible one (cp1250 "Łódź", not cp1252
# "£ódŸ"; cp1252 "Lefèvre", not cp1250 "Lefčvre").
_ALPHABETS = (
    "àâæçéèêëîïôœùûüÿ",  # French
    "äöüß",  # German
    "áéíñóúü",  # Spanish
    "áâãàçéêíóôõú",  # Portuguese
    "àèéìíîòóù",  # Italian
    "åäöæøéü",  # Nordic
    "ąćęłńóśźż",  # Polish
    "áčďéěíňóřšťúůýž",  # Czech
    "áäčďéíĺľňóôŕšťúýž",  # Slovak
    "áéíóöőúüű",  # Hungarian
    "ăâîșțşţ",  # Romanian
    "čćđšž",  # Croatian, Slovenian
    "çğıi̇öşü",  # Turkish (i̇: İ lower-cased)
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґўј",  # Cyrillic
    "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΐΰς",  # Greek
)
_CODE_PAGE_NAMES = {
    "cp1250": "Windows-1250 (Central European)",
    "cp1251": "Windows-1251 (Cyrillic)",
    "cp1252": "Windows-1252 (Western European)",
    "cp1253": "Windows-1253 (Greek)",
    "cp1254": "Windows-1254 (Turkish)",
    "cp1257": "Windows-1257 (Baltic)",
}


def _alphabet_fit(text: str) -> float:
    """Share of the non-ASCII characters of ``text`` in the one alphabet holding most."""
    chars = [c.lower() for c in text if ord(c) > 127]
    if not chars:
        return 0.0
    return max(sum(c in alpha for c in chars) for alpha in _ALPHABETS) / len(chars)


def code_page_candidates(sample: bytes) -> list[str]:
    """Code pages that may have written ``sample`` (text that is not UTF-8), most
    plausible first: charset-normalizer's guesses (and Windows-1252) that decode it,
    ranked by how well their accented letters fit one language's alphabet, then by
    charset-normalizer's order, Windows-1252 first among equals."""
    found = [m.encoding for m in charset_normalizer.from_bytes(sample)]
    seen: list[str] = []
    for name in [*found, "cp1252"]:
        if name in seen or name.startswith("utf"):
            continue
        try:
            sample.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        seen.append(name)
    fits = {name: _alphabet_fit(sample.decode(name)) for name in seen}
    return sorted(seen, key=lambda name: (-fits[name], name != "cp1252"))


def _fallback_encoding(
    path: Path, compression: str | None, encoding: str, line_end: bytes
) -> tuple[str, str]:
    """The encoding of a file that is not valid ``encoding`` (UTF-8), and a warning.

    Raises ``mixed_encoding`` when lines with accented characters are valid UTF-8 and
    others are not (or the file has a UTF-8 byte-order mark), ``undecodable`` when no
    code page decodes every byte.
    """
    prof = _profile_utf8(path, compression, line_end)
    if prof.bad_lines and (encoding == "utf-8-sig" or prof.utf8_lines * 100 >= prof.bad_lines):
        named = ", ".join(f"{n:,}" for n in prof.bad_numbers)
        more = prof.bad_lines - len(prof.bad_numbers)
        raise ReadError(
            "mixed_encoding",
            f"the file mixes encodings: {prof.bad_lines:,} line(s) are not UTF-8 (line "
            f"{named}{f' and {more:,} more' if more > 0 else ''}) while "
            f"{prof.utf8_lines:,} other line(s) with accented characters are UTF-8 "
            f"(e.g. rows pasted from another program). Save the whole file as UTF-8",
            row=None,
        )
    for name in code_page_candidates(bytes(prof.sample))[:3]:
        if _decodes(path, compression, name):
            label = f"{name} ({_CODE_PAGE_NAMES[name]})" if name in _CODE_PAGE_NAMES else name
            return name, (
                f"the file is not valid UTF-8; it was read as {label}, the code page its "
                "accented characters fit: check them, or save the file as UTF-8"
            )
    raise ReadError(
        "undecodable",
        f"the file cannot be decoded as {encoding} or as any code page that fits its "
        f"non-UTF-8 lines (line {prof.bad_numbers[0] if prof.bad_numbers else 1:,} first)",
    )


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


def _read_head(path: Path, compression: str | None, limits: ReadLimits) -> tuple[bytes, bool]:
    """The first bytes of the (decompressed) file, through the end of its header line;
    and whether more follows. Raises ``header_too_wide`` when the header line is longer
    than the limit (only that much is read)."""
    try:
        with _open_binary(path, compression) as fh:
            sample = fh.read(SAMPLE_BYTES)
            # a header longer than the sample (e.g. 100,000 columns): read on to its end
            cap = limits.max_header_bytes
            while b"\n" not in sample and b"\r" not in sample and len(sample) <= cap:
                block = fh.read(SAMPLE_BYTES)
                if not block:
                    break
                sample += block
            more = bool(fh.read(1))
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise ReadError("undecodable", f"the file is not valid gzip: {exc}") from None
    end = _first_end(sample)
    header_bytes = end if end >= 0 else len(sample)
    if header_bytes > limits.max_header_bytes:
        raise ReadError(
            "header_too_wide",
            f"the header (line 1) is longer than {_limit(limits.max_header_bytes)} "
            "(MaxHeaderKiB): a header names the columns, one line of at most that size. "
            "Check that the file has line ends (LF, CRLF or CR) and a header line",
            row=1,
        )
    return sample, more


def _sniff_encoding(
    path: Path, compression: str | None, sample: bytes, limits: ReadLimits
) -> tuple[str, int, list[str]]:
    """The file's encoding, the read block its longest line needs, and warnings.

    Streams the whole file once (:func:`_scan`), twice more when it is not UTF-8.
    """
    if sample.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    line_end = _line_end(sample)
    if encoding != "utf-16" and b"\x00" in sample:
        line = sample[: sample.index(b"\x00")].count(line_end) + 1
        raise ReadError(
            "undecodable",
            f"the file holds NUL bytes (first on line {line:,}): it is binary, not CSV text",
        )
    scan = _scan(path, compression, encoding, limits, line_end)
    warnings: list[str] = []
    if not scan.decoded:
        if encoding == "utf-16":
            raise ReadError("undecodable", "the file cannot be decoded as UTF-16 text")
        encoding, warning = _fallback_encoding(path, compression, encoding, line_end)
        warnings.append(warning)
    # pyarrow reads any record up to its block size: grown for files with long lines
    read_block = max(_READ_BLOCK, scan.longest + 64 * 1024)
    return encoding, read_block, warnings


def sniff(path: Path, limits: ReadLimits | None = None) -> FileFormat:
    """Detect compression, encoding, delimiter and headers of a CSV file.

    Raises :class:`ReadError` with code ``empty_file``, ``undecodable``,
    ``mixed_encoding``, ``no_delimiter``, ``too_large``, ``header_too_wide`` or
    ``row_too_long``. Never raises anything else for bad content.
    """
    limits = limits or ReadLimits()
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
    sample, more = _read_head(path, compression, limits)
    encoding, read_block, warnings = _sniff_encoding(path, compression, sample, limits)
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
    if len(headers) > limits.max_columns:
        raise ReadError(
            "header_too_wide",
            f"the header has {len(headers):,} columns, above the limit of "
            f"{limits.max_columns:,} (MaxColumns): keep the columns the contract reads "
            "and drop the rest",
            row=1,
        )
    return FileFormat(
        encoding=encoding,
        delimiter=delimiter,
        compression=compression,
        headers=headers,
        size_bytes=size,
        line_ending=line_ending,
        warnings=warnings,
        read_block=read_block,
    )


def _parse_failure(exc: Exception, rows_before: int, fmt: FileFormat) -> ReadError:
    """The :class:`ReadError` for pyarrow giving up after ``rows_before`` data rows."""
    if "straddl" in str(exc):  # a record longer than pyarrow's read block
        row = rows_before + 2
        return ReadError(
            "parse_error",
            f"the CSV cannot be parsed from about row {row:,} on: a record is longer than "
            f"the reader's block of {_mib(fmt.read_block)}, so a quoted value runs on over "
            'many lines: check for a quote (") that is not closed where its value ends',
            row=row,
        )
    return ReadError("parse_error", f"the CSV cannot be parsed: {_parse_message(exc)}")


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
    """Stream the records of ``path`` as :class:`RawChunk` of at most ``chunk_rows`` rows
    (fewer when their values reach 64 MiB: wide rows).

    Memory stays proportional to a chunk (plus pyarrow's read blocks, ``fmt.read_block``).
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
        block_size=fmt.read_block,
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
        if "Empty CSV file" in str(exc) or "Could not skip initial" in str(exc):
            return  # no line, or the header alone (the block always holds a whole line)
        raise ReadError("parse_error", f"the CSV cannot be parsed: {_parse_message(exc)}") from None
    valid_seen = 0
    bad_numbers: list[int] = []
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    pending_bytes = 0

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
            pending_bytes += batch.nbytes
            while pending_rows >= chunk_rows or (pending_rows and pending_bytes >= _CHUNK_BYTES):
                cut = min(chunk_rows, pending_rows)
                table = pa.Table.from_batches(pending)
                head = table.slice(0, cut)
                rest = table.slice(cut)
                yield flush(head.to_batches() or [batch.slice(0, 0)])
                pending = rest.to_batches()
                pending_rows = rest.num_rows
                pending_bytes = rest.nbytes if pending_rows else 0
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        seen = valid_seen + pending_rows + len(bad_numbers) + len(bad)
        raise _parse_failure(exc, seen, fmt) from None
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
        "%d-%b-%y",
        "%d-%b-%Y",
        "%d-%b-%Y %H:%M",
        "%d %b %Y",
        "%d/%b/%Y",
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
