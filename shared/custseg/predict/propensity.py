"""Propensity: the calibrated probability of each observed outcome (churn, campaign response).

For every ``outcome`` column of a customer table (contract role ``outcome``, e.g. the telco
file's ``Churn``) with at least :data:`MIN_CLASS_ROWS` customers of each class, training
fits a supervised model on the customers the segmentation model is fitted on (the same
sample), and scoring gives each customer ``p_<outcome>`` (e.g. ``p_churn``).

Inputs: every usable column, not only the clustering features: the model's numeric and
categorical features plus the attribute columns (e.g. country, ``days_since_<date>``).
Outcome columns are never inputs (no leakage); personal data never reaches features.
Numbers: median imputer -> standard scaling; categories: one-hot (levels rarer than 1 %
pooled, at most 20 per column, unseen levels ignored).

Candidates: a regularised logistic regression (L2, ``C=1``) and gradient boosting
(:class:`~sklearn.ensemble.HistGradientBoostingClassifier`, shallow trees, L2). Evidence:
5-fold stratified cross-validation (seeded) on at most :data:`CV_MAX_ROWS` of the labelled
customers. Each candidate's out-of-fold scores are calibrated by Platt scaling (a logistic
fit on the logit of the score), cross-fitted: the calibration of a fold's customers is fitted
on the other folds' scores, so every reported figure is out of fold. :data:`CHOICE_RULE`
picks the model; it is refitted on all labelled customers and its Platt calibration on all
out-of-fold scores.

Reported (``metadata["predictions"]["p_<outcome>"]``, copied to metrics.json): out-of-fold
AUC (overall and per fold), Brier score, a 10-bin reliability curve, the lift in the top
decile (outcome rate among the 10 % with the highest probability / overall rate) and the
top drivers by permutation importance (drop in AUC when a column is shuffled, on the first
fold's held-out customers, fold model).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from custseg.features.build import MISSING_CATEGORY, Features
from custseg.ingest.contracts.model import Contract, Role

log = logging.getLogger(__name__)

KIND = "propensity"
PREFIX = "p_"
FOLDS = 5
MIN_CLASS_ROWS = 20
"""Fewer customers than this with (or without) the outcome: no propensity for it."""
CV_MAX_ROWS = 100_000
"""Cross-validation runs on a seeded sample of at most this many labelled customers."""
IMPORTANCE_ROWS = 2_000
IMPORTANCE_REPEATS = 3
TOP_DRIVERS = 10
RELIABILITY_BINS = 10
AUC_TIE = 0.005
CHOICE_RULE = (
    "the candidate with the highest out-of-fold AUC; gradient boosting must beat the "
    f"logistic regression by more than {AUC_TIE} to be chosen (the simpler model wins ties)"
)
_EPS = 1e-6

RISK_PATTERN = re.compile(r"churn|attrit|exit|cancel|lapse|lost|leave|left|defect", re.I)
RESPONSE_PATTERN = re.compile(r"respon|convert|conversion|accept|purchase|buy|redeem|click", re.I)


def outcome_use(name: str) -> str:
    """What an outcome means to the actions: ``risk`` (churn-like), ``response`` or ``other``."""
    if RISK_PATTERN.search(name):
        return "risk"
    if RESPONSE_PATTERN.search(name):
        return "response"
    return "other"


def column_name(outcome: str) -> str:
    """The assignments column of an outcome's probability: ``p_<outcome>``."""
    return f"{PREFIX}{outcome}"


@dataclass
class Propensities:
    """What training fitted: metadata entries (JSON) and estimators (pickled), keyed by
    column name (``p_<outcome>``); ``training`` holds each fitted column's calibrated
    probability for the training customers (row order of the features)."""

    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    estimators: dict[str, Any] = field(default_factory=dict)
    training: dict[str, np.ndarray] = field(default_factory=dict)


# -- inputs ---------------------------------------------------------------------------------


def outcome_columns(features: Features, contract: Contract) -> list[str]:
    """The contract's outcome columns present (as 0/1 floats) in ``features.extras``."""
    names = {c.name for c in contract.by_role(Role.OUTCOME)}
    return [c for c in features.extras.columns if c in names]


