"""A failing map item of the fan-out state machine (the template's definition on the local
ASL interpreter, the fan-out steps in process on the emulated stack).

Faults are injected with :class:`support.WriteFaults`: every S3 write of one map item's
staging file fails (``IngestRanges`` range 1 after its clean part is written,
``ScoreBuckets`` bucket 1 after its assignments part is written), the first attempt only
(transient) or every attempt. Three datasets get the same three uploads (2,000 order
lines, then 1,000 and 1,000): ``clean`` without faults, ``flaky`` with transient faults and
``broken`` with permanent ones, each failed execution then rerun with the same input.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import (
    WriteFaults,
    assert_consistent,
    get,
    get_json,
    keys,
    manifests,
    run_manifest,
    source_key,
    upload_in_a_new_second,
    verify_manifest,
)

ORDERS = Path(__file__).resolve().parents[1] / "fixtures" / "online_retail_invoices.csv"
FIRST, LATER = 2000, 1000  # order lines of the first upload, of the two later ones
RANGE_FAULT = "_fanout/ranges/00001.json"  # IngestRanges item 1's last write
BUCKET_FAULT = "_fanout/stats/00001.json"  # ScoreBuckets item 1's statistics


@dataclass
class Bench:
    stack: Any
    machine: str
    uploads: list[Path]
    outcomes: dict[str, list[dict[str, Any]]]  # dataset -> its executions' outcomes

    def upload(self, dataset: str, n: int) -> str:
        key = f"incoming/{dataset}/orders-{n}.csv"
        upload_in_a_new_second(self.stack, self.uploads[n], key)
        self.stack.drain()  # the ingest function starts the execution
        return key

    def run(self, dataset: str, faults: list[WriteFaults] | None = None) -> dict[str, Any]:
        """Run the execution(s) started since the last run, under ``faults``."""
        from custseg.local.fanout import run_fanout_executions

        patches = [f.patched() for f in faults or []]
        for patch in patches:
            patch.__enter__()
        try:
            (outcome,) = run_fanout_executions(self.stack, state_machine=self.machine)
        finally:
            for patch in reversed(patches):
                patch.__exit__(None, None, None)
        self.outcomes.setdefault(dataset, []).append(outcome)
        return outcome

    def rerun(self, dataset: str, failed: dict[str, Any]) -> dict[str, Any]:
        """The documented rerun: a new execution with the failed one's input."""
        sfn = self.stack.client("stepfunctions")
        arn = f"{self.machine.replace(':stateMachine:', ':execution:')}:{failed['name']}"
        job = sfn.describe_execution(executionArn=arn)["input"]
        sfn.start_execution(
            stateMachineArn=self.machine, name=f"{failed['name']}-rerun-1", input=job
        )
        return self.run(dataset)

    def pointers(self, dataset: str) -> dict[str, Any]:
        """What a reader of ``dataset`` follows: pointers, the state, ``current/``."""
        data, results = self.stack.data_bucket, self.stack.results_bucket
        return {
            "clean": get_json(self.stack, data, f"clean/{dataset}/latest.json"),
            "state": get_json(self.stack, data, f"clean/{dataset}/_state.json"),
            "latest": get_json(self.stack, results, f"segments/{dataset}/latest.json"),
            "current": {
                k: get(self.stack, results, k)
                for k in keys(self.stack, results, f"segments/{dataset}/current/")
            },
        }


