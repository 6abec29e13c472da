"""Mergeable statistics.

Every statistic a run reports is computed per chunk and merged associatively, so one
function streams a large file in constant memory and the same code can fan out across
many workers. Each class here has ``update(values)`` for a chunk, ``merge(other)``
returning a new object, and ``to_dict()`` / ``from_dict()`` for JSON.

- :class:`Moments`: count, missing, mean, variance (Chan et al. parallel update), min, max.
- :class:`Histogram`: counts on fixed bin edges (for drift against a training baseline).
- :class:`Counts`: counts per key (categories, rejection reasons, segments), plus sums.
- :class:`BottomKSample`: a deterministic bounded sample: the k rows whose customer-id hash
  is smallest. Merging two samples and keeping the k smallest equals sampling the union,
  so the sample does not depend on how the input was chunked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


def _finite(arr: np.ndarray) -> np.ndarray:
    """The finite values of a 1-D array, in order (the array itself when all are)."""
    mask = np.isfinite(arr)
    return arr if mask.all() else arr[mask]


@dataclass
class Moments:
    """Streaming moments of one numeric variable (missing values counted, not used)."""

    n: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    total: float = 0.0

    def update(self, values: Any) -> Moments:
        arr = np.asarray(values, dtype="float64")
        finite = _finite(arr)
        self.missing += int(arr.size - finite.size)
        if finite.size:
            total = float(finite.sum())
            mean = total / finite.size  # what finite.mean() computes, without a second sum
            other = Moments(
                n=int(finite.size),
                mean=mean,
                m2=float(np.square(finite - mean).sum()),
                min=float(finite.min()),
                max=float(finite.max()),
                total=total,
            )
            merged = self.merge(other)
            self.n, self.mean, self.m2 = merged.n, merged.mean, merged.m2
            self.min, self.max, self.total = merged.min, merged.max, merged.total
        return self

    def merge(self, other: Moments) -> Moments:
        n = self.n + other.n
        if n == 0:
            return Moments(missing=self.missing + other.missing)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        return Moments(
            n=n,
            missing=self.missing + other.missing,
            mean=mean,
            m2=m2,
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            total=self.total + other.total,
        )

    def without_copies(self, other: Moments) -> Moments:
        """These moments without ``other``'s values, when each of them is a copy of a
        value that stays (removed exact duplicates): the inverse of :meth:`merge`, with
        the minimum and maximum unchanged."""
        n = self.n - other.n
        missing = self.missing - other.missing
        if n <= 0:
            return Moments(missing=missing)
        total = self.total - other.total
        mean = self.mean + (self.mean - other.mean) * other.n / n  # no n * mean to overflow
        delta = other.mean - mean
        m2 = max(self.m2 - other.m2 - delta * delta * n * other.n / self.n, 0.0)
        return Moments(
            n=n, missing=missing, mean=mean, m2=m2, min=self.min, max=self.max, total=total
        )

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def to_dict(self) -> dict[str, Any]:
        finite = self.n > 0
        return {
            "count": self.n,
            "missing": self.missing,
            "mean": self.mean if finite else None,
            "std": self.std if finite else None,
            "min": self.min if finite else None,
            "max": self.max if finite else None,
            "sum": self.total,
            "m2": self.m2,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Moments:
        return cls(
            n=int(d["count"]),
            missing=int(d.get("missing", 0)),
            mean=float(d["mean"] or 0.0),
            m2=float(d.get("m2", 0.0)),
            min=math.inf if d.get("min") is None else float(d["min"]),
            max=-math.inf if d.get("max") is None else float(d["max"]),
            total=float(d.get("sum", 0.0)),
        )


@dataclass
class Histogram:
    """Counts on fixed, increasing bin edges; values outside go to the first/last bin.

    ``edges`` has ``len(counts) + 1`` entries. Missing (non-finite) values are counted apart.
    """

    edges: list[float]
    counts: list[int] = field(default_factory=list)
    missing: int = 0

    def __post_init__(self) -> None:
        if len(self.edges) < 2:
            raise ValueError("a histogram needs at least two edges")
        if not self.counts:
            self.counts = [0] * (len(self.edges) - 1)

    @classmethod
    def from_quantiles(cls, values: Any, bins: int = 10) -> Histogram:
        """Edges at the quantiles of ``values`` (deduplicated), then filled with them."""
        arr = np.asarray(values, dtype="float64")
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return cls(edges=[0.0, 1.0])
        edges = np.unique(np.quantile(arr, np.linspace(0, 1, bins + 1)))
        if edges.size < 2:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
        hist = cls(edges=[float(e) for e in edges])
        return hist.update(values)

    def update(self, values: Any) -> Histogram:
        arr = np.asarray(values, dtype="float64")
        finite = _finite(arr)
        self.missing += int(arr.size - finite.size)
        inner = np.asarray(self.edges[1:-1], dtype="float64")
        if np.isfinite(inner).all() and (np.diff(inner) >= 0).all():
            # bin b holds the values with exactly b inner edges <= them (the searchsorted
            # rule), so counts are differences of "values >= edge" counts: one cheap
            # comparison pass per edge instead of a binary search per value
            at_least = [finite.size, *(np.count_nonzero(finite >= e) for e in inner), 0]
            binc = np.diff(-np.asarray(at_least, dtype="int64"))
        else:
            idx = np.searchsorted(inner, finite, side="right")
            binc = np.bincount(idx, minlength=len(self.counts))
        self.counts = [int(a + b) for a, b in zip(self.counts, binc, strict=True)]
        return self

    def merge(self, other: Histogram) -> Histogram:
        if list(self.edges) != list(other.edges):
            raise ValueError("cannot merge histograms with different edges")
        return Histogram(
            edges=list(self.edges),
            counts=[a + b for a, b in zip(self.counts, other.counts, strict=True)],
            missing=self.missing + other.missing,
        )

    def proportions(self) -> np.ndarray:
        total = sum(self.counts)
        if total == 0:
            return np.zeros(len(self.counts))
        return np.asarray(self.counts, dtype="float64") / total

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts), "missing": self.missing}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Histogram:
        return cls(
            edges=[float(e) for e in d["edges"]],
            counts=[int(c) for c in d["counts"]],
            missing=int(d.get("missing", 0)),
        )


@dataclass
class Counts:
    """Counts (and optional sums of a value) per key; keys are strings."""

    counts: Counter[str] = field(default_factory=Counter)
    sums: dict[str, float] = field(default_factory=dict)

    def update(self, keys: Iterable[Any], values: Iterable[float] | None = None) -> Counts:
        key_series = pd.Series(list(keys) if not isinstance(keys, pd.Series) else keys)
        key_series = key_series.astype("string").fillna("(missing)")
        for key, n in key_series.value_counts(sort=False).items():
            self.counts[str(key)] += int(n)
        if values is not None:
            val = pd.Series(list(values) if not isinstance(values, pd.Series) else values)
            grouped = pd.Series(val.to_numpy(dtype="float64")).groupby(key_series.to_numpy())
            for key, s in grouped.sum().items():
                self.sums[str(key)] = self.sums.get(str(key), 0.0) + float(s)
        return self

    def add(self, key: str, n: int = 1) -> Counts:
        self.counts[key] += n
        return self

    def merge(self, other: Counts) -> Counts:
        sums = dict(self.sums)
        for key, s in other.sums.items():
            sums[key] = sums.get(key, 0.0) + s
        return Counts(counts=self.counts + other.counts, sums=sums)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def top(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"counts": dict(sorted(self.counts.items()))}
        if self.sums:
            out["sums"] = dict(sorted(self.sums.items()))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Counts:
        return cls(counts=Counter(d.get("counts", {})), sums=dict(d.get("sums", {})))


def stable_hash(keys: pd.Series | Iterable[Any]) -> np.ndarray:
    """A 64-bit hash per key that is the same in every process and run (no salt)."""
    series = keys if isinstance(keys, pd.Series) else pd.Series(list(keys))
    return pd.util.hash_pandas_object(
        series.astype("string"), index=False, hash_key="custseg-sample-1"
    ).to_numpy(dtype="uint64")


@dataclass
class BottomKSample:
    """A bounded, deterministic, mergeable sample of rows: the ``k`` smallest key hashes."""

    k: int
    frame: pd.DataFrame | None = None  # sampled rows plus a ``_hash`` column

    def update(self, rows: pd.DataFrame, keys: pd.Series) -> BottomKSample:
        if rows.empty:
            return self
        hashed = rows.reset_index(drop=True).copy()
        hashed["_hash"] = stable_hash(keys.reset_index(drop=True))
        hashed = hashed.nsmallest(self.k, "_hash")
        merged = self.merge(BottomKSample(k=self.k, frame=hashed))
        self.frame = merged.frame
        return self

    def merge(self, other: BottomKSample) -> BottomKSample:
        parts = [f for f in (self.frame, other.frame) if f is not None and not f.empty]
        if not parts:
            return BottomKSample(k=self.k)
        both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        # the k smallest distinct hashes, each with its first row (what drop_duplicates
        # then nsmallest give), ascending: a stable sort puts a hash's first row first
        hashes = both["_hash"].to_numpy()
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        first = np.ones(ordered.size, dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        pick = order[first][: self.k]
        return BottomKSample(k=self.k, frame=both.take(pick).reset_index(drop=True))

    @property
    def threshold(self) -> int | None:
        """The largest hash kept when the sample is full (only smaller hashes can still
        enter), else ``None``."""
        if self.frame is None or len(self.frame) < self.k or self.k <= 0:
            return None
        return int(self.frame["_hash"].to_numpy().max())

    def rows(self) -> pd.DataFrame:
        """The sampled rows, in hash order, without the helper column."""
        if self.frame is None:
            return pd.DataFrame()
        return self.frame.sort_values("_hash").drop(columns="_hash").reset_index(drop=True)
