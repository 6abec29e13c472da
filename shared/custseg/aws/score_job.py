"""The scoring job: one committed clean run + the champion model -> one committed results run.

Steps: read the clean run's manifest and contract; load the champion (verified, cached
while warm); score in chunks (core: :func:`custseg.scoring.score.score_dataset`); publish every
file under the run prefix, the manifest last; move ``latest.json`` forward; refresh
``current/``; announce the run, and a retrain recommendation when the verdict says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custseg.aws.bus import (
    RETRAIN_RECOMMENDED,
    RUN_COMMITTED,
    TRAINING_REQUESTED,
    EventBus,
)
from custseg.aws.campaign_job import campaign_flags, measure_new_campaigns, scoring_part
from custseg.aws.registry import champion, load_version
from custseg.aws.runs import (
    RunFile,
    advance_pointer,
    commit_run,
    committed_manifest,
    download_clean_data,
    upload_run_file,
)
from custseg.aws.s3 import ObjectStore
from custseg.aws.settings import Settings
from custseg.aws.signing import KmsVerifier
from custseg.aws.state import download_state, load_state
from custseg.campaigns.offers import annotator
from custseg.dataset.clean_data import clean_files
from custseg.dataset.state import DatasetState, Part, decide
from custseg.failures import describe_error
from custseg.features.combined import COMBINED, CUSTOMERS, ORDERS
from custseg.features.engine import LAMBDA_MEMORY_SHARE, Source, lambda_limits
from custseg.ingest.contracts import Contract
from custseg.layout import (
    MANIFEST,
    OFFERS_FILE,
    RESULT_FILES,
    parse_clean_manifest_key,
    parse_state_key,
    results_current_prefix,
    results_latest_key,
    results_prefix,
    run_id_for,
)
from custseg.model.artifact import ArtifactError, SegmentModel
from custseg.model.signing import Verifier
from custseg.scoring.metrics import Thresholds
from custseg.scoring.score import RunInfo, ScoreResult, score_dataset

log = logging.getLogger(__name__)


@dataclass
class ScoreOutcome:
    status: (
        str  # committed | duplicate | superseded | no_champion | no_data | model_refused | failed
    )
    dataset: str
    run_id: str = ""
    manifest_key: str | None = None
    rows: int = 0
    segments: int = 0
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    drift_max: float = 0.0
    model_version: str = ""
    pointer_moved: bool = False
    seconds: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_name_for(dataset: str) -> str:
    """Each dataset has its own model (its columns are its own)."""
    return dataset


def drift_by_feature(metrics: dict[str, Any]) -> dict[str, float]:
    """PSI per feature (numeric and categorical) from a run's metrics."""
    drift = metrics.get("drift", {})
    out: dict[str, float] = {}
    for group in ("numeric", "categorical"):
        for feature, stats in (drift.get(group) or {}).items():
            psi = stats.get("psi") if isinstance(stats, dict) else None
            if isinstance(psi, int | float):
                out[feature] = float(psi)
    return out


def publish_latest(
    store: ObjectStore, bucket: str, manifest: dict[str, Any], *, repair: bool = False
) -> bool:
    """Move ``latest.json`` to a committed run (only forward; True when it moved), then
    refresh ``current/`` when it moved, or always when ``repair`` (finishing what a
    stopped attempt of the run may have left half done)."""
    dataset, prefix = str(manifest["dataset"]), str(manifest["prefix"])
    pointer = {
        "dataset": dataset,
        "run_id": manifest["run_id"],
        "run_date": manifest["run_date"],
        "run_ts": manifest["run_ts"],
        "as_of": manifest["as_of"],
        "prefix": prefix,
        "manifest_key": prefix + MANIFEST,
        "model_version": manifest["model"]["version"],
        "model_generation": manifest["model"].get("generation", 0),
        "verdict": manifest["verdict"],
    }
    moved = advance_pointer(store, bucket, results_latest_key(dataset), pointer)
    if moved or repair:
        refresh_current(store, bucket, dataset)
    return moved


