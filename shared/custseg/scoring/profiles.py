"""Segment profiles ("personas" measured on this run's customers): profiles.json.

For each segment: id, name, description and suggested action (from the model's personas),
size, share of customers, share of value, per numeric feature the mean, median and
quartiles, per categorical feature the top 5 categories with shares, each compared with
the whole base, and the traits that set the segment apart. A ``base`` section describes
all customers the same way.

Comparisons with the base:

- ``diff``: segment mean - base mean (feature units);
- ``index``: 100 * segment mean / base mean (100 = average; only when the base mean is
  positive, so the ratio means something);
- ``std_diff``: (segment mean - base mean) / base standard deviation (how many standard
  deviations apart; |std_diff| >= 0.5 is a clear difference, >= 1 a strong one);
- for a category: ``share`` in the segment, ``base_share``, ``index`` = 100 * share /
  base_share and ``diff`` in share points.

Means, standard deviations, sizes and value sums are exact. Medians and quartiles come
from a deterministic hash sample of at most ``metrics.SEGMENT_SAMPLE`` customers per
segment (``metrics.BASE_SAMPLE`` for the base): exact when the segment is smaller, an
estimate otherwise (``quantiles_exact`` says which). No customer-level values, ids or
personal columns appear in profiles.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from custseg.ingest.contracts.model import ColumnType, Contract
from custseg.model.personas import display_value, human_value, is_duration, label, trend
from custseg.scoring.accumulators import grow
from custseg.scoring.metrics import ScoreStats, _num
from custseg.scoring.predictions import ValueTotals
from custseg.stats import Moments

TOP_CATEGORIES = 5
TRAIT_MIN_STD_DIFF = 0.5
TRAIT_STRONG_STD_DIFF = 1.0
TRAIT_MIN_CATEGORY_INDEX = 130.0
TRAIT_MIN_CATEGORY_SHARE = 0.25
MAX_TRAITS = 4


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"q1": None, "median": None, "q3": None}
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"q1": _num(q1), "median": _num(med), "q3": _num(q3)}


def _numeric_summary(m: Moments, sample: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mean": _num(m.mean) if m.n else None,
        "std": _num(m.std) if m.n else None,
        **_quantiles(sample),
        "min": _num(m.min) if m.n else None,
        "max": _num(m.max) if m.n else None,
        "missing": int(m.missing),
    }
    return out


def feature_label(name: str) -> str:
    """A plain label for a feature: ``mean_interval_days`` -> ``time between orders``,
    ``days_since_signup_date`` -> ``time since signup date``."""
    return label(name.replace("__", "_"))


def _fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    if ax >= 10_000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _boolean_features(
    contract: Contract | None, numeric: list[str], base: dict[str, Any]
) -> set[str]:
    out = set()
    if contract is not None:
        for col in contract.columns:
            if col.type == ColumnType.BOOLEAN and col.name in numeric:
                out.add(col.name)
    for name in numeric:
        entry = base.get(name, {})
        # looks binary: range 0..1 and every quartile 0 or 1
        if (
            entry.get("min") == 0.0
            and entry.get("max") == 1.0
            and all(entry.get(q) in (0.0, 1.0) for q in ("q1", "median", "q3"))
        ):
            out.add(name)
    return out


def _numeric_trait(
    name: str, entry: Mapping[str, Any], base: Mapping[str, Any], binary: bool
) -> str:
    z = entry["std_diff"]
    text = feature_label(name)
    if binary:
        more = "more often" if z > 0 else "less often"
        return (
            f"{more} {text}: {100 * (entry['mean'] or 0):.0f}% vs "
            f"{100 * (base['mean'] or 0):.0f}% overall"
        )
    strength = "much " if abs(z) >= TRAIT_STRONG_STD_DIFF else ""
    shown = human_value if is_duration(name) or "year" in name else (lambda _, x: _fmt(x))
    return (
        f"{strength}{trend(name, z > 0)} ({text}: average {shown(name, entry['mean'])} vs "
        f"{shown(name, base['mean'])} overall)"
    )


@dataclass
class _Base:
    """The whole base described once: each segment is compared with it."""

    moments: dict[str, Moments]
    numeric: dict[str, dict[str, Any]]
    categorical: dict[str, list[dict[str, Any]]]
    shares: dict[str, dict[str, float]]
    binary: set[str]


@dataclass
class _Values:
    """The value measure per segment: sums, customers with a value, and the totals."""

    sums: np.ndarray
    known: np.ndarray
    has_value: bool
    total: float


def _sample_values(sample: pd.DataFrame, feature: str) -> np.ndarray:
    """A sample's values of one numeric feature (empty when the sample lacks it)."""
    if feature in sample.columns:
        return sample[feature].to_numpy(dtype="float64", na_value=np.nan)
    return np.empty(0)


