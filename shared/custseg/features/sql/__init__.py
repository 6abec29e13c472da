"""The per-customer features of :mod:`custseg.features.build` as one SQL query.

:func:`feature_query` renders the query for a contract, the columns the clean data has
and an as-of date. The features are the same, with the same definitions and names:
order logs give the transaction features (``recency_days`` ... ``return_share``), the
per-customer mode of the contract's ``category`` columns (missing:
:data:`~custseg.features.build.MISSING_CATEGORY`), the mode of ``attribute`` columns and
``outcome`` columns as 0/1 (their maximum over the customer's lines) as extras; customer
tables give their ``numeric`` and ``category`` columns (booleans as 0/1, dates as
``days_since_<name>``), attributes and outcomes as extras.

Where the SQL lives: the structure of each query is a ``.sql`` template beside this module
(``transactions.sql``, ``mode.sql``, ``customers.sql``; ``history.sql``, an order log's
repeat-purchase history, joined into ``transactions.sql`` and read by ``holdout.sql``), read
as package data; only what
depends on the contract is generated here: the select lists and the joins of per-column
modes, as quoted identifiers and small expressions (a column's cast, the 0/1 of a boolean
or an outcome, whole days before the as-of date). Templates keep the query readable and
diffable as SQL; generating the lists in Python keeps the contract the one source of the
column names and roles. Placeholders are :class:`string.Template` ``$names``.

Dialect: plain SQL that DuckDB runs as written and that translates to Athena (Trino) by
name: ``CAST``, ``TRY_CAST``, ``CASE``, ``COALESCE``, ``GREATEST`` / ``LEAST``,
``date_diff('day', ...)`` on dates, ``ROW_NUMBER() OVER`` in a subquery (no ``QUALIFY``),
``DATE '...'`` / ``TIMESTAMP '...'`` literals, double-quoted identifiers. Sums of
amounts use DuckDB's compensated ``FSUM`` (the exact sum to the last digit, where a plain
``SUM`` depends on the order of the lines; Athena: ``SUM``). The query reads
one relation, ``source`` (a view or table of the clean Parquet parts); customer tables
also need ``row_order``, a column of that relation that orders its rows (the last row of
a repeated customer wins, as in :func:`~custseg.features.build.build_features`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from string import Template

from custseg.features.build import (
    MISSING_CATEGORY,
    MONEY_FEATURES,
    TRANSACTION_FEATURES,
    has_amounts,
)
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role

VALUE_COLUMN = "_value"
"""The output column of a customer table's value measure when it is not a feature."""

HISTORY_COLUMNS: tuple[str, ...] = ("_clv_frequency", "_clv_recency", "_clv_age", "_clv_monetary")
"""An order log's repeat-purchase history per customer (``history.sql``): repeat purchase
days, days from the first to the last purchase, days from the first purchase to the as-of
date, mean value of the repeat purchases; all missing for a customer without purchases."""

HOLDOUT_COLUMNS: tuple[str, ...] = (*HISTORY_COLUMNS[:3], "customers", "holdout_purchases")
"""The holdout query's result (:func:`holdout_query`): customers grouped by their history."""

HOLDOUT_HISTORY_COLUMNS: tuple[str, ...] = (
    "_holdout_frequency",
    "_holdout_recency",
    "_holdout_age",
    "_holdout_purchases",
)
"""The holdout check's data per customer (:func:`holdout_query`, ``per_customer``): the first three
of :data:`HISTORY_COLUMNS` before the cutoff, then the purchase days from the cutoff on."""

_DATE_TYPES = {ColumnType.DATE, ColumnType.DATETIME}
_NUMBER_TYPES = {ColumnType.INTEGER, ColumnType.FLOAT}


class ColumnKind(StrEnum):
    """What a column of the clean data holds, as far as the features care."""

    BOOLEAN = "boolean"
    NUMBER = "number"
    TIMESTAMP = "timestamp"  # dates and timestamps
    TEXT = "text"


