"""The model artifact: a joblib model file plus a JSON metadata file, verified on load.

Files (under ``models/<model>/<version>/`` in the artifact bucket, names are the adapters'):

- model file: the fitted :class:`sklearn.pipeline.Pipeline` (``preprocess`` + ``cluster``)
  saved with :func:`joblib.dump` (compress=3); a model with predictions (e.g. a churn
  propensity, :mod:`custseg.predict.propensity`) saves ``{"pipeline": ..., "predictors":
  {name: fitted estimator}}`` instead, their settings and evidence under the metadata's
  ``predictions`` (by the same names). A model file holding the pipeline alone loads with
  no predictions;
- metadata JSON: see :func:`build_metadata` for the keys; ``sha256`` is the SHA-256 of the
  model file bytes, filled by :func:`dump_artifact`.

Loading unpickles code, so :func:`load_artifact` refuses (:class:`ArtifactError`) BEFORE
unpickling when: the metadata file is missing or unreadable; the metadata names another
model or version than its path (:func:`check_binding`); it carries no signature, or one
the trusted model-signing key did not make over it (:mod:`custseg.model.signing`:
:func:`verify_artifact`); the SHA-256 of the model bytes differs from the metadata; or the
library versions are incompatible. The signature covers the whole metadata, the model
file's SHA-256 among it: whoever can write the bucket but not use the signing key cannot
make a model file load. Compatibility rule
(:func:`check_libraries`): scikit-learn must have the same major.minor as at training
(pickled estimators are only supported within one minor release), numpy the same major
(numpy 2 changed its pickled internals); python, pandas and joblib are recorded but not
enforced (the pipeline pickles no pandas objects, and joblib reads older files).

Quality gates (:func:`check_gates`): silhouette >= floor (default 0.15), no segment below
the minimum share (default 2 %), every feature of the schema present in training (some
value that is not missing). Passing makes the model ``champion-eligible``, else it stays a
``candidate`` with the reasons.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import math
import platform
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from custseg.features.build import (
    MISSING_CATEGORY,
    CategoryCodes,
    Features,
    FeatureSchema,
    conform,
    is_conformed,
)
from custseg.jsonsafe import json_safe
from custseg.model.labels import LabelEdges
from custseg.model.signing import (
    SIGNATURE_FIELD,
    Signature,
    SignatureError,
    Signer,
    Verifier,
    signed_digest,
)
from custseg.stats import Histogram, Moments

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from custseg.ingest.contracts.model import Contract

# scikit-learn (with scipy) and joblib are imported where a model is (un)pickled, not with
# this module: the ingest function imports the model registry but never loads a model, and
# should not pay seconds of cold start for them.

PREDICTIONS = "predictions"
"""The metadata section of per-customer predictions fitted with the model, keyed by name:
``p_<outcome>`` (``kind: "propensity"``, :mod:`custseg.predict.propensity`) and ``clv``
(``kind: "clv"``, :mod:`custseg.predict.clv`; an entry with ``unavailable`` says why it
could not be fitted). Each reader takes its own entries only. A model without the section
scores without predictions."""

SILHOUETTE_FLOOR = 0.15
MIN_SEGMENT_SHARE = 0.02
HISTOGRAM_BINS = 10
METADATA_FORMAT = 1


class ArtifactError(Exception):
    """A model artifact that must not be loaded (missing metadata, bad hash, versions)."""


class UnsignedArtifactError(ArtifactError):
    """A model artifact whose signature is missing, unreadable or not the trusted key's."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled pipeline depends on."""
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
    }


def _parts(version: str, n: int) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:n])


def check_libraries(recorded: dict[str, Any], current: dict[str, str] | None = None) -> list[str]:
    """Reasons why a model trained with ``recorded`` libraries cannot load here (empty: ok)."""
    current = current or library_versions()
    problems = []
    for lib, n, what in (("sklearn", 2, "major.minor"), ("numpy", 1, "major")):
        want = recorded.get(lib)
        if want is None:
            problems.append(f"metadata does not record the {lib} version")
        elif _parts(want, n) != _parts(current[lib], n):
            problems.append(
                f"{lib} {want} was used for training but {current[lib]} is installed "
                f"({what} must match)"
            )
    return problems


