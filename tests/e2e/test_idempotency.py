"""At-least-once delivery: duplicates, concurrent duplicates and retries after a partial
failure all end in exactly one committed run, with no duplicate rows.

Two layers make a run idempotent: Powertools idempotency (DynamoDB) in the handlers, and
under it the run protocol itself (deterministic run ids, files written once, the manifest
written once with If-None-Match, pointers moved forward with If-Match). Some tests go
past the first layer on purpose: its records expire (1 hour, or a crashed invocation's
in-progress lock), and two triggers of one run can carry different idempotency keys.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from support import (
    MALL,
    SimulatedCrash,
    WriteFaults,
    assert_consistent,
    assignments,
    expire_in_progress,
    get,
    get_json,
    keys,
    mall_like_csv,
    manifests,
    run_together,
    seed_models,
    verify_manifest,
)

from custseg.aws import runtime
from custseg.aws.ingest_job import run_ingest
from custseg.aws.s3 import ObjectStore
from custseg.aws.score_job import run_score
from custseg.layout import MANIFEST
from custseg.local.stack import FakeLambdaContext


def _versions(stack: Any, bucket: str, key: str) -> int:
    resp = stack.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) if v["Key"] == key])


def _one_run_each(stack: Any, dataset: str, clean: int, segments: int) -> None:
    assert len(manifests(stack, stack.data_bucket, f"clean/{dataset}/")) == clean
    assert len(manifests(stack, stack.results_bucket, f"segments/{dataset}/")) == segments
    assert_consistent(stack, dataset)


def test_redelivered_event_by_version_or_by_etag_is_one_run(stack: Any) -> None:
    delivered: list[tuple[str, dict[str, Any]]] = []
    stack.upload(MALL, "incoming/mall/mall.csv")
    stack.drain(progress=lambda fn, ev: delivered.append((fn, copy.deepcopy(ev))))
    _one_run_each(stack, "mall", clean=1, segments=1)
    before = {b: keys(stack, b) for b in stack.spec.buckets.values()}

    ingest_event = next(ev for fn, ev in delivered if fn == "IngestFunction")
    by_etag = copy.deepcopy(ingest_event)  # same object named by its ETag only: another
    del by_etag["Records"][0]["s3"]["object"]["versionId"]  # idempotency key, same run id
    for function, event in [*delivered, ("IngestFunction", by_etag)]:
        inv = stack.invoke(function, event)
        assert inv.error is None
    assert [i.error for i in stack.drain() if i.error] == []

    _one_run_each(stack, "mall", clean=1, segments=1)
    assert {b: keys(stack, b) for b in stack.spec.buckets.values()} == before
    latest = get_json(stack, stack.results_bucket, "segments/mall/latest.json")
    assert latest is not None
    frame = assignments(stack, latest["prefix"])
    assert len(frame) == 200 and frame["customer_id"].is_unique


def test_two_concurrent_deliveries_of_one_event(stack: Any, champions: dict[str, bytes]) -> None:
    seed_models(stack, champions, "mall")
    stack.upload(MALL, "incoming/mall/second.csv")
    for function in ("IngestFunction", "ScoreFunction"):
        (event,) = stack.receive(function)
        handler = stack.handler(function)
        spec = stack.spec.functions[function]

        def deliver(handler: Any = handler, event: Any = event, spec: Any = spec) -> Any:
            return handler(copy.deepcopy(event), FakeLambdaContext(spec))

        outcomes = run_together(deliver, deliver)
        # One runs, the other finds the first in progress (Lambda retries it later).
        assert any(isinstance(o, dict) for o in outcomes), outcomes
        for o in outcomes:
            assert isinstance(o, dict | IdempotencyAlreadyInProgressError), o
        retry = stack.invoke(function, copy.deepcopy(event))
        assert retry.error is None and retry.result["results"][0]["status"] != "duplicate"
    assert [i.error for i in stack.drain() if i.error] == []
    _one_run_each(stack, "mall", clean=1, segments=1)


@pytest.mark.parametrize("threads", [4])
def test_concurrent_duplicates_past_the_idempotency_layer(
    stack: Any, champions: dict[str, bytes], threads: int
) -> None:
    seed_models(stack, champions, "mall")
    stack.upload(MALL, "incoming/mall/second.csv")
    stack.purge()
    store, settings, bus = runtime.store(), runtime.settings(), runtime.bus()
    key = "incoming/mall/second.csv"
    ingests = run_together(
        *[lambda: run_ingest(store, settings, bucket=stack.data_bucket, key=key)] * threads
    )
    assert all(not isinstance(o, Exception) for o in ingests), ingests
    assert {o.run_id for o in ingests} == {ingests[0].run_id}
    assert [o.status for o in ingests].count("accepted") >= 1
    clean_key = f"clean/mall/{ingests[0].run_id}/{MANIFEST}"
    scores = run_together(
        *[lambda: run_score(store, settings, bus, clean_manifest_key=clean_key)] * threads
    )
    assert all(not isinstance(o, Exception) for o in scores), scores
    assert {o.run_id for o in scores} == {scores[0].run_id}
    stack.purge()
    _one_run_each(stack, "mall", clean=1, segments=1)
    for bucket, prefix in (
        (stack.data_bucket, f"clean/mall/{ingests[0].run_id}/"),
        (stack.results_bucket, scores[0].manifest_key.rsplit("/", 1)[0] + "/"),
    ):
        for k in keys(stack, bucket, prefix):
            assert _versions(stack, bucket, k) == 1, f"{k} was written more than once"


@pytest.mark.parametrize("job", ["ingest", "score"])
def test_a_late_duplicate_cannot_change_a_committed_run(
    stack: Any, champions: dict[str, bytes], job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst interleaving: a duplicate finds no manifest, the other delivery then
    commits the whole run, and only then does the duplicate write its files (whose bytes
    differ: reports record timings). The committed manifest must still match the files."""
    seed_models(stack, champions, "mall")
    stack.upload(MALL, "incoming/mall/second.csv")
    stack.purge()
    store, settings, bus = runtime.store(), runtime.settings(), runtime.bus()
    # the late delivery has a store of its own (same client): its uploads are the held
    # ones, whichever thread makes them (a run's files go up in parallel)
    late_store = ObjectStore(store.client)
    if job == "ingest":

        def attempt(store: ObjectStore) -> Any:
            return run_ingest(
                store, settings, bucket=stack.data_bucket, key="incoming/mall/second.csv"
            )

    else:
        outcome = run_ingest(
            store, settings, bucket=stack.data_bucket, key="incoming/mall/second.csv"
        )
        clean_key = f"clean/mall/{outcome.run_id}/{MANIFEST}"

        def attempt(store: ObjectStore) -> Any:
            return run_score(store, settings, bus, clean_manifest_key=clean_key)

    late_ready, winner_done = threading.Event(), threading.Event()
    upload = ObjectStore.upload

    def held_upload(self: ObjectStore, *args: Any, **kwargs: Any) -> str | None:
        if self is late_store and not winner_done.is_set():
            late_ready.set()
            assert winner_done.wait(60)
        return upload(self, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "upload", held_upload)
    late_result: list[Any] = []
    late = threading.Thread(target=lambda: late_result.append(attempt(late_store)))
    late.start()
    assert late_ready.wait(60)
    winner = attempt(store)
    winner_done.set()
    late.join(60)
    assert late_result, "the late duplicate failed"
    assert winner.run_id == late_result[0].run_id
    stack.purge()
    bucket = stack.data_bucket if job == "ingest" else stack.results_bucket
    run_prefix = (
        f"clean/mall/{winner.run_id}/" if job == "ingest" else winner.manifest_key[: -len(MANIFEST)]
    )
    verify_manifest(stack, bucket, run_prefix + MANIFEST)
    for k in keys(stack, bucket, run_prefix):
        assert _versions(stack, bucket, k) == 1, f"{k} was written more than once"
    assert_consistent(stack, "mall")


