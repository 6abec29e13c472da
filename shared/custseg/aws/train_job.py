"""The training job: a committed clean run (or a training upload) -> a model version.

The new version is written under ``models/<model>/<version>/``, its metadata signed with
the stack's model-signing key (``signer``; verified again before the pointer moves to it:
``verifier``, the same key by default). It becomes champion when
it passes the quality gates and the trigger allows promotion; the very first model of a
dataset becomes champion even when a gate fails (something to score with beats nothing),
and its metadata and every run's verdict say so.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custseg.aws.bus import MODEL_PROMOTED, EventBus
from custseg.aws.registry import champion, save_model, set_champion, set_first_champion
from custseg.aws.runs import download_clean_data
from custseg.aws.s3 import ObjectStore
from custseg.aws.score_job import model_name_for
from custseg.aws.settings import Settings
from custseg.aws.signing import KmsSigner, KmsVerifier
from custseg.aws.state import download_state, load_state
from custseg.dataset.clean_data import clean_files, read_clean
from custseg.dataset.state import Part
from custseg.features.build import Features, build_features
from custseg.features.combined import CUSTOMERS, ORDERS, combined_contract
from custseg.features.engine import (
    EngineLimits,
    Source,
    collect_features,
    default_as_of_parts,
    lambda_limits,
)
from custseg.ingest.contracts import Contract, load_contract
from custseg.ingest.pipeline import ingest_file
from custseg.layout import MANIFEST, contract_key, parse_clean_manifest_key, parse_upload_key
from custseg.model.artifact import ArtifactError, check_gates
from custseg.model.signing import Signer, Verifier
from custseg.model.training import train_model


@dataclass(frozen=True)
class Keys:
    """The signer of new versions and the verifier of versions promoted."""

    signer: Signer
    verifier: Verifier

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        """Both on the stack's model-signing key (KMS)."""
        return cls(KmsSigner(settings.model_signing_key), KmsVerifier(settings.model_signing_key))


@dataclass
class TrainOutcome:
    status: str  # promoted | candidate | skipped | untrainable | rejected | no_data | refused
    dataset: str
    model: str = ""
    version: str = ""
    k: int = 0
    silhouette: float | None = None
    gates_passed: bool = False
    gate_reasons: list[str] = field(default_factory=list)
    model_prefix: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _train_and_register(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    features: Features,
    contract: Contract,
    dataset: str,
    k: int | None,
    promote: bool,
    source: dict[str, Any],
    clean_manifest_key: str | None,
    keys: Keys,
    if_no_champion: bool = False,
) -> TrainOutcome:
    model_name = model_name_for(dataset)
    try:
        model = train_model(
            features,
            contract=contract,
            k=k,
            model_name=model_name,
            training_source=source,
            max_customers=settings.train_max_customers or None,
        )
    except ValueError as exc:  # data that cannot be segmented (too few customers, ...)
        return TrainOutcome(
            "untrainable", dataset, model=model_name, message=f"cannot train {model_name}: {exc}"
        )
    prefix = save_model(store, settings.artifact_bucket, model, keys.signer)
    passed, reasons = check_gates(model.metadata)
    outcome = TrainOutcome(
        "candidate",
        dataset,
        model=model_name,
        version=model.version,
        k=int(model.k),
        silhouette=model.metadata.get("quality", {}).get("silhouette"),
        gates_passed=passed,
        gate_reasons=reasons,
        model_prefix=prefix,
    )
    first = champion(store, settings.artifact_bucket, model_name) is None
    note = ""
    if promote and (passed or first):
        reason = (
            "passed the quality gates"
            if passed
            else (
                "first model for this dataset, promoted although gates failed: "
                + "; ".join(reasons)
            )
        )
        # A first champion is only created, never replaced: requests training the first
        # model at once (several files of a new dataset) must not take turns as champion,
        # whichever finishes first.
        promote_fn = set_first_champion if first or if_no_champion else set_champion
        try:
            pointer = promote_fn(
                store,
                settings.artifact_bucket,
                model_name,
                model.version,
                reason=reason,
                verifier=keys.verifier,
            )
        except ArtifactError as exc:  # changed in the bucket since it was written
            outcome.status = "refused"
            outcome.message = f"model {model_name} {model.version} not promoted: {exc}"
            return outcome
        if pointer is not None:
            outcome.status = "promoted"
            bus.publish(
                MODEL_PROMOTED,
                {
                    "dataset": dataset,
                    "model": model_name,
                    "version": model.version,
                    "clean_manifest_key": clean_manifest_key,
                    "reason": reason,
                },
            )
        else:
            winner = champion(store, settings.artifact_bucket, model_name) or {}
            note = f" ({winner.get('version')} became the first champion meanwhile)"
            if if_no_champion and clean_manifest_key and winner:
                _score_with_champion(bus, dataset, clean_manifest_key, str(winner["version"]))
    outcome.message = (
        f"model {model_name} {model.version}: k={model.k}, gates "
        f"{'passed' if passed else 'failed (' + '; '.join(reasons) + ')'}; {outcome.status}" + note
    )
    return outcome


