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


@pytest.mark.parametrize("name", ["empty.csv", "header_only.csv"])
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


def test_train_on_an_order_log_fits_the_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = str(FIXTURES / "online_retail_invoices.csv")
    assert main(["train", orders, "--k", "3", "--out", str(tmp_path)]) == 0
    assert "predictions: BG/NBD + Gamma-Gamma fitted on 4,338 customers" in capsys.readouterr().out
    (version_dir,) = (tmp_path / "models" / "online_retail_invoices").iterdir()
    meta = json.loads((version_dir / "metadata.json").read_text())
    assert meta["predictions"]["clv"]["bgnbd"]["r"] > 0


# ------------------------------------------------------------------------------ failures
MALL = str(FIXTURES / "mall_customers.csv")


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], code: int, message: str) -> None:
    """``custseg argv`` exits ``code`` with exactly ``message`` as one stderr line."""
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert err.splitlines() == [message]


@pytest.mark.parametrize("command", ["validate", "train", "run"])
def test_a_missing_input_file_is_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    _fails([command, str(missing)], capsys, 2, f"custseg: {missing}: no such file")


def test_an_unknown_as_of_format_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", MALL, "--as-of", "2024/01/31", "--out", str(tmp_path)]
    _fails(argv, capsys, 2, "custseg: --as-of '2024/01/31': not a date; use YYYY-MM-DD")
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "no such file"),
        ("columns: [\n", "not YAML: line 2, column 1: did not find expected node content"),
        ("\xff\xfe", "not a text file (UTF-8 YAML expected)"),
        (
            "kind: shop\ngrain: customer\ncolumns: []\n",
            "invalid: line 3: columns: a contract needs one column with role customer_id",
        ),
        ("just a word\n", "invalid: line 1: a contract is a mapping (kind:, grain:, columns:)"),
        (
            "kind: shop\ngrain: customer\ncolumns:\n"
            "  - {name: id, role: customer_id, type: nope}\n",
            "invalid: line 4: columns[0] (id).type: Input should be",
        ),
    ],
)
@pytest.mark.parametrize("command", ["validate", "train", "run"])
def test_a_bad_contract_file_is_one_line_naming_the_file(
    command: str,
    text: str | None,
    problem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    contract = tmp_path / "shop.yaml"
    if text is not None:
        contract.write_bytes(text.encode("latin-1"))
    out = tmp_path / "out"
    argv = [command, MALL, "--contract", str(contract)]
    assert main(argv if command == "validate" else [*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    (line,) = captured.err.splitlines()
    assert line.startswith(f"custseg: contract {contract}: {problem}")
    assert not out.exists()  # refused before anything ran


def test_a_file_name_that_gives_no_dataset_name_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "!!!.csv"
    odd.write_bytes((FIXTURES / "mall_customers.csv").read_bytes())
    message = f"custseg: {odd}: its name gives no dataset name; name one with --dataset NAME"
    for command in ("validate", "train", "run"):
        _fails([command, str(odd)], capsys, 2, message)
    assert main(["validate", str(odd), "--dataset", "mall"]) == 0


def test_a_bad_dataset_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    message = "custseg: --dataset '???': not a dataset name (use letters, digits, _ and -)"
    _fails(["validate", MALL, "--dataset", "???"], capsys, 2, message)


def test_ctrl_c_anywhere_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import custseg.ingest.pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(custseg.ingest.pipeline, "ingest_file", interrupted)
    _fails(["validate", MALL], capsys, 130, "custseg: interrupted")


def test_an_unexpected_error_is_one_line_and_its_traceback_only_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import custseg.ingest.pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full\nwhile writing")

    monkeypatch.setattr(custseg.ingest.pipeline, "ingest_file", broken)
    monkeypatch.delenv("CUSTSEG_DEBUG", raising=False)
    _fails(["validate", MALL], capsys, 1, "custseg: OSError: disk full while writing")
    monkeypatch.setenv("CUSTSEG_DEBUG", "1")
    assert main(["validate", MALL]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("custseg: OSError: disk full while writing\n")


def test_serve_stopped_by_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import custseg.local.server

    monkeypatch.setattr(custseg.local.server, "serve", lambda **kwargs: True)
    _fails(["serve"], capsys, 130, "custseg: interrupted")
    monkeypatch.setattr(custseg.local.server, "serve", lambda **kwargs: False)
    assert main(["serve"]) == 0


def test_infer_prints_an_editable_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "orders.csv"
    src.write_text(
        "Cust,Date,CDs,Dollars\n00001,19970101,1,11.77\n00002,19970112,1,12.00\n"
        "00002,19970112,5,77.00\n00003,19970102,2,20.76\n00003,19970330,2,20.76\n",
        encoding="utf-8",
    )
    assert main(["infer", str(src)]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "c.yaml").write_text(printed, encoding="utf-8")
    from custseg.ingest.contracts import load_contract

    contract = load_contract(tmp_path / "c.yaml")
    assert contract.grain == "transaction"
    assert contract.column("amount").aliases == ["Dollars"]
    assert main(["infer", str(src), "--json"]) == 0
    columns = json.loads(capsys.readouterr().out)["columns"]
    assert [c["role"] for c in columns] == ["customer_id", "event_time", "numeric", "amount"]


def test_infer_names_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "empty.csv"
    src.write_bytes(b"")
    assert main(["infer", str(src)]) == 2
    assert capsys.readouterr().err.startswith(f"custseg: {src}: ")


def test_a_run_that_cannot_train_prints_why_and_writes_it_in_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "ids_only.csv"
    rows = [f"{i:04d},{'uk' if i % 2 else 'fr'}" for i in range(40)]
    data.write_text("customer_id,country\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(data), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    reason = "training a segmentation model: cannot train ids_only: no features to train on"
    assert f"  failed: {reason}" in printed
    assert "rows read 40 / kept 40 / rejected 0" in printed
    report = out / "ids_only-failure.txt"
    assert f"error report: {report}" in printed
    assert f"- {reason}" in report.read_text(encoding="utf-8")


def test_the_summary_prints_the_verdicts_reasons_and_each_segments_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from custseg.cli import print_summary
    from custseg.local.flow import RunSummary

    reason = "14% of the uploaded rows were rejected at ingest (mostly 3,722 x customer_id: ..."
    summary = RunSummary(
        dataset="shop",
        out_dir=tmp_path,
        status="committed",
        metrics={"verdict": "watch", "reasons": [reason]},
        profiles={"segments": [{"name": "Lapsed", "size": 5, "action": "win back", "rank": 2}]},
    )
    print_summary(summary)
    out = capsys.readouterr().out
    assert f"verdict: watch\n  - {reason}\n" in out
    assert "    action: win back (target rank 2)" in out
