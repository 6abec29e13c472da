"""The scheduled rescore: every dataset's newest clean data, as of the schedule's date.

Recency changes even when no file arrives, and a new champion reaches every customer.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from custseg.aws.bus import EventBus
from custseg.aws.s3 import ObjectStore
from custseg.aws.score_job import ScoreOutcome, run_score
from custseg.aws.settings import Settings
from custseg.layout import CLEAN, clean_latest_key
from custseg.signing import Verifier


def run_rescore(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    *,
    when: dt.datetime,
    datasets: list[str] | None = None,
    workdir: Path | None = None,
    verifier: Verifier | None = None,
) -> list[ScoreOutcome]:
    """Rescore each dataset (all with clean data when ``datasets`` is None) as of ``when``."""
    names = datasets or store.list_folders(settings.data_bucket, CLEAN)
    outcomes = []
    for dataset in sorted(names):
        latest, _ = store.get_json(settings.data_bucket, clean_latest_key(dataset))
        if latest is None:
            continue
        outcomes.append(
            run_score(
                store,
                settings,
                bus,
                clean_manifest_key=latest["manifest_key"],
                as_of=when.date(),
                as_of_reason="the day of the scheduled rescore",
                run_ts=when,
                trigger="schedule",
                workdir=workdir,
                verifier=verifier,
            )
        )
    return outcomes
