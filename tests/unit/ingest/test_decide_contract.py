"""``decide_contract`` gives the contract ``ingest_file`` reads a file with, and the file
errors that reject it before its rows are read (the fan-out decides an upload's contract
with it on the upload's head)."""

from __future__ import annotations

from pathlib import Path

from custseg.ingest.contracts import Contract
from custseg.ingest.pipeline import decide_contract, ingest_file

ORDERS = Path(__file__).resolve().parents[2] / "fixtures" / "online_retail_invoices.csv"


def _head(tmp: Path, records: int) -> Path:
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp / "orders.csv"
    path.write_text("".join(lines[: records + 1]), encoding="utf-8")
    return path


def test_the_decided_contract_is_the_ingests(tmp_path: Path) -> None:
    path = _head(tmp_path, 500)
    contract, errors = decide_contract(path, source_name="orders.csv")
    result = ingest_file(path, tmp_path / "out", source_name="orders.csv", dataset="d", run_id="r")
    assert errors == [] and result.status == "accepted"
    assert contract == result.contract and contract.kind == "transactions"


def test_a_known_contract_that_names_every_header_is_used(tmp_path: Path) -> None:
    history, _ = decide_contract(_head(tmp_path, 500), source_name="orders.csv")
    two = tmp_path / "two.csv"
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    customers: dict[str, str] = {}
    for line in lines[1:]:  # one line of each of the first two customers
        if line.split(",")[2] and len(customers) < 2:
            customers.setdefault(line.split(",")[2], line)
    two.write_text(lines[0] + "".join(customers.values()), encoding="utf-8")
    alone, _ = decide_contract(two, source_name="two.csv")
    known, _ = decide_contract(two, source_name="two.csv", known=[history])
    assert alone.kind != "transactions"  # two lines alone do not read as an order log
    assert known == history


def test_a_file_rejected_before_its_rows_gives_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("justonecolumn\n1\n2\n", encoding="utf-8")
    _, errors = decide_contract(path, source_name="incoming/shop/one.csv")
    assert [e["code"] for e in errors] == ["no_delimiter"]
    assert errors[0]["message"].startswith("incoming/shop/one.csv: no delimiter found")
    given = Contract.model_validate(
        {
            "kind": "customers",
            "grain": "customer",
            "columns": [
                {"name": "customer_id", "type": "id", "role": "customer_id", "required": True}
            ],
        }
    )
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    _, errors = decide_contract(path, source_name="x.csv", contract=given)
    assert errors and errors[0]["code"] == "no_customer_id", errors
