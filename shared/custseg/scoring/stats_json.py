"""Mergeable run statistics (:class:`~custseg.scoring.metrics.ScoreStats`) as JSON.

A fanned-out score writes one statistics document per feature bucket; the reduce step
reads them back and merges them (:meth:`ScoreStats.merge`) into the run's metrics and
profiles; its prediction statistics
(:class:`~custseg.scoring.predictions.BucketPredictions`) travel the same way in a
document of their own (:func:`dumps_predictions`). The encoding is exact: arrays and
frames travel as their bytes (numpy's raw buffer, an Arrow IPC stream; base64), floats
that JSON cannot write (NaN, infinities) as their text, dictionaries with their key
types, and only the statistics' own classes (:data:`CLASSES`) are rebuilt from a
document, so a document cannot make the reader run anything else.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from custseg.scoring import accumulators
from custseg.scoring.metrics import ScoreStats
from custseg.scoring.predictions import (
    BucketPredictions,
    HoldoutGroups,
    PredictionStats,
    RiskMeasure,
    ValueTotals,
)
from custseg.stats import BottomKSample, Counts, Histogram, Moments

CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ScoreStats,
        accumulators.SegmentTotals,
        accumulators.SegmentMoments,
        accumulators.CustomerSamples,
        accumulators.CategoryCounts,
        accumulators.FeatureHistograms,
        accumulators.OutcomeCounts,
        accumulators.LabelCounts,
        accumulators.Transitions,
        BottomKSample,
        Counts,
        Histogram,
        Moments,
        BucketPredictions,
        PredictionStats,
        RiskMeasure,
        ValueTotals,
        HoldoutGroups,
    )
}
"""The classes a statistics document may hold, by name."""

FORMAT = "custseg-score-stats/1"
PREDICTIONS_FORMAT = "custseg-prediction-stats/1"


class StatsFormatError(ValueError):
    """A statistics document that is not one this module wrote (the message says where)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.generic):
        return _encode(value.item())
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {"ndarray": _b64(data.tobytes()), "dtype": data.dtype.str, "shape": data.shape}
    if isinstance(value, pd.DataFrame):
        sink = pa.BufferOutputStream()
        table = pa.Table.from_pandas(value, preserve_index=True)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return {"frame": _b64(sink.getvalue().to_pybytes())}
    if isinstance(value, Counter):
        return {"counter": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if dataclasses.is_dataclass(value) and type(value).__name__ in CLASSES:
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"class": type(value).__name__, "fields": fields}
    raise TypeError(f"cannot encode a {type(value).__name__} in score statistics")


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "float" in value:
        return float(value["float"])
    if "ndarray" in value:
        raw = base64.b64decode(value["ndarray"])
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if "frame" in value:
        reader = pa.ipc.open_stream(base64.b64decode(value["frame"]))
        return reader.read_all().to_pandas()
    if "counter" in value:
        return Counter({_decode(k, where): _decode(v, where) for k, v in value["counter"]})
    if "dict" in value:
        return {_decode(k, where): _decode(v, where) for k, v in value["dict"]}
    if "tuple" in value:
        return tuple(_decode(v, where) for v in value["tuple"])
    if "class" in value:
        cls = CLASSES.get(str(value["class"]))
        if cls is None:
            raise StatsFormatError(f"{where}: unknown class {value['class']!r}")
        obj: Any = object.__new__(cls)  # the fields are set below, as written
        for name, field_value in value["fields"].items():
            object.__setattr__(obj, name, _decode(field_value, f"{where}.{name}"))
        return obj
    raise StatsFormatError(f"{where}: unknown value {sorted(value)[:3]}")


def dumps(stats: ScoreStats) -> str:
    """``stats`` as a JSON document."""
    return json.dumps({"format": FORMAT, "stats": _encode(stats)}, allow_nan=False)


def loads(text: str | bytes, name: str = "statistics") -> ScoreStats:
    """The :class:`ScoreStats` of a document :func:`dumps` wrote (``name`` names it in
    errors)."""
    stats = _load(text, name, FORMAT)
    if not isinstance(stats, ScoreStats):
        raise StatsFormatError(f"{name}: holds no score statistics")
    return stats


def dumps_predictions(folded: BucketPredictions) -> str:
    """A bucket's prediction statistics as a JSON document."""
    return json.dumps({"format": PREDICTIONS_FORMAT, "stats": _encode(folded)}, allow_nan=False)


def loads_predictions(text: str | bytes, name: str = "statistics") -> BucketPredictions:
    """The :class:`BucketPredictions` of a document :func:`dumps_predictions` wrote."""
    folded = _load(text, name, PREDICTIONS_FORMAT)
    if not isinstance(folded, BucketPredictions):
        raise StatsFormatError(f"{name}: holds no prediction statistics")
    return folded


def _load(text: str | bytes, name: str, form: str) -> Any:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StatsFormatError(f"{name}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != form:
        raise StatsFormatError(f"{name}: not a {form} document")
    return _decode(doc["stats"], name)
