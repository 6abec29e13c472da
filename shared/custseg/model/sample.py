"""The customers a model is fitted on: every one, or a bounded, reproducible sample.

Fitting (k selection, k-means, quality, personas) on more than a few hundred thousand
customers buys no better segments and costs memory and minutes; scoring still covers
everyone. The sample is the ``max_customers`` customers whose stable hash of their id is
smallest (:func:`custseg.stats.stable_hash`): the same customers whatever the row order,
part split or process, and a dataset that grows keeps most of its sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from custseg.features.build import Features
from custseg.stats import stable_hash

DEFAULT_MAX_CUSTOMERS = 500_000


@dataclass(frozen=True)
class SampleInfo:
    """What the model was fitted on (recorded in its metadata)."""

    customers: int  # in the data
    fitted_on: int  # in the sample
    method: str = "all customers"

    def to_dict(self) -> dict[str, Any]:
        return {"customers": self.customers, "fitted_on": self.fitted_on, "method": self.method}


def sample_customers(
    features: Features, max_customers: int | None = DEFAULT_MAX_CUSTOMERS
) -> tuple[Features, SampleInfo]:
    """``features`` of at most ``max_customers`` customers (all when None or fewer),
    chosen by the smallest stable hashes of their ids; rows keep their order."""
    n = len(features.frame)
    if max_customers is None or n <= max_customers:
        return features, SampleInfo(n, n)
    if max_customers < 3:
        raise ValueError(f"max_customers {max_customers}: a sample needs 3 customers or more")
    hashes = stable_hash(features.frame.index.to_series())
    keep = np.sort(np.argpartition(hashes, max_customers - 1)[:max_customers])
    ids = features.frame.index[keep]
    sampled = replace(
        features,
        frame=features.frame.iloc[keep],
        value=features.value.loc[ids] if features.value is not None else None,
        extras=features.extras.reindex(ids),
        codes={name: codes.take(keep) for name, codes in features.codes.items()},
        history=features.history.iloc[keep] if features.history is not None else None,
    )
    method = f"the {max_customers:,} customers with the smallest hashes of their id"
    return sampled, SampleInfo(n, max_customers, method)
