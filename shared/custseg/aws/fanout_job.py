"""The steps of the fanned-out path, one Lambda invocation each (the state machine in
``infra/template.yaml`` orders them; docs/fanout.md).

A job is one upload: ``split`` cuts it into byte ranges (items for a Distributed Map)
and decides the upload's contract once, on its head, as the single path would (every
range is read with it); ``profile_range`` reads a range's cleaning statistics and
``merge_profiles`` merges them; ``ingest_range`` cleans one range into clean parts;
``commit_ingest`` checks every range's counts, adds up their rejection counts and
publishes the clean run in the dataset state; ``plan_features`` gives
the Athena UNLOAD of the state's features (an order log's purchase history per customer
included, and its holdout history when the holdout check applies) bucketed by a hash of
the customer id; ``list_buckets`` gives the buckets (items of the score map) and names
the previous run compared with for stability; ``train_sample`` fits a model (and its
predictions) on the first buckets (a hash sample of bounded size) when there is no
champion; ``score_bucket`` scores one bucket into an
assignments part with the model's prediction columns, its statistics and its prediction
statistics (JSON), its customers compared with the previous run's; ``reduce`` merges the
statistics into the run's metrics (stability included), ranked profiles, value at risk
and report and commits the run (manifest last, ``latest.json`` forward
only). Staging files live under
``clean/<dataset>/<run_id>/_fanout/`` and are named by item, so a retried item rewrites
its own files and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.aws.athena import (
    BUCKET_COLUMN,
    HASHES_TABLE,
    QueryEngine,
    bucket_expression,
    drop_table_sql,
    run_table,
    unload_sql,
)
from custseg.aws.bus import EventBus
from custseg.aws.fanout_start import contract_on_head, upload_head, upload_reader
from custseg.aws.ingest_job import (
    _load_dataset_contract,
    _publish_clean_run,
)
from custseg.aws.registry import champion, load_version
from custseg.aws.runs import RunFile, commit_run, committed_manifest, upload_run_file
from custseg.aws.s3 import ObjectStore
from custseg.aws.score_job import model_name_for, previous_assignment_keys, publish_latest
from custseg.aws.settings import Settings
from custseg.aws.state import load_state
from custseg.aws.train_job import Keys, _train_and_register
from custseg.dataset.state import APPEND
from custseg.fanout import profile
from custseg.fanout.duplicates import (
    FOLDERS,
    duplicate_lines,
    duplicates_select,
    hashes_bytes,
    parts_with_copies_select,
)
from custseg.fanout.ranges import ByteRange, plan_ranges
from custseg.features.build import CategoryCodes, Features, default_as_of_reason, with_schema
from custseg.features.dialect import to_athena
from custseg.features.engine import features_from_table
from custseg.features.sql import (
    HOLDOUT_HISTORY_COLUMNS,
    ColumnKind,
    FeatureQuery,
    feature_query,
    first_purchase_query,
    holdout_query,
    quote,
)
from custseg.ingest.contracts import Contract
from custseg.ingest.contracts.inference import contract_yaml
from custseg.ingest.contracts.model import Role
from custseg.ingest.pipeline import (
    CONTRACT_JSON,
    IngestResult,
    RangeIngest,
    ingest_file,
)
from custseg.layout import (
    CLEAN_DATA_DIR,
    MANIFEST,
    RESULT_FILES,
    clean_part_name,
    clean_prefix,
    rejected_prefix,
    results_prefix,
    run_id_for,
)
from custseg.model.artifact import SegmentModel
from custseg.predict.clv import CLV
from custseg.scoring.metrics import (
    PreviousAssignments,
    PreviousSummary,
    ScoreStats,
    Thresholds,
    build_metrics,
    pca_projection,
    quality_sample,
)
from custseg.scoring.outputs import AssignmentWriter
from custseg.scoring.predictions import (
    AT_RISK_CSV,
    BucketPredictions,
    HoldoutGroups,
    HoldoutWindow,
    PredictionStats,
    ValueTotals,
    holdout_window,
    prediction_columns,
    predictions_metrics,
    propensity_columns,
    risk_measure,
)
from custseg.scoring.profiles import build_profiles
from custseg.scoring.ranking import rank_segments
from custseg.scoring.score import (
    ASSIGNMENTS_CSV,
    RunInfo,
    add_predictions,
    customer_hashes,
    score_chunk,
)
from custseg.scoring.stats_json import dumps, dumps_predictions, loads, loads_predictions

PARTS_PER_RANGE = 100
"""Clean part numbers per range: range i writes parts i*100 .. i*100+99."""


class FanoutError(RuntimeError):
    """A step found what it cannot publish (the message names the dataset and the item)."""


def staging(job: dict[str, Any]) -> str:
    return clean_prefix(job["dataset"], job["run_id"]) + "_fanout/"


def _kind(arrow_type: pa.DataType) -> ColumnKind:
    if pa.types.is_boolean(arrow_type):
        return ColumnKind.BOOLEAN
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return ColumnKind.NUMBER
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return ColumnKind.TIMESTAMP
    return ColumnKind.TEXT


# ---------------------------------------------------------------------------- ingest
def split(
    store: ObjectStore, settings: Settings, job: dict[str, Any], target_bytes: int
) -> dict[str, Any]:
    """Cut the upload into ranges of about ``target_bytes`` (the items file of the maps)
    and decide the upload's contract, which every range is read with."""
    bucket, key = job["bucket"], job["key"]
    plan = plan_ranges(upload_reader(store, job), int(job["size"]), target_bytes, name=key)
    contract = upload_contract(store, settings, job, upload_head(store, job))
    prefix = staging(job)
    store.put_bytes(bucket, prefix + "header.csv", plan.header)
    store.put_bytes(bucket, prefix + CONTRACT_JSON, contract_json(contract).encode())
    items = [{**job, "range": r.to_dict()} for r in plan.ranges]
    store.put_json(bucket, prefix + "ranges.json", items)
    return {"items_key": prefix + "ranges.json", "ranges": len(items), "records": plan.records}


