"""Cluster quality: the blocked silhouette equals scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest

from custseg.model.quality import silhouette


@pytest.mark.parametrize(
    ("n", "d", "k", "working_mib"),
    [(5_000, 12, 3, 2), (1_200, 20, 6, 0.05), (40, 3, 4, 32)],
)
def test_silhouette_equals_scikit_learn(
    n: int, d: int, k: int, working_mib: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import silhouette_score

    import custseg.model.quality

    monkeypatch.setattr(custseg.model.quality, "SILHOUETTE_WORKING_MIB", working_mib)  # many blocks
    rng = np.random.default_rng(n)
    centres = rng.normal(scale=3.0, size=(k, d))
    labels = rng.integers(0, k, n)
    x = centres[labels] + rng.normal(size=(n, d))
    assert silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-12)
    x[0] = x[1]  # a duplicated point: a zero distance off the diagonal
    labels[-1] = k + 7  # a cluster of one: its silhouette is 0
    assert silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-12)
    with pytest.raises(ValueError, match="clusters"):
        silhouette(x, np.zeros(n, dtype=int))
