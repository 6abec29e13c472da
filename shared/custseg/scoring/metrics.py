"""Evaluation of a scoring run: mergeable run statistics, metrics.json, and the verdict.

A run streams its customers in chunks; :class:`ScoreStats` collects everything the
metrics, the profiles and the report need per chunk and merges associatively (the same
result for any chunking, up to float rounding). :func:`build_metrics` turns it into the
``metrics.json`` document (keys documented in :data:`METRIC_DOCS`) and :func:`evaluate`
turns the metrics into a verdict with :class:`Thresholds`:

- ``ok``: nothing crossed a watch threshold;
- ``watch``: something moved; keep using the segments, look at the reasons;
- ``retrain``: the customers no longer look like the training data (or the segments no
  longer fit them); retrain the model before acting on the segments.

Estimates (documented in :data:`METRIC_DOCS`): silhouette, Davies-Bouldin and
Calinski-Harabasz are computed on a deterministic hash sample of at most
:data:`QUALITY_SAMPLE` customers; quartiles and the top-10 % value share on hash samples of
at most :data:`SEGMENT_SAMPLE` customers per segment and :data:`BASE_SAMPLE` customers
overall. Each is exact when the run has fewer customers than its sample size. Everything
else (counts, shares, means, value sums, histograms, PSI, lift, transitions) is exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from custseg.features.build import CategoryCodes
from custseg.model.labels import LabelCodes
from custseg.model.quality import silhouette
from custseg.scoring.accumulators import (
    CategoryCounts,
    CustomerSamples,
    FeatureHistograms,
    LabelCounts,
    OutcomeCounts,
    PairCounts,
    SegmentMoments,
    SegmentTotals,
    Transitions,
    grow,
    pad2,
    segment_rows,
)
from custseg.stats import BottomKSample, Histogram, Moments, stable_hash

QUALITY_SAMPLE = 5_000
"""Customers in the sample used for silhouette, Davies-Bouldin, Calinski-Harabasz and PCA."""
BASE_SAMPLE = 20_000
"""Customers in the overall sample used for base quartiles and the top-10 % value share."""
SEGMENT_SAMPLE = 2_000
"""Customers per segment in the sample used for segment medians and quartiles."""
PSI_EPSILON = 1e-4
"""Floor applied to bin proportions before the PSI logarithm (empty bins)."""

VERDICT_ORDER = {"ok": 0, "watch": 1, "retrain": 2}


# ---------------------------------------------------------------------------------------
# Thresholds and documentation
# ---------------------------------------------------------------------------------------


@dataclass
class Thresholds:
    """Limits that turn metrics into a verdict (see :data:`THRESHOLD_DOCS`)."""

    psi_watch: float = 0.10
    psi_retrain: float = 0.25
    share_shift_watch: float = 0.05
    share_shift_retrain: float = 0.10
    silhouette_watch: float = 0.05
    silhouette_retrain: float = 0.15
    distance_ratio_watch: float = 1.20
    distance_ratio_retrain: float = 1.50
    stability_watch: float = 0.20
    missing_watch: float = 0.20
    rejected_watch: float = 0.10
    min_customers: int = 30
    holdout_miss_watch: float = 0.20

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> Thresholds:
        """Defaults overridden by ``mapping`` (unknown keys raise ``ValueError``)."""
        if not mapping:
            return cls()
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"unknown threshold(s): {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, raw in mapping.items():
            values[key] = int(raw) if key == "min_customers" else float(raw)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


THRESHOLD_DOCS: dict[str, tuple[str, str]] = {
    "psi_watch": (
        "PSI of a feature (numeric on the training bins, categorical on category shares)",
        "watch when PSI > 0.10 (a noticeable shift)",
    ),
    "psi_retrain": ("same PSI", "retrain when PSI > 0.25 (a large shift)"),
    "share_shift_watch": (
        "largest change of a segment's share of customers vs training (share points)",
        "watch when > 0.05 (5 points); the segment-share PSI uses the PSI thresholds",
    ),
    "share_shift_retrain": ("same", "retrain when > 0.10 (10 points)"),
    "silhouette_watch": (
        "drop of the silhouette on this data below the training silhouette",
        "watch when the drop > 0.05",
    ),
    "silhouette_retrain": ("same", "retrain when the drop > 0.15"),
    "distance_ratio_watch": (
        "mean distance of customers to their segment centre / the training mean distance",
        "watch when > 1.2 (customers 20 % further from the centres)",
    ),
    "distance_ratio_retrain": ("same", "retrain when > 1.5"),
    "stability_watch": (
        "share of customers in both runs who changed segment (same model version only)",
        "watch when > 0.20",
    ),
    "missing_watch": (
        "increase of a numeric feature's missing share vs training (filled by the model)",
        "watch when > 0.20 (20 points)",
    ),
    "rejected_watch": (
        "share of the uploaded rows ingest rejected (invalid, duplicate or excluded)",
        "watch when > 0.10: the segments describe only the rows kept",
    ),
    "min_customers": (
        "fewest customers for drift and quality rules to apply",
        "below 30 customers the verdict is 'watch' (too few to judge)",
    ),
    "holdout_miss_watch": (
        "order logs: |predicted - actual| / actual repeat purchases in the holdout check "
        "(docs/predictions.md)",
        "watch when > 0.20 (the predictions missed by more than 20 %)",
    ),
}
"""Threshold -> (what it limits, rule). Defaults are the :class:`Thresholds` defaults."""


def thresholds_table(thresholds: Thresholds | None = None) -> str:
    """The thresholds as a Markdown table (for the README)."""
    values = (thresholds or Thresholds()).to_dict()
    lines = ["| threshold | default | measures | rule |", "| --- | --- | --- | --- |"]
    for key, (what, rule) in THRESHOLD_DOCS.items():
        lines.append(f"| `{key}` | {values[key]} | {what} | {rule} |")
    return "\n".join(lines)


METRIC_DOCS: dict[str, str] = {
    "as_of_reason": "Why as_of is that date: given at upload or by the rescore schedule, "
    "or the default (the day after the last plausible event; today for customer tables).",
    "verdict": "ok / watch / retrain: the worst level any rule reached (see thresholds).",
    "reasons": "Plain-language reasons for the verdict, worst first, naming the features.",
    "thresholds": "The thresholds used for this run.",
    "customers": "Customers scored (rows in the assignments; each customer once).",
    "duplicates_dropped": "Rows of the clean data whose customer had already been scored "
    "(should be 0: ingest removes duplicates).",
    "data_quality": "From the ingest report: rows read, kept and rejected, the share "
    "rejected and the most frequent reasons (rows per reason).",
    "cluster_quality.silhouette": "Mean silhouette on a hash sample (<= 5,000 customers) in "
    "the model's feature space: -1..1, higher = segments better separated; above ~0.25 is "
    "usable for marketing segments, above 0.5 is strong. Compare with training_silhouette.",
    "cluster_quality.davies_bouldin": "Davies-Bouldin index on the same sample: >= 0, lower "
    "= more compact, better separated segments.",
    "cluster_quality.calinski_harabasz": "Calinski-Harabasz index on the same sample: "
    "higher = better separated; compare between runs of one model only (depends on size).",
    "cluster_quality.mean_distance": "Mean distance of all customers to their segment centre "
    "(exact).",
    "cluster_quality.distance_ratio": "mean_distance / the training mean distance: ~1 means "
    "customers fit the segments as well as the training customers did; > 1.2 they fit worse.",
    "drift.numeric.<feature>.psi": "Population stability index of the feature against the "
    "training histogram (same bins): sum((p - q) * ln(p / q)). < 0.10 stable, 0.10-0.25 "
    "moderate shift, > 0.25 large shift.",
    "drift.numeric.<feature>.mean_shift_std": "(mean now - training mean) / training std.",
    "drift.numeric.<feature>.missing_share": "Share of customers without a value (the model "
    "fills them), vs training_missing_share.",
    "drift.categorical.<feature>.psi": "PSI on the category shares vs training; new_values "
    "lists categories never seen in training.",
    "drift.segment_shares": "Segment shares now vs in training: max_abs_diff (share points) "
    "and psi.",
    "stability": "Against the previous run of the dataset (when given): customers in both "
    "runs, changed (segment differs) and changed_share, new and gone customers, and the "
    "transition matrix (rows = previous segment, columns = this run's segment, customer "
    "counts), and previous_segment_sizes (customers per segment id in the previous run, for "
    "the segments' growth). Judged only when both runs used the same model version.",
    "model.gates": "The model's quality gates as training recorded them: passed, and the "
    "reasons when not (a failed gate makes the verdict 'watch').",
    "outcomes.<column>": "For each outcome column (e.g. churn): overall rate, and per "
    "segment customers, positives, rate and lift = rate / overall rate (1 = average, 2 = "
    "twice as likely). lift_spread = highest / lowest segment rate.",
    "value": "The value measure: total, per-segment sums and shares, and top10_share = share "
    "of the total held by the top 10 % of customers (exact up to 20,000 customers, else "
    "estimated on a 20,000-customer hash sample).",
    "predictions.<column>": "For each propensity of the model (e.g. p_churn): the training "
    "evidence (cv: 5-fold out-of-fold AUC, Brier score, 10-bin reliability curve, top-decile "
    "rate and lift; drivers: permutation importance), the run's mean probability overall "
    "and per segment (docs/predictions.md).",
    "value_at_risk": "When the model predicts churn (or lifetime value): the measure "
    "(value x p_churn, or expected_value_12m x (1 - p_alive)), its total, and the file "
    "listing the customers with the most (value_at_risk.csv).",
    "labels": "Counts of RFM segments, value tiers and lifecycle stages; the R x F score grid "
    "(rfm_grid.counts[r-1][f-1]) when RFM is available.",
    "segments": "Per segment: id, name, customers, share, training_share, value_total, "
    "value_share, mean distance.",
    "predictions.clv": "Order logs: the model's BG/NBD and Gamma-Gamma parameters "
    "(available false when the model has none) and the holdout check: evaluated, the "
    "calibration end and holdout days, predicted_total vs actual_total repeat purchases of "
    "the calibration customers in the holdout, miss = (predicted - actual) / actual, and "
    "per calibration frequency 0..6, 7+ the mean predicted and actual purchases "
    "(docs/predictions.md).",
}
"""metrics.json key -> meaning and how to read it (for the README)."""


# ---------------------------------------------------------------------------------------
# PSI
# ---------------------------------------------------------------------------------------


def psi(actual: Any, expected: Any, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index between two distributions over the same bins.

    ``actual`` and ``expected`` are counts or proportions (normalised here). Bins empty on
    one side are floored at ``epsilon``. 0 for identical distributions.
    """
    a = np.asarray(actual, dtype="float64")
    e = np.asarray(expected, dtype="float64")
    if a.sum() <= 0 or e.sum() <= 0:
        return 0.0
    a = np.maximum(a / a.sum(), epsilon)
    e = np.maximum(e / e.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_shares(actual: Mapping[str, float], expected: Mapping[str, float]) -> float:
    """PSI between two category -> share (or count) mappings over the union of categories."""
    keys = sorted(set(actual) | set(expected))
    return psi([actual.get(k, 0.0) for k in keys], [expected.get(k, 0.0) for k in keys])


# ---------------------------------------------------------------------------------------
# Previous run (stability)
# ---------------------------------------------------------------------------------------


@dataclass
class PreviousSummary:
    """What stability reports of the whole previous run: its customers, customers per
    segment id, segment names and model version. Mergeable: the summaries of a run's
    parts merged equal the whole run's (names: the first part's name of a segment wins)."""

    customers: int = 0
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="int64"))
    names: dict[int, str] = field(default_factory=dict)
    model_version: str | None = None

    def add(self, segments: np.ndarray, names: Mapping[int, str], version: str | None) -> None:
        """Add one batch: its segment ids, segment names and model version."""
        seg = np.asarray(segments, dtype="int64")
        self.customers += int(seg.size)
        seg = seg[seg >= 0]
        if seg.size:
            counts = np.bincount(seg)
            self.sizes = grow(self.sizes, counts.size)
            self.sizes[: counts.size] += counts
        for s, n in names.items():
            self.names.setdefault(int(s), str(n))
        if self.model_version is None:
            self.model_version = version

    def merge(self, other: PreviousSummary) -> PreviousSummary:
        out = PreviousSummary(self.customers, self.sizes.copy(), dict(self.names))
        out.model_version = self.model_version
        out.add(np.empty(0, dtype="int64"), other.names, other.model_version)
        size = max(out.sizes.size, other.sizes.size)
        out.sizes = grow(out.sizes, size) + grow(other.sizes, size)
        out.customers += other.customers
        return out

    @property
    def segment_sizes(self) -> list[int]:
        """Customers per segment id in the previous run (index = segment id)."""
        return [int(n) for n in self.sizes]

    @classmethod
    def load(cls, path: Path, batch_rows: int = 250_000) -> PreviousSummary:
        """The summary of an assignments Parquet file or a directory of them (segment
        columns only: no customer id is read)."""
        summary = cls()
        for batch, names, version in _assignment_batches(path, batch_rows, ids=False):
            summary.add(_segment_ids(batch), names, version)
        return summary


