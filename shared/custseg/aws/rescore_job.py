"""The scheduled rescore: every dataset's newest clean data, as of the schedule's date.

Recency changes even when no file arrives, and a new champion reaches every customer.
Each dataset is rescored on its own: one that fails (its clean data unreadable, say) is
reported as a ``failed`` outcome and the others go on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from custseg.aws.bus import EventBus
from custseg.aws.campaign_job import scoring_part
from custseg.aws.s3 import ObjectStore
from custseg.aws.score_job import ScoreOutcome, run_score
from custseg.aws.settings import Settings
from custseg.aws.state import load_state
from custseg.failures import FAILED, describe_error
from custseg.layout import CLEAN, clean_latest_key
from custseg.model.signing import Verifier


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
    """Rescore each dataset (all with clean data when ``datasets`` is None) as of ``when``:
    one outcome per dataset with clean data, a ``failed`` one for a dataset whose rescore
    raised (its message names the error's type and where, never the error's text)."""
    names = datasets or store.list_folders(settings.data_bucket, CLEAN)
    outcomes = []
    for dataset in sorted(names):
        try:
            outcome = rescore_one(
                store, settings, bus, dataset, when=when, workdir=workdir, verifier=verifier
            )
        except Exception as exc:  # one dataset's failure must not stop the others
            outcome = ScoreOutcome(
                FAILED, dataset, message=f"rescore failed: {describe_error(exc)}"
            )
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def rescore_one(
    store: ObjectStore,
    settings: Settings,
    bus: EventBus,
    dataset: str,
    *,
    when: dt.datetime,
    workdir: Path | None = None,
    verifier: Verifier | None = None,
) -> ScoreOutcome | None:
    """Rescore one dataset: every part of its state (a dataset whose clean runs predate
    the state: its newest clean run). None when it has no clean data."""
    state, _ = load_state(store, settings.data_bucket, dataset)
    start = scoring_part(state) if state is not None else None  # never campaign results
    if start is not None:
        manifest_key = start.manifest_key
    else:
        latest, _ = store.get_json(settings.data_bucket, clean_latest_key(dataset))
        if latest is None:
            return None
        manifest_key = latest["manifest_key"]
    return run_score(
        store,
        settings,
        bus,
        clean_manifest_key=manifest_key,
        state=state,
        as_of=when.date(),
        as_of_reason="the day of the scheduled rescore",
        run_ts=when,
        trigger="schedule",
        workdir=workdir,
        verifier=verifier,
    )
