"""A scoring run's predictions (see docs/predictions.md): which columns a model's runs
write, how a chunk gets them, and what the run reports about them.

A model carries two kinds of per-customer prediction in its metadata's ``predictions``
section: propensities (``p_<outcome>``, ``kind: "propensity"``,
:mod:`custseg.predict.propensity`) and, when trained on an order log, the customer-value
prediction (``clv``, ``kind: "clv"``, :mod:`custseg.predict.clv`). Each reader takes only
its own entries. :func:`prediction_columns` is the one list of a model's prediction
columns (``p_<outcome>`` per fitted propensity, then :data:`CLV_COLUMNS` when ``clv`` is
fitted); :func:`predict_chunk` computes exactly those for a chunk, and the assignments
append them after their own columns (:func:`custseg.scoring.outputs.with_predictions`).
A model without predictions (trained before they existed, or without outcome columns or
an order history) scores with no prediction columns.

Reports, folded chunk by chunk (bounded memory):

- :class:`PredictionStats`: per propensity column and segment the sum of probabilities,
  and the customers with the highest *value at risk*:

  - ``expected_value_12m x (1 - p_alive)`` when the run has both columns (an order log's
    customer-lifetime-value prediction);
  - else ``value x p_<risk outcome>`` (e.g. ``value x p_churn``) when the model has a
    churn-like propensity and the data a value measure;
  - else nothing is ranked.

  The run writes the top :data:`TOP_AT_RISK` customers as ``value_at_risk.csv``
  (:data:`AT_RISK_COLUMNS`), adds ``predictions.<column>`` and ``value_at_risk`` to
  metrics.json and a ``priority`` ranking of the segments (by value at risk) to
  profiles.json.
- :class:`ValueTotals`: per segment the sums of the customer-value columns for the
  profiles; :func:`holdout_check` tests the BG/NBD family on this run's order history
  (:data:`custseg.predict.clv.HOLDOUT_RULE`) for metrics.json ``predictions.clv`` and the
  verdict.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.features.build import Features
from custseg.features.engine import (
    EngineLimits,
    FeatureEngineError,
    first_purchase_day,
    holdout_data,
)
from custseg.features.sql import HISTORY_COLUMNS, HOLDOUT_COLUMNS, HOLDOUT_HISTORY_COLUMNS
from custseg.ingest.contracts.model import Contract
from custseg.predict.clv import (
    CLV,
    HOLDOUT_MISS_WATCH,
    HOLDOUT_RULE,
    MIN_HISTORY_DAYS,
    PREDICTION_NAMES,
    FitError,
    RepeatHistory,
    holdout_comparison,
    holdout_days,
    predict_history,
)
from custseg.predict.propensity import KIND as PROPENSITY
from custseg.predict.propensity import fitted_entries
from custseg.scoring.accumulators import grow
from custseg.spreadsheet import neutralise_table

if TYPE_CHECKING:
    from custseg.model.artifact import SegmentModel

log = logging.getLogger(__name__)

CLV_COLUMNS: tuple[str, ...] = PREDICTION_NAMES
"""The customer-value columns (``p_alive``, ``expected_purchases_90d``,
``expected_value_12m``) a model with a fitted ``clv`` writes."""

TOP_AT_RISK = 1_000
AT_RISK_CSV = "value_at_risk.csv"
AT_RISK_COLUMNS: dict[str, str] = {
    "rank": "1 = the most value at risk in the run.",
    "customer_id": "The customer's identifier as uploaded.",
    "segment_id": "The customer's segment.",
    "segment_name": "The segment's name.",
    "value": "The customer's value measure (or expected_value_12m, see measure).",
    "risk": "The probability of losing the customer: p_<churn outcome>, or 1 - p_alive.",
    "value_at_risk": "value x risk (currency).",
}
"""Columns of value_at_risk.csv, in order."""

CLV_VALUE, CLV_ALIVE = "expected_value_12m", "p_alive"  # two of CLV_COLUMNS


@dataclass(frozen=True)
class RiskMeasure:
    """How value at risk is computed in a run: the value and risk columns it uses."""

    value: str  # "value" (the value measure) or a prediction column
    risk: str  # a prediction column
    inverse: bool  # risk = 1 - column (p_alive)

    @property
    def text(self) -> str:
        risk = f"(1 - {self.risk})" if self.inverse else self.risk
        return f"{self.value} x {risk}"


def risk_measure(metadata: Mapping[str, Any], columns: list[str]) -> RiskMeasure | None:
    """The run's value-at-risk measure (module docs) for a model's metadata and the
    prediction columns the run writes."""
    if CLV_VALUE in columns and CLV_ALIVE in columns:
        return RiskMeasure(CLV_VALUE, CLV_ALIVE, inverse=True)
    section = metadata.get("predictions") or {}
    for name in columns:
        entry = section.get(name) or {}
        if entry.get("kind") == PROPENSITY and entry.get("use") == "risk":
            return RiskMeasure("value", name, inverse=False)
    return None


@dataclass
class PredictionStats:
    """Per-segment sums of each propensity column (``columns``) and the top customers by
    value at risk (``measure``, whose columns an :meth:`update` chunk carries)."""

    columns: list[str]
    measure: RiskMeasure | None
    top_n: int = TOP_AT_RISK
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    risk_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    risk_known: int = 0
    top: pd.DataFrame | None = None

    def _grow(self, k: int) -> None:
        for store in (self.sums, self.counts):
            for name in self.columns:
                arr = store.get(name, np.zeros(0))
                if arr.size < k:
                    store[name] = np.concatenate([arr, np.zeros(k - arr.size)])
        if self.risk_sum.size < k:
            self.risk_sum = np.concatenate([self.risk_sum, np.zeros(k - self.risk_sum.size)])

    def update(
        self,
        ids: pd.Index,
        segment: np.ndarray,
        value: np.ndarray | None,
        predictions: Mapping[str, np.ndarray],
    ) -> None:
        """Add one chunk: customer ids, segment ids, value measure (or None) and the
        prediction columns, aligned."""
        seg = np.asarray(segment, dtype=np.int64)
        if seg.size == 0:
            return
        k = int(seg.max()) + 1
        self._grow(k)
        for name in self.columns:
            p = np.asarray(predictions[name], dtype="float64")
            ok = np.isfinite(p)
            self.sums[name][:k] += np.bincount(seg[ok], weights=p[ok], minlength=k)
            self.counts[name][:k] += np.bincount(seg[ok], minlength=k)
        if self.measure is not None:
            self._update_risk(ids, seg, value, predictions, k)

    def _update_risk(
        self,
        ids: pd.Index,
        seg: np.ndarray,
        value: np.ndarray | None,
        predictions: Mapping[str, np.ndarray],
        k: int,
    ) -> None:
        assert self.measure is not None
        m = self.measure
        worth = value if m.value == "value" else predictions.get(m.value)
        if worth is None:
            return
        worth = np.asarray(worth, dtype="float64")
        risk = np.asarray(predictions[m.risk], dtype="float64")
        if m.inverse:
            risk = 1.0 - risk
        at_risk = worth * risk
        ok = np.isfinite(at_risk)
        self.risk_sum[:k] += np.bincount(seg[ok], weights=at_risk[ok], minlength=k)
        self.risk_known += int(ok.sum())
        rows = np.flatnonzero(ok)
        if rows.size > self.top_n:
            # the rows tied with the top_n-th stay too: the ranking below breaks ties by
            # customer id, so the list does not depend on how the customers were chunked
            cut = np.partition(-at_risk[rows], self.top_n - 1)[self.top_n - 1]
            rows = rows[-at_risk[rows] <= cut]
        chunk = pd.DataFrame(
            {
                "customer_id": ids[rows].astype("string"),
                "segment_id": seg[rows],
                "value": worth[rows],
                "risk": risk[rows],
                "value_at_risk": at_risk[rows],
            }
        )
        both = chunk if self.top is None else pd.concat([self.top, chunk], ignore_index=True)
        both = both.sort_values(
            ["value_at_risk", "customer_id"], ascending=[False, True], kind="stable"
        )
        self.top = both.head(self.top_n).reset_index(drop=True)

    def merge(self, other: PredictionStats) -> PredictionStats:
        """A new PredictionStats equal to having seen both inputs (customers disjoint)."""
        out = PredictionStats(list(self.columns), self.measure, self.top_n)
        k = max(self.risk_sum.size, other.risk_sum.size)
        out._grow(k)
        for part in (self, other):
            for name in self.columns:
                for store, mine in ((out.sums, part.sums), (out.counts, part.counts)):
                    arr = mine.get(name, np.zeros(0))
                    store[name][: arr.size] += arr
            out.risk_sum[: part.risk_sum.size] += part.risk_sum
            out.risk_known += part.risk_known
        tops = [t for t in (self.top, other.top) if t is not None]
        if tops:
            both = pd.concat(tops, ignore_index=True).sort_values(
                ["value_at_risk", "customer_id"], ascending=[False, True], kind="stable"
            )
            out.top = both.head(self.top_n).reset_index(drop=True)
        return out

    # -- documents ------------------------------------------------------------------------

    def metrics_doc(self, metadata: Mapping[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
        """metrics.json ``predictions``: per propensity column, the training evidence
        (cross-validated AUC, Brier score, reliability, top-decile lift, drivers) and this
        run's mean probability overall and per segment."""
        section = metadata.get("predictions") or {}
        doc: dict[str, Any] = {}
        for name in self.columns:
            entry = section.get(name) or {}
            sums, counts = self.sums.get(name, np.zeros(0)), self.counts.get(name, np.zeros(0))
            total = float(counts.sum())
            doc[name] = {
                "kind": entry.get("kind"),
                "outcome": entry.get("outcome"),
                "use": entry.get("use"),
                "model": entry.get("model"),
                "cv": entry.get("cv"),
                "drivers": entry.get("drivers", []),
                "mean": float(sums.sum()) / total if total else None,
                "by_segment": [
                    {
                        "id": s,
                        "name": names.get(s, f"Segment {s}"),
                        "customers": int(counts[s]),
                        "mean": float(sums[s] / counts[s]) if counts[s] else None,
                    }
                    for s in range(counts.size)
                ],
            }
        for name, entry in section.items():  # outcomes training could not model
            if (
                isinstance(entry, dict)
                and entry.get("kind") == PROPENSITY
                and entry.get("status") == "skipped"
            ):
                doc[name] = {"kind": entry.get("kind"), "skipped": entry.get("reason")}
        return doc

    def value_at_risk_doc(self) -> dict[str, Any] | None:
        """metrics.json ``value_at_risk`` (None when no measure applies)."""
        if self.measure is None:
            return None
        return {
            "measure": self.measure.text,
            "customers": self.risk_known,
            "total": float(self.risk_sum.sum()),
            "top_file": AT_RISK_CSV,
            "top_rows": 0 if self.top is None else len(self.top),
        }

    def priority(
        self, names: Mapping[int, str], actions: Mapping[int, str]
    ) -> list[dict[str, Any]]:
        """The segments ranked by value at risk (highest first), with their share of the
        run's total and their action; empty without a measure."""
        if self.measure is None or not self.risk_sum.size:
            return []
        total = float(self.risk_sum.sum())
        order = sorted(range(self.risk_sum.size), key=lambda s: (-self.risk_sum[s], s))
        return [
            {
                "rank": i + 1,
                "id": s,
                "name": names.get(s, f"Segment {s}"),
                "value_at_risk": float(self.risk_sum[s]),
                "share": float(self.risk_sum[s]) / total if total > 0 else None,
                "action": actions.get(s),
            }
            for i, s in enumerate(order)
        ]

    def write_top(self, path: Path, names: Mapping[int, str]) -> int:
        """Write ``value_at_risk.csv`` (:data:`AT_RISK_COLUMNS`); the rows written."""
        top = self.top if self.top is not None else pd.DataFrame(columns=list(AT_RISK_COLUMNS))
        n = len(top)
        seg = top["segment_id"].to_numpy(dtype=np.int64) if n else np.zeros(0, np.int64)
        table = pa.table(
            {
                "rank": pa.array(np.arange(1, n + 1), pa.int64()),
                "customer_id": pa.array(top["customer_id"].astype("string"), pa.string()),
                "segment_id": pa.array(seg, pa.int16()),
                "segment_name": pa.array(
                    [names.get(int(s), f"Segment {int(s)}") for s in seg], pa.string()
                ),
                "value": pa.array(np.round(top["value"].to_numpy(dtype="float64"), 2)),
                "risk": pa.array(np.round(top["risk"].to_numpy(dtype="float64"), 6)),
                "value_at_risk": pa.array(
                    np.round(top["value_at_risk"].to_numpy(dtype="float64"), 2)
                ),
            }
        )
        pacsv.write_csv(neutralise_table(table), str(path))
        return n


