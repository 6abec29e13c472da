"""Plain, strict JSON from what the core computes (numpy scalars, dates, NaN...)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars and arrays unwrapped, dates as ISO text,
    paths as text, and non-finite floats (NaN, ±inf) and ``pd.NA`` as None, so that
    ``json.dumps(..., allow_nan=False)`` always succeeds."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, PurePath):
        return str(obj)
    if obj is pd.NA:
        return None
    return obj
