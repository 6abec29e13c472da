"""Per-customer features computed by DuckDB over the clean Parquet parts, in bounded memory.

:func:`compute_features` opens an in-process DuckDB database with a memory limit and a
spill directory, reads the parts (``read_parquet``, columns matched by name, so parts of
different uploads may differ in their columns), runs the feature query of
:mod:`custseg.features.sql` and streams the result as Arrow record batches: one row per
customer in ``customer_id`` order. Aggregations, joins and sorts larger than the memory
limit spill to the temporary directory. Sources of more than :data:`RANGE_ROWS` rows are
queried one range of customer ids at a time (:class:`RangeViews`, ranges cut at quantiles
of a sample of the ids, each range reading the parts again): DuckDB's hash tables and sort
then hold a range's customers, not the dataset's, and the result is the same rows in the
same order, regrouped into batches of exactly the rows asked for (so a caller's chunks do
not depend on the ranges). :func:`collect_features` gathers the batches into
the :class:`~custseg.features.build.Features` that :func:`~custseg.features.build.build_features`
returns for the same data.

:func:`lambda_limits` derives the limits from a function's memory size: DuckDB gets 60 %
of it (the rest is Python, pyarrow and the model), the spill directory is under ``/tmp``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseg.features.build import (
    MISSING_CATEGORY,
    CategoryCodes,
    Features,
    FeatureSchema,
    default_as_of_reason,
    with_schema,
)
from custseg.features.combined import COMBINED, combined_query
from custseg.features.sql import (
    HOLDOUT_COLUMNS,
    VALUE_COLUMN,
    ColumnKind,
    FeatureQuery,
    customer_id_column,
    feature_query,
    first_purchase_query,
    holdout_query,
    literal,
    quote,
)
from custseg.ingest.contracts.model import Contract, Role

SOURCE = "clean"
"""The view of the clean parts that the feature query reads."""

CUSTOMERS_SOURCE, ORDERS_SOURCE = "clean_customers", "clean_orders"
"""The views of a combined portrait's two sources (see :mod:`custseg.features.combined`)."""

READ_ORDER = "_read_order"
"""The view's column giving each row's place in reading order (part, then row)."""

LAMBDA_MEMORY_SHARE = 0.6
"""The share of a function's memory that DuckDB may use."""

MIN_MEMORY_MB = 32
"""The smallest memory limit accepted (DuckDB needs some buffers to run at all)."""

DEFAULT_BATCH_ROWS = 65_536
"""Customers per streamed record batch."""

RANGE_ROWS = 1_000_000
"""Source rows (order lines) per feature query: larger sources are queried one range of
customer ids at a time, so DuckDB's memory follows a range's customers and lines, not
the whole dataset's (each range reads the parts again)."""

HOLDOUT_RANGE_ROWS = 4 * RANGE_ROWS
"""Order lines per holdout query (:func:`holdout_data`): it holds less per line than the
feature query (one row per customer and purchase day), so it takes larger ranges."""

RANGE_SAMPLE = 100_000
"""Customer ids sampled (from the rows) to cut the ranges."""

_PART_ROWS = 1 << 40  # rows per part in the read order key (a part holds fewer)


class FeatureEngineError(RuntimeError):
    """DuckDB could not read the parts or run the feature query (the message says which,
    with the limits in force)."""


@dataclass(frozen=True)
class Source:
    """The clean Parquet files of one source (in row order) and its contract."""

    parts: Sequence[Path]
    contract: Contract


@dataclass(frozen=True)
class EngineLimits:
    """What a DuckDB connection may use: memory (MB), a spill directory, threads, and at
    most ``max_temp_mb`` of spill files (``None``: DuckDB's default, 90 % of the free disk)."""

    memory_limit_mb: int
    temp_dir: Path
    threads: int = 1
    max_temp_mb: int | None = None

    def __post_init__(self) -> None:
        if self.memory_limit_mb < MIN_MEMORY_MB:
            raise ValueError(
                f"memory_limit_mb {self.memory_limit_mb} is below the {MIN_MEMORY_MB} MB "
                "DuckDB needs"
            )
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")


def default_threads() -> int:
    """The machine's cores, at most 4 (more threads need more memory per query)."""
    return max(1, min(os.cpu_count() or 1, 4))