@dataclass(frozen=True)
class FeatureQuery:
    """A rendered feature query and what its result holds.

    The result has one row per customer, ordered by ``customer_id`` (text, the first
    column), then the ``numeric`` features (DOUBLE), the ``categorical`` features (text, no
    missing value), then the ``extras`` (attributes and outcomes, as in
    :attr:`~custseg.features.build.Features.extras`). ``value`` names the result column of
    the value measure (``monetary``, a numeric feature or :data:`VALUE_COLUMN`), or is
    ``None``; ``value_name`` the column it comes from. ``kind`` is ``"transactions"`` or
    ``"customers"``.
    """

    sql: str
    numeric: list[str]
    categorical: list[str]
    extras: list[str]
    value: str | None
    kind: str
    as_of: dt.date
    value_name: str | None = None  # the contract column the value measure comes from
    history: list[str] = field(default_factory=list)  # HISTORY_COLUMNS, for order logs


@functools.cache
def template(name: str) -> Template:
    """The SQL template ``<name>.sql`` of this package."""
    text = resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return Template(text)


def quote(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a single-quoted SQL string."""
    return "'" + text.replace("'", "''") + "'"


def _day(as_of: dt.date) -> dt.date:
    return dt.date(as_of.year, as_of.month, as_of.day)  # a datetime's calendar date


def is_data_column(name: str) -> bool:
    """Whether a clean column may carry data (not a helper or flag column)."""
    return not (name.startswith("_") or name.endswith(("__missing", "__clipped")))


def _role_column(
    columns: Mapping[str, ColumnKind], contract: Contract, role: Role, fallback: str
) -> str | None:
    for spec in contract.by_role(role):
        if spec.name in columns:
            return spec.name
    return fallback if fallback in columns else None


def customer_id_column(columns: Mapping[str, ColumnKind], contract: Contract) -> str:
    """The column of clean data with ``columns`` that the queries read customer ids from."""
    for name in (contract.id_column.name, "customer_id"):
        if name in columns:
            return name
    raise ValueError("the clean data has no customer_id column")


def _number(ref: str, kind: ColumnKind, name: str) -> str:
    """A column as DOUBLE (booleans 0/1; text that is not a number: NULL)."""
    if kind == ColumnKind.NUMBER:
        return f"CAST({ref} AS DOUBLE)"
    if kind == ColumnKind.BOOLEAN:
        return _boolean_number(ref, kind)
    if kind == ColumnKind.TEXT:
        return f"TRY_CAST({ref} AS DOUBLE)"
    raise ValueError(f"column {name}: holds dates where the contract expects a number")


def _boolean_number(ref: str, kind: ColumnKind) -> str:
    """A boolean column as 1.0 / 0.0 (NULL when missing or not a boolean)."""
    value = ref if kind == ColumnKind.BOOLEAN else f"TRY_CAST({ref} AS BOOLEAN)"
    return f"CASE WHEN {value} THEN CAST(1 AS DOUBLE) WHEN NOT {value} THEN CAST(0 AS DOUBLE) END"


def _timestamp(ref: str, kind: ColumnKind) -> str:
    return ref if kind == ColumnKind.TIMESTAMP else f"TRY_CAST({ref} AS TIMESTAMP)"


def days_since(ref: str, kind: ColumnKind, as_of: dt.date) -> str:
    """Whole days from a date or timestamp to ``as_of`` 00:00 (floor; DOUBLE)."""
    t = _timestamp(ref, kind)
    return (
        f"CAST(date_diff('day', CAST({t} AS DATE), DATE '{_day(as_of).isoformat()}')"
        f" - CASE WHEN {t} > CAST(CAST({t} AS DATE) AS TIMESTAMP) THEN 1 ELSE 0 END"
        " AS DOUBLE)"
    )


def category_text(ref: str) -> str:
    """A category as trimmed lower-case text; empty or missing: MISSING_CATEGORY."""
    text = f"NULLIF(TRIM(LOWER(CAST({ref} AS VARCHAR))), '')"
    return f"COALESCE({text}, {literal(MISSING_CATEGORY)})"


def _in_list(expr: str, values: set[str]) -> str:
    if not values:
        return "FALSE"
    return f"{expr} IN ({', '.join(literal(v) for v in sorted(values))})"


def outcome_number(spec: ColumnSpec, ref: str, kind: ColumnKind) -> str:
    """An outcome column as 0/1 DOUBLE (NULL when missing), as ``build._outcome_values``:
    booleans and numbers as they are; text is 1 when it is the ``positive`` value (else 0),
    or without ``positive`` 1 for a true value and 0 for a false one (else NULL)."""
    if kind in (ColumnKind.BOOLEAN, ColumnKind.NUMBER):
        return _number(ref, kind, spec.name)
    text = f"LOWER(TRIM(CAST({ref} AS VARCHAR)))"
    positive = (spec.positive or "").strip().lower()
    one, zero = "CAST(1 AS DOUBLE)", "CAST(0 AS DOUBLE)"
    if positive:
        return (
            f"CASE WHEN {ref} IS NULL THEN NULL WHEN {text} = {literal(positive)} "
            f"THEN {one} ELSE {zero} END"
        )
    trues = {t.lower() for t in spec.true_values}
    falses = {f.lower() for f in spec.false_values}
    return (
        f"CASE WHEN {_in_list(text, falses)} THEN {zero} "
        f"WHEN {_in_list(text, trues)} THEN {one} END"
    )


def feature_query(
    contract: Contract,
    columns: Mapping[str, ColumnKind],
    as_of: dt.date,
    *,
    source: str = "clean",
    row_order: str = "_row",
) -> FeatureQuery:
    """The feature query of clean data with ``columns`` (name -> kind) under ``contract``.

    ``source`` names the relation the query reads, ``row_order`` its column that orders
    the rows (customer tables only). Raises ``ValueError`` naming what is missing (the
    customer id, the event time, an amount or quantity and unit price, the row order).
    """
    if contract.is_transactions:
        return _transactions(contract, columns, _day(as_of), source)
    return _customers(contract, columns, _day(as_of), source, row_order)


@dataclass
class _Lines:
    """What the transaction query adds per line column and per customer."""

    line_columns: list[str]
    per_customer_columns: list[str]
    joins: list[str]
    categorical: list[str]
    extras: list[str]

    def add_line(self, expr: str) -> str:
        alias = quote(f"line_{len(self.line_columns)}")
        self.line_columns.append(f"{expr} AS {alias}")
        return alias

    def add_mode(self, ref: str, name: str, fill: str | None) -> None:
        mode = quote(f"mode_{len(self.joins)}")
        body = template("mode").substitute(column=self.add_line(ref)).strip()
        body = "\n".join(line for line in body.splitlines() if not line.startswith("--"))
        body = body.replace("\n", "\n    ")
        self.joins.append(
            f"LEFT JOIN (\n    {body}\n) AS {mode} ON {mode}.customer_id = spans.customer_id"
        )
        value = f"{mode}.mode_value"
        if fill is not None:
            value = f"COALESCE({value}, {literal(fill)})"
        self.per_customer_columns.append(f"{value} AS {quote(name)}")


@dataclass(frozen=True)
class _LineExprs:
    """The SQL of an order line's customer id, event time, amount and return flag."""

    customer_id: str
    event_time: str
    amount: str
    return_flag: str


def _line_exprs(contract: Contract, columns: Mapping[str, ColumnKind]) -> _LineExprs:
    ident = quote(customer_id_column(columns, contract))
    time_col = _role_column(columns, contract, Role.EVENT_TIME, "event_time")
    if time_col is None:
        raise ValueError("a transactions table needs an event_time column")
    event_time = _timestamp(quote(time_col), columns[time_col])
    amount_col = _role_column(columns, contract, Role.AMOUNT, "amount")
    qty = _role_column(columns, contract, Role.QUANTITY, "quantity")
    price = _role_column(columns, contract, Role.UNIT_PRICE, "unit_price")
    if amount_col is not None:
        amount = _number(quote(amount_col), columns[amount_col], amount_col)
    elif qty is None or price is None:
        amount = "CAST(NULL AS DOUBLE)"  # a log without amounts
    else:
        amount = (
            f"({_number(quote(qty), columns[qty], qty)}"
            f" * {_number(quote(price), columns[price], price)})"
        )
    return_flag = "FALSE"
    if "is_return" in columns:
        flag = quote("is_return")
        if columns["is_return"] != ColumnKind.BOOLEAN:
            flag = f"TRY_CAST({flag} AS BOOLEAN)"
        return_flag = f"COALESCE({flag}, FALSE)"
    return _LineExprs(ident, event_time, amount, return_flag)


def _transactions(
    contract: Contract, columns: Mapping[str, ColumnKind], as_of: dt.date, source: str
) -> FeatureQuery:
    exprs = _line_exprs(contract, columns)
    event_time = exprs.event_time
    invoice = _role_column(columns, contract, Role.INVOICE_ID, "invoice_id")
    order_key = f"CAST({quote(invoice)} AS VARCHAR)" if invoice is not None else event_time

    lines = _Lines([], [], [], [], [])
    for spec in contract.by_role(Role.CATEGORY):
        if spec.name in columns and spec.name not in TRANSACTION_FEATURES:
            lines.add_mode(quote(spec.name), spec.name, MISSING_CATEGORY)
            lines.categorical.append(spec.name)
    for spec in contract.by_role(Role.ATTRIBUTE):
        if spec.name in columns:
            lines.add_mode(quote(spec.name), spec.name, None)
            lines.extras.append(spec.name)
    outcomes = [s for s in contract.by_role(Role.OUTCOME) if s.name in columns]
    if outcomes:
        parts = []
        for spec in outcomes:
            alias = lines.add_line(outcome_number(spec, quote(spec.name), columns[spec.name]))
            parts.append(f"MAX({alias}) AS {quote(spec.name)}")
            lines.per_customer_columns.append(f"outcomes.{quote(spec.name)} AS {quote(spec.name)}")
            lines.extras.append(spec.name)
        lines.joins.append(
            f"LEFT JOIN (\n    SELECT customer_id, {', '.join(parts)}\n    FROM lines\n"
            "    GROUP BY customer_id\n) AS outcomes ON outcomes.customer_id = spans.customer_id"
        )
    lines.joins.append(
        f"LEFT JOIN (\n{history_sql(as_of)}\n) AS history"
        " ON history.customer_id = spans.customer_id"
    )
    lines.per_customer_columns.extend(f"history.{quote(n)} AS {quote(n)}" for n in HISTORY_COLUMNS)
    sql = template("transactions").substitute(
        source=quote(source),
        customer_id=exprs.customer_id,
        event_time=event_time,
        order_key=order_key,
        amount=exprs.amount,
        return_flag=exprs.return_flag,
        as_of=as_of.isoformat(),
        line_columns="".join(f",\n        {c}" for c in lines.line_columns),
        per_customer_columns="".join(f",\n    {c}" for c in lines.per_customer_columns),
        per_customer_joins="".join(f"\n{j}" for j in lines.joins),
    )
    money = has_amounts(contract) and exprs.amount != "CAST(NULL AS DOUBLE)"
    return FeatureQuery(
        sql=sql,
        numeric=[f for f in TRANSACTION_FEATURES if money or f not in MONEY_FEATURES],
        categorical=lines.categorical,
        extras=lines.extras,
        value="monetary" if money else None,
        kind="transactions",
        as_of=as_of,
        value_name="monetary" if money else None,
        history=list(HISTORY_COLUMNS),
    )


def history_sql(cutoff: dt.date) -> str:
    """``history.sql`` with purchases before ``cutoff`` as the history (reads ``lines``)."""
    body = template("history").substitute(cutoff=_day(cutoff).isoformat()).strip()
    return "\n".join(line for line in body.splitlines() if not line.startswith("--"))


def _holdout_sql(
    contract: Contract, columns: Mapping[str, ColumnKind], end: dt.date, source: str, query: str
) -> str:
    if not contract.is_transactions:
        raise ValueError("the holdout check needs an order log")
    exprs = _line_exprs(contract, columns)
    return template("holdout").substitute(
        source=quote(source),
        customer_id=exprs.customer_id,
        event_time=exprs.event_time,
        amount=exprs.amount,
        return_flag=exprs.return_flag,
        end=_day(end).isoformat(),
        query=query,
    )


def first_purchase_query(
    contract: Contract, columns: Mapping[str, ColumnKind], end: dt.date, *, source: str = "clean"
) -> str:
    """One row, ``first_day``: the order log's first purchase day before ``end``."""
    query = "SELECT MIN(event_day) AS first_day FROM lines WHERE NOT is_return"
    return _holdout_sql(contract, columns, end, source, query)


def holdout_query(
    contract: Contract,
    columns: Mapping[str, ColumnKind],
    cutoff: dt.date,
    end: dt.date,
    *,
    source: str = "clean",
    per_customer: bool = False,
) -> str:
    """The holdout check's data (:data:`HOLDOUT_COLUMNS`): customers whose first purchase
    is before ``cutoff``, grouped by their history before ``cutoff`` (``customers`` per
    group) with the purchase days they made from ``cutoff`` to ``end`` (summed).
    ``per_customer``: the rows it groups instead, ``customer_id`` and
    :data:`HOLDOUT_HISTORY_COLUMNS` (the fanned-out path joins them to the features and
    groups them per feature bucket)."""
    keys = ", ".join(HISTORY_COLUMNS[:3])
    if per_customer:
        names = (*HISTORY_COLUMNS[:3], "_clv_holdout")
        pairs = zip(names, HOLDOUT_HISTORY_COLUMNS, strict=True)
        select = f"SELECT customer_id, {', '.join(f'{a} AS {b}' for a, b in pairs)}\n"
        query = f"{_history_cte(cutoff)}{select}FROM history"
    else:
        query = (
            f"{_history_cte(cutoff)}"
            f"SELECT {keys}, CAST(COUNT(*) AS DOUBLE) AS customers,\n"
            "    FSUM(_clv_holdout) AS holdout_purchases\n"
            f"FROM history\nGROUP BY {keys}\nORDER BY {keys}"
        )
    return _holdout_sql(contract, columns, end, source, query)


def _history_cte(cutoff: dt.date) -> str:
    """``, history AS (...)``: :func:`history_sql` as a CTE after ``holdout.sql``'s lines."""
    body = history_sql(cutoff).replace("\n", "\n    ")
    return f", history AS (\n    {body}\n)\n"


def _customer_column(spec: ColumnSpec, kind: ColumnKind, as_of: dt.date) -> tuple[str, str, bool]:
    """(feature name, SQL expression, numeric?) of one numeric or category column, as
    ``build._feature_column``: booleans 0/1, dates as days before ``as_of``, numbers,
    else category text."""
    ref = f"source_row.{quote(spec.name)}"
    if spec.type == ColumnType.BOOLEAN or kind == ColumnKind.BOOLEAN:
        return spec.name, _boolean_number(ref, kind), True
    if spec.type in _DATE_TYPES:
        return f"days_since_{spec.name}", days_since(ref, kind, as_of), True
    if spec.role == Role.NUMERIC or spec.type in _NUMBER_TYPES:
        return spec.name, _number(ref, kind, spec.name), True
    return spec.name, category_text(ref), False


def _customers(
    contract: Contract,
    columns: Mapping[str, ColumnKind],
    as_of: dt.date,
    source: str,
    row_order: str,
) -> FeatureQuery:
    ident = quote(customer_id_column(columns, contract))
    if row_order not in columns:
        raise ValueError(f"a customer table needs its row order column {row_order}")
    present = {n for n in columns if is_data_column(n)}
    numeric: dict[str, str] = {}
    categorical: dict[str, str] = {}
    for spec in contract.columns:
        if spec.name in present and spec.role in (Role.NUMERIC, Role.CATEGORY):
            name, expr, is_number = _customer_column(spec, columns[spec.name], as_of)
            (numeric if is_number else categorical)[name] = expr
    extras: dict[str, str] = {}
    for spec in contract.by_role(Role.ATTRIBUTE):
        if spec.name in present:
            ref = f"source_row.{quote(spec.name)}"
            if spec.type in _DATE_TYPES:
                extras[f"days_since_{spec.name}"] = days_since(ref, columns[spec.name], as_of)
            else:
                extras[spec.name] = ref
    for spec in contract.by_role(Role.OUTCOME):
        if spec.name in present:
            ref = f"source_row.{quote(spec.name)}"
            extras[spec.name] = outcome_number(spec, ref, columns[spec.name])
    value = value_name = next((n for n in contract.value_columns if n in numeric), None)
    if value is None:
        for name in contract.value_columns:
            if columns.get(name) in (ColumnKind.NUMBER, ColumnKind.BOOLEAN):
                ref = f"source_row.{quote(name)}"
                extras[VALUE_COLUMN] = _number(ref, columns[name], name)
                value, value_name = VALUE_COLUMN, name
                break
    select = {**numeric, **categorical, **extras}
    sql = template("customers").substitute(
        source=quote(source),
        customer_id=ident,
        row_order=quote(row_order),
        select_columns="".join(f",\n    {e} AS {quote(n)}" for n, e in select.items()),
    )
    return FeatureQuery(
        sql=sql,
        numeric=list(numeric),
        categorical=list(categorical),
        extras=[n for n in extras if n != VALUE_COLUMN],
        value=value,
        kind="customers",
        as_of=as_of,
        value_name=value_name,
    )
