"""The model registry on S3: versions, champion pointer, promotion and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from custseg.artifact import ArtifactError
from custseg.aws import registry
from custseg.aws.s3 import ObjectStore
from custseg.cli import main

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
    assert registry.load_champion(store, stack.artifact_bucket, "mall").k == 4

    assert main(["models", "list", "--model", "mall", "--bucket", stack.artifact_bucket]) == 0
    listing = capsys.readouterr().out
    assert f"* {second['version']}" in listing and first["version"] in listing

    assert main(["models", "rollback", "--model", "mall", "--bucket", stack.artifact_bucket]) == 0
    assert registry.champion(store, stack.artifact_bucket, "mall")["version"] == first["version"]
    with pytest.raises(ArtifactError):
        registry.set_champion(store, stack.artifact_bucket, "mall", "v-missing", reason="test")
