"""Rule-based labels next to the clusters: RFM scores and segments, value tier, lifecycle.

All edges and thresholds are fitted once on the training features
(:func:`fit_label_edges`) and stored in the model artifact, so a label means the same in
every later scoring run (a customer's R score drops as they stop buying; the edges do not
move with the base).

RFM scores (1..5, 5 best)
    Edges are the 20/40/60/80 % quantiles of the training values. ``R``: recency in days,
    lower is better: ``R = 5 - #(edges < recency)``. ``F`` (orders) and ``M`` (net spend):
    ``score = 1 + #(edges < value)``; a value equal to an edge falls in the lower bin. With
    heavy ties (many one-order customers) edges coincide and some scores do not occur,
    which is the honest outcome. ``FM = round_half_up((F + M) / 2)``.

RFM segments: :data:`RFM_RULES`, the widely used R-vs-FM map (the 10-segment grid
popularised by RFM tutorials, with Putler's "Lost" split out of "Hibernating" as R = 1).
It covers all 25 (R, FM) cells exactly once::

    R\\FM 1               2                    3                    4                5
    5     New Customers   Potential Loyalists  Potential Loyalists  Champions        Champions
    4     Promising       Potential Loyalists  Potential Loyalists  Loyal Customers  Loyal Customers
    3     About to Sleep  About to Sleep       Need Attention       Loyal Customers  Loyal Customers
    2     Hibernating     Hibernating          At Risk              At Risk          Can't Lose Them
    1     Lost            Lost                 At Risk              At Risk          Can't Lose Them

Value tier: by the value measure (``monetary`` for transactions, else the contract's first
value column present): ``high`` above the training 80 % quantile (top fifth), ``mid`` above
the median, ``low`` otherwise.

Lifecycle stage (first rule that applies):

- ``new``: tenure <= ``new_max_tenure`` -- for transactions the typical purchase interval
  (median ``mean_interval_days`` of repeat buyers in training): they have not had the time
  to buy again; for customer tables the training 20 % quantile of the tenure column;
- ``lapsed``: recency > ``lapsed_min_recency`` = 4 typical intervals (at least the training
  80 % recency quantile);
- ``at risk``: recency > ``active_max_recency`` = 2 typical intervals (at least the training
  median recency);
- ``active``: otherwise.

Customer tables without transactions get what their columns allow: a tenure column (name
containing ``tenure``, ``days_since_first``, ``signup``, ``joined``...; a date attribute such
as ``signup_date`` counts, as ``days_since_signup_date``) gives ``new`` vs ``active``; a
recency column (``recency``, ``days_since_last``...) gives the full stage; RFM
needs recency, frequency and a value column, else ``n/a``. What cannot be labelled and why
is in :attr:`LabelEdges.unavailable` (``labels_unavailable`` in the artifact).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from custseg.features import Features

NA = "n/a"


@dataclass(frozen=True)
class RfmRule:
    """One row of the RFM map: a segment for R in [r_min, r_max] and FM in [fm_min, fm_max]."""

    segment: str
    r_min: int
    r_max: int
    fm_min: int
    fm_max: int

    def matches(self, r: int, fm: int) -> bool:
        return self.r_min <= r <= self.r_max and self.fm_min <= fm <= self.fm_max


RFM_RULES: list[RfmRule] = [
    RfmRule("Champions", 5, 5, 4, 5),
    RfmRule("Loyal Customers", 3, 4, 4, 5),
    RfmRule("Potential Loyalists", 4, 5, 2, 3),
    RfmRule("New Customers", 5, 5, 1, 1),
    RfmRule("Promising", 4, 4, 1, 1),
    RfmRule("Need Attention", 3, 3, 3, 3),
    RfmRule("About to Sleep", 3, 3, 1, 2),
    RfmRule("At Risk", 1, 2, 3, 4),
    RfmRule("Can't Lose Them", 1, 2, 5, 5),
    RfmRule("Hibernating", 2, 2, 1, 2),
    RfmRule("Lost", 1, 1, 1, 2),
]
"""The R-vs-FM segment map (first match wins; the rules do not overlap and cover 5x5)."""

RFM_SEGMENTS: list[str] = [r.segment for r in RFM_RULES]
VALUE_TIERS = ("high", "mid", "low")
LIFECYCLE_STAGES = ("new", "active", "at risk", "lapsed")

_RECENCY_NAMES = re.compile(r"recency|days_since_last|since_last|last_(purchase|order|visit)")
_FREQUENCY_NAMES = re.compile(r"^frequency$|^n?_?orders$|num_?orders|order_count|purchases$")
_TENURE_NAMES = re.compile(
    r"tenure|days_since_first|first_(purchase|order)|signup|sign_up|joined|join_date|"
    r"customer_since|member_since|membership|created"
)


def segment_for(r: int, fm: int) -> str:
    """The RFM segment of an (R, FM) score pair (1..5 each)."""
    for rule in RFM_RULES:
        if rule.matches(r, fm):
            return rule.segment
    raise ValueError(f"no RFM rule for R={r} FM={fm}")


def fm_score(f: int, m: int) -> int:
    """``round_half_up((f + m) / 2)``."""
    return math.floor((f + m) / 2 + 0.5)


@dataclass
class LabelEdges:
    """Edges and thresholds of the rule-based labels (JSON via to_dict/from_dict)."""

    recency_feature: str | None = None
    frequency_feature: str | None = None
    tenure_feature: str | None = None
    value_measure: str | None = None
    r_edges: list[float] | None = None
    f_edges: list[float] | None = None
    m_edges: list[float] | None = None
    value_edges: list[float] | None = None  # [median, 80 % quantile]
    new_max_tenure: float | None = None
    active_max_recency: float | None = None
    lapsed_min_recency: float | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recency_feature": self.recency_feature,
            "frequency_feature": self.frequency_feature,
            "tenure_feature": self.tenure_feature,
            "value_measure": self.value_measure,
            "r_edges": self.r_edges,
            "f_edges": self.f_edges,
            "m_edges": self.m_edges,
            "value_edges": self.value_edges,
            "new_max_tenure": self.new_max_tenure,
            "active_max_recency": self.active_max_recency,
            "lapsed_min_recency": self.lapsed_min_recency,
            "labels_unavailable": dict(self.unavailable),
            "rfm_rules": [
                {"segment": r.segment, "r": [r.r_min, r.r_max], "fm": [r.fm_min, r.fm_max]}
                for r in RFM_RULES
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelEdges:
        def floats(key: str) -> list[float] | None:
            v = d.get(key)
            return None if v is None else [float(x) for x in v]

        def num(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v)

        return cls(
            recency_feature=d.get("recency_feature"),
            frequency_feature=d.get("frequency_feature"),
            tenure_feature=d.get("tenure_feature"),
            value_measure=d.get("value_measure"),
            r_edges=floats("r_edges"),
            f_edges=floats("f_edges"),
            m_edges=floats("m_edges"),
            value_edges=floats("value_edges"),
            new_max_tenure=num("new_max_tenure"),
            active_max_recency=num("active_max_recency"),
            lapsed_min_recency=num("lapsed_min_recency"),
            unavailable=dict(d.get("labels_unavailable", d.get("unavailable", {}))),
        )


def _find(columns: list[str], pattern: re.Pattern[str]) -> str | None:
    for col in columns:
        if pattern.search(col.lower()):
            return col
    return None


def _quantiles(values: pd.Series | np.ndarray, qs: list[float]) -> list[float] | None:
    arr = np.asarray(values, dtype="float64")
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    return [float(x) for x in np.quantile(arr, qs)]


_QUINTILES = [0.2, 0.4, 0.6, 0.8]


def _column(features: Features, name: str) -> np.ndarray:
    """A numeric column of the feature frame, else of extras (day counts), as float64."""
    for source in (features.frame, features.extras):
        if name in source.columns:
            return (
                source[name]
                .reindex(features.frame.index)
                .to_numpy(dtype="float64", na_value=np.nan)
            )
    return np.full(len(features.frame), np.nan)


def fit_label_edges(features: Features) -> LabelEdges:
    """Fit label edges and thresholds on the training features (see module docs)."""
    edges = LabelEdges()
    frame = features.frame
    numeric = list(features.numeric)
    transactions = features.kind == "transactions"
    if transactions:
        edges.recency_feature, edges.frequency_feature = "recency_days", "frequency"
        edges.tenure_feature = "tenure_days"
    else:
        # numeric features first, then day counts derived from date attributes in extras
        extra_days = [
            c
            for c in features.extras.columns
            if c.startswith("days_since_") and pd.api.types.is_float_dtype(features.extras[c])
        ]
        candidates = [*numeric, *extra_days]
        edges.recency_feature = _find(candidates, _RECENCY_NAMES)
        edges.frequency_feature = _find(numeric, _FREQUENCY_NAMES)
        edges.tenure_feature = _find(candidates, _TENURE_NAMES)

    value = features.value
    if value is not None and value.notna().any():
        edges.value_measure = str(value.name) if value.name is not None else "value"
        edges.value_edges = _quantiles(value, [0.5, 0.8])
    else:
        edges.unavailable["value_tier"] = (
            "no value measure: the contract names no value column present in the data"
        )

    r_col, f_col = edges.recency_feature, edges.frequency_feature
    if r_col and f_col and edges.value_edges is not None and value is not None:
        edges.r_edges = _quantiles(_column(features, r_col), _QUINTILES)
        edges.f_edges = _quantiles(_column(features, f_col), _QUINTILES)
        edges.m_edges = _quantiles(value, _QUINTILES)
    else:
        lacking = [
            name
            for name, col in (
                ("recency", r_col),
                ("frequency", f_col),
                ("monetary value", edges.value_measure),
            )
            if not col
        ]
        edges.unavailable["rfm"] = (
            "RFM needs purchase recency, frequency and value; this data has no "
            f"{', '.join(lacking)} (a transactions file gives all three)"
        )

    t_col = edges.tenure_feature
    if transactions:
        repeat = frame.loc[frame["frequency"] >= 2, "mean_interval_days"]
        repeat = repeat[np.isfinite(repeat.to_numpy(dtype="float64"))]
        r_q = _quantiles(frame["recency_days"], [0.5, 0.8]) or [30.0, 90.0]
        typical = float(repeat.median()) if len(repeat) else r_q[0]
        edges.new_max_tenure = typical
        edges.active_max_recency = max(2 * typical, r_q[0])
        edges.lapsed_min_recency = max(4 * typical, r_q[1], edges.active_max_recency)
    else:
        if t_col:
            q = _quantiles(_column(features, t_col), [0.2])
            edges.new_max_tenure = q[0] if q else None
        if r_col:
            q = _quantiles(_column(features, r_col), [0.5, 0.8])
            if q:
                edges.active_max_recency, edges.lapsed_min_recency = q
        if not t_col and not r_col:
            edges.unavailable["lifecycle_stage"] = (
                "lifecycle needs a tenure or a recency column; this data has neither"
            )
        elif not r_col:
            edges.unavailable["lifecycle_stage"] = (
                f"only tenure ({t_col}) is known: stages are 'new' vs 'active'; 'at risk' and "
                "'lapsed' need purchase recency"
            )
        elif not t_col:
            edges.unavailable["lifecycle_stage"] = (
                f"no tenure column: 'new' cannot be told apart; stages from recency ({r_col})"
            )
    return edges


def _score(values: np.ndarray, edges: list[float], *, reverse: bool) -> pd.Series:
    finite = np.isfinite(values)
    below = np.searchsorted(np.asarray(edges, dtype="float64"), values, side="left")
    score = (5 - below) if reverse else (1 + below)
    out = pd.array(np.clip(score, 1, 5).astype("int8"), dtype="Int8")
    out[~finite] = pd.NA
    return pd.Series(out)


def assign_labels(features: Features, edges: LabelEdges) -> pd.DataFrame:
    """Labels per customer.

    Returns a frame indexed like ``features.frame`` (``customer_id``) with ``r_score``,
    ``f_score``, ``m_score`` (Int8, 1..5, <NA> when not available), ``rfm_segment`` (one of
    :data:`RFM_SEGMENTS` or ``"n/a"``), ``value_tier`` (``high``/``mid``/``low``/``n/a``) and
    ``lifecycle_stage`` (``new``/``active``/``at risk``/``lapsed``/``n/a``).
    """
    frame = features.frame
    index = frame.index
    n = len(frame)

    def col(name: str | None) -> np.ndarray | None:
        if name and (name in frame.columns or name in features.extras.columns):
            return _column(features, name)
        return None

    value = (
        features.value.reindex(index).to_numpy(dtype="float64", na_value=np.nan)
        if features.value is not None
        else None
    )
    out = pd.DataFrame(index=index)
    na_scores = pd.Series(pd.array([pd.NA] * n, dtype="Int8"))
    r_vals, f_vals = col(edges.recency_feature), col(edges.frequency_feature)
    if (
        edges.r_edges is not None
        and edges.f_edges is not None
        and edges.m_edges is not None
        and r_vals is not None
        and f_vals is not None
        and value is not None
    ):
        r = _score(r_vals, edges.r_edges, reverse=True)
        f = _score(f_vals, edges.f_edges, reverse=False)
        m = _score(value, edges.m_edges, reverse=False)
        seg = np.full(n, NA, dtype=object)
        known = (r.notna() & f.notna() & m.notna()).to_numpy()
        if known.any():
            r_k = r[known].to_numpy(dtype="int64")
            fm_k = np.floor(
                (f[known].to_numpy(dtype="int64") + m[known].to_numpy(dtype="int64")) / 2 + 0.5
            )
            table = {(rr, ff): segment_for(rr, ff) for rr in range(1, 6) for ff in range(1, 6)}
            seg[known] = [table[(int(a), int(b))] for a, b in zip(r_k, fm_k, strict=True)]
        out["r_score"], out["f_score"], out["m_score"] = r.values, f.values, m.values
        out["rfm_segment"] = pd.array(seg, dtype="string")
    else:
        out["r_score"] = na_scores.values
        out["f_score"] = na_scores.values.copy()
        out["m_score"] = na_scores.values.copy()
        out["rfm_segment"] = pd.array([NA] * n, dtype="string")

    if edges.value_edges is not None and value is not None:
        mid, high = edges.value_edges
        tier = np.where(value > high, "high", np.where(value > mid, "mid", "low"))
        tier = np.where(np.isfinite(value), tier, NA)
        out["value_tier"] = pd.array(tier, dtype="string")
    else:
        out["value_tier"] = pd.array([NA] * n, dtype="string")

    out["lifecycle_stage"] = pd.array(_lifecycle(frame, edges, col), dtype="string")
    return out


def _lifecycle(frame: pd.DataFrame, edges: LabelEdges, col: Any) -> np.ndarray:
    n = len(frame)
    stage = np.full(n, NA, dtype=object)
    tenure = col(edges.tenure_feature) if edges.new_max_tenure is not None else None
    recency = (
        col(edges.recency_feature)
        if edges.active_max_recency is not None and edges.lapsed_min_recency is not None
        else None
    )
    if recency is not None:
        assert edges.active_max_recency is not None and edges.lapsed_min_recency is not None
        ok = np.isfinite(recency)
        stage[ok] = "active"
        stage[ok & (recency > edges.active_max_recency)] = "at risk"
        stage[ok & (recency > edges.lapsed_min_recency)] = "lapsed"
    if tenure is not None:
        assert edges.new_max_tenure is not None
        ok = np.isfinite(tenure)
        if recency is None:
            stage[ok] = "active"
        stage[ok & (tenure <= edges.new_max_tenure)] = "new"
    return stage
