"""Scoring a clean dataset: assignments, profiles, metrics and the report of one run.

:func:`score_dataset` is the functional core the score handler calls (no AWS). It writes,
under ``out_dir``:

- ``assignments/part-00000.parquet`` and ``assignments.csv``: one row per customer (see
  :mod:`custseg.scoring.outputs` for the columns);
- ``profiles.json`` (:mod:`custseg.scoring.profiles`), ``metrics.json``
  (:mod:`custseg.scoring.metrics`);
- ``report.html`` (:mod:`custseg.report.html`), one self-contained file;
- ``value_at_risk.csv`` when the model predicts the customers' lifetime value (an order
  log), or a churn-like outcome and the data has a value measure
  (:mod:`custseg.scoring.predictions`).

Memory. Customer tables (one row per customer) are streamed by Parquet batches of
``chunk_rows`` rows: each chunk is turned into features (with the model's schema and the
run's fixed ``as_of``), scored, labelled, appended to the outputs (one Parquet row group
per chunk) and folded into mergeable statistics (:class:`custseg.scoring.metrics.ScoreStats`),
so memory depends on ``chunk_rows`` and the bounded samples, not on the number of
customers. The only per-customer state kept across chunks is an 8-byte hash per customer
to guarantee each customer is written once (and, when a previous run is given, its
hashes and segment ids: about 10 bytes per customer). An order log's features are computed
on DuckDB (:mod:`custseg.features.engine`, within ``limits``: a memory limit and a spill
directory) and streamed as batches of ``chunk_rows`` customers, each processed the same
way: no order line is held in Python.

Speed. A chunk stays in Arrow and numpy: category columns are read dictionary-encoded and
carried as codes (:func:`custseg.features.build.build_features_arrow`), the model's preprocessing
is computed from its fitted parameters (:meth:`custseg.model.artifact.SegmentModel.transform`),
labels are small integer codes (:func:`custseg.model.labels.label_codes`), ids are hashed from
their bytes, and the assignments are encoded and written on a background thread while the
next chunk is scored (the last one while the run is evaluated). Every output is the same,
byte for byte, as computing it through pandas and scikit-learn (tested).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseg.dataset.clean_data import clean_files
from custseg.features.build import CategoryCodes, Features, build_features_arrow
from custseg.features.combined import combined_contract
from custseg.features.engine import (
    EngineLimits,
    Source,
    default_as_of_parts,
    feature_batches,
    lambda_limits,
    regroup,
)
from custseg.ingest.contracts.model import ColumnType, Contract, Role
from custseg.jsonsafe import json_safe
from custseg.model.artifact import SegmentModel
from custseg.model.labels import LabelCodes, LabelEdges, label_codes
from custseg.predict.clv import CLV
from custseg.scoring.metrics import (
    PreviousAssignments,
    ScoreStats,
    Thresholds,
    build_metrics,
    pca_projection,
    quality_sample,
)
from custseg.scoring.outputs import AssignmentWriter, assignments_batch
from custseg.scoring.predictions import (
    AT_RISK_CSV,
    PredictionStats,
    ValueTotals,
    holdout_check,
    predict_chunk,
    prediction_columns,
    predictions_metrics,
    propensity_columns,
    risk_measure,
)
from custseg.scoring.profiles import build_profiles
from custseg.scoring.ranking import rank_segments

HASH_KEY = "custseg-sample-1"
"""Must match :func:`custseg.stats.stable_hash` (tested)."""

log = logging.getLogger(__name__)

ASSIGNMENTS_PARQUET = "assignments/part-00000.parquet"
ASSIGNMENTS_CSV = "assignments.csv"
PROFILES_JSON = "profiles.json"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"

DEFAULT_ENGINE_MEMORY_MB = 1024
"""DuckDB's memory limit when :func:`score_dataset` is given no ``limits``."""


@dataclass
class RunInfo:
    """Who and what a scoring run is.

    ``as_of``: the date features are computed as of; ``None`` uses
    :func:`custseg.features.build.default_as_of` (day after the last event for transactions,
    today for customer tables). ``source``: where the clean data came from (bucket, key,
    version id, clean run id...), copied into metrics.json.
    """

    dataset: str
    run_id: str
    run_date: dt.date
    as_of: dt.date | None = None
    source: dict[str, Any] = field(default_factory=dict)
    as_of_reason: str = ""  # why ``as_of`` is that date, when given


