"""The small mergeable accumulators a scoring run's statistics are made of, one per concern.

Each one is updated with a chunk of scored customers and merged with another of its kind
(associatively: the same result for any chunking, up to float rounding);
:class:`custseg.scoring.metrics.ScoreStats` composes them. Arrays are indexed by segment id
(0 .. k-1) and grow when a later chunk names a higher segment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from custseg.features.build import CategoryCodes
from custseg.model.labels import TEXT_COLUMNS as LABEL_TEXT_COLUMNS
from custseg.model.labels import LabelCodes
from custseg.stats import BottomKSample, Histogram, Moments

MISSING_CATEGORY = "(missing)"
_LABEL_FRAME_COLUMNS = ("rfm_segment", "value_tier", "lifecycle_stage")

PairCounts = Counter[tuple[int, str]]
"""Customers per (segment id, value) pair."""


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def grow(arr: np.ndarray, size: int) -> np.ndarray:
    """``arr`` padded with zeros to ``size`` rows (itself when it has as many)."""
    if arr.shape[0] >= size:
        return arr
    pad = [(0, size - arr.shape[0])] + [(0, 0)] * (arr.ndim - 1)
    return np.pad(arr, pad)


def pad2(arr: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A ``rows`` x ``cols`` int64 grid holding ``arr`` in its top left corner."""
    out = np.zeros((rows, cols), dtype="int64")
    out[: arr.shape[0], : arr.shape[1]] = arr
    return out


def _merge_counters(a: Counter[Any], b: Counter[Any]) -> Counter[Any]:
    out: Counter[Any] = Counter(a)
    out.update(b)
    return out


def _merge_counter_maps(
    a: Mapping[str, Counter[Any]], b: Mapping[str, Counter[Any]]
) -> dict[str, Counter[Any]]:
    return {
        name: _merge_counters(a.get(name, Counter()), b.get(name, Counter()))
        for name in set(a) | set(b)
    }


def segment_rows(seg: np.ndarray, k: int) -> list[np.ndarray]:
    """Row positions (ascending) of each segment 0..k-1."""
    if k <= 16:
        return [np.flatnonzero(seg == s) for s in range(k)]
    order = np.argsort(seg, kind="stable")
    bounds = np.searchsorted(seg[order], np.arange(k + 1))
    return [order[bounds[s] : bounds[s + 1]] for s in range(k)]


def pair_counts(seg: np.ndarray, values: pd.Series, k: int, missing: str) -> PairCounts:
    """Counts of (segment id, value) pairs, vectorised (factorize + bincount)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    m = len(uniques) + 1  # last slot: missing
    codes = np.where(codes < 0, m - 1, codes)
    grid = np.bincount(seg * m + codes, minlength=k * m).reshape(k, m)
    labels = [str(u) for u in uniques] + [missing]
    out: PairCounts = Counter()
    for s, j in zip(*np.nonzero(grid), strict=True):
        out[(int(s), labels[j])] += int(grid[s, j])
    return out


def code_pair_counts(
    seg: np.ndarray, codes: np.ndarray, values: list[str] | tuple[str, ...], k: int
) -> PairCounts:
    """:func:`pair_counts` of a column given as codes into distinct ``values``: the same
    counts, inserted in the same order (segments, then values by first appearance)."""
    m = max(len(values), 1)
    codes = np.asarray(codes, dtype=np.int64)
    grid = np.bincount(seg * m + codes, minlength=k * m).reshape(k, m)
    present = np.flatnonzero(grid.sum(axis=0))
    if present.size <= 16:
        first = np.array([int(np.argmax(codes == c)) for c in present], dtype=np.int64)
    else:
        found, at = np.unique(codes, return_index=True)
        first = at[np.searchsorted(found, present)]
    columns = present[np.argsort(first, kind="stable")]
    out: PairCounts = Counter()
    for s in range(grid.shape[0]):
        for j in columns:
            if grid[s, j]:
                out[(s, str(values[j]))] += int(grid[s, j])
    return out


def candidates(hashes: np.ndarray, sample: BottomKSample) -> np.ndarray:
    """Positions (ascending) of the rows that can enter ``sample``: the ``sample.k``
    smallest hashes, and of those only the ones below a full sample's largest (the others
    would be dropped by the merge anyway)."""
    threshold = sample.threshold
    if threshold is None:
        return _smallest(hashes, sample.k)
    below = np.flatnonzero(hashes < np.uint64(threshold))
    chosen: np.ndarray = below[_smallest(hashes[below], sample.k)]
    return chosen


def _smallest(hashes: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest hashes (all positions when there are fewer)."""
    if hashes.size <= k:
        return np.arange(hashes.size)
    return np.sort(np.argpartition(hashes, k - 1)[:k])


