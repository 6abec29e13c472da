"""Sniffing and streaming CSV files."""

from __future__ import annotations

import contextlib
import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseg.ingest import reading
from custseg.ingest.reading import (
    ReadError,
    ReadLimits,
    detect_date_format,
    iter_chunks,
    parse_dates,
    sniff,
)


def _read_all(path: Path, chunk_rows: int = 1000) -> tuple[pd.DataFrame, np.ndarray, list]:
    fmt = sniff(path)
    frames, rows, bad = [], [], []
    for chunk in iter_chunks(path, fmt, chunk_rows=chunk_rows):
        frames.append(chunk.frame)
        rows.append(chunk.rows)
        bad.extend(chunk.bad)
    return pd.concat(frames, ignore_index=True), np.concatenate(rows), bad


def test_bom_semicolon_crlf(fixtures: Path) -> None:
    fmt = sniff(fixtures / "bom_semicolon_crlf.csv")
    assert fmt.encoding == "utf-8-sig"
    assert fmt.delimiter == ";"
    assert fmt.line_ending == "CRLF"
    assert fmt.headers[0] == "Customer ID"
    frame, rows, _ = _read_all(fixtures / "bom_semicolon_crlf.csv")
    assert frame["0"].tolist() == ["00042", "00043", "7"]
    assert rows.tolist() == [2, 3, 4]


def test_gzip_detected_by_magic_bytes(fixtures: Path) -> None:
    fmt = sniff(fixtures / "customers_gzip.csv")
    assert fmt.compression == "gzip"
    frame, _, _ = _read_all(fixtures / "customers_gzip.csv")
    assert frame["0"].tolist() == ["00042", "00043", "00044"]


def test_quoted_newline_is_one_row(fixtures: Path) -> None:
    frame, rows, _ = _read_all(fixtures / "quoted_newline.csv")
    assert len(frame) == 3
    assert frame.loc[0, "2"] == "1 High St\nFlat 2"
    assert frame.loc[0, "1"] == "Smith, Ann"
    assert rows.tolist() == [2, 3, 4]


def test_ragged_rows_reported_with_row_numbers(fixtures: Path) -> None:
    _, rows, bad = _read_all(fixtures / "ragged.csv")
    assert rows.tolist() == [2, 5]
    assert [(b.row, b.actual) for b in bad] == [(3, 2), (4, 4)]


def test_row_numbers_across_small_chunks(tmp_path: Path) -> None:
    body = "\n".join(f"{i},{i * 2}" for i in range(10))
    path = tmp_path / "x.csv"
    path.write_text("a,b\n" + body + "\n")
    frame, rows, _ = _read_all(path, chunk_rows=3)
    assert rows.tolist() == list(range(2, 12))
    assert frame["0"].tolist() == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    ("name", "code"),
    [("empty.csv", "empty_file"), ("single_column.csv", "no_delimiter")],
)
def test_file_level_read_errors(fixtures: Path, name: str, code: str) -> None:
    with pytest.raises(ReadError) as info:
        sniff(fixtures / name)
    assert info.value.code == code


def test_cp1252_fallback_warns(fixtures: Path) -> None:
    fmt = sniff(fixtures / "cp1252.csv")
    assert fmt.encoding == "cp1252"
    assert fmt.warnings
    frame, _, _ = _read_all(fixtures / "cp1252.csv")
    assert frame["1"].tolist() == ["Málaga", "Köln"]


def test_binary_and_broken_gzip_undecodable(tmp_path: Path) -> None:
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"id,x\n\x00\x01\x02,\xff\n")
    with pytest.raises(ReadError) as info:
        sniff(binary)
    assert info.value.code == "undecodable"
    broken = tmp_path / "g.csv"
    broken.write_bytes(gzip.compress(b"id,x\n1,2\n" * 100)[:30])
    with pytest.raises(ReadError) as info:
        sniff(broken)
    assert info.value.code == "undecodable"


def test_tab_and_pipe_delimiters(tmp_path: Path) -> None:
    for delim in ("\t", "|"):
        path = tmp_path / "d.csv"
        path.write_text(f"id{delim}name{delim}age\n1{delim}a, b{delim}3\n")
        assert sniff(path).delimiter == delim


def test_date_detection_families() -> None:
    us = pd.Series(["12/1/2010 8:26", "12/13/2010 9:00"])
    assert detect_date_format(us) == ("month_first", None)
    eu = pd.Series(["13/01/2010", "01/12/2010"])
    assert detect_date_format(eu) == ("day_first", None)
    dots = pd.Series(["01.12.2010"])
    assert detect_date_format(dots)[0] == "day_first"
    assert detect_date_format(pd.Series(["20100113"]))[0] in {"iso", "compact"}
    family, warning = detect_date_format(pd.Series(["01/02/2010", "03/04/2010"]))
    assert family == "month_first"
    assert warning is not None and "ambiguous" in warning


