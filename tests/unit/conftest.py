"""Helpers for the ingest tests (fixtures directory, running ingest into tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from custseg.ingest.pipeline import IngestResult, ingest_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def ingest(tmp_path: Path):
    """Run ingest_file on a fixture (name or path) into a fresh directory."""

    def run(name: str | Path, **kwargs) -> IngestResult:
        path = Path(name) if Path(name).is_absolute() else FIXTURES / name
        out = tmp_path / f"out-{path.stem}"
        kwargs.setdefault("source_name", f"incoming/test/{path.name}")
        kwargs.setdefault("dataset", "test")
        kwargs.setdefault("run_id", "run-1")
        result = ingest_file(path, out, **kwargs)
        rep = result.report
        assert rep.rows_read == rep.rows_kept + rep.rows_rejected
        return result

    return run