def _add_to_sample(sample: BottomKSample, rows: pd.DataFrame, hashes: np.ndarray) -> None:
    rows = rows.copy()
    rows["_hash"] = hashes
    merged = sample.merge(BottomKSample(k=sample.k, frame=rows))
    sample.frame = merged.frame


def _rfm_cells(r: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The R x F grid's counts (5 x 5) of the R and F scores 1..5 given."""
    cell = np.clip((r.astype(int) - 1) * 5 + (f.astype(int) - 1), 0, 24)
    return np.bincount(cell, minlength=25).reshape(5, 5)


# ---------------------------------------------------------------------------------------
# Accumulators
# ---------------------------------------------------------------------------------------


@dataclass
class SegmentTotals:
    """Customers per segment, and per segment the customers with a known value and the
    sum of their values."""

    customers: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="int64"))
    value_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    value_known: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="int64"))

    def grow(self, k: int) -> None:
        self.counts = grow(self.counts, k)
        self.value_sum = grow(self.value_sum.astype("float64", copy=False), k)
        self.value_known = grow(self.value_known, k)

    def update(self, seg: np.ndarray, k: int, value: np.ndarray) -> None:
        """Add customers in segments ``seg`` (< ``k``) with ``value`` (NaN: unknown)."""
        self.grow(k)
        self.customers += len(seg)
        self.counts += np.bincount(seg, minlength=k)
        known = np.isfinite(value)
        self.value_known += np.bincount(seg[known], minlength=k)
        self.value_sum += np.bincount(seg[known], weights=value[known], minlength=k)

    def merge(self, other: SegmentTotals, k: int) -> SegmentTotals:
        return SegmentTotals(
            customers=self.customers + other.customers,
            counts=grow(self.counts, k) + grow(other.counts, k),
            value_sum=grow(self.value_sum, k) + grow(other.value_sum, k),
            value_known=grow(self.value_known, k) + grow(other.value_known, k),
        )


@dataclass
class SegmentMoments:
    """Per segment: the moments of each numeric feature, of the distance to the segment
    centre and of the assignment confidence."""

    numeric: list[str]
    features: dict[int, dict[str, Moments]] = field(default_factory=dict)
    distance: dict[int, Moments] = field(default_factory=dict)
    confidence: dict[int, Moments] = field(default_factory=dict)

    def update(
        self,
        rows: list[np.ndarray],
        numeric: np.ndarray,
        distance: np.ndarray,
        confidence: np.ndarray,
    ) -> None:
        """Add the customers at ``rows[s]`` of segment ``s`` (``numeric`` is n x p)."""
        for s, idx in enumerate(rows):
            if idx.size == 0:
                continue
            per = self.features.setdefault(s, {f: Moments() for f in self.numeric})
            for j, name in enumerate(self.numeric):
                per[name].update(numeric[idx, j])
            self.distance.setdefault(s, Moments()).update(distance[idx])
            self.confidence.setdefault(s, Moments()).update(confidence[idx])

    def merge(self, other: SegmentMoments) -> SegmentMoments:
        out = SegmentMoments(numeric=list(self.numeric))
        for s in set(self.features) | set(other.features):
            a = self.features.get(s, {})
            b = other.features.get(s, {})
            out.features[s] = {
                f: a.get(f, Moments()).merge(b.get(f, Moments())) for f in self.numeric
            }
        out.distance = _merge_moments(self.distance, other.distance)
        out.confidence = _merge_moments(self.confidence, other.confidence)
        return out

    def overall(self) -> dict[str, Moments]:
        """Moments of each numeric feature over all customers (merge of the segments)."""
        out = {f: Moments() for f in self.numeric}
        for s in sorted(self.features):
            for f in self.numeric:
                out[f] = out[f].merge(self.features[s][f])
        return out


def _merge_moments(a: dict[int, Moments], b: dict[int, Moments]) -> dict[int, Moments]:
    return {s: a.get(s, Moments()).merge(b.get(s, Moments())) for s in set(a) | set(b)}


