"""Byte ranges of a CSV cut after real record ends (quoted newlines included)."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custseg.fanout.ranges import SplitError, head_end, plan_ranges, read_blocks


def _reader(data: bytes, reads: list[tuple[int, int]] | None = None):
    def read(start: int, end: int) -> bytes:
        if reads is not None:
            reads.append((start, end))
        return data[start:end]

    return read


def _csv(rows: list[list[str]], newline: str = "\n") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows(rows)
    return buf.getvalue().encode()


def _records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_each_range_is_whole_records_and_the_union_is_the_file() -> None:
    rows = [["id", "note"]] + [[str(i), f'line {i}\nsecond, "quoted" part'] for i in range(200)]
    data = _csv(rows)
    plan = plan_ranges(_reader(data), len(data), 300, block_bytes=64)
    assert len(plan.ranges) > 5
    assert plan.header == b"id,note\n"
    assert plan.records == 200
    rebuilt = []
    for r in plan.ranges:
        chunk = _records(plan.header + data[r.start : r.end])
        assert chunk[0] == ["id", "note"]
        assert len(chunk) - 1 == r.records
        assert chunk[1][0] == str(r.first_record)  # the range starts at a real record
        rebuilt += chunk[1:]
    assert rebuilt == rows[1:]


def test_a_cut_never_falls_inside_a_quoted_newline() -> None:
    # every record carries a newline inside quotes right where a naive cut would fall
    rows = [["id", "text"]] + [[str(i), "a" * 5 + "\n" + "b" * 5] for i in range(50)]
    data = _csv(rows, "\r\n")
    plan = plan_ranges(_reader(data), len(data), 7, block_bytes=5)
    for r in plan.ranges:
        assert data[r.start - 1 : r.start] == b"\n"
        assert data[r.start : r.start + 1] != b"b"
    assert sum(r.records for r in plan.ranges) == 50


def test_a_last_record_without_a_line_end_is_counted() -> None:
    data = b"id,x\n1,a\n2,b\n3,c"
    plan = plan_ranges(_reader(data), len(data), 4)
    assert plan.records == 3
    assert plan.ranges[-1].end == len(data)


def test_reads_are_ranged_blocks() -> None:
    data = _csv([["id"]] + [[str(i)] for i in range(1000)])
    reads: list[tuple[int, int]] = []
    plan_ranges(_reader(data, reads), len(data), 1000, block_bytes=512)
    assert max(end - start for start, end in reads) <= 512


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x1f\x8b\x08rest", "a gzip file cannot be cut"),
        (b'id,x\n1,"open\n2,b\n', "never closed"),
        (b"id,x", "no record after the header"),
    ],
)
def test_unsplittable_files_are_refused_by_name(data: bytes, message: str) -> None:
    with pytest.raises(SplitError, match=message) as info:
        plan_ranges(_reader(data), len(data), 4, name="incoming/shop/orders.csv")
    assert "incoming/shop/orders.csv" in str(info.value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.text('ab\n",', max_size=6), min_size=2, max_size=2), max_size=30),
    st.integers(1, 40),
    st.integers(1, 17),
)
def test_any_csv_splits_into_its_records(rows: list[list[str]], target: int, block: int) -> None:
    data = _csv([["h1", "h2"], *rows])
    plan = plan_ranges(_reader(data), len(data), target, block_bytes=block)
    rebuilt = [rec for r in plan.ranges for rec in _records(data[r.start : r.end])]
    assert rebuilt == rows
    for r in plan.ranges:
        assert len(_records(data[r.start : r.end])) == r.records
    for r in plan.ranges[:-1]:
        assert r.end - r.start >= target  # cut at the first record end past the target...
        body = _records(data[r.start : r.end])
        assert len(_csv(body[:-1])) < target  # ...not at a later one


def test_the_head_ends_at_a_record_end_after_enough_records_and_bytes() -> None:
    rows = [["id", "note"]] + [[str(i), f'line {i}\n"quoted"'] for i in range(100)]
    data = _csv(rows)
    header = len(b"id,note\n")
    reads: list[tuple[int, int]] = []
    end = head_end(_reader(data, reads), len(data), head_records=10, head_bytes=0, block_bytes=64)
    assert _records(data[header:end]) == rows[1:11]
    assert max(e for _, e in reads) < len(data)  # the rest of the object is not read
    end = head_end(_reader(data), len(data), head_records=10, head_bytes=500, block_bytes=64)
    head = _records(data[header:end])
    assert len(head) > 10 and head == rows[1 : len(head) + 1] and end > 500
    assert data[end - 1 : end] == b"\n"
    assert head_end(_reader(data), len(data), head_records=1000, head_bytes=0) == len(data)


def test_the_head_read_stops_at_max_bytes() -> None:
    rows = [["id", "note"]] + [[str(i), f"line {i}"] for i in range(100)]
    data = _csv(rows)
    reads: list[tuple[int, int]] = []
    end = head_end(
        _reader(data, reads), len(data), head_records=1000, head_bytes=0, block_bytes=64,
        max_bytes=200,
    )  # fmt: skip
    assert max(e for _, e in reads) <= 200
    assert end <= 200 and data[end - 1 : end] == b"\n"  # the last record end read
    unclosed = b'id,note\n1,"never closed' + b"x" * 1000
    assert head_end(_reader(unclosed), len(unclosed), head_records=5, head_bytes=0,
                    block_bytes=64, max_bytes=300) == 8  # fmt: skip
    blob = b"x" * 1000  # no record end at all
    assert head_end(_reader(blob), len(blob), head_records=5, head_bytes=0, max_bytes=300) == 300


def test_blocks_are_read_several_at_once_and_scanned_in_order() -> None:
    import threading
    import time

    data = bytes(range(256)) * 40
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def read(start: int, end: int) -> bytes:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.01 if start % 3 else 0.03)  # later blocks may finish first
        with lock:
            state["now"] -= 1
        return data[start:end]

    blocks = list(read_blocks(read, len(data), 100, 4))
    assert [s for s, _ in blocks] == list(range(0, len(data), 100))
    assert b"".join(b for _, b in blocks) == data
    assert 1 < state["most"] <= 4  # several at once, never more than asked


def test_a_failed_block_read_raises_at_its_place() -> None:
    def read(start: int, end: int) -> bytes:
        if start == 300:
            raise OSError("connection reset")
        return b"x" * (end - start)

    seen = []
    with pytest.raises(OSError, match="connection reset"):
        for start, _ in read_blocks(read, 1000, 100, 3):
            seen.append(start)
    assert seen == [0, 100, 200]


def test_the_plan_does_not_depend_on_how_many_blocks_are_read_at_once() -> None:
    rows = [["id", "note"]] + [[str(i), f'a "b"\n{i}'] for i in range(300)]
    data = _csv(rows)
    plans = [
        plan_ranges(_reader(data), len(data), 500, block_bytes=37, read_ahead=n) for n in (1, 2, 8)
    ]
    assert plans[0] == plans[1] == plans[2]
