"""The ingest job: one uploaded object -> a committed clean run, or a rejection report.

Nothing is lost: the upload itself is never modified or deleted; a file rejected as a
whole is copied to ``rejected/<dataset>/<run_id>/original/`` beside its error report, and
rows that could not be repaired go to ``rejected/<dataset>/<run_id>/rejected_rows.csv``.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custseg.aws.runs import RunFile, advance_pointer, commit_run, committed_manifest
from custseg.aws.s3 import ObjectInfo, ObjectStore, PreconditionFailed
from custseg.aws.settings import Settings
from custseg.aws.state import load_state, part_from_manifest, register_part
from custseg.dataset.clean_data import clean_parts
from custseg.dataset.state import APPEND, MODES
from custseg.ingest.contracts import Contract, load_contract
from custseg.ingest.pipeline import IngestResult, ingest_file
from custseg.layout import (
    CLEAN_DATA_DIR,
    LayoutError,
    Upload,
    clean_latest_key,
    clean_prefix,
    contract_key,
    dataset_folder_key,
    parse_upload_key,
    rejected_prefix,
    run_id_for,
)

UNSORTED = "_unsorted"  # where uploads outside a dataset folder are accounted for


@dataclass
class IngestOutcome:
    """What happened to one upload (JSON-safe via ``to_dict``; no row contents)."""

    status: str  # accepted | rejected | duplicate
    dataset: str
    run_id: str
    source_key: str
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    clean_manifest_key: str | None = None
    rejected_prefix: str | None = None
    message: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("report")
        return out


def _earlier_contracts(store: ObjectStore, settings: Settings, dataset: str) -> list[Contract]:
    """The contracts the dataset's newest part of each kind was read with (its clean run's
    ``contract.json``), newest kind first: a file whose headers one of them names is read
    with it, not inferred again from a few rows."""
    state, _ = load_state(store, settings.data_bucket, dataset)
    if state is None:
        return []
    out: list[Contract] = []
    for kind in reversed(state.kinds()):
        newest = state.parts_of(kind)[-1]
        key = newest.manifest_key.rsplit("/", 1)[0] + "/contract.json"
        body = store.get_bytes(settings.data_bucket, key)
        try:
            out += [load_contract(body)] if body is not None else []
        except ValueError:  # written by an older version: the file is inferred
            continue
    return out


def _load_dataset_contract(store: ObjectStore, settings: Settings, dataset: str) -> Contract | None:
    body = store.get_bytes(settings.artifact_bucket, contract_key(dataset))
    return load_contract(body) if body is not None else None


def _reject_whole_file(
    store: ObjectStore,
    bucket: str,
    key: str,
    version_id: str | None,
    *,
    dataset: str,
    run_id: str,
    filename: str,
    report: dict[str, Any],
    text: str,
    run_ts: str,
    extra: tuple[RunFile, ...] = (),
) -> str:
    """Copy the upload beside its error report and commit the rejection run.

    ``extra``: more files of the rejection (``rejected_rows.csv`` when rows were
    rejected one by one before the file was); the manifest lists exactly what is written.
    """
    prefix = rejected_prefix(dataset, run_id)
    store.copy(bucket, key, bucket, f"{prefix}original/{filename}", version_id=version_id)
    with tempfile.TemporaryDirectory() as tmp:
        err_json = Path(tmp) / "error.json"
        err_json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        err_txt = Path(tmp) / "error.txt"
        err_txt.write_text(text, encoding="utf-8")
        commit_run(
            store,
            bucket,
            prefix,
            [RunFile("error.json", err_json), RunFile("error.txt", err_txt), *extra],
            {
                "kind": "rejected",
                "dataset": dataset,
                "run_id": run_id,
                "run_ts": run_ts,
                "source": {"bucket": bucket, "key": key, "version_id": version_id},
                "original_copy": f"{prefix}original/{filename}",
            },
        )
    return prefix


def _folder_of_latest_run(store: ObjectStore, bucket: str, dataset: str) -> str | None:
    """The folder spelling of the upload behind the dataset's newest clean run (for a
    dataset whose clean runs predate the folder record), or None."""
    pointer, _ = store.get_json(bucket, clean_latest_key(dataset))
    if not pointer or not pointer.get("manifest_key"):
        return None
    manifest, _ = store.get_json(bucket, str(pointer["manifest_key"]))
    source_key = str(((manifest or {}).get("source") or {}).get("key") or "")
    try:
        return parse_upload_key(source_key).folder
    except LayoutError:
        return None


def claim_folder(store: ObjectStore, bucket: str, upload: Upload, key: str) -> str:
    """The folder spelling that owns ``upload.dataset``: the one recorded, else this
    upload's (recorded now, create-only, so of two first uploads at once one wins).

    Folder names fold to dataset names (``incoming/My Shop/`` and ``incoming/my_shop/``
    are both ``my_shop``); the caller rejects an upload whose folder is not the owner,
    instead of merging two folders' data silently.
    """
    record_key = dataset_folder_key(upload.dataset)
    record, _ = store.get_json(bucket, record_key)
    if record is not None and record.get("folder"):
        return str(record["folder"])
    folder = _folder_of_latest_run(store, bucket, upload.dataset) or upload.folder
    body = {"dataset": upload.dataset, "folder": folder, "prefix": upload.prefix, "first_key": key}
    try:
        store.put_json(bucket, record_key, body, if_none_match=True)
    except PreconditionFailed:  # another upload claimed it first
        record, _ = store.get_json(bucket, record_key)
        return str((record or body)["folder"])
    return folder


def check_as_of(as_of: str | None, upload_time: dt.datetime, settings: Settings) -> str | None:
    """Why the ``as-of`` metadata of an upload cannot be right, or None when it is absent
    or a date between the date floor and the upload day plus the future tolerance."""
    if as_of is None:
        return None
    try:
        day = dt.date.fromisoformat(as_of.strip())
    except ValueError:
        return f"the as-of metadata {as_of[:20]!r} is not a date: use YYYY-MM-DD"
    latest = (upload_time.astimezone(dt.UTC) + settings.future_tolerance).date()
    if not settings.date_floor <= day <= latest:
        return (
            f"the as-of metadata {day.isoformat()} is not between {settings.date_floor} and "
            f"{latest} (the upload day plus the future tolerance)"
        )
    return None


def _clean_pointer(dataset: str, run_id: str, run_ts_iso: str) -> dict[str, Any]:
    """The body of ``clean/<dataset>/latest.json`` naming one committed clean run."""
    return {
        "dataset": dataset,
        "run_id": run_id,
        "run_ts": run_ts_iso,
        "manifest_key": clean_prefix(dataset, run_id) + "_manifest.json",
    }


def _publish_clean_run(
    store: ObjectStore, bucket: str, dataset: str, manifest: dict[str, Any]
) -> None:
    """After a clean run's manifest: move ``latest.json`` to it, then register it in the
    dataset state (the write that triggers scoring). Both steps are idempotent."""
    run_id, run_ts = str(manifest["run_id"]), str(manifest["run_ts"])
    advance_pointer(
        store, bucket, clean_latest_key(dataset), _clean_pointer(dataset, run_id, run_ts)
    )
    key = clean_prefix(dataset, run_id) + "_manifest.json"
    part = part_from_manifest(manifest, key, str(manifest.get("mode") or APPEND))
    register_part(store, bucket, dataset, part, dt.datetime.now(dt.UTC))


def _check_upload(
    store: ObjectStore,
    settings: Settings,
    bucket: str,
    upload: Upload,
    key: str,
    size: int,
    as_of: str | None,
    run_ts: dt.datetime,
    size_limit: bool = True,
) -> tuple[Contract | None, tuple[str, str] | None]:
    """Whether the upload may be read: its folder names the dataset, its size is within
    the limit (with ``size_limit``), the dataset's contract parses and its as-of date is
    plausible. Returns the contract to read it with (None: detect one), or why the whole
    file is refused (code, message)."""
    dataset = upload.dataset
    owner = claim_folder(store, bucket, upload, key)
    if owner != upload.folder:
        return None, (
            "dataset_folder_conflict",
            f"{key}: the folder {upload.prefix}{upload.folder}/ folds to dataset {dataset!r}, "
            f"which already receives uploads from {upload.prefix}{owner}/. Upload to "
            f"{upload.prefix}{owner}/ to add to that dataset, or use a folder name that does "
            f"not fold to {dataset!r} for a new one (names are lower-cased and runs of other "
            "characters than a-z, 0-9, _ and - become _).",
        )

    if size_limit and size > settings.max_input_bytes:
        limit_mib = settings.max_input_bytes / 1024**2
        return None, (
            "too_large",
            f"{key}: file is {size / 1024**2:,.1f} MiB, above this function's limit of "
            f"{limit_mib:,.4g} MiB (MaxInputMiB). Split it into several files under "
            f"incoming/{dataset}/, gzip it (often 5-10x smaller), or raise MaxInputMiB in the "
            "stack parameters together with the function's memory and ephemeral storage.",
        )

    try:
        contract = _load_dataset_contract(store, settings, dataset)
    except ValueError as exc:  # the dataset's own contract does not parse
        return None, (
            "bad_contract",
            f"{key}: the contract s3://{settings.artifact_bucket}/{contract_key(dataset)} "
            f"is not valid, so the file was not read: {exc}",
        )
    as_of_problem = check_as_of(as_of, run_ts, settings)
    if as_of_problem:
        return None, ("bad_as_of", f"{key}: {as_of_problem}")
    return contract, None


def _commit_accepted(
    store: ObjectStore,
    bucket: str,
    result: IngestResult,
    outcome: IngestOutcome,
    source: dict[str, Any],
    *,
    run_ts_iso: str,
    as_of: str | None,
    mode: str,
) -> tuple[str, dict[str, Any]]:
    """Commit an accepted ingest: its rejected rows (when any) as a ``rejected_rows`` run,
    then the clean run; returns the clean run's prefix and manifest."""
    dataset, run_id = outcome.dataset, outcome.run_id
    if result.rejected_rows_path is not None:
        rprefix = rejected_prefix(dataset, run_id)
        commit_run(
            store,
            bucket,
            rprefix,
            [
                RunFile("rejected_rows.csv", result.rejected_rows_path, outcome.rows_rejected),
                RunFile("quality.json", result.report_json_path),
            ],
            {
                "kind": "rejected_rows",
                "dataset": dataset,
                "run_id": run_id,
                "run_ts": run_ts_iso,
                "source": source,
            },
        )
        outcome.rejected_prefix = rprefix

    clean_path = result.clean_path
    assert clean_path is not None, "an accepted ingest always writes clean data"
    prefix = clean_prefix(dataset, run_id)
    manifest, _ = commit_run(
        store,
        bucket,
        prefix,
        [
            *(
                RunFile(f"{CLEAN_DATA_DIR}/{part.name}", part, rows)
                for part, rows in clean_parts(clean_path)
            ),
            RunFile("quality.json", result.report_json_path),
            RunFile("quality.txt", result.report_text_path),
            RunFile("contract.json", result.contract_path),
            RunFile("contract.yaml", result.contract_path.with_suffix(".yaml")),
        ],
        {
            "kind": "clean",
            "dataset": dataset,
            "run_id": run_id,
            "run_ts": run_ts_iso,
            "contract_kind": result.contract.kind,
            "as_of": as_of,
            "rows": outcome.rows_kept,
            "source": source,
            "mode": mode,
        },
    )
    return prefix, manifest


