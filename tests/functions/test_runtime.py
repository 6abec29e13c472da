"""What the handlers share: naming the dataset a failed request belongs to, counting with
fixed metric names."""

from __future__ import annotations

import json

import pytest

from custseg.aws import runtime
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


def test_counts_are_fixed_metric_names_with_dimensions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "custseg-test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "custseg")
    runtime.count("ScoreRuns", verdict="watch")
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert [m["Name"] for m in directive["Metrics"]] == ["ScoreRuns"]
    assert sorted(map(sorted, directive["Dimensions"])) == [["service"], ["service", "verdict"]]
    assert line["verdict"] == "watch" and line["ScoreRuns"] == [1.0]
