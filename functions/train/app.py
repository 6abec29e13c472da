"""Train: an upload under ``training/<dataset>/``, a ``Training Requested`` / ``Retrain
Recommended`` event, or a direct invoke ``{"clean_manifest_key": ..., "k": 5}`` -> a model
version in the artifact bucket, promoted to champion when it passes the quality gates."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext

from custseg.aws import runtime
from custseg.aws.train_job import TrainOutcome, run_train_on_clean, run_train_on_upload

logger = Logger()
metrics = Metrics()
tracer = Tracer()


def _train(event: dict[str, Any]) -> list[TrainOutcome]:
    store, settings, bus = runtime.store(), runtime.settings(), runtime.bus()
    if "Records" in event:
        return [
            run_train_on_upload(store, settings, bus, bucket=r["bucket"], key=r["key"])
            for r in runtime.s3_records(S3Event(event))
        ]
    if "detail-type" in event:
        detail = EventBridgeEvent(event).detail
        return [
            run_train_on_clean(
                store,
                settings,
                bus,
                clean_manifest_key=detail["clean_manifest_key"],
                k=detail.get("k"),
                promote=bool(detail.get("promote", False)),
            )
        ]
    if "clean_manifest_key" in event:
        return [
            run_train_on_clean(
                store,
                settings,
                bus,
                clean_manifest_key=event["clean_manifest_key"],
                k=event.get("k"),
                promote=bool(event.get("promote", True)),
            )
        ]
    raise ValueError("unrecognised event: expected S3, EventBridge or {clean_manifest_key}")


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcomes = _train(event)
    for outcome in outcomes:
        logger.append_keys(dataset=outcome.dataset, model_version=outcome.version)
        logger.info(outcome.message, extra={"outcome": outcome.to_dict()})
        metrics.add_metric(name=f"Models_{outcome.status}", unit=MetricUnit.Count, value=1)
    return {"results": [o.to_dict() for o in outcomes]}