@dataclass(frozen=True)
class _Arrival:
    """One uploaded object as this attempt sees it: where, which version, its run id."""

    bucket: str
    key: str
    version_id: str | None
    info: ObjectInfo
    run_id: str
    run_ts: dt.datetime
    run_ts_iso: str

    def reject_whole_file(
        self,
        store: ObjectStore,
        dataset: str,
        filename: str,
        report: dict[str, Any],
        text: str,
        extra: tuple[RunFile, ...] = (),
    ) -> str:
        """Keep the upload under ``rejected/`` beside its report; the rejected prefix."""
        return _reject_whole_file(
            store,
            self.bucket,
            self.key,
            self.version_id,
            dataset=dataset,
            run_id=self.run_id,
            filename=filename,
            report=report,
            text=text,
            run_ts=self.run_ts_iso,
            extra=extra,
        )


def _arrival(
    store: ObjectStore, bucket: str, key: str, version_id: str | None, etag: str | None
) -> _Arrival | None:
    """Identify the upload: its version, time and run id (None: the object is gone)."""
    info = store.head(bucket, key)
    if info is None:
        return None
    version_id = version_id or info.version_id
    identity = version_id or etag or info.etag
    run_ts = info.last_modified.astimezone(dt.UTC)
    run_id = run_id_for(run_ts, bucket, key, identity)
    run_ts_iso = run_ts.isoformat(timespec="seconds")
    return _Arrival(bucket, key, version_id, info, run_id, run_ts, run_ts_iso)