@pytest.mark.parametrize("mode", ["error", "crash"])
def test_retry_after_a_partial_failure_is_one_run(
    stack: Any, champions: dict[str, bytes], mode: str, tmp_path: Path
) -> None:
    seed_models(stack, champions, "mall")
    mall_like_csv(tmp_path / "more.csv", range(5000, 5150), seed=3)
    stack.upload(tmp_path / "more.csv", "incoming/mall/more.csv")
    version = stack.client("s3").head_object(
        Bucket=stack.data_bucket, Key="incoming/mall/more.csv"
    )["VersionId"]
    (event,) = stack.receive("IngestFunction")
    # three of the four clean files written, then the failure
    faults = WriteFaults(error_at=4) if mode == "error" else WriteFaults(crash_after=3)
    with faults.patched():
        if mode == "error":
            inv = stack.invoke("IngestFunction", event)  # Lambda retries the failed attempt
            assert inv.error is None and inv.attempts == 2
        else:
            with pytest.raises(SimulatedCrash):
                stack.invoke("IngestFunction", event)
            assert manifests(stack, stack.data_bucket, "clean/mall/") == []
            assert_consistent(stack, "mall", settled=False)
            assert expire_in_progress(stack) == 1
            assert stack.invoke("IngestFunction", event).error is None
    assert [i.error for i in stack.drain() if i.error] == []
    _one_run_each(stack, "mall", clean=1, segments=1)
    latest = get_json(stack, stack.results_bucket, "segments/mall/latest.json")
    assert latest is not None
    frame = assignments(stack, latest["prefix"])
    assert sorted(frame["customer_id"].astype(int)) == list(range(5000, 5150))
    assert (
        get(stack, stack.data_bucket, "incoming/mall/more.csv")
        == (tmp_path / "more.csv").read_bytes()
    )
    head = stack.client("s3").head_object(Bucket=stack.data_bucket, Key="incoming/mall/more.csv")
    assert head["VersionId"] == version


