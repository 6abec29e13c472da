"""Settings of a deployed function, read once from its environment (set by the template).

Every variable read here is set by ``infra/template.yaml``; a test checks the two agree.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

from custseg.ingest.reading import MIB, ReadLimits


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"environment variable {name} is not set (see infra/template.yaml)")
    return value


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    artifact_bucket: str
    results_bucket: str
    event_bus: str
    idempotency_table: str
    model_signing_key: str  # ARN (or alias) of the KMS key that signs model versions
    max_input_bytes: int
    chunk_rows: int
    thresholds: dict[str, Any] = field(default_factory=dict)
    # plausible dates: none after the upload time plus this, none before the floor
    future_tolerance: dt.timedelta = dt.timedelta(hours=24)
    date_floor: dt.date = dt.date(1900, 1, 1)
    read_limits: ReadLimits = field(default_factory=ReadLimits)
    # parts registered within this many seconds of each other make one scoring run
    coalesce_seconds: float = 0.0
    # the function's memory (MiB): DuckDB's memory limit is a share of it
    memory_mb: int = 3008
    # a model is fitted on at most this many customers (a seeded sample); 0: all
    train_max_customers: int = 500_000

    @classmethod
    def from_env(cls) -> Settings:
        thresholds: dict[str, Any] = {}
        for key, env in (("psi_watch", "DRIFT_PSI_WATCH"), ("psi_retrain", "DRIFT_PSI_RETRAIN")):
            if os.environ.get(env):
                thresholds[key] = float(os.environ[env])
        return cls(
            data_bucket=_env("DATA_BUCKET"),
            artifact_bucket=_env("ARTIFACT_BUCKET"),
            results_bucket=_env("RESULTS_BUCKET"),
            event_bus=_env("EVENT_BUS_NAME"),
            idempotency_table=_env("IDEMPOTENCY_TABLE"),
            model_signing_key=_env("MODEL_SIGNING_KEY"),
            max_input_bytes=int(float(_env("MAX_INPUT_MIB", "1024")) * 1024**2),
            chunk_rows=int(_env("CHUNK_ROWS", "250000")),
            thresholds=thresholds,
            future_tolerance=dt.timedelta(hours=float(_env("FUTURE_DATE_TOLERANCE_HOURS", "24"))),
            date_floor=dt.date.fromisoformat(_env("DATE_FLOOR", "1900-01-01")),
            read_limits=_read_limits(),
            coalesce_seconds=float(_env("COALESCE_SECONDS", "0")),
            memory_mb=int(_env(LAMBDA_MEMORY, "3008")),
            train_max_customers=int(_env("TRAIN_MAX_CUSTOMERS", "500000")),
        )


def _read_limits() -> ReadLimits:
    """What one upload may hold (stack parameters MaxDecompressedMiB, MaxCompressionRatio,
    MaxColumns, MaxHeaderKiB, MaxRowMiB); defaults those of :class:`ReadLimits`."""
    default = ReadLimits()
    return ReadLimits(
        max_decompressed_bytes=int(
            float(_env("MAX_DECOMPRESSED_MIB", str(default.max_decompressed_bytes / MIB))) * MIB
        ),
        max_compression_ratio=float(
            _env("MAX_COMPRESSION_RATIO", str(default.max_compression_ratio))
        ),
        max_columns=int(_env("MAX_COLUMNS", str(default.max_columns))),
        max_header_bytes=int(
            float(_env("MAX_HEADER_KIB", str(default.max_header_bytes / 1024))) * 1024
        ),
        max_row_bytes=int(float(_env("MAX_ROW_MIB", str(default.max_row_bytes / MIB))) * MIB),
    )


# Environment variables the code reads (checked against the template by a test).
# Set by Lambda itself in every function's environment (not by the template).
LAMBDA_MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"

ENV_VARS = (
    "DATA_BUCKET",
    "ARTIFACT_BUCKET",
    "RESULTS_BUCKET",
    "EVENT_BUS_NAME",
    "IDEMPOTENCY_TABLE",
    "MODEL_SIGNING_KEY",
    "MAX_INPUT_MIB",
    "CHUNK_ROWS",
    "FUTURE_DATE_TOLERANCE_HOURS",
    "DATE_FLOOR",
    "MAX_DECOMPRESSED_MIB",
    "MAX_COMPRESSION_RATIO",
    "MAX_COLUMNS",
    "MAX_HEADER_KIB",
    "MAX_ROW_MIB",
    "COALESCE_SECONDS",
    "TRAIN_MAX_CUSTOMERS",
    "DRIFT_PSI_WATCH",
    "DRIFT_PSI_RETRAIN",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
)