def _reject_bad_key(store: ObjectStore, arrival: _Arrival, exc: LayoutError) -> IngestOutcome:
    """Reject an upload outside a dataset folder (accounted for under ``_unsorted``)."""
    key = arrival.key
    report: dict[str, Any] = {
        "status": "rejected",
        "source": key,
        "errors": [{"code": "bad_key", "message": str(exc)}],
    }
    prefix = arrival.reject_whole_file(
        store,
        dataset=UNSORTED,
        filename=key.rsplit("/", 1)[-1] or "upload",
        report=report,
        text=str(exc),
    )
    return IngestOutcome(
        "rejected", UNSORTED, arrival.run_id, key, rejected_prefix=prefix, message=str(exc)
    )


def _already_done(store: ObjectStore, arrival: _Arrival, dataset: str) -> IngestOutcome | None:
    """The ``duplicate`` outcome when this upload was processed already (finishing what a
    stopped attempt left after its clean manifest), else None."""
    bucket, run_id = arrival.bucket, arrival.run_id
    # Done when the clean run is committed, or the whole file was rejected. A committed
    # "rejected_rows" manifest alone is not done: it is written before the clean run, and
    # a crash between the two must not turn the retry into a no-op that loses the data.
    clean_done = committed_manifest(store, bucket, clean_prefix(dataset, run_id))
    rejected_done = committed_manifest(store, bucket, rejected_prefix(dataset, run_id))
    if clean_done is None and (rejected_done or {}).get("kind") != "rejected":
        return None
    if clean_done is not None:  # a crash after the manifest: finish what follows it
        _publish_clean_run(store, bucket, dataset, clean_done)
    return IngestOutcome(
        "duplicate",
        dataset,
        run_id,
        arrival.key,
        message="this upload was already processed; nothing written",
    )


