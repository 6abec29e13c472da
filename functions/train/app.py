"""Train: an upload under ``training/<dataset>/``, a ``Training Requested`` / ``Retrain
Recommended`` event, or a direct invoke ``{"clean_manifest_key": ..., "k": 5}`` -> a model
version in the artifact bucket, promoted to champion when it passes the quality gates."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3Event
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from custseg.aws import runtime
from custseg.aws.train_job import Keys, run_train_on_clean, run_train_on_upload

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime.warm_clients()  # the S3 client, made at init
config = runtime.idempotency_config("request_id")


@idempotent_function(
    data_keyword_argument="request",
    persistence_store=runtime.idempotency_layer(),
    config=config,
)
def train_request(request: dict[str, Any]) -> dict[str, Any]:
    """One training request; a redelivered request (same ``request_id``) trains nothing."""
    store, settings, bus = runtime.store(), runtime.settings(), runtime.bus()
    keys = Keys(runtime.signer(), runtime.verifier())
    if request["kind"] == "upload":
        outcome = run_train_on_upload(
            store,
            settings,
            bus,
            bucket=request["bucket"],
            key=request["key"],
            k=request.get("k"),
            keys=keys,
        )
    else:
        outcome = run_train_on_clean(
            store,
            settings,
            bus,
            clean_manifest_key=request["clean_manifest_key"],
            k=request.get("k"),
            promote=bool(request.get("promote", False)),
            if_no_champion=bool(request.get("if_no_champion", False)),
            keys=keys,
        )
    logger.append_keys(dataset=outcome.dataset, model_version=outcome.version)
    log = logger.error if outcome.status == "refused" else logger.info
    log(outcome.message, extra={"outcome": outcome.to_dict()})
    runtime.count("Models", status=outcome.status)
    return outcome.to_dict()


def requests_from(event: dict[str, Any], context: LambdaContext) -> list[dict[str, Any]]:
    """Every trigger shape -> ``[{request_id, kind, ...}]``."""
    if "Records" in event:
        return [
            {
                "request_id": f"s3:{r['bucket']}/{r['key']}@{r['version_id'] or r['etag']}",
                "kind": "upload",
                "bucket": r["bucket"],
                "key": r["key"],
            }
            for r in runtime.s3_records(S3Event(event))
        ]
    if "detail-type" in event:
        bridge = EventBridgeEvent(event)
        detail = bridge.detail
        return [
            {
                "request_id": f"event:{bridge.get_id}",
                "kind": "clean",
                "clean_manifest_key": detail["clean_manifest_key"],
                "k": detail.get("k"),
                "promote": bool(detail.get("promote", False)),
                "if_no_champion": bool(detail.get("if_no_champion", False)),
            }
        ]
    if "clean_manifest_key" in event:  # direct invoke; Lambda's retries keep the request id
        return [
            {
                "request_id": f"invoke:{context.aws_request_id}",
                "kind": "clean",
                "clean_manifest_key": event["clean_manifest_key"],
                "k": event.get("k"),
                "promote": bool(event.get("promote", True)),
            }
        ]
    raise ValueError("unrecognised event: expected S3, EventBridge or {clean_manifest_key}")


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    results = runtime.run_each(
        requests_from(event, context),
        lambda r: train_request(request=r),
        dataset_of=lambda r: runtime.dataset_of_key(r.get("key") or r["clean_manifest_key"]),
        logger=logger,
    )
    return {"results": results}
