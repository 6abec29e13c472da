"""What the handlers share: naming the dataset a failed request belongs to."""

from __future__ import annotations

import pytest

from custseg.aws.runtime import dataset_of_key


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("incoming/My Shop/orders.csv", "my_shop"),
        ("training/north/a/b.csv", "north"),
        ("clean/south/20261204T000000Z-abc/_manifest.json", "south"),
        ("incoming/orders.csv", "_unsorted"),
        ("incoming/!!!/orders.csv", "_unsorted"),
        ("elsewhere/north/x.csv", "_unsorted"),
    ],
)
def test_dataset_of_key(key: str, dataset: str) -> None:
    assert dataset_of_key(key) == dataset