def _base_profile(stats: ScoreStats, contract: Contract | None) -> _Base:
    """Describe the base: numeric summaries, top categories and which features are binary."""
    base_m = stats.base_moments()
    base_sample = stats.sample_rows()
    base_numeric = {
        f: _numeric_summary(base_m[f], _sample_values(base_sample, f)) for f in stats.numeric
    }
    base_categorical: dict[str, list[dict[str, Any]]] = {}
    base_shares: dict[str, dict[str, float]] = {}
    for f in stats.categorical:
        counter = stats.base_categories(f)
        total = sum(counter.values())
        shares = {v: c / total for v, c in counter.items()} if total else {}
        base_shares[f] = shares
        base_categorical[f] = [
            {"value": v, "share": _num(shares[v], 4)}
            for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
        ]
    binary = _boolean_features(contract, stats.numeric, base_numeric)
    return _Base(base_m, base_numeric, base_categorical, base_shares, binary)


def _segment_numeric(stats: ScoreStats, s: int, base: _Base) -> dict[str, Any]:
    """One segment's numeric summaries, each compared with the base."""
    moments = stats.seg_moments.get(s, {})
    sample = stats.segment_sample(s)
    numeric: dict[str, Any] = {}
    for f in stats.numeric:
        m = moments.get(f, Moments())
        entry = _numeric_summary(m, _sample_values(sample, f))
        b = base.moments[f]
        if m.n and b.n:
            entry["diff"] = _num(m.mean - b.mean)
            entry["index"] = _num(100.0 * m.mean / b.mean, 2) if b.mean > 0 else None
            entry["std_diff"] = _num((m.mean - b.mean) / b.std, 4) if b.std > 0 else 0.0
        else:
            entry.update({"diff": None, "index": None, "std_diff": None})
        numeric[f] = entry
    return numeric


def _segment_categorical(stats: ScoreStats, s: int, base: _Base) -> dict[str, list[dict[str, Any]]]:
    """One segment's top categories per feature, each compared with the base's share."""
    categorical: dict[str, list[dict[str, Any]]] = {}
    for f in stats.categorical:
        seg_cats = stats.segment_categories(f, s)
        total = sum(seg_cats.values())
        rows: list[dict[str, Any]] = []
        for v, c in sorted(seg_cats.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]:
            share = c / total if total else 0.0
            bshare = base.shares[f].get(v, 0.0)
            rows.append(
                {
                    "value": v,
                    "share": _num(share, 4),
                    "base_share": _num(bshare, 4),
                    "index": _num(100.0 * share / bshare, 2) if bshare else None,
                    "diff": _num(share - bshare, 4),
                }
            )
        categorical[f] = rows
    return categorical


def _category_trait(feature: str, row: Mapping[str, Any]) -> tuple[float, str] | None:
    """An over-represented category as a trait (its strength, its text), or None."""
    if not (
        row["index"] is not None
        and row["index"] >= TRAIT_MIN_CATEGORY_INDEX
        and (row["share"] or 0) >= TRAIT_MIN_CATEGORY_SHARE
        and row["value"] != "(missing)"
    ):
        return None
    share_now, share_base = float(row["share"]), float(row["base_share"] or 0.0)
    strength = (share_now - share_base) / max(math.sqrt(share_base * (1 - share_base)), 1e-9)
    return (
        strength,
        f"{feature_label(feature)} is often {display_value(row['value'])}: "
        f"{100 * row['share']:.0f}% vs {100 * row['base_share']:.0f}% overall",
    )


