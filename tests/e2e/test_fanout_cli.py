"""``custseg run --fanout``: the template's state machine runs on the local interpreter
and the run lands like a single-path run (report, metrics, assignments.csv)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from custseg.cli import main

ORDERS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "online_retail_invoices.csv"


@pytest.mark.slow
def test_run_fanout_commits_a_run_with_its_assignments_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FANOUT_THRESHOLD_MIB", "FANOUT_RANGE_MIB", "FANOUT_STATE_MACHINE_ARN"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    orders = tmp_path / "orders.csv"
    orders.write_text("".join(lines[:4001]), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["run", str(orders), "--dataset", "shop", "--fanout", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "fan-out state machine: incoming/shop/orders.csv" in printed
    assert "== shop: committed" in printed
    manifests = list(out.glob("custseg-local-results-*/segments/shop/*/*/_manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["input"]["fanout"] is True
    names = {f["name"] for f in manifest["files"]}
    assert {"assignments.csv", "metrics.json", "profiles.json", "report.html"} <= names
    assert len([n for n in names if n.startswith("assignments/part-")]) >= 2
    with (manifests[0].parent / "assignments.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == manifest["rows"] > 0
    assert len({r["customer_id"] for r in rows}) == len(rows)
    clean = next(out.glob("custseg-local-data-*/clean/shop/*/_manifest.json"))
    assert json.loads(clean.read_text())["fanout"] == {"ranges": 3}