def lambda_limits(
    function_memory_mb: int,
    *,
    share: float = LAMBDA_MEMORY_SHARE,
    tmp: Path | None = None,
    threads: int | None = None,
    max_temp_mb: int | None = None,
) -> EngineLimits:
    """Limits for a function of ``function_memory_mb``: ``share`` of it for DuckDB, the
    spill directory ``<tmp>/duckdb-spill`` (``tmp`` default: the system's, ``/tmp`` on
    Lambda) holding at most ``max_temp_mb`` (give a part of the function's ephemeral
    storage when ``/tmp`` also holds downloaded parts), threads as :func:`default_threads`."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    base = Path(tmp) if tmp is not None else Path(tempfile.gettempdir())
    return EngineLimits(
        memory_limit_mb=int(function_memory_mb * share),
        temp_dir=base / "duckdb-spill",
        threads=threads if threads is not None else default_threads(),
        max_temp_mb=max_temp_mb,
    )


def connect(limits: EngineLimits) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection within ``limits`` (the spill directory is made)."""
    limits.temp_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": f"{limits.memory_limit_mb}MB",
        "temp_directory": str(limits.temp_dir),
        "threads": limits.threads,
        "preserve_insertion_order": False,  # the queries order their results
    }
    if limits.max_temp_mb is not None:
        config["max_temp_directory_size"] = f"{limits.max_temp_mb}MB"
    return duckdb.connect(":memory:", config=config)


def _create_source(
    con: duckdb.DuckDBPyConnection, parts: Sequence[Path], name: str = SOURCE
) -> None:
    """The view ``name`` of ``parts`` (in order) with :data:`READ_ORDER`: the
    part's place in ``parts`` times 2**40 plus the row's place in its part (DuckDB's
    ``filename`` and ``file_row_number``, read under helper names and dropped)."""
    if not parts:
        raise ValueError("no clean Parquet parts to compute features from")
    for part in parts:
        if not Path(part).is_file():
            raise FileNotFoundError(f"no clean Parquet part at {part}")
    files = ", ".join(literal(str(p)) for p in parts)
    con.execute(
        f"CREATE TEMPORARY VIEW {quote(name)} AS "
        "SELECT * EXCLUDE (_part_file, file_row_number), "
        f"(list_position([{files}], _part_file) - 1) * {_PART_ROWS} + file_row_number "
        f"AS {quote(READ_ORDER)} "
        f"FROM read_parquet([{files}], union_by_name = true, "
        "filename = '_part_file', file_row_number = true)"
    )


_KINDS = (
    (re.compile(r"^BOOLEAN$"), ColumnKind.BOOLEAN),
    (
        re.compile(r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|REAL|DECIMAL.*)$"),
        ColumnKind.NUMBER,
    ),
    (re.compile(r"^(DATE|TIMESTAMP.*)$"), ColumnKind.TIMESTAMP),
)


def column_kind(duckdb_type: str) -> ColumnKind:
    """The :class:`ColumnKind` of a DuckDB type name (anything else is text)."""
    for pattern, kind in _KINDS:
        if pattern.match(duckdb_type.upper()):
            return kind
    return ColumnKind.TEXT


def source_columns(con: duckdb.DuckDBPyConnection, name: str = SOURCE) -> dict[str, ColumnKind]:
    """The columns of the view ``name`` and their kinds."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {quote(name)}").fetchall()
    return {str(row[0]): column_kind(str(row[1])) for row in rows}


class RangeViews:
    """Views of the customers of one range of ids (as text, as the queries group and order
    them), one over each source view; :meth:`narrow` moves them to another range."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.views: dict[str, tuple[str, str]] = {}  # range view -> (source view, id column)

    def view(self, source: str, customer_id: str) -> str:
        """The range view of the view ``source`` (every row until narrowed)."""
        name = f"{source}_range"
        self.views[name] = (source, customer_id)
        self._create(name, source, customer_id, None, None)
        return name

    def narrow(self, low: str | None, high: str | None) -> None:
        """Every range view to the customers whose id is in ``[low, high)`` (``None``:
        unbounded)."""
        for name, (source, customer_id) in self.views.items():
            self._create(name, source, customer_id, low, high)

    def _create(
        self, name: str, source: str, customer_id: str, low: str | None, high: str | None
    ) -> None:
        key = f"CAST({quote(customer_id)} AS VARCHAR)"
        bounds = [f"{key} >= {literal(low)}"] if low is not None else []
        bounds += [f"{key} < {literal(high)}"] if high is not None else []
        where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
        self.con.execute(
            f"CREATE OR REPLACE TEMPORARY VIEW {quote(name)} AS "
            f"SELECT * FROM {quote(source)}{where}"
        )


