"""A file too large for one function is refused before any work, naming the limit."""

from __future__ import annotations

import gzip
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
    # no work was started: no clean data (the dataset's folder is claimed, see
    # ingest_job.claim_folder), no download of the upload by the function
    clean = s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="clean/").get("Contents", [])
    assert [o["Key"] for o in clean] == ["clean/telco/folder.json"]
    gets = [
        c for c in stack.calls if c[1] == "GetObject" and c[2]["Key"] == "incoming/telco/telco.csv"
    ]
    assert gets == []


def test_an_invalid_dataset_contract_rejects_the_file_with_a_report(
    stack: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "shop.yaml"
    bad.write_text("kind: shop\ngrain: customer\ncolumns: []\n", encoding="utf-8")
    stack.put_contract("shop", bad)
    stack.upload(FIXTURES / "mall_customers.csv", "incoming/shop/mall.csv")
    invocations = stack.drain()
    assert [(i.function, i.error) for i in invocations] == [("IngestFunction", None)]
    outcome = invocations[0].result["results"][0]
    assert outcome["status"] == "rejected"
    assert "contracts/shop.yaml" in outcome["message"] and "customer_id" in outcome["message"]
    s3 = stack.client("s3")
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="rejected/shop/")["Contents"]
    ]
    assert any(k.endswith("/original/mall.csv") for k in keys)
    error = next(k for k in keys if k.endswith("error.json"))
    report = json.loads(s3.get_object(Bucket=stack.data_bucket, Key=error)["Body"].read())
    assert report["file_errors"] == ["bad_contract"]


def test_gzip_expanding_beyond_the_limit_ends_in_a_rejection_report(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Measured while decompressing: the 40 KB upload passes MaxInputMiB, its 3 MB of
    rows do not pass MaxDecompressedMiB; the function finishes (no retry, no DLQ)."""
    monkeypatch.setenv("MAX_DECOMPRESSED_MIB", "1")
    runtime.reset()
    body = b"customer_id,age\n" + b"".join(b"C%07d,%d\n" % (i, 20 + i % 50) for i in range(250_000))
    upload = tmp_path / "big.csv.gz"
    upload.write_bytes(gzip.compress(body))
    stack.upload(upload, "incoming/telco/big.csv.gz")
    invocations = stack.drain()
    assert [(i.function, i.error) for i in invocations] == [("IngestFunction", None)]
    outcome = invocations[0].result["results"][0]
    assert outcome["status"] == "rejected"
    assert "decompresses to more than 1 MiB (MaxDecompressedMiB)" in outcome["message"]
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="rejected/telco/")
    keys = [o["Key"] for o in listed["Contents"]]
    assert any(k.endswith("/original/big.csv.gz") for k in keys)
    error = next(k for k in keys if k.endswith("error.json"))
    report = json.loads(s3.get_object(Bucket=stack.data_bucket, Key=error)["Body"].read())
    assert report["file_errors"] == ["too_large"]
    clean = s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="clean/").get("Contents", [])
    assert [o["Key"] for o in clean if not o["Key"].endswith("/folder.json")] == []