# -- the preprocessing without scikit-learn's per-call overhead ----------------------------
#
# SegmentModel.transform recognises the preprocessing custseg.model.training builds (a fitted
# ColumnTransformer of imputers, scalers, the training module's own FunctionTransformers and
# a one-hot encoder) and computes it from the fitted parameters with the same floating-point
# operations, so the matrix is bit-for-bit the one scikit-learn returns (tested). The
# categorical block runs the fitted encoder itself, once per distinct combination of
# category values (a few dozen rows instead of one per customer), and repeats its rows.
# A pipeline of any other shape (or input it would reject, e.g. infinite numbers) goes
# through scikit-learn.

_KNOWN_FUNCS = {("custseg.model.training", "signed_log1p"), ("custseg.model.training", "clip_z")}
_TEXT_FUNCS = {("custseg.model.training", "as_object")}


@dataclass(frozen=True)
class _Block:
    """One transformer of the ColumnTransformer, as the fast path computes it."""

    columns: tuple[str, ...]
    weight: float | None
    steps: tuple[tuple[str, Any], ...] = ()  # numeric: ("impute"|"func"|"scale", params)
    encoder: Any = None  # categorical: the fitted transformer, run on distinct rows


def _func_key(func: Any) -> tuple[str, str]:
    return (str(getattr(func, "__module__", "")), str(getattr(func, "__qualname__", "")))


def _numeric_steps(trans: Any, n_cols: int) -> list[tuple[str, Any]] | None:
    """The elementwise steps of a numeric transformer (``None``: not recognised)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if type(trans) is Pipeline:
        steps: list[tuple[str, Any]] = []
        for _, step in trans.steps:
            if step is None or step == "passthrough":
                continue
            inner = _numeric_steps(step, n_cols)
            if inner is None:
                return None
            steps += inner
        return steps
    if type(trans) is SimpleImputer:
        missing = trans.missing_values
        stats = np.asarray(getattr(trans, "statistics_", None), dtype="float64")
        if (
            trans.add_indicator
            or not (isinstance(missing, float) and math.isnan(missing))
            or stats.shape != (n_cols,)
            or not np.isfinite(stats).all()
        ):
            return None
        return [("impute", stats)]
    if type(trans) is StandardScaler:
        mean = None if not trans.with_mean else np.asarray(trans.mean_, dtype="float64")
        scale = None if not trans.with_std else np.asarray(trans.scale_, dtype="float64")
        return [("scale", (mean, scale))]
    if type(trans) is FunctionTransformer:
        if trans.validate or trans.kw_args or _func_key(trans.func) not in _KNOWN_FUNCS:
            return None
        return [("func", trans.func)]
    return None


def _is_text_encoder(trans: Any) -> bool:
    """A categorical transformer the fast path runs on distinct rows: the training
    module's ``as_object`` step and a dense one-hot encoder (row-wise, tested)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    steps = [s for _, s in trans.steps] if type(trans) is Pipeline else [trans]
    if not steps or type(steps[-1]) is not OneHotEncoder or steps[-1].sparse_output:
        return False
    for step in steps[:-1]:
        if not (
            type(step) is FunctionTransformer
            and not step.validate
            and not step.kw_args
            and _func_key(step.func) in _TEXT_FUNCS
        ):
            return False
    return True