# -- a model's prediction columns ----------------------------------------------------------


def prediction_columns(model: SegmentModel) -> list[str]:
    """The prediction columns a model's runs write, in order: ``p_<outcome>`` per fitted
    propensity (metadata order), then :data:`CLV_COLUMNS` when the model has a fitted
    ``clv``."""
    columns = list(propensity_columns(model))
    if model.prediction(CLV) is not None:
        columns += CLV_COLUMNS
    return columns


def propensity_columns(model: SegmentModel) -> list[str]:
    """The ``p_<outcome>`` columns of a model (its fitted propensities with an estimator)."""
    return list(fitted_entries(model.metadata, model.predictors))


def predict_chunk(
    model: SegmentModel, features: Features, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """``columns`` (:func:`prediction_columns`) per customer of the chunk, in row order,
    float64: the propensities and the customer-value forecasts (:func:`forecasts_of`);
    NaN where a prediction is unknown (e.g. a customer without purchases)."""
    n = len(features.frame)
    out: dict[str, np.ndarray] = {}
    if any(name not in CLV_COLUMNS for name in columns):
        out.update(model.predict_extra(features))
    if any(name in CLV_COLUMNS for name in columns):
        out.update(forecasts_of(model.prediction(CLV), features) or {})
    return {
        name: np.asarray(out[name], dtype="float64") if name in out else np.full(n, np.nan)
        for name in columns
    }


def forecasts_of(doc: dict[str, Any] | None, features: Features) -> dict[str, np.ndarray] | None:
    """The chunk's predictions (name -> float64 per customer, NaN without purchases), or
    ``None`` when the model has no fitted ``clv`` (``doc``) or the features no history."""
    if doc is None or features.history is None:
        return None
    return predict_history(doc, features.history)


@dataclass
class ValueTotals:
    """Per segment: customers with predictions, and sums of their expected value (12
    months), p_alive, expected purchases (90 days) and past value (the value measure)."""

    customers: np.ndarray = field(default_factory=lambda: np.zeros(0))
    expected_value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    p_alive: np.ndarray = field(default_factory=lambda: np.zeros(0))
    purchases: np.ndarray = field(default_factory=lambda: np.zeros(0))
    past_value: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def update(
        self, segment: np.ndarray, forecasts: dict[str, np.ndarray], value: np.ndarray | None
    ) -> None:
        """Add one chunk (``segment`` ids aligned with ``forecasts`` and ``value``)."""
        known = ~np.isnan(forecasts["expected_value_12m"])
        seg = np.asarray(segment, dtype=np.intp)[known]
        k = max(len(self.customers), int(seg.max()) + 1 if seg.size else 0)

        def add(total: np.ndarray, values: np.ndarray) -> np.ndarray:
            sums = np.bincount(seg, weights=np.nan_to_num(values[known]), minlength=k)
            return grow(total, k) + sums

        self.customers = add(self.customers, np.ones(len(known)))
        self.expected_value = add(self.expected_value, forecasts["expected_value_12m"])
        self.p_alive = add(self.p_alive, forecasts["p_alive"])
        self.purchases = add(self.purchases, forecasts["expected_purchases_90d"])
        past = np.zeros(len(known)) if value is None else np.asarray(value, dtype="float64")
        self.past_value = add(self.past_value, past)

    def merge(self, other: ValueTotals) -> ValueTotals:
        """A new ValueTotals equal to having seen both inputs."""
        k = max(len(self.customers), len(other.customers))
        sums = {
            f.name: grow(getattr(self, f.name), k) + grow(getattr(other, f.name), k)
            for f in fields(ValueTotals)
        }
        return ValueTotals(**sums)


@dataclass
class BucketPredictions:
    """What a fanned-out run's feature bucket folds of its predictions (merged by the
    reduce step): the propensity and value-at-risk statistics, the customer-value totals
    per segment (``None`` without a fitted ``clv``) and the holdout check's groups."""

    stats: PredictionStats
    value_totals: ValueTotals | None
    holdout: HoldoutGroups

    def merge(self, other: BucketPredictions) -> BucketPredictions:
        """A new fold equal to having seen both buckets."""
        totals = self.value_totals
        if totals is not None and other.value_totals is not None:
            totals = totals.merge(other.value_totals)
        return BucketPredictions(
            self.stats.merge(other.stats), totals, self.holdout.merge(other.holdout)
        )


def holdout_check(
    parts: Sequence[Path],
    contract: Contract,
    as_of: dt.date,
    limits: EngineLimits,
    *,
    miss_watch: float = HOLDOUT_MISS_WATCH,
) -> dict[str, Any]:
    """The holdout check of the order log's ``parts`` as of ``as_of`` (see
    :data:`~custseg.predict.clv.HOLDOUT_RULE`): ``evaluated`` and, when it is, the
    comparison of :func:`~custseg.predict.clv.holdout_comparison`; otherwise ``reason``."""
    try:
        window = holdout_window(first_purchase_day(parts, contract, as_of, limits), as_of)
        if window.cutoff is None:
            return window.doc()
        data = holdout_data(parts, contract, window.cutoff, as_of, limits)
    except FeatureEngineError as exc:
        return not_evaluated(exc)
    return window.evaluate(data, miss_watch=miss_watch)


@dataclass(frozen=True)
class HoldoutWindow:
    """The holdout check's split of an order history (:func:`holdout_window`): its first
    purchase day, the calibration end (``cutoff``) and the holdout's days; ``cutoff`` is
    ``None`` when the history is too short (``reason`` says why)."""

    first: dt.date | None
    cutoff: dt.date | None
    days: int
    reason: str = ""

    def doc(self) -> dict[str, Any]:
        """metrics.json ``predictions.clv.holdout`` of a check not evaluated."""
        return {"rule": HOLDOUT_RULE, "evaluated": False, "reason": self.reason}

    def evaluate(self, data: pd.DataFrame, *, miss_watch: float) -> dict[str, Any]:
        """The check on ``data`` (:data:`~custseg.features.sql.HOLDOUT_COLUMNS`, one row
        per calibration history, in the holdout query's order)."""
        if self.first is None or self.cutoff is None:
            return self.doc()
        frequency, recency, age = (data[name] for name in HISTORY_COLUMNS[:3])
        try:
            calibration = RepeatHistory.of(frequency, recency, age, weights=data["customers"])
            comparison = holdout_comparison(
                calibration,
                data["holdout_purchases"].to_numpy(),
                float(self.days),
                miss_watch=miss_watch,
            )
        except FitError as exc:
            return not_evaluated(exc)
        return {
            "rule": HOLDOUT_RULE,
            "evaluated": True,
            "first_purchase": self.first.isoformat(),
            "calibration_end": self.cutoff.isoformat(),
            "holdout_days": self.days,
            **comparison,
        }


def holdout_window(first: dt.date | None, as_of: dt.date) -> HoldoutWindow:
    """The holdout check's split of an order history whose first purchase day is
    ``first`` (``None``: no purchase) as of ``as_of``."""
    span = (as_of - first).days if first is not None else 0
    length = holdout_days(span)
    if first is None or length is None:
        reason = (
            f"the order history spans {span} days, fewer than the {MIN_HISTORY_DAYS} "
            "the holdout check needs"
        )
        return HoldoutWindow(first, None, 0, reason)
    return HoldoutWindow(first, as_of - dt.timedelta(days=length), length)


def not_evaluated(exc: Exception) -> dict[str, Any]:
    """metrics.json ``predictions.clv.holdout`` of a check that failed with ``exc``."""
    log.warning("holdout check not evaluated: %s", exc)
    return {"rule": HOLDOUT_RULE, "evaluated": False, "reason": f"not evaluated: {exc}"}


@dataclass
class HoldoutGroups:
    """The holdout check's data folded from per-customer rows
    (:data:`~custseg.features.sql.HOLDOUT_HISTORY_COLUMNS`): customers and their holdout
    purchases summed per calibration history, as the holdout query groups them."""

    groups: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({n: np.zeros(0) for n in HOLDOUT_COLUMNS})
    )

    def update(self, per_customer: pd.DataFrame) -> None:
        """Add customers (columns ``HOLDOUT_HISTORY_COLUMNS``; a missing history, a
        customer whose first purchase is not before the cutoff, is left out)."""
        targets = (*HISTORY_COLUMNS[:3], "holdout_purchases")
        names = dict(zip(HOLDOUT_HISTORY_COLUMNS, targets, strict=True))
        rows = per_customer.loc[:, list(names)].rename(columns=names).astype("float64")
        rows = rows[rows[HISTORY_COLUMNS[0]].notna()].assign(customers=1.0)
        self._fold(rows)

    def merge(self, other: HoldoutGroups) -> HoldoutGroups:
        """A new fold equal to having seen both inputs."""
        out = HoldoutGroups(self.groups)
        out._fold(other.groups)
        return out

    def _fold(self, rows: pd.DataFrame) -> None:
        keys = list(HISTORY_COLUMNS[:3])
        both = pd.concat([self.groups, rows.loc[:, list(HOLDOUT_COLUMNS)]], ignore_index=True)
        summed = both.groupby(keys, as_index=False, sort=True)[
            ["customers", "holdout_purchases"]
        ].sum()
        self.groups = summed.loc[:, list(HOLDOUT_COLUMNS)].reset_index(drop=True)


def predictions_metrics(
    doc: dict[str, Any] | None, holdout: dict[str, Any] | None
) -> dict[str, Any]:
    """metrics.json ``predictions``: the model's fitted ``clv`` parameters and the holdout
    check (``available`` False when the model has no fitted prediction)."""
    if doc is None:
        return {CLV: {"available": False}}
    return {CLV: {"available": True, "model": doc, "holdout": holdout}}
