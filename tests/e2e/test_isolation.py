"""One dataset's failure never stops the others, and one invocation's log keys never
reach the next."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import dead_letters, get_json, keys, mall_like_csv, seed_models

from custseg.layout import clean_latest_key, results_latest_key

# a value of a row of the corrupted dataset, as an error message might quote it
ROW_VALUE = "Customer-Alice-4711"


@pytest.fixture
def logged(champions: dict[str, bytes]) -> Iterator[tuple[Any, io.StringIO]]:
    """A stack whose handler logs and metrics go to a buffer, with north's and south's
    models in place."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    buf = io.StringIO()
    with mock_aws():
        stack = LocalStack(log_stream=buf).create()  # type: ignore[arg-type]
        seed_models(stack, champions, "north", "south")
        yield stack, buf


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _failure_points(text: str) -> list[str]:
    """The dataset of each ``DatasetFailures`` data point (EMF) in ``text``, checking that
    each is published per dataset and as the sum the alarm watches."""
    points = []
    for line in _lines(text):
        if "DatasetFailures" not in line:
            continue
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == os.environ["POWERTOOLS_METRICS_NAMESPACE"]
        assert sorted(map(sorted, directive["Dimensions"])) == [
            ["dataset", "service"],
            ["service"],
        ]
        assert line["DatasetFailures"] == [1.0]
        points.append(line["dataset"])
    return points


def _ingest_both(stack: Any, tmp_path: Path) -> None:
    for name, seed in (("north", 1), ("south", 2)):
        path = mall_like_csv(tmp_path / f"{name}.csv", range(1, 121), seed=seed)
        stack.upload(path, f"incoming/{name}/{name}.csv")
    assert [i.error for i in stack.drain() if i.error] == []


def test_a_dataset_with_corrupted_clean_data_does_not_stop_the_rescore_of_the_others(
    logged: tuple[Any, io.StringIO], tmp_path: Path
) -> None:
    stack, buf = logged
    _ingest_both(stack, tmp_path)
    north_before = get_json(stack, stack.results_bucket, results_latest_key("north"))
    assert north_before is not None
    clean = get_json(stack, stack.data_bucket, clean_latest_key("south"))
    assert clean is not None
    s3 = stack.client("s3")
    prefix = clean["manifest_key"].rsplit("/", 1)[0] + "/"
    parts = [k for k in keys(stack, stack.data_bucket, prefix) if "/data/part-" in k]
    assert parts
    for key in parts:  # not Parquet any more; its text quotes a row value
        s3.put_object(Bucket=stack.data_bucket, Key=key, Body=f"{ROW_VALUE},1,2\n".encode())
    buf.seek(0), buf.truncate()

    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    rescore, *_ = stack.tick(later)

    assert rescore.error is None and rescore.attempts == 1
    outcomes = {r["dataset"]: r for r in rescore.result["results"]}
    assert outcomes["north"]["status"] == "committed"
    assert outcomes["south"]["status"] == "failed"
    assert outcomes["south"]["message"].startswith("rescore failed: ")
    assert " at custseg/" in outcomes["south"]["message"]  # where, in the project's code
    north_after = get_json(stack, stack.results_bucket, results_latest_key("north"))
    assert north_after is not None and north_after["run_id"] != north_before["run_id"]
    assert north_after["as_of"] == later.date().isoformat()
    logs = buf.getvalue()
    assert _failure_points(logs) == ["south"]
    errors = [line for line in _lines(logs) if line.get("level") == "ERROR"]
    assert [e["dataset"] for e in errors] == ["south"]
    assert ROW_VALUE not in logs
    assert "rescored 2 dataset(s)" in logs and "1 failed" in logs


