"""BG/NBD and Gamma-Gamma: the published CDNOW estimates, recovery of known parameters,
the predictions' properties and the holdout comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custseg.predict.clv import (
    BetaGeoFitter,
    BetaGeoParams,
    CustomerValueModel,
    FitError,
    GammaGammaFitter,
    RepeatHistory,
    holdout_comparison,
    holdout_days,
)


def _close(value: float, expected: float, share: float = 0.02) -> bool:
    return abs(value - expected) <= share * abs(expected)


def _history(cdnow: pd.DataFrame) -> RepeatHistory:
    return RepeatHistory.of(cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["zbar"])


def test_bgnbd_reproduces_the_published_cdnow_estimates(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 2357
    params = BetaGeoFitter().fit(_history(cdnow)).params
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, expected in published.items():
        assert _close(getattr(params, name), expected), (name, params)


def test_gamma_gamma_reproduces_the_published_cdnow_estimates(cdnow: pd.DataFrame) -> None:
    fitter = GammaGammaFitter().fit(_history(cdnow))
    published = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, expected in published.items():
        assert _close(getattr(fitter.params, name), expected), (name, fitter.params)


def test_cdnow_predictions_match_the_paper(cdnow: pd.DataFrame) -> None:
    """FHL 2005 section 5: a customer with x=2, t_x=30.43, T=38.86 weeks is expected to
    make 1.226 purchases in the next 39 weeks (lifetimes' docs give the same)."""
    fitter = BetaGeoFitter().fit(_history(cdnow))
    x, tx, T = np.array([2.0]), np.array([30.43]), np.array([38.86])
    assert _close(float(fitter.predict(39.0, x, tx, T)[0]), 1.226, 0.01)
    assert 0 < float(fitter.p_alive(x, tx, T)[0]) < 1


def _simulate(n: int, params: BetaGeoParams, T: float, seed: int) -> RepeatHistory:
    """BG/NBD customers observed for ``T`` units after their first purchase (vectorised:
    up to 400 purchase times per customer)."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(params.r, 1 / params.alpha, n)
    drop = rng.beta(params.a, params.b, n)
    repeats_before_dropout = rng.geometric(drop)  # drops out right after this repeat
    gaps = rng.exponential(1.0, (n, 400)) / rate[:, None]
    times = np.cumsum(gaps, axis=1)
    made = (times < T) & (np.arange(400)[None, :] < repeats_before_dropout[:, None])
    x = made.sum(axis=1).astype("float64")
    last = np.where(x > 0, times[np.arange(n), np.maximum(x.astype(int) - 1, 0)], 0.0)
    spend = rng.gamma(6.0, 1 / rng.gamma(4.0, 1 / 20.0, n)[:, None], (n, 400))
    mean_spend = np.where(x > 0, (spend * made).sum(axis=1) / np.maximum(x, 1), np.nan)
    return RepeatHistory.of(x, last, np.full(n, T), mean_spend)


def test_bgnbd_recovers_the_parameters_of_simulated_customers() -> None:
    truth = BetaGeoParams(r=0.5, alpha=10.0, a=0.8, b=3.0)
    params = BetaGeoFitter().fit(_simulate(20_000, truth, 80.0, seed=1)).params
    assert abs(params.r - truth.r) < 0.1 * truth.r
    assert abs(params.alpha - truth.alpha) < 0.15 * truth.alpha
    # the dropout parameters are less precise from one cohort; their mean drop is stable
    assert abs(params.a / (params.a + params.b) - 0.8 / 3.8) < 0.05


def test_gamma_gamma_recovers_the_parameters_of_simulated_customers() -> None:
    history = _simulate(20_000, BetaGeoParams(0.5, 10.0, 0.8, 3.0), 80.0, seed=2)
    params = GammaGammaFitter().fit(history).params
    assert abs(params.p - 6.0) < 0.1 * 6.0
    assert abs(params.q - 4.0) < 0.15 * 4.0
    assert abs(params.gamma - 20.0) < 0.2 * 20.0


def test_p_alive_is_one_without_repeats_and_falls_with_silence() -> None:
    fitter = BetaGeoFitter(BetaGeoParams(0.24, 4.4, 0.79, 2.4))
    x = np.array([0.0, 3.0, 3.0])
    tx = np.array([0.0, 30.0, 5.0])
    p = fitter.p_alive(x, tx, np.full(3, 35.0))
    assert p[0] == 1.0
    assert p[1] > p[2]  # the same purchases, but the last one long ago


def test_expected_purchases_grow_with_the_horizon() -> None:
    fitter = BetaGeoFitter(BetaGeoParams(0.24, 4.4, 0.79, 2.4))
    x, tx, T = np.array([1.0, 5.0]), np.array([10.0, 30.0]), np.array([38.0, 38.0])
    short, long = fitter.predict(13.0, x, tx, T), fitter.predict(52.0, x, tx, T)
    assert np.all(long > short) and np.all(short > 0)
    assert long[1] > long[0]


def test_customer_value_discounts_later_months(cdnow: pd.DataFrame) -> None:
    history = _history(cdnow)
    model = CustomerValueModel(days_per_unit=7.0).fit(history)
    undiscounted = CustomerValueModel.from_dict({**model.to_dict(), "monthly_discount": 0.0})
    value, plain = model.expected_value(history), undiscounted.expected_value(history)
    assert np.all(value <= plain) and np.all(value > 0)
    ratio = value.sum() / plain.sum()
    assert 1 / 1.01**12 < ratio < 1 / 1.01  # between the first and the last month's factor


def test_the_model_survives_its_dict(cdnow: pd.DataFrame) -> None:
    history = _history(cdnow)
    model = CustomerValueModel(days_per_unit=7.0).fit(history)
    again = CustomerValueModel.from_dict(model.to_dict())
    a, b = model.predict(history), again.predict(history)
    np.testing.assert_array_equal(a.expected_value, b.expected_value)
    np.testing.assert_array_equal(a.p_alive, b.p_alive)
    assert model.to_dict()["fitted_on"] == {"customers": 2357, "repeat_buyers": 946}


def test_bad_inputs_name_the_input_and_row() -> None:
    with pytest.raises(ValueError, match=r"frequency: row 1 is not a whole number"):
        RepeatHistory.of([1, 1.5], [1, 1], [2, 2])
    with pytest.raises(ValueError, match=r"recency: row 0 is not between 0 and T"):
        RepeatHistory.of([1], [3], [2])
    with pytest.raises(ValueError, match=r"recency: row 0 is not 0 for a customer without"):
        RepeatHistory.of([0], [1], [2])
    with pytest.raises(ValueError, match=r"monetary: row 0 is not > 0"):
        RepeatHistory.of([2], [1], [2], [0.0])
    with pytest.raises(ValueError, match=r"T: row 0 is not a finite number"):
        RepeatHistory.of([0], [0], [np.nan])


def test_too_few_repeat_buyers_is_a_fit_error() -> None:
    history = RepeatHistory.of([0] * 50 + [1] * 3, [0] * 50 + [2] * 3, [10] * 53)
    with pytest.raises(FitError, match="3 repeat buyers"):
        BetaGeoFitter().fit(history)


def test_weights_count_identical_customers() -> None:
    history = _simulate(3_000, BetaGeoParams(0.5, 10.0, 0.8, 3.0), 60.0, seed=3)
    frame = pd.DataFrame({"x": history.frequency, "t": history.recency, "T": history.T})
    grouped = frame.groupby(["x", "t", "T"], as_index=False).size()
    weighted = RepeatHistory.of(grouped["x"], grouped["t"], grouped["T"], weights=grouped["size"])
    a = BetaGeoFitter().fit(history).params
    b = BetaGeoFitter().fit(weighted).params
    assert _close(a.r, b.r, 1e-3) and _close(a.alpha, b.alpha, 1e-3)


def test_holdout_split_rule() -> None:
    assert holdout_days(179) is None
    assert holdout_days(180) == 60
    assert holdout_days(373) == 124
    assert holdout_days(3000) == 365


def test_holdout_comparison_on_simulated_customers() -> None:
    truth = BetaGeoParams(r=0.5, alpha=10.0, a=0.8, b=3.0)
    # calibration: the first 80 units; holdout: purchases in [80, 120)
    calibration, actual = _split(8_000, 80.0, 120.0, seed=4, truth=truth)
    doc = holdout_comparison(calibration, actual, 40.0)
    assert doc["customers"] == 8_000
    assert doc["status"] == "ok", doc
    assert abs(doc["miss"]) < 0.1
    assert [b["frequency"] for b in doc["by_frequency"]] == [*"0123456", "7+"]
    zero, many = doc["by_frequency"][0], doc["by_frequency"][-1]
    assert many["actual_mean"] > zero["actual_mean"]
    assert abs(zero["predicted_mean"] - zero["actual_mean"]) < 0.1


def _split(
    n: int, cutoff: float, end: float, *, seed: int, truth: BetaGeoParams
) -> tuple[RepeatHistory, np.ndarray]:
    """BG/NBD customers observed for ``end`` units, cut at ``cutoff``: (calibration
    histories, purchases in the holdout)."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(truth.r, 1 / truth.alpha, n)
    drop = rng.beta(truth.a, truth.b, n)
    repeats = rng.geometric(drop)
    times = np.cumsum(rng.exponential(1.0, (n, 400)) / rate[:, None], axis=1)
    alive = np.arange(400)[None, :] < repeats[:, None]
    cal = (times < cutoff) & alive
    hold = (times >= cutoff) & (times < end) & alive
    x = cal.sum(axis=1).astype("float64")
    last = np.where(x > 0, times[np.arange(n), np.maximum(x.astype(int) - 1, 0)], 0.0)
    return RepeatHistory.of(x, last, np.full(n, cutoff)), hold.sum(axis=1).astype("float64")


def test_a_missed_holdout_is_watch() -> None:
    truth = BetaGeoParams(r=0.5, alpha=10.0, a=0.8, b=3.0)
    calibration, actual = _split(4_000, 80.0, 120.0, seed=6, truth=truth)
    doc = holdout_comparison(calibration, actual * 2, 40.0)  # twice the purchases predicted
    assert doc["status"] == "watch"
    assert doc["miss"] < -0.2


def test_the_bgnbd_gradient_is_the_likelihoods() -> None:
    """Analytic gradient (with respect to the log-parameters) against central differences."""
    from custseg.predict.clv import bgnbd_log_likelihood, bgnbd_with_gradient

    history = _simulate(300, BetaGeoParams(r=0.6, alpha=8.0, a=0.7, b=2.5), 60.0, seed=3)
    x, tx, T = history.frequency, history.recency, history.T
    logp = np.log([0.4, 12.0, 1.3, 4.0])
    _, grad = bgnbd_with_gradient(BetaGeoParams(*np.exp(logp)), x, tx, T)
    step = 1e-6
    for i in range(4):
        up, down = logp.copy(), logp.copy()
        up[i] += step
        down[i] -= step
        diff = bgnbd_log_likelihood(BetaGeoParams(*np.exp(up)), x, tx, T)
        diff = (diff - bgnbd_log_likelihood(BetaGeoParams(*np.exp(down)), x, tx, T)) / (2 * step)
        assert np.allclose(grad[:, i], diff, rtol=1e-5, atol=1e-6), i


@pytest.mark.parametrize("seed", [1, 2])
def test_the_gradient_fit_finds_the_optimum_of_the_derivative_free_one(seed: int) -> None:
    """L-BFGS-B on the analytic gradient reaches the likelihood that Nelder-Mead then
    L-BFGS-B on finite differences reach, at the same parameters."""
    from custseg.predict import clv

    truth = BetaGeoParams(r=0.3 * seed, alpha=6.0, a=0.9, b=2.0 * seed)
    history = _simulate(5_000, truth, 100.0, seed=seed)
    methods: list[str] = []
    minimize = clv.optimize.minimize

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        methods.append(kwargs["method"])
        return minimize(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clv.optimize, "minimize", spy)
        fast = BetaGeoFitter().fit(history)
    assert methods == ["L-BFGS-B"]  # converged on the gradient alone
    calls: list[object] = []
    slow_minimize = clv._minimize

    def without_gradient(objective, start, what, with_gradient=None):  # type: ignore[no-untyped-def]
        calls.append(with_gradient)
        return slow_minimize(objective, start, what)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clv, "_minimize", without_gradient)
        slow = BetaGeoFitter().fit(history)
    assert calls and calls[0] is not None  # the fit hands its gradient over
    assert fast.log_likelihood_ == pytest.approx(slow.log_likelihood_, rel=1e-9)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fast.params, name) == pytest.approx(getattr(slow.params, name), rel=1e-3)
