"""Which path an upload takes: above ``FANOUT_THRESHOLD_MIB`` (a stack parameter) the
ingest function starts the fan-out state machine instead of ingesting it itself; below
it the single-function path stays (faster and cheaper for what one function holds).
The score function leaves a dataset whose newest part came through the state machine to
it (:func:`owned_by_state_machine`)."""

from __future__ import annotations

import json
import os
from typing import Any

from custseg.aws.ingest_job import Checked
from custseg.aws.s3 import ObjectStore
from custseg.aws.state import load_state
from custseg.layout import LayoutError, parse_upload_key, run_id_for

DEFAULT_BUCKETS = 16


def threshold_bytes() -> int | None:
    """The fan-out threshold in bytes (None: no state machine in this stack)."""
    raw = os.environ.get("FANOUT_THRESHOLD_MIB", "")
    if not raw or not os.environ.get("FANOUT_STATE_MACHINE_ARN"):
        return None
    return int(float(raw) * 1024**2)


def job_for(store: ObjectStore, record: dict[str, Any]) -> dict[str, Any] | None:
    """The state machine's job for an upload that takes the fanned-out path, else None
    (below the threshold, a gzip upload, or a key outside a dataset folder)."""
    limit = threshold_bytes()
    bucket, key = record["bucket"], record["key"]
    if limit is None or key.lower().endswith(".gz"):
        return None
    try:
        upload = parse_upload_key(key)
    except LayoutError:
        return None
    info = store.head(bucket, key)
    if info is None or info.size < limit:
        return None
    version_id = record.get("version_id") or info.version_id
    run_ts = info.last_modified
    return {
        "bucket": bucket,
        "key": key,
        "version_id": version_id,
        "dataset": upload.dataset,
        "run_id": run_id_for(run_ts, bucket, key, version_id or info.etag),
        "run_ts": run_ts.isoformat(timespec="seconds"),
        "size": info.size,
        "as_of": info.metadata.get("as-of"),
        "mode": info.metadata.get("mode", "append"),
        "buckets": int(os.environ.get("FANOUT_BUCKETS", DEFAULT_BUCKETS)),
    }


def checked_job(job: dict[str, Any], checked: Checked) -> dict[str, Any]:
    """``job`` with what the upload checks decided (:func:`custseg.aws.ingest_job.preflight`):
    the run id the single path gives the upload, its as-of date and its mode."""
    return {**job, "run_id": checked.run_id, "as_of": checked.as_of, "mode": checked.mode}


def start(states: Any, job: dict[str, Any]) -> str:
    """Start the state machine for ``job`` (the execution is named by the run id, so a
    redelivered upload starts no second execution); its ARN."""
    try:
        out = states.start_execution(
            stateMachineArn=os.environ["FANOUT_STATE_MACHINE_ARN"],
            name=job["run_id"],
            input=json.dumps({"job": job}),
        )
    except states.exceptions.ExecutionAlreadyExists:
        return f"{os.environ['FANOUT_STATE_MACHINE_ARN']}:{job['run_id']}"
    return str(out["executionArn"])


def owned_by_state_machine(store: ObjectStore, bucket: str, dataset: str) -> bool:
    """Whether the dataset's newest part came through the state machine (which scores it)."""
    state, _ = load_state(store, bucket, dataset)
    if state is None or not state.parts:
        return False
    manifest, _ = store.get_json(bucket, state.parts[-1].manifest_key)
    return bool((manifest or {}).get("fanout"))
