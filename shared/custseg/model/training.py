"""Training: preprocessing + k-means, k chosen on evidence, labels, personas, metadata.

Preprocessing (a :class:`~sklearn.compose.ColumnTransformer`, fitted on the training
features and stored inside the model pipeline):

- skewed non-negative numbers (training skewness > 1, at most 1 % negatives, more than two
  distinct values; e.g. spend, order counts): median imputer -> signed ``log1p``
  (``sign(x) * log1p(|x|)``, safe for a negative net spend) -> standard scaling -> clip
  to +-3 (:data:`Z_CLIP`);
- other numbers: median imputer -> standard scaling -> clip to +-3;
- binary 0/1 numbers (booleans): most-frequent imputer, kept as 0/1, weighted like a
  categorical;
- shares (all training values in [0, 1], e.g. ``return_share``): median imputer, kept on
  their natural 0..1 scale (standardising a mostly-zero share would turn every customer
  with a return into an outlier that owns a cluster);
- categoricals: one-hot (``handle_unknown="ignore"``, levels rarer than 1 % pooled, at
  most 20 levels per feature), weighted by :data:`CATEGORICAL_WEIGHT`.

Why the weight: a standard-scaled number has unit variance; a one-hot pair of a 50/50
category puts two customers of different categories sqrt(2) apart, more than one standard
deviation of any number, so k-means would split on gender before income x spending. At
weight 0.5 a category difference counts about as much as 0.7 standard deviations of a
number: categories still shape segments (e.g. telco contract types) without owning them.

Clusterer: :class:`~sklearn.cluster.KMeans` (``n_init=10``; above
:data:`SELECTION_SAMPLE` customers started once from the selection sample's centres) up
to :data:`MINIBATCH_THRESHOLD` customers; above, :class:`~sklearn.cluster.MiniBatchKMeans`
from the same centres (see :func:`fit_clusterer` for the measurements). Cluster ids are renumbered
by size (0 = largest), so ids are stable for the same data and seed.

Propensity: for each outcome column (e.g. churn) a calibrated classifier is fitted on the
same customers (:mod:`custseg.predict.propensity`); the personas' actions use it. Customer
value: an order log's repeat-purchase history gets BG/NBD and Gamma-Gamma
(:mod:`custseg.predict.clv`). Both land in the metadata's ``predictions``.

Choosing k (unless fixed): each k in ``k_range`` is fitted on a seeded sample of at most
:data:`SELECTION_SAMPLE` customers; silhouette on a seeded sub-sample of at most
:data:`SILHOUETTE_SAMPLE`, Davies-Bouldin and Calinski-Harabasz on the selection sample,
and the smallest segment share. :data:`K_RULE` combines them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from custseg.features.build import Features
from custseg.ingest.contracts.model import Contract, Role
from custseg.model.artifact import SegmentModel, build_metadata
from custseg.model.labels import fit_label_edges
from custseg.model.personas import describe_segments
from custseg.model.quality import silhouette
from custseg.model.sample import DEFAULT_MAX_CUSTOMERS, sample_customers
from custseg.predict.clv import CLV, fit_history
from custseg.predict.propensity import Propensities, fit_propensities

log = logging.getLogger(__name__)

CATEGORICAL_WEIGHT = 0.5
"""Weight of one-hot and 0/1 columns relative to standard-scaled numbers (see module docs)."""
MIN_SEGMENT_SHARE_FOR_K = 0.03
"""A k whose smallest segment is below this share of customers is not chosen (if any other is)."""
K_TIE = 0.01
"""Silhouettes within this of the best count as tied."""
SELECTION_SAMPLE = 20_000
SILHOUETTE_SAMPLE = 5_000
MINIBATCH_THRESHOLD = 2_000_000
"""Above this many customers the final fit uses MiniBatchKMeans. Measured on 2 cores with 7
features: at 1M rows full-batch KMeans seeded from the sample centres is ~10x faster than
MiniBatchKMeans, so mini-batches only pay off beyond memory-bound sizes."""

K_ACTIONABLE_TOLERANCE = 0.05
"""Two segments must beat every eligible k of 3 or more by more than this silhouette."""

K_RULE = (
    f"Among k whose smallest segment holds at least {MIN_SEGMENT_SHARE_FOR_K:.0%} of customers "
    "(all k if none does), take the highest silhouette (sampled, Euclidean, in the "
    f"preprocessed space); silhouettes within {K_TIE} of the best are tied and the tie goes "
    "to the lowest Davies-Bouldin index, then to the smaller k. Two segments rarely give a "
    "marketer two different plans, so k = 2 must justify itself: when an eligible k of 3 or "
    f"more scores within {K_ACTIONABLE_TOLERANCE} of the best silhouette, the best of those "
    "is taken instead."
)


def signed_log1p(x: Any) -> Any:
    """``sign(x) * log1p(|x|)``: a log that keeps order and zero, and accepts negatives."""
    arr = np.asarray(x, dtype="float64")
    return np.sign(arr) * np.log1p(np.abs(arr))


Z_CLIP = 3.0
"""Standardised numbers are clipped to +-Z_CLIP so a handful of extreme customers cannot own
a cluster (winsorising at 3 standard deviations, after the log for skewed amounts)."""


def clip_z(x: Any) -> Any:
    """Clip standardised values to [-Z_CLIP, Z_CLIP]."""
    return np.clip(np.asarray(x, dtype="float64"), -Z_CLIP, Z_CLIP)


def as_object(x: Any) -> Any:
    """Categorical input as an object array of str (what OneHotEncoder handles everywhere).

    Each column is factorised first (in Arrow for text) and the few distinct values are
    looked up by code: the customers' cells then share one ``str`` per distinct value
    instead of one new object per cell (several times faster on millions of rows).
    """
    frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)
    out = np.empty(frame.shape, dtype=object)
    for j in range(frame.shape[1]):
        values = frame.iloc[:, j]
        if not isinstance(values.dtype, pd.StringDtype):
            values = values.astype("string")
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        words = np.array([*(str(u) for u in uniques), "(missing)"], dtype=object)
        out[:, j] = words[codes]  # code -1 (missing) picks the last word
    return out


def _skewness(values: np.ndarray) -> float:
    """Sample skewness (0 for fewer than three values or no spread)."""
    if values.size < 3:
        return 0.0
    std = float(values.std())
    if std <= 0:
        return 0.0
    return float((((values - values.mean()) / std) ** 3).mean())


def split_numeric(
    frame: pd.DataFrame, numeric: list[str]
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(log-scaled, plain-scaled, binary, share) numeric features, decided on training data."""
    logged, plain, binary, shares = [], [], [], []
    for col in numeric:
        values = frame[col].to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        distinct = np.unique(finite) if finite.size else finite
        if finite.size and distinct.size <= 2 and set(distinct.tolist()) <= {0.0, 1.0}:
            binary.append(col)
            continue
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            shares.append(col)
            continue
        skew = _skewness(finite)
        negatives = float((finite < 0).mean()) if finite.size else 0.0
        if np.isfinite(skew) and skew > 1.0 and negatives <= 0.01 and distinct.size > 2:
            logged.append(col)
        else:
            plain.append(col)
    return logged, plain, binary, shares


