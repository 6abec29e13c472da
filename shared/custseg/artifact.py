"""The model artifact: a joblib model file plus a JSON metadata file, verified on load.

Files (under ``models/<model>/<version>/`` in the artifact bucket, names are the adapters'):

- model file: the fitted :class:`sklearn.pipeline.Pipeline` (``preprocess`` + ``cluster``)
  saved with :func:`joblib.dump` (compress=3);
- metadata JSON: see :func:`build_metadata` for the keys; ``sha256`` is the SHA-256 of the
  model file bytes, filled by :func:`dump_artifact`.

Loading unpickles code, so :func:`load_artifact` refuses (:class:`ArtifactError`) BEFORE
unpickling when: the metadata file is missing or unreadable; the SHA-256 of the model bytes
differs from the metadata; or the library versions are incompatible. Compatibility rule
(:func:`check_libraries`): scikit-learn must have the same major.minor as at training
(pickled estimators are only supported within one minor release), numpy the same major
(numpy 2 changed its pickled internals); python, pandas and joblib are recorded but not
enforced (the pipeline pickles no pandas objects, joblib reads older files, and the model
moves between the 3.11 development machines and the 3.12 Lambda runtime).

Quality gates (:func:`check_gates`): silhouette >= floor (default 0.15), no segment below
the minimum share (default 2 %), every feature of the schema present in training (some
value that is not missing). Passing makes the model ``champion-eligible``, else it stays a
``candidate`` with the reasons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import platform
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from custseg.features import MISSING_CATEGORY, Features, FeatureSchema, conform, is_conformed
from custseg.jsonsafe import json_safe
from custseg.labels import LabelEdges
from custseg.stats import Histogram, Moments

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from custseg.contracts.model import Contract

# scikit-learn (with scipy) and joblib are imported where a model is (un)pickled, not with
# this module: the ingest function imports the model registry but never loads a model, and
# should not pay seconds of cold start for them.

SILHOUETTE_FLOOR = 0.15
MIN_SEGMENT_SHARE = 0.02
HISTOGRAM_BINS = 10
METADATA_FORMAT = 1


class ArtifactError(Exception):
    """A model artifact that must not be loaded (missing metadata, bad hash, versions)."""


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


@dataclass
class SegmentModel:
    """A fitted segmentation pipeline with its metadata."""

    pipeline: Pipeline
    metadata: dict[str, Any]

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

    def segment_names(self) -> dict[int, str]:
        """Segment id -> persona name."""
        return {int(s["id"]): str(s["name"]) for s in self.metadata.get("segments", [])}

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The preprocessed matrix (n, d) of a feature frame (conformed to the schema)."""
        schema = self.schema
        x = self.pipeline[:-1].transform(
            frame if is_conformed(frame, schema) else conform(frame, schema)
        )
        return np.asarray(x, dtype="float64")

    def distances(self, frame: pd.DataFrame) -> np.ndarray:
        """Euclidean distances (n, k) to every centroid in the preprocessed space."""
        centers = np.asarray(self.pipeline[-1].cluster_centers_, dtype="float64")
        x = self.transform(frame)
        sq = (x * x).sum(axis=1)[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(axis=1)
        return np.sqrt(np.maximum(sq, 0.0))

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
        d = self.distances(frame)
        order = np.argsort(d, axis=1, kind="stable")
        seg = order[:, 0]
        rows = np.arange(len(d))
        d1 = d[rows, seg]
        d2 = d[rows, order[:, 1]] if d.shape[1] > 1 else d1
        with np.errstate(divide="ignore", invalid="ignore"):
            conf = np.where(d2 > 0, 1.0 - d1 / d2, 0.0)
        names = self.segment_names()
        # One name per segment, then a vectorised take (no Python loop per customer).
        words = pd.array([names.get(j, f"Segment {j}") for j in range(d.shape[1])], dtype="string")
        return pd.DataFrame(
            {
                "segment_id": seg.astype("int16"),
                "segment_name": words.take(seg),
                "distance": d1.astype("float64"),
                "confidence": np.clip(conf, 0.0, 1.0).astype("float64"),
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
    labels: np.ndarray,
    quality: dict[str, float],
    mean_distance: float,
    label_edges: LabelEdges,
    segments: list[dict[str, Any]],
    source: dict[str, Any],
    preprocessing: dict[str, Any],
) -> dict[str, Any]:
    """The metadata dict of a freshly trained model (``sha256`` is None until dumped)."""
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
        "label_edges": label_edges.to_dict(),
        "labels_unavailable": dict(label_edges.unavailable),
        "segments": segments,
        "quality": quality,
    }
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


def dump_artifact(model: SegmentModel) -> tuple[bytes, bytes]:
    """(model file bytes, metadata JSON bytes); fills ``model.metadata["sha256"]``."""
    import joblib

    buf = io.BytesIO()
    joblib.dump(model.pipeline, buf, compress=3)
    model_bytes = buf.getvalue()
    model.metadata["sha256"] = hashlib.sha256(model_bytes).hexdigest()
    text = json.dumps(json_safe(model.metadata), indent=2, allow_nan=False)
    return model_bytes, text.encode("utf-8")


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
    for key in ("version", "sha256", "libraries", "feature_schema", "k"):
        if key not in metadata or metadata[key] is None:
            raise ArtifactError(f"model metadata lacks {key!r}")
    return metadata


def load_artifact(model_bytes: bytes, metadata_bytes: bytes | None) -> SegmentModel:
    """Verify, then unpickle. Raises :class:`ArtifactError` (see module docs)."""
    metadata = read_metadata(metadata_bytes)
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != str(metadata["sha256"]).lower():
        raise ArtifactError(
            f"model file SHA-256 {digest[:12]}... does not match the metadata "
            f"({str(metadata['sha256'])[:12]}...) of version {metadata['version']}: "
            "the file was changed or belongs to another version"
        )
    problems = check_libraries(metadata["libraries"])
    if problems:
        raise ArtifactError(
            f"model {metadata['version']} is incompatible with this runtime: " + "; ".join(problems)
        )
    import joblib
    from sklearn.pipeline import Pipeline

    try:
        pipeline = joblib.load(io.BytesIO(model_bytes))
    except Exception as exc:  # corrupt file that still matched its hash
        raise ArtifactError(f"model file cannot be read: {exc}") from exc
    if not isinstance(pipeline, Pipeline) or not hasattr(pipeline[-1], "cluster_centers_"):
        raise ArtifactError("model file does not hold a fitted clustering pipeline")
    if int(pipeline[-1].cluster_centers_.shape[0]) != int(metadata["k"]):
        raise ArtifactError("model file and metadata disagree on k")
    return SegmentModel(pipeline=pipeline, metadata=metadata)


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
        self, version: str, fetch: Callable[[], tuple[bytes, bytes | None]]
    ) -> SegmentModel:
        """The cached model of ``version``, else ``load_artifact(*fetch())`` (then cached)."""
        cached = self.get(version)
        if cached is not None:
            return cached
        model = load_artifact(*fetch())
        if model.version != version:
            raise ArtifactError(f"asked for model {version} but its metadata says {model.version}")
        return self.put(model)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


MODEL_CACHE = ModelCache()
"""The process-wide cache (a warm Lambda keeps its models here)."""
