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

FAILED_STATUSES = frozenset({"rejected", "untrainable", "no_data", "refused", "failed", "error"})
"""Statuses of a function's outcome that explain why a run wrote no results."""


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
    problems: list[str] = field(default_factory=list)  # messages of the steps that failed
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # effect.json documents


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
    campaign_dataset: str | None = None,
) -> list[RunSummary]:
    """Run the flow for ``input_path`` (and any ``extra_uploads`` as (path, dataset));
    then, for ``campaign_dataset``, a sample campaign on its scored customers
    (:func:`run_sample_campaign`).

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
        stack = LocalStack(log_stream=log).create()
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
        if campaign_dataset is not None:
            invocations += run_sample_campaign(stack, campaign_dataset, out_dir, echo)
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


def run_sample_campaign(
    stack: Any, dataset: str, out_dir: Path, echo: Callable[[str], None]
) -> list[Any]:
    """Upload a seeded sample campaign (:func:`custseg.local.demo_data.demo_campaign`:
    a known uplift in the two largest segments) for the customers of ``dataset``'s newest
    run, sent now, and let the functions measure it. Returns the invocations."""
    import pandas as pd

    from custseg.layout import RESULT_FILES
    from custseg.local.demo_data import CAMPAIGN_FILE, demo_campaign, write_demo_campaign

    s3 = stack.client("s3")
    try:
        body = s3.get_object(Bucket=stack.results_bucket, Key=results_latest_key(dataset))
    except s3.exceptions.NoSuchKey:
        echo(f"no run of {dataset}: no sample campaign")
        return []
    latest = json.loads(body["Body"].read())
    local = out_dir / "sample-data" / "assignments.parquet"
    local.parent.mkdir(parents=True, exist_ok=True)
    key = latest["prefix"] + RESULT_FILES["assignments_parquet"]
    s3.download_file(stack.results_bucket, key, str(local))
    seg = pd.read_parquet(local, columns=["customer_id", "segment_id"])
    local.unlink()
    frame, chosen = demo_campaign(
        seg["customer_id"], seg["segment_id"], sent=dt.datetime.now(dt.UTC)
    )
    path = write_demo_campaign(out_dir / "sample-data" / CAMPAIGN_FILE, frame)
    echo(f"sample campaign: {path} (uplift injected in segments {chosen})")
    stack.upload(path, f"incoming/{dataset}/{CAMPAIGN_FILE}")
    invocations: list[Any] = stack.drain(progress=_print_step(echo))
    return invocations


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
                step = STEP_NAMES.get(inv.function, inv.function)
                summary.messages.append(f"{step}: {result['message']}")
                if result.get("status") in FAILED_STATUSES:
                    summary.problems.append(f"{step}: {result['message']}")
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
        summary.campaigns = [
            json.loads(p.read_text())
            for p in sorted(
                (results_dir / "segments" / dataset / "campaigns").glob("*/effect.json")
            )
        ]
        return summary
    rejected = sorted((data_dir / "rejected" / dataset).glob("*/error.json"))
    if rejected:
        summary.status = "rejected"
        summary.quality = json.loads(rejected[-1].read_text())
        summary.report_path = rejected[-1].with_name("error.txt")
        return summary
    cleaned = sorted((data_dir / "clean" / dataset).glob("*/quality.json"))
    if cleaned:
        summary.quality = json.loads(cleaned[-1].read_text())
    summary.report_path = write_failure_report(summary)
    return summary


def failure_reasons(summary: RunSummary) -> list[str]:
    """Why a run wrote no results: the functions' errors and their messages, or, when
    they left none, where to look. Never empty."""
    reasons = [*summary.errors, *summary.problems] or summary.messages[-1:]
    if not reasons:
        reasons = [
            "no function reported a reason; see "
            f"{summary.out_dir / 'handler-logs.jsonl'} for each step's log"
        ]
    return reasons


def write_failure_report(summary: RunSummary) -> Path:
    """``<out>/<dataset>-failure.txt``: the run's status, reasons and what ingest kept."""
    q = summary.quality
    lines = [f"{summary.dataset}: {summary.status}, no results were written", "", "Reasons:"]
    lines += [f"- {reason}" for reason in failure_reasons(summary)]
    if q:
        lines += [
            "",
            f"Ingest: {q.get('rows_read', 0):,} rows read, {q.get('rows_kept', 0):,} kept, "
            f"{q.get('rows_rejected', 0):,} rejected "
            f"(contract {(q.get('contract') or {}).get('kind', 'n/a')}).",
        ]
    path = summary.out_dir / f"{summary.dataset}-failure.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
