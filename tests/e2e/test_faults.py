"""Fault injection: every S3 write of ingest and of scoring fails in turn, and the function
stops (crashes) after every write in turn. Each time, no partial run is visible, the
retry completes the run, pointers only move forward to committed runs, and the upload is
untouched.

Writes are counted in a clean run first (``ObjectStore.upload``/``put_bytes``/``copy``),
so a write added to a job is covered without editing this file. One module-scoped stack
with a champion serves every case; each case uploads the mall file under its own key,
which makes its own runs (run ids derive from the object). The functions read in chunks
of 120 rows here, so that the mall file's 200 rows make two chunks: the clean data is
two Parquet parts, each its own write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import (
    MALL,
    SimulatedCrash,
    WriteFaults,
    assert_consistent,
    dead_letters,
    expire_in_progress,
    get,
    get_json,
    mall_like_csv,
    manifests,
    run_manifest,
    seed_models,
    source_key,
    upload_in_a_new_second,
)

from custseg.aws.runs import order_key
from custseg.layout import MANIFEST, STATE

DATASET = "mall"
POINTERS = {"ingest": "clean/mall/latest.json", "score": "segments/mall/latest.json"}
FUNCTIONS = {"ingest": "IngestFunction", "score": "ScoreFunction"}


@dataclass
class Bench:
    stack: Any
    writes: dict[str, list[tuple[str, str]]]  # job -> the writes of a clean run, in order
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # pointer history

    def bucket(self, job: str) -> str:
        return self.stack.data_bucket if job == "ingest" else self.stack.results_bucket

    def pointer(self, job: str) -> dict[str, Any] | None:
        """The job's latest pointer, checked never to move backwards."""
        pointer = get_json(self.stack, self.bucket(job), POINTERS[job])
        history = self.seen.setdefault(job, [])
        if pointer is not None:
            if history:
                assert order_key(pointer) >= order_key(history[-1]), "pointer moved backwards"
            history.append(pointer)
        return pointer

    def manifest_position(self, job: str) -> int:
        """1-based position of the run manifest among the job's writes."""
        return next(
            i
            for i, (_, key) in enumerate(self.writes[job], 1)
            if key.endswith("/" + MANIFEST) and "/current/" not in key
        )


def _upload_in_a_new_second(stack: Any, key: str) -> None:
    """Give every case a later second, so that every case makes the same writes, pointer
    included (see :func:`upload_in_a_new_second`)."""
    upload_in_a_new_second(stack, MALL, key)


@pytest.fixture(scope="module")
def bench(champions: dict[str, bytes]) -> Iterator[Bench]:
    from moto import mock_aws

    from custseg.aws import runtime
    from custseg.local.stack import LocalStack

    with mock_aws():
        stack = LocalStack().create()
        chunk_rows = os.environ["CHUNK_ROWS"]
        os.environ["CHUNK_ROWS"] = "120"
        runtime.reset()
        seed_models(stack, champions, DATASET)
        _upload_in_a_new_second(stack, "incoming/mall/first.csv")  # a committed run
        assert [i.error for i in stack.drain() if i.error] == []
        _upload_in_a_new_second(stack, "incoming/mall/count.csv")
        writes: dict[str, list[tuple[str, str]]] = {}
        for job in ("ingest", "score"):
            (event,) = stack.receive(FUNCTIONS[job])
            with WriteFaults().patched() as counter:
                assert stack.invoke(FUNCTIONS[job], event).error is None
            writes[job] = counter.writes
        assert stack.pending() == 0
        yield Bench(stack, writes)
        os.environ["CHUNK_ROWS"] = chunk_rows
        runtime.reset()