def _plan(pipeline: Any, schema: FeatureSchema) -> list[_Block] | None:
    """How to compute ``pipeline[:-1].transform`` without scikit-learn (``None``: not a
    pipeline shape the fast path knows)."""
    from sklearn.compose import ColumnTransformer

    try:
        pre = pipeline[:-1]
        if len(pre) != 1 or type(pre[0]) is not ColumnTransformer:
            return None
        ct = pre[0]
        transformers = ct.transformers_
        if ct.sparse_output_ or not hasattr(ct, "feature_names_in_"):
            return None
        for est in (pipeline, pre, ct):
            if (getattr(est, "_sklearn_output_config", None) or {}).get("transform") not in (
                None,
                "default",
            ):
                return None
        numeric, categorical = set(schema.numeric), set(schema.categorical)
        weights = ct.transformer_weights or {}
        blocks: list[_Block] = []
        for name, trans, columns in transformers:
            if isinstance(trans, str) and trans == "drop":
                continue
            cols = [columns] if isinstance(columns, str) else list(columns)
            if not cols:
                continue
            if not all(isinstance(c, str) for c in cols):
                return None
            weight = weights.get(name)
            if isinstance(trans, str):
                return None
            if set(cols) <= numeric:
                steps = _numeric_steps(trans, len(cols))
                if steps is None:
                    return None
                blocks.append(_Block(tuple(cols), weight, steps=tuple(steps)))
            elif set(cols) <= categorical and _is_text_encoder(trans):
                blocks.append(_Block(tuple(cols), weight, encoder=trans))
            else:
                return None
        return blocks
    except Exception:  # any surprise in the fitted objects: use scikit-learn
        return None


def _numeric_block(frame: pd.DataFrame, block: _Block) -> np.ndarray | None:
    # (n, p), one contiguous column per feature (elementwise steps: the layout does not
    # change a value)
    x = np.empty((len(block.columns), len(frame)), dtype="float64")
    for j, name in enumerate(block.columns):
        x[j] = frame[name].to_numpy(dtype="float64", na_value=np.nan)
    x = x.T
    for kind, params in block.steps:
        if kind in ("impute", "scale"):  # scikit-learn validates these steps' input
            missing = ~np.isfinite(x)
            if missing.any() and np.isinf(x[missing]).any():  # it rejects infinities:
                return None  # let scikit-learn say so
        if kind == "impute":
            if missing.any():
                x[missing] = np.broadcast_to(params, x.shape)[missing]
        elif kind == "func":
            x = np.asarray(params(x), dtype="float64")
        else:
            mean, scale = params
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
    if block.weight is not None:
        x = x * block.weight
    return x


def _category_block(
    frame: pd.DataFrame, block: _Block, codes: Mapping[str, CategoryCodes]
) -> tuple[np.ndarray, np.ndarray]:
    """(the block's rows for each distinct combination of values, which row each customer
    has): the block is ``rows[which]``."""
    parts = [codes[c] if c in codes else CategoryCodes.from_values(frame[c]) for c in block.columns]
    n = len(frame)
    sizes = [max(len(p.values), 1) for p in parts]
    combined = np.zeros(n, dtype=np.int64)
    total = 1
    for part, size in zip(parts, sizes, strict=True):
        combined = combined * size + part.codes
        total *= size
    if total <= max(4 * n, 1 << 16):
        present = np.flatnonzero(np.bincount(combined, minlength=total))
        lookup = np.zeros(total, dtype=np.intp)
        lookup[present] = np.arange(present.size)
        inverse = lookup[combined]
    else:
        present, inverse = np.unique(combined, return_inverse=True)
    columns: dict[str, Any] = {}
    rest = present
    for name, part, size in reversed(list(zip(block.columns, parts, sizes, strict=True))):
        words = np.asarray(part.values, dtype=object)
        columns[name] = pd.array(words[rest % size], dtype="string")
        rest = rest // size
    distinct = pd.DataFrame({c: columns[c] for c in block.columns})
    out = block.encoder.transform(distinct)
    if hasattr(out, "toarray"):
        out = out.toarray()
    out = np.asarray(out, dtype="float64")
    if block.weight is not None:
        out = out * block.weight
    return out, inverse


_UNPLANNED = object()
_ROWS = 8_192  # rows per block of SegmentModel.distances' sums of squares
_BLAS: list[Any] = []


def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded (found once), or None."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController().select(user_api="blas"))
        except Exception:  # no threadpoolctl: leave BLAS as it is
            _BLAS.append(None)
    return _BLAS[0]


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """A context limiting BLAS to one thread: the thin products here (customers x a few
    centres) take 3x the CPU on two threads (the helpers spin) and are not faster; each
    row's result is the same either way (BLAS splits rows, not sums, between threads)."""
    blas = _blas_controller()
    if blas is None:
        return contextlib.nullcontext()
    return blas.limit(limits=1)  # type: ignore[no-any-return]