@dataclass
class ScoreResult:
    """What :func:`score_dataset` wrote and found.

    ``files``: logical name -> path (``assignments_parquet``, ``assignments_csv``,
    ``profiles``, ``metrics``, ``report``); ``rows``: customers scored (rows in the
    assignments); ``verdict`` / ``reasons``: see :func:`custseg.scoring.metrics.evaluate`.
    """

    files: dict[str, Path]
    rows: int
    verdict: str
    reasons: list[str]
    metrics: dict[str, Any]
    profiles: dict[str, Any]
    as_of: dt.date
    timings: dict[str, float] = field(default_factory=dict)  # seconds: score, evaluate, report


class _SeenIds:
    """Hashes of the customers already written (8 bytes each), to write each once.

    Kept as a few sorted runs whose sizes grow geometrically (a new run is merged into
    the last one while that one is at most twice its size; merging two sorted runs is a
    linear pass of the stable sort), so there are O(log n) runs. A lookup sorts the
    queries first, which makes each binary search start where the previous one ended:
    5M customers in chunks of 250k cost ~1.5 s of CPU instead of ~9 s.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def _hits(self, queries: np.ndarray) -> np.ndarray:
        """Which of the SORTED ``queries`` were seen."""
        hit = np.zeros(queries.shape, dtype=bool)
        for run in self.runs:
            pos = np.minimum(np.searchsorted(run, queries), run.size - 1)
            hit |= run[pos] == queries
        return hit

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        seen = np.zeros(hashes.shape, dtype=bool)
        if not self.runs or hashes.size == 0:
            return seen
        order = np.argsort(hashes)
        seen[order] = self._hits(hashes[order])
        return seen

    def add(self, hashes: np.ndarray) -> None:
        self._add_sorted(np.sort(hashes))

    def _add_sorted(self, new: np.ndarray) -> None:
        if not new.size:
            return
        while self.runs and self.runs[-1].size <= 2 * new.size:
            new = _merge_sorted(self.runs.pop(), new)
        self.runs.append(new)

    def admit(self, hashes: np.ndarray) -> np.ndarray:
        """The rows to write: not seen before and the first of their hash in ``hashes``
        (what ``~contains(h) & ~duplicated(h, keep="first")`` gives); adds them. One sort
        serves the lookup, the in-chunk repeats and the new run; when some row is not
        new, a stable argsort finds which (the first of repeated hashes is kept)."""
        queries = np.sort(hashes)
        repeats = queries[1:] == queries[:-1]
        if not repeats.any() and not (self.runs and self._hits(queries).any()):
            self._add_sorted(queries)  # the usual case: every row is new
            return np.ones(hashes.shape, dtype=bool)
        order = np.argsort(hashes, kind="stable")
        queries = hashes[order]
        fresh = np.ones(queries.shape, dtype=bool)
        fresh[1:] = queries[1:] != queries[:-1]  # a stable sort keeps the first one first
        if self.runs and queries.size:
            fresh &= ~self._hits(queries)
        keep = np.empty(hashes.shape, dtype=bool)
        keep[order] = fresh
        self._add_sorted(queries[fresh])
        return keep


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted union (with repeats) of two sorted arrays: what a stable sort of
    ``a`` then ``b`` gives, in one pass of binary searches instead of a sort."""
    at = np.searchsorted(a, b, side="right") + np.arange(b.size)
    out = np.empty(a.size + b.size, dtype=np.result_type(a, b))
    from_a = np.ones(out.size, dtype=bool)
    from_a[at] = False
    out[at] = b
    out[from_a] = a
    return out


def _feature_columns(pf: pq.ParquetFile, contract: Contract) -> list[str]:
    """Clean columns the features can use: everything but personal data and helpers."""
    personal = {c.name for c in contract.by_role(Role.PERSONAL)}
    return [
        name
        for name in pf.schema_arrow.names
        if name not in personal
        and not name.startswith("_")
        and not name.endswith("__missing")
        and not name.endswith("__clipped")
    ]


