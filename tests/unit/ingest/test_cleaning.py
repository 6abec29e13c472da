"""Cleaning steps: normalisation, transaction rules, dedupe, impute, winsorise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custseg.ingest.cleaning import (
    RowSample,
    apply_cleaning,
    apply_transaction_rules,
    dedupe_plan,
    finalise_stats,
    join_raw,
    mix64,
    new_stats,
    normalise_column,
    repeated,
    row_hash,
    split_raw,
    update_stats,
)
from custseg.ingest.contracts import DedupeRule, builtin_contract


def test_normalise_category_and_missing_tokens() -> None:
    spec = builtin_contract("customers").column("gender")
    out = normalise_column(pd.Series([" Male", "F", "N/A", "female  x", "(blank)"]), spec)
    assert out.values.tolist() == ["male", "female", "", "female x", ""]
    assert out.missing.tolist() == [False, False, True, False, True]
    assert out.repairs["synonym mapped"] == 1
    assert out.repairs["trimmed whitespace"] == 1


def test_transaction_rules() -> None:
    contract = builtin_contract("transactions")
    typed = pd.DataFrame(
        {
            "invoice_id": ["1", "C2", "3", "4", "5"],
            "quantity": [2.0, -1.0, 3.0, 0.0, -2.0],
            "unit_price": [5.0, 5.0, 0.0, 2.5, 1.0],
        }
    )
    out = apply_transaction_rules(typed, contract, np.ones(5, dtype=bool))
    assert out.amount.tolist() == [10.0, -5.0, 0.0, 0.0, -2.0]
    assert out.is_return.tolist() == [False, True, False, False, True]
    assert out.counts["cancellations"] == 1
    assert out.counts["non_positive_quantity"] == 3
    assert out.counts["non_positive_price"] == 1
    assert out.counts["returns_netted"] == 2
    excluded = np.zeros(5, dtype=bool)
    for mask, _ in out.exclude_reasons:
        excluded |= mask
    assert excluded.tolist() == [False, False, True, True, False]


def test_dedupe_latest_and_most_complete() -> None:
    contract = builtin_contract("customers")
    hashes = np.array([1, 2, 1, 3, 4, 5], dtype=np.uint64)
    ids = pd.Series(["a", "b", "a", "c", "c", "b"])
    order = pd.Series(pd.to_datetime(["2024-01", "2024-02", "2024-01", "2024-03", None, "2024-05"]))
    plan = dedupe_plan(
        hashes, ids, contract, order_by=order, n_missing=np.array([0, 0, 0, 1, 0, 0])
    )
    assert plan.keep.tolist() == [True, False, False, True, False, True]
    assert plan.reason.tolist()[2] == "duplicate row"
    assert plan.exact == 1 and plan.by_id == 2 and plan.customers == 3
    complete = contract.model_copy(update={"dedupe": DedupeRule.MOST_COMPLETE})
    plan = dedupe_plan(hashes, ids, complete, n_missing=np.array([0, 0, 0, 1, 0, 0]))
    assert plan.keep.tolist() == [True, False, False, False, True, True]


def test_transactions_keep_repeated_ids() -> None:
    contract = builtin_contract("transactions")
    plan = dedupe_plan(np.array([1, 2, 3], dtype=np.uint64), pd.Series(["a", "a", "a"]), contract)
    assert plan.keep.all() and plan.customers == 1


def test_row_hash_and_split_roundtrip() -> None:
    raw = pd.DataFrame({"0": ["1", "1", "1"], "1": ["a,b", "a,b", "a,c"]}, dtype="str")
    joined = join_raw(raw)
    h = row_hash(joined)
    assert h[0] == h[1] != h[2]
    back = split_raw(pd.Series(joined.to_pylist()), 2)
    assert back.values.tolist() == raw.values.tolist()


def test_impute_and_winsorise() -> None:
    contract = builtin_contract("customers")
    specs = [contract.column("total_charges"), contract.column("gender")]
    stats = new_stats(specs)
    values = [float(v) for v in range(1, 21)] + [10_000.0, np.nan]
    frame = pd.DataFrame(
        {"total_charges": values, "gender": ["male"] * 15 + ["female"] * 6 + [None]}
    )
    sample = RowSample(k=1000)
    update_stats(stats, frame, sample, pd.Series(np.arange(len(frame)) + 2))
    finalise_stats(stats, sample)
    assert stats["total_charges"].fill == 11.0
    assert stats["total_charges"].will_clip
    out, imputed, clipped = apply_cleaning(frame, stats)
    assert imputed == {"total_charges": 1}
    assert clipped == {"total_charges": 1}
    assert out["total_charges__missing"].tolist()[-1]
    assert out["total_charges__clipped"].sum() == 1
    assert out["total_charges"].max() == 10_000  # flagged, the value kept (never capped)
    assert out["gender__missing"].tolist()[-1]  # flag policy: flagged, not imputed
    assert out["gender"].isna().sum() == 1


def test_row_sample_bounded_and_chunking_independent() -> None:
    rows = np.arange(2, 5002)
    frame = pd.DataFrame({"x": rows.astype(float)})
    whole = RowSample(k=100)
    whole.update(frame, rows)
    parts = RowSample(k=100)
    for start in range(0, 5000, 700):
        parts.update(frame.iloc[start : start + 700], rows[start : start + 700])
    assert len(whole.column("x")) == 100
    assert sorted(whole.column("x")) == sorted(parts.column("x"))


@pytest.mark.parametrize("distinct", [1_000_000_000, 50, 1])
def test_repeated_marks_every_occurrence_of_a_repeated_value(distinct: int) -> None:
    rng = np.random.default_rng(distinct)
    values = rng.integers(0, distinct, 5_000).astype(np.uint64)
    expected = pd.Series(values).duplicated(keep=False).to_numpy()
    assert np.array_equal(repeated(values), expected)
    assert not repeated(np.arange(10, dtype=np.uint64)).any()
    assert repeated(np.array([7, 3, 7], dtype=np.uint64)).tolist() == [True, False, True]


@pytest.mark.parametrize("removed", [0, 5, 40])
def test_row_sample_without_rows_is_the_sample_of_the_other_rows(removed: int) -> None:
    rows = np.arange(1_000)
    values = {"x": rows * 0.5}
    big = RowSample(k=100 + 30)
    big.update(values, rows)
    sampled_rows = np.sort(rows[np.isin(mix64(rows), big.keys)])
    gone = sampled_rows[:removed]
    left = big.without(gone, 100)
    if removed > 30:
        assert left is None  # the reserve does not cover them
        return
    keep = ~np.isin(rows, gone)
    direct = RowSample(k=100)
    direct.update({"x": values["x"][keep]}, rows[keep])
    assert left is not None and left.k == 100
    assert sorted(left.keys.tolist()) == sorted(direct.keys.tolist())
    assert sorted(left.column("x").tolist()) == sorted(direct.column("x").tolist())
