"""The whole flow on the emulated stack, with S3 events delivered as AWS delivers them."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import upload_in_a_new_second

from custseg.layout import RESULT_FILES, results_latest_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _get(stack: Any, bucket: str, key: str) -> bytes:
    return stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def _json(stack: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(_get(stack, bucket, key))


def _keys(stack: Any, bucket: str, prefix: str = "") -> list[str]:
    resp = stack.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def _assignments(stack: Any, prefix: str) -> pd.DataFrame:
    key = prefix + RESULT_FILES["assignments_parquet"]
    return pd.read_parquet(io.BytesIO(_get(stack, stack.results_bucket, key)))


def _upload_and_run(stack: Any, path: Path, key: str) -> list[Any]:
    upload_in_a_new_second(stack, path, key)  # a later upload is a later run
    return stack.drain()


def test_upload_to_committed_run_with_every_output(stack: Any) -> None:
    mall = FIXTURES / "mall_customers.csv"
    invocations = _upload_and_run(stack, mall, "incoming/mall/My File.csv")
    assert [i.error for i in invocations if i.error] == []
    # ingest -> score (no champion) -> train -> score
    assert [i.function for i in invocations] == [
        "IngestFunction",
        "ScoreFunction",
        "TrainFunction",
        "ScoreFunction",
    ]
    latest = _json(stack, stack.results_bucket, results_latest_key("mall"))
    manifest = _json(stack, stack.results_bucket, latest["manifest_key"])
    assert manifest["run_id"] == latest["run_id"]
    assert manifest["input"]["source"]["key"] == "incoming/mall/My File.csv"
    names = {f["name"] for f in manifest["files"]}
    # mall has no churn outcome and no order history: no value at risk to rank
    assert names == set(RESULT_FILES.values()) - {RESULT_FILES["value_at_risk"]}
    for entry in manifest["files"]:
        body = _get(stack, stack.results_bucket, entry["key"])
        assert len(body) == entry["size"]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    parquet = _assignments(stack, latest["prefix"])
    assert len(parquet) == 200
    assert parquet["customer_id"].is_unique
    assert parquet["model_version"].nunique() == 1
    csv_key = latest["prefix"] + RESULT_FILES["assignments_csv"]
    csv = pd.read_csv(
        io.BytesIO(_get(stack, stack.results_bucket, csv_key)),
        dtype={"customer_id": str},
    )
    assert sorted(csv["customer_id"]) == sorted(parquet["customer_id"])
    # the current/ copy mirrors the newest run
    current = _keys(stack, stack.results_bucket, "segments/mall/current/")
    assert "segments/mall/current/_manifest.json" in current
    # the upload is untouched
    original = (FIXTURES / "mall_customers.csv").read_bytes()
    assert _get(stack, stack.data_bucket, "incoming/mall/My File.csv") == original


def test_redelivered_events_create_no_second_run(stack: Any) -> None:
    delivered: list[tuple[str, dict[str, Any]]] = []
    stack.upload(FIXTURES / "mall_customers.csv", "incoming/mall/mall.csv")
    stack.drain(progress=lambda fn, ev: delivered.append((fn, copy.deepcopy(ev))))
    before = {
        b: _keys(stack, b) for b in (stack.data_bucket, stack.results_bucket, stack.artifact_bucket)
    }
    manifests_before = [k for k in before[stack.results_bucket] if k.endswith("_manifest.json")]
    # S3 delivers at least once: deliver every event again
    for function, event in delivered:
        inv = stack.invoke(function, event)
        assert inv.error is None
    stack.drain()
    after = {
        b: _keys(stack, b) for b in (stack.data_bucket, stack.results_bucket, stack.artifact_bucket)
    }
    manifests_after = [k for k in after[stack.results_bucket] if k.endswith("_manifest.json")]
    assert manifests_after == manifests_before
    assert after[stack.data_bucket] == before[stack.data_bucket]
    latest = _json(stack, stack.results_bucket, results_latest_key("mall"))
    parquet = _assignments(stack, latest["prefix"])
    assert len(parquet) == 200 and parquet["customer_id"].is_unique


def test_file_rejected_as_a_whole_is_copied_with_its_report(stack: Any) -> None:
    header_only = FIXTURES / "header_only.csv"
    invocations = _upload_and_run(stack, header_only, "incoming/shop/header only.csv")
    assert [i.function for i in invocations] == ["IngestFunction"]
    assert invocations[0].error is None  # bad input never escapes the handler
    keys = _keys(stack, stack.data_bucket, "rejected/shop/")
    assert any(k.endswith("/original/header only.csv") for k in keys)
    error_key = next(k for k in keys if k.endswith("/error.json"))
    report = _json(stack, stack.data_bucket, error_key)
    assert report["status"] == "rejected"
    assert "header_only" in report["file_errors"]
    assert any("header only.csv" in e["message"] for e in report["errors"])
    # no clean data; the folder owns its dataset (see ingest_job.claim_folder)
    assert _keys(stack, stack.data_bucket, "clean/") == ["clean/shop/folder.json"]
    assert _keys(stack, stack.results_bucket) == []


def test_upload_outside_a_dataset_folder_is_accounted_for(stack: Any) -> None:
    invocations = _upload_and_run(stack, FIXTURES / "mall_customers.csv", "incoming/mall.csv")
    assert invocations[0].error is None
    keys = _keys(stack, stack.data_bucket, "rejected/_unsorted/")
    assert any(k.endswith("/original/mall.csv") for k in keys)


@pytest.mark.slow
def test_scheduled_rescore_moves_recency_labels_not_the_model(stack: Any, tmp_path: Path) -> None:
    # the first 6,000 invoices of the online retail file (Dec 2010 - Mar 2011)
    lines = (FIXTURES / "online_retail_invoices.csv").read_text(encoding="utf-8").splitlines()
    excerpt = tmp_path / "orders.csv"
    excerpt.write_text("\n".join(lines[:6001]) + "\n", encoding="utf-8")
    _upload_and_run(stack, excerpt, "incoming/orders/orders.csv")
    latest = _json(stack, stack.results_bucket, results_latest_key("orders"))
    first = _assignments(stack, latest["prefix"])
    models_before = _keys(stack, stack.artifact_bucket)
    data_before = _keys(stack, stack.data_bucket)
    # the schedule fires after the upload (pointers only move forward in time)
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    invocations = stack.tick(later)
    assert [i.error for i in invocations if i.error] == []
    latest2 = _json(stack, stack.results_bucket, results_latest_key("orders"))
    assert latest2["run_id"] != latest["run_id"]
    second = _assignments(stack, latest2["prefix"])
    assert (second["as_of"] == later.date()).all()
    merged = first.merge(second, on="customer_id", suffixes=("_1", "_2"))
    assert len(merged) == len(first) == len(second)
    assert (merged["model_version_1"] == merged["model_version_2"]).all()
    changed = (merged["rfm_segment_1"] != merged["rfm_segment_2"]) | (
        merged["lifecycle_stage_1"] != merged["lifecycle_stage_2"]
    )
    assert changed.any()
    lapsed_before = (first["lifecycle_stage"] == "lapsed").mean()
    assert (second["lifecycle_stage"] == "lapsed").mean() > lapsed_before
    assert _keys(stack, stack.artifact_bucket) == models_before
    assert _keys(stack, stack.data_bucket) == data_before


def test_drifted_upload_is_judged_retrain_and_announced(stack: Any, tmp_path: Path) -> None:
    sqs, events = stack.client("sqs"), stack.client("events")
    url = sqs.create_queue(QueueName="retrain-watch")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    events.put_rule(
        Name="watch",
        EventBusName=stack.spec.event_bus,
        EventPattern=json.dumps({"source": ["custseg"], "detail-type": ["Retrain Recommended"]}),
    )
    events.put_targets(
        Rule="watch",
        EventBusName=stack.spec.event_bus,
        Targets=[{"Id": "w", "Arn": arn["QueueArn"]}],
    )
    _upload_and_run(stack, FIXTURES / "mall_customers.csv", "incoming/mall/mall.csv")
    first = _json(stack, stack.results_bucket, results_latest_key("mall"))
    metrics = _json(stack, stack.results_bucket, first["prefix"] + "metrics.json")
    assert metrics["verdict"] == "ok"

    shifted = pd.read_csv(FIXTURES / "mall_customers.csv")
    shifted["Annual_Income"] = (shifted["Annual_Income"] * 1.4).round(1)
    path = tmp_path / "mall_shifted.csv"
    shifted.to_csv(path, index=False)
    _upload_and_run(stack, path, "incoming/mall/mall_shifted.csv")
    second = _json(stack, stack.results_bucket, results_latest_key("mall"))
    assert second["run_id"] != first["run_id"]
    metrics = _json(stack, stack.results_bucket, second["prefix"] + "metrics.json")
    assert metrics["verdict"] == "retrain"
    assert any("income" in reason for reason in metrics["reasons"])
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(msgs) == 1
    detail = json.loads(msgs[0]["Body"])["detail"]
    assert detail["dataset"] == "mall"
    assert detail["features"][0] == "annual_income"
    # the model is not replaced by itself: the drift rule is disabled by default
    assert second["model_version"] == first["model_version"]