def build_preprocessor(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    categorical_weight: float = CATEGORICAL_WEIGHT,
) -> ColumnTransformer:
    """The (unfitted) ColumnTransformer for these training features (see module docs)."""
    logged, plain, binary, shares = split_numeric(frame, numeric)
    transformers: list[tuple[str, Any, list[str]]] = []
    weights: dict[str, float] = {}
    if logged:
        transformers.append(
            (
                "log",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        (
                            "log1p",
                            FunctionTransformer(signed_log1p, feature_names_out="one-to-one"),
                        ),
                        ("scale", StandardScaler()),
                        ("clip", FunctionTransformer(clip_z, feature_names_out="one-to-one")),
                    ]
                ),
                logged,
            )
        )
    if plain:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                        ("clip", FunctionTransformer(clip_z, feature_names_out="one-to-one")),
                    ]
                ),
                plain,
            )
        )
    if shares:
        transformers.append(("share", SimpleImputer(strategy="median"), shares))
    if binary:
        transformers.append(("bin", SimpleImputer(strategy="most_frequent"), binary))
        weights["bin"] = categorical_weight
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("text", FunctionTransformer(as_object, feature_names_out="one-to-one")),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="ignore",
                                min_frequency=0.01,
                                max_categories=20,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
        weights["cat"] = categorical_weight
    if not transformers:
        raise ValueError("no features to train on")
    return ColumnTransformer(
        transformers,
        remainder="drop",
        sparse_threshold=0.0,
        transformer_weights=weights or None,
        verbose_feature_names_out=False,
    )


