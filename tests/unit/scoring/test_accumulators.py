"""The accumulators a run's statistics are made of, each on a hand-made example."""

from __future__ import annotations

import numpy as np
import pandas as pd

from custseg.features.build import CategoryCodes
from custseg.scoring.accumulators import CategoryCounts, SegmentTotals, Transitions


def test_segment_totals_grow_with_a_later_segment_and_skip_unknown_values() -> None:
    first, second = SegmentTotals(), SegmentTotals()
    first.update(np.array([0, 1, 1]), 2, np.array([10.0, np.nan, 5.0]))
    second.update(np.array([3, 0]), 4, np.array([1.0, 2.0]))
    merged = first.merge(second, 4)
    assert merged.customers == 5
    assert merged.counts.tolist() == [2, 2, 0, 1]
    assert merged.value_known.tolist() == [2, 1, 0, 1]
    assert merged.value_sum.tolist() == [12.0, 5.0, 0.0, 1.0]
    assert first.counts.tolist() == [1, 2]  # merging leaves its inputs as they were


def test_transitions_of_different_shapes_merge_cell_by_cell() -> None:
    a, b = Transitions(), Transitions()
    a.update(np.array([0, -1, 1]), np.array([1, 0, 1]), 2)  # one customer is new
    b.update(np.array([2, 2, -1, -1]), np.array([0, 0, 2, 1]), 3)
    merged = a.merge(b)
    assert merged.new_customers == 3
    assert merged.grid.tolist() == [[0, 1, 0], [0, 1, 0], [2, 0, 0]]
    assert b.merge(a).grid.tolist() == merged.grid.tolist()


def test_category_counts_from_codes_equal_those_from_values() -> None:
    values = pd.Series(["b", None, "a", "b", "c"], dtype="string")
    seg = np.array([1, 0, 1, 0, 1])
    frame = pd.DataFrame({"colour": values})
    plain, coded = CategoryCounts(["colour"]), CategoryCounts(["colour"])
    plain.update(frame, seg, 2)
    coded.update(frame, seg, 2, {"colour": CategoryCodes.from_values(values)})
    assert list(coded.counts["colour"].items()) == list(plain.counts["colour"].items())
    assert plain.of_segment("colour", 1) == {"b": 1, "a": 1, "c": 1}
    assert plain.overall("colour")["b"] == 2
    assert sum(plain.overall("colour").values()) == 5
