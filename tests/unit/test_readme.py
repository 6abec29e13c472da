"""The docs stay true: README.md and docs/ document every output column, metric, event and
command."""

from __future__ import annotations

import re
from pathlib import Path

from custseg.aws import bus
from custseg.ingest.quality import QualityReport
from custseg.scoring.outputs import ASSIGNMENT_COLUMNS

REPO = Path(__file__).resolve().parents[2]
README = "\n".join(
    p.read_text(encoding="utf-8")
    for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
)


def test_quick_start_commands() -> None:
    assert "make run" in README and "make test" in README


def test_every_assignment_column_is_documented() -> None:
    for column in ASSIGNMENT_COLUMNS:
        assert f"`{column}`" in README, column


def test_every_quality_report_field_is_documented() -> None:
    report = QualityReport(source="x.csv", dataset="d", run_id="r").to_dict()
    for field in report:
        assert f"`{field}`" in README, field


def test_every_published_event_is_documented() -> None:
    for detail_type in (
        bus.TRAINING_REQUESTED,
        bus.MODEL_PROMOTED,
        bus.RETRAIN_RECOMMENDED,
        bus.RUN_COMMITTED,
        bus.EFFECT_MEASURED,
    ):
        assert f"`{detail_type}`" in README, detail_type


def test_every_metric_section_is_documented() -> None:
    from custseg.scoring.metrics import METRIC_DOCS

    for key in METRIC_DOCS:
        top = re.split(r"[.<]", key)[0]
        assert f"`{top}" in README, key


def test_sample_events_are_listed() -> None:
    listed = (REPO / "events" / "README.md").read_text(encoding="utf-8")
    for path in (REPO / "events").glob("*.json"):
        assert path.name in listed, path.name