def limit_blas_threads(threads: int = 1) -> bool:
    """Limit BLAS (OpenBLAS, MKL) to ``threads`` threads for the rest of the process, for a
    function's init phase; True when a BLAS library was found and limited.

    The scoring function runs its own threads (the assignments writer, the uploads, the
    read-ahead) on a Lambda's few vCPUs, and its matrix products are small (a chunk times
    a few centres, a 5,000-customer silhouette): BLAS helper threads do not make them
    faster, and they busy-wait between products, taking CPU from the threads that do the
    work (measured on the 1M benchmark: 0.4-0.7 s less CPU for the flow with one thread).
    Results are identical (BLAS splits rows between threads, never a row's sums).
    """
    blas = _blas_controller()
    if blas is None or not blas.lib_controllers:
        return False
    blas.limit(limits=threads)  # not used as a context: stays for the process
    return True


@dataclass
class SegmentModel:
    """A fitted segmentation pipeline with its metadata."""

    pipeline: Pipeline
    metadata: dict[str, Any]
    predictors: dict[str, Any] = field(default_factory=dict)  # fitted, by metadata name
    _fast: Any = field(default=_UNPLANNED, init=False, repr=False, compare=False)

    def _fast_plan(self) -> list[_Block] | None:
        if self._fast is _UNPLANNED:
            self._fast = _plan(self.pipeline, self.schema)
        return self._fast  # type: ignore[no-any-return]

    def _fast_transform(
        self, frame: pd.DataFrame, codes: Mapping[str, CategoryCodes]
    ) -> np.ndarray | None:
        blocks = self._fast_plan()
        if blocks is None or not all(c in frame.columns for b in blocks for c in b.columns):
            return None
        if any(len(codes[c]) != len(frame) for c in codes):
            codes = {}
        parts: list[np.ndarray | tuple[np.ndarray, np.ndarray]] = []
        for block in blocks:
            if block.encoder is None:
                part = _numeric_block(frame, block)
                if part is None:
                    return None
                parts.append(part)
            else:
                parts.append(_category_block(frame, block, codes))
        n = len(frame)
        width = sum(p.shape[1] if isinstance(p, np.ndarray) else p[0].shape[1] for p in parts)
        out = np.empty((n, width), dtype="float64")  # C order, as np.hstack gives
        at = 0
        for computed in parts:
            if isinstance(computed, np.ndarray):  # column-major: copied by blocks of rows,
                w = computed.shape[1]  # which keeps both sides of the transpose in cache
                for start in range(0, n, _ROWS):
                    out[start : start + _ROWS, at : at + w] = computed[start : start + _ROWS]
                at += w
                continue
            rows, which = computed  # by blocks of customers: no (n, w) temporary
            w = rows.shape[1]
            for start in range(0, n, _ROWS):
                out[start : start + _ROWS, at : at + w] = rows[which[start : start + _ROWS]]
            at += w
        return out

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def k(self) -> int:
        return int(self.metadata["k"])

    @property
    def schema(self) -> FeatureSchema:
        return FeatureSchema.from_dict(self.metadata["feature_schema"])

    @property
    def label_edges(self) -> LabelEdges:
        return LabelEdges.from_dict(self.metadata["label_edges"])

    def predict_extra(self, features: Features) -> dict[str, np.ndarray]:
        """The model's propensities (``p_<outcome>``, e.g. ``p_churn``) for ``features``, by
        column name, in row order; empty for a model without any. A run's prediction
        columns (these and the customer-value ones) come from
        :func:`custseg.scoring.predictions.predict_chunk`."""
        if not self.predictors:
            return {}
        from custseg.predict.propensity import predict_propensities

        return predict_propensities(self.metadata, self.predictors, features)

    def prediction(self, name: str) -> dict[str, Any] | None:
        """The fitted prediction ``name`` of :data:`PREDICTIONS` (``None``: not fitted)."""
        doc = (self.metadata.get(PREDICTIONS) or {}).get(name)
        return dict(doc) if isinstance(doc, Mapping) and "unavailable" not in doc else None

    def segment_names(self) -> dict[int, str]:
        """Segment id -> persona name."""
        return {int(s["id"]): str(s["name"]) for s in self.metadata.get("segments", [])}

    def transform(
        self, frame: pd.DataFrame, codes: Mapping[str, CategoryCodes] | None = None
    ) -> np.ndarray:
        """The preprocessed matrix (n, d) of a feature frame (conformed to the schema).

        Equal, bit for bit, to ``pipeline[:-1].transform`` of the conformed frame; for the
        pipelines :mod:`custseg.model.training` builds it is computed from the fitted parameters
        (see the notes above :class:`SegmentModel`), else by scikit-learn. ``codes``
        (e.g. :attr:`Features.codes`) spares re-coding the category columns.
        """
        schema = self.schema
        if not is_conformed(frame, schema):
            frame, codes = conform(frame, schema), None
        if len(frame):
            x = self._fast_transform(frame, codes or {})
            if x is not None:
                return x
        return np.asarray(self.pipeline[:-1].transform(frame), dtype="float64")

    def distances(
        self, frame: pd.DataFrame, codes: Mapping[str, CategoryCodes] | None = None
    ) -> np.ndarray:
        """Euclidean distances (n, k) to every centroid in the preprocessed space."""
        centers = np.asarray(self.pipeline[-1].cluster_centers_, dtype="float64")
        x = self.transform(frame, codes)
        # |x|^2 - 2 x.c + |c|^2, the same operations in the same order as the plain
        # expression (2 x.c as x.(2c): doubling is exact), with fewer temporary arrays
        with _one_blas_thread():
            products = x @ (2.0 * centers).T
        # row sums of squares by blocks of rows (each row's sum is the same; the (n, d)
        # temporary of x * x would be new memory for every chunk)
        norms = np.empty(len(x), dtype="float64")
        squares = np.empty((min(len(x), _ROWS), x.shape[1]), dtype="float64")
        for start in range(0, len(x), _ROWS):
            part = x[start : start + _ROWS]
            np.multiply(part, part, out=squares[: len(part)]).sum(
                axis=1, out=norms[start : start + len(part)]
            )
        sq = norms[:, None] - products
        sq += (centers * centers).sum(axis=1)
        np.maximum(sq, 0.0, out=sq)
        return np.sqrt(sq, out=sq)

    def assign(self, features: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment id (intp), distance, confidence) per customer as numpy arrays, in the
        frame's order: what :meth:`predict` returns, without the frame around it."""
        frame = features.frame
        if len(frame) == 0:
            empty = np.empty(0, dtype="float64")
            return np.empty(0, dtype=np.intp), empty, empty.copy()
        d = self.distances(frame, features.codes)
        rows = np.arange(len(d))
        if d.shape[1] > 1 and not np.isnan(d).any():
            # the nearest centre (first on ties, like a stable argsort) and the second
            # smallest distance, without sorting every row
            seg = np.argmin(d, axis=1)
            d1 = d[rows, seg]
            if d.shape[1] == 2:
                d2 = np.maximum(d[:, 0], d[:, 1])
            else:
                d2 = np.partition(d, 1, axis=1)[:, 1]
        else:
            order = np.argsort(d, axis=1, kind="stable")
            seg = order[:, 0]
            d1 = d[rows, seg]
            d2 = d[rows, order[:, 1]] if d.shape[1] > 1 else d1
        with np.errstate(divide="ignore", invalid="ignore"):
            conf = np.where(d2 > 0, 1.0 - d1 / d2, 0.0)
        return seg, d1.astype("float64"), np.clip(conf, 0.0, 1.0).astype("float64")

    def predict(self, features: Features) -> pd.DataFrame:
        """Segment per customer.

        Returns a frame indexed by ``customer_id`` with ``segment_id`` (int16),
        ``segment_name`` (string), ``distance`` (float64, to the own centroid) and
        ``confidence`` (float64 in [0, 1]: ``1 - d1 / d2``, the margin to the second
        nearest centroid; 0 when equidistant).
        """
        frame = features.frame
        if len(frame) == 0:
            return pd.DataFrame(
                {
                    "segment_id": pd.Series(dtype="int16"),
                    "segment_name": pd.Series(dtype="string"),
                    "distance": pd.Series(dtype="float64"),
                    "confidence": pd.Series(dtype="float64"),
                },
                index=frame.index,
            )
        seg, d1, conf = self.assign(features)
        names = self.segment_names()
        # One name per segment, then a vectorised take (no Python loop per customer).
        k = int(self.pipeline[-1].cluster_centers_.shape[0])
        words = pd.array([names.get(j, f"Segment {j}") for j in range(k)], dtype="string")
        return pd.DataFrame(
            {
                "segment_id": seg.astype("int16"),
                "segment_name": words.take(seg),
                "distance": d1,
                "confidence": conf,
            },
            index=frame.index,
        )


