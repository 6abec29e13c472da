"""The template is read correctly, and the emulated stack is wired from it."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from custseg.local.template import stack_spec


def test_stack_spec_reads_functions_triggers_and_names() -> None:
    spec = stack_spec()
    assert set(spec.functions) == {
        "IngestFunction",
        "ScoreFunction",
        "TrainFunction",
        "RescoreFunction",
    }
    assert spec.buckets["DataBucket"] == "custseg-local-data-123456789012-us-east-1"
    assert spec.functions["IngestFunction"].handler == "functions.ingest.app.lambda_handler"
    score = spec.functions["ScoreFunction"]
    assert [(t.prefix, t.suffix) for t in score.s3_triggers] == [("clean/", "_manifest.json")]
    assert [r.pattern["detail-type"] for r in score.rules] == [["Model Promoted"]]
    train = {r.name: r.enabled for r in spec.functions["TrainFunction"].rules}
    assert train == {
        "TrainFunction-TrainingRequested": True,
        "TrainFunction-RetrainRecommended": False,  # disabled by default (parameter)
    }
    assert spec.functions["RescoreFunction"].schedules == ["cron(0 5 * * ? *)"]
    env = spec.functions["IngestFunction"].environment
    assert env["EVENT_BUS_NAME"] == "custseg-local"
    assert env["IDEMPOTENCY_TABLE"] == "custseg-local-idempotency"


def test_parameters_can_enable_drift_retraining() -> None:
    spec = stack_spec(overrides={"EnableDriftRetraining": "true"})
    assert all(r.enabled for r in spec.functions["TrainFunction"].rules)


def test_uploads_reach_the_ingest_queue_url_encoded(stack) -> None:  # type: ignore[no-untyped-def]
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.data_bucket, Key="incoming/shop/My File été.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=stack.data_bucket, Key="clean/shop/r1/data.parquet", Body=b"x")
    events = stack.receive("IngestFunction")
    assert len(events) == 1
    record = events[0]["Records"][0]
    assert record["s3"]["object"]["key"] == "incoming/shop/My+File+%C3%A9t%C3%A9.csv"
    assert unquote_plus(record["s3"]["object"]["key"]) == "incoming/shop/My File été.csv"
    assert record["s3"]["object"]["versionId"]  # the data bucket is versioned
    assert record["eventName"].startswith("ObjectCreated:")
    # only a clean-run manifest triggers scoring, not the data file beside it
    assert stack.receive("ScoreFunction") == []
    s3.put_object(Bucket=stack.data_bucket, Key="clean/shop/r1/_manifest.json", Body=b"{}")
    assert len(stack.receive("ScoreFunction")) == 1


def test_custom_events_follow_the_rules(stack) -> None:  # type: ignore[no-untyped-def]
    events = stack.client("events")
    for detail_type in ("Model Promoted", "Training Requested", "Retrain Recommended"):
        events.put_events(
            Entries=[
                {
                    "Source": "custseg",
                    "DetailType": detail_type,
                    "Detail": json.dumps({"dataset": "shop"}),
                    "EventBusName": stack.spec.event_bus,
                }
            ]
        )
    assert [e["detail-type"] for e in stack.receive("ScoreFunction")] == ["Model Promoted"]
    # the drift rule is disabled by default: only the training request arrives
    assert [e["detail-type"] for e in stack.receive("TrainFunction")] == ["Training Requested"]