@dataclass
class CustomerSamples:
    """Hash samples of customers (no ids): ``overall`` holds at most ``sample_k`` with
    their feature values, segment, distance and value; ``by_segment`` at most
    ``segment_sample_k`` per segment with their numeric features."""

    numeric: list[str]
    sample_k: int
    segment_sample_k: int
    overall: BottomKSample = field(init=False)
    by_segment: dict[int, BottomKSample] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.overall = BottomKSample(k=self.sample_k)

    def update_segments(
        self, rows: list[np.ndarray], numeric: np.ndarray, hashes: np.ndarray
    ) -> None:
        """Offer the customers at ``rows[s]`` to segment ``s``'s sample."""
        for s, idx in enumerate(rows):
            if idx.size == 0:
                continue
            sample = self.by_segment.setdefault(s, BottomKSample(k=self.segment_sample_k))
            take = idx[candidates(hashes[idx], sample)]
            if take.size:
                rows_taken = pd.DataFrame(numeric[take], columns=self.numeric)
                _add_to_sample(sample, rows_taken, hashes[take])

    def update_overall(
        self,
        frame: pd.DataFrame,
        seg: np.ndarray,
        distance: np.ndarray,
        value: np.ndarray,
        hashes: np.ndarray,
    ) -> None:
        """Offer the customers of ``frame`` to the overall sample."""
        take = candidates(hashes, self.overall)
        if take.size == 0:
            return
        rows = frame.iloc[take].reset_index(drop=True)
        rows["segment_id"] = seg[take]
        rows["distance"] = distance[take]
        rows["value"] = value[take]
        _add_to_sample(self.overall, rows, hashes[take])

    def merge(self, other: CustomerSamples) -> CustomerSamples:
        out = CustomerSamples(list(self.numeric), self.sample_k, self.segment_sample_k)
        out.overall = self.overall.merge(other.overall)
        for s in set(self.by_segment) | set(other.by_segment):
            a = self.by_segment.get(s, BottomKSample(k=self.segment_sample_k))
            b = other.by_segment.get(s, BottomKSample(k=self.segment_sample_k))
            out.by_segment[s] = a.merge(b)
        return out


@dataclass
class CategoryCounts:
    """Customers per (segment, category) of each categorical feature."""

    names: list[str]
    counts: dict[str, PairCounts] = field(default_factory=dict)

    def update(
        self,
        frame: pd.DataFrame,
        seg: np.ndarray,
        k: int,
        codes: Mapping[str, CategoryCodes] | None = None,
    ) -> None:
        """Add the categories of ``frame`` (or of ``codes``, when they cover a column)."""
        n = len(frame)
        for name in self.names:
            counter = self.counts.setdefault(name, Counter())
            if codes is not None and name in codes and len(codes[name]) == n:
                counter.update(code_pair_counts(seg, codes[name].codes, codes[name].values, k))
            else:
                counter.update(pair_counts(seg, frame[name], k, MISSING_CATEGORY))

    def merge(self, other: CategoryCounts) -> CategoryCounts:
        return CategoryCounts(list(self.names), _merge_counter_maps(self.counts, other.counts))

    def overall(self, name: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, v), c in self.counts.get(name, Counter()).items():
            out[v] += c
        return out

    def of_segment(self, name: str, s: int) -> Counter[str]:
        out: Counter[str] = Counter()
        for (seg, v), c in self.counts.get(name, Counter()).items():
            if seg == s:
                out[v] += c
        return out


@dataclass
class FeatureHistograms:
    """Counts of numeric features on the training baseline's bin edges (for drift)."""

    histograms: dict[str, Histogram] = field(default_factory=dict)

    @classmethod
    def on_edges(cls, edges: Mapping[str, list[float]]) -> FeatureHistograms:
        return cls({name: Histogram(edges=list(e)) for name, e in edges.items()})

    def update(self, frame: pd.DataFrame) -> None:
        for name, hist in self.histograms.items():
            if name in frame.columns:
                hist.update(frame[name].to_numpy(dtype="float64", na_value=np.nan))

    def merge(self, other: FeatureHistograms) -> FeatureHistograms:
        return FeatureHistograms(
            {name: hist.merge(other.histograms[name]) for name, hist in self.histograms.items()}
        )