def check_gates(
    metadata: dict,
    *,
    silhouette_floor: float = SILHOUETTE_FLOOR,
    min_share: float = MIN_SEGMENT_SHARE,
) -> tuple[bool, list[str]]:
    """Promotion gates: (passed, reasons it failed). See the module docs."""
    reasons: list[str] = []
    quality = metadata.get("quality", {})
    sil = quality.get("silhouette")
    if sil is None or not math.isfinite(float(sil)):
        reasons.append("silhouette unknown")
    elif float(sil) < silhouette_floor:
        reasons.append(f"silhouette {float(sil):.3f} below the floor {silhouette_floor:.2f}")
    smallest = quality.get("min_share")
    if smallest is None:
        reasons.append("segment shares unknown")
    elif float(smallest) < min_share:
        reasons.append(f"smallest segment holds {float(smallest):.1%} (< {min_share:.0%})")
    schema = metadata.get("feature_schema", {})
    training = metadata.get("training", {})
    moments = training.get("moments", {})
    shares = training.get("category_shares", {})
    absent = [c for c in schema.get("numeric", []) if not moments.get(c, {}).get("count")]
    absent += [
        c
        for c in schema.get("categorical", [])
        if not [v for v in shares.get(c, {}) if v != MISSING_CATEGORY]
    ]
    if not schema.get("numeric") and not schema.get("categorical"):
        reasons.append("the feature schema is empty")
    if absent:
        reasons.append(f"features without any value in training: {', '.join(absent)}")
    return not reasons, reasons


