"""The demo's segments (what a new user sees first) each get their own action."""

from __future__ import annotations

from pathlib import Path

import pytest

from custseg.dataset.clean_data import read_clean
from custseg.features.build import build_features
from custseg.ingest.pipeline import ingest_file
from custseg.local.demo_data import write_demo_data
from custseg.model.training import train_model


@pytest.mark.parametrize("which", [0, 1], ids=["customers", "orders"])
def test_every_demo_segment_gets_its_own_action(which: int, tmp_path: Path) -> None:
    path = write_demo_data(tmp_path / "data")[which]
    result = ingest_file(path, tmp_path / "out", source_name=path.name, dataset="demo", run_id="r")
    assert result.clean_path is not None
    features = build_features(read_clean(result.clean_path).to_pandas(), result.contract)
    model = train_model(features, contract=result.contract, model_name="demo")
    actions = [s["action"] for s in model.metadata["segments"]]
    assert model.k >= 3 and len(set(actions)) == len(actions)
    assert all(s["action_reason"] for s in model.metadata["segments"])