def input_columns(features: Features, exclude: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns: the features plus the attribute extras that
    hold some value; the ``exclude`` columns (the outcomes) never."""
    skip = set(exclude)
    numeric = [c for c in features.numeric if c not in skip]
    categorical = [c for c in features.categorical if c not in skip]
    for col in features.extras.columns:
        if col in skip or col in numeric or col in categorical:
            continue
        values = features.extras[col]
        if not values.notna().any():
            continue
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numeric.append(col)
        else:
            categorical.append(col)
    return numeric, categorical


def _column(features: Features, name: str) -> pd.Series | None:
    if name in features.frame.columns:
        return features.frame[name]
    if name in features.extras.columns:
        return features.extras[name]
    return None


def design_frame(features: Features, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model input: numbers as float64 (NaN missing), categories as text objects
    (:data:`MISSING_CATEGORY` missing); a column the data lacks is all missing."""
    n = len(features.frame)
    data: dict[str, np.ndarray] = {}
    for name in numeric:
        values = _column(features, name)
        data[name] = (
            np.full(n, np.nan)
            if values is None
            else pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        )
    for name in categorical:
        values = _column(features, name)
        if values is None:
            data[name] = np.full(n, MISSING_CATEGORY, dtype=object)
            continue
        codes, uniques = pd.factorize(values.astype("string"), use_na_sentinel=True)
        words = np.array([*(str(u) for u in uniques), MISSING_CATEGORY], dtype=object)
        data[name] = words[codes]
    return pd.DataFrame(data, index=features.frame.index)


# -- candidates -----------------------------------------------------------------------------


def _preprocessor(numeric: list[str], categorical: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        parts.append(
            (
                "cat",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=0.01,
                    max_categories=20,
                    sparse_output=False,
                ),
                categorical,
            )
        )
    if not parts:
        raise ValueError("no input columns for a propensity model")
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def candidates(numeric: list[str], categorical: list[str], seed: int) -> dict[str, Any]:
    """The two unfitted candidate pipelines, by name."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return {
        "logistic_regression": Pipeline(
            [
                ("preprocess", _preprocessor(numeric, categorical)),
                ("classify", LogisticRegression(C=1.0, max_iter=2000)),
            ]
        ),
        "gradient_boosting": Pipeline(
            [
                ("preprocess", _preprocessor(numeric, categorical)),
                (
                    "classify",
                    HistGradientBoostingClassifier(
                        learning_rate=0.1,
                        max_iter=100,
                        max_leaf_nodes=15,
                        min_samples_leaf=40,
                        l2_regularization=1.0,
                        early_stopping=False,
                        random_state=seed,
                    ),
                ),
            ]
        ),
    }


# -- calibration and evidence ----------------------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def platt_fit(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of ``p = 1 / (1 + exp(-(slope * logit(raw) + intercept)))``."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw).reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def platt_apply(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Calibrated probabilities of raw scores (see :func:`platt_fit`)."""
    z = slope * _logit(raw) + intercept
    return 1.0 / (1.0 + np.exp(-z))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin of predicted probability: its range, customers, mean predicted
    probability and observed outcome rate (None for an empty bin)."""
    which = np.minimum((np.asarray(p) * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "customers": count,
                "predicted": float(p[mask].mean()) if count else None,
                "observed": float(y[mask].mean()) if count else None,
            }
        )
    return out


def top_decile(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Outcome rate among the 10 % with the highest probability, overall rate, and their
    ratio (the lift)."""
    n = len(p)
    top = max(1, int(np.ceil(n / 10)))
    order = np.argsort(-p, kind="stable")[:top]
    rate, base = float(y[order].mean()), float(y.mean())
    return {"top_decile_rate": rate, "base_rate": base, "lift": rate / base if base else 0.0}


@dataclass
class Evidence:
    """Cross-validated evidence of one candidate (all out of fold)."""

    name: str
    raw: np.ndarray  # out-of-fold scores
    calibrated: np.ndarray  # cross-fitted Platt calibration of ``raw``
    fold_auc: list[float]
    first_fold_model: Any

    def summary(self, y: np.ndarray) -> dict[str, Any]:
        return {
            "model": self.name,
            "auc": round(auc(y, self.calibrated), 4),
            "auc_folds": [round(a, 4) for a in self.fold_auc],
            "brier": round(float(np.mean((self.calibrated - y) ** 2)), 5),
        }


def _folds(y: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    fold = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        fold[test] = i
    return fold


def cross_validate(
    pipeline: Any, name: str, x: pd.DataFrame, y: np.ndarray, fold: np.ndarray
) -> Evidence:
    """Out-of-fold scores of ``pipeline`` (a clone fitted per fold) and their cross-fitted
    calibration."""
    from sklearn.base import clone

    raw = np.empty(len(y), dtype="float64")
    first = None
    for f in range(FOLDS):
        test = fold == f
        model = clone(pipeline).fit(x[~test], y[~test])
        raw[test] = model.predict_proba(x[test])[:, 1]
        if f == 0:
            first = model
    calibrated = np.empty_like(raw)
    fold_auc = []
    for f in range(FOLDS):
        test = fold == f
        slope, intercept = platt_fit(raw[~test], y[~test])
        calibrated[test] = platt_apply(raw[test], slope, intercept)
        fold_auc.append(auc(y[test], calibrated[test]))
    return Evidence(name, raw, calibrated, fold_auc, first)


def choose(evidence: Mapping[str, Evidence], y: np.ndarray) -> str:
    """Apply :data:`CHOICE_RULE`."""
    scores = {name: auc(y, ev.calibrated) for name, ev in evidence.items()}
    best = max(scores, key=lambda n: scores[n])
    simple = "logistic_regression"
    if simple in scores and scores[best] - scores[simple] <= AUC_TIE:
        return simple
    return best


def drivers(model: Any, x: pd.DataFrame, y: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Top :data:`TOP_DRIVERS` input columns by permutation importance (mean drop in AUC
    over :data:`IMPORTANCE_REPEATS` shuffles), on at most :data:`IMPORTANCE_ROWS` rows."""
    from sklearn.inspection import permutation_importance

    if len(x) > IMPORTANCE_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), IMPORTANCE_ROWS, replace=False))
        x, y = x.iloc[keep], y[keep]
    if len(np.unique(y)) < 2:
        return []
    result = permutation_importance(
        model, x, y, scoring="roc_auc", n_repeats=IMPORTANCE_REPEATS, random_state=seed
    )
    means, stds = result.importances_mean, result.importances_std
    rows: list[dict[str, Any]] = [
        {"feature": str(col), "importance": round(float(m), 5), "std": round(float(s), 5)}
        for col, m, s in zip(x.columns, means, stds, strict=True)
    ]
    rows.sort(key=lambda r: (-r["importance"], r["feature"]))
    return rows[:TOP_DRIVERS]


# -- fitting --------------------------------------------------------------------------------


def _skipped(outcome: str, reason: str) -> dict[str, Any]:
    return {
        "kind": KIND,
        "outcome": outcome,
        "column": column_name(outcome),
        "status": "skipped",
        "reason": reason,
    }


def _cv_rows(n: int, seed: int) -> np.ndarray:
    if n <= CV_MAX_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, CV_MAX_ROWS, replace=False))


def fit_propensity(
    features: Features, outcome: str, exclude: list[str], *, seed: int = 42
) -> tuple[dict[str, Any], Any, np.ndarray | None]:
    """(metadata entry, fitted estimator or None, calibrated probability per training
    customer or None) for one outcome column of ``features.extras``."""
    started = time.perf_counter()
    target = features.extras[outcome].to_numpy(dtype="float64", na_value=np.nan)
    known = np.isfinite(target)
    y_all = target[known].astype(np.int64)
    positives, negatives = int(y_all.sum()), int((y_all == 0).sum())
    if min(positives, negatives) < MIN_CLASS_ROWS:
        return (
            _skipped(
                outcome,
                f"{positives} customers with the outcome and {negatives} without: at least "
                f"{MIN_CLASS_ROWS} of each are needed",
            ),
            None,
            None,
        )
    numeric, categorical = input_columns(features, exclude)
    if not numeric and not categorical:
        return _skipped(outcome, "no input columns"), None, None
    x_all = design_frame(features, numeric, categorical)
    x_known = x_all[known]
    cv = _cv_rows(len(y_all), seed)
    x_cv, y_cv = x_known.iloc[cv], y_all[cv]
    fold = _folds(y_cv, seed)
    evidence = {
        name: cross_validate(pipe, name, x_cv, y_cv, fold)
        for name, pipe in candidates(numeric, categorical, seed).items()
    }
    chosen = choose(evidence, y_cv)
    best = evidence[chosen]
    slope, intercept = platt_fit(best.raw, y_cv)
    final = candidates(numeric, categorical, seed)[chosen].fit(x_known, y_all)
    held_out = fold == 0
    entry: dict[str, Any] = {
        "kind": KIND,
        "outcome": outcome,
        "column": column_name(outcome),
        "status": "fitted",
        "use": outcome_use(outcome),
        "model": chosen,
        "choice_rule": CHOICE_RULE,
        "candidates": [ev.summary(y_cv) for ev in evidence.values()],
        "inputs": {"numeric": numeric, "categorical": categorical},
        "calibration": {"method": "platt", "slope": slope, "intercept": intercept},
        "training": {
            "customers": len(y_all),
            "positives": positives,
            "base_rate": round(positives / len(y_all), 6),
            "missing_outcome": int((~known).sum()),
        },
        "cv": {
            "folds": FOLDS,
            "stratified": True,
            "seed": seed,
            "customers": len(y_cv),
            **best.summary(y_cv),
            "reliability": reliability(best.calibrated, y_cv),
            **top_decile(best.calibrated, y_cv),
        },
        "drivers": drivers(best.first_fold_model, x_cv[held_out], y_cv[held_out], seed),
    }
    entry["seconds"] = round(time.perf_counter() - started, 2)
    training_p = platt_apply(final.predict_proba(x_all)[:, 1], slope, intercept)
    log.info(
        "propensity %s: %s, out-of-fold AUC %.3f on %d customers in %.1fs",
        outcome,
        chosen,
        entry["cv"]["auc"],
        len(y_cv),
        entry["seconds"],
    )
    return entry, final, training_p


def fit_propensities(features: Features, contract: Contract, *, seed: int = 42) -> Propensities:
    """A propensity model per outcome column of a customer table (none for an order log)."""
    from threadpoolctl import threadpool_limits

    fitted = Propensities()
    outcomes = outcome_columns(features, contract)
    # one OpenMP / BLAS thread: gradient boosting's threads busy-wait on shared vCPUs
    # (measured on 2 busy cores: one telco fit 45 s with the default threads, 13 s with one)
    with threadpool_limits(limits=1):
        for outcome in outcomes:
            entry, estimator, training_p = fit_propensity(features, outcome, outcomes, seed=seed)
            name = column_name(outcome)
            fitted.metadata[name] = entry
            if estimator is not None and training_p is not None:
                fitted.estimators[name] = estimator
                fitted.training[name] = training_p
    return fitted


# -- scoring --------------------------------------------------------------------------------


def fitted_entries(
    metadata: Mapping[str, Any], estimators: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The propensity entries of a model's ``metadata["predictions"]`` that have an
    estimator in its file (an artifact without them gives none)."""
    section = metadata.get("predictions") or {}
    return {
        name: entry
        for name, entry in section.items()
        if isinstance(entry, dict)
        and entry.get("kind") == KIND
        and entry.get("status") == "fitted"
        and name in estimators
    }


def predict_propensities(
    metadata: Mapping[str, Any], estimators: Mapping[str, Any], features: Features
) -> dict[str, np.ndarray]:
    """``p_<outcome>`` per customer of ``features`` (row order), for each fitted entry;
    vectorised over the chunk."""
    out: dict[str, np.ndarray] = {}
    for name, entry in fitted_entries(metadata, estimators).items():
        inputs = entry.get("inputs") or {}
        numeric, categorical = list(inputs.get("numeric", [])), list(inputs.get("categorical", []))
        if len(features.frame) == 0:
            out[name] = np.empty(0, dtype="float64")
            continue
        x = design_frame(features, numeric, categorical)
        raw = estimators[name].predict_proba(x)[:, 1]
        cal = entry.get("calibration") or {}
        out[name] = platt_apply(raw, float(cal.get("slope", 1.0)), float(cal.get("intercept", 0.0)))
    return out
