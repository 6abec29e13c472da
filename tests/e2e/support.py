"""Helpers of the hardening tests (idempotency, faults, concurrency, privacy).

Checks read the emulated buckets the way a marketing tool would: follow a ``latest.json``
or find a ``_manifest.json``, and then every file it lists must be there with the size
and SHA-256 it records.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from custseg.aws.runs import order_key
from custseg.aws.s3 import ObjectStore
from custseg.aws.signing import KmsSigner
from custseg.layout import MANIFEST, RESULT_FILES
from custseg.model.artifact import sign_metadata

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MALL = FIXTURES / "mall_customers.csv"


# ------------------------------------------------------------------------------ reading
def get(stack: Any, bucket: str, key: str) -> bytes:
    return stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def get_json(stack: Any, bucket: str, key: str) -> dict[str, Any] | None:
    store = ObjectStore(stack.client("s3"))
    return store.get_json(bucket, key)[0]


def keys(stack: Any, bucket: str, prefix: str = "") -> list[str]:
    return sorted(ObjectStore(stack.client("s3")).list_keys(bucket, prefix))


def manifests(stack: Any, bucket: str, prefix: str) -> list[str]:
    """Run manifests under ``prefix`` (not the ``current/`` copy)."""
    return [
        k
        for k in keys(stack, bucket, prefix)
        if k.endswith("/" + MANIFEST) and "/current/" not in k
    ]


def run_manifest(stack: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """A run manifest, read once: manifests are written once (If-None-Match), never
    changed (the idempotency tests check that each has a single S3 version)."""
    cache: dict[tuple[str, str], dict[str, Any]] = stack.__dict__.setdefault("_manifests", {})
    if (bucket, key) not in cache:
        manifest = get_json(stack, bucket, key)
        if manifest is None:
            return None
        cache[bucket, key] = manifest
    return cache[bucket, key]


def verify_manifest(stack: Any, bucket: str, key: str) -> dict[str, Any]:
    """The manifest at ``key``; every file it lists exists with its size and checksum."""
    manifest = get_json(stack, bucket, key)
    assert manifest is not None, f"no manifest {key}"
    assert manifest["files"], f"{key} lists no files"
    for entry in manifest["files"]:
        body = get(stack, bucket, entry["key"])
        assert len(body) == entry["size"], f"{entry['key']}: size differs from {key}"
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], (
            f"{entry['key']}: bytes differ from the checksum in {key}"
        )
    return manifest


def assignments(stack: Any, prefix: str) -> pd.DataFrame:
    body = get(stack, stack.results_bucket, prefix + RESULT_FILES["assignments_parquet"])
    return pd.read_parquet(io.BytesIO(body))


def newest(pointers: list[dict[str, Any]]) -> dict[str, Any]:
    return max(pointers, key=order_key)


def assert_consistent(
    stack: Any,
    dataset: str,
    *,
    settled: bool = True,
    focus: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """What a reader may see of ``dataset`` at any moment.

    Always: every run manifest matches its files, every pointer names a committed run.
    ``settled`` (no delivery pending or failed): the pointers name the newest committed
    runs, ``current/`` is a complete copy of the newest results run, and every results
    run holds each customer of its input exactly once. ``focus(manifest)`` limits the
    file-by-file checks to some runs (pointer targets are always checked).
    """
    data, results = stack.data_bucket, stack.results_bucket
    latest_clean = get_json(stack, data, f"clean/{dataset}/latest.json")
    latest = get_json(stack, results, f"segments/{dataset}/latest.json")
    targets = {p["manifest_key"] for p in (latest_clean, latest) if p is not None}

    def check(bucket: str, key: str) -> dict[str, Any]:
        manifest = run_manifest(stack, bucket, key)
        assert manifest is not None
        if focus is None or focus(manifest) or key in targets:
            return verify_manifest(stack, bucket, key)
        return manifest

    clean = [check(data, k) for k in manifests(stack, data, f"clean/{dataset}/")]
    for k in manifests(stack, data, f"rejected/{dataset}/"):
        check(data, k)
    runs = [check(results, k) for k in manifests(stack, results, f"segments/{dataset}/")]
    if latest_clean is not None:
        assert latest_clean["manifest_key"] in {m["prefix"] + MANIFEST for m in clean}
    if latest is not None:
        assert latest["manifest_key"] in {m["prefix"] + MANIFEST for m in runs}
    if not settled:
        return
    if clean:
        assert latest_clean is not None
        assert latest_clean["run_id"] == newest(clean)["run_id"]
    if runs:
        assert latest is not None
        assert latest["run_id"] == newest(runs)["run_id"]
        copy = verify_manifest(stack, results, f"segments/{dataset}/current/{MANIFEST}")
        assert copy["copied_from"] == latest["prefix"]
        assert [(f["name"], f["sha256"]) for f in copy["files"]] == [
            (f["name"], f["sha256"]) for f in newest(runs)["files"]
        ]
        for f in copy["files"]:
            body = get(stack, results, f"segments/{dataset}/current/{f['name']}")
            assert hashlib.sha256(body).hexdigest() == f["sha256"], f"current/{f['name']}"
    clean_rows = {m["prefix"] + MANIFEST: m["rows"] for m in clean}
    for run in runs:
        if focus is not None and not focus(run):
            continue
        frame = assignments(stack, run["prefix"])
        assert len(frame) == run["rows"]
        assert frame["customer_id"].is_unique
        parts = run["input"].get("parts") or []
        if len(parts) > 1:  # a merged state: customers upserted, never more than its parts
            assert 0 < run["rows"] <= sum(clean_rows[p["manifest_key"]] for p in parts)
        else:
            assert run["rows"] == clean_rows[run["input"]["clean_manifest_key"]]


# ------------------------------------------------------------------------------ inputs
def mall_like_csv(
    path: Path,
    ids: Sequence[int | str],
    *,
    seed: int,
    extra: dict[str, list[str]] | None = None,
) -> Path:
    """A file with the mall schema (CustomerID, Genre, Age, Annual_Income, Spending_Score)
    for customers ``ids``, in three loose groups so that a model finds segments."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    group = rng.integers(0, 3, n)
    income = np.choose(group, [25, 60, 100]) + rng.normal(0, 6, n)
    score = np.choose(group, [75, 45, 20]) + rng.normal(0, 8, n)
    rows = {
        "CustomerID": [str(i) for i in ids],
        "Genre": rng.choice(["Male", "Female"], n).tolist(),
        "Age": rng.integers(18, 70, n).tolist(),
        "Annual_Income": np.clip(income, 10, 140).round().astype(int).tolist(),
        "Spending_Score": np.clip(score, 1, 99).round().astype(int).tolist(),
        **(extra or {}),
    }
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(rows)
        writer.writerows(zip(*rows.values(), strict=True))
    return path