def _refuse(
    store: ObjectStore, arrival: _Arrival, upload: Upload, code: str, message: str
) -> IngestOutcome:
    """Reject the whole file before any work: copy it, report why, count no rows."""
    dataset = upload.dataset
    report = {
        "status": "rejected",
        "source": arrival.key,
        "dataset": dataset,
        "run_id": arrival.run_id,
        "rows_read": 0,
        "rows_kept": 0,
        "rows_rejected": 0,
        "errors": [{"code": code, "message": message, "row": None, "column": None}],
        "file_errors": [code],
    }
    prefix = arrival.reject_whole_file(
        store, dataset=dataset, filename=upload.filename, report=report, text=message
    )
    return IngestOutcome(
        "rejected", dataset, arrival.run_id, arrival.key, rejected_prefix=prefix, message=message
    )


@dataclass(frozen=True)
class Checked:
    """An upload that passed the checks made before it is read (:func:`preflight`)."""

    arrival: _Arrival
    upload: Upload
    contract: Contract | None  # the dataset's own contract (None: the file's is detected)
    as_of: str | None
    mode: str

    @property
    def run_id(self) -> str:
        return self.arrival.run_id


def preflight(
    store: ObjectStore,
    settings: Settings,
    *,
    bucket: str,
    key: str,
    version_id: str | None = None,
    etag: str | None = None,
    size_limit: bool = True,
) -> Checked | IngestOutcome:
    """The checks an upload passes before it is read, whichever path ingests it: a key
    in a dataset folder, not processed already (a ``duplicate`` outcome), the folder
    claim, the size limit (``size_limit``: the single function's ``MaxInputMiB``; the
    fan-out path has none), the dataset's contract, the as-of and mode metadata. A
    refused upload is rejected as a whole here (its copy and error report committed)."""
    arrival = _arrival(store, bucket, key, version_id, etag)
    if arrival is None:
        return IngestOutcome("missing", "", "", key, message="object no longer exists")
    try:
        upload = parse_upload_key(key)
    except LayoutError as exc:
        return _reject_bad_key(store, arrival, exc)
    done = _already_done(store, arrival, upload.dataset)
    if done is not None:
        return done
    return _check(store, settings, arrival, upload, size_limit)


