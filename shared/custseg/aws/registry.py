"""The model registry in the artifact bucket: versions, the champion pointer, rollback.

``models/<model>/<version>/model.joblib`` + ``metadata.json`` hold one version;
``models/<model>/champion.json`` names the champion and keeps the history of previous
champions, so rolling back is moving the pointer to an earlier version.

Every version is signed when it is saved (the training function's ``Signer``), and checked
against the trusted key before it is loaded and before the pointer is moved to it
(:func:`custseg.model.artifact.verify_artifact`): a version someone wrote into the bucket
without the signing key is never unpickled and never becomes champion.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from custseg.aws.s3 import ObjectStore, PreconditionFailed
from custseg.layout import champion_key, model_prefix
from custseg.model.artifact import (
    ArtifactError,
    SegmentModel,
    dump_artifact,
    load_artifact,
    verify_artifact,
)
from custseg.model.signing import Signer, Verifier

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"

# A warm function keeps loaded models per (bucket, model, version).
_CACHE: dict[tuple[str, str, str], SegmentModel] = {}


def save_model(store: ObjectStore, bucket: str, model: SegmentModel, signer: Signer) -> str:
    """Write a model version, signed (model file first, metadata last). Returns its prefix."""
    model_bytes, metadata_bytes = dump_artifact(model, signer)
    prefix = model_prefix(model.metadata["model_name"], model.version)
    store.put_bytes(bucket, prefix + MODEL_FILE, model_bytes)
    store.put_bytes(bucket, prefix + METADATA_FILE, metadata_bytes)
    return prefix


def champion(store: ObjectStore, bucket: str, model: str) -> dict[str, Any] | None:
    pointer, _ = store.get_json(bucket, champion_key(model))
    return pointer


def _fetch(store: ObjectStore, bucket: str, model: str, version: str) -> tuple[bytes, bytes]:
    """(model file bytes, metadata bytes) of a version; :class:`ArtifactError` when the
    version or its model file is missing."""
    prefix = model_prefix(model, version)
    metadata_bytes = store.get_bytes(bucket, prefix + METADATA_FILE)
    if metadata_bytes is None:
        raise ArtifactError(f"model {model} has no version {version}")
    model_bytes = store.get_bytes(bucket, prefix + MODEL_FILE)
    if model_bytes is None:
        raise ArtifactError(f"model file s3://{bucket}/{prefix}{MODEL_FILE} is missing")
    return model_bytes, metadata_bytes


def verify_version(
    store: ObjectStore, bucket: str, model: str, version: str, verifier: Verifier
) -> dict[str, Any]:
    """The metadata of a version once verified (signature, path, model file's SHA-256);
    nothing is unpickled. Raises :class:`ArtifactError`."""
    model_bytes, metadata_bytes = _fetch(store, bucket, model, version)
    return verify_artifact(
        model_bytes, metadata_bytes, verifier=verifier, model_name=model, version=version
    )


def load_version(
    store: ObjectStore, bucket: str, model: str, version: str, verifier: Verifier
) -> SegmentModel:
    """Load (verified first) one version; cached while the function is warm."""
    cache_key = (bucket, model, version)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    model_bytes, metadata_bytes = _fetch(store, bucket, model, version)
    loaded = load_artifact(
        model_bytes, metadata_bytes, verifier=verifier, model_name=model, version=version
    )
    _CACHE[cache_key] = loaded
    return loaded


def load_champion(
    store: ObjectStore, bucket: str, model: str, verifier: Verifier
) -> SegmentModel | None:
    pointer = champion(store, bucket, model)
    if pointer is None:
        return None
    return load_version(store, bucket, model, pointer["version"], verifier)


def list_versions(store: ObjectStore, bucket: str, model: str) -> list[str]:
    return sorted(store.list_folders(bucket, f"models/{model}/"))


def set_champion(
    store: ObjectStore,
    bucket: str,
    model: str,
    version: str,
    *,
    reason: str,
    verifier: Verifier,
) -> dict[str, Any]:
    """Make ``version`` the champion once verified (conditional write; keeps the history)."""
    pointer = _move_champion(
        store, bucket, model, version, reason=reason, only_if_absent=False, verifier=verifier
    )
    assert pointer is not None
    return pointer


def set_first_champion(
    store: ObjectStore,
    bucket: str,
    model: str,
    version: str,
    *,
    reason: str,
    verifier: Verifier,
) -> dict[str, Any] | None:
    """Make ``version`` (once verified) the model's first champion; None when it has one
    already.

    Requests training a new dataset's first model at once (several files arriving
    together) then cannot take turns as champion: the first to write wins, the others
    stay candidates.
    """
    return _move_champion(
        store, bucket, model, version, reason=reason, only_if_absent=True, verifier=verifier
    )


def _move_champion(
    store: ObjectStore,
    bucket: str,
    model: str,
    version: str,
    *,
    reason: str,
    only_if_absent: bool,
    verifier: Verifier,
) -> dict[str, Any] | None:
    verify_version(store, bucket, model, version, verifier)
    for _ in range(8):
        current, etag = store.get_json(bucket, champion_key(model))
        if current is not None and only_if_absent:
            return None
        history = []
        if current is not None:
            history = [
                {k: current[k] for k in ("version", "promoted_at", "reason") if k in current},
                *current.get("history", []),
            ][:20]
        pointer = {
            "model": model,
            "version": version,
            # counts promotions (under the conditional write): orders results runs of the
            # same data by the champion that made them, even within one second
            "generation": int((current or {}).get("generation", len(history))) + 1,
            "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "reason": reason,
            "history": history,
        }
        try:
            if current is None:
                store.put_json(bucket, champion_key(model), pointer, if_none_match=True)
            else:
                store.put_json(bucket, champion_key(model), pointer, if_match=etag)
            return pointer
        except PreconditionFailed:
            continue
    raise RuntimeError(f"could not move the champion pointer of {model}")


def rollback(store: ObjectStore, bucket: str, model: str, verifier: Verifier) -> dict[str, Any]:
    """Move the champion back to the previous champion in the pointer's history (verified
    again first)."""
    current = champion(store, bucket, model)
    if not current or not current.get("history"):
        raise ArtifactError(f"model {model} has no previous champion to roll back to")
    previous = current["history"][0]["version"]
    return set_champion(
        store,
        bucket,
        model,
        previous,
        reason=f"rollback from {current['version']}",
        verifier=verifier,
    )
