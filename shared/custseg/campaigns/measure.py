"""Campaign results joined to the segments each customer had when the campaign ran.

The pure steps between a clean campaign part (contract kind ``campaign``) and the
``effect.json`` of each of its campaigns:

1. :func:`campaign_rows`: the clean rows as one row per customer and campaign, with a
   ``group`` (treatment / control), ``converted`` and ``revenue`` (0 when none);
2. :func:`run_current_at`: of a dataset's committed results runs, the one that was
   current when the campaign was sent (its first send time; none given: the newest);
3. :func:`measure_campaign`: the rows joined to that run's assignments, and the effect
   per segment (:func:`custseg.campaigns.effect.campaign_effect`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from custseg.campaigns.effect import CONTROL, RESPONSES, TREATMENT, campaign_effect, clean_flags

KIND = "campaign"  # the contract kind (and dataset-state part kind) of campaign results
_KEY_RE = re.compile(r"[^a-z0-9_-]+")


def campaign_key(name: str) -> str:
    """A campaign id as an S3 folder name: lower case, ``[a-z0-9_-]``, at most 64."""
    key = _KEY_RE.sub("-", str(name).strip().lower()).strip("-")[:64]
    return key or "campaign"


def _flag(clean: pd.DataFrame, name: str) -> np.ndarray | None:
    """A response as booleans: its yes/no column or its time column (either yes)."""
    found = [clean_flags(clean[c]) for c in (name, f"{name}_at") if c in clean]
    if not found:
        return None
    return np.logical_or.reduce(found)


def _groups(clean: pd.DataFrame) -> pd.Series:
    """treatment / control per row (missing where neither the group nor the holdout
    flag says); every row treatment when the file has neither column."""
    group = pd.Series(pd.NA, index=clean.index, dtype="object")
    if "group" in clean:
        group = clean["group"].astype("object").where(clean["group"].notna(), pd.NA)
    if "holdout" in clean:
        hold = clean["holdout"].astype("boolean")
        fill = group.isna() & hold.notna()
        group[fill] = np.where(hold[fill].to_numpy(dtype=bool), CONTROL, TREATMENT)
    if "group" not in clean and "holdout" not in clean:
        group[:] = TREATMENT
    return group


def campaign_rows(
    clean: pd.DataFrame, default_campaign: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per customer and campaign: ``customer_id``, ``campaign_id``, ``group``,
    ``converted``, ``revenue``, the other responses present, ``sent_time``.

    ``default_campaign`` names the campaign of rows without a campaign id. Rows with no
    group (a file that has a group column) are dropped, a customer repeated in one
    campaign counts once (the last row); both are counted in the returned dict.
    """
    out = pd.DataFrame({"customer_id": clean["customer_id"].astype("string")})
    ids = clean["campaign_id"] if "campaign_id" in clean else pd.Series(pd.NA, index=clean.index)
    out["campaign_id"] = ids.astype("string").fillna(default_campaign)
    out["group"] = _groups(clean)
    revenue = clean["amount"] if "amount" in clean else pd.Series(0.0, index=clean.index)
    out["revenue"] = pd.to_numeric(revenue, errors="coerce").fillna(0.0).to_numpy(dtype=float)
    converted = _flag(clean, "converted")
    out["converted"] = converted if converted is not None else out["revenue"].to_numpy() > 0
    for name in RESPONSES[:-1]:
        flag = _flag(clean, name)
        if flag is not None:
            out[name] = flag
    out["sent_time"] = clean.get("event_time", pd.NaT)
    counts = {"rows_without_group": int(out["group"].isna().sum())}
    out = out[out["group"].notna()]
    before = len(out)
    out = out.drop_duplicates(["campaign_id", "customer_id"], keep="last")
    counts["repeated_customers"] = before - len(out)
    return out.reset_index(drop=True), counts


@dataclass(frozen=True)
class ResultsRun:
    """One committed results run of a dataset (from its manifest)."""

    run_id: str
    run_ts: dt.datetime
    prefix: str
    model_version: str = ""


def run_current_at(
    runs: Sequence[ResultsRun], when: dt.datetime | None
) -> tuple[ResultsRun | None, str]:
    """The run that was current at ``when`` (the newest committed by then), and how it
    was chosen. ``when`` None: the newest run. A campaign sent before the first run:
    the first run, said so."""
    ordered = sorted(runs, key=lambda r: (r.run_ts, r.run_id))
    if not ordered:
        return None, "no committed segmentation run"
    if when is None:
        return ordered[-1], "the newest run (the file gives no send time)"
    before = [r for r in ordered if r.run_ts <= when]
    if before:
        return before[-1], f"the run current at the first send time {when.isoformat()}"
    return ordered[0], (
        f"the first run: the campaign was sent ({when.isoformat()}) before any segmentation "
        "run was committed"
    )


def send_time(rows: pd.DataFrame) -> dt.datetime | None:
    """The campaign's first send time (UTC), None when the rows give none."""
    times = pd.to_datetime(rows["sent_time"], errors="coerce").dropna()
    if times.empty:
        return None
    first = times.min().to_pydatetime()
    return first.replace(tzinfo=dt.UTC) if first.tzinfo is None else first.astimezone(dt.UTC)


def measure_campaign(
    rows: pd.DataFrame, assignments: pd.DataFrame, *, campaign: str, run: dict[str, Any]
) -> dict[str, Any]:
    """The ``effect.json`` document of one campaign's ``rows`` (see :func:`campaign_rows`)
    joined to ``assignments`` (``customer_id``, ``segment_id``, ``segment_name``) of the
    results ``run`` described in it."""
    seg = assignments[["customer_id", "segment_id", "segment_name"]].astype(
        {"customer_id": "string"}
    )
    joined = rows.merge(seg, on="customer_id", how="inner", validate="many_to_one")
    doc: dict[str, Any] = {
        "campaign": campaign,
        "segments_run": run,
        "customers": len(rows),
        "customers_matched": len(joined),
        "customers_unmatched": int(len(rows) - len(joined)),
    }
    if joined.empty:
        doc.update(causal=False, segments=[], negative_segments=[])
        doc["warnings"] = ["no customer of the campaign is in the segmentation run"]
        return doc
    doc.update(campaign_effect(joined))
    if doc["customers_unmatched"]:
        doc.setdefault("warnings", []).append(
            f"{doc['customers_unmatched']} customers of the campaign are not in the "
            "segmentation run and are left out"
        )
    return doc