def test_write_counts(bench: Bench) -> None:
    """What the cases below go through (and a reminder of the commit order)."""
    ingest = [key.rsplit("/", 1)[-1] for _, key in bench.writes["ingest"]]
    assert len(ingest) == 9 and len(bench.writes["score"]) == 15  # as docs/reliability.md says
    # files, manifest, pointer, then the dataset state (the write that triggers scoring)
    assert ingest[-3:] == [MANIFEST, "latest.json", STATE]
    assert sorted(k for k in ingest if k.startswith("part-")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    score = [key for _, key in bench.writes["score"]]
    m = bench.manifest_position("score")
    assert score[m] == POINTERS["score"]  # then the pointer, then current/
    assert all("/current/" in k for k in score[m + 1 :])
    assert score[-1].endswith("current/" + MANIFEST)


def _check_failed_state(
    bench: Bench, job: str, key: str, completed: int, before: dict[str, Any] | None
) -> None:
    """After a failure with ``completed`` writes done, before any retry."""
    stack = bench.stack
    assert_consistent(stack, DATASET, settled=False, focus=lambda m: source_key(m) == key)
    pointer = bench.pointer(job)
    committed = completed >= bench.manifest_position(job)
    run_manifests = [k for k in _run_manifests(bench, job) if key in _sources(bench, job, k)]
    assert len(run_manifests) == (1 if committed else 0), run_manifests
    if not committed:
        assert pointer == before, "the pointer moved to a run without manifest"


def _run_manifests(bench: Bench, job: str) -> list[str]:
    prefix = f"clean/{DATASET}/" if job == "ingest" else f"segments/{DATASET}/"
    return manifests(bench.stack, bench.bucket(job), prefix)


def _run_case(bench: Bench, job: str, mode: str, n: int) -> None:
    stack = bench.stack
    key = f"incoming/{DATASET}/{job}-{mode}-{n:02d}.csv"
    _upload_in_a_new_second(stack, key)
    version = stack.client("s3").head_object(Bucket=stack.data_bucket, Key=key)["VersionId"]
    if job == "score":  # a clean run to score, ingested without faults
        (event,) = stack.receive("IngestFunction")
        assert stack.invoke("IngestFunction", event).error is None
    (event,) = stack.receive(FUNCTIONS[job])
    before = bench.pointer(job)

    if mode == "error":  # write n fails; Lambda's retry runs the function again
        attempts: list[int] = []

        def between_attempts(function: str, _event: dict[str, Any]) -> None:
            attempts.append(1)
            if len(attempts) == 2:
                _check_failed_state(bench, job, key, n - 1, before)

        stack.before_invoke = between_attempts
        try:
            with WriteFaults(error_at=n).patched():
                inv = stack.invoke(FUNCTIONS[job], event)
        finally:
            stack.before_invoke = None
        assert inv.error is None and inv.attempts == 2, inv.error
    else:  # the function stops after write n; Lambda retries once its timeout passed
        with WriteFaults(crash_after=n).patched(), pytest.raises(SimulatedCrash):
            stack.invoke(FUNCTIONS[job], event)
        _check_failed_state(bench, job, key, n, before)
        assert expire_in_progress(stack) == 1
        assert stack.invoke(FUNCTIONS[job], event).error is None

    stack.purge()  # the next step's trigger (not under test here)
    assert dead_letters(stack) == []
    assert_consistent(stack, DATASET, focus=lambda m: source_key(m) == key)
    after = bench.pointer(job)
    assert after is not None
    new_run = [k for k in _run_manifests(bench, job) if key in _sources(bench, job, k)]
    assert len(new_run) == 1, "the retry did not complete the run"
    assert get(stack, stack.data_bucket, key) == MALL.read_bytes()
    head = stack.client("s3").head_object(Bucket=stack.data_bucket, Key=key)
    assert head["VersionId"] == version


def _sources(bench: Bench, job: str, manifest_key: str) -> set[str]:
    manifest = run_manifest(bench.stack, bench.bucket(job), manifest_key) or {}
    return {str(source_key(manifest))}


@pytest.mark.parametrize("mode", ["error", "crash"])
@pytest.mark.parametrize("job", ["ingest", "score"])
def test_every_write_fails_in_turn(bench: Bench, job: str, mode: str, subtests: Any) -> None:
    total = len(bench.writes[job])
    assert total >= 6
    for n in range(1, total + 1):
        with subtests.test(write=n, key=bench.writes[job][n - 1][1]):
            _run_case(bench, job, mode, n)


def test_crash_between_rejected_rows_and_clean_run(bench: Bench, tmp_path: Path) -> None:
    """A file with some bad rows commits ``rejected/<run>/`` (its rejected rows) before
    ``clean/<run>/``: a stop between the two must not make the retry a no-op."""
    stack = bench.stack
    path = mall_like_csv(tmp_path / "some-bad.csv", range(7000, 7100), seed=5)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(",Male,30,50,50\n,Female,41,60,40\n")  # no customer id: rejected rows
    key = f"incoming/{DATASET}/some-bad.csv"
    stack.upload(path, key)
    (event,) = stack.receive("IngestFunction")
    faults = WriteFaults(crash_after=3)
    with faults.patched(), pytest.raises(SimulatedCrash):
        stack.invoke("IngestFunction", event)
    assert faults.writes[-1][1].startswith(f"rejected/{DATASET}/")
    assert faults.writes[-1][1].endswith("/" + MANIFEST)
    assert expire_in_progress(stack) == 1
    retry = stack.invoke("IngestFunction", event)
    assert retry.error is None and retry.result["results"][0]["status"] == "accepted"
    stack.purge()
    assert_consistent(stack, DATASET, focus=lambda m: source_key(m) == key)
    clean = [
        k
        for k in manifests(stack, stack.data_bucket, f"clean/{DATASET}/")
        if source_key(run_manifest(stack, stack.data_bucket, k) or {}) == key
    ]
    assert (
        len(clean) == 1 and (run_manifest(stack, stack.data_bucket, clean[0]) or {})["rows"] == 100
    )