def _check(
    store: ObjectStore, settings: Settings, arrival: _Arrival, upload: Upload, size_limit: bool
) -> Checked | IngestOutcome:
    """The upload's contract (None: inferred), as-of and mode, or its refusal."""
    key, info = arrival.key, arrival.info
    as_of = info.metadata.get("as-of")
    contract, refusal = _check_upload(
        store, settings, arrival.bucket, upload, key, info.size, as_of, arrival.run_ts, size_limit
    )
    if refusal is not None:
        return _refuse(store, arrival, upload, *refusal)
    mode = info.metadata.get("mode", APPEND).strip().lower()
    if mode not in MODES:
        return _refuse(
            store,
            arrival,
            upload,
            "bad_mode",
            f"{key}: the mode metadata {mode[:20]!r} is not one of {', '.join(MODES)} "
            "(replace: this upload replaces every earlier upload of its kind)",
        )
    return Checked(arrival, upload, contract, as_of, mode)


def _ingest(
    store: ObjectStore,
    settings: Settings,
    arrival: _Arrival,
    dataset: str,
    contract: Contract | None,
    tmp: Path,
) -> tuple[IngestResult, IngestOutcome]:
    """The core: download the upload and read it (:func:`ingest_file`) into ``tmp``."""
    local = store.download(
        arrival.bucket, arrival.key, tmp / "input", version_id=arrival.version_id
    )
    return _read_local(store, settings, arrival, dataset, contract, local, tmp)


def _read_local(
    store: ObjectStore,
    settings: Settings,
    arrival: _Arrival,
    dataset: str,
    contract: Contract | None,
    local: Path,
    tmp: Path,
) -> tuple[IngestResult, IngestOutcome]:
    """Read ``local`` (the upload, or its head) as the upload (:func:`ingest_file`)."""
    result = ingest_file(
        local,
        tmp / "out",
        source_name=arrival.key,
        dataset=dataset,
        run_id=arrival.run_id,
        contract=contract,
        chunk_rows=settings.chunk_rows,
        upload_time=arrival.run_ts,
        future_tolerance=settings.future_tolerance,
        date_floor=settings.date_floor,
        limits=settings.read_limits,
        known=() if contract else _earlier_contracts(store, settings, dataset),
    )
    report = result.report.to_dict()
    outcome = IngestOutcome(
        result.status,
        dataset,
        arrival.run_id,
        arrival.key,
        rows_read=int(report.get("rows_read", 0)),
        rows_kept=int(report.get("rows_kept", 0)),
        rows_rejected=int(report.get("rows_rejected", 0)),
        report=report,
    )
    return result, outcome