def clean_features(
    path: Path, contract: Contract, limits: EngineLimits, orders: Source | None = None
) -> Features:
    """The per-customer features of the clean data at ``path``: an order log's on DuckDB
    (within ``limits``), a customer table's from its rows (as of the default dates); with
    ``orders``, the customer table joined with that order log on DuckDB, as of the order
    log's default date."""
    if orders is not None:
        as_of, _ = default_as_of_parts(orders.parts, orders.contract)
        return collect_features(clean_files(path), contract, as_of, limits, orders=orders)
    if contract.is_transactions:
        files = clean_files(path)
        as_of, _ = default_as_of_parts(files, contract)
        return collect_features(files, contract, as_of, limits)
    return build_features(read_clean(path).to_pandas(), contract)


def _order_log(
    store: ObjectStore, settings: Settings, parts: list[Part], dest: Path, limits: EngineLimits
) -> Source | None:
    """The order log of ``parts`` merged under ``dest``, with the newest part's contract
    (None: no part)."""
    if not parts:
        return None
    path = download_state(store, settings.data_bucket, parts, dest, limits=limits)
    body = store.get_bytes(settings.data_bucket, parts[-1].prefix + "contract.json")
    return Source(clean_files(path), Contract.model_validate_json(body or b"{}"))


def _score_with_champion(
    bus: EventBus, dataset: str, clean_manifest_key: str, version: str
) -> None:
    """Ask for a clean run to be scored with the existing champion ``version``."""
    bus.publish(
        MODEL_PROMOTED,
        {
            "dataset": dataset,
            "model": model_name_for(dataset),
            "version": version,
            "clean_manifest_key": clean_manifest_key,
            "reason": "a champion exists already; scoring with it",
        },
    )


