"""Measure the campaigns of a dataset's campaign-results parts (S3 adapter).

A campaign results upload is ingested like any file (contract kind ``campaign``) and
registered in the dataset state; the score job, triggered by that registration, calls
:func:`measure_new_campaigns` before it scores. For each campaign part not measured yet,
and each campaign in it: the results run current at the campaign's first send time
(the run history under ``segments/<dataset>/run_date=*/run_id=*/``), its assignments
joined to the campaign's customers, the effect per segment
(:mod:`custseg.campaigns.measure`), written under
``segments/<dataset>/campaigns/<campaign>/`` (``effect.json``, ``effect/segments.jsonl``
for Athena, ``report.html``), and an ``Effect Measured`` event. The index
``segments/<dataset>/campaigns/index.json`` lists every campaign measured with its
segments of negative uplift: every later run flags them in its persona actions
(:func:`campaign_flags`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from custseg.aws.bus import EFFECT_MEASURED, EventBus
from custseg.aws.runs import download_clean_data
from custseg.aws.s3 import ObjectStore
from custseg.aws.settings import Settings
from custseg.campaigns.measure import (
    KIND,
    ResultsRun,
    campaign_key,
    campaign_rows,
    measure_campaign,
    run_current_at,
    send_time,
)
from custseg.dataset.clean_data import read_clean
from custseg.dataset.state import DatasetState, Part
from custseg.layout import (
    CAMPAIGN_FILES,
    MANIFEST,
    RESULT_FILES,
    SEGMENTS,
    campaign_prefix,
    campaigns_index_key,
)
from custseg.report.campaign import render_campaign_report

log = logging.getLogger(__name__)


def scoring_part(state: DatasetState) -> Part | None:
    """The newest part scoring starts from: campaign results are never scored."""
    parts = [p for p in state.parts if p.kind != KIND]
    return parts[-1] if parts else None


def _runs_on_or_before(
    store: ObjectStore, bucket: str, dataset: str, when: dt.datetime | None
) -> list[ResultsRun]:
    """The committed results runs of the newest run date on or before ``when`` that has
    one (every date when ``when`` is None would be wasteful: the newest date's runs)."""
    base = f"{SEGMENTS}{dataset}/"
    dates = sorted(
        f for f in store.list_folders(bucket, base) if f.startswith("run_date=")
    )  # run_date=YYYY-MM-DD sorts by date
    if when is not None:
        early = [d for d in dates if d[len("run_date=") :] <= when.date().isoformat()]
        dates = early or dates[:1]  # sent before the first run: the first run's date
    for folder in reversed(dates):
        runs = []
        for run_folder in store.list_folders(bucket, f"{base}{folder}/"):
            prefix = f"{base}{folder}/{run_folder}/"
            manifest, _ = store.get_json(bucket, prefix + MANIFEST)
            if manifest is None:  # not committed (yet)
                continue
            runs.append(
                ResultsRun(
                    run_id=str(manifest["run_id"]),
                    run_ts=dt.datetime.fromisoformat(str(manifest["run_ts"])),
                    prefix=prefix,
                    model_version=str((manifest.get("model") or {}).get("version", "")),
                )
            )
        if runs:
            return runs
    return []


def _assignments(store: ObjectStore, bucket: str, run: ResultsRun, tmp: Path) -> pd.DataFrame:
    key = run.prefix + RESULT_FILES["assignments_parquet"]
    path = store.download(bucket, key, tmp / f"{run.run_id}.parquet")
    return pd.read_parquet(path, columns=["customer_id", "segment_id", "segment_name"])


def _write_effect(
    store: ObjectStore, bucket: str, dataset: str, key: str, doc: dict[str, Any]
) -> str:
    """Write one campaign's files; returns the key of its ``effect.json``."""
    prefix = campaign_prefix(dataset, key)
    lines = "".join(
        json.dumps({"dataset": dataset, "campaign": doc["campaign"], **s}, default=str) + "\n"
        for s in doc.get("segments", [])
    )
    store.put_bytes(bucket, prefix + CAMPAIGN_FILES["segments"], lines.encode("utf-8"))
    html = render_campaign_report(doc, dataset=dataset)
    store.put_bytes(bucket, prefix + CAMPAIGN_FILES["report"], html.encode("utf-8"))
    effect_key = prefix + CAMPAIGN_FILES["effect"]
    store.put_json(bucket, effect_key, doc)  # last: effect.json names finished files
    return effect_key


def _measure_part(
    store: ObjectStore,
    settings: Settings,
    dataset: str,
    part: Part,
    tmp: Path,
    now: Callable[[], dt.datetime],
) -> list[dict[str, Any]]:
    """Every campaign of one part measured and written; [] when no segmentation run
    exists yet (the part stays pending)."""
    manifest, _ = store.get_json(settings.data_bucket, part.manifest_key)
    path = download_clean_data(
        store, settings.data_bucket, part.prefix, manifest or {}, tmp / part.run_id
    )
    default = Path(part.source_key or part.run_id).name.split(".")[0]
    rows, counts = campaign_rows(read_clean(path).to_pandas(), default)
    results = settings.results_bucket
    measured = []
    for campaign, block in rows.groupby("campaign_id", sort=True):
        when = send_time(block)
        run, chosen = run_current_at(_runs_on_or_before(store, results, dataset, when), when)
        if run is None:
            return []
        doc = measure_campaign(
            block,
            _assignments(store, results, run, tmp),
            campaign=str(campaign),
            run={
                "run_id": run.run_id,
                "run_ts": run.run_ts.isoformat(),
                "model_version": run.model_version,
                "chosen": chosen,
                "sent_at": when.isoformat() if when else None,
            },
        )
        doc["source"] = {"part_run_id": part.run_id, "source_key": part.source_key, **counts}
        doc["measured_at"] = now().isoformat(timespec="seconds")
        key = campaign_key(str(campaign))
        doc["effect_key"] = _write_effect(store, results, dataset, key, doc)
        measured.append(doc)
    return measured


def measure_new_campaigns(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    state: DatasetState,
    *,
    workdir: Path | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[dict[str, Any]]:
    """Measure the campaigns of every campaign part of ``state`` not in the dataset's
    campaign index; publish ``Effect Measured`` for each; return their documents."""
    parts = state.parts_of(KIND)
    if not parts:
        return []
    dataset = state.dataset
    index_key = campaigns_index_key(dataset)
    index, _ = store.get_json(settings.results_bucket, index_key)
    index = index or {"dataset": dataset, "parts": [], "campaigns": {}}
    pending = [p for p in parts if p.run_id not in set(index["parts"])]
    docs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for part in pending:
            measured = _measure_part(store, settings, dataset, part, Path(tmp), now)
            if not measured:
                log.info("campaign part %s waits for a segmentation run", part.run_id)
                continue
            index["parts"].append(part.run_id)
            for doc in measured:
                index["campaigns"][campaign_key(doc["campaign"])] = _index_entry(doc)
            docs += measured
    if docs:
        store.put_json(settings.results_bucket, index_key, index)
    for doc in docs:
        bus.publish(EFFECT_MEASURED, _event(dataset, doc))
    return docs


def _index_entry(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "campaign": doc["campaign"],
        "effect_key": doc["effect_key"],
        "measured_at": doc["measured_at"],
        "causal": bool(doc.get("causal")),
        "negative": [
            {
                "segment_id": s["segment_id"],
                "segment_name": s["segment_name"],
                "conversion_uplift": (s.get("conversion_uplift") or {}).get("estimate"),
                "revenue_uplift": (s.get("revenue_uplift") or {}).get("estimate"),
            }
            for s in doc.get("segments", [])
            if s.get("negative")
        ],
    }


def _event(dataset: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "campaign": doc["campaign"],
        "effect_key": doc["effect_key"],
        "segments_run_id": (doc.get("segments_run") or {}).get("run_id"),
        "causal": bool(doc.get("causal")),
        "customers": doc.get("customers_matched", 0),
        "negative_segments": list(doc.get("negative_segments", [])),
    }


def campaign_flags(store: ObjectStore, bucket: str, dataset: str) -> dict[int, list[str]]:
    """Segment id -> the persona-action flags of the campaigns measured for
    ``dataset``: "stop campaign X for them" for each campaign whose uplift in that
    segment was significantly negative."""
    index, _ = store.get_json(bucket, campaigns_index_key(dataset))
    flags: dict[int, list[str]] = {}
    for entry in sorted((index or {}).get("campaigns", {}).values(), key=lambda e: e["campaign"]):
        for seg in entry.get("negative", []):
            flags.setdefault(int(seg["segment_id"]), []).append(stop_text(entry["campaign"], seg))
    return flags


def stop_text(campaign: str, seg: dict[str, Any]) -> str:
    """The flag of one segment of negative uplift in a campaign."""
    conv, rev = seg.get("conversion_uplift"), seg.get("revenue_uplift")
    parts = []
    if conv is not None:
        parts.append(f"conversion {conv * 100:+.1f} pp")
    if rev is not None:
        parts.append(f"revenue per customer {rev:+.2f}")
    return f"stop campaign {campaign} for them: negative uplift ({', '.join(parts)})"