def test_parse_dates_us_with_time() -> None:
    out = parse_dates(pd.Series(["12/1/2010 8:26", "1/5/2011", "", "junk"]), "month_first")
    assert out.iloc[0] == pd.Timestamp("2010-12-01 08:26")
    assert out.iloc[1] == pd.Timestamp("2011-01-05")
    assert out.iloc[2:].isna().all()
    assert str(out.dtype) == "datetime64[ns]"


# ---- limits and hostile bytes ---------------------------------------------------------


def _rows(n: int) -> str:
    return "".join(f"C{i},{20 + i % 50}\n" for i in range(n))


def test_nul_byte_past_the_sample_is_refused_like_a_leading_one(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    body = _rows(40_000)  # ~400 KB: past the 256 KiB sample sniff() looks at first
    path.write_bytes(b"customer_id,age\n" + body.encode() + b"C\x00x,30\n" + b"C9,31\n")
    with pytest.raises(ReadError) as info:
        sniff(path)
    assert info.value.code == "undecodable"
    assert "NUL bytes (first on line 40,002)" in info.value.message
    lead = tmp_path / "lead.csv"
    lead.write_bytes(b"customer_id,age\nC\x00x,30\n")
    with pytest.raises(ReadError) as lead_info:
        sniff(lead)
    assert lead_info.value.code == "undecodable"
    assert lead_info.value.message == info.value.message.replace("40,002", "2")


def test_mixed_encoding_names_the_lines_not_in_utf8(tmp_path: Path) -> None:
    lines = [f"C{i},Zoë {i}\n".encode() for i in range(200)]  # UTF-8, accented
    lines[9] = "C9,Zoë Noël\n".encode("cp1252")  # line 11 (header = line 1)
    lines[149] = "C149,Müller\n".encode("cp1252")  # line 151
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"customer_id,name\n" + b"".join(lines))
    with pytest.raises(ReadError) as info:
        sniff(path)
    assert info.value.code == "mixed_encoding"
    assert "2 line(s) are not UTF-8 (line 11, 151)" in info.value.message
    assert "198 other line(s)" in info.value.message


def test_code_page_detected_polish_cp1250(tmp_path: Path) -> None:
    rows = [
        ("Łódź", "Paweł Żółć"),
        ("Kraków", "Agnieszka Wójcik"),
        ("Gdańsk", "Łukasz Śliwa"),
        ("Wrocław", "Małgorzata Kępa"),
        ("Poznań", "Józef Dąbrowski"),
    ]
    text = "customer_id,city,name\n" + "".join(
        f"C{i},{city},{name}\n" for i, (city, name) in enumerate(rows)
    )
    path = tmp_path / "pl.csv"
    path.write_bytes(text.encode("cp1250"))
    fmt = sniff(path)
    assert fmt.encoding == "cp1250"
    assert "cp1250" in fmt.warnings[0]
    frame, _, _ = _read_all(path)
    assert frame["1"].tolist()[0] == "Łódź"  # cp1252 would read £ódŸ
    assert frame["2"].tolist()[2] == "Łukasz Śliwa"


def test_code_page_detected_french_cp1252(tmp_path: Path) -> None:
    text = "customer_id,city,name\nC1,Besançon,Hélène Lefèvre\nC2,Nîmes,Zoë Noël\n"
    path = tmp_path / "fr.csv"
    path.write_bytes(text.encode("cp1252"))
    frame, _, _ = _read_all(path)
    assert sniff(path).encoding == "cp1252"
    assert frame["2"].tolist() == ["Hélène Lefèvre", "Zoë Noël"]  # cp1250 reads Lefčvre


def test_row_longer_than_the_read_block_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_value = "x" * (6 * 1024 * 1024)  # beyond pyarrow's default 4 MiB block
    path.write_text(f"customer_id,note\nC1,a\nC2,{long_value}\nC3,b\n")
    fmt = sniff(path)
    assert fmt.read_block > len(long_value)
    frame, rows, _ = _read_all(path)
    assert frame["0"].tolist() == ["C1", "C2", "C3"] and rows.tolist() == [2, 3, 4]
    assert len(frame.loc[1, "1"]) == len(long_value)


