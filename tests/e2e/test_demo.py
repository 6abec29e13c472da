"""`custseg demo` (what `make run` runs) completes and prints the summary a user reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custseg.cli import main
from custseg.local.demo_data import CAMPAIGN_UPLIFT


@pytest.mark.slow
def test_demo_runs_the_whole_flow_and_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for dataset in ("demo_customers", "demo_orders"):
        assert f"== {dataset}: committed" in out
    assert "rows read 5,065 / kept" in out
    assert "rejected:" in out  # the top rejection reasons
    assert "verdict: " in out
    assert out.count("report:      ") == 2
    reports = list(
        tmp_path.glob("custseg-local-results-*/segments/*/run_date=*/run_id=*/report.html")
    )
    # the customers' second run: after the sample campaign, with its flags
    assert len(reports) == 3
    assert "campaign autumn-mailing (treatment vs control)" in out
    campaigns = "custseg-local-results-*/segments/demo_customers/campaigns"
    (effect_path,) = tmp_path.glob(f"{campaigns}/autumn-mailing/effect.json")
    effect = json.loads(effect_path.read_text(encoding="utf-8"))
    sizes = {
        s["segment_id"]: s["treatment"]["customers"] + s["control"]["customers"]
        for s in effect["segments"]
    }
    injected = sorted(sizes, key=lambda k: (-sizes[k], k))[:2]  # the two largest
    for seg in effect["segments"]:  # the injected uplift recovered, none elsewhere
        up = seg["conversion_uplift"]
        if seg["segment_id"] in injected:
            assert up["ci_low"] <= CAMPAIGN_UPLIFT <= up["ci_high"] and up["significant"], seg
        else:
            assert not up["significant"], seg
    assert (tmp_path / "handler-logs.jsonl").stat().st_size > 0
    assert list(tmp_path.glob("custseg-local-data-*/incoming/demo_orders/orders.csv"))