def _segment_traits(
    numeric: Mapping[str, Any],
    categorical: Mapping[str, list[dict[str, Any]]],
    base: _Base,
    size: int,
) -> list[str]:
    """The traits setting a segment apart: strongest numeric differences, then
    over-represented categories."""
    scored: list[tuple[float, str]] = []
    for f, entry in numeric.items():
        z = entry.get("std_diff")
        if z is not None and abs(z) >= TRAIT_MIN_STD_DIFF:
            scored.append((abs(z), _numeric_trait(f, entry, base.numeric[f], f in base.binary)))
    for f, rows in categorical.items():
        for row in rows:
            trait = _category_trait(f, row)
            if trait is not None:
                scored.append(trait)
    scored.sort(key=lambda t: -t[0])
    traits = [text for _, text in scored[:MAX_TRAITS]]
    if not traits and size:
        traits = ["close to the average customer on every feature"]
    return traits


def _segment_labels(stats: ScoreStats, s: int) -> dict[str, dict[str, float]]:
    """One segment's share of each label value, per label."""
    labels_doc: dict[str, dict[str, float]] = {}
    for name, pairs in stats.labels.items():
        seg_counts: Counter[str] = Counter({v: c for (seg, v), c in pairs.items() if seg == s})
        total = sum(seg_counts.values())
        if total and set(seg_counts) != {"n/a"}:
            labels_doc[name] = {
                v: _num(c / total, 4) or 0.0
                for v, c in sorted(seg_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            }
    return labels_doc


def _segment_profile(
    stats: ScoreStats,
    s: int,
    *,
    size: int,
    n: int,
    name: str,
    persona: Mapping[str, Any],
    values: _Values,
    base: _Base,
) -> dict[str, Any]:
    """One segment's entry of profiles.json."""
    numeric = _segment_numeric(stats, s, base)
    categorical = _segment_categorical(stats, s, base)
    traits = _segment_traits(numeric, categorical, base, size)
    labels_doc = _segment_labels(stats, s)
    value_sum, value_known, has_value = values.sums, values.known, values.has_value
    return {
        "id": s,
        "name": name,
        "description": str(persona.get("description", "")),
        "action": str(persona.get("action", "")),
        "action_detail": str(persona.get("action_detail", "")),
        "action_reason": str(persona.get("action_reason", "")),
        "size": size,
        "share": _num(size / n, 10) if n else 0.0,
        "value_total": _num(value_sum[s], 4) if has_value else None,
        "value_share": _num(value_sum[s] / values.total, 10)
        if has_value and values.total
        else None,
        "value_mean": _num(value_sum[s] / value_known[s], 4)
        if has_value and value_known[s]
        else None,
        "quantiles_exact": bool(size <= stats.segment_sample_k),
        "numeric": numeric,
        "categorical": categorical,
        "traits": traits,
        "model_traits": list(persona.get("traits", []) or []),
        "labels": labels_doc,
    }


def _profiles_doc(
    stats: ScoreStats,
    model: Any,
    *,
    run: Any,
    as_of: Any,
    n: int,
    values: _Values,
    base: _Base,
    segments: list[dict[str, Any]],
) -> dict[str, Any]:
    """Assemble profiles.json around the segments: the run, the features and the base."""
    meta: Mapping[str, Any] = model.metadata or {}
    training: Mapping[str, Any] = meta.get("training", {}) or {}
    has_value, total_value = values.has_value, values.total
    return {
        "schema_version": 1,
        "dataset": getattr(run, "dataset", None),
        "run_id": getattr(run, "run_id", None),
        "as_of": None if as_of is None else str(as_of),
        "model_version": str(model.version),
        "customers": n,
        "value_measure": training.get("value_measure"),
        "features": {
            "numeric": list(stats.numeric),
            "categorical": list(stats.categorical),
            "binary": sorted(base.binary),
        },
        "comparison": {
            "diff": "segment mean - base mean",
            "index": "100 * segment mean / base mean (base mean > 0 only)",
            "std_diff": "(segment mean - base mean) / base std",
        },
        "base": {
            "customers": n,
            "value_total": _num(total_value, 4) if has_value else None,
            "value_mean": _num(total_value / int(values.known.sum()), 4) if has_value else None,
            "quantiles_exact": bool(n <= stats.sample_k),
            "numeric": base.numeric,
            "categorical": base.categorical,
        },
        "segments": segments,
    }


def build_profiles(
    stats: ScoreStats,
    model: Any,
    *,
    contract: Contract | None = None,
    run: Any = None,
    as_of: Any = None,
    value_totals: ValueTotals | None = None,
) -> dict[str, Any]:
    """The profiles.json document from the run statistics and the model's personas;
    with ``value_totals`` (an order log's predictions), also ``predictions``
    (:func:`value_profiles`).

    Shape::

        {"dataset", "run_id", "as_of", "model_version", "customers", "value_measure",
         "features": {"numeric": [...], "categorical": [...]},
         "base": {"customers", "value_total", "numeric": {f: {...}}, "categorical": {f: [...]}},
         "segments": [{"id", "name", "description", "action", "action_detail", "size", "share",
                       "value_total", "value_share", "value_mean", "numeric": {f: {...}},
                       "categorical": {f: [...]}, "traits": [...], "model_traits": [...],
                       "labels": {...}, "quantiles_exact"}]}
    """
    meta: Mapping[str, Any] = model.metadata or {}
    personas = {int(s["id"]): s for s in meta.get("segments", []) if "id" in s}
    names = {int(k): str(v) for k, v in model.segment_names().items()}
    k = max(stats.k, len(names))
    counts = grow(stats.seg_counts, k)
    n = int(stats.customers)
    value_sum = grow(stats.value_sum, k)
    value_known = grow(stats.value_known, k)
    values = _Values(value_sum, value_known, bool(value_known.sum()), float(value_sum.sum()))
    base = _base_profile(stats, contract)
    segments = []
    for s in range(k):
        persona = personas.get(s, {})
        segments.append(
            _segment_profile(
                stats,
                s,
                size=int(counts[s]),
                n=n,
                name=names.get(s, persona.get("name", f"Segment {s}")),
                persona=persona,
                values=values,
                base=base,
            )
        )
    doc = _profiles_doc(
        stats, model, run=run, as_of=as_of, n=n, values=values, base=base, segments=segments
    )
    if value_totals is not None:
        doc["predictions"] = {"clv": value_profiles(value_totals, names, k)}
    return doc


def value_profiles(totals: ValueTotals, names: Mapping[int, str], k: int) -> dict[str, Any]:
    """Per segment and overall, over the customers with predictions: their number, the sum
    and mean of the expected value of the next 12 months, the segment's share of it next to
    its share of their past value (the value measure), mean p_alive and mean purchases
    expected in 90 days."""
    customers = grow(totals.customers, k)
    expected, past = grow(totals.expected_value, k), grow(totals.past_value, k)
    alive, purchases = grow(totals.p_alive, k), grow(totals.purchases, k)
    all_expected, all_past, n = float(expected.sum()), float(past.sum()), float(customers.sum())

    def entry(c: float, e: float, p: float, a: float, b: float) -> dict[str, Any]:
        return {
            "customers": int(c),
            "expected_value_12m_total": _num(e, 4),
            "expected_value_12m_mean": _num(e / c, 4) if c else None,
            "expected_value_share": _num(e / all_expected, 6) if all_expected > 0 else None,
            "past_value_share": _num(p / all_past, 6) if all_past > 0 else None,
            "p_alive_mean": _num(a / c, 6) if c else None,
            "expected_purchases_90d_mean": _num(b / c, 6) if c else None,
        }

    return {
        "base": entry(n, all_expected, all_past, float(alive.sum()), float(purchases.sum())),
        "segments": [
            {
                "id": s,
                "name": names.get(s, f"Segment {s}"),
                **entry(customers[s], expected[s], past[s], alive[s], purchases[s]),
            }
            for s in range(k)
        ],
    }


def profile_frame(profiles: Mapping[str, Any], column: str = "std_diff") -> pd.DataFrame:
    """Segments x numeric features table of one comparison (e.g. ``std_diff``) for charts."""
    rows = {}
    for seg in profiles.get("segments", []):
        rows[seg["name"]] = {f: e.get(column) for f, e in seg.get("numeric", {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index", dtype="float64")