def test_record_outrunning_the_block_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    # a quote opened on row 3 and closed 1,000,000 lines (13 MB) later: one record
    path.write_text('customer_id,note\nC1,a\nC2,"b\n' + _rows(1_000_000) + '"\nC3,c\n')
    fmt = sniff(path)
    with pytest.raises(ReadError) as info:
        _ = [len(c) for c in iter_chunks(path, fmt, chunk_rows=1000)]
    assert info.value.code == "parse_error"
    assert info.value.message.startswith("the CSV cannot be parsed from about row 3 on")
    assert "longer than the reader's block of 4.0 MiB" in info.value.message
    assert "quote" in info.value.message and "straddl" not in info.value.message


def test_line_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "line.csv"
    path.write_text("customer_id,note\nC1,a\nC2," + "x" * (3 * 1024 * 1024) + "\nC3,b\n")
    with pytest.raises(ReadError) as info:
        sniff(path, ReadLimits(max_row_bytes=1024 * 1024))
    assert info.value.code == "row_too_long"
    assert info.value.message.startswith("line 3 is longer than 1 MiB (MaxRowMiB)")


@pytest.mark.parametrize(
    ("header", "limits", "expected"),
    [
        (",".join(f"c{i}" for i in range(50)), ReadLimits(max_columns=10), "has 50 columns"),
        ("customer_id," + "x" * 20_000, ReadLimits(max_header_bytes=8192), "longer than"),
    ],
)
def test_header_too_wide(tmp_path: Path, header: str, limits: ReadLimits, expected: str) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(header + "\n" + ",".join(["1"] * (header.count(",") + 1)) + "\n")
    with pytest.raises(ReadError) as info:
        sniff(path, limits)
    assert info.value.code == "header_too_wide" and expected in info.value.message


def test_gzip_decompressed_size_capped_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(b"customer_id,age\n" + _rows(300_000).encode()))
    with pytest.raises(ReadError) as info:
        sniff(path, ReadLimits(max_decompressed_bytes=1024 * 1024))
    assert info.value.code == "too_large"
    assert "decompresses to more than 1 MiB (MaxDecompressedMiB)" in info.value.message
    assert sniff(path).compression == "gzip"  # within the default limits


def test_gzip_compression_ratio_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading, "_RATIO_FLOOR", 1024 * 1024)
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"customer_id,age\n" + b"C1,30\n" * 2_000_000, 9))
    with pytest.raises(ReadError) as info:
        sniff(path)
    assert info.value.code == "too_large"
    assert "expands more than 100 times (MaxCompressionRatio)" in info.value.message


def _traced_peak(action) -> int:
    tracemalloc.start()
    try:
        with contextlib.suppress(ReadError):
            action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("where", ["header", "row"])
def test_memory_flat_whatever_the_length_of_one_line(tmp_path: Path, where: str) -> None:
    """sniff() reads a line only up to its limit: the same memory for 8 or 32 MiB."""
    peaks = []
    for mib in (8, 32):
        path = tmp_path / f"{where}{mib}.csv"
        with open(path, "wb") as fh:
            if where == "row":
                fh.write(b"customer_id,note\nC1,")
            for _ in range(mib):
                fh.write(b"x," * (512 * 1024))
        peaks.append(_traced_peak(lambda p=path: sniff(p, ReadLimits(max_row_bytes=2 << 20))))
    assert peaks[1] < peaks[0] * 1.3 + (1 << 20), peaks
    assert peaks[1] < 16 << 20, peaks  # the header limit is 4 MiB; a row's 2 MiB


@pytest.mark.parametrize(
    ("encoding", "body", "decodes"),
    [
        ("utf-8", "id,name\n1,abc\n2,Zoë\n3,日本\n".encode(), True),
        ("utf-8-sig", "\ufeffid,name\n1,abc\n2,Zoë\n".encode(), True),
        ("utf-8", b"id,name\n1,abc\n2,Zo\xe9\n3,xyz\n", False),  # cp1252, not UTF-8
        ("utf-8", b"id,name\n1,abc\n2,\xe6\x97", False),  # cut inside a character
        ("utf-8", b"id\n1,\xe6a\x97\xa5\n", False),  # ASCII inside a character's bytes
    ],
)
@pytest.mark.parametrize("block", [1, 2, 3, 5, 64])
def test_the_scan_decodes_as_python_does_whatever_the_blocks(
    tmp_path: Path, encoding: str, body: bytes, decodes: bool, block: int, monkeypatch
) -> None:
    # ASCII blocks are not decoded: a character split across blocks, a BOM or a bad
    # byte after them must be judged as decoding the whole file would
    path = tmp_path / "f.csv"
    path.write_bytes(body)
    monkeypatch.setattr(reading, "_CHECK_BLOCK", block)
    scan = reading._scan(path, None, encoding, reading.ReadLimits(), b"\n")
    assert scan.decoded is decodes
