"""The S3 layout: every key custseg reads or writes, in one place.

This module is the contract marketing tools rely on (see the README's "S3 layout"); a
change here is a breaking change. It is pure string handling (no AWS imports).

Data bucket (personal data, restricted)::

    incoming/<dataset>/<file>                         uploads (trigger ingest; never modified)
    training/<dataset>/<file>                         uploads to train a model on (trigger train)
    clean/<dataset>/<run_id>/data/part-0000N.parquet  validated, cleaned, typed data (rows in
                                                      part order; runs written before
                                                      2026-12-01: one data.parquet)
    clean/<dataset>/<run_id>/quality.json|quality.txt the data-quality report
    clean/<dataset>/<run_id>/contract.json            the contract the data was cleaned with
    clean/<dataset>/<run_id>/_manifest.json           written last (triggers scoring)
    clean/<dataset>/latest.json                       newest clean run of the dataset
    clean/<dataset>/_state.json                       the dataset state: every clean run it
                                                      holds, by source kind (triggers scoring)
    clean/<dataset>/folder.json                       the incoming/ folder spelling that owns
                                                      the dataset (first upload claims it)
    rejected/<dataset>/<run_id>/original/<file>       a copy of a file rejected as a whole
    rejected/<dataset>/<run_id>/error.json|error.txt  why it was rejected
    rejected/<dataset>/<run_id>/rejected_rows.csv     rows that could not be repaired

Artifact bucket (written only by training)::

    models/<model>/<version>/model.joblib             the scikit-learn Pipeline
    models/<model>/<version>/metadata.json            version, sha256, schema, baseline, personas
    models/<model>/champion.json                      the champion pointer (rollback = move it)
    contracts/<dataset>.yaml                          a user's own contract for a dataset

Results bucket (read by marketing tools)::

    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/assignments/part-00000.parquet
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/assignments.csv
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/profiles.json
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/metrics.json
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/quality.json
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/report.html
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/value_at_risk.csv (churn models)
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/offers.csv   (order logs with categories)
    segments/<dataset>/run_date=YYYY-MM-DD/run_id=<run_id>/_manifest.json   (written last)
    segments/<dataset>/latest.json                    pointer to the newest committed run
    segments/<dataset>/current/...                    a copy of the newest committed run
    segments/<dataset>/campaigns/<campaign>/effect.json        a campaign's effect per segment
    segments/<dataset>/campaigns/<campaign>/effect/segments.jsonl  the same, a row per segment
    segments/<dataset>/campaigns/<campaign>/report.html        the campaign's report page
    segments/<dataset>/campaigns/index.json           every campaign measured (and its flags)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

INCOMING = "incoming/"
TRAINING = "training/"
CLEAN = "clean/"
REJECTED = "rejected/"
MODELS = "models/"
CONTRACTS = "contracts/"
SEGMENTS = "segments/"
MANIFEST = "_manifest.json"
STATE = "_state.json"
LATEST = "latest.json"
CLEAN_DATA_DIR = "data"  # a clean run's Parquet parts: data/part-00000.parquet, ...
LEGACY_CLEAN_FILE = "data.parquet"  # the clean data of runs written before 2026-12-01

_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class LayoutError(ValueError):
    """A key does not follow the layout (for example an upload outside a dataset folder)."""


def dataset_name(raw: str) -> str:
    """Normalise a dataset name: lower case, ``[a-z0-9_-]``, at most 63 characters.

    >>> dataset_name("My Shop 2024")
    'my_shop_2024'
    """
    name = re.sub(r"[^a-z0-9_-]+", "_", raw.strip().lower()).strip("_-")[:63]
    if not name or not _DATASET_RE.match(name):
        raise LayoutError(f"cannot make a dataset name from {raw!r}")
    return name


@dataclass(frozen=True)
class Upload:
    """An uploaded object under ``incoming/`` or ``training/``."""

    prefix: str  # "incoming/" or "training/"
    dataset: str
    filename: str
    folder: str = ""  # the dataset folder as written (``My Shop``); ``dataset`` folds it


def parse_upload_key(key: str) -> Upload:
    """Split ``incoming/<dataset>/<file>`` (or ``training/...``) into its parts.

    Files deeper in sub-folders keep their sub-path as the file name.
    """
    for prefix in (INCOMING, TRAINING):
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            if "/" not in rest or rest.endswith("/"):
                raise LayoutError(
                    f"upload {key!r} is not inside a dataset folder: "
                    f"use {prefix}<dataset>/<file>.csv"
                )
            raw_dataset, filename = rest.split("/", 1)
            return Upload(
                prefix=prefix,
                dataset=dataset_name(raw_dataset),
                filename=filename,
                folder=raw_dataset,
            )
    raise LayoutError(f"key {key!r} is not an upload (expected incoming/ or training/)")


def run_id_for(when: dt.datetime, *parts: str) -> str:
    """A deterministic, time-sortable run id: ``YYYYMMDDTHHMMSSZ-<8 hex of parts>``.

    The same trigger (same object version, same model, same as-of date) always yields the
    same id, which makes a redelivered event land on the same run prefix.
    """
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:8]
    return f"{stamp}-{digest}"


def clean_prefix(dataset: str, run_id: str) -> str:
    return f"{CLEAN}{dataset}/{run_id}/"


_CLEAN_PART_RE = re.compile(r"^part-\d{5}\.parquet$")


def clean_part_name(index: int) -> str:
    """The file name of part ``index`` (0-based) of a clean run's data."""
    return f"part-{index:05d}.parquet"


