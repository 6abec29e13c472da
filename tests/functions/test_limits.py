"""A file too large for one function is refused before any work, naming the limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from custseg.aws import runtime

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_too_large_upload_is_refused_up_front(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_INPUT_MIB", "0.5")  # the telco file is ~0.93 MiB
    runtime.reset()
    stack.upload(FIXTURES / "telco_customer_churn.csv", "incoming/telco/telco.csv")
    invocations = stack.drain()
    assert [i.function for i in invocations] == ["IngestFunction"]
    assert invocations[0].error is None
    outcome = invocations[0].result["results"][0]
    assert outcome["status"] == "rejected"
    assert "limit of 0 MiB" not in outcome["message"]  # the limit is stated as set
    assert "MaxInputMiB" in outcome["message"]
    assert "Split it into several files" in outcome["message"]
    s3 = stack.client("s3")
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="rejected/telco/")["Contents"]
    ]
    error = next(k for k in keys if k.endswith("error.json"))
    report = json.loads(s3.get_object(Bucket=stack.data_bucket, Key=error)["Body"].read())
    assert report["errors"][0]["code"] == "too_large"
    assert any(k.endswith("/original/telco.csv") for k in keys)
    # no work was started: no clean data, no download of the upload by the function
    assert "Contents" not in s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="clean/")
    gets = [
        c for c in stack.calls if c[1] == "GetObject" and c[2]["Key"] == "incoming/telco/telco.csv"
    ]
    assert gets == []
