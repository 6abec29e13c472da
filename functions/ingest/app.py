"""Ingest: S3 object created under ``incoming/<dataset>/`` -> clean run or rejection report."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from custseg.aws import fanout_start, runtime
from custseg.aws.events import s3_records
from custseg.aws.ingest_job import run_ingest

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime.warm_clients()  # the S3 client, made at init
config = runtime.idempotency_config("[bucket, key, version_id, etag]")


@idempotent_function(
    data_keyword_argument="record",
    persistence_store=runtime.idempotency_layer(),
    config=config,
)
def ingest_record(record: dict[str, Any]) -> dict[str, Any]:
    store, settings = runtime.store(), runtime.settings()
    upload = {k: record[k] for k in ("bucket", "key", "version_id", "etag")}
    job = fanout_start.job_for(store, record)
    if job is None:
        outcome = run_ingest(store, settings, **upload)
    else:  # above the threshold: the state machine ingests and scores what passes
        started = fanout_start.fan_out(
            store, settings, job, upload, lambda: boto3.client("stepfunctions")
        )
        if not isinstance(started, tuple):
            outcome = started
        else:
            job, execution = started
            logger.info("fanned out", extra={"dataset": job["dataset"], "run_id": job["run_id"]})
            return {"status": "fanned_out", "dataset": job["dataset"], "execution": execution}
    logger.append_keys(run_id=outcome.run_id, dataset=outcome.dataset)
    logger.info(outcome.message or outcome.status, extra={"outcome": outcome.to_dict()})
    runtime.count("Files", status=outcome.status)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=outcome.rows_read)
    metrics.add_metric(name="RowsKept", unit=MetricUnit.Count, value=outcome.rows_kept)
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=outcome.rows_rejected)
    return outcome.to_dict()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    results = runtime.run_each(
        s3_records(event),
        lambda r: ingest_record(record=r),
        dataset_of=lambda r: runtime.dataset_of_key(r["key"]),
        logger=logger,
    )
    return {"results": results}
