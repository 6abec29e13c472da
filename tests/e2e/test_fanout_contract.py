"""The fan-out path reads an upload with the contract the single path would: decided once
by ``Split`` on the upload's head, with the dataset's earlier contracts (small uploads
through the fan-out against the single path: tests/e2e/test_fanout_equivalence.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ORDERS = Path(__file__).resolve().parents[1] / "fixtures" / "online_retail_invoices.csv"


def _orders(tmp: Path, records: int) -> Path:
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp / "orders.csv"
    path.write_text("".join(lines[: records + 1]), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_later_fanned_out_upload_is_read_with_the_datasets_earlier_contract(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two order lines of two customers alone read as a customer table; after the
    dataset's order log they read as order lines, on the fan-out path as on the single."""
    from support import get_json, upload_in_a_new_second

    from custseg.local.fanout import run_fanout_executions

    for name in ("FANOUT_THRESHOLD_MIB", "FANOUT_STATE_MACHINE_ARN", "FANOUT_RANGE_MIB"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    history = _orders(tmp_path, 2000)
    stack.upload(history, "incoming/shop/history.csv")
    assert [i.error for i in stack.drain() if i.error] == []
    lines = history.read_text(encoding="utf-8").splitlines(keepends=True)
    day = tmp_path / "day.csv"
    customers: dict[str, str] = {}
    for line in lines[1:]:  # one line of each of the first two customers
        if line.split(",")[2] and len(customers) < 2:
            customers.setdefault(line.split(",")[2], line)
    day.write_text(lines[0] + "".join(customers.values()), encoding="utf-8")
    monkeypatch.setenv("FANOUT_THRESHOLD_MIB", "0")
    monkeypatch.setenv("FANOUT_RANGE_MIB", "0.00001")  # one range per line
    machine = run_fanout_executions(stack, create=True)
    upload_in_a_new_second(stack, day, "incoming/shop/day.csv")
    stack.drain()
    (run,) = run_fanout_executions(stack, state_machine=machine)
    assert run["status"] == "SUCCEEDED", run
    state = get_json(stack, stack.data_bucket, "clean/shop/_state.json") or {}
    assert [p["kind"] for p in state["parts"]] == ["transactions", "transactions"]
    first, second = (p["manifest_key"].rsplit("/", 1)[0] for p in state["parts"])
    contract = get_json(stack, stack.data_bucket, f"{second}/contract.json")
    assert contract == get_json(stack, stack.data_bucket, f"{first}/contract.json")
    manifest = get_json(stack, stack.data_bucket, f"{second}/_manifest.json") or {}
    assert manifest["fanout"] == {"ranges": 2} and manifest["rows"] == 2
