"""Contracts do what docs/contracts.md says: roles, optional blocks, policy enumerations,
errors naming the line and the field (small contract files built here)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from custseg.cli import main
from custseg.ingest.contracts import ContractError, Grain, load_contract
from custseg.ingest.pipeline import ingest_file

ORDER_LOG = textwrap.dedent(
    """\
    kind: orders
    grain: transaction
    columns:
      - {name: cust, type: id, role: customer_id, required: true}
      - {name: day, type: date, role: event_time, required: true}
      - {name: spend_eur, type: float, role: amount}
    """
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_column_with_role_amount_under_its_own_name_is_the_amount(tmp_path: Path) -> None:
    contract = load_contract(ORDER_LOG.encode())
    assert contract.column("amount").aliases[0] == "spend_eur"
    assert contract.column("event_time").aliases[0] == "day"
    data = _write(
        tmp_path,
        "orders.csv",
        "cust,day,spend_eur\n001,2024-01-02,10.5\n002,2024-01-03,20\n001,2024-02-01,5\n",
    )
    result = ingest_file(
        data, tmp_path / "out", source_name="orders.csv", dataset="o", run_id="r", contract=contract
    )
    assert result.status == "accepted"
    assert result.report.rows_kept == 3
    assert result.report.columns_mapped["spend_eur"] == "amount"


def test_a_transaction_contract_without_a_transactions_block_gets_the_defaults() -> None:
    contract = load_contract(ORDER_LOG.encode())
    assert contract.grain == Grain.TRANSACTION
    assert contract.transactions is not None
    assert contract.transactions.returns == "net"
    assert contract.transactions.non_positive_price == "exclude"


def test_two_amount_columns_or_a_clash_with_the_canonical_name_are_refused() -> None:
    two = ORDER_LOG + "  - {name: total, type: float, role: amount}\n"
    with pytest.raises(ContractError, match="role amount is given to 2 columns"):
        load_contract(two.encode())
    clash = ORDER_LOG + "  - {name: amount, type: float, role: numeric}\n"
    with pytest.raises(ContractError, match=r"line 6: columns\[2\] \(spend_eur\)"):
        load_contract(clash.encode())


@pytest.mark.parametrize(
    ("block", "line", "field", "allowed"),
    [
        (
            "  - {name: age, type: integer, role: numeric, out_of_range: clamp}\n",
            7,
            "columns[3] (age).out_of_range",
            "'reject', 'clip' or 'null'",
        ),
        ("transactions:\n  returns: exlude\n", 8, "transactions.returns", "'net' or 'exclude'"),
        (
            "transactions:\n  non_positive_price: drop\n",
            8,
            "transactions.non_positive_price",
            "'exclude' or 'keep'",
        ),
        (
            "transactions:\n  non_positive_quantity: remove\n",
            8,
            "transactions.non_positive_quantity",
            "'exclude' or 'keep'",
        ),
    ],
)
def test_a_policy_typo_is_an_error_naming_line_field_and_allowed_values(
    block: str, line: int, field: str, allowed: str
) -> None:
    with pytest.raises(ContractError) as caught:
        load_contract((ORDER_LOG + block).encode())
    (problem,) = caught.value.problems
    assert problem == f"line {line}: {field}: Input should be {allowed}"


def test_a_grain_typo_names_the_allowed_grains() -> None:
    text = ORDER_LOG.replace("grain: transaction", "grain: transactions")
    with pytest.raises(ContractError) as caught:
        load_contract(text.encode())
    assert caught.value.problems == ["line 2: grain: Input should be 'customer' or 'transaction'"]


def test_the_cli_prints_the_contract_error_with_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = _write(tmp_path, "c.yaml", ORDER_LOG + "transactions:\n  returns: exlude\n")
    data = _write(tmp_path, "orders.csv", "cust,day,spend_eur\n1,2024-01-02,3\n")
    assert main(["validate", str(data), "--contract", str(contract)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"custseg: contract {contract}: invalid: line 8: transactions.returns: "
        "Input should be 'net' or 'exclude'"
    )