# ------------------------------------------------------------------------------ faults
class SimulatedCrash(BaseException):
    """The function stops here (timeout, out of memory, killed): nothing in it runs on."""


@dataclass
class WriteFaults:
    """Count S3 writes of the jobs (``ObjectStore.upload``/``put_bytes``/``copy``) and fail
    one: ``error_at`` raises before write N, ``crash_after`` stops the process after it.
    ``error_on`` raises before every write of a key containing it (one map item's file),
    the first ``error_times`` of them only when given (a transient fault)."""

    error_at: int | None = None
    crash_after: int | None = None
    error_on: str | None = None
    error_times: int | None = None
    errors: int = 0  # the writes ``error_on`` failed
    writes: list[tuple[str, str]] = field(default_factory=list)  # (operation, key)
    armed: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _error_on(self, key: str) -> bool:
        if self.error_on is None or self.error_on not in key:
            return False
        if self.error_times is not None and self.errors >= self.error_times:
            return False
        self.errors += 1
        return True

    @contextlib.contextmanager
    def patched(self) -> Iterator[WriteFaults]:
        originals = {name: getattr(ObjectStore, name) for name in ("upload", "put_bytes", "copy")}

        def wrap(name: str, key_arg: int) -> Callable[..., Any]:
            original = originals[name]

            def write(store: ObjectStore, *args: Any, **kwargs: Any) -> Any:
                with self.lock:  # jobs write from several threads (uploads, copies)
                    n = len(self.writes) + 1
                    if self.armed and self.error_at == n:
                        self.armed = False
                        raise ConnectionError(f"injected failure at S3 write {n} ({args[key_arg]})")
                    if self._error_on(str(args[key_arg])):
                        raise ConnectionError(f"injected failure writing {args[key_arg]}")
                    self.writes.append((name, args[key_arg]))
                result = original(store, *args, **kwargs)
                if self.armed and self.crash_after == n:
                    self.armed = False
                    raise SimulatedCrash(f"stopped after S3 write {n} ({args[key_arg]})")
                return result

            return write

        ObjectStore.upload = wrap("upload", 1)  # type: ignore[method-assign]
        ObjectStore.put_bytes = wrap("put_bytes", 1)  # type: ignore[method-assign]
        ObjectStore.copy = wrap("copy", 3)  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(ObjectStore, name, original)