def build_metadata(
    *,
    features: Features,
    contract: Contract,
    model_name: str,
    version: str,
    created_at: dt.datetime,
    k: int,
    k_evidence: list[dict[str, Any]],
    k_rule: str,
    k_choice: str = "",
    labels: np.ndarray,
    quality: dict[str, float],
    mean_distance: float,
    label_edges: LabelEdges,
    segments: list[dict[str, Any]],
    source: dict[str, Any],
    preprocessing: dict[str, Any],
    predictions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata dict of a freshly trained model (``sha256`` is None until dumped).

    ``predictions``: per prediction name (e.g. ``p_churn``) what was fitted and its
    evidence (:mod:`custseg.predict`); the key is left out when there is none."""
    frame = features.frame
    schema = features.schema()
    moments = {
        c: Moments().update(frame[c].to_numpy(dtype="float64", na_value=np.nan))
        for c in schema.numeric
    }
    histograms = {
        c: Histogram.from_quantiles(
            frame[c].to_numpy(dtype="float64", na_value=np.nan), bins=HISTOGRAM_BINS
        )
        for c in schema.numeric
    }
    category_shares = {
        c: {
            str(v): float(s)
            for v, s in frame[c].astype("string").value_counts(normalize=True).items()
        }
        for c in schema.categorical
    }
    shares = np.bincount(labels, minlength=k) / max(len(labels), 1)
    metadata: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "model_name": model_name,
        "version": version,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "sha256": None,
        "libraries": library_versions(),
        "library_rule": "sklearn major.minor and numpy major must match; others recorded",
        "contract_kind": contract.kind,
        "contract_grain": contract.grain,
        "contract_version": contract.version,
        "feature_schema": schema.to_dict(),
        "preprocessing": preprocessing,
        "training": {
            "rows": len(frame),
            "as_of": features.as_of.isoformat(),
            "value_measure": None if features.value is None else str(features.value.name),
            "moments": {c: m.to_dict() for c, m in moments.items()},
            "category_shares": category_shares,
            "baseline_histograms": {c: h.to_dict() for c, h in histograms.items()},
            "segment_shares": {str(i): float(s) for i, s in enumerate(shares)},
            "mean_distance": mean_distance,
            "source": source,
        },
        "k": k,
        "k_evidence": k_evidence,
        "k_rule": k_rule,
        "k_choice": k_choice,
        "label_edges": label_edges.to_dict(),
        "labels_unavailable": dict(label_edges.unavailable),
        "segments": segments,
        "quality": quality,
    }
    if predictions:
        metadata[PREDICTIONS] = predictions
    metadata = json_safe(metadata)
    passed, reasons = check_gates(metadata)
    metadata["gates"] = {
        "passed": passed,
        "reasons": reasons,
        "silhouette_floor": SILHOUETTE_FLOOR,
        "min_share": MIN_SEGMENT_SHARE,
    }
    metadata["status"] = "champion-eligible" if passed else "candidate"
    return metadata


def dump_artifact(model: SegmentModel, signer: Signer | None = None) -> tuple[bytes, bytes]:
    """(model file bytes, metadata JSON bytes); fills ``model.metadata["sha256"]`` and,
    given a ``signer``, its ``signature`` (over the metadata as a reader parses it). Without
    a signer the artifact is unsigned: :func:`load_artifact` refuses it."""
    import joblib

    buf = io.BytesIO()
    payload: Any = model.pipeline
    if model.predictors:
        payload = {"pipeline": model.pipeline, "predictors": model.predictors}
    joblib.dump(payload, buf, compress=3)
    model_bytes = buf.getvalue()
    model.metadata["sha256"] = hashlib.sha256(model_bytes).hexdigest()
    model.metadata.pop(SIGNATURE_FIELD, None)
    metadata_bytes = json.dumps(json_safe(model.metadata), indent=2, allow_nan=False).encode()
    if signer is not None:
        metadata_bytes = sign_metadata(metadata_bytes, signer)
        model.metadata[SIGNATURE_FIELD] = json.loads(metadata_bytes)[SIGNATURE_FIELD]
    return model_bytes, metadata_bytes


def sign_metadata(metadata_bytes: bytes, signer: Signer) -> bytes:
    """A metadata file signed by ``signer`` (over its content as a reader parses it; a
    signature it had is replaced)."""
    stored = json.loads(metadata_bytes)
    stored.pop(SIGNATURE_FIELD, None)
    stored[SIGNATURE_FIELD] = signer.sign(signed_digest(stored)).to_dict()
    return json.dumps(stored, indent=2, allow_nan=False).encode("utf-8")


def read_metadata(metadata_bytes: bytes | None) -> dict[str, Any]:
    """Parse a metadata file; :class:`ArtifactError` when missing or not a JSON object."""
    if metadata_bytes is None:
        raise ArtifactError(
            "model metadata file is missing: refusing to load a model that cannot be verified"
        )
    try:
        metadata = json.loads(metadata_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"model metadata is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ArtifactError("model metadata is not a JSON object")
    for key in ("model_name", "version", "sha256", "libraries", "feature_schema", "k"):
        if key not in metadata or metadata[key] is None:
            raise ArtifactError(f"model metadata lacks {key!r}")
    return metadata


def check_binding(metadata: Mapping[str, Any], model_name: str, version: str) -> None:
    """Refuse metadata that names another model or version than the path it was read
    from (a signed artifact copied to another version's or model's place)."""
    for field_name, expected in (("model_name", model_name), ("version", version)):
        found = str(metadata.get(field_name))
        if found != expected:
            raise ArtifactError(
                f"model metadata at models/{model_name}/{version}/ says {field_name} "
                f"{found!r}: an artifact copied from another place is refused"
            )


def check_signature(metadata: Mapping[str, Any], verifier: Verifier) -> None:
    """Refuse metadata without a signature by the trusted key over its current content."""
    where = f"model {metadata.get('model_name')} {metadata.get('version')}"
    raw = metadata.get(SIGNATURE_FIELD)
    if raw is None:
        raise UnsignedArtifactError(
            f"{where} is not signed: refusing to load a model the training function did not sign"
        )
    try:
        signature = Signature.from_dict(raw)
    except SignatureError as exc:
        raise UnsignedArtifactError(f"{where}: {exc}") from exc
    if not verifier.verify(signed_digest(metadata), signature):
        raise UnsignedArtifactError(
            f"{where}: its signature (by key {signature.key_id}) is not valid for the "
            f"model-signing key {verifier.key_id}: the metadata was changed or signed by "
            "another key"
        )


def verify_artifact(
    model_bytes: bytes,
    metadata_bytes: bytes | None,
    *,
    verifier: Verifier,
    model_name: str,
    version: str,
) -> dict[str, Any]:
    """The metadata of ``models/<model_name>/<version>/``, once it is bound to that path,
    signed by the trusted key and matches the model file. Raises :class:`ArtifactError`."""
    metadata = read_metadata(metadata_bytes)
    check_binding(metadata, model_name, version)
    check_signature(metadata, verifier)
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != str(metadata["sha256"]).lower():
        raise ArtifactError(
            f"model file SHA-256 {digest[:12]}... does not match the metadata "
            f"({str(metadata['sha256'])[:12]}...) of version {metadata['version']}: "
            "the file was changed or belongs to another version"
        )
    return metadata


def load_artifact(
    model_bytes: bytes,
    metadata_bytes: bytes | None,
    *,
    verifier: Verifier,
    model_name: str,
    version: str,
) -> SegmentModel:
    """Verify (:func:`verify_artifact`, library versions), then unpickle. Raises
    :class:`ArtifactError` (see module docs)."""
    metadata = verify_artifact(
        model_bytes, metadata_bytes, verifier=verifier, model_name=model_name, version=version
    )
    problems = check_libraries(metadata["libraries"])
    if problems:
        raise ArtifactError(
            f"model {metadata['version']} is incompatible with this runtime: " + "; ".join(problems)
        )
    import joblib
    from sklearn.pipeline import Pipeline

    try:
        payload = joblib.load(io.BytesIO(model_bytes))
    except Exception as exc:  # corrupt file that still matched its hash
        raise ArtifactError(f"model file cannot be read: {exc}") from exc
    pipeline, predictors = _unpack(payload)
    if not isinstance(pipeline, Pipeline) or not hasattr(pipeline[-1], "cluster_centers_"):
        raise ArtifactError("model file does not hold a fitted clustering pipeline")
    if int(pipeline[-1].cluster_centers_.shape[0]) != int(metadata["k"]):
        raise ArtifactError("model file and metadata disagree on k")
    return SegmentModel(pipeline=pipeline, metadata=metadata, predictors=predictors)


def _unpack(payload: Any) -> tuple[Any, dict[str, Any]]:
    """(pipeline, predictors) of a model file: the pipeline alone (a model without
    predictions), or a dict holding both."""
    if isinstance(payload, dict):
        predictors = payload.get("predictors") or {}
        if not isinstance(predictors, dict):
            raise ArtifactError("model file holds predictions that are not a mapping")
        return payload.get("pipeline"), predictors
    return payload, {}


class ModelCache:
    """A small in-process cache of loaded models keyed by version (for warm functions)."""

    def __init__(self, max_items: int = 4) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, SegmentModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: str) -> SegmentModel | None:
        with self._lock:
            model = self._items.get(version)
            if model is not None:
                self._items.move_to_end(version)
            return model

    def put(self, model: SegmentModel) -> SegmentModel:
        with self._lock:
            self._items[model.version] = model
            self._items.move_to_end(model.version)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return model

    def get_or_load(
        self,
        model_name: str,
        version: str,
        fetch: Callable[[], tuple[bytes, bytes | None]],
        verifier: Verifier,
    ) -> SegmentModel:
        """The cached model of ``version``, else :func:`load_artifact` of ``fetch()``
        (verified against ``model_name`` and ``version``, then cached)."""
        cached = self.get(version)
        if cached is not None:
            return cached
        model_bytes, metadata_bytes = fetch()
        model = load_artifact(
            model_bytes, metadata_bytes, verifier=verifier, model_name=model_name, version=version
        )
        return self.put(model)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


MODEL_CACHE = ModelCache()
"""The process-wide cache (a warm Lambda keeps its models here)."""
