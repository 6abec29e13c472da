"""A scoring run's customer-value predictions (see docs/predictions.md).

When the model carries a fitted ``clv`` prediction (:mod:`custseg.predict.clv`, fitted at
training on an order log's repeat-purchase history) and the run's features carry that
history, each chunk gets ``p_alive``, ``expected_purchases_90d`` and ``expected_value_12m``
per customer (:func:`forecasts_of`); :class:`ValueTotals` sums them per segment for the
profiles, and :func:`holdout_check` tests the model family on this run's order history
(:data:`custseg.predict.clv.HOLDOUT_RULE`) for metrics.json and the verdict. A model
without the prediction (trained before it existed, or on a customer table) scores as
before, with the prediction columns empty.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from custseg.features.build import Features
from custseg.features.engine import (
    EngineLimits,
    FeatureEngineError,
    first_purchase_day,
    holdout_data,
)
from custseg.features.sql import HISTORY_COLUMNS
from custseg.ingest.contracts.model import Contract
from custseg.predict.clv import (
    HOLDOUT_MISS_WATCH,
    HOLDOUT_RULE,
    MIN_HISTORY_DAYS,
    FitError,
    RepeatHistory,
    holdout_comparison,
    holdout_days,
    predict_history,
)
from custseg.scoring.accumulators import grow

log = logging.getLogger(__name__)

CLV = "clv"
"""The prediction's name in the model metadata's ``predictions`` section."""


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
    doc: dict[str, Any] = {"rule": HOLDOUT_RULE, "evaluated": False}
    try:
        first = first_purchase_day(parts, contract, as_of, limits)
        span = (as_of - first).days if first is not None else 0
        length = holdout_days(span)
        if first is None or length is None:
            doc["reason"] = (
                f"the order history spans {span} days, fewer than the {MIN_HISTORY_DAYS} "
                "the holdout check needs"
            )
            return doc
        cutoff = as_of - dt.timedelta(days=length)
        data = holdout_data(parts, contract, cutoff, as_of, limits)
        frequency, recency, age = (data[name] for name in HISTORY_COLUMNS[:3])
        calibration = RepeatHistory.of(frequency, recency, age, weights=data["customers"])
        comparison = holdout_comparison(
            calibration, data["holdout_purchases"].to_numpy(), float(length), miss_watch=miss_watch
        )
    except (FitError, FeatureEngineError) as exc:
        doc["reason"] = f"not evaluated: {exc}"
        log.warning("holdout check not evaluated: %s", exc)
        return doc
    doc.update(
        evaluated=True,
        first_purchase=first.isoformat(),
        calibration_end=cutoff.isoformat(),
        holdout_days=length,
        **comparison,
    )
    return doc


def predictions_metrics(doc: dict[str, Any] | None, holdout: dict[str, Any] | None) -> dict:
    """metrics.json ``predictions``: the model's fitted ``clv`` parameters and the holdout
    check (``available`` False when the model has no fitted prediction)."""
    if doc is None:
        return {CLV: {"available": False}}
    return {CLV: {"available": True, "model": doc, "holdout": holdout}}