def test_emulated_conditional_writes_behave_like_s3(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The protocol leans on S3 conditional writes; the emulation must keep them."""
    from boto3.s3.transfer import TransferConfig

    from custseg.aws import s3 as s3_module
    from custseg.aws.s3 import PreconditionFailed

    store, bucket = ObjectStore(stack.client("s3")), stack.results_bucket
    etag = store.put_bytes(bucket, "k.json", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):  # If-None-Match: * on an existing key -> 412
        store.put_bytes(bucket, "k.json", b"2", if_none_match=True)
    store.put_bytes(bucket, "k.json", b"3", if_match=etag)
    with pytest.raises(PreconditionFailed):  # If-Match on a stale ETag -> 412
        store.put_bytes(bucket, "k.json", b"4", if_match=etag)
    assert get(stack, bucket, "k.json") == b"3"

    # create-only uploads, single PUT and multipart (threshold lowered to 5 MiB)
    monkeypatch.setattr(
        s3_module,
        "_TRANSFER",
        TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20),
    )
    for name, size in (("small.bin", 1000), ("big.bin", 6 * 2**20 + 7)):
        path = tmp_path / name
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        store.upload(bucket, name, path, if_none_match=True)
        with pytest.raises(PreconditionFailed):
            store.upload(bucket, name, path, if_none_match=True)
        assert store.sha256(bucket, name) == (size, hashlib.sha256(path.read_bytes()).hexdigest())
    listed = stack.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert listed == []  # the refused multipart upload was aborted

    # server-side copies: one CopyObject up to the limit, a multipart copy above it
    monkeypatch.setattr(s3_module, "_COPY_OBJECT_MAX", 2**20)
    for name in ("small.bin", "big.bin"):
        store.copy(bucket, name, bucket, "copies/" + name)
        assert get(stack, bucket, "copies/" + name) == (tmp_path / name).read_bytes()

    # exactly one of several simultaneous create-only writes wins
    for i in range(20):
        key = f"race-{i}.json"
        outcomes = run_together(
            *[
                lambda n=n: store.put_bytes(bucket, key, str(n).encode(), if_none_match=True)  # noqa: B023
                for n in range(6)
            ]
        )
        assert sum(not isinstance(o, Exception) for o in outcomes) == 1, outcomes
        assert all(isinstance(o, PreconditionFailed | str) for o in outcomes)
