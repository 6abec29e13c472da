"""The read-ahead helper of the chunk loops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from custseg.prefetch import prefetch


def test_yields_every_item_in_order_while_the_next_is_produced() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            yield i

    got = []
    for item in prefetch(source()):
        time.sleep(0.02)  # the producer gets ahead meanwhile
        got.append((item, len(produced)))
    assert [item for item, _ in got] == [0, 1, 2, 3, 4]
    assert got[0][1] >= 2  # item 1 was produced while item 0 was used
    assert all(seen <= item + 2 for item, seen in got)  # the one in hand and one ahead


def test_an_error_while_producing_is_raised_in_its_place() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("bad chunk")

    got = []
    with pytest.raises(ValueError, match="bad chunk"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1]


def test_stopping_early_stops_the_producer_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:
            closed.set()

    before = threading.active_count()
    for item in prefetch(source()):
        if item == 3:
            break
    assert closed.wait(5)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before  # no thread outlives the loop


def test_empty_source_and_bad_depth() -> None:
    assert list(prefetch(iter([]))) == []
    with pytest.raises(ValueError):
        list(prefetch(iter([1]), depth=0))
