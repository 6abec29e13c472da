import numpy as np
import pandas as pd
import pytest

from custseg.stats import BottomKSample, Counts, Histogram, Moments


def test_moments_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(10, 3, 1001)
    x[::97] = np.nan
    whole = Moments().update(x)
    parts = Moments().update(x[:300]).merge(Moments().update(x[300:]))
    assert parts.n == whole.n == int(np.isfinite(x).sum())
    assert parts.missing == whole.missing == int(np.isnan(x).sum())
    assert parts.mean == pytest.approx(np.nanmean(x))
    assert parts.std == pytest.approx(np.nanstd(x, ddof=1))
    assert Moments.from_dict(parts.to_dict()).to_dict() == parts.to_dict()


def test_histogram_merge_and_out_of_range_values() -> None:
    h = Histogram(edges=[0.0, 1.0, 2.0, 3.0])
    h.update([-5, 0.5, 1.5, 2.5, 99, np.nan])
    assert h.counts == [2, 1, 2]
    assert h.missing == 1
    merged = h.merge(Histogram(edges=[0.0, 1.0, 2.0, 3.0]).update([1.2]))
    assert merged.counts == [2, 2, 2]
    with pytest.raises(ValueError):
        h.merge(Histogram(edges=[0.0, 5.0]))


def test_counts_with_sums_merge() -> None:
    a = Counts().update(["x", "y", "x"], [1.0, 2.0, 3.0])
    b = Counts().update(["y"], [5.0])
    m = a.merge(b)
    assert m.counts == {"x": 2, "y": 2}
    assert m.sums == {"x": 4.0, "y": 7.0}
    assert Counts.from_dict(m.to_dict()).counts == m.counts


def test_bottom_k_sample_does_not_depend_on_chunking() -> None:
    df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(1000)], "v": range(1000)})
    one = BottomKSample(k=50).update(df, df["customer_id"])
    chunked = BottomKSample(k=50)
    for start in range(0, 1000, 137):
        part = df.iloc[start : start + 137]
        chunked.update(part, part["customer_id"])
    assert one.rows()["customer_id"].tolist() == chunked.rows()["customer_id"].tolist()
    assert len(one.rows()) == 50


def test_moments_are_numpys_own_sums() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(3, 2, 5_000)
    m = Moments().update(x)
    assert m.mean == float(x.mean()) and m.total == float(x.sum())  # exactly
    assert m.m2 == float(((x - x.mean()) ** 2).sum())
    assert Moments().update(x[np.argsort(x)]).n == x.size


@pytest.mark.parametrize(
    "edges",
    [
        [0.0, 1.0, 2.0, 3.0],
        [-2.0, -2.0, 0.0, 0.0, 5.0],  # repeated edges (coinciding quantiles)
        [0.0, np.inf],
        [0.0, 2.0, 1.0, 3.0],  # not sorted: the binary search rule all the same
    ],
)
def test_histogram_counts_follow_the_binary_search_rule(edges: list[float]) -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate(
        [rng.normal(1, 2, 3_000), np.array(edges), [np.nan, np.inf, -np.inf, -100.0, 100.0]]
    )
    h = Histogram(edges=list(edges)).update(values)
    finite = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(edges[1:-1], dtype="float64"), finite, side="right")
    assert h.counts == np.bincount(idx, minlength=len(edges) - 1).tolist()
    assert h.missing == int((~np.isfinite(values)).sum())


def test_bottom_k_merge_keeps_the_first_row_of_a_hash() -> None:
    rng = np.random.default_rng(3)
    a = pd.DataFrame({"v": rng.normal(size=40), "_hash": rng.integers(0, 60, 40).astype("uint64")})
    b = pd.DataFrame({"v": rng.normal(size=40), "_hash": rng.integers(0, 60, 40).astype("uint64")})
    for k in (1, 10, 100):
        merged = BottomKSample(k=k, frame=a).merge(BottomKSample(k=k, frame=b)).frame
        both = pd.concat([a, b], ignore_index=True)
        expected = both.drop_duplicates(subset="_hash").nsmallest(k, "_hash")
        pd.testing.assert_frame_equal(merged, expected.reset_index(drop=True))
    full = BottomKSample(k=10, frame=a).merge(BottomKSample(k=10))
    assert full.threshold == int(full.frame["_hash"].max())
    assert BottomKSample(k=10).threshold is None


def test_moments_without_copies_inverts_merge() -> None:
    rng = np.random.default_rng(5)
    kept = rng.normal(40, 12, size=3_000)
    copies = rng.choice(kept, size=250)
    both = Moments().update(np.concatenate([kept, copies]))
    left = both.without_copies(Moments().update(copies))
    alone = Moments().update(kept)
    assert left.n == alone.n and left.min == alone.min and left.max == alone.max
    assert left.mean == pytest.approx(alone.mean, rel=1e-12)
    assert left.m2 == pytest.approx(alone.m2, rel=1e-9)
    assert left.total == pytest.approx(alone.total, rel=1e-12)
    assert both.without_copies(both).n == 0
