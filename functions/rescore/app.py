"""Rescore: an EventBridge schedule -> every dataset's newest clean data rescored with the
current champion, as of the schedule's date. A dataset that fails is listed in the result
as ``failed`` (and counted as ``DatasetFailures``); the others are rescored all the same."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from custseg.aws import runtime
from custseg.aws.events import bridge_event
from custseg.aws.rescore_job import run_rescore
from custseg.failures import FAILED

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime.warm_clients()  # the S3 client, made at init


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    schedule = bridge_event(event)
    when = schedule.time
    datasets = schedule.detail.get("datasets")
    outcomes = run_rescore(
        runtime.store(),
        runtime.settings(),
        runtime.bus(),
        when=when,
        datasets=datasets,
        verifier=runtime.verifier(),
    )
    for outcome in outcomes:  # a failed dataset is logged and counted (DatasetFailures)
        runtime.report_score(logger, metrics, outcome)
    logger.remove_keys(["run_id", "dataset"])
    failed = sum(o.status == FAILED for o in outcomes)
    logger.info(f"rescored {len(outcomes)} dataset(s) as of {when.date()}; {failed} failed")
    return {"results": [o.to_dict() for o in outcomes]}
