"""Cluster quality measures shared by the training (choosing k) and the scoring's metrics."""

from __future__ import annotations

import numpy as np

SILHOUETTE_WORKING_MIB = 2
"""Block size (MiB) of the silhouette's pairwise distances: bounds the evaluation's memory;
blocks that fit the CPU cache are also the fastest (measured: 2 MiB 0.10 s, 32 MiB 0.13 s
for 5,000 customers)."""


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Euclidean) of the rows of ``x`` (n x d) clustered
    by ``labels`` (n): what :func:`sklearn.metrics.silhouette_score` returns (to ~1e-12,
    tested), in a fraction of its time.

    For row i, a = mean distance to the other rows of its cluster, b = the smallest mean
    distance to the rows of another cluster, s = (b - a) / max(a, b), 0 in a cluster of
    one. The pairwise distances are computed in blocks of rows (at most
    :data:`SILHOUETTE_WORKING_MIB` MiB at once) and reduced at once to per-cluster sums
    with one matrix product, instead of scikit-learn's per-block Python reduction.
    Requires at least 2 clusters and fewer clusters than rows.
    """
    x = np.asarray(x, dtype="float64")
    n = x.shape[0]
    present, inverse = np.unique(np.asarray(labels), return_inverse=True)
    k = present.size
    if k < 2 or n <= k:
        raise ValueError(f"the silhouette needs 2 <= clusters < rows (got {k} and {n})")
    counts = np.bincount(inverse, minlength=k).astype("float64")
    members = np.zeros((n, k))
    members[np.arange(n), inverse] = 1.0
    squared = np.einsum("ij,ij->i", x, x)
    sums = np.empty((n, k))
    block = max(1, int(SILHOUETTE_WORKING_MIB * 1024**2) // (8 * n))
    for start in range(0, n, block):
        stop = min(start + block, n)
        d = x[start:stop] @ x.T
        d *= -2.0
        d += squared[start:stop, None]
        d += squared[None, :]
        np.maximum(d, 0.0, out=d)
        d[np.arange(stop - start), np.arange(start, stop)] = 0.0  # exact self-distances
        np.sqrt(d, out=d)
        sums[start:stop] = d @ members
    rows = np.arange(n)
    own_count = counts[inverse]
    a = sums[rows, inverse] / np.maximum(own_count - 1.0, 1.0)
    means = sums / counts
    means[rows, inverse] = np.inf
    b = means.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (b - a) / np.maximum(a, b)
    s[own_count == 1] = 0.0
    return float(np.mean(np.nan_to_num(s)))
