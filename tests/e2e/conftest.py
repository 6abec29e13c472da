"""Fixtures of the end-to-end tests: trained models to start a stack with."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import MALL, mall_like_csv

from custseg.layout import MODELS

# Datasets with a trained champion in ``champions`` (dataset -> training file).
TRAINED = ("mall", "north", "south")


@pytest.fixture(scope="session")
def champions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The artifact objects (models, metadata, champion pointers) of a first model of
    each ``TRAINED`` dataset, trained once per session in a stack of their own; put them
    in a stack with :func:`support.seed_models` to skip training."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    tmp = tmp_path_factory.mktemp("training")
    sources: dict[str, Path] = {
        "mall": MALL,
        "north": mall_like_csv(tmp / "north.csv", range(1, 161), seed=11),
        "south": mall_like_csv(tmp / "south.csv", range(1, 161), seed=12),
    }
    with mock_aws():
        stack = LocalStack().create()
        for dataset in TRAINED:
            stack.upload(sources[dataset], f"training/{dataset}/{sources[dataset].name}")
        assert [i.error for i in stack.drain() if i.error] == []
        s3 = stack.client("s3")
        objects = s3.list_objects_v2(Bucket=stack.artifact_bucket, Prefix=MODELS)["Contents"]
        snapshot = {
            o["Key"]: s3.get_object(Bucket=stack.artifact_bucket, Key=o["Key"])["Body"].read()
            for o in objects
        }
    assert {k.split("/")[1] for k in snapshot} == set(TRAINED)
    return snapshot
