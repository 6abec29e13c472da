"""``custseg serve``: a real HTTP endpoint (moto server) wired like the deployed stack.

A client that knows nothing of custseg uploads a CSV with plain boto3; the server
delivers the S3 notification and the EventBridge events that follow to the handlers
(ingest -> score -> no champion -> train -> promote -> score) and the committed run
appears under ``segments/<dataset>/``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from custseg.layout import RESULT_FILES, results_latest_key
from custseg.local.server import Schedule, serve
from custseg.local.stack import LocalStack
from custseg.local.template import stack_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MALL = FIXTURES / "mall_customers.csv"
WAIT_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Lines(io.StringIO):
    """A thread-safe enough stdout for the server's progress lines."""

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, _Lines]]:
    port = _free_port()
    ready, stop = threading.Event(), threading.Event()
    out = _Lines()
    touched = [*LocalStack(endpoint_url="http://x").environment()]
    env_before = {name: os.environ.get(name) for name in touched}
    thread = threading.Thread(
        target=serve,
        kwargs={
            "port": port,
            "ready": ready,
            "stop": stop,
            "log_path": tmp_path / "handler-logs.jsonl",
            "out": out,
        },
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(WAIT_SECONDS), f"server did not start:\n{out.getvalue()}"
        yield f"http://127.0.0.1:{port}", out
    finally:
        stop.set()
        thread.join(WAIT_SECONDS)
    assert not thread.is_alive(), "server did not stop"
    # The server leaves the test process as it found it (no endpoint left behind).
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert {name: os.environ.get(name) for name in touched} == env_before


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _wait_for(s3: Any, bucket: str, key: str, out: _Lines) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            if any("FAILED" in line for line in out.lines()):
                break
            time.sleep(0.5)
    pytest.fail(f"no s3://{bucket}/{key} after the flow; server said:\n{out.getvalue()}")


def test_upload_over_http_gives_a_committed_run(server: tuple[str, _Lines], tmp_path: Path) -> None:
    endpoint, out = server
    spec = stack_spec()
    data, results = spec.buckets["DataBucket"], spec.buckets["ResultsBucket"]
    banner = out.getvalue()
    assert data in banner and results in banner
    assert f"aws s3 cp my.csv s3://{data}/incoming/shop/ --endpoint-url {endpoint}" in banner
    assert f"s3://{results}/segments/shop/latest.json - --endpoint-url {endpoint}" in banner

    mall = MALL
    s3 = _s3(endpoint)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {data, results}
    # A key that needs URL-encoding in the S3 event (space, non-ASCII).
    s3.upload_file(str(mall), data, "incoming/mall/Mall Customers été.csv")

    latest = _wait_for(s3, results, results_latest_key("mall"), out)
    manifest = json.loads(s3.get_object(Bucket=results, Key=latest["manifest_key"])["Body"].read())
    assert manifest["run_id"] == latest["run_id"]
    assert manifest["input"]["source"]["key"] == "incoming/mall/Mall Customers été.csv"
    names = {f["name"] for f in manifest["files"]}
    # mall has no churn outcome and no order history: no value at risk to rank
    assert names == set(RESULT_FILES.values()) - {RESULT_FILES["value_at_risk"]}
    body = s3.get_object(
        Bucket=results, Key=latest["prefix"] + RESULT_FILES["assignments_parquet"]
    )["Body"].read()
    assignments = pd.read_parquet(io.BytesIO(body))
    source = pd.read_csv(mall, dtype=str)
    assert assignments["customer_id"].is_unique
    assert set(assignments["customer_id"]) == set(source["CustomerID"])
    assert assignments["segment_id"].notna().all()

    # One line per invocation (printed when it returns), in the order AWS would run them.
    deadline = time.monotonic() + 30
    while True:
        lines = [ln for ln in out.lines() if re.match(r"\d\d:\d\d:\d\d \w+Function ", ln)]
        if len(lines) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    functions = [line.split()[1] for line in lines]
    assert functions[:4] == ["IngestFunction", "ScoreFunction", "TrainFunction", "ScoreFunction"]
    assert "incoming/mall/Mall Customers été.csv" in lines[0]
    assert not any("FAILED" in line for line in lines)


def test_daily_cron_and_rate_schedules() -> None:
    now = dt.datetime(2026, 10, 31, 4, 59, tzinfo=dt.UTC)
    daily = Schedule("cron(0 5 * * ? *)", now)
    assert daily.supported and daily.next_due == now.replace(minute=0, hour=5)
    assert not daily.due(now)
    assert daily.due(now + dt.timedelta(minutes=1))
    assert not daily.due(now + dt.timedelta(minutes=2))  # once per day
    assert daily.next_due == dt.datetime(2026, 11, 1, 5, 0, tzinfo=dt.UTC)
    hourly = Schedule("rate(1 hour)", now)
    assert hourly.due(now + dt.timedelta(hours=1))
    assert not Schedule("cron(0/15 * * * ? *)", now).supported