def refresh_current(store: ObjectStore, bucket: str, dataset: str, attempts: int = 8) -> None:
    """Make ``current/`` a copy of the run ``latest.json`` names: server-side copies of
    that run's committed files, the copy's manifest last.

    The copies run in parallel (largest first); the manifest is written once all
    succeeded. Runs finishing together may copy over each other, so after copying, the
    pointer is read again and the copy redone when it moved meanwhile: the last copy made
    is always of the newest run, and every file in ``current/`` is a committed run file.
    """
    current = results_current_prefix(dataset)
    latest_key = results_latest_key(dataset)
    for _ in range(attempts):
        latest, _ = store.get_json(bucket, latest_key)
        if latest is None:
            return
        manifest, _ = store.get_json(bucket, latest["manifest_key"])
        if manifest is None:
            raise RuntimeError(f"{latest_key} names {latest['manifest_key']}, which is missing")
        store.copy_many(
            bucket,
            [
                (entry["key"], current + entry["name"], entry.get("size"))
                for entry in manifest["files"]
            ],
        )
        store.put_json(bucket, current + MANIFEST, {**manifest, "copied_from": latest["prefix"]})
        again, _ = store.get_json(bucket, latest_key)
        if again is not None and again.get("run_id") == latest["run_id"]:
            return
    raise RuntimeError(f"{latest_key} kept moving while {current} was refreshed")


def _state_parts(state: DatasetState | None, run_id: str, model_kind: str) -> list[Part]:
    """The parts a run reads: the state's parts of the model's kind (of the clean run's
    kind when the state holds none of the model's; a combined model's: the customer
    tables' and the order logs'); none for a run outside the state."""
    if state is None or not state.has(run_id):
        return []
    kinds = (CUSTOMERS, ORDERS) if model_kind == COMBINED else (model_kind,)
    return [p for p in state.parts if p.kind in kinds] or [
        p for p in state.parts if p.run_id == run_id
    ]


def _data_time(clean_manifest: Mapping[str, Any], parts: list[Part]) -> dt.datetime:
    """A run's timestamp: the upload time of the newest data it reads (the clean run's,
    or the newest of the dataset parts it joins), so a run's order is its data's."""
    times = [str(clean_manifest["run_ts"])] + [p.uploaded_at for p in parts]
    return max(dt.datetime.fromisoformat(t).astimezone(dt.UTC) for t in times)


def _split_sources(parts: list[Part]) -> tuple[list[Part], list[Part]]:
    """(the parts scored, the order-log parts joined to them): a combined model's parts
    split into the customer tables and the order logs when both are there."""
    customers = [p for p in parts if p.kind == CUSTOMERS]
    orders = [p for p in parts if p.kind == ORDERS]
    if customers and orders and len(customers) + len(orders) == len(parts):
        return customers, orders
    return parts, []


def _part_input(part: Part) -> dict[str, Any]:
    """What a results manifest says of one part it was built from."""
    return {
        "run_id": part.run_id,
        "kind": part.kind,
        "manifest_key": part.manifest_key,
        "source_key": part.source_key,
        "rows": part.rows,
        "files": [{"name": f.name, "sha256": f.sha256} for f in part.files],
    }


def _download_inputs(
    store: ObjectStore,
    settings: Settings,
    clean_prefix: str,
    clean_manifest: dict[str, Any],
    parts: list[Part],
    tmp: Path,
    name: str = "state",
    share: float = LAMBDA_MEMORY_SHARE,
) -> Path:
    """The clean data to score: the state's parts merged (under ``tmp/<name>``, DuckDB
    taking ``share`` of the function's memory), or the one clean run."""
    if not parts:
        return download_clean_data(
            store, settings.data_bucket, clean_prefix, clean_manifest, tmp / "clean"
        )
    limits = lambda_limits(settings.memory_mb, share=share, tmp=tmp / name)
    return download_state(store, settings.data_bucket, parts, tmp / name, limits=limits)