def _assignment_batches(
    path: Path, batch_rows: int, *, ids: bool
) -> Iterator[tuple[Any, dict[int, str], str | None]]:
    """Batches of an assignments Parquet file or a directory of them (``customer_id``
    too when ``ids``), each with its segment names and model version."""
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        pf = pq.ParquetFile(str(file))
        available = set(pf.schema_arrow.names)
        wanted = ["customer_id"] if ids else []
        wanted += ["segment_id", "segment_name", "model_version"]
        columns = [c for c in wanted if c in available]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            names: dict[int, str] = {}
            if "segment_name" in columns:
                pairs = pd.DataFrame(
                    {"s": _segment_ids(batch), "n": batch.column("segment_name").to_pandas()}
                ).drop_duplicates("s")
                names = {int(s): str(n) for s, n in zip(pairs["s"], pairs["n"], strict=True)}
            version = None
            if "model_version" in columns and batch.num_rows:
                version = str(batch.column("model_version")[0].as_py())
            yield batch, names, version


def _segment_ids(batch: Any) -> np.ndarray:
    return np.asarray(batch.column("segment_id").to_numpy(zero_copy_only=False))


@dataclass
class PreviousAssignments:
    """The previous run's customer -> segment, held compactly.

    ``hashes`` are :func:`custseg.stats.stable_hash` of the customer ids (sorted uint64,
    8 bytes per customer) and ``segments`` the aligned segment ids (int16): about 10 bytes
    per customer, no id strings kept. ``summary``: the whole previous run's
    :class:`PreviousSummary` (every customer read, also those ``keep`` leaves out).
    """

    hashes: np.ndarray
    segments: np.ndarray
    summary: PreviousSummary

    @property
    def customers(self) -> int:
        return self.summary.customers

    @property
    def names(self) -> dict[int, str]:
        return self.summary.names

    @property
    def model_version(self) -> str | None:
        return self.summary.model_version

    @classmethod
    def load(
        cls, path: Path, batch_rows: int = 250_000, keep: np.ndarray | None = None
    ) -> PreviousAssignments:
        """Read ``customer_id``, ``segment_id`` (and names) of an assignments Parquet file
        or a directory of them, batch by batch; with ``keep`` (sorted customer hashes)
        only those customers are held (the summary counts every one)."""
        hashes: list[np.ndarray] = []
        segments: list[np.ndarray] = []
        summary = PreviousSummary()
        for batch, names, version in _assignment_batches(path, batch_rows, ids=True):
            seg = _segment_ids(batch)
            summary.add(seg, names, version)
            h = stable_hash(batch.column("customer_id").to_pandas())
            if keep is not None:
                inside = _members(h, keep)
                h, seg = h[inside], seg[inside]
            hashes.append(h)
            segments.append(seg.astype("int16"))
        return cls._sorted(hashes, segments, summary)

    @classmethod
    def _sorted(
        cls, hashes: list[np.ndarray], segments: list[np.ndarray], summary: PreviousSummary
    ) -> PreviousAssignments:
        all_hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype="uint64")
        all_segments = np.concatenate(segments) if segments else np.empty(0, dtype="int16")
        order = np.argsort(all_hashes, kind="stable")
        return cls(all_hashes[order], all_segments[order], summary)

    def merge(self, other: PreviousAssignments) -> PreviousAssignments:
        """The customers of both (parts of one previous run), the summaries merged."""
        return self._sorted(
            [self.hashes, other.hashes],
            [self.segments, other.segments],
            self.summary.merge(other.summary),
        )

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Previous segment id per hash, -1 when the customer was not in the previous run."""
        if self.hashes.size == 0:
            return np.full(hashes.shape, -1, dtype="int32")
        pos = np.searchsorted(self.hashes, hashes)
        pos_clipped = np.minimum(pos, self.hashes.size - 1)
        found = self.hashes[pos_clipped] == hashes
        return np.where(found, self.segments[pos_clipped].astype("int32"), -1)


# ---------------------------------------------------------------------------------------
# Mergeable run statistics
# ---------------------------------------------------------------------------------------


@dataclass
class ScoreStats:
    """Everything a run reports, accumulated per chunk and merged associatively.

    Composed of one small accumulator per concern (:mod:`custseg.scoring.accumulators`):
    ``totals`` (customers, values), ``moments`` (features, distance, confidence per
    segment), ``samples`` (a hash sample of at most :data:`BASE_SAMPLE` customers holding
    their feature values, segment, distance and value, no customer ids; its
    :data:`QUALITY_SAMPLE` smallest hashes are the quality sample; and at most
    :data:`SEGMENT_SAMPLE` customers' numeric features per segment), ``category_counts``,
    ``feature_histograms``, ``outcome_counts``, ``label_counts`` and ``previous_run``
    (``transitions[p, s]`` counts customers in segment ``p`` in the previous run and ``s``
    now). Arrays are indexed by segment id (0 .. k-1); the properties below read them.
    """

    k: int
    numeric: list[str]
    categorical: list[str]
    outcomes: list[str] = field(default_factory=list)
    baseline_edges: dict[str, list[float]] = field(default_factory=dict)
    sample_k: int = BASE_SAMPLE
    segment_sample_k: int = SEGMENT_SAMPLE
    track_previous: bool = False
    totals: SegmentTotals = field(init=False)
    moments: SegmentMoments = field(init=False)
    samples: CustomerSamples = field(init=False)
    category_counts: CategoryCounts = field(init=False)
    feature_histograms: FeatureHistograms = field(init=False)
    outcome_counts: OutcomeCounts = field(init=False)
    label_counts: LabelCounts = field(init=False)
    previous_run: Transitions = field(init=False)

    def __post_init__(self) -> None:
        self.totals = SegmentTotals()
        self.totals.grow(self.k)
        self.moments = SegmentMoments(list(self.numeric))
        self.samples = CustomerSamples(list(self.numeric), self.sample_k, self.segment_sample_k)
        self.category_counts = CategoryCounts(list(self.categorical))
        self.feature_histograms = FeatureHistograms.on_edges(self.baseline_edges)
        self.outcome_counts = OutcomeCounts(list(self.outcomes))
        self.label_counts = LabelCounts()
        self.previous_run = Transitions()

    def empty_like(self) -> ScoreStats:
        return ScoreStats(
            k=self.k,
            numeric=list(self.numeric),
            categorical=list(self.categorical),
            outcomes=list(self.outcomes),
            baseline_edges={k: list(v) for k, v in self.baseline_edges.items()},
            sample_k=self.sample_k,
            segment_sample_k=self.segment_sample_k,
            track_previous=self.track_previous,
        )

    # -- update -----------------------------------------------------------------------

    def update(
        self,
        frame: pd.DataFrame,
        segment_id: np.ndarray,
        distance: np.ndarray,
        confidence: np.ndarray,
        *,
        hashes: np.ndarray,
        value: np.ndarray | None = None,
        extras: pd.DataFrame | None = None,
        labels: pd.DataFrame | LabelCodes | None = None,
        previous: np.ndarray | None = None,
        codes: Mapping[str, CategoryCodes] | None = None,
    ) -> ScoreStats:
        """Add one chunk of scored customers.

        ``frame``: the model's feature frame (numeric then categorical columns), one row per
        customer; ``segment_id``, ``distance``, ``confidence``, ``hashes`` (stable hash of
        the customer id), ``value`` (float, NaN unknown), ``previous`` (previous segment id
        or -1) are aligned arrays; ``extras`` holds outcome columns as 0/1 floats;
        ``labels`` the RFM / tier / lifecycle columns (the frame of ``assign_labels`` or
        the :class:`~custseg.model.labels.LabelCodes` of ``label_codes``); ``codes`` optionally
        the categorical columns as codes (``Features.codes``), spared re-coding.
        """
        n = len(frame)
        if n == 0:
            return self
        seg = np.asarray(segment_id, dtype="int64")
        self.k = k = max(self.k, int(seg.max()) + 1)
        val = np.full(n, np.nan) if value is None else np.asarray(value, dtype="float64").copy()
        dist = np.asarray(distance, dtype="float64")
        hashes = np.asarray(hashes, dtype="uint64")
        numeric = self._numeric_matrix(frame)
        rows = segment_rows(seg, k)
        self.totals.update(seg, k, val)
        self.moments.update(rows, numeric, dist, np.asarray(confidence, dtype="float64"))
        self.samples.update_segments(rows, numeric, hashes)
        self.category_counts.update(frame, seg, k, codes)
        self.feature_histograms.update(frame)
        if extras is not None:
            self.outcome_counts.update(extras, seg, k)
        if labels is not None:
            self.label_counts.update(labels, seg, k)
        self.samples.update_overall(frame, seg, dist, val, hashes)
        if self.track_previous and previous is not None:
            self.previous_run.update(previous, seg, k)
        return self

    def _numeric_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The numeric features as an (n, p) array: one contiguous array per feature, as
        its columns (the moments see the same values in the same order whatever the
        layout)."""
        numeric = np.empty((len(self.numeric), len(frame)), dtype="float64")
        for j, name in enumerate(self.numeric):
            numeric[j] = frame[name].to_numpy(dtype="float64", na_value=np.nan)
        return numeric.T

    # -- merge ------------------------------------------------------------------------

    def merge(self, other: ScoreStats) -> ScoreStats:
        """A new ScoreStats equal to having seen both inputs (order does not matter)."""
        k = max(self.k, other.k)
        out = self.empty_like()
        out.k = k
        out.totals = self.totals.merge(other.totals, k)
        out.moments = self.moments.merge(other.moments)
        out.samples = self.samples.merge(other.samples)
        out.category_counts = self.category_counts.merge(other.category_counts)
        out.feature_histograms = self.feature_histograms.merge(other.feature_histograms)
        out.outcome_counts = self.outcome_counts.merge(other.outcome_counts, k)
        out.label_counts = self.label_counts.merge(other.label_counts)
        out.previous_run = self.previous_run.merge(other.previous_run)
        return out

    # -- read -------------------------------------------------------------------------

    @property
    def customers(self) -> int:
        return self.totals.customers

    @property
    def seg_counts(self) -> np.ndarray:
        return self.totals.counts

    @property
    def value_sum(self) -> np.ndarray:
        return self.totals.value_sum

    @property
    def value_known(self) -> np.ndarray:
        return self.totals.value_known

    @property
    def seg_moments(self) -> dict[int, dict[str, Moments]]:
        return self.moments.features

    @property
    def distance(self) -> dict[int, Moments]:
        return self.moments.distance

    @property
    def confidence(self) -> dict[int, Moments]:
        return self.moments.confidence

    @property
    def categories(self) -> dict[str, PairCounts]:
        return self.category_counts.counts

    @property
    def histograms(self) -> dict[str, Histogram]:
        return self.feature_histograms.histograms

    @property
    def outcome_pos(self) -> dict[str, np.ndarray]:
        return self.outcome_counts.positives

    @property
    def outcome_known(self) -> dict[str, np.ndarray]:
        return self.outcome_counts.known

    @property
    def labels(self) -> dict[str, PairCounts]:
        return self.label_counts.counts

    @property
    def rfm_grid(self) -> np.ndarray:
        return self.label_counts.rfm_grid

    @property
    def sample(self) -> BottomKSample:
        return self.samples.overall

    @property
    def segment_samples(self) -> dict[int, BottomKSample]:
        return self.samples.by_segment

    @property
    def transitions(self) -> np.ndarray:
        return self.previous_run.grid

    @property
    def new_customers(self) -> int:
        return self.previous_run.new_customers

    def base_moments(self) -> dict[str, Moments]:
        """Moments of each numeric feature over all customers (merge of the segments)."""
        return self.moments.overall()

    def base_categories(self, name: str) -> Counter[str]:
        return self.category_counts.overall(name)

    def segment_categories(self, name: str, s: int) -> Counter[str]:
        return self.category_counts.of_segment(name, s)

    def sample_rows(self, n: int | None = None) -> pd.DataFrame:
        """The overall sample (hash order); the first ``n`` rows are the n-smallest sample."""
        rows = self.sample.rows()
        return rows if n is None else rows.head(n)

    def segment_sample(self, s: int) -> pd.DataFrame:
        sample = self.segment_samples.get(s)
        return sample.rows() if sample is not None else pd.DataFrame(columns=self.numeric)


# ---------------------------------------------------------------------------------------
# Metrics document
# ---------------------------------------------------------------------------------------


def _num(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe rounded float (None for NaN / inf / None)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return round(f, digits) + 0.0


def summarise_quality(quality: Mapping[str, Any] | None, top: int = 5) -> dict[str, Any]:
    """The ingest quality report reduced to rows read / kept / rejected and top reasons.

    Tolerant of the report's shape: looks for ``rows_read`` / ``rows_kept`` /
    ``rows_rejected`` at the top level or under ``rows`` / ``counts``, and for reasons
    under ``rejection_reasons`` / ``reasons`` / ``rejected_reasons`` (mapping reason ->
    rows, or a list of {reason, rows|count}). Only counts and reason texts are copied (no
    values of any row).
    """
    if not quality:
        return {"available": False}
    scopes: list[Mapping[str, Any]] = [quality]
    for key in ("rows", "counts", "summary", "totals"):
        inner = quality.get(key)
        if isinstance(inner, Mapping):
            scopes.append(inner)

    def pick(*names: str) -> int | None:
        for scope in scopes:
            for name in names:
                value = scope.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return int(value)
        return None

    read = pick("rows_read", "read", "rows_in", "input_rows", "total_rows", "rows_total")
    kept = pick("rows_kept", "kept", "rows_out", "clean_rows", "rows_clean", "output_rows")
    rejected = pick("rows_rejected", "rejected", "rejected_rows")
    if rejected is None and read is not None and kept is not None:
        rejected = max(read - kept, 0)
    reasons: list[dict[str, Any]] = []
    for scope in scopes:
        for key in (
            "rejected_by_reason",
            "rejection_reasons",
            "reject_reasons",
            "rejected_reasons",
            "reasons",
        ):
            raw = scope.get(key)
            if isinstance(raw, Mapping):
                items = raw.get("counts", raw) if isinstance(raw.get("counts"), Mapping) else raw
                for reason, n in items.items():
                    if isinstance(n, int | float):
                        reasons.append({"reason": str(reason), "rows": int(n)})
            elif isinstance(raw, list):
                for item in raw:
                    if isinstance(item, Mapping):
                        text = item.get("reason") or item.get("message") or item.get("check")
                        n = item.get("rows", item.get("count", item.get("n")))
                        if text is not None and isinstance(n, int | float):
                            reasons.append({"reason": str(text), "rows": int(n)})
            if reasons:
                break
        if reasons:
            break
    reasons.sort(key=lambda r: (-r["rows"], r["reason"]))
    out: dict[str, Any] = {
        "available": True,
        "rows_read": read,
        "rows_kept": kept,
        "rows_rejected": rejected,
        "reject_share": _num(rejected / read, 4) if read and rejected is not None else None,
        "top_reasons": reasons[:top],
    }
    for key in ("rows_invalid", "rows_duplicate", "rows_excluded"):
        value = quality.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    for key in ("columns_ignored", "ignored_columns"):
        value = quality.get(key)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out["columns_ignored"] = value[:20]
    return out


def _silhouette_and_friends(
    x: np.ndarray, labels: np.ndarray
) -> tuple[float | None, float | None, float | None]:
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    present = np.unique(labels)
    if present.size < 2 or labels.size <= present.size:
        return None, None, None
    return (
        silhouette(x, labels),
        float(davies_bouldin_score(x, labels)),
        float(calinski_harabasz_score(x, labels)),
    )


def _dense(x: Any) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    return np.asarray(x, dtype="float64")


def quality_sample(stats: ScoreStats, model: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """The quality sample (<= QUALITY_SAMPLE customers): raw rows and the model's
    preprocessed matrix for them."""
    rows = stats.sample_rows(QUALITY_SAMPLE)
    columns = [*stats.numeric, *stats.categorical]
    if rows.empty:
        return rows, np.zeros((0, 0))
    frame = rows[columns].copy()
    for c in stats.categorical:
        frame[c] = frame[c].astype("string")
    return rows, _dense(model.transform(frame))


def pca_projection(x: np.ndarray, segments: np.ndarray) -> tuple[pd.DataFrame, list[float]]:
    """2-D PCA of the preprocessed sample: columns pc1, pc2, segment_id (no ids)."""
    if x.shape[0] < 3 or x.shape[1] < 1:
        return pd.DataFrame(columns=["pc1", "pc2", "segment_id"]), []
    from sklearn.decomposition import PCA

    n_comp = min(2, x.shape[1], x.shape[0])
    pca = PCA(n_components=n_comp, svd_solver="full", random_state=0)
    proj = pca.fit_transform(x)
    # deterministic sign: the largest loading of each component is positive
    for j in range(n_comp):
        comp = pca.components_[j]
        if comp[np.argmax(np.abs(comp))] < 0:
            proj[:, j] = -proj[:, j]
    pc2 = proj[:, 1] if n_comp > 1 else np.zeros(proj.shape[0])
    df = pd.DataFrame({"pc1": proj[:, 0], "pc2": pc2, "segment_id": segments.astype(int)})
    return df, [float(v) for v in pca.explained_variance_ratio_]


def build_metrics(
    stats: ScoreStats,
    model: Any,
    *,
    run: Any,
    as_of: Any,
    as_of_reason: str = "",
    quality: Mapping[str, Any] | None = None,
    previous: PreviousSummary | None = None,
    thresholds: Thresholds | None = None,
    duplicates_dropped: int = 0,
    sample_x: np.ndarray | None = None,
    sample_segments: np.ndarray | None = None,
    pca_variance: list[float] | None = None,
    predictions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics.json document (see :data:`METRIC_DOCS`), verdict and reasons included.

    ``model`` is a ``SegmentModel`` (``metadata``, ``version``, ``segment_names()``);
    ``run`` a ``scoring.RunInfo``. ``sample_x`` / ``sample_segments``: the preprocessed
    quality sample and its segments (see :func:`quality_sample`). ``predictions``: the
    run's ``predictions`` section (:func:`custseg.scoring.predictions.predictions_metrics`).
    """
    thresholds = thresholds or Thresholds()
    meta: Mapping[str, Any] = model.metadata or {}
    training: Mapping[str, Any] = meta.get("training", {}) or {}
    names = {int(k): str(v) for k, v in model.segment_names().items()}
    k = max(stats.k, len(names))
    metrics: dict[str, Any] = {
        "schema_version": 1,
        "dataset": run.dataset,
        "run_id": run.run_id,
        "run_date": str(run.run_date),
        "as_of": str(as_of),
        "as_of_reason": as_of_reason,
        "source": dict(run.source or {}),
        "model": {
            "name": meta.get("model_name"),
            "version": str(model.version),
            "k": int(model.k),
            "trained_rows": training.get("rows"),
            "trained_as_of": training.get("as_of"),
            "status": meta.get("status"),
            "gates": _gates_doc(meta),
        },
        "customers": int(stats.customers),
        "duplicates_dropped": int(duplicates_dropped),
        "data_quality": summarise_quality(quality),
        "segments": _segments_doc(stats, names, k, training),
        "cluster_quality": _cluster_quality_doc(
            stats, meta, sample_x, sample_segments, pca_variance
        ),
        "drift": _drift_doc(stats, k, training),
        "stability": _stability_doc(stats, names, k, previous, str(model.version)),
        "outcomes": _outcomes_doc(stats, names, k),
        "value": _value_doc(stats, k, training),
        "labels": _labels_doc(stats),
        "thresholds": thresholds.to_dict(),
    }
    if predictions is not None:
        metrics["predictions"] = dict(predictions)
    verdict, reasons = evaluate(metrics, thresholds)
    metrics["verdict"] = verdict
    metrics["reasons"] = reasons
    return metrics


def _gates_doc(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model's quality gates as training recorded them (None when not recorded)."""
    gates = meta.get("gates")
    if not isinstance(gates, Mapping) or "passed" not in gates:
        return None
    return {"passed": bool(gates["passed"]), "reasons": [str(r) for r in gates.get("reasons", [])]}


def _training_shares(training: Mapping[str, Any]) -> dict[int, float]:
    return {int(s): float(v) for s, v in (training.get("segment_shares") or {}).items()}


def _segments_doc(
    stats: ScoreStats, names: Mapping[int, str], k: int, training: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """metrics.json ``segments``: per segment its customers, share (vs training), value
    and mean distance and confidence."""
    counts = grow(stats.seg_counts, k)
    n = int(stats.customers)
    value_sum = grow(stats.value_sum, k)
    total_value = float(value_sum.sum())
    value_known = int(grow(stats.value_known, k).sum())
    training_shares = _training_shares(training)
    segments = []
    for s in range(k):
        share = counts[s] / n if n else 0.0
        dist = stats.distance.get(s, Moments())
        segments.append(
            {
                "id": s,
                "name": names.get(s, f"Segment {s}"),
                "customers": int(counts[s]),
                "share": _num(share, 10),
                "training_share": _num(training_shares.get(s)),
                "share_change": _num(share - training_shares[s]) if s in training_shares else None,
                "value_total": _num(value_sum[s], 4) if value_known else None,
                "value_share": _num(value_sum[s] / total_value, 10)
                if value_known and total_value
                else None,
                "mean_distance": _num(dist.mean) if dist.n else None,
                "mean_confidence": _num(stats.confidence.get(s, Moments()).mean)
                if stats.confidence.get(s, Moments()).n
                else None,
            }
        )
    return segments


def _cluster_quality_doc(
    stats: ScoreStats,
    meta: Mapping[str, Any],
    sample_x: np.ndarray | None,
    sample_segments: np.ndarray | None,
    pca_variance: list[float] | None,
) -> dict[str, Any]:
    """metrics.json ``cluster_quality``: the sample's silhouette, Davies-Bouldin and
    Calinski-Harabasz, the mean distance, each next to training's."""
    training: Mapping[str, Any] = meta.get("training", {}) or {}
    all_dist = Moments()
    for s in sorted(stats.distance):
        all_dist = all_dist.merge(stats.distance[s])
    training_quality: Mapping[str, Any] = meta.get("quality", {}) or {}
    sil = dbi = chi = None
    sample_size = 0
    if sample_x is not None and sample_segments is not None and sample_x.shape[0]:
        sample_size = int(sample_x.shape[0])
        sil, dbi, chi = _silhouette_and_friends(sample_x, sample_segments)
    train_sil = training_quality.get("silhouette")
    train_dist = training.get("mean_distance")
    mean_distance = all_dist.mean if all_dist.n else None
    ratio = (
        mean_distance / float(train_dist)
        if mean_distance is not None and train_dist not in (None, 0)
        else None
    )
    return {
        "sample_size": sample_size,
        "sample_is_exact": bool(int(stats.customers) <= QUALITY_SAMPLE),
        "silhouette": _num(sil),
        "davies_bouldin": _num(dbi),
        "calinski_harabasz": _num(chi, 3),
        "training_silhouette": _num(train_sil),
        "silhouette_drop": _num(float(train_sil) - sil)
        if sil is not None and train_sil is not None
        else None,
        "training_davies_bouldin": _num(training_quality.get("davies_bouldin")),
        "mean_distance": _num(mean_distance),
        "training_mean_distance": _num(train_dist),
        "distance_ratio": _num(ratio, 4),
        "pca_explained_variance": [_num(v, 4) for v in (pca_variance or [])],
    }


def _drift_doc(stats: ScoreStats, k: int, training: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json ``drift``: numeric and categorical features and segment shares
    against training."""
    return {
        "numeric": _numeric_drift(stats, training),
        "categorical": _categorical_drift(stats, training),
        "segment_shares": _segment_share_drift(stats, k, training),
    }


def _numeric_drift(stats: ScoreStats, training: Mapping[str, Any]) -> dict[str, Any]:
    base = stats.base_moments()
    moments_train: Mapping[str, Any] = training.get("moments", {}) or {}
    numeric_drift: dict[str, Any] = {}
    for name in stats.numeric:
        hist = stats.histograms.get(name)
        entry: dict[str, Any] = {}
        baseline = (training.get("baseline_histograms") or {}).get(name)
        if hist is not None and baseline is not None:
            entry["psi"] = _num(psi(hist.counts, baseline["counts"]), 4)
            entry["bins"] = len(hist.counts)
        else:
            entry["psi"] = None
        m = base[name]
        entry["mean"] = _num(m.mean) if m.n else None
        entry["missing_share"] = _num(m.missing / (m.n + m.missing), 4) if m.n + m.missing else None
        tm = moments_train.get(name)
        if tm:
            t = Moments.from_dict(tm)
            entry["training_mean"] = _num(t.mean) if t.n else None
            entry["mean_shift_std"] = (
                _num((m.mean - t.mean) / t.std, 4) if t.std > 0 and m.n else None
            )
            entry["training_missing_share"] = (
                _num(t.missing / (t.n + t.missing), 4) if t.n + t.missing else None
            )
        numeric_drift[name] = entry
    return numeric_drift


def _categorical_drift(stats: ScoreStats, training: Mapping[str, Any]) -> dict[str, Any]:
    categorical_drift: dict[str, Any] = {}
    train_cats: Mapping[str, Any] = training.get("category_shares", {}) or {}
    for name in stats.categorical:
        counts_now = stats.base_categories(name)
        total = sum(counts_now.values())
        shares_now = {v: c / total for v, c in counts_now.items()} if total else {}
        expected = {str(v): float(s) for v, s in (train_cats.get(name) or {}).items()}
        categorical_drift[name] = {
            "psi": _num(psi_shares(shares_now, expected), 4) if expected and total else None,
            "new_values": sorted(v for v in shares_now if expected and v not in expected)[:20],
        }
    return categorical_drift


def _segment_share_drift(stats: ScoreStats, k: int, training: Mapping[str, Any]) -> dict[str, Any]:
    counts = grow(stats.seg_counts, k)
    n = int(stats.customers)
    now_shares = {str(s): (counts[s] / n if n else 0.0) for s in range(k)}
    exp_shares = {str(s): v for s, v in _training_shares(training).items()}
    return {
        "max_abs_diff": _num(
            max(abs(now_shares.get(key, 0.0) - exp_shares.get(key, 0.0)) for key in exp_shares),
            4,
        )
        if exp_shares and n
        else None,
        "psi": _num(psi_shares(now_shares, exp_shares), 4) if exp_shares and n else None,
    }


def _stability_doc(
    stats: ScoreStats,
    names: Mapping[int, str],
    k: int,
    previous: PreviousSummary | None,
    model_version: str,
) -> dict[str, Any]:
    """metrics.json ``stability``: customers who changed segment since the previous run,
    new and gone ones, and the transition matrix."""
    if previous is None:
        return {"available": False, "note": "first run: no previous assignments given"}
    trans = stats.transitions
    common = int(trans.sum())
    same = int(sum(trans[i, i] for i in range(min(trans.shape))))
    prev_ids = sorted(set(range(trans.shape[0])) | set(previous.names))
    kk = max(k, trans.shape[1])
    full = pad2(trans, max(prev_ids, default=-1) + 1, kk)
    same_model = previous.model_version is not None and previous.model_version == model_version
    return {
        "available": True,
        "previous_customers": previous.customers,
        "common_customers": common,
        "changed": common - same,
        "changed_share": _num((common - same) / common, 4) if common else None,
        "new_customers": int(stats.new_customers),
        "gone_customers": int(previous.customers - common),
        "previous_model_version": previous.model_version,
        "same_model": bool(same_model),
        "previous_segment_sizes": previous.segment_sizes,
        "transitions": {
            "from": [
                {"id": p, "name": previous.names.get(p, f"Segment {p}")}
                for p in range(full.shape[0])
            ],
            "to": [{"id": s, "name": names.get(s, f"Segment {s}")} for s in range(kk)],
            "counts": full.tolist(),
        },
    }


def _members(hashes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Which of ``hashes`` are in ``keep`` (sorted)."""
    if keep.size == 0:
        return np.zeros(hashes.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keep, hashes), keep.size - 1)
    return np.asarray(keep[pos] == hashes)


def _outcomes_doc(stats: ScoreStats, names: Mapping[int, str], k: int) -> dict[str, Any]:
    """metrics.json ``outcomes``: per outcome column its overall rate, and per segment
    its rate and lift."""
    outcomes: dict[str, Any] = {}
    for name in stats.outcomes:
        if name not in stats.outcome_known:
            continue
        known = grow(stats.outcome_known[name], k)
        pos = grow(stats.outcome_pos[name], k)
        total_known = int(known.sum())
        if total_known == 0:
            continue
        overall = float(pos.sum()) / total_known
        rows = []
        rates = []
        for s in range(k):
            rate = float(pos[s]) / known[s] if known[s] else None
            if rate is not None:
                rates.append(rate)
            rows.append(
                {
                    "id": s,
                    "name": names.get(s, f"Segment {s}"),
                    "customers": int(known[s]),
                    "positives": round(float(pos[s])),
                    "rate": _num(rate, 4),
                    "lift": _num(rate / overall, 4) if rate is not None and overall else None,
                }
            )
        outcomes[name] = {
            "customers": total_known,
            "positives": round(float(pos.sum())),
            "overall_rate": _num(overall, 4),
            "by_segment": rows,
            "lift_min": _num(min(rates) / overall, 4) if rates and overall else None,
            "lift_max": _num(max(rates) / overall, 4) if rates and overall else None,
            "lift_spread": _num(max(rates) / min(rates), 4) if rates and min(rates) > 0 else None,
        }
    return outcomes


def _value_doc(stats: ScoreStats, k: int, training: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json ``value``: the total, mean and the top 10 % customers' share."""
    total_value = float(grow(stats.value_sum, k).sum())
    value_known = int(grow(stats.value_known, k).sum())
    value_doc: dict[str, Any] = {"available": bool(value_known)}
    if not value_known:
        return value_doc
    sample_values = stats.sample_rows()["value"].to_numpy(dtype="float64")
    sample_values = sample_values[np.isfinite(sample_values)]
    top_share = None
    if sample_values.size and sample_values.sum() > 0:
        ordered = np.sort(sample_values)[::-1]
        top_n = max(1, math.ceil(ordered.size * 0.10))
        top_share = float(ordered[:top_n].sum() / ordered.sum())
    value_doc.update(
        {
            "measure": training.get("value_measure"),
            "total": _num(total_value, 4),
            "customers_with_value": value_known,
            "mean": _num(total_value / value_known, 4),
            "top10_share": _num(top_share, 4),
            "top10_share_method": "exact"
            if value_known <= stats.sample_k
            else f"estimate on a hash sample of {stats.sample_k} customers",
        }
    )
    return value_doc


def _labels_doc(stats: ScoreStats) -> dict[str, Any]:
    """metrics.json ``labels``: customers per label, and the R x F grid."""
    labels_doc: dict[str, Any] = {}
    for name, counter in stats.labels.items():
        totals: Counter[str] = Counter()
        for (_, v), c in counter.items():
            totals[v] += c
        labels_doc[name] = dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    rfm_available = bool(stats.rfm_grid.sum())
    labels_doc["rfm_available"] = rfm_available
    if rfm_available:
        labels_doc["rfm_grid"] = {
            "rows": "r_score 1..5",
            "columns": "f_score 1..5",
            "counts": stats.rfm_grid.tolist(),
        }
    return labels_doc


# ---------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------


def _trust_reasons(metrics: Mapping[str, Any], t: Thresholds) -> list[tuple[int, float, str]]:
    """Watch reasons about the run's inputs rather than drift: rows lost at ingest above
    ``rejected_watch``, and a model that did not pass its quality gates."""
    found: list[tuple[int, float, str]] = []
    dq = metrics.get("data_quality") or {}
    share = dq.get("reject_share")
    if isinstance(share, int | float) and share > t.rejected_watch:
        top = (dq.get("top_reasons") or [{}])[0]
        why = f" (mostly {top['rows']:,} x {top['reason']})" if top.get("reason") else ""
        found.append(
            (
                1,
                float(share) / t.rejected_watch if t.rejected_watch else 1.0,
                f"{share:.0%} of the uploaded rows were rejected at ingest{why} > "
                f"{t.rejected_watch:.0%}: the segments describe only the rows kept",
            )
        )
    gates = (metrics.get("model") or {}).get("gates") or {}
    if gates and not gates.get("passed", True):
        found.append(
            (
                1,
                1.0,
                "the model did not pass its quality gates ("
                + ("; ".join(gates.get("reasons") or []) or "see the model metadata")
                + "): treat the segments as provisional",
            )
        )
    return found


def evaluate(
    metrics: Mapping[str, Any], thresholds: Thresholds | None = None
) -> tuple[str, list[str]]:
    """Verdict ("ok" | "watch" | "retrain") and reasons (worst first) from a metrics dict.

    Rules (each compares one metric with its thresholds, see :data:`THRESHOLD_DOCS`):
    numeric and categorical feature PSI, segment-share PSI and largest share change,
    silhouette drop vs training, mean-distance ratio vs training, rise of a feature's
    missing share, and, when the previous run used the same model version, the share of
    customers who changed segment (watch only); for order logs, the holdout check's miss
    (watch only). Whatever the customer count, a share of rejected rows above
    ``rejected_watch`` and a model that did not pass its quality gates give "watch" (see
    :func:`_trust_reasons`). Fewer than ``min_customers`` customers
    gives "watch" (too few to judge) and skips the drift and quality rules.
    """
    t = thresholds or Thresholds()
    found: list[tuple[int, float, str]] = []  # (level, severity for ordering, text)
    found += _trust_reasons(metrics, t)

    def check(value: Any, watch: float, retrain: float | None, text: str) -> None:
        if value is None:
            return
        v = float(value)
        if retrain is not None and v > retrain:
            found.append((2, v / retrain if retrain else v, f"{text} {v:.2f} > {retrain:g}"))
        elif v > watch:
            found.append((1, v / watch if watch else v, f"{text} {v:.2f} > {watch:g}"))

    n = int(metrics.get("customers") or 0)
    if n < t.min_customers:
        found.append(
            (
                1,
                1.0,
                f"only {n} customers scored: too few to judge drift and quality "
                f"(< {t.min_customers})",
            )
        )
    else:
        drift = metrics.get("drift", {})
        for name, entry in (drift.get("numeric") or {}).items():
            check(entry.get("psi"), t.psi_watch, t.psi_retrain, f"{name} drifted: PSI")
            now, before = entry.get("missing_share"), entry.get("training_missing_share")
            if now is not None and before is not None:
                check(
                    now - before,
                    t.missing_watch,
                    None,
                    f"{name} is missing more often than in training: missing share up by",
                )
        for name, entry in (drift.get("categorical") or {}).items():
            check(
                entry.get("psi"),
                t.psi_watch,
                t.psi_retrain,
                f"{name} mix changed: PSI",
            )
        shares = drift.get("segment_shares") or {}
        check(
            shares.get("max_abs_diff"),
            t.share_shift_watch,
            t.share_shift_retrain,
            "segment sizes moved vs training: largest share change",
        )
        check(shares.get("psi"), t.psi_watch, t.psi_retrain, "segment sizes moved: PSI")
        quality = metrics.get("cluster_quality") or {}
        check(
            quality.get("silhouette_drop"),
            t.silhouette_watch,
            t.silhouette_retrain,
            "segments are less distinct than in training: silhouette dropped by",
        )
        check(
            quality.get("distance_ratio"),
            t.distance_ratio_watch,
            t.distance_ratio_retrain,
            "customers sit further from their segment centres: distance ratio",
        )
    holdout = ((metrics.get("predictions") or {}).get("clv") or {}).get("holdout") or {}
    if holdout.get("evaluated") and holdout.get("miss") is not None:
        check(
            abs(float(holdout["miss"])),
            t.holdout_miss_watch,
            None,
            "predicted repeat purchases missed the holdout: relative miss",
        )
    stability = metrics.get("stability") or {}
    if stability.get("available") and stability.get("same_model"):
        check(
            stability.get("changed_share"),
            t.stability_watch,
            None,
            "many customers changed segment since the previous run: share changed",
        )
    found.sort(key=lambda item: (-item[0], -item[1], item[2]))
    level = max((lvl for lvl, _, _ in found), default=0)
    verdict = {0: "ok", 1: "watch", 2: "retrain"}[level]
    return verdict, [text for _, _, text in found]
