"""The ranges' rejection counts add up to the whole upload's, as one quality report
holds them (the verdict's data-loss reason names the largest rejection reason)."""

from __future__ import annotations

from custseg.aws.fanout_job import merge_counts
from custseg.scoring.metrics import summarise_quality


def test_the_ranges_reason_counts_add_up_and_name_the_main_reason() -> None:
    ranges = [
        {
            "rows_invalid": 3,
            "rows_duplicate": 1,
            "rows_excluded": 0,
            "rejected_by_reason": {"customer_id: required value missing": 3, "duplicate": 1},
            "duplicates": {"exact": 1, "by_id": 0},
        },
        {
            "rows_invalid": 4,
            "rows_duplicate": 0,
            "rows_excluded": 2,
            "rejected_by_reason": {"customer_id: required value missing": 2, "price <= 0": 4},
            "duplicates": {"exact": 0, "by_id": 0},
        },
    ]
    merged = merge_counts(ranges)
    assert merged == {
        "rows_invalid": 7,
        "rows_duplicate": 1,
        "rows_excluded": 2,
        "rejected_by_reason": {
            "customer_id: required value missing": 5,
            "duplicate": 1,
            "price <= 0": 4,
        },
        "duplicates": {"by_id": 0, "exact": 1},
    }
    quality = {"rows_read": 40, "rows_kept": 30, "rows_rejected": 10, **merged}
    top = summarise_quality(quality)["top_reasons"][0]
    assert top == {"reason": "customer_id: required value missing", "rows": 5}


def test_results_written_without_counts_merge_to_nothing() -> None:
    assert merge_counts([{"rows_read": 1}, {"rows_read": 2}]) == {}