def run_score_state(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    state_key: str,
    version_id: str | None,
    trigger: str = "state",
    workdir: Path | None = None,
    verifier: Verifier | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ScoreOutcome:
    """Score a dataset whose state advanced (``state_key`` written as ``version_id``).

    Parts registered together make one run: a trigger for an older version than the
    state's is ``superseded`` (the newer one scores every part), and the newest waits
    until the state has been quiet for ``settings.coalesce_seconds``.
    """
    dataset = parse_state_key(state_key)
    body = store.get_bytes(settings.data_bucket, state_key, version_id=version_id)
    if body is None:
        return ScoreOutcome("no_data", dataset, message=f"{state_key} not found")
    triggered = DatasetState.from_dict(json.loads(body))
    quiet = dt.timedelta(seconds=settings.coalesce_seconds)
    state: DatasetState | None = None
    for _ in range(8):  # wait for quiet; each wait ends in a fresh look at the state
        state, _ = load_state(store, settings.data_bucket, dataset)
        if state is None or not state.parts:
            return ScoreOutcome("no_data", dataset, message=f"{state_key} holds no part")
        decision = decide(state, triggered.version, dt.datetime.now(dt.UTC), quiet)
        if not decision.score:
            return ScoreOutcome("superseded", dataset, message=decision.reason)
        if decision.wait_seconds <= 0:
            break
        sleep(decision.wait_seconds)
    assert state is not None
    measured = _measure_campaigns(store, settings, bus, state, workdir)
    start = scoring_part(state)
    if start is None:
        return ScoreOutcome(
            "no_data",
            dataset,
            message=f"{dataset} holds campaign results only: upload its customers first",
        )
    # new campaign effects: a new run, whose personas carry their flags
    run_ts = dt.datetime.fromisoformat(state.parts[-1].uploaded_at) if measured else None
    return run_score(
        store,
        settings,
        bus,
        clean_manifest_key=start.manifest_key,
        trigger=trigger,
        workdir=workdir,
        verifier=verifier,
        state=state,
        run_ts=run_ts,
    )


def _measure_campaigns(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    state: DatasetState,
    workdir: Path | None,
) -> int:
    """Measure the state's new campaign parts (:mod:`custseg.aws.campaign_job`); how many
    campaigns were. A failure is logged and scoring goes on (the parts stay pending)."""
    try:
        return len(measure_new_campaigns(store, settings, bus, state, workdir=workdir))
    except Exception as exc:
        log.warning("campaign effects of %s not measured: %s", state.dataset, describe_error(exc))
        return 0


def previous_assignment_keys(
    store: ObjectStore, bucket: str, dataset: str, run_id: str
) -> list[str]:
    """The assignments Parquet keys of the run ``latest.json`` names (the previous run,
    for stability): a single-function run's one part or a fanned-out run's parts, from its
    manifest; empty when there is none, it is ``run_id`` itself or a part is gone."""
    latest, _ = store.get_json(bucket, results_latest_key(dataset))
    if latest is None or latest.get("run_id") == run_id:
        return []
    manifest = committed_manifest(store, bucket, str(latest["prefix"]))
    keys = [
        str(e["key"])
        for e in (manifest or {}).get("files", [])
        if str(e["name"]).startswith("assignments/") and str(e["name"]).endswith(".parquet")
    ]
    if any(store.head(bucket, key) is None for key in keys):
        return []
    return keys


def _read_inputs(
    store: ObjectStore,
    settings: Settings,
    clean_manifest_key: str,
    clean_manifest: dict[str, Any],
    run_id: str,
    tmp: Path,
    parts: list[Part],
    order_parts: list[Part] | None = None,
) -> tuple[Path, Contract, dict[str, Any] | None, Path | None, Source | None]:
    """The run's inputs, downloaded into ``tmp``: the clean data (the state's ``parts``
    merged, or the one clean run), its contract and quality report (the newest part's),
    the assignments of the previous run (for stability; None: none) and the order log
    joined to a customer table (``order_parts`` merged, with the newest one's contract;
    None: none)."""
    dataset, _ = parse_clean_manifest_key(clean_manifest_key)
    clean_prefix = clean_manifest_key[: -len(MANIFEST)]

    def previous_assignments() -> Path | None:
        """The assignments of the run ``latest.json`` names (for stability), if any."""
        keys = previous_assignment_keys(store, settings.results_bucket, dataset, run_id)
        if not keys:
            return None
        for key in keys:
            store.download(settings.results_bucket, key, tmp / "previous" / key.rsplit("/", 1)[-1])
        return tmp / "previous"

    # the run's inputs are independent reads: all at once
    with ThreadPoolExecutor(4, thread_name_prefix="score-inputs") as reads:
        share = LAMBDA_MEMORY_SHARE / 2 if order_parts else LAMBDA_MEMORY_SHARE
        clean_future = reads.submit(
            _download_inputs,
            store,
            settings,
            clean_prefix,
            clean_manifest,
            parts,
            tmp,
            "state",
            share,
        )
        contract_future = reads.submit(
            store.get_bytes, settings.data_bucket, clean_prefix + "contract.json"
        )
        quality_future = reads.submit(
            store.get_bytes, settings.data_bucket, clean_prefix + "quality.json"
        )
        previous_future = reads.submit(previous_assignments)
        orders_future = reads.submit(_order_source, store, settings, order_parts or [], tmp)
        clean_path = clean_future.result()
        contract = Contract.model_validate_json(contract_future.result() or b"{}")
        quality_bytes = quality_future.result()
        quality = json.loads(quality_bytes) if quality_bytes else None
        previous_path = previous_future.result()
        orders = orders_future.result()
    return clean_path, contract, quality, previous_path, orders


def _order_source(
    store: ObjectStore, settings: Settings, parts: list[Part], tmp: Path
) -> Source | None:
    """The order log of ``parts`` merged, with the newest part's contract (None: no part)."""
    if not parts:
        return None
    # merged while the customer table is: each merge gets half the engine's share
    path = _download_inputs(store, settings, "", {}, parts, tmp, "orders", LAMBDA_MEMORY_SHARE / 2)
    body = store.get_bytes(settings.data_bucket, parts[-1].prefix + "contract.json")
    return Source(clean_files(path), Contract.model_validate_json(body or b"{}"))


def _announce(
    bus: EventBus,
    outcome: ScoreOutcome,
    result: ScoreResult,
    psi: dict[str, float],
    clean_manifest_key: str,
    model_name: str,
    prefix: str,
) -> None:
    """Publish the committed run, and a retrain recommendation naming the drifting
    features when the verdict is ``retrain``."""
    dataset, run_id = outcome.dataset, outcome.run_id
    bus.publish(
        RUN_COMMITTED,
        {
            "dataset": dataset,
            "run_id": run_id,
            "manifest_key": prefix + MANIFEST,
            "verdict": result.verdict,
            "rows": result.rows,
        },
    )
    if result.verdict == "retrain":
        watch = float(result.metrics.get("thresholds", {}).get("psi_watch", 0.1))
        drifting = sorted((f for f, v in psi.items() if v > watch), key=lambda f: -psi[f])
        bus.publish(
            RETRAIN_RECOMMENDED,
            {
                "dataset": dataset,
                "model": model_name,
                "model_version": outcome.model_version,
                "run_id": run_id,
                "clean_manifest_key": clean_manifest_key,
                "features": drifting,
                "reasons": result.reasons,
                "promote": False,
            },
        )


def _load_champion(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    dataset: str,
    clean_manifest_key: str,
    verifier: Verifier | None,
) -> tuple[SegmentModel, int] | ScoreOutcome:
    """The dataset's champion, verified, with its promotion count (``generation``); or
    the outcome when there is none (training is requested) or it is refused."""
    model_name = model_name_for(dataset)
    pointer = champion(store, settings.artifact_bucket, model_name)
    if pointer is None:
        bus.publish(
            TRAINING_REQUESTED,
            {
                "dataset": dataset,
                "model": model_name,
                "clean_manifest_key": clean_manifest_key,
                "reason": "no champion model yet",
                "promote": True,
                "if_no_champion": True,
            },
        )
        return ScoreOutcome(
            "no_champion",
            dataset,
            message=f"no champion for model {model_name}; training requested",
        )
    try:
        model: SegmentModel = load_version(
            store,
            settings.artifact_bucket,
            model_name,
            pointer["version"],
            verifier or KmsVerifier(settings.model_signing_key),
        )
    except ArtifactError as exc:
        return ScoreOutcome(
            "model_refused",
            dataset,
            model_version=str(pointer["version"]),
            message=f"champion {model_name} {pointer['version']} refused: {exc}",
        )
    return model, int(pointer.get("generation", 0))


def _request_combined_model(
    bus: EventBus,
    dataset: str,
    clean_manifest_key: str,
    state: DatasetState | None,
    model: SegmentModel,
) -> bool:
    """Ask for a combined model when the dataset holds a customer table and an order log
    but its champion was trained on one of them: the run still scores with the champion
    (results stay fresh), and the trained combined model becomes champion if it passes
    its gates. Returns whether a request was published."""
    if state is None or model.schema.kind == COMBINED:
        return False
    if not (state.parts_of(CUSTOMERS) and state.parts_of(ORDERS)):
        return False
    bus.publish(
        TRAINING_REQUESTED,
        {
            "dataset": dataset,
            "model": model_name_for(dataset),
            "clean_manifest_key": clean_manifest_key,
            "reason": (
                f"the dataset holds a customer table and an order log; champion "
                f"{model.version} uses its {model.schema.kind} only"
            ),
            "promote": True,
        },
    )
    return True


def _result_files(result: ScoreResult, quality: dict[str, Any] | None, tmp: Path) -> list[RunFile]:
    """The files of a results run, in manifest order (the input's quality report too)."""
    quality_path = tmp / "quality.json"
    quality_path.write_text(json.dumps(quality or {}, indent=2, default=str), encoding="utf-8")
    files = result.files
    offers = tmp / OFFERS_FILE  # written by the run's annotate hook when there are offers
    return [
        RunFile(RESULT_FILES["assignments_parquet"], files["assignments_parquet"], result.rows),
        RunFile(RESULT_FILES["assignments_csv"], files["assignments_csv"], result.rows),
        RunFile(RESULT_FILES["profiles"], files["profiles"]),
        RunFile(RESULT_FILES["metrics"], files["metrics"]),
        RunFile(RESULT_FILES["quality"], quality_path),
        RunFile(RESULT_FILES["report"], files["report"]),
        *(
            [
                RunFile(
                    RESULT_FILES["value_at_risk"],
                    files["value_at_risk"],
                    result.metrics["value_at_risk"]["top_rows"],
                )
            ]
            if "value_at_risk" in files
            else []
        ),
        *([RunFile(OFFERS_FILE, offers, result.rows)] if offers.exists() else []),
    ]


def _order_files(clean_path: Path, contract: Contract, orders: Source | None) -> list[Path]:
    """The clean Parquet files of the run's order log (none: the dataset has none)."""
    if orders is not None:
        return list(orders.parts)
    return clean_files(clean_path) if contract.is_transactions else []


@dataclass
class _RunPlan:
    """What a results run is: its model, inputs, as-of date and place (fixed before any
    file is written)."""

    dataset: str
    model: SegmentModel
    generation: int
    clean_manifest_key: str
    clean_run_id: str
    clean_manifest: dict[str, Any]
    as_of: dt.date | None
    as_of_reason: str
    state: DatasetState | None
    parts: list[Part]
    scored: list[Part]
    order_parts: list[Part]
    run_ts: dt.datetime
    run_id: str
    prefix: str

    @property
    def model_name(self) -> str:
        return model_name_for(self.dataset)

    @property
    def run_date(self) -> dt.date:
        return self.run_ts.date()


def _plan_run(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    clean_manifest_key: str,
    clean_manifest: dict[str, Any],
    loaded: tuple[SegmentModel, int],
    as_of: dt.date | None,
    as_of_reason: str,
    run_ts: dt.datetime | None,
    state: DatasetState | None,
) -> _RunPlan:
    """Plan: the run's as-of date, the state's parts it reads, its timestamp and run id."""
    dataset, clean_run_id = parse_clean_manifest_key(clean_manifest_key)
    model, generation = loaded
    if as_of is None and clean_manifest.get("as_of"):
        as_of = dt.date.fromisoformat(str(clean_manifest["as_of"]))
        as_of_reason = "given at upload (the object's as-of metadata)"
    if state is None:
        state, _ = load_state(store, settings.data_bucket, dataset)
    parts = _state_parts(state, clean_run_id, model.schema.kind)
    run_ts = (run_ts or _data_time(clean_manifest, parts)).astimezone(dt.UTC)
    _request_combined_model(bus, dataset, clean_manifest_key, state, model)
    scored, order_parts = _split_sources(parts)
    if parts:  # the newest part of the kind names the contract and quality report
        clean_manifest_key = scored[-1].manifest_key
        clean_run_id = scored[-1].run_id
        clean_manifest = store.get_json(settings.data_bucket, clean_manifest_key)[0] or {}
        kind = None if order_parts else scored[-1].kind
        inputs = f"state:{(state or DatasetState(dataset)).digest(kind)}"
    else:
        inputs = clean_run_id
    run_id = run_id_for(run_ts, inputs, model.version, str(as_of))
    return _RunPlan(
        dataset=dataset,
        model=model,
        generation=generation,
        clean_manifest_key=clean_manifest_key,
        clean_run_id=clean_run_id,
        clean_manifest=clean_manifest,
        as_of=as_of,
        as_of_reason=as_of_reason,
        state=state,
        parts=parts,
        scored=scored,
        order_parts=order_parts,
        run_ts=run_ts,
        run_id=run_id,
        prefix=results_prefix(dataset, run_ts.date(), run_id),
    )


def _finish_committed(
    store: ObjectStore, settings: Settings, outcome: ScoreOutcome, existing: dict[str, Any]
) -> ScoreOutcome:
    """The ``duplicate`` outcome of a run committed already, finishing what an earlier
    attempt may have left after its manifest (the pointer, ``current/``; both idempotent)."""
    outcome.pointer_moved = publish_latest(store, settings.results_bucket, existing, repair=True)
    outcome.status = "duplicate"
    outcome.message = "this run was already committed; no result file written"
    return outcome


def _score_plan(
    store: ObjectStore,
    settings: Settings,
    plan: _RunPlan,
    *,
    trigger: str,
    tmp: Path,
    quality: dict[str, Any] | None,
    inputs: tuple[Path, Contract, Path | None, Source | None],
    on_file: Callable[[str, Path, int, str | None], None],
) -> ScoreResult:
    """The core: score the downloaded inputs (:func:`score_dataset`) into ``tmp/out``."""
    clean_path, contract, previous_path, orders = inputs
    as_of = plan.as_of
    return score_dataset(
        clean_path,
        contract,
        plan.model,
        tmp / "out",
        run=RunInfo(
            dataset=plan.dataset,
            run_id=plan.run_id,
            run_date=plan.run_date,
            as_of=as_of,
            as_of_reason=plan.as_of_reason if as_of is not None else "",
            source={
                "bucket": settings.data_bucket,
                "clean_manifest_key": plan.clean_manifest_key,
                "clean_run_id": plan.clean_run_id,
                "input": plan.clean_manifest.get("source", {}),
                "parts": len(plan.parts) or 1,
                "trigger": trigger,
            },
        ),
        quality=quality,
        previous_assignments=previous_path,
        thresholds=Thresholds.from_mapping(settings.thresholds),
        chunk_rows=settings.chunk_rows,
        on_file=on_file,
        limits=lambda_limits(settings.memory_mb, tmp=tmp),
        orders=orders,
        annotate=annotator(
            campaign_flags(store, settings.results_bucket, plan.dataset),
            _order_files(clean_path, contract, orders),
            lambda_limits(settings.memory_mb, tmp=tmp),
            tmp,
        ),
    )


def _commit_results(
    store: ObjectStore,
    settings: Settings,
    plan: _RunPlan,
    result: ScoreResult,
    files: list[RunFile],
    *,
    trigger: str,
    uploads: dict[str, Future[dict[str, Any]]],
) -> tuple[dict[str, Any], bool]:
    """Publish: every result file under the run's prefix, the manifest last."""
    state, parts = plan.state, plan.parts
    return commit_run(
        store,
        settings.results_bucket,
        plan.prefix,
        files,
        {
            "kind": "segments",
            "dataset": plan.dataset,
            "run_id": plan.run_id,
            "run_date": plan.run_date.isoformat(),
            "run_ts": plan.run_ts.isoformat(timespec="seconds"),
            "as_of": result.as_of.isoformat(),
            "rows": result.rows,
            "model": {
                "name": plan.model_name,
                "version": plan.model.version,
                "generation": plan.generation,
            },
            "input": {
                "clean_manifest_key": plan.clean_manifest_key,
                "source": plan.clean_manifest.get("source", {}),
                "state_version": state.version if parts and state else None,
                "parts": [_part_input(p) for p in parts],
            },
            "verdict": result.verdict,
            "trigger": trigger,
        },
        started=uploads,
    )


def _score_and_commit(
    store: ObjectStore,
    settings: Settings,
    plan: _RunPlan,
    *,
    trigger: str,
    workdir: Path | None,
) -> tuple[ScoreResult, bool]:
    """Read the inputs, score them, commit the run and move ``latest.json``; (the result,
    whether the pointer moved)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp_name:
        tmp = Path(tmp_name)

        clean_path, contract, quality, previous_path, orders = _read_inputs(
            store,
            settings,
            plan.clean_manifest_key,
            plan.clean_manifest,
            plan.run_id,
            tmp,
            plan.scored,
            plan.order_parts,
        )

        # The assignments are final once the chunk loop ends: upload them (create-only,
        # both files at once on two background threads: 0.13-0.28 s less for the score
        # handler at 1M than one after the other) while the metrics, profiles and report
        # are computed. The manifest still comes last, after every upload succeeded.
        background = ThreadPoolExecutor(2, thread_name_prefix="results-upload")
        uploads: dict[str, Future[dict[str, Any]]] = {}

        def upload_now(name: str, path: Path, rows: int | None, sha256: str | None) -> None:
            run_file = RunFile(RESULT_FILES[name], path, rows, sha256)
            uploads[run_file.name] = background.submit(
                upload_run_file, store, settings.results_bucket, plan.prefix, run_file
            )

        with background:
            result = _score_plan(
                store,
                settings,
                plan,
                trigger=trigger,
                tmp=tmp,
                quality=quality,
                inputs=(clean_path, contract, previous_path, orders),
                on_file=upload_now,
            )
            files = _result_files(result, quality, tmp)
            manifest, created = _commit_results(
                store, settings, plan, result, files, trigger=trigger, uploads=uploads
            )
        moved = publish_latest(store, settings.results_bucket, manifest, repair=not created)
    return result, moved


def _report_scored(
    bus: EventBus,
    outcome: ScoreOutcome,
    plan: _RunPlan,
    result: ScoreResult,
    moved: bool,
    started: float,
) -> ScoreOutcome:
    """Fill the outcome's counts, drift and timing from the result, and announce the run."""
    model = plan.model
    outcome.rows = result.rows
    outcome.segments = int(model.k)
    outcome.verdict = result.verdict
    outcome.reasons = list(result.reasons)
    psi = drift_by_feature(result.metrics)
    outcome.drift_max = max(psi.values(), default=0.0)
    outcome.pointer_moved = moved
    _announce(bus, outcome, result, psi, plan.clean_manifest_key, plan.model_name, plan.prefix)
    outcome.seconds = round(time.monotonic() - started, 3)
    outcome.message = (
        f"scored {result.rows} customers into {model.k} segments in {outcome.seconds:.1f}s; "
        f"verdict {result.verdict}"
    )
    return outcome


def run_score(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    clean_manifest_key: str,
    as_of: dt.date | None = None,
    run_ts: dt.datetime | None = None,
    trigger: str = "clean-data",
    as_of_reason: str = "given by the caller",
    workdir: Path | None = None,
    verifier: Verifier | None = None,
    state: DatasetState | None = None,
) -> ScoreOutcome:
    """Score the dataset of the clean run behind ``clean_manifest_key``: every part of
    its state of the model's kind, merged (customers upserted, orders united), or that
    one run for a dataset whose runs predate the state.

    ``run_ts`` is the trigger's time (the clean run's for new data, the schedule's for a
    rescore); with the clean run, model version and as-of date it fixes the run id, so a
    redelivered trigger finds its run already committed and writes nothing.

    A champion that fails verification (``verifier``: the stack's model-signing key by
    default) is never loaded: the outcome is ``model_refused`` with the reason, nothing is
    written, and the event is not retried (the same artifact would be refused again).
    """
    started = time.monotonic()
    dataset, _ = parse_clean_manifest_key(clean_manifest_key)
    clean_manifest, _ = store.get_json(settings.data_bucket, clean_manifest_key)
    if clean_manifest is None:
        return ScoreOutcome("no_data", dataset, message=f"{clean_manifest_key} not found")
    loaded = _load_champion(store, settings, bus, dataset, clean_manifest_key, verifier)
    if isinstance(loaded, ScoreOutcome):
        return loaded
    plan = _plan_run(
        store,
        settings,
        bus,
        clean_manifest_key=clean_manifest_key,
        clean_manifest=clean_manifest,
        loaded=loaded,
        as_of=as_of,
        as_of_reason=as_of_reason,
        run_ts=run_ts,
        state=state,
    )
    outcome = ScoreOutcome(
        "committed", dataset, run_id=plan.run_id, model_version=plan.model.version
    )
    outcome.manifest_key = plan.prefix + MANIFEST
    existing = committed_manifest(store, settings.results_bucket, plan.prefix)
    if existing is not None:
        return _finish_committed(store, settings, outcome, existing)
    result, moved = _score_and_commit(store, settings, plan, trigger=trigger, workdir=workdir)
    return _report_scored(bus, outcome, plan, result, moved, started)