def _slices() -> list[str]:
    """Three uploads: the fixture's first order lines, then the next ones (later uploads
    are read with the dataset's contract, which the first one made)."""
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    ends = [FIRST, FIRST + LATER, FIRST + 2 * LATER]
    starts = [0, *ends[:-1]]
    return [lines[0] + "".join(lines[1 + a : 1 + b]) for a, b in zip(starts, ends, strict=True)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    from moto import mock_aws

    from custseg.local.fanout import run_fanout_executions
    from custseg.local.stack import LocalStack

    tmp = tmp_path_factory.mktemp("orders")
    uploads = []
    for i, text in enumerate(_slices()):
        uploads.append(tmp / f"orders-{i}.csv")
        uploads[-1].write_text(text, encoding="utf-8")
    size = uploads[0].stat().st_size
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        stack = LocalStack().create()
        for name in ("FANOUT_THRESHOLD_MIB", "FANOUT_RANGE_MIB", "FANOUT_BUCKETS"):
            mp.setenv(name, os.environ.get(name, ""))  # restored after the module
        mp.setenv("FANOUT_THRESHOLD_MIB", "0")
        mp.setenv("FANOUT_RANGE_MIB", repr(size / 3 / 1024**2))  # 3 ranges, 2 for later ones
        mp.setenv("FANOUT_BUCKETS", "3")
        mp.setenv("FANOUT_STATE_MACHINE_ARN", "")
        machine = run_fanout_executions(stack, create=True)
        bench = Bench(stack, machine, uploads, {})
        for n in range(3):  # the reference: the same three uploads, no fault
            bench.upload("clean", n)
            bench.run("clean")
        yield bench


def _frame(bench: Bench, manifest: dict[str, Any]) -> pd.DataFrame:
    """A results run's assignments by customer (its own run id and model left out)."""
    stack = bench.stack
    parts = [
        pd.read_parquet(io.BytesIO(get(stack, stack.results_bucket, f["key"])))
        for f in manifest["files"]
        if f["name"].startswith("assignments/part-")
    ]
    frame = pd.concat(parts).sort_values("customer_id").reset_index(drop=True)
    assert frame["customer_id"].is_unique and len(frame) == manifest["rows"] > 0
    return frame.drop(columns=["run_id", "model_version"])


def _results_runs(bench: Bench, dataset: str) -> list[dict[str, Any]]:
    """``dataset``'s committed results runs, oldest first."""
    stack = bench.stack
    found = manifests(stack, stack.results_bucket, f"segments/{dataset}/")
    runs = [run_manifest(stack, stack.results_bucket, k) or {} for k in found]
    return sorted(runs, key=lambda m: str(m["run_ts"]))


def _latest(bench: Bench, dataset: str) -> dict[str, Any]:
    """The run a reader finds from ``latest.json``."""
    stack = bench.stack
    latest = get_json(stack, stack.results_bucket, f"segments/{dataset}/latest.json")
    assert latest is not None
    return run_manifest(stack, stack.results_bucket, latest["manifest_key"]) or {}


def _assert_same_results(bench: Bench, got_run: dict[str, Any], want_run: dict[str, Any]) -> None:
    got, want = _frame(bench, got_run), _frame(bench, want_run)
    floats = [c for c in want.columns if want[c].dtype.kind == "f"]
    pd.testing.assert_frame_equal(got.drop(columns=floats), want.drop(columns=floats))
    for column in floats:
        assert np.allclose(got[column], want[column], equal_nan=True), column


def _clean_run(bench: Bench, dataset: str, key: str) -> dict[str, Any]:
    """The one committed clean run of upload ``key``; its counts add up and its data
    folder holds exactly the parts its manifest lists (none left over from a failed
    attempt)."""
    stack = bench.stack
    runs = [
        m
        for k in manifests(stack, stack.data_bucket, f"clean/{dataset}/")
        if source_key(m := run_manifest(stack, stack.data_bucket, k) or {}) == key
    ]
    assert len(runs) == 1, runs
    run = runs[0]
    quality = json.loads(
        get(
            stack,
            stack.data_bucket,
            next(f["key"] for f in run["files"] if f["name"] == "quality.json"),
        )
    )
    assert quality["rows_read"] == quality["rows_kept"] + quality["rows_rejected"]
    assert quality["rows_kept"] == run["rows"]
    parts = [f for f in run["files"] if f["name"].startswith("data/")]
    assert sum(f["rows"] for f in parts) == run["rows"]
    assert sorted(f["key"] for f in parts) == keys(
        stack, stack.data_bucket, run["prefix"] + "data/"
    )
    return run


def _consistent(bench: Bench, dataset: str, *, settled: bool = True) -> None:
    """:func:`support.assert_consistent` (its row check reads a single-path run's one
    assignments file: fanned-out runs' parts are checked by :func:`_frame`), and every
    results manifest matches its files."""
    stack = bench.stack
    assert_consistent(stack, dataset, settled=settled, focus=lambda m: "fanout" in m)
    for key in manifests(stack, stack.results_bucket, f"segments/{dataset}/"):
        verify_manifest(stack, stack.results_bucket, key)
        _frame(bench, run_manifest(stack, stack.results_bucket, key) or {})


def _retries(outcome: dict[str, Any], state: str) -> list[tuple[int, float, str]]:
    return [
        (r.attempt, r.interval_seconds, r.jitter) for r in outcome["retries"] if r.state == state
    ]


@pytest.mark.slow
def test_without_faults_every_upload_is_committed_without_retries(bench: Bench) -> None:
    """The reference the other tests compare with."""
    for n, outcome in enumerate(bench.outcomes["clean"]):
        assert outcome["status"] == "SUCCEEDED" and outcome["retries"] == [], outcome
        _clean_run(bench, "clean", f"incoming/clean/orders-{n}.csv")
    assert len(_results_runs(bench, "clean")) == 3
    _consistent(bench, "clean")


@pytest.mark.slow
def test_a_transient_item_failure_is_retried_with_backoff(bench: Bench) -> None:
    """Range 1 and bucket 1 fail once each: retried after the definition's 2 s (full
    jitter), and the run is the fault-free one."""
    key = bench.upload("flaky", 0)
    faults = [
        WriteFaults(error_on=RANGE_FAULT, error_times=1),
        WriteFaults(error_on=BUCKET_FAULT, error_times=1),
    ]
    outcome = bench.run("flaky", faults)
    assert outcome["status"] == "SUCCEEDED", outcome
    assert [f.errors for f in faults] == [1, 1]
    assert _retries(outcome, "IngestRanges[1]/Item") == [(2, 2.0, "FULL")]
    assert _retries(outcome, "ScoreBuckets[1]/Item") == [(2, 2.0, "FULL")]
    assert {r.error for r in outcome["retries"]} == {"ConnectionError"}
    assert len(outcome["retries"]) == 2
    _clean_run(bench, "flaky", key)
    _consistent(bench, "flaky")
    # the fault-free dataset's first run: the same upload, trained the same way
    _assert_same_results(bench, _latest(bench, "flaky"), _results_runs(bench, "clean")[0])


@pytest.mark.slow
def test_a_failing_item_commits_nothing_and_a_rerun_commits_the_run(bench: Bench) -> None:
    """A first run; upload 1 with a range failing on every attempt, then its rerun;
    upload 2 with a bucket failing on every attempt, then its rerun. The dataset ends as
    the fault-free one."""
    bench.upload("broken", 0)
    assert bench.run("broken")["status"] == "SUCCEEDED"
    _fail_a_range_then_rerun(bench)
    _fail_a_bucket_then_rerun(bench)
    # the same clean runs, assignments and counts as the fault-free dataset's
    _assert_same_results(bench, _latest(bench, "broken"), _latest(bench, "clean"))
    for n in range(3):
        got = _clean_run(bench, "broken", f"incoming/broken/orders-{n}.csv")
        want = _clean_run(bench, "clean", f"incoming/clean/orders-{n}.csv")
        assert got["rows"] == want["rows"]


def _fail_a_range_then_rerun(bench: Bench) -> None:
    before = bench.pointers("broken")
    key = bench.upload("broken", 1)
    version = bench.stack.client("s3").head_object(Bucket=bench.stack.data_bucket, Key=key)
    faults = WriteFaults(error_on=RANGE_FAULT)
    failed = bench.run("broken", [faults])

    assert (failed["status"], failed["error"]) == ("FAILED", "FanoutFailed")
    assert "left uncommitted" in failed["cause"]
    # range 1 ran 4 times: 3 retries after 2, 4 and 8 s (each up to that, full jitter)
    assert _retries(failed, "IngestRanges[1]/Item") == [
        (2, 2.0, "FULL"),
        (3, 4.0, "FULL"),
        (4, 8.0, "FULL"),
    ]
    assert faults.errors == 4
    stack = bench.stack
    clean = [
        k
        for k in manifests(stack, stack.data_bucket, "clean/broken/")
        if source_key(run_manifest(stack, stack.data_bucket, k) or {}) == key
    ]
    assert clean == [], "a clean run was committed for the failed upload"
    assert bench.pointers("broken") == before  # state, pointers and current/ unchanged
    _consistent(bench, "broken")
    assert get(stack, stack.data_bucket, key) == bench.uploads[1].read_bytes()
    head = stack.client("s3").head_object(Bucket=stack.data_bucket, Key=key)
    assert head["VersionId"] == version["VersionId"]

    rerun = bench.rerun("broken", failed)
    assert rerun["status"] == "SUCCEEDED" and rerun["retries"] == [], rerun
    run = _clean_run(bench, "broken", key)
    assert run["fanout"]["ranges"] >= 2
    _consistent(bench, "broken")


def _fail_a_bucket_then_rerun(bench: Bench) -> None:
    key = bench.upload("broken", 2)
    before = bench.pointers("broken")
    assert before["latest"] is not None and before["current"]
    runs_before = manifests(bench.stack, bench.stack.results_bucket, "segments/broken/")
    faults = WriteFaults(error_on=BUCKET_FAULT)
    failed = bench.run("broken", [faults])

    assert (failed["status"], failed["error"]) == ("FAILED", "FanoutFailed")
    assert _retries(failed, "ScoreBuckets[1]/Item") == [
        (2, 2.0, "FULL"),
        (3, 4.0, "FULL"),
        (4, 8.0, "FULL"),
    ]
    stack = bench.stack
    # no results run: no manifest, latest.json and current/ still the previous run
    assert manifests(stack, stack.results_bucket, "segments/broken/") == runs_before
    after = bench.pointers("broken")
    assert (after["latest"], after["current"]) == (before["latest"], before["current"])
    # the clean run was committed before the scoring (CommitIngest): docs/fanout.md
    _clean_run(bench, "broken", key)
    _consistent(bench, "broken", settled=False)
    assert get(stack, stack.data_bucket, key) == bench.uploads[2].read_bytes()

    rerun = bench.rerun("broken", failed)
    assert rerun["status"] == "SUCCEEDED" and rerun["retries"] == [], rerun
    _clean_run(bench, "broken", key)  # still one clean run of the upload
    state = get_json(stack, stack.data_bucket, "clean/broken/_state.json") or {}
    assert len(state["parts"]) == 3  # each upload once: no part appended twice
    assert len(manifests(stack, stack.results_bucket, "segments/broken/")) == len(runs_before) + 1
    _consistent(bench, "broken")