def plan_features(
    con: duckdb.DuckDBPyConnection,
    parts: Sequence[Path],
    contract: Contract,
    as_of: dt.date,
    *,
    ranges: RangeViews | None = None,
) -> FeatureQuery:
    """The feature query of ``parts`` (their view is created on ``con``); with ``ranges``
    it reads the customers of one range (a view of ``ranges``) instead of all."""
    _create_source(con, parts)
    columns = source_columns(con)
    source = SOURCE
    if ranges is not None:
        source = ranges.view(SOURCE, customer_id_column(columns, contract))
    return feature_query(contract, columns, as_of, source=source, row_order=READ_ORDER)


def plan_combined(
    con: duckdb.DuckDBPyConnection,
    customers: Source,
    orders: Source,
    as_of: dt.date,
    *,
    ranges: RangeViews | None = None,
) -> FeatureQuery:
    """The combined feature query of a customer table and an order log (their views are
    created on ``con``): see :mod:`custseg.features.combined`; ``ranges``: as
    :func:`plan_features`."""
    _create_source(con, customers.parts, CUSTOMERS_SOURCE)
    _create_source(con, orders.parts, ORDERS_SOURCE)
    customer_columns = source_columns(con, CUSTOMERS_SOURCE)
    order_columns = source_columns(con, ORDERS_SOURCE)
    customer_source, order_source = CUSTOMERS_SOURCE, ORDERS_SOURCE
    if ranges is not None:
        customer_id = customer_id_column(customer_columns, customers.contract)
        customer_source = ranges.view(CUSTOMERS_SOURCE, customer_id)
        order_id = customer_id_column(order_columns, orders.contract)
        order_source = ranges.view(ORDERS_SOURCE, order_id)
    customer_query = feature_query(
        customers.contract, customer_columns, as_of, source=customer_source, row_order=READ_ORDER
    )
    order_query = feature_query(orders.contract, order_columns, as_of, source=order_source)
    return combined_query(customer_query, order_query)


