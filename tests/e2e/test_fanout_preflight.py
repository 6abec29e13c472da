"""An upload the single path refuses before reading it (folder claim, contract, as-of and
mode metadata) is refused the same way when its size sends it to the fan-out (threshold
forced to 0): the same outcome and rejection report, the upload copied beside it, and
no state machine execution started."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from custseg.layout import contract_key, dataset_folder_key

ORDERS = Path(__file__).resolve().parents[1] / "fixtures" / "online_retail_invoices.csv"


def _orders(tmp: Path, records: int = 300) -> Path:
    lines = ORDERS.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp / "orders.csv"
    path.write_text("".join(lines[: records + 1]), encoding="utf-8")
    return path


def _force_fanout(stack: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Send every later upload to the fan-out (threshold 0; the environment restored
    after the test); the state machine's ARN."""
    from custseg.local.fanout import run_fanout_executions

    for name in ("FANOUT_THRESHOLD_MIB", "FANOUT_STATE_MACHINE_ARN"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setenv("FANOUT_THRESHOLD_MIB", "0")
    return str(run_fanout_executions(stack, create=True))


def _prepare(stack: Any, dataset: str, check: str) -> dict[str, str]:
    """What makes the upload to ``dataset`` fail ``check``: its metadata, or an object
    written beforehand."""
    s3 = stack.client("s3")
    if check == "folder":
        record = {"dataset": dataset, "folder": f"{dataset.upper()}", "prefix": "incoming/"}
        s3.put_object(
            Bucket=stack.data_bucket, Key=dataset_folder_key(dataset), Body=json.dumps(record)
        )
    if check == "contract":
        s3.put_object(
            Bucket=stack.artifact_bucket, Key=contract_key(dataset), Body=b"kind: [not, valid"
        )
    return {"as_of": {"as-of": "31/12/2024"}, "late": {"as-of": "2999-01-01"}}.get(
        check, {"mode": "merge"} if check == "mode" else {}
    )


def _upload(stack: Any, orders: Path, dataset: str, check: str) -> tuple[dict, dict, str]:
    """(the ingest outcome, the rejection report, its text), dataset names replaced."""
    metadata = _prepare(stack, dataset, check)
    stack.upload(orders, f"incoming/{dataset}/orders.csv", metadata=metadata)
    (outcome,) = [
        r for i in stack.drain() if i.function == "IngestFunction" for r in i.result["results"]
    ]
    s3 = stack.client("s3")
    prefix = outcome["rejected_prefix"]
    assert prefix is not None, outcome
    keys = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.data_bucket, Prefix=prefix).get("Contents", [])
    }
    assert prefix + "original/orders.csv" in keys and prefix + "_manifest.json" in keys

    def text(name: str) -> str:
        body = s3.get_object(Bucket=stack.data_bucket, Key=prefix + name)["Body"].read()
        return body.decode().replace(outcome["run_id"], "<run>")

    anonymous = {**outcome, "run_id": "<run>"}
    anonymous["rejected_prefix"] = prefix.replace(outcome["run_id"], "<run>")
    swap = [(dataset, "<dataset>"), (dataset.upper(), "<DATASET>")]
    out = json.dumps(anonymous), text("error.json"), text("error.txt")
    for old, new in swap:
        out = tuple(s.replace(old, new) for s in out)
    return json.loads(out[0]), json.loads(out[1]), out[2]


@pytest.mark.parametrize("check", ["folder", "contract", "as_of", "late", "mode"])
def test_an_upload_refused_before_reading_is_refused_alike_on_the_fanout_path(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, check: str
) -> None:
    orders = _orders(tmp_path)
    single = _upload(stack, orders, "single", check)
    machine = _force_fanout(stack, monkeypatch)
    fanned = _upload(stack, orders, "fanned", check)
    assert single[0]["status"] == "rejected"
    assert fanned == single
    assert (
        stack.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"] == []
    )


def test_an_upload_that_passes_the_checks_starts_one_execution_with_its_run_id(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    machine = _force_fanout(stack, monkeypatch)
    stack.upload(_orders(tmp_path), "incoming/shop/orders.csv", metadata={"mode": " Replace "})
    (outcome,) = [
        r for i in stack.drain() if i.function == "IngestFunction" for r in i.result["results"]
    ]
    assert outcome["status"] == "fanned_out"
    sfn = stack.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    job = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])["job"]
    assert job["mode"] == "replace" and execution["name"] == job["run_id"]
    assert (
        json.loads(
            stack.client("s3")
            .get_object(Bucket=stack.data_bucket, Key=dataset_folder_key("shop"))["Body"]
            .read()
        )["folder"]
        == "shop"
    )


UNREADABLE = {
    "no_delimiter": b"customer\n" + b"".join(b"c%d\n" % i for i in range(300)),
    "undecodable": b"id,amount\n" + b"\x00\x01\x02\xff,\x00\x7f\n" * 300,
    "zip": b"PK\x03\x04" + bytes(range(256)) * 4,
    "empty_file": b"",
}


def _report(stack: Any, tmp: Path, dataset: str, body: bytes) -> tuple[dict, dict, str]:
    path = tmp / dataset / "orders.csv"
    path.parent.mkdir()
    path.write_bytes(body)
    outcome, report, text = _upload(stack, path, dataset, "none")
    report.pop("timings_ms")  # how long each step took
    # the upload's time, and the date bounds from it: the two uploads may be seconds apart
    for key in ("upload_time", "not_after"):
        report["date_bounds"].pop(key)
    return outcome, report, text


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_upload_whose_head_cannot_be_read_is_rejected_alike_before_any_execution(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    single = _report(stack, tmp_path, "single", UNREADABLE[name])
    machine = _force_fanout(stack, monkeypatch)
    fanned = _report(stack, tmp_path, "fanned", UNREADABLE[name])
    code = "undecodable" if name == "zip" else name
    assert single[0]["status"] == "rejected" and single[1]["file_errors"] == [code]
    assert single[0]["rows_read"] == 0 and single[1]["errors"][0]["message"]
    assert fanned == single
    assert (
        stack.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"] == []
    )


def test_a_gzip_upload_without_a_gz_name_takes_the_single_path(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gzip

    machine = _force_fanout(stack, monkeypatch)
    packed = tmp_path / "orders.csv"
    packed.write_bytes(gzip.compress(_orders(tmp_path).read_bytes(), mtime=0))
    stack.upload(packed, "incoming/shop/orders.csv")
    (outcome,) = [
        r for i in stack.drain() if i.function == "IngestFunction" for r in i.result["results"]
    ]
    assert outcome["status"] == "accepted" and outcome["rows_read"] == 300
    executions = stack.client("stepfunctions").list_executions(stateMachineArn=machine)
    assert executions["executions"] == []