def _reject_ingested(
    store: ObjectStore,
    arrival: _Arrival,
    upload: Upload,
    result: IngestResult,
    outcome: IngestOutcome,
) -> IngestOutcome:
    """Keep a file the ingest rejected as a whole, with its report (and rejected rows)."""
    text = result.report_text_path.read_text(encoding="utf-8")
    # rows rejected one by one before the file was (every row invalid, or the
    # parser giving up mid-file): their file is written too, as the report says
    rows_file = result.rejected_rows_path
    extra = (RunFile("rejected_rows.csv", rows_file),) if rows_file is not None else ()
    outcome.rejected_prefix = arrival.reject_whole_file(
        store,
        dataset=upload.dataset,
        filename=upload.filename,
        report=outcome.report,
        text=text,
        extra=extra,
    )
    outcome.message = text.splitlines()[0] if text else "file rejected"
    return outcome


def reject_unreadable(
    store: ObjectStore, settings: Settings, checked: Checked, local: Path, tmp: Path
) -> IngestOutcome:
    """Reject the upload as :func:`run_ingest` does when the core rejects it before
    reading rows: ``local`` holds its head (the bytes that decide it), read into
    ``tmp``; the same report, the upload kept under ``rejected/``."""
    dataset = checked.upload.dataset
    result, outcome = _read_local(
        store, settings, checked.arrival, dataset, checked.contract, local, tmp
    )
    return _reject_ingested(store, checked.arrival, checked.upload, result, outcome)


def _source_of(arrival: _Arrival) -> dict[str, Any]:
    """What a clean run's manifest says of the upload it was read from."""
    return {
        "bucket": arrival.bucket,
        "key": arrival.key,
        "version_id": arrival.version_id,
        "etag": arrival.info.etag,
        "size": arrival.info.size,
    }


def _publish_accepted(
    store: ObjectStore,
    arrival: _Arrival,
    outcome: IngestOutcome,
    prefix: str,
    clean_manifest: dict[str, Any],
) -> IngestOutcome:
    """Point the dataset at the committed clean run and say what was kept."""
    outcome.clean_manifest_key = prefix + "_manifest.json"
    _publish_clean_run(store, arrival.bucket, outcome.dataset, clean_manifest)
    outcome.message = (
        f"accepted: {outcome.rows_read} rows read, {outcome.rows_kept} kept, "
        f"{outcome.rows_rejected} rejected"
    )
    return outcome


def run_ingest(
    store: ObjectStore,
    settings: Settings,
    *,
    bucket: str,
    key: str,
    version_id: str | None = None,
    etag: str | None = None,
    workdir: Path | None = None,
) -> IngestOutcome:
    """Ingest ``s3://bucket/key`` (a decoded key). Never raises for bad input."""
    checked = preflight(store, settings, bucket=bucket, key=key, version_id=version_id, etag=etag)
    if isinstance(checked, IngestOutcome):
        return checked
    arrival, upload = checked.arrival, checked.upload
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result, outcome = _ingest(
            store, settings, arrival, upload.dataset, checked.contract, Path(tmp)
        )
        if result.status != "accepted":
            return _reject_ingested(store, arrival, upload, result, outcome)
        prefix, clean_manifest = _commit_accepted(
            store,
            bucket,
            result,
            outcome,
            _source_of(arrival),
            run_ts_iso=arrival.run_ts_iso,
            as_of=checked.as_of,
            mode=checked.mode,
        )
    return _publish_accepted(store, arrival, outcome, prefix, clean_manifest)