def compute_features(
    parts: Sequence[Path],
    contract: Contract,
    as_of: dt.date,
    *,
    memory_limit_mb: int,
    temp_dir: Path,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    threads: int | None = None,
    max_temp_mb: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Per-customer features of the clean ``parts`` as of ``as_of``, as Arrow batches of at
    most ``batch_rows`` customers (columns: see :class:`~custseg.features.sql.FeatureQuery`;
    :func:`stream_features` also gives the query). The connection closes when the
    iteration ends."""
    limits = EngineLimits(
        memory_limit_mb, Path(temp_dir), threads or default_threads(), max_temp_mb
    )
    _, batches = stream_features(parts, contract, as_of, limits, batch_rows=batch_rows)
    return batches


def stream_features(
    parts: Sequence[Path],
    contract: Contract,
    as_of: dt.date,
    limits: EngineLimits,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    orders: Source | None = None,
    range_rows: int | None = None,
) -> tuple[FeatureQuery, Iterator[pa.RecordBatch]]:
    """(the feature query, its result as Arrow batches) of ``parts`` within ``limits``;
    with ``orders``, ``parts`` are a customer table's joined per customer with that order
    log (:func:`plan_combined`). Sources of more than ``range_rows`` rows are queried one
    range of customer ids at a time (default :data:`RANGE_ROWS`): the same rows in the same
    order, in batches of exactly ``batch_rows`` rows (the last one shorter)."""
    range_rows = RANGE_ROWS if range_rows is None else range_rows
    if range_rows < 1:
        raise ValueError(f"range_rows must be at least 1, not {range_rows}")
    rows = _source_rows(parts) + (_source_rows(orders.parts) if orders is not None else 0)
    count = -(-rows // range_rows)
    if orders is not None:
        customers = Source(parts, contract)

        def combined(con: duckdb.DuckDBPyConnection, ranges: RangeViews | None) -> FeatureQuery:
            return plan_combined(con, customers, orders, as_of, ranges=ranges)

        return _stream(combined, limits, batch_rows, count)

    def single(con: duckdb.DuckDBPyConnection, ranges: RangeViews | None) -> FeatureQuery:
        return plan_features(con, parts, contract, as_of, ranges=ranges)

    return _stream(single, limits, batch_rows, count)


def _source_rows(parts: Sequence[Path]) -> int:
    """Rows of the Parquet ``parts``, from their footers (0 for a part that cannot be
    read: the query then reports it)."""
    total = 0
    for part in parts:
        try:
            total += pq.read_metadata(str(part)).num_rows
        except (OSError, pa.ArrowException):
            continue
    return total


Bounds = list[tuple[str | None, str | None]]


def _stream(
    plan: Callable[[duckdb.DuckDBPyConnection, RangeViews | None], FeatureQuery],
    limits: EngineLimits,
    batch_rows: int,
    count: int = 1,
) -> tuple[FeatureQuery, Iterator[pa.RecordBatch]]:
    """(the query ``plan`` makes on a new connection, its result as Arrow batches), run
    on about ``count`` ranges of customers when ``count`` > 1."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    con = connect(limits)
    ranges = RangeViews(con) if count > 1 else None
    try:
        query = plan(con, ranges)
        bounds = _range_bounds(ranges, count)
    except duckdb.Error as exc:
        con.close()
        raise FeatureEngineError(f"cannot read the clean Parquet parts: {exc}") from exc
    except BaseException:
        con.close()
        raise
    return query, _exact(_batches(con, query.sql, batch_rows, limits, ranges, bounds), batch_rows)


def _bounds(ranges: RangeViews, count: int) -> Bounds:
    """About ``count`` ranges ``[low, high)`` of customer ids (``None``: unbounded) holding
    similar numbers of rows, cut at quantiles of a sample of the first source's ids."""
    source, customer_id = next(iter(ranges.views.values()))
    key = f"CAST({quote(customer_id)} AS VARCHAR)"
    rows = ranges.con.execute(
        f"SELECT k FROM (SELECT {key} AS k FROM {quote(source)} "
        f"WHERE {quote(customer_id)} IS NOT NULL) "
        f"USING SAMPLE reservoir({RANGE_SAMPLE} ROWS) REPEATABLE (7)"
    ).fetchall()
    ids = sorted({str(row[0]) for row in rows})
    cuts = sorted({ids[len(ids) * i // count] for i in range(1, count)}) if ids else []
    lows: list[str | None] = [None, *cuts]
    highs: list[str | None] = [*cuts, None]
    return list(zip(lows, highs, strict=True))


def _range_bounds(ranges: RangeViews | None, count: int) -> Bounds:
    """The ranges to query: about ``count`` (:func:`_bounds`), or one unbounded."""
    return _bounds(ranges, count) if ranges is not None else [(None, None)]


def _each_range(ranges: RangeViews | None, bounds: Bounds) -> Iterator[None]:
    """Narrow ``ranges`` to each of ``bounds`` in turn (nothing to narrow without
    ranges), for the caller to run its query on each."""
    for low, high in bounds:
        if ranges is not None:
            ranges.narrow(low, high)
        yield


def _batches(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    batch_rows: int,
    limits: EngineLimits,
    ranges: RangeViews | None = None,
    bounds: Bounds | None = None,
) -> Iterator[pa.RecordBatch]:
    """The result of ``sql``, range after range of ``bounds`` (ranges in id order, so
    the batches are in ``customer_id`` order as one query over all customers gives)."""
    try:
        for _ in _each_range(ranges, bounds or [(None, None)]):
            yield from con.sql(sql).to_arrow_reader(batch_rows)
    except (duckdb.Error, pa.ArrowException) as exc:
        raise FeatureEngineError(
            f"the feature query failed (memory limit {limits.memory_limit_mb} MB, spill "
            f"directory {limits.temp_dir}): {exc}"
        ) from exc
    finally:
        con.close()


def regroup(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    """The rows of ``batches``, in order, in groups of exactly ``rows`` rows (the last one
    shorter), each group a list of slices of the batches."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            part = batch.slice(0, rows - count)
            pending.append(part)
            count += part.num_rows
            batch = batch.slice(part.num_rows)
            if count == rows:
                yield pending
                pending, count = [], 0
    if count:
        yield pending


def _exact(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` as batches of exactly ``rows`` rows (the last one shorter): the chunks
    of a run depend on ``rows`` only, not on the ranges or on how DuckDB cuts its result
    (a run's sums over chunks are then the same to the last bit)."""
    for group in regroup(batches, rows):
        yield _concat(group)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches(max_chunksize=None)[0]


def collect_features(
    parts: Sequence[Path],
    contract: Contract,
    as_of: dt.date,
    limits: EngineLimits,
    *,
    orders: Source | None = None,
) -> Features:
    """:func:`stream_features` gathered into :class:`~custseg.features.build.Features`
    (what ``build_features`` of the same clean data returns)."""
    query, batches = stream_features(parts, contract, as_of, limits, orders=orders)
    table = _table(query, list(batches))
    return features_from_table(table, query)


def _table(query: FeatureQuery, batches: list[pa.RecordBatch]) -> pa.Table:
    if batches:
        return pa.Table.from_batches(batches)
    names = ["customer_id", *query.numeric, *query.categorical, *query.extras, *query.history]
    if query.value == VALUE_COLUMN:
        names.append(VALUE_COLUMN)
    return pa.table({n: pa.array([], type=pa.string()) for n in names})


def features_from_table(table: pa.Table, query: FeatureQuery) -> Features:
    """:class:`~custseg.features.build.Features` of a feature query's result."""
    index = pd.Index(
        pd.array(table.column("customer_id").to_pylist(), dtype="string"), name="customer_id"
    )
    frame = pd.DataFrame(index=index)
    for name in query.numeric:
        frame[name] = _floats(table.column(name))
    for name in query.categorical:
        values = pd.array(table.column(name).to_pylist(), dtype="string")
        frame[name] = pd.Series(values, index=index).fillna(MISSING_CATEGORY)
    extras = pd.DataFrame(index=index)
    for name in query.extras:
        column = table.column(name)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            extras[name] = _floats(column)
        else:
            extras[name] = pd.Series(column.to_pylist(), index=index, dtype="string")
    value = None
    if query.value is not None:
        values = _floats(table.column(query.value))
        value = pd.Series(values, index=index, name=query.value_name)
    history = None
    if query.history:
        history = pd.DataFrame({n: _floats(table.column(n)) for n in query.history}, index=index)
    return Features(
        frame=frame,
        numeric=list(query.numeric),
        categorical=list(query.categorical),
        as_of=query.as_of,
        value=value,
        extras=extras,
        source_kind=COMBINED if query.kind == COMBINED else None,
        history=history,
    )


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    floats = column.cast(pa.float64())
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype="float64")


def feature_batches(
    parts: Sequence[Path],
    contract: Contract,
    as_of: dt.date,
    limits: EngineLimits,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    schema: FeatureSchema | None = None,
    orders: Source | None = None,
) -> Iterator[Features]:
    """The features of ``parts`` as :class:`~custseg.features.build.Features` of at most
    ``batch_rows`` customers each, in ``customer_id`` order, with
    :attr:`~custseg.features.build.Features.codes`; with ``schema`` (a model's) each batch
    has exactly its columns (as ``build_features(..., schema=schema)``); ``orders``: see
    :func:`stream_features`."""
    query, batches = stream_features(
        parts, contract, as_of, limits, batch_rows=batch_rows, orders=orders
    )
    for batch in batches:
        features = with_schema(features_from_table(pa.Table.from_batches([batch]), query), schema)
        features.codes = {
            c: CategoryCodes.from_values(features.frame[c]) for c in features.categorical
        }
        yield features


def default_as_of_parts(parts: Sequence[Path], contract: Contract) -> tuple[dt.date, str]:
    """:func:`~custseg.features.build.default_as_of_reason` of the clean ``parts``, reading
    only their event-time column (its latest value per part)."""
    names = [c.name for c in contract.by_role(Role.EVENT_TIME)] or ["event_time"]
    latest: list[Any] = []
    column = "event_time"
    if contract.is_transactions:
        for part in parts:
            present = [n for n in names if n in pq.read_schema(str(part)).names]
            if not present:
                continue
            column = present[0]
            latest.extend(_latest(part, column))
    times = [t for t in latest if t is not None]
    frame = pd.DataFrame({column: pd.to_datetime(pd.Series([max(times)] if times else []))})
    return default_as_of_reason(frame, contract)


def _latest(part: Path, column: str) -> Iterator[Any]:
    """The largest value of ``column`` in each row group of ``part`` (one row group in
    memory at a time)."""
    pf = pq.ParquetFile(str(part))
    for group in range(pf.num_row_groups):
        values = pf.read_row_group(group, columns=[column]).column(column)
        if len(values):
            yield pc.max(values).as_py()


def first_purchase_day(
    parts: Sequence[Path], contract: Contract, end: dt.date, limits: EngineLimits
) -> dt.date | None:
    """The order log's first purchase day before ``end`` (``None`` without purchases)."""
    with contextlib.closing(connect(limits)) as con:
        try:
            _create_source(con, parts)
            sql = first_purchase_query(contract, source_columns(con), end, source=SOURCE)
            row = con.execute(sql).fetchone()
        except duckdb.Error as exc:
            raise FeatureEngineError(f"the first-purchase query failed: {exc}") from exc
    return None if row is None or row[0] is None else row[0]


def holdout_data(
    parts: Sequence[Path],
    contract: Contract,
    cutoff: dt.date,
    end: dt.date,
    limits: EngineLimits,
    *,
    range_rows: int | None = None,
) -> pd.DataFrame:
    """The holdout check's data of the order log's ``parts``
    (:func:`custseg.features.sql.holdout_query`): one row per distinct calibration history,
    columns :data:`~custseg.features.sql.HOLDOUT_COLUMNS` (float64), in the keys' order.
    Like the features, a log of more than ``range_rows`` lines (default
    :data:`HOLDOUT_RANGE_ROWS`) is queried one range of customer ids at a time, so DuckDB's memory
    follows a range's customers and lines; the ranges' groups are then added up (each
    customer is in one range: the same rows as one query)."""
    range_rows = HOLDOUT_RANGE_ROWS if range_rows is None else range_rows
    count = -(-_source_rows(parts) // range_rows)
    with contextlib.closing(connect(limits)) as con:
        try:
            tables = _holdout_tables(con, parts, contract, cutoff, end, count)
        except duckdb.Error as exc:
            raise FeatureEngineError(
                f"the holdout query failed (memory limit {limits.memory_limit_mb} MB): {exc}"
            ) from exc
    table = pa.concat_tables(tables)
    frame = pd.DataFrame({n: _floats(table.column(n)) for n in HOLDOUT_COLUMNS})
    if len(tables) == 1:
        return frame
    keys = [n for n in HOLDOUT_COLUMNS if n not in _HOLDOUT_SUMS]
    return frame.groupby(keys, as_index=False, sort=True)[list(_HOLDOUT_SUMS)].sum()


_HOLDOUT_SUMS = ("customers", "holdout_purchases")
"""The holdout query's columns summed over a calibration history (the others its key)."""


def _holdout_tables(
    con: duckdb.DuckDBPyConnection,
    parts: Sequence[Path],
    contract: Contract,
    cutoff: dt.date,
    end: dt.date,
    count: int,
) -> list[pa.Table]:
    """The holdout query's result on each of about ``count`` ranges of customers."""
    _create_source(con, parts)
    columns = source_columns(con)
    ranges = RangeViews(con) if count > 1 else None
    source = SOURCE
    if ranges is not None:
        source = ranges.view(SOURCE, customer_id_column(columns, contract))
    sql = holdout_query(contract, columns, cutoff, end, source=source)
    return [
        con.sql(sql).to_arrow_table() for _ in _each_range(ranges, _range_bounds(ranges, count))
    ]
