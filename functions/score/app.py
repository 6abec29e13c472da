"""Score: a dataset whose state advanced (S3 ``clean/<dataset>/_state.json``), or a
``Model Promoted`` event naming one of its clean runs -> a committed results run under
``segments/<dataset>/`` built from every part of the dataset's state."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from custseg.aws import fanout_start, runtime
from custseg.aws.events import bridge_event, s3_records
from custseg.aws.score_job import run_score, run_score_state
from custseg.layout import STATE
from custseg.model.artifact import limit_blas_threads


def warm_up() -> None:
    """Import what loading and applying a model needs (scikit-learn's estimators, the
    scoring core, the report and its charts, Arrow's pandas conversion). About 2 s on a
    cold interpreter."""
    import pyarrow.pandas_compat  # noqa: F401
    import sklearn.cluster
    import sklearn.compose
    import sklearn.impute
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401

    import custseg.report.html
    import custseg.scoring.score  # noqa: F401


# Every invocation loads a model (scikit-learn, scipy) and scores (the scoring core):
# import them in Lambda's init phase, once per execution environment, not in the first
# event's time budget. (The ingest function needs neither and keeps them out: its cold
# start stays short.)
warm_up()
# ...and keep BLAS to one thread: this function runs its own threads (see
# custseg.model.artifact.limit_blas_threads for why and what it saves)
limit_blas_threads(1)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime.warm_clients()  # the S3 client, made at init
config = runtime.idempotency_config("[clean_manifest_key, state_key, version_id, trigger]")


@idempotent_function(
    data_keyword_argument="request",
    persistence_store=runtime.idempotency_layer(),
    config=config,
)
def score_request(request: dict[str, Any]) -> dict[str, Any]:
    store, settings, bus = runtime.store(), runtime.settings(), runtime.bus()
    dataset = runtime.dataset_of_key(request.get("state_key") or request["clean_manifest_key"])
    if fanout_start.threshold_bytes() is not None and fanout_start.owned_by_state_machine(
        store, settings.data_bucket, dataset
    ):
        return {
            "status": "fanned_out",
            "dataset": dataset,
            "message": "scored by the state machine",
        }
    if request.get("state_key"):
        outcome = run_score_state(
            store,
            settings,
            bus,
            state_key=request["state_key"],
            version_id=request.get("version_id"),
            trigger=request["trigger"],
            verifier=runtime.verifier(),
        )
    else:
        outcome = run_score(
            store,
            settings,
            bus,
            clean_manifest_key=request["clean_manifest_key"],
            trigger=request["trigger"],
            verifier=runtime.verifier(),
        )
    runtime.report_score(logger, metrics, outcome)
    return outcome.to_dict()


def requests_from(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Every trigger shape -> ``[{state_key, version_id, trigger}]`` for a dataset state
    written, ``[{clean_manifest_key, trigger}]`` for a clean run named."""
    if "Records" in event:
        return [
            {"state_key": r["key"], "version_id": r["version_id"], "trigger": "clean-data"}
            if r["key"].endswith(STATE)
            else {"clean_manifest_key": r["key"], "trigger": "clean-data"}
            for r in s3_records(event)
        ]
    if "detail-type" in event:
        detail = bridge_event(event).detail
        key = detail.get("clean_manifest_key")
        if key:
            return [
                {"clean_manifest_key": key, "trigger": f"model-promoted:{detail.get('version')}"}
            ]
        return []
    if "clean_manifest_key" in event:  # direct invoke
        return [{"clean_manifest_key": event["clean_manifest_key"], "trigger": "direct"}]
    raise ValueError(
        "unrecognised event: expected an S3 event, an EventBridge event or {clean_manifest_key}"
    )


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    results = runtime.run_each(
        requests_from(event),
        lambda r: score_request(request=r),
        dataset_of=lambda r: runtime.dataset_of_key(r.get("state_key") or r["clean_manifest_key"]),
        logger=logger,
    )
    return {"results": results}
