"""Fan-out: one step of the state machine's job per invocation (``event["step"]``), see
custseg.aws.fanout_job and docs/fanout.md."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from custseg.aws import fanout_job, runtime
from custseg.aws.athena import AthenaEngine, QueryEngine

logger = Logger()
runtime.warm_clients()
ENGINE: QueryEngine | None = None  # the local stack puts its DuckDB Athena here


def engine() -> QueryEngine:
    global ENGINE
    if ENGINE is None:
        ENGINE = AthenaEngine(
            boto3.client("athena"),
            boto3.client("glue"),
            boto3.client("s3"),
            workgroup=os.environ["ATHENA_WORKGROUP"],
            database=os.environ["GLUE_DATABASE"],
            staging=os.environ["ATHENA_STAGING"],
        )
    return ENGINE


def run_step(event: dict[str, Any]) -> dict[str, Any]:
    store, settings = runtime.store(), runtime.settings()
    step = event["step"]
    if step == "split":
        range_mib = float(os.environ.get("FANOUT_RANGE_MIB", "64"))
        return fanout_job.split(store, settings, event["job"], max(int(range_mib * 1024**2), 1))
    if step == "profile_range":
        return fanout_job.profile_range(store, settings, event["item"])
    if step == "find_duplicates":
        return fanout_job.find_duplicates(store, engine(), event["job"], int(event["ranges"]))
    if step == "merge_profiles":
        return fanout_job.merge_profiles(store, event["job"], int(event["ranges"]))
    if step == "ingest_range":
        return fanout_job.ingest_range(store, settings, event["item"])
    if step == "commit_ingest":
        return fanout_job.commit_ingest(store, event["job"], int(event["ranges"]))
    if step == "plan_features":
        return fanout_job.plan_features(store, settings, engine(), event["job"])
    if step == "list_buckets":
        return fanout_job.list_buckets(store, settings, engine(), event["job"])
    if step == "train_sample":
        return fanout_job.train_sample(store, settings, runtime.bus(), event["job"])
    if step == "score_bucket":
        return fanout_job.score_bucket(store, settings, event["item"], runtime.verifier())
    if step == "reduce":
        return fanout_job.reduce(
            store, settings, event["job"], int(event["buckets"]), runtime.verifier()
        )
    raise ValueError(f"unknown fan-out step {step!r}")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = run_step(event)
    logger.info("fan-out step done", extra={"step": event.get("step")})
    return result