def upload_contract(
    store: ObjectStore, settings: Settings, job: dict[str, Any], head: bytes
) -> Contract:
    """The contract the single path reads the upload with, decided on its ``head`` (the
    header and at least the records inference samples): the dataset's own contract when
    it has one, else one of its earlier uploads' that names every header, else inferred
    (:func:`custseg.ingest.pipeline.decide_contract`). A head the single path rejects
    before reading rows is a :class:`FanoutError` with the same message."""
    given = _load_dataset_contract(store, settings, job["dataset"])
    with tempfile.TemporaryDirectory() as tmp_name:
        _, contract, errors = contract_on_head(store, settings, job, head, given, Path(tmp_name))
    if errors:
        raise FanoutError(f"{errors[0]['message']} (nothing published)")
    return contract


def contract_json(contract: Contract) -> str:
    """``contract.json`` as the single path writes it."""
    return json.dumps(contract.model_dump(mode="json"), indent=2)


def _ingest_range_file(
    store: ObjectStore,
    settings: Settings,
    item: dict[str, Any],
    tmp: Path,
    ranged: RangeIngest,
) -> IngestResult:
    """Ingest one range (the header then its bytes) in ``tmp``; a rejected range is an
    error naming its records."""
    job, rng = item, ByteRange.from_dict(item["range"])
    bucket, prefix = job["bucket"], staging(job)
    # the upload's contract as given, so no column is inferred again from the range
    contract = _staged_contract(store, job).model_copy(update={"strict": True})
    header = store.get_bytes(bucket, prefix + "header.csv") or b""
    body = upload_reader(store, job)(rng.start, rng.end)
    local = tmp / job["key"].rsplit("/", 1)[-1]
    local.write_bytes(header + body)
    records = f"records {rng.first_record + 1}-{rng.first_record + rng.records}"
    result = ingest_file(
        local,
        tmp / "out",
        source_name=f"{job['key']} ({records})",
        dataset=job["dataset"],
        run_id=job["run_id"],
        contract=contract,
        chunk_rows=settings.chunk_rows,
        upload_time=dt.datetime.fromisoformat(job["run_ts"]),
        future_tolerance=settings.future_tolerance,
        date_floor=settings.date_floor,
        limits=settings.read_limits,
        ranged=ranged,
    )
    if result.status != "accepted" or result.clean_path is None:
        raise FanoutError(f"{job['key']}: range {rng.index} ({records}) was rejected")
    return result


