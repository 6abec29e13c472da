"""Run the whole flow on the emulated stack, exactly as deployed, and summarise it.

``run_local`` uploads a file to ``incoming/<dataset>/`` of an in-process moto S3 built
from the template, lets the functions react (ingest -> score -> no champion -> train ->
promote -> score), then writes every object of every bucket under ``out/<bucket>/<key>``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custseg.layout import dataset_name, results_latest_key

STEP_NAMES = {
    "IngestFunction": "validating and cleaning",
    "ScoreFunction": "scoring customers",
    "TrainFunction": "training a segmentation model",
    "RescoreFunction": "rescoring",
}


@dataclass
class RunSummary:
    dataset: str
    out_dir: Path
    status: str  # committed | rejected | failed
    quality: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
    assignments_path: Path | None = None
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)


def _print_step(echo: Callable[[str], None]) -> Callable[[str, dict[str, Any]], None]:
    started = time.monotonic()

    def progress(function: str, event: dict[str, Any]) -> None:
        elapsed = time.monotonic() - started
        what = STEP_NAMES.get(function, function)
        detail = ""
        if "Records" in event:
            from urllib.parse import unquote_plus

            detail = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
        elif "detail-type" in event:
            detail = event["detail-type"]
        echo(f"  [{elapsed:6.1f}s] {what}: {detail}")

    return progress


def run_local(
    input_path: Path,
    *,
    dataset: str | None = None,
    contract_path: Path | None = None,
    as_of: dt.date | None = None,
    out_dir: Path = Path("custseg-out"),
    echo: Callable[[str], None] = print,
    extra_uploads: list[tuple[Path, str]] | None = None,
    fanout_ranges: int | None = None,
) -> list[RunSummary]:
    """Run the flow for ``input_path`` (and any ``extra_uploads`` as (path, dataset)).

    ``fanout_ranges``: every upload takes the fan-out path (the template's state machine
    on :mod:`custseg.local.asl`), cut into about that many ranges (docs/fanout.md)."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    uploads = [(input_path, dataset or dataset_name(_stem(input_path)))]
    uploads += [(p, d) for p, d in (extra_uploads or [])]
    out_dir.mkdir(parents=True, exist_ok=True)
    for bucket_dir in out_dir.glob("custseg-local-*"):
        shutil.rmtree(bucket_dir)
    log_path = out_dir / "handler-logs.jsonl"
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log, mock_aws():
        stack = LocalStack(log_stream=log).create()  # type: ignore[arg-type]
        for path, name in uploads:
            if contract_path is not None:
                stack.put_contract(name, contract_path)
            key = f"incoming/{name}/{path.name}"
            echo(f"uploading {path} to s3://{stack.data_bucket}/{key}")
            metadata = {"as-of": as_of.isoformat()} if as_of else None
            stack.upload(path, key, metadata=metadata)
        machine = _force_fanout(stack, input_path, fanout_ranges) if fanout_ranges else None
        invocations = stack.drain(progress=_print_step(echo))
        if machine is not None:
            invocations += _run_fanout(stack, machine, echo)
        failures = [i for i in invocations if i.error]
        echo(f"writing what landed in S3 under {out_dir}/")
        stack.dump(out_dir)
        summaries = [
            _summarise(stack, out_dir, name, time.monotonic() - started, failures, invocations)
            for _, name in uploads
        ]
    return summaries


def _force_fanout(stack: Any, input_path: Path, ranges: int) -> str:
    """Make the fan-out state machine and send every upload to it (threshold 0, ranges
    of a ``ranges``-th of ``input_path``); its ARN. The settings stay for this process."""
    from custseg.local.fanout import run_fanout_executions

    os.environ["FANOUT_THRESHOLD_MIB"] = "0"
    size_mib = input_path.stat().st_size / 1024**2
    os.environ["FANOUT_RANGE_MIB"] = repr(max(size_mib / max(ranges, 1), 1e-6))
    return str(run_fanout_executions(stack, create=True))


def _run_fanout(stack: Any, machine: str, echo: Callable[[str], None]) -> list[Any]:
    """Run the executions the ingest started; their failures as invocations with errors."""
    from custseg.local.fanout import run_fanout_executions

    failed = []
    for outcome in run_fanout_executions(stack, state_machine=machine, echo=echo):
        if outcome["status"] != "SUCCEEDED":
            failed.append(_FailedExecution(f"fan-out: {outcome['error']}: {outcome['cause']}"))
    return failed


@dataclass
class _FailedExecution:
    """A failed state machine execution, reported like a failed invocation."""

    error: str
    function: str = "FanoutStateMachine"
    result: dict[str, Any] | None = None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".tsv", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _summarise(
    stack: Any,
    out_dir: Path,
    dataset: str,
    seconds: float,
    failures: list[Any],
    invocations: list[Any],
) -> RunSummary:
    summary = RunSummary(dataset=dataset, out_dir=out_dir, status="failed", seconds=seconds)
    summary.errors = [f.error.strip().splitlines()[-1] for f in failures if f.error]
    for inv in invocations:
        for result in (inv.result or {}).get("results", []):
            if (
                isinstance(result, dict)
                and result.get("dataset") == dataset
                and result.get("message")
            ):
                summary.messages.append(f"{inv.function}: {result['message']}")
    results_dir = out_dir / stack.results_bucket
    data_dir = out_dir / stack.data_bucket
    latest_path = results_dir / results_latest_key(dataset)
    if latest_path.exists():
        latest = json.loads(latest_path.read_text())
        run_dir = results_dir / latest["prefix"]
        summary.status = "committed"
        summary.manifest = json.loads((run_dir / "_manifest.json").read_text())
        summary.metrics = json.loads((run_dir / "metrics.json").read_text())
        summary.profiles = json.loads((run_dir / "profiles.json").read_text())
        summary.quality = json.loads((run_dir / "quality.json").read_text())
        summary.report_path = run_dir / "report.html"
        summary.assignments_path = run_dir / "assignments.csv"
        return summary
    rejected = sorted((data_dir / "rejected" / dataset).glob("*/error.json"))
    if rejected:
        summary.status = "rejected"
        summary.quality = json.loads(rejected[-1].read_text())
        summary.report_path = rejected[-1].with_name("error.txt")
    return summary