def customer_hashes(ids: pd.Series | pd.Index) -> np.ndarray:
    """:func:`custseg.stats.stable_hash` of customer ids, computed without factorizing
    (ids are unique, so the result is the same and about twice as fast). Ids held in
    Arrow (the scoring chunks') are hashed straight from their UTF-8 bytes (see
    :func:`_siphash_text`); others through pandas."""
    array = ids.array if isinstance(ids, (pd.Series, pd.Index)) else None
    if isinstance(array, pd.arrays.ArrowStringArray) and not array.isna().any():
        arrow = pa.array(array)
        if isinstance(arrow, pa.ChunkedArray):
            arrow = arrow.combine_chunks()
        hashes = _siphash_text(arrow)
        if hashes is not None:
            return hashes
    values = pd.Series(ids, dtype="string").to_numpy(dtype=object)
    return pd.util.hash_array(values, hash_key=HASH_KEY, categorize=False).astype("uint64")


# SipHash-2-4 (the reference algorithm, which pandas' hash_array applies to the UTF-8 bytes
# of each string) computed for many strings at once with numpy, then pandas' final mixing
# of the 64-bit values: the same numbers as ``pd.util.hash_array(..., categorize=False)``
# (tested), without making a Python string per customer first.
_U64 = np.uint64
_SIP_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
_SIP_ROWS = 16_384  # strings per block: the working arrays stay in the CPU cache
_SIP_MAX_WORDS = 4  # ids longer than 39 bytes go through pandas (measured: about as fast)


def _rotl(x: np.ndarray, bits: int, scratch: np.ndarray) -> None:
    np.left_shift(x, _U64(bits), out=scratch)
    np.right_shift(x, _U64(64 - bits), out=x)
    np.bitwise_or(x, scratch, out=x)


def _sip_round(v: list[np.ndarray], scratch: np.ndarray) -> None:
    v0, v1, v2, v3 = v
    v0 += v1
    _rotl(v1, 13, scratch)
    v1 ^= v0
    _rotl(v0, 32, scratch)
    v2 += v3
    _rotl(v3, 16, scratch)
    v3 ^= v2
    v0 += v3
    _rotl(v3, 21, scratch)
    v3 ^= v0
    v2 += v1
    _rotl(v1, 17, scratch)
    v1 ^= v2
    _rotl(v2, 32, scratch)


