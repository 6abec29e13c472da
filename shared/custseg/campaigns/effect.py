"""The effect of a campaign per segment: treatment against control, pure math.

For each segment, with ``n`` customers and ``x`` conversions per group (``t`` treatment,
``c`` control) and the revenue of each customer (0 when none):

- **conversion uplift** ``p_t - p_c`` with a 95 % interval by the normal approximation
  (unpooled standard error ``sqrt(p_t(1-p_t)/n_t + p_c(1-p_c)/n_c)``); its two-sided
  p-value uses the same standard error, so the uplift is significant exactly when its
  interval excludes 0. The relative uplift ``p_t / p_c - 1`` has the delta-method
  interval of the log risk ratio (none when a group has no conversion);
- **revenue uplift** per customer ``mean_t - mean_c``: the normal approximation too
  (Welch's standard error ``sqrt(s_t^2/n_t + s_c^2/n_c)``), relative by the delta method
  on the log of the ratio of means. No resampling: the result is exact arithmetic on
  sums, the same on every run;
- **incremental** conversions and revenue: the uplift times the treated customers (their
  interval scales the same way);
- **too small to tell**: a group under :data:`MIN_GROUP` customers, or fewer than
  :data:`MIN_EVENTS` conversions (or non-conversions) in both groups together, makes the
  normal approximation unreliable; the verdict says so whatever the numbers.

Without a control group the rates of each segment are set against the campaign's rate
over every segment (the baseline), with an interval for the difference; the result says
``causal: false`` (a segment that responds more may have bought anyway).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # the 97.5 % normal quantile
MIN_GROUP = 30  # customers per group below which an effect is "too small to tell"
MIN_EVENTS = 5  # conversions (and non-conversions) needed across both groups
TREATMENT, CONTROL = "treatment", "control"
METHOD = {
    "conversion": "difference of proportions, normal approximation (unpooled standard "
    "error); relative uplift: delta method on the log risk ratio",
    "revenue": "difference of means per customer, normal approximation (Welch's standard "
    "error); relative uplift: delta method on the log ratio of means",
    "confidence": 0.95,
    "significant": "the 95 % interval excludes 0 (two-sided p < 0.05)",
    "too_small": f"a group under {MIN_GROUP} customers, or under {MIN_EVENTS} conversions "
    "or non-conversions in both groups together",
}
RESPONSES = ("sent", "opened", "clicked", "converted")


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % interval and two-sided p-value (of estimate = 0)."""

    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 0.05

    def scaled(self, factor: float) -> Interval:
        def s(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Interval(s(self.estimate), s(self.low), s(self.high), self.p_value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": _r(self.estimate),
            "ci_low": _r(self.low),
            "ci_high": _r(self.high),
            "p_value": _r(self.p_value),
            "significant": self.significant,
        }


def _r(v: float | None, digits: int = 6) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def p_two_sided(z: float) -> float:
    """Two-sided p-value of a standard normal statistic ``z``."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def difference(estimate: float, se: float) -> Interval:
    """``estimate`` with its normal 95 % interval and p-value for standard error ``se``."""
    if not math.isfinite(se) or se <= 0:
        p = 1.0 if estimate == 0 else None
        return Interval(estimate, estimate, estimate, p)
    half = Z95 * se
    return Interval(estimate, estimate - half, estimate + half, p_two_sided(estimate / se))


def log_ratio(a: float, b: float, se_log: float) -> Interval:
    """The relative change ``a / b - 1`` with the interval of ``log(a / b)`` (standard
    error ``se_log``) mapped back; None when either side is 0."""
    if a <= 0 or b <= 0 or not math.isfinite(se_log):
        return Interval(None, None, None)
    lr = math.log(a / b)
    p = p_two_sided(lr / se_log) if se_log > 0 else (1.0 if lr == 0 else None)
    return Interval(a / b - 1, math.exp(lr - Z95 * se_log) - 1, math.exp(lr + Z95 * se_log) - 1, p)


def conversion_uplift(x_t: int, n_t: int, x_c: int, n_c: int) -> tuple[Interval, Interval]:
    """(absolute, relative) uplift of the conversion rate, treatment over control."""
    p_t, p_c = x_t / n_t, x_c / n_c
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    absolute = difference(p_t - p_c, se)
    if x_t == 0 or x_c == 0:
        return absolute, Interval(None, None, None)
    se_log = math.sqrt((1 - p_t) / x_t + (1 - p_c) / x_c)
    return absolute, log_ratio(p_t, p_c, se_log)


def mean_uplift(
    sum_t: float, sq_t: float, n_t: int, sum_c: float, sq_c: float, n_c: int
) -> tuple[Interval, Interval]:
    """(absolute, relative) uplift of a mean per customer from each group's sum, sum of
    squares and size (Welch's standard error)."""
    m_t, m_c = sum_t / n_t, sum_c / n_c
    v_t, v_c = _variance(sum_t, sq_t, n_t), _variance(sum_c, sq_c, n_c)
    absolute = difference(m_t - m_c, math.sqrt(v_t / n_t + v_c / n_c))
    if m_t <= 0 or m_c <= 0:
        return absolute, Interval(None, None, None)
    se_log = math.sqrt(v_t / (n_t * m_t**2) + v_c / (n_c * m_c**2))
    return absolute, log_ratio(m_t, m_c, se_log)


def _variance(total: float, squares: float, n: int) -> float:
    """The sample variance (n - 1) from a sum and a sum of squares."""
    if n < 2:
        return 0.0
    return max(0.0, (squares - total * total / n) / (n - 1))


def too_small(x_t: int, n_t: int, x_c: int, n_c: int) -> str | None:
    """Why a comparison cannot tell an effect from noise (None: it can)."""
    if min(n_t, n_c) < MIN_GROUP:
        return (
            f"too small to tell: {n_t} treated and {n_c} control customers "
            f"(at least {MIN_GROUP} in each group are needed)"
        )
    events, non_events = x_t + x_c, (n_t - x_t) + (n_c - x_c)
    if min(events, non_events) < MIN_EVENTS:
        return (
            f"too small to tell: {events} conversions and {non_events} non-conversions "
            f"(at least {MIN_EVENTS} of each are needed)"
        )
    return None


def group_sums(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` (and ``group``): customers ``n``, conversions ``x``, revenue ``rev``
    and its sum of squares ``rev2``, and each response's count (vectorised)."""
    frame = rows.assign(rev2=rows["revenue"] ** 2)
    agg: dict[str, tuple[str, str]] = {
        "n": ("converted", "size"),
        "x": ("converted", "sum"),
        "rev": ("revenue", "sum"),
        "rev2": ("rev2", "sum"),
    }
    for name in RESPONSES[:-1]:
        if name in frame:
            agg[name] = (name, "sum")
    return frame.groupby([*keys, "group"], observed=True, sort=True).agg(**agg)


def _group_doc(s: pd.Series | None) -> dict[str, Any]:
    if s is None or int(s["n"]) == 0:
        return {"customers": 0}
    n = int(s["n"])
    doc: dict[str, Any] = {
        "customers": n,
        "conversions": int(s["x"]),
        "conversion_rate": _r(float(s["x"]) / n),
        "revenue": _r(float(s["rev"]), 2),
        "revenue_per_customer": _r(float(s["rev"]) / n),
    }
    for name in RESPONSES[:-1]:
        if name in s.index:
            doc[f"{name}_rate"] = _r(float(s[name]) / n)
    return doc


def controlled_effect(t: pd.Series, c: pd.Series) -> dict[str, Any]:
    """One segment's effect from its treatment and control sums (see the module docs)."""
    n_t, x_t, n_c, x_c = int(t["n"]), int(t["x"]), int(c["n"]), int(c["x"])
    conv_abs, conv_rel = conversion_uplift(x_t, n_t, x_c, n_c)
    rev_abs, rev_rel = mean_uplift(
        float(t["rev"]), float(t["rev2"]), n_t, float(c["rev"]), float(c["rev2"]), n_c
    )
    warning = too_small(x_t, n_t, x_c, n_c)
    negative = (conv_abs.significant and (conv_abs.estimate or 0) < 0) or (
        rev_abs.significant and (rev_abs.estimate or 0) < 0
    )
    positive = (conv_abs.significant and (conv_abs.estimate or 0) > 0) or (
        rev_abs.significant and (rev_abs.estimate or 0) > 0
    )
    if warning:
        verdict = "too small to tell"
    elif negative:
        verdict = "negative"
    elif positive:
        verdict = "positive"
    else:
        verdict = "no significant effect"
    return {
        "treatment": _group_doc(t),
        "control": _group_doc(c),
        "conversion_uplift": conv_abs.to_dict(),
        "conversion_uplift_relative": conv_rel.to_dict(),
        "revenue_uplift": rev_abs.to_dict(),
        "revenue_uplift_relative": rev_rel.to_dict(),
        "incremental_conversions": conv_abs.scaled(n_t).to_dict(),
        "incremental_revenue": rev_abs.scaled(n_t).to_dict(),
        "verdict": verdict,
        "negative": bool(negative and not warning),
        "warnings": [warning] if warning else [],
    }


def uncontrolled_effect(seg: pd.Series, base: pd.Series) -> dict[str, Any]:
    """One segment's response against the campaign's baseline (every segment): not causal."""
    n, x, n_b, x_b = int(seg["n"]), int(seg["x"]), int(base["n"]), int(base["x"])
    p, p_b = x / n, x_b / n_b
    # the segment is part of the base: the rest of the base is the independent comparison
    n_r, x_r = n_b - n, x_b - x
    se = math.sqrt(p * (1 - p) / n + (p_r := x_r / n_r) * (1 - p_r) / n_r) if n_r else math.nan
    vs = difference(p - p_b, se)
    warning = None
    if n < MIN_GROUP:
        warning = f"too small to tell: {n} customers (at least {MIN_GROUP} are needed)"
    return {
        "treatment": _group_doc(seg),
        "baseline": _group_doc(base),
        "conversion_vs_baseline": vs.to_dict(),
        "conversion_index": _r(p / p_b) if p_b > 0 else None,
        "revenue_index": _r((float(seg["rev"]) / n) / (float(base["rev"]) / n_b))
        if float(base["rev"]) > 0
        else None,
        "verdict": "too small to tell" if warning else "not causal (no control group)",
        "negative": False,
        "warnings": [warning] if warning else [],
    }


def campaign_effect(rows: pd.DataFrame) -> dict[str, Any]:
    """The effect of one campaign per segment.

    ``rows``: one row per customer of the campaign with ``segment_id`` (int),
    ``segment_name``, ``group`` (``treatment`` / ``control``), ``converted`` (bool),
    ``revenue`` (float, 0 when none) and optionally ``sent`` / ``opened`` / ``clicked``.
    """
    sums = group_sums(rows, ["segment_id", "segment_name"])
    overall = group_sums(rows.assign(all=1), ["all"])
    has_control = CONTROL in set(rows["group"])
    segments: list[dict[str, Any]] = []
    for key, block in sums.groupby(level=[0, 1], sort=True):
        seg_id, name = cast(tuple[int, str], key)
        by_group = {g: block.xs(g, level="group").iloc[0] for g in block.index.get_level_values(2)}
        doc: dict[str, Any] = {"segment_id": int(seg_id), "segment_name": str(name)}
        if has_control:
            t, c = by_group.get(TREATMENT), by_group.get(CONTROL)
            if t is None or c is None:
                missing = TREATMENT if t is None else CONTROL
                doc.update(
                    treatment=_group_doc(t),
                    control=_group_doc(c),
                    verdict="too small to tell",
                    negative=False,
                    warnings=[f"too small to tell: no {missing} customer in this segment"],
                )
            else:
                doc.update(controlled_effect(t, c))
        else:
            base = overall.xs(TREATMENT, level="group").iloc[0]
            doc.update(uncontrolled_effect(by_group[TREATMENT], base))
        segments.append(doc)
    total = {g: overall.xs(g, level="group").iloc[0] for g in overall.index.get_level_values(1)}
    if has_control and TREATMENT in total:
        everyone: dict[str, Any] = {"segment_id": None, "segment_name": "all segments"}
        everyone.update(controlled_effect(total[TREATMENT], total[CONTROL]))
    else:
        everyone = {"segment_name": "all segments", "treatment": _group_doc(total.get(TREATMENT))}
    return {
        "causal": bool(has_control),
        "has_control": bool(has_control),
        "method": METHOD if has_control else {**METHOD, "note": _NOT_CAUSAL},
        "overall": everyone,
        "segments": segments,
        "negative_segments": [s["segment_id"] for s in segments if s.get("negative")],
    }


_NOT_CAUSAL = (
    "no control group: each segment's rates are set against the campaign's rate over every "
    "segment; a difference is not an effect of the campaign (the segment may have bought "
    "anyway)"
)


def clean_flags(values: pd.Series) -> np.ndarray:
    """A yes/no (or time: present means yes) column as booleans, missing as False."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.notna().to_numpy(dtype=bool)
    return values.astype("boolean").fillna(False).to_numpy(dtype=bool)