@dataclass
class OutcomeCounts:
    """Per outcome column (0/1) and segment: customers with a known outcome, positives."""

    names: list[str]
    positives: dict[str, np.ndarray] = field(default_factory=dict)
    known: dict[str, np.ndarray] = field(default_factory=dict)

    def update(self, extras: pd.DataFrame, seg: np.ndarray, k: int) -> None:
        for name in self.names:
            if name not in extras.columns:
                continue
            y = extras[name].to_numpy(dtype="float64", na_value=np.nan)
            ok = np.isfinite(y)
            pos = np.bincount(seg[ok], weights=(y[ok] > 0.5).astype("float64"), minlength=k)
            self.positives[name] = grow(self.positives.get(name, np.zeros(k)), k) + pos
            self.known[name] = grow(
                self.known.get(name, np.zeros(k, dtype="int64")), k
            ) + np.bincount(seg[ok], minlength=k)

    def merge(self, other: OutcomeCounts, k: int) -> OutcomeCounts:
        out = OutcomeCounts(list(self.names))
        for name in set(self.positives) | set(other.positives):
            out.positives[name] = grow(self.positives.get(name, np.zeros(k)), k) + grow(
                other.positives.get(name, np.zeros(k)), k
            )
            out.known[name] = grow(self.known.get(name, np.zeros(k, dtype="int64")), k) + grow(
                other.known.get(name, np.zeros(k, dtype="int64")), k
            )
        return out


@dataclass
class LabelCounts:
    """Customers per (segment, label) of the RFM segment, value tier and lifecycle stage,
    and the R x F score grid (``rfm_grid[r-1][f-1]``)."""

    counts: dict[str, PairCounts] = field(default_factory=dict)
    rfm_grid: np.ndarray = field(default_factory=lambda: np.zeros((5, 5), dtype="int64"))

    def update(self, labels: pd.DataFrame | LabelCodes, seg: np.ndarray, k: int) -> None:
        """Add the labels of a chunk: codes (:class:`LabelCodes`) or a frame of texts."""
        if isinstance(labels, LabelCodes):
            self._update_codes(labels, seg, k)
        else:
            self._update_frame(labels, seg, k)

    def _update_codes(self, labels: LabelCodes, seg: np.ndarray, k: int) -> None:
        for name in LABEL_TEXT_COLUMNS:
            counter = self.counts.setdefault(name, Counter())
            vocabulary = LabelCodes.VOCABULARY[name]
            counter.update(code_pair_counts(seg, labels.column(name), vocabulary, k))
        r_codes, f_codes = labels.r_score, labels.f_score
        both_known = (r_codes > 0) & (f_codes > 0)
        if both_known.any():
            self.rfm_grid += _rfm_cells(r_codes[both_known], f_codes[both_known])

    def _update_frame(self, labels: pd.DataFrame, seg: np.ndarray, k: int) -> None:
        for name in _LABEL_FRAME_COLUMNS:
            if name not in labels.columns:
                continue
            counter = self.counts.setdefault(name, Counter())
            counter.update(pair_counts(seg, labels[name], k, "n/a"))
        if "r_score" in labels.columns and "f_score" in labels.columns:
            r = labels["r_score"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
            f = labels["f_score"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
            both = np.isfinite(r) & np.isfinite(f)
            if both.any():
                self.rfm_grid += _rfm_cells(r[both], f[both])

    def merge(self, other: LabelCounts) -> LabelCounts:
        return LabelCounts(
            _merge_counter_maps(self.counts, other.counts), self.rfm_grid + other.rfm_grid
        )


@dataclass
class Transitions:
    """Against the previous run: ``grid[p, s]`` customers in segment ``p`` then and ``s``
    now, and the customers new since."""

    grid: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype="int64"))
    new_customers: int = 0

    def update(self, previous: np.ndarray, seg: np.ndarray, k: int) -> None:
        """Add customers of segments ``seg`` whose previous segment is ``previous`` (-1:
        not in the previous run)."""
        prev = np.asarray(previous, dtype="int64")
        found = prev >= 0
        self.new_customers += int((~found).sum())
        if found.any():
            kp = max(self.grid.shape[0], int(prev[found].max()) + 1)
            kk = max(self.grid.shape[1], k)
            cells = np.bincount(prev[found] * kk + seg[found], minlength=kp * kk)
            self.grid = pad2(self.grid, kp, kk) + cells.reshape(kp, kk)

    def merge(self, other: Transitions) -> Transitions:
        kp = max(self.grid.shape[0], other.grid.shape[0])
        kk = max(self.grid.shape[1], other.grid.shape[1])
        return Transitions(
            pad2(self.grid, kp, kk) + pad2(other.grid, kp, kk),
            self.new_customers + other.new_customers,
        )
