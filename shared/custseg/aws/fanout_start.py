"""Which path an upload takes: above ``FANOUT_THRESHOLD_MIB`` (a stack parameter) the
ingest function starts the fan-out state machine instead of ingesting it itself; below
it the single-function path stays (faster and cheaper for what one function holds).
The score function leaves a dataset whose newest part came through the state machine to
it (:func:`owned_by_state_machine`).

Before it starts the state machine (:func:`fan_out`), the ingest function checks the
upload as the single path would: :func:`~custseg.aws.ingest_job.preflight`, then its head
(:func:`refuse_unreadable_head`). This module is what the ingest function imports of
the fan-out: the steps themselves (:mod:`custseg.aws.fanout_job`) load the scoring and
training stack, which its cold start does not need.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custseg.aws.ingest_job import (
    Checked,
    IngestOutcome,
    _earlier_contracts,
    preflight,
    reject_unreadable,
)
from custseg.aws.s3 import ObjectStore
from custseg.aws.settings import Settings
from custseg.aws.state import load_state
from custseg.fanout.ranges import GZIP_MAGIC, head_end
from custseg.ingest.contracts import Contract
from custseg.ingest.contracts.inference import SAMPLE_ROWS
from custseg.ingest.pipeline import decide_contract
from custseg.ingest.reading import SAMPLE_BYTES
from custseg.layout import LayoutError, parse_upload_key, run_id_for

HEAD_RECORDS = 2 * SAMPLE_ROWS
"""Records of the head the upload's contract is decided on: the rows inference samples,
with room for records the reader skips (wrong field count) before it has them."""

DEFAULT_BUCKETS = 16


def threshold_bytes() -> int | None:
    """The fan-out threshold in bytes (None: no state machine in this stack)."""
    raw = os.environ.get("FANOUT_THRESHOLD_MIB", "")
    if not raw or not os.environ.get("FANOUT_STATE_MACHINE_ARN"):
        return None
    return int(float(raw) * 1024**2)


def job_for(store: ObjectStore, record: dict[str, Any]) -> dict[str, Any] | None:
    """The state machine's job for an upload that takes the fanned-out path, else None
    (below the threshold, a key outside a dataset folder, or a gzip upload, by its name
    or its first bytes: a gzip stream cannot be cut into byte ranges, the single path
    reads it whole)."""
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
    read = upload_reader(store, {"bucket": bucket, "key": key, "version_id": version_id})
    if info.size >= len(GZIP_MAGIC) and read(0, len(GZIP_MAGIC)) == GZIP_MAGIC:
        return None
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


def fan_out(
    store: ObjectStore,
    settings: Settings,
    job: dict[str, Any],
    upload: dict[str, Any],
    states: Callable[[], Any],
) -> tuple[dict[str, Any], str] | IngestOutcome:
    """Check the upload (``bucket``, ``key``, ``version_id``, ``etag``) as the single path
    would and start the state machine for ``job`` (``states()``: a Step Functions client):
    the job as started and the execution's ARN; the outcome of a refused upload instead
    (rejected as the single path rejects it)."""
    checked = preflight(store, settings, **upload, size_limit=False)
    if isinstance(checked, IngestOutcome):
        return checked
    refused = refuse_unreadable_head(store, settings, job, checked)
    if refused is not None:
        return refused
    job = checked_job(job, checked)
    return job, start(states(), job)


def upload_reader(store: ObjectStore, job: dict[str, Any]) -> Callable[[int, int], bytes]:
    """``read(start, end)``: bytes ``[start, end)`` of the upload (a ranged GET)."""
    bucket, key = job["bucket"], job["key"]
    extra = {"VersionId": job["version_id"]} if job.get("version_id") else {}

    def read(start: int, end: int) -> bytes:
        body = store.client.get_object(
            Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra
        )["Body"]
        return bytes(body.read())

    return read


def upload_head(store: ObjectStore, job: dict[str, Any]) -> bytes:
    """The head the upload's contract is decided on: its header and at least
    :data:`HEAD_RECORDS` records beyond ``SAMPLE_BYTES``, cut at a record end."""
    read = upload_reader(store, job)
    size = int(job["size"])
    if size == 0:
        return b""
    return read(0, head_end(read, size, head_records=HEAD_RECORDS, head_bytes=SAMPLE_BYTES))


def contract_on_head(
    store: ObjectStore,
    settings: Settings,
    job: dict[str, Any],
    head: bytes,
    given: Contract | None,
    tmp: Path,
) -> tuple[Path, Contract, list[dict[str, Any]]]:
    """(the head written to a file in ``tmp``, the contract the single path reads the
    upload with, the errors that reject it before rows are read): ``given`` (the
    dataset's own contract), else one of its earlier uploads' that names every header,
    else inferred (:func:`custseg.ingest.pipeline.decide_contract`)."""
    known = () if given else _earlier_contracts(store, settings, job["dataset"])
    path = tmp / (job["key"].rsplit("/", 1)[-1] or "upload")
    path.write_bytes(head)
    contract, errors = decide_contract(
        path, source_name=job["key"], contract=given, limits=settings.read_limits, known=known
    )
    return path, contract, errors


def refuse_unreadable_head(
    store: ObjectStore, settings: Settings, job: dict[str, Any], checked: Checked
) -> IngestOutcome | None:
    """When the upload's head is one the single path rejects before reading rows (no
    delimiter, undecodable, a header its contract cannot read), reject the upload as the
    single path does (its report, the upload kept under ``rejected/``); None when the
    fan-out may start."""
    head = upload_head(store, job)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path, _, errors = contract_on_head(store, settings, job, head, checked.contract, tmp)
        if not errors:
            return None
        return reject_unreadable(store, settings, checked, path, tmp / "read")


def owned_by_state_machine(store: ObjectStore, bucket: str, dataset: str) -> bool:
    """Whether the dataset's newest part came through the state machine (which scores it)."""
    state, _ = load_state(store, bucket, dataset)
    if state is None or not state.parts:
        return False
    manifest, _ = store.get_json(bucket, state.parts[-1].manifest_key)
    return bool((manifest or {}).get("fanout"))