def _relabel_by_size(centers: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters by size (largest = 0; ties by centre coordinates)."""
    k = centers.shape[0]
    sizes = np.bincount(labels, minlength=k)
    order = sorted(range(k), key=lambda j: (-int(sizes[j]), tuple(np.round(centers[j], 9))))
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    return centers[order], new_id[labels]


def _scores(x: np.ndarray, labels: np.ndarray, sil_idx: np.ndarray, k: int) -> dict[str, float]:
    shares = np.bincount(labels, minlength=k) / len(labels)
    n_used = int((shares > 0).sum())
    sub = labels[sil_idx]
    sil = (
        silhouette(x[sil_idx], sub)
        if len(np.unique(sub)) > 1 and len(sub) > len(np.unique(sub))
        else float("nan")
    )
    return {
        "silhouette": sil,
        "davies_bouldin": float(davies_bouldin_score(x, labels)) if n_used > 1 else float("nan"),
        "calinski_harabasz": float(calinski_harabasz_score(x, labels))
        if n_used > 1
        else float("nan"),
        "min_share": float(shares.min()),
    }


def choose_k(evidence: list[dict[str, Any]]) -> int:
    """Apply :data:`K_RULE` to evidence rows (k, silhouette, davies_bouldin, min_share)."""
    rows = [r for r in evidence if np.isfinite(r["silhouette"])]
    if not rows:
        return int(min(r["k"] for r in evidence))
    eligible = [r for r in rows if r["min_share"] >= MIN_SEGMENT_SHARE_FOR_K] or rows
    chosen = _best_k(eligible)
    if chosen == 2:
        best = max(r["silhouette"] for r in eligible)
        actionable = [
            r for r in eligible if r["k"] >= 3 and r["silhouette"] >= best - K_ACTIONABLE_TOLERANCE
        ]
        if actionable:
            chosen = _best_k(actionable)
    return chosen


def _best_k(rows: list[dict[str, Any]]) -> int:
    """The highest silhouette; within :data:`K_TIE` the lowest Davies-Bouldin, then k."""
    best = max(r["silhouette"] for r in rows)
    tied = [r for r in rows if r["silhouette"] >= best - K_TIE]
    tied.sort(
        key=lambda r: (r["davies_bouldin"] if np.isfinite(r["davies_bouldin"]) else 1e9, r["k"])
    )
    return int(tied[0]["k"])


def k_choice(evidence: list[dict[str, Any]], chosen: int) -> str:
    """Why ``chosen`` won, in one sentence, from the evidence rows (for the report)."""
    rows = {int(r["k"]): r for r in evidence if np.isfinite(r["silhouette"])}
    if chosen not in rows or len(rows) < 2:
        return f"k = {chosen}"
    best_k = max(rows, key=lambda k: rows[k]["silhouette"])
    ours = rows[chosen]["silhouette"]
    if best_k == chosen:
        runner = max((k for k in rows if k != chosen), key=lambda k: rows[k]["silhouette"])
        return (
            f"k = {chosen}: the best silhouette ({ours:.3f}; next best k = {runner} at "
            f"{rows[runner]['silhouette']:.3f})"
        )
    why = (
        f"within {K_ACTIONABLE_TOLERANCE} of the best and more actionable than 2 segments"
        if best_k == 2
        else "the best among k whose smallest segment is large enough, or tied on silhouette "
        "with a lower Davies-Bouldin"
    )
    return (
        f"k = {chosen} (silhouette {ours:.3f}) over k = {best_k} "
        f"({rows[best_k]['silhouette']:.3f}): {why}"
    )


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def select_k(
    x: np.ndarray, k_range: tuple[int, int], seed: int
) -> tuple[int, list[dict[str, Any]], dict[int, np.ndarray], np.ndarray]:
    """Fit each k on a seeded sample; return (chosen k, evidence, centres per k, sample index)."""
    rng = np.random.default_rng(seed)
    fit_idx = _sample(len(x), SELECTION_SAMPLE, rng)
    xs = x[fit_idx]
    sil_idx = _sample(len(xs), SILHOUETTE_SAMPLE, rng)
    lo, hi = k_range
    hi = min(hi, len(xs) - 1)
    if hi < lo:
        raise ValueError(f"too few customers ({len(x)}) for k in {k_range}")
    evidence: list[dict[str, Any]] = []
    centers: dict[int, np.ndarray] = {}
    for k in range(lo, hi + 1):
        km = KMeans(n_clusters=k, n_init=10 if len(xs) <= 5_000 else 4, random_state=seed).fit(xs)
        labels = km.labels_.astype(np.int64)
        centers[k] = km.cluster_centers_
        evidence.append({"k": k, **_scores(xs, labels, sil_idx, k), "chosen": False})
    chosen = choose_k(evidence)
    for row in evidence:
        row["chosen"] = row["k"] == chosen
    return chosen, evidence, centers, fit_idx


def fit_clusterer(
    x: np.ndarray, k: int, seed: int, init: np.ndarray | None = None
) -> KMeans | MiniBatchKMeans:
    """The final clusterer on all rows.

    Up to :data:`SELECTION_SAMPLE` rows: KMeans with ``n_init=10``. Larger: KMeans started
    from the selection sample's centres (``n_init=1``; measured 1M x 7 features, k=3:
    ~3 s, where MiniBatchKMeans took 32 s and KMeans n_init=10 16 s on 2 cores). Above
    :data:`MINIBATCH_THRESHOLD` rows: MiniBatchKMeans from the same centres (bounded memory
    per step).
    """
    if len(x) > MINIBATCH_THRESHOLD:
        return MiniBatchKMeans(
            n_clusters=k,
            init=init if init is not None else "k-means++",
            n_init=1 if init is not None else 3,
            batch_size=8192,
            max_no_improvement=20,
            random_state=seed,
        ).fit(x)
    if init is not None and len(x) > SELECTION_SAMPLE:
        return KMeans(n_clusters=k, init=init, n_init=1, random_state=seed).fit(x)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)


def _version(created: dt.datetime, fingerprint: bytes) -> str:
    return f"v{created.strftime('%Y%m%dT%H%M%SZ')}-{hashlib.sha256(fingerprint).hexdigest()[:8]}"


def _preprocess(
    features: Features, categorical_weight: float
) -> tuple[pd.DataFrame, ColumnTransformer, np.ndarray]:
    """Preprocess: the training frame, its fitted preprocessor and the matrix it gives."""
    frame = features.frame[[*features.numeric, *features.categorical]]
    if len(frame) < 3:
        raise ValueError(f"too few customers to segment ({len(frame)})")
    pre = build_preprocessor(
        frame, features.numeric, features.categorical, categorical_weight=categorical_weight
    )
    x = np.asarray(pre.fit_transform(frame), dtype="float64")
    return frame, pre, x


def _choose_k(
    x: np.ndarray, k: int | None, k_range: tuple[int, int], seed: int
) -> tuple[int, list[dict[str, Any]], dict[int, np.ndarray]]:
    """Choose k (or take the user's): (k, evidence per k tried, centres per k)."""
    chosen, evidence, centers, _ = select_k(x, k_range if k is None else (k, k), seed)
    if k is not None:
        chosen = k
        for row in evidence:
            row["chosen"] = row["k"] == k
    return chosen, evidence, centers


def _fit_final(
    x: np.ndarray, chosen: int, seed: int, centers: dict[int, np.ndarray]
) -> tuple[KMeans | MiniBatchKMeans, np.ndarray, np.ndarray]:
    """Fit the final clusterer, its segments renumbered by size: (clusterer, centres, labels)."""
    clusterer = fit_clusterer(x, chosen, seed, init=centers.get(chosen))
    raw_labels = clusterer.predict(x).astype(np.int64)
    new_centers, labels = _relabel_by_size(clusterer.cluster_centers_, raw_labels)
    clusterer.cluster_centers_ = new_centers
    if hasattr(clusterer, "labels_"):
        clusterer.labels_ = labels.astype(np.int32)
    return clusterer, new_centers, labels


def _fit_predictions(
    features: Features, contract: Contract, seed: int, timings: dict[str, float]
) -> tuple[Propensities, dict[str, Any]]:
    """Fit the propensities and, on an order log, the customer-value predictions."""
    t4 = time.perf_counter()
    propensities = fit_propensities(features, contract, seed=seed)
    timings["propensity_s"] = time.perf_counter() - t4
    predictions: dict[str, Any] = dict(propensities.metadata)
    if features.history is not None:  # an order log: repeat purchases and customer value
        t5 = time.perf_counter()
        predictions[CLV] = fit_history(features.history)
        timings["clv_s"] = time.perf_counter() - t5
        log.info("fitted the customer-value predictions in %.1fs", timings["clv_s"])
    return propensities, predictions


def _fit_quality(
    x: np.ndarray, labels: np.ndarray, centers: np.ndarray, chosen: int, seed: int
) -> tuple[dict[str, float], np.ndarray]:
    """Measure the fit: its quality scores and each customer's distance to its centre."""
    rng = np.random.default_rng(seed + 1)
    quality = _scores(x, labels, _sample(len(x), SILHOUETTE_SAMPLE, rng), chosen)
    dist = np.sqrt(((x - centers[labels]) ** 2).sum(axis=1))
    return quality, dist


def _personas(
    features: Features,
    labels: np.ndarray,
    chosen: int,
    logged: list[str],
    contract: Contract,
    propensities: Propensities,
) -> list[dict[str, Any]]:
    """Describe the segments (:func:`custseg.model.personas.describe_segments`)."""
    return describe_segments(
        features,
        labels,
        chosen,
        log_features=logged,
        outcome_columns=[c.name for c in contract.by_role(Role.OUTCOME)],
        predictions={
            name: (str(propensities.metadata[name]["use"]), p)
            for name, p in propensities.training.items()
        },
    )


def _model_version(
    created: dt.datetime, centers: np.ndarray, frame: pd.DataFrame, seed: int
) -> str:
    """The default version: creation time and a fingerprint of the fit."""
    fingerprint = b"|".join(
        [
            np.ascontiguousarray(centers).tobytes(),
            str(len(frame)).encode(),
            str(seed).encode(),
            ",".join(frame.columns).encode(),
        ]
    )
    return _version(created, fingerprint)


def train_model(
    features: Features,
    *,
    contract: Contract,
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    seed: int = 42,
    version: str | None = None,
    model_name: str = "default",
    training_source: dict[str, Any] | None = None,
    categorical_weight: float = CATEGORICAL_WEIGHT,
    max_customers: int | None = DEFAULT_MAX_CUSTOMERS,
) -> SegmentModel:
    """Train a segmentation model on ``features`` (one row per customer), fitted on at
    most ``max_customers`` of them (:func:`custseg.model.sample.sample_customers`; None:
    all); the sample is recorded in the metadata (``training.source.sample``).

    ``k`` fixes the number of segments; otherwise it is chosen in ``k_range`` (inclusive)
    by :data:`K_RULE`. The same features and seed give the same model, ids and labels.
    Returns a :class:`SegmentModel` whose metadata holds evidence, quality, gates, label
    edges and personas (see :mod:`custseg.model.artifact`).
    """
    t0 = time.perf_counter()
    features, sample = sample_customers(features, max_customers)
    training_source = {**(training_source or {}), "sample": sample.to_dict()}
    frame, pre, x = _preprocess(features, categorical_weight)
    timings: dict[str, float] = {"preprocess_s": time.perf_counter() - t0}

    t1 = time.perf_counter()
    chosen, evidence, centers = _choose_k(x, k, k_range, seed)
    timings["select_k_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    clusterer, new_centers, labels = _fit_final(x, chosen, seed, centers)
    timings["fit_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    quality, dist = _fit_quality(x, labels, new_centers, chosen, seed)
    timings["quality_s"] = time.perf_counter() - t3

    pipeline = Pipeline([("preprocess", pre), ("cluster", clusterer)])
    edges = fit_label_edges(features)
    propensities, predictions = _fit_predictions(features, contract, seed, timings)
    logged, _, _, _ = split_numeric(frame, features.numeric)
    segments = _personas(features, labels, chosen, logged, contract, propensities)

    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    timings["total_s"] = time.perf_counter() - t0
    metadata = build_metadata(
        features=features,
        contract=contract,
        model_name=model_name,
        version=version or _model_version(created, new_centers, frame, seed),
        created_at=created,
        k=chosen,
        k_evidence=evidence,
        k_rule=K_RULE if k is None else f"k fixed by the user at {k}",
        k_choice=k_choice(evidence, chosen) if k is None else f"k fixed by the user at {k}",
        labels=labels,
        quality=quality,
        mean_distance=float(dist.mean()),
        label_edges=edges,
        segments=segments,
        source=training_source or {},
        preprocessing={
            "log_scaled": logged,
            "categorical_weight": categorical_weight,
            "clusterer": type(clusterer).__name__,
            "seed": seed,
            "k_range": list(k_range),
            "timings": {key: round(val, 3) for key, val in timings.items()},
        },
        predictions=predictions,
    )
    log.info(
        "trained k=%d silhouette=%.3f on %d customers in %.1fs",
        chosen,
        quality["silhouette"],
        len(frame),
        timings["total_s"],
    )
    return SegmentModel(
        pipeline=pipeline, metadata=metadata, predictors=dict(propensities.estimators)
    )
