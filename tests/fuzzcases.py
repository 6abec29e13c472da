"""Malformed CSV files for fuzzing ``ingest_file``, and the properties every run must keep.

Shared by ``tests/unit/ingest/test_ingest_fuzz.py`` (hypothesis draws ``(seed, kind)``) and
``scripts/fuzz.py`` (a longer campaign). A case is fully determined by its seed and kind,
so ``build_case(seed, kind)`` reproduces it anywhere.

Kinds:

- ``customers`` / ``transactions``: CSVs with the default contracts' columns (random
  header spellings, order, delimiter, quoting, line ends, encoding, gzip) whose cells
  are valid values or nasty ones: formulas, 1e308, inf, nan, -0, dates such as
  0001-01-01 / 9999-12-31 / 2024-02-30, NUL bytes, very long fields, stray quotes and
  delimiters; plus duplicate rows / ids, ragged rows, blank lines, duplicate headers.
  Customer files carry an ``email`` column of random addresses (personal data).
- ``mutated``: a structured file with random bytes flipped, inserted, deleted, repeated
  or cut off (including gzip truncated at a random point).
- ``bytes``: random bytes.
- ``wide``: a header with thousands (up to 100,000) of columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("customers", "transactions", "mutated", "bytes", "wide")
CHUNKS = (250_000, 16, 3)  # rows per chunk: one chunk, a few, many (and two clean parts)
CHUNK_WEIGHTS = (0.6, 0.25, 0.15)
KIND_WEIGHTS = (0.35, 0.25, 0.2, 0.1, 0.1)

NASTY = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://x")',
    "+1+1",
    "@SUM(A1:A2)",
    "-2+3",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "1e309",
    "-1e309",
    "1e-400",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "nan",
    "NaN",
    "-0",
    "-0.0",
    "+0",
    "0",
    "00012",
    "1,234.50",
    "1.234,50",
    "12,5",
    "€ 12",
    "$1,000,000",
    "12%",
    "0x1F",
    "1_000",
    "١٢٣",
    "9" * 400,
    "1" + "0" * 40,
    "0001-01-01",
    "9999-12-31",
    "2024-02-30",
    "2024-13-01",
    "1677-09-21",
    "2262-04-12",
    "1900-01-01 25:61:61",
    "31/12/9999",
    "00/00/0000",
    "12/31/0001",
    "20241301",
    "99999999",
    "2010-12-01T08:26:00Z",
    "2010-12-01T08:26:00+14:00",
    "2010-12-01T08:26:00.123456789123",
    "",
    " ",
    "NULL",
    "N/A",
    "(blank)",
    "-",
    "?",
    "\x00",
    "a\x00b",
    '"',
    '""',
    'a"b',
    "line\nbreak",
    "cr\rhere",
    "tab\there",
    ",",
    ";",
    "|",
    "\t",
    "🙂",
    "\u202eevil",
    "\ufeff",
    "é",
    "Ä",
    "ß",
    "\u00a0",
    "\u2028",
    "yes",
    "Y",
    "maybe",
    "TRUE",
    "C12345",
    "c12345",
]

FIRST = ["ann", "bob", "chen", "dana", "emil", "fatima", "goran", "hana", "ivan", "jo"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net"]
WORDS = ["gold", "Silver", "BRONZE", "north", "South ", " west", "x y", "a\tb", "ümlaut"]

CUSTOMER_COLUMNS = {
    # canonical -> (header spellings, value kind)
    "customer_id": (["customer_id", "CustomerID", "Customer ID", "cust_id", "client_id"], "id"),
    "email": (["email", "E-mail", "email_address"], "email"),
    "name": (["name", "full_name"], "name"),
    "age": (["age", "Age", "customer_age"], "int"),
    "annual_income": (["annual_income", "Annual Income (k$)", "income"], "float"),
    "spending_score": (["spending_score", "Spending Score (1-100)"], "score"),
    "tenure": (["tenure", "tenure_months"], "int"),
    "monthly_charges": (["MonthlyCharges", "monthly_charges"], "float"),
    "total_charges": (["TotalCharges", "total_charges"], "float"),
    "gender": (["gender", "Genre", "sex"], "gender"),
    "contract": (["Contract", "plan"], "category"),
    "payment_method": (["PaymentMethod", "payment_type"], "category"),
    "senior_citizen": (["SeniorCitizen", "is_senior"], "bool"),
    "churn": (["Churn", "churned"], "bool"),
    "signup_date": (["signup_date", "registration_date", "Dt_Customer"], "date"),
    "last_purchase_date": (["last_purchase_date", "last_order_date"], "date"),
    "country": (["country", "Country"], "category"),
}
TRANSACTION_COLUMNS = {
    "invoice_id": (["InvoiceNo", "invoice_id", "order_id"], "invoice"),
    "event_time": (["InvoiceDate", "order_date", "timestamp"], "datetime"),
    "customer_id": (["CustomerID", "customer_id"], "id"),
    "quantity": (["Quantity", "qty"], "qty"),
    "unit_price": (["UnitPrice", "price"], "float"),
    "amount": (["amount", "total"], "float"),
    "country": (["Country"], "category"),
    "product_id": (["StockCode", "sku"], "id"),
}
REQUIRED = {
    "customers": ["customer_id"],
    "transactions": ["customer_id", "event_time", "quantity", "unit_price"],
}


@dataclass
class FuzzCase:
    """One generated input file."""

    seed: int
    kind: str
    data: bytes
    emails: list[str] = field(default_factory=list)  # personal values that must not leak
    notes: list[str] = field(default_factory=list)  # how it was built
    chunk_rows: int = 250_000  # the ingest's chunk size (small: many chunks and parts)

    @property
    def name(self) -> str:
        return f"fuzz-{self.kind}-{self.seed}.csv"

    def describe(self) -> str:
        return (
            f"{self.kind} seed={self.seed} ({len(self.data):,} bytes; {', '.join(self.notes)}; "
            f"chunks of {self.chunk_rows:,} rows)"
        )


# --------------------------------------------------------------------------------------
# values


def _email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)}.{rng.randrange(10**6):06d}@{rng.choice(DOMAINS)}"


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
    form = rng.randrange(5)
    if form == 0:
        return f"{y:04d}-{m:02d}-{d:02d}"
    if form == 1:
        return f"{m}/{d}/{y}"
    if form == 2:
        return f"{d:02d}.{m:02d}.{y}"
    if form == 3:
        return f"{y:04d}{m:02d}{d:02d}"
    return f"{m}/{d}/{y} {rng.randint(0, 23)}:{rng.randint(0, 59):02d}"


def _value(rng: random.Random, kind: str, emails: list[str]) -> str:
    if kind == "id":
        return rng.choice(["", "C", "00"]) + str(rng.randrange(60))
    if kind == "email":
        e = _email(rng)
        emails.append(e)
        return e
    if kind == "name":
        return f"{rng.choice(FIRST).title()} {rng.choice(FIRST).title()}"
    if kind == "int":
        return str(rng.randint(-5, 130))
    if kind == "score":
        return str(rng.randint(0, 105))
    if kind == "float":
        return rng.choice(["%.2f", "%.6g", "%d"]) % rng.uniform(-10, 5000)
    if kind == "qty":
        return str(rng.randint(-20, 100))
    if kind == "gender":
        return rng.choice(["Male", "Female", "M", "F", "f", " male ", "other"])
    if kind == "category":
        return rng.choice(WORDS)
    if kind == "bool":
        return rng.choice(["Yes", "No", "1", "0", "true", "F"])
    if kind in ("date", "datetime"):
        return _date(rng)
    if kind == "invoice":
        return rng.choice(["", "C"]) + str(rng.randrange(536000, 536100))
    return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 12)))


def _nasty(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.85:
        return rng.choice(NASTY)
    if pick < 0.95:  # a very long field
        return rng.choice(["x", "9", "é", ",", '"']) * rng.choice([1000, 10_000, 100_000])
    return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 20)))


# --------------------------------------------------------------------------------------
# structured files


def _structured(rng: random.Random, kind: str, case: FuzzCase) -> str:
    spec = CUSTOMER_COLUMNS if kind == "customers" else TRANSACTION_COLUMNS
    names = list(spec)
    chosen = [n for n in names if n in REQUIRED[kind] or rng.random() < 0.5]
    if rng.random() < 0.1 and len(chosen) > 1:  # drop a required column sometimes
        chosen.remove(rng.choice(chosen))
    if kind == "customers" and "email" not in chosen and rng.random() < 0.8:
        chosen.append("email")
    rng.shuffle(chosen)
    headers = [rng.choice(spec[n][0]) for n in chosen]
    if rng.random() < 0.1:  # duplicate header: the same name twice, or two aliases
        i = rng.randrange(len(chosen))
        chosen.append(chosen[i])
        headers.append(rng.choice([headers[i], *spec[chosen[i]][0]]))
        case.notes.append("duplicate header")
    if rng.random() < 0.2:
        headers = [h.upper() if rng.random() < 0.3 else f" {h} " for h in headers]
    nasty_rate = rng.choice([0.0, 0.05, 0.2, 0.6])
    rows: list[list[str]] = []
    for _ in range(rng.choice([0, 1, 2, 5, 20, 60])):
        if rows and rng.random() < 0.1:  # exact duplicate row
            rows.append(list(rng.choice(rows)))
            continue
        row = [
            _nasty(rng) if rng.random() < nasty_rate else _value(rng, spec[n][1], case.emails)
            for n in chosen
        ]
        if rng.random() < 0.05:  # ragged
            row = row[:-1] if rng.random() < 0.5 and len(row) > 1 else [*row, "extra"]
        rows.append(row)
    delimiter = rng.choice([",", ",", ";", "\t", "|"])
    line_end = rng.choice(["\n", "\n", "\r\n", "\r"])
    case.notes.append(f"delimiter {delimiter!r}, {len(rows)} rows, nasty {nasty_rate}")
    buf = io.StringIO()
    style = rng.random()
    if style < 0.8:
        quoting = rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
        writer = csv.writer(buf, delimiter=delimiter, lineterminator=line_end, quoting=quoting)
        writer.writerow(headers)
        for row in rows:
            writer.writerow(row)
            if rng.random() < 0.03:
                buf.write(line_end)  # blank line
    else:  # no quoting at all, sometimes mixing delimiters
        case.notes.append("unquoted")
        other = rng.choice([",", ";", "\t", "|"])
        buf.write(delimiter.join(headers) + line_end)
        for row in rows:
            sep = other if rng.random() < 0.2 else delimiter
            buf.write(sep.join(row) + line_end)
    text = buf.getvalue()
    if rng.random() < 0.1:
        text = text.rstrip("\r\n")  # no final line end
    return text


def _encode(rng: random.Random, text: str, case: FuzzCase) -> bytes:
    enc = rng.choices(
        ["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1", "utf-16-le"],
        weights=[0.6, 0.1, 0.08, 0.1, 0.07, 0.05],
    )[0]
    case.notes.append(enc)
    return text.encode(enc, errors="replace")


def _compress(rng: random.Random, data: bytes, case: FuzzCase) -> bytes:
    pick = rng.random()
    if pick < 0.1:
        case.notes.append("gzip")
        return gzip.compress(data, mtime=0)
    if pick < 0.15:
        full = gzip.compress(data, mtime=0)
        cut = rng.randrange(len(full))
        case.notes.append(f"gzip truncated at {cut} of {len(full)}")
        return full[:cut]
    return data


def _mutate(rng: random.Random, data: bytes, case: FuzzCase) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not buf:
            break
        op = rng.randrange(5)
        i = rng.randrange(len(buf))
        if op == 0:
            buf[i] = rng.randrange(256)
        elif op == 1:
            buf[i:i] = bytes([rng.randrange(256)])
        elif op == 2:
            del buf[i : i + rng.randint(1, 50)]
        elif op == 3:
            buf[i:i] = buf[i : i + rng.randint(1, 200)] * rng.randint(1, 5)
        else:
            del buf[i:]
        case.notes.append(f"mutation {op} at {i}")
    return bytes(buf)


def build_case(seed: int, kind: str | None = None) -> FuzzCase:
    """The case for ``seed`` (and ``kind``; None picks one from the seed)."""
    rng = random.Random(seed)
    picked = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]  # always drawn: same stream
    kind = kind or picked
    case = FuzzCase(seed=seed, kind=kind, data=b"")
    if kind in ("customers", "transactions"):
        data = _encode(rng, _structured(rng, kind, case), case)
        case.data = _compress(rng, data, case)
    elif kind == "mutated":
        base = rng.choice(["customers", "transactions"])
        data = _encode(rng, _structured(rng, base, case), case)
        if rng.random() < 0.2:
            data = gzip.compress(data, mtime=0)
            case.notes.append("gzip")
        case.data = _mutate(rng, data, case)
    elif kind == "bytes":
        n = rng.choice([0, 1, 2, 10, 100, 1000, 5000])
        case.data = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.3:  # something that starts like a CSV
            case.data = b"customer_id,age\n" + case.data
        case.notes.append(f"{n} random bytes")
    elif kind == "wide":
        width = 100_000 if rng.random() < 0.1 else rng.choice([300, 1000, 10_000])
        case.data = wide_header(width, rows=rng.randint(0, 3), with_id=rng.random() < 0.7)
        case.notes.append("wide header")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    # drawn from a stream of its own, so that a seed's bytes stay what they were
    case.chunk_rows = random.Random(seed * 7919 + 17).choices(CHUNKS, weights=CHUNK_WEIGHTS)[0]
    return case


def wide_header(width: int, rows: int = 2, with_id: bool = True) -> bytes:
    """A CSV whose header has ``width`` columns (customer_id first when ``with_id``)."""
    names = [f"col_{i}" for i in range(width)]
    if with_id:
        names[0] = "customer_id"
    lines = [",".join(names)]
    for r in range(rows):
        lines.append(",".join([f"C{r}", *(str(i % 7) for i in range(width - 1))]))
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------------------
# the properties


def _no_nan_constant(name: str) -> None:
    raise ValueError(f"quality.json holds the non-JSON constant {name}")


UPLOAD_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # one upload time: reasons name it


def check_case(case: FuzzCase, work: Path) -> None:
    """Ingest ``case`` under ``work`` and assert every property; AssertionError if not."""
    from custseg.dataset.clean_data import read_clean
    from custseg.ingest.pipeline import ingest_file

    work.mkdir(parents=True, exist_ok=True)
    src = work / case.name
    src.write_bytes(case.data)
    out = work / "out"
    source = f"incoming/fuzz/{case.name}"
    result = ingest_file(
        src,
        out,
        source_name=source,
        dataset="fuzz",
        run_id="fuzz-run",
        chunk_rows=case.chunk_rows,
        upload_time=UPLOAD_TIME,
    )
    rep = result.report
    assert result.status in {"accepted", "rejected"}, result.status
    assert rep.rows_read == rep.rows_kept + rep.rows_rejected, (
        f"rows_read {rep.rows_read} != kept {rep.rows_kept} + rejected {rep.rows_rejected}"
    )
    assert min(rep.rows_read, rep.rows_kept, rep.rows_rejected) >= 0
    report_json = result.report_json_path.read_text(encoding="utf-8")
    report_text = result.report_text_path.read_text(encoding="utf-8")
    data = json.loads(report_json, parse_constant=_no_nan_constant)
    assert data["status"] == result.status
    assert data["rows_read"] == rep.rows_read
    if result.status == "rejected":
        assert rep.errors, "rejected without an error"
        assert any(source in e["message"] for e in rep.errors), "no error names the file"
        assert result.clean_path is None and not (out / "data").exists()
        assert report_text.startswith(f"REJECTED {source}")
    else:
        assert result.clean_path is not None
        table = read_clean(result.clean_path)
        assert table.num_rows == rep.rows_kept, (table.num_rows, rep.rows_kept)
        assert rep.rows_kept > 0
        if result.contract.grain == "customer":
            ids = table.column("customer_id")
            assert ids.null_count == 0
            assert len(ids.unique()) == table.num_rows, "customer ids repeat in clean data"
        for personal in ("email", "name"):
            assert personal not in table.column_names
        if rep.rows_rejected:
            assert result.rejected_rows_path is not None
            rejected = _count_csv_records(result.rejected_rows_path)
            assert rejected == rep.rows_rejected, (rejected, rep.rows_rejected)
        assert report_text.startswith(f"ACCEPTED {source}")
    if case.chunk_rows != CHUNKS[0]:
        # The chunking changes nothing but the number of chunks and clean parts, as long
        # as the date formats were told the same way: they are detected on the first
        # chunk's values (up to 1,000 of them), which a chunk of 3 or 16 rows cuts short
        # (a chunk holds 250,000 rows unless CHUNK_ROWS says otherwise).
        whole = ingest_file(
            src,
            work / "whole",
            source_name=source,
            dataset="fuzz",
            run_id="fuzz-run",
            upload_time=UPLOAD_TIME,
        )
        # the same holds for decimal separators, decided by the first chunk holding a
        # value with a "." or ","
        if whole.report.date_formats != rep.date_formats:
            return
        if whole.report.decimal_separators != rep.decimal_separators:
            return
        assert whole.status == result.status
        counts = ("rows_read", "rows_kept", "rows_invalid", "rows_excluded", "rows_duplicate")
        for name in counts:
            assert getattr(whole.report, name) == getattr(rep, name), name
        assert _reasons(whole.report.rejected_by_reason) == _reasons(rep.rejected_by_reason)
        if result.clean_path is not None and whole.clean_path is not None:
            assert read_clean(result.clean_path).equals(read_clean(whole.clean_path))
    for email in case.emails:
        assert email not in report_json, f"personal value leaked into quality.json: {email}"
        assert email not in report_text, f"personal value leaked into quality.txt: {email}"


def _reasons(by_reason: dict[str, int]) -> dict[str, int]:
    """Rejection counts by reason, a date's expected format left out: a chunk read before
    the format was told (its column had no date to tell it by) says "expected a recognised
    date format" where one read after says which."""
    out: dict[str, int] = {}
    for reason, n in by_reason.items():
        key = reason.split(" (expected ", 1)[0] if ": not a date" in reason else reason
        out[key] = out.get(key, 0) + n
    return out


def _count_csv_records(path: Path) -> int:
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, path.stat().st_size + 1))  # fields may be huge
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return sum(1 for _ in csv.reader(fh)) - 1
    finally:
        csv.field_size_limit(old)