def is_clean_part_name(name: str) -> bool:
    """Whether a file name (no folder) is one :func:`clean_part_name` gives."""
    return _CLEAN_PART_RE.match(name) is not None


def clean_data_names(names: list[str]) -> list[str]:
    """The clean data's files among a clean run's file ``names`` (as its manifest lists
    them, relative to the run's prefix), in row order: ``data/part-*.parquet`` by name,
    or the one ``data.parquet`` of a run written before the parts."""
    folder = CLEAN_DATA_DIR + "/"
    parts = sorted(
        n for n in names if n.startswith(folder) and is_clean_part_name(n[len(folder) :])
    )
    return parts or [n for n in names if n == LEGACY_CLEAN_FILE]


def clean_latest_key(dataset: str) -> str:
    return f"{CLEAN}{dataset}/{LATEST}"


def dataset_state_key(dataset: str) -> str:
    """``clean/<dataset>/_state.json``: every clean run the dataset holds."""
    return f"{CLEAN}{dataset}/{STATE}"


def parse_state_key(key: str) -> str:
    """``clean/<dataset>/_state.json`` -> ``dataset``."""
    parts = PurePosixPath(key).parts
    if len(parts) != 3 or parts[0] != CLEAN.rstrip("/") or parts[2] != STATE:
        raise LayoutError(f"{key!r} is not a dataset state key")
    return parts[1]


def dataset_folder_key(dataset: str) -> str:
    """Where the folder spelling that owns ``dataset`` is recorded (see
    :func:`dataset_name`: ``My Shop`` and ``my_shop`` fold to one dataset)."""
    return f"{CLEAN}{dataset}/folder.json"


def rejected_prefix(dataset: str, run_id: str) -> str:
    return f"{REJECTED}{dataset}/{run_id}/"


def parse_clean_manifest_key(key: str) -> tuple[str, str]:
    """``clean/<dataset>/<run_id>/_manifest.json`` -> ``(dataset, run_id)``."""
    parts = PurePosixPath(key).parts
    if len(parts) != 4 or parts[0] != CLEAN.rstrip("/") or parts[3] != MANIFEST:
        raise LayoutError(f"{key!r} is not a clean-run manifest key")
    return parts[1], parts[2]


def results_prefix(dataset: str, run_date: dt.date, run_id: str) -> str:
    return f"{SEGMENTS}{dataset}/run_date={run_date.isoformat()}/run_id={run_id}/"


def results_latest_key(dataset: str) -> str:
    return f"{SEGMENTS}{dataset}/{LATEST}"


def results_current_prefix(dataset: str) -> str:
    return f"{SEGMENTS}{dataset}/current/"


def campaigns_prefix(dataset: str) -> str:
    return f"{SEGMENTS}{dataset}/campaigns/"


def campaign_prefix(dataset: str, campaign: str) -> str:
    """Where a campaign's effect is written (``campaign``: :func:`campaign_key` form)."""
    return f"{campaigns_prefix(dataset)}{campaign}/"


def campaigns_index_key(dataset: str) -> str:
    return f"{campaigns_prefix(dataset)}index.json"


# Names of the files inside a campaign prefix (relative keys).
CAMPAIGN_FILES = {
    "effect": "effect.json",
    "segments": "effect/segments.jsonl",
    "report": "report.html",
}


def model_prefix(model: str, version: str) -> str:
    return f"{MODELS}{model}/{version}/"


def champion_key(model: str) -> str:
    return f"{MODELS}{model}/champion.json"


def contract_key(dataset: str) -> str:
    return f"{CONTRACTS}{dataset}.yaml"


# Names of the files inside a results run prefix (relative keys).
RESULT_FILES = {
    "assignments_parquet": "assignments/part-00000.parquet",
    "assignments_csv": "assignments.csv",
    "profiles": "profiles.json",
    "metrics": "metrics.json",
    "quality": "quality.json",
    "report": "report.html",
    "value_at_risk": "value_at_risk.csv",  # only with a value-at-risk measure
}

OFFERS_FILE = "offers.csv"  # a results run's offers per customer, when the data has categories

CONTENT_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".yaml": "application/yaml",
    ".joblib": "application/octet-stream",
}


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(key).suffix, "application/octet-stream")
