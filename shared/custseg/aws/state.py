"""The dataset state on S3: ``clean/<dataset>/_state.json``, moved by conditional writes.

Registering a committed clean run reads the state with its ETag, adds the part
(:func:`custseg.dataset.state.register`) and writes it back with ``If-Match`` (or
``If-None-Match: *`` for a dataset's first part): of two registrations at once, one
retries on the other's result, so no part is ever lost and a reader never sees half a
merge. The write triggers scoring (the score function listens for ``_state.json``).

Reading the state for a run downloads every part of one kind and merges it
(:func:`custseg.dataset.merge.merge_parts`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from custseg.aws.runs import download_clean_data
from custseg.aws.s3 import ObjectStore, PreconditionFailed
from custseg.dataset.merge import merge_parts
from custseg.dataset.state import APPEND, DatasetState, Part, PartFile, register
from custseg.features.engine import EngineLimits
from custseg.layout import dataset_state_key


def load_state(
    store: ObjectStore, bucket: str, dataset: str
) -> tuple[DatasetState | None, str | None]:
    """The dataset's state and its ETag (None, None when it has none yet)."""
    body, etag = store.get_json(bucket, dataset_state_key(dataset))
    return (DatasetState.from_dict(body) if body is not None else None), etag


def part_from_manifest(manifest: Mapping[str, Any], manifest_key: str, mode: str) -> Part:
    """The part a committed clean run's manifest describes."""
    files = tuple(
        PartFile(str(f["name"]), f.get("sha256"), f.get("rows"))
        for f in manifest.get("files", [])
        if str(f.get("name", "")).endswith(".parquet")
    )
    return Part(
        run_id=str(manifest["run_id"]),
        kind=str(manifest.get("contract_kind", "customers")),
        manifest_key=manifest_key,
        uploaded_at=str(manifest["run_ts"]),
        rows=int(manifest.get("rows") or 0),
        files=files,
        mode=mode or APPEND,
        source_key=str((manifest.get("source") or {}).get("key", "")),
    )


def register_part(
    store: ObjectStore,
    bucket: str,
    dataset: str,
    part: Part,
    now: dt.datetime,
    attempts: int = 16,
) -> DatasetState:
    """Add ``part`` to the dataset's state (idempotent); returns the state written."""
    key = dataset_state_key(dataset)
    for _ in range(attempts):
        current, etag = load_state(store, bucket, dataset)
        state = register(current or DatasetState(dataset), part, now)
        if current is not None and state is current:
            return current  # registered already (a redelivered event)
        try:
            if current is None:
                store.put_json(bucket, key, state.to_dict(), if_none_match=True)
            else:
                store.put_json(bucket, key, state.to_dict(), if_match=etag)
            return state
        except PreconditionFailed:
            continue  # another registration won: register on top of its result
    raise RuntimeError(f"could not register {part.run_id} in {key} after {attempts} attempts")


def download_state(
    store: ObjectStore,
    bucket: str,
    parts: list[Part],
    dest: Path,
    *,
    id_column: str = "customer_id",
    limits: EngineLimits | None = None,
) -> Path:
    """The merged clean data of ``parts`` (one kind, oldest first) under ``dest/merged``."""
    manifests = [store.get_json(bucket, p.manifest_key)[0] or {} for p in parts]
    with ThreadPoolExecutor(min(4, len(parts)), "state-download") as pool:
        futures = [
            pool.submit(download_clean_data, store, bucket, p.prefix, m, dest / "parts" / str(i))
            for i, (p, m) in enumerate(zip(parts, manifests, strict=True))
        ]
        local = [f.result() for f in futures]
    kind = parts[-1].kind
    return merge_parts(local, kind, dest / "merged", id_column=id_column, limits=limits)
