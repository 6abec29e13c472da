"""The cleaning statistics of a whole upload from the statistics of its ranges.

Cleaning imputes missing values (median, mode) and clips outliers (quantile or IQR
bounds) with statistics of the whole file (:func:`custseg.ingest.cleaning.finalise_stats`).
A range cleaned with its own statistics would clip at other bounds than the whole file,
so the fanned-out ingest reads every range twice: the profile step keeps each range's
statistics before they are finalised (missing counts, moments, category counts and the
bounded row sample keyed by a hash of the upload's row numbers), :func:`merge` folds
them into the whole upload's, which are exactly those of one pass over the file (the
sample of the union is the union's smallest hashes), and the ingest step cleans each
range with them.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.ingest.cleaning import SAMPLE_K, ColumnStats, RowSample, finalise_stats
from custseg.ingest.contracts import Contract
from custseg.stats import Counts, Moments

KEY_COLUMN = "_key"


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def profile_doc(stats: dict[str, ColumnStats]) -> dict[str, Any]:
    """A range's statistics (before they are finalised) as JSON."""
    return {
        name: {
            "missing": st.missing,
            "moments": st.moments.to_dict(),
            "counts": dict(st.counts.counts),
        }
        for name, st in stats.items()
    }


def sample_bytes(sample: RowSample) -> bytes:
    """A range's row sample as Parquet (the hashed row keys and the numeric values)."""
    columns = {KEY_COLUMN: pa.array(sample.keys, type=pa.uint64())}
    columns |= {name: pa.array(values, type=pa.float64()) for name, values in sample.values.items()}
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def sample_from_bytes(data: bytes) -> RowSample:
    table = pq.read_table(pa.BufferReader(data))
    keys = table.column(KEY_COLUMN).to_numpy().astype(np.uint64)
    values = {
        name: table.column(name).to_numpy(zero_copy_only=False).astype("float64")
        for name in table.column_names
        if name != KEY_COLUMN
    }
    return RowSample(k=SAMPLE_K, keys=keys, values=values)


def _column_stats(name: str, doc: dict[str, Any], contract: Contract) -> ColumnStats:
    return ColumnStats(
        name=name,
        spec=contract.column(name),
        moments=Moments.from_dict(doc["moments"]),
        counts=Counts(counts=Counter({str(k): int(v) for k, v in doc["counts"].items()})),
        missing=int(doc["missing"]),
    )


def merge(
    profiles: Iterable[tuple[dict[str, Any], RowSample]], contract: Contract
) -> dict[str, Any]:
    """The finalised cleaning statistics of the whole upload (as JSON) from its ranges'
    profiles, in range order."""
    merged: dict[str, ColumnStats] = {}
    sample = RowSample(k=SAMPLE_K)
    for doc, part in profiles:
        for name, column in doc.items():
            st = _column_stats(name, column, contract)
            if name in merged:
                old = merged[name]
                st.moments = old.moments.merge(st.moments)
                st.counts = old.counts.merge(st.counts)
                st.missing += old.missing
            merged[name] = st
        sample = sample.merge(part)
    finalise_stats(merged, sample)
    return {
        name: {
            "missing": st.missing,
            "moments": st.moments.to_dict(),
            "fill": st.fill,
            "lower": _number(st.lower),
            "upper": _number(st.upper),
        }
        for name, st in merged.items()
    }


def cleaning(doc: dict[str, Any], contract: Contract) -> dict[str, ColumnStats]:
    """The finalised statistics :func:`merge` wrote, for
    :class:`custseg.ingest.pipeline.RangeIngest`."""
    out = {}
    for name, column in doc.items():
        st = _column_stats(name, {**column, "counts": {}}, contract)
        st.fill = column["fill"]
        st.lower = column["lower"]
        st.upper = column["upper"]
        out[name] = st
    return out
