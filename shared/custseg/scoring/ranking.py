"""Segments ranked as targets: an attractiveness score per segment (profiles.json, report).

Four components, each measured per segment and rescaled across the run's segments to
0..1 (min-max; all equal: 0.5):

- ``size``: the segment's share of customers;
- ``value``: its share of the value measure (left out without a value measure);
- ``growth``: its size now / its size in the previous run - 1 (only when the previous run
  used the same model version, so segment ids mean the same; otherwise left out);
- ``outcome``: per outcome column its lift (segment rate / base rate), read as good news
  for a response-like outcome and as bad news (2 - lift) for a churn-like one
  (:data:`custseg.model.actions.UNDESIRABLE_OUTCOME`), averaged over the outcomes (left
  out without outcomes).

``attractiveness`` = 100 x the weighted mean of the components present
(:data:`RANK_WEIGHTS`, renormalised over them); ``rank`` 1 is the most attractive (ties:
larger value share, then lower id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from custseg.model.actions import UNDESIRABLE_OUTCOME

RANK_WEIGHTS: dict[str, float] = {"value": 0.35, "size": 0.25, "growth": 0.2, "outcome": 0.2}
"""Weight of each attractiveness component (renormalised over those present)."""


def _raw_components(
    profiles: Mapping[str, Any], metrics: Mapping[str, Any]
) -> dict[str, dict[int, float]]:
    """Component -> segment id -> raw measure (components with no data left out)."""
    segs = list(profiles.get("segments", []))
    raw: dict[str, dict[int, float]] = {"size": {}, "value": {}, "growth": {}, "outcome": {}}
    previous = _previous_sizes(metrics)
    for seg in segs:
        sid = int(seg["id"])
        raw["size"][sid] = float(seg.get("share") or 0.0)
        if seg.get("value_share") is not None:
            raw["value"][sid] = float(seg["value_share"])
        before = previous.get(sid)
        if before:
            raw["growth"][sid] = float(seg.get("size") or 0) / before - 1.0
    for name, doc in (metrics.get("outcomes") or {}).items():
        bad = bool(UNDESIRABLE_OUTCOME.search(str(name).lower()))
        for row in doc.get("by_segment", []):
            lift = row.get("lift")
            if lift is None:
                continue
            score = 2.0 - float(lift) if bad else float(lift)
            sid = int(row["id"])
            raw["outcome"][sid] = raw["outcome"].get(sid, 0.0) + score / len(metrics["outcomes"])
    return {name: values for name, values in raw.items() if len(values) == len(segs) and segs}


def _previous_sizes(metrics: Mapping[str, Any]) -> dict[int, float]:
    """Segment id -> customers in the previous run, when it used the same model."""
    stability = metrics.get("stability") or {}
    if not (stability.get("available") and stability.get("same_model")):
        return {}
    sizes = stability.get("previous_segment_sizes") or []
    return {i: float(n) for i, n in enumerate(sizes) if n}


def _rescaled(values: dict[int, float]) -> dict[int, float]:
    low, high = min(values.values()), max(values.values())
    if high - low <= 1e-12:
        return dict.fromkeys(values, 0.5)
    return {sid: (v - low) / (high - low) for sid, v in values.items()}


def rank_segments(profiles: dict[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``attractiveness``, ``rank`` and ``attractiveness_parts`` to each segment of
    ``profiles`` and a ``ranking`` section (method, weights, order); returns ``profiles``."""
    raw = _raw_components(profiles, metrics)
    scaled = {name: _rescaled(values) for name, values in raw.items()}
    weights = {name: RANK_WEIGHTS[name] for name in scaled}
    total = sum(weights.values())
    segs = profiles.get("segments", [])
    for seg in segs:
        sid = int(seg["id"])
        score = sum(weights[n] * scaled[n][sid] for n in scaled) / total if total else 0.0
        seg["attractiveness"] = round(100.0 * score, 1)
        seg["attractiveness_parts"] = {
            name: {"raw": round(raw[name][sid], 4), "scaled": round(scaled[name][sid], 4)}
            for name in scaled
        }
    order = sorted(
        segs,
        key=lambda s: (-s["attractiveness"], -(s.get("value_share") or 0.0), int(s["id"])),
    )
    for rank, seg in enumerate(order, start=1):
        seg["rank"] = rank
    profiles["ranking"] = {
        "method": "100 x weighted mean of the components rescaled 0..1 across segments",
        "weights": {name: round(w / total, 4) for name, w in weights.items()} if total else {},
        "components_missing": sorted(set(RANK_WEIGHTS) - set(scaled)),
        "order": [int(s["id"]) for s in order],
    }
    return profiles