def test_a_failing_record_does_not_stop_the_others_of_its_event(
    logged: tuple[Any, io.StringIO], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, buf = logged
    for name, seed in (("north", 1), ("south", 2)):
        path = mall_like_csv(tmp_path / f"{name}.csv", range(1, 121), seed=seed)
        stack.upload(path, f"incoming/{name}/{name}.csv")
    events = stack.receive("IngestFunction")
    assert len(events) == 2
    both = {**events[0], "Records": [r for e in events for r in e["Records"]]}
    records = both["Records"]
    assert [r["s3"]["object"]["key"] for r in records] == [
        "incoming/north/north.csv",
        "incoming/south/south.csv",
    ]
    both["Records"] = [records[1], records[0]]  # the failing record first

    app = stack.handler("IngestFunction").__module__
    module = __import__(app, fromlist=["run_ingest"])
    real = module.run_ingest

    def run_ingest(*args: Any, **kwargs: Any) -> Any:
        if kwargs["key"].startswith("incoming/south/"):
            raise ValueError(f"could not convert {ROW_VALUE!r}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "run_ingest", run_ingest)
    invocation = stack.invoke("IngestFunction", both)

    # the event fails (Lambda retries it, then it goes to the dead-letter queue) ...
    assert invocation.attempts == 3 and invocation.error is not None
    assert "ValueError" in invocation.error
    (letter,) = dead_letters(stack)
    assert letter["requestPayload"] == both
    # ... but north, after the failing south, was ingested on the first attempt
    assert get_json(stack, stack.data_bucket, clean_latest_key("north")) is not None
    assert get_json(stack, stack.data_bucket, clean_latest_key("south")) is None
    logs = buf.getvalue()
    assert _failure_points(logs) == ["south"] * 3
    errors = [line for line in _lines(logs) if line.get("level") == "ERROR"]
    assert len(errors) == 3
    assert all(e["dataset"] == "south" for e in errors)
    assert all("ValueError at functions/ingest/app.py" in e["message"] for e in errors)
    assert ROW_VALUE not in logs


def test_a_run_id_logged_in_one_invocation_is_not_on_the_next(
    logged: tuple[Any, io.StringIO], tmp_path: Path
) -> None:
    stack, buf = logged
    for name, seed in (("north", 1), ("south", 2)):
        path = mall_like_csv(tmp_path / f"{name}.csv", range(1, 121), seed=seed)
        stack.upload(path, f"incoming/{name}/{name}.csv")
    for event in stack.receive("IngestFunction"):
        assert stack.invoke("IngestFunction", event).error is None
    score_events = stack.receive("ScoreFunction")  # each new clean run's manifest
    assert len(score_events) == 2
    runs = []
    for event in score_events:  # one warm container scores one, then the other
        buf.seek(0), buf.truncate()
        invocation = stack.invoke("ScoreFunction", event)
        assert invocation.error is None
        assert invocation.result["results"][0]["status"] == "committed"
        lines = [line for line in _lines(buf.getvalue()) if "level" in line]
        runs.append((invocation.result["results"][0]["run_id"], lines))
    (first_run, _), (second_run, second_lines) = runs
    assert first_run != second_run
    # the scoring core logs before the handler names the run: that first line carries no
    # run id at all, and no line carries the previous invocation's
    assert len(second_lines) >= 2
    assert second_lines[0]["message"].startswith("scored 120 customers of ")
    assert "run_id" not in second_lines[0]
    assert all(line.get("run_id") != first_run for line in second_lines)
    assert second_lines[-1]["run_id"] == second_run


@pytest.mark.parametrize(
    ("function", "event"),
    [
        ("IngestFunction", {"Records": []}),
        ("ScoreFunction", {"Records": []}),
        ("TrainFunction", {"Records": []}),
        ("RescoreFunction", None),
    ],
)
def test_every_handler_starts_an_invocation_without_the_previous_ones_keys(
    stack: Any, function: str, event: dict[str, Any] | None
) -> None:
    handler = stack.handler(function)
    module = __import__(handler.__module__, fromlist=["logger"])
    module.logger.append_keys(run_id="r-1", note="left from the last invocation")
    if event is None:  # a schedule naming a dataset that has no clean data
        event = {**stack.scheduled_event(dt.datetime.now(dt.UTC)), "detail": {"datasets": ["x"]}}
    invocation = stack.invoke(function, event)
    assert invocation.error is None
    current = module.logger.get_current_keys()
    assert "run_id" not in current and "note" not in current
