"""Models are fitted on a bounded, reproducible sample of customers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from custseg.features.build import CategoryCodes, Features
from custseg.model.sample import sample_customers


def features(n: int, order: np.ndarray | None = None) -> Features:
    ids = pd.Index([f"c{i:05d}" for i in range(n)], name="customer_id")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"spend": rng.gamma(2, 50, n), "channel": rng.choice(["web", "store"], n)}, index=ids
    )
    if order is not None:
        frame = frame.iloc[order]
    return Features(
        frame=frame,
        numeric=["spend"],
        categorical=["channel"],
        as_of=dt.date(2026, 1, 1),
        value=frame["spend"],
        extras=pd.DataFrame(index=frame.index),
        codes={"channel": CategoryCodes.from_values(frame["channel"])},
    )


def test_the_sample_is_bounded_and_the_same_whatever_the_row_order() -> None:
    full = features(5_000)
    sampled, info = sample_customers(full, 1_000)
    assert len(sampled.frame) == 1_000 and info.to_dict()["fitted_on"] == 1_000
    assert info.customers == 5_000 and "smallest hashes" in info.method
    shuffled = features(5_000, np.random.default_rng(7).permutation(5_000))
    again, _ = sample_customers(shuffled, 1_000)
    assert set(again.frame.index) == set(sampled.frame.index)
    # every part of the features follows the sample
    assert sampled.value is not None and sampled.value.index.equals(sampled.frame.index)
    codes = sampled.codes["channel"]
    assert [codes.values[c] for c in codes.codes] == list(sampled.frame["channel"])


def test_small_data_is_used_whole_and_a_tiny_bound_is_refused() -> None:
    full = features(200)
    same, info = sample_customers(full, 1_000)
    assert same is full and info.fitted_on == 200 and info.method == "all customers"
    assert sample_customers(full, None)[0] is full
    with pytest.raises(ValueError, match="needs 3 customers"):
        sample_customers(full, 2)


def test_a_growing_dataset_keeps_most_of_its_sample() -> None:
    before, _ = sample_customers(features(5_000), 1_000)
    after, _ = sample_customers(features(6_000), 1_000)
    kept = len(set(before.frame.index) & set(after.frame.index))
    assert kept >= 800  # about 5/6 of the sample stays
