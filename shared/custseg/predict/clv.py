"""Repeat purchases and customer value: BG/NBD and Gamma-Gamma, fitted by maximum likelihood.

Models (see docs/predictions.md for how to read the outputs):

- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
  customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after each purchase
  they drop out with probability p ~ Beta(a, b). Inputs per customer: ``frequency`` x (the
  number of REPEAT purchases), ``recency`` t_x (time from the first to the last purchase;
  0 when x = 0) and ``T`` (time from the first purchase to the end of the observation).
- Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves for customer
  base analysis"): the value of a customer's purchases is Gamma(p, nu) with nu ~ Gamma(q,
  gamma); input: ``monetary``, the mean value of the repeat purchases (repeat buyers only).

Time unit: whatever unit the inputs share; ``days_per_unit`` says how many days it is (1 for
days, the custseg pipeline's unit; 7 for weeks, the CDNOW data's). Horizons are given in
days and converted.

Outputs (:meth:`CustomerValueModel.predict`): ``p_alive`` (the probability the customer has
not dropped out), ``expected_purchases`` in a horizon (default :data:`DEFAULT_HORIZON_DAYS`)
and ``expected_value`` over :data:`VALUE_MONTHS` months: the Gamma-Gamma expected value of a
purchase times the purchases expected in each month, month ``i`` discounted by
``(1 + monthly_discount) ** i`` (default :data:`DEFAULT_MONTHLY_DISCOUNT`, 1 % a month; a
month is :data:`DAYS_PER_MONTH` days).

Fitting maximises the closed-form log-likelihoods (in log-parameters, so every parameter
stays positive) with :func:`scipy.optimize.minimize`: BG/NBD by L-BFGS-B on its analytic
gradient (:func:`bgnbd_with_gradient`, a few dozen evaluations); Gamma-Gamma, and BG/NBD
when that does not converge, by Nelder-Mead, then L-BFGS-B from its result. Everything is
vectorised over customers; customers with the same (x, t_x, T) are fitted once with a
weight (:func:`compress`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import optimize, special

from custseg.features.sql import HISTORY_COLUMNS

CLV = KIND = "clv"
"""The prediction's name (and ``kind``) in the model metadata's ``predictions`` section."""

DAYS_PER_MONTH = 365.25 / 12
DEFAULT_HORIZON_DAYS = 90.0
DEFAULT_MONTHLY_DISCOUNT = 0.01
VALUE_MONTHS = 12
MIN_REPEAT_BUYERS = 10
"""Fewest repeat buyers a fit accepts (both models learn from them)."""

MIN_HISTORY_DAYS = 180
"""The holdout check needs an order history at least this long (first purchase to as-of)."""
HOLDOUT_SHARE = 1 / 3
"""The holdout is the last third of the order history ..."""
MAX_HOLDOUT_DAYS = 365
"""... at most a year."""
HOLDOUT_MISS_WATCH = 0.20
"""A holdout total missed by more than this share of the actual purchases gives "watch"."""
FREQUENCY_BUCKETS = 8
"""Holdout buckets by calibration repeat purchases: 0, 1, ..., 6, and 7 or more."""


class FitError(ValueError):
    """The data cannot be fitted (too few repeat buyers, or the fit did not converge)."""


def _array(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype="float64").reshape(-1)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}: row {int(bad[0])} is not a finite number")
    return arr


@dataclass(frozen=True)
class RepeatHistory:
    """Per-customer inputs (aligned arrays, one row per customer or per group of identical
    customers when ``weights`` count them). Build with :meth:`of`, which checks them."""

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray | None = None
    weights: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        frequency: Any,
        recency: Any,
        T: Any,
        monetary: Any = None,
        weights: Any = None,
    ) -> RepeatHistory:
        """Checked inputs; ``ValueError`` names the input and the first bad row:
        frequency must be a whole number >= 0, 0 <= recency <= T, recency 0 when
        frequency is 0, monetary > 0 or missing (NaN: unknown) where frequency > 0
        (ignored elsewhere)."""
        x, tx, age = _array("frequency", frequency), _array("recency", recency), _array("T", T)
        if not len(x) == len(tx) == len(age):
            raise ValueError(
                f"frequency, recency and T differ in length ({len(x)}, {len(tx)}, {len(age)})"
            )
        _first_bad("frequency", (x < 0) | (x != np.round(x)), "is not a whole number >= 0")
        _first_bad("recency", (tx < 0) | (tx > age), "is not between 0 and T")
        _first_bad("recency", (x == 0) & (tx != 0), "is not 0 for a customer without repeats")
        m = None
        if monetary is not None:
            m = np.asarray(monetary, dtype="float64").reshape(-1)
            if len(m) != len(x):
                raise ValueError(f"monetary has {len(m)} rows, frequency {len(x)}")
            repeat = x > 0
            _first_bad("monetary", repeat & ~(np.isnan(m) | (m > 0)), "is not > 0")
        w = None
        if weights is not None:
            w = _array("weights", weights)
            if len(w) != len(x):
                raise ValueError(f"weights has {len(w)} rows, frequency {len(x)}")
            _first_bad("weights", w < 0, "is negative")
        return cls(x, tx, age, m, w)

    def __len__(self) -> int:
        return int(self.frequency.shape[0])

    @property
    def counts(self) -> np.ndarray:
        """Customers per row (the weights, or ones)."""
        return self.weights if self.weights is not None else np.ones(len(self))


def _first_bad(name: str, mask: np.ndarray, problem: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        raise ValueError(f"{name}: row {int(bad[0])} {problem}")


def compress(x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x, t_x, T, weights) with identical customers merged (weights summed)."""
    rows = np.column_stack([x, tx, T])
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    weights = np.bincount(inverse.reshape(-1), weights=w, minlength=len(unique))
    return unique[:, 0], unique[:, 1], unique[:, 2], weights


