"""The model registry on S3: versions, champion pointer, promotion and rollback, and
the signature check before a version is promoted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from custseg.aws import registry
from custseg.aws.s3 import ObjectStore
from custseg.aws.signing import KmsSigner, KmsVerifier
from custseg.cli import main
from custseg.model.artifact import ArtifactError, UnsignedArtifactError
from custseg.model.signing import SIGNATURE_FIELD, signed_digest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _clean_manifest_key(stack: Any) -> str:
    keys = stack.client("s3").list_objects_v2(Bucket=stack.data_bucket, Prefix="clean/mall/")
    return next(o["Key"] for o in keys["Contents"] if o["Key"].endswith("_manifest.json"))


def test_promote_and_roll_back(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.upload(FIXTURES / "mall_customers.csv", "incoming/mall/mall.csv")
    stack.drain()
    store = ObjectStore(stack.client("s3"))
    first = registry.champion(store, stack.artifact_bucket, "mall")
    assert first is not None and first["history"] == []

    # a direct invoke trains a second version with a fixed k and promotes it
    inv = stack.invoke("TrainFunction", {"clean_manifest_key": _clean_manifest_key(stack), "k": 4})
    assert inv.error is None
    assert inv.result["results"][0]["status"] == "promoted"
    second = registry.champion(store, stack.artifact_bucket, "mall")
    assert second["version"] != first["version"]
    assert second["history"][0]["version"] == first["version"]
    verifier = KmsVerifier(stack.environment()["MODEL_SIGNING_KEY"], stack.client("kms"))
    assert registry.load_champion(store, stack.artifact_bucket, "mall", verifier).k == 4

    assert main(["models", "list", "--model", "mall", "--bucket", stack.artifact_bucket]) == 0
    listing = capsys.readouterr().out
    assert f"* {second['version']}" in listing and first["version"] in listing

    assert main(["models", "rollback", "--model", "mall", "--bucket", stack.artifact_bucket]) == 0
    assert registry.champion(store, stack.artifact_bucket, "mall")["version"] == first["version"]
    with pytest.raises(ArtifactError, match="has no version v-missing"):
        registry.set_champion(
            store, stack.artifact_bucket, "mall", "v-missing", reason="test", verifier=verifier
        )


def _forge(stack: Any, version: str, *, key_id: str | None) -> str:
    """Copy the champion's files to a new version with a changed model file and its
    recomputed SHA-256 in the metadata, signed by ``key_id`` (unsigned when None)."""
    s3, bucket = stack.client("s3"), stack.artifact_bucket
    pointer = json.loads(
        s3.get_object(Bucket=bucket, Key="models/mall/champion.json")["Body"].read()
    )
    prefix = f"models/mall/{pointer['version']}/"
    body = bytearray(s3.get_object(Bucket=bucket, Key=prefix + "model.joblib")["Body"].read())
    body[len(body) // 2] ^= 0xFF
    meta = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "metadata.json")["Body"].read())
    meta.pop(SIGNATURE_FIELD)
    meta.update(version=version, sha256=hashlib.sha256(bytes(body)).hexdigest())
    if key_id is not None:
        signer = KmsSigner(key_id, stack.client("kms"))
        meta[SIGNATURE_FIELD] = signer.sign(signed_digest(meta)).to_dict()
    s3.put_object(Bucket=bucket, Key=f"models/mall/{version}/model.joblib", Body=bytes(body))
    s3.put_object(Bucket=bucket, Key=f"models/mall/{version}/metadata.json", Body=json.dumps(meta))
    return str(pointer["version"])


def _promote(stack: Any, version: str) -> int:
    return main(
        ["models", "promote", "--model", "mall", "--bucket", stack.artifact_bucket,
         "--version", version]
    )  # fmt: skip


def test_promote_refuses_a_forged_version(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.upload(FIXTURES / "mall_customers.csv", "incoming/mall/mall.csv")
    stack.drain()
    other_key = stack.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    champion = _forge(stack, "v20990101T000000Z-unsigned", key_id=None)
    _forge(stack, "v20990101T000000Z-otherkey", key_id=other_key["KeyMetadata"]["Arn"])
    capsys.readouterr()

    assert _promote(stack, "v20990101T000000Z-unsigned") == 1
    assert "custseg: refused: model mall v20990101T000000Z-unsigned is not signed" in (
        capsys.readouterr().err
    )
    assert _promote(stack, "v20990101T000000Z-otherkey") == 1
    err = capsys.readouterr().err
    assert "is not valid for the model-signing key" in err and "Traceback" not in err
    store = ObjectStore(stack.client("s3"))
    assert registry.champion(store, stack.artifact_bucket, "mall")["version"] == champion

    # the genuine champion promotes (again); without a key, promote says how to give one
    assert _promote(stack, champion) == 0
    assert f"champion of mall is now {champion}" in capsys.readouterr().out
    verifier = KmsVerifier(stack.environment()["MODEL_SIGNING_KEY"], stack.client("kms"))
    with pytest.raises(UnsignedArtifactError):
        registry.load_version(
            store, stack.artifact_bucket, "mall", "v20990101T000000Z-otherkey", verifier
        )


def test_promote_needs_the_signing_key(
    stack: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODEL_SIGNING_KEY")
    assert _promote(stack, "v1") == 2
    assert "--signing-key" in capsys.readouterr().err
    assert main(["models", "rollback", "--model", "m", "--bucket", stack.artifact_bucket]) == 2