def _siphash_text(text: pa.Array) -> np.ndarray | None:
    """``pd.util.hash_array(<str objects>, hash_key=HASH_KEY, categorize=False)`` of an
    Arrow string array without nulls (``None``: not such an array, or long strings)."""
    if text.null_count or not (
        pa.types.is_string(text.type) or pa.types.is_large_string(text.type)
    ):
        return None
    n = len(text)
    _, offsets_buf, data_buf = text.buffers()
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[text.offset : text.offset + n + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    words = lengths >> 3  # whole 8-byte words before the last, partial one
    if n and int(words.max()) > _SIP_MAX_WORDS:
        return None
    raw = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    data = np.zeros(int(offsets[-1]) + 8 if n else 8, dtype=np.uint8)  # zero padding to read
    data[: data.size - 8] = raw[: data.size - 8]  # 8 bytes from any start
    windows = np.lib.stride_tricks.as_strided(data, shape=(data.size - 7, 8), strides=(1, 1))
    key = HASH_KEY.encode("utf-8")
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    out = np.empty(n, dtype=np.uint64)
    order = np.argsort(words, kind="stable")
    start = 0
    for count_words, count in enumerate(np.bincount(words)):
        group = order[start : start + count]
        start += count
        for first in range(0, count, _SIP_ROWS):
            rows = group[first : first + _SIP_ROWS]
            m = rows.size
            base = offsets[rows]
            v = [
                np.full(m, init ^ k, dtype=np.uint64)
                for init, k in zip(_SIP_INIT, (k0, k1, k0, k1), strict=True)
            ]
            scratch = np.empty(m, dtype=np.uint64)
            for j in range(count_words):
                word = windows[base + 8 * j].view("<u8").ravel()
                v[3] ^= word
                _sip_round(v, scratch)
                _sip_round(v, scratch)
                v[0] ^= word
            size = lengths[rows].astype(np.uint64)
            left = size & _U64(7)
            tail = windows[base + 8 * count_words].view("<u8").ravel()
            last = (tail & ((_U64(1) << (left * _U64(8))) - _U64(1))) | (size << _U64(56))
            v[3] ^= last
            _sip_round(v, scratch)
            _sip_round(v, scratch)
            v[0] ^= last
            v[2] ^= _U64(0xFF)
            for _ in range(4):
                _sip_round(v, scratch)
            out[rows] = v[0] ^ v[1] ^ v[2] ^ v[3]
    # pandas' mixing of the 64-bit hashes (pandas.core.util.hashing._hash_ndarray)
    out ^= out >> _U64(30)
    out *= _U64(0xBF58476D1CE4E5B9)
    out ^= out >> _U64(27)
    out *= _U64(0x94D049BB133111EB)
    out ^= out >> _U64(31)
    return out


def _subset(features: Features, rows: slice | np.ndarray) -> Features:
    """The features of some customers (a slice or a boolean mask), codes included."""
    if isinstance(rows, slice):
        frame, extras = features.frame.iloc[rows], features.extras.iloc[rows]
        value = None if features.value is None else features.value.iloc[rows]
        codes = {c: CategoryCodes(v.codes[rows], v.values) for c, v in features.codes.items()}
        history = None if features.history is None else features.history.iloc[rows]
    else:
        frame, extras = features.frame[rows], features.extras[rows]
        value = None if features.value is None else features.value[rows]
        codes = {c: v.take(rows) for c, v in features.codes.items()}
        history = None if features.history is None else features.history[rows]
    return replace(features, frame=frame, value=value, extras=extras, codes=codes, history=history)


def _dictionary_columns(pf: pq.ParquetFile, contract: Contract, columns: list[str]) -> list[str]:
    """Category columns stored as text: read dictionary-encoded (a handful of distinct
    values per chunk, decoded once instead of once per row)."""
    schema = pf.schema_arrow
    return [
        spec.name
        for spec in contract.by_role(Role.CATEGORY)
        if spec.name in columns
        and spec.type not in (ColumnType.BOOLEAN, ColumnType.DATE, ColumnType.DATETIME)
        and pa.types.is_string(schema.field(spec.name).type)
    ]


def _feature_chunks(
    clean_path: Path,
    contract: Contract,
    model: SegmentModel,
    as_of: dt.date,
    chunk_rows: int,
    limits: EngineLimits,
    orders: Source | None = None,
) -> Iterator[Features]:
    schema = model.schema
    if contract.is_transactions or orders is not None:
        # per customer on DuckDB (an order log, or a customer table joined with one),
        # streamed by chunks of customers
        files = clean_files(clean_path)
        yield from feature_batches(
            files, contract, as_of, limits, batch_rows=chunk_rows, schema=schema, orders=orders
        )
        return
    files = clean_files(clean_path)
    pf = pq.ParquetFile(str(files[0]))
    columns = _feature_columns(pf, contract)
    encoded = _dictionary_columns(pf, contract, columns)

    def batches() -> Iterator[pa.RecordBatch]:  # the parts' rows, in order
        for f in files:
            part = pq.ParquetFile(str(f), read_dictionary=encoded or None)
            yield from part.iter_batches(batch_size=chunk_rows, columns=columns, use_threads=False)

    for chunk in _rebatch(batches(), chunk_rows):
        yield build_features_arrow(chunk, contract, as_of, schema=schema)


def _rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The rows of ``batches`` in tables of exactly ``rows`` rows (the last one shorter).

    The chunks must not depend on the file's row groups: a chunk is sorted by customer id
    on its own. A reader of plain columns gives such batches; one with dictionary-encoded
    columns stops each batch at a row group's end (the dictionaries change there).
    """
    for group in regroup(batches, rows):
        yield pa.Table.from_batches(group)


def _resolve_as_of(
    clean_path: Path, contract: Contract, run: RunInfo, orders: Source | None
) -> tuple[dt.date, str]:
    """The run's as-of date and why it is that date (the order log's, when joined)."""
    if run.as_of is not None:
        return run.as_of, run.as_of_reason or "given by the caller"
    if orders is not None:
        return default_as_of_parts(orders.parts, orders.contract)
    return default_as_of_parts(clean_files(clean_path), contract)


def score_dataset(
    clean_path: Path,
    contract: Contract,
    model: SegmentModel,
    out_dir: Path,
    *,
    run: RunInfo,
    quality: dict[str, Any] | None = None,
    previous_assignments: Path | None = None,
    thresholds: Thresholds | None = None,
    chunk_rows: int = 250_000,
    on_file: Callable[[str, Path, int, str | None], None] | None = None,
    limits: EngineLimits | None = None,
    orders: Source | None = None,
    annotate: Callable[[dict[str, Any], Path], None] | None = None,
) -> ScoreResult:
    """Score every customer of clean data with ``model``; write the run's files.

    ``clean_path``: the ingest's clean data, a directory of Parquet parts (read in name
    order) or one Parquet file (see :mod:`custseg.dataset.clean_data`).

    ``quality``: the ingest quality report (its JSON as a dict), summarised in metrics.
    ``previous_assignments``: the previous run's assignments Parquet (file or directory)
    for stability. ``on_file(name, path, rows, sha256)`` is called as soon as each
    assignments file is complete (``"assignments_csv"``, the larger, then
    ``"assignments_parquet"``), from a background thread, while the run is still being
    evaluated: a caller can start uploading them. ``sha256`` is the file's SHA-256 (hex)
    when it was computed while writing (the CSV's), else None. Returns a
    :class:`ScoreResult`. Each customer appears exactly once in the assignments (a
    repeated customer id in the clean data is scored once, first occurrence wins, and
    counted in ``duplicates_dropped``).

    ``limits``: the memory limit and spill directory of the DuckDB engine that computes
    an order log's features (default: :data:`DEFAULT_ENGINE_MEMORY_MB`, spilling to a
    temporary directory removed at the end).

    ``orders``: the dataset's order log (its clean files and contract) when ``clean_path``
    is its customer table and ``model`` a combined one: each customer's features are the
    two sources joined (:mod:`custseg.features.combined`), as of the order log's default
    date unless ``run.as_of`` is given.

    ``annotate(profiles, assignments_parquet)``: called with the run's profiles before
    they are written and the report drawn, to add to a segment what the model does not
    know (a campaign's flags, offers); it may read the finished assignments.
    """
    with contextlib.ExitStack() as stack:
        if limits is None:  # a spill directory of its own, removed at the end
            spill = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="custseg-spill-")))
            limits = lambda_limits(DEFAULT_ENGINE_MEMORY_MB, share=1.0, tmp=spill)
        return _score_dataset(
            clean_path,
            contract,
            model,
            out_dir,
            run=run,
            quality=quality,
            previous_assignments=previous_assignments,
            thresholds=thresholds,
            chunk_rows=chunk_rows,
            on_file=on_file,
            limits=limits,
            orders=orders,
            annotate=annotate,
        )


def _load_previous(path: Path | None) -> PreviousAssignments | None:
    """The previous run's assignments (for stability), or None when not given or gone."""
    if path is None:
        return None
    if not Path(path).exists():
        log.warning("previous assignments %s not found: stability skipped", path)
        return None
    return PreviousAssignments.load(Path(path))


def _score_stats(
    model: SegmentModel, portrait: Contract, previous: PreviousAssignments | None
) -> ScoreStats:
    """The run's mergeable statistics, binned on the model's training histograms."""
    schema = model.schema
    training = model.metadata.get("training", {}) or {}
    edges = {
        name: list(h["edges"])
        for name, h in (training.get("baseline_histograms") or {}).items()
        if name in schema.numeric
    }
    return ScoreStats(
        k=model.k,
        numeric=list(schema.numeric),
        categorical=list(schema.categorical),
        outcomes=[c.name for c in portrait.by_role(Role.OUTCOME)],
        baseline_edges=edges,
        track_previous=previous is not None,
    )


@dataclass
class _RunState:
    """What a run carries from its setup through its chunks to its finish."""

    as_of: dt.date
    as_of_reason: str
    portrait: Contract
    previous: PreviousAssignments | None
    stats: ScoreStats
    label_edges: LabelEdges
    names: dict[int, str]
    clv: dict[str, Any] | None
    value_totals: ValueTotals | None
    files: dict[str, Path]
    predicted: list[str]
    pstats: PredictionStats
    writer: AssignmentWriter
    seen: _SeenIds = field(default_factory=_SeenIds)
    duplicates: int = 0


def _start_run(
    clean_path: Path,
    contract: Contract,
    model: SegmentModel,
    out_dir: Path,
    run: RunInfo,
    previous_assignments: Path | None,
    orders: Source | None,
) -> _RunState:
    """Setup: the run's as-of date, statistics, output paths and open assignment writer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    as_of, as_of_reason = _resolve_as_of(clean_path, contract, run, orders)
    portrait = contract if orders is None else combined_contract(contract, orders.contract)
    previous = _load_previous(previous_assignments)
    stats = _score_stats(model, portrait, previous)
    label_edges = model.label_edges
    names = model.segment_names()
    clv = model.prediction(CLV)
    value_totals = ValueTotals() if clv is not None else None
    files = {
        "assignments_parquet": out_dir / ASSIGNMENTS_PARQUET,
        "assignments_csv": out_dir / ASSIGNMENTS_CSV,
        "profiles": out_dir / PROFILES_JSON,
        "metrics": out_dir / METRICS_JSON,
        "report": out_dir / REPORT_HTML,
    }
    # The writer stays open while the run is evaluated: the last chunk is written in the
    # background meanwhile (closing waits for it; an error there still fails the run).
    predicted = prediction_columns(model)
    pstats = PredictionStats(propensity_columns(model), risk_measure(model.metadata, predicted))
    writer = AssignmentWriter(files["assignments_parquet"], files["assignments_csv"], predicted)
    return _RunState(
        as_of=as_of,
        as_of_reason=as_of_reason,
        portrait=portrait,
        previous=previous,
        stats=stats,
        label_edges=label_edges,
        names=names,
        clv=clv,
        value_totals=value_totals,
        files=files,
        predicted=predicted,
        pstats=pstats,
        writer=writer,
    )


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk of customers scored: each one's segment, distance and confidence (numpy,
    in the order of the features' rows), labels, value (None: the data has none),
    prediction columns, and the assignments rows (Arrow) made of them."""

    segment: np.ndarray
    distance: np.ndarray
    confidence: np.ndarray
    labels: LabelCodes
    value: np.ndarray | None
    predictions: dict[str, np.ndarray]
    table: pa.Table

    def fold_into(
        self,
        stats: ScoreStats,
        features: Features,
        hashes: np.ndarray,
        previous: np.ndarray | None,
    ) -> ScoreStats:
        """``stats`` with this chunk added (``previous``: each customer's segment in the
        previous run, see :class:`~custseg.scoring.metrics.PreviousAssignments`)."""
        return stats.update(
            features.frame,
            self.segment.astype("int64"),
            self.distance,
            self.confidence,
            hashes=hashes,
            value=self.value,
            extras=features.extras,
            labels=self.labels,
            previous=previous,
            codes=features.codes,
        )


def score_chunk(
    features: Features,
    model: SegmentModel,
    *,
    label_edges: LabelEdges,
    predicted: list[str],
    run_id: str,
    as_of: dt.date,
    segment_names: dict[int, str],
) -> ScoredChunk:
    """Assign ``features``' customers, label them, predict the ``predicted`` columns and
    make their assignments rows: what the single path does per chunk and the fan-out per
    bucket."""
    segment, distance, confidence = model.assign(features)
    labels = label_codes(features, label_edges)
    value = (
        None
        if features.value is None
        else features.value.to_numpy(dtype="float64", na_value=np.nan)
    )
    extra = predict_chunk(model, features, predicted)
    table = assignments_batch(
        features.frame.index,
        segment,
        distance,
        confidence,
        labels,
        value,
        model_version=model.version,
        run_id=run_id,
        as_of=as_of,
        segment_names=segment_names,
        predictions=extra,
    )
    return ScoredChunk(segment, distance, confidence, labels, value, extra, table)


def _score_chunk(state: _RunState, features: Features, model: SegmentModel, run: RunInfo) -> None:
    """One chunk: drop customers already written, assign, write and fold into the stats."""
    hashes = customer_hashes(features.frame.index)
    # customers already written, and repeats within the chunk (first row kept)
    keep = state.seen.admit(hashes)
    if not keep.all():
        state.duplicates += int((~keep).sum())
        features = _subset(features, keep)
        hashes = hashes[keep]
    if len(features.frame) == 0:
        return
    scored = score_chunk(
        features,
        model,
        label_edges=state.label_edges,
        predicted=state.predicted,
        run_id=run.run_id,
        as_of=state.as_of,
        segment_names=state.names,
    )
    if state.value_totals is not None:
        state.value_totals.update(scored.segment, scored.predictions, scored.value)
    state.writer.write(scored.table)
    if state.predicted:
        state.pstats.update(features.frame.index, scored.segment, scored.value, scored.predictions)
    previous = state.previous
    scored.fold_into(
        state.stats, features, hashes, previous.lookup(hashes) if previous is not None else None
    )


def _announce_assignments(
    state: _RunState, on_file: Callable[[str, Path, int, str | None], None] | None, rows: int
) -> None:
    """Finish the assignment files in the background, calling ``on_file`` for each."""
    if on_file is None:
        return
    callback = on_file
    writer, files = state.writer, state.files

    def announce(kind: str) -> None:
        name = f"assignments_{kind}"
        sha256 = writer.csv_sha256 if kind == "csv" else None
        callback(name, files[name], rows, sha256)

    writer.finish(announce)


def _evaluate_run(
    state: _RunState,
    model: SegmentModel,
    run: RunInfo,
    *,
    clean_path: Path,
    contract: Contract,
    orders: Source | None,
    limits: EngineLimits,
    thresholds: Thresholds,
    quality: dict[str, Any] | None,
    previous_assignments: Path | None,
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Evaluate: the run's metrics, ranked profiles and PCA projection of the sample."""
    stats, previous, as_of = state.stats, state.previous, state.as_of
    rows_sample, x = quality_sample(stats, model)
    seg_sample = (
        rows_sample["segment_id"].to_numpy(dtype="int64")
        if len(rows_sample)
        else np.empty(0, dtype="int64")
    )
    projection, variance = pca_projection(x, seg_sample)
    metrics = build_metrics(
        stats,
        model,
        run=run,
        as_of=as_of,
        as_of_reason=state.as_of_reason,
        quality=quality,
        previous=None if previous is None else previous.summary,
        thresholds=thresholds,
        duplicates_dropped=state.duplicates,
        sample_x=x,
        sample_segments=seg_sample,
        pca_variance=variance,
        predictions=_predictions(
            state.clv, clean_path, contract, orders, as_of, limits, thresholds
        ),
    )
    if previous_assignments is not None and previous is None:
        metrics["stability"]["note"] = "previous assignments not found: stability not measured"
    profiles = rank_segments(
        build_profiles(
            stats,
            model,
            contract=state.portrait,
            run=run,
            as_of=as_of,
            value_totals=state.value_totals,
        ),
        metrics,
    )
    return metrics, profiles, projection


def _write_report(
    path: Path,
    profiles: dict[str, Any],
    metrics: dict[str, Any],
    projection: pd.DataFrame,
    run: RunInfo,
) -> None:
    """Draw the run's report.html."""
    from custseg.report.html import render_report

    html = render_report(
        profiles,
        metrics,
        sample=projection,
        title=f"Customer segments: {run.dataset}",
    )
    path.write_text(html, encoding="utf-8")


def _score_dataset(
    clean_path: Path,
    contract: Contract,
    model: SegmentModel,
    out_dir: Path,
    *,
    run: RunInfo,
    quality: dict[str, Any] | None,
    previous_assignments: Path | None,
    thresholds: Thresholds | None,
    chunk_rows: int,
    on_file: Callable[[str, Path, int, str | None], None] | None,
    limits: EngineLimits,
    orders: Source | None,
    annotate: Callable[[dict[str, Any], Path], None] | None = None,
) -> ScoreResult:
    """:func:`score_dataset` within the engine's ``limits``."""
    started = time.perf_counter()
    clean_path, out_dir = Path(clean_path), Path(out_dir)
    thresholds = thresholds or Thresholds()
    state = _start_run(clean_path, contract, model, out_dir, run, previous_assignments, orders)
    files, writer = state.files, state.writer
    try:
        for features in _feature_chunks(
            clean_path, contract, model, state.as_of, chunk_rows, limits, orders
        ):
            _score_chunk(state, features, model, run)
        rows = writer.rows
        scored = time.perf_counter()
        _announce_assignments(state, on_file, rows)
        metrics, profiles, projection = _evaluate_run(
            state,
            model,
            run,
            clean_path=clean_path,
            contract=contract,
            orders=orders,
            limits=limits,
            thresholds=thresholds,
            quality=quality,
            previous_assignments=previous_assignments,
        )
        if state.predicted:
            add_predictions(state.pstats, model, metrics, profiles, files, out_dir / AT_RISK_CSV)
        if annotate is not None:
            if on_file is None:
                writer.finish()
            writer.close()  # the assignments complete on disk (closing again is a no-op)
            annotate(profiles, files["assignments_parquet"])
        evaluated = time.perf_counter()
        # timings stay out of metrics.json: a rerun of the same input writes the same bytes
        timings = {"score": round(scored - started, 3), "evaluate": round(evaluated - scored, 3)}
        _write_json(files["profiles"], profiles)
        _write_report(files["report"], profiles, metrics, projection, run)
        timings["report"] = round(time.perf_counter() - evaluated, 3)
    finally:
        writer.close()
    _write_json(files["metrics"], metrics)
    log.info(
        "scored %d customers of %s in %.1fs (%s): verdict %s",
        rows,
        run.dataset,
        time.perf_counter() - started,
        timings,
        metrics["verdict"],
    )
    return ScoreResult(
        files=files,
        rows=rows,
        verdict=str(metrics["verdict"]),
        reasons=list(metrics["reasons"]),
        metrics=metrics,
        profiles=profiles,
        as_of=state.as_of,
        timings=timings,
    )


def add_predictions(
    pstats: PredictionStats,
    model: SegmentModel,
    metrics: dict[str, Any],
    profiles: dict[str, Any],
    files: dict[str, Path],
    at_risk_path: Path,
) -> None:
    """The run's propensities into metrics.json ``predictions`` (beside ``clv``, see
    :func:`_predictions`), and when a value-at-risk measure applies, ``value_at_risk`` in
    metrics.json, a ``priority`` ranking of the segments in profiles.json and
    ``value_at_risk.csv``."""
    names = model.segment_names()
    metrics["predictions"] = {
        **pstats.metrics_doc(model.metadata, names),
        **(metrics.get("predictions") or {}),
    }
    at_risk = pstats.value_at_risk_doc()
    if at_risk is None:
        return
    metrics["value_at_risk"] = at_risk
    actions = {int(s["id"]): str(s.get("action", "")) for s in profiles.get("segments", [])}
    profiles["priority"] = pstats.priority(names, actions)
    pstats.write_top(at_risk_path, names)
    files["value_at_risk"] = at_risk_path


def _predictions(
    clv: dict[str, Any] | None,
    clean_path: Path,
    contract: Contract,
    orders: Source | None,
    as_of: dt.date,
    limits: EngineLimits,
    thresholds: Thresholds,
) -> dict[str, Any] | None:
    """metrics.json ``predictions`` of a run on an order log (or a portrait joined with
    one), the holdout check on its lines included; ``None`` for a customer table alone."""
    if orders is None and not contract.is_transactions:
        return None
    holdout = None
    if clv is not None:
        parts, log_contract = clean_files(clean_path), contract
        if orders is not None:
            parts, log_contract = list(orders.parts), orders.contract
        holdout = holdout_check(
            parts, log_contract, as_of, limits, miss_watch=thresholds.holdout_miss_watch
        )
    return predictions_metrics(clv, holdout)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(
        json.dumps(json_safe(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )


def read_assignments(path: Path) -> pa.Table:
    """The assignments Parquet file of a run (for tests and tools)."""
    return pq.read_table(str(path))
