"""The sample events in ``events/`` have AWS's exact shape and drive the real handlers.

Each sample is fed to its function on an emulated ``dev`` stack (the bucket names the
samples carry). Only what cannot match a freshly emulated stack is patched: the object's
version id / ETag / size, and the run id inside clean-manifest keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from custseg.aws.bus import MODEL_PROMOTED, RETRAIN_RECOMMENDED, SOURCE, TRAINING_REQUESTED
from custseg.layout import (
    clean_latest_key,
    dataset_state_key,
    parse_clean_manifest_key,
    parse_state_key,
    parse_upload_key,
)
from custseg.local.template import ACCOUNT_ID, REGION, stack_spec

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
FIXTURES = REPO / "tests" / "fixtures"
SAMPLE_MANIFEST = "clean/shop/20261031T091512Z-3f2a9c1e/_manifest.json"
ENVELOPE = ["version", "id", "detail-type", "source", "account", "time", "region", "resources",
            "detail"]  # fmt: skip


def _load(name: str, manifest_key: str | None = None) -> dict[str, Any]:
    text = (EVENTS / name).read_text(encoding="utf-8")
    if manifest_key:
        text = text.replace(SAMPLE_MANIFEST, manifest_key)
    event: dict[str, Any] = json.loads(text)
    return event


def test_every_sample_is_listed_in_the_readme() -> None:
    readme = (EVENTS / "README.md").read_text(encoding="utf-8")
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert len(names) == 8
    for name in names:
        assert f"`{name}`" in readme
        assert f"-e events/{name}" in readme


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("s3-put-incoming.json", "incoming/"),
        ("s3-put-dataset-state.json", "clean/"),
        ("s3-put-training.json", "training/"),
    ],
)
def test_s3_samples_have_the_shape_s3_sends(name: str, prefix: str) -> None:
    (record,) = _load(name)["Records"]
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == REGION
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["eventTime"])
    for key in ("userIdentity", "requestParameters", "responseElements"):
        assert record[key]
    s3 = record["s3"]
    assert s3["s3SchemaVersion"] == "1.0"
    assert s3["bucket"]["name"] == stack_spec(overrides={"EnvName": "dev"}).buckets["DataBucket"]
    assert s3["bucket"]["arn"] == f"arn:aws:s3:::{s3['bucket']['name']}"
    obj = s3["object"]
    assert {"key", "size", "eTag", "versionId", "sequencer"} <= set(obj)
    assert obj["key"].startswith(prefix)
    assert " " not in obj["key"]  # URL-encoded as S3 sends it


def test_incoming_key_is_url_encoded_with_plus_for_space() -> None:
    (record,) = _load("s3-put-incoming.json")["Records"]
    raw = record["s3"]["object"]["key"]
    assert raw == "incoming/shop/My+File+%C3%A9t%C3%A9.csv"
    upload = parse_upload_key(unquote_plus(raw))
    assert (upload.dataset, upload.filename) == ("shop", "My File été.csv")
    (record,) = _load("s3-put-dataset-state.json")["Records"]
    assert parse_state_key(record["s3"]["object"]["key"]) == "shop"


@pytest.mark.parametrize(
    ("name", "source", "detail_type"),
    [
        ("schedule-rescore.json", "aws.events", "Scheduled Event"),
        ("eventbridge-training-requested.json", SOURCE, TRAINING_REQUESTED),
        ("eventbridge-model-promoted.json", SOURCE, MODEL_PROMOTED),
        ("eventbridge-retrain-recommended.json", SOURCE, RETRAIN_RECOMMENDED),
    ],
)
def test_eventbridge_samples_have_the_envelope(name: str, source: str, detail_type: str) -> None:
    event = _load(name)
    assert list(event) == ENVELOPE
    assert event["version"] == "0"
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", event["id"])
    assert (event["source"], event["detail-type"]) == (source, detail_type)
    assert (event["account"], event["region"]) == (ACCOUNT_ID, REGION)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    if source == "aws.events":
        assert event["detail"] == {}
        (rule,) = event["resources"]
        assert rule.startswith(f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/")
    else:
        assert event["resources"] == []
        assert event["detail"]["dataset"] == "shop"
        assert event["detail"]["clean_manifest_key"] == SAMPLE_MANIFEST


def test_detail_fields_match_what_the_functions_publish() -> None:
    assert set(_load("eventbridge-training-requested.json")["detail"]) >= {
        "dataset", "model", "clean_manifest_key", "reason"}  # fmt: skip
    assert set(_load("eventbridge-model-promoted.json")["detail"]) >= {
        "dataset", "model", "version", "clean_manifest_key", "reason"}  # fmt: skip
    assert set(_load("eventbridge-retrain-recommended.json")["detail"]) >= {
        "dataset", "model", "model_version", "run_id", "features", "reasons"}  # fmt: skip
    assert _load("train-direct.json") == {
        "clean_manifest_key": SAMPLE_MANIFEST,
        "k": 5,
        "promote": True,
    }


# ------------------------------------------------------------------ through the handlers
@pytest.fixture
def dev_stack() -> Iterator[Any]:
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    with mock_aws():
        yield LocalStack(spec=stack_spec(overrides={"EnvName": "dev"})).create()


def _as_uploaded(stack: Any, name: str, path: Path) -> dict[str, Any]:
    """Upload ``path`` to the sample's key; the sample, with that object's version."""
    event = _load(name)
    obj = event["Records"][0]["s3"]["object"]
    key = unquote_plus(obj["key"])
    stack.upload(path, key)
    stack.purge()  # the notification moto queued: the sample is what we deliver
    head = stack.client("s3").head_object(Bucket=stack.data_bucket, Key=key)
    obj.update(
        versionId=head["VersionId"], eTag=head["ETag"].strip('"'), size=head["ContentLength"]
    )
    return event


def _statuses(inv: Any) -> list[str]:
    assert inv.error is None, inv.error
    return [r["status"] for r in inv.result["results"]]


def test_samples_drive_the_real_handlers(dev_stack: Any) -> None:
    stack = dev_stack
    mall = FIXTURES / "mall_customers.csv"
    event = _as_uploaded(stack, "s3-put-incoming.json", mall)
    assert _statuses(stack.invoke("IngestFunction", event)) == ["accepted"]
    latest = json.loads(
        stack.client("s3")
        .get_object(Bucket=stack.data_bucket, Key=clean_latest_key("shop"))["Body"]
        .read()
    )
    manifest_key = latest["manifest_key"]
    assert parse_clean_manifest_key(manifest_key)[0] == "shop"

    event = _load("s3-put-dataset-state.json")
    head = stack.client("s3").head_object(Bucket=stack.data_bucket, Key=dataset_state_key("shop"))
    event["Records"][0]["s3"]["object"].update(versionId=head["VersionId"])
    assert _statuses(stack.invoke("ScoreFunction", event)) == ["no_champion"]
    event = _load("train-direct.json", manifest_key)
    assert _statuses(stack.invoke("TrainFunction", event)) == ["promoted"]
    event = _load("eventbridge-model-promoted.json", manifest_key)
    assert _statuses(stack.invoke("ScoreFunction", event)) == ["committed"]
    event = _load("eventbridge-training-requested.json", manifest_key)
    assert _statuses(stack.invoke("TrainFunction", event)) == ["skipped"]  # a champion exists
    event = _load("eventbridge-retrain-recommended.json", manifest_key)
    assert _statuses(stack.invoke("TrainFunction", event))[0] in {"candidate", "promoted"}
    event = _load("schedule-rescore.json")
    assert _statuses(stack.invoke("RescoreFunction", event)) == ["committed"]
    event = _as_uploaded(stack, "s3-put-training.json", mall)
    assert _statuses(stack.invoke("TrainFunction", event))[0] in {"candidate", "promoted"}