def expire_in_progress(stack: Any) -> int:
    """Lambda's view of a crashed invocation once its timeout passed: the idempotency
    records it left ``INPROGRESS`` expire (Powertools then lets the retry run)."""
    table = stack.spec.idempotency_table
    ddb = stack.client("dynamodb")
    n = 0
    for item in ddb.scan(TableName=table)["Items"]:
        if item.get("status", {}).get("S") == "INPROGRESS":
            ddb.update_item(
                TableName=table,
                Key={"id": item["id"]},
                UpdateExpression="SET in_progress_expiration = :past",
                ExpressionAttributeValues={":past": {"N": str(int(time.time() * 1000) - 1000)}},
            )
            n += 1
    return n


def dead_letters(stack: Any) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=stack.spec.dead_letter_queue)["QueueUrl"]
    out = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            out.append(json.loads(m["Body"]))
    return out


# ------------------------------------------------------------------------------ threads
def parallel_drain(stack: Any, workers: int = 8, max_rounds: int = 50) -> list[Any]:
    """Like ``stack.drain()``, but each round's events are handled by a pool of threads at
    once (Lambda runs concurrent invocations side by side)."""
    done: list[Any] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in range(max_rounds):
            batch = [(fn, ev) for fn in stack.spec.functions for ev in stack.receive(fn)]
            if not batch:
                return done
            done.extend(pool.map(lambda item: stack.invoke(*item), batch))
    raise RuntimeError("events still pending after max_rounds")


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Start ``calls`` in threads at the same moment; results or the exceptions raised."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def signing_key(stack: Any) -> str:
    """The ARN of ``stack``'s model-signing key (as its functions see it)."""
    return str(stack.environment()["MODEL_SIGNING_KEY"])


def resign(stack: Any, metadata: bytes) -> bytes:
    """A metadata file signed with ``stack``'s model-signing key, as its training function
    signs (each emulated stack has a key of its own)."""
    return sign_metadata(metadata, KmsSigner(signing_key(stack), stack.client("kms")))


def seed_models(stack: Any, snapshot: dict[str, bytes], *datasets: str) -> None:
    """Put the trained models of ``datasets`` (all when none named) into ``stack``, their
    metadata signed with the stack's key."""
    s3 = stack.client("s3")
    for key, body in snapshot.items():
        if not datasets or key.split("/")[1] in datasets:
            if key.endswith("/metadata.json"):
                body = resign(stack, body)
            s3.put_object(Bucket=stack.artifact_bucket, Key=key, Body=body)


def source_key(manifest: dict[str, Any]) -> str | None:
    """The upload a clean, rejected or results run came from."""
    source = manifest.get("source") or manifest.get("input", {}).get("source") or {}
    return source.get("key")


_LAST_UPLOAD = [0]


def upload_in_a_new_second(
    stack: Any, path: Path, key: str, metadata: dict[str, str] | None = None
) -> None:
    """Upload ``path`` to ``key`` in a later second than the previous upload made here.

    S3 times uploads to the second, and a run moves its dataset's pointer only when it
    is newer (a tie in the same second is broken by run id, not by upload order): a test
    whose second upload must become the latest run waits for the next second.
    """
    while int(time.time()) <= _LAST_UPLOAD[0]:
        time.sleep(0.05)
    stack.upload(path, key, metadata=metadata)
    _LAST_UPLOAD[0] = int(time.time())
