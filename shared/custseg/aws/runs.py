"""Atomic runs on S3: files first, the manifest last, then the pointer, only forward.

A reader that follows a ``latest.json`` pointer or finds a ``_manifest.json`` never sees
a partial run: the manifest is written (conditionally, once) only after every file it
lists is in place, and the pointer names only runs whose manifest exists.

Every file under a run prefix is written once too (If-None-Match). Deliveries of one run
(S3 and EventBridge deliver at least once; Lambda retries after a crash) share the run
prefix, and their files differ in bytes (reports record timings): were a late duplicate
allowed to overwrite a file after another delivery committed the manifest, the manifest's
checksums would no longer describe the files. A delivery that finds a file already
written keeps it and describes the stored object in its manifest instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custseg.aws.s3 import ObjectStore, PreconditionFailed, file_sha256
from custseg.layout import CLEAN_DATA_DIR, LEGACY_CLEAN_FILE, MANIFEST, clean_data_names

MANIFEST_VERSION = 1
_UPLOAD_THREADS = 4  # a run's files uploaded at once (a clean run has 4, a results run 6)


@dataclass(frozen=True)
class RunFile:
    """A local file to publish at ``<prefix><name>``; ``rows`` when it holds records;
    ``sha256`` (hex) when its writer computed it (S3 verifies it on upload, and the file is
    not read once more to hash it)."""

    name: str
    path: Path
    rows: int | None = None
    sha256: str | None = None


def committed_manifest(store: ObjectStore, bucket: str, prefix: str) -> dict[str, Any] | None:
    manifest, _ = store.get_json(bucket, prefix + MANIFEST)
    return manifest


def upload_run_file(store: ObjectStore, bucket: str, prefix: str, f: RunFile) -> dict[str, Any]:
    """Upload one run file create-only; its manifest entry (key, name, size, sha256, rows).

    When another attempt of the run wrote the file already, that object is kept and
    described instead.
    """
    key = prefix + f.name
    try:
        stored = store.upload(bucket, key, f.path, if_none_match=True, sha256=f.sha256)
        size, sha256 = f.path.stat().st_size, stored or f.sha256 or file_sha256(f.path)
    except PreconditionFailed:
        size, sha256 = store.sha256(bucket, key)
    entry: dict[str, Any] = {"key": key, "name": f.name, "size": size, "sha256": sha256}
    if f.rows is not None:
        entry["rows"] = f.rows
    return entry


def commit_run(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    files: list[RunFile],
    manifest: dict[str, Any],
    *,
    started: Mapping[str, Future[dict[str, Any]]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Upload ``files`` under ``prefix`` (in parallel), then write the manifest once.

    ``started``: file name -> an upload of that file already under way
    (:func:`upload_run_file` on a background thread, e.g. the assignments while the run's
    metrics are computed); the manifest waits for it like for the others, and an upload
    that failed fails the commit (no manifest).

    Returns ``(manifest, created)``; ``created`` is False when another delivery of the same
    run committed first (its manifest is returned; nothing of this attempt was written
    over it). Files another attempt of the run wrote already are kept, not replaced: they
    hold the same results up to timings, as run ids are deterministic.
    """
    existing = committed_manifest(store, bucket, prefix)
    if existing is not None:
        return existing, False
    started = started or {}
    todo = sorted((f for f in files if f.name not in started), key=lambda f: -f.path.stat().st_size)
    # the files not under way yet go up in parallel (largest first), alongside those that
    # are: a run's small files no longer wait for its large ones
    with ThreadPoolExecutor(max(1, min(_UPLOAD_THREADS, len(todo))), "run-upload") as pool:
        uploads = dict(started)
        for f in todo:
            uploads[f.name] = pool.submit(upload_run_file, store, bucket, prefix, f)
        entries = [uploads[f.name].result() for f in files]
    body = {
        "manifest_version": MANIFEST_VERSION,
        **manifest,
        "prefix": prefix,
        "files": entries,
        "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        store.put_json(bucket, prefix + MANIFEST, body, if_none_match=True)
    except PreconditionFailed:
        existing = committed_manifest(store, bucket, prefix)
        return existing or body, False
    return body, True


def order_key(pointer: dict[str, Any]) -> tuple[str, int, str]:
    """Pointers move forward by (run timestamp, model generation, run id).

    A run's timestamp is its data's upload time, so newer data always wins; of two runs
    of data uploaded in the same second (the same data scored again by a newly promoted
    model, say), the run made by the later champion (its promotion count, ``generation``)
    wins. The run id breaks the remaining ties so that every writer agrees on one order."""
    return (
        str(pointer.get("run_ts", "")),
        int(pointer.get("model_generation", 0)),
        str(pointer.get("run_id", "")),
    )


def advance_pointer(
    store: ObjectStore, bucket: str, key: str, pointer: dict[str, Any], attempts: int = 8
) -> bool:
    """Point ``key`` at ``pointer`` if it is newer than what is there. True when moved.

    Uses S3 conditional writes (If-Match on the current ETag, If-None-Match when absent)
    so that two concurrent runs cannot move the pointer backwards.
    """
    for _ in range(attempts):
        current, etag = store.get_json(bucket, key)
        if current is not None and order_key(current) >= order_key(pointer):
            return False
        try:
            if current is None:
                store.put_json(bucket, key, pointer, if_none_match=True)
            else:
                store.put_json(bucket, key, pointer, if_match=etag)
            return True
        except PreconditionFailed:
            continue
    raise RuntimeError(f"could not move pointer {key} after {attempts} attempts")


def download_clean_data(
    store: ObjectStore, bucket: str, prefix: str, manifest: Mapping[str, Any], dest: Path
) -> Path:
    """Download the clean data of the clean run at ``prefix`` (its manifest given) into
    ``dest``, its parts at once; returns the local path to read it from
    (:func:`custseg.dataset.clean_data.read_clean`): ``dest/data/`` with the parts, or
    ``dest/data.parquet`` for a run written before the parts."""
    names = clean_data_names([str(f.get("name", "")) for f in manifest.get("files", [])])
    names = names or [LEGACY_CLEAN_FILE]
    with ThreadPoolExecutor(len(names), "clean-download") as pool:
        futures = [
            pool.submit(store.download, bucket, prefix + name, dest / name) for name in names
        ]
        for future in futures:
            future.result()
    return dest / (LEGACY_CLEAN_FILE if names == [LEGACY_CLEAN_FILE] else CLEAN_DATA_DIR)
