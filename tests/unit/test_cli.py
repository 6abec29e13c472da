"""The custseg command: validate's output and exit codes, train's artifact files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custseg.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_validate_accepts_and_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FIXTURES / "telco_customer_churn.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ACCEPTED ")
    assert "7,043 of 7,043 rows kept" in out
    assert "imputed total_charges: 11 value(s) with median" in out


def test_validate_json_is_the_full_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FIXTURES / "mall_customers.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_read"] == report["rows_kept"] + report["rows_rejected"] == 200
    assert report["columns_mapped"]["Genre"] == "gender"


@pytest.mark.parametrize("name", ["empty.csv", "header_only.csv", "no_id.csv"])
def test_validate_exits_non_zero_only_for_a_rejected_file(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(FIXTURES / name)]) == 1
    assert capsys.readouterr().out.startswith(f"REJECTED {FIXTURES / name}")


def test_validate_with_row_errors_still_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FIXTURES / "bad_values.csv")]) == 0
    assert "row 3, column age: not a number" in capsys.readouterr().out


def test_train_writes_the_artifact_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["train", str(FIXTURES / "mall_customers.csv"), "--k", "5", "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "k=5" in out
    (version_dir,) = (tmp_path / "models" / "mall_customers").iterdir()
    meta = json.loads((version_dir / "metadata.json").read_text())
    assert meta["k"] == 5
    assert (version_dir / "model.joblib").stat().st_size > 0
