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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from custseg.features.build import Features

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

# the canonical columns of the built-in contracts (schema inference gives a file's own
# recency, order count and signup columns these names), never substrings of other names
_RECENCY_NAMES = re.compile(r"^(recency_days|days_since_last_purchase_date)$")
_FREQUENCY_NAMES = re.compile(r"^(frequency|orders)$")
_TENURE_NAMES = re.compile(r"^(tenure|tenure_days|days_since_signup_date)$")


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
    transactions = features.kind in ("transactions", "combined")  # RFM from the order log
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


SCORE_COLUMNS = ("r_score", "f_score", "m_score")
TEXT_COLUMNS = ("rfm_segment", "value_tier", "lifecycle_stage")


@dataclass
class LabelCodes:
    """The labels of some customers as small integers (:func:`label_codes`).

    ``r_score``, ``f_score``, ``m_score``: int8, 1..5, 0 when not available.
    ``rfm_segment``, ``value_tier``, ``lifecycle_stage``: int8 positions in
    :attr:`VOCABULARY` (whose last word is ``"n/a"``). :meth:`to_frame` gives the frame
    :func:`assign_labels` returns.
    """

    r_score: np.ndarray
    f_score: np.ndarray
    m_score: np.ndarray
    rfm_segment: np.ndarray
    value_tier: np.ndarray
    lifecycle_stage: np.ndarray

    VOCABULARY: ClassVar[dict[str, tuple[str, ...]]] = {
        "rfm_segment": (*dict.fromkeys(RFM_SEGMENTS), NA),
        "value_tier": (*VALUE_TIERS, NA),
        "lifecycle_stage": (*LIFECYCLE_STAGES, NA),
    }

    def __len__(self) -> int:
        return int(self.r_score.shape[0])

    def column(self, name: str) -> np.ndarray:
        """The codes (or scores) of one label column."""
        if name not in (*SCORE_COLUMNS, *TEXT_COLUMNS):
            raise KeyError(name)
        return getattr(self, name)  # type: ignore[no-any-return]

    def take(self, rows: np.ndarray) -> LabelCodes:
        """The labels of ``rows`` (positions or a boolean mask)."""
        return LabelCodes(*(self.column(c)[rows] for c in (*SCORE_COLUMNS, *TEXT_COLUMNS)))

    def to_frame(self, index: pd.Index) -> pd.DataFrame:
        """The labels as :func:`assign_labels` returns them (Int8 scores, string text)."""
        out = pd.DataFrame(index=index)
        for name in SCORE_COLUMNS:
            scores = self.column(name)
            out[name] = pd.arrays.IntegerArray(scores.astype("int8"), scores == 0)
        for name in TEXT_COLUMNS:
            words = np.asarray(self.VOCABULARY[name], dtype=object)
            out[name] = pd.array(words[self.column(name)], dtype="string")
        return out


def _code(name: str, word: str) -> int:
    return LabelCodes.VOCABULARY[name].index(word)


_RFM_TABLE = np.full((6, 6), _code("rfm_segment", NA), dtype="int8")
for _r in range(1, 6):
    for _fm in range(1, 6):
        _RFM_TABLE[_r, _fm] = _code("rfm_segment", segment_for(_r, _fm))


def _score(values: np.ndarray, edges: list[float], *, reverse: bool) -> np.ndarray:
    """Scores 1..5 (int8) on the edges; 0 where the value is not finite."""
    finite = np.isfinite(values)
    below = np.searchsorted(np.asarray(edges, dtype="float64"), values, side="left")
    score = (5 - below) if reverse else (1 + below)
    out = np.clip(score, 1, 5).astype("int8")
    out[~finite] = 0
    return out


def _feature_values(features: Features) -> Callable[[str | None], np.ndarray | None]:
    frame = features.frame

    def col(name: str | None) -> np.ndarray | None:
        if not name:
            return None
        for source in (frame, features.extras):
            if name in source.columns:
                if source.index is frame.index:
                    return source[name].to_numpy(dtype="float64", na_value=np.nan)
                return _column(features, name)
        return None

    return col


def label_codes(features: Features, edges: LabelEdges) -> LabelCodes:
    """Labels per customer as :class:`LabelCodes`, in the order of ``features.frame``
    (the same labels as :func:`assign_labels`, without building text per customer)."""
    n = len(features.frame)
    col = _feature_values(features)
    value = (
        features.value.reindex(features.frame.index).to_numpy(dtype="float64", na_value=np.nan)
        if features.value is not None
        else None
    )
    zeros = np.zeros(n, dtype="int8")
    r, f, m = zeros, zeros.copy(), zeros.copy()
    rfm = np.full(n, _code("rfm_segment", NA), dtype="int8")
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
        known = (r > 0) & (f > 0) & (m > 0)
        fm = (f.astype(np.intp) + m.astype(np.intp) + 1) // 2  # fm_score: half rounds up
        rfm[known] = _RFM_TABLE[r[known], fm[known]]

    tier = np.full(n, _code("value_tier", NA), dtype="int8")
    if edges.value_edges is not None and value is not None:
        mid, high = edges.value_edges
        tier = np.where(value > high, 0, np.where(value > mid, 1, 2)).astype("int8")
        tier[~np.isfinite(value)] = _code("value_tier", NA)

    stage = _lifecycle(n, edges, col)
    return LabelCodes(r, f, m, rfm, tier, stage)


def assign_labels(features: Features, edges: LabelEdges) -> pd.DataFrame:
    """Labels per customer.

    Returns a frame indexed like ``features.frame`` (``customer_id``) with ``r_score``,
    ``f_score``, ``m_score`` (Int8, 1..5, <NA> when not available), ``rfm_segment`` (one of
    :data:`RFM_SEGMENTS` or ``"n/a"``), ``value_tier`` (``high``/``mid``/``low``/``n/a``) and
    ``lifecycle_stage`` (``new``/``active``/``at risk``/``lapsed``/``n/a``).
    """
    return label_codes(features, edges).to_frame(features.frame.index)


def _lifecycle(
    n: int, edges: LabelEdges, col: Callable[[str | None], np.ndarray | None]
) -> np.ndarray:
    def code(word: str) -> int:
        return _code("lifecycle_stage", word)

    stage = np.full(n, code(NA), dtype="int8")
    tenure = col(edges.tenure_feature) if edges.new_max_tenure is not None else None
    recency = (
        col(edges.recency_feature)
        if edges.active_max_recency is not None and edges.lapsed_min_recency is not None
        else None
    )
    if recency is not None:
        assert edges.active_max_recency is not None and edges.lapsed_min_recency is not None
        ok = np.isfinite(recency)
        stage[ok] = code("active")
        stage[ok & (recency > edges.active_max_recency)] = code("at risk")
        stage[ok & (recency > edges.lapsed_min_recency)] = code("lapsed")
    if tenure is not None:
        assert edges.new_max_tenure is not None
        ok = np.isfinite(tenure)
        if recency is None:
            stage[ok] = code("active")
        stage[ok & (tenure <= edges.new_max_tenure)] = code("new")
    return stage