def profile_range(
    store: ObjectStore, settings: Settings, item: dict[str, Any], workdir: Path | None = None
) -> dict[str, Any]:
    """Read one range for its cleaning statistics (before they are finalised) and the
    hashes of its kept rows (:mod:`custseg.fanout.duplicates`); its clean output is
    dropped (:mod:`custseg.fanout.profile`). An item of the second profile map
    (``again``) is read without its rows that copy an earlier range's."""
    rng = ByteRange.from_dict(item["range"])
    bucket, prefix = item["bucket"], staging(item)
    again = bool(item.get("again"))  # profiled again without the copies of other ranges
    ranged = RangeIngest(
        row_offset=rng.first_record,
        duplicate_rows=_duplicate_rows(store, item) if again else None,
        hash_rows=not again,
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp_name:
        _ingest_range_file(store, settings, item, Path(tmp_name), ranged)
    if ranged.profile is None:
        raise FanoutError(f"{item['key']}: range {rng.index} left no statistics")
    stats, sample = ranged.profile
    if ranged.hashes is not None:
        key = f"{prefix}hashes/{rng.index:05d}.parquet"
        store.put_bytes(bucket, key, hashes_bytes(rng.index, ranged.hashes))
    store.put_json(bucket, f"{prefix}profiles/{rng.index:05d}.json", profile.profile_doc(stats))
    store.put_bytes(
        bucket, f"{prefix}profiles/{rng.index:05d}.parquet", profile.sample_bytes(sample)
    )
    return {"index": rng.index}


DUPLICATES_JSON = "duplicates.json"
"""Staging file naming the UNLOAD folder of the rows that copy an earlier range's and the
ranges that hold some (:func:`find_duplicates`)."""
PROFILE_AGAIN_JSON = "profile_again.json"
"""Staging file: the items of the second profile map (the ranges holding copies)."""


def find_duplicates(
    store: ObjectStore, engine: QueryEngine, job: dict[str, Any], ranges: int
) -> dict[str, Any]:
    """Find the rows that copy a row of an earlier range (Athena queries over every
    range's hashes, :mod:`custseg.fanout.duplicates`): the ranges holding some, and their
    row numbers unloaded by folder; those ranges are the items of the second profile map."""
    bucket, prefix = job["bucket"], staging(job)
    table = run_table(job["run_id"], HASHES_TABLE)
    folder = f"{prefix}duplicates/{uuid.uuid4().hex[:12]}/"  # UNLOAD needs an empty folder
    engine.register([(bucket, f"{prefix}hashes/{i:05d}.parquet") for i in range(ranges)], table)
    try:
        held = [int(row[0]) for row in engine.query(parts_with_copies_select(table))]
        if held:
            select = duplicates_select(table, BUCKET_COLUMN)
            engine.run(unload_sql(select, f"s3://{bucket}/{folder}"))
    finally:
        engine.run(drop_table_sql(table))
    items: list[dict[str, Any]] = json.loads(
        store.get_bytes(bucket, prefix + "ranges.json") or b"[]"
    )
    again = [{**item, "again": True} for item in items if item["range"]["index"] in held]
    store.put_json(bucket, prefix + DUPLICATES_JSON, {"folder": folder, "ranges": held})
    store.put_json(bucket, prefix + PROFILE_AGAIN_JSON, again)
    return {"again": bool(again), "ranges": len(again), "items_key": prefix + PROFILE_AGAIN_JSON}


def _unloaded(store: ObjectStore, bucket: str, prefix: str) -> dict[int, list[str]]:
    """The files of an UNLOAD partitioned by bucket under ``prefix``, by bucket number."""
    by_bucket: dict[int, list[str]] = {}
    for key in store.list_keys(bucket, prefix):
        folder = key[len(prefix) :].split("/", 1)[0]
        if folder.startswith(f"{BUCKET_COLUMN}="):
            by_bucket.setdefault(int(folder.split("=", 1)[1]), []).append(key)
    return by_bucket


def _duplicate_rows(store: ObjectStore, item: dict[str, Any]) -> np.ndarray | None:
    """The rows of ``item``'s range that copy an earlier range's (None before
    :func:`find_duplicates` ran, or when it found none in this range)."""
    bucket, index = item["bucket"], item["range"]["index"]
    doc, _ = store.get_json(bucket, staging(item) + DUPLICATES_JSON)
    if doc is None or index not in doc["ranges"]:
        return None
    folder = f"{doc['folder']}{BUCKET_COLUMN}={index % FOLDERS}/"
    files = [store.get_bytes(bucket, key) or b"" for key in store.list_keys(bucket, folder)]
    return duplicate_lines(files, index)


def merge_profiles(store: ObjectStore, job: dict[str, Any], ranges: int) -> dict[str, Any]:
    """Merge the ranges' statistics into the whole upload's cleaning statistics."""
    bucket, prefix = job["bucket"], staging(job)
    contract = _staged_contract(store, job)

    def profiles() -> Any:
        for i in range(ranges):
            doc, _ = store.get_json(bucket, f"{prefix}profiles/{i:05d}.json")
            data = store.get_bytes(bucket, f"{prefix}profiles/{i:05d}.parquet")
            if doc is None or data is None:
                raise FanoutError(f"{job['key']}: range {i} wrote no statistics; nothing published")
            yield doc, profile.sample_from_bytes(data)

    store.put_json(bucket, prefix + "cleaning.json", profile.merge(profiles(), contract))
    return {"ranges": ranges}


def _staged_contract(store: ObjectStore, job: dict[str, Any]) -> Contract:
    data = store.get_bytes(job["bucket"], staging(job) + CONTRACT_JSON)
    if data is None:
        raise FanoutError(f"{job['key']}: no contract (the split step did not run)")
    return Contract.model_validate_json(data)


def ingest_range(
    store: ObjectStore, settings: Settings, item: dict[str, Any], workdir: Path | None = None
) -> dict[str, Any]:
    """Clean one range with the whole upload's cleaning statistics into clean parts of the
    job's run (row numbers are the upload's)."""
    job, rng = item, ByteRange.from_dict(item["range"])
    bucket, prefix = job["bucket"], staging(job)
    dataset, run_id = job["dataset"], job["run_id"]
    doc, _ = store.get_json(bucket, prefix + "cleaning.json")
    if doc is None:
        raise FanoutError(f"{job['key']}: no cleaning statistics (the profile step did not run)")
    ranged = RangeIngest(
        row_offset=rng.first_record,
        cleaning=profile.cleaning(doc, _staged_contract(store, job)),
        duplicate_rows=_duplicate_rows(store, item),
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp_name:
        result = _ingest_range_file(store, settings, item, Path(tmp_name), ranged)
        report = result.report.to_dict()
        files = []
        assert result.clean_path is not None
        parts = sorted(result.clean_path.glob("*.parquet")) or [result.clean_path]
        for j, part in enumerate(parts):
            name = f"{CLEAN_DATA_DIR}/{clean_part_name(rng.index * PARTS_PER_RANGE + j)}"
            rows = pq.ParquetFile(str(part)).metadata.num_rows
            files.append(
                upload_run_file(
                    store, bucket, clean_prefix(dataset, run_id), RunFile(name, part, rows)
                )
            )
        if result.rejected_rows_path is not None:
            store.upload(
                bucket,
                f"{rejected_prefix(dataset, run_id)}ranges/{rng.index:05d}/rejected_rows.csv",
                result.rejected_rows_path,
            )
    out = {
        "index": rng.index,
        "records": rng.records,
        "rows_read": int(report.get("rows_read", 0)),
        "rows_kept": int(report.get("rows_kept", 0)),
        "rows_rejected": int(report.get("rows_rejected", 0)),
        **{k: report.get(k) for k in MERGED_COUNTS},
        "files": files,
        "contract_kind": result.contract.kind,
    }
    store.put_json(bucket, f"{prefix}ranges/{rng.index:05d}.json", out)
    return {"index": rng.index, "rows_kept": out["rows_kept"]}


MERGED_COUNTS = (
    "rows_invalid",
    "rows_duplicate",
    "rows_excluded",
    "rejected_by_reason",
    "duplicates",
)
"""The counts of each range's quality report that ``commit_ingest`` adds up."""


def merge_counts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The ranges' rejection counts added up, as one quality report holds them: rows
    invalid, duplicate and excluded, rows per rejection reason and duplicates per kind
    (the data-loss reason of the verdict names the largest reason)."""
    out: dict[str, Any] = {}
    for name in MERGED_COUNTS:
        values = [r[name] for r in results if r.get(name) is not None]
        if values and isinstance(values[0], dict):
            total: Counter[str] = Counter()
            for value in values:
                total.update({str(k): int(n) for k, n in value.items()})
            out[name] = dict(sorted(total.items()))
        elif values:
            out[name] = sum(int(v) for v in values)
    return out


def commit_ingest(store: ObjectStore, job: dict[str, Any], ranges: int) -> dict[str, Any]:
    """Check that every range wrote its result and that the rows add up, then commit the
    clean run (manifest last) and register it in the dataset state."""
    bucket, prefix = job["bucket"], staging(job)
    results = [store.get_json(bucket, f"{prefix}ranges/{i:05d}.json")[0] for i in range(ranges)]
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise FanoutError(f"{job['key']}: ranges {missing[:10]} wrote no result; nothing published")
    done = [r for r in results if r is not None]
    bad = [r["index"] for r in done if r["rows_read"] != r["rows_kept"] + r["rows_rejected"]]
    if bad:
        raise FanoutError(f"{job['key']}: ranges {bad[:10]} do not add up; nothing published")
    totals = {k: sum(int(r[k]) for r in done) for k in ("rows_read", "rows_kept", "rows_rejected")}
    contract_doc = _staged_contract(store, job)
    with tempfile.TemporaryDirectory() as tmp_name:
        quality = Path(tmp_name) / "quality.json"
        merged = merge_counts(done)
        quality.write_text(json.dumps({"status": "accepted", **totals, **merged, "ranges": ranges}))
        contract = Path(tmp_name) / "contract.json"
        contract.write_text(contract_json(contract_doc), encoding="utf-8")
        contract_y = Path(tmp_name) / "contract.yaml"
        contract_y.write_text(contract_yaml(contract_doc), encoding="utf-8")
        started: dict[str, Future[dict[str, Any]]] = {}
        part_files = []
        for entry in (f for r in done for f in r["files"]):
            done_future: Future[dict[str, Any]] = Future()
            done_future.set_result(entry)
            started[entry["name"]] = done_future
            part_files.append(RunFile(entry["name"], quality, entry.get("rows")))
        manifest, _ = commit_run(
            store,
            bucket,
            clean_prefix(job["dataset"], job["run_id"]),
            [
                *part_files,
                RunFile("quality.json", quality),
                RunFile("contract.json", contract),
                RunFile("contract.yaml", contract_y),
            ],
            {
                "kind": "clean",
                "dataset": job["dataset"],
                "run_id": job["run_id"],
                "run_ts": job["run_ts"],
                "contract_kind": done[0]["contract_kind"],
                "as_of": job.get("as_of"),
                "rows": totals["rows_kept"],
                "source": {
                    "bucket": bucket,
                    "key": job["key"],
                    "version_id": job.get("version_id"),
                },
                "mode": job.get("mode") or APPEND,
                "fanout": {"ranges": ranges},
            },
            started=started,
        )
    _publish_clean_run(store, bucket, job["dataset"], manifest)
    return {"manifest_key": manifest["prefix"] + MANIFEST, "rows": totals["rows_kept"]}


# ---------------------------------------------------------------------------- features
def _state_files(
    store: ObjectStore, settings: Settings, dataset: str
) -> tuple[list[str], str, str]:
    """(the clean part keys of the state's order logs, the state digest, the newest part's
    prefix)."""
    state, _ = load_state(store, settings.data_bucket, dataset)
    parts = state.parts_of("transactions") if state is not None else []
    if state is None or not parts:
        raise FanoutError(f"dataset {dataset}: the fanned-out path scores order logs; none found")
    keys = [p.prefix + f.name for p in parts for f in p.files]
    return keys, state.digest("transactions"), parts[-1].prefix


def plan_features(
    store: ObjectStore, settings: Settings, engine: QueryEngine, job: dict[str, Any]
) -> dict[str, Any]:
    """The Athena UNLOAD of the state's features (bucketed), with what the score steps
    need to read them back."""
    bucket = settings.data_bucket
    keys, digest, newest = _state_files(store, settings, job["dataset"])
    table = run_table(job["run_id"])
    engine.register([(bucket, k) for k in keys], table)
    contract = Contract.model_validate_json(
        store.get_bytes(bucket, newest + "contract.json") or b"{}"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        first = store.download(bucket, keys[0], Path(tmp_name) / "first.parquet")
        schema = pq.read_schema(str(first))
    columns = {f.name: _kind(f.type) for f in schema}
    as_of, reason = _as_of(engine, table, contract, columns, job)
    query = feature_query(contract, columns, as_of, source=table)
    window = _holdout_window(engine, table, contract, columns, as_of)
    select = _features_select(query, table, contract, columns, window, int(job["buckets"]))
    # Athena's UNLOAD refuses a location holding objects: each plan (a rerun of a failed
    # execution included) unloads to a folder of its own, which the next steps read
    features = f"{staging(job)}features/{uuid.uuid4().hex[:12]}/"
    location = f"s3://{bucket}/{features}"
    meta = {
        "features_prefix": features,
        "numeric": query.numeric,
        "categorical": query.categorical,
        "extras": query.extras,
        "value": query.value,
        "kind": query.kind,
        "as_of": as_of.isoformat(),
        "as_of_reason": reason,
        "value_name": query.value_name,
        "history": query.history,
        "holdout": None if window is None else _window_doc(window),
        "digest": digest,
        "contract_prefix": newest,
    }
    store.put_json(bucket, staging(job) + "features.json", meta)
    has_champion = champion(store, settings.artifact_bucket, model_name_for(job["dataset"]))
    return {"query": unload_sql(select, location), "champion": has_champion is not None}


def _holdout_window(
    engine: QueryEngine,
    table: str,
    contract: Contract,
    columns: dict[str, ColumnKind],
    as_of: dt.date,
) -> HoldoutWindow | None:
    """The holdout check's split of the order history (its first purchase day from
    Athena); ``None`` for a customer table."""
    if not contract.is_transactions:
        return None
    sql = first_purchase_query(contract, columns, as_of, source=table)
    rows = engine.query(to_athena(sql))
    value = rows[0][0] if rows else None  # Athena gives text, the local engine a date
    first = None if value is None else dt.date.fromisoformat(str(value)[:10])
    return holdout_window(first, as_of)


def _window_doc(window: HoldoutWindow) -> dict[str, Any]:
    return {
        "first": None if window.first is None else window.first.isoformat(),
        "cutoff": None if window.cutoff is None else window.cutoff.isoformat(),
        "days": window.days,
        "reason": window.reason,
    }


def _window_of(doc: dict[str, Any]) -> HoldoutWindow:
    def day(value: str | None) -> dt.date | None:
        return None if value is None else dt.date.fromisoformat(value)

    return HoldoutWindow(day(doc["first"]), day(doc["cutoff"]), int(doc["days"]), doc["reason"])


def _features_select(
    query: FeatureQuery,
    table: str,
    contract: Contract,
    columns: dict[str, ColumnKind],
    window: HoldoutWindow | None,
    buckets: int,
) -> str:
    """The UNLOAD's SELECT: the features with their bucket and, when the order history is
    long enough for the holdout check, each customer's holdout history
    (:data:`HOLDOUT_HISTORY_COLUMNS`, which the score steps group per bucket)."""
    sql = query.sql
    if window is not None and window.cutoff is not None:
        holdout = holdout_query(
            contract, columns, window.cutoff, query.as_of, source=table, per_customer=True
        )
        names = ", ".join(f"h.{quote(n)}" for n in HOLDOUT_HISTORY_COLUMNS)
        sql = (
            f"SELECT f.*, {names} FROM (\n{sql}\n) AS f\n"
            f"LEFT JOIN (\n{holdout}\n) AS h ON h.customer_id = f.customer_id"
        )
    bucket = bucket_expression("f.customer_id", buckets)
    return f"SELECT f.*, {bucket} AS {BUCKET_COLUMN} FROM ({to_athena(sql)}) AS f"


def _as_of(
    engine: QueryEngine,
    table: str,
    contract: Contract,
    columns: dict[str, ColumnKind],
    job: dict[str, Any],
) -> tuple[dt.date, str]:
    if job.get("as_of"):
        return dt.date.fromisoformat(job["as_of"]), "given at upload (the object's as-of metadata)"
    names = [c.name for c in contract.by_role(Role.EVENT_TIME) if c.name in columns]
    name = names[0] if names else "event_time"
    latest = engine.query(f"SELECT MAX({quote(name)}) FROM {table}")[0][0]
    frame = pd.DataFrame({name: pd.to_datetime(pd.Series([latest] if latest else []))})
    return default_as_of_reason(frame, contract)


def _query_of(meta: dict[str, Any]) -> FeatureQuery:
    return FeatureQuery(
        sql="",
        numeric=list(meta["numeric"]),
        categorical=list(meta["categorical"]),
        extras=list(meta["extras"]),
        value=meta["value"],
        kind=meta["kind"],
        as_of=dt.date.fromisoformat(meta["as_of"]),
        value_name=meta["value_name"],
        history=list(meta.get("history") or []),
    )


def list_buckets(
    store: ObjectStore, settings: Settings, engine: QueryEngine, job: dict[str, Any]
) -> dict[str, Any]:
    """The feature buckets the UNLOAD wrote: the items of the score map. The run's table
    (:func:`~custseg.aws.athena.run_table`) is dropped: every query of it has run."""
    meta, _ = store.get_json(settings.data_bucket, staging(job) + "features.json")
    if meta is None:
        raise FanoutError(f"dataset {job['dataset']}: no feature plan (PlanFeatures did not run)")
    engine.run(drop_table_sql(run_table(job["run_id"])))
    by_bucket = _unloaded(store, settings.data_bucket, str(meta["features_prefix"]))
    items = [
        {
            **job,
            "bucket": b,
            "files": sorted(by_bucket[b]),
            "customers": _rows(store, settings, by_bucket[b]),
        }
        for b in sorted(by_bucket)
    ]
    store.put_json(settings.data_bucket, staging(job) + "buckets.json", items)
    _plan_previous(store, settings, job)
    return {"items_key": staging(job) + "buckets.json", "buckets": len(items)}


PREVIOUS_JSON = "previous.json"
"""Staging file naming the previous run's assignment parts (for stability)."""


def _plan_previous(store: ObjectStore, settings: Settings, job: dict[str, Any]) -> None:
    """Name, once per run, the assignment parts of the run ``latest.json`` names: the run
    this one is compared with for stability (every bucket and the reduce read the same;
    a rerun keeps it, even once this run moved ``latest.json``)."""
    key = staging(job) + PREVIOUS_JSON
    if store.get_json(settings.data_bucket, key)[0] is not None:
        return
    keys = previous_assignment_keys(store, settings.results_bucket, job["dataset"], "")
    store.put_json(settings.data_bucket, key, {"keys": keys})


def _previous_keys(store: ObjectStore, settings: Settings, job: dict[str, Any]) -> list[str]:
    doc, _ = store.get_json(settings.data_bucket, staging(job) + PREVIOUS_JSON)
    return [str(k) for k in (doc or {}).get("keys", [])]


def _bucket_previous(
    store: ObjectStore, settings: Settings, job: dict[str, Any], hashes: np.ndarray, tmp: Path
) -> PreviousAssignments | None:
    """The previous run's segments of the bucket's customers (``hashes``), read part by
    part (only those customers held); None without a previous run."""
    keys = _previous_keys(store, settings, job)
    previous: PreviousAssignments | None = None
    keep = np.unique(hashes)
    for key in keys:
        path = store.download(settings.results_bucket, key, tmp / "previous.parquet")
        part = PreviousAssignments.load(path, keep=keep)
        path.unlink()
        previous = part if previous is None else previous.merge(part)
    return previous


def _previous_summary(
    store: ObjectStore, settings: Settings, job: dict[str, Any], tmp: Path
) -> PreviousSummary | None:
    """The whole previous run's summary (customers, sizes, names, model version), read
    part by part; None without a previous run."""
    summary: PreviousSummary | None = None
    for key in _previous_keys(store, settings, job):
        path = store.download(settings.results_bucket, key, tmp / "previous.parquet")
        part = PreviousSummary.load(path)
        path.unlink()
        summary = part if summary is None else summary.merge(part)
    return summary


def _rows(store: ObjectStore, settings: Settings, keys: list[str]) -> int:
    """Rows of Parquet objects, from their footers (two small ranged reads each)."""
    total = 0
    for key in keys:
        with tempfile.TemporaryDirectory() as tmp_name:
            path = store.download(settings.data_bucket, key, Path(tmp_name) / "f.parquet")
            total += pq.ParquetFile(str(path)).metadata.num_rows
    return total


def _bucket_features(
    store: ObjectStore, settings: Settings, files: list[str], meta: dict[str, Any], tmp: Path
) -> Features:
    return features_from_table(_bucket_table(store, settings, files, tmp), _query_of(meta))


def _bucket_table(store: ObjectStore, settings: Settings, files: list[str], tmp: Path) -> pa.Table:
    """The rows of a bucket's feature files, in customer order (without the bucket)."""
    tables = []
    for i, key in enumerate(files):
        path = store.download(settings.data_bucket, key, tmp / f"{i}.parquet")
        tables.append(pq.read_table(str(path)))
    table = pa.concat_tables(tables, promote_options="default") if tables else None
    if table is None or table.num_rows == 0:
        raise FanoutError(f"feature files {files[:3]} hold no customer")
    if BUCKET_COLUMN in table.column_names:
        table = table.drop_columns([BUCKET_COLUMN])
    return table.sort_by("customer_id")


def train_sample(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    job: dict[str, Any],
    keys: Keys | None = None,
) -> dict[str, Any]:
    """Fit and promote a model on the first feature buckets: a hash sample of at most
    about ``settings.train_max_customers`` customers (all buckets when that bound is 0)."""
    meta, _ = store.get_json(settings.data_bucket, staging(job) + "features.json")
    items: Any = store.get_json(settings.data_bucket, staging(job) + "buckets.json")[0]
    if meta is None or not items:
        raise FanoutError(f"dataset {job['dataset']}: no feature buckets to train on")
    limit = settings.train_max_customers or math.inf
    files: list[str] = []
    customers = 0
    for item in list(items):  # buckets are hash ranges: the first ones are a hash sample
        files += item["files"]
        customers += int(item.get("customers") or 0)
        if customers >= limit:
            break
    contract = Contract.model_validate_json(
        store.get_bytes(settings.data_bucket, meta["contract_prefix"] + "contract.json") or b"{}"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        features = _bucket_features(store, settings, files, meta, Path(tmp_name))
    outcome = _train_and_register(
        store,
        settings,
        bus,
        features=features,
        contract=contract,
        dataset=job["dataset"],
        k=None,
        promote=True,
        source={"fanout": job["run_id"], "buckets": len(files)},
        clean_manifest_key=None,
        keys=keys or Keys.of(settings),
    )
    return {"status": outcome.status, "version": getattr(outcome, "version", "")}


# ---------------------------------------------------------------------------- score
def _run_of(
    store: ObjectStore, settings: Settings, job: dict[str, Any], verifier: Any
) -> tuple[SegmentModel, dict[str, Any], str, str]:
    meta, _ = store.get_json(settings.data_bucket, staging(job) + "features.json")
    pointer = champion(store, settings.artifact_bucket, model_name_for(job["dataset"]))
    if meta is None or pointer is None:
        raise FanoutError(f"dataset {job['dataset']}: no features or no champion to score with")
    model = load_version(
        store,
        settings.artifact_bucket,
        model_name_for(job["dataset"]),
        pointer["version"],
        verifier,
    )
    run_ts = dt.datetime.fromisoformat(job["run_ts"]).astimezone(dt.UTC)
    run_id = run_id_for(run_ts, f"state:{meta['digest']}", model.version, meta["as_of"])
    return model, meta, run_id, results_prefix(job["dataset"], run_ts.date(), run_id)


def _new_stats(
    model: SegmentModel, meta: dict[str, Any], contract: Contract, track_previous: bool = False
) -> ScoreStats:
    training = model.metadata.get("training", {}) or {}
    edges = {
        n: list(h["edges"])
        for n, h in (training.get("baseline_histograms") or {}).items()
        if n in model.schema.numeric
    }
    return ScoreStats(
        k=model.k,
        numeric=list(model.schema.numeric),
        categorical=list(model.schema.categorical),
        outcomes=[c.name for c in contract.by_role(Role.OUTCOME)],
        baseline_edges=edges,
        track_previous=track_previous,
    )


def score_bucket(
    store: ObjectStore, settings: Settings, item: dict[str, Any], verifier: Any
) -> dict[str, Any]:
    """Score one feature bucket: its assignments part (with the model's prediction
    columns), its statistics and its prediction statistics (JSON)."""
    model, meta, run_id, prefix = _run_of(store, settings, item, verifier)
    contract = Contract.model_validate_json(
        store.get_bytes(settings.data_bucket, meta["contract_prefix"] + "contract.json") or b"{}"
    )
    number = int(item["bucket"])
    predicted = prediction_columns(model)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = _bucket_table(store, settings, item["files"], tmp)
        features = with_schema(features_from_table(rows, _query_of(meta)), model.schema)
        features.codes = {
            c: CategoryCodes.from_values(features.frame[c]) for c in features.categorical
        }
        scored = score_chunk(
            features,
            model,
            label_edges=model.label_edges,
            predicted=predicted,
            run_id=run_id,
            as_of=dt.date.fromisoformat(meta["as_of"]),
            segment_names=model.segment_names(),
        )
        entry = _store_assignments(store, settings, item, prefix, scored.table, predicted, tmp)
        hashes = customer_hashes(features.frame.index)
        previous = _bucket_previous(store, settings, item, hashes, tmp)
        stats = scored.fold_into(
            _new_stats(model, meta, contract, previous is not None),
            features,
            hashes,
            None if previous is None else previous.lookup(hashes),
        )
    folded = _bucket_predictions(
        model, features.frame.index, scored.segment, scored.value, scored.predictions, rows
    )
    stage = staging(item)
    store.put_bytes(settings.data_bucket, f"{stage}stats/{number:05d}.json", dumps(stats).encode())
    store.put_bytes(
        settings.data_bucket,
        f"{stage}predictions/{number:05d}.json",
        dumps_predictions(folded).encode(),
    )
    store.put_json(settings.data_bucket, f"{stage}assignments/{number:05d}.json", entry)
    return {"bucket": item["bucket"], "rows": scored.table.num_rows}


def _store_assignments(
    store: ObjectStore,
    settings: Settings,
    item: dict[str, Any],
    prefix: str,
    table: pa.Table,
    predicted: list[str],
    tmp: Path,
) -> dict[str, Any]:
    """Write a bucket's assignments: its Parquet part of the run (its manifest entry) and
    its CSV part (staging, which ``reduce`` puts together)."""
    number = int(item["bucket"])
    part, csv_part = tmp / "part.parquet", tmp / "part.csv"
    with AssignmentWriter(part, csv_part, predicted) as writer:
        writer.write(table)
    name = f"assignments/part-{number:05d}.parquet"
    entry = upload_run_file(
        store, settings.results_bucket, prefix, RunFile(name, part, table.num_rows)
    )
    store.upload(settings.data_bucket, f"{staging(item)}csv/{number:05d}.csv", csv_part)
    return entry


def _bucket_predictions(
    model: SegmentModel,
    ids: pd.Index,
    segment: np.ndarray,
    value: np.ndarray | None,
    extra: dict[str, np.ndarray],
    rows: pa.Table,
) -> BucketPredictions:
    """A bucket's prediction statistics, as the single path folds them chunk by chunk:
    propensities and value at risk, customer-value totals per segment, and the holdout
    check's groups of the bucket's customers."""
    predicted = list(extra)
    stats = PredictionStats(propensity_columns(model), risk_measure(model.metadata, predicted))
    if predicted:
        stats.update(ids, segment, value, extra)
    totals = None
    if model.prediction(CLV) is not None:
        totals = ValueTotals()
        totals.update(segment, extra, value)
    groups = HoldoutGroups()
    if all(n in rows.column_names for n in HOLDOUT_HISTORY_COLUMNS):
        groups.update(
            pd.DataFrame(
                {n: rows.column(n).cast(pa.float64()).to_numpy() for n in HOLDOUT_HISTORY_COLUMNS}
            )
        )
    return BucketPredictions(stats, totals, groups)


def reduce(
    store: ObjectStore,
    settings: Settings,
    job: dict[str, Any],
    buckets: int,
    verifier: Any,
    bus: EventBus | None = None,
) -> dict[str, Any]:
    """Merge every bucket's statistics into the run's metrics, profiles, value at risk
    and report; commit the run (the manifest after every file) and move ``latest.json``
    forward."""
    model, meta, run_id, prefix = _run_of(store, settings, job, verifier)
    if committed_manifest(store, settings.results_bucket, prefix) is not None:
        return {"status": "duplicate", "run_id": run_id}
    bucket = settings.data_bucket
    contract = Contract.model_validate_json(
        store.get_bytes(bucket, meta["contract_prefix"] + "contract.json") or b"{}"
    )
    stats, folded, entries = _merged_buckets(store, settings, job, model, meta, contract, buckets)
    with tempfile.TemporaryDirectory() as tmp_name:
        previous = _previous_summary(store, settings, job, Path(tmp_name))
    as_of = dt.date.fromisoformat(meta["as_of"])
    run_ts = dt.datetime.fromisoformat(job["run_ts"]).astimezone(dt.UTC)
    run = RunInfo(
        dataset=job["dataset"],
        run_id=run_id,
        run_date=run_ts.date(),
        as_of=as_of,
        source={"bucket": bucket, "input": {"key": job["key"]}, "trigger": "fanout"},
    )
    rows_sample, x = quality_sample(stats, model)
    seg_sample = (
        rows_sample["segment_id"].to_numpy(dtype="int64")
        if len(rows_sample)
        else np.empty(0, dtype="int64")
    )
    projection, variance = pca_projection(x, seg_sample)
    quality = json.loads(store.get_bytes(bucket, meta["contract_prefix"] + "quality.json") or b"{}")
    thresholds = Thresholds.from_mapping(settings.thresholds)
    metrics = build_metrics(
        stats,
        model,
        run=run,
        as_of=as_of,
        as_of_reason=meta["as_of_reason"],
        quality=quality,
        previous=previous,
        thresholds=thresholds,
        duplicates_dropped=0,
        sample_x=x,
        sample_segments=seg_sample,
        pca_variance=variance,
        predictions=_run_predictions(model, meta, contract, folded, thresholds),
    )
    profiles = rank_segments(
        build_profiles(
            stats, model, contract=contract, run=run, as_of=as_of, value_totals=folded.value_totals
        ),
        metrics,
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        extra: dict[str, Path] = {}
        if prediction_columns(model):
            add_predictions(
                folded.stats, model, metrics, profiles, extra, Path(tmp_name) / AT_RISK_CSV
            )
        from custseg.report.html import render_report

        html = render_report(
            profiles, metrics, sample=projection, title=f"Customer segments: {job['dataset']}"
        )
        at_risk = [
            RunFile(RESULT_FILES["value_at_risk"], path, metrics["value_at_risk"]["top_rows"])
            for path in extra.values()
        ]
        return _commit_results(
            store,
            settings,
            job,
            prefix,
            run_id,
            model,
            entries,
            metrics,
            profiles,
            quality,
            html,
            as_of,
            at_risk,
        )


def _merged_buckets(
    store: ObjectStore,
    settings: Settings,
    job: dict[str, Any],
    model: SegmentModel,
    meta: dict[str, Any],
    contract: Contract,
    buckets: int,
) -> tuple[ScoreStats, BucketPredictions, list[dict[str, Any]]]:
    """Every bucket's statistics and prediction statistics merged, and the manifest
    entries of their assignment parts; a bucket not scored is an error."""
    bucket, stage = settings.data_bucket, staging(job)
    stats = _new_stats(model, meta, contract)
    folded: BucketPredictions | None = None
    entries = []
    listed: Any = store.get_json(bucket, stage + "buckets.json")[0] or []
    if len(listed) != buckets:
        raise FanoutError(
            f"dataset {job['dataset']}: {len(listed)} buckets listed, {buckets} expected"
        )
    for item in listed:
        number = int(item["bucket"])
        text = store.get_bytes(bucket, f"{stage}stats/{number:05d}.json")
        predicted = store.get_bytes(bucket, f"{stage}predictions/{number:05d}.json")
        entry, _ = store.get_json(bucket, f"{stage}assignments/{number:05d}.json")
        if text is None or predicted is None or entry is None:
            raise FanoutError(
                f"dataset {job['dataset']}: bucket {number} was not scored; run not committed"
            )
        stats = stats.merge(loads(text, f"{stage}stats/{number:05d}.json"))
        part = loads_predictions(predicted, f"{stage}predictions/{number:05d}.json")
        folded = part if folded is None else folded.merge(part)
        entries.append(entry)
    if folded is None:
        raise FanoutError(f"dataset {job['dataset']}: no bucket was scored; run not committed")
    return stats, folded, entries


def _run_predictions(
    model: SegmentModel,
    meta: dict[str, Any],
    contract: Contract,
    folded: BucketPredictions,
    thresholds: Thresholds,
) -> dict[str, Any] | None:
    """metrics.json ``predictions`` of the run (the single path's ``clv`` section): the
    model's fitted customer-value parameters and the holdout check on the merged groups;
    ``None`` for a customer table."""
    if not contract.is_transactions:
        return None
    clv = model.prediction(CLV)
    holdout = None
    if clv is not None and meta.get("holdout") is not None:
        window = _window_of(meta["holdout"])
        holdout = window.evaluate(folded.holdout.groups, miss_watch=thresholds.holdout_miss_watch)
    return predictions_metrics(clv, holdout)


def _commit_results(
    store: ObjectStore,
    settings: Settings,
    job: dict[str, Any],
    prefix: str,
    run_id: str,
    model: SegmentModel,
    entries: list[dict[str, Any]],
    metrics: dict[str, Any],
    profiles: dict[str, Any],
    quality: dict[str, Any],
    html: str,
    as_of: dt.date,
    at_risk: list[RunFile],
) -> dict[str, Any]:
    from custseg.jsonsafe import json_safe

    run_ts = dt.datetime.fromisoformat(job["run_ts"]).astimezone(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        docs = {"profiles.json": profiles, "metrics.json": metrics, "quality.json": quality}
        files = []
        for name, doc in docs.items():
            (tmp / name).write_text(
                json.dumps(json_safe(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
            )
            files.append(RunFile(name, tmp / name))
        (tmp / "report.html").write_text(html, encoding="utf-8")
        files.append(RunFile("report.html", tmp / "report.html"))
        rows = sum(int(e.get("rows") or 0) for e in entries)
        csv_path = _assignments_csv(store, settings, job, entries, tmp / ASSIGNMENTS_CSV)
        if csv_path is not None:
            files.append(RunFile(ASSIGNMENTS_CSV, csv_path, rows))
        files += at_risk
        started: dict[str, Future[dict[str, Any]]] = {}
        for entry in entries:
            done: Future[dict[str, Any]] = Future()
            done.set_result(entry)
            started[entry["name"]] = done
        parts = [RunFile(e["name"], tmp / "report.html", e.get("rows")) for e in entries]
        manifest, created = commit_run(
            store,
            settings.results_bucket,
            prefix,
            [*parts, *files],
            {
                "kind": "segments",
                "dataset": job["dataset"],
                "run_id": run_id,
                "run_date": run_ts.date().isoformat(),
                "run_ts": run_ts.isoformat(timespec="seconds"),
                "as_of": as_of.isoformat(),
                "rows": rows,
                "model": {"name": model_name_for(job["dataset"]), "version": model.version},
                "input": {"source": {"bucket": job["bucket"], "key": job["key"]}, "fanout": True},
                "verdict": metrics["verdict"],
                "trigger": "fanout",
            },
            started=started,
        )
    moved = publish_latest(store, settings.results_bucket, manifest, repair=not created)
    return {"status": "committed", "run_id": run_id, "rows": rows, "pointer_moved": moved}


CSV_LIMIT_BYTES = 8 * 1024**3
"""Largest ``assignments.csv`` the reduce step assembles in its 10 GiB of ``/tmp``
(about 90M customers); above it the run has the Parquet parts only (docs/fanout.md)."""


def _assignments_csv(
    store: ObjectStore,
    settings: Settings,
    job: dict[str, Any],
    entries: list[dict[str, Any]],
    path: Path,
) -> Path | None:
    """``assignments.csv``: the buckets' CSV parts one after another (one header), or
    None when it would exceed :data:`CSV_LIMIT_BYTES`."""
    # entries are assignments/part-<bucket>.parquet; the CSV parts csv/<bucket>.csv
    keys = [f"{staging(job)}csv/{Path(e['name']).stem.removeprefix('part-')}.csv" for e in entries]
    sizes = [store.head(settings.data_bucket, k) for k in keys]
    if any(h is None for h in sizes):
        raise FanoutError(
            f"dataset {job['dataset']}: a bucket wrote no CSV part; run not committed"
        )
    if sum(h.size for h in sizes if h is not None) > CSV_LIMIT_BYTES:
        return None
    with path.open("wb") as out:
        for i, key in enumerate(keys):
            part = store.download(settings.data_bucket, key, path.with_suffix(".part"))
            with part.open("rb") as src:
                header = src.readline()
                if i == 0:
                    out.write(header)
                shutil.copyfileobj(src, out)
            part.unlink()
    return path


STEPS: dict[str, Callable[..., dict[str, Any]]] = {}
