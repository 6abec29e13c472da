"""What every handler shares: settings, clients and the idempotency layer, made once per
warm container (module-level caches), and S3 event key decoding."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
)

from custseg.aws import registry
from custseg.aws.bus import EventBus
from custseg.aws.s3 import ObjectStore
from custseg.aws.settings import Settings
from custseg.aws.signing import KmsSigner, KmsVerifier
from custseg.failures import FAILED, describe_error
from custseg.layout import CLEAN, INCOMING, TRAINING, LayoutError, dataset_name

if TYPE_CHECKING:  # the ingest function must not import the scoring stack (sklearn, scipy)
    from custseg.aws.score_job import ScoreOutcome

# One data point per dataset that failed; the template's DatasetFailuresAlarm watches it.
DATASET_FAILURES = "DatasetFailures"
R = TypeVar("R")


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def store() -> ObjectStore:
    return ObjectStore()


def warm_clients() -> None:
    """Make the S3 client in Lambda's init phase, once per execution environment (AWS's
    advice: SDK clients outside the handler): the first client of a process loads
    botocore's S3 model, 0.13 s that the first event would pay otherwise."""
    store()


@lru_cache(maxsize=1)
def bus() -> EventBus:
    return EventBus(settings().event_bus)


@lru_cache(maxsize=1)
def signer() -> KmsSigner:
    """Signs model versions with the stack's model-signing key (the train function)."""
    return KmsSigner(settings().model_signing_key)


@lru_cache(maxsize=1)
def verifier() -> KmsVerifier:
    """Checks model versions against the stack's model-signing key."""
    return KmsVerifier(settings().model_signing_key)


_LAYERS: list[DynamoDBPersistenceLayer] = []


def idempotency_layer() -> DynamoDBPersistenceLayer:
    """A persistence layer for one handler module (each keeps its own configuration)."""
    layer = DynamoDBPersistenceLayer(table_name=settings().idempotency_table)
    _LAYERS.append(layer)
    return layer


def idempotency_config(jmespath: str) -> IdempotencyConfig:
    # One hour covers S3's and Lambda's redelivery windows; the run-prefix manifest check
    # keeps later duplicates idempotent too (deterministic run ids).
    return IdempotencyConfig(event_key_jmespath=jmespath, expires_after_seconds=3600)


def forget() -> None:
    """Forget cached settings, clients and models (a stack that is gone)."""
    for fn in (settings, store, bus, signer, verifier):
        fn.cache_clear()
    registry._CACHE.clear()  # models loaded from another stack's buckets (same names)


def reset() -> None:
    """Forget cached settings and clients and bind the idempotency layers to the stack
    this process's environment describes now (tests, and the local runner between
    stacks). An environment that describes no stack (no idempotency table) binds nothing."""
    forget()
    if not os.environ.get("IDEMPOTENCY_TABLE"):
        return
    # Handler modules build their idempotency layer at import; give each a client made
    # now, so that it reaches the stack just built (moto binds clients when made).
    for layer in _LAYERS:
        layer.client = boto3.client("dynamodb")
        layer.table_name = settings().idempotency_table


def decode_s3_key(raw: str) -> str:
    """S3 event keys are URL-encoded with ``+`` for space: ``My+File.csv`` -> ``My File.csv``."""
    return unquote_plus(raw)


def s3_records(event: Any) -> list[dict[str, Any]]:
    """Plain dicts ``{bucket, key, version_id, etag, size}`` for an S3Event's records."""
    out = []
    for record in event.records:
        obj = record.s3.get_object
        out.append(
            {
                "bucket": record.s3.bucket.name,
                "key": decode_s3_key(obj.key),
                "version_id": obj.version_id,
                "etag": obj.etag,
                "size": obj.get("size"),
            }
        )
    return out


def report_score(logger: Logger, metrics: Metrics, outcome: ScoreOutcome) -> None:
    """Log one line and a scoring run's metrics (counts and names only, no personal data)."""
    logger.append_keys(run_id=outcome.run_id, dataset=outcome.dataset)
    if outcome.status == "model_refused":  # a forged or damaged champion: an operator's call
        logger.error(outcome.message, extra={"outcome": outcome.to_dict()})
        metrics.add_metric(name="ModelsRefused", unit=MetricUnit.Count, value=1)
        return
    if outcome.status == FAILED:
        logger.error(outcome.message, extra={"outcome": outcome.to_dict()})
        count_dataset_failure(outcome.dataset)
        return
    logger.info(outcome.message or outcome.status, extra={"outcome": outcome.to_dict()})
    if outcome.status != "committed":
        return
    metrics.add_metric(name="RowsScored", unit=MetricUnit.Count, value=outcome.rows)
    metrics.add_metric(name="Segments", unit=MetricUnit.Count, value=outcome.segments)
    metrics.add_metric(name="DriftMaxPSI", unit=MetricUnit.NoUnit, value=outcome.drift_max)
    count("ScoreRuns", verdict=outcome.verdict)
    metrics.add_metric(name="ScoreDuration", unit=MetricUnit.Seconds, value=outcome.seconds)


def count(name: str, **dimensions: str) -> None:
    """One data point of the fixed metric ``name`` under ``dimensions`` plus ``service``
    (e.g. ``count("ScoreRuns", verdict="ok")``): what varies is a dimension's value, never
    the metric's name. A metric set of its own, flushed now, so the invocation's other
    metrics keep their dimensions."""
    point = EphemeralMetrics()
    point.add_metric(name=name, unit=MetricUnit.Count, value=1)
    for key, value in dimensions.items():
        point.add_dimension(name=key, value=value)
    point.add_dimensions(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "custseg"))
    point.flush_metrics()


def count_dataset_failure(dataset: str) -> None:
    """One :data:`DATASET_FAILURES` data point for ``dataset``, under the dimensions
    ``{dataset, service}`` (which dataset failed) and ``{service}`` (the sum over datasets
    that the alarm watches). It is a metric set of its own, flushed now: the invocation's
    other metrics keep their dimensions, and a failure is counted even if the handler
    raises later."""
    count(DATASET_FAILURES, dataset=dataset)


def dataset_of_key(key: str) -> str:
    """The dataset an object key belongs to: its folder under ``incoming/``, ``training/``
    or ``clean/``; ``_unsorted`` for a key outside a dataset folder."""
    for prefix in (INCOMING, TRAINING, CLEAN):
        rest = key[len(prefix) :] if key.startswith(prefix) else ""
        if "/" in rest:
            try:
                return dataset_name(rest.split("/", 1)[0])
            except LayoutError:
                break
    return "_unsorted"


def run_each(
    requests: list[R],
    work: Callable[[R], dict[str, Any]],
    *,
    dataset_of: Callable[[R], str],
    logger: Logger,
) -> list[dict[str, Any]]:
    """``work`` on each of an event's requests, each on its own: a request that raises is
    logged (its error's type and where it was raised; never its message, which may quote
    row values) and counted as a dataset failure, and the other requests still run. The
    first failure is then raised again, so that Lambda retries the event (the idempotency
    layer returns the stored results of the requests that succeeded) and, after its last
    retry, sends it to the dead-letter queue."""
    results: list[dict[str, Any]] = []
    failures: list[Exception] = []
    for request in requests:
        try:
            results.append(work(request))
        except Exception as exc:
            dataset = dataset_of(request)
            logger.append_keys(dataset=dataset)
            logger.error(f"{dataset} failed: {describe_error(exc)}")
            count_dataset_failure(dataset)
            failures.append(exc)
    if failures:
        raise failures[0]
    return results