def run_train_on_clean(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    clean_manifest_key: str,
    k: int | None = None,
    promote: bool = True,
    if_no_champion: bool = False,
    workdir: Path | None = None,
    keys: Keys | None = None,
) -> TrainOutcome:
    """Train on a committed clean run.

    ``if_no_champion`` (a scoring run's bootstrap request): when a champion exists by now
    (another request trained it first, or this is a redelivery), train nothing and ask for
    the clean run to be scored with that champion instead.
    """
    dataset, run_id = parse_clean_manifest_key(clean_manifest_key)
    if if_no_champion:
        current = champion(store, settings.artifact_bucket, model_name_for(dataset))
        if current is not None:
            _score_with_champion(bus, dataset, clean_manifest_key, str(current["version"]))
            return TrainOutcome(
                "skipped",
                dataset,
                model=model_name_for(dataset),
                version=current["version"],
                message=f"champion {current['version']} exists; no training needed",
            )
    manifest, _ = store.get_json(settings.data_bucket, clean_manifest_key)
    if manifest is None:
        return TrainOutcome("no_data", dataset, message=f"{clean_manifest_key} not found")
    state, _ = load_state(store, settings.data_bucket, dataset)
    kind = str(manifest.get("contract_kind", "customers"))
    in_state = state is not None and state.has(run_id)
    order_parts = state.parts_of(ORDERS) if state is not None and in_state else []
    if order_parts and state is not None and state.parts_of(CUSTOMERS):
        kind = CUSTOMERS  # a customer table and an order log: one combined portrait
    else:
        order_parts = []
    parts = state.parts_of(kind) if state is not None and in_state else []
    # the dataset's every part of this kind; the newest names the contract (the request's
    # run stays the one a promotion scores: the newest upload, whatever its kind)
    contract_key = parts[-1].manifest_key if parts else clean_manifest_key
    prefix = contract_key[: -len(MANIFEST)]
    contract = Contract.model_validate_json(
        store.get_bytes(settings.data_bucket, prefix + "contract.json") or b"{}"
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        limits = lambda_limits(settings.memory_mb, tmp=Path(tmp))
        if parts:
            path = download_state(store, settings.data_bucket, parts, Path(tmp), limits=limits)
        else:
            path = download_clean_data(store, settings.data_bucket, prefix, manifest, Path(tmp))
        orders = _order_log(store, settings, order_parts, Path(tmp) / "orders", limits)
        try:
            features = clean_features(path, contract, limits, orders)
        except ValueError as exc:
            return TrainOutcome("untrainable", dataset, message=f"cannot train {dataset}: {exc}")
    if orders is not None:
        contract = combined_contract(contract, orders.contract)
    source: dict[str, Any] = {"clean_manifest_key": contract_key, "clean_run_id": run_id}
    if parts:
        source["parts"] = [p.run_id for p in [*parts, *order_parts]]
    return _train_and_register(
        store,
        settings,
        bus,
        features=features,
        contract=contract,
        dataset=dataset,
        k=k,
        promote=promote,
        source=source,
        clean_manifest_key=clean_manifest_key,
        keys=keys or Keys.of(settings),
        if_no_champion=if_no_champion,
    )


def run_train_on_upload(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    bucket: str,
    key: str,
    k: int | None = None,
    workdir: Path | None = None,
    keys: Keys | None = None,
) -> TrainOutcome:
    """Train on a file uploaded under ``training/<dataset>/`` (validated and cleaned first)."""
    upload = parse_upload_key(key)
    body = store.get_bytes(settings.artifact_bucket, contract_key(upload.dataset))
    contract = load_contract(body) if body is not None else None
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local = store.download(bucket, key, Path(tmp) / "input")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        result = ingest_file(
            local,
            Path(tmp) / "out",
            source_name=key,
            dataset=upload.dataset,
            run_id=f"train-{stamp}",
            contract=contract,
            chunk_rows=settings.chunk_rows,
            future_tolerance=settings.future_tolerance,
            date_floor=settings.date_floor,
            limits=settings.read_limits,
        )
        if result.status != "accepted" or result.clean_path is None:
            return TrainOutcome(
                "rejected",
                upload.dataset,
                message=result.report_text_path.read_text(encoding="utf-8").splitlines()[0],
            )
        limits = lambda_limits(settings.memory_mb, tmp=Path(tmp))
        try:
            features = clean_features(result.clean_path, result.contract, limits)
        except ValueError as exc:
            return TrainOutcome(
                "untrainable", upload.dataset, message=f"cannot train {upload.dataset}: {exc}"
            )
    return _train_and_register(
        store,
        settings,
        bus,
        features=features,
        contract=result.contract,
        dataset=upload.dataset,
        k=k,
        promote=True,
        source={"bucket": bucket, "key": key},
        clean_manifest_key=None,
        keys=keys or Keys.of(settings),
    )