LOG_BOUND = 20.0
"""Every parameter is searched in [exp(-20), exp(20)]: a fit that runs to a bound (e.g. a
dropout Beta with b -> infinity when the data shows no customer leaving) stays finite and
means the same as the limit."""


def _minimize(
    objective: Any, start: np.ndarray, what: str, with_gradient: Any = None
) -> tuple[np.ndarray, float]:
    """The log-parameters minimising ``objective`` within :data:`LOG_BOUND`: given
    ``with_gradient`` (the objective and its gradient at once), L-BFGS-B on it when that
    converges (a few dozen evaluations); else Nelder-Mead, then L-BFGS-B on finite
    differences (a thousand or more)."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    if with_gradient is not None:
        with np.errstate(all="ignore"):
            fast = optimize.minimize(
                with_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
                options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 1000},
            )  # fmt: skip
        if fast.success and np.isfinite(fast.fun) and fast.fun < 1e300:
            return np.asarray(fast.x), float(fast.fun)
    with np.errstate(all="ignore"):
        first = optimize.minimize(
            objective,
            start,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12},
        )
        best = optimize.minimize(objective, first.x, method="L-BFGS-B", bounds=bounds)
    result = best if best.fun <= first.fun else first
    if not np.isfinite(result.fun) or result.fun >= 1e300 or not np.all(np.isfinite(result.x)):
        raise FitError(f"the {what} fit did not converge")
    return np.asarray(result.x), float(result.fun)


# ---------------------------------------------------------------------------------------
# BG/NBD
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BetaGeoParams:
    """BG/NBD parameters: purchase rate Gamma(r, alpha) (alpha in the inputs' time unit),
    dropout probability Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def bgnbd_log_likelihood(
    params: BetaGeoParams, x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (FHL 2005, equation 6)."""
    return bgnbd_with_gradient(params, x, tx, T)[0]


def bgnbd_with_gradient(
    params: BetaGeoParams, x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's BG/NBD log-likelihood (FHL 2005, equation 6) and its gradient with
    respect to the logarithms of (r, alpha, a, b), shape (n, 4)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b)
    a2 = a2 - special.gammaln(a + b + x)
    log_t, log_tx = np.log(alpha + T), np.log(alpha + tx)
    a3 = -(r + x) * log_t
    b_x = b + np.maximum(x, 1) - 1
    a4 = np.where(x > 0, np.log(a) - np.log(b_x) - (r + x) * log_tx, -np.inf)
    total = np.logaddexp(a3, a4)
    s3, s4 = np.exp(a3 - total), np.exp(a4 - total)  # the two terms' shares (s4 0: no repeat)
    d_r = special.digamma(r + x) - special.digamma(r) + np.log(alpha) - s3 * log_t - s4 * log_tx
    d_alpha = r / alpha - (r + x) * (s3 / (alpha + T) + s4 / (alpha + tx))
    shared = special.digamma(a + b) - special.digamma(a + b + x)
    d_a = shared + s4 / a
    d_b = shared + special.digamma(b + x) - special.digamma(b) - s4 / b_x
    gradient = np.column_stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return np.asarray(a1 + a2 + total), gradient


@dataclass
class BetaGeoFitter:
    """BG/NBD: ``fit`` on repeat histories, then ``p_alive`` and ``predict`` (expected
    repeat purchases in a horizon, in the inputs' time unit)."""

    params_: BetaGeoParams | None = None
    log_likelihood_: float | None = None

    def fit(self, history: RepeatHistory) -> Self:
        """Maximum-likelihood parameters; ``FitError`` below :data:`MIN_REPEAT_BUYERS`."""
        x, tx, T = history.frequency, history.recency, history.T
        repeaters = float(history.counts[x > 0].sum())
        if repeaters < MIN_REPEAT_BUYERS:
            raise FitError(
                f"{repeaters:.0f} repeat buyers: the BG/NBD fit needs {MIN_REPEAT_BUYERS}"
            )
        x, tx, T, w = compress(x, tx, T, history.counts)
        total = w.sum()

        def objective(logp: np.ndarray) -> float:
            p = BetaGeoParams(*np.exp(logp))
            value = -float(np.dot(w, bgnbd_log_likelihood(p, x, tx, T))) / total
            return value if math.isfinite(value) else 1e300

        def with_gradient(logp: np.ndarray) -> tuple[float, np.ndarray]:
            values, gradients = bgnbd_with_gradient(BetaGeoParams(*np.exp(logp)), x, tx, T)
            value = -float(np.dot(w, values)) / total
            if not math.isfinite(value):
                return 1e300, np.zeros(4)
            return value, np.asarray(-(w @ gradients) / total)

        start = np.log([1.0, max(float(np.average(T, weights=w)), 1e-3), 1.0, 1.0])
        logp, fun = _minimize(objective, start, "BG/NBD", with_gradient)
        self.params_ = BetaGeoParams(*(float(v) for v in np.exp(logp)))
        self.log_likelihood_ = -fun * float(total)
        return self

    @property
    def params(self) -> BetaGeoParams:
        if self.params_ is None:
            raise RuntimeError("BetaGeoFitter is not fitted")
        return self.params_

    def p_alive(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still a customer | x, t_x, T) (FHL 2005, equation 11; 1 without repeats)."""
        r, alpha, a, b = self.params.r, self.params.alpha, self.params.a, self.params.b
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = (
                np.log(a)
                - np.log(b + np.maximum(x, 1) - 1)
                + (r + x) * np.log((alpha + T) / (alpha + tx))
            )
        return np.asarray(np.where(x > 0, special.expit(-odds), 1.0))

    def predict(self, t: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, equation 10)."""
        r, alpha, a, b = self.params.r, self.params.alpha, self.params.a, self.params.b
        if abs(a - 1.0) < 1e-9:  # the closed form divides by a - 1
            a = 1.0 + 1e-9
        z = t / (alpha + T + t)
        with np.errstate(over="ignore", invalid="ignore"):
            hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
            shrink = np.exp((r + x) * np.log((alpha + T) / (alpha + T + t)))
            purchases = (a + b + x - 1) / (a - 1) * (1 - shrink * hyp)
        return np.asarray(np.clip(purchases * self.p_alive(x, tx, T), 0.0, None))


# ---------------------------------------------------------------------------------------
# Gamma-Gamma
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: spend per purchase Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float

    def to_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Each repeat buyer's log-likelihood of their mean purchase value ``m`` over ``x``
    purchases (FHL 2005 "RFM and CLV", equation 3)."""
    p, q, g = params.p, params.q, params.gamma
    px = p * x
    return np.asarray(
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + m * x)
    )


@dataclass
class GammaGammaFitter:
    """Gamma-Gamma: ``fit`` on repeat buyers, then ``predict`` (the expected value of a
    customer's future purchase)."""

    params_: GammaGammaParams | None = None
    frequency_value_correlation_: float | None = None

    def fit(self, history: RepeatHistory) -> Self:
        """Maximum likelihood on the repeat buyers (frequency > 0, monetary known);
        ``FitError`` when they are fewer than :data:`MIN_REPEAT_BUYERS` or q <= 1 (no
        finite mean value)."""
        if history.monetary is None:
            raise ValueError("monetary: the Gamma-Gamma fit needs the mean repeat-order value")
        repeat = (history.frequency > 0) & ~np.isnan(history.monetary)
        x, m, w = history.frequency[repeat], history.monetary[repeat], history.counts[repeat]
        if w.sum() < MIN_REPEAT_BUYERS:
            raise FitError(
                f"{w.sum():.0f} repeat buyers: the Gamma-Gamma fit needs {MIN_REPEAT_BUYERS}"
            )
        total = w.sum()

        def objective(logp: np.ndarray) -> float:
            p = GammaGammaParams(*np.exp(logp))
            value = -float(np.dot(w, gamma_gamma_log_likelihood(p, x, m))) / total
            return value if math.isfinite(value) else 1e300

        start = np.log([1.0, 2.0, max(float(np.average(m, weights=w)), 1e-6)])
        logp, _ = _minimize(objective, start, "Gamma-Gamma")
        params = GammaGammaParams(*(float(v) for v in np.exp(logp)))
        if params.q <= 1:
            raise FitError(
                f"Gamma-Gamma q = {params.q:.3f} <= 1: the order values are too spread "
                "for a finite expected value"
            )
        self.params_ = params
        if len(x) > 2 and np.std(x) > 0 and np.std(m) > 0:
            self.frequency_value_correlation_ = float(np.corrcoef(x, m)[0, 1])
        return self

    @property
    def params(self) -> GammaGammaParams:
        if self.params_ is None:
            raise RuntimeError("GammaGammaFitter is not fitted")
        return self.params_

    def predict(self, x: np.ndarray, m: np.ndarray | None) -> np.ndarray:
        """E[value of a purchase | x, m] (equation 5): a weighted mean of the population
        mean and the customer's own mean; the population mean p*gamma/(q-1) when x = 0 or
        ``m`` is unknown (NaN)."""
        p, q, g = self.params.p, self.params.q, self.params.gamma
        known = np.zeros(len(x), dtype=bool) if m is None else (x > 0) & ~np.isnan(m)
        n = np.where(known, x, 0.0)
        own = np.zeros(len(x)) if m is None else np.where(known, m, 0.0)
        return np.asarray(p * (g + n * own) / (p * n + q - 1))


# ---------------------------------------------------------------------------------------
# Both together
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuePredictions:
    """Per-customer predictions (aligned with the inputs)."""

    p_alive: np.ndarray
    expected_purchases: np.ndarray
    expected_value: np.ndarray


@dataclass
class CustomerValueModel:
    """BG/NBD + Gamma-Gamma: ``fit`` on repeat histories in a time unit of
    ``days_per_unit`` days, ``predict`` p_alive, purchases in ``horizon_days`` and the
    discounted value of the next :data:`VALUE_MONTHS` months."""

    days_per_unit: float = 1.0
    monthly_discount: float = DEFAULT_MONTHLY_DISCOUNT
    horizon_days: float = DEFAULT_HORIZON_DAYS
    purchases: BetaGeoFitter = field(default_factory=BetaGeoFitter)
    value: GammaGammaFitter = field(default_factory=GammaGammaFitter)
    fitted_on: dict[str, int] = field(default_factory=dict)

    def fit(self, history: RepeatHistory) -> Self:
        self.purchases.fit(history)
        self.value.fit(history)
        counts = history.counts
        self.fitted_on = {
            "customers": int(counts.sum()),
            "repeat_buyers": int(counts[history.frequency > 0].sum()),
        }
        return self

    def expected_value(self, history: RepeatHistory, months: int = VALUE_MONTHS) -> np.ndarray:
        """Expected value of each customer's purchases in the next ``months`` months,
        month ``i`` discounted by ``(1 + monthly_discount) ** i``."""
        x, tx, T = history.frequency, history.recency, history.T
        spend = self.value.predict(x, history.monetary)
        month = DAYS_PER_MONTH / self.days_per_unit
        before = np.zeros(len(x))
        purchases = np.zeros(len(x))
        for i in range(1, months + 1):  # 12 steps, each vectorised over every customer
            cumulative = self.purchases.predict(month * i, x, tx, T)
            purchases += (cumulative - before) / (1 + self.monthly_discount) ** i
            before = cumulative
        return np.asarray(spend * purchases)

    def predict(self, history: RepeatHistory) -> ValuePredictions:
        x, tx, T = history.frequency, history.recency, history.T
        horizon = self.horizon_days / self.days_per_unit
        return ValuePredictions(
            p_alive=self.purchases.p_alive(x, tx, T),
            expected_purchases=self.purchases.predict(horizon, x, tx, T),
            expected_value=self.expected_value(history),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready values (the artifact's ``predictions.clv``)."""
        return {
            "model": "BG/NBD + Gamma-Gamma",
            "time_unit_days": self.days_per_unit,
            "monthly_discount": self.monthly_discount,
            "horizon_days": self.horizon_days,
            "value_months": VALUE_MONTHS,
            "bgnbd": self.purchases.params.to_dict(),
            "gamma_gamma": self.value.params.to_dict(),
            "frequency_value_correlation": self.value.frequency_value_correlation_,
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CustomerValueModel:
        """The model :meth:`to_dict` described."""
        bg, gg = doc["bgnbd"], doc["gamma_gamma"]
        return cls(
            days_per_unit=float(doc.get("time_unit_days", 1.0)),
            monthly_discount=float(doc.get("monthly_discount", DEFAULT_MONTHLY_DISCOUNT)),
            horizon_days=float(doc.get("horizon_days", DEFAULT_HORIZON_DAYS)),
            purchases=BetaGeoFitter(
                BetaGeoParams(float(bg["r"]), float(bg["alpha"]), float(bg["a"]), float(bg["b"]))
            ),
            value=GammaGammaFitter(
                GammaGammaParams(float(gg["p"]), float(gg["q"]), float(gg["gamma"]))
            ),
            fitted_on={k: int(v) for k, v in (doc.get("fitted_on") or {}).items()},
        )


# ---------------------------------------------------------------------------------------
# Holdout check
# ---------------------------------------------------------------------------------------

HOLDOUT_RULE = (
    f"an order history of at least {MIN_HISTORY_DAYS} days (first purchase to as-of) is "
    f"split: the last third (at most {MAX_HOLDOUT_DAYS} days) is the holdout, the rest the "
    "calibration; BG/NBD is fitted on the calibration customers (first purchase before the "
    "holdout) and their predicted repeat purchases in the holdout are compared with the "
    f"actual ones; a total missed by more than {HOLDOUT_MISS_WATCH:.0%} gives 'watch'"
)


def holdout_days(history_days: int) -> int | None:
    """Days of the holdout for an order history of ``history_days`` days, or ``None``
    when the history is shorter than :data:`MIN_HISTORY_DAYS` (see :data:`HOLDOUT_RULE`)."""
    if history_days < MIN_HISTORY_DAYS:
        return None
    return int(min(round(history_days * HOLDOUT_SHARE), MAX_HOLDOUT_DAYS))


def _bucket_label(i: int) -> str:
    return f"{i}+" if i == FREQUENCY_BUCKETS - 1 else str(i)


def holdout_comparison(
    calibration: RepeatHistory,
    actual: np.ndarray,
    holdout: float,
    *,
    miss_watch: float = HOLDOUT_MISS_WATCH,
) -> dict[str, Any]:
    """BG/NBD fitted on ``calibration`` and its predicted repeat purchases in the next
    ``holdout`` time units compared with ``actual`` (per row: the purchases its customers
    made, summed over the row's weight). Returns the totals, the relative ``miss``
    ((predicted - actual) / actual), per calibration frequency bucket (0 .. 6, 7+) the mean
    predicted and actual purchases per customer, and ``status``: "watch" when |miss| >
    ``miss_watch``, else "ok". ``FitError`` when the calibration cannot be fitted."""
    actual = _array("actual", actual)
    if len(actual) != len(calibration):
        raise ValueError(f"actual has {len(actual)} rows, the calibration {len(calibration)}")
    fitter = BetaGeoFitter().fit(calibration)
    x, tx, T, w = calibration.frequency, calibration.recency, calibration.T, calibration.counts
    predicted = fitter.predict(holdout, x, tx, T) * w
    bucket = np.minimum(x, FREQUENCY_BUCKETS - 1).astype(np.intp)
    customers = np.bincount(bucket, weights=w, minlength=FREQUENCY_BUCKETS)
    pred_sum = np.bincount(bucket, weights=predicted, minlength=FREQUENCY_BUCKETS)
    actual_sum = np.bincount(bucket, weights=actual, minlength=FREQUENCY_BUCKETS)
    buckets = [
        {
            "frequency": _bucket_label(i),
            "customers": int(customers[i]),
            "predicted_mean": float(pred_sum[i] / customers[i]) if customers[i] else None,
            "actual_mean": float(actual_sum[i] / customers[i]) if customers[i] else None,
        }
        for i in range(FREQUENCY_BUCKETS)
    ]
    predicted_total, actual_total = float(predicted.sum()), float(actual.sum())
    miss = (predicted_total - actual_total) / actual_total if actual_total > 0 else None
    watch = miss is None or abs(miss) > miss_watch
    return {
        "customers": int(w.sum()),
        "repeat_buyers": int(w[x > 0].sum()),
        "bgnbd": fitter.params.to_dict(),
        "predicted_total": predicted_total,
        "actual_total": actual_total,
        "miss": miss,
        "miss_watch": miss_watch,
        "status": "watch" if watch else "ok",
        "by_frequency": buckets,
    }


# ---------------------------------------------------------------------------------------
# From an order log's features (custseg.features: Features.history)
# ---------------------------------------------------------------------------------------

PREDICTION_NAMES: tuple[str, ...] = ("p_alive", "expected_purchases_90d", "expected_value_12m")
"""The per-customer outputs, as the assignments name them."""


def history_of(frame: pd.DataFrame) -> tuple[np.ndarray, RepeatHistory]:
    """(mask of the rows with a purchase history, their :class:`RepeatHistory`) of an
    order log's history frame (:data:`custseg.features.sql.HISTORY_COLUMNS`, days); a
    mean repeat value that is not positive is unknown."""
    f, r, age, m = (
        frame[name].to_numpy(dtype="float64", na_value=np.nan) for name in HISTORY_COLUMNS
    )
    known = ~(np.isnan(f) | np.isnan(r) | np.isnan(age))
    with np.errstate(invalid="ignore"):
        m = np.where(m > 0, m, np.nan)
    return known, RepeatHistory.of(f[known], r[known], age[known], m[known])


def fit_history(frame: pd.DataFrame) -> dict[str, Any]:
    """The model metadata's ``predictions.clv`` entry (``kind``: :data:`KIND`) of a history
    frame: the fitted :class:`CustomerValueModel` as its dict (days), or ``unavailable``
    with the reason when the data cannot be fitted."""
    _, history = history_of(frame)
    try:
        return {"kind": KIND, **CustomerValueModel(days_per_unit=1.0).fit(history).to_dict()}
    except FitError as exc:
        return {"kind": KIND, "unavailable": str(exc)}


def predict_history(doc: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """:data:`PREDICTION_NAMES` -> per-row values (NaN for a customer without purchases)
    of the model ``doc`` (:meth:`CustomerValueModel.to_dict`)."""
    model = CustomerValueModel.from_dict(doc)
    known, history = history_of(frame)
    out = {name: np.full(len(frame), np.nan) for name in PREDICTION_NAMES}
    if known.any():
        predicted = model.predict(history)
        out["p_alive"][known] = predicted.p_alive
        out["expected_purchases_90d"][known] = predicted.expected_purchases
        out["expected_value_12m"][known] = predicted.expected_value
    return out
